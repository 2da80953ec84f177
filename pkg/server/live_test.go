package server_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
)

// liveViewer is a WebSocket viewer of /live, as the viewer page's player.
type liveViewer struct {
	t    *testing.T
	conn *websocket.Conn
}

// watchLive opens /live with a small receive buffer (so a stall reaches the
// server) and sends the watch request.
func watchLive(t *testing.T, srv *server.Server, req map[string]string) *liveViewer {
	t.Helper()
	d := websocket.Dialer{NetDialContext: (&net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
	}}).DialContext}
	conn, _, err := d.Dial(strings.Replace(srv.URL(), "http", "ws", 1)+"/live", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	req["type"] = "watch"
	if err := conn.WriteJSON(req); err != nil {
		t.Fatal(err)
	}
	return &liveViewer{t: t, conn: conn}
}

// liveMsg is one message from /live.
type liveMsg struct {
	text map[string]string
	data []byte
}

func (v *liveViewer) next(timeout time.Duration) (liveMsg, error) {
	_ = v.conn.SetReadDeadline(time.Now().Add(timeout))
	mt, b, err := v.conn.ReadMessage()
	if err != nil {
		return liveMsg{}, err
	}
	if mt == websocket.TextMessage {
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			v.t.Fatalf("text message %q: %v", b, err)
		}
		return liveMsg{text: m}, nil
	}
	return liveMsg{data: b}, nil
}

// clusterStart reads a chunk that starts a cluster: its timecode and whether
// its first block is a keyframe.
func clusterStart(b []byte) (tc int64, key, ok bool) {
	if len(b) < 14 || !bytes.Equal(b[:4], []byte{0x1F, 0x43, 0xB6, 0x75}) || b[12] != 0xE7 {
		return 0, false, false
	}
	n := int(b[13] & 0x7f) // a one-byte size (0x80 | n)
	if len(b) < 14+n+1 {
		return 0, false, false
	}
	var v [8]byte
	copy(v[8-n:], b[14:14+n])
	tc = int64(binary.BigEndian.Uint64(v[:]))
	rest := b[14+n:]
	if len(rest) < 1 || rest[0] != 0xA3 {
		return tc, false, true
	}
	// SimpleBlock: size vint, track vint (one byte), int16 timecode, flags.
	l := 1
	for l < 8 && rest[1]&(0x80>>(l-1)) == 0 {
		l++
	}
	if len(rest) < 1+l+4 {
		return tc, false, true
	}
	return tc, rest[1+l+3]&0x80 != 0, true
}

// TestLiveWebSocketPlays: a viewer of a webinar room over the WebSocket path
// gets the stream's description, a WebM header and clusters that start at a
// keyframe; what it got is a WebM file that ffprobe reads as VP8 and Opus of
// the seconds it watched. A wrong password is refused; a room that is not
// live says so.
func TestLiveWebSocketPlays(t *testing.T) {
	k := hsKey("k1", 'l')
	srv := tokenServer(t, server.AuthToken, []auth.Key{k}, func(c *server.Config) {
		c.Auth.RoomsDir = roomsDir(t, map[string]string{"webinar.yaml": webinarPreset})
	})
	const room = "webinar-live"
	if v := watchLive(t, srv, map[string]string{"room": room}); true {
		m, err := v.next(5 * time.Second)
		if err != nil || m.text["type"] != "error" || m.text["code"] != "NOT_LIVE" {
			t.Fatalf("a room that is not live: %v %v", m.text, err)
		}
	}
	host := dial(t, srv, client.Options{Token: sign(t, k, "host", room, "publish", "subscribe", "chat", "moderate")})
	join(t, host, room, "")
	publishCamera(t, host)
	if v := watchLive(t, srv, map[string]string{"room": "elsewhere"}); true {
		m, err := v.next(5 * time.Second)
		if err != nil || m.text["code"] != protocol.CodeForbidden {
			t.Fatalf("a room without a preset in token mode: %v %v", m.text, err)
		}
	}

	v := watchLive(t, srv, map[string]string{"room": room, "name": "ws-viewer"})
	var file bytes.Buffer
	var mime string
	keyClusters, clusters := 0, 0
	first := true
	deadline := time.Now().Add(20 * time.Second)
	for file.Len() < 64<<10 || clusters < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: %d bytes, %d clusters", file.Len(), clusters)
		}
		m, err := v.next(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case m.text != nil && m.text["type"] == "stream":
			mime = m.text["mime"]
			if m.text["publisher"] != "host" {
				t.Errorf("stream message: %v", m.text)
			}
		case m.text != nil:
			continue // waiting
		case file.Len() == 0:
			if !bytes.HasPrefix(m.data, []byte{0x1A, 0x45, 0xDF, 0xA3}) {
				t.Fatalf("the first binary message is not an EBML header: % x", m.data[:min(8, len(m.data))])
			}
			file.Write(m.data)
		default:
			if _, key, ok := clusterStart(m.data); ok {
				clusters++
				if key {
					keyClusters++
				}
				if first && !key {
					t.Fatal("the first cluster does not start with a keyframe")
				}
			} else if first {
				t.Fatal("the first chunk does not start a cluster")
			}
			first = false
			file.Write(m.data)
		}
	}
	if mime != `video/webm; codecs="vp8,opus"` && mime != `video/webm; codecs="opus,vp8"` {
		t.Errorf("mime %q", mime)
	}
	if keyClusters == 0 {
		t.Error("no cluster starts with a keyframe")
	}
	path := filepath.Join(t.TempDir(), "live.webm")
	if err := os.WriteFile(path, file.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	got := strings.Fields(string(out))
	slices.Sort(got)
	if strings.Join(got, ",") != "opus,vp8" {
		t.Errorf("ffprobe reads streams %v, want vp8 and opus", got)
	}
	// ffmpeg decodes it all without an error.
	if out, err := exec.Command("ffmpeg", "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("ffmpeg decodes the live stream: %v %s", err, out)
	}
}

// healthz reads the server's counts.
func healthz(t *testing.T, srv *server.Server) (sessions, liveViewers int) {
	t.Helper()
	resp, err := http.Get(srv.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct {
		Sessions    int `json:"sessions"`
		LiveViewers int `json:"live_viewers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h.Sessions, h.LiveViewers
}

// TestLiveStalledViewerSkipsToKeyframe: two WebSocket viewers; one stops
// reading for 5 s while the other goes on. The stalled one does not get
// the seconds it missed: when it reads again it soon gets a cluster that
// starts with a keyframe, within 3 s of what the other gets at that moment.
// Then the moderator ends the live: both viewers are told (with no replay:
// nothing was recorded) and released, and so are the webinar's viewers on
// the signaling WebSocket; the server's counts go back to zero.
func TestLiveStalledViewerSkipsToKeyframe(t *testing.T) {
	k := hsKey("k1", 's')
	srv := tokenServer(t, server.AuthToken, []auth.Key{k}, func(c *server.Config) {
		c.Auth.RoomsDir = roomsDir(t, map[string]string{"webinar.yaml": webinarPreset})
	})
	const room = "webinar-stall"
	host := dial(t, srv, client.Options{Token: sign(t, k, "host", room, "publish", "subscribe", "chat", "moderate")})
	join(t, host, room, "")
	publishCamera(t, host)
	rtcViewer := dial(t, srv, client.Options{Username: "rtc"})
	join(t, rtcViewer, room, "rtc")

	steady := watchLive(t, srv, map[string]string{"room": room})
	stalled := watchLive(t, srv, map[string]string{"room": room})
	var edge atomic.Int64 // the newest cluster timecode the steady viewer got
	edge.Store(-1)
	ended := make(chan map[string]string, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			m, err := steady.next(15 * time.Second)
			if err != nil {
				return
			}
			if m.text != nil && m.text["type"] == "ended" {
				ended <- m.text
			}
			if tc, _, ok := clusterStart(m.data); ok {
				edge.Store(tc)
			}
		}
	}()
	// The stalled viewer plays a little first.
	var lastTC int64 = -1
	for lastTC < 0 || edge.Load() < 0 {
		m, err := stalled.next(15 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if tc, _, ok := clusterStart(m.data); ok {
			lastTC = tc
		}
	}
	time.Sleep(5 * time.Second)
	// Reading again: what the socket held comes first, then the next keyframe near the live edge.
	resumed := time.Now()
	for {
		m, err := stalled.next(15 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		tc, key, ok := clusterStart(m.data)
		if !ok {
			continue
		}
		if tc-lastTC > 2000 {
			if !key {
				t.Fatalf("after the stall the stream goes on at %d ms without a keyframe", tc)
			}
			if e := edge.Load(); tc < e-3000 {
				t.Fatalf("after the stall the viewer resumes at %d ms, the live edge is at %d ms", tc, e)
			}
			t.Logf("stalled at %d ms, resumed at a keyframe at %d ms (the other viewer at %d ms), %v after reading again",
				lastTC, tc, edge.Load(), time.Since(resumed).Round(time.Millisecond))
			break
		}
		lastTC = tc
		if time.Since(resumed) > 10*time.Second {
			t.Fatalf("10 s after the stall the viewer is still at %d ms, the live edge at %d ms", tc, edge.Load())
		}
	}

	// The end of the live: everyone told and released.
	if err := host.Moderate(ctxT(t, 5*time.Second), protocol.Moderate{Action: protocol.ActionEnd}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-ended:
		if m["reason"] == "" {
			t.Errorf("ended: %v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the WebSocket viewer was not told the live ended")
	}
	waitEvent(t, rtcViewer, "LIVE_ENDED", func(e protocol.Event) bool { return e.Event == protocol.EventLiveEnded })
	select {
	case <-rtcViewer.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the webinar's viewer's session was not ended")
	}
	for {
		if _, err := stalled.next(10 * time.Second); err != nil {
			break // closed
		}
	}
	wg.Wait()
	_ = host.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sessions, lv := healthz(t, srv)
		if sessions == 0 && lv == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the end: %d sessions, %d live viewers", sessions, lv)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get fetches url (relative to the server) with an optional bearer token.
func get(t *testing.T, srv *server.Server, url, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL()+url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp, b.Bytes()
}

// TestBroadcastReplay: a webinar room whose preset records it always; its
// one presenter publishes, a moderator ends the live. Every viewer gets the
// replay's URL (the WebSocket viewer with ended, the signaling viewer with
// LIVE_ENDED); it plays the presenter's recording at once, without a token
// (its signature), as ffprobe reads it; without credentials it answers
// 401, with an altered signature 403; a token with the record grant for
// the room reads it, one for another room or a viewer's gets 403 (and
// another room's token does not list it); the archive lists the session as a
// broadcast with its replay.
func TestBroadcastReplay(t *testing.T) {
	k := hsKey("k1", 'r')
	srv := tokenServer(t, server.AuthToken, []auth.Key{k}, func(c *server.Config) {
		c.Auth.RoomsDir = roomsDir(t, map[string]string{"webinar.yaml": webinarPreset + "record: always\n"})
		c.RecordsDir = t.TempDir()
	})
	const room = "webinar-replay"
	host := dial(t, srv, client.Options{Token: sign(t, k, "host", room, "publish", "subscribe", "chat", "moderate")})
	if st := join(t, host, room, ""); !st.Recording {
		t.Fatal("the webinar does not record")
	}
	publishCamera(t, host)
	viewer := dial(t, srv, client.Options{Username: "v"})
	join(t, viewer, room, "v")
	ws := watchLive(t, srv, map[string]string{"room": room})
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := ws.next(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := host.Moderate(ctxT(t, 5*time.Second), protocol.Moderate{Action: protocol.ActionEnd}); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, viewer, "LIVE_ENDED", func(e protocol.Event) bool { return e.Event == protocol.EventLiveEnded })
	var ended map[string]string
	for ended == nil {
		m, err := ws.next(10 * time.Second)
		if err != nil {
			t.Fatalf("the WebSocket viewer was not told the live ended: %v", err)
		}
		if m.text != nil && m.text["type"] == "ended" {
			ended = m.text
		}
	}
	replay := ended["replay"]
	if !strings.HasPrefix(replay, "/replay/") || !strings.Contains(replay, "sig=") || !strings.HasPrefix(ev.Replay, "/replay/") {
		t.Fatalf("replay: WebSocket %q, LIVE_ENDED %q", replay, ev.Replay)
	}
	resp, body := get(t, srv, replay, "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "video/webm" {
		t.Fatalf("the replay: %s %s %q", resp.Status, resp.Header.Get("Content-Type"), body[:min(len(body), 200)])
	}
	path := filepath.Join(t.TempDir(), "replay.webm")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, d := probe(t, path); d < 2 {
		t.Errorf("the replay lasts %.2f s", d)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", path).Output()
	if err != nil || !strings.Contains(string(out), "vp8") || !strings.Contains(string(out), "opus") {
		t.Errorf("the replay's streams: %q %v", out, err)
	}
	stable, _, _ := strings.Cut(replay, "?")
	if resp, _ := get(t, srv, stable, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the replay without credentials: %s", resp.Status)
	}
	if resp, _ := get(t, srv, strings.Replace(replay, "sig=", "sig=A", 1), ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("the replay with an altered signature: %s", resp.Status)
	}
	// Tokens: the record grant for the room reads it; for another room, or
	// a viewer's grants for this one, do not.
	for _, c := range []struct {
		who, tok string
		want     int
	}{
		{"the room's recorder", sign(t, k, "rec", room, "record"), http.StatusOK},
		{"another room's recorder", sign(t, k, "rec2", "webinar-other", "record"), http.StatusForbidden},
		{"a viewer", sign(t, k, "v2", room, "subscribe", "chat"), http.StatusForbidden},
	} {
		if resp, _ := get(t, srv, stable, c.tok); resp.StatusCode != c.want {
			t.Errorf("the replay for %s: %s, want %d", c.who, resp.Status, c.want)
		}
	}
	if resp, body := get(t, srv, "/api/recordings", sign(t, k, "rec2", "webinar-other", "record")); resp.StatusCode != http.StatusOK || strings.Contains(string(body), room) {
		t.Errorf("another room's recorder lists: %s %s", resp.Status, body)
	}
	admin := sign(t, k, "admin", "*", "admin")
	resp, body = get(t, srv, "/api/recordings", admin)
	var list []struct {
		Room      string `json:"room"`
		Broadcast bool   `json:"broadcast"`
		Replay    string `json:"replay"`
	}
	if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the list: %s %v", resp.Status, err)
	}
	if len(list) != 1 || list[0].Room != room || !list[0].Broadcast || !strings.HasPrefix(list[0].Replay, stable+"?") {
		t.Fatalf("the list: %+v", list)
	}
	if resp, _ := get(t, srv, list[0].Replay, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("the listed replay: %s", resp.Status)
	}
}
