package server_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/codec"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/testmedia"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// vp8Capture keeps the VP8 packets a subscriber's video track received.
type vp8Capture struct {
	mu   sync.Mutex
	pkts []capturedPacket
}

type capturedPacket struct {
	seq     uint16
	ts      uint32
	marker  bool
	payload []byte
	at      time.Time
}

func (c *vp8Capture) observe(t *client.RemoteTrack) client.PacketReceivedFunc {
	if t.Kind() != "video" {
		return nil
	}
	return func(p *rtp.Packet, at, _ time.Time) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.pkts = append(c.pkts, capturedPacket{p.SequenceNumber, p.Timestamp, p.Marker, slices.Clone(p.Payload), at})
	}
}

// since returns the temporal layers of the frames received since a time,
// and how many frames.
func (c *vp8Capture) since(from time.Time) (layers []uint8, frames int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pkts {
		d, ok := codec.ParseVP8(p.payload)
		if !ok || !d.Start || p.at.Before(from) {
			continue
		}
		frames++
		if !slices.Contains(layers, d.TID) {
			layers = append(layers, d.TID)
		}
	}
	slices.Sort(layers)
	return layers, frames
}

// ivf writes the frames received (in sequence order, each once) as an IVF
// file: the descriptors stripped, the packets of each timestamp joined.
func (c *vp8Capture) ivf(t *testing.T, path string) int {
	t.Helper()
	c.mu.Lock()
	pkts := slices.Clone(c.pkts)
	c.mu.Unlock()
	// Unwrap and order by sequence number; drop retransmitted duplicates.
	ext := make(map[int64]capturedPacket)
	var last int64
	for i, p := range pkts {
		e := int64(p.seq) + 1<<20
		if i > 0 {
			e = last + int64(int16(p.seq-uint16(last)))
		}
		last = max(last, e)
		ext[e] = p
	}
	keys := make([]int64, 0, len(ext))
	for k := range ext {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out bytes.Buffer
	hdr := make([]byte, 32)
	copy(hdr, "DKIF")
	binary.LittleEndian.PutUint16(hdr[6:], 32)
	copy(hdr[8:], "VP80")
	binary.LittleEndian.PutUint16(hdr[12:], 640)
	binary.LittleEndian.PutUint16(hdr[14:], 360)
	binary.LittleEndian.PutUint32(hdr[16:], 90000)
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	out.Write(hdr)
	var frame []byte
	frames, started := 0, false
	for _, k := range keys {
		p := ext[k]
		d, ok := codec.ParseVP8(p.payload)
		if !ok || len(p.payload) == 0 {
			continue
		}
		var vp8 codecs.VP8Packet // pion's depacketizer: the payload without its descriptor
		rest, err := vp8.Unmarshal(p.payload)
		if err != nil {
			t.Fatalf("a received VP8 packet: %v", err)
		}
		if d.Start {
			frame = frame[:0]
			started = true
		}
		if !started {
			continue
		}
		frame = append(frame, rest...)
		if p.marker {
			var fh [12]byte
			binary.LittleEndian.PutUint32(fh[:], uint32(len(frame)))
			binary.LittleEndian.PutUint64(fh[4:], uint64(p.ts))
			out.Write(fh[:])
			out.Write(frame)
			frames++
			started = false
		}
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return frames
}

// pictureSums decodes an IVF file with ffmpeg: each picture's MD5.
func pictureSums(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-v", "error", "-i", path, "-f", "framemd5", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg decodes %s: %v %s", path, err, out)
	}
	var sums []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Split(l, ","); len(f) == 6 && !strings.HasPrefix(l, "#") {
			sums = append(sums, strings.TrimSpace(f[5]))
		}
	}
	return sums
}

// TestTemporalLayersFollowEachSubscriber: a publisher without simulcast
// sends VP8 with three temporal layers. A subscriber whose receiver says
// (REMB) its link carries less than the stream gets the base layer's frames
// only (or the base and the middle layer's): a quarter or half of the frame
// rate, sequence numbers without a gap, and every frame it got decodes to
// exactly a picture of the publisher's stream; the other subscriber gets
// every frame throughout. When the link lifts, all the layers come back; at
// 40 kbit/s not even the base layer fits and the video pauses, and comes
// back whole when the link lifts again.
func TestTemporalLayersFollowEachSubscriber(t *testing.T) {
	srv := testServer(t, func(c *server.Config) {})
	tids, sync := testmedia.TemporalPattern(3)
	path := mediaFileOpts(t, testmedia.VP8IVF, testmedia.Options{TemporalLayers: 3})
	video, err := client.NewTemporalIVFSource(path, tids, sync, true)
	if err != nil {
		t.Fatal(err)
	}
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "temporal", "a")
	pub, err := a.Publish(ctxT(t, 60*time.Second), client.PublishOptions{Video: video, Audio: opusSource(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatalf("publisher status: %v", err)
	}
	var goodCap, weakCap vp8Capture
	good := dial(t, srv, client.Options{Username: "good", OnRemoteTrack: goodCap.observe})
	join(t, good, "temporal", "good")
	weak := dial(t, srv, client.Options{Username: "weak", OnRemoteTrack: weakCap.observe})
	join(t, weak, "temporal", "weak")
	var weakV *client.RemoteTrack
	for _, c := range []*client.Client{good, weak} {
		tracks, err := c.WaitRemoteTracks(ctxT(t, 15*time.Second), 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range tracks {
			if tr.Kind() == "video" && c == weak {
				weakV = tr
			}
		}
	}
	// wait holds the weak receiver's REMB at bps until cond holds on what
	// it received in the last 1.5 s.
	wait := func(what string, bps float32, within time.Duration, cond func(layers []uint8, frames int) bool) {
		t.Helper()
		start := time.Now()
		for {
			sendREMB(t, weak, bps)
			time.Sleep(300 * time.Millisecond)
			layers, frames := weakCap.since(time.Now().Add(-1500 * time.Millisecond))
			if time.Since(start) > 1500*time.Millisecond && cond(layers, frames) {
				t.Logf("%s after %v: layers %v, %d frames in 1.5 s", what, time.Since(start).Round(100*time.Millisecond), layers, frames)
				return
			}
			if time.Since(start) > within {
				t.Fatalf("%s: not within %v (layers %v, %d frames in the last 1.5 s)", what, within, layers, frames)
			}
		}
	}
	all := func(layers []uint8, frames int) bool { return slices.Equal(layers, []uint8{0, 1, 2}) && frames > 35 }
	wait("all layers at first", 20e6, 15*time.Second, all)

	wait("the weak subscriber drops layer 2", 350_000, 10*time.Second, func(layers []uint8, frames int) bool {
		return len(layers) > 0 && layers[len(layers)-1] < 2
	})
	// Held there: a half or a quarter of the frames, the other gets all.
	time.Sleep(2 * time.Second)
	sendREMB(t, weak, 350_000)
	now := time.Now()
	layers, frames := weakCap.since(now.Add(-2 * time.Second))
	if len(layers) == 0 || layers[len(layers)-1] >= 2 || frames > 2*16 || frames < 2*5 {
		t.Errorf("weak subscriber at 350 kbit/s: layers %v, %d frames in 2 s; want layer 0 (or 0 and 1) at 7.5 to 15 frames a second", layers, frames)
	}
	if gl, gf := goodCap.since(now.Add(-2 * time.Second)); !slices.Equal(gl, []uint8{0, 1, 2}) || gf < 2*25 {
		t.Errorf("good subscriber meanwhile: layers %v, %d frames in 2 s", gl, gf)
	}
	// The server's account: the layers it sends each, and the frame rate
	// that makes, measured from the publisher's stream.
	for _, st := range srv.Media().Subscribers() {
		for _, tr := range st.Tracks {
			if tr.Kind != "video" {
				continue
			}
			t.Logf("%s: temporal layers %d (0: all), %.1f frames a second", st.Participant, tr.TemporalLayers, tr.FrameRate)
			switch {
			case st.Participant == "good" && (tr.TemporalLayers != 0 || tr.FrameRate < 25):
				t.Errorf("good subscriber: the server sends %d temporal layers at %.1f frames a second", tr.TemporalLayers, tr.FrameRate)
			case st.Participant == "weak" && (tr.TemporalLayers < 1 || tr.TemporalLayers > 2 || tr.FrameRate > 16 || tr.FrameRate < 5):
				t.Errorf("weak subscriber: the server sends %d temporal layers at %.1f frames a second", tr.TemporalLayers, tr.FrameRate)
			}
		}
	}

	wait("all layers back when the link lifts", 20e6, 15*time.Second, all)

	// 40 kbit/s: not even the base layer fits.
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
	wait("all layers back after the pause", 20e6, 15*time.Second, all)
	if paused, _ := weak.VideoPaused(pub.ID()); paused {
		t.Error("video plays again but the client was not told")
	}

	if n := weakV.SequenceGaps(); n != 0 {
		t.Errorf("the weak subscriber saw %d sequence numbers missing", n)
		weakCap.mu.Lock()
		for i := 1; i < len(weakCap.pkts); i++ {
			a, b := weakCap.pkts[i-1], weakCap.pkts[i]
			if b.seq != a.seq+1 {
				da, _ := codec.ParseVP8(a.payload)
				db, _ := codec.ParseVP8(b.payload)
				t.Logf("gap %d -> %d at %v (%d bytes %+v -> %d bytes %+v)", a.seq, b.seq, b.at.Format("15:04:05.000"), len(a.payload), da, len(b.payload), db)
			}
		}
		weakCap.mu.Unlock()
	}
	// Picture ids go up by one from frame to frame, but at keyframes
	// (where the video resumed).
	weakCap.mu.Lock()
	var prev codec.Descriptor
	jumps := 0
	for i, p := range weakCap.pkts {
		d, _ := codec.ParseVP8(p.payload)
		if !d.Start {
			continue
		}
		key := codec.IsKeyframe("video/vp8", p.payload)
		if i > 0 && !key && d.PicID != (prev.PicID+1)&0x7fff {
			jumps++
			t.Logf("picture id %d after %d (layer %d after %d)", d.PicID, prev.PicID, d.TID, prev.TID)
		}
		prev = d
	}
	weakCap.mu.Unlock()
	if jumps > 0 {
		t.Errorf("%d picture ids did not follow the one before", jumps)
	}
	// Every frame the weak subscriber got decodes to one of the
	// publisher's pictures.
	dir := t.TempDir()
	got := filepath.Join(dir, "weak.ivf")
	n := weakCap.ivf(t, got)
	src := map[string]bool{}
	for _, s := range pictureSums(t, path) {
		src[s] = true
	}
	sums := pictureSums(t, got)
	if len(sums) != n || n < 100 {
		t.Fatalf("%d frames received, %d decoded", n, len(sums))
	}
	bad := 0
	for _, s := range sums {
		if !src[s] {
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d of the %d frames the weak subscriber got decode to pictures the publisher never sent", bad, len(sums))
	}
	t.Logf("the weak subscriber got %d frames, every one decodes as the publisher's", len(sums))
}
