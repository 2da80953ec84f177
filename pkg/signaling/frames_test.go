package signaling

import (
	"fmt"
	"strings"
	"testing"
)

// A frame refused unread is answered with the type and id its first bytes
// hold, wherever it is cut.
func TestPeekHead(t *testing.T) {
	long := strings.Repeat("x", 1000)
	for _, c := range []struct {
		frame string
		typ   string
		id    string
	}{
		{`{"type":"answer","id":7,"sdp":"` + long, "answer", "7"},
		{`{"id":3,"type":"message","text":"` + long, "message", "3"},
		{` { "type" : "answer" , "sdp":"` + long, "answer", ""},
		{`{"sdp":"` + long + `","type":"answer","id":2}`, "answer", "2"},
		{`{"sdp":"` + long, "", ""},
		{`{"type":5,"id":4}`, "", ""},
		{`not json`, "", ""},
		{`["type","answer"]`, "", ""},
	} {
		h := peekHead([]byte(c.frame))
		id := ""
		if h.ID != nil {
			id = fmt.Sprint(*h.ID)
		}
		if h.Type != c.typ || id != c.id {
			t.Errorf("%.40s…: type %q id %q, want %q %q", c.frame, h.Type, id, c.typ, c.id)
		}
	}
}

func TestAnswerBudget(t *testing.T) {
	for _, c := range []struct{ participants, streams, want int }{
		{50, 3, 65536 + 49*3*2*2048}, // the defaults: 667648
		{2, 1, 65536 + 1*1*2*2048},
		{1, 3, 65536 + 1*3*2*2048},
		{0, 3, 1 << 20}, // no limit: the hard cap
		{50, 0, 1 << 20},
	} {
		if got := AnswerBudget(c.participants, c.streams, 64<<10, 1<<20); got != c.want {
			t.Errorf("AnswerBudget(%d, %d) = %d, want %d", c.participants, c.streams, got, c.want)
		}
	}
}
