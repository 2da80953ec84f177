package room

import (
	"fmt"
	"unicode"

	"github.com/mtibben/confusables"
	"github.com/parley/parley/pkg/protocol"
	"golang.org/x/text/secure/precis"
)

// Participant names are unique in a room by how they display, not by their
// bytes: "alice", "Alice", "ａｌｉｃｅ" (full-width) and "аlice" (with a
// Cyrillic а) are one name, and a name with an invisible character in it is
// refused outright. Three steps:
//
//  1. Invisible code points are refused: Unicode's Default_Ignorable_Code_Point
//     set (joiners, variation selectors, fillers such as U+3164, bidi controls,
//     soft hyphen, tags) plus blanks that are not spaces (U+2800) and controls.
//  2. The name is enforced with the PRECIS Nickname profile (RFC 8266): NFKC,
//     every space becomes U+0020, runs of spaces collapse. The result is the
//     name the room shows.
//  3. Its comparison key is the Nickname profile's case-folded form mapped
//     to its confusable skeleton (Unicode TS #39, from confusables.txt in
//     github.com/mtibben/confusables: Unicode 13.0.0), so letters of other
//     scripts that look like Latin ones, "rn" and "m", "1" and "l", compare equal.

// NameKey returns the display form of a valid participant name and the key
// under which it is unique in a room. It refuses invisible characters and
// names PRECIS Nickname does not allow with INVALID_NAME.
func NameKey(name string) (display, key string, err error) {
	for _, r := range name {
		if invisible(r) {
			return "", "", &protocol.Error{Code: protocol.CodeInvalidName,
				Reason: fmt.Sprintf("name holds the invisible character U+%04X; names must show every character they hold", r)}
		}
	}
	display, err = precis.Nickname.String(name)
	if err != nil {
		return "", "", &protocol.Error{Code: protocol.CodeInvalidName, Reason: "name is not a valid nickname (" + err.Error() + ")"}
	}
	folded, err := precis.Nickname.CompareKey(name)
	if err != nil {
		return "", "", &protocol.Error{Code: protocol.CodeInvalidName, Reason: "name is not a valid nickname (" + err.Error() + ")"}
	}
	return display, confusables.Skeleton(folded), nil
}

// invisible reports whether r shows nothing (or only changes how its
// neighbours show): Default_Ignorable_Code_Point as Unicode derives it
// (Other_Default_Ignorable_Code_Point, format characters, variation
// selectors), controls, line and paragraph separators, and blank symbols.
func invisible(r rune) bool {
	switch {
	case unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r),
		unicode.Is(unicode.Variation_Selector, r),
		unicode.Is(unicode.Cf, r),
		unicode.Is(unicode.Cc, r),
		unicode.Is(unicode.Zl, r), unicode.Is(unicode.Zp, r):
		return true
	}
	switch r {
	case 0x2800, // BRAILLE PATTERN BLANK
		0x3164, 0xFFA0, 0x115F, 0x1160, // Hangul fillers (Other_Default_Ignorable, listed for clarity)
		0x034F,         // COMBINING GRAPHEME JOINER
		0x1D159,        // MUSICAL SYMBOL NULL NOTEHEAD
		0x17B4, 0x17B5, // Khmer inherent vowels
		0x180B, 0x180C, 0x180D, 0x180E, 0x180F: // Mongolian free variation selectors, vowel separator
		return true
	}
	return false
}
