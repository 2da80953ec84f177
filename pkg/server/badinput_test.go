package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
	"go.uber.org/goleak"
)

// raw is a bare WebSocket to the server, for input no well-behaved client sends.
type raw struct {
	t    *testing.T
	conn *websocket.Conn
}

func rawDial(t *testing.T, srv *server.Server) *raw {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &raw{t: t, conn: conn}
}

func (r *raw) send(s string) {
	r.t.Helper()
	if err := r.conn.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// next returns the next message that is not an event.
func (r *raw) next() map[string]any {
	r.t.Helper()
	for {
		_ = r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := r.conn.ReadMessage()
		if err != nil {
			r.t.Fatalf("read: %v", err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			r.t.Fatalf("server sent non-JSON %q", b)
		}
		if m["type"] != protocol.TypeEvent {
			return m
		}
	}
}

// expect sends a request and checks the error code of the answer ("" for success).
func (r *raw) expect(req, code string) map[string]any {
	r.t.Helper()
	r.send(req)
	m := r.next()
	got, _ := m["code"].(string)
	if got != code {
		r.t.Errorf("%.60s… → %v, want code %q", req, m, code)
	}
	if code != "" && (m["reason"] == nil || m["reason"] == "") {
		r.t.Errorf("%.60s… → error without a reason: %v", req, m)
	}
	return m
}

const unsupportedOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 100\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\n" +
	"a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
	"a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n" +
	"a=setup:actpass\r\na=rtpmap:100 H265/90000\r\n"

func TestBadInput(t *testing.T) {
	before := goleak.IgnoreCurrent()
	srv := testServer(t, func(c *server.Config) {
		c.Rooms.MaxParticipants = 2
		c.Signaling.MessagesPerSecond = 20
		c.Signaling.Burst = 20
	})
	// A well-behaved pair in another room, who must be served throughout.
	good1 := dial(t, srv, client.Options{Username: "g1"})
	good2 := dial(t, srv, client.Options{Username: "g2"})
	join(t, good1, "calm", "g1")
	join(t, good2, "calm", "g2")

	r := rawDial(t, srv)
	r.expect(`{"type":"ping","id":0}`, "")
	r.expect(`{"type":"join","id":1,"room":"r","name":"x"}`, protocol.CodeNotConnected)
	r.expect(`not json at all`, protocol.CodeBadRequest)
	r.expect(`[1,2,3]`, protocol.CodeBadRequest)
	r.expect(`{"id":2}`, protocol.CodeBadRequest)
	if m := r.expect(`{"type":"connect","id":3,"username":"x"}`, ""); m["status"] != protocol.SessionEstablished {
		t.Fatalf("connect: %v", m)
	}
	r.expect(`{"type":"connect","id":4}`, protocol.CodeAlreadyConnected)
	r.expect(`{"type":"bogus","id":5}`, protocol.CodeUnknownType)
	r.expect(`{"type":"join","id":6,"room":5}`, protocol.CodeBadRequest)
	r.expect(`{"type":"publish","id":7,"sdp":"x"}`, protocol.CodeNotJoined)
	r.expect(`{"type":"join","id":8,"room":"a/b","name":"x"}`, protocol.CodeInvalidRoom)
	r.expect(`{"type":"join","id":9,"room":"r","name":"<img src=x onerror=alert(1)>"}`, protocol.CodeInvalidName)
	r.expect(`{"type":"join","id":10,"room":"r","name":"`+strings.Repeat("n", 65)+`"}`, protocol.CodeInvalidName)

	// A frame over the limit gets TOO_LARGE, and the session goes on.
	big := `{"type":"message","id":11,"text":"` + strings.Repeat("x", 100<<10) + `"}`
	r.expect(big, protocol.CodeTooLarge)
	r.expect(`{"type":"join","id":12,"room":"r","name":"x"}`, "")
	r.expect(`{"type":"publish","id":13,"sdp":"this is not SDP"}`, protocol.CodeInvalidSDP)
	r.expect(`{"type":"publish","id":14,"sdp":`+jsonString(unsupportedOffer)+`}`, protocol.CodeUnsupportedCodec)
	r.expect(`{"type":"publish","id":15,"kind":"hologram","sdp":"v=0"}`, protocol.CodeBadRequest)
	r.expect(`{"type":"unpublish","id":16,"stream":"st-nope"}`, protocol.CodeUnknownStream)
	r.expect(`{"type":"answer","id":17,"sdp":"v=0"}`, protocol.CodeInvalidSDP)
	r.expect(`{"type":"candidate","id":18,"target":"sideways","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}}`, protocol.CodeBadRequest)
	r.expect(`{"type":"message","id":19,"to":"ghost","text":"hi"}`, protocol.CodeUnknownParticipant)

	// The room holds two: a third is refused.
	r2 := rawDial(t, srv)
	r2.expect(`{"type":"connect","id":1}`, "")
	r2.expect(`{"type":"join","id":2,"room":"r","name":"y"}`, "")
	r3 := rawDial(t, srv)
	r3.expect(`{"type":"connect","id":1}`, "")
	r3.expect(`{"type":"join","id":2,"room":"r","name":"z"}`, protocol.CodeRoomFull)

	// A flood: requests past the rate get RATE_LIMITED; the others keep chatting.
	// Wait for the bucket to fill again first.
	time.Sleep(1500 * time.Millisecond)
	for i := 0; i < 100; i++ {
		r3.send(`{"type":"message","id":` + itoa(100+i) + `,"text":"flood"}`)
	}
	limited := 0
	for i := 0; i < 100; i++ {
		if m := r3.next(); m["code"] == protocol.CodeRateLimited {
			limited++
		}
	}
	if limited < 50 {
		t.Errorf("%d of 100 flooded requests were rate limited, want most of them", limited)
	}
	if _, err := good1.SendMessage(ctxT(t, 5*time.Second), "", "still fine"); err != nil {
		t.Errorf("a calm session could not chat during the flood: %v", err)
	}
	waitEvent(t, good2, "calm message", isEvent(protocol.EventMessage, "g1"))

	// A frame over the hard cap closes that session only.
	huge := `{"type":"message","text":"` + strings.Repeat("y", 2<<20) + `"}`
	_ = r2.conn.WriteMessage(websocket.TextMessage, []byte(huge))
	_ = r2.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := r2.conn.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) && !strings.Contains(err.Error(), "reset") &&
				!strings.Contains(err.Error(), "broken pipe") {
				t.Logf("hard-cap close: %v", err)
			}
			break
		}
	}
	if _, err := good1.SendMessage(ctxT(t, 5*time.Second), "", "after the huge frame"); err != nil {
		t.Errorf("the server stopped serving after a huge frame: %v", err)
	}

	// Once every session ends and the server stops, no goroutine is left.
	for _, c := range []*client.Client{good1, good2} {
		_ = c.Close()
	}
	for _, x := range []*raw{r, r2, r3} {
		_ = x.conn.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, before)
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func TestHealthAndMetrics(t *testing.T) {
	srv := testServer(t, nil)
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "h", "a")
	resp, err := http.Get(srv.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Status       string `json:"status"`
		Rooms        int    `json:"rooms"`
		Participants int    `json:"participants"`
		Sessions     int    `json:"sessions"`
	}
	err = json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if err != nil || h.Status != "ok" || h.Rooms != 1 || h.Participants != 1 || h.Sessions != 1 {
		t.Errorf("/healthz: %+v, %v; want ok with 1 room, 1 participant, 1 session", h, err)
	}
	resp, err = http.Get(srv.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"parley_participants 1", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
