package signaling

import (
	"github.com/parley/parley/pkg/access"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/room"
)

// stage carries out a moderator's stage or unstage (webinar rooms, and any
// room: a participant a moderator lets publish for the rest of its
// session). Taking a participant back ends its streams.
func (s *Session) stage(p *room.Participant, req protocol.Moderate) error {
	if !p.Grants().Moderate {
		return access.Forbidden("%s needs the moderate grant", req.Action)
	}
	if req.Name == "" {
		return &protocol.Error{Code: protocol.CodeBadRequest, Reason: req.Action + ` needs the participant's "name"`}
	}
	rm := p.Room()
	on := req.Action == protocol.ActionStage
	if !on {
		// Its streams end first, while the others still see it publish them.
		if target := s.hub.memberByName(rm, req.Name); target != nil {
			target.endStreams()
		}
	}
	target, err := rm.SetStaged(p, req.Name, on)
	if err != nil {
		return err
	}
	if m := s.hub.memberOf(target); m != nil {
		m.mu.Lock()
		m.adm.Grants = target.Grants()
		m.mu.Unlock()
		if !on {
			m.endStreams() // one published meanwhile
		}
	}
	return nil
}

// memberByName returns the member of the participant of rm called name, or nil.
func (h *Hub) memberByName(rm *room.Room, name string) *member {
	_, key, err := room.NameKey(name)
	if err != nil {
		return nil
	}
	for _, m := range h.membersOf(rm) {
		if p, _ := m.joined(); p != nil {
			if _, k, err := room.NameKey(p.Name()); err == nil && k == key {
				return m
			}
		}
	}
	return nil
}

// endStreams unpublishes every stream of the member's participant: the
// media closes, the others get UNPUBLISHED.
func (m *member) endStreams() {
	p, peer := m.joined()
	if p == nil {
		return
	}
	for _, st := range p.Streams() {
		if peer != nil {
			_ = peer.Unpublish(st.ID)
		}
		_ = p.RemoveStream(st.ID)
	}
}
