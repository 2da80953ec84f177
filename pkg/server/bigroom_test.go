package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/server/servertest"
	"github.com/parley/parley/pkg/signaling"
)

// TestRoomOf50Cameras: 50 Pion participants each publish a small camera
// (VP8 160x90 at 10 fps and Opus); two more participants join to receive
// everything and get all 100 tracks: every camera's audio, and its video from
// a keyframe on, frame after frame. Their subscribe connections negotiate 100
// media sections at once. (The room allows 52 here: 50 cameras and the two
// receivers.)
func TestRoomOf50Cameras(t *testing.T) {
	const n = 50
	srv := testServer(t, func(c *server.Config) {
		c.Rooms.MaxParticipants = n + 2
		// Every participant comes from 127.0.0.1 here, not from an address of its own.
		c.Signaling.AddressLimits = signaling.AddressLimits{}
	})
	room := fmt.Sprintf("fifty%d", time.Now().UnixNano()%100000)
	start := time.Now()
	cams := servertest.Cameras(t, wsURL(srv), room, "cam", n, servertest.SmallCamera)
	t.Logf("%d cameras publishing after %v", n, time.Since(start).Round(time.Millisecond))

	receivers := []*client.Client{dial(t, srv, client.Options{Username: "r1"}), dial(t, srv, client.Options{Username: "r2"})}
	start = time.Now()
	for _, r := range receivers {
		join(t, r, room, "")
	}
	for _, r := range receivers {
		if _, err := r.WaitRemoteTracks(ctxT(t, 2*time.Minute), 2*n); err != nil {
			t.Fatalf("%s: %v", r.Session().Name, err)
		}
	}
	t.Logf("both receivers have all %d tracks after %v", 2*n, time.Since(start).Round(time.Millisecond))

	type got struct{ audio, frames int64 }
	// received reads, per camera, what a receiver got: audio packets and
	// video frames (ends of frames) from its first keyframe on.
	received := func(r *client.Client) map[string]got {
		out := map[string]got{}
		for _, tr := range r.RemoteTracks() {
			g := out[tr.Publisher()]
			switch tr.Kind() {
			case "audio":
				g.audio += tr.Packets()
			case "video":
				keyed := false
				for _, p := range tr.ReceivedPackets() {
					keyed = keyed || p.Keyframe
					if keyed && p.Marker {
						g.frames++
					}
				}
			}
			out[tr.Publisher()] = g
		}
		return out
	}
	// Generous: about 2 s here alone, but CI runs other packages' tests (browsers) at the same time.
	deadline := time.Now().Add(90 * time.Second)
	for i, r := range receivers {
		for {
			g := received(r)
			var short []string
			for _, c := range cams {
				if x := g[c.Name]; x.audio < 25 || x.frames < 10 {
					short = append(short, fmt.Sprintf("%s%+v", c.Name, x))
				}
			}
			if len(short) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("receiver %d: %d of %d cameras short of 25 audio packets and 10 video frames: %s",
					i+1, len(short), n, strings.Join(short, " "))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	t.Logf("both receivers decoded-ready media from all %d cameras after %v", n, time.Since(start).Round(time.Millisecond))
	for i, r := range receivers {
		pc := r.SubscribePeerConnection()
		offer, answer := pc.CurrentRemoteDescription(), pc.CurrentLocalDescription()
		if offer == nil || answer == nil {
			t.Fatalf("receiver %d: the subscribe connection is not negotiated", i+1)
		}
		t.Logf("receiver %d: subscribe offer %d bytes, answer %d bytes, %d media sections",
			i+1, len(offer.SDP), len(answer.SDP), strings.Count(answer.SDP, "\nm="))
	}
}
