package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/mixer"
	"github.com/parley/parley/pkg/server"
)

type apiRecording struct {
	Room         string    `json:"room"`
	Session      string    `json:"session"`
	State        string    `json:"state"`
	Start        time.Time `json:"start"`
	DurationMs   int64     `json:"durationMs"`
	Participants []string  `json:"participants"`
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
	Path string `json:"path"`
}

// getJSON GETs url with a bearer token and decodes its JSON answer.
func getJSON(t *testing.T, url, token string, out any) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
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
// join, publish and leave; both see the REC mark and a link to their
// recording; after the idle timeout the mix exists, holds both people, and
// /records/ serves it to an admin token's signed URL (nothing outside the
// records directory); the recordings page takes a token from ?token= (and
// drops it from the address bar) and lists the session; a participant's link
// opens the recording page, which says the recording is ready and plays the
// mix; `sfu mix` redoes it by hand with a progress bar.
func TestRecordedMeetingInBrowsers(t *testing.T) {
	srv, dir, admin := recordingMixServer(t)
	room := fmt.Sprintf("rec%d", time.Now().UnixNano()%100000)
	a := openPage(t, "A", fmt.Sprintf("%s/?room=%s&name=A&record=1", srv.URL(), room))
	b := openPage(t, "B", fmt.Sprintf("%s/?room=%s&name=B", srv.URL(), room))
	a.waitDecoding("B", "camera", true)
	b.waitDecoding("A", "camera", true)
	links := map[string]string{}
	for _, p := range []*page{a, b} {
		p.waitFor("the REC mark and the link to the recording", func() (bool, string) {
			var st struct {
				Rec  bool   `json:"rec"`
				Link string `json:"link"`
			}
			_ = p.eval(`(() => { const r = document.querySelector('#rec'), l = document.querySelector('#recordingLink');
				return {rec: !!r && !r.hidden, link: l && !l.hidden ? l.getAttribute('href') : ''}; })()`, &st)
			links[p.name] = st.Link
			return st.Rec && strings.HasPrefix(st.Link, "/recordings.html?session="), fmt.Sprintf("%+v", st)
		})
	}
	time.Sleep(4 * time.Second)
	b.click("#leave")
	a.click("#leave")

	// The room finalizes after its idle timeout; the mix runs.
	rec := mixedRecording(t, srv, admin, "in /api/recordings")
	if rec.Mix.Status != mixer.StatusDone {
		t.Fatalf("the mix failed: %s", rec.Mix.Error)
	}
	if rec.Room != room || rec.State != "finished" || len(rec.Participants) != 2 || len(rec.Streams) != 2 {
		t.Fatalf("recording %+v: want room %s finished, with A and B and their two streams", rec, room)
	}

	// /records/ serves the mix through the signed URL; nothing outside the
	// records directory, and nothing without credentials.
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
	if resp, err := http.Get(srv.URL() + strings.Split(rec.Mix.URL, "?")[0]); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the mix without a signature or token: %v %v, want 401", resp.Status, err)
	}
	for _, bad := range []string{"/records/../go.mod", "/records/%2e%2e/%2e%2e/etc/passwd", "/records/..%2f..%2fetc%2fpasswd"} {
		req, _ := http.NewRequest("GET", srv.URL()+bad, nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && (strings.Contains(string(body), "root:") || strings.Contains(string(body), "module ")) {
				t.Errorf("GET %s escaped the records directory", bad)
			}
		}
	}

	// The recordings page takes the token from ?token=, drops it from the
	// address bar, and lists the session with its people.
	rp := openPage(t, "recordings", srv.URL()+"/recordings.html?token="+url.QueryEscape(admin))
	rp.waitFor("the session on the recordings page", func() (bool, string) {
		text := rp.text("#recList")
		return strings.Contains(text, room) && strings.Contains(text, "A") && strings.Contains(text, "B"), text
	})
	var addr string
	_ = rp.eval(`location.href`, &addr)
	if strings.Contains(addr, "token") {
		t.Errorf("the token stays in the address bar: %s", addr)
	}

	// A participant's link: the page says the recording is ready and plays
	// the mix through its signed URL.
	if _, err := chromedp.Run(rp.ctx, chromedp.Navigate(srv.URL()+links["B"])); err != nil {
		t.Fatal(err)
	}
	rp.waitFor("the recording playing through the participant's link", func() (bool, string) {
		var st struct {
			Ready    bool    `json:"ready"`
			Duration float64 `json:"duration"`
			Time     float64 `json:"time"`
			Err      string  `json:"err"`
		}
		_ = rp.eval(`(async () => {
			const v = document.querySelector('.rec-mix video');
			const ready = !!document.querySelector('.rec-ready');
			if (!v) return {ready, duration: 0, time: 0, err: document.querySelector('#recError').textContent};
			if (v.paused && v.readyState >= 2) { v.muted = true; try { await v.play(); } catch (e) {} }
			return {ready, duration: isFinite(v.duration) ? v.duration : 0, time: v.currentTime,
				err: v.error ? 'media error ' + v.error.code : ''};
		})()`, &st)
		return st.Ready && math.Abs(st.Duration-dur) < 0.5 && st.Time > 0.5, fmt.Sprintf("%+v", st)
	})

	// sfu mix redoes it by hand, with a progress bar.
	bin := filepath.Join(t.TempDir(), "sfu")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/sfu").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	manifest := filepath.Join(dir, filepath.FromSlash(rec.Path), "manifest.json")
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

// recordingMixServer starts a server that records into a directory of the
// test's (returned), mixes each session at 640x360 once its room is idle
// for a second, and takes tokens signed with a test key; admin is an admin
// token of it.
func recordingMixServer(t *testing.T) (srv *server.Server, dir, admin string) {
	t.Helper()
	dir = t.TempDir()
	settings := mixer.DefaultSettings()
	settings.Width, settings.Height = 640, 360
	key := auth.Key{ID: "e2e", Secret: []byte("e2e-secret-e2e-secret-e2e-secret-e2e")}
	verifier, err := auth.NewVerifier([]auth.Key{key}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	admin, err = auth.Sign(key, auth.Spec{Identity: "admin", Grants: auth.MustParseGrants("admin"), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv = startServer(t, func(c *server.Config) {
		c.RecordsDir = dir
		c.Mix = &server.MixConfig{Settings: settings, Workers: 1}
		c.Rooms.IdleTimeout = time.Second
		c.Auth.Tokens = verifier
	})
	return srv, dir, admin
}

// mixedRecording waits (up to 3 minutes) until the server's one recording
// has a finished mix (done or failed) and returns it; what names it in
// the failure.
func mixedRecording(t *testing.T, srv *server.Server, admin, what string) apiRecording {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var list []apiRecording
		getJSON(t, srv.URL()+"/api/recordings", admin, &list)
		if len(list) == 1 && list[0].Mix != nil && (list[0].Mix.Status == mixer.StatusDone || list[0].Mix.Status == mixer.StatusFailed) {
			return list[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished mix %s: %+v", what, list)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
