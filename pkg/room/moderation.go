package room

import (
	"fmt"
	"slices"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/protocol"
)

// Moderation: what a participant with the moderate grant does to the room
// and its participants. The room keeps the state (who is muted, who is
// barred, whether it is locked) and tells everyone; the caller checks the
// grants and acts on the media.

// ValidSource reports whether s is a source a moderator mutes.
func ValidSource(s string) bool { return slices.Contains(auth.Sources, s) }

func unknownParticipant(rm *Room, name string) error {
	return &protocol.Error{Code: protocol.CodeUnknownParticipant,
		Reason: fmt.Sprintf("no participant named %q in room %q", name, rm.name)}
}

// byNameLocked finds a participant by how its name displays.
func (rm *Room) byNameLocked(name string) *Participant {
	if _, key, err := NameKey(name); err == nil {
		return rm.participants[key]
	}
	return nil
}

// barKey is what barring a participant remembers: its identity, or for a
// participant without a token its name's key.
func barKey(identity, nameKey string) string {
	if identity != "" {
		return "id:" + identity
	}
	return "name:" + nameKey
}

// broadcastAllLocked delivers ev to every participant.
func (rm *Room) broadcastAllLocked(ev *protocol.Event) {
	rm.broadcastLocked(nil, ev)
}

// SetMuted mutes (or unmutes) the source of the participant called name and
// tells everyone (MUTED, UNMUTED). by is who acts. It returns the participant.
func (rm *Room) SetMuted(by *Participant, name, source string, muted bool) (*Participant, error) {
	if !ValidSource(source) {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest,
			Reason: fmt.Sprintf("source %q: use microphone, camera or screen", source)}
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	p := rm.byNameLocked(name)
	if p == nil {
		return nil, unknownParticipant(rm, name)
	}
	if p.muted[source] == muted {
		return p, nil
	}
	if p.muted == nil {
		p.muted = map[string]bool{}
	}
	p.muted[source] = muted
	ev := protocol.EventUnmuted
	if muted {
		ev = protocol.EventMuted
	}
	rm.broadcastAllLocked(&protocol.Event{Type: protocol.TypeEvent, Event: ev, Room: rm.name, Name: p.name, Source: source,
		By: by.name})
	rm.reg.log.Info("moderation", "room", rm.name, "action", ev, "by", by.name, "by_identity", by.identity,
		"name", p.name, "source", source)
	return p, nil
}

// Muted reports whether a moderator muted the participant's source.
func (p *Participant) Muted(source string) bool {
	p.room.mu.Lock()
	defer p.room.mu.Unlock()
	return p.muted[source]
}

func (p *Participant) mutedListLocked() []string {
	var out []string
	for _, s := range auth.Sources {
		if p.muted[s] {
			out = append(out, s)
		}
	}
	return out
}

// Remove tells everyone (REMOVED) that by removes the participant called
// name, and with bar keeps its identity (or, without one, its name) out for
// the rest of the room session. The caller then makes it leave (its media
// first). It returns the participant.
func (rm *Room) Remove(by *Participant, name string, bar bool) (*Participant, error) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	p := rm.byNameLocked(name)
	if p == nil {
		return nil, unknownParticipant(rm, name)
	}
	if p == by {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Reason: "to leave the room, send leave"}
	}
	if bar {
		if rm.barred == nil {
			rm.barred = map[string]bool{}
		}
		rm.barred[barKey(p.identity, p.key)] = true
	}
	rm.broadcastAllLocked(&protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventRemoved, Room: rm.name, Name: p.name,
		By: by.name, Barred: bar})
	rm.reg.log.Info("moderation", "room", rm.name, "action", protocol.EventRemoved, "by", by.name, "by_identity", by.identity,
		"name", p.name, "identity", p.identity, "barred", bar)
	return p, nil
}

// Barred reports whether a moderator barred identity (a token's subject)
// from the room for the rest of its session.
func (rm *Room) Barred(identity string) bool {
	if identity == "" {
		return false
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return rm.barred[barKey(identity, "")]
}

// SetLocked locks (or unlocks) the room: while locked only participants with
// the moderate grant join. Everyone gets LOCKED or UNLOCKED.
func (rm *Room) SetLocked(by *Participant, locked bool) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.locked == locked {
		return
	}
	rm.locked = locked
	ev := protocol.EventUnlocked
	if locked {
		ev = protocol.EventLocked
	}
	rm.broadcastAllLocked(&protocol.Event{Type: protocol.TypeEvent, Event: ev, Room: rm.name, By: by.name, Locked: locked})
	rm.reg.log.Info("moderation", "room", rm.name, "action", ev, "by", by.name, "by_identity", by.identity)
}

// Locked reports whether a moderator locked the room.
func (rm *Room) Locked() bool {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return rm.locked
}

// End ends the room for everyone: each participant gets ENDED, then FAILED
// with the reason, and the room session finalizes.
func (rm *Room) End(by *Participant) {
	rm.mu.Lock()
	if rm.finalized {
		rm.mu.Unlock()
		return
	}
	rm.broadcastAllLocked(&protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventEnded, Room: rm.name, By: by.name})
	rm.reg.log.Info("moderation", "room", rm.name, "action", protocol.EventEnded, "by", by.name, "by_identity", by.identity)
	rm.mu.Unlock()
	rm.close("the room was ended by " + by.name)
}

// SetRecording starts (or stops) the room session's recording and tells
// everyone (RECORDING STARTED, or STOPPED with reason MODERATOR, naming who).
// Streams published from now on follow it; the caller starts or stops the
// recording of the streams already published.
func (rm *Room) SetRecording(by *Participant, on bool) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.recording == on {
		return
	}
	rm.recording = on
	for _, p := range rm.order {
		for _, s := range p.streams {
			s.Recording = on
		}
	}
	ev := &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventRecording, Room: rm.name, Recording: on,
		Status: protocol.RecordingStarted, By: by.name}
	if !on {
		ev.Status, ev.Reason = protocol.RecordingStopped, protocol.RecordingStoppedByModerator
		rm.notice = nil // later joiners are not told it records
	}
	rm.broadcastAllLocked(ev)
	rm.reg.log.Info("moderation", "room", rm.name, "action", protocol.EventRecording, "recording", on, "by", by.name,
		"by_identity", by.identity)
}

// checkAdmittedLocked refuses a join to a locked room (but for moderators)
// and of a barred identity or name.
func (rm *Room) checkAdmittedLocked(key string, opts JoinOptions) error {
	if rm.barred[barKey(opts.Identity, key)] {
		return &protocol.Error{Code: protocol.CodeForbidden,
			Reason: fmt.Sprintf("a moderator removed you from room %q; you may not rejoin it until it ends", rm.name)}
	}
	if rm.locked && !opts.Grants.Moderate {
		return &protocol.Error{Code: protocol.CodeRoomLocked,
			Reason: fmt.Sprintf("room %q is locked: only moderators may join now", rm.name)}
	}
	return nil
}
