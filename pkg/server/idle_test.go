package server_test

import (
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/server"
)

// TestIdleFinalize: with a short idle timeout the room finalizes after the
// last participant goes; a join inside the window keeps the same room session,
// and a join after finalize starts a new one.
func TestIdleFinalize(t *testing.T) {
	const idle = 800 * time.Millisecond
	srv := testServer(t, func(c *server.Config) { c.Rooms.IdleTimeout = idle })
	finalized := make(chan room.Finalized, 4)
	srv.Rooms().OnFinalize(func(f room.Finalized) { finalized <- f })

	a := dial(t, srv, client.Options{Username: "a"})
	first := join(t, a, "idle", "a").RoomSession
	if err := a.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(idle / 3)
	b := dial(t, srv, client.Options{Username: "b"})
	if again := join(t, b, "idle", "b").RoomSession; again != first {
		t.Fatalf("a join inside the idle window got room session %s, want %s", again, first)
	}
	select {
	case f := <-finalized:
		t.Fatalf("the room finalized while b was in it: %+v", f)
	case <-time.After(2 * idle):
	}
	if err := b.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-finalized:
		if f.Session != first || len(f.Participants) != 2 {
			t.Errorf("finalized %+v, want session %s with a and b", f, first)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the room did not finalize after the idle timeout")
	}
	c := dial(t, srv, client.Options{Username: "c"})
	if next := join(t, c, "idle", "c").RoomSession; next == first || next == "" {
		t.Errorf("a join after finalize got room session %q, want a new one", next)
	}
}
