package testmedia

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// short keeps the generated files small so the tests stay fast.
var short = Options{Duration: 2 * time.Second}

func requireFFmpeg(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(short.ffmpeg()); err != nil {
		t.Fatalf("ffmpeg not available (apt-get install ffmpeg; the README's test command does): %v", err)
	}
}

func checkIVF(t *testing.T, path, fourcc string, wantFrames int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, h, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatalf("ivf header: %v", err)
	}
	if h.FourCC != fourcc {
		t.Fatalf("fourcc = %q, want %q", h.FourCC, fourcc)
	}
	if h.Width != 640 || h.Height != 360 {
		t.Fatalf("size = %dx%d", h.Width, h.Height)
	}
	n := 0
	for {
		frame, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("frame %d: %v", n, err)
		}
		if len(frame) == 0 {
			t.Fatalf("frame %d is empty", n)
		}
		n++
	}
	if n != wantFrames {
		t.Fatalf("%d frames, want %d", n, wantFrames)
	}
}

func TestVP8IVF(t *testing.T) {
	requireFFmpeg(t)
	dir := t.TempDir()
	p, err := VP8IVF(dir, short)
	if err != nil {
		t.Fatal(err)
	}
	checkIVF(t, p, "VP80", 60)

	// Idempotent: a second call reuses the file.
	st1, _ := os.Stat(p)
	p2, err := VP8IVF(dir, short)
	if err != nil || p2 != p {
		t.Fatalf("second call: %q %v", p2, err)
	}
	st2, _ := os.Stat(p2)
	if !st1.ModTime().Equal(st2.ModTime()) {
		t.Fatal("file was regenerated")
	}
	// No temporary files left behind.
	left, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}

func TestVP9IVF(t *testing.T) {
	requireFFmpeg(t)
	p, err := VP9IVF(t.TempDir(), short)
	if err != nil {
		t.Fatal(err)
	}
	checkIVF(t, p, "VP90", 60)
}

func TestAV1IVF(t *testing.T) {
	requireFFmpeg(t)
	p, err := AV1IVF(t.TempDir(), short)
	if err != nil {
		t.Fatal(err)
	}
	checkIVF(t, p, "AV01", 60)
}

func TestH264AnnexB(t *testing.T) {
	requireFFmpeg(t)
	p, err := H264AnnexB(t.TempDir(), short)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := h264reader.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[h264reader.NalUnitType]int{}
	var first []h264reader.NalUnitType
	for {
		nal, err := r.NextNAL()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		counts[nal.UnitType]++
		if len(first) < 2 {
			first = append(first, nal.UnitType)
		}
	}
	if first[0] != h264reader.NalUnitTypeSPS || first[1] != h264reader.NalUnitTypePPS {
		t.Fatalf("stream starts with %v, want SPS, PPS", first)
	}
	// 2 s at 30 fps with a 1 s GOP: two IDR pictures, each with its own SPS.
	if counts[h264reader.NalUnitTypeSPS] != 2 || counts[h264reader.NalUnitTypeCodedSliceIdr] < 2 ||
		counts[h264reader.NalUnitTypeCodedSliceNonIdr] < 58 {
		t.Fatalf("unexpected NAL counts %v", counts)
	}
}

func TestOpusOgg(t *testing.T) {
	requireFFmpeg(t)
	p, err := OpusOgg(t.TempDir(), short)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, h, err := oggreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	if h.SampleRate != 48000 {
		t.Fatalf("sample rate %d", h.SampleRate)
	}
	pages := 0
	for {
		_, _, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pages++
	}
	// One 20 ms packet per page (plus the tags page): about 100 pages for 2 s.
	if pages < 95 || pages > 105 {
		t.Fatalf("%d pages", pages)
	}
}

// The speech files talk (about -25 dBFS) in their spans and are quiet
// (about -85 dBFS) elsewhere; the WAV is as long.
func TestSpeech(t *testing.T) {
	dir := t.TempDir()
	loud := []Span{{From: 500 * time.Millisecond, To: time.Second}}
	opts := Options{Duration: 2 * time.Second}
	ogg, pcm, err := SpeechOpus(dir, opts, loud)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(pcm)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 2*48000*2 {
		t.Fatalf("%d bytes of samples, want 2 s of 48 kHz s16 mono", len(raw))
	}
	dbfs := func(from, to time.Duration) float64 {
		var sum float64
		a, b := int(from.Seconds()*48000), int(to.Seconds()*48000)
		for i := a; i < b; i++ {
			v := float64(int16(binary.LittleEndian.Uint16(raw[2*i:]))) / 32768
			sum += v * v
		}
		return 10 * math.Log10(sum/float64(b-a))
	}
	if l := dbfs(500*time.Millisecond, time.Second); l < -35 || l > -15 {
		t.Errorf("the talking span at %.1f dBFS, want about -25", l)
	}
	if q := dbfs(1200*time.Millisecond, 1900*time.Millisecond); q > -70 {
		t.Errorf("quiet part at %.1f dBFS, want about -85", q)
	}
	for _, f := range []string{ogg} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	wav, err := SpeechWAV(dir, opts, loud)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(wav); err != nil || st.Size() < int64(len(raw)) {
		t.Errorf("wav %s: %v", wav, err)
	}
}
