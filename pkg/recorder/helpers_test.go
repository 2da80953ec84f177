package recorder

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/testmedia"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		crashChild(dir) // never returns: the parent kills it
		os.Exit(3)
	}
	goleak.VerifyTestMain(m)
}

const ffprobe = "/usr/bin/ffprobe"

// mediaDir is where generated test media is cached across runs.
func mediaDir(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(testmedia.FFmpeg); err != nil {
		t.Fatalf("ffmpeg not available (apt-get install ffmpeg): %v", err)
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "parley-testmedia")
	}
	return t.TempDir()
}

func vp8Source(t testing.TB, o testmedia.Options) client.KeyframeSource {
	t.Helper()
	p, err := testmedia.VP8IVF(mediaDir(t), o)
	if err != nil {
		t.Fatal(err)
	}
	s, err := client.NewIVFSource(p, true)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func opusSource(t testing.TB) client.Source {
	t.Helper()
	p, err := testmedia.OpusOgg(mediaDir(t), testmedia.Options{Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, err := client.NewOpusSource(p, true)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// genMedia runs ffmpeg to make a cached file named name from args.
func genMedia(t testing.TB, name string, args ...string) string {
	t.Helper()
	dir := mediaDir(t)
	out := filepath.Join(dir, name)
	if st, err := os.Stat(out); err == nil && st.Size() > 0 {
		return out
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, ".tmp-"+name+strconv.Itoa(os.Getpid()))
	full := append([]string{"-hide_banner", "-loglevel", "error", "-nostdin", "-y"}, args...)
	full = append(full, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if b, err := exec.CommandContext(ctx, testmedia.FFmpeg, full...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", full, err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// decodeErrors decodes a file completely and returns what ffmpeg says at level error.
func decodeErrors(t testing.TB, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testmedia.FFmpeg, "-nostdin", "-v", "error", "-i", path, "-f", "null", "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "ffmpeg failed: " + err.Error() + ": " + stderr.String()
	}
	return strings.TrimSpace(stderr.String())
}

type probeStream struct {
	Index     int    `json:"index"`
	CodecType string `json:"codec_type"`
	CodecName string `json:"codec_name"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	StartTime string `json:"start_time"`
}

type probeResult struct {
	Format struct {
		StartTime  string `json:"start_time"`
		Duration   string `json:"duration"`
		FormatName string `json:"format_name"`
	} `json:"format"`
	Streams []probeStream `json:"streams"`
	Packets []struct {
		StreamIndex int    `json:"stream_index"`
		PtsTime     string `json:"pts_time"`
		Flags       string `json:"flags"`
	} `json:"packets"`
}

func probe(t testing.TB, path string, packets bool) probeResult {
	t.Helper()
	args := []string{"-v", "error", "-of", "json", "-show_format", "-show_streams"}
	if packets {
		args = append(args, "-show_entries", "packet=stream_index,pts_time,flags")
	}
	args = append(args, path)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffprobe, args...).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var r probeResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("ffprobe json: %v", err)
	}
	return r
}

func fsec(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

// packetTimes returns the pts of a stream kind's packets.
func (r probeResult) packetTimes(kind string) []float64 {
	idx := -1
	for _, s := range r.Streams {
		if s.CodecType == kind {
			idx = s.Index
		}
	}
	var ts []float64
	for _, p := range r.Packets {
		if p.StreamIndex == idx {
			ts = append(ts, fsec(p.PtsTime))
		}
	}
	return ts
}

// keyTimes returns the pts of a stream kind's keyframe packets.
func (r probeResult) keyTimes(kind string) map[float64]bool {
	idx := -1
	for _, s := range r.Streams {
		if s.CodecType == kind {
			idx = s.Index
		}
	}
	keys := map[float64]bool{}
	for _, p := range r.Packets {
		if p.StreamIndex == idx && strings.Contains(p.Flags, "K") {
			keys[fsec(p.PtsTime)] = true
		}
	}
	return keys
}

func (r probeResult) stream(kind string) *probeStream {
	for i := range r.Streams {
		if r.Streams[i].CodecType == kind {
			return &r.Streams[i]
		}
	}
	return nil
}

// sessionStart is a fixed origin for synthetic room time.
var sessionStart = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func testOpts() Options {
	return Options{BlockWhenFull: true, QueueSize: 32} // a short queue keeps the simulated sender close to the writer (keyframe requests)
}

func near(got, want, tol float64) bool { return got >= want-tol && got <= want+tol }
