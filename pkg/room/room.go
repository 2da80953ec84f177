// Package room keeps Parley's rooms: who is in them, what they publish, the
// events they see, the per-room limits, and the room life cycle from the first
// join to finalize after an idle timeout.
//
// The package knows participants and streams as data only; it has no media and
// no network. Each participant has a Sink that receives its events; the room
// delivers every event under the room's lock, so all participants see the
// room's events in one order. Sinks must not block.
package room

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/protocol"
)

// Sink receives a participant's events. Deliver is called with the room's lock
// held and must not block (a session queues the event or drops the session).
type Sink interface {
	Deliver(ev *protocol.Event)
}

// Config holds the room limits and timings.
type Config struct {
	// IdleTimeout is how long an empty room waits for a join before it finalizes.
	IdleTimeout time.Duration
	// MaxParticipants per room; 0 means no limit.
	MaxParticipants int
	// MaxStreams per participant; 0 means no limit.
	MaxStreams int
	// MaxNameBytes bounds room and participant names (UTF-8 bytes).
	MaxNameBytes int
	// MaxTextBytes bounds chat text (UTF-8 bytes).
	MaxTextBytes int
	// RecordAll records every room, whatever its participants ask.
	RecordAll bool
}

// DefaultConfig returns the limits Parley ships with.
func DefaultConfig() Config {
	return Config{IdleTimeout: 60 * time.Second, MaxParticipants: 50, MaxStreams: 3, MaxNameBytes: 64, MaxTextBytes: 4096}
}

// Finalized describes a room session that has ended; finalize hooks receive it.
type Finalized struct {
	Room         string
	Session      string
	Started      time.Time
	Ended        time.Time
	Recording    bool
	Participants []string // everyone who joined during the session, in join order
}

// Registry holds the live rooms by name.
type Registry struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	rooms    map[string]*Room
	hooks    []func(Finalized)
	closed   bool
	timersWG sync.WaitGroup
}

// NewRegistry returns an empty registry.
func NewRegistry(cfg Config, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{cfg: cfg, log: log, rooms: make(map[string]*Room)}
}

// Config returns the registry's configuration.
func (r *Registry) Config() Config { return r.cfg }

// OnFinalize registers a hook that runs after a room session finalizes (the
// recorder and the mixer subscribe here). Hooks run outside every lock.
func (r *Registry) OnFinalize(fn func(Finalized)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks = append(r.hooks, fn)
}

// Room returns the live room with that name, or nil.
func (r *Registry) Room(name string) *Room {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rooms[name]
}

// Count returns the number of live rooms and participants in them.
func (r *Registry) Count() (rooms, participants int) {
	r.mu.Lock()
	list := make([]*Room, 0, len(r.rooms))
	for _, rm := range r.rooms {
		list = append(list, rm)
	}
	r.mu.Unlock()
	for _, rm := range list {
		rm.mu.Lock()
		participants += len(rm.order)
		rm.mu.Unlock()
	}
	return len(list), participants
}

// JoinOptions are a joiner's choices, and what the access policy admitted it as.
type JoinOptions struct {
	Subscribe bool
	Codecs    []string
	Record    bool
	// Identity is who the participant is (its token's subject); empty for a
	// participant without a token.
	Identity string
	// Grants is what the participant may do in the room (pkg/access).
	Grants auth.Grants
	// MaxParticipants and MaxStreams, when set, replace the registry's
	// limits (a room preset's).
	MaxParticipants, MaxStreams *int
	// NeverRecord keeps a room this join creates from recording, even with
	// Config.RecordAll (a room preset's record: never).
	NeverRecord bool
	// Webinar makes a room this join creates a webinar room (webinar.go).
	Webinar bool
}

// Join puts a new participant named name into the room called roomName,
// creating the room (or reviving it within its idle window). The joiner's sink
// gets STATE; everyone else gets JOINED.
func (r *Registry) Join(roomName, name string, sink Sink, opts JoinOptions) (*Participant, error) {
	if err := ValidateRoomName(roomName, r.cfg.MaxNameBytes); err != nil {
		return nil, err
	}
	if err := ValidateParticipantName(name, r.cfg.MaxNameBytes); err != nil {
		return nil, err
	}
	name, key, err := NameKey(name)
	if err != nil {
		return nil, err
	}
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, &protocol.Error{Code: protocol.CodeShuttingDown, Reason: "the server is shutting down"}
		}
		rm := r.rooms[roomName]
		if rm == nil {
			rm = r.newRoomLocked(roomName, opts.Record, opts.NeverRecord)
			rm.webinar = opts.Webinar
		}
		r.mu.Unlock()

		p, err := rm.join(name, key, sink, opts)
		if err == errRoomGone {
			continue // it finalized between the lookup and the join: make a new one
		}
		return p, err
	}
}

func (r *Registry) newRoomLocked(name string, record, never bool) *Room {
	rm := &Room{
		reg:          r,
		name:         name,
		session:      "rs-" + time.Now().UTC().Format("20060102T150405Z") + "-" + randomHex(3),
		started:      time.Now(),
		participants: make(map[string]*Participant),
		recording:    !never && (record || r.cfg.RecordAll),
	}
	r.rooms[name] = rm
	r.log.Info("room created", "room", name, "session", rm.session)
	return rm
}

// Close ends every room at once (server shutdown): each participant gets
// FAILED with the reason, and every room finalizes. Later joins are refused.
func (r *Registry) Close(reason string) {
	r.mu.Lock()
	r.closed = true
	list := make([]*Room, 0, len(r.rooms))
	for _, rm := range r.rooms {
		list = append(list, rm)
	}
	r.mu.Unlock()
	for _, rm := range list {
		rm.close(reason)
	}
	r.timersWG.Wait()
}

var errRoomGone = fmt.Errorf("room finalized")

// Room is one room session: from its first join until it finalizes.
type Room struct {
	reg     *Registry
	name    string
	session string
	started time.Time

	mu           sync.Mutex
	participants map[string]*Participant // by name key (NameKey)
	order        []*Participant          // join order, for STATE
	everJoined   []string
	idle         *time.Timer
	finalized    bool
	recording    bool
	locked       bool            // moderation.go
	barred       map[string]bool // barKey of participants a moderator removed for good
	// notice, when set, makes an event each joiner (and resumed session)
	// gets after its STATE (Announce).
	notice func() *protocol.Event
	// webinar: viewers are not shown to each other (webinar.go).
	webinar bool
	viewers viewerCount
	// speakers is the last ACTIVE_SPEAKERS (SetActiveSpeakers), which
	// each joiner and resumed session gets after its STATE.
	speakers *protocol.Event
}

// Name returns the room's name.
func (rm *Room) Name() string { return rm.name }

// Session returns the room session id: unique per life of the room.
func (rm *Room) Session() string { return rm.session }

// Started returns when the room session began.
func (rm *Room) Started() time.Time { return rm.started }

// Recording reports whether the room session records its streams.
func (rm *Room) Recording() bool {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return rm.recording
}

// Announce delivers the event that fn makes to every participant, in the
// room's event order; with keep, each later joiner and each resumed session
// gets one too, after its STATE, until the next Announce. fn is called once
// per delivery with the room's lock held: it must not block or call into
// the room. The recorder uses it for RECORDING and its signed links.
func (rm *Room) Announce(fn func() *protocol.Event, keep bool) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.finalized {
		return
	}
	for _, p := range rm.order {
		ev := fn()
		ev.Room = rm.name
		p.sink.Deliver(ev)
	}
	rm.notice = nil
	if keep {
		rm.notice = fn
	}
}

// Broadcast delivers the event that fn makes for each participant (nil:
// none for that one), in the room's event order. fn is called with the
// room's lock held: it must not block or call into the room. Media
// messages use it for CLIP_ADDED and CLIP_DELETED.
func (rm *Room) Broadcast(fn func(p *Participant) *protocol.Event) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.finalized {
		return
	}
	for _, p := range rm.order {
		if ev := fn(p); ev != nil {
			ev.Room = rm.name
			p.sink.Deliver(ev)
		}
	}
}

// SetActiveSpeakers delivers an ACTIVE_SPEAKERS event to every participant
// and keeps it for those who join (or resume) later, after their STATE.
// The room does not look into it: the media plane finds the speakers.
func (rm *Room) SetActiveSpeakers(ev *protocol.Event) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.finalized {
		return
	}
	ev.Room = rm.name
	rm.speakers = ev
	rm.broadcastLocked(nil, ev)
}

// deliverNoticeLocked gives p the kept Announce event and the room's
// speakers, if any.
func (rm *Room) deliverNoticeLocked(sink Sink) {
	if rm.notice != nil {
		ev := rm.notice()
		ev.Room = rm.name
		sink.Deliver(ev)
	}
	if rm.speakers != nil {
		sink.Deliver(rm.speakers)
	}
}

// Participants returns the current participants in join order.
func (rm *Room) Participants() []*Participant {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return slices.Clone(rm.order)
}

func (rm *Room) join(name, key string, sink Sink, opts JoinOptions) (*Participant, error) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.finalized {
		return nil, errRoomGone
	}
	if err := rm.checkAdmittedLocked(key, opts); err != nil {
		return nil, err
	}
	if o, taken := rm.participants[key]; taken {
		if o.name == name {
			return nil, &protocol.Error{Code: protocol.CodeNameTaken,
				Reason: fmt.Sprintf("room %q already has a participant named %q; choose another name", rm.name, name)}
		}
		return nil, &protocol.Error{Code: protocol.CodeNameTaken,
			Reason: fmt.Sprintf("room %q already has a participant named %q, which looks the same as %q; choose another name", rm.name, o.name, name)}
	}
	max := rm.reg.cfg.MaxParticipants
	if opts.MaxParticipants != nil {
		max = *opts.MaxParticipants
	}
	if max > 0 && len(rm.order) >= max {
		return nil, &protocol.Error{Code: protocol.CodeRoomFull,
			Reason: fmt.Sprintf("room %q is full (%d participants)", rm.name, max)}
	}
	if rm.idle != nil {
		if rm.idle.Stop() {
			rm.reg.timersWG.Done()
		}
		rm.idle = nil
		rm.reg.log.Info("room revived", "room", rm.name, "session", rm.session)
	}
	if len(rm.order) == 0 && opts.Record {
		rm.recording = true
	}
	p := &Participant{
		room:       rm,
		id:         "p-" + randomHex(6),
		name:       name,
		key:        key,
		sink:       sink,
		subscribe:  opts.Subscribe,
		codecs:     slices.Clone(opts.Codecs),
		joined:     time.Now(),
		identity:   opts.Identity,
		grants:     opts.Grants,
		maxStreams: rm.reg.cfg.MaxStreams,
	}
	if opts.MaxStreams != nil {
		p.maxStreams = *opts.MaxStreams
	}
	sink.Deliver(rm.stateLocked(p))
	rm.deliverNoticeLocked(sink)
	rm.broadcastAboutLocked(p, &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventJoined, Room: rm.name, Name: name,
		Role: rm.roleLocked(p)})
	rm.participants[key] = p
	rm.order = append(rm.order, p)
	rm.viewersChangedLocked()
	rm.everJoined = append(rm.everJoined, name)
	rm.reg.log.Info("participant joined", "room", rm.name, "name", name, "id", p.id, "identity", opts.Identity,
		"grants", opts.Grants.String())
	return p, nil
}

// stateLocked builds the STATE event for p: every other participant and its streams.
func (rm *Room) stateLocked(p *Participant) *protocol.Event {
	ev := &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventState, Room: rm.name,
		RoomSession: rm.session, Self: p.name, Recording: rm.recording, Grants: p.grants.List(),
		Locked: rm.locked, Muted: p.mutedListLocked(),
		Participants: make([]protocol.ParticipantInfo, 0, len(rm.order))}
	for _, o := range rm.order {
		if o == p || !rm.seesLocked(p, o) {
			continue
		}
		info := o.infoLocked()
		info.Role = rm.roleLocked(o)
		ev.Participants = append(ev.Participants, info)
	}
	if rm.webinar {
		ev.Webinar, ev.Role, ev.Viewers = true, rm.roleLocked(p), rm.viewerCountLocked()
	}
	return ev
}

// broadcastLocked delivers ev to every participant but except (nil: everyone).
func (rm *Room) broadcastLocked(except *Participant, ev *protocol.Event) {
	for _, o := range rm.order {
		if o != except {
			o.sink.Deliver(ev)
		}
	}
}

func (rm *Room) removeLocked(p *Participant) {
	delete(rm.participants, p.key)
	rm.order = slices.DeleteFunc(rm.order, func(o *Participant) bool { return o == p })
	p.left = true
	if len(rm.order) == 0 && !rm.finalized {
		rm.reg.timersWG.Add(1)
		rm.idle = time.AfterFunc(rm.reg.cfg.IdleTimeout, rm.idleExpired)
		rm.reg.log.Info("room idle", "room", rm.name, "session", rm.session, "finalize_in", rm.reg.cfg.IdleTimeout)
	}
}

func (rm *Room) idleExpired() {
	defer rm.reg.timersWG.Done()
	rm.mu.Lock()
	if rm.finalized || len(rm.order) > 0 || rm.idle == nil {
		rm.mu.Unlock()
		return
	}
	rm.idle = nil
	info := rm.finalizeLocked()
	rm.mu.Unlock()
	rm.reg.runHooks(info)
}

func (rm *Room) close(reason string) {
	rm.mu.Lock()
	if rm.finalized {
		rm.mu.Unlock()
		return
	}
	ev := &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventFailed, Room: rm.name, Reason: reason}
	for _, p := range rm.order {
		p.sink.Deliver(ev)
		p.left = true
	}
	rm.order = nil
	clear(rm.participants)
	if rm.idle != nil {
		if rm.idle.Stop() {
			rm.reg.timersWG.Done()
		}
		rm.idle = nil
	}
	info := rm.finalizeLocked()
	rm.mu.Unlock()
	rm.reg.runHooks(info)
}

func (rm *Room) finalizeLocked() Finalized {
	rm.finalized = true
	rm.viewers.stop()
	rm.reg.mu.Lock()
	if rm.reg.rooms[rm.name] == rm {
		delete(rm.reg.rooms, rm.name)
	}
	rm.reg.mu.Unlock()
	info := Finalized{Room: rm.name, Session: rm.session, Started: rm.started, Ended: time.Now(),
		Recording: rm.recording, Participants: slices.Clone(rm.everJoined)}
	rm.reg.log.Info("room finalized", "room", rm.name, "session", rm.session,
		"duration", info.Ended.Sub(info.Started).Round(time.Millisecond))
	return info
}

func (r *Registry) runHooks(info Finalized) {
	r.mu.Lock()
	hooks := slices.Clone(r.hooks)
	r.mu.Unlock()
	for _, h := range hooks {
		h(info)
	}
}

// Participant is one member of a room.
type Participant struct {
	room      *Room
	id        string
	name      string
	key       string // NameKey: what makes the name unique in the room
	subscribe bool
	codecs    []string
	joined    time.Time
	identity  string
	// grants is guarded by room.mu (a moderator's stage changes it).
	grants auth.Grants
	// staged: a moderator brought the participant on stage; unstaged
	// restores grants to offStage.
	staged   bool
	offStage auth.Grants
	// maxStreams bounds the participant's streams (0: no limit).
	maxStreams int

	// Guarded by room.mu.
	sink    Sink
	streams []*protocol.StreamInfo
	left    bool
	muted   map[string]bool // sources a moderator muted
	// presence: a raised hand, its own microphone or camera turned off.
	hand, micOff, camOff bool
}

// ID returns an id unique to this participant (names are reused after a leave).
func (p *Participant) ID() string { return p.id }

// Name returns the participant's name in its room.
func (p *Participant) Name() string { return p.name }

// Room returns the participant's room.
func (p *Participant) Room() *Room { return p.room }

// Identity returns who the participant is (its token's subject), or "" for
// a participant without a token.
func (p *Participant) Identity() string { return p.identity }

// Grants returns what the participant may do in its room (a moderator may
// change it: webinar.go).
func (p *Participant) Grants() auth.Grants {
	p.room.mu.Lock()
	defer p.room.mu.Unlock()
	return p.grants
}

// Subscribes reports whether the participant wants the room's media.
func (p *Participant) Subscribes() bool { return p.subscribe }

// Codecs returns the MIME types the participant declared it can decode (empty: all).
func (p *Participant) Codecs() []string { return p.codecs }

// Left reports whether the participant is no longer in its room.
func (p *Participant) Left() bool {
	p.room.mu.Lock()
	defer p.room.mu.Unlock()
	return p.left
}

func (p *Participant) infoLocked() protocol.ParticipantInfo {
	info := protocol.ParticipantInfo{Name: p.name, Streams: make([]protocol.StreamInfo, 0, len(p.streams)),
		Muted: p.mutedListLocked(), Hand: p.hand, MicOff: p.micOff, CamOff: p.camOff}
	for _, s := range p.streams {
		info.Streams = append(info.Streams, *s)
	}
	return info
}

// SetSink moves the participant to another session (a resumed connection) and
// sends it a fresh STATE, since events sent to the dead session were lost.
func (p *Participant) SetSink(sink Sink) error {
	rm := p.room
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if p.left {
		return &protocol.Error{Code: protocol.CodeInvalidResume, Reason: "the participant has already left its room"}
	}
	p.sink = sink
	sink.Deliver(rm.stateLocked(p))
	rm.deliverNoticeLocked(sink)
	return nil
}

// Leave removes the participant: the others get UNPUBLISHED for each of its
// streams, then LEFT with the reason. The name is free at once.
func (p *Participant) Leave(reason string) {
	rm := p.room
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if p.left {
		return
	}
	for _, s := range p.streams {
		rm.broadcastLocked(p, &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventUnpublished,
			Room: rm.name, Name: p.name, StreamID: s.ID})
	}
	p.streams = nil
	rm.removeLocked(p)
	rm.broadcastAboutLocked(p, &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventLeft, Room: rm.name,
		Name: p.name, Reason: reason})
	rm.viewersChangedLocked()
	rm.reg.log.Info("participant left", "room", rm.name, "name", p.name, "reason", reason)
}

// CanPublish checks the per-participant stream limit before media is set up.
func (p *Participant) CanPublish() error {
	rm := p.room
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return p.canPublishLocked()
}

func (p *Participant) canPublishLocked() error {
	if p.left {
		return &protocol.Error{Code: protocol.CodeNotJoined, Reason: "not in a room"}
	}
	if max := p.maxStreams; max > 0 && len(p.streams) >= max {
		return &protocol.Error{Code: protocol.CodeTooManyStreams,
			Reason: fmt.Sprintf("a participant may publish at most %d streams; unpublish one first", max)}
	}
	return nil
}

// NewStreamID returns a fresh stream id.
func NewStreamID() string { return "st-" + randomHex(6) }

// AddStream records a published stream; the others get PUBLISHED.
func (p *Participant) AddStream(s protocol.StreamInfo) error {
	room := p.room
	room.mu.Lock()
	defer room.mu.Unlock()
	if err := p.canPublishLocked(); err != nil {
		return err
	}
	if room.recording {
		s.Recording = true
	}
	st := s
	p.streams = append(p.streams, &st)
	cp := st
	cp.Tracks = slices.Clone(st.Tracks)
	room.broadcastLocked(p, &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventPublished, Room: room.name,
		Name: p.name, Stream: &cp})
	return nil
}

// Stream returns a copy of one of the participant's streams.
func (p *Participant) Stream(id string) (protocol.StreamInfo, bool) {
	p.room.mu.Lock()
	defer p.room.mu.Unlock()
	for _, s := range p.streams {
		if s.ID == id {
			cp := *s
			cp.Tracks = slices.Clone(s.Tracks)
			return cp, true
		}
	}
	return protocol.StreamInfo{}, false
}

// Streams returns copies of the participant's streams.
func (p *Participant) Streams() []protocol.StreamInfo {
	p.room.mu.Lock()
	defer p.room.mu.Unlock()
	return p.infoLocked().Streams
}

// SetStreamStatus changes the status of one of the participant's streams and
// tells the participant (STREAM_STATUS).
func (p *Participant) SetStreamStatus(id, status, reason string) {
	room := p.room
	room.mu.Lock()
	defer room.mu.Unlock()
	for _, s := range p.streams {
		if s.ID == id {
			if s.Status == status {
				return
			}
			s.Status = status
			p.sink.Deliver(&protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventStreamStatus, Room: room.name,
				Name: p.name, StreamID: id, Status: status, Reason: reason})
			return
		}
	}
}

// RemoveStream drops one of the participant's streams: it gets STREAM_STATUS
// UNPUBLISHED, the others UNPUBLISHED.
func (p *Participant) RemoveStream(id string) error {
	room := p.room
	room.mu.Lock()
	defer room.mu.Unlock()
	i := slices.IndexFunc(p.streams, func(s *protocol.StreamInfo) bool { return s.ID == id })
	if i < 0 {
		return &protocol.Error{Code: protocol.CodeUnknownStream, Reason: fmt.Sprintf("you publish no stream %q", id)}
	}
	p.streams = slices.Delete(p.streams, i, i+1)
	if !p.left {
		p.sink.Deliver(&protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventStreamStatus, Room: room.name,
			Name: p.name, StreamID: id, Status: protocol.StreamUnpublished})
	}
	room.broadcastLocked(p, &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventUnpublished, Room: room.name,
		Name: p.name, StreamID: id})
	return nil
}

// Notify delivers an event to this participant alone (stream statuses of the
// streams it plays), in the room's event order.
func (p *Participant) Notify(ev *protocol.Event) {
	p.room.mu.Lock()
	defer p.room.mu.Unlock()
	if !p.left {
		ev.Room = p.room.name
		p.sink.Deliver(ev)
	}
}

// SetPresence changes the participant's presence (nil: unchanged): a raised
// hand, its own microphone or camera turned off. When something changed, the
// others get PRESENCE with the whole state; a repeat sends nothing, so a
// client cannot make the room's fan-out larger than its request rate.
func (p *Participant) SetPresence(hand, micOff, camOff *bool) error {
	room := p.room
	room.mu.Lock()
	defer room.mu.Unlock()
	if p.left {
		return &protocol.Error{Code: protocol.CodeNotJoined, Reason: "not in a room"}
	}
	changed := false
	for _, f := range []struct {
		v   *bool
		dst *bool
	}{{hand, &p.hand}, {micOff, &p.micOff}, {camOff, &p.camOff}} {
		if f.v != nil && *f.v != *f.dst {
			*f.dst = *f.v
			changed = true
		}
	}
	if !changed {
		return nil
	}
	room.broadcastLocked(p, &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventPresence, Room: room.name,
		Name: p.name, Hand: p.hand, MicOff: p.micOff, CamOff: p.camOff})
	return nil
}

// Presence returns the participant's raised hand and own microphone/camera state.
func (p *Participant) Presence() (hand, micOff, camOff bool) {
	p.room.mu.Lock()
	defer p.room.mu.Unlock()
	return p.hand, p.micOff, p.camOff
}

// SendMessage sends chat text to everyone else in the room, or to the
// participant named to. It returns the server timestamp (Unix ms).
func (p *Participant) SendMessage(to, text string) (int64, error) {
	room := p.room
	if !utf8.ValidString(text) {
		return 0, &protocol.Error{Code: protocol.CodeBadRequest, Reason: "message text is not valid UTF-8"}
	}
	if text == "" {
		return 0, &protocol.Error{Code: protocol.CodeBadRequest, Reason: "message text is empty"}
	}
	if max := room.reg.cfg.MaxTextBytes; max > 0 && len(text) > max {
		return 0, &protocol.Error{Code: protocol.CodeTooLarge,
			Reason: fmt.Sprintf("message text is %d bytes; the limit is %d", len(text), max)}
	}
	room.mu.Lock()
	defer room.mu.Unlock()
	if p.left {
		return 0, &protocol.Error{Code: protocol.CodeNotJoined, Reason: "not in a room"}
	}
	ts := time.Now().UnixMilli()
	ev := &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventMessage, Room: room.name, From: p.name,
		Text: text, TS: ts}
	if to == "" {
		room.broadcastLocked(p, ev)
		return ts, nil
	}
	var dst *Participant
	if _, key, err := NameKey(to); err == nil {
		dst = room.participants[key]
	}
	if dst == nil || dst == p || !room.seesLocked(p, dst) {
		return 0, &protocol.Error{Code: protocol.CodeUnknownParticipant,
			Reason: fmt.Sprintf("no other participant named %q in room %q", to, room.name)}
	}
	ev.To = dst.name
	ev.Private = true
	dst.sink.Deliver(ev)
	return ts, nil
}

// ValidateRoomName checks a room name: 1..max bytes of letters, digits, '-', '_' and '.'.
func ValidateRoomName(name string, max int) error {
	if err := checkLength("room name", name, max); err != nil {
		return &protocol.Error{Code: protocol.CodeInvalidRoom, Reason: err.Error()}
	}
	for _, r := range name {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' && r != '_' && r != '.' {
			return &protocol.Error{Code: protocol.CodeInvalidRoom,
				Reason: fmt.Sprintf("room name may hold letters, digits, '-', '_' and '.', not %q", r)}
		}
	}
	return nil
}

// ValidateParticipantName checks a participant name: 1..max bytes of letters,
// digits, marks, spaces and -_.@'(), with no space at either end and no
// invisible character (names.go).
func ValidateParticipantName(name string, max int) error {
	if err := checkLength("name", name, max); err != nil {
		return &protocol.Error{Code: protocol.CodeInvalidName, Reason: err.Error()}
	}
	for _, r := range name {
		if invisible(r) {
			return &protocol.Error{Code: protocol.CodeInvalidName,
				Reason: fmt.Sprintf("name holds the invisible character U+%04X; names must show every character they hold", r)}
		}
	}
	first, _ := utf8.DecodeRuneInString(name)
	last, _ := utf8.DecodeLastRuneInString(name)
	if first == ' ' || last == ' ' {
		return &protocol.Error{Code: protocol.CodeInvalidName, Reason: "name may not start or end with a space"}
	}
	for _, r := range name {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), unicode.IsMark(r), r == ' ':
		case r == '-' || r == '_' || r == '.' || r == '@' || r == '\'' || r == '(' || r == ')':
		default:
			return &protocol.Error{Code: protocol.CodeInvalidName,
				Reason: fmt.Sprintf("name may hold letters, digits, spaces and -_.@'(), not %q", r)}
		}
	}
	return nil
}

func checkLength(what, s string, max int) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", what)
	}
	if max > 0 && len(s) > max {
		return fmt.Errorf("%s is %d bytes long; the limit is %d", what, len(s), max)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
