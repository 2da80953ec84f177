package recorder

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// stopLog collects OnStop calls.
type stopLog struct {
	mu      sync.Mutex
	reasons []StopReason
	started int
}

func (l *stopLog) opts(o Options) Options {
	o.OnStop = func(r StopReason) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.reasons = append(l.reasons, r)
	}
	o.OnStart = func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.started++
	}
	return o
}

func (l *stopLog) get() ([]StopReason, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]StopReason(nil), l.reasons...), l.started
}

// dirBytes sums the sizes of the regular files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return n
}

// checkFiles checks that every stream of a finished manifest has a file that
// decodes cleanly and whose duration ffprobe reads; it returns the sum of the
// media files' sizes and the latest end (s) on the room time line.
func checkFiles(t *testing.T, s *Session) (bytes int64, end float64) {
	t.Helper()
	m, err := ReadManifest(s.ManifestPath())
	if err != nil {
		t.Fatal(err)
	}
	if m.State != StateFinished {
		t.Errorf("manifest state %q, want finished", m.State)
	}
	for _, e := range m.Streams {
		path := filepath.Join(s.Dir(), e.File)
		if msg := decodeErrors(t, path); msg != "" {
			t.Errorf("%s does not decode cleanly: %s", e.File, msg)
		}
		r := probe(t, path, false)
		if fsec(r.Format.Duration) <= 0 {
			t.Errorf("%s: ffprobe reads no duration (%q)", e.File, r.Format.Duration)
		}
		if e.State != StreamClosed {
			t.Errorf("%s: state %q, want closed", e.File, e.State)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		bytes += st.Size()
		end = max(end, fsec(r.Format.Duration))
	}
	return bytes, end
}

// A stream whose media never arrives (and one that gets only packets that
// make no frame) leaves no file and no manifest; the session has nothing to mix.
func TestNoMediaNoFiles(t *testing.T) {
	dir := t.TempDir()
	var log stopLog
	s, err := StartSession(dir, "quiet", "s1", sessionStart, log.opts(testOpts()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddStream(StreamInfo{Participant: "a", StreamID: "a", Tracks: vp8Opus}); err != nil {
		t.Fatal(err)
	}
	w, err := s.AddStream(StreamInfo{Participant: "b", StreamID: "b", Tracks: vp8Opus})
	if err != nil {
		t.Fatal(err)
	}
	// Padding only, and VP8 delta frames without a keyframe: no frame to write.
	for i := range 50 {
		w.WriteRTP(0, &rtp.Packet{Header: rtp.Header{SSRC: 1, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000), Marker: true},
			Payload: []byte{0x90, 0x80, byte(i), 0x01, 0x02}}, sessionStart.Add(time.Duration(i)*33*time.Millisecond))
	}
	if err := s.Close(sessionStart.Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if s.Recorded() || w.File() != "" {
		t.Errorf("recorded %v, file %q; want nothing", s.Recorded(), w.File())
	}
	if n := dirBytes(t, dir); n != 0 {
		t.Errorf("%d bytes left under the records directory", n)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the records directory holds %d entries, want none", len(entries))
	}
	if u, err := Unfinished(dir); err != nil || len(u) != 0 {
		t.Errorf("Unfinished: %v %v", u, err)
	}
	if reasons, started := log.get(); len(reasons) != 0 || started != 0 {
		t.Errorf("OnStop %v, OnStart %d times; want neither", reasons, started)
	}
}

// Of two streams, the one with media gets a file and a manifest entry; the
// one without gets neither.
func TestOnlyStreamsWithMediaGetFiles(t *testing.T) {
	var log stopLog
	s, err := StartSession(t.TempDir(), "half", "s1", sessionStart, log.opts(testOpts()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddStream(StreamInfo{Participant: "silent", StreamID: "silent", Tracks: vp8Opus}); err != nil {
		t.Fatal(err)
	}
	p := newSimPub(t, sessionStart, 0, 11)
	w, err := s.AddStream(StreamInfo{Participant: "talker", StreamID: "talker", Tracks: vp8Opus,
		RequestKeyframe: func() { p.keyReq.Store(true) }})
	if err != nil {
		t.Fatal(err)
	}
	p.w = w
	p.addTrack(vp8Source(t, small), 20*time.Millisecond)
	p.addTrack(opusSource(t), 20*time.Millisecond)
	p.run(2 * time.Second)
	if err := s.Close(sessionStart.Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	m, err := ReadManifest(s.ManifestPath())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Streams) != 1 || m.Streams[0].Participant != "talker" {
		t.Fatalf("manifest streams %+v, want only the talker's", m.Streams)
	}
	entries, _ := os.ReadDir(s.Dir())
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(entries) != 2 { // manifest.json and the talker's file
		t.Errorf("session directory holds %v, want the manifest and one file", names)
	}
	checkFiles(t, s)
	if _, started := log.get(); started != 1 {
		t.Errorf("OnStart called %d times, want once", started)
	}
}

// twoPublishers records two simulated publishers (the second from 1 s) into s
// until the room time until.
func twoPublishers(t *testing.T, s *Session, until time.Duration, pace func(at time.Duration)) {
	t.Helper()
	var pubs []*simPub
	for i, start := range []time.Duration{0, time.Second} {
		p := newSimPub(t, sessionStart, start, uint64(20+i))
		w, err := s.AddStream(StreamInfo{Participant: string(rune('a' + i)), StreamID: string(rune('a' + i)), Tracks: vp8Opus,
			RequestKeyframe: func() { p.keyReq.Store(true) }})
		if err != nil {
			t.Fatal(err)
		}
		p.w = w
		p.addTrack(vp8Source(t, small), 20*time.Millisecond)
		p.addTrack(opusSource(t), 20*time.Millisecond)
		if pace != nil {
			p.onSample = func(track int, at time.Duration) {
				if track == 0 {
					pace(at)
				}
			}
		}
		pubs = append(pubs, p)
	}
	var wg sync.WaitGroup
	for _, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(until)
		}()
	}
	wg.Wait()
}

// The duration quota: no frame later than MaxDuration after the first one is
// written; the session stops with QUOTA_DURATION; the files are finished and
// decode, and ffprobe reads their duration.
func TestQuotaDuration(t *testing.T) {
	var log stopLog
	o := log.opts(testOpts())
	o.MaxDuration = 3 * time.Second
	s, err := StartSession(t.TempDir(), "q", "s1", sessionStart, o)
	if err != nil {
		t.Fatal(err)
	}
	twoPublishers(t, s, 8*time.Second, nil)
	if err := s.Close(sessionStart.Add(8 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if reasons, _ := log.get(); len(reasons) != 1 || reasons[0] != StopQuotaDuration {
		t.Fatalf("OnStop reasons %v, want [%s]", reasons, StopQuotaDuration)
	}
	m, err := ReadManifest(s.ManifestPath())
	if err != nil {
		t.Fatal(err)
	}
	if m.Stopped != StopQuotaDuration || len(m.Streams) != 2 {
		t.Fatalf("manifest stopped %q with %d streams", m.Stopped, len(m.Streams))
	}
	_, end := checkFiles(t, s)
	first := float64(m.Streams[0].OffsetMs) / 1000
	t.Logf("first frame at %.3f s, last file end %.3f s, manifest end %v", first, end, m.End.Sub(m.Start))
	// The last frame starts before first+3 s and lasts at most a frame (33 ms).
	if end > first+3.05 || end < first+2.5 {
		t.Errorf("files end at %.3f s, want within [%.3f, %.3f]", end, first+2.5, first+3.05)
	}
	if _, err := s.AddStream(StreamInfo{StreamID: "late", Tracks: vp8Opus}); !errors.Is(err, ErrStopped) {
		t.Errorf("AddStream after the stop: %v, want ErrStopped", err)
	}
}

// The bytes quota: the files of the session never hold more than MaxBytes
// together; the session stops with QUOTA_BYTES; the files decode.
func TestQuotaBytes(t *testing.T) {
	var log stopLog
	o := log.opts(testOpts())
	o.MaxBytes = 150_000
	s, err := StartSession(t.TempDir(), "q", "s1", sessionStart, o)
	if err != nil {
		t.Fatal(err)
	}
	twoPublishers(t, s, 10*time.Second, nil)
	if err := s.Close(sessionStart.Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if reasons, _ := log.get(); len(reasons) != 1 || reasons[0] != StopQuotaBytes {
		t.Fatalf("OnStop reasons %v, want [%s]", reasons, StopQuotaBytes)
	}
	m, err := ReadManifest(s.ManifestPath())
	if err != nil {
		t.Fatal(err)
	}
	if m.Stopped != StopQuotaBytes {
		t.Errorf("manifest stopped %q", m.Stopped)
	}
	bytes, end := checkFiles(t, s)
	t.Logf("files hold %d bytes (quota %d), end at %.3f s; counted %d", bytes, o.MaxBytes, end, s.Bytes())
	if bytes > o.MaxBytes {
		t.Errorf("the files hold %d bytes, more than the quota %d", bytes, o.MaxBytes)
	}
	if bytes < o.MaxBytes-40_000 {
		t.Errorf("the files hold %d bytes, far below the quota %d", bytes, o.MaxBytes)
	}
	if end > 8 {
		t.Errorf("files end at %.3f s: the quota did not stop them", end)
	}
	// The cues were reserved with the blocks: the files are indexed, a cue
	// at every keyframe.
	for _, e := range m.Streams {
		path := filepath.Join(s.Dir(), e.File)
		idx, ok := readIndex(t, path)
		if keys := probe(t, path, true).keyTimes("video"); !ok || len(idx.cues) != len(keys) {
			t.Errorf("%s: seek head %v, %d cues for %d keyframes", e.File, ok, len(idx.cues), len(keys))
		}
	}
}

// The disk floor, with the free space of a simulated disk: its capacity
// less what the records directory really holds. When the files bring the
// free space under the floor the session stops with DISK_LOW and the files
// are finished and decode.
func TestDiskFloor(t *testing.T) {
	dir := t.TempDir()
	const capacity = 1 << 20
	const floor = capacity - 120_000
	var log stopLog
	o := log.opts(testOpts())
	o.MinFreeBytes = floor
	o.CheckInterval = 20 * time.Millisecond
	o.FreeSpace = func(string) (int64, error) { return capacity - dirBytes(t, dir), nil }
	s, err := StartSession(dir, "disk", "s1", sessionStart, o)
	if err != nil {
		t.Fatal(err)
	}
	// About four times real time, so that the checks see the disk fill.
	wall := time.Now()
	twoPublishers(t, s, 12*time.Second, func(at time.Duration) {
		if d := time.Until(wall.Add(at / 4)); d > 0 {
			time.Sleep(d)
		}
	})
	if err := s.Close(sessionStart.Add(12 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if reasons, _ := log.get(); len(reasons) != 1 || reasons[0] != StopDiskLow {
		t.Fatalf("OnStop reasons %v, want [%s]", reasons, StopDiskLow)
	}
	m, err := ReadManifest(s.ManifestPath())
	if err != nil {
		t.Fatal(err)
	}
	if m.Stopped != StopDiskLow {
		t.Errorf("manifest stopped %q", m.Stopped)
	}
	bytes, end := checkFiles(t, s)
	t.Logf("stopped with %d bytes of files, free %d (floor %d), files end at %.3f s", bytes, capacity-dirBytes(t, dir), int64(floor), end)
	// Past the floor go what a check interval lets through (80 ms of media at
	// four times real time) and what the writers held when they stopped (the
	// jitter and interleaving delays, under a second): at most one second of
	// both streams' media.
	var streamMs int64
	for _, e := range m.Streams {
		streamMs += e.DurationMs
	}
	perStreamSecond := bytes * 1000 / max(streamMs, 1)
	over := floor - (capacity - dirBytes(t, dir))
	t.Logf("%d bytes past the floor; the streams write %d bytes per second each", over, perStreamSecond)
	if over > 2*perStreamSecond {
		t.Errorf("the files went %d bytes below the floor, more than a second of both streams (%d)", over, 2*perStreamSecond)
	}
	if end > 10 {
		t.Errorf("files end at %.3f s of 12: the floor did not stop them", end)
	}
}

// Below the floor from the start nothing is made, and the session says why.
func TestDiskFloorBeforeStart(t *testing.T) {
	dir := t.TempDir()
	var log stopLog
	o := log.opts(testOpts())
	o.MinFreeBytes = 1 << 30
	o.FreeSpace = func(string) (int64, error) { return 1 << 20, nil }
	s, err := StartSession(dir, "full", "s1", sessionStart, o)
	if err != nil {
		t.Fatal(err)
	}
	twoPublishers(t, s, 2*time.Second, nil)
	if err := s.Close(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if reasons, _ := log.get(); len(reasons) != 1 || reasons[0] != StopDiskLow {
		t.Fatalf("OnStop reasons %v, want [%s]", reasons, StopDiskLow)
	}
	if s.Recorded() {
		t.Error("the session says it recorded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the records directory holds %d entries, want none", len(entries))
	}
}
