package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const chatText = "Привет, 世界 👋 مرحبا"

// TestThreePeopleMeeting: three pages open /?room=R&name=pN; each decodes
// video and receives audio from the other two; a chat line in four scripts
// arrives identical; a screen share reaches the others as an extra stream;
// a page that leaves disappears from the others.
func TestThreePeopleMeeting(t *testing.T) {
	srv := startServer(t, nil)
	room := fmt.Sprintf("meet%d", time.Now().UnixNano()%100000)
	names := []string{"p1", "p2", "p3"}
	pages := make([]*page, len(names))
	for i, n := range names {
		pages[i] = openPage(t, n, fmt.Sprintf("%s/?room=%s&name=%s", srv.URL(), room, n))
	}
	for _, p := range pages {
		p.waitFor("status ESTABLISHED", func() (bool, string) {
			s := p.text("#status")
			return s == "ESTABLISHED", s
		})
	}
	// Every page decodes video and receives audio from the other two.
	for i, p := range pages {
		for j, other := range names {
			if i != j {
				p.waitDecoding(other, "camera", true)
			}
		}
	}
	// Chromium decoded what the SFU encrypted itself: every subscribe
	// connection is on the direct send path, none through pion's session.
	if st := srv.Media().Stats(); st.DirectSubscribers != len(pages) || st.PionSubscribers != 0 {
		t.Errorf("subscribe connections: %d direct, %d through pion; want all %d direct", st.DirectSubscribers, st.PionSubscribers, len(pages))
	}
	// A tile's info shows how the page receives the stream, from its own
	// receiver reports as the server read them (QUALITY).
	quality := regexp.MustCompile(`^loss \d+\.\d% · jitter \d+ ms · rtt \d+ ms$`)
	pages[0].waitFor("p2's tile to show the receive quality", func() (bool, string) {
		var s string
		_ = pages[0].eval(`(document.querySelector('.tile[data-name="p2"][data-kind="camera"] .quality') || {}).textContent || ''`, &s)
		return quality.MatchString(s), s
	})
	if dir := os.Getenv("PARLEY_SCREENSHOT_DIR"); dir != "" {
		pages[0].screenshot(filepath.Join(dir, "meeting.png"))
	}

	// Chat: UTF-8 as it is, shown as text.
	p1 := pages[0]
	if err := p1.eval(fmt.Sprintf(`(() => { const i = document.querySelector('#chatText'); i.value = %q;
		i.dispatchEvent(new Event('input')); document.querySelector('#chatSend').click(); return true; })()`, chatText), nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range pages[1:] {
		p.waitFor("the chat line from p1", func() (bool, string) {
			var lines []string
			_ = p.eval(`[...document.querySelectorAll('#chatLog .chat-line')].map(e => e.textContent)`, &lines)
			for _, l := range lines {
				if strings.HasSuffix(strings.TrimSpace(l), "p1 - "+chatText) {
					return true, ""
				}
			}
			return false, strings.Join(lines, " | ")
		})
	}

	// Markup in chat is shown as text, never run.
	const markup = `<img src=x onerror="window.__xss=1"><b>bold</b>`
	if err := p1.eval(fmt.Sprintf(`(() => { const i = document.querySelector('#chatText'); i.value = %q;
		i.dispatchEvent(new Event('input')); document.querySelector('#chatSend').click(); return true; })()`, markup), nil); err != nil {
		t.Fatal(err)
	}
	p2 := pages[1]
	p2.waitFor("the markup chat line, as text", func() (bool, string) {
		var r struct {
			Lines int  `json:"lines"`
			Elems int  `json:"elems"`
			XSS   bool `json:"xss"`
		}
		_ = p2.eval(fmt.Sprintf(`({lines: [...document.querySelectorAll('#chatLog .chat-line')].filter(e => e.textContent.endsWith(%q)).length,
			elems: document.querySelectorAll('#chatLog img, #chatLog b').length, xss: !!window.__xss})`, markup), &r)
		if r.Elems > 0 || r.XSS {
			t.Fatalf("chat markup became HTML on p2: %+v", r)
		}
		return r.Lines == 1, fmt.Sprintf("%+v", r)
	})

	// Screen share from p1 reaches p2 and p3 as a second stream.
	p1.click("#shareScreen")
	for _, p := range pages[1:] {
		p.waitDecoding("p1", "screen", false)
	}

	// The browser's own "stop sharing" ends the track: the share unpublishes
	// itself and its tile goes on the others.
	if err := p1.eval(`(() => { const s = window.parley.room.getLocalStreams().find(s => s.kind && s.kind() === 'screen');
		if (!s) throw new Error('no local screen stream');
		s.getMediaStream().getVideoTracks()[0].dispatchEvent(new Event('ended')); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range pages[1:] {
		p.waitFor("p1's screen tile to go", func() (bool, string) {
			_, shown := find(p.tiles(), "p1", "screen")
			return !shown, ""
		})
	}

	// p2 stops publishing: its tile goes on the others; it publishes again and comes back.
	pages[1].click("#publishToggle")
	p1.waitFor("p2's camera tile to go", func() (bool, string) {
		_, shown := find(p1.tiles(), "p2", "camera")
		return !shown, ""
	})
	pages[1].click("#publishToggle")
	p1.waitDecoding("p2", "camera", true)

	// p3 leaves: its tiles disappear on the others.
	pages[2].click("#leave")
	for _, p := range pages[:2] {
		p.waitFor("p3's tiles to go", func() (bool, string) {
			for _, tm := range p.tiles() {
				if tm.Name == "p3" {
					return false, fmt.Sprintf("%+v", tm)
				}
			}
			return true, ""
		})
	}
	// The others still see each other.
	pages[1].waitDecoding("p1", "camera", true)
}
