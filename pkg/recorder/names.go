package recorder

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

// maxNameLen bounds a sanitized name component (bytes, all ASCII).
const maxNameLen = 48

// windowsReserved are device names Windows refuses as file names, whatever the extension.
var windowsReserved = map[string]bool{
	"CON": true, "PRN": true, "AUX": true, "NUL": true,
	"COM1": true, "COM2": true, "COM3": true, "COM4": true, "COM5": true,
	"COM6": true, "COM7": true, "COM8": true, "COM9": true,
	"LPT1": true, "LPT2": true, "LPT3": true, "LPT4": true, "LPT5": true,
	"LPT6": true, "LPT7": true, "LPT8": true, "LPT9": true,
}

// SafeName turns any string into a file-name component that every common file
// system accepts: ASCII letters, digits, '-', '_' and inner '.', at most 48 bytes,
// never empty, never "." or "..", never a Windows device name, never a leading
// dot or trailing dot or space. Runs of other characters become one '_'.
//
// When the result differs from s (anything was replaced, cut or lower-cased
// away), a short hash of s is appended, so two different names never share a
// component ("a/b" and "a?b" both map to "a_b" otherwise). The mapping is
// deterministic: the same input always gives the same output.
func SafeName(s string) string {
	var b strings.Builder
	lastUnderscore := false
	for _, r := range s {
		ok := (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '-' || r == '.' || r == '_'
		if !ok {
			if !lastUnderscore {
				b.WriteByte('_')
			}
			lastUnderscore = true
			continue
		}
		b.WriteRune(r)
		lastUnderscore = r == '_'
	}
	out := strings.Trim(b.String(), ". _")
	changed := out != s || !utf8.ValidString(s)
	if len(out) > maxNameLen {
		out = strings.TrimRight(out[:maxNameLen], ". _")
		changed = true
	}
	base, _, _ := strings.Cut(out, ".")
	if out == "" || windowsReserved[strings.ToUpper(base)] {
		out = strings.ReplaceAll(out, ".", "_") // "con.txt" is reserved too; "con_txt-<hash>" is not
		changed = true
	}
	if !changed {
		return out
	}
	sum := sha256.Sum256([]byte(s))
	h := hex.EncodeToString(sum[:4])
	if out == "" {
		return "x-" + h
	}
	return out + "-" + h
}
