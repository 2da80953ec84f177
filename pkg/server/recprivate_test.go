package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/mixer"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/recorder"
	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/webapp"
)

func isRecording(status string) func(protocol.Event) bool {
	return func(e protocol.Event) bool { return e.Event == protocol.EventRecording && e.Status == status }
}

// sessionAnswer is GET /api/recordings/{room}/{session}'s answer.
type sessionAnswer struct {
	Room         string   `json:"room"`
	Path         string   `json:"path"`
	State        string   `json:"state"`
	Stopped      string   `json:"stopped"`
	Participants []string `json:"participants"`
	Streams      []struct {
		URL string `json:"url"`
	} `json:"streams"`
	Mix *struct {
		Status string `json:"status"`
		URL    string `json:"url"`
	} `json:"mix"`
}

// linkAPI turns a participant's link (/recordings.html?session=R/S&expires&sig)
// into its session's API URL, as the recordings page does.
func linkAPI(t *testing.T, base, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil || u.Path != "/recordings.html" || u.Query().Get("session") == "" || u.Query().Get("sig") == "" {
		t.Fatalf("recording link %q", link)
	}
	q := u.Query()
	return base + "/api/recordings/" + q.Get("session") + "?" + url.Values{"expires": {q.Get("expires")}, "sig": {q.Get("sig")}}.Encode()
}

func getSession(t *testing.T, u string) sessionAnswer {
	t.Helper()
	a := fetch(t, "GET", u)
	if a.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, a.status, a.body)
	}
	var s sessionAnswer
	if err := json.Unmarshal(a.body, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestParticipantsGetTheirRecording: in the default open mode, a recorded
// room tells everyone in it (and a later joiner) that it records, with a
// signed link to the session; the link shows the session while it records
// ("recording", no mix) and while it is mixed, then the mix, which plays
// (ffprobe), in ranges. Without credentials the list and the mix answer
// 401; a record token for another room 403; an admin token 200.
func TestParticipantsGetTheirRecording(t *testing.T) {
	dir := t.TempDir()
	settings := mixer.DefaultSettings()
	settings.Width, settings.Height = 320, 180
	srv := testServer(t, func(c *server.Config) {
		c.RecordsDir = dir
		c.Mix = &server.MixConfig{Settings: settings, Workers: 1}
		c.Rooms.IdleTimeout = 300 * time.Millisecond
		c.Auth = server.AuthConfig{Mode: server.AuthOpen, Tokens: testVerifier(t)}
		c.Web = webapp.FS
	})
	base := srv.URL()
	a := dial(t, srv, client.Options{Username: "a"})
	if _, err := a.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "board", Name: "Ann", Record: true}); err != nil {
		t.Fatal(err)
	}
	publishCamera(t, a)
	started := waitEvent(t, a, "RECORDING STARTED", isRecording(protocol.RecordingStarted))
	if time.Until(time.UnixMilli(started.RecordingExpires)) < 71*time.Hour || started.Room != "board" {
		t.Errorf("the link expires %v, room %q; want about 72 h from now", time.UnixMilli(started.RecordingExpires), started.Room)
	}
	b := dial(t, srv, client.Options{Username: "b"})
	join(t, b, "board", "Bob")
	late := waitEvent(t, b, "RECORDING for a later joiner", isRecording(protocol.RecordingStarted))
	api := linkAPI(t, base, started.RecordingURL)
	if linkAPI(t, base, late.RecordingURL) == "" {
		t.Fatal("no link for the later joiner")
	}

	// While it records: the session, no mix yet.
	during := getSession(t, api)
	if during.Room != "board" || during.State != recorder.StateRecording || during.Mix != nil {
		t.Errorf("while recording, the link shows %+v", during)
	}
	if page := fetch(t, "GET", base+started.RecordingURL); page.status != http.StatusOK {
		t.Errorf("the link's page: %d", page.status)
	}
	time.Sleep(2 * time.Second)
	if err := b.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := a.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}

	// Until the mix exists the link says it is being mixed.
	var done sessionAnswer
	statuses := map[string]bool{}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		done = getSession(t, api)
		if done.Mix != nil {
			statuses[done.Mix.Status] = true
			if done.Mix.Status == mixer.StatusDone || done.Mix.Status == mixer.StatusFailed {
				break
			}
			if done.Mix.URL != "" {
				t.Errorf("a mix URL while the mix is %s", done.Mix.Status)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no mix: %+v", done)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("mix statuses seen through the link: %v", statuses)
	if done.Mix.Status != mixer.StatusDone || done.Mix.URL == "" || done.State != recorder.StateFinished ||
		strings.Join(done.Participants, ",") != "Ann" {
		t.Fatalf("after the mix the link shows %+v", done)
	}
	mixURL, err := url.Parse(done.Mix.URL)
	if err != nil {
		t.Fatal(err)
	}

	// The mix plays through the link's URL, whole and in ranges.
	whole := fetch(t, "GET", base+done.Mix.URL)
	if whole.status != http.StatusOK || whole.header.Get("Content-Type") != "video/mp4" || len(whole.body) < 1000 {
		t.Fatalf("the mix through the link: %d %q, %d bytes", whole.status, whole.header.Get("Content-Type"), len(whole.body))
	}
	mp4 := filepath.Join(t.TempDir(), "mix.mp4")
	if err := os.WriteFile(mp4, whole.body, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, dur := probe(t, mp4); dur < 1.5 {
		t.Errorf("the mix lasts %.2f s", dur)
	}
	part := fetch(t, "GET", base+done.Mix.URL, "Range: bytes=1000-1999")
	if part.status != http.StatusPartialContent || !bytes.Equal(part.body, whole.body[1000:2000]) {
		t.Errorf("a range of the mix: %d, %d bytes", part.status, len(part.body))
	}

	// The mix and the list: 401 without credentials, 403 with a record token
	// for another room, 200 with the admin grant or the room's record grant.
	mixPath := mixURL.Path
	for _, c := range []struct {
		what, url, header string
		want              int
	}{
		{"the list, no token", base + "/api/recordings", "", http.StatusUnauthorized},
		{"the mix, no token", base + mixPath, "", http.StatusUnauthorized},
		{"the mix, another room's token", base + mixPath, bearer(token(t, "other", "record")), http.StatusForbidden},
		{"the mix, a token without record", base + mixPath, bearer(token(t, "board", "join", "publish")), http.StatusForbidden},
		{"the mix, the room's record token", base + mixPath, bearer(token(t, "board", "record")), http.StatusOK},
		{"the mix, admin", base + mixPath, bearer(token(t, "", "admin")), http.StatusOK},
		{"the list, admin", base + "/api/recordings", bearer(token(t, "", "admin")), http.StatusOK},
		{"the list, the room's record token", base + "/api/recordings", bearer(token(t, "board", "record")), http.StatusOK},
	} {
		var h []string
		if c.header != "" {
			h = append(h, c.header)
		}
		got := fetch(t, "GET", c.url, h...)
		if got.status != c.want {
			t.Errorf("%s: %d, want %d", c.what, got.status, c.want)
		}
		if bytes.Contains(got.body, []byte(dir)) {
			t.Errorf("%s: the answer names the records directory", c.what)
		}
	}
	l := listing(t, fetch(t, "GET", base+"/api/recordings", bearer(token(t, "", "admin"))))
	if len(l) != 1 || l[0]["path"] != done.Path {
		t.Errorf("admin's list: %v", l)
	}
}

// TestUnconnectedPublishRecordsNothing: a recorded publish whose media
// never connects (the client gathers only ICE-TCP candidates, which the
// test server does not serve, and drops the server's) leaves no
// file, no manifest and no mix, and the room hears of no recording.
func TestUnconnectedPublishRecordsNothing(t *testing.T) {
	dir := t.TempDir()
	srv := testServer(t, func(c *server.Config) {
		c.RecordsDir = dir
		c.Mix = &server.MixConfig{Settings: mixer.DefaultSettings(), Workers: 1}
		c.Rooms.IdleTimeout = 300 * time.Millisecond
		c.Auth.Tokens = testVerifier(t)
	})
	finalized := make(chan room.Finalized, 1)
	srv.Rooms().OnFinalize(func(f room.Finalized) { finalized <- f })
	a := dial(t, srv, client.Options{Username: "a",
		ICE: client.ICEOptions{TCPOnly: true, RewriteRemoteCandidate: func(string) string { return "" }}})
	if _, err := a.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "dark", Name: "a", Record: true}); err != nil {
		t.Fatal(err)
	}
	pub, err := a.Publish(ctxT(t, 30*time.Second), client.PublishOptions{Video: vp8Source(t), Audio: opusSource(t), Record: true})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if st := pub.Status(); st == protocol.StreamPublishing {
		t.Fatalf("the publish connected (%s) although the client has no server candidate", st)
	}
	if err := a.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	var fin room.Finalized
	select {
	case fin = <-finalized:
	case <-time.After(15 * time.Second):
		t.Fatal("the room did not finalize")
	}
	if !fin.Recording {
		t.Fatal("the room was not a recorded one")
	}
	time.Sleep(500 * time.Millisecond) // a mix would be queued by now
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != ".mixjobs" {
			out, _ := exec.Command("find", dir).CombinedOutput()
			t.Fatalf("the records directory holds %s:\n%s", e.Name(), out)
		}
	}
	if jobs, _ := filepath.Glob(filepath.Join(dir, ".mixjobs", "*.json")); len(jobs) != 0 {
		t.Errorf("mix jobs %v, want none", jobs)
	}
	if l := listing(t, fetch(t, "GET", srv.URL()+"/api/recordings", bearer(token(t, "", "admin")))); len(l) != 0 {
		t.Errorf("the list holds %v", l)
	}
	for {
		select {
		case ev := <-a.Events():
			if ev.Event == protocol.EventRecording {
				t.Errorf("the room heard %s %s although nothing was recorded", ev.Event, ev.Status)
			}
			continue
		default:
		}
		break
	}
}

// TestRecordingQuotaStopsCleanly: with a quota of 2 s of recording per room
// session, a 5 s meeting's recording stops at 2 s: everyone in the room gets
// RECORDING STOPPED QUOTA_DURATION (with the link), the file is finished and
// plays 2 s (ffprobe), the manifest says why, and the mix is queued at once,
// while the room goes on; a stream published after the stop is not recorded.
func TestRecordingQuotaStopsCleanly(t *testing.T) {
	dir := t.TempDir()
	settings := mixer.DefaultSettings()
	settings.Width, settings.Height = 320, 180
	srv := testServer(t, func(c *server.Config) {
		c.RecordsDir = dir
		c.Mix = &server.MixConfig{Settings: settings, Workers: 1}
		c.Recordings.MaxDuration = 2 * time.Second
	})
	a := dial(t, srv, client.Options{Username: "a"})
	if _, err := a.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "quota", Name: "a", Record: true}); err != nil {
		t.Fatal(err)
	}
	b := dial(t, srv, client.Options{Username: "b"})
	join(t, b, "quota", "b")
	publishCamera(t, a)
	waitEvent(t, a, "RECORDING STARTED", isRecording(protocol.RecordingStarted))
	stopA := waitEvent(t, a, "RECORDING STOPPED", isRecording(protocol.RecordingStopped))
	stopB := waitEvent(t, b, "RECORDING STOPPED", isRecording(protocol.RecordingStopped))
	for _, ev := range []protocol.Event{stopA, stopB} {
		if ev.Reason != protocol.RecordingQuotaDuration || ev.RecordingURL == "" {
			t.Errorf("STOPPED: reason %q, link %q", ev.Reason, ev.RecordingURL)
		}
	}
	// The mix is queued while the room still holds everyone.
	api := linkAPI(t, srv.URL(), stopA.RecordingURL)
	s := getSession(t, api)
	if s.State != recorder.StateFinished || s.Stopped != protocol.RecordingQuotaDuration || s.Mix == nil {
		t.Errorf("after the stop the session is %+v, want finished, stopped for the quota, its mix queued", s)
	}
	if srv.Rooms().Room("quota") == nil {
		t.Error("the room ended with its recording")
	}
	late := publishCamera(t, b)
	time.Sleep(2 * time.Second)

	manifests, _ := filepath.Glob(filepath.Join(dir, "*", "*", recorder.ManifestName))
	if len(manifests) != 1 {
		t.Fatalf("%d manifests", len(manifests))
	}
	m, err := recorder.ReadManifest(manifests[0])
	if err != nil {
		t.Fatal(err)
	}
	if m.State != recorder.StateFinished || m.Stopped != recorder.StopQuotaDuration || len(m.Streams) != 1 {
		t.Fatalf("manifest: state %s, stopped %q, %d streams (want only a's; b's %s came after the stop)",
			m.State, m.Stopped, len(m.Streams), late.ID())
	}
	file := filepath.Join(filepath.Dir(manifests[0]), m.Streams[0].File)
	if e := decodeErrors(t, file); e != "" {
		t.Errorf("the stopped recording does not decode cleanly: %s", e)
	}
	start, dur := probe(t, file)
	t.Logf("stopped file: start %.3f s, end %.3f s, %.3f s of media", start, dur, dur-start)
	// No frame starts later than the quota after the first; the file's
	// duration adds the last frame's own length, which varies with the
	// publisher's pace, so the bound is on the frames' times.
	last := lastPacketTime(t, file)
	if dur-start < 1.8 || last-start > 2.001 {
		t.Errorf("the stopped recording holds %.3f s, its last frame at %.3f s, want about 2 s and no frame after 2 s", dur-start, last-start)
	}
	if m.Streams[0].State != recorder.StreamClosed {
		t.Errorf("stream state %q", m.Streams[0].State)
	}
}
