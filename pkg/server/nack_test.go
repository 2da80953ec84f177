package server_test

import (
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// TestNACKRepairsPublisherLoss: 5 % of a publisher's video packets are lost
// on the way to the SFU; the SFU's NACK generator asks for them again, and a
// subscriber gets (almost) all of them.
func TestNACKRepairsPublisherLoss(t *testing.T) {
	srv := testServer(t, nil)
	proxy := newTCPProxy(t, srv, 20, false)

	pubC := dial(t, srv, client.Options{Username: "pub", ICE: proxy.ice()})
	join(t, pubC, "nack", "pub")
	sub := dial(t, srv, client.Options{Username: "sub"})
	join(t, sub, "nack", "sub")
	pub, err := pubC.Publish(ctxT(t, 30*time.Second), client.PublishOptions{Video: vp8Source(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatal(err)
	}
	tracks, err := sub.WaitRemoteTracks(ctxT(t, 10*time.Second), 1)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	dropped := proxy.droppedPackets()
	if dropped < 10 {
		t.Fatalf("the proxy dropped only %d packets", dropped)
	}
	if n := pub.NACKs("video"); n < int64(dropped)/2 {
		t.Errorf("the SFU asked for %d retransmissions of %d lost packets", n, dropped)
	}
	// What the subscriber got against what was sent, over the range it saw.
	recv := tracks[0].ReceivedPackets()
	missing, expected := missingPackets(t, pub.SentPackets("video"), recv, func(s client.PacketRecord) bool {
		return recv[len(recv)-1].Seq-s.Seq < 0x8000
	})
	t.Logf("proxy dropped %d video packets, the SFU NACKed %d, the subscriber misses %d of %d", dropped, pub.NACKs("video"), missing, expected)
	if missing*100 > expected {
		t.Errorf("the subscriber misses %d of %d packets despite NACKs (the proxy dropped %d)", missing, expected, dropped)
	}
}

// TestNACKRepairsSubscriberLoss: 5 % of the video packets the SFU sends a
// subscriber are lost; the subscriber's NACKs are answered from the track's
// shared history and it ends up with (almost) every packet.
func TestNACKRepairsSubscriberLoss(t *testing.T) {
	srv := testServer(t, nil)
	proxy := newTCPProxy(t, srv, 20, true)

	pubC := dial(t, srv, client.Options{Username: "pub"})
	join(t, pubC, "nack2", "pub")
	sub := dial(t, srv, client.Options{Username: "sub", ICE: proxy.ice()})
	join(t, sub, "nack2", "sub")
	pub, err := pubC.Publish(ctxT(t, 30*time.Second), client.PublishOptions{Video: vp8Source(t)})
	if err != nil {
		t.Fatal(err)
	}
	tracks, err := sub.WaitRemoteTracks(ctxT(t, 10*time.Second), 1)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	dropped := proxy.droppedPackets()
	if dropped < 10 {
		t.Fatalf("the proxy dropped only %d packets", dropped)
	}
	// Leave the last half second out: its retransmissions may be on the way.
	cutoff := time.Now().Add(-500 * time.Millisecond)
	missing, expected := missingPackets(t, pub.SentPackets("video"), tracks[0].ReceivedPackets(), func(s client.PacketRecord) bool {
		return s.SentAt.Before(cutoff)
	})
	t.Logf("proxy dropped %d video packets to the subscriber, which misses %d of %d", dropped, missing, expected)
	if missing*100 > expected {
		t.Errorf("the subscriber misses %d of %d packets: NACKs were not answered (the proxy dropped %d)", missing, expected, dropped)
	}
}

// missingPackets counts the sent packets from the first one received on that
// also pass until, and how many of them were not received.
func missingPackets(t *testing.T, sent, recv []client.PacketRecord, until func(client.PacketRecord) bool) (missing, expected int) {
	t.Helper()
	if len(recv) == 0 {
		t.Fatal("the subscriber received nothing")
	}
	got := make(map[uint16]bool, len(recv))
	for _, r := range recv {
		got[r.Seq] = true
	}
	for _, s := range sent {
		if s.Seq-recv[0].Seq < 0x8000 && until(s) {
			expected++
			if !got[s.Seq] {
				missing++
			}
		}
	}
	return missing, expected
}
