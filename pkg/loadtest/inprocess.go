package loadtest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/sfu"
	"github.com/parley/parley/pkg/signaling"
)

// StartServer starts a Parley server in this process, on 127.0.0.1 with free
// ports (UDP mux, no ICE-TCP) and no participant limit, for a load run that
// profiles the whole process (cmd/loadtest --inprocess-server). It returns the
// server's WebSocket URL; stop shuts it down. Every simulated client comes
// from 127.0.0.1, so the per-address limits are off.
func StartServer(log *slog.Logger) (wsURL string, stop func(context.Context) error, err error) {
	rooms := room.DefaultConfig()
	rooms.MaxParticipants = 0
	sig := signaling.DefaultConfig()
	sig.AddressLimits = signaling.AddressLimits{}
	cfg := server.Config{
		Addr:      "127.0.0.1:0",
		Media:     sfu.Config{ListenIP: "127.0.0.1", UDPPort: 0, TCPPort: 0},
		Rooms:     rooms,
		Signaling: sig,
		Logger:    log,
	}
	srv, err := server.New(cfg)
	if err != nil {
		return "", nil, fmt.Errorf("in-process server: %w", err)
	}
	srv.Serve()
	return strings.Replace(srv.URL(), "http", "ws", 1) + "/ws", srv.Shutdown, nil
}
