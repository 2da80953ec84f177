package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/parley/parley/pkg/access"
	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/clips"
	"github.com/parley/parley/pkg/notify"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/recorder"
	"github.com/parley/parley/pkg/room"
	"github.com/prometheus/client_golang/prometheus"
)

// Media messages (docs/roomapi.md, docs/protocol.md, docs/security.md):
//
//	GET    /api/rooms/{room}/clips       the room's clips and limits
//	POST   /api/rooms/{room}/clips       post a clip (the body is the media)
//	GET    /api/rooms/{room}/clips/{id}  a clip's media (HTTP ranges)
//	DELETE /api/rooms/{room}/clips/{id}  delete a clip
//
// Every request needs one of: a participant's pass (from its join reply;
// valid while it is in the room), an access token for the room (listing
// and fetching: any grant of the room; posting: chat; deleting another's
// clip: moderate; admin: everything), or, for a clip's media only, a URL
// the server signed (the e-mailed links).

// ClipsConfig configures media messages.
type ClipsConfig struct {
	// Dir holds the clips, one folder per room.
	Dir string
	// Defaults are the settings of rooms whose preset has no clips block,
	// and what a preset's clips block is laid over (nil:
	// clips.DefaultLimits).
	Defaults *clips.Limits
	// Limits, when set, replaces the room presets: it returns a room's
	// settings (tests). By default a room's settings are its preset's clips
	// block over Defaults, as the presets in force at each upload say.
	Limits func(room string) clips.Limits
	// PassTTL bounds a participant's pass (default 12 h; it also ends when
	// the participant leaves the room).
	PassTTL time.Duration
	// SweepInterval is how often expired clips are removed (default 30 s).
	SweepInterval time.Duration
	// PublicURL is the server as people reach it ("https://meet.example.com"),
	// for the links in e-mails; default the listener's URL.
	PublicURL string
	// LinkTTL bounds an e-mailed link (default 7 days, never past the clip).
	LinkTTL time.Duration
	// Notify, when set, e-mails each room's notify list of new clips.
	Notify *notify.Config
	// FreeSpace and Probe replace statfs and ffprobe (tests).
	FreeSpace func(dir string) (int64, error)
	Probe     clips.Prober
}

// clipService connects the clip store to the rooms, HTTP and e-mail.
type clipService struct {
	cfg    ClipsConfig
	store  *clips.Store
	passes *clips.Passes
	mail   *notify.Queue
	rooms  *room.Registry
	urls   *auth.URLSigner
	access *access.Policy
	log    *slog.Logger
	stop   context.CancelFunc
}

func newClipService(cfg ClipsConfig, minFree int64, rooms *room.Registry, urls *auth.URLSigner, policy *access.Policy,
	log *slog.Logger) (*clipService, error) {
	if cfg.PassTTL <= 0 {
		cfg.PassTTL = 12 * time.Hour
	}
	if cfg.LinkTTL <= 0 {
		cfg.LinkTTL = 7 * 24 * time.Hour
	}
	if cfg.Limits == nil {
		cfg.Limits = policy.ClipLimits
	}
	cs := &clipService{cfg: cfg, passes: clips.NewPasses(), rooms: rooms, urls: urls, access: policy, log: log}
	store, err := clips.Open(clips.Config{Dir: cfg.Dir, Limits: cfg.Limits, MinFreeBytes: minFree, FreeSpace: cfg.FreeSpace,
		Probe: cfg.Probe, SweepInterval: cfg.SweepInterval, Logger: log,
		OnDelete: func(c clips.Clip, reason string) { cs.announceDeleted(c, reason) }})
	if err != nil {
		return nil, err
	}
	cs.store = store
	if cfg.Notify != nil {
		nc := *cfg.Notify
		if nc.Dir == "" {
			nc.Dir = filepath.Join(cfg.Dir, ".notify")
		}
		if nc.Logger == nil {
			nc.Logger = log.With("part", "notify")
		}
		if cs.mail, err = notify.New(nc); err != nil {
			store.Close()
			return nil, fmt.Errorf("notifications: %w", err)
		}
	}
	return cs, nil
}

// start runs the sweeper and the mail queue.
func (cs *clipService) start() {
	cs.store.Run()
	if cs.mail != nil {
		ctx, cancel := context.WithCancel(context.Background())
		cs.stop = cancel
		cs.mail.Start(ctx)
	}
}

func (cs *clipService) close() {
	cs.store.Close()
	if cs.stop != nil {
		cs.stop()
		cs.mail.Wait()
	}
}

// limits returns the room's settings as the protocol carries them.
func protoLimits(l clips.Limits) protocol.ClipLimits {
	return protocol.ClipLimits{MaxBlobBytes: l.MaxBlobBytes, MaxClipSizeSec: l.MaxClipSec,
		ClipLifetimeSec: int64(l.Lifetime / time.Second), MaxMediaFolderBytes: l.MaxFolderBytes, MaxClipCount: l.MaxClipCount,
		AllowVideo: l.AllowVideo, VideoOn: l.VideoOn && l.AllowVideo, OnRecorded: l.OnRecorded, AutoPlay: l.AutoPlay}
}

func clipsPath(roomName string) string { return "/api/rooms/" + url.PathEscape(roomName) + "/clips" }

// clipSignPath is the path a clip's signed URL signs (the room unescaped,
// as the server's mux hands it over).
func clipSignPath(roomName, id string) string { return "/api/rooms/" + roomName + "/clips/" + id }

// info describes a clip for clients.
func clipInfo(c clips.Clip) *protocol.Clip {
	ci := &protocol.Clip{ID: c.ID, Author: c.Author, Owner: c.Owner, TS: c.Created.UnixMilli(), DurationMs: c.DurationMs,
		Bytes: c.Bytes, Kind: c.Kind, MIME: c.MIME, URL: clipsPath(c.Room) + "/" + c.ID}
	if !c.Expires.IsZero() {
		ci.Expires = c.Expires.UnixMilli()
	}
	return ci
}

// participantAccess is signaling's hook: a participant's pass and the room's
// limits, with its join reply and its resumed sessions.
func (cs *clipService) participantAccess(p *room.Participant) *protocol.ClipsAccess {
	rm := p.Room()
	lim := cs.cfg.Limits(rm.Name())
	if !lim.Enabled {
		return nil
	}
	post, moderate := participantClipGrants(p.Grants())
	owner := participantOwner(p)
	exp := time.Now().Add(cs.cfg.PassTTL)
	pass := cs.passes.Issue(clips.Pass{Room: rm.Name(), Participant: p.ID(), Name: p.Name(), Owner: owner,
		Post: post, Moderate: moderate, Expires: exp})
	return &protocol.ClipsAccess{URL: clipsPath(rm.Name()), Pass: pass, PassExpires: exp.Truncate(time.Second).UnixMilli(),
		Post: post, Moderate: moderate, Self: owner, Limits: protoLimits(lim)}
}

// participantClipGrants says what grants g (a participant's in its room, as
// the access policy admitted it) allow with clips: posting needs chat (a
// clip is a message), deleting others' clips needs moderate. Everyone in
// the room may list and play them.
func participantClipGrants(g auth.Grants) (post, moderate bool) { return g.Chat, g.Moderate }

// Owners: who may delete a clip as its author (Clip.Owner, ClipsAccess.Self).
const (
	// ownerID prefixes an identity, the subject of an access token: the same
	// person in every session, so one who rejoins still owns its clips.
	ownerID = "id:"
	// ownerName prefixes the name key (room.NameKey) of a participant
	// without a token: in a room without tokens, names are identities (as
	// barring treats them), and never collide with a token's subject.
	ownerName = "name:"
)

// participantOwner is who owns the clips participant p posts.
func participantOwner(p *room.Participant) string {
	if id := p.Identity(); id != "" {
		return ownerID + id
	}
	if _, key, err := room.NameKey(p.Name()); err == nil {
		return ownerName + key
	}
	return ownerName + p.Name()
}

// ownerIdentity returns the identity of an owner, "" for an owner by name.
func ownerIdentity(owner string) string {
	if id, ok := strings.CutPrefix(owner, ownerID); ok {
		return id
	}
	return ""
}

// clipActor is who makes a clips request.
type clipActor struct {
	name, owner    string
	read, post     bool
	moderate       bool
	signed         bool // a signed URL: one clip's media, nothing else
	participantID  string
	liveRoomNeeded bool
}

// actor authenticates a clips request for the room; it answers 401 or
// 403 itself (and returns false).
func (s *Server) clipActor(w http.ResponseWriter, r *http.Request, roomName string) (clipActor, bool) {
	cs := s.clips
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	raw := auth.FromRequest(r)
	switch {
	case strings.HasPrefix(raw, clips.PassPrefix):
		p, err := cs.passes.Verify(raw, time.Now())
		if err != nil {
			clipUnauthorized(w, true, err.Error())
			return clipActor{}, false
		}
		if p.Room != roomName {
			clipError(w, http.StatusForbidden, "FORBIDDEN", "this pass is for another room")
			return clipActor{}, false
		}
		if !cs.present(p.Room, p.Participant) {
			clipUnauthorized(w, true, "this pass ended when its participant left the room; join the room again")
			return clipActor{}, false
		}
		return clipActor{name: p.Name, owner: p.Owner, read: true, post: p.Post, moderate: p.Moderate, participantID: p.Participant}, true
	case raw != "":
		tok, err := cs.access.Verify(raw)
		if err != nil {
			clipUnauthorized(w, true, errReason(err))
			return clipActor{}, false
		}
		owner := ownerID + tok.Identity
		if tok.Grants.Admin {
			name := cmp.Or(tok.Name, tok.Identity)
			return clipActor{name: name, owner: owner, read: true, post: true, moderate: true}, true
		}
		// What a join with this token would be admitted with: the token's
		// grants and the room preset's, for this room only.
		adm, err := cs.access.Admit(access.JoinRequest{Room: roomName, Token: tok})
		if err != nil {
			clipError(w, http.StatusForbidden, "FORBIDDEN", errReason(err))
			return clipActor{}, false
		}
		if rm := cs.rooms.Room(roomName); rm != nil && rm.Barred(tok.Identity) {
			clipError(w, http.StatusForbidden, "FORBIDDEN", "a moderator removed you from this room until it ends")
			return clipActor{}, false
		}
		post, moderate := participantClipGrants(adm.Grants)
		return clipActor{name: adm.Name, owner: owner, read: true, post: post, moderate: moderate}, true
	case r.URL.Query().Has("sig"):
		return clipActor{signed: true}, true
	}
	clipUnauthorized(w, false, "media messages are for the room's participants: send the pass of your join "+
		"(Authorization: Bearer …) or an access token for the room")
	return clipActor{}, false
}

// errReason is the reason of a refusal, for people.
func errReason(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return err.Error()
}

// present reports whether the participant with that id is in the live room.
func (cs *clipService) present(roomName, participantID string) bool {
	rm := cs.rooms.Room(roomName)
	if rm == nil {
		return false
	}
	for _, p := range rm.Participants() {
		if p.ID() == participantID {
			return true
		}
	}
	return false
}

func clipUnauthorized(w http.ResponseWriter, invalid bool, msg string) {
	c := `Bearer realm="parley clips"`
	if invalid {
		c += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", c)
	clipError(w, http.StatusUnauthorized, "UNAUTHORIZED", msg)
}

// clipError answers {"code", "reason"}: never a server path.
func clipError(w http.ResponseWriter, status int, code, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "reason": reason})
}

// roomName reads and checks the {room} of a clips path.
func (s *Server) clipRoom(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("room")
	if err := room.ValidateRoomName(name, s.rooms.Config().MaxNameBytes); err != nil {
		clipError(w, http.StatusNotFound, "INVALID_ROOM", "no such room")
		return "", false
	}
	return name, true
}

func (s *Server) listClips(w http.ResponseWriter, r *http.Request) {
	roomName, ok := s.clipRoom(w, r)
	if !ok {
		return
	}
	a, ok := s.clipActor(w, r, roomName)
	if !ok {
		return
	}
	if !a.read {
		clipError(w, http.StatusForbidden, "FORBIDDEN", "listing clips needs a grant for the room")
		return
	}
	lim := s.clips.cfg.Limits(roomName)
	out := struct {
		Clips  []*protocol.Clip    `json:"clips"`
		Limits protocol.ClipLimits `json:"limits"`
	}{Clips: []*protocol.Clip{}, Limits: protoLimits(lim)}
	for _, c := range s.clips.store.List(roomName) {
		out.Clips = append(out.Clips, clipInfo(c))
	}
	writeJSON(w, out)
}

// postClip stores a clip streamed in the request's body and tells the room.
func (s *Server) postClip(w http.ResponseWriter, r *http.Request) {
	roomName, ok := s.clipRoom(w, r)
	if !ok {
		return
	}
	a, ok := s.clipActor(w, r, roomName)
	if !ok {
		return
	}
	if a.signed || !a.post {
		clipError(w, http.StatusForbidden, "FORBIDDEN", "posting clips needs the chat grant for the room")
		return
	}
	cs := s.clips
	lim := cs.cfg.Limits(roomName)
	// A clip may take longer than the server's request timeout on a slow
	// link: give it time in proportion to its size (16 KB/s at least).
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(min(time.Minute+time.Duration(lim.MaxBlobBytes/16_000)*time.Second, 30*time.Minute)))
	session := ""
	if rm := s.rooms.Room(roomName); rm != nil {
		session = rm.Session()
	}
	body := http.MaxBytesReader(w, r.Body, lim.MaxBlobBytes+8192)
	added, err := cs.store.Add(r.Context(), clips.Upload{Room: roomName, Author: a.name, Owner: a.owner, Session: session,
		Body: body, Length: r.ContentLength})
	if err != nil {
		var ce *clips.Error
		if errors.As(err, &ce) {
			// Whatever of the body is left is not read: the connection goes.
			w.Header().Set("Connection", "close")
			s.log.Info("clip refused", "room", roomName, "author", a.name, "code", ce.Code, "reason", ce.Msg)
			clipError(w, ce.Status, ce.Code, ce.Msg)
			return
		}
		s.log.Error("clip upload", "room", roomName, "err", err)
		w.Header().Set("Connection", "close")
		clipError(w, http.StatusInternalServerError, "INTERNAL", "the clip could not be stored; the server's log says why")
		return
	}
	for _, old := range added.Evicted {
		reason := clips.ReasonEvicted
		if !old.Expires.IsZero() && !added.Clip.Created.Before(old.Expires) {
			reason = clips.ReasonExpired
		}
		cs.announceDeleted(old, reason)
	}
	info := clipInfo(added.Clip)
	if rm := s.rooms.Room(roomName); rm != nil {
		rm.Broadcast(func(*room.Participant) *protocol.Event {
			return &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventClipAdded, Clip: info}
		})
	}
	if s.recs != nil && added.Clip.Session != "" {
		if path, ok := cs.store.FilePath(added.Clip); ok {
			c := added.Clip
			s.recs.addClip(c.Session, path, recorder.ClipEntry{ID: c.ID, Author: c.Author, DurationMs: c.DurationMs,
				Kind: c.Kind, Mix: lim.Mix}, c.Created)
		}
	}
	cs.notifyNew(added.Clip, lim)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", info.URL)
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(info)
}

// announceDeleted tells the room a clip is gone.
func (cs *clipService) announceDeleted(c clips.Clip, reason string) {
	if rm := cs.rooms.Room(c.Room); rm != nil {
		rm.Broadcast(func(*room.Participant) *protocol.Event {
			return &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventClipDeleted, ClipID: c.ID, Reason: reason}
		})
	}
}

// notifyNew e-mails the room's notify list (the author excepted) a signed
// link to the new clip.
func (cs *clipService) notifyNew(c clips.Clip, lim clips.Limits) {
	if cs.mail == nil || len(lim.Notify) == 0 {
		return
	}
	authors := []string{c.Author}
	if id := ownerIdentity(c.Owner); id != "" {
		authors = append(authors, id)
	}
	to := lim.NotifyFor(authors...)
	if len(to) == 0 {
		return
	}
	exp := c.Created.Add(cs.cfg.LinkTTL)
	if !c.Expires.IsZero() && c.Expires.Before(exp) {
		exp = c.Expires
	}
	link := strings.TrimRight(cs.cfg.PublicURL, "/") + clipsPath(c.Room) + "/" + c.ID + "?" + cs.urls.Sign(clipSignPath(c.Room, c.ID), exp)
	kind := "voice"
	if c.Kind == "video" {
		kind = "video"
	}
	body := fmt.Sprintf("%s posted a %.1f s %s clip in room %s at %s.\n\nPlay it: %s\n(the link works until %s)\n\nJoin the room: %s/?room=%s\n",
		c.Author, float64(c.DurationMs)/1000, kind, c.Room, c.Created.Format("2006-01-02 15:04 MST"), link,
		exp.UTC().Format("2006-01-02 15:04 MST"), strings.TrimRight(cs.cfg.PublicURL, "/"), url.QueryEscape(c.Room))
	for _, addr := range to {
		if err := cs.mail.Enqueue(notify.Message{To: addr, Subject: fmt.Sprintf("New %s clip from %s in %s", kind, c.Author, c.Room),
			Body: body}); err != nil {
			cs.log.Error("queue a clip notification", "room", c.Room, "err", err)
		}
	}
}

// clipMedia serves a clip's media with HTTP ranges.
func (s *Server) clipMedia(w http.ResponseWriter, r *http.Request) {
	roomName, ok := s.clipRoom(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	a, ok := s.clipActor(w, r, roomName)
	if !ok {
		return
	}
	if !clips.ValidID(id) {
		clipError(w, http.StatusNotFound, clips.CodeNotFound, "no such clip")
		return
	}
	if a.signed {
		switch err := s.cfg.Auth.URLs.Verify(clipSignPath(roomName, id), r.URL.Query()); {
		case errors.Is(err, auth.ErrURLExpired):
			clipError(w, http.StatusForbidden, "LINK_EXPIRED", "this link has expired")
			return
		case err != nil:
			clipError(w, http.StatusForbidden, "FORBIDDEN", "this link is not valid for this clip")
			return
		}
	} else if !a.read {
		clipError(w, http.StatusForbidden, "FORBIDDEN", "playing clips needs a grant for the room")
		return
	}
	f, c, err := s.clips.store.OpenFile(roomName, id)
	if err != nil {
		var ce *clips.Error
		if errors.As(err, &ce) {
			clipError(w, ce.Status, ce.Code, ce.Msg)
			return
		}
		s.log.Error("open clip", "room", roomName, "clip", id, "err", err)
		clipError(w, http.StatusInternalServerError, "INTERNAL", "the clip could not be read")
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", c.MIME)
	w.Header().Set("Content-Security-Policy", "sandbox")
	w.Header().Set("Cache-Control", "private, no-store")
	http.ServeContent(w, r, "", c.Created, f)
}

// deleteClip deletes a clip: its author's, or anyone's for a moderator.
func (s *Server) deleteClip(w http.ResponseWriter, r *http.Request) {
	roomName, ok := s.clipRoom(w, r)
	if !ok {
		return
	}
	a, ok := s.clipActor(w, r, roomName)
	if !ok {
		return
	}
	id := r.PathValue("id")
	c, found := s.clips.store.Get(roomName, id)
	switch {
	case a.signed || !a.read:
		clipError(w, http.StatusForbidden, "FORBIDDEN", "deleting clips needs a grant for the room")
		return
	case !found:
		clipError(w, http.StatusNotFound, clips.CodeNotFound, "no such clip (it may have expired or been deleted)")
		return
	case c.Owner != a.owner && !a.moderate:
		clipError(w, http.StatusForbidden, "FORBIDDEN", "only its author or a moderator may delete this clip")
		return
	}
	if _, err := s.clips.store.Delete(roomName, id); err != nil {
		var ce *clips.Error
		if errors.As(err, &ce) {
			clipError(w, ce.Status, ce.Code, ce.Msg)
			return
		}
		s.log.Error("delete clip", "room", roomName, "clip", id, "err", err)
		clipError(w, http.StatusInternalServerError, "INTERNAL", "the clip could not be deleted")
		return
	}
	s.log.Info("clip deleted", "room", roomName, "clip", id, "by", a.name, "moderator", c.Owner != a.owner)
	s.clips.announceDeleted(c, clips.ReasonDeleted)
	w.WriteHeader(http.StatusNoContent)
}

// clipMetrics registers the clips' metrics.
func (s *Server) clipMetrics(reg *prometheus.Registry) {
	if s.clips == nil {
		return
	}
	st := s.clips.store
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_clips", Help: "Media messages stored."},
		func() float64 { return float64(st.Stats().Clips) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_clip_bytes", Help: "Bytes of the media messages stored."},
		func() float64 { return float64(st.Stats().Bytes) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_clip_upload_read_bytes_total",
		Help: "Bytes read from clip uploads, refused ones included (an upload is no longer read once it passes its room's limit)."},
		func() float64 { return float64(st.Stats().BytesRead) }))
	for _, code := range []string{clips.CodeTooLarge, clips.CodeTooLong, clips.CodeNotMedia, clips.CodeNoVideo, clips.CodeDiskLow,
		clips.CodeDisabled, clips.CodeTooMany, clips.CodeIncomplet} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_clips_refused_total",
			Help: "Clip uploads refused, by reason.", ConstLabels: prometheus.Labels{"code": code}},
			func() float64 { return float64(st.Stats().Refused[code]) }))
	}
	if q := s.clips.mail; q != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_notifications_pending", Help: "E-mails waiting in the queue."},
			func() float64 { return float64(q.Pending()) }))
	}
}
