package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/recorder"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/testmedia"
)

// testKey signs the tests' access tokens.
var testKey = auth.Key{ID: "test-key", Secret: []byte("0123456789abcdef0123456789abcdef-recordings")}

func testVerifier(t *testing.T) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier([]auth.Key{testKey}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// token signs a token for room with grants, valid for an hour.
func token(t *testing.T, room string, grants ...string) string {
	t.Helper()
	tok, err := auth.Sign(testKey, auth.Spec{Identity: "tester", Room: room, Grants: auth.MustParseGrants(grants...), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// answer is an HTTP response, read.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// fetch requests base+path with method and headers ("Name: value").
func fetch(t *testing.T, method, u string, headers ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

func bearer(tok string) string { return "Authorization: Bearer " + tok }

// recFixture is a records directory made by hand: two finished sessions
// (rooms alpha and beta), with what must never be served beside them.
type recFixture struct {
	dir, outside string
	alphaFile    string // alpha's recording, relative to dir
	betaFile     string
	webm         []byte // the recordings' bytes
}

const outsideMarker = "OUTSIDE-THE-RECORDS-DIRECTORY"

func writeManifest(t *testing.T, dir, room, session, file string) {
	t.Helper()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := recorder.Manifest{Version: recorder.ManifestVersion, Room: room, SessionID: session, State: recorder.StateFinished,
		Start: start, End: start.Add(2 * time.Second), DurationMs: 2000, Updated: start,
		Streams: []recorder.StreamEntry{{Participant: "Ann", StreamID: "st-1", Kind: "camera", File: file, Container: "webm",
			Tracks: []recorder.TrackEntry{{Kind: "video", Codec: "video/VP8", ClockRate: 90000, Number: 1}},
			State:  recorder.StreamClosed, DurationMs: 2000}}}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, recorder.ManifestName), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func newRecFixture(t *testing.T) recFixture {
	t.Helper()
	base := t.TempDir()
	f := recFixture{dir: filepath.Join(base, "records"), outside: filepath.Join(base, "outside")}
	ivf, err := testmedia.VP8IVF(media(t), testmedia.Options{})
	if err != nil {
		t.Fatal(err)
	}
	webm := filepath.Join(t.TempDir(), "ann.webm")
	if out, err := exec.Command("ffmpeg", "-v", "error", "-i", ivf, "-t", "2", "-c", "copy", webm).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v %s", err, out)
	}
	if f.webm, err = os.ReadFile(webm); err != nil {
		t.Fatal(err)
	}
	write := func(rel string, data []byte) {
		p := filepath.Join(f.dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeManifest(t, filepath.Join(f.dir, "alpha", "rs-1"), "alpha", "rs-1", "Ann_camera_st-1.webm")
	writeManifest(t, filepath.Join(f.dir, "beta", "rs-2"), "beta", "rs-2", "Ann_camera_st-1.webm")
	f.alphaFile, f.betaFile = "alpha/rs-1/Ann_camera_st-1.webm", "beta/rs-2/Ann_camera_st-1.webm"
	write(f.alphaFile, f.webm)
	write(f.betaFile, f.webm)
	// What must never be served.
	write("alpha/rs-1/.hidden.webm", f.webm)
	write("alpha/rs-1/mix.mp4.log", []byte("# ffmpeg -i "+f.dir+"/alpha/rs-1/Ann_camera_st-1.webm\n"))
	write("alpha/rs-1/mix.mp4.partial", f.webm)
	write(".mixjobs/20260102-job.json", []byte(`{"manifest":"`+f.dir+`/alpha/rs-1/manifest.json"}`))
	write(".hidden-room/rs-3/x.webm", f.webm)
	if err := os.MkdirAll(f.outside, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(f.outside, "secret.webm")
	if err := os.WriteFile(secret, []byte(outsideMarker), 0o644); err != nil {
		t.Fatal(err)
	}
	writeManifest(t, f.outside, "alpha", "linked", "secret.webm")
	for link, target := range map[string]string{
		"alpha/rs-1/out.webm": secret,                                          // a file outside
		"alpha/rs-1/in.webm":  filepath.Join(f.dir, f.alphaFile),               // a file inside, absolute
		"alpha/rs-1/rel.webm": "Ann_camera_st-1.webm",                          // a file inside, relative
		"alpha/linked":        f.outside,                                       // a session directory outside
		"gamma":               "alpha",                                         // a room directory inside, relative
		"alpha/rs-9":          "../beta/rs-2",                                  // a session directory inside, relative
		"delta":               f.outside + "/../outside/../outside/../outside", // a room outside
	} {
		if err := os.Symlink(target, filepath.Join(f.dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// noPaths fails when an answer names a path of the server's file system.
func noPaths(t *testing.T, what string, a answer, f recFixture) {
	t.Helper()
	for _, p := range []string{f.dir, f.outside, filepath.Dir(f.dir), os.TempDir() + "/", outsideMarker} {
		if bytes.Contains(a.body, []byte(p)) {
			t.Errorf("%s: the answer contains %q:\n%.300s", what, p, a.body)
		}
	}
}

func listing(t *testing.T, a answer) []map[string]any {
	t.Helper()
	var l []map[string]any
	if err := json.Unmarshal(a.body, &l); err != nil {
		t.Fatalf("listing: %v: %s", err, a.body)
	}
	return l
}

func paths(l []map[string]any) string {
	var out []string
	for _, r := range l {
		out = append(out, fmt.Sprint(r["path"]))
	}
	return strings.Join(out, ",")
}

// TestRecordingsArchiveIsPrivate: without credentials nothing of the
// recordings is answered (401); a token without the grant, or for another
// room, gets 403; admin and record tokens get their rooms' sessions, with
// signed file URLs that work without the token until they expire. No
// listing, dotfile, symbolic link, manifest, mix job or ffmpeg log is ever
// served, and no answer names a server path. HTTP ranges work.
func TestRecordingsArchiveIsPrivate(t *testing.T) {
	f := newRecFixture(t)
	signer := auth.NewURLSigner([]byte("url-secret-url-secret-url-secret"))
	srv := testServer(t, func(c *server.Config) {
		c.RecordsDir = f.dir
		c.Auth = server.AuthConfig{Mode: server.AuthOpen, Tokens: testVerifier(t), URLs: signer}
		c.Recordings.URLTTL = 2 * time.Second
	})
	base := srv.URL()
	admin, recAlpha, recGlob := token(t, "", "admin"), token(t, "alpha", "record"), token(t, "al*", "record")
	recBeta, joinOnly := token(t, "beta", "record"), token(t, "alpha", "join", "publish", "subscribe", "chat")
	check := func(what string, a answer, want int) answer {
		t.Helper()
		if a.status != want {
			t.Errorf("%s: %d, want %d: %.200s", what, a.status, want, a.body)
		}
		noPaths(t, what, a, f)
		return a
	}

	// No credentials: 401 for everything, directory or not, existing or not.
	for _, p := range []string{"/api/recordings", "/api/recordings/alpha/rs-1", "/records/" + f.alphaFile, "/records/",
		"/records/alpha/", "/records/.mixjobs/20260102-job.json", "/records/nope/nope/x.webm"} {
		a := check("no credentials: GET "+p, fetch(t, "GET", base+p), http.StatusUnauthorized)
		if !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") || bytes.Contains(a.body, []byte("Ann")) ||
			a.header.Get("Cache-Control") != "no-store" || a.header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: challenge %q, cache %q, referrer policy %q, body %q", p, a.header.Get("WWW-Authenticate"),
				a.header.Get("Cache-Control"), a.header.Get("Referrer-Policy"), a.body)
		}
	}
	// Bad tokens: 401 with invalid_token.
	expired, err := auth.Sign(testKey, auth.Spec{Identity: "x", Grants: auth.MustParseGrants("admin"), TTL: time.Hour,
		Now: time.Now().Add(-2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := auth.Sign(auth.Key{ID: testKey.ID, Secret: []byte("another-secret-another-secret-another")},
		auth.Spec{Identity: "x", Grants: auth.MustParseGrants("admin"), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"expired": expired, "forged": forged, "garbage": "not.a.token"} {
		a := check(name+" token", fetch(t, "GET", base+"/api/recordings", bearer(tok)), http.StatusUnauthorized)
		if !strings.Contains(a.header.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("%s token: challenge %q", name, a.header.Get("WWW-Authenticate"))
		}
	}

	// Tokens that do not cover it: 403.
	check("join-only token lists", fetch(t, "GET", base+"/api/recordings", bearer(joinOnly)), http.StatusForbidden)
	check("join-only token reads a file", fetch(t, "GET", base+"/records/"+f.alphaFile, bearer(joinOnly)), http.StatusForbidden)
	check("beta's token reads alpha's file", fetch(t, "GET", base+"/records/"+f.alphaFile, bearer(recBeta)), http.StatusForbidden)
	check("beta's token reads alpha's session", fetch(t, "GET", base+"/api/recordings/alpha/rs-1", bearer(recBeta)), http.StatusForbidden)
	check("alpha's token asks for a session that does not exist", fetch(t, "GET", base+"/api/recordings/alpha/nope", bearer(recAlpha)),
		http.StatusForbidden)

	// Admin: every real session; the symbolically linked ones are not there.
	l := listing(t, check("admin lists", fetch(t, "GET", base+"/api/recordings", bearer(admin)), http.StatusOK))
	if got := paths(l); got != "alpha/rs-1,beta/rs-2" && got != "beta/rs-2,alpha/rs-1" {
		t.Errorf("admin's list: %s, want alpha/rs-1 and beta/rs-2", got)
	}
	// A record token: its room only (an exact name or a glob); the token may
	// come as access_token.
	for name, tok := range map[string]string{"alpha": recAlpha, "al*": recGlob} {
		l := listing(t, check(name+" lists", fetch(t, "GET", base+"/api/recordings?access_token="+tok), http.StatusOK))
		if got := paths(l); got != "alpha/rs-1" {
			t.Errorf("the list for a record token for %s: %s, want alpha/rs-1", name, got)
		}
	}
	check("alpha's token reads its file", fetch(t, "GET", base+"/records/"+f.alphaFile+"?access_token="+recAlpha), http.StatusOK)

	// The file, whole and in ranges, by header token; HEAD; no other method.
	a := check("admin reads a file", fetch(t, "GET", base+"/records/"+f.alphaFile, bearer(admin)), http.StatusOK)
	if !bytes.Equal(a.body, f.webm) || a.header.Get("Content-Type") != "video/webm" || a.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("file: %d bytes (want %d), type %q, nosniff %q", len(a.body), len(f.webm), a.header.Get("Content-Type"),
			a.header.Get("X-Content-Type-Options"))
	}
	a = check("a range", fetch(t, "GET", base+"/records/"+f.alphaFile, bearer(admin), "Range: bytes=100-299"), http.StatusPartialContent)
	if want := fmt.Sprintf("bytes 100-299/%d", len(f.webm)); a.header.Get("Content-Range") != want || !bytes.Equal(a.body, f.webm[100:300]) {
		t.Errorf("range: %q (want %q), %d bytes", a.header.Get("Content-Range"), want, len(a.body))
	}
	a = check("HEAD", fetch(t, "HEAD", base+"/records/"+f.alphaFile, bearer(admin)), http.StatusOK)
	if a.header.Get("Content-Length") != fmt.Sprint(len(f.webm)) || a.header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("HEAD: length %q, accept-ranges %q", a.header.Get("Content-Length"), a.header.Get("Accept-Ranges"))
	}
	check("POST", fetch(t, "POST", base+"/records/"+f.alphaFile, bearer(admin)), http.StatusMethodNotAllowed)

	// Never served, whoever asks: listings, dotfiles, manifests, the mix
	// queue, logs, partial mixes, symbolic links (in or out), escapes.
	for _, p := range []string{"/records/", "/records/alpha/", "/records/alpha/rs-1/", "/records/alpha/rs-1",
		"/records/alpha/rs-1/.hidden.webm", "/records/.hidden-room/rs-3/x.webm", "/records/.mixjobs/20260102-job.json",
		"/records/alpha/rs-1/manifest.json", "/records/alpha/rs-1/mix.mp4.log", "/records/alpha/rs-1/mix.mp4.partial",
		"/records/alpha/rs-1/out.webm", "/records/alpha/rs-1/in.webm", "/records/alpha/rs-1/rel.webm",
		"/records/alpha/linked/secret.webm", "/records/gamma/rs-1/Ann_camera_st-1.webm", "/records/alpha/rs-9/Ann_camera_st-1.webm",
		"/records/delta/secret.webm", "/records/alpha/rs-1/..%2f..%2f..%2foutside%2fsecret.webm",
		"/records/alpha/%2e%2e/%2e%2e/outside/secret.webm", "/records/alpha/rs-1/Ann_camera_st-1.webm%00.webm",
	} {
		a := fetch(t, "GET", base+p, bearer(admin))
		if a.status == http.StatusOK || a.status == http.StatusPartialContent || bytes.Contains(a.body, []byte("Ann_camera")) {
			t.Errorf("admin GET %s: %d: %.200q", p, a.status, a.body)
		}
		noPaths(t, "GET "+p, a, f)
	}
	check("the symbolic link's session", fetch(t, "GET", base+"/api/recordings/alpha/linked", bearer(admin)), http.StatusNotFound)
	check("a dotfile's session", fetch(t, "GET", base+"/api/recordings/.hidden-room/rs-3", bearer(admin)), http.StatusNotFound)

	// Signed URLs from the list: they open their file without a token, not
	// another one, not with a changed signature, and not once expired.
	l = listing(t, fetch(t, "GET", base+"/api/recordings?access_token="+recAlpha))
	streams := l[0]["streams"].([]any)
	signed := streams[0].(map[string]any)["url"].(string)
	u, err := url.Parse(signed)
	if err != nil || u.Path != "/records/"+f.alphaFile || u.Query().Get("sig") == "" {
		t.Fatalf("signed URL %q", signed)
	}
	a = check("a signed URL", fetch(t, "GET", base+signed), http.StatusOK)
	if !bytes.Equal(a.body, f.webm) {
		t.Errorf("the signed URL gave %d bytes", len(a.body))
	}
	check("a signed URL, a range", fetch(t, "GET", base+signed, "Range: bytes=0-9"), http.StatusPartialContent)
	check("a signed URL on another file", fetch(t, "GET", base+"/records/"+f.betaFile+"?"+u.RawQuery), http.StatusForbidden)
	q := u.Query()
	q.Set("sig", strings.Repeat("A", len(q.Get("sig"))))
	check("a forged signature", fetch(t, "GET", base+u.Path+"?"+q.Encode()), http.StatusForbidden)
	check("a signed URL for the list", fetch(t, "GET", base+"/api/recordings?"+u.RawQuery), http.StatusForbidden)

	// A participant's link signs one session: its page data and files, no other.
	link := signer.Sign("/records/alpha/rs-1/", time.Now().Add(time.Hour))
	a = check("a session link: its session", fetch(t, "GET", base+"/api/recordings/alpha/rs-1?"+link), http.StatusOK)
	var one map[string]any
	if err := json.Unmarshal(a.body, &one); err != nil || one["room"] != "alpha" {
		t.Fatalf("the session link's answer: %v %s", err, a.body)
	}
	fileURL := one["streams"].([]any)[0].(map[string]any)["url"].(string)
	check("a session link: its file", fetch(t, "GET", base+fileURL), http.StatusOK)
	check("a session link: another session", fetch(t, "GET", base+"/api/recordings/beta/rs-2?"+link), http.StatusForbidden)
	check("a session link: another session's file", fetch(t, "GET", base+"/records/"+f.betaFile+"?"+link), http.StatusForbidden)

	// The signed URL expires (URLTTL 2 s).
	deadline := time.Now().Add(10 * time.Second)
	for {
		a = fetch(t, "GET", base+signed)
		if a.status != http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	check("the signed URL, expired", a, http.StatusForbidden)
	if !bytes.Contains(a.body, []byte("expired")) {
		t.Errorf("the expired URL's answer: %q", a.body)
	}
}

// TestRecordingsPublicArchive: an operator who says recordings: public gets
// the list and the files without credentials, and still no listing,
// dotfile, symbolic link or log.
func TestRecordingsPublicArchive(t *testing.T) {
	f := newRecFixture(t)
	srv := testServer(t, func(c *server.Config) {
		c.RecordsDir = f.dir
		c.Recordings.Public = true
	})
	base := srv.URL()
	l := listing(t, fetch(t, "GET", base+"/api/recordings"))
	if got := paths(l); got != "alpha/rs-1,beta/rs-2" && got != "beta/rs-2,alpha/rs-1" {
		t.Errorf("public list: %s", got)
	}
	fileURL := l[0]["streams"].([]any)[0].(map[string]any)["url"].(string)
	if a := fetch(t, "GET", base+fileURL); a.status != http.StatusOK || !bytes.Equal(a.body, f.webm) {
		t.Errorf("public file %s: %d, %d bytes", fileURL, a.status, len(a.body))
	}
	for _, p := range []string{"/records/", "/records/alpha/rs-1/", "/records/alpha/rs-1/.hidden.webm", "/records/alpha/rs-1/out.webm",
		"/records/alpha/rs-1/in.webm", "/records/.mixjobs/20260102-job.json", "/records/alpha/rs-1/mix.mp4.log",
		"/records/alpha/linked/secret.webm"} {
		a := fetch(t, "GET", base+p)
		if a.status != http.StatusNotFound {
			t.Errorf("public GET %s: %d, want 404", p, a.status)
		}
		noPaths(t, "public GET "+p, a, f)
	}
}
