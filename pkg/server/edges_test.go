package server_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/signaling"
)

// wsDial opens a bare WebSocket with the given Origin (empty: none) from
// the local address from (empty: any), and returns the HTTP status.
func wsDial(t *testing.T, srv *server.Server, origin, from string) (*websocket.Conn, int, string) {
	t.Helper()
	d := *websocket.DefaultDialer
	if from != "" {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		d.NetDialContext = nd.DialContext
	}
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	conn, resp, err := d.Dial(wsURL(srv), h)
	status, body := 0, ""
	if resp != nil {
		status = resp.StatusCode
		if resp.Body != nil {
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
			_ = resp.Body.Close()
		}
	}
	if err == nil {
		t.Cleanup(func() { _ = conn.Close() })
	}
	return conn, status, body
}

// A WebSocket from a page of another origin is refused with 403, unless the
// origin is configured; the server's own origin and clients without an Origin
// (not browsers) are let in. Refusals are counted.
func TestWebSocketOrigin(t *testing.T) {
	srv := testServer(t, func(c *server.Config) {
		c.Signaling.AllowedOrigins = []string{"https://meet.example.com"}
	})
	for _, tc := range []struct {
		origin string
		want   int
	}{
		{"", http.StatusSwitchingProtocols},
		{srv.URL(), http.StatusSwitchingProtocols}, // same origin
		{"https://meet.example.com", http.StatusSwitchingProtocols},
		{"https://evil.example", http.StatusForbidden},
		{"null", http.StatusForbidden},
		{"http://127.0.0.1:1", http.StatusForbidden}, // same host, another port
	} {
		_, status, body := wsDial(t, srv, tc.origin, "")
		if status != tc.want {
			t.Errorf("Origin %q: HTTP %d, want %d (%s)", tc.origin, status, tc.want, body)
		}
		if status == http.StatusForbidden && !strings.Contains(body, "allowed_origins") {
			t.Errorf("Origin %q: the refusal does not say what to set: %q", tc.origin, body)
		}
	}
	if v := scrape(t, srv.URL(), `parley_refused_total{limit="origin"}`); v != 3 {
		t.Errorf(`parley_refused_total{limit="origin"} = %v, want 3`, v)
	}
	// The Go client sends no Origin: it connects and joins.
	c := dial(t, srv, client.Options{Username: "bot"})
	join(t, c, "r", "bot")
}

// refusal dials with the Go client and returns the session's refusal.
func refusal(t *testing.T, srv *server.Server, opts client.Options) *client.SessionError {
	t.Helper()
	c, err := client.Dial(ctxT(t, 5*time.Second), wsURL(srv), opts)
	if err == nil {
		_ = c.Close()
		return nil
	}
	var se *client.SessionError
	if !errors.As(err, &se) {
		t.Fatalf("dial failed without a session refusal: %v", err)
	}
	return se
}

// fromAddr makes the Go client connect from a local address of 127.0.0.0/8.
func fromAddr(ip string) *websocket.Dialer {
	d := *websocket.DefaultDialer
	nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	d.NetDialContext = nd.DialContext
	return &d
}

// One address may have so many sessions open at once; the next gets
// TOO_MANY_SESSIONS with a reason (and the page its reason), other addresses
// are not affected, and a closed session makes room.
func TestSessionsPerAddressLimit(t *testing.T) {
	srv := testServer(t, func(c *server.Config) {
		c.Signaling.AddressLimits = signaling.AddressLimits{MaxSessions: 3}
	})
	var open []*client.Client
	for i := 0; i < 3; i++ {
		open = append(open, dial(t, srv, client.Options{Username: "u"}))
	}
	se := refusal(t, srv, client.Options{Username: "u"})
	if se == nil || se.Code != protocol.CodeTooManySessions || !strings.Contains(se.Reason, "127.0.0.1") ||
		!strings.Contains(se.Reason, "max_sessions_per_address") {
		t.Fatalf("fourth session: %+v, want TOO_MANY_SESSIONS naming the address and the setting", se)
	}
	// Another address is not affected.
	other := dial(t, srv, client.Options{Username: "v", Dialer: fromAddr("127.0.0.2")})
	join(t, other, "r", "v")
	if v := scrape(t, srv.URL(), `parley_refused_total{limit="sessions_per_address"}`); v != 1 {
		t.Errorf(`parley_refused_total{limit="sessions_per_address"} = %v, want 1`, v)
	}
	// The refused sessions did not count: closing one open session makes room for exactly one.
	_ = open[0].Close()
	eventually(t, 5*time.Second, "a session slot to free up", func() bool {
		c, err := client.Dial(ctxT(t, 5*time.Second), wsURL(srv), client.Options{Username: "u"})
		if err != nil {
			return false
		}
		t.Cleanup(func() { _ = c.Close() })
		return true
	})
	if se := refusal(t, srv, client.Options{Username: "u"}); se == nil || se.Code != protocol.CodeTooManySessions {
		t.Fatalf("session over the limit again: %+v", se)
	}
}

// A burst of new sessions from one address over the rate gets RATE_LIMITED.
func TestNewSessionsPerAddressRate(t *testing.T) {
	srv := testServer(t, func(c *server.Config) {
		c.Signaling.AddressLimits = signaling.AddressLimits{SessionsPerSecond: 0.01, SessionBurst: 4}
	})
	for i := 0; i < 4; i++ {
		c := dial(t, srv, client.Options{Username: "u"})
		_ = c.Close()
	}
	se := refusal(t, srv, client.Options{Username: "u"})
	if se == nil || se.Code != protocol.CodeRateLimited || !strings.Contains(se.Reason, "new sessions per second") {
		t.Fatalf("fifth session in a burst of four: %+v, want RATE_LIMITED", se)
	}
	if v := scrape(t, srv.URL(), `parley_refused_total{limit="session_rate"}`); v != 1 {
		t.Errorf(`parley_refused_total{limit="session_rate"} = %v, want 1`, v)
	}
	dial(t, srv, client.Options{Username: "w", Dialer: fromAddr("127.0.0.3")})
}

// One address creates so many rooms per minute; joining rooms that exist is
// not limited, and a join that fails does not use the allowance.
func TestRoomsPerAddressLimit(t *testing.T) {
	srv := testServer(t, func(c *server.Config) {
		c.Signaling.AddressLimits = signaling.AddressLimits{RoomsPerMinute: 2}
	})
	c := dial(t, srv, client.Options{Username: "u"})
	if _, err := c.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "bad room!", Name: "u"}); errCode(err) != protocol.CodeInvalidRoom {
		t.Fatalf("invalid room: %v", err)
	}
	join(t, c, "one", "u")
	join(t, c, "two", "u")
	_, err := c.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "three", Name: "u"})
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeRateLimited || !strings.Contains(pe.Reason, "rooms created per minute") {
		t.Fatalf("third room in a minute: %v, want RATE_LIMITED", err)
	}
	// Rooms that exist can still be joined, from the same address.
	d := dial(t, srv, client.Options{Username: "d"})
	join(t, d, "two", "d")
	if v := scrape(t, srv.URL(), `parley_refused_total{limit="room_rate"}`); v != 1 {
		t.Errorf(`parley_refused_total{limit="room_rate"} = %v, want 1`, v)
	}
	// Another address creates its own.
	e := dial(t, srv, client.Options{Username: "e", Dialer: fromAddr("127.0.0.4")})
	join(t, e, "four", "e")
}

// With --metrics-addr, /metrics is served on its own listener and not on the
// public one.
func TestMetricsOnTheirOwnListener(t *testing.T) {
	srv := testServer(t, func(c *server.Config) { c.MetricsAddr = "127.0.0.1:0" })
	if srv.MetricsAddr() == nil {
		t.Fatal("no metrics listener")
	}
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(srv.URL() + "/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the public listener: HTTP %d, want 404", code)
	}
	code, body := get("http://" + srv.MetricsAddr().String() + "/metrics")
	if code != http.StatusOK || !strings.Contains(body, "parley_sessions") || !strings.Contains(body, "parley_refused_total") {
		t.Errorf("/metrics on the metrics listener: HTTP %d %.200q", code, body)
	}
	if code, _ := get("http://" + srv.MetricsAddr().String() + "/healthz"); code != http.StatusNotFound {
		t.Errorf("the metrics listener serves more than /metrics: /healthz %d", code)
	}
}

// The HTTP server drops a client that sends its headers too slowly and a
// keep-alive connection left idle, while a WebSocket session outlives every
// timeout.
func TestHTTPTimeouts(t *testing.T) {
	srv := testServer(t, func(c *server.Config) {
		c.HTTPTimeouts = server.HTTPTimeouts{ReadHeader: 300 * time.Millisecond, Read: 500 * time.Millisecond, Idle: 500 * time.Millisecond}
	})
	closedByServer := func(conn net.Conn) bool {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, conn)
		return err == nil // EOF: the server closed it
	}

	slow, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil { // never finished
		t.Fatal(err)
	}
	if !closedByServer(slow) {
		t.Error("a request whose headers never end was not dropped")
	}

	idle, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	_ = resp.Body.Close()
	if !closedByServer(idle) {
		t.Error("an idle keep-alive connection was not closed")
	}

	// A session, idle but for the server's pings, lives well past every timeout.
	c := dial(t, srv, client.Options{Username: "long"})
	join(t, c, "r", "long")
	time.Sleep(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.SendMessage(ctx, "", "still here"); err != nil {
		t.Fatalf("the session did not outlive the HTTP timeouts: %v", err)
	}
}
