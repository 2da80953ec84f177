package codec

import "testing"

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

// IsKeyframe runs for every video packet a forwarder reads: it must not
// allocate, whatever the MIME type's case.
func TestIsKeyframeAllocatesNothing(t *testing.T) {
	p := []byte{0x10, 0x00, 0x9d, 0x01, 0x2a}
	if n := testing.AllocsPerRun(100, func() { IsKeyframe("video/VP8", p) }); n != 0 {
		t.Errorf("%.0f allocations per call", n)
	}
}
