package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/clips"
	"github.com/parley/parley/pkg/notify"
	"github.com/parley/parley/pkg/notify/notifytest"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/server/servertest"
)

var (
	clipFilesMu sync.Mutex
	clipFiles   = map[string][]byte{}
)

// clipBytes makes a real clip with ffmpeg: seconds of a tone in Opus/WebM,
// with a VP8 test picture when video.
func clipBytes(t *testing.T, seconds float64, video bool) []byte {
	t.Helper()
	key := fmt.Sprintf("%g-%v", seconds, video)
	clipFilesMu.Lock()
	defer clipFilesMu.Unlock()
	if b, ok := clipFiles[key]; ok {
		return b
	}
	out := filepath.Join(t.TempDir(), "clip.webm")
	d := fmt.Sprintf("%g", seconds)
	args := []string{"-v", "error", "-f", "lavfi", "-i", "sine=f=440:d=" + d}
	if video {
		args = append(args, "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15:d="+d, "-c:v", "libvpx", "-b:v", "100k")
	}
	args = append(args, "-c:a", "libopus", "-b:a", "24k", "-y", out)
	if b, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	clipFiles[key] = b
	return b
}

// clipServer starts a server with media messages under limits.
func clipServer(t *testing.T, dir string, lim func(string) clips.Limits, tweak func(*server.Config)) *server.Server {
	t.Helper()
	return testServer(t, func(c *server.Config) {
		c.Auth.Tokens = testVerifier(t)
		c.Clips = &server.ClipsConfig{Dir: dir, Limits: lim, SweepInterval: 100 * time.Millisecond,
			FreeSpace: func(string) (int64, error) { return 1 << 40, nil }}
		if tweak != nil {
			tweak(c)
		}
	})
}

// joinClips joins room as name and returns the clips access of the join's reply.
func joinClips(t *testing.T, c *client.Client, roomName, name string) *protocol.ClipsAccess {
	t.Helper()
	raw, err := c.Request(ctxT(t, 10*time.Second), &protocol.Join{Type: protocol.TypeJoin, Room: roomName, Name: name})
	if err != nil {
		t.Fatalf("%s joins %s: %v", name, roomName, err)
	}
	var r protocol.Reply
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	if r.Clips == nil || r.Clips.Pass == "" {
		t.Fatalf("%s: the join reply has no clips access: %s", name, raw)
	}
	return r.Clips
}

// post uploads a clip with credentials (a pass or a token).
func post(t *testing.T, srv *server.Server, roomName, cred string, body []byte) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL()+"/api/rooms/"+roomName+"/clips", bytes.NewReader(body))
	req.Header.Set("Content-Type", "audio/webm")
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestClipsPostPlayDelete: a participant posts a clip with the pass of its
// join; the others get CLIP_ADDED and play it (ranges); a stranger can
// neither list, fetch nor post; only the author (or a moderator's token)
// deletes it, and everyone gets CLIP_DELETED; a pass ends with its
// participant's leave.
func TestClipsPostPlayDelete(t *testing.T) {
	srv := clipServer(t, t.TempDir(), nil, nil)
	a := dial(t, srv, client.Options{Username: "anna"})
	b := dial(t, srv, client.Options{Username: "ben"})
	accA := joinClips(t, a, "team", "anna")
	accB := joinClips(t, b, "team", "ben")
	if accA.URL != "/api/rooms/team/clips" || !accA.Post || accA.Moderate || accA.Limits.MaxClipSizeSec != 60 {
		t.Errorf("access %+v", accA)
	}
	clip := clipBytes(t, 1.5, false)
	status, info := post(t, srv, "team", accA.Pass, clip)
	if status != http.StatusCreated {
		t.Fatalf("post: %d %v", status, info)
	}
	ev := waitEvent(t, b, "CLIP_ADDED", isEvent(protocol.EventClipAdded, ""))
	c := ev.Clip
	if c == nil || c.Author != "anna" || c.Kind != "audio" || c.Bytes != int64(len(clip)) || c.DurationMs < 1400 ||
		c.DurationMs > 1600 || c.ID != info["id"] || c.MIME != "audio/webm" {
		t.Fatalf("CLIP_ADDED %+v", c)
	}
	waitEvent(t, a, "CLIP_ADDED to its author", isEvent(protocol.EventClipAdded, ""))

	u := srv.URL() + c.URL
	got := fetch(t, "GET", u, bearer(accB.Pass), "Range: bytes=100-199")
	if got.status != http.StatusPartialContent || !bytes.Equal(got.body, clip[100:200]) || got.header.Get("Content-Type") != "audio/webm" {
		t.Errorf("range: %d %q", got.status, got.header)
	}
	if got := fetch(t, "GET", u+"?access_token="+accB.Pass); got.status != 200 || !bytes.Equal(got.body, clip) {
		t.Errorf("whole clip with ?access_token: %d, %d bytes", got.status, len(got.body))
	}
	var list struct {
		Clips []protocol.Clip `json:"clips"`
	}
	l := fetch(t, "GET", srv.URL()+"/api/rooms/team/clips", bearer(accB.Pass))
	if err := json.Unmarshal(l.body, &list); err != nil || l.status != 200 || len(list.Clips) != 1 || list.Clips[0].ID != c.ID {
		t.Errorf("list: %d %s", l.status, l.body)
	}

	// Strangers: nothing.
	for _, h := range [][]string{nil, {bearer("pc1.forged.sig")}, {bearer(token(t, "other", "join", "chat"))}} {
		if got := fetch(t, "GET", srv.URL()+"/api/rooms/team/clips", h...); got.status != 401 && got.status != 403 {
			t.Errorf("list as a stranger %v: %d", h, got.status)
		}
		if got := fetch(t, "GET", u, h...); got.status != 401 && got.status != 403 {
			t.Errorf("fetch as a stranger %v: %d", h, got.status)
		}
	}
	if st, _ := post(t, srv, "team", "", clip); st != http.StatusUnauthorized {
		t.Errorf("post without credentials: %d", st)
	}
	if st, _ := post(t, srv, "team", token(t, "other", "chat"), clip); st != http.StatusForbidden {
		t.Errorf("post with another room's token: %d", st)
	}
	// In open mode everyone in a room may chat, and a token adds its grants to
	// that: a subscribe token posts as its holder would after joining (in
	// token mode it may not: TestClipGrants).
	if st, body := post(t, srv, "team", token(t, "team", "subscribe"), clip); st != http.StatusCreated || body["owner"] != "id:tester" {
		t.Errorf("post with the room's subscribe token in open mode: %d %v", st, body)
	}
	if st, _ := post(t, srv, "other", accA.Pass, clip); st != http.StatusForbidden {
		t.Errorf("post with a pass for another room: %d", st)
	}
	if got := fetch(t, "GET", u, bearer(token(t, "team", "subscribe"))); got.status != 200 {
		t.Errorf("fetch with the room's subscribe token: %d", got.status)
	}
	if got := fetch(t, "GET", u+"?expires=9999999999&sig=forged"); got.status != 403 {
		t.Errorf("fetch with a forged signature: %d", got.status)
	}

	// Only the author deletes; a moderator's token too.
	if got := fetch(t, "DELETE", u, bearer(accB.Pass)); got.status != http.StatusForbidden {
		t.Errorf("ben deletes anna's clip: %d", got.status)
	}
	if got := fetch(t, "DELETE", u, bearer(accA.Pass)); got.status != http.StatusNoContent {
		t.Fatalf("anna deletes her clip: %d %s", got.status, got.body)
	}
	del := waitEvent(t, b, "CLIP_DELETED", isEvent(protocol.EventClipDeleted, ""))
	if del.ClipID != c.ID || del.Reason != clips.ReasonDeleted {
		t.Errorf("CLIP_DELETED %+v", del)
	}
	if got := fetch(t, "GET", u, bearer(accB.Pass)); got.status != 404 {
		t.Errorf("deleted clip fetched: %d", got.status)
	}
	_, info2 := post(t, srv, "team", accB.Pass, clip)
	if got := fetch(t, "DELETE", srv.URL()+"/api/rooms/team/clips/"+info2["id"].(string), bearer(token(t, "team", "moderate"))); got.status != 204 {
		t.Errorf("a moderator deletes ben's clip: %d", got.status)
	}

	// A pass ends when its participant leaves.
	if err := a.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := fetch(t, "GET", srv.URL()+"/api/rooms/team/clips", bearer(accA.Pass)); got.status != http.StatusUnauthorized {
		t.Errorf("list with the pass of a participant who left: %d", got.status)
	}
	for _, a := range []answer{l, got} {
		if bytes.Contains(a.body, []byte(os.TempDir())) {
			t.Errorf("an answer names a server path: %s", a.body)
		}
	}
}

// metric reads one value of the server's /metrics.
func metric(t *testing.T, srv *server.Server, name string) float64 {
	t.Helper()
	m := fetch(t, "GET", srv.URL()+"/metrics")
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+]+)$`)
	s := re.FindSubmatch(m.body)
	if s == nil {
		t.Fatalf("metric %s not found", name)
	}
	v, _ := strconv.ParseFloat(string(s[1]), 64)
	return v
}

// TestClipLimits: each of a room's limits, over HTTP.
func TestClipLimits(t *testing.T) {
	one := clipBytes(t, 1, false)
	var mu sync.Mutex
	lim := clips.DefaultLimits()
	lim.MaxBlobBytes = 100_000
	lim.MaxClipSec = 2
	lim.MaxFolderBytes = int64(len(one))*3 + 100
	lim.MaxClipCount = 0
	limits := func(string) clips.Limits { mu.Lock(); defer mu.Unlock(); return lim }
	srv := clipServer(t, t.TempDir(), limits, nil)
	a := dial(t, srv, client.Options{Username: "anna"})
	acc := joinClips(t, a, "lim", "anna")
	api := srv.URL() + "/api/rooms/lim/clips"

	// Over maxBlobBytes: refused while it streams. A 64 MB body of
	// unknown length (chunked): the server stops reading near the limit.
	pr, pw := io.Pipe()
	var written int64
	go func() {
		head := one[:64]
		n, _ := pw.Write(head)
		written += int64(n)
		chunk := make([]byte, 32<<10)
		for written < 64<<20 {
			n, err := pw.Write(chunk)
			written += int64(n)
			if err != nil {
				return
			}
		}
		pw.Close()
	}()
	readBefore := metric(t, srv, "parley_clip_upload_read_bytes_total")
	req, _ := http.NewRequest("POST", api, pr)
	req.Header.Set("Authorization", "Bearer "+acc.Pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("streamed upload: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pr.CloseWithError(io.ErrClosedPipe)
	read := metric(t, srv, "parley_clip_upload_read_bytes_total") - readBefore
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), clips.CodeTooLarge) {
		t.Errorf("over maxBlobBytes: %d %s", resp.StatusCode, body)
	}
	t.Logf("64 MiB body, 100 kB limit: the server read %.0f bytes", read)
	if read > float64(lim.MaxBlobBytes)+16<<10 {
		t.Errorf("the server read %.0f bytes of an upload over its %d-byte limit", read, lim.MaxBlobBytes)
	}
	if got := metric(t, srv, `parley_clips_refused_total{code="TOO_LARGE"}`); got != 1 {
		t.Errorf("refusals counted: %v", got)
	}

	// Over maxClipSizeSec: refused after probing; not media: refused.
	if st, out := post(t, srv, "lim", acc.Pass, clipBytes(t, 3, false)); st != http.StatusUnprocessableEntity || out["code"] != clips.CodeTooLong {
		t.Errorf("3 s clip, 2 s limit: %d %v", st, out)
	}
	if st, out := post(t, srv, "lim", acc.Pass, []byte("<html><script>alert(1)</script></html>")); st != http.StatusUnsupportedMediaType {
		t.Errorf("html: %d %v", st, out)
	}
	fake := append(append([]byte{}, one[:200]...), bytes.Repeat([]byte("garbage!"), 500)...)
	if st, out := post(t, srv, "lim", acc.Pass, fake); st != http.StatusUnsupportedMediaType {
		t.Errorf("a WebM header over garbage: %d %v", st, out)
	}

	// maxMediaFolderBytes: the fourth clip drops the oldest.
	var ids []string
	for i := 0; i < 4; i++ {
		st, out := post(t, srv, "lim", acc.Pass, one)
		if st != http.StatusCreated {
			t.Fatalf("clip %d: %d %v", i, st, out)
		}
		ids = append(ids, out["id"].(string))
	}
	ev := waitEvent(t, a, "CLIP_DELETED evicted", isEvent(protocol.EventClipDeleted, ""))
	if ev.ClipID != ids[0] || ev.Reason != clips.ReasonEvicted {
		t.Errorf("folder over its limit: %+v, want %s evicted", ev, ids[0])
	}
	// maxClipCount 2: the next one drops two more.
	mu.Lock()
	lim.MaxClipCount = 2
	mu.Unlock()
	if st, _ := post(t, srv, "lim", acc.Pass, one); st != http.StatusCreated {
		t.Fatal(st)
	}
	var list struct{ Clips []protocol.Clip }
	_ = json.Unmarshal(fetch(t, "GET", api, bearer(acc.Pass)).body, &list)
	if len(list.Clips) != 2 || list.Clips[0].ID != ids[3] {
		t.Errorf("maxClipCount 2: %+v", list.Clips)
	}
	// An expired clip is swept (not only on the next upload).
	mu.Lock()
	lim.Lifetime = time.Second
	lim.MaxClipCount = 0
	mu.Unlock()
	_, out := post(t, srv, "lim", acc.Pass, one)
	ev = waitEvent(t, a, "CLIP_DELETED expired", func(e protocol.Event) bool {
		return e.Event == protocol.EventClipDeleted && e.ClipID == out["id"]
	})
	if ev.Reason != clips.ReasonExpired {
		t.Errorf("expiry: %+v", ev)
	}
	// Video in an audio-only room.
	mu.Lock()
	lim.AllowVideo = false
	mu.Unlock()
	if st, out := post(t, srv, "lim", acc.Pass, clipBytes(t, 1, true)); st != http.StatusUnprocessableEntity || out["code"] != clips.CodeNoVideo {
		t.Errorf("video clip in an audio room: %d %v", st, out)
	}
}

// TestClipsSurviveRestart: a clip posted before a restart is listed and
// served after it.
func TestClipsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	clip := clipBytes(t, 1, true)
	cfg := func(c *server.Config) {
		c.Auth.Tokens = testVerifier(t)
		c.Clips = &server.ClipsConfig{Dir: dir}
	}
	srv, err := server.New(withTest(cfg))
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	tok := token(t, "keep", "join", "chat")
	st, info := post(t, srv, "keep", tok, clip)
	if st != http.StatusCreated {
		t.Fatalf("post: %d %v", st, info)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	srv2 := testServer(t, cfg)
	var list struct{ Clips []protocol.Clip }
	_ = json.Unmarshal(fetch(t, "GET", srv2.URL()+"/api/rooms/keep/clips", bearer(tok)).body, &list)
	if len(list.Clips) != 1 || list.Clips[0].ID != info["id"] || list.Clips[0].Kind != "video" || list.Clips[0].Author != "tester" {
		t.Fatalf("after restart: %+v", list.Clips)
	}
	if got := fetch(t, "GET", srv2.URL()+list.Clips[0].URL, bearer(tok)); got.status != 200 || !bytes.Equal(got.body, clip) {
		t.Errorf("served after restart: %d, %d bytes", got.status, len(got.body))
	}
}

// withTest applies tweak to the test configuration.
func withTest(tweak func(*server.Config)) server.Config {
	c := servertest.Config()
	tweak(&c)
	return c
}

// TestClipNotificationEmail: a new clip e-mails the room's notify list,
// its author excepted, through a real SMTP server (STARTTLS, PLAIN), with
// a signed link that plays the clip without any other credential.
func TestClipNotificationEmail(t *testing.T) {
	ms := notifytest.Start(t, "127.0.0.1:0")
	lim := clips.DefaultLimits()
	lim.Notify = map[string]string{"anna": "anna@example.com", "ben": "Ben <ben@example.com>"}
	srv := clipServer(t, t.TempDir(), func(string) clips.Limits { return lim }, func(c *server.Config) {
		c.Clips.PublicURL = "http://placeholder.invalid"
		c.Clips.Notify = &notify.Config{RetryMin: 50 * time.Millisecond, SMTP: notify.SMTP{Addr: ms.Addr,
			Username: notifytest.User, Password: notifytest.Password, From: "Parley <noreply@parley.test>",
			TLSConfig: &tls.Config{RootCAs: ms.Roots, ServerName: "127.0.0.1"}}}
	})
	a := dial(t, srv, client.Options{Username: "anna"})
	acc := joinClips(t, a, "Küche", "anna")
	clip := clipBytes(t, 1, false)
	if st, out := post(t, srv, "K%C3%BCche", acc.Pass, clip); st != http.StatusCreated {
		t.Fatalf("post: %d %v", st, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(ms.Mails()) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a second mail, if wrongly sent, would come now
	mails := ms.Mails()
	if len(mails) != 1 || mails[0].To != "ben@example.com" || !mails[0].TLS || mails[0].User != notifytest.User {
		t.Fatalf("mails: %+v", mails)
	}
	msg, err := mail.ReadMessage(strings.NewReader(mails[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
	subject, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if !strings.Contains(subject, "anna") || !strings.Contains(subject, "Küche") {
		t.Errorf("subject %q", subject)
	}
	link := regexp.MustCompile(`http://placeholder\.invalid(/api/rooms/\S+)`).FindSubmatch(body)
	if link == nil {
		t.Fatalf("no link in %q", body)
	}
	got := fetch(t, "GET", srv.URL()+string(link[1]))
	if got.status != 200 || !bytes.Equal(got.body, clip) {
		t.Errorf("the e-mailed link: %d, %d bytes", got.status, len(got.body))
	}
	tampered := strings.Replace(string(link[1]), "sig=", "sig=x", 1)
	if got := fetch(t, "GET", srv.URL()+tampered); got.status != http.StatusForbidden {
		t.Errorf("a tampered link: %d", got.status)
	}
	if got := fetch(t, "GET", srv.URL()+"/api/rooms/K%C3%BCche/clips"+"?"+strings.SplitN(string(link[1]), "?", 2)[1]); got.status == 200 {
		t.Errorf("a clip's signed link lists the room: %d", got.status)
	}
}

// TestClipDiskFloor: clips share the recordings' floor of free disk space
// (recordings.min_free_bytes): an upload that could take free space below
// it is refused (507 DISK_LOW) before its body is stored, and taken again
// once there is room.
func TestClipDiskFloor(t *testing.T) {
	var mu sync.Mutex
	lim := clips.DefaultLimits()
	lim.MaxBlobBytes = 1_000_000
	const floor = 100_000_000
	free := int64(floor + 500_000) // less than one clip above the floor
	srv := clipServer(t, t.TempDir(), func(string) clips.Limits { return lim }, func(c *server.Config) {
		c.Recordings.MinFreeBytes = floor
		c.Clips.FreeSpace = func(string) (int64, error) { mu.Lock(); defer mu.Unlock(); return free, nil }
	})
	tok := token(t, "disk", "join", "chat")
	clip := clipBytes(t, 1, false)
	if st, out := post(t, srv, "disk", tok, clip); st != http.StatusInsufficientStorage || out["code"] != clips.CodeDiskLow {
		t.Errorf("near the floor: %d %v", st, out)
	}
	var list struct{ Clips []protocol.Clip }
	_ = json.Unmarshal(fetch(t, "GET", srv.URL()+"/api/rooms/disk/clips", bearer(tok)).body, &list)
	if len(list.Clips) != 0 {
		t.Errorf("a refused clip is listed: %+v", list.Clips)
	}
	mu.Lock()
	free = floor + 2*lim.MaxBlobBytes
	mu.Unlock()
	if st, out := post(t, srv, "disk", tok, clip); st != http.StatusCreated {
		t.Errorf("with room above the floor: %d %v", st, out)
	}
}
