package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/testmedia"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// mediaDuration is the length of the generated files; publishers loop them.
const mediaDuration = 10 * time.Second

// Session states.
const (
	stateStarting int32 = iota
	stateReady
	stateFailed
)

// session is one load client: a publisher, a subscriber or both.
type session struct {
	room, name string
	video      bool // publishes VP8 + Opus
	audio      bool // publishes Opus only
	subscribes bool
	shaped     bool // receives through a shaped link (shaper.go)
	expect     int  // remote tracks it must receive

	state     atomic.Int32
	published chan struct{} // closed when its stream is PUBLISHING, or it failed
	settled   chan struct{} // closed when it is ready or failed

	// Written by the session goroutine before settled is closed.
	c         *client.Client
	sh        *shaper // the shaped link's relays, for a shaped session
	pub       *client.Publication
	sent      []*sentTrack
	joinedAt  time.Time
	joinTime  time.Duration
	role      string // the role the server gave it (protocol.RoleViewer in a webinar)
	failStage string
	failErr   error

	mu     sync.Mutex
	tracks []*recvTrack
}

func (s *session) publishes() bool { return s.video || s.audio }

// mediaState returns "" when the session's peer connections are connected,
// else which one is not and its state.
func (s *session) mediaState() string {
	if s.pub != nil {
		if st := s.pub.PeerConnection().ConnectionState(); st != webrtc.PeerConnectionStateConnected {
			return "publish connection " + st.String()
		}
	}
	if s.expect > 0 {
		pc := s.c.SubscribePeerConnection()
		if pc == nil {
			return "no subscribe connection"
		}
		if st := pc.ConnectionState(); st != webrtc.PeerConnectionStateConnected {
			return "subscribe connection " + st.String()
		}
	}
	return ""
}

func (s *session) fail(stage string, err error) {
	s.failStage, s.failErr = stage, err
	s.state.Store(stateFailed)
}

func (s *session) trackList() []*recvTrack {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*recvTrack(nil), s.tracks...)
}

// engine runs one load test.
type engine struct {
	cfg     Config
	log     *slog.Logger
	base    time.Time
	win     window
	video   *client.Media
	layers  []*client.Media // simulcast: the layers, lowest first
	audio   *client.Media
	metrics *metricsClient

	sessions []*session
	wg       sync.WaitGroup
	phase    atomic.Value // string, for the progress line

	mu   sync.Mutex
	sent map[streamKey][]*sentTrack // a track's layers (one without simulcast)
}

// Run runs a load test as cfg describes and returns its report. It returns an
// error when the run could not be made (no media, no server, ctx ended); a
// run whose sessions fail or lose packets returns a report that says so
// (Report.Check). Every client it starts is closed before it returns.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("load test: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.MaxRunTime())
	defer cancel()
	e := &engine{cfg: cfg, log: cfg.Logger, sent: map[streamKey][]*sentTrack{}}
	e.phase.Store("media")
	if err := e.loadMedia(); err != nil {
		return nil, err
	}
	var baseline ServerSample
	if cfg.MetricsURL != "none" {
		e.metrics = newMetricsClient(cfg.MetricsURL)
		if baseline, err = e.metrics.scrape(ctx); err != nil {
			return nil, fmt.Errorf("load test: server metrics before the run (use MetricsURL \"none\" to run without): %w", err)
		}
	}
	e.base = time.Now()
	e.plan()

	sctx, stopSessions := context.WithCancel(ctx)
	progressDone := make(chan struct{})
	pctx, stopProgress := context.WithCancel(ctx)
	go func() {
		defer close(progressDone)
		e.progress(pctx)
	}()
	defer func() {
		stopProgress()
		<-progressDone
		stopSessions()
		e.wg.Wait()
	}()

	rep, err := e.run(ctx, sctx)
	if err != nil {
		return nil, err
	}
	rep.Server.Baseline = baseline
	rep.finish(e.cfg)
	return rep, nil
}

func (e *engine) loadMedia() error {
	o := testmedia.Options{Duration: mediaDuration, Width: e.cfg.Width, Height: e.cfg.Height,
		FPS: e.cfg.FPS, Bitrate: e.cfg.VideoBitrate}
	if e.cfg.VideoPublishers > 0 && !e.cfg.Simulcast {
		p, err := testmedia.VP8IVF(e.cfg.MediaDir, o)
		if err != nil {
			return fmt.Errorf("load test: video media: %w", err)
		}
		if e.video, err = client.LoadIVF(p); err != nil {
			return fmt.Errorf("load test: %w", err)
		}
	}
	if e.cfg.VideoPublishers > 0 && e.cfg.Simulcast {
		for _, l := range simulcastLayers(o) {
			p, err := testmedia.VP8IVF(e.cfg.MediaDir, l)
			if err != nil {
				return fmt.Errorf("load test: video media: %w", err)
			}
			m, err := client.LoadIVF(p)
			if err != nil {
				return fmt.Errorf("load test: %w", err)
			}
			e.layers = append(e.layers, m)
		}
	}
	p, err := testmedia.OpusOgg(e.cfg.MediaDir, testmedia.Options{Duration: mediaDuration})
	if err != nil {
		return fmt.Errorf("load test: audio media: %w", err)
	}
	if e.audio, err = client.LoadOpus(p); err != nil {
		return fmt.Errorf("load test: %w", err)
	}
	return nil
}

// plan lays out the sessions: per room, video publishers, audio publishers,
// then subscribers.
func (e *engine) plan() {
	c := e.cfg
	tracks := 2*c.VideoPublishers + c.AudioPublishers
	for r := range c.Rooms {
		room := fmt.Sprintf("load-%d", r+1)
		add := func(name string, video, audio, subscribes bool, own int) {
			s := &session{room: room, name: name, video: video, audio: audio, subscribes: subscribes,
				published: make(chan struct{}), settled: make(chan struct{})}
			if subscribes {
				s.expect = tracks - own
			}
			e.sessions = append(e.sessions, s)
		}
		for i := range c.VideoPublishers {
			add(fmt.Sprintf("video-%d", i+1), true, false, c.PublishersSubscribe, 2)
		}
		for i := range c.AudioPublishers {
			add(fmt.Sprintf("audio-%d", i+1), false, true, c.PublishersSubscribe, 1)
		}
		for i := range c.Subscribers {
			if i < c.Shaped {
				add(fmt.Sprintf("shaped-%d", i+1), false, false, true, 0)
				e.sessions[len(e.sessions)-1].shaped = true
				continue
			}
			add(fmt.Sprintf("sub-%d", i+1), false, false, true, 0)
		}
	}
}

// run ramps the sessions up, measures the window and collects the figures.
func (e *engine) run(ctx, sctx context.Context) (*Report, error) {
	var pubs, subs []*session
	for _, s := range e.sessions {
		if s.publishes() {
			pubs = append(pubs, s)
		} else {
			subs = append(subs, s)
		}
	}
	sem := make(chan struct{}, e.cfg.MaxInFlight)
	var lastLaunch atomic.Int64
	launch := func(list []*session) error {
		interval := time.Duration(float64(time.Second) / e.cfg.RampRate)
		next := time.Now()
		for _, s := range list {
			if err := sleepUntil(ctx, next); err != nil {
				return err
			}
			next = next.Add(interval)
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return fmt.Errorf("load test: ramp-up: %w", ctx.Err())
			}
			lastLaunch.Store(int64(time.Since(e.base)))
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				e.runSession(sctx, s, sem, &lastLaunch)
			}()
		}
		return nil
	}
	e.phase.Store("ramp-up publishers")
	if err := launch(pubs); err != nil {
		return nil, err
	}
	for _, s := range pubs {
		select {
		case <-s.published:
		case <-ctx.Done():
			return nil, fmt.Errorf("load test: waiting for publishers: %w", ctx.Err())
		}
	}
	e.phase.Store("ramp-up")
	if err := launch(subs); err != nil {
		return nil, err
	}
	for _, s := range e.sessions {
		select {
		case <-s.settled:
		case <-ctx.Done():
			return nil, fmt.Errorf("load test: waiting for sessions: %w", ctx.Err())
		}
	}
	e.phase.Store("settle")
	if err := sleepUntil(ctx, time.Now().Add(e.cfg.Settle)); err != nil {
		return nil, err
	}

	// The window: receivers of ready sessions are measured; both ends are
	// set before it opens.
	for _, s := range e.sessions {
		if s.state.Load() == stateReady {
			for _, r := range s.trackList() {
				r.measured.Store(true)
			}
		}
	}
	start := time.Since(e.base) + 200*time.Millisecond
	e.win.set(start, start+e.cfg.Duration)
	rep := &Report{}
	if err := sleepUntil(ctx, e.base.Add(start)); err != nil {
		return nil, err
	}
	e.phase.Store("measure")
	if e.cfg.OnWindow != nil {
		e.cfg.OnWindow(true)
	}
	before := e.snapshot(ctx)
	err := sleepUntil(ctx, e.base.Add(start+e.cfg.Duration))
	if e.cfg.OnWindow != nil {
		e.cfg.OnWindow(false)
	}
	if err != nil {
		return nil, err
	}
	after := e.snapshot(ctx)
	e.phase.Store("drain")
	if err := sleepUntil(ctx, time.Now().Add(e.cfg.Drain)); err != nil {
		return nil, err
	}
	drained := readUDPCounters()
	if before.udp.ok && drained.ok {
		rep.HostUDP = &UDPErrors{InErrors: drained.InErrors - before.udp.InErrors,
			RcvbufErrors: drained.RcvbufErrors - before.udp.RcvbufErrors, SndbufErrors: drained.SndbufErrors - before.udp.SndbufErrors}
	}
	e.collect(rep, before, after)
	e.phase.Store("teardown")
	return rep, nil
}

// counters are taken at both ends of the window.
type counters struct {
	server    ServerSample
	serverErr error
	self      time.Duration
	at        time.Time
	load      float64
	udp       udpCounters
	plis      map[*sentTrack]int64
	nacks     map[*sentTrack]int64
}

func (e *engine) snapshot(ctx context.Context) counters {
	c := counters{at: time.Now(), self: selfCPU(), load: loadAverage(), udp: readUDPCounters(),
		plis: map[*sentTrack]int64{}, nacks: map[*sentTrack]int64{}}
	if e.metrics != nil {
		c.server, c.serverErr = e.metrics.scrape(ctx)
	}
	for _, s := range e.sessions {
		if s.pub == nil || s.state.Load() == stateStarting {
			continue
		}
		for _, st := range s.sent {
			if st.rid != "" {
				c.plis[st] = s.pub.LayerKeyframeRequests(st.rid)
				c.nacks[st] = s.pub.LayerNACKs(st.rid)
				continue
			}
			c.plis[st] = s.pub.KeyframeRequests(st.kind)
			c.nacks[st] = s.pub.NACKs(st.kind)
		}
	}
	return c
}

// runSession connects one session and keeps it until sctx ends.
func (e *engine) runSession(sctx context.Context, s *session, sem chan struct{}, lastLaunch *atomic.Int64) {
	release := sync.OnceFunc(func() { <-sem })
	published := sync.OnceFunc(func() { close(s.published) })
	settled := sync.OnceFunc(func() { close(s.settled) })
	defer func() {
		release()
		published()
		settled()
	}()

	jctx, cancel := context.WithTimeout(sctx, e.cfg.JoinTimeout)
	defer cancel()
	start := time.Now()
	opts := client.Options{
		Username: s.name, LightReceiver: true, NegotiateNACK: !e.cfg.NoNACK, StampArrivals: !e.cfg.NoSocketStamps,
		Logger:        e.cfg.ClientLogger.With("session", s.room+"/"+s.name),
		OnRemoteTrack: func(rt *client.RemoteTrack) client.PacketReceivedFunc { return e.onRemoteTrack(s, rt) },
	}
	if len(e.cfg.TokenKey.Secret) > 0 && s.publishes() {
		tok, err := auth.Sign(e.cfg.TokenKey, auth.Spec{Identity: s.room + "/" + s.name, Name: s.name, Room: s.room,
			Grants: auth.MustParseGrants("publish", "subscribe"), TTL: time.Hour})
		if err != nil {
			s.fail("dial", err)
			return
		}
		opts.Token = tok
	}
	if s.shaped {
		s.sh = newShaper(sctx, e.cfg.ShapedRate, e.cfg.ShapedQueue)
		defer s.sh.close() // after the client (deferred later, so run first)
		opts.ICE = s.sh.ice()
	}
	c, err := client.Dial(jctx, e.cfg.URL, opts)
	if err != nil {
		s.fail("dial", err)
		return
	}
	defer c.Close()
	s.c = c
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for range c.Events() { // drained, so the client's event list stays short
		}
	}()
	sub := s.subscribes
	st, err := c.Join(jctx, client.JoinOptions{Room: s.room, Subscribe: &sub})
	if err != nil {
		s.fail("join", err)
		return
	}
	s.role = st.Role
	s.joinedAt = time.Now()
	s.joinTime = s.joinedAt.Sub(start)

	if s.publishes() {
		if err := e.publish(sctx, jctx, s); err != nil {
			s.fail("publish", err)
			return
		}
		release()
		wctx, wcancel := context.WithTimeout(sctx, e.cfg.ReadyTimeout)
		err := s.pub.WaitStatus(wctx, protocol.StreamPublishing)
		wcancel()
		if err != nil {
			s.fail("publishing", err)
			return
		}
		published()
	}
	release()
	if stage, err := e.waitReady(sctx, s, lastLaunch); err != nil {
		s.fail(stage, err)
		return
	}
	s.state.Store(stateReady)
	settled()
	<-sctx.Done()
}

// publish publishes the session's stream; jctx bounds the request, sctx the pumps.
func (e *engine) publish(sctx, jctx context.Context, s *session) error {
	o := client.PublishOptions{Audio: e.audio.NewSource(true)}
	labels := []string{"audio"}
	if s.video && len(e.layers) > 0 {
		for i, m := range e.layers {
			o.Simulcast = append(o.Simulcast, m.NewSource(true))
			labels = append(labels, "video:"+layerRIDs[i])
		}
	} else if s.video {
		o.Video = e.video.NewSource(true)
		labels = append(labels, "video")
	}
	byLabel := map[string]*sentTrack{}
	for _, l := range labels {
		kind, rid, _ := strings.Cut(l, ":")
		st := &sentTrack{room: s.room, publisher: s.name, kind: kind, rid: rid, base: e.base, win: &e.win}
		byLabel[l] = st
		s.sent = append(s.sent, st)
	}
	o.OnPacketSent = func(label string, pkt *rtp.Packet, at time.Time) {
		if st := byLabel[label]; st != nil {
			st.record(pkt, at)
		}
	}
	// Publish's context also runs the pumps, so it is the session's; the
	// request itself is bounded by closing the client at the join timeout.
	done := make(chan struct{})
	defer close(done)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		select {
		case <-jctx.Done():
			_ = s.c.Close()
		case <-done:
		}
	}()
	pub, err := s.c.Publish(sctx, o)
	if err != nil {
		return err
	}
	s.pub = pub
	e.mu.Lock()
	for _, st := range s.sent {
		st.streamID = pub.ID()
		k := streamKey{pub.ID(), st.kind}
		e.sent[k] = append(e.sent[k], st)
	}
	e.mu.Unlock()
	return nil
}

// lookupSent returns the layers of a published track (one without simulcast).
func (e *engine) lookupSent(k streamKey) []*sentTrack {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sent[k]
}

// layerRIDs name the simulcast layers, lowest first (as pkg/client sends them).
var layerRIDs = []string{"q", "h", "f"}

// simulcastLayers are the media options of the three layers of o.
func simulcastLayers(o testmedia.Options) []testmedia.Options {
	out := make([]testmedia.Options, 3)
	for i, div := range []int{4, 2, 1} {
		l := o
		l.Width, l.Height = o.Width/div&^1, o.Height/div&^1
		l.Bitrate = []int{o.Bitrate / 8, o.Bitrate / 3, o.Bitrate}[i]
		out[i] = l
	}
	return out
}

// onRemoteTrack is the session's client.Options.OnRemoteTrack.
func (e *engine) onRemoteTrack(s *session, rt *client.RemoteTrack) client.PacketReceivedFunc {
	r := &recvTrack{
		key: streamKey{rt.StreamID(), rt.Kind()}, clock: float64(rt.Track().Codec().ClockRate),
		base: e.base, win: &e.win, lookup: e.lookupSent, rt: rt, shaped: s.shaped,
	}
	if r.clock <= 0 {
		r.clock = 90000
	}
	s.mu.Lock()
	s.tracks = append(s.tracks, r)
	s.mu.Unlock()
	return r.observe
}

// waitReady waits until the session receives every track of its room, each
// with a first frame (video: a keyframe start), or the deadline: ReadyTimeout
// after the last session started.
func (e *engine) waitReady(ctx context.Context, s *session, lastLaunch *atomic.Int64) (string, error) {
	if s.expect == 0 {
		return "", nil
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		tracks := s.trackList()
		if len(tracks) >= s.expect {
			media := true
			for _, r := range tracks {
				if r.firstMedia().IsZero() {
					media = false
					break
				}
			}
			if media {
				return "", nil
			}
		}
		if time.Since(e.base) > time.Duration(lastLaunch.Load())+e.cfg.ReadyTimeout {
			if len(tracks) < s.expect {
				return "tracks", fmt.Errorf("received %d of %d tracks", len(tracks), s.expect)
			}
			return "media", errors.New("a track has no first frame")
		}
		select {
		case <-tick.C:
		case <-s.c.Done():
			return "session", fmt.Errorf("session ended: %w", s.c.Err())
		case <-ctx.Done():
			return "canceled", ctx.Err()
		}
	}
}

// sleepUntil waits until t or ctx ends.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("load test: %w", err)
		}
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("load test: %w", ctx.Err())
	}
}
