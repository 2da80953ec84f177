package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/server/servertest"
	"github.com/parley/parley/pkg/signaling"
)

// recordAnswers keeps the size of every subscribe answer the page sends.
const recordAnswers = `(() => {
  window.__answerBytes = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function(data) {
    try { if (JSON.parse(data).type === 'answer') window.__answerBytes.push(data.length); } catch { /* not JSON */ }
    return send.call(this, data);
  };
})();`

// TestBrowserDecodesRoomOf45Cameras: a Chromium page (the conference page)
// joins a room where 45 Pion participants publish small cameras (VP8 160x90
// at 10 fps and Opus): its subscribe answer is accepted and it decodes video
// and receives audio from every one of them. (A room of 40 used to fail: the
// browser's answer was over the 64 KiB frame limit, refused, and the page
// never got media.)
func TestBrowserDecodesRoomOf45Cameras(t *testing.T) {
	const n = 45
	srv := startServer(t, func(c *server.Config) {
		// Every camera comes from 127.0.0.1 here, not from an address of its own.
		c.Signaling.AddressLimits = signaling.AddressLimits{}
	})
	room := fmt.Sprintf("big%d", time.Now().UnixNano()%100000)
	start := time.Now()
	cams := servertest.Cameras(t, servertest.WSURL(srv), room, "cam", n, servertest.SmallCamera)
	t.Logf("%d cameras publishing after %v", n, time.Since(start).Round(time.Millisecond))

	p := openPage(t, "viewer", "about:blank")
	start = time.Now()
	if err := chromedp.Do(p.ctx,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, cdppage.AddScriptToEvaluateOnNewDocument,
				cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: recordAnswers})
			return err
		}),
		// The gallery view: every camera on the stage (by default a page shows
		// the 8 most recent speakers' video and the others as name tiles).
		chromedp.Navigate(fmt.Sprintf("%s/?room=%s&name=viewer&view=all", srv.URL(), room)),
	); err != nil {
		t.Fatal(err)
	}

	names := make([]string, 0, n)
	for _, c := range cams {
		names = append(names, c.Name)
	}
	// every reads the tiles until each camera's tile satisfies ok.
	every := func(what string, ok func(tileMedia) bool) map[string]tileMedia {
		t.Helper()
		var got map[string]tileMedia
		p.waitFor(what, func() (bool, string) {
			got = map[string]tileMedia{}
			for _, tm := range p.tiles() {
				if tm.Kind == "camera" {
					got[tm.Name] = tm
				}
			}
			var missing []string
			for _, name := range names {
				if tm, shown := got[name]; !shown || !ok(tm) {
					missing = append(missing, fmt.Sprintf("%s%+v", name, got[name]))
				}
			}
			if len(missing) > 5 {
				missing = append(missing[:5], fmt.Sprintf("… %d more", len(missing)-5))
			}
			return len(missing) == 0, fmt.Sprintf("%d/%d tiles, not yet: %s; error: %q", len(got), n,
				strings.Join(missing, " "), p.text("#error"))
		})
		return got
	}
	first := every("video and audio from all 45 cameras", func(tm tileMedia) bool { return tm.Frames > 0 && tm.Samples > 0 })
	t.Logf("all %d cameras decoded %v after the page opened", n, time.Since(start).Round(time.Millisecond))
	every("more frames from all 45 cameras", func(tm tileMedia) bool {
		return tm.Frames > first[tm.Name].Frames+5 && tm.Samples > first[tm.Name].Samples
	})

	var sizes []int
	if err := p.eval(`window.__answerBytes`, &sizes); err != nil {
		t.Fatal(err)
	}
	t.Logf("subscribe answers sent by the page (bytes): %v", sizes)
	limit := cams[0].Client.Limits().MaxAnswerBytes
	if len(sizes) == 0 || slices.Max(sizes) > limit {
		t.Errorf("answers %v: want some, each within the answer limit %d", sizes, limit)
	}
	if e := p.text("#error"); e != "" {
		t.Errorf("the page shows an error: %q", e)
	}
}
