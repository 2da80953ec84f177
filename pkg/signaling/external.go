package signaling

import (
	"context"
	"fmt"

	"github.com/parley/parley/pkg/access"
	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/sfu"
)

// External is a participant that takes part without a signaling session: a
// WHIP publisher (pkg/whip). It is admitted as a join is (its token, the
// room's preset) and is a member like any other (moderators mute and remove
// it), but the room's events and the media plane's messages reach nobody:
// its client learns what it needs over HTTP.
type External struct {
	h *Hub
	m *member
}

// JoinExternal admits a publisher without a signaling session to a room:
// name is the name it asks for (a token's name wins), tok its verified
// token or nil, remote its address (for the password guess limits).
func (h *Hub) JoinExternal(roomName, name string, tok *auth.Token, remote string) (*External, error) {
	h.mu.Lock()
	closing := h.closing
	h.mu.Unlock()
	if closing {
		return nil, &protocol.Error{Code: protocol.CodeShuttingDown, Reason: "the server is shutting down"}
	}
	no := false
	adm, err := h.cfg.Access.Admit(access.JoinRequest{Room: roomName, Name: name, Token: tok, Subscribe: &no, Remote: remote})
	if err != nil {
		return nil, err
	}
	if !adm.Grants.PublishesAny() {
		return nil, access.Forbidden("your grants do not include publishing in room %q", roomName)
	}
	m := &member{hub: h, token: randomToken("rt-", 16), access: tok}
	if tok != nil {
		m.subject = tok.Identity
	}
	p, err := h.rooms.Join(roomName, adm.Name, m, room.JoinOptions{Record: adm.Record, Identity: adm.Identity,
		Grants: adm.Grants, MaxParticipants: adm.MaxParticipants, MaxStreams: adm.MaxStreams,
		NeverRecord: adm.NeverRecord(), Webinar: adm.Webinar()})
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.p, m.adm = p, adm
	m.mu.Unlock()
	peer, err := h.router(p.Room()).AddPeer(p.ID(), sfu.PeerOptions{Name: p.Name()}, m)
	if err != nil {
		m.leave("left")
		return nil, err
	}
	m.mu.Lock()
	m.peer = peer
	m.mu.Unlock()
	h.setMember(m, true)
	return &External{h: h, m: m}, nil
}

// Participant returns the participant, or nil once it left (a moderator
// removed it, the room ended).
func (x *External) Participant() *room.Participant {
	p, _ := x.m.joined()
	return p
}

// Peer returns the participant's media, or nil once it left.
func (x *External) Peer() *sfu.Peer {
	_, peer := x.m.joined()
	return peer
}

// Publish publishes a camera stream from offer, checked as a publish
// request is (the grants by source, the room's codecs, its record policy,
// the stream limit), and returns the answer with the server's candidates
// in it, and the stream's id.
func (x *External) Publish(ctx context.Context, offer string) (answer, streamID string, err error) {
	p, peer := x.m.joined()
	if p == nil || peer == nil {
		return "", "", &protocol.Error{Code: protocol.CodeNotJoined, Reason: "not in a room"}
	}
	offer, err = x.m.admission().CheckPublish(protocol.KindCamera, offer, false)
	if err != nil {
		return "", "", err
	}
	if err := p.CanPublish(); err != nil {
		return "", "", err
	}
	streamID = room.NewStreamID()
	_, tracks, err := peer.Publish(streamID, protocol.KindCamera, offer, p.Room().Recording())
	if err != nil {
		return "", "", err
	}
	answer, err = peer.GatheredAnswer(ctx, streamID)
	if err != nil {
		_ = peer.Unpublish(streamID)
		return "", "", fmt.Errorf("publish answer: %w", err)
	}
	if err := p.AddStream(protocol.StreamInfo{ID: streamID, Kind: protocol.KindCamera, Tracks: tracks,
		Status: protocol.StreamPending}); err != nil {
		_ = peer.Unpublish(streamID)
		return "", "", err
	}
	return answer, streamID, nil
}

// Leave ends the participant's media and takes it out of its room.
func (x *External) Leave() { x.m.leave("left") }
