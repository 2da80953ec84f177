// Package procs fits the number of Ps the Go scheduler runs goroutines on
// (GOMAXPROCS) to the CPU the process uses: one while it is nearly idle,
// every CPU once it is busy.
//
// An SFU's packet goes through a chain of goroutines (the UDP socket's
// reader, pion's ICE, DTLS/SRTP demultiplexer and SRTP session, the track
// reader, the writers), each handing it to the next over a channel. With
// more than one P and a lightly loaded process, nearly every hand-off finds
// a P idle and wakes an OS thread for it (a futex system call), which spins
// looking for work and goes back to sleep; in a meeting of 4, where each
// packet read is forwarded to 3 receivers only, those wake-ups were over a
// third of the server's CPU (docs/performance.md, "Meeting shapes"). With
// one P the hand-off puts the next goroutine on the same thread's run queue
// and runs it when the current one blocks, without a system call.
//
// One P caps the process near one core and lets a busy goroutine delay the
// others, so the controller gives back every P as soon as a sample shows
// the process using more than Config.Up cores, and goes down to one only
// after Config.DownAfter below Config.Down.
package procs

import (
	"context"
	"log/slog"
	"runtime"
	"time"
)

// Config is when the controller changes GOMAXPROCS.
type Config struct {
	// Max is the Ps of a busy process (default: GOMAXPROCS when Run starts).
	// A Max of 1 leaves nothing to do.
	Max int
	// Every is how often the process's CPU time is read (default 250 ms).
	Every time.Duration
	// Up is the CPU use, in cores, that brings back Max Ps at once
	// (default 0.5).
	Up float64
	// Down is the CPU use, in cores, under which the process goes to one P
	// once it has stayed there for DownAfter (defaults 0.25 and 5 s).
	Down      float64
	DownAfter time.Duration
}

func (c Config) withDefaults() Config {
	if c.Max <= 0 {
		c.Max = runtime.GOMAXPROCS(0)
	}
	if c.Every <= 0 {
		c.Every = 250 * time.Millisecond
	}
	if c.Up <= 0 {
		c.Up = 0.5
	}
	if c.Down <= 0 || c.Down > c.Up {
		c.Down = c.Up / 2
	}
	if c.DownAfter <= 0 {
		c.DownAfter = 5 * time.Second
	}
	return c
}

// controller decides the Ps from samples of CPU use.
type controller struct {
	cfg   Config
	procs int           // current
	quiet time.Duration // how long the use has stayed under Down
}

// step takes the CPU use (cores) over the last dt and returns the Ps to run.
func (c *controller) step(cores float64, dt time.Duration) int {
	switch {
	case cores > c.cfg.Up:
		c.quiet = 0
		c.procs = c.cfg.Max
	case cores < c.cfg.Down:
		c.quiet += dt
		if c.quiet >= c.cfg.DownAfter {
			c.procs = 1
		}
	default:
		c.quiet = 0
	}
	return c.procs
}

// Run adjusts GOMAXPROCS every cfg.Every until ctx ends, then sets it back
// to cfg.Max. It starts at cfg.Max. It does nothing where the process's CPU
// time cannot be read.
func Run(ctx context.Context, cfg Config, log *slog.Logger) {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Max <= 1 {
		return
	}
	last, ok := cpuTime()
	if !ok {
		return
	}
	c := &controller{cfg: cfg, procs: cfg.Max}
	runtime.GOMAXPROCS(cfg.Max)
	defer runtime.GOMAXPROCS(cfg.Max)
	t := time.NewTicker(cfg.Every)
	defer t.Stop()
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			used, _ := cpuTime()
			dt := now.Sub(lastAt)
			if dt <= 0 {
				continue
			}
			cores := float64(used-last) / float64(dt)
			last, lastAt = used, now
			before := c.procs
			if p := c.step(cores, dt); p != before {
				runtime.GOMAXPROCS(p)
				log.Debug("GOMAXPROCS changed", "from", before, "to", p, "cores", cores)
			}
		}
	}
}
