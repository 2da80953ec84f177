// Package whip serves WHIP (RFC 9725) at /whip/ROOM, so encoders and
// browsers publish into a room as a participant would, and WHEP at
// /whep/ROOM (the room's presenter, or ?stream=ID), so players watch it:
// an SDP offer by POST (the token as a bearer), 201 with the answer (the
// server's candidates in it), the resource's Location and ETag, and Link
// headers for the ICE servers; trickle ICE and ICE restarts by PATCH
// (application/trickle-ice-sdpfrag, If-Match), DELETE to stop.
// docs/protocol.md, "WHIP and WHEP", has the details.
package whip

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/parley/parley/pkg/access"
	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/live"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/sfu"
	"github.com/parley/parley/pkg/signaling"
	"github.com/pion/webrtc/v4"
)

// Limits.
const (
	maxSDP        = 64 << 10
	maxFragment   = 16 << 10
	gatherTimeout = 5 * time.Second
	// connectTimeout ends a resource whose media never connected.
	connectTimeout = 30 * time.Second
	// maxResources bounds the WHIP and WHEP resources of the server, and
	// the ended ones it remembers.
	maxResources = 1000
	// endedTTL is how long a resource that ended by itself (its connection
	// closed, its stream or room ended) is remembered, so that its client's
	// DELETE, which may race the end (a player that closes its connection
	// first), still answers 200 once.
	endedTTL = time.Minute
)

// Config configures a Server.
type Config struct {
	Access *access.Policy
	Hub    *signaling.Hub
	Live   *live.Manager
	Engine *sfu.Engine
	// ICEServers gives a client its ICE servers (Link headers).
	ICEServers func(room, identity string) []protocol.ICEServer
	// AllowedOrigins are the page origins besides the server's own that may
	// call the endpoints from a browser (CORS); "*" any.
	AllowedOrigins []string
	Logger         *slog.Logger
}

// Server serves /whip/ and /whep/.
type Server struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	resources map[string]*resource
	ended     map[string]tombstone
	closed    bool
}

// tombstone is what is kept of a resource that ended by itself.
type tombstone struct {
	kind, room string
	token      *auth.Token
	at         time.Time
}

// resource is one WHIP publication or WHEP playback.
type resource struct {
	id    string
	kind  string // whip or whep
	room  string
	token *auth.Token

	mu   sync.Mutex
	etag string
	// restart restarts ICE with the client's new credentials and returns
	// the server's new answer; trickle applies a client's candidate.
	restart func(ctx context.Context, ufrag, pwd string) (string, error)
	trickle func(c webrtc.ICECandidateInit) error
	stop    func()
	once    sync.Once
	done    chan struct{} // closed by end
}

func (r *resource) end() {
	r.once.Do(func() {
		if r.stop != nil {
			r.stop()
		}
		close(r.done)
	})
}

// New returns a server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: cfg.Logger, resources: make(map[string]*resource), ended: make(map[string]tombstone)}
}

// Register adds the endpoints to mux.
func (s *Server) Register(mux *http.ServeMux) {
	for _, kind := range []string{"whip", "whep"} {
		mux.HandleFunc("/"+kind+"/{room}", s.endpoint(kind))
		mux.HandleFunc("/"+kind+"/{room}/{id}", s.resourceHandler(kind))
	}
}

// Resources returns the number of live WHIP and WHEP resources.
func (s *Server) Resources() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.resources)
}

// Close ends every resource (server shutdown).
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	list := make([]*resource, 0, len(s.resources))
	for _, r := range s.resources {
		list = append(list, r)
	}
	clear(s.resources)
	s.mu.Unlock()
	for _, r := range list {
		r.end()
	}
}

func (s *Server) add(r *resource) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.resources) >= maxResources {
		return false
	}
	s.resources[r.id] = r
	return true
}

// remove ends a resource that ended by itself; its client's DELETE still
// answers 200 for endedTTL.
func (s *Server) remove(r *resource) { s.drop(r, true) }

func (s *Server) drop(r *resource, remember bool) {
	s.mu.Lock()
	if s.resources[r.id] == r {
		delete(s.resources, r.id)
		if remember && !s.closed {
			now := time.Now()
			for id, t := range s.ended {
				if now.Sub(t.at) > endedTTL {
					delete(s.ended, id)
				}
			}
			if len(s.ended) < maxResources {
				s.ended[r.id] = tombstone{kind: r.kind, room: r.room, token: r.token, at: now}
			}
		}
	}
	s.mu.Unlock()
	r.end()
}

// endedResource returns the tombstone of a resource that ended by itself
// less than endedTTL ago.
func (s *Server) endedResource(id, kind, room string) (tombstone, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.ended[id]
	if !ok || t.kind != kind || t.room != room || time.Since(t.at) > endedTTL {
		return tombstone{}, false
	}
	return t, true
}

// forgetEnded drops a tombstone; it reports whether it was there.
func (s *Server) forgetEnded(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ended[id]
	delete(s.ended, id)
	return ok
}

func (s *Server) get(id string) *resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resources[id]
}

// cors answers a browser's cross-origin request from an allowed origin.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if !slices.Contains(s.cfg.AllowedOrigins, "*") && !slices.Contains(s.cfg.AllowedOrigins, origin) &&
		!sameOrigin(r, origin) {
		http.Error(w, "pages of origin "+clip(origin)+" may not use this endpoint; its operator can allow them with allowed_origins",
			http.StatusForbidden)
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Vary", "Origin")
	h.Set("Access-Control-Allow-Methods", "POST, PATCH, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	h.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Patch, Accept-Post")
	return true
}

func sameOrigin(r *http.Request, origin string) bool {
	host := strings.TrimPrefix(strings.TrimPrefix(origin, "https://"), "http://")
	return host == r.Host
}

func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

// bearer returns the request's verified token (nil without one).
func (s *Server) bearer(r *http.Request) (*auth.Token, error) {
	raw := auth.FromRequest(r)
	if raw == "" {
		return nil, nil
	}
	return s.cfg.Access.Verify(raw)
}

// fail answers err as a status for people.
func (s *Server) fail(w http.ResponseWriter, err error) {
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		s.log.Error("whip", "err", err)
		http.Error(w, "internal error; the server log has details", http.StatusInternalServerError)
		return
	}
	status := http.StatusBadRequest
	switch pe.Code {
	case protocol.CodeForbidden, protocol.CodeRoomLocked:
		status = http.StatusForbidden
	case protocol.CodePasswordRequired, protocol.CodeWrongPassword:
		status = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", `Bearer realm="parley"`)
	case protocol.CodeRoomFull, protocol.CodeTooManyStreams, protocol.CodeNameTaken:
		status = http.StatusConflict
	case protocol.CodeUnsupportedCodec:
		status = http.StatusNotAcceptable
	case protocol.CodeRateLimited:
		status = http.StatusTooManyRequests
	case protocol.CodeShuttingDown:
		status = http.StatusServiceUnavailable
	case "NOT_LIVE", protocol.CodeUnknownStream:
		status = http.StatusNotFound
	}
	http.Error(w, pe.Code+": "+pe.Reason, status)
}

// links writes a Link header per ICE server (RFC 9725 4.6).
func links(w http.ResponseWriter, servers []protocol.ICEServer) {
	for _, sv := range servers {
		for _, u := range sv.URLs {
			l := "<" + u + `>; rel="ice-server"`
			if sv.Username != "" {
				l += fmt.Sprintf(`; username=%q; credential=%q; credential-type="password"`, sv.Username, sv.Credential)
			}
			w.Header().Add("Link", l)
		}
	}
}

// etagOf is an answer's entity tag: its ICE credentials.
func etagOf(sdp string) string {
	sum := sha256.Sum256([]byte(value(sdp, "a=ice-ufrag:") + ":" + value(sdp, "a=ice-pwd:")))
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}

// value returns the first line of sdp starting with prefix, without it.
func value(sdp, prefix string) string {
	for _, l := range strings.Split(sdp, "\n") {
		l = strings.TrimRight(l, "\r")
		if strings.HasPrefix(l, prefix) {
			return strings.TrimPrefix(l, prefix)
		}
	}
	return ""
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// endpoint serves POST (and OPTIONS) /whip/{room} and /whep/{room}.
func (s *Server) endpoint(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.cors(w, r) {
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		roomName := r.PathValue("room")
		switch r.Method {
		case http.MethodOptions:
			w.Header().Set("Accept-Post", "application/sdp")
			if s.cfg.ICEServers != nil && auth.FromRequest(r) != "" {
				if tok, err := s.bearer(r); err == nil && tok != nil && tok.AllowsRoom(roomName) {
					links(w, s.cfg.ICEServers(roomName, tok.Identity))
				}
			}
			w.WriteHeader(http.StatusNoContent)
			return
		case http.MethodPost:
		default:
			w.Header().Set("Allow", "POST, OPTIONS")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/sdp") {
			http.Error(w, "send the offer as application/sdp", http.StatusUnsupportedMediaType)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxSDP+1))
		if err != nil || len(body) > maxSDP || len(strings.TrimSpace(string(body))) == 0 {
			http.Error(w, fmt.Sprintf("the offer must be 1 to %d bytes of SDP", maxSDP), http.StatusBadRequest)
			return
		}
		tok, err := s.bearer(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="parley", error="invalid_token"`)
			http.Error(w, errText(err), http.StatusUnauthorized)
			return
		}
		res := &resource{id: newID(), kind: kind, room: roomName, token: tok, done: make(chan struct{})}
		ctx, cancel := context.WithTimeout(r.Context(), gatherTimeout)
		defer cancel()
		var answer, identity string
		if kind == "whip" {
			answer, identity, err = s.startWHIP(ctx, res, r, string(body))
		} else {
			answer, identity, err = s.startWHEP(ctx, res, r, string(body))
		}
		if err != nil {
			s.fail(w, err)
			return
		}
		res.etag = etagOf(answer)
		if !s.add(res) {
			res.end()
			http.Error(w, "too many WHIP and WHEP sessions on this server", http.StatusServiceUnavailable)
			return
		}
		s.log.Info(kind+" session", "room", roomName, "resource", res.id, "identity", identity)
		if s.cfg.ICEServers != nil {
			links(w, s.cfg.ICEServers(roomName, identity))
		}
		w.Header().Set("Location", "/"+kind+"/"+roomName+"/"+res.id)
		w.Header().Set("ETag", res.etag)
		w.Header().Set("Accept-Patch", "application/trickle-ice-sdpfrag")
		w.Header().Set("Content-Type", "application/sdp")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, answer)
	}
}

func errText(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return err.Error()
}

// resourceHandler serves PATCH, DELETE (and OPTIONS) of a resource.
func (s *Server) resourceHandler(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.cors(w, r) {
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if r.Method == http.MethodOptions {
			w.Header().Set("Accept-Patch", "application/trickle-ice-sdpfrag")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		// Whoever holds the resource's URL (a secret) controls it; a session
		// started with a token must show the same token's subject.
		sameSubject := func(started *auth.Token) bool {
			if started == nil {
				return true
			}
			tok, err := s.bearer(r)
			if err != nil || tok == nil || tok.Identity != started.Identity {
				w.Header().Set("WWW-Authenticate", `Bearer realm="parley"`)
				http.Error(w, "send the token this session was started with", http.StatusUnauthorized)
				return false
			}
			return true
		}
		id, room := r.PathValue("id"), r.PathValue("room")
		res := s.get(id)
		if res == nil || res.kind != kind || res.room != room {
			// A session that ended by itself a moment ago: its client's
			// DELETE is answered as if it had ended it, once.
			if t, ok := s.endedResource(id, kind, room); ok && r.Method == http.MethodDelete {
				if !sameSubject(t.token) {
					return
				}
				if s.forgetEnded(id) {
					s.log.Info(kind+" session (ended by itself) deleted by its client", "room", room, "resource", id)
					w.WriteHeader(http.StatusOK)
					return
				}
			}
			http.Error(w, "no such session (it ended, or never was)", http.StatusNotFound)
			return
		}
		if !sameSubject(res.token) {
			return
		}
		switch r.Method {
		case http.MethodDelete:
			s.drop(res, false)
			s.log.Info(kind+" session ended by its client", "room", res.room, "resource", res.id)
			w.WriteHeader(http.StatusOK)
		case http.MethodPatch:
			s.patch(w, r, res)
		default:
			w.Header().Set("Allow", "PATCH, DELETE, OPTIONS")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	}
}

// patch applies a trickle ICE or ICE restart fragment (RFC 9725 4.3).
func (s *Server) patch(w http.ResponseWriter, r *http.Request, res *resource) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/trickle-ice-sdpfrag") {
		http.Error(w, "send application/trickle-ice-sdpfrag", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxFragment+1))
	if err != nil || len(body) > maxFragment {
		http.Error(w, fmt.Sprintf("a fragment is at most %d bytes", maxFragment), http.StatusRequestEntityTooLarge)
		return
	}
	frag := string(body)
	match := r.Header.Get("If-Match")
	res.mu.Lock()
	defer res.mu.Unlock()
	if match == "" {
		http.Error(w, "send If-Match with the session's ETag (or * to restart ICE)", http.StatusPreconditionRequired)
		return
	}
	ufrag, pwd := value(frag, "a=ice-ufrag:"), value(frag, "a=ice-pwd:")
	if match == "*" {
		// An ICE restart: the client's new credentials.
		if ufrag == "" || pwd == "" {
			http.Error(w, "an ICE restart needs a=ice-ufrag and a=ice-pwd", http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), gatherTimeout)
		defer cancel()
		answer, err := res.restart(ctx, ufrag, pwd)
		if err != nil {
			s.fail(w, err)
			return
		}
		res.etag = etagOf(answer)
		var b strings.Builder
		b.WriteString("a=ice-ufrag:" + value(answer, "a=ice-ufrag:") + "\r\n")
		b.WriteString("a=ice-pwd:" + value(answer, "a=ice-pwd:") + "\r\n")
		for _, l := range strings.Split(answer, "\n") {
			if l = strings.TrimRight(l, "\r"); strings.HasPrefix(l, "a=candidate:") {
				b.WriteString(l + "\r\n")
				break // one media section's: they are the same for every section (bundle)
			}
		}
		for _, l := range strings.Split(answer, "\n") {
			if l = strings.TrimRight(l, "\r"); strings.HasPrefix(l, "a=candidate:") && !strings.Contains(b.String(), l) {
				b.WriteString(l + "\r\n")
			}
		}
		w.Header().Set("ETag", res.etag)
		w.Header().Set("Content-Type", "application/trickle-ice-sdpfrag")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, b.String())
		return
	}
	if match != res.etag {
		http.Error(w, "the ETag does not match this session's ICE (it restarted)", http.StatusPreconditionFailed)
		return
	}
	mid := ""
	for _, l := range strings.Split(frag, "\n") {
		l = strings.TrimRight(l, "\r")
		switch {
		case strings.HasPrefix(l, "a=mid:"):
			mid = strings.TrimPrefix(l, "a=mid:")
		case strings.HasPrefix(l, "a=candidate:"):
			m := mid
			c := webrtc.ICECandidateInit{Candidate: strings.TrimPrefix(l, "a="), SDPMid: &m}
			if ufrag != "" {
				c.UsernameFragment = &ufrag
			}
			if !s.cfg.Engine.AcceptCandidate(c) {
				continue
			}
			if err := res.trickle(c); err != nil {
				http.Error(w, "bad candidate: "+errText(err), http.StatusBadRequest)
				return
			}
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// startWHIP admits a publisher to the room and publishes its offer.
func (s *Server) startWHIP(ctx context.Context, res *resource, r *http.Request, offer string) (string, string, error) {
	name := r.URL.Query().Get("name")
	if name == "" {
		name = "WHIP " + res.id[:6]
	}
	ext, err := s.cfg.Hub.JoinExternal(res.room, name, res.token, r.RemoteAddr)
	if err != nil {
		return "", "", err
	}
	answer, streamID, err := ext.Publish(ctx, s.cfg.Engine.FilterSDP(offer))
	if err != nil {
		ext.Leave()
		return "", "", err
	}
	res.stop = ext.Leave
	res.trickle = func(c webrtc.ICECandidateInit) error {
		if p := ext.Peer(); p != nil {
			return p.AddCandidate(protocol.TargetPublish, streamID, c)
		}
		return &protocol.Error{Code: protocol.CodeNotJoined, Reason: "the publisher left its room"}
	}
	res.restart = func(ctx context.Context, ufrag, pwd string) (string, error) {
		p := ext.Peer()
		if p == nil {
			return "", &protocol.Error{Code: protocol.CodeNotJoined, Reason: "the publisher left its room"}
		}
		return p.RestartPublishICE(ctx, streamID, ufrag, pwd)
	}
	// A publisher that a moderator removed, or whose room ended, goes.
	go s.watchWHIP(res, ext)
	identity := name
	if res.token != nil {
		identity = res.token.Identity
	}
	return answer, identity, nil
}

// watchWHIP removes a WHIP resource once its participant left the room.
func (s *Server) watchWHIP(res *resource, ext *signaling.External) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-res.done:
			return
		case <-t.C:
		}
		if p := ext.Participant(); p == nil || p.Left() {
			s.remove(res)
			return
		}
	}
}
