package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley/parley/pkg/server/servertest"
	"github.com/parley/parley/pkg/testmedia"
)

// axePath is axe-core's browser build, installed by scripts/test.sh (npm).
func axePath(t *testing.T) string {
	if p := os.Getenv("PARLEY_AXE"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), ".npm", "node_modules", "axe-core", "axe.min.js")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("axe-core not found (%v): run scripts/test.sh, which installs it with npm, or set PARLEY_AXE", err)
	}
	return p
}

type axeViolation struct {
	ID      string   `json:"id"`
	Impact  string   `json:"impact"`
	Help    string   `json:"help"`
	Targets []string `json:"targets"`
}

// axeCheck injects axe-core into the page and returns its serious and critical violations.
func (p *page) axeCheck(t *testing.T) []axeViolation {
	t.Helper()
	src, err := os.ReadFile(axePath(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](string(src)+";true", chromedp.EvalAwaitPromise)); err != nil {
		t.Fatalf("%s: injecting axe-core: %v", p.name, err)
	}
	var out []axeViolation
	if err := p.eval(`axe.run(document, {resultTypes: ['violations']}).then(r => r.violations
	  .filter(v => v.impact === 'serious' || v.impact === 'critical')
	  .map(v => ({id: v.id, impact: v.impact, help: v.help, targets: v.nodes.slice(0, 5).map(n => n.target.join(' '))})))`, &out); err != nil {
		t.Fatalf("%s: axe.run: %v", p.name, err)
	}
	return out
}

// TestPageLooksAndAccessibility: a four-person meeting (two pages, two Pion
// cameras) with a screen share and a raised hand. On the viewer's page,
// axe-core finds no serious or critical violation at desktop size and at
// phone size; at phone size the controls are a bar at the bottom, the video
// grid has one or two columns and the chat is a closed drawer. With
// PARLEY_SCREENSHOT_DIR set, it saves both views (the README's screenshots).
func TestPageLooksAndAccessibility(t *testing.T) {
	srv := startServer(t, nil)
	room := fmt.Sprintf("look%d", time.Now().UnixNano()%100000)
	servertest.Cameras(t, servertest.WSURL(srv), room, "Team", 2,
		testmedia.Options{Width: 640, Height: 360, FPS: 15, Bitrate: 400_000, Duration: 4 * time.Second})
	a := openPage(t, "Ada", fmt.Sprintf("%s/?room=%s&name=Ada", srv.URL(), room))
	b := openPage(t, "Grace", fmt.Sprintf("%s/?room=%s&name=Grace", srv.URL(), room))
	a.waitDecoding("Grace", "camera", true)
	a.click("#shareScreen")
	for _, who := range []string{"Team-1", "Team-2", "Ada"} {
		b.waitDecoding(who, "camera", true)
	}
	b.waitDecoding("Ada", "screen", false)
	a.click("#handButton")
	if err := a.eval(`(() => { const i = document.querySelector('#chatText'); i.value = 'Slides: https://example.org/deck?p=3 <b>not bold</b>';
	  document.querySelector('#chatSend').click(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	b.waitFor("the chat line with a safe link, and Ada's hand", func() (bool, string) {
		var r struct {
			Href, Rel, Target, Hand string
			Bold                    int
		}
		_ = b.eval(`(() => { const a = document.querySelector('#chatLog .chat-line .text a');
		  const t = document.querySelector('#tiles .tile[data-name="Ada"][data-kind="camera"]');
		  return {Href: a ? a.href : '', Rel: a ? a.rel : '', Target: a ? a.target : '', Bold: document.querySelectorAll('#chatLog b').length,
		    Hand: t ? t.dataset.hand : ''}; })()`, &r)
		if r.Bold > 0 {
			t.Fatalf("chat markup became HTML: %+v", r)
		}
		return r.Href == "https://example.org/deck?p=3" && r.Rel == "noopener noreferrer" && r.Target == "_blank" && r.Hand == "true", fmt.Sprintf("%+v", r)
	})
	// The autoplay hint, when shown, covers no control: a click on Share screen reaches it.
	var hint struct {
		Overlap bool
		Hit     string
	}
	if err := b.eval(`(() => { const h = document.querySelector('#autoplayHint'); h.hidden = false;
	  const a = h.getBoundingClientRect(), c = document.querySelector('.controls').getBoundingClientRect();
	  const s = document.querySelector('#shareScreen').getBoundingClientRect();
	  const hit = document.elementFromPoint(s.left + s.width / 2, s.top + s.height / 2);
	  const r = {Overlap: a.left < c.right && c.left < a.right && a.top < c.bottom && c.top < a.bottom, Hit: hit ? hit.id : ''};
	  h.hidden = true; return r; })()`, &hint); err != nil {
		t.Fatal(err)
	}
	if hint.Overlap || hint.Hit != "shareScreen" {
		t.Errorf("the autoplay hint lies over the controls: %+v", hint)
	}

	dir := os.Getenv("PARLEY_SCREENSHOT_DIR")
	settle := func() { time.Sleep(1500 * time.Millisecond) } // a few frames into every tile
	settle()
	if v := b.axeCheck(t); len(v) > 0 {
		t.Errorf("axe-core at desktop size: %+v", v)
	}
	if dir != "" {
		b.screenshot(filepath.Join(dir, "meeting-desktop.png"))
	}

	// Phone size, portrait.
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	b.waitFor("the phone layout", func() (bool, string) {
		var r struct {
			Bar, VH, Cols float64
			ChatShown     bool
			Overflow      bool
		}
		_ = b.eval(`(() => { const c = document.querySelector('.controls').getBoundingClientRect();
		  const cols = getComputedStyle(document.querySelector('#grid')).gridTemplateColumns.split(' ').length;
		  const chat = document.querySelector('#chatPanel');
		  return {Bar: c.bottom, VH: window.innerHeight, Cols: cols, ChatShown: chat.getBoundingClientRect().height > 0,
		    Overflow: document.documentElement.scrollWidth > window.innerWidth + 1}; })()`, &r)
		return r.Bar >= r.VH-1 && r.Bar <= r.VH+1 && r.Cols >= 1 && r.Cols <= 2 && !r.ChatShown && !r.Overflow, fmt.Sprintf("%+v", r)
	})
	// The raised hand shows at phone size too, on the camera tile or, for
	// a camera off the stage, on its name tile.
	b.waitFor("the raised hand on a tile or name tile at phone size", func() (bool, string) {
		var where []string
		_ = b.eval(`[...document.querySelectorAll('.mark.hand')].filter((m) => m.getClientRects().length > 0)
		  .map((m) => m.closest('.tile:not([hidden]), #speakerStrip .name-tile')).filter((t) => t)
		  .map((t) => t.className + ' ' + t.dataset.name)`, &where)
		return len(where) == 1, fmt.Sprint(where)
	})
	settle()
	if v := b.axeCheck(t); len(v) > 0 {
		t.Errorf("axe-core at phone size: %+v", v)
	}
	if dir != "" {
		b.screenshot(filepath.Join(dir, "meeting-phone.png"))
	}
	if e := b.text("#error"); e != "" {
		t.Errorf("the page shows an error: %q", strings.TrimSpace(e))
	}
}
