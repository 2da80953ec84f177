// Command sfu runs Parley: the conference web app, WebSocket signaling and the
// selective forwarding unit, in one process.
//
//	sfu                      # a conference at http://127.0.0.1:7880/
//	sfu token create --room standup --identity alice --grants publish,subscribe,chat
//	sfu --config configs/sfu.yaml --public-ip 203.0.113.7 --addr 0.0.0.0:443 --tls-cert c.pem --tls-key k.pem
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/mixer"
	"github.com/parley/parley/pkg/procs"
	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/sfu"
	"github.com/parley/parley/pkg/signaling"
	"github.com/parley/parley/pkg/turnserver"
	"github.com/parley/parley/webapp"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// defaultGCPercent is the garbage collector's target unless GOGC is set.
const defaultGCPercent = 25

func run(args []string, getenv func(string) string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "mix" {
		return runMix(args[1:], getenv, stderr)
	}
	if len(args) > 0 && args[0] == "clips" {
		return runClips(args[1:], os.Stdout, stderr)
	}
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], getenv, os.Stdout, stderr)
	}
	if len(args) > 0 && args[0] == "password" {
		return runPassword(args[1:], os.Stdin, os.Stdout, stderr)
	}
	cfg, err := loadConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "sfu:", err)
		return 2
	}
	if getenv("GOGC") == "" {
		// Forwarding allocates next to nothing, so collections run mostly
		// while sessions are set up, and a low percentage costs little CPU;
		// it keeps the garbage that session setup leaves in the heap (and in
		// the resident memory) to a quarter of the live heap instead of as
		// much again (docs/performance.md).
		debug.SetGCPercent(defaultGCPercent)
	}
	level, _ := parseLevel(cfg.LogLevel)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	scfg, err := serverConfig(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "sfu:", err)
		return 2
	}
	if cfg.RecordsDir != "" && cfg.RecordingsURLSecret == "" {
		log.Info("the recordings' signed links end with this process; set recordings_url_secret to keep them valid across restarts")
	}
	srv, err := server.New(scfg)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	srv.Serve()
	if cfg.AdaptiveProcs && getenv("GOMAXPROCS") == "" {
		// After server.New: the SFU sizes its writer pool by GOMAXPROCS, and
		// the controller starts at the full count.
		pctx, pstop := context.WithCancel(ctx)
		pdone := make(chan struct{})
		go func() {
			defer close(pdone)
			procs.Run(pctx, procs.Config{}, log)
		}()
		defer func() { pstop(); <-pdone }()
	}
	if cfg.DebugAddr != "" {
		dbg, err := serveDebug(cfg.DebugAddr, log)
		if err != nil {
			log.Error("cannot serve the profiler", "addr", cfg.DebugAddr, "err", err)
			_ = srv.Shutdown(context.Background())
			return 1
		}
		defer dbg.Close()
	}
	log.Info("Parley is serving", "url", srv.URL()+"/", "udp_port", cfg.UDPPort, "tcp_port", cfg.TCPPort,
		"public_ip", cfg.PublicIP, "auth", scfg.Auth.Mode)
	if a := srv.MetricsAddr(); a != nil {
		log.Info("metrics serving", "metrics", "http://"+a.String()+"/metrics")
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-hup:
			if cfg.RoomsDir == "" {
				log.Warn("SIGHUP: no rooms directory to reload (--rooms-dir)")
				continue
			}
			_, _ = srv.ReloadPresets() // it logs what happened
		case err := <-srv.Done():
			if err != nil {
				log.Error("HTTP server failed", "err", err)
				return 1
			}
			break wait
		}
	}
	stop()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func serverConfig(cfg Config, log *slog.Logger) (server.Config, error) {
	media := sfu.Config{ListenIP: cfg.MediaIP, UDPPort: cfg.UDPPort, TCPPort: cfg.TCPPort}
	if cfg.PublicIP != "" {
		media.PublicIPs = []string{cfg.PublicIP}
	}
	rooms := room.DefaultConfig()
	rooms.IdleTimeout = time.Duration(cfg.RoomIdleTimeout)
	rooms.MaxParticipants = cfg.Limits.MaxParticipants
	rooms.MaxStreams = cfg.Limits.MaxStreams
	rooms.MaxNameBytes = cfg.Limits.MaxNameBytes
	rooms.MaxTextBytes = cfg.Limits.MaxTextBytes
	rooms.RecordAll = cfg.RecordAll
	sig := signaling.DefaultConfig()
	sig.MaxFrameBytes = cfg.Limits.MaxFrameBytes
	if sig.HardFrameBytes < 4*sig.MaxFrameBytes {
		sig.HardFrameBytes = 4 * sig.MaxFrameBytes
	}
	sig.MessagesPerSecond = cfg.Limits.MessagesPerSecond
	sig.Burst = int(2*cfg.Limits.MessagesPerSecond) + 1
	sig.ReconnectGrace = time.Duration(cfg.ReconnectGrace)
	sig.AllowedOrigins = cfg.AllowedOrigins
	sig.AddressLimits = signaling.AddressLimits{MaxSessions: cfg.Limits.MaxSessionsPerAddress,
		SessionsPerSecond: cfg.Limits.NewSessionsPerAddress, RoomsPerMinute: cfg.Limits.NewRoomsPerAddress}
	for _, p := range cfg.TrustedProxies {
		prefix, _ := parsePrefix(p) // checked in validate
		sig.TrustedProxies = append(sig.TrustedProxies, prefix)
	}
	var mix *server.MixConfig
	if cfg.Mix && cfg.RecordsDir != "" {
		settings := mixer.DefaultSettings()
		if cfg.MixerConfig != "" {
			var err error
			if settings, err = mixer.LoadSettings(cfg.MixerConfig); err != nil {
				return server.Config{}, fmt.Errorf("mixer config: %w", err)
			}
		}
		mix = &server.MixConfig{Settings: settings, Workers: cfg.MixWorkers, Hook: cfg.MixHook}
	}
	ac, err := authConfig(cfg)
	if err != nil {
		return server.Config{}, err
	}
	sc := server.Config{Addr: cfg.Addr, Mix: mix, Auth: ac, TLSCert: cfg.TLSCert, TLSKey: cfg.TLSKey, Media: media, Rooms: rooms,
		Signaling: sig, Web: webapp.FS, Logger: log, RecordsDir: cfg.RecordsDir, MetricsAddr: cfg.MetricsAddr,
		TURN: server.TURNConfig{URLs: cfg.TURN.URLs, Secret: cfg.TURN.Secret, TTL: time.Duration(cfg.TURN.TTL)}}
	sc.Recordings = server.RecordingsConfig{Public: cfg.Recordings == recordingsPublic,
		LinkTTL: time.Duration(cfg.RecordingsLinkTTL), URLTTL: time.Duration(cfg.RecordingsURLTTL),
		MaxDuration: time.Duration(cfg.RecordMaxDuration), MaxBytes: int64(cfg.RecordMaxBytes),
		MinFreeBytes: int64(cfg.RecordMinFree)}
	if cfg.RecordingsURLSecret != "" {
		sc.Auth.URLs = auth.NewURLSigner([]byte(cfg.RecordingsURLSecret))
	}
	clipsCfg, err := clipsConfig(cfg)
	if err != nil {
		return server.Config{}, err
	}
	sc.Clips = clipsCfg
	if cfg.TURN.Embed {
		tc := turnserver.DefaultConfig()
		tc.Listen = cfg.TURN.Listen
		tc.TLSListen = ""
		tc.MaxAllocationsPerUser = cfg.TURN.MaxAllocationsPerUser
		tc.MaxAllocationsPerAddress = cfg.TURN.MaxAllocationsPerAddress
		sc.EmbedTURNPeers = cfg.TURN.Peers
		relay := cfg.TURN.RelayIP
		if relay == "" {
			relay = cfg.PublicIP
		}
		if relay != "" {
			ip, err := netip.ParseAddr(relay)
			if err != nil {
				return sc, fmt.Errorf("turn relay address %q: %w", relay, err)
			}
			tc.RelayIP = ip
		} else if host, _, _ := net.SplitHostPort(tc.Listen); host == "0.0.0.0" || host == "" || host == "::" {
			return sc, fmt.Errorf("--turn needs the address clients reach for relays: set --public-ip or --turn-relay-ip")
		}
		for _, p := range cfg.TURN.AllowPeers {
			prefix, err := turnserver.ParsePeerPrefix(p)
			if err != nil {
				return sc, fmt.Errorf("turn allow peer %q: %w", p, err)
			}
			tc.AllowPeers = append(tc.AllowPeers, prefix)
		}
		sc.EmbedTURN = &tc
	}
	return sc, nil
}

// serveDebug serves Go's profiler on its own listener, apart from the public
// HTTP server: it shows the process's internals, so it is off by default and
// belongs on a private address.
func serveDebug(addr string, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("profiler server", "err", err)
		}
	}()
	log.Info("profiler serving", "pprof", "http://"+ln.Addr().String()+"/debug/pprof/")
	return srv, nil
}
