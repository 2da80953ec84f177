package client

import (
	"testing"
	"time"

	"github.com/parley/parley/pkg/codec"
	"github.com/parley/parley/pkg/testmedia"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestIsKeyframeOnPacketizedMedia packetizes real media exactly as Publish does
// and checks that IsKeyframe marks the first packet of every keyframe and nothing else.
func TestIsKeyframeOnPacketizedMedia(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) KeyframeSource
	}{
		{"VP8", func(t *testing.T) KeyframeSource { return mustIVF(t, testmedia.VP8IVF) }},
		{"VP9", func(t *testing.T) KeyframeSource { return mustIVF(t, testmedia.VP9IVF) }},
		{"AV1", func(t *testing.T) KeyframeSource { return mustIVF(t, testmedia.AV1IVF) }},
		{"H264", func(t *testing.T) KeyframeSource {
			s, err := NewH264Source(mediaFile(t, testmedia.H264AnnexB), 30, false)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := tc.open(t).(*memSource)
			mime := ms.codec.MimeType
			payloader, err := newPayloader(mime)
			if err != nil {
				t.Fatal(err)
			}
			pk := rtp.NewPacketizer(MTU, 96, 1, payloader, rtp.NewRandomSequencer(), 90000)
			keyframes := 0
			for i, s := range ms.samples {
				pkts := pk.Packetize(s.data, 3000)
				if len(pkts) == 0 {
					t.Fatalf("sample %d: no packets", i)
				}
				if got := codec.IsKeyframe(mime, pkts[0].Payload); got != s.key {
					t.Fatalf("sample %d (key %v): first packet IsKeyframe = %v (payload % x)", i, s.key, got, pkts[0].Payload[:min(8, len(pkts[0].Payload))])
				}
				if s.key {
					keyframes++
				}
				for j, p := range pkts[1:] {
					if !codec.IsKeyframe(mime, p.Payload) {
						continue
					}
					// Only an IDR made of several slices has a keyframe start in a later packet.
					if mime != webrtc.MimeTypeH264 || !s.key {
						t.Fatalf("sample %d packet %d: unexpected keyframe start", i, j+1)
					}
				}
				if p := pkts[len(pkts)-1]; !p.Marker {
					t.Fatalf("sample %d: no marker on the last packet", i)
				}
			}
			if keyframes != 2 {
				t.Fatalf("%d keyframes, want 2", keyframes)
			}
		})
	}
}

func mustIVF(t *testing.T, gen func(string, testmedia.Options) (string, error)) KeyframeSource {
	t.Helper()
	s, err := NewIVFSource(mediaFile(t, gen), false)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOpusPacketizedDurations(t *testing.T) {
	src, err := NewOpusSource(mediaFile(t, testmedia.OpusOgg), true)
	if err != nil {
		t.Fatal(err)
	}
	pk := rtp.NewPacketizer(MTU, 111, 1, mustPayloader(t, webrtc.MimeTypeOpus), rtp.NewRandomSequencer(), 48000)
	var prev uint32
	for i := range 250 { // 5 s over a 2 s looping file
		data, dur, err := src.Next()
		if err != nil {
			t.Fatal(err)
		}
		pkts := pk.Packetize(data, uint32(dur*48000/time.Second))
		if len(pkts) != 1 {
			t.Fatalf("packet %d became %d RTP packets", i, len(pkts))
		}
		if i > 0 && pkts[0].Timestamp-prev != 960 {
			t.Fatalf("packet %d: timestamp step %d", i, pkts[0].Timestamp-prev)
		}
		prev = pkts[0].Timestamp
	}
}

func mustPayloader(t *testing.T, mime string) rtp.Payloader {
	t.Helper()
	p, err := newPayloader(mime)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
