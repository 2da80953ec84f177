package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestPageStopsLayersNobodyReceives: two pages with 1280x720 cameras (three
// simulcast layers). When b shows a's camera in a small tile, the server
// tells a (PUBLISH_LAYERS) that nobody receives its two upper layers, and
// a's browser stops encoding them (its outbound-rtp for h and f encodes no
// frame) while the lowest goes on and b decodes it; when b's tile is large
// again, a encodes its top layer again and b decodes it at 1280.
func TestPageStopsLayersNobodyReceives(t *testing.T) {
	srv := startServer(t, nil)
	origin := chromedp.Flag("unsafely-treat-insecure-origin-as-secure", srv.URL())
	camera := chromedp.Flag("use-fake-device-for-media-stream", "fps=15")
	room := fmt.Sprintf("dyna%d", time.Now().UnixNano()%100000)
	url := func(name string) string { return fmt.Sprintf("%s/?room=%s&name=%s", srv.URL(), room, name) }
	a := openPage(t, "a", url("a"), origin, camera, chromedp.WindowSize(1920, 1080))
	b := openPage(t, "b", url("b"), origin, camera, chromedp.WindowSize(1920, 1080))
	a.waitDecoding("b", "camera", true)
	b.waitDecoding("a", "camera", true)
	b.waitFor("a's top layer (1280 wide)", func() (bool, string) {
		v := b.media().Remote["a"].Video
		return v.Width == 1280, fmt.Sprintf("%+v", v)
	})

	// frames reads how many frames a encoded per layer over a second.
	frames := func() map[string]float64 {
		m1 := a.media().Layers
		time.Sleep(time.Second)
		m2 := a.media().Layers
		out := map[string]float64{}
		for rid, l := range m2 {
			out[rid] = l.Frames - m1[rid].Frames
		}
		return out
	}
	if f := frames(); f["q"] == 0 || f["h"] == 0 || f["f"] == 0 {
		t.Fatalf("a encodes %v frames a second per layer before any tile is small; want all three", f)
	}

	aTile := tileVideo("a", "camera")
	shrinkTile(t, b, aTile)
	small := time.Now()
	a.waitFor("h and f no longer encoded", func() (bool, string) {
		f := frames()
		return f["h"] == 0 && f["f"] == 0 && f["q"] > 0, fmt.Sprintf("frames a second per layer %v", f)
	})
	t.Logf("a stopped encoding h and f %v after b's tile shrank", time.Since(small).Round(100*time.Millisecond))
	b.waitFor("a's lowest layer decoded in the small tile", func() (bool, string) {
		v1 := b.media().Remote["a"].Video
		time.Sleep(time.Second)
		v2 := b.media().Remote["a"].Video
		return v2.Width == 320 && v2.Frames > v1.Frames, fmt.Sprintf("%+v", v2)
	})

	if err := b.eval(fmt.Sprintf(`(() => { const v = document.querySelector(%q);
	  v.style.width = ''; v.style.height = ''; v.style.flex = ''; return true; })()`, aTile), nil); err != nil {
		t.Fatal(err)
	}
	large := time.Now()
	b.waitFor("a's top layer again (1280 wide)", func() (bool, string) {
		v := b.media().Remote["a"].Video
		return v.Width == 1280, fmt.Sprintf("%+v", v)
	})
	t.Logf("b decodes a at 1280 again %v after its tile grew", time.Since(large).Round(100*time.Millisecond))
	if f := frames(); f["f"] == 0 {
		t.Errorf("a encodes no f frames after b's tile grew: %v", f)
	}
}
