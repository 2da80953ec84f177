package loadtest

import (
	"context"
	"fmt"
	"time"
)

// progress writes a status line to cfg.Progress once per second until ctx ends.
func (e *engine) progress(ctx context.Context) {
	if e.cfg.Progress == nil {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastRx int64
	lastSelf, lastAt := selfCPU(), time.Now()
	var lastSrv ServerSample
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		now := time.Now()
		span := now.Sub(lastAt).Seconds()
		var ready, failed int
		var rx, received int64
		expected := int64(0)
		for _, s := range e.sessions {
			switch s.state.Load() {
			case stateReady:
				ready++
			case stateFailed:
				failed++
			}
			for _, r := range s.trackList() {
				rx += r.total.Load()
				if r.measured.Load() {
					exp, got := r.receivedCount()
					expected += exp
					received += got
				}
			}
		}
		self := selfCPU()
		line := fmt.Sprintf("[%s] %-18s sessions %d/%d ready, %d failed | rx %.0f pkt/s", now.Format("15:04:05"),
			e.phase.Load(), ready, len(e.sessions), failed, float64(rx-lastRx)/span)
		if expected > 0 {
			line += fmt.Sprintf(" | loss %.3f%%", lossPct(expected, received))
		}
		if e.metrics != nil {
			if srv, err := e.metrics.scrape(ctx); err == nil {
				if !lastSrv.At.IsZero() {
					line += fmt.Sprintf(" | server %.2f cores %.0f MB", (srv.CPUSeconds-lastSrv.CPUSeconds)/srv.At.Sub(lastSrv.At).Seconds(), srv.RSSBytes/1e6)
				}
				lastSrv = srv
			} else {
				line += " | server metrics: " + err.Error()
			}
		}
		line += fmt.Sprintf(" | self %.2f cores", (self-lastSelf).Seconds()/span)
		fmt.Fprintln(e.cfg.Progress, line)
		lastRx, lastSelf, lastAt = rx, self, now
	}
}
