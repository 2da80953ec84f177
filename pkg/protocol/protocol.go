// Package protocol defines Parley's signaling messages: the JSON that flows over
// one WebSocket per session between a client (the browser's roomapi.js, the Go
// client in pkg/client) and the server (pkg/signaling).
//
// Every message is a JSON object with a "type". Requests from the client may
// carry a numeric "id"; the server answers each request that has an id with
// exactly one "reply", "answer" or "error" carrying the same id. Events are
// pushed with type "event" and never carry a request id. docs/protocol.md has
// an example of every message.
package protocol

import "encoding/json"

// Message types sent by clients.
const (
	TypeConnect    = "connect"
	TypeJoin       = "join"
	TypePublish    = "publish"
	TypeUnpublish  = "unpublish"
	TypeOffer      = "offer" // client re-offer on one of its publish connections (ICE restart); server offer on the subscribe connection
	TypeAnswer     = "answer"
	TypeCandidate  = "candidate"
	TypeRestartICE = "restartIce"
	TypeMessage    = "message"
	TypeLeave      = "leave"
	TypePing       = "ping" // answered with a reply: lets a page notice a dead WebSocket, which browsers hide
	TypeModerate   = "moderate"
	TypeTiles      = "tiles"    // how the client shows remote video: each stream's tile size and visibility
	TypePresence   = "presence" // the client's raised hand and own microphone/camera state, shown to the others
)

// Moderation actions (Moderate.Action).
const (
	ActionMute           = "mute"
	ActionUnmute         = "unmute"
	ActionRemove         = "remove"
	ActionLock           = "lock"
	ActionUnlock         = "unlock"
	ActionEnd            = "end"
	ActionStartRecording = "start_recording"
	ActionStopRecording  = "stop_recording"
)

// Message types sent by the server.
const (
	TypeSession = "session"
	TypeReply   = "reply"
	TypeError   = "error"
	TypeEvent   = "event"
)

// Session statuses (Flashphoner's SESSION_STATUS).
const (
	SessionEstablished  = "ESTABLISHED"
	SessionFailed       = "FAILED"
	SessionDisconnected = "DISCONNECTED"
)

// Room events (Flashphoner's ROOM_EVENT), plus STREAM_STATUS for stream state changes.
const (
	EventState        = "STATE"
	EventJoined       = "JOINED"
	EventLeft         = "LEFT"
	EventPublished    = "PUBLISHED"
	EventUnpublished  = "UNPUBLISHED"
	EventMessage      = "MESSAGE"
	EventFailed       = "FAILED"
	EventStreamStatus = "STREAM_STATUS"
	// EventPresence: a participant raised or lowered its hand or turned its
	// own microphone or camera off or on (Hand, MicOff, CamOff: its whole state).
	EventPresence = "PRESENCE"
	// Moderation: everyone in the room gets each, with By the moderator's name.
	EventMuted    = "MUTED"
	EventUnmuted  = "UNMUTED"
	EventRemoved  = "REMOVED"
	EventLocked   = "LOCKED"
	EventUnlocked = "UNLOCKED"
	EventEnded    = "ENDED"
	// EventRecording reports the room session's recording: STARTED when its
	// first file is made (the first recorded media arrived) or a moderator
	// started it (By), STOPPED when a limit or a moderator (By) ended it. Each participant in the room gets a signed link to the
	// session's recording page (RecordingURL).
	EventRecording = "RECORDING"
	// EventClipAdded and EventClipDeleted report the room's media messages
	// (voice and video clips posted over HTTP, docs/protocol.md): a clip
	// posted, and one deleted (by its author or a moderator), expired or
	// evicted to make room.
	EventClipAdded   = "CLIP_ADDED"
	EventClipDeleted = "CLIP_DELETED"
	// EventQuality tells a subscriber how it receives each remote track,
	// from its own receiver reports (loss, jitter) and the round trip the
	// server measured from them, every few seconds (Quality).
	EventQuality = "QUALITY"
	// EventActiveSpeakers reports who speaks (Speakers, dominant first)
	// and the dominant speaker (Dominant), when either changes, at most a
	// few times a second; a joiner gets the current one after its STATE.
	EventActiveSpeakers = "ACTIVE_SPEAKERS"
	// EventPublishLayers tells a publisher which simulcast layers of one of
	// its streams (StreamID) anyone receives (Layers): it may stop encoding
	// the others (a browser sets the encoding's active to false) until an
	// event says they are wanted again. Sent when that changes.
	EventPublishLayers = "PUBLISH_LAYERS"
)

// Recording statuses (RECORDING's status).
const (
	RecordingStarted = "STARTED"
	RecordingStopped = "STOPPED"
)

// Why a recording stopped before the room session ended (RECORDING STOPPED's reason).
const (
	RecordingStoppedByModerator = "MODERATOR"      // a moderator (or a holder of the record grant) stopped it; By names them
	RecordingQuotaDuration      = "QUOTA_DURATION" // the room session recorded as long as the server allows
	RecordingQuotaBytes         = "QUOTA_BYTES"    // the room session's files reached the server's size quota
	RecordingDiskLow            = "DISK_LOW"       // the server's free disk space fell below its floor
)

// Stream statuses (Flashphoner's STREAM_STATUS).
const (
	StreamPending     = "PENDING" // published, media not connected yet
	StreamPublishing  = "PUBLISHING"
	StreamUnpublished = "UNPUBLISHED"
	StreamPlaying     = "PLAYING"
	StreamStopped     = "STOPPED"
	StreamFailed      = "FAILED"
)

// Stream kinds.
const (
	KindCamera = "camera"
	KindScreen = "screen"
)

// Candidate targets: which of the session's peer connections a trickled candidate belongs to.
const (
	TargetPublish   = "publish"
	TargetSubscribe = "subscribe"
)

// Error codes carried by Error.Code.
const (
	CodeBadRequest         = "BAD_REQUEST"
	CodeUnknownType        = "UNKNOWN_TYPE"
	CodeTooLarge           = "TOO_LARGE"
	CodeRateLimited        = "RATE_LIMITED"
	CodeTooManySessions    = "TOO_MANY_SESSIONS"
	CodeNotConnected       = "NOT_CONNECTED"
	CodeAlreadyConnected   = "ALREADY_CONNECTED"
	CodeNotJoined          = "NOT_JOINED"
	CodeAlreadyJoined      = "ALREADY_JOINED"
	CodeRoomFull           = "ROOM_FULL"
	CodeNameTaken          = "NAME_TAKEN"
	CodeInvalidName        = "INVALID_NAME"
	CodeInvalidRoom        = "INVALID_ROOM"
	CodeTooManyStreams     = "TOO_MANY_STREAMS"
	CodeUnknownStream      = "UNKNOWN_STREAM"
	CodeUnknownParticipant = "UNKNOWN_PARTICIPANT"
	CodeInvalidSDP         = "INVALID_SDP"
	CodeUnsupportedCodec   = "UNSUPPORTED_CODEC"
	CodeInvalidResume      = "INVALID_RESUME"
	CodeShuttingDown       = "SHUTTING_DOWN"
	CodeInternal           = "INTERNAL"
	// CodeForbidden refuses a request the participant's grants (its access
	// token, the server's mode, the room's preset) do not allow; the session goes on.
	CodeForbidden = "FORBIDDEN"
	// CodePasswordRequired and CodeWrongPassword refuse a join to a room
	// whose preset has a password: join again with the right "password".
	CodePasswordRequired = "PASSWORD_REQUIRED"
	CodeWrongPassword    = "WRONG_PASSWORD"
	// CodeRoomLocked refuses a join to a room a moderator locked.
	CodeRoomLocked = "ROOM_LOCKED"
)

// Envelope is the part every message shares; the server decodes it first to route the message.
type Envelope struct {
	Type string `json:"type"`
	ID   *int64 `json:"id,omitempty"`
}

// Connect opens a session. Resume, when set, re-attaches the participant that the
// token was issued for (a reconnect after a network change or a page reload).
// Token is an access token (a JWT, docs/security.md): what the session may do.
type Connect struct {
	Type     string `json:"type"`
	ID       *int64 `json:"id,omitempty"`
	Username string `json:"username,omitempty"`
	Resume   string `json:"resume,omitempty"`
	Token    string `json:"token,omitempty"`
}

// Join enters a room. Name defaults to the session's username. Subscribe (default
// true) asks the server to forward every stream of the room to this session.
// Codecs lists the MIME types this client can decode ("video/VP8", "audio/opus", …);
// empty means every codec the server knows.
type Join struct {
	Type      string   `json:"type"`
	ID        *int64   `json:"id,omitempty"`
	Room      string   `json:"room"`
	Name      string   `json:"name,omitempty"`
	Subscribe *bool    `json:"subscribe,omitempty"`
	Codecs    []string `json:"codecs,omitempty"`
	Record    bool     `json:"record,omitempty"`
	// Password is the room's password, when its preset has one.
	Password string `json:"password,omitempty"`
}

// Publish offers a new stream on a peer connection of its own; the server
// assigns the stream id and sends it with the answer.
type Publish struct {
	Type   string `json:"type"`
	ID     *int64 `json:"id,omitempty"`
	Kind   string `json:"kind,omitempty"` // camera (default) or screen
	SDP    string `json:"sdp"`
	Record bool   `json:"record,omitempty"`
}

// Unpublish stops one of the session's published streams.
type Unpublish struct {
	Type   string `json:"type"`
	ID     *int64 `json:"id,omitempty"`
	Stream string `json:"stream"`
}

// SDP carries an offer or an answer. From the client, Stream names the publish
// connection it belongs to (empty: the subscribe connection). From the server, an
// offer is always for the subscribe connection, and Streams maps the id of each
// stream in it (the msid of its tracks, so a browser's MediaStream.id) to the name
// of its publisher; an answer answers a publish or re-offer and carries the stream id.
type SDP struct {
	Type    string            `json:"type"`
	ID      *int64            `json:"id,omitempty"`
	Stream  string            `json:"stream,omitempty"`
	SDP     string            `json:"sdp"`
	Streams map[string]string `json:"streams,omitempty"`
}

// ICECandidate mirrors the browser's RTCIceCandidateInit.
type ICECandidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// Candidate trickles one ICE candidate for the publish connection of Stream or
// for the subscribe connection, in either direction. A nil Candidate marks the end of candidates.
type Candidate struct {
	Type      string        `json:"type"`
	ID        *int64        `json:"id,omitempty"`
	Target    string        `json:"target"`
	Stream    string        `json:"stream,omitempty"`
	Candidate *ICECandidate `json:"candidate"`
}

// RestartICE asks the server to re-offer the subscribe connection with new ICE credentials.
type RestartICE struct {
	Type string `json:"type"`
	ID   *int64 `json:"id,omitempty"`
}

// Message sends chat text to everyone in the room, or to one participant when To is set.
type Message struct {
	Type string `json:"type"`
	ID   *int64 `json:"id,omitempty"`
	To   string `json:"to,omitempty"`
	Text string `json:"text"`
}

// Presence sets what the others see of this participant beside its media: a
// raised hand, and whether it turned its own microphone or camera off (a
// moderator's mute is MUTED, not this). An omitted field keeps its value.
// Raising a hand needs the chat grant; lowering it and the device state do not.
type Presence struct {
	Type   string `json:"type"`
	ID     *int64 `json:"id,omitempty"`
	Hand   *bool  `json:"hand,omitempty"`
	MicOff *bool  `json:"micOff,omitempty"`
	CamOff *bool  `json:"camOff,omitempty"`
}

// Moderate is a moderator's action on the room or one of its participants
// (docs/protocol.md): mute or unmute a participant's source (microphone,
// camera, screen), remove a participant (Bar: it may not rejoin this room
// session), lock, unlock or end the room, start or stop its recording.
type Moderate struct {
	Type   string `json:"type"`
	ID     *int64 `json:"id,omitempty"`
	Action string `json:"action"`
	Name   string `json:"name,omitempty"`
	Source string `json:"source,omitempty"`
	Bar    bool   `json:"bar,omitempty"`
}

// Leave leaves the room; the session stays connected and may join again.
type Leave struct {
	Type string `json:"type"`
	ID   *int64 `json:"id,omitempty"`
}

// ICEServer mirrors the browser's RTCIceServer.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Limits tells the client the server's limits so that it can check input early.
type Limits struct {
	MaxFrameBytes         int     `json:"maxFrameBytes"`
	MaxAnswerBytes        int     `json:"maxAnswerBytes"` // the subscribe answer's own, larger limit
	MaxTextBytes          int     `json:"maxTextBytes"`
	MaxNameBytes          int     `json:"maxNameBytes"`
	MaxStreams            int     `json:"maxStreams"`
	MaxParticipants       int     `json:"maxParticipants"`
	MessagesPerSecond     float64 `json:"messagesPerSecond"`
	ReconnectGraceSeconds float64 `json:"reconnectGraceSeconds"`
}

// Session reports the session status: ESTABLISHED after connect, FAILED when the
// connect was refused, DISCONNECTED when the server ends the session.
type Session struct {
	Type        string      `json:"type"`
	ID          *int64      `json:"id,omitempty"`
	Status      string      `json:"status"`
	SessionID   string      `json:"sessionId,omitempty"`
	ResumeToken string      `json:"resumeToken,omitempty"`
	Resumed     bool        `json:"resumed,omitempty"`
	Room        string      `json:"room,omitempty"` // with Resumed: the room the participant is still in
	Name        string      `json:"name,omitempty"` // with Resumed: the participant's name
	ICEServers  []ICEServer `json:"iceServers,omitempty"`
	Limits      *Limits     `json:"limits,omitempty"`
	Reason      string      `json:"reason,omitempty"`
	// Clips, with Resumed: a fresh pass for the room's media messages.
	Clips *ClipsAccess `json:"clips,omitempty"`

	// Code, with FAILED, says why when the server refused the session
	// before any request (TOO_MANY_SESSIONS, RATE_LIMITED). ICEServers are
	// sent only with Resumed: fresh TURN credentials for the room the
	// participant is in; a plain connect gets none (they come with the
	// reply to a join).
	Code string `json:"code,omitempty"`
}

// Reply acknowledges a request that needs no other answer.
type Reply struct {
	Type string `json:"type"`
	ID   *int64 `json:"id,omitempty"`
	// TS is the server's time in Unix milliseconds (for chat lines).
	TS int64 `json:"ts,omitempty"`
	// ICEServers, in the reply to a join, are the ICE servers (TURN
	// credentials) for the participant's peer connections. The reply comes
	// before the first subscribe offer.
	ICEServers []ICEServer `json:"iceServers,omitempty"`
	// Clips, in the reply to a join, is the participant's access to the
	// room's media messages (nil: off in this room).
	Clips *ClipsAccess `json:"clips,omitempty"`
}

// ClipsAccess is a participant's access to its room's media messages over
// HTTP: where they are, a short-lived pass for them and the room's limits.
type ClipsAccess struct {
	// URL is the room's clips endpoint (a path on the server).
	URL string `json:"url"`
	// Pass authorizes this participant (Authorization: Bearer PASS, or
	// ?access_token=PASS), while it is in the room and until PassExpires
	// (Unix ms).
	Pass        string `json:"pass"`
	PassExpires int64  `json:"passExpires"`
	// Post and Moderate say whether the participant may post clips and
	// delete others' clips.
	Post     bool `json:"post"`
	Moderate bool `json:"moderate,omitempty"`
	// Self is who the participant is as clips' owner (Clip.Owner).
	Self   string     `json:"self"`
	Limits ClipLimits `json:"limits"`
}

// ClipLimits are a room's media-message settings (mozchat's keys).
type ClipLimits struct {
	MaxBlobBytes        int64   `json:"maxBlobBytes"`
	MaxClipSizeSec      float64 `json:"maxClipSizeSec"`
	ClipLifetimeSec     int64   `json:"clipLifetimeSec"`
	MaxMediaFolderBytes int64   `json:"maxMediaFolderBytes"`
	MaxClipCount        int     `json:"maxClipCount"`
	AllowVideo          bool    `json:"allowVideo"`
	VideoOn             bool    `json:"videoOn"`
	OnRecorded          string  `json:"onRecorded"`
	AutoPlay            bool    `json:"autoPlay"`
}

// Clip describes a media message (CLIP_ADDED, the clips API).
type Clip struct {
	ID     string `json:"id"`
	Author string `json:"author"`
	// Owner is who may delete it as its author (ClipsAccess.Self).
	Owner string `json:"owner"`
	// TS is when it was posted (Unix ms); Expires when it goes (0: never).
	TS         int64  `json:"ts"`
	Expires    int64  `json:"expires,omitempty"`
	DurationMs int64  `json:"durationMs"`
	Bytes      int64  `json:"bytes"`
	Kind       string `json:"kind"` // audio or video
	MIME       string `json:"mime"`
	// URL is the clip's media (a path on the server, HTTP ranges served):
	// fetched with the pass, a token or a signed query.
	URL string `json:"url"`
}

// Error refuses a request. Code is one of the Code constants; Reason is for people.
type Error struct {
	Type    string `json:"type"`
	ID      *int64 `json:"id,omitempty"`
	Request string `json:"request,omitempty"`
	Code    string `json:"code"`
	Reason  string `json:"reason"`
}

// Error implements error so a client can return the server's refusal as it is.
func (e *Error) Error() string { return e.Code + ": " + e.Reason }

// Track describes one media track of a stream.
type Track struct {
	Kind  string `json:"kind"`            // audio or video
	Codec string `json:"codec,omitempty"` // MIME type, once known
}

// StreamInfo describes a published stream.
type StreamInfo struct {
	ID        string  `json:"id"`
	Kind      string  `json:"kind"`
	Tracks    []Track `json:"tracks"`
	Status    string  `json:"status"`
	Recording bool    `json:"recording,omitempty"`
}

// ParticipantInfo describes a participant and what it publishes.
type ParticipantInfo struct {
	Name    string       `json:"name"`
	Streams []StreamInfo `json:"streams"`
	// Muted lists the sources a moderator muted (microphone, camera, screen).
	Muted []string `json:"muted,omitempty"`
	// Role, in a webinar room: viewer or presenter (webinar.go).
	Role string `json:"role,omitempty"`
	// Hand, MicOff, CamOff: its presence (a raised hand, its own microphone
	// or camera turned off), as in PRESENCE.
	Hand   bool `json:"hand,omitempty"`
	MicOff bool `json:"micOff,omitempty"`
	CamOff bool `json:"camOff,omitempty"`
}

// Event is every server-pushed room or stream event. Which fields are set depends on Event.
type Event struct {
	Type  string `json:"type"`
	Event string `json:"event"`
	Room  string `json:"room,omitempty"`

	// STATE
	RoomSession  string            `json:"roomSession,omitempty"`
	Self         string            `json:"self,omitempty"`
	Participants []ParticipantInfo `json:"participants,omitempty"`
	Recording    bool              `json:"recording,omitempty"`
	// Grants lists what this participant may do in the room (auth grant
	// names: publish:camera, subscribe, chat, record, moderate, …).
	Grants []string `json:"grants,omitempty"`
	// Locked: a moderator locked the room (STATE, LOCKED, UNLOCKED).
	Locked bool `json:"locked,omitempty"`
	// Muted: in STATE, this participant's sources a moderator muted.
	Muted []string `json:"muted,omitempty"`
	// Webinar rooms (webinar.go): STATE says the room is one and this
	// participant's role; JOINED the joiner's role; STATE and VIEWERS the
	// number of viewers; LIVE_ENDED the replay (a path on the server).
	Webinar bool   `json:"webinar,omitempty"`
	Role    string `json:"role,omitempty"`
	Viewers int    `json:"viewers,omitempty"`
	Replay  string `json:"replay,omitempty"`

	// MUTED, UNMUTED, REMOVED, LOCKED, UNLOCKED, ENDED, RECORDING: the
	// moderator who acted; Name is the participant acted on.
	By string `json:"by,omitempty"`
	// MUTED, UNMUTED: the source (microphone, camera, screen).
	Source string `json:"source,omitempty"`
	// PRESENCE: the participant's raised hand and own microphone/camera state
	// (omitted: false).
	Hand   bool `json:"hand,omitempty"`
	MicOff bool `json:"micOff,omitempty"`
	CamOff bool `json:"camOff,omitempty"`
	// REMOVED: the participant may not rejoin this room session.
	Barred bool `json:"barred,omitempty"`

	// JOINED, LEFT, PUBLISHED, UNPUBLISHED, STREAM_STATUS: the participant concerned.
	Name string `json:"name,omitempty"`
	// PUBLISHED
	Stream *StreamInfo `json:"stream,omitempty"`
	// UNPUBLISHED, STREAM_STATUS
	StreamID string `json:"streamId,omitempty"`
	// STREAM_STATUS, RECORDING
	Status string `json:"status,omitempty"`

	// RECORDING: the recording page of this room session, a path on the
	// server with a signature ("/recordings.html?session=…&expires=…&sig=…"),
	// readable until RecordingExpires (Unix ms) without a token.
	RecordingURL     string `json:"recordingUrl,omitempty"`
	RecordingExpires int64  `json:"recordingExpires,omitempty"`

	// CLIP_ADDED: the clip; CLIP_DELETED: its id (and Reason: deleted,
	// expired or evicted).
	Clip   *Clip  `json:"clip,omitempty"`
	ClipID string `json:"clipId,omitempty"`

	// MESSAGE
	From    string `json:"from,omitempty"`
	To      string `json:"to,omitempty"`
	Text    string `json:"text,omitempty"`
	TS      int64  `json:"ts,omitempty"`
	Private bool   `json:"private,omitempty"`

	// LEFT, FAILED, STREAM_STATUS, RECORDING (STOPPED: one of the Recording* reasons)
	Reason string `json:"reason,omitempty"`
	// ACTIVE_SPEAKERS: the dominant speaker (nil before anyone spoke),
	// and everyone speaking now, the dominant speaker first (when speaking),
	// then by level. Speakers is empty when no one speaks.
	Dominant *Speaker  `json:"dominant,omitempty"`
	Speakers []Speaker `json:"speakers,omitempty"`

	// STREAM_STATUS of a remote stream whose video the server paused
	// ("paused": this client's link cannot carry it; Reason says so) or
	// resumed ("playing").
	Video string `json:"video,omitempty"`

	// QUALITY: one entry per remote track the subscriber reported on.
	Quality []TrackQuality `json:"quality,omitempty"`

	// PUBLISH_LAYERS: every simulcast layer of the stream, lowest first.
	Layers []LayerState `json:"layers,omitempty"`
}

// LayerState is one simulcast layer in PUBLISH_LAYERS: its RTP stream id
// and whether anyone receives it.
type LayerState struct {
	RID    string `json:"rid"`
	Active bool   `json:"active"`
}

// TrackQuality is how a subscriber receives one remote track, from its last
// receiver report about it.
type TrackQuality struct {
	StreamID string `json:"streamId"`
	Name     string `json:"name"`
	Kind     string `json:"kind"` // audio or video
	// LossPct is the loss over the report's interval, in percent; JitterMS
	// the interarrival jitter; RTTMS the round trip (0: not measured yet).
	LossPct  float64 `json:"lossPct"`
	JitterMS float64 `json:"jitterMs"`
	RTTMS    float64 `json:"rttMs"`
}

// Speaker is a speaking stream in ACTIVE_SPEAKERS: its publisher, the
// stream, and its smoothed audio level from 0 (silence, -127 dBov) to 1
// (0 dBov), linear in decibels.
type Speaker struct {
	Name     string  `json:"name"`
	StreamID string  `json:"streamId"`
	Level    float64 `json:"level"`
}

// Video states of STREAM_STATUS.
const (
	VideoPaused  = "paused"
	VideoPlaying = "playing"
)

// Tiles tells the server how the client shows the video of remote streams,
// so that each gets the layer its tile needs and a hidden one none. Streams
// not named keep what they had; one never named has no size limit.
type Tiles struct {
	Type  string `json:"type"`
	ID    *int64 `json:"id,omitempty"`
	Tiles []Tile `json:"tiles"`
}

// Tile is one remote stream's tile: its size in device pixels (CSS pixels
// times devicePixelRatio), and whether it can be seen at all.
type Tile struct {
	Stream  string `json:"stream"`
	Width   int    `json:"width"`
	Height  int    `json:"height"`
	Visible bool   `json:"visible"`
}

// MaxTiles bounds the tiles of one message; MaxTileSide a tile's side.
const (
	MaxTiles    = 256
	MaxTileSide = 16384
)

// Raw is a decoded-later message body.
type Raw = json.RawMessage
