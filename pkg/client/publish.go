package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/codec"
	"github.com/parley/parley/pkg/protocol"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// MTU is the largest RTP payload the client packetizes.
const MTU = 1200

// keyframeInterval is the shortest time between two keyframes made on request.
const keyframeInterval = 250 * time.Millisecond

// PublishOptions describe a stream to publish. At least one source is needed.
type PublishOptions struct {
	// Kind is protocol.KindCamera (default) or protocol.KindScreen.
	Kind string
	// Video and Audio are the sources of the stream's tracks (either may be nil).
	Video, Audio Source
	// Record asks the server to record the stream.
	Record bool
	// OnPacketSent, when set, observes every packet just before it is written.
	OnPacketSent PacketSentFunc
	// Padding makes the video track send RTP padding as browsers do (tests).
	Padding Padding
	// Simulcast, instead of Video, publishes the video as simulcast layers,
	// lowest first: two or three sources of the same codec (the same
	// picture at different sizes), sent with the RTP stream ids q, h and f.
	Simulcast []Source
}

// simulcastRIDs name the simulcast layers, lowest first.
var simulcastRIDs = []string{"q", "h", "f"}

// Padding is RTP padding a video track sends, as a browser does: padding-only
// packets on the media SSRC while it probes its uplink, and padding after a
// packet's payload.
type Padding struct {
	// AfterFrame is how many padding-only packets follow each frame.
	AfterFrame int
	// Every, with Bytes, pads every Every-th media packet with Bytes bytes
	// (1 to 255) after its payload.
	Every, Bytes int
}

// Publication is a published stream: one publish peer connection with a
// sendonly track per source, each fed by a goroutine at the pace of the samples.
type Publication struct {
	c         *Client
	kind      string
	pc        *webrtc.PeerConnection
	tracks    []*localTrack
	ctx       context.Context // ends the pumps
	cancel    context.CancelFunc
	connected chan struct{}
	closeOnce sync.Once
	onSent    PacketSentFunc
	padding   Padding

	mu           sync.Mutex
	id           string
	status       string
	reason       string
	statusCh     chan struct{} // closed and replaced on every status change
	localCands   []*protocol.ICECandidate
	localFlushed bool
	remoteReady  bool
	remoteCands  []webrtc.ICECandidateInit
}

type localTrack struct {
	kind string // audio or video
	rid  string // simulcast layer ("" without simulcast)
	// The header extensions a simulcast layer sends its mid and rid in
	// (negotiated ids, 0: not negotiated), and its mid.
	midExt, ridExt uint8
	mid            string
	// levelExt is the negotiated id of the audio level header extension
	// (RFC 6464), 0 if not negotiated; a LevelSource's levels go there.
	levelExt  uint8
	src       Source
	codec     webrtc.RTPCodecCapability
	track     *webrtc.TrackLocalStaticRTP
	sender    *webrtc.RTPSender
	records   recordRing
	bytes     atomic.Int64
	kfWanted  atomic.Bool
	kfAsked   atomic.Int64
	kfStarted atomic.Int64
	keyframes atomic.Int64 // keyframe starts sent
	nacks     atomic.Int64
	// inactive: the server said nobody receives this simulcast layer
	// (PUBLISH_LAYERS); it is not sent until it is wanted again, as a
	// browser's encoding with active false.
	inactive atomic.Bool
}

// Publish publishes a stream: it offers a new peer connection with a sendonly
// track per source, sends publish, applies the answer and trickles candidates.
// It returns once the answer is applied; media starts when the connection is
// up. The sources are pumped until ctx ends, Unpublish, or Close: pass a ctx
// that lasts as long as the stream should.
func (c *Client) Publish(ctx context.Context, o PublishOptions) (*Publication, error) {
	if len(o.Simulcast) > 0 {
		if o.Video != nil || len(o.Simulcast) < 2 || len(o.Simulcast) > len(simulcastRIDs) {
			return nil, fmt.Errorf("publish: simulcast takes 2 to %d layers instead of Video", len(simulcastRIDs))
		}
		for _, l := range o.Simulcast[1:] {
			if l.Codec().MimeType != o.Simulcast[0].Codec().MimeType {
				return nil, errors.New("publish: simulcast layers of different codecs")
			}
		}
	}
	if o.Video == nil && o.Audio == nil && len(o.Simulcast) == 0 {
		return nil, errors.New("publish: no source")
	}
	kind := o.Kind
	if kind == "" {
		kind = protocol.KindCamera
	}
	pc, err := c.newPeerConnection(false, nil)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	pctx, cancel := context.WithCancel(ctx)
	p := &Publication{
		c: c, kind: kind, pc: pc, ctx: pctx, cancel: cancel,
		connected: make(chan struct{}),
		statusCh:  make(chan struct{}),
		onSent:    o.OnPacketSent,
		padding:   o.Padding,
	}
	if b := o.Padding.Bytes; o.Padding.Every > 0 && (b < 1 || b > 255) {
		cancel()
		_ = pc.Close()
		return nil, fmt.Errorf("publish: padding of %d bytes: want 1 to 255", b)
	}
	var connOnce sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		c.log.Debug("publish connection state", "stream", p.ID(), "state", s.String())
		if s == webrtc.PeerConnectionStateConnected {
			connOnce.Do(func() { close(p.connected) })
		}
	})
	pc.OnICECandidate(p.onLocalCandidate)

	label := fmt.Sprintf("parley-%d", time.Now().UnixNano())
	for _, s := range []struct {
		kind string
		src  Source
	}{{"audio", o.Audio}, {"video", o.Video}} {
		if s.src == nil {
			continue
		}
		if err := p.addTrack(s.kind, s.src, label); err != nil {
			p.close()
			return nil, fmt.Errorf("publish: %w", err)
		}
	}
	if len(o.Simulcast) > 0 {
		if err := p.addSimulcast(o.Simulcast, label); err != nil {
			p.close()
			return nil, fmt.Errorf("publish: %w", err)
		}
	}

	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		p.close()
		return nil, fmt.Errorf("publish: %w", ErrClosed)
	}
	c.pubs[p] = struct{}{}
	c.mu.Unlock()

	offer, err := pc.CreateOffer(nil)
	if err != nil {
		p.close()
		return nil, fmt.Errorf("publish: create offer: %w", err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		p.close()
		return nil, fmt.Errorf("publish: set local description: %w", err)
	}
	raw, err := c.Request(ctx, &protocol.Publish{Type: protocol.TypePublish, Kind: kind, SDP: c.rewriteLocalSDP(offer.SDP), Record: o.Record})
	if err != nil {
		p.close()
		return nil, fmt.Errorf("publish: %w", err)
	}
	var ans protocol.SDP
	if err := json.Unmarshal(raw, &ans); err != nil || ans.Type != protocol.TypeAnswer || ans.Stream == "" {
		p.close()
		return nil, fmt.Errorf("publish: bad answer (%v): %s", err, truncate(raw))
	}
	c.registerPublication(p, ans.Stream)
	p.flushLocalCandidates()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: c.rewriteSDP(ans.SDP)}); err != nil {
		p.close()
		return nil, fmt.Errorf("publish: set remote description: %w", err)
	}
	p.setRemoteReady()
	p.simulcastExtensions()

	for _, t := range p.tracks {
		t := t
		c.goTracked(func() { p.readRTCP(t) })
		c.goTracked(func() { p.pump(t) })
	}
	c.log.Debug("published", "stream", ans.Stream, "kind", kind)
	return p, nil
}

func (p *Publication) addTrack(kind string, src Source, label string) error {
	codec := src.Codec()
	prefs, err := codecPreferences(codec)
	if err != nil {
		return err
	}
	track, err := webrtc.NewTrackLocalStaticRTP(codec, kind, label)
	if err != nil {
		return fmt.Errorf("new %s track: %w", kind, err)
	}
	tr, err := p.pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return fmt.Errorf("add %s transceiver: %w", kind, err)
	}
	if err := tr.SetCodecPreferences(prefs); err != nil {
		return fmt.Errorf("%s codec preferences: %w", kind, err)
	}
	p.tracks = append(p.tracks, &localTrack{kind: kind, src: src, codec: codec, track: track, sender: tr.Sender()})
	return nil
}

// addSimulcast adds one video transceiver sending a layer per source,
// lowest first, with the RTP stream ids q, h and f.
func (p *Publication) addSimulcast(layers []Source, label string) error {
	codec := layers[0].Codec()
	prefs, err := codecPreferences(codec)
	if err != nil {
		return err
	}
	var tr *webrtc.RTPTransceiver
	for i, src := range layers {
		rid := simulcastRIDs[i]
		track, err := webrtc.NewTrackLocalStaticRTP(codec, "video", label, webrtc.WithRTPStreamID(rid))
		if err != nil {
			return fmt.Errorf("new video layer %s: %w", rid, err)
		}
		if i == 0 {
			if tr, err = p.pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
				return fmt.Errorf("add video transceiver: %w", err)
			}
			if err := tr.SetCodecPreferences(prefs); err != nil {
				return fmt.Errorf("video codec preferences: %w", err)
			}
		} else if err := tr.Sender().AddEncoding(track); err != nil {
			return fmt.Errorf("add video layer %s: %w", rid, err)
		}
		p.tracks = append(p.tracks, &localTrack{kind: "video", rid: rid, src: src, codec: codec, track: track, sender: tr.Sender()})
	}
	return nil
}

// simulcastExtensions notes, once the answer is applied, the header
// extensions simulcast layers name themselves in: the SFU tells layers
// apart by their RTP stream id; and the one audio levels go in.
func (p *Publication) simulcastExtensions() {
	for _, t := range p.tracks {
		if t.kind == "audio" {
			for _, x := range t.sender.GetParameters().HeaderExtensions {
				if x.URI == sdp.AudioLevelURI && x.ID > 0 && x.ID < 15 {
					t.levelExt = uint8(x.ID)
				}
			}
		}
		if t.rid == "" {
			continue
		}
		for _, x := range t.sender.GetParameters().HeaderExtensions {
			switch x.URI {
			case sdp.SDESMidURI:
				t.midExt = uint8(x.ID)
			case sdp.SDESRTPStreamIDURI:
				t.ridExt = uint8(x.ID)
			}
		}
		for _, tr := range p.pc.GetTransceivers() {
			if tr.Sender() == t.sender {
				t.mid = tr.Mid()
			}
		}
	}
}

// registerPublication records the stream id the server assigned and picks up
// what arrived for it before: candidates and a status.
func (c *Client) registerPublication(p *Publication, id string) {
	c.mu.Lock()
	c.pubByID[id] = p
	orphans := c.orphanCands[id]
	delete(c.orphanCands, id)
	st, hasStatus := c.streamStatus[id]
	c.mu.Unlock()

	p.mu.Lock()
	p.id = id
	p.remoteCands = append(p.remoteCands, orphans...)
	p.mu.Unlock()
	if hasStatus {
		p.setStatus(st.status, st.reason)
	}
}

// setLayers applies PUBLISH_LAYERS: a layer marked inactive stops sending,
// one marked active again starts with a keyframe.
func (p *Publication) setLayers(layers []protocol.LayerState) {
	for _, l := range layers {
		t := p.layer(l.RID)
		if t == nil {
			continue
		}
		if was := t.inactive.Swap(!l.Active); was && l.Active {
			t.kfWanted.Store(true)
		}
	}
}

// LayerActive reports whether the simulcast layer rid is being sent (the
// server did not mark it inactive).
func (p *Publication) LayerActive(rid string) bool {
	t := p.layer(rid)
	return t != nil && !t.inactive.Load()
}

// ID is the stream id the server assigned.
func (p *Publication) ID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.id
}

// Kind is camera or screen.
func (p *Publication) Kind() string { return p.kind }

// PeerConnection is the publish connection (for tests).
func (p *Publication) PeerConnection() *webrtc.PeerConnection { return p.pc }

// Status is the last STREAM_STATUS the server sent for the stream ("" before any).
func (p *Publication) Status() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Reason is the reason of the last STREAM_STATUS, if it had one.
func (p *Publication) Reason() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reason
}

func (p *Publication) setStatus(status, reason string) {
	p.mu.Lock()
	p.status, p.reason = status, reason
	close(p.statusCh)
	p.statusCh = make(chan struct{})
	p.mu.Unlock()
}

// WaitStatus waits until the stream's status is status. It fails early when the
// stream reaches FAILED (unless that is the status awaited).
func (p *Publication) WaitStatus(ctx context.Context, status string) error {
	for {
		p.mu.Lock()
		cur, reason, ch := p.status, p.reason, p.statusCh
		p.mu.Unlock()
		if cur == status {
			return nil
		}
		if cur == protocol.StreamFailed {
			return fmt.Errorf("stream %s: %s: %s", p.ID(), cur, reason)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("stream %s: waiting for %s (status %q): %w", p.ID(), status, cur, ctx.Err())
		case <-p.c.ctx.Done():
			return ErrClosed
		}
	}
}

// WaitConnected waits until the publish peer connection is connected (ICE and DTLS).
func (p *Publication) WaitConnected(ctx context.Context) error {
	select {
	case <-p.connected:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stream %s: waiting for the connection: %w", p.ID(), ctx.Err())
	}
}

// Unpublish stops the stream: it sends unpublish, then stops the pumps and closes
// the peer connection (even when the request fails).
func (p *Publication) Unpublish(ctx context.Context) error {
	_, err := p.c.Request(ctx, &protocol.Unpublish{Type: protocol.TypeUnpublish, Stream: p.ID()})
	p.close()
	if err != nil {
		return fmt.Errorf("unpublish %s: %w", p.ID(), err)
	}
	return nil
}

// RestartICE re-offers the publish connection with an ICE restart (an offer
// naming the stream) and applies the server's answer.
func (p *Publication) RestartICE(ctx context.Context) error {
	id := p.ID()
	offer, err := p.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		return fmt.Errorf("restart ICE %s: create offer: %w", id, err)
	}
	p.mu.Lock()
	p.remoteReady = false // hold candidates until the new answer is applied
	p.mu.Unlock()
	if err := p.pc.SetLocalDescription(offer); err != nil {
		p.setRemoteReady()
		return fmt.Errorf("restart ICE %s: set local description: %w", id, err)
	}
	raw, err := p.c.Request(ctx, &protocol.SDP{Type: protocol.TypeOffer, Stream: id, SDP: p.c.rewriteLocalSDP(offer.SDP)})
	if err != nil {
		p.setRemoteReady()
		return fmt.Errorf("restart ICE %s: %w", id, err)
	}
	var ans protocol.SDP
	if err := json.Unmarshal(raw, &ans); err != nil || ans.Type != protocol.TypeAnswer {
		p.setRemoteReady()
		return fmt.Errorf("restart ICE %s: bad answer: %s", id, truncate(raw))
	}
	err = p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: p.c.rewriteSDP(ans.SDP)})
	p.setRemoteReady()
	if err != nil {
		return fmt.Errorf("restart ICE %s: set remote description: %w", id, err)
	}
	return nil
}

// onLocalCandidate trickles a local candidate once the stream id is known.
func (p *Publication) onLocalCandidate(cand *webrtc.ICECandidate) {
	wire := localCandidate(cand)
	p.mu.Lock()
	if !p.localFlushed {
		p.localCands = append(p.localCands, wire)
		p.mu.Unlock()
		return
	}
	id := p.id
	p.mu.Unlock()
	p.sendCandidate(id, wire)
}

func (p *Publication) flushLocalCandidates() {
	p.mu.Lock()
	cands, id := p.localCands, p.id
	p.localCands, p.localFlushed = nil, true
	p.mu.Unlock()
	for _, cand := range cands {
		p.sendCandidate(id, cand)
	}
}

func (p *Publication) sendCandidate(id string, cand *protocol.ICECandidate) {
	err := p.c.Send(&protocol.Candidate{Type: protocol.TypeCandidate, Target: protocol.TargetPublish, Stream: id, Candidate: cand})
	if err != nil {
		p.c.log.Debug("candidate not sent", "stream", id, "err", err)
	}
}

func (p *Publication) addRemoteCandidate(init webrtc.ICECandidateInit) {
	p.mu.Lock()
	if !p.remoteReady {
		p.remoteCands = append(p.remoteCands, init)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	if err := p.pc.AddICECandidate(init); err != nil {
		p.c.log.Debug("remote candidate rejected", "stream", p.ID(), "err", err)
	}
}

func (p *Publication) setRemoteReady() {
	p.mu.Lock()
	p.remoteReady = true
	cands := p.remoteCands
	p.remoteCands = nil
	p.mu.Unlock()
	for _, init := range cands {
		if err := p.pc.AddICECandidate(init); err != nil {
			p.c.log.Debug("remote candidate rejected", "stream", p.ID(), "err", err)
		}
	}
}

// close stops the pumps, closes the peer connection and removes the publication
// from the live ones.
func (p *Publication) close() {
	p.closeOnce.Do(func() {
		p.cancel()
		if err := p.pc.Close(); err != nil {
			p.c.log.Debug("close publish connection", "err", err)
		}
		// The publication stays in pubByID so that a STREAM_STATUS arriving after
		// (UNPUBLISHED, typically) still updates Status.
		p.c.mu.Lock()
		delete(p.c.pubs, p)
		p.c.mu.Unlock()
	})
}

// track returns the track of a kind: for simulcast video, the top layer.
func (p *Publication) track(kind string) *localTrack {
	var found *localTrack
	for _, t := range p.tracks {
		if t.kind == kind {
			found = t
		}
	}
	return found
}

// layer returns the simulcast layer with the RTP stream id rid.
func (p *Publication) layer(rid string) *localTrack {
	for _, t := range p.tracks {
		if t.kind == "video" && t.rid == rid {
			return t
		}
	}
	return nil
}

// LayerSentPackets is SentPackets for one simulcast layer (q, h or f).
func (p *Publication) LayerSentPackets(rid string) []PacketRecord {
	if t := p.layer(rid); t != nil {
		return t.records.snapshot()
	}
	return nil
}

// LayerKeyframeRequests is how many PLI and FIR one simulcast layer received.
func (p *Publication) LayerKeyframeRequests(rid string) int64 {
	if t := p.layer(rid); t != nil {
		return t.kfAsked.Load()
	}
	return 0
}

// KeyframesSent is how many keyframes the video track (for simulcast, the
// layer rid; "" for the top one) sent, periodic and requested ones.
func (p *Publication) KeyframesSent(rid string) int64 {
	t := p.track("video")
	if rid != "" {
		t = p.layer(rid)
	}
	if t == nil {
		return 0
	}
	return t.keyframes.Load()
}

// SentPackets returns the last packets (at most 20000) sent on the track of a
// kind ("audio" or "video"), oldest first.
func (p *Publication) SentPackets(kind string) []PacketRecord {
	if t := p.track(kind); t != nil {
		return t.records.snapshot()
	}
	return nil
}

// PacketsSent is how many packets were sent on the track of a kind.
func (p *Publication) PacketsSent(kind string) int64 {
	if t := p.track(kind); t != nil {
		return t.records.count()
	}
	return 0
}

// BytesSent is how many payload bytes were sent on the track of a kind.
func (p *Publication) BytesSent(kind string) int64 {
	if t := p.track(kind); t != nil {
		return t.bytes.Load()
	}
	return 0
}

// KeyframeRequests is how many PLI and FIR the track of a kind received.
func (p *Publication) KeyframeRequests(kind string) int64 {
	if t := p.track(kind); t != nil {
		return t.kfAsked.Load()
	}
	return 0
}

// readRTCP reads the sender's RTCP (which runs the NACK responder and the
// report interceptors) and notes keyframe requests, until the connection closes.
func (p *Publication) readRTCP(t *localTrack) {
	for {
		var pkts []rtcp.Packet
		var err error
		if t.rid != "" {
			pkts, _, err = t.sender.ReadSimulcastRTCP(t.rid)
		} else {
			pkts, _, err = t.sender.ReadRTCP()
		}
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				t.kfAsked.Add(1)
				t.kfWanted.Store(true)
			case *rtcp.TransportLayerNack:
				for _, n := range pkt.(*rtcp.TransportLayerNack).Nacks {
					t.nacks.Add(int64(len(n.PacketList())))
				}
			}
		}
	}
}

func newPayloader(mime string) (rtp.Payloader, error) {
	switch strings.ToLower(mime) {
	case "video/vp8":
		return &codecs.VP8Payloader{EnablePictureID: true}, nil
	case "video/vp9":
		return &codecs.VP9Payloader{}, nil
	case "video/h264":
		return &codecs.H264Payloader{}, nil
	case "video/av1":
		return &codecs.AV1Payloader{}, nil
	case "audio/opus":
		return &codecs.OpusPayloader{}, nil
	case "audio/pcmu", "audio/pcma":
		return &codecs.G711Payloader{}, nil
	}
	return nil, fmt.Errorf("no payloader for %s", mime)
}

// pump sends the track's samples at their pace from when the connection is up
// until the publication's context ends or the source is exhausted.
func (p *Publication) pump(t *localTrack) {
	select {
	case <-p.connected:
	case <-p.ctx.Done():
		return
	}
	payloader, err := newPayloader(t.codec.MimeType)
	if err != nil {
		p.c.log.Error("cannot send track", "stream", p.ID(), "err", err)
		return
	}
	// A source with temporal layers gets a payloader that writes each
	// frame's layer into the VP8 descriptor.
	ts, _ := t.src.(TemporalSource)
	var tp *vp8TemporalPayloader
	if ts != nil && strings.EqualFold(t.codec.MimeType, webrtc.MimeTypeVP8) {
		tp = &vp8TemporalPayloader{}
		payloader = tp
	}
	clock := int64(t.codec.ClockRate)
	pk := rtp.NewPacketizer(MTU, 0, 0, payloader, rtp.NewRandomSequencer(), uint32(clock))
	rtpc := rtpClock{rate: clock}
	isVideo := t.kind == "video"
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	next := time.Now()
	var lastKeyframe time.Time
	sent := 0 // media packets, for Padding.Every
	keyed, keyTS := false, uint32(0)
	for {
		if t.kfWanted.Load() && time.Since(lastKeyframe) >= keyframeInterval {
			t.kfWanted.Store(false)
			if ks, ok := t.src.(KeyframeSource); ok {
				ks.RequestKeyframe()
				t.kfStarted.Add(1)
			}
			lastKeyframe = time.Now()
		}
		data, dur, err := t.src.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				p.c.log.Warn("source failed", "stream", p.ID(), "kind", t.kind, "err", err)
			}
			return
		}
		now := time.Now()
		if tp != nil {
			tp.frame(ts.Temporal())
		}
		var pkts []*rtp.Packet
		if t.inactive.Load() {
			// Not encoded: the clock moves on, no packet is numbered.
			pk.SkipSamples(rtpc.advance(dur))
		} else {
			pkts = pk.Packetize(data, rtpc.advance(dur))
		}
		if isVideo && p.padding.AfterFrame > 0 && len(pkts) > 0 {
			// With the frame's timestamp, as a browser's: pion's would be
			// the next frame's, which moves its sender reports' clock.
			ts := pkts[len(pkts)-1].Timestamp
			for _, pad := range pk.GeneratePadding(uint32(p.padding.AfterFrame)) {
				pad.Timestamp = ts
				pkts = append(pkts, pad)
			}
		}
		for _, pkt := range pkts {
			padOnly := len(pkt.Payload) == 0
			if isVideo && !padOnly && p.padding.Every > 0 {
				if sent++; sent%p.padding.Every == 0 {
					pkt.Header.Padding, pkt.Header.PaddingSize = true, byte(p.padding.Bytes)
				}
			}
			rec := PacketRecord{
				Seq: pkt.SequenceNumber, Timestamp: pkt.Timestamp, Marker: pkt.Marker, Padding: padOnly,
				PayloadHash: HashPayload(pkt.Payload), PayloadSize: len(pkt.Payload), SentAt: now,
			}
			if isVideo {
				rec.Keyframe = codec.IsKeyframe(t.codec.MimeType, pkt.Payload)
				if rec.Keyframe && (!keyed || pkt.Timestamp != keyTS) {
					keyed, keyTS = true, pkt.Timestamp // one count per keyframe, whatever its packets
					t.keyframes.Add(1)
				}
			}
			if ls, ok := t.src.(LevelSource); ok && t.levelExt != 0 {
				// As a browser: the level of what the packet carries, voice
				// activity (the V bit) when louder than -40 dBov.
				lvl := ls.Level() & 0x7f
				if lvl <= 40 {
					lvl |= 0x80
				}
				_ = pkt.Header.SetExtension(t.levelExt, []byte{lvl})
			}
			if t.ridExt != 0 {
				// The SFU tells the layers apart by these.
				_ = pkt.Header.SetExtension(t.ridExt, []byte(t.rid))
				if t.midExt != 0 {
					_ = pkt.Header.SetExtension(t.midExt, []byte(t.mid))
				}
			}
			if p.onSent != nil {
				p.onSent(t.label(), pkt, time.Now())
			}
			// Recorded before the write: the SFU may deliver the packet
			// before WriteRTP returns.
			t.records.add(rec)
			if err := t.track.WriteRTP(pkt); err != nil {
				if errors.Is(err, io.ErrClosedPipe) {
					return
				}
				p.c.log.Debug("write RTP", "stream", p.ID(), "err", err)
			}
			t.bytes.Add(int64(len(pkt.Payload)))
		}
		next = next.Add(dur)
		wait := time.Until(next)
		if wait < -time.Second {
			// Far behind (a stalled machine): do not burst to catch up.
			next = time.Now()
			continue
		}
		if wait <= 0 {
			continue
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-p.ctx.Done():
			return
		}
	}
}

// label names the track to OnPacketSent: its kind, and for a simulcast
// layer "video:" and its RTP stream id.
func (t *localTrack) label() string {
	if t.rid != "" {
		return t.kind + ":" + t.rid
	}
	return t.kind
}
