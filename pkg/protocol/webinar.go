package protocol

// Webinar rooms (a room preset's webinar: true, docs/protocol.md): viewers
// (participants who may neither publish nor moderate) watch and chat, are not
// shown to each other, and are counted; a moderator brings one on stage.

// Roles in a webinar room (STATE's and JOINED's role, ParticipantInfo.Role).
const (
	RoleViewer    = "viewer"
	RolePresenter = "presenter"
)

// Webinar events.
const (
	// EventViewers tells everyone in a webinar room how many viewers it
	// has (Viewers), at most once a second.
	EventViewers = "VIEWERS"
	// EventStaged and EventUnstaged tell those who see the participant
	// (Name) that a moderator (By) brought it on stage or back; viewers
	// get JOINED and LEFT instead, and the participant a fresh STATE.
	EventStaged   = "STAGED"
	EventUnstaged = "UNSTAGED"
	// EventLiveEnded tells a webinar's viewers that the live has ended,
	// with its replay (Replay), before the server closes their sessions.
	EventLiveEnded = "LIVE_ENDED"
)

// Moderation actions of webinar rooms (Moderate.Action).
const (
	// ActionStage lets a participant publish for the rest of its session
	// in the room; ActionUnstage ends its streams and takes that back.
	ActionStage   = "stage"
	ActionUnstage = "unstage"
)
