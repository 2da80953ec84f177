package server_test

import (
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// TestNetworkChangeKeepsMedia: a subscriber and then a publisher lose their
// WebSocket (a phone moving from Wi-Fi to mobile data), reconnect with the
// resume token and restart ICE on every connection; media keeps flowing and
// the others see no LEFT/JOINED.
func TestNetworkChangeKeepsMedia(t *testing.T) {
	srv := testServer(t, nil)
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "move", "a")
	pub, err := a.Publish(ctxT(t, 60*time.Second), client.PublishOptions{Video: vp8Source(t), Audio: opusSource(t)})
	if err != nil {
		t.Fatal(err)
	}
	b := dial(t, srv, client.Options{Username: "b"})
	join(t, b, "move", "b")
	watcher := dial(t, srv, client.Options{Username: "w"})
	join(t, watcher, "move", "w")
	tracks, err := b.WaitRemoteTracks(ctxT(t, 10*time.Second), 2)
	if err != nil {
		t.Fatal(err)
	}
	growing := func(what string) {
		t.Helper()
		before := map[*client.RemoteTrack]int64{}
		for _, tr := range tracks {
			before[tr] = tr.Packets()
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			ok := true
			for _, tr := range tracks {
				if tr.Packets() < before[tr]+20 {
					ok = false
				}
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: media stopped (%d and %d packets, before %v)", what, tracks[0].Packets(), tracks[1].Packets(), before)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	growing("before")
	drain(watcher, 100*time.Millisecond)

	b.CloseWebSocketOnly()
	time.Sleep(300 * time.Millisecond)
	if err := b.Reconnect(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("subscriber reconnect: %v", err)
	}
	if !b.Resumed() {
		t.Fatal("the subscriber's reconnect was not a resume")
	}
	growing("after the subscriber's ICE restart")

	a.CloseWebSocketOnly()
	time.Sleep(300 * time.Millisecond)
	if err := a.Reconnect(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("publisher reconnect: %v", err)
	}
	growing("after the publisher's ICE restart")
	if pub.Status() != protocol.StreamPublishing {
		t.Errorf("publisher status %s after the reconnect", pub.Status())
	}

	time.Sleep(2500 * time.Millisecond) // past the reconnect grace
	for _, ev := range drain(watcher, 200*time.Millisecond) {
		if ev.Event == protocol.EventLeft || ev.Event == protocol.EventJoined || ev.Event == protocol.EventUnpublished {
			t.Errorf("the watcher saw %s %s across network changes", ev.Event, ev.Name)
		}
	}
	if len(b.RemoteTracks()) != 2 {
		t.Errorf("the subscriber has %d remote tracks after the changes, want the same 2", len(b.RemoteTracks()))
	}
}
