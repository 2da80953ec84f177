// Package servertest starts Parley servers for tests: on loopback, with
// ephemeral ports and short timeouts, shut down when the test ends. Set
// PARLEY_TEST_LOG=1 to see the server's debug log.
package servertest

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/sfu"
	"github.com/parley/parley/pkg/signaling"
)

// Config returns the test configuration: HTTP and media on 127.0.0.1 with
// free ports (UDP mux and ICE-TCP), a 2 s idle timeout and reconnect grace.
func Config() server.Config {
	rooms := room.DefaultConfig()
	rooms.IdleTimeout = 2 * time.Second
	sig := signaling.DefaultConfig()
	sig.ReconnectGrace = 2 * time.Second
	level := slog.LevelWarn
	if os.Getenv("PARLEY_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return server.Config{
		Addr:      "127.0.0.1:0",
		Media:     sfu.Config{ListenIP: "127.0.0.1", UDPPort: 0, TCPPort: -1},
		Rooms:     rooms,
		Signaling: sig,
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
}

// Start serves a server made from Config, adjusted by tweak (may be nil).
func Start(t testing.TB, tweak func(*server.Config)) *server.Server {
	t.Helper()
	cfg := Config()
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return srv
}

// WSURL returns the server's WebSocket URL.
func WSURL(srv *server.Server) string {
	return strings.Replace(srv.URL(), "http", "ws", 1) + "/ws"
}
