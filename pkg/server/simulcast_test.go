package server_test

import (
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/testmedia"
	"github.com/pion/rtcp"
)

// simulcastLayers are the test publisher's layers: the same picture at a
// quarter, half and full size, as a browser sends them.
var simulcastLayers = []struct {
	rid           string
	width, height int
	bitrate       int
}{{"q", 320, 180, 150_000}, {"h", 640, 360, 450_000}, {"f", 1280, 720, 1_200_000}}

// simulcastSources opens the three layers' VP8 files.
func simulcastSources(t *testing.T) []client.Source {
	t.Helper()
	var out []client.Source
	for _, l := range simulcastLayers {
		path, err := testmedia.VP8IVF(media(t), testmedia.Options{Width: l.width, Height: l.height, Bitrate: l.bitrate})
		if err != nil {
			t.Fatal(err)
		}
		src, err := client.NewIVFSource(path, true)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, src)
	}
	return out
}

// publishSimulcast publishes three VP8 layers and Opus from c.
func publishSimulcast(t *testing.T, c *client.Client) *client.Publication {
	t.Helper()
	pub, err := c.Publish(ctxT(t, 60*time.Second), client.PublishOptions{Simulcast: simulcastSources(t), Audio: opusSource(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatalf("publisher status: %v (now %s)", err, pub.Status())
	}
	return pub
}

// layerOf says which layer a subscriber's video packets received since
// since came from ("" when none), by their payloads, and how many.
func layerOf(pub *client.Publication, tr *client.RemoteTrack, since time.Time) (string, int) {
	hashes := map[uint64]string{}
	for _, l := range simulcastLayers {
		for _, p := range pub.LayerSentPackets(l.rid) {
			hashes[p.PayloadHash] = l.rid
		}
	}
	counts := map[string]int{}
	for _, r := range tr.ReceivedPackets() {
		if r.ReceivedAt.After(since) && r.PayloadSize > 0 {
			counts[hashes[r.PayloadHash]]++
		}
	}
	best, n := "", 0
	for rid, c := range counts {
		if c > n {
			best, n = rid, c
		}
	}
	return best, n
}

// sendREMB has c's subscribe connection tell the server its link carries
// bps, as a receiver that estimates itself does.
func sendREMB(t *testing.T, c *client.Client, bps float32) {
	t.Helper()
	pc := c.SubscribePeerConnection()
	var ssrcs []uint32
	for _, tr := range c.RemoteTracks() {
		ssrcs = append(ssrcs, uint32(tr.Track().SSRC()))
	}
	if err := pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: bps, SSRCs: ssrcs}}); err != nil {
		t.Fatal(err)
	}
}

// waitLayer waits (up to within) until tr receives layer want; it
// returns how long that took.
func waitLayer(t *testing.T, who string, pub *client.Publication, tr *client.RemoteTrack, want string, within time.Duration, keep func()) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if keep != nil {
			keep()
		}
		time.Sleep(500 * time.Millisecond)
		if got, n := layerOf(pub, tr, time.Now().Add(-time.Second)); got == want && n > 10 {
			return time.Since(start)
		} else if time.Since(start) > within {
			t.Fatalf("%s: receives layer %q (%d packets in the last second) after %v, want %q", who, got, n, within, want)
		}
	}
}

// TestSimulcastFollowsEachSubscriber: a publisher sends three simulcast
// layers; each subscriber gets the layer its own link and tile allow:
// one with a good link the top layer throughout; one whose receiver says
// (REMB) its link carries 300 kbit/s the lowest; when it lifts, the top one
// again; at 40 kbit/s its video pauses, with a reason, while its audio
// goes on; and resumes by itself. A subscriber whose tile is small gets a
// smaller layer; one whose tile is hidden gets no video at all until the
// tile shows again.
func TestSimulcastFollowsEachSubscriber(t *testing.T) {
	srv := testServer(t, func(c *server.Config) {})
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "simulcast", "a")
	pub := publishSimulcast(t, a)
	good := dial(t, srv, client.Options{Username: "good"})
	join(t, good, "simulcast", "good")
	weak := dial(t, srv, client.Options{Username: "weak"})
	join(t, weak, "simulcast", "weak")
	video := func(c *client.Client) (*client.RemoteTrack, *client.RemoteTrack) {
		tracks, err := c.WaitRemoteTracks(ctxT(t, 15*time.Second), 2)
		if err != nil {
			t.Fatal(err)
		}
		var v, au *client.RemoteTrack
		for _, tr := range tracks {
			if tr.Kind() == "video" {
				v = tr
			} else {
				au = tr
			}
		}
		return v, au
	}
	goodV, _ := video(good)
	weakV, weakA := video(weak)
	remb := func(bps float32) func() { return func() { sendREMB(t, weak, bps) } }

	d := waitLayer(t, "good", pub, goodV, "f", 15*time.Second, nil)
	t.Logf("good subscriber on the top layer after %v", d)
	d = waitLayer(t, "weak at 300 kbit/s", pub, weakV, "q", 10*time.Second, remb(300_000))
	t.Logf("weak subscriber on the lowest layer %v after its REMB", d)
	if got, _ := layerOf(pub, goodV, time.Now().Add(-2*time.Second)); got != "f" {
		t.Errorf("the good subscriber moved to %q when the weak one went down", got)
	}
	d = waitLayer(t, "weak lifted", pub, weakV, "f", 15*time.Second, remb(20_000_000))
	t.Logf("weak subscriber back on the top layer %v after its link lifted", d)

	// 40 kbit/s: not even the lowest layer fits; audio goes on.
	audioBefore := weakA.Packets()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sendREMB(t, weak, 40_000)
		time.Sleep(300 * time.Millisecond)
		if paused, _ := weak.VideoPaused(pub.ID()); paused {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the weak subscriber's video did not pause at 40 kbit/s")
		}
	}
	_, reason := weak.VideoPaused(pub.ID())
	t.Logf("paused: %q", reason)
	if reason == "" {
		t.Error("the pause came without a reason")
	}
	pausedAt := time.Now()
	for range 6 {
		sendREMB(t, weak, 40_000)
		time.Sleep(300 * time.Millisecond)
	}
	if _, n := layerOf(pub, weakV, pausedAt.Add(500*time.Millisecond)); n > 0 {
		t.Errorf("%d video packets after the pause", n)
	}
	if weakA.Packets()-audioBefore < 50 {
		t.Errorf("audio stopped with the video: %d packets", weakA.Packets()-audioBefore)
	}
	d = waitLayer(t, "weak resumed", pub, weakV, "f", 15*time.Second, remb(20_000_000))
	if paused, _ := weak.VideoPaused(pub.ID()); paused {
		t.Error("video plays again but the client was not told")
	}
	t.Logf("weak subscriber's video resumed %v after its link lifted", d)

	// Tiles: small, then hidden, then shown at full size.
	if err := good.SetTiles(ctxT(t, 5*time.Second), []protocol.Tile{{Stream: pub.ID(), Width: 320, Height: 180, Visible: true}}); err != nil {
		t.Fatal(err)
	}
	waitLayer(t, "good with a small tile", pub, goodV, "q", 10*time.Second, nil)
	if err := good.SetTiles(ctxT(t, 5*time.Second), []protocol.Tile{{Stream: pub.ID(), Visible: false}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	hiddenAt, before := time.Now(), goodV.Bytes()
	time.Sleep(2 * time.Second)
	if got := goodV.Bytes() - before; got != 0 {
		t.Errorf("a hidden tile received %d video bytes", got)
	}
	_ = hiddenAt
	if err := good.SetTiles(ctxT(t, 5*time.Second), []protocol.Tile{{Stream: pub.ID(), Width: 1280, Height: 720, Visible: true}}); err != nil {
		t.Fatal(err)
	}
	waitLayer(t, "good shown again", pub, goodV, "f", 10*time.Second, nil)
	for _, l := range simulcastLayers {
		t.Logf("layer %s: %d keyframes sent, %d keyframe requests", l.rid, pub.KeyframesSent(l.rid), pub.LayerKeyframeRequests(l.rid))
	}
	for _, tr := range []*client.RemoteTrack{goodV, weakV} {
		if n := tr.TimestampRegressions(); n != 0 {
			t.Errorf("%d timestamps went back across the layer switches", n)
		}
	}
}
