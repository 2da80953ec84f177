package client

import (
	"testing"
	"time"

	"github.com/parley/parley/pkg/codec"

	"github.com/pion/webrtc/v4"
)

// Encoded against the reference values of ITU-T G.711 (via the well-known
// sign/segment tables): silence, the largest magnitudes, and a sign flip.
func TestG711Encoding(t *testing.T) {
	for _, tc := range []struct {
		v          int16
		ulaw, alaw byte
	}{
		{0, 0xff, 0xd5},
		{-1, 0x7f, 0x55},
		{32767, 0x80, 0xaa},
		{-32768, 0x00, 0x2a},
		{1000, 0xce, 0xfa},
	} {
		if got := codec.EncodeULaw(tc.v); got != tc.ulaw {
			t.Errorf("µ-law(%d) = %#x, want %#x", tc.v, got, tc.ulaw)
		}
		if got := codec.EncodeALaw(tc.v); got != tc.alaw {
			t.Errorf("A-law(%d) = %#x, want %#x", tc.v, got, tc.alaw)
		}
	}
	src := NewToneSource(webrtc.MimeTypePCMA, 440)
	b, d, err := src.Next()
	if err != nil || len(b) != 160 || d != 20*time.Millisecond {
		t.Fatalf("tone frame: %d bytes, %v, %v", len(b), d, err)
	}
}
