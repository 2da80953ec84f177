package server_test

import (
	"encoding/json"
	"math"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/recorder"
	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/server"
)

// probe returns a file's start time and duration in seconds (ffprobe).
func probe(t *testing.T, path string) (start, duration float64) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "format=start_time,duration",
		"-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var r struct {
		Format struct {
			Start    string `json:"start_time"`
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	start, _ = strconv.ParseFloat(r.Format.Start, 64)
	duration, _ = strconv.ParseFloat(r.Format.Duration, 64)
	return start, duration
}

// recordingServer starts a test server that records into a directory of
// the test's and ends a room 300 ms after its last participant left;
// finalized gets each room session's end.
func recordingServer(t *testing.T) (srv *server.Server, dir string, finalized chan room.Finalized) {
	t.Helper()
	dir = t.TempDir()
	srv = testServer(t, func(c *server.Config) {
		c.RecordsDir = dir
		c.Rooms.IdleTimeout = 300 * time.Millisecond
	})
	finalized = make(chan room.Finalized, 1)
	srv.Rooms().OnFinalize(func(f room.Finalized) { finalized <- f })
	return srv, dir, finalized
}

// lastPacketTime is the latest presentation time of any packet in a file.
func lastPacketTime(t *testing.T, path string) float64 {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "packet=pts_time", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	last := -1.0
	for _, line := range strings.Fields(string(out)) {
		if v, err := strconv.ParseFloat(strings.Trim(line, ","), 64); err == nil && v > last {
			last = v
		}
	}
	if last < 0 {
		t.Fatalf("ffprobe found no packet times in %s", path)
	}
	return last
}

// decodeErrors decodes a whole file and returns what ffmpeg complained about.
func decodeErrors(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput()
	if err != nil {
		return err.Error() + ": " + string(out)
	}
	return strings.TrimSpace(string(out))
}

// TestRecordedRoomThroughSFU: A joins a recorded room and publishes VP8 +
// Opus; B publishes 3 s later; both leave. After the room finalizes there is
// a WebM per stream and a manifest; B's file starts at its offset on the
// room's time line; both decode cleanly; durations match the publishing time.
func TestRecordedRoomThroughSFU(t *testing.T) {
	srv, dir, finalized := recordingServer(t)

	a := dial(t, srv, client.Options{Username: "a"})
	st, err := a.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "rec", Name: "Ann Lee", Record: true})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Recording {
		t.Fatal("STATE of a room joined with record: true does not say it records")
	}
	pubA, err := a.Publish(ctxT(t, 60*time.Second), client.PublishOptions{Video: vp8Source(t), Audio: opusSource(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := pubA.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatal(err)
	}
	aStart := time.Now()
	time.Sleep(3 * time.Second)

	b := dial(t, srv, client.Options{Username: "b"})
	stB := join(t, b, "rec", "b")
	if !stB.Recording {
		t.Error("a later joiner's STATE does not show that the room records")
	}
	pubB, err := b.Publish(ctxT(t, 60*time.Second), client.PublishOptions{Video: vp8Source(t), Audio: opusSource(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := pubB.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatal(err)
	}
	bStart := time.Now()
	time.Sleep(3 * time.Second)
	bEnd := time.Now()
	if err := b.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	aEnd := time.Now()
	if err := a.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	var fin room.Finalized
	select {
	case fin = <-finalized:
	case <-time.After(15 * time.Second):
		t.Fatal("the room did not finalize")
	}

	matches, _ := filepath.Glob(filepath.Join(dir, "*", "*", recorder.ManifestName))
	if len(matches) == 0 {
		out, _ := exec.Command("find", dir).CombinedOutput()
		t.Logf("records dir:\n%s", out)
	}
	if len(matches) != 1 {
		t.Fatalf("%d manifests under %s, want 1", len(matches), dir)
	}
	m, err := recorder.ReadManifest(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	if m.Room != "rec" || m.SessionID != fin.Session || len(m.Streams) != 2 {
		t.Fatalf("manifest: room %q session %q, %d streams; want rec, %s, 2", m.Room, m.SessionID, len(m.Streams), fin.Session)
	}
	// The true start of a stream is its first packet sent; the room's time
	// line starts at the manifest's Start.
	firstSent := func(p *client.Publication) time.Time {
		first := time.Time{}
		for _, kind := range []string{"audio", "video"} {
			if s := p.SentPackets(kind); len(s) > 0 && (first.IsZero() || s[0].SentAt.Before(first)) {
				first = s[0].SentAt
			}
		}
		return first
	}
	want := map[string]struct{ offset, dur float64 }{
		"Ann Lee": {firstSent(pubA).Sub(m.Start).Seconds(), aEnd.Sub(aStart).Seconds()},
		"b":       {firstSent(pubB).Sub(m.Start).Seconds(), bEnd.Sub(bStart).Seconds()},
	}
	for _, s := range m.Streams {
		w, ok := want[s.Participant]
		if !ok {
			t.Errorf("manifest has a stream of %q", s.Participant)
			continue
		}
		file := filepath.Join(filepath.Dir(matches[0]), s.File)
		if !strings.HasSuffix(file, ".webm") {
			t.Errorf("%s: file %s, want WebM for VP8 + Opus", s.Participant, s.File)
		}
		if e := decodeErrors(t, file); e != "" {
			t.Errorf("%s: %s does not decode cleanly: %s", s.Participant, s.File, e)
		}
		start, dur := probe(t, file)
		if math.Abs(start-w.offset) > 0.05 {
			t.Errorf("%s: first frame at %.3f s in its file, want %.3f s (its offset in the room)", s.Participant, start, w.offset)
		}
		if math.Abs((dur-start)-w.dur) > 0.3 {
			t.Errorf("%s: %.3f s of media, want about %.3f s", s.Participant, dur-start, w.dur)
		}
		t.Logf("%s: %s start %.3f s (want %.3f), media %.3f s (want %.3f)", s.Participant, s.File, start, w.offset, dur-start, w.dur)
	}
}

// TestRecordOneStream: in a room that does not record, a stream published
// with record is recorded on its own; the others are not.
func TestRecordOneStream(t *testing.T) {
	srv, dir, finalized := recordingServer(t)
	a := dial(t, srv, client.Options{Username: "a"})
	if st := join(t, a, "one", "a"); st.Recording {
		t.Fatal("a room joined without record says it records")
	}
	kept, err := a.Publish(ctxT(t, 30*time.Second), client.PublishOptions{Video: vp8Source(t), Audio: opusSource(t), Record: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish(ctxT(t, 30*time.Second), client.PublishOptions{Kind: protocol.KindScreen, Video: vp8Source(t)}); err != nil {
		t.Fatal(err)
	}
	if err := kept.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := a.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	m, sessDir := finishedRecording(t, finalized, dir)
	if len(m.Streams) != 1 || m.Streams[0].StreamID != kept.ID() || m.Streams[0].Kind != protocol.KindCamera {
		t.Fatalf("recorded %+v, want only the camera stream %s", m.Streams, kept.ID())
	}
	if e := decodeErrors(t, filepath.Join(sessDir, m.Streams[0].File)); e != "" {
		t.Errorf("the recorded stream does not decode cleanly: %s", e)
	}
}

// finishedRecording waits for the room session's finalize (on finalized)
// and returns the one manifest under the records dir, and its folder.
func finishedRecording(t *testing.T, finalized <-chan room.Finalized, dir string) (*recorder.Manifest, string) {
	t.Helper()
	select {
	case <-finalized:
	case <-time.After(15 * time.Second):
		t.Fatal("the room did not finalize")
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "*", "*", recorder.ManifestName))
	if len(matches) != 1 {
		t.Fatalf("%d manifests under the records dir, want 1", len(matches))
	}
	m, err := recorder.ReadManifest(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	return m, filepath.Dir(matches[0])
}
