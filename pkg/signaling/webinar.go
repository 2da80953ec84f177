package signaling

import (
	"fmt"
	"net/http"
	"sync"

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

// AdmitWebSocket applies to another WebSocket endpoint (pkg/live's viewers)
// what a signaling session gets: the page origin check and the per-address
// session limits. It answers a refusal itself (403, or 429 with the reason)
// and returns ok false; otherwise release must be called when the
// WebSocket ends, and addr is the client's address as the limits count it
// (behind a trusted proxy, the client's; IPv6 by /64).
func (h *Hub) AdmitWebSocket(w http.ResponseWriter, r *http.Request) (release func(), addr string, ok bool) {
	if !originAllowed(r, h.cfg.AllowedOrigins) {
		h.limits.origin.Add(1)
		http.Error(w, fmt.Sprintf("pages of origin %s may not open a WebSocket on this server; "+
			"its operator can allow them with allowed_origins", clip(r.Header.Get("Origin"))), http.StatusForbidden)
		return nil, "", false
	}
	ip := clientAddr(r, h.cfg.TrustedProxies)
	if !ip.IsValid() {
		return func() {}, r.RemoteAddr, true
	}
	key := addrKey(ip)
	if code, reason := h.limits.admitSession(key); code != "" {
		h.log.Info("websocket refused", "code", code, "address", addrString(key), "path", r.URL.Path)
		http.Error(w, code+": "+reason, http.StatusTooManyRequests)
		return nil, "", false
	}
	var once sync.Once
	return func() { once.Do(func() { h.limits.sessionEnded(key) }) }, addrString(key), true
}

// liveEnding tells everyone in a webinar room that a moderator is ending
// (LIVE_ENDED, with the replay) and returns the members that are viewers,
// whose sessions releaseViewers ends once the room has.
func (h *Hub) liveEnding(rm *room.Room, members []*member) []*member {
	if !rm.Webinar() {
		return nil
	}
	replay := ""
	if h.cfg.Replay != nil && rm.Recording() {
		replay = h.cfg.Replay(rm.Name(), rm.Session())
	}
	rm.Announce(func() *protocol.Event {
		return &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventLiveEnded, Replay: replay,
			Reason: "the live has ended"}
	}, false)
	var viewers []*member
	for _, m := range members {
		if p, _ := m.joined(); p != nil && p.Viewer() {
			viewers = append(viewers, m)
		}
	}
	return viewers
}

// releaseViewers ends the sessions of a webinar's viewers once its live
// ended: nothing of theirs stays open on the server.
func (h *Hub) releaseViewers(viewers []*member) {
	for _, m := range viewers {
		if s := m.current(); s != nil {
			s.disconnect("the live has ended")
		}
	}
}
