// Command turnd is Parley's standalone TURN server (pkg/turnserver on
// pion/turn). See docs/turnd.md.
//
//	turnd --config configs/turnd.yaml
//	turnd --relay-ip 203.0.113.10 --auth-secret "$SECRET" --metrics-addr 127.0.0.1:9641
//
// Settings come from flags, TURND_* environment variables and a YAML file,
// in that order of precedence. SIGTERM or SIGINT stops it gracefully (exit
// 0); SIGHUP reloads the TLS certificate.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/parley/parley/pkg/turnserver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // could not start (port in use, unreadable certificate) or failed while running
	exitConfig  = 2 // bad flags, environment or config file
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// run is turnd's main, minus the process: it serves until ctx is done.
func run(ctx context.Context, args []string, getenv func(string) (string, bool), stdout, stderr io.Writer) int {
	o, err := loadOptions(args, getenv, stderr)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "turnd: configuration error: %v\n", err)
		return exitConfig
	}
	if o.checkOnly {
		printSettings(stdout, o)
		fmt.Fprintln(stdout, "configuration OK")
		return exitOK
	}

	hopts := &slog.HandlerOptions{Level: o.logLevel}
	var handler slog.Handler = slog.NewTextHandler(stderr, hopts)
	if o.logFormat == "json" {
		handler = slog.NewJSONHandler(stderr, hopts)
	}
	log := slog.New(handler)
	o.server.Logger = log

	srv, err := turnserver.New(o.server)
	if err != nil {
		log.Error("turnd cannot start", slog.String("error", err.Error()))
		return exitFailure
	}
	code := exitOK

	// Metrics: the server's registry plus Go runtime and process metrics.
	var metricsSrv *http.Server
	metricsErr := make(chan error, 1)
	if o.metricsAddr != "" {
		ln, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			log.Error("turnd cannot serve metrics", slog.String("metrics_addr", o.metricsAddr), slog.String("error", err.Error()))
			_ = srv.Close()
			return exitFailure
		}
		procReg := prometheus.NewRegistry()
		procReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{srv.Registry(), procReg}, promhttp.HandlerOpts{}))
		metricsSrv = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    16 << 10,
		}
		go func() { metricsErr <- metricsSrv.Serve(ln) }()
		log.Info("metrics listening", slog.String("metrics_addr", ln.Addr().String()))
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

wait:
	for {
		select {
		case <-ctx.Done():
			log.Info("turnd shutting down")
			break wait
		case <-hup:
			if err := srv.ReloadCertificate(); err != nil {
				log.Error("certificate reload failed; keeping the old one", slog.String("error", err.Error()))
			} else if o.server.TLSCertFile != "" {
				log.Info("certificate reloaded", slog.String("tls_cert", o.server.TLSCertFile))
			}
		case err := <-metricsErr:
			log.Error("metrics server failed", slog.String("error", err.Error()))
			code = exitFailure
			break wait
		}
	}

	if metricsSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = metricsSrv.Shutdown(sctx)
		cancel()
	}
	if err := srv.Close(); err != nil {
		log.Warn("turnd stopped with an error", slog.String("error", err.Error()))
	}
	return code
}
