package testmedia

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ivfFrames splits an IVF file into its header and frames (each with its
// 12-byte frame header).
func ivfFrames(t *testing.T, data []byte) (hdr []byte, frames [][]byte) {
	t.Helper()
	if len(data) < 32 {
		t.Fatal("short IVF")
	}
	for off := 32; off+12 <= len(data); {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		if off+12+n > len(data) {
			t.Fatal("truncated IVF frame")
		}
		frames = append(frames, data[off:off+12+n])
		off += 12 + n
	}
	return data[:32], frames
}

// frameMD5s decodes an IVF file with ffmpeg and returns each picture's MD5.
func frameMD5s(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.Command(short.ffmpeg(), "-v", "error", "-i", path, "-f", "framemd5", "-").Output()
	if err != nil {
		t.Fatalf("ffmpeg decodes %s: %v", path, err)
	}
	var sums []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Split(l, ","); len(f) == 6 && !strings.HasPrefix(l, "#") {
			sums = append(sums, strings.TrimSpace(f[5]))
		}
	}
	return sums
}

// A VP8 file with temporal layers is coded as TemporalPattern says: the
// frames of the layers up to any one, alone, decode to exactly the pictures
// the whole file decodes to at those frames (nothing they need was left
// out), at a half or a quarter of the frame rate.
func TestVP8TemporalLayers(t *testing.T) {
	requireFFmpeg(t)
	dir := t.TempDir()
	for _, layers := range []int{2, 3} {
		o := Options{Duration: 2 * time.Second, Width: 320, Height: 180, Bitrate: 300_000, TemporalLayers: layers}
		p, err := VP8IVF(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		hdr, frames := ivfFrames(t, data)
		full := frameMD5s(t, p)
		if len(full) != len(frames) || len(frames) != 60 {
			t.Fatalf("%d layers: %d frames, %d decoded, want 60", layers, len(frames), len(full))
		}
		tids, _ := TemporalPattern(layers)
		for top := 0; top < layers-1; top++ {
			var sub bytes.Buffer
			sub.Write(hdr)
			var want []string
			k := 0
			for i, fr := range frames {
				if fr[12]&0x01 == 0 { // a keyframe restarts the pattern
					k = 0
				}
				if int(tids[k%len(tids)]) <= top {
					sub.Write(fr)
					want = append(want, full[i])
				}
				k++
			}
			path := filepath.Join(dir, "sub.ivf")
			if err := os.WriteFile(path, sub.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			got := frameMD5s(t, path)
			if len(got) != len(want) || len(want) > len(frames)/2+2 {
				t.Fatalf("%d layers, up to %d: %d frames decoded of %d kept (of %d)", layers, top, len(got), len(want), len(frames))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%d layers, up to %d: picture %d decodes differently without the higher layers", layers, top, i)
				}
			}
			t.Logf("%d layers, up to layer %d: %d of %d frames, all decoded as in the whole stream", layers, top, len(got), len(frames))
		}
	}
}
