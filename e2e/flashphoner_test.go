package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/webapp"
)

// withPages serves base with the files of dir under /prefix/ (test pages
// that are not part of the web app, on its origin so they can import
// /js/roomapi.js).
type withPages struct {
	base   fs.FS
	prefix string
	pages  fs.FS
}

func (w withPages) Open(name string) (fs.File, error) {
	if name == w.prefix {
		return w.pages.Open(".")
	}
	if rest, ok := strings.CutPrefix(name, w.prefix+"/"); ok {
		return w.pages.Open(rest)
	}
	return w.base.Open(name)
}

// displayMedia is what a display element of the page holds: each <video>
// in it, with what the page decoded from its stream.
type displayMedia struct {
	ID          string  `json:"id"`
	Muted       bool    `json:"muted"`
	Autoplay    bool    `json:"autoplay"`
	PlaysInline bool    `json:"playsInline"`
	Width       int     `json:"width"`
	Time        float64 `json:"time"`
	Frames      float64 `json:"frames"`
	Samples     float64 `json:"samples"`
	Tracks      int     `json:"tracks"`
}

const readDisplay = `(async (sel) => {
  const stats = new Map();
  for (const pc of (window.__pcs || [])) {
    if (pc.connectionState === 'closed') continue;
    (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp' && s.trackIdentifier) stats.set(s.trackIdentifier, s); });
  }
  return [...document.querySelector(sel).querySelectorAll('video')].map(v => {
    const ms = v.srcObject;
    let frames = 0, samples = 0;
    for (const tr of (ms ? ms.getTracks() : [])) {
      const s = stats.get(tr.id);
      if (!s) continue;
      if (tr.kind === 'video') frames += s.framesDecoded || 0; else samples += s.totalSamplesReceived || 0;
    }
    return {id: v.id, muted: v.muted, autoplay: v.autoplay, playsInline: v.playsInline, width: v.videoWidth,
      time: v.currentTime, frames, samples, tracks: ms ? ms.getTracks().length : 0};
  });
})`

func (p *page) display(sel string) []displayMedia {
	var out []displayMedia
	if err := p.eval(fmt.Sprintf("%s(%q)", readDisplay, sel), &out); err != nil {
		p.t.Logf("%s: reading %s: %v", p.name, sel, err)
	}
	return out
}

// TestFlashphonerConferencePage: a conference page written for Flashphoner's
// Web SDK (e2e/testdata/flashphoner, following Flashphoner's Conference
// example: display <div>s, participant.play, sendMessage per participant),
// with only its import line changed, runs on Parley: two pages in a room each
// decode the other's video and audio in the <video> roomapi.js made inside
// the participant's <div>, show their own camera in a muted one inside
// localDisplay, get each other's chat, and leave: the <video>s go.
func TestFlashphonerConferencePage(t *testing.T) {
	srv := startServer(t, func(c *server.Config) {
		c.Web = withPages{base: webapp.FS, prefix: "flashphoner", pages: os.DirFS("testdata/flashphoner")}
	})
	room := fmt.Sprintf("fp%d", time.Now().UnixNano()%100000)
	url := fmt.Sprintf("%s/flashphoner/conference.html?roomName=%s", srv.URL(), room)
	names := []string{"alice", "bob"}
	pages := make([]*page, len(names))
	for i, n := range names {
		p := openPage(t, n, url)
		pages[i] = p
		if err := p.eval(fmt.Sprintf(`(() => { document.getElementById('login').value = %q;
			document.getElementById('joinBtn').click(); return true; })()`, n), nil); err != nil {
			t.Fatal(err)
		}
		p.waitFor("joined", func() (bool, string) {
			st, btn := p.text("#status"), p.text("#joinBtn")
			return st == "ESTABLISHED" && btn == "Leave", st + " / " + btn + " / " + p.text("#failedInfo")
		})
	}

	for i, p := range pages {
		other := names[1-i]
		p.waitFor(other+" installed in participant1", func() (bool, string) {
			n := p.text("#participant1Name")
			return n == other, n
		})
		var first displayMedia
		p.waitFor(other+"'s video and audio in the <video> made in participant1Display", func() (bool, string) {
			d := p.display("#participant1Display")
			if len(d) != 1 {
				return false, fmt.Sprintf("%d <video>s: %+v", len(d), d)
			}
			first = d[0]
			return d[0].Frames > 0 && d[0].Samples > 0 && d[0].Width > 0, fmt.Sprintf("%+v", d[0])
		})
		if first.Muted || !first.Autoplay || !first.PlaysInline || first.Tracks != 2 || !strings.HasPrefix(first.ID, "st-") {
			t.Errorf("%s: the remote <video>: %+v; want unmuted, autoplay, playsinline, 2 tracks, the stream id as id", p.name, first)
		}
		p.waitFor("more frames from "+other, func() (bool, string) {
			d := p.display("#participant1Display")
			return len(d) == 1 && d[0].Frames > first.Frames+5 && d[0].Samples > first.Samples && d[0].Time > first.Time,
				fmt.Sprintf("%+v then %+v", first, d)
		})
		p.waitFor("the local preview in the <video> made in localDisplay", func() (bool, string) {
			d := p.display("#localDisplay")
			return len(d) == 1 && d[0].Muted && d[0].Width > 0 && d[0].Time > 0, fmt.Sprintf("%+v", d)
		})
		if d := p.display("#participant2Display"); len(d) != 0 {
			t.Errorf("%s: participant2Display holds %+v, want nothing", p.name, d)
		}
		if s := p.text("#localStatus"); s != "PUBLISHING" {
			t.Errorf("%s: local stream status %q, want PUBLISHING", p.name, s)
		}
	}

	// Chat as the example does it: the text to each participant.
	alice, bob := pages[0], pages[1]
	if err := alice.eval(fmt.Sprintf(`(() => { document.getElementById('message').value = %q;
		document.getElementById('sendMessageBtn').click(); return true; })()`, chatText), nil); err != nil {
		t.Fatal(err)
	}
	bob.waitFor("alice's chat line", func() (bool, string) {
		var lines []string
		_ = bob.eval(`[...document.querySelectorAll('#chat .chat-line')].map(e => e.textContent)`, &lines)
		for _, l := range lines {
			if strings.HasSuffix(l, "alice - "+chatText) {
				return true, ""
			}
		}
		return false, strings.Join(lines, " | ")
	})

	// bob leaves: his <video>s go; alice's display of him empties.
	bob.click("#joinBtn")
	bob.waitFor("left", func() (bool, string) {
		btn, local, remote := bob.text("#joinBtn"), bob.display("#localDisplay"), bob.display("#participant1Display")
		return btn == "Join" && len(local) == 0 && len(remote) == 0 && bob.text("#localStatus") == "UNPUBLISHED",
			fmt.Sprintf("button %q, local %+v, participant1 %+v, status %q", btn, local, remote, bob.text("#localStatus"))
	})
	alice.waitFor("bob gone from participant1", func() (bool, string) {
		n, d := alice.text("#participant1Name"), alice.display("#participant1Display")
		return n == "NONE" && len(d) == 0, fmt.Sprintf("%q %+v", n, d)
	})
	var chat []string
	_ = alice.eval(`[...document.querySelectorAll('#chat .chat-line')].map(e => e.textContent)`, &chat)
	if len(chat) == 0 || !strings.HasSuffix(chat[len(chat)-1], "bob - left") {
		t.Errorf("alice's chat after bob left: %q, want a last line \"… bob - left\"", chat)
	}
	if d := alice.display("#localDisplay"); len(d) != 1 || d[0].Width == 0 {
		t.Errorf("alice's own preview after bob left: %+v", d)
	}
}
