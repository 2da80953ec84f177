// Package loadtest drives a Parley server with many Go clients (pkg/client)
// and measures what they get: sessions connected and failed, time to join and
// to first frame, packets expected and received per stream (loss), NACKs and
// keyframe requests seen by the publishers, jitter, end-to-end forwarding
// latency, and the server's CPU and memory from its /metrics. cmd/loadtest is
// its command line; tests run it in-process against pkg/server/servertest.
//
// Publishers send real VP8 (or three simulcast layers of it) and Opus
// (pkg/testmedia files, generated once into a cache directory and shared by
// every publisher) at the media's pace. Every receiver is a
// client.Options.LightReceiver: no NACK generator, no per-packet records.
// Publisher and receivers share one clock, so latency is measured per
// packet: each publisher remembers the send time of its recent packets by
// sequence number and RTP timestamp, and by payload; the SFU numbers each
// receiver's packets itself, so a receiver finds the offsets (and the layer)
// of its packets from a payload when its numbers stop matching, and looks
// its packets up by number. Loss is counted by each receiver's own numbers:
// the SFU's numbering has no gap but loss, whatever it leaves out for that
// receiver. Shaped subscribers receive through a rate-limited relay of this
// process (shaper.go) and are reported apart.
//
// Figures are taken over a measuring window that opens once every session is
// connected and receiving (after the ramp-up and a settle time): a packet
// counts when its send time is in the window, at the publisher and at every
// receiver alike, so in-flight packets at the window's edges are neither lost
// nor counted twice.
package loadtest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/parley/parley/pkg/auth"
)

// Config describes a load run. Counts are per room.
type Config struct {
	// URL is the server's WebSocket URL (ws://127.0.0.1:7880/ws).
	URL string
	// MetricsURL is the server's Prometheus endpoint; empty derives it from
	// URL (MetricsURL), "none" runs without server figures.
	MetricsURL string
	// SameProcess says the server runs in this process (its CPU and memory
	// then include the load tool's); the report notes it.
	SameProcess bool

	// Rooms is the number of rooms (default 1).
	Rooms int
	// VideoPublishers publish one camera stream each: VP8 video and Opus audio.
	VideoPublishers int
	// AudioPublishers publish one stream each with Opus audio only.
	AudioPublishers int
	// Subscribers only receive: every stream of their room.
	Subscribers int
	// PublishersSubscribe makes publishers receive every other stream of
	// their room too (a meeting); otherwise they join with subscribe false.
	PublishersSubscribe bool

	// TokenKey, when it has a Secret, signs the publishers' access tokens
	// (HS256, an hour): grants publish and subscribe in their room. The
	// other sessions join without a token, as a webinar's audience does: a
	// server in token mode admits them by the room's preset, which in a
	// webinar preset makes them viewers (Report.Sessions.Viewers).
	TokenKey auth.Key

	// NoNACK makes receivers negotiate no "nack" feedback. By default they
	// negotiate it as browsers do (client.Options.NegotiateNACK, without ever
	// sending a NACK), so the server keeps its per-subscriber retransmission
	// cache and its CPU and memory figures are a browser audience's.
	NoNACK bool
	// NoSocketStamps makes receivers take no kernel receive timestamps:
	// latency is then measured to their readers only (Report.Latency equals
	// Report.ReaderLatency), and each received packet costs this process a
	// little less (docs/performance.md has the figure).
	NoSocketStamps bool

	// VideoBitrate (bit/s, default 1 Mbit/s), Width×Height (default 640×360)
	// and FPS (default 30) shape the generated VP8 file.
	VideoBitrate  int
	Width, Height int
	FPS           int
	// Simulcast makes video publishers send three simulcast layers, as
	// browsers do: a quarter, half and the whole of Width×Height, at an
	// eighth, a third and all of VideoBitrate.
	Simulcast bool
	// Shaped is how many of each room's subscribers receive through a link
	// of ShapedRate bit/s with a queue of ShapedQueue (default 400 ms) in
	// front of it (shaper.go); the report gives their layers, video loss
	// and audio loss apart from the others'.
	Shaped      int
	ShapedRate  int
	ShapedQueue time.Duration
	// MediaDir caches the generated media (default the user cache directory's
	// parley-testmedia).
	MediaDir string

	// Duration is the measuring window (default 30 s).
	Duration time.Duration
	// RampRate is how many sessions start per second (default 10).
	RampRate float64
	// MaxInFlight bounds the sessions connecting (dial, join, publish) at once
	// (default 20).
	MaxInFlight int
	// Settle is the pause between the last session ready and the window (default 2 s).
	Settle time.Duration
	// ReadyTimeout bounds how long after the last session started every
	// session may take to receive all its tracks; later ones count as failed
	// (default 30 s).
	ReadyTimeout time.Duration
	// JoinTimeout bounds one session's dial and join (default 15 s).
	JoinTimeout time.Duration
	// Drain is how long receivers may still get packets sent in the window
	// after it closes (default 1 s).
	Drain time.Duration

	// Progress, when set, gets a status line once per second.
	Progress io.Writer
	// Logger receives the tool's logs; nil discards them.
	Logger *slog.Logger
	// ClientLogger receives the clients' (and pion's) logs; nil discards them.
	ClientLogger *slog.Logger
	// OnWindow, when set, is called when the measuring window opens (true)
	// and closes (false): cmd/loadtest starts and stops a CPU profile there.
	OnWindow func(open bool)
}

// maxSessions bounds a run.
const maxSessions = 5000

func (c Config) withDefaults() (Config, error) {
	if c.URL == "" {
		return c, errors.New("no server URL")
	}
	if c.MetricsURL == "" {
		u, err := MetricsURL(c.URL)
		if err != nil {
			return c, err
		}
		c.MetricsURL = u
	}
	if c.Rooms == 0 {
		c.Rooms = 1
	}
	if c.Rooms < 0 || c.VideoPublishers < 0 || c.AudioPublishers < 0 || c.Subscribers < 0 {
		return c, errors.New("negative count")
	}
	if c.VideoPublishers+c.AudioPublishers == 0 {
		return c, errors.New("no publishers: set video or audio publishers")
	}
	if c.Subscribers == 0 && !c.PublishersSubscribe {
		return c, errors.New("nobody receives: set subscribers, or let publishers subscribe")
	}
	if n := c.Sessions(); n > maxSessions {
		return c, fmt.Errorf("%d sessions: at most %d per run", n, maxSessions)
	}
	if len(c.TokenKey.Secret) > 0 && len(c.TokenKey.Secret) < auth.MinSecretBytes {
		return c, fmt.Errorf("the token key has %d bytes: at least %d", len(c.TokenKey.Secret), auth.MinSecretBytes)
	}
	if c.VideoBitrate <= 0 {
		c.VideoBitrate = 1_000_000
	}
	if c.Shaped < 0 || c.Shaped > c.Subscribers {
		return c, fmt.Errorf("%d shaped subscribers of %d", c.Shaped, c.Subscribers)
	}
	if c.Shaped > 0 && c.ShapedRate <= 0 {
		return c, errors.New("shaped subscribers need a rate (ShapedRate, bit/s)")
	}
	if c.ShapedQueue <= 0 {
		c.ShapedQueue = 400 * time.Millisecond
	}
	if c.Width <= 0 || c.Height <= 0 {
		c.Width, c.Height = 640, 360
	}
	if c.FPS <= 0 {
		c.FPS = 30
	}
	if c.MediaDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		c.MediaDir = filepath.Join(dir, "parley-testmedia")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Duration, 30*time.Second)
	def(&c.Settle, 2*time.Second)
	def(&c.ReadyTimeout, 30*time.Second)
	def(&c.JoinTimeout, 15*time.Second)
	def(&c.Drain, time.Second)
	if c.RampRate <= 0 {
		c.RampRate = 10
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ClientLogger == nil {
		c.ClientLogger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Sessions is the number of sessions the run opens.
func (c Config) Sessions() int {
	rooms := max(c.Rooms, 1)
	return rooms * (c.VideoPublishers + c.AudioPublishers + c.Subscribers)
}

// MaxRunTime bounds a whole run of c: ramp-up, readiness, settle, window,
// drain and teardown, with margin. Run does not take longer.
func (c Config) MaxRunTime() time.Duration {
	c, err := c.withDefaults()
	if err != nil {
		return time.Minute
	}
	ramp := time.Duration(float64(c.Sessions()) / c.RampRate * float64(time.Second))
	// Publishers ramp and settle first, then subscribers.
	return 2*(ramp+c.ReadyTimeout+c.JoinTimeout) + c.Settle + c.Duration + c.Drain + 2*time.Minute
}
