package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/codec"
	"github.com/parley/parley/pkg/sfu"
)

// vp9Packet is what a Pion receiver saw of one VP9 packet.
type vp9Packet struct {
	at       time.Time
	seq      uint16
	ts       uint32
	marker   bool
	size     int
	sid, tid uint8
	start    bool
	end      bool
}

// vp9Watch records the VP9 packets of a client's remote video tracks.
type vp9Watch struct {
	mu   sync.Mutex
	pkts []vp9Packet
}

func (w *vp9Watch) hook(t *client.RemoteTrack) client.PacketReceivedFunc {
	if t.Kind() != "video" {
		return nil
	}
	return func(pkt *rtp.Packet, at, _ time.Time) {
		d, ok := codec.ParseVP9(pkt.Payload)
		if !ok && len(pkt.Payload) > 0 {
			return
		}
		w.mu.Lock()
		w.pkts = append(w.pkts, vp9Packet{at: at, seq: pkt.SequenceNumber, ts: pkt.Timestamp, marker: pkt.Marker,
			size: len(pkt.Payload), sid: d.SID, tid: d.TID, start: d.Start, end: d.End})
		w.mu.Unlock()
	}
}

// vp9Window sums what came since from: payload bytes per spatial layer,
// pictures, sequence gaps, the highest spatial layer seen, and pictures
// whose last packet was not marked.
type vp9Window struct {
	bytes    [4]int
	pictures int
	gaps     int
	topSID   uint8
	unmarked int
	seconds  float64
}

func (w *vp9Watch) since(from time.Time) vp9Window {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out vp9Window
	var prev, prevAny *vp9Packet
	last := from
	for i := range w.pkts {
		p := &w.pkts[i]
		if p.at.Before(from) {
			continue
		}
		last = p.at
		if prevAny != nil && int16(p.seq-prevAny.seq) > 1 {
			out.gaps++
		}
		prevAny = p
		if p.size == 0 {
			continue // padding (a probe): it takes a number, nothing else
		}
		out.bytes[min(p.sid, 3)] += p.size
		out.topSID = max(out.topSID, p.sid)
		if p.start {
			out.pictures++
		}
		if prev != nil && p.ts != prev.ts && !prev.marker && prev.end {
			out.unmarked++
		}
		prev = p
	}
	out.seconds = last.Sub(from).Seconds()
	return out
}

// TestVP9PageSpatialLayers: a page that publishes its 1280x720 camera in VP9
// (?codec=VP9) sends it with three spatial and three temporal layers
// (L3T3_KEY), and the server chooses among them per receiver:
//   - a page that shows it in a large tile decodes it at 1280x720, and a page
//     that shows it in a small tile at 320x180, both frames going on;
//   - a Pion receiver with room for everything gets every spatial layer, each
//     picture ending with the marker;
//   - a Pion receiver whose receiver estimate (REMB) is three quarters of the
//     lowest spatial layer's rate gets only that layer, and of it only the
//     lower temporal layers: a lower frame rate, without gaps in the numbers,
//     each picture it gets marked at its end, and without a pause.
func TestVP9PageSpatialLayers(t *testing.T) {
	srv := startServer(t, nil)
	room := fmt.Sprintf("vp9s%d", time.Now().UnixNano()%100000)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	ws := strings.Replace(srv.URL(), "http", "ws", 1) + "/ws"
	var recv []*client.Client
	var watch [2]vp9Watch
	for i, name := range []string{"good", "short"} {
		c, err := client.Dial(ctx, ws, client.Options{Username: name, OnRemoteTrack: watch[i].hook})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err := c.Join(ctx, client.JoinOptions{Room: room, Name: name}); err != nil {
			t.Fatal(err)
		}
		recv = append(recv, c)
	}
	origin := chromedp.Flag("unsafely-treat-insecure-origin-as-secure", srv.URL())
	pub := openPage(t, "vp9", fmt.Sprintf("%s/?room=%s&name=vp9&codec=VP9", srv.URL(), room), origin)
	view := func(name string) *page {
		return openPage(t, name, fmt.Sprintf("%s/?room=%s&name=%s&publish=0", srv.URL(), room, name), origin,
			chromedp.WindowSize(1920, 1080))
	}
	large, small := view("large"), view("small")
	var video [2]*client.RemoteTrack
	for i, c := range recv {
		tracks, err := c.WaitRemoteTracks(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range tracks {
			if tr.Kind() == "video" {
				video[i] = tr
			}
		}
		if video[i] == nil || video[i].Codec() != "video/VP9" {
			t.Fatalf("receiver %d: no VP9 video (%v)", i, video[i])
		}
	}

	// What the page sends: VP9 in L3T3_KEY.
	sendsSVC(t, pub, "VP9")

	// The viewers: one shows the camera large, the other in a small tile.
	large.waitDecoding("vp9", "camera", true)
	small.waitDecoding("vp9", "camera", true)
	shrinkTile(t, small, tileVideo("vp9", "camera"))
	decodes := func(p *page, width float64) { t.Helper(); decodesAt(t, p, "vp9", width) }
	decodes(large, 1280)
	decodes(small, 320)
	statsOf := func(who string) sfu.TrackStats {
		for _, st := range srv.Media().Subscribers() {
			if st.Participant != who {
				continue
			}
			for _, tr := range st.Tracks {
				if tr.Kind == "video" {
					return tr
				}
			}
		}
		return sfu.TrackStats{}
	}
	if st := statsOf("small"); st.SpatialLayers != 1 || st.Width != 320 {
		t.Errorf("the small tile's track on the server: %+v; want 1 spatial layer, 320 wide", st)
	}
	if st := statsOf("large"); st.SpatialLayers != 0 || st.Width != 1280 {
		t.Errorf("the large tile's track on the server: %+v; want every spatial layer, 1280 wide", st)
	}

	// The good Pion receiver gets all three layers; the rate of the lowest.
	from := time.Now()
	time.Sleep(3 * time.Second)
	g := watch[0].since(from)
	base := float64(g.bytes[0]*8) / g.seconds
	t.Logf("good receiver over %.1f s: bytes per spatial layer %v, %d pictures; the lowest layer %.0f kbit/s",
		g.seconds, g.bytes, g.pictures, base/1000)
	if g.topSID != 2 || g.bytes[1] == 0 || g.bytes[2] == 0 || g.unmarked > 0 {
		t.Fatalf("the good receiver: %+v; want three spatial layers, every picture marked", g)
	}

	// The short receiver's link carries the audio and three quarters of the
	// lowest spatial layer.
	remb := float32((0.75*base + 64_000) / 0.9)
	short := recv[1]
	sendREMB := func() {
		var ssrcs []uint32
		for _, tr := range short.RemoteTracks() {
			ssrcs = append(ssrcs, uint32(tr.Track().SSRC()))
		}
		_ = short.SubscribePeerConnection().WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: remb, SSRCs: ssrcs}})
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		sendREMB()
		time.Sleep(500 * time.Millisecond)
		st := statsOf("short")
		if st.SpatialLayers == 1 && st.TemporalLayers > 0 && st.FrameRate > 0 {
			t.Logf("short receiver (REMB %.0f kbit/s): %d spatial, %d temporal layers, %.1f frames a second",
				remb/1000, st.SpatialLayers, st.TemporalLayers, st.FrameRate)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the short receiver still gets %+v with a REMB of %.0f kbit/s", st, remb/1000)
		}
	}
	// Over 4 s: the short one gets the lowest layer at a lower frame rate,
	// without a gap in the numbers and without a pause; the good one every
	// picture.
	from = time.Now().Add(500 * time.Millisecond) // past what was queued
	for range 9 {
		sendREMB()
		time.Sleep(500 * time.Millisecond)
	}
	g, s := watch[0].since(from), watch[1].since(from)
	t.Logf("over 4 s: good %d pictures (%d gaps), short %d pictures (%d gaps), bytes per layer %v, top layer %d",
		g.pictures, g.gaps, s.pictures, s.gaps, s.bytes, s.topSID)
	if paused, reason := short.VideoPaused(video[1].StreamID()); paused {
		t.Errorf("the short receiver's video paused (%s); want a lower frame rate", reason)
	}
	if s.topSID != 0 {
		t.Errorf("the short receiver got spatial layers up to %d; want the lowest alone", s.topSID)
	}
	if s.pictures == 0 || s.pictures*4 > g.pictures*3 {
		t.Errorf("short receiver: %d pictures against the good one's %d; want fewer, and some", s.pictures, g.pictures)
	}
	if g.gaps > 0 || s.gaps > 0 || g.unmarked > 0 || s.unmarked > 0 {
		t.Errorf("gaps in the numbers: good %d, short %d; pictures not marked at their end: good %d, short %d",
			g.gaps, s.gaps, g.unmarked, s.unmarked)
	}
	// The viewers' pictures went on at their sizes all along.
	decodes(large, 1280)
	decodes(small, 320)
}

// TestAV1PageSpatialLayers: a page that publishes its camera in AV1
// (?codec=AV1) sends it with spatial and temporal layers (L3T3_KEY), their
// structure in the dependency descriptor, and the server sends a page that
// shows it in a small tile only the lowest spatial layer (it decodes
// 320x180) and a page that shows it large all of them (1280x720).
func TestAV1PageSpatialLayers(t *testing.T) {
	srv := startServer(t, nil)
	room := fmt.Sprintf("av1s%d", time.Now().UnixNano()%100000)
	origin := chromedp.Flag("unsafely-treat-insecure-origin-as-secure", srv.URL())
	pub := openPage(t, "av1", fmt.Sprintf("%s/?room=%s&name=av1&codec=AV1", srv.URL(), room), origin)
	view := func(name string) *page {
		return openPage(t, name, fmt.Sprintf("%s/?room=%s&name=%s&publish=0", srv.URL(), room, name), origin,
			chromedp.WindowSize(1920, 1080))
	}
	large, small := view("large"), view("small")
	large.waitDecoding("av1", "camera", true)
	small.waitDecoding("av1", "camera", true)
	sendsSVC(t, pub, "AV1")
	shrinkTile(t, small, tileVideo("av1", "camera"))
	decodes := func(p *page, width float64) { t.Helper(); decodesAt(t, p, "av1", width) }
	decodes(large, 1280)
	decodes(small, 320)
	for _, st := range srv.Media().Subscribers() {
		for _, tr := range st.Tracks {
			if tr.Kind != "video" {
				continue
			}
			t.Logf("%s receives %+v", st.Participant, tr)
			if st.Participant == "small" && (tr.SpatialLayers != 1 || tr.Width != 320) {
				t.Errorf("the small tile's track on the server: %+v; want 1 spatial layer, 320 wide", tr)
			}
		}
	}
	// Both go on.
	decodes(large, 1280)
	decodes(small, 320)
}

// sendsSVC checks that page p sends its camera in codec with spatial and
// temporal layers (L3T3_KEY).
func sendsSVC(t *testing.T, p *page, codec string) {
	t.Helper()
	var out pageVideoOut
	if err := p.eval(readPageVideoOut, &out); err != nil {
		t.Fatal(err)
	}
	t.Logf("the page sends %s in %s, %v wide", out.Codec, out.Mode, out.Width)
	if out.Mode != "L3T3_KEY" || !strings.EqualFold(out.Codec, "video/"+codec) {
		t.Fatalf("the page sends %q in %q; want video/%s in L3T3_KEY", out.Codec, out.Mode, codec)
	}
}

// shrinkTile makes the <video> sel on page p a small tile (200x112).
func shrinkTile(t *testing.T, p *page, sel string) {
	t.Helper()
	if err := p.eval(fmt.Sprintf(`(() => { const v = document.querySelector(%q);
	  v.style.width = '200px'; v.style.height = '112px'; v.style.flex = 'none'; return true; })()`, sel), nil); err != nil {
		t.Fatal(err)
	}
}

// decodesAt waits until page p decodes the camera of name width pixels wide,
// frames going on.
func decodesAt(t *testing.T, p *page, name string, width float64) {
	t.Helper()
	p.waitFor(fmt.Sprintf("%s's camera decoded %v wide", name, width), func() (bool, string) {
		v1 := p.media().Remote[name].Video
		time.Sleep(time.Second)
		v2 := p.media().Remote[name].Video
		return v2.Width == width && v2.Frames > v1.Frames+5, fmt.Sprintf("%+v", v2)
	})
}
