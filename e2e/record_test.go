package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/mixer"
	"github.com/parley/parley/pkg/server"
)

type apiRecording struct {
	Room         string   `json:"room"`
	Session      string   `json:"session"`
	State        string   `json:"state"`
	DurationMs   int64    `json:"durationMs"`
	Participants []string `json:"participants"`
	Streams      []struct {
		Participant string `json:"participant"`
		URL         string `json:"url"`
	} `json:"streams"`
	Mix *struct {
		Status   string  `json:"status"`
		Progress float64 `json:"progress"`
		URL      string  `json:"url"`
		Error    string  `json:"error"`
	} `json:"mix"`
	Manifest string `json:"manifest"`
}

func getJSON(t *testing.T, url string, out any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// ffprobeStreams returns the codec types of a file's streams and its duration.
func ffprobeStreams(t *testing.T, path string) (kinds []string, duration float64) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_type:format=duration", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var r struct {
		Streams []struct {
			CodecType string `json:"codec_type"`
		} `json:"streams"`
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	for _, s := range r.Streams {
		kinds = append(kinds, s.CodecType)
	}
	duration, _ = strconv.ParseFloat(r.Format.Duration, 64)
	return kinds, duration
}

// TestRecordedMeetingInBrowsers: /?room=R&name=A&record=1 and a second page
// join, publish and leave; both see the REC mark; after the idle timeout the
// mix exists, holds both people, and /records/ serves it; the recordings page
// lists it; `sfu mix` redoes it by hand with a progress bar.
func TestRecordedMeetingInBrowsers(t *testing.T) {
	dir := t.TempDir()
	settings := mixer.DefaultSettings()
	settings.Width, settings.Height = 640, 360
	srv := startServer(t, func(c *server.Config) {
		c.RecordsDir = dir
		c.Mix = &server.MixConfig{Settings: settings, Workers: 1}
		c.Rooms.IdleTimeout = time.Second
	})
	room := fmt.Sprintf("rec%d", time.Now().UnixNano()%100000)
	a := openPage(t, "A", fmt.Sprintf("%s/?room=%s&name=A&record=1", srv.URL(), room))
	b := openPage(t, "B", fmt.Sprintf("%s/?room=%s&name=B", srv.URL(), room))
	a.waitDecoding("B", "camera", true)
	b.waitDecoding("A", "camera", true)
	for _, p := range []*page{a, b} {
		p.waitFor("the REC mark", func() (bool, string) {
			var shown bool
			_ = p.eval(`(() => { const r = document.querySelector('#rec'); return !!r && !r.hidden; })()`, &shown)
			return shown, ""
		})
	}
	time.Sleep(4 * time.Second)
	b.click("#leave")
	a.click("#leave")

	// The room finalizes after its idle timeout; the mix runs.
	var rec apiRecording
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var list []apiRecording
		getJSON(t, srv.URL()+"/api/recordings", &list)
		if len(list) == 1 && list[0].Mix != nil && (list[0].Mix.Status == mixer.StatusDone || list[0].Mix.Status == mixer.StatusFailed) {
			rec = list[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished mix in /api/recordings: %+v", list)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if rec.Mix.Status != mixer.StatusDone {
		t.Fatalf("the mix failed: %s", rec.Mix.Error)
	}
	if rec.Room != room || rec.State != "finished" || len(rec.Participants) != 2 || len(rec.Streams) != 2 {
		t.Fatalf("recording %+v: want room %s finished, with A and B and their two streams", rec, room)
	}

	// /records/ serves the mix; nothing outside the records directory.
	resp, err := http.Get(srv.URL() + rec.Mix.URL)
	if err != nil {
		t.Fatal(err)
	}
	mixFile := filepath.Join(t.TempDir(), "mix.mp4")
	f, _ := os.Create(mixFile)
	n, _ := io.Copy(f, resp.Body)
	f.Close()
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || n < 10_000 {
		t.Fatalf("GET %s: %s, %d bytes", rec.Mix.URL, resp.Status, n)
	}
	kinds, dur := ffprobeStreams(t, mixFile)
	if strings.Join(kinds, ",") != "video,audio" && strings.Join(kinds, ",") != "audio,video" {
		t.Errorf("the mix has streams %v, want one video and one audio", kinds)
	}
	if want := float64(rec.DurationMs) / 1000; math.Abs(dur-want) > 0.5 {
		t.Errorf("the mix lasts %.2f s, the session %.2f s", dur, want)
	}
	for _, bad := range []string{"/records/../go.mod", "/records/%2e%2e/%2e%2e/etc/passwd", "/records/..%2f..%2fetc%2fpasswd"} {
		resp, err := http.Get(srv.URL() + bad)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && (strings.Contains(string(body), "root:") || strings.Contains(string(body), "module ")) {
				t.Errorf("GET %s escaped the records directory", bad)
			}
		}
	}

	// The recordings page lists the session with its people.
	rp := openPage(t, "recordings", srv.URL()+"/recordings.html")
	rp.waitFor("the session on the recordings page", func() (bool, string) {
		text := rp.text("#recList")
		return strings.Contains(text, room) && strings.Contains(text, "A") && strings.Contains(text, "B"), text
	})

	// sfu mix redoes it by hand, with a progress bar.
	bin := filepath.Join(t.TempDir(), "sfu")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/sfu").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	manifest := filepath.Join(dir, strings.TrimPrefix(rec.Manifest, "/records/"))
	again := filepath.Join(t.TempDir(), "again.mp4")
	cmd := exec.Command(bin, "mix", manifest, "-o", again)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sfu mix: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "100") {
		t.Errorf("sfu mix printed no progress to 100 %%:\n%s", out)
	}
	if _, d := ffprobeStreams(t, again); math.Abs(d-dur) > 0.5 {
		t.Errorf("sfu mix made %.2f s, the queued mix %.2f s", d, dur)
	}
}
