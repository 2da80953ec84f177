// Package signaling serves Parley's WebSocket protocol (docs/protocol.md): one
// Session per WebSocket that decodes, validates, rate-limits and routes
// requests to the rooms (pkg/room) and the media plane (pkg/sfu), and a Hub
// that owns the sessions, the resume tokens and the room routers.
package signaling

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/parley/parley/pkg/access"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/sfu"
)

// Config holds the signaling limits and timings.
type Config struct {
	// MaxFrameBytes is the largest request accepted; larger frames up to
	// HardFrameBytes get TOO_LARGE and the session goes on.
	MaxFrameBytes int
	// HardFrameBytes is the largest frame read at all; a larger one closes the session (1009).
	HardFrameBytes int
	// MaxAnswerBytes caps the answer to a subscribe offer, which may be as
	// large as its offer calls for (MaxFrameBytes plus AnswerBytesPerSection
	// per media section) while the offer is out. 0 derives it from the room
	// limits (AnswerBudget); HardFrameBytes is raised to it if smaller.
	MaxAnswerBytes int
	// MessagesPerSecond and Burst bound each session's request rate.
	MessagesPerSecond float64
	Burst             int
	// PingInterval is how often the server pings; a session silent for
	// PongTimeout is dead.
	PingInterval time.Duration
	PongTimeout  time.Duration
	// ReconnectGrace is how long a participant whose session died stays in its
	// room, waiting for a resumed connect.
	ReconnectGrace time.Duration
	// SendQueue bounds each session's outgoing messages; a session that falls
	// this far behind is closed.
	SendQueue int
	// ICEServers returns the ICE servers (TURN credentials) handed to a
	// participant admitted to a room: with the reply to its join, and to
	// its resumed session. identity names the participant (the TURN user
	// name carries it, so per-user quotas apply per person).
	ICEServers func(room, identity string) []protocol.ICEServer
	// AllowedOrigins are the page origins ("https://meet.example.com"; "*":
	// any) that may open a WebSocket besides the server's own. A request
	// from another origin gets 403; one with no Origin (not a browser) is
	// allowed.
	AllowedOrigins []string
	// AddressLimits bound the sessions and rooms of one client address.
	AddressLimits AddressLimits
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names the
	// client address (for AddressLimits); empty: the TCP peer is the client.
	TrustedProxies []netip.Prefix
	// OnRouter, when set, is called with each room session's media router
	// when it is made (the recorder attaches there).
	OnRouter func(rm *room.Room, r *sfu.Router)
	// Clips, when set, gives a participant admitted to a room its access to
	// the room's media messages (nil: none), with the reply to its join and
	// to its resumed session: what p's grants allow there, as p's identity.
	Clips func(p *room.Participant) *protocol.ClipsAccess
	// Access decides who may join, publish, chat and record; nil is
	// access.Open(): anyone may, and no token is accepted.
	Access *access.Policy
}

// DefaultConfig returns the signaling defaults.
func DefaultConfig() Config {
	return Config{
		MaxFrameBytes:     64 << 10,
		HardFrameBytes:    1 << 20,
		MessagesPerSecond: 20,
		Burst:             40,
		PingInterval:      2 * time.Second,
		PongTimeout:       6 * time.Second,
		ReconnectGrace:    5 * time.Second,
		SendQueue:         512,
		AddressLimits:     DefaultAddressLimits(),
	}
}

// Hub accepts WebSocket sessions and keeps what outlives one: the members
// (participants reachable by resume token) and the media router of each room session.
type Hub struct {
	cfg    Config
	rooms  *room.Registry
	engine *sfu.Engine
	log    *slog.Logger
	up     websocket.Upgrader
	limits *addrLimiter

	mu       sync.Mutex
	sessions map[*Session]struct{}
	members  map[string]*member // by resume token
	routers  map[string]*sfu.Router
	closing  bool
	wg       sync.WaitGroup
}

// NewHub returns a hub serving the rooms of reg with the media engine e.
func NewHub(cfg Config, reg *room.Registry, e *sfu.Engine, log *slog.Logger) *Hub {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxAnswerBytes <= 0 {
		rc := reg.Config()
		cfg.MaxAnswerBytes = AnswerBudget(rc.MaxParticipants, rc.MaxStreams, cfg.MaxFrameBytes, cfg.HardFrameBytes)
	}
	cfg.MaxAnswerBytes = max(cfg.MaxAnswerBytes, cfg.MaxFrameBytes)
	cfg.HardFrameBytes = max(cfg.HardFrameBytes, cfg.MaxAnswerBytes)
	if cfg.Access == nil {
		cfg.Access = access.Open()
	}
	h := &Hub{cfg: cfg, rooms: reg, engine: e, log: log, limits: newAddrLimiter(cfg.AddressLimits),
		sessions: make(map[*Session]struct{}), members: make(map[string]*member), routers: make(map[string]*sfu.Router)}
	// Sessions are idle most of the time: the read side reuses the HTTP
	// server's buffered reader (ReadBufferSize 0), and write buffers come
	// from a pool only while a message is written, instead of 8 KB held
	// by every connection.
	// The origin is checked in ServeHTTP, with a clear refusal.
	h.up = websocket.Upgrader{WriteBufferSize: 4096, WriteBufferPool: &sync.Pool{},
		CheckOrigin: func(*http.Request) bool { return true }}
	reg.OnFinalize(h.roomFinalized)
	return h
}

// ServeHTTP upgrades the request to a WebSocket session. A page of an origin
// not allowed gets 403; an address over its limits gets its session refused
// at once (a session message FAILED with the code and the reason, then a
// close), which a page can show.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	closing := h.closing
	h.mu.Unlock()
	if closing {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	if !originAllowed(r, h.cfg.AllowedOrigins) {
		h.limits.origin.Add(1)
		h.log.Info("websocket refused: origin not allowed", "origin", clip(r.Header.Get("Origin")), "remote", r.RemoteAddr)
		http.Error(w, fmt.Sprintf("pages of origin %s may not open a session on this server; "+
			"its operator can allow them with allowed_origins", clip(r.Header.Get("Origin"))), http.StatusForbidden)
		return
	}
	ip := clientAddr(r, h.cfg.TrustedProxies)
	addr := addrKey(ip)
	counted := false
	var refusal *protocol.Session
	if ip.IsValid() {
		if code, reason := h.limits.admitSession(addr); code != "" {
			refusal = &protocol.Session{Type: protocol.TypeSession, Status: protocol.SessionFailed, Code: code, Reason: reason}
			h.log.Info("session refused", "code", code, "address", addrString(addr), "remote", r.RemoteAddr)
		} else {
			counted = true
		}
	}
	release := func() {
		if counted {
			h.limits.sessionEnded(addr)
		}
	}
	conn, err := h.up.Upgrade(w, r, nil)
	if err != nil {
		release()
		h.log.Debug("websocket upgrade", "remote", r.RemoteAddr, "err", err)
		return
	}
	// The HTTP server's read and write deadlines (its ReadTimeout) must not
	// end a long-lived session: the session keeps its own.
	_ = conn.NetConn().SetDeadline(time.Time{})
	if refusal != nil {
		refuse(conn, refusal)
		return
	}
	s := newSession(h, conn, r.RemoteAddr)
	s.addr, s.hasAddr = addr, ip.IsValid()
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		s.fail("server shutting down")
		_ = conn.Close()
		release()
		return
	}
	h.sessions[s] = struct{}{}
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		s.run()
		h.mu.Lock()
		delete(h.sessions, s)
		h.mu.Unlock()
		release()
	}()
}

// refuse tells a client why its session is refused and closes the
// WebSocket (1013, try again later).
func refuse(conn *websocket.Conn, msg *protocol.Session) {
	b, _ := json.Marshal(msg)
	deadline := time.Now().Add(time.Second)
	_ = conn.SetWriteDeadline(deadline)
	_ = conn.WriteMessage(websocket.TextMessage, b)
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseTryAgainLater, msg.Code), deadline)
	_ = conn.Close()
}

// Refusals counts what the origin check and the address limits refused.
func (h *Hub) Refusals() Refusals { return h.limits.refusals() }

// clip shortens a value a client chose, for logs and answers.
func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

// Sessions returns the number of open sessions.
func (h *Hub) Sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// router returns the media router of a room session, creating it.
func (h *Hub) router(rm *room.Room) *sfu.Router {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.routers[rm.Session()]
	if r == nil {
		r = h.engine.NewRouter(rm.Session())
		h.routers[rm.Session()] = r
		r.OnActiveSpeakers(func(as sfu.ActiveSpeakers) { rm.SetActiveSpeakers(speakersEvent(as)) })
		if h.cfg.OnRouter != nil {
			h.cfg.OnRouter(rm, r)
		}
	}
	return r
}

func (h *Hub) roomFinalized(info room.Finalized) {
	h.mu.Lock()
	r := h.routers[info.Session]
	delete(h.routers, info.Session)
	h.mu.Unlock()
	if r != nil {
		r.Close()
	}
}

func (h *Hub) member(token string) *member {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.members[token]
}

func (h *Hub) setMember(m *member, registered bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if registered {
		h.members[m.token] = m
	} else if h.members[m.token] == m {
		delete(h.members, m.token)
	}
}

// Shutdown ends every session: rooms tell their participants (FAILED), each
// session gets DISCONNECTED, media connections close and rooms finalize. It
// returns when every session goroutine has ended or ctx is done.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing = true
	members := make([]*member, 0, len(h.members))
	for _, m := range h.members {
		members = append(members, m)
	}
	h.mu.Unlock()

	for _, m := range members {
		m.stopGrace()
	}
	h.rooms.Close("server shutting down")
	for _, m := range members {
		m.closeMedia()
	}
	h.mu.Lock()
	sessions := make([]*Session, 0, len(h.sessions))
	for s := range h.sessions {
		sessions = append(sessions, s)
	}
	routers := make([]*sfu.Router, 0, len(h.routers))
	for _, r := range h.routers {
		routers = append(routers, r)
	}
	clear(h.routers)
	h.mu.Unlock()
	for _, r := range routers {
		r.Close()
	}
	for _, s := range sessions {
		s.disconnect("server shutting down")
	}
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func randomToken(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// speakersEvent makes the ACTIVE_SPEAKERS event of the media plane's speakers.
func speakersEvent(as sfu.ActiveSpeakers) *protocol.Event {
	ev := &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventActiveSpeakers}
	if d := as.Dominant; d != nil {
		ev.Dominant = &protocol.Speaker{Name: d.Participant, StreamID: d.StreamID, Level: d.Level}
	}
	for _, s := range as.Speakers {
		ev.Speakers = append(ev.Speakers, protocol.Speaker{Name: s.Participant, StreamID: s.StreamID, Level: s.Level})
	}
	return ev
}
