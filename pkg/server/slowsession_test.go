package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley/parley/internal/testlog"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
)

// TestSlowSessionIsClosed: a session that stops reading its WebSocket while
// messages for it keep coming is closed once its bounded outgoing queue is
// full (the server does not hold ever more for it), and the sessions
// sending to it carry on.
func TestSlowSessionIsClosed(t *testing.T) {
	var logs testlog.Buffer
	const queue = 16
	srv := testServer(t, func(c *server.Config) {
		c.Signaling.SendQueue = queue
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})

	slow := rawDial(t, srv)
	slow.expect(`{"type":"connect","id":1,"username":"slow"}`, "")
	slow.expect(`{"type":"join","id":2,"room":"flood","name":"slow"}`, "")
	// From here on the slow session reads nothing.

	// Private messages of the largest size, from several senders at their
	// rate limit, until the kernel's socket buffers towards the slow
	// session are full and its queue overflows.
	const senders = 8
	text := strings.Repeat("x", 4096)
	var sent [senders]int
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var flooders []*client.Client
	for i := range senders {
		name := fmt.Sprintf("f%d", i)
		c := dial(t, srv, client.Options{Username: name})
		join(t, c, "flood", name)
		flooders = append(flooders, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := c.SendMessage(ctx, "slow", text)
				cancel()
				switch code := errCode(err); {
				case err == nil:
					sent[i]++
				case code == protocol.CodeRateLimited:
					time.Sleep(50 * time.Millisecond)
				default:
					// The slow participant's session is gone (its member
					// lingers for the reconnect grace): keep going until told.
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(logs.String(), "cannot keep up") {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("the slow session was not closed in 60 s (%v messages sent to it); server log:\n%s", sent, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	total := 0
	for _, n := range sent {
		total += n
	}
	if !strings.Contains(logs.String(), fmt.Sprintf("queued=%d", queue)) {
		t.Errorf("the close was not for a full queue of %d; server log:\n%s", queue, logs.String())
	}

	// The slow side now reads what its socket holds, then finds the
	// connection closed by the server (not a read that would wait forever).
	// Only the flooders' messages count: the socket also holds the
	// joins and other events of the room.
	got := 0
	var err error
	for {
		_ = slow.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var data []byte
		if _, data, err = slow.conn.ReadMessage(); err != nil {
			break
		}
		var f struct {
			Event string `json:"event"`
		}
		if json.Unmarshal(data, &f) == nil && f.Event == protocol.EventMessage {
			got++
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("after %d messages the slow session's connection is still open: %v", got, err)
	}
	if got >= total {
		t.Errorf("the slow session received all %d messages sent to it: nothing was cut off", total)
	}
	t.Logf("%d private messages sent to the slow session, %d reached it before the server closed it", total, got)

	// The senders' own sessions are fine.
	for _, c := range flooders {
		if _, err := c.SendMessage(ctxT(t, 5*time.Second), "", "still here"); err != nil && errCode(err) != protocol.CodeRateLimited {
			t.Errorf("a sender's session failed after the slow one was closed: %v", err)
		}
	}
}
