package room

import (
	"fmt"
	"time"

	"github.com/parley/parley/pkg/protocol"
)

// Webinar rooms (a room preset's webinar: true): a participant who may
// neither publish nor moderate is a viewer. Viewers watch and chat; they are
// not shown to each other (no JOINED, LEFT or STATE entry for another
// viewer, no private message between two of them), while presenters and
// moderators see everyone. Everyone gets the number of viewers (VIEWERS), at
// most once per viewersInterval however fast viewers come and go. A
// moderator brings a viewer on stage (it may publish for the rest of its
// session in the room) and back.

// viewersInterval is the least time between two VIEWERS events of a room.
const viewersInterval = time.Second

// viewerCount schedules a room's VIEWERS events (guarded by the room's lock).
type viewerCount struct {
	timer  *time.Timer // a VIEWERS event is due
	sentAt time.Time
	sent   int
	once   bool
}

func (v *viewerCount) stop() {
	if v.timer != nil {
		v.timer.Stop()
		v.timer = nil
	}
}

// Webinar reports whether the room is a webinar room.
func (rm *Room) Webinar() bool { return rm.webinar }

// isViewerLocked reports whether p is a viewer.
func (rm *Room) isViewerLocked(p *Participant) bool {
	return rm.webinar && !p.grants.PublishesAny() && !p.grants.Moderate
}

// roleLocked is p's role in a webinar room ("" in other rooms).
func (rm *Room) roleLocked(p *Participant) string {
	switch {
	case !rm.webinar:
		return ""
	case rm.isViewerLocked(p):
		return protocol.RoleViewer
	default:
		return protocol.RolePresenter
	}
}

// seesLocked reports whether to is shown about: not when both are viewers.
func (rm *Room) seesLocked(to, about *Participant) bool {
	return !rm.isViewerLocked(to) || !rm.isViewerLocked(about)
}

// broadcastAboutLocked delivers ev, which names about, to every other
// participant who sees about.
func (rm *Room) broadcastAboutLocked(about *Participant, ev *protocol.Event) {
	for _, o := range rm.order {
		if o != about && rm.seesLocked(o, about) {
			o.sink.Deliver(ev)
		}
	}
}

// viewerCountLocked counts the room's viewers.
func (rm *Room) viewerCountLocked() int {
	n := 0
	for _, o := range rm.order {
		if rm.isViewerLocked(o) {
			n++
		}
	}
	return n
}

// Viewers returns the number of viewers in a webinar room.
func (rm *Room) Viewers() int {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return rm.viewerCountLocked()
}

// viewersChangedLocked notes that a viewer came or went (or a participant
// stopped or started being one): a VIEWERS event is sent once
// viewersInterval has passed since the last one.
func (rm *Room) viewersChangedLocked() {
	if !rm.webinar || rm.finalized || rm.viewers.timer != nil {
		return
	}
	wait := max(time.Until(rm.viewers.sentAt.Add(viewersInterval)), 0)
	rm.viewers.timer = time.AfterFunc(wait, rm.sendViewers)
}

// sendViewers tells everyone the number of viewers, if it changed.
func (rm *Room) sendViewers() {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.viewers.timer = nil
	if rm.finalized {
		return
	}
	n := rm.viewerCountLocked()
	if rm.viewers.once && n == rm.viewers.sent {
		return
	}
	rm.viewers.once, rm.viewers.sent, rm.viewers.sentAt = true, n, time.Now()
	rm.broadcastLocked(nil, &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventViewers, Room: rm.name, Viewers: n})
}

// Viewer reports whether the participant is a viewer of a webinar room.
func (p *Participant) Viewer() bool {
	p.room.mu.Lock()
	defer p.room.mu.Unlock()
	return p.room.isViewerLocked(p)
}

// Staged reports whether a moderator brought the participant on stage.
func (p *Participant) Staged() bool {
	p.room.mu.Lock()
	defer p.room.mu.Unlock()
	return p.staged
}

// SetStaged brings the participant called name on stage (on: it may
// publish from every source for the rest of its session in the room) or
// back (its grants as admitted). The participant gets a fresh STATE with its
// grants; viewers who did not see it (it was a viewer) get JOINED, or LEFT
// when it goes back to being one; everyone else STAGED or UNSTAGED naming
// by. Taking a participant back, the caller ends its streams. It returns the
// participant.
func (rm *Room) SetStaged(by *Participant, name string, on bool) (*Participant, error) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	p := rm.byNameLocked(name)
	if p == nil || !rm.seesLocked(by, p) {
		return nil, unknownParticipant(rm, name)
	}
	if p.staged == on {
		return p, nil
	}
	if on && p.grants.Camera && p.grants.Microphone && p.grants.Screen {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest,
			Reason: fmt.Sprintf("%s may publish already", p.name)}
	}
	wasViewer := rm.isViewerLocked(p)
	if on {
		p.offStage = p.grants
		p.grants.Camera, p.grants.Microphone, p.grants.Screen = true, true, true
	} else {
		p.grants = p.offStage
	}
	p.staged = on
	isViewer := rm.isViewerLocked(p)
	p.sink.Deliver(rm.stateLocked(p))
	kind := protocol.EventUnstaged
	if on {
		kind = protocol.EventStaged
	}
	for _, o := range rm.order {
		if o == p {
			continue
		}
		switch viewer := rm.isViewerLocked(o); {
		case viewer && wasViewer && !isViewer:
			o.sink.Deliver(&protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventJoined, Room: rm.name, Name: p.name,
				Role: rm.roleLocked(p)})
		case viewer && !wasViewer && isViewer:
			o.sink.Deliver(&protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventLeft, Room: rm.name, Name: p.name,
				Reason: "left the stage"})
		case rm.seesLocked(o, p):
			o.sink.Deliver(&protocol.Event{Type: protocol.TypeEvent, Event: kind, Room: rm.name, Name: p.name, By: by.name,
				Role: rm.roleLocked(p)})
		}
	}
	rm.viewersChangedLocked()
	rm.reg.log.Info("moderation", "room", rm.name, "action", kind, "by", by.name, "by_identity", by.identity,
		"name", p.name, "identity", p.identity)
	return p, nil
}
