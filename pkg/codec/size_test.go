package codec_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/codec"
	"github.com/parley/parley/pkg/testmedia"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// The size of real VP8 and H.264 keyframes (made by ffmpeg, packetized as
// pion does) is read from their first RTP packet, at odd sizes too (H.264
// crops them from whole macroblocks).
func TestFrameSize(t *testing.T) {
	dir := filepath.Join(os.TempDir(), "parley-testmedia")
	for _, tc := range []struct {
		mime string
		w, h int
	}{
		{"video/VP8", 320, 180}, {"video/VP8", 1280, 720}, {"video/H264", 320, 180}, {"video/H264", 642, 362},
	} {
		o := testmedia.Options{Width: tc.w, Height: tc.h, Duration: time.Second}
		var src client.Source
		var pay rtp.Payloader
		switch tc.mime {
		case "video/VP8":
			path, err := testmedia.VP8IVF(dir, o)
			if err != nil {
				t.Fatal(err)
			}
			if src, err = client.NewIVFSource(path, false); err != nil {
				t.Fatal(err)
			}
			pay = &codecs.VP8Payloader{EnablePictureID: true}
		default:
			path, err := testmedia.H264AnnexB(dir, o)
			if err != nil {
				t.Fatal(err)
			}
			if src, err = client.NewH264Source(path, 30, false); err != nil {
				t.Fatal(err)
			}
			pay = &codecs.H264Payloader{}
		}
		sample, _, err := src.Next()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, p := range pay.Payload(1200, sample) {
			if w, h, ok := codec.FrameSize(tc.mime, p); ok {
				if w != tc.w || h != tc.h {
					t.Errorf("%s %dx%d: read %dx%d", tc.mime, tc.w, tc.h, w, h)
				}
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s %dx%d: no size found in the keyframe's packets", tc.mime, tc.w, tc.h)
		}
		// A frame that is no keyframe carries none.
		next, _, _ := src.Next()
		for _, p := range pay.Payload(1200, next) {
			if _, _, ok := codec.FrameSize(tc.mime, p); ok {
				t.Errorf("%s: a size read from a frame that is no keyframe", tc.mime)
			}
		}
	}
	for _, bad := range [][]byte{nil, {0x10}, {0x67, 0x42}, {0x78, 0, 5, 0x67, 1, 2, 3, 4}} {
		codec.FrameSize("video/H264", bad)
		codec.FrameSize("video/VP8", bad)
	}
}
