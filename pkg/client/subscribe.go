package client

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/codec"
	"github.com/parley/parley/pkg/protocol"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// answerTimeout bounds the answer request of one subscribe offer.
const answerTimeout = 15 * time.Second

// subItem is one thing for the subscribe worker, in server order: an offer, a
// trickled candidate, or a reset (leave/join: the next offer is for a new connection).
type subItem struct {
	offer       *protocol.SDP
	at          time.Time // when the offer arrived
	candidate   *protocol.ICECandidate
	isCandidate bool
	reset       chan struct{} // closed once the connection is closed
}

// subscriber owns the subscribe peer connection. A single worker goroutine
// applies the server's offers and candidates in order, so the WebSocket reader
// never waits for pion or for the answer's reply.
type subscriber struct {
	c *Client
	q *queue[subItem]

	mu           sync.Mutex
	pc           *webrtc.PeerConnection
	publisher    map[string]string    // stream id → publisher, from the offers
	subscribedAt map[string]time.Time // stream id → arrival of the offer that added it
	current      map[string]bool      // stream ids of the last offer
	pendingCands []webrtc.ICECandidateInit
	closed       bool
	// stopReports ends the light receiver's report loop of pc (nil: none).
	stopReports chan struct{}
	reports     sync.WaitGroup
}

func newSubscriber(c *Client) *subscriber {
	return &subscriber{
		c: c, q: newQueue[subItem](16),
		publisher: map[string]string{}, subscribedAt: map[string]time.Time{}, current: map[string]bool{},
	}
}

func (s *subscriber) enqueue(it subItem) { s.q.push(it) }

// run is the worker: it feeds the queue and handles its items until close.
func (s *subscriber) run() {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.q.run() }()
	defer wg.Wait()
	for it := range s.q.out {
		switch {
		case it.reset != nil:
			s.closePC()
			close(it.reset)
		case it.offer != nil:
			if err := s.handleOffer(it.offer, it.at); err != nil {
				s.c.log.Warn("subscribe offer failed", "err", err)
			}
		case it.isCandidate:
			s.handleCandidate(it.candidate)
		}
	}
}

func (s *subscriber) peerConnection() *webrtc.PeerConnection {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pc
}

// reset closes the subscribe connection after what the worker has queued, and waits.
func (s *subscriber) reset() {
	done := make(chan struct{})
	s.q.push(subItem{reset: done})
	select {
	case <-done:
	case <-s.c.ctx.Done():
	}
}

// close closes the connection and stops the worker (Client.Close).
func (s *subscriber) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.closePC()
	s.q.abort()
}

func (s *subscriber) closePC() {
	s.mu.Lock()
	pc := s.pc
	s.pc = nil
	s.pendingCands = nil
	s.current = map[string]bool{}
	stop := s.stopReports
	s.stopReports = nil
	s.mu.Unlock()
	if stop != nil {
		close(stop)
	}
	if pc != nil {
		if err := pc.Close(); err != nil {
			s.c.log.Debug("close subscribe connection", "err", err)
		}
	}
	s.reports.Wait()
}

func (s *subscriber) handleOffer(o *protocol.SDP, at time.Time) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	next := map[string]bool{}
	for id, name := range o.Streams {
		next[id] = true
		s.publisher[id] = name
		if !s.current[id] {
			s.subscribedAt[id] = at
		}
	}
	s.current = next
	pc := s.pc
	s.mu.Unlock()

	if pc == nil {
		var err error
		if pc, err = s.newPC(); err != nil {
			return err
		}
	}
	offer := webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: s.c.rewriteSDP(o.SDP)}
	if err := pc.SetRemoteDescription(offer); err != nil {
		return fmt.Errorf("set remote description: %w", err)
	}
	s.mu.Lock()
	cands := s.pendingCands
	s.pendingCands = nil
	s.mu.Unlock()
	for _, init := range cands {
		if err := pc.AddICECandidate(init); err != nil {
			s.c.log.Debug("subscribe candidate rejected", "err", err)
		}
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fmt.Errorf("create answer: %w", err)
	}
	if err := pc.SetLocalDescription(answer); err != nil {
		return fmt.Errorf("set local description: %w", err)
	}
	ctx, cancel := context.WithTimeout(s.c.ctx, answerTimeout)
	defer cancel()
	sdp := answer.SDP
	if s.c.opts.ICE.HideLocalCandidates {
		sdp = withoutCandidates(sdp)
	}
	if _, err := s.c.Request(ctx, &protocol.SDP{Type: protocol.TypeAnswer, SDP: s.c.rewriteLocalSDP(sdp)}); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	return nil
}

func (s *subscriber) newPC() (*webrtc.PeerConnection, error) {
	c := s.c
	var arrivals *arrivalLog
	if c.opts.StampArrivals {
		arrivals = newArrivalLog()
	}
	pc, err := c.newPeerConnection(true, arrivals)
	if err != nil {
		return nil, err
	}
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if c.opts.ICE.HideLocalCandidates {
			return
		}
		err := c.Send(&protocol.Candidate{Type: protocol.TypeCandidate, Target: protocol.TargetSubscribe, Candidate: localCandidate(cand)})
		if err != nil {
			c.log.Debug("subscribe candidate not sent", "err", err)
		}
	})
	conn := &subConn{arrivals: arrivals}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		c.log.Debug("subscribe connection state", "state", st.String())
		if st == webrtc.PeerConnectionStateConnected {
			now := time.Now()
			conn.connectedAt.CompareAndSwap(nil, &now)
		}
	})
	pc.OnTrack(func(track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
		s.onTrack(pc, conn, track, receiver)
	})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = pc.Close()
		return nil, ErrClosed
	}
	s.pc = pc
	if c.opts.LightReceiver {
		stop := make(chan struct{})
		s.stopReports = stop
		s.reports.Add(1)
		go func() {
			defer s.reports.Done()
			s.lightReports(pc, stop)
		}()
	}
	s.mu.Unlock()
	return pc, nil
}

func (s *subscriber) handleCandidate(cand *protocol.ICECandidate) {
	init, ok := s.c.remoteCandidate(cand)
	if !ok {
		return
	}
	s.mu.Lock()
	pc := s.pc
	if pc == nil || pc.RemoteDescription() == nil {
		s.pendingCands = append(s.pendingCands, init)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	if err := pc.AddICECandidate(init); err != nil {
		s.c.log.Debug("subscribe candidate rejected", "err", err)
	}
}

func (s *subscriber) onTrack(pc *webrtc.PeerConnection, conn *subConn, track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	sid := track.StreamID()
	s.mu.Lock()
	pub, at := s.publisher[sid], s.subscribedAt[sid]
	s.mu.Unlock()
	c := s.c
	rt := &RemoteTrack{
		track: track, receiver: receiver, pc: pc, conn: conn, streamID: sid, publisher: pub,
		kind: track.Kind().String(), codec: track.Codec().MimeType,
		subscribedAt: at, done: make(chan struct{}), light: c.opts.LightReceiver,
	}
	c.log.Debug("remote track", "stream", sid, "publisher", pub, "kind", rt.kind, "codec", rt.codec)
	if c.opts.OnRemoteTrack != nil {
		rt.observe = c.opts.OnRemoteTrack(rt)
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.remoteTracks = append(c.remoteTracks, rt)
	close(c.tracksChanged)
	c.tracksChanged = make(chan struct{})
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		if rt.light {
			rt.readLight(c)
			return
		}
		rt.read(c)
	}()
	if !rt.light {
		// Read the receiver's RTCP, as a browser does: pion's report
		// interceptor sees the sender reports only then (its receiver
		// reports answer them, so the server learns the round trip).
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			rt.readRTCP()
		}()
	}
}

// SenderReport is an RTCP sender report a remote track got, and when.
type SenderReport struct {
	*rtcp.SenderReport
	At time.Time
}

// maxSenderReports is how many sender reports a RemoteTrack keeps.
const maxSenderReports = 64

// readRTCP reads the track's RTCP until the receiver stops, keeping its
// sender reports.
func (t *RemoteTrack) readRTCP() {
	for {
		pkts, _, err := t.receiver.ReadRTCP()
		if err != nil {
			return
		}
		now := time.Now()
		for _, p := range pkts {
			if sr, ok := p.(*rtcp.SenderReport); ok && sr.SSRC == uint32(t.track.SSRC()) {
				t.mu.Lock()
				if len(t.srs) == maxSenderReports {
					t.srs = append(t.srs[:0], t.srs[1:]...)
				}
				t.srs = append(t.srs, SenderReport{SenderReport: sr, At: now})
				t.mu.Unlock()
			}
		}
	}
}

// SenderReports returns the last sender reports (at most 64) the track got,
// oldest first; none with Options.LightReceiver.
func (t *RemoteTrack) SenderReports() []SenderReport {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]SenderReport(nil), t.srs...)
}

// SubscribePeerConnection is the subscribe peer connection (nil before the
// server's first offer), for tests.
func (c *Client) SubscribePeerConnection() *webrtc.PeerConnection { return c.sub.peerConnection() }

// RemoteTracks returns every track received so far, in arrival order, including
// ended ones (a track whose stream was unpublished, or of a closed subscribe connection).
func (c *Client) RemoteTracks() []*RemoteTrack {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*RemoteTrack(nil), c.remoteTracks...)
}

// WaitRemoteTracks waits until at least n tracks have been received (counted as
// RemoteTracks does) and returns them all.
func (c *Client) WaitRemoteTracks(ctx context.Context, n int) ([]*RemoteTrack, error) {
	for {
		c.mu.Lock()
		tracks, ch := append([]*RemoteTrack(nil), c.remoteTracks...), c.tracksChanged
		c.mu.Unlock()
		if len(tracks) >= n {
			return tracks, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return tracks, fmt.Errorf("waiting for %d remote tracks (have %d): %w", n, len(tracks), ctx.Err())
		case <-c.ctx.Done():
			return tracks, ErrClosed
		}
	}
}

// PauseReading stops (true) or resumes (false) reading the remote tracks, as a
// subscriber too slow to keep up would: packets pile up in pion's buffers and
// are then dropped.
func (c *Client) PauseReading(pause bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || pause == c.paused {
		return
	}
	c.paused = pause
	if pause {
		c.pauseCh = make(chan struct{})
	} else {
		close(c.pauseCh)
	}
}

// waitReading blocks while reading is paused; it returns false when the client closes.
func (c *Client) waitReading() bool {
	c.mu.Lock()
	paused, ch := c.paused, c.pauseCh
	c.mu.Unlock()
	if !paused {
		return true
	}
	select {
	case <-ch:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// RemoteTrack is a track received on the subscribe connection, with statistics
// recorded by its reader goroutine.
type RemoteTrack struct {
	track        *webrtc.TrackRemote
	receiver     *webrtc.RTPReceiver
	pc           *webrtc.PeerConnection // the subscribe connection it came on
	conn         *subConn               // what the tracks of pc share
	streamID     string
	publisher    string
	kind         string
	codec        string
	subscribedAt time.Time
	done         chan struct{}
	light        bool // keep no packet records
	observe      PacketReceivedFunc
	records      recordRing

	mu              sync.Mutex
	packets, bytes  int64
	firstAt         time.Time
	firstKeyframe   bool
	firstKeyframeAt time.Time
	haveSeq         bool
	maxSeq          int64 // highest extended sequence number seen
	lastTS          uint32
	regressions     int64
	gaps            int64
	srs             []SenderReport
}

// subConn is what the tracks of one subscribe connection share.
type subConn struct {
	arrivals    *arrivalLog // socket arrival stamps (nil: none)
	connectedAt atomic.Pointer[time.Time]
}

// ConnectedAt is when the track's subscribe connection first reached the
// connected state (ICE and DTLS up), or zero.
func (t *RemoteTrack) ConnectedAt() time.Time {
	if at := t.conn.connectedAt.Load(); at != nil {
		return *at
	}
	return time.Time{}
}

// StreamID is the room stream id (the track's msid).
func (t *RemoteTrack) StreamID() string { return t.streamID }

// Publisher is the name of the participant who publishes the stream.
func (t *RemoteTrack) Publisher() string { return t.publisher }

// Kind is "audio" or "video".
func (t *RemoteTrack) Kind() string { return t.kind }

// Codec is the track's MIME type ("video/VP8"…).
func (t *RemoteTrack) Codec() string { return t.codec }

// Track is pion's remote track.
func (t *RemoteTrack) Track() *webrtc.TrackRemote { return t.track }

// Receiver is pion's receiver of the track.
func (t *RemoteTrack) Receiver() *webrtc.RTPReceiver { return t.receiver }

// SubscribedAt is when the offer that added the track's stream arrived.
func (t *RemoteTrack) SubscribedAt() time.Time { return t.subscribedAt }

// Done is closed when the track's reader ends (the track ended or the client closed).
func (t *RemoteTrack) Done() <-chan struct{} { return t.done }

// Packets is how many RTP packets were received (retransmissions included).
func (t *RemoteTrack) Packets() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.packets
}

// Bytes is how many payload bytes were received.
func (t *RemoteTrack) Bytes() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bytes
}

// FirstPacketAt is when the first packet was read (zero before).
func (t *RemoteTrack) FirstPacketAt() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.firstAt
}

// FirstPacketKeyframe reports whether the first packet received was the start of
// a keyframe (IsKeyframe); always false for audio.
func (t *RemoteTrack) FirstPacketKeyframe() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.firstKeyframe
}

// FirstKeyframeAt is when the first keyframe start was received (zero before).
func (t *RemoteTrack) FirstKeyframeAt() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.firstKeyframeAt
}

// TimestampRegressions counts packets whose RTP timestamp is older (wrap-aware)
// than the previous in-order packet's. Packets older than the newest sequence
// number seen (retransmissions, reordering) are not counted.
func (t *RemoteTrack) TimestampRegressions() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.regressions
}

// SequenceGaps counts the sequence numbers skipped when a packet arrived ahead of
// its predecessors (so it includes packets later recovered by retransmission or
// merely reordered).
func (t *RemoteTrack) SequenceGaps() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gaps
}

// ReceivedPackets returns the last packets received (at most 20000), oldest
// first; none with Options.LightReceiver.
func (t *RemoteTrack) ReceivedPackets() []PacketRecord { return t.records.snapshot() }

// read reads the track until it ends, pausing while the client says so.
func (t *RemoteTrack) read(c *Client) {
	defer close(t.done)
	for {
		if !c.waitReading() {
			return
		}
		pkt, _, err := t.track.ReadRTP()
		if err != nil {
			c.log.Debug("remote track ended", "stream", t.streamID, "kind", t.kind, "err", err)
			return
		}
		now := time.Now()
		t.onPacket(pkt.SequenceNumber, pkt.Timestamp, pkt.Marker, pkt.Payload, now)
		if t.observe != nil {
			t.observe(pkt, now, t.arrivedAt(pkt, now))
		}
	}
}

func (t *RemoteTrack) onPacket(seq uint16, ts uint32, marker bool, payload []byte, now time.Time) {
	kf := t.kind == webrtc.RTPCodecTypeVideo.String() && codec.IsKeyframe(t.codec, payload)
	if !t.light {
		t.records.add(PacketRecord{
			Seq: seq, Timestamp: ts, Marker: marker, Keyframe: kf, Padding: len(payload) == 0,
			PayloadHash: HashPayload(payload), PayloadSize: len(payload), ReceivedAt: now,
		})
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.packets++
	t.bytes += int64(len(payload))
	if t.firstAt.IsZero() {
		t.firstAt = now
		t.firstKeyframe = kf
	}
	if kf && t.firstKeyframeAt.IsZero() {
		t.firstKeyframeAt = now
	}
	if !t.haveSeq {
		t.haveSeq, t.maxSeq, t.lastTS = true, int64(seq), ts
		return
	}
	ext := t.maxSeq + int64(int16(seq-uint16(t.maxSeq)))
	if ext <= t.maxSeq {
		return // a retransmission, duplicate or late packet
	}
	t.gaps += ext - t.maxSeq - 1
	if int32(ts-t.lastTS) < 0 {
		t.regressions++
	}
	t.maxSeq, t.lastTS = ext, ts
}

// withoutCandidates drops the a=candidate lines of an SDP.
func withoutCandidates(sdp string) string {
	lines := strings.SplitAfter(sdp, "\n")
	out := lines[:0]
	for _, l := range lines {
		if !strings.HasPrefix(l, "a=candidate:") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}
