package sfu

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/parley/parley/pkg/protocol"
	"github.com/pion/webrtc/v4"
)

// Signal carries the media plane's messages to a participant's session. Its
// methods must not block (a session queues them).
type Signal interface {
	// SubscribeOffer sends an offer for the subscribe connection; streams maps
	// each stream id in it to its publisher's name.
	SubscribeOffer(sdp string, streams map[string]string)
	// Candidate trickles a server ICE candidate.
	Candidate(target, streamID string, c webrtc.ICECandidateInit)
	// StreamStatus reports the status of a remote stream as this participant plays it.
	StreamStatus(publisher, streamID, status, reason string)
	// PublishStatus reports the status of one of the participant's own streams.
	PublishStatus(streamID, status, reason string)
}

// Router is the media of one room session: its peers, what they publish and
// who receives what.
type Router struct {
	engine  *Engine
	session string
	log     *slog.Logger

	mu       sync.Mutex
	peers    map[string]*Peer
	closed   bool
	recorder RecorderFunc

	// speakers finds who speaks from the audio levels (speakers.go);
	// lastDominant is only used by its goroutine.
	speakers     *speakers
	lastDominant string

	// writers puts the room's subscribers on one writer while they are few
	// (writers.go).
	writers *writerGroup

	// layers switches off simulcast layers nobody receives (dynacast.go).
	layers *layerControl
}

// NewRouter returns the media router of a room session.
func (e *Engine) NewRouter(session string) *Router {
	r := &Router{engine: e, session: session, log: e.log.With("room_session", session), peers: make(map[string]*Peer),
		speakers: newSpeakers(), writers: &writerGroup{pool: e.writers}}
	// The dominant speaker's camera comes first in every subscriber's
	// allocation (alloc.go).
	r.speakers.listen(func(as ActiveSpeakers) {
		if as.Dominant != nil && as.Dominant.StreamID != r.lastDominant {
			r.lastDominant = as.Dominant.StreamID
			r.reallocateAll()
		}
	})
	r.layers = newLayerControl(r)
	e.mu.Lock()
	e.routers[r] = struct{}{}
	e.mu.Unlock()
	return r
}

// PeerOptions are a participant's media choices.
type PeerOptions struct {
	Name      string
	Subscribe bool
	// Codecs lists the MIME types the participant can decode; empty means all.
	Codecs []string
}

// AddPeer adds a participant's media. If it subscribes, it starts receiving
// every stream already published in the room.
func (r *Router) AddPeer(id string, opts PeerOptions, sig Signal) (*Peer, error) {
	p := &Peer{router: r, id: id, name: opts.Name, codecs: slices.Clone(opts.Codecs), pubs: make(map[string]*publication),
		log: r.log.With("participant", opts.Name)}
	p.sig.Store(&sigHolder{sig})
	if opts.Subscribe {
		p.sub = newSubscriber(p, r.engine.cfg.QueueSize)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		if p.sub != nil {
			p.sub.close()
		}
		return nil, &protocol.Error{Code: protocol.CodeShuttingDown, Reason: "the room is closing"}
	}
	if r.peers[id] != nil {
		r.mu.Unlock()
		if p.sub != nil {
			p.sub.close()
		}
		return nil, fmt.Errorf("peer %s already exists", id)
	}
	r.peers[id] = p
	others := r.peerListLocked()
	r.mu.Unlock()

	if p.sub != nil {
		for _, o := range others {
			if o == p {
				continue
			}
			for _, pub := range o.publications() {
				for _, f := range pub.tracks() {
					p.sub.addForwarder(f, o.name)
				}
			}
		}
	}
	return p, nil
}

func (r *Router) peerListLocked() []*Peer {
	return slices.Collect(maps.Values(r.peers))
}

func (r *Router) peerList() []*Peer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peerListLocked()
}

// trackAdded sends a newly published track to every other subscribing peer.
func (r *Router) trackAdded(pub *publication, f *forwarder) {
	for _, p := range r.peerList() {
		if p != pub.peer && p.sub != nil {
			p.sub.addForwarder(f, pub.peer.name)
		}
	}
}

// layersChanged tells every subscriber that a published track gained a
// simulcast layer: their allocations may pick it.
func (r *Router) layersChanged(f *forwarder) {
	for _, p := range r.peerList() {
		if p.sub != nil {
			p.sub.reallocate()
		}
	}
}

// reallocateAll runs every subscriber's allocation again.
func (r *Router) reallocateAll() {
	for _, p := range r.peerList() {
		if p.sub != nil {
			p.sub.reallocate()
		}
	}
}

// trackRemoved stops sending a track to everyone.
func (r *Router) trackRemoved(f *forwarder) {
	if f.level != nil {
		r.speakers.remove(f.streamID)
	}
	for _, p := range r.peerList() {
		if p.sub != nil {
			p.sub.removeForwarder(f)
		}
	}
}

// preferCodecs steers a publisher to codecs that every subscriber of the
// room can decode, when some subscriber cannot decode everything offered: the
// answer then lists only those, in the publisher's order. For H.264 that is
// per profile: a publisher offering High and Constrained Baseline sends
// Constrained Baseline when a subscriber decodes only that (h264profile.go).
// When no offered codec suits everyone, the answer is left alone and the
// subscribers who cannot decode the stream are told so (STREAM_STATUS).
func (r *Router) preferCodecs(pc *webrtc.PeerConnection, publisher *Peer, offer string) {
	var subs []*subscriber
	for _, p := range r.peerList() {
		if p != publisher && p.sub != nil {
			subs = append(subs, p.sub)
		}
	}
	everyone := func(c webrtc.RTPCodecCapability) bool {
		for _, s := range subs {
			if !canDecode(s.peer.codecs, c.MimeType) || !s.decodes(c) {
				return false
			}
		}
		return true
	}
	sections := parseSections(offer)
	for _, t := range pc.GetTransceivers() {
		var offered []webrtc.RTPCodecCapability
		for _, sec := range sections {
			if sec.mid == t.Mid() {
				offered = sec.codecs
			}
		}
		var ok []webrtc.RTPCodecParameters
		narrowed := false
		for _, oc := range offered {
			if !supportedMime(oc.MimeType) {
				continue
			}
			if !everyone(oc) {
				narrowed = true
				continue
			}
			for _, c := range codecs {
				if sameFormat(c.RTPCodecCapability, oc) && !slices.ContainsFunc(ok, func(o webrtc.RTPCodecParameters) bool {
					return o.PayloadType == c.PayloadType
				}) {
					ok = append(ok, c)
				}
			}
		}
		if !narrowed || len(ok) == 0 {
			continue
		}
		if err := t.SetCodecPreferences(ok); err != nil {
			r.log.Debug("codec preferences", "err", err)
		}
	}
}

// Close ends every peer's media.
func (r *Router) Close() {
	r.mu.Lock()
	r.closed = true
	peers := r.peerListLocked()
	r.mu.Unlock()
	for _, p := range peers {
		p.Close()
	}
	r.speakers.close()
	r.layers.close()
	r.engine.mu.Lock()
	delete(r.engine.routers, r)
	r.engine.mu.Unlock()
}

type sigHolder struct{ Signal }

// Peer is one participant's media: its publications and its subscribe connection.
type Peer struct {
	router *Router
	id     string
	name   string
	codecs []string
	log    *slog.Logger
	sig    atomic.Pointer[sigHolder]

	mu     sync.Mutex
	pubs   map[string]*publication
	sub    *subscriber
	closed bool
	mutes  muteState // moderation.go
}

func (p *Peer) signal() Signal { return p.sig.Load().Signal }

// SetSignal moves the peer to a new session (a resumed connection) and
// repeats an offer the old session may not have answered.
func (p *Peer) SetSignal(sig Signal) {
	p.sig.Store(&sigHolder{sig})
	if p.sub != nil {
		p.sub.resendOffer()
	}
}

func (p *Peer) publications() []*publication {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Collect(maps.Values(p.pubs))
}

// Publish answers a client's offer for a new stream, recorded if record is
// set and the router has a recorder. The caller sends the answer, then calls
// StartTrickle. It returns the tracks the answer accepts.
func (p *Peer) Publish(streamID, kind, offer string, record bool) (answer string, tracks []protocol.Track, err error) {
	if err := checkStreamTracks(offer); err != nil {
		return "", nil, err
	}
	offer = p.router.engine.filterSDP(offer)
	pub := newPublication(p, streamID, kind)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return "", nil, &protocol.Error{Code: protocol.CodeNotJoined, Reason: "not in a room"}
	}
	p.pubs[streamID] = pub
	p.mu.Unlock()
	answer, err = pub.start(offer)
	if err != nil {
		p.mu.Lock()
		delete(p.pubs, streamID)
		p.mu.Unlock()
		pub.close()
		return "", nil, err
	}
	tracks = answerTracks(answer)
	if fn := p.router.recorderFunc(); record && fn != nil {
		rec, err := fn(RecordStream{Participant: p.name, StreamID: streamID, Kind: kind, Tracks: recordTracks(tracks),
			RequestKeyframe: pub.requestKeyframe})
		if err != nil {
			// The meeting goes on unrecorded rather than failing the publish.
			p.log.Error("cannot record stream", "stream", streamID, "err", err)
		} else {
			pub.setRecorder(rec, tracks)
		}
	}
	return answer, tracks, nil
}

func (p *Peer) publication(streamID string) (*publication, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pub := p.pubs[streamID]
	if pub == nil {
		return nil, &protocol.Error{Code: protocol.CodeUnknownStream, Reason: fmt.Sprintf("you publish no stream %q", streamID)}
	}
	return pub, nil
}

// StartTrickle sends the publish connection's candidates, once its answer is out.
func (p *Peer) StartTrickle(streamID string) {
	if pub, err := p.publication(streamID); err == nil {
		pub.startTrickle()
	}
}

// Reoffer answers a new offer on a publish connection (ICE restart). The
// caller sends the answer, then calls StartTrickle.
func (p *Peer) Reoffer(streamID, offer string) (string, error) {
	pub, err := p.publication(streamID)
	if err != nil {
		return "", err
	}
	if err := checkStreamTracks(offer); err != nil {
		return "", err
	}
	return pub.reoffer(p.router.engine.filterSDP(offer))
}

// Unpublish closes one stream's publish connection.
func (p *Peer) Unpublish(streamID string) error {
	p.mu.Lock()
	pub := p.pubs[streamID]
	delete(p.pubs, streamID)
	p.mu.Unlock()
	if pub == nil {
		return &protocol.Error{Code: protocol.CodeUnknownStream, Reason: fmt.Sprintf("you publish no stream %q", streamID)}
	}
	pub.close()
	return nil
}

// Answer applies the client's answer to the subscribe connection's offer.
func (p *Peer) Answer(sdp string) error {
	if p.sub == nil {
		return &protocol.Error{Code: protocol.CodeBadRequest, Reason: "this session joined with subscribe: false"}
	}
	if err := p.sub.checkAnswer(sdp); err != nil {
		return err
	}
	return p.sub.handleAnswer(p.router.engine.filterSDP(sdp))
}

// AddCandidate applies a client's ICE candidate to one of its connections.
// A candidate on an address the SFU does not try (candidates.go) is ignored.
func (p *Peer) AddCandidate(target, streamID string, c webrtc.ICECandidateInit) error {
	if target != protocol.TargetSubscribe && target != protocol.TargetPublish {
		return &protocol.Error{Code: protocol.CodeBadRequest, Reason: `candidate target must be "publish" or "subscribe"`}
	}
	if !p.router.engine.acceptCandidateInit(c) {
		p.log.Debug("client candidate ignored", "candidate", clipCandidate(c.Candidate))
		return nil
	}
	switch target {
	case protocol.TargetSubscribe:
		if p.sub == nil {
			return &protocol.Error{Code: protocol.CodeBadRequest, Reason: "this session has no subscribe connection"}
		}
		return p.sub.addCandidate(c)
	case protocol.TargetPublish:
		pub, err := p.publication(streamID)
		if err != nil {
			return err
		}
		pc, err := pub.conn()
		if err != nil {
			return err
		}
		if err := pc.AddICECandidate(c); err != nil {
			return &protocol.Error{Code: protocol.CodeBadRequest, Reason: "bad ICE candidate: " + err.Error()}
		}
		return nil
	default:
		return &protocol.Error{Code: protocol.CodeBadRequest, Reason: `candidate target must be "publish" or "subscribe"`}
	}
}

// clipCandidate shortens a client's candidate for a log line.
func clipCandidate(c string) string {
	if len(c) > 120 {
		return c[:120] + "…"
	}
	return c
}

// RestartICE re-offers the subscribe connection with new ICE credentials.
func (p *Peer) RestartICE() error {
	if p.sub == nil {
		return &protocol.Error{Code: protocol.CodeBadRequest, Reason: "this session has no subscribe connection"}
	}
	p.sub.restartICE()
	return nil
}

// Close ends all of the peer's media and removes it from the router.
func (p *Peer) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	pubs := slices.Collect(maps.Values(p.pubs))
	clear(p.pubs)
	p.mu.Unlock()

	p.router.mu.Lock()
	if p.router.peers[p.id] == p {
		delete(p.router.peers, p.id)
	}
	p.router.mu.Unlock()

	for _, pub := range pubs {
		pub.close()
	}
	if p.sub != nil {
		p.sub.close()
	}
}
