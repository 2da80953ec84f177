// Command loadtest puts load on a Parley server with Go clients (pkg/client)
// that publish real VP8 and Opus and receive every stream of their room, and
// reports what they got: sessions, join and first-frame times, loss, NACKs and
// keyframe requests, jitter, forwarding latency and the server's CPU and
// memory (docs/performance.md).
//
//	loadtest --url ws://127.0.0.1:7880/ws --video-publishers 1 --subscribers 200 --duration 30s
//	loadtest --video-publishers 4 --subscribers 0 --publishers-subscribe --json
//	loadtest --inprocess-server --subscribers 200 --cpuprofile cpu.pprof
//
// All its clients come from one address: run the server under test with its
// per-address limits off or above the load (sfu --max-sessions-per-address 0
// --new-sessions-per-address 0 --new-rooms-per-address 0, as bench.sh does),
// or its refusals (TOO_MANY_SESSIONS, RATE_LIMITED) count as failed sessions.
//
// It exits 1 when loss or failures pass --max-loss / --max-failures, 2 when
// the run could not be made.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/parley/parley/pkg/loadtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the flags beyond loadtest.Config.
type options struct {
	cfg         loadtest.Config
	size        string
	jsonOut     bool
	quiet       bool
	maxLoss     float64
	maxFailures int
	inProcess   bool
	cpuProfile  string
	logLevel    string
	churn       loadtest.ChurnConfig
	churnOn     bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &o.cfg
	fs.StringVar(&c.URL, "url", "ws://127.0.0.1:7880/ws", "server WebSocket URL")
	fs.StringVar(&c.MetricsURL, "metrics-url", "", `server Prometheus URL (default: derived from --url; "none": no server figures)`)
	fs.IntVar(&c.Rooms, "rooms", 1, "rooms")
	fs.IntVar(&c.VideoPublishers, "video-publishers", 1, "publishers per room of a VP8 + Opus stream")
	fs.IntVar(&c.AudioPublishers, "audio-publishers", 0, "publishers per room of an Opus-only stream")
	fs.IntVar(&c.Subscribers, "subscribers", 10, "receive-only participants per room (they receive every stream of the room)")
	fs.BoolVar(&c.PublishersSubscribe, "publishers-subscribe", false, "publishers also receive every other stream of their room (a meeting)")
	fs.BoolVar(&c.NoSocketStamps, "no-socket-stamps", false, "receivers take no kernel receive timestamps: latency is measured to their readers only, for a little less of this tool's CPU per packet")
	fs.BoolVar(&c.NoNACK, "no-nack", false, `receivers negotiate no "nack" (default: they negotiate it as browsers do, and never send one; the server's NACK history is per published track, so this no longer changes its cost)`)
	fs.IntVar(&c.VideoBitrate, "video-bitrate", 1_000_000, "video bitrate in bit/s of the generated VP8")
	fs.StringVar(&o.size, "video-size", "640x360", "video resolution WIDTHxHEIGHT")
	fs.IntVar(&c.FPS, "fps", 30, "video frame rate")
	fs.BoolVar(&c.Simulcast, "simulcast", false, "video publishers send three simulcast layers (1/4, 1/2 and all of --video-size, at 1/8, 1/3 and all of --video-bitrate)")
	fs.IntVar(&c.Shaped, "shaped", 0, "of each room's subscribers, how many receive through a link of --shaped-rate (reported apart)")
	fs.IntVar(&c.ShapedRate, "shaped-rate", 500_000, "the shaped subscribers' downlink in bit/s")
	fs.DurationVar(&c.ShapedQueue, "shaped-queue", 400*time.Millisecond, "the queue in front of a shaped link, in time at its rate (beyond it packets drop)")
	fs.StringVar(&c.MediaDir, "media-dir", "", "cache directory of the generated media (default: user cache dir/parley-testmedia)")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "measuring window, after ramp-up")
	fs.Float64Var(&c.RampRate, "ramp", 10, "sessions started per second")
	fs.IntVar(&c.MaxInFlight, "max-inflight", 20, "sessions connecting at once, at most")
	fs.DurationVar(&c.Settle, "settle", 2*time.Second, "pause between ramp-up and the window")
	fs.DurationVar(&c.ReadyTimeout, "ready-timeout", 30*time.Second, "how long after the last session started every session may take to receive its tracks")
	fs.BoolVar(&o.jsonOut, "json", false, "print the report as JSON on stdout")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line on stderr")
	fs.Float64Var(&o.maxLoss, "max-loss", 1, "exit 1 when loss passes this percentage")
	fs.IntVar(&o.maxFailures, "max-failures", 0, "exit 1 when more sessions than this fail")
	fs.BoolVar(&o.inProcess, "inprocess-server", false, "run a Parley server in this process (on 127.0.0.1, free ports) instead of --url")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process over the measuring window to this file")
	fs.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	fs.BoolVar(&o.churnOn, "churn", false, "churn mode: participants join a room of --rooms, publish VP8 + Opus, receive the others and leave, at --churn-rate for --duration, while the server's goroutines, open files and memory are sampled from /metrics")
	fs.Float64Var(&o.churn.Rate, "churn-rate", 1, "churn: participants joining per second")
	fs.DurationVar(&o.churn.Lifetime, "churn-lifetime", 20*time.Second, "churn: how long each participant stays")
	fs.DurationVar(&o.churn.Warmup, "churn-warmup", 2*time.Minute, "churn: the start of the run left out of the figures")
	fs.DurationVar(&o.churn.SampleEvery, "churn-sample", 30*time.Second, "churn: how often the server's /metrics is read")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: loadtest [flags]\n\nLoad a Parley server and report loss, latency and its CPU and memory. Flags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if _, err := fmt.Sscanf(strings.ToLower(o.size), "%dx%d", &c.Width, &c.Height); err != nil || c.Width <= 0 || c.Height <= 0 {
		return o, fmt.Errorf("--video-size %q: want WIDTHxHEIGHT", o.size)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintln(stderr, "loadtest: --log-level:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// Clients and the in-process server log through pion, which is noisy at
	// teardown: they get the tool's level only when it is debug.
	quietLog := log
	if level > slog.LevelDebug {
		quietLog = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: max(level, slog.LevelError)}))
	}
	cfg := o.cfg
	cfg.Logger = log
	cfg.ClientLogger = quietLog
	if !o.quiet {
		cfg.Progress = stderr
	}

	if o.inProcess {
		url, stop, err := loadtest.StartServer(quietLog.With("part", "server"))
		if err != nil {
			fmt.Fprintln(stderr, "loadtest:", err)
			return 2
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := stop(sctx); err != nil {
				log.Warn("in-process server shutdown", "err", err)
			}
		}()
		cfg.URL, cfg.MetricsURL, cfg.SameProcess = url, "", true
	}

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "loadtest: --cpuprofile:", err)
			return 2
		}
		defer func() {
			if err := f.Close(); err != nil {
				log.Error("close CPU profile", "err", err)
			}
		}()
		cfg.OnWindow = func(open bool) {
			if !open {
				pprof.StopCPUProfile()
				return
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				log.Error("start CPU profile", "err", err)
			}
		}
	}

	if o.churnOn {
		return runChurn(ctx, o, cfg, stdout, stderr)
	}
	rep, err := loadtest.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return 2
	}
	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteTable(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return 2
	}
	if problems := rep.Check(o.maxLoss, o.maxFailures); len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stderr, "loadtest: FAIL:", p)
		}
		return 1
	}
	return 0
}

// runChurn runs the churn mode with the flags that apply to it.
func runChurn(ctx context.Context, o options, cfg loadtest.Config, stdout, stderr io.Writer) int {
	cc := o.churn
	cc.URL, cc.MetricsURL, cc.Rooms, cc.Duration = cfg.URL, cfg.MetricsURL, cfg.Rooms, cfg.Duration
	cc.Width, cc.Height, cc.FPS, cc.VideoBitrate, cc.MediaDir = cfg.Width, cfg.Height, cfg.FPS, cfg.VideoBitrate, cfg.MediaDir
	cc.Logger, cc.ClientLogger, cc.Progress = cfg.Logger, cfg.ClientLogger, cfg.Progress
	rep, err := loadtest.RunChurn(ctx, cc)
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return 2
	}
	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteTable(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return 2
	}
	if rep.Failed > int64(o.maxFailures) {
		fmt.Fprintf(stderr, "loadtest: FAIL: %d participants failed (more than --max-failures %d)\n", rep.Failed, o.maxFailures)
		return 1
	}
	return 0
}
