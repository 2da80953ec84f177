package client

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/parley/parley/pkg/codec"

	"github.com/parley/parley/pkg/testmedia"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

func TestIVFSource(t *testing.T) {
	for _, tc := range []struct {
		name string
		gen  func(string, testmedia.Options) (string, error)
		mime string
	}{
		{"VP8", testmedia.VP8IVF, webrtc.MimeTypeVP8},
		{"VP9", testmedia.VP9IVF, webrtc.MimeTypeVP9},
		{"AV1", testmedia.AV1IVF, webrtc.MimeTypeAV1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := NewIVFSource(mediaFile(t, tc.gen), false)
			if err != nil {
				t.Fatal(err)
			}
			if src.Codec().MimeType != tc.mime || src.Codec().ClockRate != 90000 {
				t.Fatalf("codec %+v", src.Codec())
			}
			var n int
			var keys []int
			var total time.Duration
			ms := src.(*memSource)
			for {
				data, dur, err := src.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(data) == 0 {
					t.Fatalf("empty sample %d", n)
				}
				if dur < 33*time.Millisecond || dur > 34*time.Millisecond {
					t.Fatalf("sample %d lasts %v", n, dur)
				}
				if ms.samples[n].key {
					keys = append(keys, n)
				}
				total += dur
				n++
			}
			if n != 60 {
				t.Fatalf("%d samples, want 60", n)
			}
			if len(keys) != 2 || keys[0] != 0 || keys[1] != 30 {
				t.Fatalf("keyframes at %v, want [0 30]", keys)
			}
			if total < 1990*time.Millisecond || total > 2010*time.Millisecond {
				t.Fatalf("total duration %v", total)
			}
		})
	}
}

func TestH264Source(t *testing.T) {
	src, err := NewH264Source(mediaFile(t, testmedia.H264AnnexB), 30, false)
	if err != nil {
		t.Fatal(err)
	}
	ms := src.(*memSource)
	if len(ms.samples) != 60 {
		t.Fatalf("%d access units, want 60", len(ms.samples))
	}
	for i, s := range ms.samples {
		nals := codec.AppendAnnexBNALs(nil, s.data)
		var types []byte
		for _, n := range nals {
			types = append(types, n[0]&0x1f)
		}
		wantKey := i%30 == 0
		if s.key != wantKey {
			t.Fatalf("AU %d: key %v, NAL types %v", i, s.key, types)
		}
		if wantKey && (types[0] != 7 || types[1] != 8) {
			t.Fatalf("keyframe AU %d does not start with SPS, PPS: %v", i, types)
		}
		if s.dur != time.Second/30 {
			t.Fatalf("AU %d lasts %v", i, s.dur)
		}
	}
}

func TestOpusSource(t *testing.T) {
	src, err := NewOpusSource(mediaFile(t, testmedia.OpusOgg), false)
	if err != nil {
		t.Fatal(err)
	}
	if c := src.Codec(); c.MimeType != webrtc.MimeTypeOpus || c.ClockRate != 48000 || c.Channels != 2 {
		t.Fatalf("codec %+v", c)
	}
	n := 0
	for {
		data, dur, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if dur != 20*time.Millisecond || len(data) == 0 {
			t.Fatalf("packet %d: %d bytes, %v", n, len(data), dur)
		}
		n++
	}
	if n < 99 || n > 102 {
		t.Fatalf("%d packets for 2 s", n)
	}
}

func TestSilenceSource(t *testing.T) {
	src := NewSilenceOpusSource()
	for range 3 {
		data, dur, err := src.Next()
		if err != nil || dur != 20*time.Millisecond || codec.OpusPacketDuration(data) != 20*time.Millisecond {
			t.Fatalf("%x %v %v", data, dur, err)
		}
	}
}

func TestOpusPacketDuration(t *testing.T) {
	for _, tc := range []struct {
		p    []byte
		want time.Duration
	}{
		{[]byte{0xfc}, 20 * time.Millisecond},        // CELT FB 20 ms, one frame
		{[]byte{0xe0}, 2500 * time.Microsecond},      // CELT NB 2.5 ms
		{[]byte{0x08}, 20 * time.Millisecond},        // SILK NB 20 ms
		{[]byte{0x1b, 0x02}, 120 * time.Millisecond}, // SILK NB 60 ms, code 3, 2 frames
		{[]byte{0x79}, 40 * time.Millisecond},        // hybrid FB 20 ms, two frames
		{[]byte{0x03}, 0},                            // code 3 without count byte
		{nil, 0},
	} {
		if got := codec.OpusPacketDuration(tc.p); got != tc.want {
			t.Errorf("%x: %v, want %v", tc.p, got, tc.want)
		}
	}
}

// TestLoopingTimestamps packetizes three passes over a looping source and checks
// that RTP timestamps keep increasing by each sample's duration across the loop.
func TestLoopingTimestamps(t *testing.T) {
	src, err := NewIVFSource(mediaFile(t, testmedia.VP8IVF), true)
	if err != nil {
		t.Fatal(err)
	}
	pk := rtp.NewPacketizer(MTU, 96, 1, &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewRandomSequencer(), 90000)
	clock := rtpClock{rate: 90000}
	var last *rtp.Packet
	keys := 0
	for i := range 180 {
		data, dur, err := src.Next()
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		pkts := pk.Packetize(data, clock.advance(dur))
		if len(pkts) == 0 {
			t.Fatalf("sample %d gave no packets", i)
		}
		if last != nil {
			if d := pkts[0].Timestamp - last.Timestamp; d != 3000 {
				t.Fatalf("sample %d: timestamp advanced by %d, want 3000", i, d)
			}
			if pkts[0].SequenceNumber != last.SequenceNumber+1 {
				t.Fatalf("sample %d: sequence jump", i)
			}
		}
		if codec.IsKeyframe(webrtc.MimeTypeVP8, pkts[0].Payload) {
			keys++
		}
		last = pkts[len(pkts)-1]
		if !last.Marker {
			t.Fatalf("sample %d: last packet without marker", i)
		}
	}
	if keys != 6 {
		t.Fatalf("%d keyframes in 3 loops, want 6", keys)
	}
}

func TestRequestKeyframe(t *testing.T) {
	src, err := NewIVFSource(mediaFile(t, testmedia.VP8IVF), true)
	if err != nil {
		t.Fatal(err)
	}
	ms := src.(*memSource)
	for range 40 { // into the second GOP
		if _, _, err := src.Next(); err != nil {
			t.Fatal(err)
		}
	}
	src.RequestKeyframe()
	data, _, _ := src.Next()
	if data[0]&1 != 0 || ms.pos != 31 {
		t.Fatalf("after RequestKeyframe: keyframe %v, position %d", data[0]&1 == 0, ms.pos)
	}
	// At a keyframe already: nothing changes.
	ms.pos = 30
	src.RequestKeyframe()
	if ms.pos != 30 {
		t.Fatalf("position %d", ms.pos)
	}
	// At the end of a looping source: the next sample is the first.
	ms.pos = len(ms.samples)
	src.RequestKeyframe()
	if ms.pos != 0 {
		t.Fatalf("position %d", ms.pos)
	}
}

func TestRTPClock(t *testing.T) {
	c := rtpClock{rate: 90000}
	var total int64
	for range 30 * 3600 { // an hour of 30 fps
		total += int64(c.advance(time.Second / 30))
	}
	// 108000 frames of 33333333 ns are 3599.99996 s: 323999997 ticks.
	if want := int64(323999997); total < want-1 || total > want+1 {
		t.Fatalf("an hour is %d ticks, want %d", total, want)
	}
}
