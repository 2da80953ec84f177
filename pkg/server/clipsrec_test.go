package server_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/mixer"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/recorder"
	"github.com/parley/parley/pkg/server"
)

// bandVolume is the mean volume (dB) of a file's audio around freq Hz
// between from and from+dur seconds.
func bandVolume(t *testing.T, path string, freq int, from, dur float64) float64 {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-v", "info", "-ss", strconv.FormatFloat(from, 'f', 3, 64), "-t",
		strconv.FormatFloat(dur, 'f', 3, 64), "-i", path, "-vn", "-af",
		"bandpass=f="+strconv.Itoa(freq)+":width_type=h:w=300,volumedetect", "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg volumedetect: %v: %s", err, out)
	}
	m := regexp.MustCompile(`mean_volume: (-?[0-9.]+|-inf) dB`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no mean_volume in %s", out)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		return -200
	}
	return v
}

// TestClipInRecordedSession: a clip posted while the room is recorded is
// listed in the session's manifest (time, author, its own copy of the
// file), and, the room's preset saying mix (its clips block), the mix plays
// it at that time: a 3 kHz tone there and not before (the publisher sends
// 440 Hz).
func TestClipInRecordedSession(t *testing.T) {
	dir := t.TempDir()
	settings := mixer.DefaultSettings()
	settings.Width, settings.Height = 320, 180
	rooms := roomsDir(t, map[string]string{"mixed.yaml": "rooms: [mixed]\nclips: {mix: true}\n"})
	srv := testServer(t, func(c *server.Config) {
		c.RecordsDir = dir
		c.Mix = &server.MixConfig{Settings: settings, Workers: 1}
		c.Rooms.IdleTimeout = 300 * time.Millisecond
		c.Auth.Tokens = testVerifier(t)
		c.Auth.RoomsDir = rooms
		c.Clips = &server.ClipsConfig{Dir: t.TempDir()}
	})
	a := dial(t, srv, client.Options{Username: "a"})
	if _, err := a.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "mixed", Name: "Ann", Record: true}); err != nil {
		t.Fatal(err)
	}
	publishCamera(t, a)
	waitEvent(t, a, "RECORDING STARTED", func(e protocol.Event) bool { return e.Event == protocol.EventRecording })
	time.Sleep(1500 * time.Millisecond)

	tone := filepath.Join(t.TempDir(), "tone.webm")
	if b, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=3000:d=1", "-c:a", "libopus", "-y", tone).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v %s", err, b)
	}
	body, _ := os.ReadFile(tone)
	if st, out := post(t, srv, "mixed", token(t, "mixed", "chat"), body); st != http.StatusCreated {
		t.Fatalf("post: %d %v", st, out)
	}
	time.Sleep(2 * time.Second)
	if err := a.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	var mix string
	deadline := time.Now().Add(2 * time.Minute)
	for mix == "" {
		if time.Now().After(deadline) {
			t.Fatal("no mix")
		}
		time.Sleep(200 * time.Millisecond)
		if m, _ := filepath.Glob(filepath.Join(dir, "*", "*", "mix.mp4")); len(m) == 1 {
			mix = m[0]
		}
	}
	f, err := os.Open(filepath.Join(filepath.Dir(mix), recorder.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := recorder.ParseManifest(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Clips) != 1 || m.Clips[0].Author != "tester" || !m.Clips[0].Mix || m.Clips[0].OffsetMs < 1000 {
		t.Fatalf("manifest clips: %+v", m.Clips)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(mix), m.Clips[0].File)); err != nil {
		t.Fatalf("the clip's copy: %v", err)
	}
	at := m.Clips[0].Offset().Seconds()
	during := bandVolume(t, mix, 3000, at+0.1, 0.8)
	before := bandVolume(t, mix, 3000, max(at-1.2, 0), 0.8)
	t.Logf("clip at %.2f s: 3 kHz band %.1f dB there, %.1f dB before", at, during, before)
	if during < before+20 {
		t.Errorf("the mix does not play the clip at %.2f s: %.1f dB there, %.1f dB before", at, during, before)
	}
}
