package room

import (
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/protocol"
)

// The look-alike names of issue 12: with an invisible character appended
// they are refused (INVALID_NAME, naming the character); with letters of
// another script, or another width or case, they are the name already there
// (NAME_TAKEN).
func TestLookAlikeNames(t *testing.T) {
	reg := NewRegistry(Config{IdleTimeout: 50 * time.Millisecond, MaxNameBytes: 64}, nil)
	defer reg.Close("test over")
	var s sink
	if _, err := reg.Join("r", "alice", &s, JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, code, reason string }{
		{"alice\u034f", protocol.CodeInvalidName, "U+034F"},      // combining grapheme joiner
		{"alice\ufe0f", protocol.CodeInvalidName, "U+FE0F"},      // variation selector 16
		{"alice\u3164", protocol.CodeInvalidName, "U+3164"},      // Hangul filler
		{"al\u200bice", protocol.CodeInvalidName, "U+200B"},      // zero-width space
		{"alice\u00ad", protocol.CodeInvalidName, "U+00AD"},      // soft hyphen
		{"\u202ealice", protocol.CodeInvalidName, "U+202E"},      // right-to-left override
		{"\u0430lice", protocol.CodeNameTaken, "looks the same"}, // Cyrillic а
		{"Alice", protocol.CodeNameTaken, "looks the same"},
		{"ALICE", protocol.CodeNameTaken, "looks the same"},
		{"\uff41lice", protocol.CodeNameTaken, "alice"},                         // full-width a
		{"al\u0456ce", protocol.CodeNameTaken, "looks the same"},                // Cyrillic і
		{"\u0430l\u0456\u0441\u0435", protocol.CodeNameTaken, "looks the same"}, // Cyrillic а, і, с, е
		{"alice", protocol.CodeNameTaken, `named "alice"; choose`},
	} {
		_, err := reg.Join("r", c.name, &s, JoinOptions{})
		if err == nil || code(err) != c.code || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("join as %+q: %v, want %s mentioning %q", c.name, err, c.code, c.reason)
		}
	}
	// Names that merely share letters are distinct; others' scripts are welcome.
	for _, ok := range []string{"alicia", "alice b", "Алиса", "李雷", "Zoë"} {
		if _, err := reg.Join("r", ok, &s, JoinOptions{}); err != nil {
			t.Errorf("join as %q: %v", ok, err)
		}
	}
	// Decomposed and composed forms are one name.
	if _, err := reg.Join("r", "Zoe\u0308", &s, JoinOptions{}); code(err) != protocol.CodeNameTaken {
		t.Errorf("decomposed Zoë: %v, want NAME_TAKEN", err)
	}
}

func TestNameKeyDisplayForm(t *testing.T) {
	for in, want := range map[string]string{"\uff21lice": "Alice", "al\u3000ice": "al ice", "Zoe\u0308": "Zoë"} {
		got, _, err := NameKey(in)
		if err != nil || got != want {
			t.Errorf("NameKey(%+q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// A private message reaches the participant whose name looks like the one given.
func TestPrivateMessageByDisplayedName(t *testing.T) {
	reg := NewRegistry(Config{IdleTimeout: 50 * time.Millisecond, MaxNameBytes: 64, MaxTextBytes: 100}, nil)
	defer reg.Close("test over")
	var a, b sink
	pa, _ := reg.Join("r", "alice", &a, JoinOptions{})
	if _, err := reg.Join("r", "Bob", &b, JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pa.SendMessage("bob", "hi"); err != nil {
		t.Fatal(err)
	}
	last := b.events[len(b.events)-1]
	if last.Event != protocol.EventMessage || last.To != "Bob" || !last.Private {
		t.Errorf("Bob got %+v", last)
	}
}
