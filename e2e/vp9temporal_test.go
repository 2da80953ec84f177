package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/sfu"
)

// TestVP9PageSendsTemporalLayers: a page that publishes VP9 (?codec=VP9)
// sends it as three temporal layers (L1T3), and the server uses them: of
// two Pion receivers, the one whose receiver estimate (REMB) is three
// quarters of the stream's rate gets only the lower temporal layers, a
// lower frame rate without gaps and without a pause, while the other gets
// every frame.
func TestVP9PageSendsTemporalLayers(t *testing.T) {
	srv := startServer(t, nil)
	room := fmt.Sprintf("vp9t%d", time.Now().UnixNano()%100000)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ws := strings.Replace(srv.URL(), "http", "ws", 1) + "/ws"
	var recv []*client.Client
	for _, name := range []string{"good", "short"} {
		c, err := client.Dial(ctx, ws, client.Options{Username: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err := c.Join(ctx, client.JoinOptions{Room: room, Name: name}); err != nil {
			t.Fatal(err)
		}
		recv = append(recv, c)
	}
	p := openPage(t, "vp9", fmt.Sprintf("%s/?room=%s&name=vp9&codec=VP9", srv.URL(), room))
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

	// What the page sends: VP9 in L1T3, and its rate.
	var out struct {
		Mode  string  `json:"mode"`
		Codec string  `json:"codec"`
		Bytes float64 `json:"bytes"`
	}
	readOut := func() {
		t.Helper()
		if err := p.eval(`(async () => {
		  const cam = window.parley.room.getLocalStreams().find(s => s.kind() === 'camera');
		  let r = {mode: '', codec: '', bytes: 0};
		  const st = await cam.getPeerConnection().getStats();
		  st.forEach(s => { if (s.type === 'outbound-rtp' && s.kind === 'video') {
		    r.mode = s.scalabilityMode || ''; r.bytes = s.bytesSent;
		    const c = st.get(s.codecId); r.codec = c ? c.mimeType : ''; } });
		  return r; })()`, &out); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3 * time.Second) // past the encoder's ramp-up
	readOut()
	b1, t1 := out.Bytes, time.Now()
	time.Sleep(3 * time.Second)
	readOut()
	rate := (out.Bytes - b1) * 8 / time.Since(t1).Seconds()
	t.Logf("the page sends %s in %s at %.0f kbit/s", out.Codec, out.Mode, rate/1000)
	if out.Mode != "L1T3" || !strings.EqualFold(out.Codec, "video/VP9") {
		t.Fatalf("the page sends %q in %q; want video/VP9 in L1T3", out.Codec, out.Mode)
	}

	// The short receiver says its link carries the audio and three
	// quarters of the video.
	remb := float32((0.75*rate + 64_000) / 0.9)
	short := recv[1]
	sendREMB := func() {
		var ssrcs []uint32
		for _, tr := range short.RemoteTracks() {
			ssrcs = append(ssrcs, uint32(tr.Track().SSRC()))
		}
		_ = short.SubscribePeerConnection().WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: remb, SSRCs: ssrcs}})
	}
	trackOf := func(who string) (sfu.TrackStats, bool) {
		for _, st := range srv.Media().Subscribers() {
			if st.Participant != who {
				continue
			}
			for _, tr := range st.Tracks {
				if tr.Kind == "video" {
					return tr, true
				}
			}
		}
		return sfu.TrackStats{}, false
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		sendREMB()
		time.Sleep(500 * time.Millisecond)
		tr, ok := trackOf("short")
		if ok && tr.TemporalLayers > 0 && tr.FrameRate > 0 {
			t.Logf("short receiver (REMB %.0f kbit/s): %d temporal layers, %.1f frames a second", remb/1000, tr.TemporalLayers, tr.FrameRate)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the short receiver still gets every temporal layer (%+v) with a REMB of %.0f kbit/s", tr, remb/1000)
		}
	}
	// Over 4 s: the short one gets fewer frames, without a gap in the
	// numbers and without a pause; the good one every frame.
	frames := func(tr *client.RemoteTrack, since time.Time) (n int, gaps int) {
		var last uint16
		have := false
		seen := map[uint32]bool{}
		for _, r := range tr.ReceivedPackets() {
			if r.ReceivedAt.Before(since) {
				continue
			}
			if have && int16(r.Seq-last) > 1 {
				gaps++
			}
			if !have || int16(r.Seq-last) > 0 {
				last, have = r.Seq, true
			}
			if r.PayloadSize > 0 {
				seen[r.Timestamp] = true
			}
		}
		return len(seen), gaps
	}
	from := time.Now()
	for range 8 {
		sendREMB()
		time.Sleep(500 * time.Millisecond)
	}
	good, gGaps := frames(video[0], from)
	shortN, sGaps := frames(video[1], from)
	t.Logf("over 4 s: good %d frames (%d gaps in the numbers), short %d frames (%d gaps)", good, gGaps, shortN, sGaps)
	if paused, reason := short.VideoPaused(video[1].StreamID()); paused {
		t.Errorf("the short receiver's video paused (%s); want a lower frame rate", reason)
	}
	if shortN == 0 || shortN*4 > good*3 {
		t.Errorf("short receiver: %d frames against the good one's %d; want fewer, and some", shortN, good)
	}
	if gGaps > 0 || sGaps > 0 {
		t.Errorf("gaps in the sequence numbers: good %d, short %d", gGaps, sGaps)
	}
}
