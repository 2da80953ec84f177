// Package client is the Go implementation of Parley's signaling protocol
// (docs/protocol.md) and of its media side: the integration tests, the load tool
// and bots use it to connect, join rooms, publish real media from files and
// subscribe to what the others publish, with per-packet records that tests can
// compare end to end.
//
// A Client owns one WebSocket session (Dial), the publish peer connections of its
// Publications and the subscribe peer connection the server offers. Everything it
// starts ends in Close: no goroutine outlives it.
//
// # Events and errors
//
// Server events arrive in order on Events (buffered; when the consumer falls
// behind they wait in an unbounded list, so none is lost). WaitEvent consumes
// events up to the first one that matches. Besides the room and stream events
// (type "event"), the client puts on Events a session event when the server ends
// the session: protocol.Event{Type: "session", Event: "DISCONNECTED", Status:
// "DISCONNECTED", Reason: …}. Events is closed when the session is over: after
// such a DISCONNECTED, or when the server closes the WebSocket or the connection
// drops (except after CloseWebSocketOnly), or on Close.
//
// Errors answering a request are returned by that request as *protocol.Error.
// Errors that answer no pending request (a request sent without an id with Send
// or SendRaw, or one whose caller gave up) arrive on Errors instead, with the
// same no-loss buffering.
//
// # Network changes
//
// CloseWebSocketOnly drops the WebSocket without a close frame and keeps the
// peer connections, as a network change does; Reconnect then resumes the session
// on a new WebSocket with the resume token and restarts ICE on every peer
// connection, as protocol.md prescribes. Events, Publications and RemoteTracks
// carry on across it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/parley/parley/pkg/protocol"
	"github.com/pion/webrtc/v4"
)

// Errors returned by the Client.
var (
	// ErrClosed is returned by calls on a closed Client.
	ErrClosed = errors.New("client closed")
	// ErrNoWebSocket is returned when a message is sent while there is no WebSocket
	// (after CloseWebSocketOnly, before Reconnect) or after the session ended.
	ErrNoWebSocket = errors.New("no WebSocket connection")
	// ErrConnectionLost ends the requests still waiting when the WebSocket drops.
	ErrConnectionLost = errors.New("WebSocket connection lost")
	// ErrSessionEnded is returned by Reconnect once the session is over.
	ErrSessionEnded = errors.New("session ended")
)

// SessionError is a session message whose status is not ESTABLISHED: the server
// refused a connect (FAILED, e.g. an unknown resume token) or ended the session
// (DISCONNECTED).
type SessionError struct {
	// Status is the session status: FAILED or DISCONNECTED.
	Status string
	// Reason is the server's reason.
	Reason string
	// Code, when the server refused the session at once, says why
	// (TOO_MANY_SESSIONS, RATE_LIMITED).
	Code string
}

// Error implements error.
func (e *SessionError) Error() string {
	if e.Code != "" {
		return "session " + e.Status + " (" + e.Code + "): " + e.Reason
	}
	return "session " + e.Status + ": " + e.Reason
}

// eventsBuffer is the capacity of the Events and Errors channels.
const eventsBuffer = 1024

// writeTimeout bounds one WebSocket write.
const writeTimeout = 10 * time.Second

// Options configure a Client.
type Options struct {
	// Username is sent in connect; join's name defaults to it.
	Username string
	// Resume is a resume token: connect re-attaches the participant it was issued for.
	Resume string
	// Token is an access token (a JWT: docs/security.md) sent in connect; it
	// names who the client is and what it may do.
	Token string
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger
	// ICE configures every peer connection of the client.
	ICE ICEOptions
	// LightReceiver makes the subscribe connection register no NACK generator (and
	// negotiate no "nack" feedback), so receiving costs less CPU: for the load
	// tool, which runs many receiving clients in one process and does not need
	// retransmissions. NACK responding, RTCP reports and TWCC stay on. Remote
	// tracks then keep their counters but no per-packet records.
	LightReceiver bool
	// NegotiateNACK, with LightReceiver, still negotiates generic "nack"
	// feedback for video, as browsers do, while no NACK generator runs (no NACK
	// is ever sent): the server then keeps its retransmission cache for this
	// receiver as it does for a browser, so a load test sees the server's real cost.
	NegotiateNACK bool
	// OnRemoteTrack, when set, is called once for every remote track before its
	// reader starts; the function it returns (nil: none) then observes every
	// packet the reader gets (load testing: count and time packets without records).
	OnRemoteTrack func(t *RemoteTrack) PacketReceivedFunc
	// StampArrivals makes the subscribe connection's UDP sockets take the
	// kernel's receive timestamp of every RTP packet (Linux), which
	// PacketReceivedFunc gets as arrivedAt: when the packet reached the
	// socket, before this client's own receive path.
	StampArrivals bool
	// OnFrame, when set, is called by the reader goroutine with every frame the
	// server sends, as received, before the client handles it (for tests that
	// check the wire format). It must not block; it may keep the slice.
	OnFrame func(frame []byte)
	// SubscribeDTLSServer answers the server's subscribe offers as the DTLS
	// server (a=setup:passive) instead of the client, as some WebRTC stacks
	// do; tests use it to make the server the DTLS client.
	SubscribeDTLSServer bool
	// RewriteLocalSDP, when set, rewrites every offer and answer the client
	// sends, as sent (its own peer connections keep the SDP they made);
	// tests use it to add candidates the server must refuse.
	RewriteLocalSDP func(sdp string) string
	// Header is sent with the WebSocket handshake (an Origin, a cookie…).
	Header http.Header
	// Dialer dials the WebSocket; nil uses a copy of websocket.DefaultDialer.
	Dialer *websocket.Dialer
}

// ICEOptions configure ICE for every peer connection of a Client.
type ICEOptions struct {
	// ExcludeLoopback leaves out loopback candidates. They are included by
	// default because tests run client and server on 127.0.0.1.
	ExcludeLoopback bool
	// NetworkTypes are the candidate network types to gather; default UDP4.
	NetworkTypes []webrtc.NetworkType
	// TCPOnly gathers only ICE-TCP candidates (NetworkTypeTCP4); it overrides NetworkTypes.
	TCPOnly bool
	// RewriteRemoteCandidate, when set, is applied to every candidate the server
	// gives: the a=candidate lines of its SDP and the trickled ones. It gets and
	// returns the candidate attribute as in a trickled candidate
	// ("candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"); returning ""
	// drops the candidate. Tests use it to route media through a proxy.
	RewriteRemoteCandidate func(candidate string) string
	// TransportPolicy is the ICE transport policy (default all).
	TransportPolicy webrtc.ICETransportPolicy
	// Servers replaces the ICE servers of the session message when not nil
	// (an empty, non-nil slice: no ICE servers at all).
	Servers []webrtc.ICEServer
	// IPFilter, when set, gathers candidates only on the addresses it
	// accepts (a test that gives this client an address of its own, on a
	// link it shapes).
	IPFilter func(net.IP) bool
	// HideLocalCandidates keeps the subscribe connection's own candidates
	// from the server (not trickled, none in the answer): the server learns
	// the client's address from its connectivity checks alone, as behind a
	// NAT. With RewriteRemoteCandidate, a test or the load tool puts a relay
	// of its own (a shaped link) between client and server.
	HideLocalCandidates bool
	// DisconnectedTimeout, FailedTimeout and KeepAliveInterval override pion's
	// ICE timeouts when not zero.
	DisconnectedTimeout, FailedTimeout, KeepAliveInterval time.Duration
}

// Client is one session with a Parley server. Its methods are safe for
// concurrent use, except that Events should have a single consumer.
type Client struct {
	url  string
	opts Options
	log  *slog.Logger

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	events *queue[protocol.Event]
	errs   *queue[*protocol.Error]
	sub    *subscriber

	writeMu   sync.Mutex // one writer at a time on the WebSocket
	closeOnce sync.Once

	mu        sync.Mutex
	conn      *websocket.Conn // nil when there is none
	connDone  chan struct{}   // closed when conn's reader ended
	killed    bool            // the WebSocket was dropped on purpose (CloseWebSocketOnly)
	closing   bool
	ended     bool // the session is over; Events is finished
	endErr    error
	endedCh   chan struct{}
	nextID    int64
	pending   map[int64]chan result
	session   protocol.Session
	joinCodes []string
	// iceServers come with the reply to a join, and fresh with a resumed session.
	iceServers []protocol.ICEServer

	stateSeq  int64
	lastState protocol.Event

	streamStatus map[string]streamState // latest STREAM_STATUS per stream id
	pubs         map[*Publication]struct{}
	pubByID      map[string]*Publication
	orphanCands  map[string][]webrtc.ICECandidateInit // publish candidates for a stream not yet answered

	paused  bool
	pauseCh chan struct{} // closed when reading resumes

	remoteTracks  []*RemoteTrack
	tracksChanged chan struct{} // closed and replaced when a remote track is added
}

type streamState struct{ status, reason, video string }

type result struct {
	data []byte
	err  error
}

// Dial opens a WebSocket to url (ws://host:port/ws), sends connect with
// opts.Username and opts.Resume and waits for the session message. A refused
// connect returns a *SessionError (or the server's *protocol.Error).
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		url:           url,
		opts:          opts,
		log:           log,
		ctx:           cctx,
		cancel:        cancel,
		events:        newQueue[protocol.Event](eventsBuffer),
		errs:          newQueue[*protocol.Error](eventsBuffer),
		endedCh:       make(chan struct{}),
		pending:       map[int64]chan result{},
		streamStatus:  map[string]streamState{},
		pubs:          map[*Publication]struct{}{},
		pubByID:       map[string]*Publication{},
		orphanCands:   map[string][]webrtc.ICECandidateInit{},
		tracksChanged: make(chan struct{}),
	}
	c.sub = newSubscriber(c)
	c.wg.Add(3)
	go func() { defer c.wg.Done(); c.events.run() }()
	go func() { defer c.wg.Done(); c.errs.run() }()
	go func() { defer c.wg.Done(); c.sub.run() }()

	if err := c.connect(ctx, opts.Username, opts.Resume); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	return c, nil
}

// connect dials a WebSocket, starts its reader and performs the connect handshake.
func (c *Client) connect(ctx context.Context, username, resume string) error {
	dialer := c.opts.Dialer
	if dialer == nil {
		d := *websocket.DefaultDialer
		dialer = &d
	}
	conn, resp, err := dialer.DialContext(ctx, c.url, c.opts.Header)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return fmt.Errorf("websocket: %w", err)
	}
	conn.SetReadLimit(16 << 20)

	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		_ = conn.Close()
		return ErrClosed
	}
	done := make(chan struct{})
	c.conn, c.connDone, c.killed = conn, done, false
	c.wg.Add(1)
	c.mu.Unlock()
	go c.readLoop(conn, done)

	s, err := c.handshake(ctx, username, resume)
	if err != nil {
		var perr *protocol.Error
		var serr *SessionError
		if errors.As(err, &perr) || errors.As(err, &serr) {
			// Refused: the session is over (Events closes).
			_ = conn.Close()
		} else {
			// No answer: drop this WebSocket but let a later Reconnect try again.
			c.CloseWebSocketOnly()
		}
		return err
	}
	c.mu.Lock()
	c.session = s
	if s.Resumed && len(s.ICEServers) > 0 {
		c.iceServers = s.ICEServers
	}
	c.mu.Unlock()
	c.log.Debug("session established", "session", s.SessionID, "resumed", s.Resumed)
	return nil
}

// handshake sends connect and waits for an ESTABLISHED session message.
func (c *Client) handshake(ctx context.Context, username, resume string) (protocol.Session, error) {
	msg := &protocol.Connect{Type: protocol.TypeConnect, Username: username, Resume: resume}
	if resume == "" {
		// A resumed session keeps the grants of the token it connected with.
		msg.Token = c.opts.Token
	}
	raw, err := c.Request(ctx, msg)
	if err != nil {
		// A server that refuses the session at once (TOO_MANY_SESSIONS…)
		// may have said so and closed before the connect went out: the
		// write then fails while the reader is still taking in the refusal
		// and the close, so wait for the reader to end before asking why.
		c.mu.Lock()
		done := c.connDone
		c.mu.Unlock()
		if done != nil {
			wait := time.NewTimer(time.Second)
			select {
			case <-done:
			case <-wait.C:
			case <-ctx.Done():
			}
			wait.Stop()
		}
		var se *SessionError
		if ended := c.Err(); !errors.As(err, &se) && errors.As(ended, &se) {
			return protocol.Session{}, fmt.Errorf("connect: %w: %w", err, se)
		}
		return protocol.Session{}, fmt.Errorf("connect: %w", err)
	}
	var s protocol.Session
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("connect: bad session message: %w", err)
	}
	if s.Type != protocol.TypeSession {
		return s, fmt.Errorf("connect: got %q, want a session message", s.Type)
	}
	if s.Status != protocol.SessionEstablished {
		return s, &SessionError{Status: s.Status, Reason: s.Reason, Code: s.Code}
	}
	return s, nil
}

// SessionID is the server's id of the current session.
func (c *Client) SessionID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session.SessionID
}

// ResumeToken is the token that resumes this participant (Options.Resume, Reconnect).
func (c *Client) ResumeToken() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session.ResumeToken
}

// Resumed reports whether the last connect re-attached an existing participant.
func (c *Client) Resumed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session.Resumed
}

// Session returns the last ESTABLISHED session message (with Room and Name after a resume).
func (c *Client) Session() protocol.Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// ICEServers are the ICE servers (TURN credentials) the server gave with the
// reply to the last join, or with a resumed session; every peer connection
// made after is configured with them (unless ICEOptions.Servers is set).
func (c *Client) ICEServers() []protocol.ICEServer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]protocol.ICEServer(nil), c.iceServers...)
}

// Limits are the server's limits from the session message (zero if it sent none).
func (c *Client) Limits() protocol.Limits {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session.Limits == nil {
		return protocol.Limits{}
	}
	return *c.session.Limits
}

// Events returns the channel of server events, in the order the server sent them.
// See the package documentation for session events and when it is closed.
func (c *Client) Events() <-chan protocol.Event { return c.events.out }

// Errors returns the channel of error messages that answer no pending request.
// It is closed with Events.
func (c *Client) Errors() <-chan *protocol.Error { return c.errs.out }

// Done is closed when the session is over: the server ended it or the WebSocket
// dropped (not by CloseWebSocketOnly), or the client was closed.
func (c *Client) Done() <-chan struct{} { return c.endedCh }

// Err tells why the session ended (nil while it goes on): a *SessionError when the
// server sent DISCONNECTED, ErrClosed after Close, else the WebSocket error.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endErr
}

// WaitEvent returns the first event for which match returns true (nil matches
// any event), consuming (and dropping) the events before it. It fails when ctx
// ends or Events is closed. It reads Events, so it competes with any other
// consumer of that channel.
func (c *Client) WaitEvent(ctx context.Context, match func(protocol.Event) bool) (protocol.Event, error) {
	for {
		select {
		case ev, ok := <-c.events.out:
			if !ok {
				err := c.Err()
				if err == nil {
					err = ErrClosed
				}
				return protocol.Event{}, fmt.Errorf("wait event: events closed: %w", err)
			}
			if match == nil || match(ev) {
				return ev, nil
			}
		case <-ctx.Done():
			return protocol.Event{}, fmt.Errorf("wait event: %w", ctx.Err())
		}
	}
}

// Request sends msg (a protocol struct, a map, or a JSON object as []byte or
// json.RawMessage) with a fresh "id" and waits for the reply, answer, session or
// error message carrying that id, which it returns as it came. An error message
// is also returned as a *protocol.Error.
func (c *Client) Request(ctx context.Context, msg any) (json.RawMessage, error) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if c.conn == nil {
		c.mu.Unlock()
		return nil, ErrNoWebSocket
	}
	c.nextID++
	id := c.nextID
	ch := make(chan result, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}

	data, err := withID(msg, id)
	if err != nil {
		forget()
		return nil, err
	}
	if err := c.write(data); err != nil {
		forget()
		return nil, err
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		var env struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(r.data, &env)
		if env.Type == protocol.TypeError {
			var perr protocol.Error
			if err := json.Unmarshal(r.data, &perr); err != nil {
				return r.data, fmt.Errorf("bad error message: %w", err)
			}
			return r.data, &perr
		}
		return r.data, nil
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	case <-c.ctx.Done():
		forget()
		return nil, ErrClosed
	}
}

// withID marshals msg as a JSON object with "id" set to id.
func withID(msg any, id int64) ([]byte, error) {
	var data []byte
	switch m := msg.(type) {
	case []byte:
		data = m
	case json.RawMessage:
		data = m
	default:
		var err error
		if data, err = json.Marshal(msg); err != nil {
			return nil, fmt.Errorf("marshal request: %w", err)
		}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("request is not a JSON object: %s", truncate(data))
	}
	if _, has := obj["id"]; has {
		// Replace the caller's id; key order does not matter to the server.
		obj["id"] = json.RawMessage(fmt.Sprint(id))
		return json.Marshal(obj)
	}
	trimmed := bytes.TrimSpace(data)
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"id":%d`, id)
	if rest := bytes.TrimSpace(trimmed[1:]); len(rest) > 0 && rest[0] != '}' {
		b.WriteByte(',')
	}
	b.Write(trimmed[1:])
	return b.Bytes(), nil
}

// Send sends msg as it is, with no id: the server reports only its errors (on Errors).
func (c *Client) Send(msg any) error {
	data, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("send: marshal: %w", err)
	}
	return c.write(data)
}

// SendRaw sends b as one text frame, unchecked (for tests of bad input).
func (c *Client) SendRaw(b []byte) error { return c.write(b) }

func (c *Client) write(data []byte) error {
	c.mu.Lock()
	conn, closing := c.conn, c.closing
	c.mu.Unlock()
	if closing {
		return ErrClosed
	}
	if conn == nil {
		return ErrNoWebSocket
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := conn.WriteMessage(websocket.TextMessage, data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// readLoop reads the frames of one WebSocket until it fails.
func (c *Client) readLoop(conn *websocket.Conn, done chan struct{}) {
	defer c.wg.Done()
	defer close(done)
	var disconnected *protocol.Session
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			c.connLost(conn, err, disconnected)
			return
		}
		if c.opts.OnFrame != nil {
			c.opts.OnFrame(data)
		}
		if s := c.handleFrame(data); s != nil {
			disconnected = s
		}
	}
}

// handleFrame routes one server frame. It returns a DISCONNECTED session message.
func (c *Client) handleFrame(data []byte) *protocol.Session {
	var env protocol.Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		c.log.Warn("bad frame from server", "err", err, "frame", truncate(data))
		return nil
	}
	if env.Type == protocol.TypeReply && bytes.Contains(data, []byte(`"iceServers"`)) {
		// A join's reply: its ICE servers are taken before the next frame
		// (the subscribe offer) is handled, in the reader's order.
		var r protocol.Reply
		if err := json.Unmarshal(data, &r); err == nil && len(r.ICEServers) > 0 {
			c.mu.Lock()
			c.iceServers = r.ICEServers
			c.mu.Unlock()
		}
	}
	switch env.Type {
	case protocol.TypeReply, protocol.TypeAnswer, protocol.TypeError, protocol.TypeSession:
		if env.ID != nil && c.deliver(*env.ID, data) {
			return nil
		}
	}
	switch env.Type {
	case protocol.TypeEvent:
		var ev protocol.Event
		if err := json.Unmarshal(data, &ev); err != nil {
			c.log.Warn("bad event", "err", err, "frame", truncate(data))
			return nil
		}
		c.onEvent(ev)
	case protocol.TypeError:
		var perr protocol.Error
		if err := json.Unmarshal(data, &perr); err != nil {
			c.log.Warn("bad error message", "err", err, "frame", truncate(data))
			return nil
		}
		c.log.Debug("server error", "code", perr.Code, "reason", perr.Reason, "request", perr.Request)
		c.errs.push(&perr)
	case protocol.TypeSession:
		var s protocol.Session
		if err := json.Unmarshal(data, &s); err != nil {
			c.log.Warn("bad session message", "err", err)
			return nil
		}
		if s.Status == protocol.SessionDisconnected || s.Status == protocol.SessionFailed {
			c.log.Debug("session ended by server", "status", s.Status, "reason", s.Reason)
			return &s
		}
		c.log.Warn("unexpected session message", "status", s.Status)
	case protocol.TypeOffer:
		var o protocol.SDP
		if err := json.Unmarshal(data, &o); err != nil {
			c.log.Warn("bad offer", "err", err)
			return nil
		}
		c.sub.enqueue(subItem{offer: &o, at: time.Now()})
	case protocol.TypeCandidate:
		var cand protocol.Candidate
		if err := json.Unmarshal(data, &cand); err != nil {
			c.log.Warn("bad candidate", "err", err)
			return nil
		}
		c.onRemoteCandidate(cand)
	default:
		c.log.Warn("unexpected message", "type", env.Type, "frame", truncate(data))
	}
	return nil
}

// deliver hands a frame to the request waiting for id.
func (c *Client) deliver(id int64, data []byte) bool {
	c.mu.Lock()
	ch, ok := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ok {
		ch <- result{data: data}
	}
	return ok
}

func (c *Client) onEvent(ev protocol.Event) {
	switch ev.Event {
	case protocol.EventState:
		c.mu.Lock()
		c.stateSeq++
		c.lastState = ev
		c.mu.Unlock()
	case protocol.EventStreamStatus:
		c.mu.Lock()
		video := c.streamStatus[ev.StreamID].video
		if ev.Video != "" {
			video = ev.Video
		}
		c.streamStatus[ev.StreamID] = streamState{ev.Status, ev.Reason, video}
		p := c.pubByID[ev.StreamID]
		c.mu.Unlock()
		if p != nil {
			p.setStatus(ev.Status, ev.Reason)
		}
	case protocol.EventPublishLayers:
		c.mu.Lock()
		p := c.pubByID[ev.StreamID]
		c.mu.Unlock()
		if p != nil {
			p.setLayers(ev.Layers)
		}
	}
	c.events.push(ev)
}

// connLost ends the requests waiting on conn and, unless the WebSocket was
// dropped on purpose, the session.
func (c *Client) connLost(conn *websocket.Conn, err error, disconnected *protocol.Session) {
	c.mu.Lock()
	if c.conn == conn {
		c.conn = nil
	}
	pending := c.pending
	c.pending = map[int64]chan result{}
	endSession := !c.killed && !c.closing && !c.ended
	if endSession {
		c.ended = true
		if disconnected != nil {
			c.endErr = &SessionError{Status: disconnected.Status, Reason: disconnected.Reason, Code: disconnected.Code}
		} else {
			c.endErr = fmt.Errorf("%w: %v", ErrConnectionLost, err)
		}
		close(c.endedCh)
	}
	c.mu.Unlock()

	lost := fmt.Errorf("%w: %v", ErrConnectionLost, err)
	if disconnected != nil {
		lost = fmt.Errorf("%w: %w", ErrConnectionLost, &SessionError{Status: disconnected.Status, Reason: disconnected.Reason,
			Code: disconnected.Code})
	}
	for _, ch := range pending {
		ch <- result{err: lost}
	}
	_ = conn.Close()
	if endSession {
		c.log.Debug("session over", "err", err)
		if disconnected != nil {
			c.events.push(protocol.Event{
				Type: protocol.TypeSession, Event: disconnected.Status,
				Status: disconnected.Status, Reason: disconnected.Reason,
			})
		}
		c.events.finish()
		c.errs.finish()
	}
}

// CloseWebSocketOnly drops the WebSocket abruptly (no close frame), as a network
// change does, and keeps the peer connections, Events and everything else.
// Requests still waiting fail with ErrConnectionLost. Reconnect resumes.
func (c *Client) CloseWebSocketOnly() {
	c.mu.Lock()
	conn, done := c.conn, c.connDone
	if conn != nil {
		c.killed = true
	}
	c.mu.Unlock()
	if conn == nil {
		return
	}
	_ = conn.NetConn().Close()
	<-done
}

// ReconnectWebSocket opens a new WebSocket (dropping the current one, if any, as
// CloseWebSocketOnly does) and resumes the session with the resume token. The
// peer connections are left as they are; see Reconnect.
func (c *Client) ReconnectWebSocket(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closing:
		c.mu.Unlock()
		return ErrClosed
	case c.ended:
		c.mu.Unlock()
		return fmt.Errorf("reconnect: %w", ErrSessionEnded)
	}
	token := c.session.ResumeToken
	c.mu.Unlock()
	c.CloseWebSocketOnly()
	if err := c.connect(ctx, "", token); err != nil {
		return fmt.Errorf("reconnect: %w", err)
	}
	return nil
}

// Reconnect resumes the session on a new WebSocket (ReconnectWebSocket) and then
// restarts ICE on every peer connection the client has, with the fresh ICE
// servers of the resumed session: each publish connection
// is re-offered with an ICE restart and the subscribe connection gets restartIce,
// after which the server re-offers it. The others in the room see no LEFT or
// JOINED, and media flows again once ICE has reconnected.
func (c *Client) Reconnect(ctx context.Context) error {
	if err := c.ReconnectWebSocket(ctx); err != nil {
		return err
	}
	c.updateICEServers()
	for _, p := range c.Publications() {
		if err := p.RestartICE(ctx); err != nil {
			return fmt.Errorf("reconnect: %w", err)
		}
	}
	if c.sub.peerConnection() != nil {
		if err := c.RestartICE(ctx); err != nil {
			return fmt.Errorf("reconnect: %w", err)
		}
	}
	return nil
}

// updateICEServers gives the current ICE servers to every peer connection,
// for its next gathering (an ICE restart).
func (c *Client) updateICEServers() {
	if c.opts.ICE.Servers != nil {
		return
	}
	var servers []webrtc.ICEServer
	for _, s := range c.ICEServers() {
		servers = append(servers, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	pcs := []*webrtc.PeerConnection{c.sub.peerConnection()}
	for _, p := range c.Publications() {
		pcs = append(pcs, p.pc)
	}
	for _, pc := range pcs {
		if pc == nil {
			continue
		}
		cfg := pc.GetConfiguration()
		cfg.ICEServers = servers
		if err := pc.SetConfiguration(cfg); err != nil {
			c.log.Debug("update ICE servers", "err", err)
		}
	}
}

// JoinOptions are the fields of a join request.
type JoinOptions struct {
	// Room is the room name.
	Room string
	// Name defaults to the connect username.
	Name string
	// Subscribe false receives no media (nil: the server's default, true).
	Subscribe *bool
	// Codecs are the MIME types this client can decode ("audio/opus", "video/VP8"…),
	// each maybe with fmtp parameters ("video/H264;profile-level-id=42e01f").
	// The subscribe connection then accepts only those codecs. Empty: all.
	Codecs []string
	// Undeclared leaves Codecs out of the join request: the subscribe
	// connection still accepts only them, and the server learns what the
	// client decodes from its answers alone.
	Undeclared bool
	// Record asks the server to record the room.
	Record bool
	// Password is the room's password, when its preset has one.
	Password string
}

// Join joins a room and returns the STATE event the server sent before its reply
// (the STATE is also delivered on Events). Joining while the client has media
// (a join to another room, or again) first closes its publications and its
// subscribe connection: the server starts the participant's media over.
func (c *Client) Join(ctx context.Context, o JoinOptions) (protocol.Event, error) {
	c.teardownMedia()
	c.mu.Lock()
	seq := c.stateSeq
	c.joinCodes = append([]string(nil), o.Codecs...)
	c.mu.Unlock()
	declared := o.Codecs
	if o.Undeclared {
		declared = nil
	}
	_, err := c.Request(ctx, &protocol.Join{
		Type: protocol.TypeJoin, Room: o.Room, Name: o.Name,
		Subscribe: o.Subscribe, Codecs: declared, Record: o.Record, Password: o.Password,
	})
	if err != nil {
		return protocol.Event{}, fmt.Errorf("join %q: %w", o.Room, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stateSeq == seq {
		return protocol.Event{}, fmt.Errorf("join %q: the reply came without a STATE event", o.Room)
	}
	return c.lastState, nil
}

// Moderate sends a moderation request (mute, unmute, remove, lock, unlock,
// end, start_recording, stop_recording: docs/protocol.md) and waits for its reply.
func (c *Client) Moderate(ctx context.Context, m protocol.Moderate) error {
	m.Type = protocol.TypeModerate
	if _, err := c.Request(ctx, &m); err != nil {
		return fmt.Errorf("moderate %s: %w", m.Action, err)
	}
	return nil
}

// SetPresence sends the client's presence (a raised hand, its own microphone or
// camera turned off; nil fields unchanged) and waits for its reply.
func (c *Client) SetPresence(ctx context.Context, m protocol.Presence) error {
	m.Type = protocol.TypePresence
	if _, err := c.Request(ctx, &m); err != nil {
		return fmt.Errorf("presence: %w", err)
	}
	return nil
}

// Leave leaves the room; the session stays connected. The client's publications
// and its subscribe connection are closed (received tracks keep their records).
func (c *Client) Leave(ctx context.Context) error {
	if _, err := c.Request(ctx, &protocol.Leave{Type: protocol.TypeLeave}); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	c.teardownMedia()
	return nil
}

// SendMessage sends chat text to the room, or to one participant when to is not
// empty, and returns the server's timestamp (Unix milliseconds).
func (c *Client) SendMessage(ctx context.Context, to, text string) (int64, error) {
	raw, err := c.Request(ctx, &protocol.Message{Type: protocol.TypeMessage, To: to, Text: text})
	if err != nil {
		return 0, fmt.Errorf("message: %w", err)
	}
	var r protocol.Reply
	if err := json.Unmarshal(raw, &r); err != nil {
		return 0, fmt.Errorf("message: bad reply: %w", err)
	}
	return r.TS, nil
}

// RestartICE asks the server to restart ICE on the subscribe connection
// (restartIce); the server then sends a new offer, which the client answers.
func (c *Client) RestartICE(ctx context.Context) error {
	if _, err := c.Request(ctx, &protocol.RestartICE{Type: protocol.TypeRestartICE}); err != nil {
		return fmt.Errorf("restart ICE: %w", err)
	}
	return nil
}

// StreamStatus returns the last STREAM_STATUS the client got for a stream id (its
// own streams' PUBLISHING…, the others' PLAYING…), or empty strings.
func (c *Client) StreamStatus(streamID string) (status, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.streamStatus[streamID]
	return s.status, s.reason
}

// VideoPaused reports whether the server paused the video of a remote
// stream for this client (its link cannot carry it), and why.
func (c *Client) VideoPaused(streamID string) (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.streamStatus[streamID]
	return s.video == protocol.VideoPaused, s.reason
}

// SetTiles tells the server how this client shows remote streams' video:
// each tile's size in device pixels, and whether it is visible (tiles).
func (c *Client) SetTiles(ctx context.Context, tiles []protocol.Tile) error {
	if _, err := c.Request(ctx, &protocol.Tiles{Type: protocol.TypeTiles, Tiles: tiles}); err != nil {
		return fmt.Errorf("tiles: %w", err)
	}
	return nil
}

// Publications returns the client's live publications.
func (c *Client) Publications() []*Publication {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Publication, 0, len(c.pubs))
	for p := range c.pubs {
		if p.ID() != "" {
			out = append(out, p)
		}
	}
	return out
}

// teardownMedia closes every publication and the subscribe connection.
func (c *Client) teardownMedia() {
	c.mu.Lock()
	pubs := make([]*Publication, 0, len(c.pubs))
	for p := range c.pubs {
		pubs = append(pubs, p)
	}
	c.mu.Unlock()
	for _, p := range pubs {
		p.close()
	}
	c.sub.reset()
}

// goTracked starts f as a goroutine that Close waits for, unless the client is closing.
func (c *Client) goTracked(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// Close closes the peer connections and the WebSocket (with a close frame) and
// waits for every goroutine of the client. It is idempotent and always returns nil.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closing = true
		conn := c.conn
		pubs := make([]*Publication, 0, len(c.pubs))
		for p := range c.pubs {
			pubs = append(pubs, p)
		}
		if !c.ended {
			c.ended = true
			c.endErr = ErrClosed
			close(c.endedCh)
		}
		if c.paused {
			c.paused = false
			close(c.pauseCh)
		}
		c.mu.Unlock()

		c.cancel()
		for _, p := range pubs {
			p.close()
		}
		c.sub.close()
		if conn != nil {
			c.writeMu.Lock()
			_ = conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			c.writeMu.Unlock()
			_ = conn.Close()
		}
		c.events.abort()
		c.errs.abort()
		c.wg.Wait()
	})
	return nil
}

// rewriteLocalSDP applies Options.RewriteLocalSDP.
func (c *Client) rewriteLocalSDP(sdp string) string {
	if c.opts.RewriteLocalSDP != nil {
		return c.opts.RewriteLocalSDP(sdp)
	}
	return sdp
}

func truncate(b []byte) string {
	const max = 300
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}
