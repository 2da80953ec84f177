package recorder

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	parleycodec "github.com/parley/parley/pkg/codec"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// The jitter buffer reorders across the 16-bit sequence wrap, holds the
// start so that a packet sent before the first to arrive is not lost, drops
// duplicates and late packets, and gives a gap up after maxWait.
func TestJitterBufferWrapAndLoss(t *testing.T) {
	j := newJitterBuffer(64, 300*time.Millisecond)
	t0 := time.Unix(0, 0)
	var out []uint16
	var lossAt []uint16
	rel := func(p *jbPacket, lost bool) {
		out = append(out, p.seq)
		if lost {
			lossAt = append(lossAt, p.seq)
		}
	}
	push := func(seq uint16, at time.Duration) {
		p := &jbPacket{seq: seq, arrival: t0.Add(at)}
		p.ext = j.unwrap(seq)
		j.push(p, rel)
		j.pop(p.arrival, rel, false)
	}
	// 65534 first, then 65533 (sent before it), 65535, 1, 0 (reordered
	// across the wrap), 1 again (duplicate): all held for the start.
	for i, s := range []uint16{65534, 65533, 65535, 1, 0, 1} {
		push(s, time.Duration(i)*time.Millisecond)
	}
	if len(out) != 0 {
		t.Fatalf("released %v during the start hold", out)
	}
	// 2 is lost: 3 waits until it is 300 ms old; the start is held as long.
	push(3, 10*time.Millisecond)
	push(4, 200*time.Millisecond)
	if len(out) != 0 {
		t.Fatalf("released %v during the start hold", out)
	}
	push(4, 300*time.Millisecond) // a duplicate, after the start hold
	want := []uint16{65533, 65534, 65535, 0, 1}
	if fmt.Sprint(out) != fmt.Sprint(want) || len(lossAt) != 0 || j.dup != 2 {
		t.Fatalf("released %v (losses before %v, %d duplicates), want %v", out, lossAt, j.dup, want)
	}
	push(5, 310*time.Millisecond)
	if len(out) != 8 || len(lossAt) != 1 || lossAt[0] != 3 {
		t.Fatalf("released %v, losses before %v", out, lossAt)
	}
	// 2 arrives after it was given up: late, dropped.
	push(2, 330*time.Millisecond)
	if len(out) != 8 || j.late != 1 {
		t.Fatalf("late packet released: %v (late %d dup %d)", out, j.late, j.dup)
	}
	// A restart of the sequence far away: released at once, marked as a loss.
	push(30000, 340*time.Millisecond)
	if out[len(out)-1] != 30000 || lossAt[len(lossAt)-1] != 30000 {
		t.Fatalf("jump not handled: %v %v", out, lossAt)
	}
}

// Garbage never panics the writer and leaves a valid (maybe empty) file.
func TestGarbageInput(t *testing.T) {
	s, err := StartSession(t.TempDir(), "g", "s", sessionStart, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	var ws []*StreamWriter
	for _, mime := range []string{"video/VP8", "video/VP9", "video/H264", "video/AV1", "audio/opus", "audio/PCMU", "audio/PCMA"} {
		w, err := s.AddStream(StreamInfo{StreamID: mime, Tracks: []TrackInfo{{MimeType: mime}, {MimeType: "audio/opus"}}})
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 30000 {
		w := ws[i%len(ws)]
		payload := make([]byte, rng.IntN(300))
		for k := range payload {
			payload[k] = byte(rng.Uint32())
		}
		if rng.IntN(4) == 0 && len(payload) > 0 {
			payload[0] = []byte{0x10, 0x90, 0x7c, 0x18, 0x08, 0x88}[rng.IntN(6)] // plausible descriptors
		}
		pkt := &rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(rng.Uint32()), Timestamp: rng.Uint32(),
			SSRC: uint32(rng.IntN(3)), Marker: rng.IntN(3) == 0}, Payload: payload}
		w.WriteRTP(rng.IntN(3)-0, pkt, sessionStart.Add(time.Duration(i)*time.Millisecond))
		if i%97 == 0 {
			w.SenderReport(rng.IntN(2), uint32(rng.IntN(3)), sessionStart.Add(time.Duration(rng.Int64N(1e12))), rng.Uint32(), sessionStart)
		}
	}
	w, _ := s.AddStream(StreamInfo{StreamID: "nil", Tracks: []TrackInfo{{MimeType: "video/VP8"}}})
	w.WriteRTP(0, nil, time.Time{})
	w.WriteRTP(-1, &rtp.Packet{}, time.Time{})
	if err := s.Close(time.Time{}); err != nil {
		t.Fatal(err)
	}
	for _, e := range s.Manifest().Streams {
		if e.State != StreamClosed && e.State != StreamEmpty {
			t.Errorf("%s: state %s", e.StreamID, e.State)
		}
	}
}

// G.711 decoding matches the reference values.
func TestG711Tables(t *testing.T) {
	u, a := ulawTable(), alawTable()
	if u[0xff] != 0 || u[0x00] != -32124 || u[0x80] != 32124 {
		t.Errorf("ulaw: %d %d %d", u[0xff], u[0x00], u[0x80])
	}
	if a[0xd5] != 8 || a[0x55] != -8 || a[0xaa] != 32256 {
		t.Errorf("alaw: %d %d %d", a[0xd5], a[0x55], a[0xaa])
	}
}

// pcmuSource is a 440 Hz tone in 20 ms PCMU packets.
type pcmuSource struct{ n int }

func (s *pcmuSource) Codec() webrtc.RTPCodecCapability {
	return webrtc.RTPCodecCapability{MimeType: "audio/PCMU", ClockRate: 8000, Channels: 1}
}

func (s *pcmuSource) Next() ([]byte, time.Duration, error) {
	b := make([]byte, 160)
	for i := range b {
		v := 8000 * math.Sin(2*math.Pi*440*float64(s.n)/8000)
		b[i] = parleycodec.EncodeULaw(int16(v))
		s.n++
	}
	return b, 20 * time.Millisecond, nil
}

// PCMU audio with VP8 goes to Matroska as 16-bit PCM and decodes.
func TestPCMUToMatroska(t *testing.T) {
	file, _ := recordOne(t, []TrackInfo{{Kind: "video", MimeType: "video/VP8"}, {Kind: "audio", MimeType: "audio/PCMU"}}, 2*time.Second, func(p *simPub) {
		p.addTrack(vp8Source(t, small), 20*time.Millisecond)
		p.addTrack(&pcmuSource{}, 20*time.Millisecond)
	})
	if !strings.HasSuffix(file, ".mkv") {
		t.Fatalf("file %s", file)
	}
	if msg := decodeErrors(t, file); msg != "" {
		t.Fatalf("decode: %s", msg)
	}
	r := probe(t, file, true)
	a := r.stream("audio")
	if a == nil || a.CodecName != "pcm_s16le" {
		t.Fatalf("streams %+v", r.Streams)
	}
	ts := r.packetTimes("audio")
	if len(ts) < 95 || !near(ts[len(ts)-1], 2, 0.1) {
		t.Errorf("%d audio packets, last at %.3f", len(ts), ts[len(ts)-1])
	}
}
