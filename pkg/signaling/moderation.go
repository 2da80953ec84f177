package signaling

import (
	"fmt"

	"github.com/parley/parley/pkg/access"
	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/room"
)

// membersOf returns the members whose participant is in rm.
func (h *Hub) membersOf(rm *room.Room) []*member {
	h.mu.Lock()
	all := make([]*member, 0, len(h.members))
	for _, m := range h.members {
		all = append(all, m)
	}
	h.mu.Unlock()
	var out []*member
	for _, m := range all {
		if p, _ := m.joined(); p != nil && p.Room() == rm {
			out = append(out, m)
		}
	}
	return out
}

// memberOf returns the member of participant p, or nil.
func (h *Hub) memberOf(p *room.Participant) *member {
	for _, m := range h.membersOf(p.Room()) {
		if q, _ := m.joined(); q == p {
			return m
		}
	}
	return nil
}

// sourceTracks maps a source to the media it mutes: the stream kind and the
// track kind ("" for every track of the stream).
func sourceTracks(source string) (streamKind, trackKind string) {
	switch source {
	case auth.SourceMicrophone:
		return protocol.KindCamera, "audio"
	case auth.SourceCamera:
		return protocol.KindCamera, "video"
	default:
		return protocol.KindScreen, ""
	}
}

// moderate carries out a moderator's action, after checking the grants. The
// room tells everyone and logs who did what; here the media follows.
func (s *Session) moderate(p *room.Participant, req protocol.Moderate) error {
	g := p.Grants()
	rm := p.Room()
	adm := s.member.admission()
	needModerate := func() error {
		if !g.Moderate {
			return access.Forbidden("%s needs the moderate grant", req.Action)
		}
		return nil
	}
	switch req.Action {
	case protocol.ActionMute, protocol.ActionUnmute:
		muted := req.Action == protocol.ActionMute
		if !room.ValidSource(req.Source) {
			return &protocol.Error{Code: protocol.CodeBadRequest,
				Reason: fmt.Sprintf("source %q: use microphone, camera or screen", req.Source)}
		}
		self := req.Name == "" || req.Name == p.Name()
		switch {
		case g.Moderate:
		case self && !muted:
			if p.Muted(req.Source) && (adm.Preset == nil || !adm.Preset.Moderation.SelfUnmute) {
				return access.Forbidden("a moderator muted your %s; only a moderator may unmute it in this room", req.Source)
			}
		default:
			return needModerate()
		}
		name := req.Name
		if self {
			name = p.Name()
		}
		target, err := rm.SetMuted(p, name, req.Source, muted)
		if err != nil {
			return err
		}
		if m := s.hub.memberOf(target); m != nil {
			if _, peer := m.joined(); peer != nil {
				streamKind, trackKind := sourceTracks(req.Source)
				peer.SetMuted(streamKind, trackKind, muted)
			}
		}
		return nil
	case protocol.ActionRemove:
		if err := needModerate(); err != nil {
			return err
		}
		target, err := rm.Remove(p, req.Name, req.Bar)
		if err != nil {
			return err
		}
		if m := s.hub.memberOf(target); m != nil {
			m.leave("removed by " + p.Name())
		} else {
			target.Leave("removed by " + p.Name())
		}
		return nil
	case protocol.ActionLock, protocol.ActionUnlock:
		if err := needModerate(); err != nil {
			return err
		}
		rm.SetLocked(p, req.Action == protocol.ActionLock)
		return nil
	case protocol.ActionEnd:
		if err := needModerate(); err != nil {
			return err
		}
		members := s.hub.membersOf(rm)
		viewers := s.hub.liveEnding(rm, members)
		rm.End(p)
		for _, m := range members {
			m.roomEnded(rm)
		}
		s.hub.releaseViewers(viewers)
		return nil
	case protocol.ActionStartRecording, protocol.ActionStopRecording:
		on := req.Action == protocol.ActionStartRecording
		if !g.Moderate && !g.Record {
			return access.Forbidden("%s needs the moderate or the record grant", req.Action)
		}
		switch adm.Preset.RecordPolicy() {
		case access.RecordNever:
			if on {
				return access.Forbidden("room %q is never recorded (room preset %s)", rm.Name(), adm.Preset.Name())
			}
		case access.RecordAlways:
			if !on {
				return access.Forbidden("room %q is always recorded (room preset %s)", rm.Name(), adm.Preset.Name())
			}
		}
		router := s.hub.router(rm)
		if on && !router.CanRecord() {
			return access.Forbidden("this server records nothing (it has no records directory)")
		}
		rm.SetRecording(p, on)
		router.SetRecording(on)
		return nil
	case protocol.ActionStage, protocol.ActionUnstage:
		return s.stage(p, req)
	case "":
		return &protocol.Error{Code: protocol.CodeBadRequest, Reason: `moderate needs an "action"`}
	}
	return &protocol.Error{Code: protocol.CodeBadRequest, Reason: fmt.Sprintf(
		"unknown moderation action %q (mute, unmute, remove, lock, unlock, end, start_recording, stop_recording, stage, unstage)", req.Action)}
}
