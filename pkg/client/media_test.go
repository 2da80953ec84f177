package client

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/testmedia"
	"github.com/pion/webrtc/v4"
)

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// flowing waits until every track received more packets than it had. If
// they do not, it says where each track stands: packets, and the state of
// the ICE and DTLS transports under it.
func flowing(t *testing.T, ctx context.Context, what string, tracks []*RemoteTrack) {
	t.Helper()
	before := make([]int64, len(tracks))
	for i, tr := range tracks {
		before[i] = tr.Packets()
	}
	for {
		done := true
		for i, tr := range tracks {
			if tr.Packets() < before[i]+20 {
				done = false
			}
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			var b strings.Builder
			for i, tr := range tracks {
				fmt.Fprintf(&b, "\n  %s: %d packets before, %d now", tr.Kind(), before[i], tr.Packets())
				if dt := tr.Receiver().Transport(); dt != nil {
					fmt.Fprintf(&b, "; DTLS %s, ICE %s", dt.State(), dt.ICETransport().State())
				}
			}
			t.Fatalf("timed out waiting for %s:%s", what, b.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// checkEcho checks that what a track received is what the publication sent.
func checkEcho(t *testing.T, pub *Publication, tr *RemoteTrack) {
	t.Helper()
	sent := map[uint64]bool{}
	for _, r := range pub.SentPackets(tr.Kind()) {
		sent[r.PayloadHash] = true
	}
	recv := tr.ReceivedPackets()
	if len(recv) == 0 {
		t.Fatalf("%s: nothing received", tr.Kind())
	}
	for _, r := range recv {
		if !sent[r.PayloadHash] {
			t.Fatalf("%s: received a packet that was not sent (seq %d)", tr.Kind(), r.Seq)
		}
	}
	if n := tr.TimestampRegressions(); n != 0 {
		t.Fatalf("%s: %d timestamp regressions", tr.Kind(), n)
	}
}

// TestPublishSubscribe publishes VP8 and Opus to the fake server, which echoes
// them back on the subscribe connection, and checks the media end to end,
// across ICE restarts, a paused reader and a WebSocket reconnect.
func TestPublishSubscribe(t *testing.T) {
	vp8 := mediaFile(t, testmedia.VP8IVF)
	opus := mediaFile(t, testmedia.OpusOgg)
	fs := newFakeServer(t)
	ctx := testCtx(t, 60*time.Second)
	var rewritten atomic.Int64
	c := dial(t, fs, Options{Username: "alice", ICE: ICEOptions{RewriteRemoteCandidate: func(s string) string {
		rewritten.Add(1)
		return s
	}}})
	if _, err := c.Join(ctx, JoinOptions{Room: "r"}); err != nil {
		t.Fatal(err)
	}
	video, err := NewIVFSource(vp8, true)
	if err != nil {
		t.Fatal(err)
	}
	audio, err := NewOpusSource(opus, true)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := c.Publish(ctx, PublishOptions{Video: video, Audio: audio})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pub.ID(), "st-") || pub.Kind() != protocol.KindCamera {
		t.Fatalf("publication %q %q", pub.ID(), pub.Kind())
	}
	if err := pub.WaitStatus(ctx, protocol.StreamPublishing); err != nil {
		t.Fatal(err)
	}
	tracks, err := c.WaitRemoteTracks(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]*RemoteTrack{}
	for _, tr := range tracks {
		if tr.StreamID() != pub.ID() || tr.Publisher() != "alice" || tr.SubscribedAt().IsZero() {
			t.Fatalf("track %s: stream %q publisher %q subscribed %v", tr.Kind(), tr.StreamID(), tr.Publisher(), tr.SubscribedAt())
		}
		kinds[tr.Kind()] = tr
	}
	vt, at := kinds["video"], kinds["audio"]
	if vt == nil || at == nil || vt.Codec() != webrtc.MimeTypeVP8 || at.Codec() != webrtc.MimeTypeOpus {
		t.Fatalf("tracks %+v", kinds)
	}
	flowing(t, ctx, "media", tracks)
	if !vt.FirstPacketKeyframe() || vt.FirstKeyframeAt().IsZero() || vt.FirstPacketAt().After(vt.FirstKeyframeAt()) {
		t.Fatalf("video: first packet keyframe %v, first keyframe at %v", vt.FirstPacketKeyframe(), vt.FirstKeyframeAt())
	}
	if pub.KeyframeRequests("video") == 0 {
		t.Fatal("the server's PLI was not seen")
	}
	if at.FirstPacketKeyframe() {
		t.Fatal("audio packet counted as a keyframe")
	}
	if rewritten.Load() == 0 {
		t.Fatal("RewriteRemoteCandidate was never called")
	}
	if c.SubscribePeerConnection() == nil || pub.PeerConnection() == nil {
		t.Fatal("no peer connections")
	}
	if pub.PacketsSent("video") == 0 || pub.BytesSent("audio") == 0 || vt.Bytes() == 0 {
		t.Fatal("no counters")
	}

	// ICE restarts on both connections: media keeps flowing.
	if err := pub.RestartICE(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.RestartICE(ctx); err != nil {
		t.Fatal(err)
	}
	flowing(t, ctx, "media after ICE restarts", tracks)

	// A paused reader reads nothing; resumed, it reads again.
	c.PauseReading(true)
	time.Sleep(100 * time.Millisecond) // let each reader finish the packet it was reading
	paused := vt.Packets()
	time.Sleep(300 * time.Millisecond)
	if got := vt.Packets(); got > paused+1 {
		t.Fatalf("%d packets read while paused", got-paused)
	}
	c.PauseReading(false)
	flowing(t, ctx, "media after the pause", tracks)

	// A network change: the WebSocket drops, the client resumes and restarts ICE.
	c.CloseWebSocketOnly()
	if err := c.Reconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if !c.Resumed() {
		t.Fatal("not resumed")
	}
	flowing(t, ctx, "media after the reconnect", tracks)
	if got := c.RemoteTracks(); len(got) != 2 {
		t.Fatalf("%d remote tracks after the reconnect", len(got))
	}

	checkEcho(t, pub, vt)
	checkEcho(t, pub, at)

	if err := pub.Unpublish(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitStatus(ctx, protocol.StreamUnpublished); err != nil {
		t.Fatal(err)
	}
	if len(c.Publications()) != 0 {
		t.Fatal("publication still listed")
	}
}

// TestPublishCodecs checks that each video codec arrives starting with a keyframe.
func TestPublishCodecs(t *testing.T) {
	for _, tc := range []struct {
		name string
		mime string
		open func(t *testing.T) Source
	}{
		{"VP9", webrtc.MimeTypeVP9, func(t *testing.T) Source { return mustIVFLoop(t, testmedia.VP9IVF) }},
		{"AV1", webrtc.MimeTypeAV1, func(t *testing.T) Source { return mustIVFLoop(t, testmedia.AV1IVF) }},
		{"H264", webrtc.MimeTypeH264, func(t *testing.T) Source {
			s, err := NewH264Source(mediaFile(t, testmedia.H264AnnexB), 30, true)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeServer(t)
			ctx := testCtx(t, 30*time.Second)
			c := dial(t, fs, Options{Username: "alice"})
			if _, err := c.Join(ctx, JoinOptions{Room: "r"}); err != nil {
				t.Fatal(err)
			}
			pub, err := c.Publish(ctx, PublishOptions{Kind: protocol.KindScreen, Video: tc.open(t), Audio: NewSilenceOpusSource()})
			if err != nil {
				t.Fatal(err)
			}
			tracks, err := c.WaitRemoteTracks(ctx, 2)
			if err != nil {
				t.Fatal(err)
			}
			flowing(t, ctx, "media", tracks)
			for _, tr := range tracks {
				if tr.Kind() != "video" {
					continue
				}
				if tr.Codec() != tc.mime || !tr.FirstPacketKeyframe() {
					t.Fatalf("video %s, first packet keyframe %v", tr.Codec(), tr.FirstPacketKeyframe())
				}
				checkEcho(t, pub, tr)
			}
		})
	}
}

func mustIVFLoop(t *testing.T, gen func(string, testmedia.Options) (string, error)) Source {
	t.Helper()
	s, err := NewIVFSource(mediaFile(t, gen), true)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCloseWhilePublishing closes a client with media flowing and a paused
// reader; goleak (TestMain) checks that nothing is left running.
func TestCloseWhilePublishing(t *testing.T) {
	fs := newFakeServer(t)
	ctx := testCtx(t, 30*time.Second)
	c, err := Dial(ctx, fs.url(), Options{Username: "alice", LightReceiver: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Join(ctx, JoinOptions{Room: "r", Codecs: []string{"audio/opus", "video/VP8"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, PublishOptions{Video: mustIVFLoop(t, testmedia.VP8IVF), Audio: NewSilenceOpusSource()}); err != nil {
		t.Fatal(err)
	}
	tracks, err := c.WaitRemoteTracks(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	flowing(t, ctx, "media", tracks)
	c.PauseReading(true)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tr := range tracks {
		select {
		case <-tr.Done():
		default:
			t.Fatal("a track reader is still running")
		}
	}
	if _, err := c.Publish(ctx, PublishOptions{Audio: NewSilenceOpusSource()}); err == nil {
		t.Fatal("publish after Close")
	}
}

// TestLightReceiverReports: a light receiver has no report interceptor, yet
// it sends a receiver report for each of its tracks every second, whose
// highest sequence number follows what its reader got, with no loss counted
// on loopback; it stops with the connection.
func TestLightReceiverReports(t *testing.T) {
	fs := newFakeServer(t)
	ctx := testCtx(t, 30*time.Second)
	c, err := Dial(ctx, fs.url(), Options{Username: "alice", LightReceiver: true, NegotiateNACK: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Join(ctx, JoinOptions{Room: "r", Codecs: []string{"audio/opus", "video/VP8"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, PublishOptions{Video: mustIVFLoop(t, testmedia.VP8IVF), Audio: NewSilenceOpusSource()}); err != nil {
		t.Fatal(err)
	}
	tracks, err := c.WaitRemoteTracks(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	flowing(t, ctx, "media", tracks)
	time.Sleep(3 * reportInterval)
	for _, tr := range tracks {
		ssrc := uint32(tr.track.SSRC())
		reports := fs.receiverReports(ssrc)
		if len(reports) < 2 {
			t.Fatalf("%s: %d receiver reports in %v, want one a second", tr.Kind(), len(reports), 3*reportInterval)
		}
		tr.mu.Lock()
		maxSeq := uint32(tr.maxSeq)
		tr.mu.Unlock()
		last := reports[len(reports)-1]
		if last.LastSequenceNumber > maxSeq || maxSeq-last.LastSequenceNumber > 200 {
			t.Errorf("%s: report says highest seq %d, the reader got %d", tr.Kind(), last.LastSequenceNumber, maxSeq)
		}
		if reports[0].LastSequenceNumber >= last.LastSequenceNumber {
			t.Errorf("%s: highest seq did not advance across reports: %d then %d", tr.Kind(), reports[0].LastSequenceNumber, last.LastSequenceNumber)
		}
		if last.TotalLost != 0 || last.FractionLost != 0 {
			t.Errorf("%s: loss reported on loopback: %+v", tr.Kind(), last)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	n := len(fs.receiverReports(uint32(tracks[0].track.SSRC())))
	time.Sleep(2 * reportInterval)
	if m := len(fs.receiverReports(uint32(tracks[0].track.SSRC()))); m != n {
		t.Errorf("%d reports after Close", m-n)
	}
}

// tcpProxy forwards TCP connections to a target and counts the bytes.
type tcpProxy struct {
	l     net.Listener
	bytes atomic.Int64
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{l: l}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp4", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			for _, pair := range [][2]net.Conn{{in, out}, {out, in}} {
				p.wg.Add(1)
				go func() {
					defer p.wg.Done()
					_, _ = io.Copy(countingWriter{pair[0], &p.bytes}, pair[1])
					_ = pair[0].Close()
					_ = pair[1].Close()
				}()
			}
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func (p *tcpProxy) port() int { return p.l.Addr().(*net.TCPAddr).Port }

// TestTCPOnlyThroughProxy uses ICE-TCP only, with the server's candidates
// rewritten to go through a TCP proxy, as the integration tests do.
func TestTCPOnlyThroughProxy(t *testing.T) {
	fs, muxPort := newFakeServerTCP(t)
	proxy := newTCPProxy(t, fmt.Sprintf("127.0.0.1:%d", muxPort))
	ctx := testCtx(t, 30*time.Second)
	from, to := fmt.Sprintf(" %d typ ", muxPort), fmt.Sprintf(" %d typ ", proxy.port())
	c := dial(t, fs, Options{Username: "alice", ICE: ICEOptions{
		TCPOnly:                true,
		RewriteRemoteCandidate: func(s string) string { return strings.Replace(s, from, to, 1) },
	}})
	if _, err := c.Join(ctx, JoinOptions{Room: "r"}); err != nil {
		t.Fatal(err)
	}
	pub, err := c.Publish(ctx, PublishOptions{Video: mustIVFLoop(t, testmedia.VP8IVF), Audio: NewSilenceOpusSource()})
	if err != nil {
		t.Fatal(err)
	}
	tracks, err := c.WaitRemoteTracks(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	flowing(t, ctx, "media over TCP", tracks)
	for _, pc := range []*webrtc.PeerConnection{pub.PeerConnection(), c.SubscribePeerConnection()} {
		pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
		if err != nil || pair == nil {
			t.Fatalf("no selected pair: %v", err)
		}
		if pair.Local.Protocol != webrtc.ICEProtocolTCP || pair.Remote.Port != uint16(proxy.port()) {
			t.Fatalf("selected pair %s", pair)
		}
	}
	if proxy.bytes.Load() < 10000 {
		t.Fatalf("only %d bytes went through the proxy", proxy.bytes.Load())
	}
}
