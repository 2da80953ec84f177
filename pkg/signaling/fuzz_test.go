package signaling

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/sfu"
)

// fuzzSentinel is the id of the ping that ends each fuzz input's frames.
const fuzzSentinel = -424242

// maxFuzzFrames bounds the frames of one input (well under the rate limit's
// flood threshold, which would end the session).
const maxFuzzFrames = 64

// FuzzSession sends arbitrary frames (the input's lines) on a WebSocket to a
// real hub with rooms and a media engine, as a client would, then a ping.
// The server never panics, answers with JSON messages of known types, and
// answers every request that has an id exactly once with that id (replies
// come in request order, so the ping's reply means every earlier request
// was answered).
func FuzzSession(f *testing.F) {
	rc := room.DefaultConfig()
	rc.IdleTimeout = 20 * time.Millisecond
	reg := room.NewRegistry(rc, nil)
	e, err := sfu.NewEngine(sfu.Config{ListenIP: "127.0.0.1", TCPPort: -1})
	if err != nil {
		f.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.ReconnectGrace = time.Millisecond
	// Every session comes from 127.0.0.1, hundreds a second: no per-address limits.
	cfg.AddressLimits = AddressLimits{}
	h := NewHub(cfg, reg, e, nil)
	srv := httptest.NewServer(h)
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		srv.Close()
		_ = e.Close()
	})
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	for _, seed := range [][]string{
		{`{"type":"connect","id":1,"username":"alice"}`, `{"type":"join","id":2,"room":"r1"}`,
			`{"type":"message","id":3,"text":"hi"}`, `{"type":"leave","id":4}`},
		{`{"type":"connect","id":1,"username":"bob"}`, `{"type":"join","id":2,"room":"r2","subscribe":false,"codecs":["video/VP8"]}`,
			`{"type":"publish","id":3,"kind":"camera","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n"}`,
			`{"type":"unpublish","id":4,"stream":"st-000000000000"}`, `{"type":"restartIce","id":5}`},
		{`{"type":"connect","id":1,"resume":"rt-0123"}`, `{"type":"candidate","target":"subscribe","candidate":null}`,
			`{"type":"answer","id":7,"sdp":"v=0"}`, `not json`, `[1,2]`, `{"id":5}`, `{"type":"bogus","id":6}`},
	} {
		f.Add([]byte(strings.Join(seed, "\n")))
	}
	// Past the burst, a request whose "type" is not a string (its "id" still decodes).
	f.Add([]byte(strings.Repeat(`{"type":"ping"}`+"\n", 45) + `{"id":5,"type":3}`))

	f.Fuzz(func(t *testing.T, input []byte) {
		frames := bytes.Split(input, []byte("\n"))
		if len(frames) > maxFuzzFrames {
			frames = frames[:maxFuzzFrames]
		}
		want := map[int64]int{}
		for _, fr := range frames {
			if len(fr) > cfg.MaxFrameBytes {
				return // other limits; TestRefusedAnswerIsOfferedAgain (pkg/server) covers them
			}
			var env protocol.Envelope
			if json.Unmarshal(fr, &env) == nil && env.ID != nil {
				if *env.ID == fuzzSentinel {
					return
				}
				want[*env.ID]++
			}
		}
		conn, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, fr := range frames {
			if err := conn.WriteMessage(websocket.TextMessage, fr); err != nil {
				t.Fatalf("write: %v", err)
			}
		}
		if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":-424242}`)); err != nil {
			t.Fatalf("write: %v", err)
		}
		got := map[int64]int{}
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				t.Fatalf("the session ended before answering: %v", err)
			}
			var m struct {
				Type string `json:"type"`
				ID   *int64 `json:"id"`
			}
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("the server sent a frame that is not JSON: %q", b)
			}
			switch m.Type {
			case protocol.TypeReply, protocol.TypeError, protocol.TypeSession, protocol.TypeAnswer,
				protocol.TypeEvent, protocol.TypeOffer, protocol.TypeCandidate:
			default:
				t.Fatalf("the server sent a message of type %q: %s", m.Type, b)
			}
			if m.ID == nil {
				continue
			}
			if *m.ID == fuzzSentinel {
				break
			}
			got[*m.ID]++
		}
		for id, n := range want {
			if got[id] != n {
				t.Errorf("request id %d: %d requests, %d answers", id, n, got[id])
			}
		}
		for id, n := range got {
			if want[id] == 0 {
				t.Errorf("%d answers with id %d, which no request had", n, id)
			}
		}
	})
}
