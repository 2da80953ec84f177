package signaling

import (
	"sync"
	"time"

	"github.com/parley/parley/pkg/access"
	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/sfu"
	"github.com/pion/webrtc/v4"
)

// member is a participant as the signaling layer knows it: reachable by its
// resume token, attached to at most one live session at a time. It is the
// participant's room.Sink and sfu.Signal, and forwards both to the current
// session; while no session is attached (the reconnect grace) events are
// dropped, and a resumed session gets a fresh STATE instead.
type member struct {
	hub   *Hub
	token string
	// access is the access token the member's first session presented
	// (nil: none); a resumed session keeps it, and so its grants.
	access *auth.Token

	// Lock order: room lock, then mu. Never call into the room or the media
	// plane with mu held.
	mu      sync.Mutex
	session *Session
	p       *room.Participant
	peer    *sfu.Peer
	grace   *time.Timer
	// subject, when set, is who the participant is by its credentials; it
	// then names the participant where a person is meant (identity).
	subject string
	// While holding (a join in progress), subscribe offers and candidates
	// wait in held, so that the join's reply goes out first.
	holding bool
	held    []any
	// adm is what the participant was admitted to its room with.
	adm access.Admission
}

func (m *member) admission() access.Admission {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.adm
}

func (m *member) setAdmission(a access.Admission) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.adm = a
}

// identity is who participant p is, for what is granted per person (the
// TURN user name, so per-user TURN quotas): the subject of its access token
// when the session has one, else its participant name.
func (m *member) identity(p *room.Participant) string {
	if id := p.Identity(); id != "" {
		return id
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.subject != "" {
		return m.subject
	}
	return p.Name()
}

// hold makes subscribe offers and candidates wait until release.
func (m *member) hold() {
	m.mu.Lock()
	m.holding = true
	m.mu.Unlock()
}

// release sends (send) or drops what waited since hold, in order, and stops holding.
func (m *member) release(send bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if send && m.session != nil {
		for _, msg := range m.held {
			m.session.send(msg) // queues only: safe under mu
		}
	}
	m.held, m.holding = nil, false
}

// sendMedia sends a media message (offer, candidate) to the session, or
// keeps it while holding.
func (m *member) sendMedia(msg any) {
	m.mu.Lock()
	if m.holding {
		m.held = append(m.held, msg)
		m.mu.Unlock()
		return
	}
	s := m.session
	m.mu.Unlock()
	if s != nil {
		s.send(msg)
	}
}

func (m *member) current() *Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.session
}

func (m *member) joined() (*room.Participant, *sfu.Peer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.p, m.peer
}

// Deliver implements room.Sink.
func (m *member) Deliver(ev *protocol.Event) {
	if s := m.current(); s != nil {
		s.send(ev)
	}
}

// SubscribeOffer implements sfu.Signal.
func (m *member) SubscribeOffer(sdp string, streams map[string]string) {
	m.sendMedia(&protocol.SDP{Type: protocol.TypeOffer, SDP: sdp, Streams: streams})
}

// Candidate implements sfu.Signal.
func (m *member) Candidate(target, streamID string, c webrtc.ICECandidateInit) {
	m.sendMedia(&protocol.Candidate{Type: protocol.TypeCandidate, Target: target, Stream: streamID,
		Candidate: &protocol.ICECandidate{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex,
			UsernameFragment: c.UsernameFragment}})
}

// StreamStatus implements sfu.Signal.
func (m *member) StreamStatus(publisher, streamID, status, reason string) {
	if p, _ := m.joined(); p != nil {
		p.Notify(&protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventStreamStatus, Name: publisher,
			StreamID: streamID, Status: status, Reason: reason})
	}
}

// VideoStatus implements sfu.VideoSignal: STREAM_STATUS PLAYING with the
// video's state and why.
func (m *member) VideoStatus(publisher, streamID string, paused bool, reason string) {
	video := protocol.VideoPlaying
	if paused {
		video = protocol.VideoPaused
	}
	if p, _ := m.joined(); p != nil {
		p.Notify(&protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventStreamStatus, Name: publisher,
			StreamID: streamID, Status: protocol.StreamPlaying, Reason: reason, Video: video})
	}
}

// PublishLayers implements sfu.LayerSignal: PUBLISH_LAYERS, which layers of
// this participant's simulcast stream anyone receives.
func (m *member) PublishLayers(streamID string, layers []protocol.LayerState) {
	if p, _ := m.joined(); p != nil {
		p.Notify(&protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventPublishLayers, StreamID: streamID, Layers: layers})
	}
}

// Quality implements sfu.QualitySignal: QUALITY, how this participant
// receives each remote track.
func (m *member) Quality(tracks []protocol.TrackQuality) {
	if p, _ := m.joined(); p != nil {
		p.Notify(&protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventQuality, Quality: tracks})
	}
}

// PublishStatus implements sfu.Signal.
func (m *member) PublishStatus(streamID, status, reason string) {
	if p, _ := m.joined(); p != nil {
		p.SetStreamStatus(streamID, status, reason)
	}
}

// attach makes s the member's session; the previous live session, if any, is
// told it was replaced and closed.
func (m *member) attach(s *Session) {
	m.mu.Lock()
	old := m.session
	m.session = s
	if m.grace != nil {
		m.grace.Stop()
		m.grace = nil
	}
	m.mu.Unlock()
	if old != nil && old != s {
		old.disconnect("replaced by a newer connection of the same participant")
	}
}

// detach is called when session s ended. If s was the member's session and
// the member is in a room, it stays there for the reconnect grace.
func (m *member) detach(s *Session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.session != s {
		return
	}
	m.session = nil
	if m.p == nil {
		return
	}
	m.grace = time.AfterFunc(m.hub.cfg.ReconnectGrace, func() {
		m.mu.Lock()
		expired := m.session == nil && m.grace != nil
		m.grace = nil
		m.mu.Unlock()
		if expired {
			m.leave("disconnected")
		}
	})
}

func (m *member) stopGrace() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.grace != nil {
		m.grace.Stop()
		m.grace = nil
	}
}

// leave takes the member out of its room: media first, then the room (the
// others get UNPUBLISHED and LEFT). The name is free when it returns.
func (m *member) leave(reason string) {
	m.mu.Lock()
	p, peer := m.p, m.peer
	m.p, m.peer = nil, nil
	m.mu.Unlock()
	if peer != nil {
		peer.Close()
	}
	if p != nil {
		p.Leave(reason)
	}
	m.hub.setMember(m, false)
}

// roomEnded lets go of a room a moderator ended: its media is closed and the
// member no longer answers to its resume token; the session stays connected.
func (m *member) roomEnded(rm *room.Room) {
	m.mu.Lock()
	p, peer := m.p, m.peer
	if p == nil || p.Room() != rm {
		m.mu.Unlock()
		return
	}
	m.p, m.peer = nil, nil
	m.mu.Unlock()
	if peer != nil {
		peer.Close()
	}
	m.hub.setMember(m, false)
}

// closeMedia closes the member's media without room events (shutdown).
func (m *member) closeMedia() {
	m.mu.Lock()
	peer := m.peer
	m.p, m.peer = nil, nil
	m.mu.Unlock()
	if peer != nil {
		peer.Close()
	}
}
