package mixer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley/parley/pkg/recorder"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	ffmpegBin  = "/usr/bin/ffmpeg"
	ffprobeBin = "/usr/bin/ffprobe"
)

var start = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// fixture is a finished session made directly with ffmpeg: what the
// recorder writes (WebM files whose first timestamp is their offset) and a manifest.
type fixture struct {
	dir, manifest string
	files         []string
}

type fixStream struct {
	name, color, kind string
	offset, dur       time.Duration
	freq              int
}

func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}

func makeFixture(t testing.TB, total time.Duration, streams []fixStream) fixture {
	t.Helper()
	return makeFixtureIn(t, t.TempDir(), total, streams, "320x240")
}

// makeFixtureSized makes a 640x360 fixture in dir and returns its manifest.
func makeFixtureSized(t testing.TB, dir string, total time.Duration, streams []fixStream) string {
	return makeFixtureIn(t, dir, total, streams, "640x360").manifest
}

func makeFixtureIn(t testing.TB, dir string, total time.Duration, streams []fixStream, size string) fixture {
	t.Helper()
	m := recorder.Manifest{Version: recorder.ManifestVersion, Room: "Mix room", SessionID: "s1", State: recorder.StateFinished,
		Start: start, End: start.Add(total), DurationMs: total.Milliseconds(), Updated: start.Add(total)}
	f := fixture{dir: dir, manifest: filepath.Join(dir, recorder.ManifestName)}
	for i, s := range streams {
		file := recorder.SafeName(s.name) + "_" + s.kind + "_" + strconv.Itoa(i) + ".webm"
		path := filepath.Join(dir, file)
		src := "color=c=" + s.color + ":s=" + size + ":r=30"
		if s.color == "testsrc2" {
			src = "testsrc2=s=" + size + ":r=30"
		}
		run(t, ffmpegBin, "-nostdin", "-v", "error", "-y",
			"-f", "lavfi", "-i", src,
			"-f", "lavfi", "-i", "sine=f="+strconv.Itoa(s.freq)+":sample_rate=48000",
			"-t", secs(s.dur), "-c:v", "libvpx", "-b:v", "500k", "-deadline", "realtime", "-cpu-used", "8",
			"-c:a", "libopus", "-b:a", "32k", "-output_ts_offset", secs(s.offset), path)
		f.files = append(f.files, path)
		m.Streams = append(m.Streams, recorder.StreamEntry{
			Participant: s.name, StreamID: strconv.Itoa(i), Kind: s.kind, File: file, Container: "webm",
			Tracks: []recorder.TrackEntry{
				{Kind: "video", Codec: "video/VP8", ClockRate: 90000, Width: 320, Height: 240, Number: 1},
				{Kind: "audio", Codec: "audio/opus", ClockRate: 48000, Channels: 2, Number: 2},
			},
			State: recorder.StreamClosed, OffsetMs: s.offset.Milliseconds(), DurationMs: s.dur.Milliseconds(),
			Start: start.Add(s.offset), End: start.Add(s.offset + s.dur),
		})
	}
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(f.manifest, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f fixture) hashes(t *testing.T) map[string][32]byte {
	h := map[string][32]byte{}
	for _, p := range append([]string{f.manifest}, f.files...) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		h[p] = sha256.Sum256(b)
	}
	return h
}

type probeOut struct {
	Format struct {
		Duration string `json:"duration"`
	} `json:"format"`
	Streams []struct {
		CodecType string `json:"codec_type"`
		CodecName string `json:"codec_name"`
		Width     int    `json:"width"`
		Height    int    `json:"height"`
	} `json:"streams"`
}

func probe(t *testing.T, path string) probeOut {
	var p probeOut
	out := run(t, ffprobeBin, "-v", "error", "-of", "json", "-show_format", "-show_streams", path)
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p probeOut) count(kind string) int {
	n := 0
	for _, s := range p.Streams {
		if s.CodecType == kind {
			n++
		}
	}
	return n
}

// frameAt decodes the frame at t seconds as RGB.
func frameAt(t *testing.T, path string, at float64, w, h int) []byte {
	out := run(t, ffmpegBin, "-nostdin", "-v", "error", "-ss", strconv.FormatFloat(at, 'f', 3, 64), "-i", path,
		"-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-")
	if len(out) != w*h*3 {
		t.Fatalf("frame at %.1f: %d bytes, want %d", at, len(out), w*h*3)
	}
	return out
}

// colorAt names the color of a pixel: red, blue, black or other.
func colorAt(rgb []byte, w, x, y int) string {
	r, g, b := int(rgb[(y*w+x)*3]), int(rgb[(y*w+x)*3+1]), int(rgb[(y*w+x)*3+2])
	switch {
	case r > 180 && g < 70 && b < 70:
		return "red"
	case b > 180 && r < 70 && g < 70:
		return "blue"
	case r < 40 && g < 40 && b < 40:
		return "black"
	}
	return "other(" + strconv.Itoa(r) + "," + strconv.Itoa(g) + "," + strconv.Itoa(b) + ")"
}

func smallSettings() Settings {
	s := DefaultSettings()
	s.Width, s.Height, s.FrameRate = 640, 360, 15
	s.Preset = "ultrafast"
	return s
}

// The mix: one video stream of the configured size and one audio stream,
// as long as the session; one tile while only A publishes, two once B does.
func TestMixTwoStreams(t *testing.T) {
	f := makeFixture(t, 6*time.Second, []fixStream{
		{name: "Ann O'Brien: [a,b]; %{pts}", color: "red", kind: "camera", offset: 0, dur: 6 * time.Second, freq: 440},
		{name: "Bob\nnewline", color: "blue", kind: "camera", offset: 3 * time.Second, dur: 3 * time.Second, freq: 660},
	})
	before := f.hashes(t)
	// A font in a directory whose name needs escaping in a filter graph.
	fontDir := filepath.Join(t.TempDir(), "we'ird, [dir]:x;y")
	if err := os.MkdirAll(fontDir, 0o755); err != nil {
		t.Fatal(err)
	}
	font, _ := DefaultSettings().font()
	if font == "" {
		t.Fatal("no font for labels: apt-get install fonts-dejavu-core (the README's test command does)")
	}
	b, _ := os.ReadFile(font)
	_ = os.WriteFile(filepath.Join(fontDir, "f.ttf"), b, 0o644)
	s := smallSettings()
	s.Font = filepath.Join(fontDir, "f.ttf")

	out := filepath.Join(t.TempDir(), "mix.mp4")
	var mu sync.Mutex
	var got []Progress
	err := Mix(context.Background(), f.manifest, out, s, func(p Progress) {
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
	})
	if err != nil {
		log, _ := os.ReadFile(out + ".log")
		t.Fatalf("mix: %v\n%s", err, log)
	}
	p := probe(t, out)
	if p.count("video") != 1 || p.count("audio") != 1 || p.Streams[0].Width != 640 || p.Streams[0].Height != 360 {
		t.Fatalf("streams: %+v", p.Streams)
	}
	if d, _ := strconv.ParseFloat(p.Format.Duration, 64); d < 5.5 || d > 6.5 {
		t.Errorf("duration %.3f, want 6 ± 0.5", d)
	}
	// +faststart: the index (moov) comes before the media (mdat), so a
	// player seeks without reading the file's end first.
	if boxes := mp4Boxes(t, out); strings.Index(boxes, "moov") < 0 || strings.Index(boxes, "moov") > strings.Index(boxes, "mdat") {
		t.Errorf("the MP4's top-level boxes are %s: want moov before mdat", boxes)
	}
	// Before B: one tile, 320x240 fitted into 640x360 (480x360, centred).
	one := frameAt(t, out, 1.5, 640, 360)
	for _, pt := range [][2]int{{320, 180}, {100, 180}, {540, 40}} {
		if c := colorAt(one, 640, pt[0], pt[1]); c != "red" {
			t.Errorf("t=1.5 (%d,%d) is %s, want red", pt[0], pt[1], c)
		}
	}
	if c := colorAt(one, 640, 40, 180); c != "black" {
		t.Errorf("t=1.5 pillarbox is %s, want black", c)
	}
	// After B: two tiles side by side, A left, B right.
	two := frameAt(t, out, 4.5, 640, 360)
	if c := colorAt(two, 640, 160, 150); c != "red" {
		t.Errorf("t=4.5 left tile is %s, want red", c)
	}
	if c := colorAt(two, 640, 480, 150); c != "blue" {
		t.Errorf("t=4.5 right tile is %s, want blue", c)
	}
	if len(got) == 0 || got[len(got)-1].Percent != 100 {
		t.Errorf("progress: %+v", got)
	}
	logText, err := os.ReadFile(out + ".log")
	if err != nil || !bytes.Contains(logText, []byte("drawtext")) {
		t.Errorf("log %s: %v", out+".log", err)
	}
	if _, err := os.Stat(out + ".partial"); !os.IsNotExist(err) {
		t.Errorf("temp output left behind")
	}
	after := f.hashes(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("input %s changed", k)
		}
	}

	t.Run("hasAudio false", func(t *testing.T) {
		s := smallSettings()
		s.HasAudio, s.MixerDisplayStreamName = false, false
		out := filepath.Join(t.TempDir(), "v.mp4")
		if err := Mix(context.Background(), f.manifest, out, s, nil); err != nil {
			t.Fatal(err)
		}
		if p := probe(t, out); p.count("audio") != 0 || p.count("video") != 1 {
			t.Fatalf("streams %+v", p.Streams)
		}
	})
	t.Run("hasVideo false, webm", func(t *testing.T) {
		s := smallSettings()
		s.HasVideo, s.Format = false, FormatWebM
		out := filepath.Join(t.TempDir(), "a.webm")
		if err := Mix(context.Background(), f.manifest, out, s, nil); err != nil {
			t.Fatal(err)
		}
		p := probe(t, out)
		if p.count("audio") != 1 || p.count("video") != 0 || p.Streams[0].CodecName != "opus" {
			t.Fatalf("streams %+v", p.Streams)
		}
		if d, _ := strconv.ParseFloat(p.Format.Duration, 64); d < 5.5 || d > 6.5 {
			t.Errorf("duration %.3f", d)
		}
	})
	// A manifest written before sessions ended with their last frame runs on
	// to the room's close (its idle timeout later): the mix still ends with
	// the last frame.
	t.Run("ends with the last frame", func(t *testing.T) {
		m, err := recorder.ReadManifest(f.manifest)
		if err != nil {
			t.Fatal(err)
		}
		m.End, m.DurationMs = m.End.Add(65*time.Second), m.DurationMs+65_000
		dir := t.TempDir()
		for _, e := range m.Streams {
			if err := os.Symlink(filepath.Join(f.dir, e.File), filepath.Join(dir, e.File)); err != nil {
				t.Fatal(err)
			}
		}
		data, _ := json.Marshal(m)
		manifest := filepath.Join(dir, recorder.ManifestName)
		if err := os.WriteFile(manifest, data, 0o644); err != nil {
			t.Fatal(err)
		}
		s := smallSettings()
		s.MixerDisplayStreamName = false
		out := filepath.Join(t.TempDir(), "late.mp4")
		if err := Mix(context.Background(), manifest, out, s, nil); err != nil {
			t.Fatal(err)
		}
		if d, _ := strconv.ParseFloat(probe(t, out).Format.Duration, 64); d < 5.5 || d > 6.5 {
			t.Errorf("a session closed 65 s after its last frame mixes to %.3f s, want 6 ± 0.5", d)
		}
	})
	t.Run("refuses to overwrite an input", func(t *testing.T) {
		if err := Mix(context.Background(), f.manifest, f.files[0], smallSettings(), nil); err == nil {
			t.Fatal("mixing onto an input was accepted")
		}
	})
	t.Run("a failed mix leaves no output and keeps its log", func(t *testing.T) {
		s := smallSettings()
		s.FFmpeg = "/bin/false"
		out := filepath.Join(t.TempDir(), "x.mp4")
		if err := Mix(context.Background(), f.manifest, out, s, nil); err == nil {
			t.Fatal("no error")
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Error("output exists")
		}
		if _, err := os.Stat(out + ".log"); err != nil {
			t.Error("no log")
		}
	})
}

// mp4Boxes lists an MP4 file's top-level boxes, in order ("ftyp moov mdat").
func mp4Boxes(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	var off int64
	for {
		var h [16]byte
		if _, err := f.ReadAt(h[:8], off); err != nil {
			break
		}
		size := int64(binary.BigEndian.Uint32(h[:4]))
		names = append(names, string(h[4:8]))
		if size == 1 {
			if _, err := f.ReadAt(h[8:16], off+8); err != nil {
				break
			}
			size = int64(binary.BigEndian.Uint64(h[8:16]))
		}
		if size < 8 {
			break
		}
		off += size
	}
	return strings.Join(names, " ")
}

func TestLayout(t *testing.T) {
	m := &recorder.Manifest{DurationMs: 10000}
	add := func(kind string, off, dur int64) {
		m.Streams = append(m.Streams, recorder.StreamEntry{Kind: kind, OffsetMs: off, DurationMs: dur,
			Tracks: []recorder.TrackEntry{{Kind: "video"}}, File: "f"})
	}
	add("camera", 0, 10000)
	add("camera", 2000, 4000)
	add("screen", 4000, 2000)
	segs := Layout(m, 1280, 720)
	want := []struct {
		start, end time.Duration
		n          int
	}{{0, 2 * time.Second, 1}, {2 * time.Second, 4 * time.Second, 2}, {4 * time.Second, 6 * time.Second, 3}, {6 * time.Second, 10 * time.Second, 1}}
	if len(segs) != len(want) {
		t.Fatalf("segments %+v", segs)
	}
	for i, w := range want {
		if segs[i].Start != w.start || segs[i].End != w.end || len(segs[i].Tiles) != w.n {
			t.Errorf("segment %d: %+v", i, segs[i])
		}
	}
	// With the screen share: it is first and large.
	if tl := segs[2].Tiles[0]; tl.Stream != 2 || tl.Rect.W != 960 || tl.Rect.H != 720 {
		t.Errorf("screen tile %+v", tl)
	}
	for _, tl := range segs[2].Tiles[1:] {
		if tl.Rect.X < 960 || tl.Rect.X+tl.Rect.W > 1280 {
			t.Errorf("side tile %+v", tl)
		}
	}
}

func TestEscapeValue(t *testing.T) {
	if got := escapeValue(`a'b:c,d[e]f;g\h`); got != `a\\\'b\\:c\,d\[e\]f\;g\\\\h` {
		t.Errorf("escape: %s", got)
	}
}

func TestProgressBar(t *testing.T) {
	var b bytes.Buffer
	bar := ProgressBar(&b)
	bar(Progress{Percent: 50, Speed: 2.5})
	bar(Progress{Percent: 100, Speed: 3})
	bar(Progress{Percent: 100, Speed: 3})
	s := b.String()
	if !strings.Contains(s, " 50.0%") || !strings.Contains(s, "2.50x") || !strings.HasSuffix(s, "\n") || strings.Count(s, "100.0%") != 1 {
		t.Errorf("bar %q", s)
	}
}

func TestLoadSettings(t *testing.T) {
	s, err := LoadSettings("../../configs/offline_mixer.json")
	if err != nil {
		t.Fatal(err)
	}
	if !s.HasVideo || !s.HasAudio || !s.MixerDisplayStreamName || s.Width != 1280 || s.Format != "mp4" {
		t.Errorf("settings %+v", s)
	}
	p := filepath.Join(t.TempDir(), "bad.json")
	_ = os.WriteFile(p, []byte(`{"hasVideo": false, "hasAudio": false}`), 0o644)
	if _, err := LoadSettings(p); err == nil {
		t.Error("nothing to mix accepted")
	}
	_ = os.WriteFile(p, []byte(`{"width": 99999}`), 0o644)
	if _, err := LoadSettings(p); err == nil {
		t.Error("bad width accepted")
	}
}

// The speaker layout: the most recent dominant speaker whose video shows is
// large on the left, the others small on the right; a screen share still
// comes first; before anyone spoke it is the grid; a change of speaker cuts
// a segment, one that changes nothing on screen does not.
func TestSpeakerLayout(t *testing.T) {
	m := &recorder.Manifest{DurationMs: 10000}
	add := func(id, kind string, off, dur int64) {
		m.Streams = append(m.Streams, recorder.StreamEntry{StreamID: id, Kind: kind, OffsetMs: off, DurationMs: dur,
			Tracks: []recorder.TrackEntry{{Kind: "video"}}, File: "f"})
	}
	add("a", "camera", 0, 10000)
	add("b", "camera", 0, 10000)
	add("c", "camera", 0, 10000)
	add("s", "screen", 7000, 1000)
	m.Speakers = []recorder.SpeakerChange{{AtMs: 2000, StreamID: "b"}, {AtMs: 4000, StreamID: "x"}, // x: not recorded
		{AtMs: 5000, StreamID: "c"}}
	segs := LayoutFor(m, 1280, 720, LayoutSpeaker)
	type want struct {
		start, end time.Duration
		big        int // stream index of the large tile, -1: grid
	}
	s := time.Second
	wants := []want{{0, 2 * s, -1}, {2 * s, 5 * s, 1}, {5 * s, 7 * s, 2}, {7 * s, 8 * s, 3}, {8 * s, 10 * s, 2}}
	if len(segs) != len(wants) {
		t.Fatalf("segments %+v", segs)
	}
	for i, w := range wants {
		seg := segs[i]
		if seg.Start != w.start || seg.End != w.end {
			t.Errorf("segment %d: %v-%v, want %v-%v", i, seg.Start, seg.End, w.start, w.end)
		}
		big := seg.Tiles[0]
		if w.big < 0 {
			for _, tl := range seg.Tiles {
				if tl.Rect.W != seg.Tiles[0].Rect.W || tl.Rect.H != seg.Tiles[0].Rect.H {
					t.Errorf("segment %d: not a grid: %+v", i, seg.Tiles)
				}
			}
			continue
		}
		if big.Stream != w.big || big.Rect != (Rect{0, 0, 960, 720}) {
			t.Errorf("segment %d: large tile %+v, want stream %d on the left three quarters", i, big, w.big)
		}
		for _, tl := range seg.Tiles[1:] {
			if tl.Rect.X < 960 || tl.Rect.W > 320 {
				t.Errorf("segment %d: small tile %+v not in the right quarter", i, tl)
			}
		}
	}
	// The grid layout ignores the speakers.
	if segs := LayoutFor(m, 1280, 720, LayoutGrid); len(segs) != 3 {
		t.Errorf("grid layout: %d segments, want 3 (the screen share's)", len(segs))
	}
}

// A mix in the speaker layout: the large region shows whoever was the
// dominant speaker (red Ann, then blue Bob), the other small beside it,
// checked by the colour of the mixed frames.
func TestMixSpeakerLayout(t *testing.T) {
	f := makeFixture(t, 6*time.Second, []fixStream{
		{name: "Ann", color: "red", kind: "camera", offset: 0, dur: 6 * time.Second, freq: 440},
		{name: "Bob", color: "blue", kind: "camera", offset: 0, dur: 6 * time.Second, freq: 660},
	})
	m, err := recorder.ReadManifest(f.manifest)
	if err != nil {
		t.Fatal(err)
	}
	m.Speakers = []recorder.SpeakerChange{{AtMs: 500, Participant: "Ann", StreamID: "0"}, {AtMs: 3000, Participant: "Bob", StreamID: "1"}}
	data, _ := json.Marshal(m)
	if err := os.WriteFile(f.manifest, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s := smallSettings()
	s.Layout, s.MixerDisplayStreamName = LayoutSpeaker, false
	out := filepath.Join(t.TempDir(), "speaker.mp4")
	if err := Mix(context.Background(), f.manifest, out, s, nil); err != nil {
		log, _ := os.ReadFile(out + ".log")
		t.Fatalf("mix: %v\n%s", err, log)
	}
	// 640x360: the large region is the left 480 (a 320x240 picture fills
	// it), the small tiles the right 160 (160x120 each, stacked, centred).
	for _, c := range []struct {
		at         float64
		big, small string
	}{{1.5, "red", "blue"}, {4.5, "blue", "red"}} {
		fr := frameAt(t, out, c.at, 640, 360)
		if got := colorAt(fr, 640, 240, 180); got != c.big {
			t.Errorf("t=%.1f: the large region is %s, want %s", c.at, got, c.big)
		}
		if got := colorAt(fr, 640, 560, 180); got != c.small {
			t.Errorf("t=%.1f: the small tile is %s, want %s", c.at, got, c.small)
		}
	}
	// Before anyone spoke (0.5 s): the grid, side by side.
	fr := frameAt(t, out, 0.2, 640, 360)
	if l, r := colorAt(fr, 640, 160, 180), colorAt(fr, 640, 480, 180); l != "red" || r != "blue" {
		t.Errorf("t=0.2: %s and %s side by side, want red and blue", l, r)
	}
}

func TestLoadSettingsLayout(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		json, want string
		ok         bool
	}{{`{}`, "", true}, {`{"layout":"speaker"}`, LayoutSpeaker, true}, {`{"layout":"grid"}`, LayoutGrid, true}, {`{"layout":"mosaic"}`, "", false}} {
		p := filepath.Join(dir, "s.json")
		if err := os.WriteFile(p, []byte(c.json), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := LoadSettings(p)
		if (err == nil) != c.ok || (c.ok && s.Layout != c.want) {
			t.Errorf("%s: layout %q, err %v", c.json, s.Layout, err)
		}
		if !c.ok && (err == nil || !strings.Contains(err.Error(), "want grid or speaker")) {
			t.Errorf("%s: error %v does not say what to use", c.json, err)
		}
	}
}
