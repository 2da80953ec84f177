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
	if s := m.current(); s != nil {
		s.send(&protocol.SDP{Type: protocol.TypeOffer, SDP: sdp, Streams: streams})
	}
}

// Candidate implements sfu.Signal.
func (m *member) Candidate(target, streamID string, c webrtc.ICECandidateInit) {
	if s := m.current(); s != nil {
		s.send(&protocol.Candidate{Type: protocol.TypeCandidate, Target: target, Stream: streamID,
			Candidate: &protocol.ICECandidate{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex,
				UsernameFragment: c.UsernameFragment}})
	}
}

// StreamStatus implements sfu.Signal.
func (m *member) StreamStatus(publisher, streamID, status, reason string) {
	if p, _ := m.joined(); p != nil {
		p.Notify(&protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventStreamStatus, Name: publisher,
			StreamID: streamID, Status: status, Reason: reason})
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
