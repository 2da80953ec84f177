// Package speaker finds who speaks in a room, and the dominant speaker, from
// the audio levels publishers put in their packets (RFC 6464,
// urn:ietf:params:rtp-hdrext:ssrc-audio-level).
//
// The forwarding path hands each packet's level to its stream's Meter: one
// atomic add, no lock, no allocation. A Detector reads every meter once per
// tick (Config.Tick, 100 ms by default) and keeps two smoothed scores per
// stream, both of how much of the time it was active (its packets' levels
// above Config.ActiveLevel):
//
//   - short, over a few hundred milliseconds: who speaks now;
//   - long, over about a second: who has been speaking.
//
// A stream joins the list of speakers when its short score passes 0.5 and
// leaves it when both scores have fallen (a second or so of silence, so the
// pauses between words do not make it flicker). The dominant speaker changes
// only when the dominant one's long score has fallen under Config.HoldScore
// (they have mostly stopped talking) and a speaking challenger's long score
// passes Config.SwitchScore and beats it by Config.Margin: a cough or a word
// (a few hundred milliseconds) never reaches that, someone talking over the
// dominant speaker does not take over while the dominant one keeps talking,
// and a dominant speaker who falls silent stays dominant until someone else
// really speaks. This follows the
// idea of Volfin and Cohen's dominant speaker identification (as Jitsi does
// it: a challenger must win on more than one time scale), with two exponential
// scores in place of its three block likelihoods.
package speaker

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Silent is the RFC 6464 level of silence: -127 dBov.
const Silent = 127

// Meter takes the audio levels of one stream's packets. Add may be called
// by one goroutine (the stream's reader) while a Detector reads it.
type Meter struct {
	// v packs the packets since the last read (bits 0-15), the active ones
	// among them (bits 16-31) and the sum of their loudness, 127 minus the
	// level (bits 32-63), so that one atomic add takes a packet.
	v atomic.Uint64
	// active is the level at or below which a packet counts as active.
	active uint8
}

// Add takes one packet's level: 0 (0 dBov, the loudest) to 127 (silence).
func (m *Meter) Add(level uint8) {
	level &= 0x7f
	d := uint64(1) | uint64(Silent-level)<<32
	if level <= m.active {
		d |= 1 << 16
	}
	m.v.Add(d)
}

// take returns and clears what was added since the last take.
func (m *Meter) take() (packets, active int, loudness uint64) {
	v := m.v.Swap(0)
	return int(v & 0xffff), int(v >> 16 & 0xffff), v >> 32
}

// Config tunes a Detector. Zero fields take the defaults.
type Config struct {
	// Tick is how often the detector reads the meters (default 100 ms);
	// the smoothing constants below are per tick.
	Tick time.Duration
	// ActiveLevel is the level (in -dBov) at or below which a packet is
	// active, i.e. at least as loud as -ActiveLevel dBov (default 50:
	// speech in a browser is about -20 to -45 dBov, a quiet room after its
	// noise suppression -60 and below).
	ActiveLevel uint8
	// SwitchScore is the long score a challenger needs to become dominant
	// (default 0.55: about 0.8 s of continuous speech).
	SwitchScore float64
	// Margin is how much a challenger's long score must exceed the
	// dominant one's (default 0.1).
	Margin float64
	// HoldScore is the long score at or above which the dominant speaker
	// keeps the place whoever else talks (default 0.4: talking more than
	// about 40 % of the last second).
	HoldScore float64
	// MinInterval is the shortest time between two updates (default 300 ms:
	// at most a few per second).
	MinInterval time.Duration
}

// Smoothing per tick of the short and long scores, and of the level.
const (
	shortAlpha = 0.5 // time constant about 150 ms at 100 ms ticks
	longAlpha  = 0.1 // about 1 s
	levelAlpha = 0.5
	speakOn    = 0.5 // short score to join the speakers
	speakOff   = 0.2 // short score under which, with the long under longOff, one leaves
	longOff    = 0.3
)

func (c Config) withDefaults() Config {
	if c.Tick <= 0 {
		c.Tick = 100 * time.Millisecond
	}
	if c.ActiveLevel == 0 {
		c.ActiveLevel = 50
	}
	if c.HoldScore <= 0 {
		c.HoldScore = 0.4
	}
	if c.SwitchScore <= 0 {
		c.SwitchScore = 0.55
	}
	if c.Margin <= 0 {
		c.Margin = 0.1
	}
	if c.MinInterval <= 0 {
		c.MinInterval = 300 * time.Millisecond
	}
	return c
}

// Speaker is one stream in an update.
type Speaker struct {
	// ID is the stream's, as given to Add.
	ID string
	// Level is the stream's smoothed loudness, 0 (silence, -127 dBov) to 1
	// (0 dBov), linear in decibels.
	Level float64
}

// Update is the state of a room's speakers.
type Update struct {
	// Dominant is the dominant speaker's stream, "" before anyone spoke
	// (or after the dominant one's stream ended and no one speaks). The
	// dominant speaker stays dominant while silent, until someone else speaks.
	Dominant string
	// Speakers are the streams speaking now, the dominant one first, then
	// the others by level, loudest first.
	Speakers []Speaker
}

// Equal reports whether u and o name the same dominant speaker and the same
// speakers in the same order (levels aside).
func (u Update) Equal(o Update) bool {
	return u.Dominant == o.Dominant && slices.EqualFunc(u.Speakers, o.Speakers, func(a, b Speaker) bool { return a.ID == b.ID })
}

type source struct {
	meter       *Meter
	short, long float64
	level       float64
	speaking    bool
}

// Detector tracks the speakers of one room. Its methods are safe for
// concurrent use.
type Detector struct {
	cfg Config

	mu       sync.Mutex
	sources  map[string]*source
	dominant string
	sent     Update // the last update Tick returned
	sentAt   int    // the tick it was returned at
	ticks    int
}

// New returns a detector with no streams.
func New(cfg Config) *Detector {
	return &Detector{cfg: cfg.withDefaults(), sources: make(map[string]*source), sentAt: math.MinInt / 2}
}

// Config returns the detector's configuration, defaults filled in.
func (d *Detector) Config() Config { return d.cfg }

// Add starts tracking a stream and returns the meter its packets' levels go to.
// Adding an id again returns its meter.
func (d *Detector) Add(id string) *Meter {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.sources[id]; s != nil {
		return s.meter
	}
	m := &Meter{active: d.cfg.ActiveLevel}
	d.sources[id] = &source{meter: m}
	return m
}

// Remove stops tracking a stream (it ended). If it was dominant, the
// loudest speaker takes over, if anyone speaks.
func (d *Detector) Remove(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.sources, id)
	if d.dominant != id {
		return
	}
	d.dominant = ""
	var best *source
	for oid, s := range d.sources {
		if s.speaking && (best == nil || s.long > best.long || (s.long == best.long && oid < d.dominant)) {
			d.dominant, best = oid, s
		}
	}
}

// Len returns the number of streams tracked.
func (d *Detector) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.sources)
}

// Tick reads every meter, updates the scores and returns the new state when
// it differs from the last one returned (who is dominant, who speaks, in
// which order) and the last one is at least MinInterval old; otherwise ok is
// false. Call it every Config.Tick.
func (d *Detector) Tick() (u Update, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ticks++
	for _, s := range d.sources {
		n, active, loud := s.meter.take()
		act, lvl := 0.0, 0.0
		if n > 0 {
			act = float64(active) / float64(n)
			lvl = float64(loud) / float64(n) / Silent
		}
		s.short += shortAlpha * (act - s.short)
		s.long += longAlpha * (act - s.long)
		s.level += levelAlpha * (lvl - s.level)
		switch {
		case !s.speaking && s.short >= speakOn:
			s.speaking = true
		case s.speaking && s.short < speakOff && s.long < longOff:
			s.speaking = false
		}
	}
	d.decideLocked()
	cur := d.stateLocked()
	minTicks := int((d.cfg.MinInterval + d.cfg.Tick - 1) / d.cfg.Tick)
	if cur.Equal(d.sent) || d.ticks-d.sentAt < minTicks {
		return Update{}, false
	}
	d.sent, d.sentAt = cur, d.ticks
	return cur, true
}

// decideLocked picks the dominant speaker: once the dominant one has mostly
// stopped, the speaking challenger with the best long score takes over when
// that score is high enough and beats the dominant one's by the margin.
func (d *Detector) decideLocked() {
	var best string
	var bestS *source
	for id, s := range d.sources {
		if id == d.dominant || !s.speaking || s.short < speakOn {
			continue
		}
		if bestS == nil || s.long > bestS.long || (s.long == bestS.long && id < best) {
			best, bestS = id, s
		}
	}
	if bestS == nil {
		return
	}
	dom := d.sources[d.dominant]
	if dom == nil {
		// No dominant speaker yet: the first who has been speaking for a while.
		if bestS.long >= d.cfg.SwitchScore {
			d.dominant = best
		}
		return
	}
	if dom.long < d.cfg.HoldScore && bestS.long >= d.cfg.SwitchScore && bestS.long > dom.long+d.cfg.Margin {
		d.dominant = best
	}
}

func (d *Detector) stateLocked() Update {
	u := Update{Dominant: d.dominant}
	for id, s := range d.sources {
		if s.speaking {
			u.Speakers = append(u.Speakers, Speaker{ID: id, Level: math.Round(s.level*100) / 100})
		}
	}
	slices.SortFunc(u.Speakers, func(a, b Speaker) int {
		if a.ID == u.Dominant {
			return -1
		}
		if b.ID == u.Dominant {
			return 1
		}
		if c := cmp.Compare(b.Level, a.Level); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return u
}

// Current returns the last state Tick returned.
func (d *Detector) Current() Update {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Update{Dominant: d.sent.Dominant, Speakers: slices.Clone(d.sent.Speakers)}
}
