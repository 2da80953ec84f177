package main

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/recorder"
	"github.com/parley/parley/pkg/testmedia"
)

type recordingsList []struct {
	Session string `json:"session"`
	State   string `json:"state"`
	Mix     *struct {
		Status string `json:"status"`
		URL    string `json:"url"`
	} `json:"mix"`
}

func recordings(base string) (recordingsList, error) {
	resp, err := http.Get(base + "/api/recordings")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var l recordingsList
	return l, json.NewDecoder(resp.Body).Decode(&l)
}

// waitMix polls /api/recordings until the only session's mix has the status.
func waitMix(t *testing.T, base, status string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		l, err := recordings(base)
		if err == nil && len(l) == 1 && l[0].Mix != nil && l[0].Mix.Status == status {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	l, _ := recordings(base)
	t.Fatalf("no mix %s; recordings: %+v", status, l)
}

// TestCrashDuringRecordingAndMix: the server is SIGKILLed while it records;
// the files decode to within 2 s of the kill; the next start closes the
// session and queues its mix; that server is SIGKILLed in the middle of the
// mix; the next one finishes the mix, and the hook runs exactly once, with
// the mix's and the manifest's paths.
func TestCrashDuringRecordingAndMix(t *testing.T) {
	bin := buildSFU(t)
	dir := t.TempDir()
	records := filepath.Join(dir, "records")
	hookLog := filepath.Join(dir, "hook.log")
	hook := filepath.Join(dir, "hook.sh")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho \"$1|$2\" >> '"+hookLog+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A slow mix (full HD at 60 fps) leaves time to kill the server during it.
	mixCfg := filepath.Join(dir, "mixer.json")
	if err := os.WriteFile(mixCfg, []byte(`{"width":1920,"height":1080,"frameRate":60}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// The test reads /api/recordings without a token: an archive made public on purpose.
	args := []string{"--records-dir", records, "--mixer-config", mixCfg, "--mix-hook", hook, "--recordings", "public"}

	// 1. Record, then SIGKILL the server mid-meeting.
	sfu1, base := startSFU(t, bin, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", client.Options{Username: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Join(ctx, client.JoinOptions{Room: "crash", Name: "a", Record: true}); err != nil {
		t.Fatal(err)
	}
	cache, _ := os.UserCacheDir()
	media := filepath.Join(cache, "parley-testmedia")
	vp8, err := testmedia.VP8IVF(media, testmedia.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opus, err := testmedia.OpusOgg(media, testmedia.Options{})
	if err != nil {
		t.Fatal(err)
	}
	video, _ := client.NewIVFSource(vp8, true)
	audio, _ := client.NewOpusSource(opus, true)
	pub, err := c.Publish(ctx, client.PublishOptions{Video: video, Audio: audio})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitStatus(ctx, protocol.StreamPublishing); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	time.Sleep(5 * time.Second)
	if err := sfu1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAfter := time.Since(started).Seconds()
	_ = sfu1.Wait()
	_ = c.Close()

	manifests, _ := filepath.Glob(filepath.Join(records, "*", "*", recorder.ManifestName))
	if len(manifests) != 1 {
		t.Fatalf("%d manifests after the kill, want 1", len(manifests))
	}
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(manifests[0]), "*.webm"))
	if len(files) != 1 {
		t.Fatalf("%d WebM files after the kill, want 1", len(files))
	}
	if out, err := exec.Command("ffmpeg", "-v", "error", "-i", files[0], "-f", "null", "-").CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("the killed recording does not decode cleanly: %v %s", err, out)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", files[0]).Output()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if got < killedAfter-2 {
		t.Errorf("the killed recording holds %.2f s of %.2f s published: more than 2 s lost", got, killedAfter)
	}
	t.Logf("killed after %.2f s of media; the file holds %.2f s", killedAfter, got)

	// 2. The next start recovers the session and queues its mix; kill it mid-mix.
	sfu2, base2 := startSFU(t, bin, args...)
	waitMix(t, base2, "running")
	if err := sfu2.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = sfu2.Wait()
	if b, _ := os.ReadFile(hookLog); len(b) > 0 {
		t.Fatalf("the hook ran before the mix finished: %s", b)
	}

	// 3. The next start resumes the mix; the hook runs once.
	_, base3 := startSFU(t, bin, args...)
	waitMix(t, base3, "done")
	time.Sleep(time.Second) // a second hook run, if any, would show now
	b, err := os.ReadFile(hookLog)
	if err != nil {
		t.Fatalf("the hook never ran: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 1 {
		t.Fatalf("the hook ran %d times: %q", len(lines), lines)
	}
	parts := strings.Split(lines[0], "|")
	wantManifest, _ := filepath.Abs(manifests[0])
	if len(parts) != 2 || parts[1] != wantManifest || !strings.HasSuffix(parts[0], ".mp4") {
		t.Fatalf("hook arguments %q, want the mix and %s", lines[0], wantManifest)
	}
	if st, err := os.Stat(parts[0]); err != nil || st.Size() == 0 {
		t.Errorf("the hook was given %s, which is not a mix: %v", parts[0], err)
	}
	_, mixDur := probeDuration(t, parts[0])
	m, err := recorder.ReadManifest(manifests[0])
	if err != nil {
		t.Fatal(err)
	}
	if !m.Recovered || m.State != "finished" || math.Abs(mixDur-float64(m.DurationMs)/1000) > 0.5 {
		t.Errorf("manifest recovered=%v state=%s duration %d ms; mix %.2f s", m.Recovered, m.State, m.DurationMs, mixDur)
	}
}

func probeDuration(t *testing.T, path string) (string, float64) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	s := strings.TrimSpace(string(out))
	d, _ := strconv.ParseFloat(s, 64)
	return s, d
}
