// Package live plays a room's presenter to viewers whom WebRTC cannot reach
// (networks that block UDP and TURN alike): over a WebSocket, as a live WebM
// stream for Media Source Extensions. The presenter's VP8, VP9 or AV1 and
// Opus are packed as they are, without transcoding (the recorder's
// depacketizer and Matroska writer, pkg/recorder), into an initialization
// segment and clusters that start at keyframes, sent as binary WebSocket
// messages. A viewer starts at the most recent keyframe; one that cannot
// keep up skips to the next keyframe instead of falling behind. When the
// live ends (the room session ends) every viewer is told, with the replay,
// and its WebSocket closed.
//
// The protocol (docs/protocol.md, "Live over WebSocket"): the client opens
// /live and sends one text message {"type":"watch","room":…} with what a
// join would carry (token, password, name); the server checks the same
// grants as a join (subscribe), then sends text messages (waiting, stream,
// ended, error) and binary ones (a stream's header, then its chunks).
package live

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/parley/parley/pkg/access"
	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/sfu"
)

// sendBuffer is a viewer socket's send buffer (the kernel doubles it):
// under a second and a half of a camera's stream.
const sendBuffer = 64 << 10

// Config configures a Manager.
type Config struct {
	// Rooms are the live rooms.
	Rooms *room.Registry
	// Access checks a viewer as a join is checked.
	Access *access.Policy
	// Admit applies the origin check and the per-address limits to a
	// WebSocket (signaling.Hub.AdmitWebSocket); nil admits every request.
	Admit func(w http.ResponseWriter, r *http.Request) (release func(), addr string, ok bool)
	// Replay returns the replay of a room session (a path on the server a
	// viewer may open), or "" when there is none.
	Replay func(room, session string) string
	// MaxViewers bounds the WebSocket viewers of one room session (default 500).
	MaxViewers int
	// Logger receives the package's logs.
	Logger *slog.Logger
}

// Manager serves the live WebSocket viewers of every room.
type Manager struct {
	cfg Config
	log *slog.Logger
	up  websocket.Upgrader

	mu       sync.Mutex
	sessions map[string]*roomLive // by room session
	closing  bool
	wg       sync.WaitGroup

	viewers atomic.Int64
	skips   atomic.Uint64
}

// New returns a manager.
func New(cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxViewers <= 0 {
		cfg.MaxViewers = 500
	}
	if cfg.Access == nil {
		cfg.Access = access.Open()
	}
	return &Manager{cfg: cfg, log: cfg.Logger, sessions: make(map[string]*roomLive),
		// The origin is checked by Admit, with a clear refusal.
		up: websocket.Upgrader{WriteBufferSize: 16 << 10, CheckOrigin: func(*http.Request) bool { return true }}}
}

// Viewers returns the number of open viewer WebSockets.
func (m *Manager) Viewers() int { return int(m.viewers.Load()) }

// Skips counts the times a viewer that could not keep up skipped to a keyframe.
func (m *Manager) Skips() uint64 { return m.skips.Load() }

// Attach makes a room session's media router watchable
// (signaling.Config.OnRouter).
func (m *Manager) Attach(rm *room.Room, r *sfu.Router) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return
	}
	m.sessions[rm.Session()] = &roomLive{m: m, room: rm, router: r, cast: newBroadcast(),
		log: m.log.With("room", rm.Name(), "session", rm.Session())}
}

// Finalized ends the live of a room session that ended: every viewer is
// told, with the replay, and let go (room.Registry.OnFinalize).
func (m *Manager) Finalized(info room.Finalized) {
	m.mu.Lock()
	rl := m.sessions[info.Session]
	delete(m.sessions, info.Session)
	m.mu.Unlock()
	if rl == nil {
		return
	}
	replay := ""
	if m.cfg.Replay != nil && info.Recording {
		replay = m.cfg.Replay(info.Room, info.Session)
	}
	rl.end(map[string]string{"type": "ended", "reason": "the live has ended", "replay": replay})
}

// Close lets every viewer go (server shutdown) and waits for them.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closing = true
	list := make([]*roomLive, 0, len(m.sessions))
	for _, rl := range m.sessions {
		list = append(list, rl)
	}
	clear(m.sessions)
	m.mu.Unlock()
	for _, rl := range list {
		rl.end(map[string]string{"type": "ended", "reason": "the server is shutting down"})
	}
	m.wg.Wait()
}

// watchRequest is a viewer's first message.
type watchRequest struct {
	Type     string `json:"type"`
	Room     string `json:"room"`
	Name     string `json:"name,omitempty"`
	Token    string `json:"token,omitempty"`
	Password string `json:"password,omitempty"`
}

// errorMsg refuses a viewer (then the WebSocket closes).
type errorMsg struct {
	Type   string `json:"type"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

func refuse(conn *websocket.Conn, code, reason string) {
	b, _ := json.Marshal(errorMsg{Type: "error", Code: code, Reason: reason})
	deadline := time.Now().Add(time.Second)
	_ = conn.SetWriteDeadline(deadline)
	_ = conn.WriteMessage(websocket.TextMessage, b)
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, code), deadline)
}

// ServeHTTP serves one viewer's WebSocket.
func (m *Manager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	release, addr := func() {}, r.RemoteAddr
	if m.cfg.Admit != nil {
		var ok bool
		if release, addr, ok = m.cfg.Admit(w, r); !ok {
			return
		}
	}
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		release()
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	m.wg.Add(1)
	m.mu.Unlock()
	defer m.wg.Done()
	defer release()
	conn, err := m.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.NetConn().SetDeadline(time.Time{})
	// A small socket buffer keeps what a stalled viewer has not read in
	// the viewer's queue, where it counts against maxLag, not in the kernel.
	if tc, ok := conn.NetConn().(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(sendBuffer)
	}
	m.serve(conn, addr)
}

func (m *Manager) serve(conn *websocket.Conn, addr string) {
	conn.SetReadLimit(16 << 10)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	mt, rd, err := conn.NextReader()
	if err != nil {
		return
	}
	var req watchRequest
	if mt != websocket.TextMessage || json.NewDecoder(io.LimitReader(rd, 16<<10)).Decode(&req) != nil || req.Type != "watch" {
		refuse(conn, protocol.CodeBadRequest, `send {"type":"watch","room":ROOM} first`)
		return
	}
	rl, code, reason := m.admit(req, addr)
	if rl == nil {
		m.log.Info("live viewer refused", "room", clip(req.Room), "address", addr, "code", code, "reason", reason)
		refuse(conn, code, reason)
		return
	}
	v := newViewer(conn)
	if !rl.add(v) {
		refuse(conn, protocol.CodeRoomFull, fmt.Sprintf("room %q has %d viewers over WebSocket, the most allowed", req.Room, m.cfg.MaxViewers))
		return
	}
	m.viewers.Add(1)
	defer m.viewers.Add(-1)
	rl.log.Info("live viewer", "address", addr, "viewers", m.Viewers())
	go v.readLoop()
	v.writeLoop()
	rl.remove(v)
	m.skips.Add(v.skips.Load())
}

// admit checks a viewer's request as a join's: the token, the room's preset
// (grants, password), the subscribe grant, a locked room; and that the room
// is live.
func (m *Manager) admit(req watchRequest, addr string) (*roomLive, string, string) {
	if err := room.ValidateRoomName(req.Room, 256); err != nil {
		return nil, protocol.CodeInvalidRoom, err.Error()
	}
	var tok *auth.Token
	if req.Token != "" {
		var err error
		if tok, err = m.cfg.Access.Verify(req.Token); err != nil {
			return nil, protocol.CodeForbidden, errReason(err)
		}
	}
	name := req.Name
	if name == "" {
		name = "viewer"
	}
	adm, err := m.cfg.Access.Admit(access.JoinRequest{Room: req.Room, Name: name, Token: tok, Password: req.Password, Remote: addr})
	if err != nil {
		if pe := (*protocol.Error)(nil); errors.As(err, &pe) {
			return nil, pe.Code, pe.Reason
		}
		return nil, protocol.CodeForbidden, err.Error()
	}
	if !adm.Grants.Subscribe {
		return nil, protocol.CodeForbidden, "your grants do not include subscribe: you may not watch this room"
	}
	rm := m.cfg.Rooms.Room(req.Room)
	if rm == nil {
		return nil, "NOT_LIVE", fmt.Sprintf("room %q is not live now; come back when it starts", req.Room)
	}
	if rm.Locked() && !adm.Grants.Moderate {
		return nil, protocol.CodeRoomLocked, fmt.Sprintf("room %q is locked: only moderators may join now", req.Room)
	}
	m.mu.Lock()
	rl := m.sessions[rm.Session()]
	m.mu.Unlock()
	if rl == nil {
		return nil, "NOT_LIVE", fmt.Sprintf("room %q is not live now; come back when it starts", req.Room)
	}
	return rl, "", ""
}

func errReason(err error) string {
	if pe := (*protocol.Error)(nil); errors.As(err, &pe) {
		return pe.Reason
	}
	return err.Error()
}

func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

// roomLive is the live of one room session: its viewers and, while it has
// any, the tap on the stream they watch.
type roomLive struct {
	m      *Manager
	room   *room.Room
	router *sfu.Router
	cast   *broadcast
	log    *slog.Logger

	mu      sync.Mutex
	viewers int
	ended   bool
	stop    chan struct{} // ends the watcher goroutine
	done    chan struct{}
}

// add makes v a viewer of the room, starting the watcher with the first.
func (rl *roomLive) add(v *viewer) bool {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.ended || rl.viewers >= rl.m.cfg.MaxViewers {
		return false
	}
	rl.viewers++
	rl.cast.add(v)
	if rl.viewers == 1 {
		rl.stop, rl.done = make(chan struct{}), make(chan struct{})
		go rl.watch(rl.stop, rl.done)
	}
	if !rl.cast.live() {
		v.text(map[string]string{"type": "waiting", "reason": "waiting for the presenter"})
	}
	return true
}

// remove lets v go; the last viewer stops the watcher (and the tap).
func (rl *roomLive) remove(v *viewer) {
	rl.cast.remove(v)
	rl.mu.Lock()
	rl.viewers--
	var stop, done chan struct{}
	if rl.viewers == 0 && rl.stop != nil {
		stop, done = rl.stop, rl.done
		rl.stop, rl.done = nil, nil
	}
	rl.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// end tells every viewer msg and closes them.
func (rl *roomLive) end(msg any) {
	rl.mu.Lock()
	rl.ended = true
	rl.mu.Unlock()
	for _, v := range rl.cast.list() {
		v.end(msg)
	}
}

// pickStream chooses what the viewers watch: the stream they watch while it
// is published, else a camera stream with video whose tracks have all
// arrived (the earliest publisher's), else any such stream.
func pickStream(streams []sfu.PublishedStream, current string) (sfu.PublishedStream, bool) {
	ready := func(s sfu.PublishedStream) bool { return s.Arrived >= len(s.Tracks) && len(s.Tracks) > 0 }
	for _, s := range streams {
		if s.ID == current && ready(s) {
			return s, true
		}
	}
	slices.SortFunc(streams, func(a, b sfu.PublishedStream) int {
		score := func(s sfu.PublishedStream) int {
			n := 0
			if s.Kind == protocol.KindCamera {
				n += 2
			}
			for _, t := range s.Tracks {
				if t.Kind == "video" {
					n++
				}
			}
			return n
		}
		if d := score(b) - score(a); d != 0 {
			return d
		}
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	for _, s := range streams {
		if ready(s) {
			return s, true
		}
	}
	return sfu.PublishedStream{}, false
}

// watch keeps the viewers' stream tapped while the room has viewers: it
// picks the stream, taps it into a muxer, follows late tracks and switches
// when the stream ends.
func (rl *roomLive) watch(stop, done chan struct{}) {
	defer close(done)
	var (
		tap     *sfu.Tap
		mux     *muxer
		current string
		refused string
	)
	closeTap := func() {
		if tap != nil {
			tap.Close()
			tap = nil
		}
		if mux != nil {
			_ = mux.Close()
			mux = nil
		}
	}
	defer closeTap()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if tap != nil && !tap.Refresh() {
			rl.log.Info("live stream ended", "stream", current)
			closeTap()
			current = ""
			rl.cast.stopped("the presenter's stream ended; waiting for the next")
		}
		if tap == nil {
			if s, ok := pickStream(rl.router.PublishedStreams(), current); ok {
				if mime, err := mimeFor(s.Tracks); err != nil {
					if refused != s.ID {
						refused = s.ID
						rl.log.Info("live stream cannot be carried", "stream", s.ID, "err", err)
						for _, v := range rl.cast.list() {
							v.text(map[string]string{"type": "waiting", "reason": err.Error()})
						}
					}
				} else {
					rl.cast.setStream(s.ID, s.Publisher)
					var tapped atomic.Pointer[sfu.Tap]
					mx, err := newMuxer(s.Tracks, rl.cast, func() {
						if t := tapped.Load(); t != nil {
							t.RequestKeyframe()
						}
					}, rl.log)
					if err == nil {
						if t, err := rl.router.TapStream(s.ID, mx); err != nil {
							_ = mx.Close()
						} else {
							tapped.Store(t)
							tap, mux, current = t, mx, s.ID
							t.RequestKeyframe() // the newest viewers start from a fresh one
							rl.log.Info("live stream", "stream", s.ID, "publisher", s.Publisher, "mime", mime)
						}
					}
				}
			}
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// Replay returns the replay of a room session (Config.Replay), or "".
func (m *Manager) Replay(room, session string) string {
	if m.cfg.Replay == nil {
		return ""
	}
	return m.cfg.Replay(room, session)
}

// LiveViewers returns the number of WebSocket viewers of a room session.
func (m *Manager) LiveViewers(session string) int {
	m.mu.Lock()
	rl := m.sessions[session]
	m.mu.Unlock()
	if rl == nil {
		return 0
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return rl.viewers
}

// Router returns the media router of the live session of the room called
// name, and the room, when it is live (WHEP plays from it).
func (m *Manager) Router(name string) (*room.Room, *sfu.Router, bool) {
	rm := m.cfg.Rooms.Room(name)
	if rm == nil {
		return nil, nil, false
	}
	m.mu.Lock()
	rl := m.sessions[rm.Session()]
	m.mu.Unlock()
	if rl == nil {
		return nil, nil, false
	}
	return rm, rl.router, true
}

// PickStream returns the stream a room's viewers watch by default: the
// presenter's camera (the earliest publisher's), among streams whose tracks
// have all arrived.
func PickStream(streams []sfu.PublishedStream) (sfu.PublishedStream, bool) {
	return pickStream(streams, "")
}
