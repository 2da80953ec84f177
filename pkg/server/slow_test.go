package server_test

import (
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
)

// TestSlowSubscriberDoesNotReduceOthers: one subscriber's connection stops
// being read (its ICE-TCP path stalls); the other subscribers keep receiving
// every packet the publisher sends.
func TestSlowSubscriberDoesNotReduceOthers(t *testing.T) {
	srv := testServer(t, nil)
	proxy := newTCPProxy(t, srv, 0, false)

	pubC := dial(t, srv, client.Options{Username: "pub"})
	join(t, pubC, "slow", "pub")
	pub := publishCamera(t, pubC)

	slow := dial(t, srv, client.Options{Username: "slow", ICE: proxy.ice()})
	join(t, slow, "slow", "slow")
	fast := []*client.Client{dial(t, srv, client.Options{Username: "f1"}), dial(t, srv, client.Options{Username: "f2"})}
	for i, f := range fast {
		join(t, f, "slow", []string{"f1", "f2"}[i])
	}
	videoOf := func(c *client.Client) *client.RemoteTrack {
		tracks, err := c.WaitRemoteTracks(ctxT(t, 15*time.Second), 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range tracks {
			if tr.Kind() == "video" {
				return tr
			}
		}
		t.Fatal("no video track")
		return nil
	}
	slowVideo := videoOf(slow)
	fastVideo := []*client.RemoteTrack{videoOf(fast[0]), videoOf(fast[1])}
	time.Sleep(time.Second)
	if slowVideo.Packets() == 0 {
		t.Fatal("the slow subscriber never received media through the proxy")
	}
	// Its ICE-TCP connection is on the direct path too.
	if st := srv.Media().Stats(); st.DirectSubscribers != 3 || st.PionSubscribers != 0 {
		t.Errorf("subscribe connections: %d direct, %d through pion; want all 3 direct", st.DirectSubscribers, st.PionSubscribers)
	}

	proxy.stall()
	time.Sleep(300 * time.Millisecond)
	sent0 := pub.PacketsSent("video")
	slow0 := slowVideo.Packets()
	time.Sleep(4 * time.Second)
	// The packets sent in the stall, by sequence number (the SFU keeps
	// them): each fast subscriber must get them all, given the time to read
	// what is in flight.
	all := pub.SentPackets("video")
	window := all[len(all)-int(pub.PacketsSent("video")-sent0):]
	sent := int64(len(window))
	slowGot := slowVideo.Packets() - slow0
	for i, tr := range fastVideo {
		var got int64
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			got = receivedOf(tr, window)
			if got == sent || time.Now().After(deadline) {
				break
			}
		}
		t.Logf("stalled 4 s: publisher sent %d video packets, fast subscriber %d got %d of them, slow got %d", sent, i+1, got, slowGot)
		if got*100 < sent*98 {
			t.Errorf("fast subscriber %d got %d of %d packets while another subscriber stalled", i+1, got, sent)
		}
	}
	if slowGot*2 > sent {
		t.Errorf("the stalled subscriber still got %d of %d packets: the stall did not take", slowGot, sent)
	}
	proxy.resume()
}

// receivedOf counts the packets of sent (by sequence number) that tr received.
func receivedOf(tr *client.RemoteTrack, sent []client.PacketRecord) int64 {
	want := make(map[uint16]bool, len(sent))
	for _, p := range sent {
		want[p.Seq] = true
	}
	var n int64
	for _, p := range tr.ReceivedPackets() {
		if want[p.Seq] {
			delete(want, p.Seq)
			n++
		}
	}
	return n
}
