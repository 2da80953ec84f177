// TestWeakLinkPage is issue 13's browser test of a weak downlink: three
// pages publish with simulcast, one of them behind a 400 kbit/s link
// (docs/shaped-links.md). Run it alone with
//
//	go test -race -run '^TestWeakLinkPage$' -v ./e2e
//
// It failed for a long time on the weak page's freezes (its second video
// paused for 2.6–10 s in 5 runs of 6): probes at twice the estimate cut the
// estimate below what the link carries after each probe. pkg/bwe's probes
// now aim just above the limit they found (TestProbesOnAWeakLink).

package e2e

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley/parley/pkg/server"
)

// weakLink is a network namespace joined to the root namespace by a veth
// pair, whose root side's egress (towards the namespace) is shaped with tbf:
// a page inside has a weak downlink (docs/shaped-links.md).
type weakLink struct {
	t        *testing.T
	ns       string // namespace
	rootIf   string // veth end in the root namespace (shaped)
	serverIP string // root side's address
	pageIP   string // namespace side's address
	wrapper  string // executable: Chromium inside the namespace
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newWeakLink makes the namespace and veth pair (names start with "weak",
// addresses in a random /24 of 198.18.0.0/15, which exist only here), and
// removes them when the test ends, failed or not.
func newWeakLink(t *testing.T, rate string) *weakLink {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the weak-link test needs root (network namespaces, tc)")
	}
	var r [2]byte
	_, _ = rand.Read(r[:])
	tag := fmt.Sprintf("%d%02x", os.Getpid()%100000, r[0])
	net := fmt.Sprintf("198.%d.%d", 18+int(r[1]&1), r[1])
	l := &weakLink{t: t, ns: "weakn" + tag, rootIf: "weakr" + tag,
		serverIP: net + ".1", pageIP: net + ".2"}
	nsIf := "weakp" + tag
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", l.rootIf).Run()
		_ = exec.Command("ip", "netns", "del", l.ns).Run()
	})
	run(t, "ip", "netns", "add", l.ns)
	run(t, "ip", "link", "add", l.rootIf, "type", "veth", "peer", "name", nsIf)
	run(t, "ip", "link", "set", nsIf, "netns", l.ns)
	run(t, "sysctl", "-q", "net.ipv6.conf."+l.rootIf+".disable_ipv6=1")
	run(t, "ip", "netns", "exec", l.ns, "sysctl", "-q", "net.ipv6.conf."+nsIf+".disable_ipv6=1")
	run(t, "ip", "addr", "add", l.serverIP+"/24", "dev", l.rootIf)
	run(t, "ip", "link", "set", l.rootIf, "up")
	run(t, "ip", "-n", l.ns, "addr", "add", l.pageIP+"/24", "dev", nsIf)
	run(t, "ip", "-n", l.ns, "link", "set", nsIf, "up")
	run(t, "ip", "-n", l.ns, "link", "set", "lo", "up")
	run(t, "tc", "qdisc", "replace", "dev", l.rootIf, "root", "tbf", "rate", rate, "burst", "16kbit", "latency", "400ms")
	l.wrapper = filepath.Join(t.TempDir(), "chromium-in-"+l.ns)
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", l.ns, chromiumPath(t))
	if err := os.WriteFile(l.wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return l
}

// qdiscStats is what the shaper was offered: bytes it sent on, packets it
// dropped (its queue was full) and what waits in it.
type qdiscStats struct {
	SentBytes, SentPkts, Dropped, BacklogBytes float64
}

var qdiscLine = regexp.MustCompile(`Sent (\d+) bytes (\d+) pkt \(dropped (\d+),[^\n]*\n\s*backlog (\d+)b`)

func (l *weakLink) qdisc() qdiscStats {
	l.t.Helper()
	out := run(l.t, "tc", "-s", "qdisc", "show", "dev", l.rootIf)
	m := qdiscLine.FindStringSubmatch(out)
	if m == nil {
		l.t.Fatalf("tc -s qdisc: no counters in %q", out)
	}
	var s qdiscStats
	for i, p := range []*float64{&s.SentBytes, &s.SentPkts, &s.Dropped, &s.BacklogBytes} {
		*p, _ = strconv.ParseFloat(m[i+1], 64)
	}
	return s
}

// offered is the bytes the server sent towards the page: what the shaper
// sent on, what it holds, and its drops (at the mean packet size).
func (s qdiscStats) offered() float64 {
	mean := 0.0
	if s.SentPkts > 0 {
		mean = s.SentBytes / s.SentPkts
	}
	return s.SentBytes + s.BacklogBytes + s.Dropped*mean
}

// mediaStats is a page's WebRTC statistics: per remote participant (by tile
// name) its camera's video and audio, and per layer what it publishes.
type mediaStats struct {
	Remote map[string]struct {
		Video inboundStats `json:"video"`
		Audio inboundStats `json:"audio"`
	} `json:"remote"`
	Layers map[string]struct {
		KeyFrames float64 `json:"keyFramesEncoded"`
		PLIs      float64 `json:"pliCount"`
		Width     float64 `json:"frameWidth"`
		Frames    float64 `json:"framesEncoded"`
		Limit     string  `json:"qualityLimitationReason"`
	} `json:"layers"`
	Capture struct {
		Width  int `json:"width"`
		Height int `json:"height"`
	} `json:"capture"`
	Encodings int `json:"encodings"`
}

type inboundStats struct {
	Width          float64 `json:"frameWidth"`
	Frames         float64 `json:"framesDecoded"`
	Bytes          float64 `json:"bytesReceived"`
	Packets        float64 `json:"packetsReceived"`
	Concealed      float64 `json:"concealedSamples"`
	Samples        float64 `json:"totalSamplesReceived"`
	Freezes        float64 `json:"freezeCount"`
	FreezeDuration float64 `json:"totalFreezesDuration"`
	PLIs           float64 `json:"pliCount"`
	NACKs          float64 `json:"nackCount"`
	Lost           float64 `json:"packetsLost"`
}

const readMedia = `(async () => {
  const byTrack = new Map(), layers = {};
  for (const pc of (window.__pcs || [])) {
    if (pc.connectionState === 'closed') continue;
    (await pc.getStats()).forEach(s => {
      if (s.type === 'inbound-rtp' && s.trackIdentifier) byTrack.set(s.trackIdentifier, s);
      if (s.type === 'outbound-rtp' && s.kind === 'video') layers[s.rid || '-'] = s;
    });
  }
  const remote = {};
  document.querySelectorAll('#tiles .tile[data-kind="camera"]').forEach(tile => {
    const v = tile.querySelector('video'), ms = v && v.srcObject;
    if (!ms) return;
    const r = remote[tile.dataset.name] = {video: {}, audio: {}};
    for (const tr of ms.getTracks()) if (byTrack.has(tr.id)) r[tr.kind] = byTrack.get(tr.id);
  });
  let capture = {}, encodings = 0;
  const room = window.parley && window.parley.room;
  const cam = room && room.getLocalStreams().find(s => s.kind() === 'camera');
  if (cam) {
    const tr = cam.getMediaStream().getVideoTracks()[0];
    if (tr) capture = tr.getSettings();
    const sender = cam.getPeerConnection().getSenders().find(x => x.track && x.track.kind === 'video');
    if (sender) encodings = sender.getParameters().encodings.length;
  }
  return {remote, layers, capture: {width: capture.width || 0, height: capture.height || 0}, encodings};
})()`

func (p *page) media() mediaStats {
	p.t.Helper()
	var m mediaStats
	if err := p.eval(readMedia, &m); err != nil {
		p.t.Fatalf("%s: reading stats: %v", p.name, err)
	}
	return m
}

// TestWeakLinkPage (issue 13): three Chromium pages publish 1280x720 cameras
// with three simulcast layers; one page runs in a namespace of its own with its
// downlink shaped to 400 kbit/s.
//   - The weak page decodes the others' audio without gaps (under 5 %
//     concealed) and their video at a lower layer, with no freeze over 2 s
//     after its first 10 s.
//   - The two others decode each other at the top layer (1280 wide), and
//     their publishers encode no more top-layer keyframes while the weak page
//     watches than over the same time without it.
//   - The weak page's link is offered about its capacity, not more (no
//     retransmission storm): bytes towards it on the veth against 400 kbit/s.
//   - A page that shrinks a tile receives a smaller layer for it; a hidden
//     tile receives no video bytes until it is shown again.
func TestWeakLinkPage(t *testing.T) {
	const rate = 400_000 // bit/s
	link := newWeakLink(t, "400kbit")
	srv := startServer(t, func(c *server.Config) {
		c.Addr = link.serverIP + ":0"
		c.Media.ListenIP = link.serverIP
	})
	origin := chromedp.Flag("unsafely-treat-insecure-origin-as-secure", srv.URL())
	// A 1280x720 fake camera at 30 fps (roomapi.js asks for 1280x720 and
	// offers three layers from 960x540 up); a window large enough that a
	// remote tile needs the top layer.
	camera := chromedp.Flag("use-fake-device-for-media-stream", "fps=15")
	room := fmt.Sprintf("weak%d", time.Now().UnixNano()%100000)
	url := func(name string) string { return fmt.Sprintf("%s/?room=%s&name=%s", srv.URL(), room, name) }

	good := []*page{
		openPage(t, "a", url("a"), origin, camera, chromedp.WindowSize(1920, 1080)),
		openPage(t, "b", url("b"), origin, camera, chromedp.WindowSize(1920, 1080)),
	}
	good[0].waitDecoding("b", "camera", true)
	good[1].waitDecoding("a", "camera", true)
	for _, p := range good {
		m := p.media()
		t.Logf("%s: capture %dx%d, %d encodings", p.name, m.Capture.Width, m.Capture.Height, m.Encodings)
		if m.Capture.Width != 1280 || m.Capture.Height != 720 || m.Encodings != 3 {
			t.Fatalf("%s captures %dx%d with %d simulcast encodings; want 1280x720 with 3", p.name, m.Capture.Width, m.Capture.Height, m.Encodings)
		}
	}
	other := map[string]string{"a": "b", "b": "a"}
	topLayer := func(what string) {
		for _, p := range good {
			p.waitFor(what, func() (bool, string) {
				v := p.media().Remote[other[p.name]].Video
				return v.Width == 1280, fmt.Sprintf("%+v", v)
			})
		}
	}
	topLayer("the other's top layer (1280 wide)")

	// keyframes reads, for each good publisher, the keyframes it encoded
	// and the keyframe requests (PLIs) it got, per layer, and the requests
	// the other good page made for its video (which the server passes on to
	// the layer that page receives).
	type keyframeCount struct {
		encoded, asked map[string]float64
		askedByOther   float64
	}
	keyframes := func() map[string]keyframeCount {
		out := map[string]keyframeCount{}
		ms := map[string]mediaStats{}
		for _, p := range good {
			ms[p.name] = p.media()
		}
		for _, p := range good {
			m := ms[p.name]
			c := keyframeCount{encoded: map[string]float64{}, asked: map[string]float64{},
				askedByOther: ms[other[p.name]].Remote[p.name].Video.PLIs}
			var desc []string
			for rid, l := range m.Layers {
				c.encoded[rid], c.asked[rid] = l.KeyFrames, l.PLIs
				desc = append(desc, fmt.Sprintf("%s: %.0f wide, %.0f keyframes, %.0f PLIs, limited by %s", rid, l.Width, l.KeyFrames, l.PLIs, l.Limit))
			}
			slices.Sort(desc)
			out[p.name] = c
			v := m.Remote[other[p.name]].Video
			t.Logf("%s: layers %v; receives %s %.0f wide, PLIs %.0f, NACKs %.0f, lost %.0f, freezes %.0f",
				p.name, desc, other[p.name], v.Width, v.PLIs, v.NACKs, v.Lost, v.Freezes)
		}
		return out
	}
	// topRequests is, per good publisher, the keyframe requests its top
	// layer got between two reads that the other good page did not make
	// itself: those the server made (a subscriber's layer switch) or passed
	// on for someone else; and the top-layer keyframes it encoded.
	topRequests := func(a, b map[string]keyframeCount) (asked, encoded map[string]float64) {
		asked, encoded = map[string]float64{}, map[string]float64{}
		for n := range b {
			own := b[n].askedByOther - a[n].askedByOther
			asked[n] = max(0, b[n].asked["f"]-a[n].asked["f"]-own)
			encoded[n] = b[n].encoded["f"] - a[n].encoded["f"]
		}
		return asked, encoded
	}
	const window = 20 * time.Second
	time.Sleep(3 * time.Second) // past the start's keyframes
	k0 := keyframes()
	time.Sleep(window)
	baseAsked, baseEncoded := topRequests(k0, keyframes())
	t.Logf("two pages, over %v: top-layer keyframe requests not from the other good page %v, top-layer keyframes encoded %v", window, baseAsked, baseEncoded)

	// The weak page, inside the namespace.
	w := openPage(t, "weak", url("weak"), origin, camera, chromedp.ExecPath(link.wrapper))
	w.waitDecoding("a", "camera", true)
	w.waitDecoding("b", "camera", true)
	joined := time.Now()
	time.Sleep(10 * time.Second)

	// Over the window: the weak page's decoding (polled for gaps), the good
	// publishers' keyframes, the bytes offered to the weak link.
	k1 := keyframes()
	q1 := link.qdisc()
	w1 := w.media()
	start := time.Now()
	lastFrames := map[string]float64{}
	lastChange := map[string]time.Time{}
	longest := map[string]time.Duration{}
	for _, n := range []string{"a", "b"} {
		lastFrames[n] = w1.Remote[n].Video.Frames
		lastChange[n] = start
	}
	var w2 mediaStats
	var trace []string // the server's estimate for the weak page, each second
	var lastTrace time.Time
	for time.Since(start) < window {
		time.Sleep(250 * time.Millisecond)
		w2 = w.media()
		now := time.Now()
		for _, st := range srv.Media().Subscribers() {
			if st.Participant == "weak" && now.Sub(lastTrace) >= time.Second {
				e := st.Estimate
				lastTrace = now
				trace = append(trace, fmt.Sprintf("%s: estimate %d, acked %d, loss %.3f, %s, overuses %d, probes %d, padding packets %d",
					now.Sub(start).Round(100*time.Millisecond), e.Target, e.Acked, e.Loss, e.Usage, e.Overuses, e.Probes, st.Probes))
			}
		}
		for _, n := range []string{"a", "b"} {
			if f := w2.Remote[n].Video.Frames; f > lastFrames[n] {
				lastFrames[n], lastChange[n] = f, now
			}
			longest[n] = max(longest[n], now.Sub(lastChange[n]))
		}
	}
	elapsed := time.Since(start)
	q2 := link.qdisc()
	k2 := keyframes()
	weakAsked, weakEncoded := topRequests(k1, k2)
	t.Logf("with the weak page, over %v from %v after it decoded: top-layer keyframe requests not from the other good page %v, top-layer keyframes encoded %v",
		elapsed.Round(time.Millisecond), start.Sub(joined).Round(time.Second), weakAsked, weakEncoded)

	for _, n := range []string{"a", "b"} {
		v1, v2 := w1.Remote[n].Video, w2.Remote[n].Video
		a1, a2 := w1.Remote[n].Audio, w2.Remote[n].Audio
		concealed := (a2.Concealed - a1.Concealed) / max(1, a2.Samples-a1.Samples)
		t.Logf("weak page, %s: video %.0f kbit/s, audio %.0f kbit/s (payload and headers above UDP)", n,
			(v2.Bytes-v1.Bytes+12*(v2.Packets-v1.Packets))*8/elapsed.Seconds()/1000, (a2.Bytes-a1.Bytes+12*(a2.Packets-a1.Packets))*8/elapsed.Seconds()/1000)
		t.Logf("weak page, %s: %.0f wide, %.0f frames in %v (longest gap %v), freezes %.0f (%.1f s), PLIs %.0f, NACKs %.0f, lost %.0f; audio %.2f %% concealed",
			n, v2.Width, v2.Frames-v1.Frames, elapsed.Round(time.Millisecond), longest[n].Round(time.Millisecond),
			v2.Freezes-v1.Freezes, v2.FreezeDuration-v1.FreezeDuration, v2.PLIs-v1.PLIs, v2.NACKs-v1.NACKs, v2.Lost-v1.Lost, 100*concealed)
		if concealed >= 0.05 {
			t.Errorf("weak page: %s's audio %.1f %% concealed; want under 5 %%", n, 100*concealed)
		}
		if v2.Width == 0 || v2.Width >= 1280 || v2.Frames <= v1.Frames {
			t.Errorf("weak page: %s's video %.0f wide, %.0f frames decoded over the window; want a lower layer, decoding", n, v2.Width, v2.Frames-v1.Frames)
		}
		if longest[n] > 2*time.Second {
			t.Errorf("weak page: %s's video froze for %v; the server's estimate for the weak page over the window:\n%s",
				n, longest[n].Round(time.Millisecond), strings.Join(trace, "\n"))
		}
	}
	for _, p := range good {
		v := p.media().Remote[other[p.name]].Video
		if v.Width != 1280 {
			t.Errorf("%s decodes %s %.0f wide with the weak page in the room; want 1280", p.name, other[p.name], v.Width)
		}
		if weakAsked[p.name] > baseAsked[p.name] {
			t.Errorf("%s's top layer was asked for %.0f keyframes (beyond the other good page's own requests) with the weak page watching, %.0f without it (same %v)",
				p.name, weakAsked[p.name], baseAsked[p.name], window)
		}
	}
	offered := (q2.offered() - q1.offered()) * 8 / elapsed.Seconds()
	t.Logf("weak link: offered %.0f kbit/s (capacity %d), sent %.0f kbit/s, %.0f packets dropped over %v",
		offered/1000, rate/1000, (q2.SentBytes-q1.SentBytes)*8/elapsed.Seconds()/1000, q2.Dropped-q1.Dropped, elapsed.Round(time.Millisecond))
	if offered > 1.25*rate {
		t.Errorf("the weak link was offered %.0f kbit/s; its capacity is %d", offered/1000, rate/1000)
	}

	// Page a shrinks b's tile: it receives a smaller layer for it.
	a := good[0]
	bTile := tileVideo("b", "camera")
	shrinkTile(t, a, bTile)
	a.waitFor("a smaller layer for the shrunk tile", func() (bool, string) {
		v := a.media().Remote["b"].Video
		return v.Width > 0 && v.Width <= 320, fmt.Sprintf("%+v", v)
	})
	// Hidden: no video bytes; shown again: they come back.
	if err := a.eval(fmt.Sprintf(`(() => { document.querySelector(%q).style.display = 'none'; return true; })()`, bTile), nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the page's debounce and what was on its way
	h1 := a.media().Remote["b"].Video.Bytes
	time.Sleep(3 * time.Second)
	h2 := a.media().Remote["b"].Video.Bytes
	t.Logf("a: b's hidden tile received %.0f video bytes in 3 s", h2-h1)
	if h2 != h1 {
		t.Errorf("a hidden tile received %.0f video bytes in 3 s; want none", h2-h1)
	}
	if err := a.eval(fmt.Sprintf(`(() => { const v = document.querySelector(%q); v.style.display = '';
	  v.style.width = ''; v.style.height = ''; v.style.flex = ''; return true; })()`, bTile), nil); err != nil {
		t.Fatal(err)
	}
	a.waitFor("video for the tile shown again, at the top layer", func() (bool, string) {
		v := a.media().Remote["b"].Video
		return v.Bytes > h2 && v.Width == 1280, fmt.Sprintf("%+v", v)
	})
}
