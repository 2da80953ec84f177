package client

import (
	"testing"
	"time"

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
				if got := IsKeyframe(mime, pkts[0].Payload); got != s.key {
					t.Fatalf("sample %d (key %v): first packet IsKeyframe = %v (payload % x)", i, s.key, got, pkts[0].Payload[:min(8, len(pkts[0].Payload))])
				}
				if s.key {
					keyframes++
				}
				for j, p := range pkts[1:] {
					if !IsKeyframe(mime, p.Payload) {
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

func TestIsKeyframeTable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mime    string
		payload []byte
		want    bool
	}{
		{"vp8 key, no extension", "video/VP8", []byte{0x10, 0x00}, true},
		{"vp8 key, lower-case mime", "video/vp8", []byte{0x10, 0x00}, true},
		{"vp8 delta", "video/VP8", []byte{0x10, 0x01}, false},
		{"vp8 not start", "video/VP8", []byte{0x00, 0x00}, false},
		{"vp8 partition 1", "video/VP8", []byte{0x11, 0x00}, false},
		{"vp8 key, 15-bit picture id", "video/VP8", []byte{0x90, 0x80, 0x81, 0x23, 0x00}, true},
		{"vp8 delta, 7-bit picture id", "video/VP8", []byte{0x90, 0x80, 0x05, 0x01}, false},
		{"vp8 key, picture id, tl0picidx, tid", "video/VP8", []byte{0x90, 0xe0, 0x05, 0x07, 0x20, 0x00}, true},
		{"vp8 truncated", "video/VP8", []byte{0x90, 0x80}, false},
		{"vp8 empty", "video/VP8", nil, false},
		{"vp9 key start", "video/VP9", []byte{0x8b, 0x80, 0x01, 0x18}, true},
		{"vp9 inter", "video/VP9", []byte{0xcd, 0x80, 0x01}, false},
		{"vp9 key, not start", "video/VP9", []byte{0x85, 0x80, 0x01}, false},
		{"vp9 key, spatial layer 1", "video/VP9", []byte{0xa8, 0x05, 0x02, 0x00}, false},
		{"vp9 key, spatial layer 0", "video/VP9", []byte{0xa8, 0x05, 0x00, 0x00}, true},
		{"h264 IDR", "video/H264", []byte{0x65, 0x88}, true},
		{"h264 SPS", "video/H264", []byte{0x67, 0x42}, true},
		{"h264 non-IDR", "video/H264", []byte{0x41, 0x9a}, false},
		{"h264 STAP-A SPS PPS", "video/H264", []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true},
		{"h264 STAP-A SEI", "video/H264", []byte{0x78, 0x00, 0x02, 0x06, 0x05}, false},
		{"h264 STAP-A truncated", "video/H264", []byte{0x78, 0x00, 0x09, 0x67}, false},
		{"h264 FU-A IDR start", "video/H264", []byte{0x7c, 0x85, 0x88}, true},
		{"h264 FU-A IDR middle", "video/H264", []byte{0x7c, 0x05, 0x88}, false},
		{"h264 FU-A non-IDR start", "video/H264", []byte{0x5c, 0x81, 0x9a}, false},
		{"av1 new sequence", "video/AV1", []byte{0x18, 0x0a}, true},
		{"av1 continuation", "video/AV1", []byte{0x98, 0x0a}, false},
		{"av1 delta", "video/AV1", []byte{0x10, 0x32}, false},
		{"opus", "audio/opus", []byte{0xfc, 0xff, 0xfe}, false},
		{"unknown", "video/H265", []byte{0x26, 0x01}, false},
	} {
		if got := IsKeyframe(tc.mime, tc.payload); got != tc.want {
			t.Errorf("%s: IsKeyframe = %v, want %v", tc.name, got, tc.want)
		}
	}
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
