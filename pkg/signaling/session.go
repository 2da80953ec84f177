package signaling

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/parley/parley/pkg/access"
	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/queue"
	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/sfu"
	"github.com/pion/webrtc/v4"
	"golang.org/x/time/rate"
)

// floodLimit is how many rate-limited requests in a row end a session.
const floodLimit = 500

// Session is one WebSocket. Its read goroutine handles requests one at a
// time; its write goroutine sends what the bounded queue holds, and pings.
type Session struct {
	hub    *Hub
	conn   *websocket.Conn
	id     string
	remote string // the client's address
	log    *slog.Logger
	out    *queue.FIFO[[]byte]
	wake   chan struct{} // one pending wake-up for the write goroutine
	done   chan struct{}
	closed sync.Once
	wg     sync.WaitGroup

	// Owned by the read goroutine.
	limiter   *rate.Limiter
	iceLimit  *rate.Limiter // trickled candidates come in bursts: their own, larger budget
	limited   int
	connected bool
	username  string
	member    *member
	// addr is the client address the per-address limits count (hasAddr:
	// known).
	addr    netip.Prefix
	hasAddr bool
}

func newSession(h *Hub, conn *websocket.Conn, remote string) *Session {
	id := randomToken("ses-", 8)
	return &Session{
		hub:     h,
		conn:    conn,
		id:      id,
		remote:  remote,
		log:     h.log.With("session", id, "remote", remote),
		out:     queue.New[[]byte](h.cfg.SendQueue),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		limiter: rate.NewLimiter(rate.Limit(h.cfg.MessagesPerSecond), h.cfg.Burst),
		// A browser trickles a few dozen candidates per connection at once.
		iceLimit: rate.NewLimiter(rate.Limit(5*h.cfg.MessagesPerSecond), 200),
	}
}

// send queues a message without blocking. A session whose queue is full
// cannot keep up and is closed: it is better to drop one slow session than to
// stall a room.
func (s *Session) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode message", "err", err)
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	if !s.out.Push(b) {
		s.log.Warn("session cannot keep up with its events; closing it", "queued", s.out.Limit())
		s.close()
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// disconnect tells the client the session is over and closes it.
func (s *Session) disconnect(reason string) {
	s.send(&protocol.Session{Type: protocol.TypeSession, Status: protocol.SessionDisconnected, Reason: reason})
	s.close()
}

// fail writes a FAILED session status directly (before the session runs).
func (s *Session) fail(reason string) {
	b, _ := json.Marshal(&protocol.Session{Type: protocol.TypeSession, Status: protocol.SessionFailed, Reason: reason})
	_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = s.conn.WriteMessage(websocket.TextMessage, b)
}

func (s *Session) close() { s.closed.Do(func() { close(s.done) }) }

// run serves the session until the WebSocket ends.
func (s *Session) run() {
	cfg := s.hub.cfg
	s.conn.SetReadLimit(int64(cfg.HardFrameBytes))
	_ = s.conn.SetReadDeadline(time.Now().Add(cfg.PongTimeout))
	s.conn.SetPongHandler(func(string) error {
		return s.conn.SetReadDeadline(time.Now().Add(cfg.PongTimeout))
	})
	s.wg.Add(1)
	go s.writeLoop()
	s.log.Debug("session opened")

	s.readLoop()

	s.close()
	s.wg.Wait()
	_ = s.conn.Close()
	if s.member != nil {
		s.member.detach(s)
	}
	s.log.Debug("session closed")
}

func (s *Session) writeLoop() {
	defer s.wg.Done()
	cfg := s.hub.cfg
	ping := time.NewTicker(cfg.PingInterval)
	defer ping.Stop()
	batch := make([][]byte, 0, 16)
	// writeQueued sends everything queued, in order.
	writeQueued := func() error {
		for {
			batch = s.out.Drain(batch[:0])
			if len(batch) == 0 {
				return nil
			}
			for i, b := range batch {
				batch[i] = nil
				_ = s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if err := s.conn.WriteMessage(websocket.TextMessage, b); err != nil {
					return err
				}
			}
		}
	}
	for {
		select {
		case <-s.wake:
			if err := writeQueued(); err != nil {
				s.close()
				_ = s.conn.Close()
				return
			}
		case <-ping.C:
			if err := s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second)); err != nil {
				s.close()
				_ = s.conn.Close()
				return
			}
		case <-s.done:
			// Flush what is queued (the last words: DISCONNECTED, FAILED), then close.
			if writeQueued() != nil {
				_ = s.conn.Close()
				return
			}
			_ = s.conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			_ = s.conn.Close()
			return
		}
	}
}

func (s *Session) readLoop() {
	cfg := s.hub.cfg
	for {
		mt, r, err := s.conn.NextReader()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				s.log.Info("frame over the hard limit; closing", "limit", cfg.HardFrameBytes)
			}
			return
		}
		_ = s.conn.SetReadDeadline(time.Now().Add(cfg.PongTimeout))
		data, limit, err := s.readFrame(r)
		if err != nil {
			return
		}
		if len(data) > limit {
			head := peekHead(data)
			if _, err := io.Copy(io.Discard, r); err != nil {
				s.send(&protocol.Error{Type: protocol.TypeError, ID: head.ID, Request: head.Type, Code: protocol.CodeTooLarge,
					Reason: fmt.Sprintf("frame over %d bytes; the session is closed", cfg.HardFrameBytes)})
				return
			}
			reason := fmt.Sprintf("frame over %d bytes", limit)
			s.send(&protocol.Error{Type: protocol.TypeError, ID: head.ID, Request: head.Type, Code: protocol.CodeTooLarge, Reason: reason})
			s.refused(head.Type, protocol.CodeTooLarge+": "+reason)
			continue
		}
		if mt != websocket.TextMessage {
			s.send(&protocol.Error{Type: protocol.TypeError, Code: protocol.CodeBadRequest, Reason: "send JSON in text frames"})
			continue
		}
		var env protocol.Envelope
		envErr := json.Unmarshal(data, &env)
		limiter := s.limiter
		if env.Type == protocol.TypeCandidate {
			limiter = s.iceLimit
		}
		if !limiter.Allow() {
			s.limited++
			if s.limited > floodLimit {
				s.log.Warn("request flood; closing the session")
				s.disconnect("too many requests")
				return
			}
			reason := fmt.Sprintf("more than %g requests per second; slow down", cfg.MessagesPerSecond)
			if envErr != nil {
				env = protocol.Envelope{} // not a request: no id to answer (as when it is not limited)
			}
			s.send(&protocol.Error{Type: protocol.TypeError, ID: env.ID, Request: env.Type, Code: protocol.CodeRateLimited, Reason: reason})
			s.refused(env.Type, protocol.CodeRateLimited+": "+reason)
			continue
		}
		s.limited = 0
		if envErr != nil {
			s.send(&protocol.Error{Type: protocol.TypeError, Code: protocol.CodeBadRequest, Reason: "malformed JSON: " + envErr.Error()})
			continue
		}
		s.handle(env, data)
		select {
		case <-s.done:
			return
		default:
		}
	}
}

// handle routes one request and sends its error, if any.
func (s *Session) handle(env protocol.Envelope, data []byte) {
	reply, err := s.dispatch(env, data)
	if err != nil {
		var pe *protocol.Error
		if !errors.As(err, &pe) {
			s.log.Error("request failed", "type", env.Type, "err", err)
			pe = &protocol.Error{Code: protocol.CodeInternal, Reason: "internal error; the server log has details"}
		}
		if pe.Code == protocol.CodeForbidden {
			s.log.Info("request refused", "type", env.Type, "username", s.username, "reason", pe.Reason)
		}
		s.send(&protocol.Error{Type: protocol.TypeError, ID: env.ID, Request: env.Type, Code: pe.Code, Reason: pe.Reason})
		s.refused(env.Type, pe.Code+": "+pe.Reason)
		return
	}
	if reply == nil {
		return
	}
	if _, plain := reply.(*protocol.Reply); plain && env.ID == nil {
		return // a plain acknowledgement is only sent to requests that asked (with an id)
	}
	s.send(reply)
}

func decode(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return &protocol.Error{Code: protocol.CodeBadRequest, Reason: "bad request: " + err.Error()}
	}
	return nil
}

func (s *Session) dispatch(env protocol.Envelope, data []byte) (any, error) {
	ok := &protocol.Reply{Type: protocol.TypeReply, ID: env.ID}
	if env.Type == protocol.TypeConnect {
		var req protocol.Connect
		if err := decode(data, &req); err != nil {
			return nil, err
		}
		return s.connect(env.ID, req)
	}
	if env.Type == protocol.TypePing {
		return ok, nil
	}
	switch env.Type {
	case protocol.TypeJoin, protocol.TypePublish, protocol.TypeUnpublish, protocol.TypeOffer, protocol.TypeAnswer,
		protocol.TypeCandidate, protocol.TypeRestartICE, protocol.TypeMessage, protocol.TypeLeave, protocol.TypeModerate,
		protocol.TypeTiles, protocol.TypePresence:
	case "":
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Reason: `the message has no "type"`}
	default:
		return nil, &protocol.Error{Code: protocol.CodeUnknownType, Reason: fmt.Sprintf("unknown message type %q", env.Type)}
	}
	if !s.connected {
		return nil, &protocol.Error{Code: protocol.CodeNotConnected, Reason: `send "connect" first`}
	}
	if env.Type == protocol.TypeJoin {
		var req protocol.Join
		if err := decode(data, &req); err != nil {
			return nil, err
		}
		return s.joinAndReply(env.ID, req)
	}
	p, peer := s.member.joined()
	if p == nil {
		return nil, &protocol.Error{Code: protocol.CodeNotJoined, Reason: `join a room first`}
	}
	switch env.Type {
	case protocol.TypeLeave:
		s.member.leave("left")
		return ok, nil
	case protocol.TypeMessage:
		var req protocol.Message
		if err := decode(data, &req); err != nil {
			return nil, err
		}
		if err := access.CheckChat(p.Grants()); err != nil {
			return nil, err
		}
		ts, err := p.SendMessage(req.To, req.Text)
		ok.TS = ts
		return ok, err
	case protocol.TypePresence:
		var req protocol.Presence
		if err := decode(data, &req); err != nil {
			return nil, err
		}
		if req.Hand != nil && *req.Hand {
			if err := access.CheckChat(p.Grants()); err != nil {
				return nil, err
			}
		}
		return ok, p.SetPresence(req.Hand, req.MicOff, req.CamOff)
	case protocol.TypePublish:
		var req protocol.Publish
		if err := decode(data, &req); err != nil {
			return nil, err
		}
		return s.publish(env.ID, p, peer, req)
	case protocol.TypeUnpublish:
		var req protocol.Unpublish
		if err := decode(data, &req); err != nil {
			return nil, err
		}
		if err := peer.Unpublish(req.Stream); err != nil {
			return nil, err
		}
		return ok, p.RemoveStream(req.Stream)
	case protocol.TypeOffer:
		var req protocol.SDP
		if err := decode(data, &req); err != nil {
			return nil, err
		}
		if req.Stream == "" {
			return nil, &protocol.Error{Code: protocol.CodeBadRequest,
				Reason: `an offer needs the "stream" it is for; the subscribe connection is offered by the server only`}
		}
		answer, err := peer.Reoffer(req.Stream, req.SDP)
		if err != nil {
			return nil, err
		}
		// The answer first, then the candidates gathered for it.
		s.send(&protocol.SDP{Type: protocol.TypeAnswer, ID: env.ID, Stream: req.Stream, SDP: answer})
		peer.StartTrickle(req.Stream)
		return nil, nil
	case protocol.TypeAnswer:
		var req protocol.SDP
		if err := decode(data, &req); err != nil {
			return nil, err
		}
		return ok, peer.Answer(req.SDP)
	case protocol.TypeCandidate:
		var req protocol.Candidate
		if err := decode(data, &req); err != nil {
			return nil, err
		}
		if req.Candidate == nil || req.Candidate.Candidate == "" {
			return ok, nil // end of candidates
		}
		c := req.Candidate
		return ok, peer.AddCandidate(req.Target, req.Stream, webrtc.ICECandidateInit{Candidate: c.Candidate,
			SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment})
	case protocol.TypeRestartICE:
		return ok, peer.RestartICE()
	case protocol.TypeTiles:
		var req protocol.Tiles
		if err := decode(data, &req); err != nil {
			return nil, err
		}
		if err := checkTiles(req.Tiles); err != nil {
			return nil, err
		}
		return ok, peer.SetTiles(req.Tiles)
	case protocol.TypeModerate:
		var req protocol.Moderate
		if err := decode(data, &req); err != nil {
			return nil, err
		}
		return ok, s.moderate(p, req)
	}
	return nil, &protocol.Error{Code: protocol.CodeUnknownType, Reason: fmt.Sprintf("unknown message type %q", env.Type)}
}

func (s *Session) limits() *protocol.Limits {
	rc := s.hub.rooms.Config()
	return &protocol.Limits{MaxFrameBytes: s.hub.cfg.MaxFrameBytes, MaxAnswerBytes: s.hub.cfg.MaxAnswerBytes, MaxTextBytes: rc.MaxTextBytes, MaxNameBytes: rc.MaxNameBytes,
		MaxStreams: rc.MaxStreams, MaxParticipants: rc.MaxParticipants, MessagesPerSecond: s.hub.cfg.MessagesPerSecond,
		ReconnectGraceSeconds: s.hub.cfg.ReconnectGrace.Seconds()}
}

func (s *Session) connect(id *int64, req protocol.Connect) (any, error) {
	if s.connected {
		return nil, &protocol.Error{Code: protocol.CodeAlreadyConnected, Reason: "this session is already connected"}
	}
	est := &protocol.Session{Type: protocol.TypeSession, ID: id, Status: protocol.SessionEstablished, SessionID: s.id,
		Limits: s.limits()}
	var tok *auth.Token
	if req.Token != "" && req.Resume == "" {
		// Checked before anything else: a refused token leaves the session
		// unconnected, so the client may connect again with another.
		var err error
		if tok, err = s.hub.cfg.Access.Verify(req.Token); err != nil {
			return nil, err
		}
	}
	if req.Resume != "" {
		m := s.hub.member(req.Resume)
		p, peer := (*room.Participant)(nil), (*sfu.Peer)(nil)
		if m != nil {
			p, peer = m.joined()
		}
		if p == nil {
			return &protocol.Session{Type: protocol.TypeSession, ID: id, Status: protocol.SessionFailed,
				Reason: "resume token unknown or expired; connect without it and join again"}, nil
		}
		s.connected = true
		s.member = m
		s.username = p.Name()
		m.attach(s)
		est.ResumeToken, est.Resumed, est.Room, est.Name = m.token, true, p.Room().Name(), p.Name()
		est.ICEServers = s.iceServers(p) // fresh credentials for the ICE restarts that follow
		est.Clips = s.clips(p)
		s.send(est)
		if err := p.SetSink(m); err != nil {
			return nil, err
		}
		if peer != nil {
			peer.SetSignal(m)
		}
		s.log.Info("session resumed", "room", p.Room().Name(), "name", p.Name())
		return nil, nil
	}
	s.connected = true
	s.username = req.Username
	s.member = &member{hub: s.hub, token: randomToken("rt-", 16), session: s, access: tok}
	if tok != nil {
		s.member.subject = tok.Identity
		s.log.Info("session connected with an access token", "identity", tok.Identity, "key", tok.KeyID,
			"room", tok.Room, "grants", tok.Grants.String())
	}
	est.ResumeToken = s.member.token
	return est, nil
}

// joinAndReply joins and sends the reply, which carries the participant's
// ICE servers, before the subscribe offer the join may have made (held until
// then), so that the client has its TURN credentials before it makes a peer
// connection. Creating a room counts against the address's room limit.
func (s *Session) joinAndReply(id *int64, req protocol.Join) (any, error) {
	cancel := func() {}
	if s.hasAddr && s.hub.rooms.Room(req.Room) == nil {
		var ok bool
		if cancel, ok = s.hub.limits.reserveRoom(s.addr); !ok {
			s.log.Info("room creation refused", "room", clip(req.Room), "address", addrString(s.addr))
			return nil, &protocol.Error{Code: protocol.CodeRateLimited, Reason: fmt.Sprintf(
				"more than %g rooms created per minute from your address %s; join an existing room or wait a minute",
				s.hub.cfg.AddressLimits.RoomsPerMinute, addrString(s.addr))}
		}
	}
	m := s.member
	m.hold()
	if err := s.join(req); err != nil {
		m.release(false)
		cancel()
		return nil, err
	}
	reply := &protocol.Reply{Type: protocol.TypeReply, ID: id}
	if p, _ := m.joined(); p != nil {
		reply.ICEServers = s.iceServers(p)
		reply.Clips = s.clips(p)
	}
	if id != nil || len(reply.ICEServers) > 0 || reply.Clips != nil {
		s.send(reply)
	}
	m.release(true)
	return nil, nil
}

// iceServers returns the ICE servers of participant p (nil without TURN).
func (s *Session) iceServers(p *room.Participant) []protocol.ICEServer {
	if s.hub.cfg.ICEServers == nil {
		return nil
	}
	return s.hub.cfg.ICEServers(p.Room().Name(), s.member.identity(p))
}

// clips returns participant p's access to its room's media messages (nil without).
func (s *Session) clips(p *room.Participant) *protocol.ClipsAccess {
	if s.hub.cfg.Clips == nil {
		return nil
	}
	return s.hub.cfg.Clips(p)
}

func (s *Session) join(req protocol.Join) error {
	name := req.Name
	if name == "" {
		name = s.username
	}
	m := s.member
	if p, _ := m.joined(); p != nil && p.Room().Name() == req.Room {
		// The room it is in, under the same name (a reloaded page after a
		// resumed connect): it was admitted already, with no need of the
		// room's password again.
		want := name
		if tok := m.access; tok != nil && (tok.Name != "" || want == "") {
			want = cmp.Or(tok.Name, tok.Identity)
		}
		if display, _, err := room.NameKey(want); err == nil && p.Name() == display {
			subscribe := p.Grants().Subscribe
			if req.Subscribe != nil {
				if *req.Subscribe && !subscribe {
					return access.Forbidden("your grants do not include subscribe: join with subscribe false")
				}
				subscribe = *req.Subscribe
			}
			return s.rejoin(p, req, subscribe)
		}
	}
	remote := s.remote
	if s.hasAddr {
		remote = addrString(s.addr) // the client's, behind a trusted proxy too (IPv6: its /64)
	}
	adm, err := s.hub.cfg.Access.Admit(access.JoinRequest{Room: req.Room, Name: name, Token: m.access,
		Subscribe: req.Subscribe, Record: req.Record, Password: req.Password, Remote: remote})
	if err != nil {
		return err
	}
	name, subscribe := adm.Name, adm.Subscribe
	if p, _ := m.joined(); p != nil {
		m.leave("left")
	}
	if len(req.Codecs) > 64 {
		return &protocol.Error{Code: protocol.CodeBadRequest, Reason: "too many codecs listed (at most 64)"}
	}
	for _, c := range req.Codecs {
		if len(c) > 200 {
			return &protocol.Error{Code: protocol.CodeBadRequest, Reason: "a codec entry is too long (at most 200 bytes)"}
		}
	}
	p, err := s.hub.rooms.Join(req.Room, name, m, room.JoinOptions{Subscribe: subscribe, Codecs: req.Codecs,
		Record: adm.Record, Identity: adm.Identity, Grants: adm.Grants, MaxParticipants: adm.MaxParticipants,
		MaxStreams: adm.MaxStreams, NeverRecord: adm.NeverRecord(), Webinar: adm.Webinar()})
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.p = p
	m.adm = adm
	m.mu.Unlock()
	peer, err := s.hub.router(p.Room()).AddPeer(p.ID(), sfu.PeerOptions{Name: p.Name(), Subscribe: subscribe, Codecs: req.Codecs}, m)
	if err != nil {
		m.leave("left")
		return err
	}
	m.mu.Lock()
	m.peer = peer
	m.mu.Unlock()
	s.hub.setMember(m, true)
	return nil
}

// rejoin handles a join to the room the participant is already in (a page
// reload after a resumed connect): its old media goes, the participant stays.
func (s *Session) rejoin(p *room.Participant, req protocol.Join, subscribe bool) error {
	m := s.member
	m.mu.Lock()
	peer := m.peer
	m.peer = nil
	m.mu.Unlock()
	if peer != nil {
		peer.Close()
	}
	for _, st := range p.Streams() {
		_ = p.RemoveStream(st.ID)
	}
	newPeer, err := s.hub.router(p.Room()).AddPeer(p.ID(), sfu.PeerOptions{Name: p.Name(), Subscribe: subscribe, Codecs: req.Codecs}, m)
	if err != nil {
		m.leave("left")
		return err
	}
	m.mu.Lock()
	m.peer = newPeer
	m.mu.Unlock()
	s.log.Info("participant rejoined", "room", p.Room().Name(), "name", p.Name())
	return p.SetSink(m)
}

func (s *Session) publish(id *int64, p *room.Participant, peer *sfu.Peer, req protocol.Publish) (any, error) {
	kind := req.Kind
	switch kind {
	case "":
		kind = protocol.KindCamera
	case protocol.KindCamera, protocol.KindScreen:
	default:
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Reason: `publish kind must be "camera" or "screen"`}
	}
	if strings.TrimSpace(req.SDP) == "" {
		return nil, &protocol.Error{Code: protocol.CodeInvalidSDP, Reason: "publish needs the offer's sdp"}
	}
	offer, err := s.member.admission().CheckPublish(kind, req.SDP, req.Record)
	if err != nil {
		return nil, err
	}
	if err := p.CanPublish(); err != nil {
		return nil, err
	}
	streamID := room.NewStreamID()
	answer, tracks, err := peer.Publish(streamID, kind, offer, req.Record || p.Room().Recording())
	if err != nil {
		return nil, err
	}
	if err := p.AddStream(protocol.StreamInfo{ID: streamID, Kind: kind, Tracks: tracks, Status: protocol.StreamPending,
		Recording: req.Record}); err != nil {
		_ = peer.Unpublish(streamID)
		return nil, err
	}
	s.send(&protocol.SDP{Type: protocol.TypeAnswer, ID: id, Stream: streamID, SDP: answer})
	peer.StartTrickle(streamID)
	s.log.Info("stream published", "room", p.Room().Name(), "name", p.Name(), "stream", streamID, "kind", kind)
	return nil, nil
}

// checkTiles bounds a tiles message.
func checkTiles(tiles []protocol.Tile) error {
	if len(tiles) > protocol.MaxTiles {
		return &protocol.Error{Code: protocol.CodeTooLarge, Reason: fmt.Sprintf("at most %d tiles at a time", protocol.MaxTiles)}
	}
	for _, t := range tiles {
		if t.Stream == "" || len(t.Stream) > 64 {
			return &protocol.Error{Code: protocol.CodeBadRequest, Reason: "a tile needs the \"stream\" it shows (at most 64 bytes)"}
		}
		if t.Width < 0 || t.Height < 0 || t.Width > protocol.MaxTileSide || t.Height > protocol.MaxTileSide {
			return &protocol.Error{Code: protocol.CodeBadRequest,
				Reason: fmt.Sprintf("a tile's width and height are 0 to %d device pixels", protocol.MaxTileSide)}
		}
	}
	return nil
}
