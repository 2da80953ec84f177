package server_test

import (
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/server"
)

// TestLayerKeptThroughEstimateDip: a subscriber on the top layer whose
// estimate dips for half a second (its receiver says 300 kbit/s, then 20
// Mbit/s again) stays on the top layer: going down and up again would cost
// the publisher a keyframe of a lower layer and one of the top layer, which
// every subscriber of the top layer receives. A dip that lasts goes down.
func TestLayerKeptThroughEstimateDip(t *testing.T) {
	srv := testServer(t, func(c *server.Config) {})
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "dip", "a")
	pub := publishSimulcast(t, a)
	sub := dial(t, srv, client.Options{Username: "sub"})
	join(t, sub, "dip", "sub")
	tracks, err := sub.WaitRemoteTracks(ctxT(t, 15*time.Second), 2)
	if err != nil {
		t.Fatal(err)
	}
	var v *client.RemoteTrack
	for _, tr := range tracks {
		if tr.Kind() == "video" {
			v = tr
		}
	}
	lift := func() { sendREMB(t, sub, 20_000_000) }
	waitLayer(t, "sub", pub, v, "f", 15*time.Second, lift)
	// Settle on the top layer with a steady estimate (the average follows).
	for range 8 {
		lift()
		time.Sleep(500 * time.Millisecond)
	}
	requests := func() (n int64) {
		for _, rid := range []string{"q", "h", "f"} {
			n += pub.LayerKeyframeRequests(rid)
		}
		return n
	}
	before := requests()
	dipAt := time.Now()
	for range 3 { // 500 ms at 300 kbit/s
		sendREMB(t, sub, 300_000)
		time.Sleep(170 * time.Millisecond)
	}
	for range 4 {
		lift()
		time.Sleep(500 * time.Millisecond)
	}
	if got := requests() - before; got != 0 {
		t.Errorf("%d keyframe requests after a dip of the estimate of half a second; want none", got)
	}
	if got, n := layerOf(pub, v, dipAt); got != "f" || lowerPackets(pub, v, dipAt) > 0 {
		t.Errorf("through the dip the subscriber received mostly layer %q (%d packets) and %d packets of lower layers; want f throughout",
			got, n, lowerPackets(pub, v, dipAt))
	}
	// A lasting dip goes down.
	d := waitLayer(t, "sub at 300 kbit/s", pub, v, "q", 10*time.Second, func() { sendREMB(t, sub, 300_000) })
	t.Logf("on the lowest layer %v after the estimate fell for good", d)
}

// lowerPackets counts the packets tr received since that carry the payload of
// a layer below the top one.
func lowerPackets(pub *client.Publication, tr *client.RemoteTrack, since time.Time) int {
	lower := map[uint64]bool{}
	for _, rid := range []string{"q", "h"} {
		for _, p := range pub.LayerSentPackets(rid) {
			lower[p.PayloadHash] = true
		}
	}
	n := 0
	for _, r := range tr.ReceivedPackets() {
		if r.ReceivedAt.After(since) && r.PayloadSize > 0 && lower[r.PayloadHash] {
			n++
		}
	}
	return n
}
