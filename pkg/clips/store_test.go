package clips

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	clipMu    sync.Mutex
	clipCache = map[string][]byte{}
)

// makeClip makes a real clip with ffmpeg: seconds of a tone (Opus in WebM),
// with a test picture (VP8) when video, or Opus in Ogg.
func makeClip(t testing.TB, seconds float64, kind string) []byte {
	t.Helper()
	key := fmt.Sprintf("%g-%s", seconds, kind)
	clipMu.Lock()
	defer clipMu.Unlock()
	if b, ok := clipCache[key]; ok {
		return b
	}
	dir := t.TempDir()
	d := fmt.Sprintf("%g", seconds)
	args := []string{"-v", "error", "-f", "lavfi", "-i", "sine=f=440:d=" + d}
	out := filepath.Join(dir, "clip.webm")
	switch kind {
	case "video":
		args = append(args, "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15:d="+d, "-c:v", "libvpx", "-b:v", "100k")
	case "ogg":
		out = filepath.Join(dir, "clip.ogg")
	}
	args = append(args, "-c:a", "libopus", "-b:a", "24k", "-y", out)
	if b, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	clipCache[key] = b
	return b
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func testStore(t *testing.T, dir string, lim Limits, clk *clock) *Store {
	t.Helper()
	cfg := Config{Dir: dir, Limits: func(string) Limits { return lim }, FreeSpace: func(string) (int64, error) { return 1 << 40, nil }}
	if clk != nil {
		cfg.Now = clk.Now
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func add(t *testing.T, s *Store, room, author string, b []byte) (Added, error) {
	t.Helper()
	return s.Add(context.Background(), Upload{Room: room, Author: author, Owner: author, Body: bytes.NewReader(b), Length: int64(len(b))})
}

func code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func TestSniff(t *testing.T) {
	if got := Sniff(makeClip(t, 0.5, "audio")); got != ContainerWebM {
		t.Errorf("WebM: %q", got)
	}
	if got := Sniff(makeClip(t, 0.5, "ogg")); got != ContainerOgg {
		t.Errorf("Ogg: %q", got)
	}
	mp4 := append([]byte{0, 0, 0, 0x18}, []byte("ftypisom\x00\x00\x02\x00isomiso2")...)
	if got := Sniff(mp4); got != ContainerMP4 {
		t.Errorf("MP4: %q", got)
	}
	for name, b := range map[string][]byte{
		"html":     []byte("<html><script>alert(1)</script></html>"),
		"avif":     append([]byte{0, 0, 0, 0x1c}, []byte("ftypavif\x00\x00\x00\x00")...),
		"matroska": append([]byte{0x1A, 0x45, 0xDF, 0xA3, 0x9f, 0x42, 0x82, 0x88}, []byte("matroska")...),
		"empty":    nil,
	} {
		if got := Sniff(b); got != "" {
			t.Errorf("%s sniffed as %q", name, got)
		}
	}
}

func TestProbeMeasuresDuration(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		kind  string
		sec   float64
		video bool
	}{{"audio", 1.5, false}, {"video", 1, true}, {"ogg", 2, false}} {
		p := filepath.Join(dir, tc.kind)
		if err := os.WriteFile(p, makeClip(t, tc.sec, tc.kind), 0o644); err != nil {
			t.Fatal(err)
		}
		pr, err := FFprobe(context.Background(), p)
		if err != nil {
			t.Fatalf("%s: %v", tc.kind, err)
		}
		if d := pr.Duration.Seconds(); d < tc.sec-0.1 || d > tc.sec+0.1 {
			t.Errorf("%s: duration %.3f s, made %.1f s", tc.kind, d, tc.sec)
		}
		if pr.Video != tc.video || !pr.Audio {
			t.Errorf("%s: %+v", tc.kind, pr)
		}
	}
	// A file that starts like WebM but is not.
	p := filepath.Join(dir, "fake")
	_ = os.WriteFile(p, append(makeClip(t, 0.5, "audio")[:64], bytes.Repeat([]byte{0}, 1000)...), 0o644)
	if _, err := FFprobe(context.Background(), p); !errors.Is(err, ErrUnreadable) {
		t.Errorf("garbage after a WebM header: %v", err)
	} else if strings.Contains(err.Error(), dir) {
		t.Errorf("the error names a server path: %v", err)
	}
}

// endless is a reader that never ends, counting what was read from it.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0
	}
	e.n += int64(len(p))
	return len(p), nil
}

func TestAddChecksWhileStreaming(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxBlobBytes = 100_000
	lim.MaxClipSec = 2
	lim.AllowVideo = false
	dir := t.TempDir()
	s := testStore(t, dir, lim, nil)

	// An endless body of a WebM header: refused once it passes the limit.
	body := &endless{}
	_, err := s.Add(context.Background(), Upload{Room: "r", Author: "a", Owner: "a",
		Body: io.MultiReader(bytes.NewReader(makeClip(t, 0.5, "audio")[:64]), body), Length: -1})
	if code(err) != CodeTooLarge {
		t.Fatalf("endless upload: %v", err)
	}
	if read := s.Stats().BytesRead; read > lim.MaxBlobBytes+64<<10 {
		t.Errorf("read %d bytes of an endless body with a %d-byte limit", read, lim.MaxBlobBytes)
	}
	// Announced too large: refused unread.
	before := s.Stats().BytesRead
	if _, err := s.Add(context.Background(), Upload{Room: "r", Body: body, Length: 1 << 30}); code(err) != CodeTooLarge {
		t.Errorf("announced 1 GiB: %v", err)
	}
	if s.Stats().BytesRead != before {
		t.Errorf("an upload announced over the limit was read")
	}
	// Not media; media too long; video in an audio room.
	if _, err := add(t, s, "r", "a", []byte("<html>hello</html>")); code(err) != CodeNotMedia {
		t.Errorf("html: %v", err)
	}
	if _, err := add(t, s, "r", "a", makeClip(t, 4, "audio")); code(err) != CodeTooLong {
		t.Errorf("4 s clip, 2 s limit: %v", err)
	}
	if _, err := add(t, s, "r", "a", makeClip(t, 1, "video")); code(err) != CodeNoVideo {
		t.Errorf("video clip in an audio room: %v", err)
	}
	// Nothing left behind.
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	for _, f := range files {
		if filepath.Base(f) != catalogName {
			t.Errorf("left behind: %s", f)
		}
	}
	a, err := add(t, s, "r", "a", makeClip(t, 1.5, "audio"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Clip.Kind != "audio" || a.Clip.MIME != "audio/webm" || a.Clip.DurationMs < 1400 || a.Clip.DurationMs > 1600 {
		t.Errorf("clip %+v", a.Clip)
	}
	st := s.Stats()
	if st.Refused[CodeTooLarge] != 2 || st.Refused[CodeNotMedia] != 1 || st.Refused[CodeTooLong] != 1 {
		t.Errorf("refusals %v", st.Refused)
	}
}

func TestDiskFloor(t *testing.T) {
	lim := DefaultLimits()
	free := int64(50_000_000)
	s, err := Open(Config{Dir: t.TempDir(), Limits: func(string) Limits { return lim }, MinFreeBytes: 45_000_000,
		FreeSpace: func(string) (int64, error) { return free, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// 50 MB free, a 45 MB floor, 10 MB clips: refused.
	if _, err := add(t, s, "r", "a", makeClip(t, 1, "audio")); code(err) != CodeDiskLow {
		t.Errorf("below the floor: %v", err)
	}
	free = 60_000_000
	if _, err := add(t, s, "r", "a", makeClip(t, 1, "audio")); err != nil {
		t.Errorf("above the floor: %v", err)
	}
}

func TestEvictionAndSweep(t *testing.T) {
	clip := makeClip(t, 1, "audio")
	lim := DefaultLimits()
	lim.MaxClipCount = 3
	lim.MaxFolderBytes = int64(len(clip))*4 + 10
	lim.MaxBlobBytes = int64(len(clip)) * 3
	lim.Lifetime = time.Hour
	clk := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	var deleted []string
	var mu sync.Mutex
	s, err := Open(Config{Dir: t.TempDir(), Limits: func(string) Limits { return lim }, Now: clk.Now,
		FreeSpace: func(string) (int64, error) { return 1 << 40, nil },
		OnDelete: func(c Clip, reason string) {
			mu.Lock()
			deleted = append(deleted, c.ID+":"+reason)
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ids []string
	for i := 0; i < 4; i++ {
		a, err := add(t, s, "r", "a", clip)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.Clip.ID)
		clk.Add(time.Minute)
		if i == 3 && (len(a.Evicted) != 1 || a.Evicted[0].ID != ids[0]) {
			t.Errorf("4th clip with maxClipCount 3 evicted %+v, want the oldest %s", a.Evicted, ids[0])
		}
	}
	if got := s.List("r"); len(got) != 3 || got[0].ID != ids[1] {
		t.Errorf("after eviction: %+v", got)
	}
	// The folder limit: a larger clip makes the oldest go.
	lim.MaxClipCount = 0
	a, err := add(t, s, "r", "a", makeClip(t, 2.5, "audio"))
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, c := range s.List("r") {
		total += c.Bytes
	}
	if total > lim.MaxFolderBytes || len(a.Evicted) == 0 || a.Evicted[0].ID != ids[1] {
		t.Errorf("folder limit %d: holds %d bytes, evicted %+v", lim.MaxFolderBytes, total, a.Evicted)
	}
	// The sweeper removes the expired ones, and their files.
	clk.Add(time.Hour)
	s.Sweep()
	if got := s.List("r"); len(got) != 0 {
		t.Errorf("after the lifetime: %+v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(deleted) == 0 || !strings.HasSuffix(deleted[0], ":"+ReasonExpired) {
		t.Errorf("OnDelete: %v", deleted)
	}
	files, _ := filepath.Glob(filepath.Join(s.cfg.Dir, "*", "c-*"))
	if len(files) != 0 {
		t.Errorf("files of expired clips remain: %v", files)
	}
}

func TestCatalogSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	lim := DefaultLimits()
	s := testStore(t, dir, lim, nil)
	a, err := add(t, s, "Zimmer-ü", "anna", makeClip(t, 1, "audio"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := add(t, s, "Zimmer-ü", "bob", makeClip(t, 1, "video"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A crash left an upload half-written and a file no catalog lists.
	folder := filepath.Dir(filepath.Join(dir, s.rooms["Zimmer-ü"].dir, "x"))
	_ = os.WriteFile(filepath.Join(folder, ".upload-123"), []byte("half"), 0o644)
	_ = os.WriteFile(filepath.Join(folder, "c-20260101T000000Z-deadbeef.webm"), []byte("orphan"), 0o644)

	s2 := testStore(t, dir, lim, nil)
	got := s2.List("Zimmer-ü")
	if len(got) != 2 || got[0].ID != a.Clip.ID || got[1].ID != b.Clip.ID || got[1].Kind != "video" || got[0].Author != "anna" {
		t.Fatalf("after restart: %+v", got)
	}
	f, c, err := s2.OpenFile("Zimmer-ü", b.Clip.ID)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	f.Close()
	if st.Size() != c.Bytes {
		t.Errorf("file %d bytes, catalog %d", st.Size(), c.Bytes)
	}
	for _, name := range []string{".upload-123", "c-20260101T000000Z-deadbeef.webm"} {
		if _, err := os.Stat(filepath.Join(folder, name)); err == nil {
			t.Errorf("%s survived the restart", name)
		}
	}
	if _, err := s2.Delete("Zimmer-ü", a.Clip.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s2.OpenFile("Zimmer-ü", a.Clip.ID); code(err) != CodeNotFound {
		t.Errorf("deleted clip opened: %v", err)
	}
	var e *Error
	if _, err := s2.Delete("Zimmer-ü", a.Clip.ID); !errors.As(err, &e) || e.Status != http.StatusNotFound {
		t.Errorf("second delete: %v", err)
	}
}

func TestPasses(t *testing.T) {
	p := NewPasses()
	now := time.Now()
	s := p.Issue(Pass{Room: "r", Participant: "p-1", Name: "alice", Owner: "alice", Post: true, Expires: now.Add(time.Hour)})
	got, err := p.Verify(s, now)
	if err != nil || got.Room != "r" || got.Participant != "p-1" || !got.Post || got.Moderate {
		t.Fatalf("verify: %+v %v", got, err)
	}
	if _, err := p.Verify(s, now.Add(2*time.Hour)); !errors.Is(err, ErrPassExpired) {
		t.Errorf("expired: %v", err)
	}
	// A pass whose payload was changed (moderate: true) fails.
	forged := strings.Replace(s, s[len(PassPrefix):len(PassPrefix)+10], "eyJyIjoiciIs", 1)
	if _, err := p.Verify(forged, now); !errors.Is(err, ErrPassInvalid) {
		t.Errorf("forged: %v", err)
	}
	if _, err := NewPasses().Verify(s, now); !errors.Is(err, ErrPassInvalid) {
		t.Errorf("another server's pass: %v", err)
	}
}
