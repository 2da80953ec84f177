package server_test

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/recorder"
	"github.com/parley/parley/pkg/testmedia"
)

// probing is what a browser sends while it probes its uplink: padding-only
// packets after every frame, and padding after the payload of some packets.
var probing = client.Padding{AfterFrame: 3, Every: 4, Bytes: 13}

// TestPaddingLeavesNoGap: a publisher sends padding-only packets between
// its frames and padding after some payloads. Every subscriber, on the
// direct send path and on pion's, receives the media packets contiguously
// numbered (no gap where padding was left out, so nothing to NACK), each
// with its payload whole, and no padding.
func TestPaddingLeavesNoGap(t *testing.T) {
	srv := testServer(t, nil)
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "padding", "a")
	pub, err := a.Publish(ctxT(t, 60*time.Second), client.PublishOptions{Video: vp8Source(t), Audio: opusSource(t), Padding: probing})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatal(err)
	}
	direct := dial(t, srv, client.Options{Username: "direct"})
	join(t, direct, "padding", "direct")
	viaPion := dial(t, srv, client.Options{Username: "pion", SubscribeDTLSServer: true})
	join(t, viaPion, "padding", "pion")
	for _, c := range []*client.Client{direct, viaPion} {
		if _, err := c.WaitRemoteTracks(ctxT(t, 10*time.Second), 2); err != nil {
			t.Fatalf("remote tracks: %v", err)
		}
	}
	time.Sleep(4 * time.Second)
	st := srv.Media().Stats()
	if st.DirectSubscribers != 1 || st.PionSubscribers != 1 {
		t.Errorf("subscribe connections: %d direct, %d through pion; want 1 and 1", st.DirectSubscribers, st.PionSubscribers)
	}
	padding := 0
	for _, p := range pub.SentPackets("video") {
		if p.Padding {
			padding++
		}
	}
	if padding < 100 {
		t.Fatalf("the publisher sent only %d padding-only packets", padding)
	}
	for who, c := range map[string]*client.Client{"direct": direct, "pion": viaPion} {
		for _, tr := range c.RemoteTracks() {
			checkPackets(t, who+"/"+tr.Kind(), pub, tr)
			if g := tr.SequenceGaps(); g != 0 {
				t.Errorf("%s/%s: %d sequence numbers skipped", who, tr.Kind(), g)
			}
		}
	}
	if st.NACKed != 0 {
		t.Errorf("subscribers NACKed %d packets on loopback", st.NACKed)
	}
	t.Logf("the publisher sent %d padding-only video packets; %d packets NACKed by subscribers", padding, st.NACKed)
}

// TestNACKsMapToPublisherNumbers: a publisher sends padding between its
// frames, so a subscriber's numbers drift from the publisher's; 5 % of the
// video packets to the subscriber are lost. Its NACKs, in its own numbers,
// are answered with the right packets: it ends up with (almost) every media
// packet, each carrying the payload sent there.
func TestNACKsMapToPublisherNumbers(t *testing.T) {
	srv := testServer(t, nil)
	proxy := newTCPProxy(t, srv, 20, true)
	pubC := dial(t, srv, client.Options{Username: "pub"})
	join(t, pubC, "padnack", "pub")
	sub := dial(t, srv, client.Options{Username: "sub", ICE: proxy.ice()})
	join(t, sub, "padnack", "sub")
	pub, err := pubC.Publish(ctxT(t, 30*time.Second), client.PublishOptions{Video: vp8Source(t), Padding: probing})
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
	m := matchPackets(t, "sub/video", pub.SentPackets("video"), tracks[0].ReceivedPackets())
	st := srv.Media().Stats()
	t.Logf("proxy dropped %d video packets; the subscriber NACKed %d, %d sent again; it misses %d of %d (its numbers %d behind the publisher's)",
		dropped, st.NACKed, st.Retransmitted, m.missing, m.expected, -int16(m.drift))
	if st.NACKed == 0 || st.Retransmitted*2 < uint64(dropped) {
		t.Errorf("%d packets lost, %d NACKed, %d sent again", dropped, st.NACKed, st.Retransmitted)
	}
	if m.missing*100 > m.expected {
		t.Errorf("the subscriber misses %d of %d packets despite NACKs (the proxy dropped %d)", m.missing, m.expected, dropped)
	}
	if m.drift == 0 {
		t.Error("the subscriber's numbers are the publisher's: the padding did not move them, the test did not take")
	}
}

// TestRecordingWithPaddingKeepsEveryFrame: H.264 and AV1 payloads do not
// say which packet starts a frame, so a recorder that sees a gap before a
// frame must give the frame up. A publisher that sends padding-only packets
// between its frames leaves no such gap: the recording has every frame.
func TestRecordingWithPaddingKeepsEveryFrame(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  func(t *testing.T) client.Source
	}{
		{"H264", h264Source},
		{"AV1", func(t *testing.T) client.Source { return ivfSource(t, testmedia.AV1IVF) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, dir, finalized := recordingServer(t)
			a := dial(t, srv, client.Options{Username: "a"})
			if _, err := a.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "padrec", Name: "a", Record: true}); err != nil {
				t.Fatal(err)
			}
			pub, err := a.Publish(ctxT(t, 60*time.Second), client.PublishOptions{Video: tc.src(t), Padding: probing})
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			leaving := time.Now()
			if err := a.Leave(ctxT(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
			select {
			case <-finalized:
			case <-time.After(15 * time.Second):
				t.Fatal("the room did not finalize")
			}
			// The frames sent up to shortly before the publisher left (the
			// last ones may still be on their way when it does).
			frames, before, padding := map[uint32]bool{}, map[uint32]bool{}, 0
			for _, p := range pub.SentPackets("video") {
				switch {
				case p.Padding:
					padding++
				case p.SentAt.Before(leaving.Add(-300 * time.Millisecond)):
					before[p.Timestamp] = true
					fallthrough
				default:
					frames[p.Timestamp] = true
				}
			}
			manifests, _ := filepath.Glob(filepath.Join(dir, "*", "*", recorder.ManifestName))
			if len(manifests) != 1 {
				t.Fatalf("%d manifests, want 1", len(manifests))
			}
			m, err := recorder.ReadManifest(manifests[0])
			if err != nil || len(m.Streams) != 1 {
				t.Fatalf("manifest: %+v, %v", m, err)
			}
			file := filepath.Join(filepath.Dir(manifests[0]), m.Streams[0].File)
			if e := decodeErrors(t, file); e != "" {
				t.Errorf("%s does not decode cleanly: %s", m.Streams[0].File, e)
			}
			got := videoPackets(t, file)
			t.Logf("%s: sent %d frames (%d of them 300 ms before leaving) and %d padding-only packets; the recording has %d frames",
				tc.name, len(frames), len(before), padding, got)
			if got < len(before) || got > len(frames) {
				t.Errorf("the recording has %d frames; %d were sent, %d of them 300 ms before the publisher left", got, len(frames), len(before))
			}
		})
	}
}

// videoPackets counts the video frames (packets) of a media file.
func videoPackets(t *testing.T, path string) int {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
		"-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("ffprobe %s: %q", path, out)
	}
	return n
}
