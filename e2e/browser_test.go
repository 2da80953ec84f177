// Package e2e drives the conference page in headless Chromium (Debian's
// chromium package) against an in-process Parley server, with fake camera,
// microphone and screen, and asserts on the pages' own WebRTC statistics.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/server/servertest"
	"github.com/parley/parley/webapp"
)

// chromiumPath finds Debian's Chromium.
func chromiumPath(t *testing.T) string {
	for _, p := range []string{os.Getenv("PARLEY_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	t.Fatal("Chromium not found: install Debian's chromium package (the README's test command does) or set PARLEY_CHROMIUM")
	return ""
}

// startServer runs a Parley server with the web app on loopback.
func startServer(t *testing.T, tweak func(*server.Config)) *server.Server {
	t.Helper()
	return servertest.Start(t, func(c *server.Config) {
		c.Web = webapp.FS
		if tweak != nil {
			tweak(c)
		}
	})
}

// recordPCs keeps every RTCPeerConnection the page makes, so the test can read
// their statistics whatever the app does with them.
const recordPCs = `(() => {
  const Orig = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = function(...args) {
    const pc = new Orig(...args);
    window.__pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Orig.prototype;
  Object.setPrototypeOf(window.RTCPeerConnection, Orig);
})();`

// page is one browser with one tab.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context
}

// openPage starts a Chromium of its own (own profile) and opens url.
func openPage(t *testing.T, name, url string, extraFlags ...chromedp.ExecAllocatorOption) *page {
	t.Helper()
	return openPageScripts(t, name, url, nil, extraFlags...)
}

// openPageScripts is openPage with more scripts run before each document's own.
func openPageScripts(t *testing.T, name, url string, scripts []string, extraFlags ...chromedp.ExecAllocatorOption) *page {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 800),
	}
	opts = append(opts, extraFlags...)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		acancel()
	})
	p := &page{t: t, name: name, ctx: ctx}
	err := chromedp.Do(ctx,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, cdppage.AddScriptToEvaluateOnNewDocument,
				cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: recordPCs})
			for _, src := range scripts {
				if err == nil {
					_, err = chromedp.Call(ctx, cdppage.AddScriptToEvaluateOnNewDocument,
						cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: src})
				}
			}
			return err
		}),
		chromedp.Navigate(url),
	)
	if err != nil {
		t.Fatalf("%s: open %s: %v", name, url, err)
	}
	return p
}

// eval runs JavaScript (awaiting a promise) and decodes its JSON result into out.
func (p *page) eval(js string, out any) error {
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	wrapped := "(async () => JSON.stringify(await (" + js + ")))()"
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](wrapped, chromedp.EvalAwaitPromise))
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal([]byte(raw), out)
}

// waitFor polls cond until it is true or 45 s pass; what says what it waits for.
func (p *page) waitFor(what string, cond func() (bool, string)) {
	p.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(300 * time.Millisecond)
	}
	p.t.Fatalf("%s: timed out waiting for %s; last seen: %s", p.name, what, last)
}

// remoteMedia reads, for each remote tile, what the page decoded from it.
type tileMedia struct {
	Name    string  `json:"name"`
	Kind    string  `json:"kind"`
	Stream  string  `json:"stream"`
	Frames  float64 `json:"frames"`
	Samples float64 `json:"samples"`
	Text    string  `json:"text"`
}

const readTiles = `(async () => {
  const stats = new Map();
  for (const pc of (window.__pcs || [])) {
    if (pc.connectionState === 'closed') continue;
    const report = await pc.getStats();
    report.forEach(s => { if (s.type === 'inbound-rtp' && s.trackIdentifier) stats.set(s.trackIdentifier, s); });
  }
  const out = [];
  document.querySelectorAll('#tiles .tile').forEach(tile => {
    const v = tile.querySelector('video');
    const ms = v && v.srcObject;
    let frames = 0, samples = 0;
    if (ms) {
      for (const tr of ms.getTracks()) {
        const s = stats.get(tr.id);
        if (!s) continue;
        if (tr.kind === 'video') frames += s.framesDecoded || 0;
        else samples += s.totalSamplesReceived || 0;
      }
    }
    out.push({name: tile.dataset.name, kind: tile.dataset.kind, stream: tile.dataset.stream,
      frames, samples, text: tile.innerText.slice(0, 200)});
  });
  return out;
})()`

func (p *page) tiles() []tileMedia {
	var out []tileMedia
	if err := p.eval(readTiles, &out); err != nil {
		p.t.Logf("%s: reading tiles: %v", p.name, err)
	}
	return out
}

func find(tiles []tileMedia, name, kind string) (tileMedia, bool) {
	for _, tm := range tiles {
		if tm.Name == name && tm.Kind == kind {
			return tm, true
		}
	}
	return tileMedia{}, false
}

// waitDecoding waits until the page decodes video (and, if audio, receives
// audio) from name's stream of the given kind, and the decoded frame count grows.
func (p *page) waitDecoding(name, kind string, audio bool) {
	p.t.Helper()
	var first tileMedia
	p.waitFor(fmt.Sprintf("video from %s (%s)", name, kind), func() (bool, string) {
		tm, ok := find(p.tiles(), name, kind)
		first = tm
		return ok && tm.Frames > 0 && (!audio || tm.Samples > 0), fmt.Sprintf("%+v", tm)
	})
	p.waitFor(fmt.Sprintf("more frames from %s (%s)", name, kind), func() (bool, string) {
		tm, _ := find(p.tiles(), name, kind)
		return tm.Frames > first.Frames+5 && (!audio || tm.Samples > first.Samples), fmt.Sprintf("%+v then %+v", first, tm)
	})
}

func (p *page) text(sel string) string {
	var s string
	_ = p.eval(fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel), &s)
	return strings.TrimSpace(s)
}

func (p *page) click(sel string) {
	p.t.Helper()
	if err := p.eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) throw new Error('no %s'); e.click(); return true; })()`, sel, sel), nil); err != nil {
		p.t.Fatalf("%s: click %s: %v", p.name, sel, err)
	}
}

func (p *page) screenshot(path string) {
	buf, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Logf("screenshot: %v", err)
		return
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		p.t.Logf("screenshot: %v", err)
	}
}
