package server_test

import (
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
)

// layerSending waits (up to within) until the publisher's layer rid is
// sent (want true) or not, by the client's own PUBLISH_LAYERS state and by
// its packets: a layer switched off sends nothing for a second, one switched
// on sends again.
func layerSending(t *testing.T, pub *client.Publication, rid string, want bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		before := len(pub.LayerSentPackets(rid))
		time.Sleep(time.Second)
		sent := len(pub.LayerSentPackets(rid)) - before
		if pub.LayerActive(rid) == want && (sent > 0) == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("layer %s: active %v, %d packets in the last second after %v; want sending %v",
				rid, pub.LayerActive(rid), sent, within, want)
		}
	}
}

// TestUnusedLayersSwitchOff: a simulcast publisher whose receivers all show
// it in small tiles is told (PUBLISH_LAYERS) to stop the layers nobody
// needs, and stops sending them, while the receivers go on getting the low
// layer; a receiver that enlarges its tile has the top layer back within
// seconds, and receives it; when it leaves, the top layer stops again. The
// lowest layer never stops.
func TestUnusedLayersSwitchOff(t *testing.T) {
	srv := testServer(t, nil)
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "dyna", "a")
	pub := publishSimulcast(t, a)
	var subs []*client.Client
	var videos []*client.RemoteTrack
	for _, name := range []string{"b", "c"} {
		c := dial(t, srv, client.Options{Username: name})
		join(t, c, "dyna", name)
		ts, err := c.WaitRemoteTracks(ctxT(t, 15*time.Second), 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range ts {
			if tr.Kind() == "video" {
				videos = append(videos, tr)
			}
		}
		if err := c.SetTiles(ctxT(t, 5*time.Second), []protocol.Tile{{Stream: pub.ID(), Width: 320, Height: 180, Visible: true}}); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, c)
	}
	if len(videos) != 2 {
		t.Fatalf("%d video tracks received, want 2", len(videos))
	}

	// Both tiles small: h and f stop (5 s after no one needs them), q goes on.
	d := layerSending(t, pub, "f", false, 12*time.Second)
	layerSending(t, pub, "h", false, 3*time.Second)
	t.Logf("h and f stopped %v after the tiles were set", d.Round(100*time.Millisecond))
	if !pub.LayerActive("q") {
		t.Error("the lowest layer was switched off")
	}
	for i, v := range videos {
		waitLayer(t, "a small tile", pub, v, "q", 5*time.Second, nil)
		t.Logf("receiver %d gets q while h and f are off", i)
	}

	// c enlarges its tile: f comes back, and c receives it; b stays on q.
	enlarged := time.Now()
	if err := subs[1].SetTiles(ctxT(t, 5*time.Second), []protocol.Tile{{Stream: pub.ID(), Width: 1280, Height: 720, Visible: true}}); err != nil {
		t.Fatal(err)
	}
	layerSending(t, pub, "f", true, 3*time.Second)
	waitLayer(t, "c with a large tile", pub, videos[1], "f", 10*time.Second, nil)
	t.Logf("c receives f %v after enlarging its tile", time.Since(enlarged).Round(100*time.Millisecond))
	if got, n := layerOf(pub, videos[0], time.Now().Add(-time.Second)); got != "q" || n < 10 {
		t.Errorf("b with its small tile receives %q (%d packets in the last second), want q", got, n)
	}

	// c leaves: nobody needs f any more.
	if err := subs[1].Close(); err != nil {
		t.Fatal(err)
	}
	layerSending(t, pub, "f", false, 12*time.Second)
	waitLayer(t, "b after c left", pub, videos[0], "q", 5*time.Second, nil)
}

// TestRecordedStreamKeepsEveryLayer: while a simulcast stream is recorded
// (the recorder follows the best layer arriving), every layer stays on
// even when every receiver's tile is small.
func TestRecordedStreamKeepsEveryLayer(t *testing.T) {
	srv := testServer(t, func(c *server.Config) { c.RecordsDir = t.TempDir() })
	a := dial(t, srv, client.Options{Username: "a"})
	if _, err := a.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "dyna-rec", Name: "a", Record: true}); err != nil {
		t.Fatal(err)
	}
	pub := publishSimulcast(t, a)
	b := dial(t, srv, client.Options{Username: "b"})
	join(t, b, "dyna-rec", "b")
	if _, err := b.WaitRemoteTracks(ctxT(t, 15*time.Second), 2); err != nil {
		t.Fatal(err)
	}
	if err := b.SetTiles(ctxT(t, 5*time.Second), []protocol.Tile{{Stream: pub.ID(), Width: 320, Height: 180, Visible: true}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(7 * time.Second) // beyond the 5 s after which an unneeded layer stops
	for _, rid := range []string{"q", "h", "f"} {
		layerSending(t, pub, rid, true, time.Second)
	}
}
