package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/protocol"
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, fs *fakeServer, opts Options) *Client {
	t.Helper()
	c, err := Dial(testCtx(t, 5*time.Second), fs.url(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRequestReply(t *testing.T) {
	fs := newFakeServer(t)
	ctx := testCtx(t, 10*time.Second)
	frames := make(chan []byte, 100)
	c := dial(t, fs, Options{Username: "alice", OnFrame: func(f []byte) {
		select {
		case frames <- f:
		default:
		}
	}})
	if f := <-frames; !strings.Contains(string(f), `"type":"session"`) {
		t.Fatalf("first frame %s", f)
	}

	if c.SessionID() != "ses-1" || c.ResumeToken() != "rt-1" || c.Resumed() {
		t.Fatalf("session %q token %q resumed %v", c.SessionID(), c.ResumeToken(), c.Resumed())
	}
	if c.Limits().MaxFrameBytes != 65536 || len(c.ICEServers()) != 0 {
		t.Fatalf("limits %+v", c.Limits())
	}
	if got := fs.connectMsgs(); len(got) != 1 || got[0].Username != "alice" || got[0].ID == nil {
		t.Fatalf("connect messages %+v", got)
	}

	state, err := c.Join(ctx, JoinOptions{Room: "standup"})
	if err != nil {
		t.Fatal(err)
	}
	if state.Event != protocol.EventState || state.Self != "alice" || state.Room != "standup" || len(state.Participants) != 1 {
		t.Fatalf("state %+v", state)
	}
	// The STATE is on Events too.
	ev, err := c.WaitEvent(ctx, func(e protocol.Event) bool { return e.Event == protocol.EventState })
	if err != nil || ev.Self != "alice" {
		t.Fatalf("STATE event %+v %v", ev, err)
	}

	// A refused request returns the server's *protocol.Error.
	_, err = c.Join(ctx, JoinOptions{Room: "standup", Name: "taken"})
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeNameTaken || perr.Request != "join" {
		t.Fatalf("join as taken: %v", err)
	}

	ts, err := c.SendMessage(ctx, "bob", "Привет, 世界 👋 مرحبا")
	if err != nil || ts != 1795835712345 {
		t.Fatalf("message: %d %v", ts, err)
	}
	ev, err = c.WaitEvent(ctx, func(e protocol.Event) bool { return e.Event == protocol.EventMessage })
	if err != nil || ev.Text != "Привет, 世界 👋 مرحبا" || ev.To != "bob" {
		t.Fatalf("message event %+v %v", ev, err)
	}

	// Request with a map and with raw JSON; the id is the client's.
	raw, err := c.Request(ctx, map[string]any{"type": "nonsense"})
	if !errors.As(err, &perr) || perr.Code != protocol.CodeUnknownType {
		t.Fatalf("unknown type: %v", err)
	}
	var e protocol.Error
	if json.Unmarshal(raw, &e) != nil || e.ID == nil {
		t.Fatalf("raw error %s", raw)
	}
	if _, err := c.Request(ctx, []byte(`{"type":"leave","id":99}`)); err != nil {
		t.Fatalf("leave with raw JSON: %v", err)
	}
	if _, err := c.Request(ctx, []byte(`[1]`)); err == nil {
		t.Fatal("a non-object request was sent")
	}

	// Errors without a pending request go to Errors.
	if err := c.Send(map[string]string{"type": "nonsense"}); err != nil {
		t.Fatal(err)
	}
	if err := c.SendRaw([]byte("not json")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{protocol.CodeUnknownType, protocol.CodeBadRequest} {
		select {
		case e := <-c.Errors():
			if e.Code != want || e.ID != nil {
				t.Fatalf("error %+v, want %s", e, want)
			}
		case <-ctx.Done():
			t.Fatalf("no %s error", want)
		}
	}

	// A request whose context ends gives up; its late error goes to Errors.
	hctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Request(hctx, map[string]string{"type": "hang"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hang: %v", err)
	}
	if err := c.Leave(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestEventsAreNotLost(t *testing.T) {
	fs := newFakeServer(t)
	ctx := testCtx(t, 20*time.Second)
	c := dial(t, fs, Options{Username: "alice"})
	const n = 5000 // far more than the channel buffer, none consumed meanwhile
	if _, err := c.Request(ctx, map[string]any{"type": "flood", "count": n}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		ev, err := c.WaitEvent(ctx, nil)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if ev.Text != fmt.Sprint(i) {
			t.Fatalf("event %d is %q", i, ev.Text)
		}
	}
	// WaitEvent skips what does not match.
	if _, err := c.Request(ctx, map[string]any{"type": "flood", "count": 10}); err != nil {
		t.Fatal(err)
	}
	ev, err := c.WaitEvent(ctx, func(e protocol.Event) bool { return e.TS == 7 })
	if err != nil || ev.Text != "7" {
		t.Fatalf("%+v %v", ev, err)
	}
	ev, err = c.WaitEvent(ctx, nil)
	if err != nil || ev.Text != "8" {
		t.Fatalf("after the match: %+v %v", ev, err)
	}
}

func TestServerDisconnect(t *testing.T) {
	fs := newFakeServer(t)
	ctx := testCtx(t, 10*time.Second)
	c := dial(t, fs, Options{Username: "alice"})

	hung := make(chan error, 1)
	go func() {
		_, err := c.Request(ctx, map[string]string{"type": "hang"})
		hung <- err
	}()
	// Let the hanging request reach the server before the one that ends the session.
	time.Sleep(50 * time.Millisecond)
	_, err := c.Request(ctx, map[string]string{"type": "bye"})
	if !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("bye: %v", err)
	}
	var serr *SessionError
	if !errors.As(err, &serr) || serr.Status != protocol.SessionDisconnected {
		t.Fatalf("bye: %v, want the DISCONNECTED session in it", err)
	}
	if err := <-hung; !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("hanging request: %v", err)
	}
	ev, err := c.WaitEvent(ctx, nil)
	if err != nil || ev.Type != protocol.TypeSession || ev.Event != protocol.SessionDisconnected || ev.Reason != "server shutting down" {
		t.Fatalf("final event %+v %v", ev, err)
	}
	if _, ok := <-c.Events(); ok {
		t.Fatal("Events still open")
	}
	if _, ok := <-c.Errors(); ok {
		t.Fatal("Errors still open")
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed")
	}
	if !errors.As(c.Err(), &serr) {
		t.Fatalf("Err() = %v", c.Err())
	}
	if err := c.Send(map[string]string{"type": "leave"}); !errors.Is(err, ErrNoWebSocket) {
		t.Fatalf("send after the end: %v", err)
	}
	if err := c.Reconnect(ctx); !errors.Is(err, ErrSessionEnded) {
		t.Fatalf("reconnect after the end: %v", err)
	}
}

func TestDialFailed(t *testing.T) {
	fs := newFakeServer(t)
	_, err := Dial(testCtx(t, 5*time.Second), fs.url(), Options{Resume: "rt-bad"})
	var serr *SessionError
	if !errors.As(err, &serr) || serr.Status != protocol.SessionFailed || serr.Reason == "" {
		t.Fatalf("dial with a bad token: %v", err)
	}
	if _, err := Dial(testCtx(t, 5*time.Second), "ws://127.0.0.1:1/ws", Options{}); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
}

func TestReconnectWebSocket(t *testing.T) {
	fs := newFakeServer(t)
	ctx := testCtx(t, 10*time.Second)
	c := dial(t, fs, Options{Username: "alice"})

	hung := make(chan error, 1)
	go func() {
		_, err := c.Request(ctx, map[string]string{"type": "hang"})
		hung <- err
	}()
	time.Sleep(50 * time.Millisecond)
	c.CloseWebSocketOnly()
	if err := <-hung; !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("pending request: %v", err)
	}
	if _, err := c.SendMessage(ctx, "", "hi"); !errors.Is(err, ErrNoWebSocket) {
		t.Fatalf("message without WebSocket: %v", err)
	}
	select {
	case <-c.Done():
		t.Fatal("the session ended")
	default:
	}
	if err := c.Reconnect(ctx); err != nil { // no peer connections: only the WebSocket
		t.Fatal(err)
	}
	if !c.Resumed() || c.SessionID() != "ses-2" {
		t.Fatalf("resumed %v session %q", c.Resumed(), c.SessionID())
	}
	msgs := fs.connectMsgs()
	if len(msgs) != 2 || msgs[1].Resume != "rt-1" {
		t.Fatalf("connects %+v", msgs)
	}
	// Events go on.
	if _, err := c.SendMessage(ctx, "", "again"); err != nil {
		t.Fatal(err)
	}
	if ev, err := c.WaitEvent(ctx, func(e protocol.Event) bool { return e.Event == protocol.EventMessage }); err != nil || ev.Text != "again" {
		t.Fatalf("%+v %v", ev, err)
	}
}

func TestWithID(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
	}{
		{&protocol.Leave{Type: "leave"}, `{"id":7,"type":"leave"}`},
		{map[string]any{}, `{"id":7}`},
		{[]byte(` {"type":"x"} `), `{"id":7,"type":"x"}`},
		{json.RawMessage(`{"id":1,"type":"x"}`), `{"id":7,"type":"x"}`},
	} {
		got, err := withID(tc.in, 7)
		if err != nil || string(got) != tc.want {
			t.Errorf("withID(%v) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestRewriteSDP(t *testing.T) {
	c := &Client{opts: Options{ICE: ICEOptions{RewriteRemoteCandidate: func(s string) string {
		if s == "candidate:2 1 udp 1 10.0.0.1 9 typ host" {
			return ""
		}
		return s + " rewritten"
	}}}}
	in := "v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=candidate:2 1 udp 1 10.0.0.1 9 typ host\r\na=end-of-candidates\r\n"
	want := "v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host rewritten\r\na=end-of-candidates\r\n"
	if got := c.rewriteSDP(in); got != want {
		t.Fatalf("got %q", got)
	}
	init, ok := c.remoteCandidate(&protocol.ICECandidate{Candidate: "candidate:1 1 udp 1 127.0.0.1 1 typ host"})
	if !ok || init.Candidate != "candidate:1 1 udp 1 127.0.0.1 1 typ host rewritten" {
		t.Fatalf("%+v %v", init, ok)
	}
	if _, ok := c.remoteCandidate(nil); ok {
		t.Fatal("end of candidates became a candidate")
	}
}

func TestQueue(t *testing.T) {
	q := newQueue[int](2)
	done := make(chan struct{})
	go func() { q.run(); close(done) }()
	for i := range 100 {
		q.push(i)
	}
	q.finish()
	q.push(100) // dropped
	n := 0
	for v := range q.out {
		if v != n {
			t.Fatalf("got %d, want %d", v, n)
		}
		n++
	}
	if n != 100 {
		t.Fatalf("%d items", n)
	}
	<-done

	q = newQueue[int](1)
	done = make(chan struct{})
	go func() { q.run(); close(done) }()
	q.push(1)
	q.push(2)
	q.push(3)
	q.abort()
	<-done
}

// TestReconnectRefused: a resume the server refuses ends the session.
func TestReconnectRefused(t *testing.T) {
	fs := newFakeServer(t)
	ctx := testCtx(t, 10*time.Second)
	c := dial(t, fs, Options{Username: "alice"})
	c.CloseWebSocketOnly()
	fs.mu.Lock()
	fs.parts = map[string]*fakeSession{} // the server forgot the participant
	fs.mu.Unlock()
	var serr *SessionError
	if err := c.Reconnect(ctx); !errors.As(err, &serr) || serr.Status != protocol.SessionFailed {
		t.Fatalf("reconnect: %v", err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the session did not end")
	}
	if _, ok := <-c.Events(); ok {
		t.Fatal("Events still open")
	}
}
