package sfu

import (
	"math"
	"slices"
	"strings"
	"time"

	"github.com/parley/parley/pkg/protocol"
)

// QualitySignal is implemented by a Signal that can tell a subscriber how
// it receives each remote track (QUALITY).
type QualitySignal interface {
	Quality(tracks []protocol.TrackQuality)
}

// qualityLoop tells every subscriber, every QualityInterval, what its
// receiver reports said of each track, until the engine closes.
func (e *Engine) qualityLoop() {
	defer e.qualityWG.Done()
	every := e.cfg.QualityInterval
	if every <= 0 {
		every = 2 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-e.qualityDone:
			return
		case <-tick.C:
		}
		e.mu.Lock()
		routers := make([]*Router, 0, len(e.routers))
		for r := range e.routers {
			routers = append(routers, r)
		}
		e.mu.Unlock()
		for _, r := range routers {
			for _, p := range r.peerList() {
				if p.sub == nil {
					continue
				}
				qs, ok := p.signal().(QualitySignal)
				if !ok {
					continue
				}
				if q := p.sub.quality(); len(q) > 0 {
					qs.Quality(q)
				}
			}
		}
	}
}

// quality is what the subscriber's receiver reports said last of each
// track it reported on.
func (s *subscriber) quality() []protocol.TrackQuality {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []protocol.TrackQuality
	for f, d := range s.tracks {
		if d == nil || d.rx.reports.Load() == 0 {
			continue
		}
		q := protocol.TrackQuality{StreamID: f.streamID, Kind: f.kind.String(),
			LossPct: round1(float64(d.rx.fractionLost.Load()) / 256 * 100),
			RTTMS:   round1(float64(d.rx.rtt.Load()) / float64(time.Millisecond))}
		if st := s.streams[f.streamID]; st != nil {
			q.Name = st.publisher
		}
		if c := f.codec.ClockRate; c > 0 {
			q.JitterMS = round1(float64(d.rx.jitter.Load()) / float64(c) * 1000)
		}
		out = append(out, q)
	}
	slices.SortFunc(out, func(a, b protocol.TrackQuality) int { return strings.Compare(a.StreamID+a.Kind, b.StreamID+b.Kind) })
	return out
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }

// observeReport hands a receiver report's figures about d's track to the
// engine's quality observers.
func (d *downTrack) observeReport(fractionLost byte, jitter uint32, rtt time.Duration) {
	q := d.sub.observe
	if q == nil {
		return
	}
	if q.Loss != nil {
		q.Loss.Observe(float64(fractionLost) / 256)
	}
	if c := d.fwd.codec.ClockRate; q.Jitter != nil && c > 0 {
		q.Jitter.Observe(float64(jitter) / float64(c))
	}
	if q.RTT != nil && rtt > 0 {
		q.RTT.Observe(rtt.Seconds())
	}
}
