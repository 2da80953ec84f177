package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/bwe"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/queue"
	"github.com/parley/parley/pkg/srtpkeys"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// streamState is what a subscriber knows of one remote stream.
type streamState struct {
	publisher   string
	expected    int      // tracks the stream has
	tracks      int      // supported tracks in the connection
	unsupported []string // MIME types this subscriber cannot decode
	negotiated  bool     // the tracks are in an answered offer
	status      string   // last status reported
	reason      string
	videoPaused bool // the allocation paused its video (alloc.go)
}

// subscriber is a participant's subscribe connection: the SFU offers, the
// client answers, and offers are serialized (one outstanding at a time), so
// there is no glare. Its media is written by its writer (writers.go), one
// pass at a time: the only code that writes media to the connection.
type subscriber struct {
	peer *Peer
	log  *slog.Logger

	queue  *queue.FIFO[queued]
	writer *writer
	// scheduled says the subscriber is on its writer's ready list.
	scheduled atomic.Bool
	// writeMu is held while the writer writes to this subscriber; close
	// takes it to wait for a pass in progress.
	writeMu sync.Mutex
	sent    atomic.Uint64
	dropped atomic.Uint64
	wg      sync.WaitGroup // the tracks' RTCP readers

	// NACKs from the tracks' RTCP readers, for the writer to answer
	// (downTrack.resend): the writer owns the sequence numbering.
	nackMu        sync.Mutex
	nacks, spare  []pendingNACK
	nackPending   atomic.Bool
	nacked        atomic.Uint64 // sequence numbers the subscriber NACKed
	retransmitted atomic.Uint64 // packets sent again for them
	// NACKed packets not sent again: too old to arrive in time, or over
	// the retransmission budget.
	rtxLate, rtxOver atomic.Uint64
	sentBytes        atomic.Uint64 // payload bytes sent

	// bwe estimates the connection's bandwidth from the receiver's
	// feedback; the writer stamps each packet with the next transport-wide
	// sequence number (twccSeq) and reports it sent.
	bwe       *bwe.Estimator
	twccSeq   uint16     // the writer's
	wireBytes int64      // the writer's: bytes sent, headers and padding included
	rtx       rtxBudget  // the writer's
	probe     probeState // the writer's
	// wanted is what the subscriber would receive if its estimate
	// allowed, bits/s (the layer allocation sets it; 0: nothing held back).
	wanted atomic.Int64
	probed atomic.Uint64 // padding packets sent to probe
	alloc  allocState

	// out is how RTP leaves (direct.go): nil until the connection is up.
	out atomic.Pointer[sendPath]
	// keys captures the connection's DTLS secrets, for srtp.
	keys *srtpkeys.Capture
	// pathMu orders changes of out; srtp, pionOnly and pathClosed are
	// under it. pionOnly says RTP goes through pion's SRTP session for the
	// connection's life (pionPath is that path).
	pathMu     sync.Mutex
	srtp       *srtp.Context
	pionOnly   bool
	pionPath   *sendPath
	pathClosed bool
	// guard refuses pion's path while RTP goes directly (pathhealth.go).
	guard *pionGuard
	// progressAt is when the receiver last showed it receives what is
	// sent (unix ns); health is the writer's check of it (pathhealth.go).
	progressAt atomic.Int64
	consented  atomic.Bool // the connection is connected
	health     pathHealth
	// observe takes the figures of its receiver reports (quality.go).
	observe *QualityObservers

	mu          sync.Mutex
	pc          *webrtc.PeerConnection
	tracks      map[*forwarder]*downTrack
	streams     map[string]*streamState
	negotiating bool
	pending     bool
	restart     bool
	closed      bool
	refusals    int // answers refused in a row (negotiation.go)
	// decoders is what the client decodes: its declaration, narrowed by
	// its answers (h264profile.go).
	decoders decoderSet
	// early holds the client's candidates that arrived before its answer
	// (a client trickles as soon as it sets its answer, so they can overtake
	// it); they are applied once the answer is.
	early []webrtc.ICECandidateInit

	// sigMu orders the offer before the candidates gathered for it.
	sigMu sync.Mutex
}

func newSubscriber(peer *Peer, queueSize int) *subscriber {
	return &subscriber{
		peer:     peer,
		log:      peer.log,
		queue:    queue.New[queued](queueSize),
		writer:   peer.router.writers.assign(),
		tracks:   make(map[*forwarder]*downTrack),
		streams:  make(map[string]*streamState),
		bwe:      bwe.New(peer.router.engine.cfg.Estimate, time.Now()),
		decoders: decoderSet{declared: peer.codecs},
		observe:  &peer.router.engine.cfg.Quality,
	}
}

// writeBatch is how many queued packets the writer takes at a time.
const writeBatch = 64

// pendingNACK is a NACKed range of one of the subscriber's tracks.
type pendingNACK struct {
	d    *downTrack
	pair rtcp.NackPair
}

// maxPendingNACKs bounds the NACKed ranges waiting for the writer (each
// names up to 17 packets); a subscriber NACKing faster than its writer
// answers loses the excess, and asks again.
const maxPendingNACKs = 64

// queueNACK hands NACKed ranges of d to the writer.
func (s *subscriber) queueNACK(d *downTrack, pairs []rtcp.NackPair) {
	s.nackMu.Lock()
	for _, pr := range pairs {
		s.nacked.Add(uint64(1 + bits.OnesCount16(uint16(pr.LostPackets))))
		if len(s.nacks) == maxPendingNACKs {
			continue
		}
		if s.nacks == nil {
			s.nacks = make([]pendingNACK, 0, maxPendingNACKs)
		}
		s.nacks = append(s.nacks, pendingNACK{d: d, pair: pr})
	}
	s.nackMu.Unlock()
	s.nackPending.Store(true)
	s.wake()
}

// answerNACKs sends again what the subscriber NACKed, before its queued
// packets (the receiver is waiting for these), and reports how many packets
// went out. Only the writer calls it.
func (s *subscriber) answerNACKs(now time.Time, sc *sendScratch) int {
	s.nackMu.Lock()
	list := s.nacks
	s.nacks, s.spare = s.spare[:0], nil
	s.nackMu.Unlock()
	n := 0
	for i, pn := range list {
		n += pn.d.resend(pn.pair, now, sc)
		list[i] = pendingNACK{}
	}
	s.retransmitted.Add(uint64(n))
	s.nackMu.Lock()
	s.spare = list[:0]
	s.nackMu.Unlock()
	return n
}

// push queues q. With wake, the subscriber is marked ready on its writer,
// which its caller then wakes (a forwarder wakes the writers once per frame,
// after queueing it to every subscriber). It reports false when the queue is
// full (or closed): the writer is woken to send what is queued.
func (s *subscriber) push(q queued, wake bool) bool {
	if !s.queue.Push(q) {
		s.wake()
		return false
	}
	if wake {
		s.writer.schedule(s)
	}
	return true
}

// wake marks the subscriber ready and wakes its writer now.
func (s *subscriber) wake() {
	s.writer.schedule(s)
	s.writer.signal()
}

// writeQueued writes everything queued, batch by batch, at now (the pass's
// time), and reports how many packets it took, whether the last one left a
// video frame open and when the first one arrived. Only the subscriber's
// writer calls it, with its scratch buffer.
func (s *subscriber) writeQueued(batch []queued, now time.Time, sc *sendScratch) (n int, frameOpen bool, oldest time.Time) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.nackPending.Swap(false) {
		n += s.answerNACKs(now, sc)
	}
	for {
		batch = s.queue.Drain(batch[:0])
		if len(batch) == 0 {
			return n, frameOpen, oldest
		}
		if out := s.out.Load(); out != nil && now.Sub(s.health.checked) >= time.Second {
			s.checkProgress(out, now)
		}
		n += len(batch)
		if oldest.IsZero() {
			oldest = batch[0].p.arrived
		}
		for i, q := range batch {
			q.d.write(q.p, now, sc)
			frameOpen = q.d.fwd.kind == webrtc.RTPCodecTypeVideo && !q.p.hdr.Marker && !q.p.padding
			q.p.release()
			batch[i] = queued{}
		}
	}
}

func (s *subscriber) ensurePCLocked() error {
	if s.pc != nil {
		return nil
	}
	s.keys = &srtpkeys.Capture{}
	s.guard = &pionGuard{out: &s.out, refused: &s.peer.router.engine.guardRefused}
	pc, err := s.peer.router.engine.subAPI(s.keys, s.guard).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return fmt.Errorf("new subscribe connection: %w", err)
	}
	ice := pc.SCTP().Transport().ICETransport()
	ice.OnSelectedCandidatePairChange(func(pair *webrtc.ICECandidatePair) {
		s.reroute(ice, pair, false)
	})
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		// pion calls this synchronously inside SetLocalDescription (under
		// sigMu) for pooled candidates, which there are none of (no
		// ICECandidatePoolSize), and for the nil that ends gathering, which
		// returns here: only candidates gathered later take sigMu, and so
		// go out after the offer they belong to (negotiateLocked holds
		// sigMu from CreateOffer, where an ICE restart gathers, until the
		// offer is sent).
		if c == nil {
			return
		}
		s.sigMu.Lock()
		defer s.sigMu.Unlock()
		s.peer.signal().Candidate(protocol.TargetSubscribe, "", c.ToJSON())
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.log.Debug("subscribe connection", "state", st.String())
		// The progress check holds off while the client's consent is in
		// doubt: no sign of progress is expected then.
		s.consented.Store(st == webrtc.PeerConnectionStateConnected)
		if st == webrtc.PeerConnectionStateFailed {
			s.stopSending()
		}
		if st == webrtc.PeerConnectionStateConnected {
			pair, err := ice.GetSelectedCandidatePair()
			if err != nil {
				s.log.Debug("selected candidate pair", "err", err)
			}
			s.reroute(ice, pair, true)
			// Video written before SRTP was up was dropped (and kept each
			// track's gate shut), or lost while the path was down: ask
			// for fresh keyframes.
			s.refreshVideo()
		}
	})
	s.pc = pc
	return nil
}

// reroute sends the connection's RTP on pair from now on (and again after
// ICE failed). The first time the connection is up (connected), it decides
// how RTP is sent: directly when its SRTP keys were recovered and the pair
// is on a socket of the SFU, through pion otherwise (direct.go). Pair
// changes before that are left to it.
func (s *subscriber) reroute(ice *webrtc.ICETransport, pair *webrtc.ICECandidatePair, connected bool) {
	p, ok := s.routeLocked(ice, pair, connected)
	if ok || p == nil {
		return
	}
	// No socket for the pair, and the direct path's context was used:
	// the fallback checks it under the writer's lock.
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.fallback(&s.peer.router.engine.fallbacksNoRoute, p) {
		s.refreshVideo()
	}
}

// routeLocked is reroute's part under pathMu. It reports false, with the
// path without a socket it stored, when the pair is on no socket of the SFU
// and the direct path's context was used already (else it falls back to
// pion's path at once).
func (s *subscriber) routeLocked(ice *webrtc.ICETransport, pair *webrtc.ICECandidatePair, connected bool) (p *sendPath, ok bool) {
	fresh := false
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	if s.pathClosed {
		return nil, true
	}
	if s.pionOnly {
		if connected && s.out.Load() == nil {
			s.out.Store(s.pionPath) // up again after ICE failed
		}
		return nil, true
	}
	if s.out.Load() == nil && !connected {
		return nil, true // not up yet, or failed and not up again
	}
	if s.srtp == nil {
		ctx, err := s.localContext()
		if err != nil {
			s.log.Info("subscribe connection sends RTP through pion's SRTP session", "reason", err)
			s.pionOnly, s.pionPath = true, &sendPath{viaPion: true}
			s.out.Store(s.pionPath)
			return nil, true
		}
		s.srtp, fresh = ctx, true
	}
	params, err := ice.GetLocalParameters()
	if err != nil {
		s.log.Debug("local ICE parameters", "err", err)
	}
	p, err = s.peer.router.engine.route(pair, s.srtp, params.UsernameFragment)
	if err != nil {
		s.log.Warn("subscribe connection: its candidate pair is on no socket of the SFU; RTP goes through pion's SRTP session", "err", err)
		if fresh {
			s.peer.router.engine.fallbacksNoRoute.Add(1)
			s.pionOnly, s.pionPath = true, &sendPath{viaPion: true}
			s.out.Store(s.pionPath)
			return nil, true
		}
		s.out.Swap(p).close()
		return p, false
	}
	s.log.Debug("subscribe connection sends RTP directly", "local", pair.Local.String(), "remote", pair.Remote.String())
	s.out.Swap(p).close()
	return p, true
}

// localContext makes the SRTP context of the connection's keys (with
// Faults.WrongSRTPKeys, of keys that are not).
func (s *subscriber) localContext() (*srtp.Context, error) {
	k, err := s.keys.LocalKeys()
	if err != nil {
		return nil, err
	}
	if s.peer.router.engine.cfg.Faults.WrongSRTPKeys {
		for i := range k.MasterKey {
			k.MasterKey[i] ^= 0x5a
		}
	}
	ctx, err := srtp.CreateContext(k.MasterKey, k.MasterSalt, k.Profile)
	if err != nil {
		return nil, fmt.Errorf("SRTP context: %w", err)
	}
	return ctx, nil
}

// addForwarder starts sending f's track to this subscriber.
func (s *subscriber) addForwarder(f *forwarder, publisher string) {
	s.mu.Lock()
	added := s.addForwarderLocked(f, publisher)
	s.mu.Unlock()
	if added {
		s.reallocate()
	}
}

func (s *subscriber) addForwarderLocked(f *forwarder, publisher string) bool {
	if s.closed || s.tracks[f] != nil || f.isClosed() {
		return false
	}
	st := s.streams[f.streamID]
	if st == nil {
		st = &streamState{publisher: publisher}
		s.streams[f.streamID] = st
	}
	st.expected = max(st.expected, f.siblings)
	// The first status names every codec of the stream this client cannot
	// decode, including tracks whose first packet has not arrived yet.
	for _, c := range append([]string{f.codec.MimeType}, f.siblingCodecs...) {
		if c != "" && !canDecode(s.peer.codecs, c) && !slices.ContainsFunc(st.unsupported, func(u string) bool {
			return strings.EqualFold(u, c)
		}) {
			st.unsupported = append(st.unsupported, c)
		}
	}
	if !canDecode(s.peer.codecs, f.codec.MimeType) {
		s.tracks[f] = nil // known, not sent
		s.reportLocked()
		return false
	}
	if !s.decoders.decodes(f.codec) {
		// The MIME type, but not this configuration (an H.264 High
		// stream, and the client decodes Constrained Baseline only).
		s.tracks[f] = nil
		st.unsupported = append(st.unsupported, codecLabel(f.codec))
		s.reportLocked()
		return false
	}
	if err := s.ensurePCLocked(); err != nil {
		s.log.Error("subscribe connection", "err", err)
		return false
	}
	d := newDownTrack(f, s)
	sender, err := s.pc.AddTrack(d)
	if err != nil {
		s.log.Error("add track to subscribe connection", "track", f.id, "err", err)
		return false
	}
	d.sender = sender
	if err := narrowCodecs(s.pc, sender, f.codec.MimeType); err != nil {
		s.log.Debug("subscribe offer keeps every codec", "track", f.id, "err", err)
	}
	s.tracks[f] = d
	st.tracks++
	st.negotiated = false
	// The lowest layer until the allocation (right after) picks one.
	d.setTarget(f.layers.list()[0])
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		d.readRTCP()
	}()
	s.negotiateLocked()
	return true
}

// removeForwarder stops sending f's track.
func (s *subscriber) removeForwarder(f *forwarder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, known := s.tracks[f]
	if !known {
		return
	}
	delete(s.tracks, f)
	st := s.streams[f.streamID]
	if d != nil {
		d.detachAll()
		if s.pc != nil && !s.closed {
			if err := s.pc.RemoveTrack(d.sender); err != nil {
				s.log.Debug("remove track", "track", f.id, "err", err)
			}
		}
		if st != nil {
			st.tracks--
		}
	}
	if st != nil && st.tracks == 0 && !s.streamHasTracksLocked(f.streamID) {
		delete(s.streams, f.streamID)
		if st.status != "" && st.status != protocol.StreamFailed && !s.closed {
			s.peer.signal().StreamStatus(st.publisher, f.streamID, protocol.StreamStopped, "")
		}
	}
	if d != nil {
		s.negotiateLocked()
	}
}

func (s *subscriber) streamHasTracksLocked(streamID string) bool {
	for f := range s.tracks {
		if f.streamID == streamID {
			return true
		}
	}
	return false
}

// negotiateLocked sends a new offer, or marks one as due once the
// outstanding offer is answered.
func (s *subscriber) negotiateLocked() {
	if s.pc == nil || s.closed || s.pc.ConnectionState() == webrtc.PeerConnectionStateClosed {
		return
	}
	if s.negotiating {
		s.pending = true
		return
	}
	// sigMu is taken before the offer is made: with ICERestart, pion
	// restarts the ICE agent and gathers its new candidates inside
	// CreateOffer, and trickling one of them before the offer would give
	// the client a candidate of credentials it does not know yet (a
	// browser refuses it, pion adds it to the old generation and drops it
	// at the restart), leaving the restarted ICE nothing to check.
	s.sigMu.Lock()
	defer s.sigMu.Unlock()
	offer, err := s.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: s.restart})
	if errors.Is(err, webrtc.ErrConnectionClosed) {
		// Closing: pion marks the connection closed before its state says so.
		s.log.Debug("no subscribe offer: the connection is closing")
		return
	}
	if err != nil {
		s.log.Error("create subscribe offer", "err", err)
		return
	}
	s.restart = false
	if err := s.pc.SetLocalDescription(offer); err != nil {
		s.log.Error("set subscribe offer", "err", err)
		return
	}
	s.negotiating = true
	s.peer.signal().SubscribeOffer(offer.SDP, s.streamMapLocked())
}

func (s *subscriber) streamMapLocked() map[string]string {
	m := make(map[string]string, len(s.streams))
	for id, st := range s.streams {
		if st.tracks > 0 {
			m[id] = st.publisher
		}
	}
	return m
}

// handleAnswer applies the client's answer to the outstanding offer.
func (s *subscriber) handleAnswer(sdp string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pc == nil || !s.negotiating {
		return &protocol.Error{Code: protocol.CodeInvalidSDP, Reason: "no subscribe offer is waiting for an answer"}
	}
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		return &protocol.Error{Code: protocol.CodeInvalidSDP, Reason: "the answer does not fit the offer: " + err.Error()}
	}
	s.negotiating = false
	s.refusals = 0
	s.decoders.answered = answeredCodecs(sdp)
	s.dropRefusedLocked()
	for _, c := range s.early {
		if err := s.pc.AddICECandidate(c); err != nil {
			s.log.Debug("early subscribe candidate refused", "err", err)
		}
	}
	s.early = nil
	for _, st := range s.streams {
		st.negotiated = true
	}
	s.reportLocked()
	if s.pending {
		s.pending = false
		s.negotiateLocked()
	}
	return nil
}

// dropRefusedLocked takes out of the connection the tracks that no codec of
// the answer can carry (downTrack.Bind refused them: an H.264 profile the
// client does not decode): the stream is reported with the reason, and the
// next offer leaves the track out.
func (s *subscriber) dropRefusedLocked() {
	for f, d := range s.tracks {
		if d == nil || !d.refused.Load() {
			continue
		}
		d.detachAll()
		if err := s.pc.RemoveTrack(d.sender); err != nil {
			s.log.Debug("remove refused track", "track", f.id, "err", err)
		}
		s.tracks[f] = nil
		if st := s.streams[f.streamID]; st != nil {
			st.tracks--
			st.unsupported = append(st.unsupported, codecLabel(f.codec))
		}
		s.log.Info("track not sent: the client's answer has no codec that carries it", "track", f.id, "codec", codecLabel(f.codec))
		s.pending = true
	}
}

// decodes reports whether the client decodes a stream of codec c, as far
// as its declaration and answers tell.
func (s *subscriber) decodes(c webrtc.RTPCodecCapability) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.decoders.decodes(c)
}

// reportLocked sends each stream's status when it changed: PLAYING once its
// tracks are negotiated (with a reason when a track cannot be decoded here),
// FAILED when none of its tracks can be.
func (s *subscriber) reportLocked() {
	for id, st := range s.streams {
		status, reason := "", ""
		switch {
		case st.tracks == 0 && len(st.unsupported) > 0 && len(st.unsupported) >= st.expected:
			// Only once every track of the stream is known: an audio track
			// that arrives after an undecodable video one still plays.
			status, reason = protocol.StreamFailed, "this client cannot decode "+strings.Join(st.unsupported, ", ")
		case st.tracks > 0 && st.negotiated:
			status = protocol.StreamPlaying
			if len(st.unsupported) > 0 {
				reason = "not shown: this client cannot decode " + strings.Join(st.unsupported, ", ")
			}
		default:
			continue
		}
		if status != st.status || reason != st.reason {
			st.status, st.reason = status, reason
			s.peer.signal().StreamStatus(st.publisher, id, status, reason)
		}
	}
}

// refreshVideo asks the publishers of this subscriber's video for keyframes.
// It leaves each track's keyframe gate as it is: a gate opens only on a
// keyframe that really went out over SRTP, so an open gate means the
// subscriber has a decodable stream, and shutting it would drop good frames
// (the connection can report Connected after the first frames went out).
func (s *subscriber) refreshVideo() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for f, d := range s.tracks {
		if d == nil || f.kind != webrtc.RTPCodecTypeVideo {
			continue
		}
		if t := d.target.Load(); t != nil {
			t.requestKeyframe()
		}
	}
}

// restartICE re-offers with new ICE credentials.
func (s *subscriber) restartICE() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pc == nil {
		return
	}
	s.restart = true
	s.negotiateLocked()
}

// resendOffer repeats an unanswered offer to a resumed session.
func (s *subscriber) resendOffer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pc == nil || !s.negotiating {
		return
	}
	if ld := s.pc.LocalDescription(); ld != nil {
		s.sigMu.Lock()
		s.peer.signal().SubscribeOffer(ld.SDP, s.streamMapLocked())
		s.sigMu.Unlock()
	}
}

// maxEarlyCandidates bounds the candidates kept while an answer is awaited.
const maxEarlyCandidates = 64

func (s *subscriber) addCandidate(c webrtc.ICECandidateInit) error {
	s.mu.Lock()
	pc := s.pc
	if pc != nil && s.negotiating {
		defer s.mu.Unlock()
		if len(s.early) >= maxEarlyCandidates {
			return &protocol.Error{Code: protocol.CodeTooLarge, Reason: "too many candidates before the answer"}
		}
		s.early = append(s.early, c)
		return nil
	}
	s.mu.Unlock()
	if pc == nil {
		return &protocol.Error{Code: protocol.CodeBadRequest, Reason: "there is no subscribe connection yet"}
	}
	if err := pc.AddICECandidate(c); err != nil {
		return &protocol.Error{Code: protocol.CodeBadRequest, Reason: "bad ICE candidate: " + err.Error()}
	}
	return nil
}

// close stops forwarding and closes the connection; it waits for a write
// in progress.
func (s *subscriber) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for _, d := range s.tracks {
		if d != nil {
			d.detachAll()
		}
	}
	pc := s.pc
	s.mu.Unlock()
	if pc != nil {
		if err := pc.Close(); err != nil {
			s.log.Debug("close subscribe connection", "err", err)
		}
	}
	s.stopWriting()
	s.pathMu.Lock()
	s.pathClosed = true
	s.out.Swap(nil).close()
	s.pathMu.Unlock()
	s.wg.Wait()
	s.peer.router.writers.release(s.writer)
	s.peer.router.engine.retire(s.stats())
}

// stopWriting lets the queued packets go and waits for a write in progress:
// nothing is written, or counted, after it returns.
func (s *subscriber) stopWriting() {
	for _, q := range s.queue.Close(nil) {
		q.p.release()
	}
	s.writeMu.Lock()
	s.writeMu.Unlock() //nolint:staticcheck // an empty critical section: waits for the writer
}

// stats returns the subscriber's packet counters.
func (s *subscriber) stats() Stats {
	return Stats{Forwarded: s.sent.Load(), Dropped: s.dropped.Load(), NACKed: s.nacked.Load(),
		Retransmitted: s.retransmitted.Load(), RetransmitLate: s.rtxLate.Load(), RetransmitOverBudget: s.rtxOver.Load()}
}

// probeState is the writer's probe cluster in progress, if any.
type probeState struct {
	cluster uint8     // 0: none
	goal    int       // bits/s to pad up to
	start   time.Time // when the cluster began
	until   time.Time // when it ends
	base    int64     // wireBytes when it began
	asked   time.Time // when the estimator was last asked for a cluster
}

// probeAsk is how often a writer asks the estimator whether to probe.
const probeAsk = 100 * time.Millisecond

// probeMaxPad bounds the padding packets sent after one frame.
const probeMaxPad = 40

// probePad pads the subscriber's traffic up to a probe cluster's rate: when
// the subscriber receives less than it wants (wanted, set by the layer
// allocation), the estimator may start a cluster; its padding goes out on
// d right after the end of one of d's frames (padding inside a frame could
// split it for a receiver), with numbers of its own (rewriter.insert).
// Only the writer calls it.
func (s *subscriber) probePad(d *downTrack, b *binding, out *sendPath, now time.Time, sc *sendScratch) {
	p := &s.probe
	if p.cluster == 0 {
		w := s.wanted.Load()
		if w == 0 || now.Sub(p.asked) < probeAsk {
			return
		}
		p.asked = now
		c, goal := s.bwe.Probe(int(w), now)
		if c == 0 {
			return
		}
		*p = probeState{cluster: c, goal: goal, start: now, until: now.Add(bwe.ProbeDuration), base: s.wireBytes, asked: now}
	}
	// What the cluster is due by the next frame (about 20 ms ahead, so its
	// rate is met between frames), less what went out since it began.
	due := int64(float64(p.goal)/8*(now.Sub(p.start)+20*time.Millisecond).Seconds()) - (s.wireBytes - p.base)
	for n := 0; due > 0 && n < probeMaxPad; n++ {
		seq, ts, ok := d.rw.insert()
		if !ok {
			break
		}
		d.hdr = rtp.Header{Version: 2, Padding: true, PaddingSize: 255, SequenceNumber: seq, Timestamp: ts,
			SSRC: b.ssrc, PayloadType: b.pt, Extensions: d.extBuf[:0]}
		before := s.wireBytes
		if !d.sendRTP(b, out, nil, now, sc) {
			break
		}
		s.probed.Add(1)
		due -= s.wireBytes - before
	}
	if !now.Before(p.until) {
		s.bwe.EndProbe(p.cluster, now)
		p.cluster = 0
	}
}

// SubscriberStats describe one subscribe connection.
type SubscriberStats struct {
	// Session is the room session, Participant the subscriber's name.
	Session, Participant string
	// Direct says its RTP goes on the direct send path (else through
	// pion's SRTP session; neither before the connection is up).
	Direct bool
	// Path is how its RTP leaves now: "direct", "pion", or "none" (not up
	// yet, ICE failed, or its pair is on no socket of the SFU).
	Path string
	// Estimate is the connection's bandwidth estimate.
	Estimate bwe.Stats
	// Counters are the connection's packet counters.
	Counters Stats
	// SentBytes counts the payload bytes sent.
	SentBytes uint64
	// Probes counts the padding packets sent to probe the link.
	Probes uint64
	// Tracks are the tracks it receives.
	Tracks []TrackStats
}

// TrackStats describe a track as one subscriber receives it, from its
// receiver reports.
type TrackStats struct {
	StreamID, Kind string
	// FractionLost is the loss over the last report's interval.
	FractionLost float64
	// TotalLost counts the packets the receiver misses in all.
	TotalLost int
	// Jitter is the interarrival jitter the receiver measured.
	Jitter time.Duration
	// RTT is the round trip measured from its last report (0: none yet).
	RTT time.Duration
	// Reports counts the receiver reports about the track.
	Reports uint64
	// Layer is the simulcast layer sent ("" without simulcast or while
	// nothing is sent); TemporalLayers how many of its temporal layers
	// are sent (0: all, or it has none), and FrameRate the frame rate
	// that makes, as measured from the publisher's stream (0: not
	// measured; only for streams with temporal layer ids).
	Layer          string
	TemporalLayers int
	FrameRate      float64
	// SpatialLayers is how many of the stream's spatial layers are sent
	// (0: all, or it has none), and Width and Height the picture size of
	// the top one sent (0: not known).
	SpatialLayers int
	Width, Height int
}

func (s *subscriber) snapshot(session, name string) SubscriberStats {
	st := SubscriberStats{Session: session, Participant: name, Estimate: s.bwe.Stats(), Counters: s.stats(),
		SentBytes: s.sentBytes.Load(), Probes: s.probed.Load()}
	switch out := s.out.Load(); {
	case out == nil:
		st.Path = "none"
	case out.viaPion:
		st.Path = "pion"
	case out.udp == nil && out.tcp == nil:
		st.Path = "none"
	default:
		st.Direct, st.Path = true, "direct"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for f, d := range s.tracks {
		if d == nil {
			continue
		}
		ts := TrackStats{StreamID: f.streamID, Kind: f.kind.String(), FractionLost: float64(d.rx.fractionLost.Load()) / 256,
			TotalLost: int(d.rx.totalLost.Load()), RTT: time.Duration(d.rx.rtt.Load()), Reports: d.rx.reports.Load()}
		if c := f.codec.ClockRate; c > 0 {
			ts.Jitter = time.Duration(float64(d.rx.jitter.Load()) / float64(c) * float64(time.Second))
		}
		if l := d.sending.Load(); l != nil {
			ts.Layer = l.rid
			ts.Width, ts.Height = l.size()
			if n := l.spatialLayers(time.Now()); n > 1 {
				if sid := int(d.ssent.Load()); sid < n-1 {
					ts.SpatialLayers = sid + 1
					ts.Width, ts.Height = rung{f: l, sid: sid}.size()
				}
			}
			tcap := int(d.tcap.Load())
			if n := l.temporalLayers(time.Now()); n > 1 {
				ts.FrameRate = l.frameRateUpTo(tcap)
				if tcap < n-1 {
					ts.TemporalLayers = tcap + 1
				}
			}
		}
		st.Tracks = append(st.Tracks, ts)
	}
	slices.SortFunc(st.Tracks, func(a, b TrackStats) int { return strings.Compare(a.StreamID+a.Kind, b.StreamID+b.Kind) })
	return st
}
