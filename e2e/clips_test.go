package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/parley/parley/pkg/clips"
	"github.com/parley/parley/pkg/server"
)

// pageClips is what a page's media-message panel shows and has played.
type pageClips struct {
	Rows []struct {
		ID     string `json:"id"`
		Author string `json:"author"`
		Own    bool   `json:"own"`
		Delete bool   `json:"delete"`
		Text   string `json:"text"`
	} `json:"rows"`
	Played    []string `json:"played"`
	Recording bool     `json:"recording"`
	Attached  bool     `json:"attached"`
	Status    string   `json:"status"`
	Error     string   `json:"error"`
}

const readClips = `(() => {
  const c = window.parley && window.parley.clips;
  if (!c) return {rows: [], played: [], attached: false};
  const err = document.getElementById('error');
  return {
    rows: [...document.querySelectorAll('#clips .clip')].map(li => ({id: li.dataset.clip,
      author: li.querySelector('.clip-author').textContent, own: li.classList.contains('own'),
      delete: !!li.querySelector('.clip-delete'), text: li.innerText})),
    played: c.played.slice(), recording: !!c.recording, attached: !!c.access, status: c.status.textContent,
    error: err && !err.hidden ? err.textContent : '',
  };
})()`

func (p *page) clips() pageClips {
	var out pageClips
	if err := p.eval(readClips, &out); err != nil {
		p.t.Logf("%s: reading clips: %v", p.name, err)
	}
	return out
}

func (p *page) waitClips(what string, cond func(pageClips) bool) pageClips {
	p.t.Helper()
	var last pageClips
	p.waitFor(what, func() (bool, string) {
		last = p.clips()
		return cond(last), fmt.Sprintf("%+v", last)
	})
	return last
}

// key presses (down) or releases the spacebar in the page.
func (p *page) space(down bool) {
	p.t.Helper()
	typ := input.DispatchKeyEventTypeKeyUp
	if down {
		typ = input.DispatchKeyEventTypeKeyDown
	}
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, input.DispatchKeyEvent, input.DispatchKeyEventParams{Type: typ, Key: " ", Code: "Space",
			WindowsVirtualKeyCode: 32})
		return err
	})); err != nil {
		p.t.Fatalf("%s: space: %v", p.name, err)
	}
}

// TestClipsInBrowsers: two pages in a room whose preset uploads at once.
// A records a clip with the Record button and another by holding the
// spacebar (the fake microphone); each uploads, and B gets CLIP_ADDED and
// plays it to its end by itself; "from here" on B plays both in order; A
// deletes its first clip and it disappears from B, which has no Delete on
// A's clips.
func TestClipsInBrowsers(t *testing.T) {
	lim := clips.DefaultLimits()
	lim.OnRecorded = clips.OnRecordedUpload
	lim.MaxClipSec = 10
	lim.AllowVideo = false
	srv := startServer(t, func(c *server.Config) {
		c.Clips = &server.ClipsConfig{Dir: t.TempDir(), Limits: func(string) clips.Limits { return lim }}
	})
	room := fmt.Sprintf("clips%d", time.Now().UnixNano()%100000)
	a := openPage(t, "A", fmt.Sprintf("%s/?room=%s&name=A&publish=0", srv.URL(), room))
	b := openPage(t, "B", fmt.Sprintf("%s/?room=%s&name=B&publish=0", srv.URL(), room))
	for _, p := range []*page{a, b} {
		p.waitClips("the clips panel", func(c pageClips) bool { return c.Attached })
	}

	// The Record button: click, 1.5 s, click.
	a.click("#clips .clips-record")
	a.waitClips("recording", func(c pageClips) bool { return c.Recording })
	time.Sleep(1500 * time.Millisecond)
	a.click("#clips .clips-record")
	first := b.waitClips("the first clip played to its end on B", func(c pageClips) bool {
		return len(c.Rows) == 1 && len(c.Played) == 1 && c.Played[0] == c.Rows[0].ID
	})
	id1 := first.Rows[0].ID
	if first.Rows[0].Author != "A" || first.Rows[0].Own || first.Rows[0].Delete {
		t.Errorf("B's row of A's clip: %+v", first.Rows[0])
	}

	// Push-to-talk: hold the spacebar 1.5 s.
	if err := a.eval(`(document.activeElement && document.activeElement.blur(), true)`, nil); err != nil {
		t.Fatal(err)
	}
	a.space(true)
	a.waitClips("push-to-talk recording", func(c pageClips) bool { return c.Recording })
	time.Sleep(1500 * time.Millisecond)
	a.space(false)
	second := b.waitClips("the second clip played on B", func(c pageClips) bool {
		return len(c.Rows) == 2 && len(c.Played) == 2 && c.Played[1] == c.Rows[1].ID
	})
	id2 := second.Rows[1].ID
	own := a.waitClips("A's own rows", func(c pageClips) bool { return len(c.Rows) == 2 })
	if !own.Rows[0].Own || !own.Rows[0].Delete || len(own.Played) != 0 {
		t.Errorf("A (author) shows %+v; its own clips must not play by themselves", own)
	}
	// The server's durations: about what was held (the fake microphone's beeps, Opus in WebM).
	var durations []float64
	if err := a.eval(`window.parley.room.getClips().then(l => l.map(c => c.durationMs() / 1000))`, &durations); err != nil {
		t.Fatal(err)
	}
	t.Logf("clip durations as probed: %v s; B's rows: %q, %q", durations, second.Rows[0].Text, second.Rows[1].Text)
	for _, d := range durations {
		if d < 1 || d > 3 {
			t.Errorf("a clip held 1.5 s lasts %.2f s", d)
		}
	}

	// "From here" on the first clip plays both, in order.
	b.click(fmt.Sprintf(`#clips [data-clip="%s"] .clip-from`, id1))
	b.waitClips("both clips played again, in order", func(c pageClips) bool {
		return len(c.Played) == 4 && c.Played[2] == id1 && c.Played[3] == id2
	})

	// The author deletes the first clip; it goes from B.
	a.click(fmt.Sprintf(`#clips [data-clip="%s"] .clip-delete`, id1))
	b.waitClips("the deleted clip gone from B", func(c pageClips) bool {
		return len(c.Rows) == 1 && c.Rows[0].ID == id2
	})
	for _, p := range []*page{a, b} {
		if c := p.clips(); c.Error != "" && !strings.Contains(c.Error, "NotAllowed") {
			t.Errorf("%s shows an error: %s", p.name, c.Error)
		}
	}
}
