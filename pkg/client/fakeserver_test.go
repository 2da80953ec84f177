package client

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/parley/parley/pkg/codec"
	"github.com/parley/parley/pkg/pionlog"
	"github.com/parley/parley/pkg/protocol"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// fakeServer speaks enough of the protocol to test the client without the real
// server: connect, join, message, leave, publish/unpublish/re-offer and a
// subscribe connection that echoes every published track back to its publisher
// (an "SFU" of one). Test-only message types: "flood" (count: send that many
// MESSAGE events), "bye" (send session DISCONNECTED and close), "hang" (never answered).
type fakeServer struct {
	t   *testing.T
	srv *httptest.Server
	wg  sync.WaitGroup

	mu       sync.Mutex
	sessions int
	connects []protocol.Connect
	parts    map[string]*fakeSession // by resume token

	tcpMux ice.TCPMux // ICE-TCP only, when set

	rrMu sync.Mutex
	rrs  map[uint32][]rtcp.ReceptionReport // report blocks received, by media SSRC
}

// noteReports keeps the receiver report blocks of RTCP from a client.
func (fs *fakeServer) noteReports(pkts []rtcp.Packet) {
	fs.rrMu.Lock()
	defer fs.rrMu.Unlock()
	if fs.rrs == nil {
		fs.rrs = map[uint32][]rtcp.ReceptionReport{}
	}
	for _, p := range pkts {
		if rr, ok := p.(*rtcp.ReceiverReport); ok {
			for _, b := range rr.Reports {
				fs.rrs[b.SSRC] = append(fs.rrs[b.SSRC], b)
			}
		}
	}
}

// receiverReports returns the report blocks received for a media SSRC.
func (fs *fakeServer) receiverReports(ssrc uint32) []rtcp.ReceptionReport {
	fs.rrMu.Lock()
	defer fs.rrMu.Unlock()
	return append([]rtcp.ReceptionReport(nil), fs.rrs[ssrc]...)
}

// newFakeServerTCP is a fake server whose peer connections use only passive
// ICE-TCP on one port, returned.
func newFakeServerTCP(t *testing.T) (*fakeServer, int) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := webrtc.NewICETCPMux(pionlog.Factory(slog.New(slog.DiscardHandler)).NewLogger("tcpmux"), l, 64)
	t.Cleanup(func() { _ = mux.Close(); _ = l.Close() })
	fs := newFakeServer(t)
	fs.tcpMux = mux
	return fs, l.Addr().(*net.TCPAddr).Port
}

func newFakeServer(t *testing.T) *fakeServer {
	fs := &fakeServer{t: t, parts: map[string]*fakeSession{}}
	up := websocket.Upgrader{}
	fs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		fs.mu.Lock()
		fs.sessions++
		n := fs.sessions
		fs.mu.Unlock()
		fs.wg.Add(1)
		go func() {
			defer fs.wg.Done()
			fs.serve(conn, n)
		}()
	}))
	t.Cleanup(fs.close)
	return fs
}

func (fs *fakeServer) url() string { return "ws" + strings.TrimPrefix(fs.srv.URL, "http") + "/ws" }

func (fs *fakeServer) close() {
	fs.srv.CloseClientConnections()
	fs.srv.Close()
	fs.mu.Lock()
	parts := fs.parts
	fs.parts = map[string]*fakeSession{}
	fs.mu.Unlock()
	for _, p := range parts {
		p.shutdown()
	}
	fs.wg.Wait()
}

func (fs *fakeServer) connectMsgs() []protocol.Connect {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]protocol.Connect(nil), fs.connects...)
}

// serve reads one WebSocket. Its participant (fakeSession) outlives it, so that
// a connect with the participant's resume token re-attaches it.
func (fs *fakeServer) serve(conn *websocket.Conn, n int) {
	var s *fakeSession
	defer func() {
		_ = conn.Close()
		if s != nil {
			s.detach(conn)
		}
	}()
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		var env protocol.Envelope
		if err := json.Unmarshal(data, &env); err != nil {
			e := &protocol.Error{Type: protocol.TypeError, Code: protocol.CodeBadRequest, Reason: "not JSON"}
			if s != nil {
				s.send(e)
			} else {
				writeJSON(conn, e)
			}
			continue
		}
		if s == nil {
			if env.Type != protocol.TypeConnect {
				writeJSON(conn, &protocol.Error{Type: protocol.TypeError, ID: env.ID, Code: protocol.CodeNotConnected, Reason: "connect first"})
				continue
			}
			var m protocol.Connect
			_ = json.Unmarshal(data, &m)
			fs.mu.Lock()
			fs.connects = append(fs.connects, m)
			s = fs.parts[m.Resume]
			if s == nil && m.Resume == "" {
				s = &fakeSession{fs: fs, id: n, name: m.Username, token: fmt.Sprintf("rt-%d", n),
					pubs: map[string]*webrtc.PeerConnection{}, subStreams: map[string]string{}}
				fs.parts[s.token] = s
			}
			fs.mu.Unlock()
			if s == nil {
				writeJSON(conn, &protocol.Session{Type: protocol.TypeSession, ID: env.ID, Status: protocol.SessionFailed, Reason: "resume token unknown or expired"})
				continue
			}
			s.attach(conn)
			s.send(&protocol.Session{
				Type: protocol.TypeSession, ID: env.ID, Status: protocol.SessionEstablished,
				SessionID: fmt.Sprintf("ses-%d", n), ResumeToken: s.token, Resumed: m.Resume != "",
				ICEServers: []protocol.ICEServer{},
				Limits:     &protocol.Limits{MaxFrameBytes: 65536, MaxTextBytes: 4096, MaxStreams: 3},
			})
			continue
		}
		if !s.handle(env, data) {
			fs.mu.Lock()
			delete(fs.parts, s.token)
			fs.mu.Unlock()
			s.shutdown()
			return
		}
	}
}

// writeJSON writes on a WebSocket that no participant writes on yet.
func writeJSON(conn *websocket.Conn, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	_ = conn.WriteMessage(websocket.TextMessage, data)
}

type fakeSession struct {
	fs    *fakeServer
	id    int
	token string
	wg    sync.WaitGroup // forwarders

	subConnected atomic.Bool
	subUpAt      atomic.Int64 // UnixNano when the subscribe connection reported connected

	wmu         sync.Mutex
	conn        *websocket.Conn // nil while detached
	mu          sync.Mutex
	name        string
	nextStream  int
	pubs        map[string]*webrtc.PeerConnection
	subPC       *webrtc.PeerConnection
	subStreams  map[string]string
	negotiating bool
	dirty       bool
	restart     bool
	closed      bool
	// Like Parley's server: the subscribe offer goes out before the
	// candidates gathered for it (sigMu), and the client's candidates that
	// overtake its answer (it trickles as soon as it sets the answer) wait
	// for the answer (early), instead of landing on the ICE generation an
	// ICE restart is about to replace.
	sigMu          sync.Mutex
	awaitingAnswer bool
	early          []webrtc.ICECandidateInit
}

func (s *fakeSession) attach(conn *websocket.Conn) {
	s.wmu.Lock()
	old := s.conn
	s.conn = conn
	s.wmu.Unlock()
	if old != nil {
		_ = old.Close()
	}
}

func (s *fakeSession) detach(conn *websocket.Conn) {
	s.wmu.Lock()
	if s.conn == conn {
		s.conn = nil
	}
	s.wmu.Unlock()
}

func (s *fakeSession) send(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.conn != nil {
		_ = s.conn.WriteMessage(websocket.TextMessage, data)
	}
}

func (s *fakeSession) fail(id *int64, req, code, reason string) {
	s.send(&protocol.Error{Type: protocol.TypeError, ID: id, Request: req, Code: code, Reason: reason})
}

func (s *fakeSession) shutdown() {
	s.mu.Lock()
	s.closed = true
	pcs := []*webrtc.PeerConnection{s.subPC}
	for _, pc := range s.pubs {
		pcs = append(pcs, pc)
	}
	s.mu.Unlock()
	for _, pc := range pcs {
		if pc != nil {
			_ = pc.Close()
		}
	}
	s.wg.Wait()
}

func (s *fakeSession) handle(env protocol.Envelope, data []byte) bool {
	id := env.ID
	switch env.Type {
	case protocol.TypeConnect:
		s.fail(id, "connect", protocol.CodeAlreadyConnected, "already connected")
	case protocol.TypeJoin:
		var m protocol.Join
		_ = json.Unmarshal(data, &m)
		if m.Name == "taken" {
			s.fail(id, "join", protocol.CodeNameTaken, "name taken")
			return true
		}
		name := m.Name
		s.mu.Lock()
		if name == "" {
			name = s.name
		}
		s.name = name
		s.mu.Unlock()
		s.send(&protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventState, Room: m.Room, Self: name,
			Participants: []protocol.ParticipantInfo{{Name: "bob"}}})
		s.send(&protocol.Reply{Type: protocol.TypeReply, ID: id})
	case protocol.TypeMessage:
		var m protocol.Message
		_ = json.Unmarshal(data, &m)
		s.send(&protocol.Reply{Type: protocol.TypeReply, ID: id, TS: 1795835712345})
		s.send(&protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventMessage, From: "echo", To: m.To, Text: m.Text, TS: 1795835712345})
	case protocol.TypeLeave:
		s.send(&protocol.Reply{Type: protocol.TypeReply, ID: id})
	case "flood":
		var m struct{ Count int }
		_ = json.Unmarshal(data, &m)
		for i := range m.Count {
			s.send(&protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventMessage, Text: fmt.Sprint(i), TS: int64(i)})
		}
		s.send(&protocol.Reply{Type: protocol.TypeReply, ID: id})
	case "bye":
		s.send(&protocol.Session{Type: protocol.TypeSession, Status: protocol.SessionDisconnected, Reason: "server shutting down"})
		s.wmu.Lock()
		if s.conn != nil {
			_ = s.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""))
		}
		s.wmu.Unlock()
		return false
	case "hang":
	case protocol.TypePublish:
		var m protocol.Publish
		_ = json.Unmarshal(data, &m)
		s.publish(id, m)
	case protocol.TypeUnpublish:
		var m protocol.Unpublish
		_ = json.Unmarshal(data, &m)
		s.mu.Lock()
		pc := s.pubs[m.Stream]
		delete(s.pubs, m.Stream)
		s.mu.Unlock()
		if pc == nil {
			s.fail(id, "unpublish", protocol.CodeUnknownStream, "no such stream")
			return true
		}
		_ = pc.Close()
		s.send(&protocol.Reply{Type: protocol.TypeReply, ID: id})
		s.send(&protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventStreamStatus, StreamID: m.Stream, Status: protocol.StreamUnpublished})
	case protocol.TypeOffer: // publish re-offer
		var m protocol.SDP
		_ = json.Unmarshal(data, &m)
		s.mu.Lock()
		pc := s.pubs[m.Stream]
		s.mu.Unlock()
		if pc == nil {
			s.fail(id, "offer", protocol.CodeUnknownStream, "no such stream")
			return true
		}
		ans, err := answer(pc, m.SDP)
		if err != nil {
			s.fail(id, "offer", protocol.CodeInvalidSDP, err.Error())
			return true
		}
		s.send(&protocol.SDP{Type: protocol.TypeAnswer, ID: id, Stream: m.Stream, SDP: ans})
	case protocol.TypeAnswer: // subscribe answer
		var m protocol.SDP
		_ = json.Unmarshal(data, &m)
		s.mu.Lock()
		pc := s.subPC
		s.mu.Unlock()
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
			s.fail(id, "answer", protocol.CodeInvalidSDP, err.Error())
			return true
		}
		s.mu.Lock()
		early := s.early
		s.early, s.awaitingAnswer = nil, false
		s.mu.Unlock()
		for _, c := range early {
			_ = pc.AddICECandidate(c)
		}
		s.send(&protocol.Reply{Type: protocol.TypeReply, ID: id})
		s.mu.Lock()
		again := s.dirty
		s.dirty, s.negotiating = false, again
		s.mu.Unlock()
		if again {
			s.offer()
		}
	case protocol.TypeRestartICE:
		s.send(&protocol.Reply{Type: protocol.TypeReply, ID: id})
		s.mu.Lock()
		s.restart = true
		s.mu.Unlock()
		s.renegotiate()
	case protocol.TypeCandidate:
		var m protocol.Candidate
		_ = json.Unmarshal(data, &m)
		if m.Candidate == nil {
			return true
		}
		init := webrtc.ICECandidateInit{Candidate: m.Candidate.Candidate, SDPMid: m.Candidate.SDPMid, SDPMLineIndex: m.Candidate.SDPMLineIndex}
		s.mu.Lock()
		pc := s.subPC
		if m.Target == protocol.TargetPublish {
			pc = s.pubs[m.Stream]
		} else if s.awaitingAnswer {
			s.early = append(s.early, init)
			s.mu.Unlock()
			return true
		}
		s.mu.Unlock()
		if pc != nil {
			_ = pc.AddICECandidate(init)
		}
	default:
		s.fail(id, env.Type, protocol.CodeUnknownType, "unknown type "+env.Type)
	}
	return true
}

// newPC makes a peer connection on loopback: UDP, or ICE-TCP (passive, on the
// server's TCP mux) for a server made by newFakeServerTCP.
func (fs *fakeServer) newPC() (*webrtc.PeerConnection, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if fs.tcpMux != nil {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
		se.SetICETCPMux(fs.tcpMux)
	}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.LoggerFactory = pionlog.Factory(slog.New(slog.DiscardHandler))
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	return api.NewPeerConnection(webrtc.Configuration{})
}

func answer(pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", err
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		return "", err
	}
	return ans.SDP, nil
}

func (s *fakeSession) publish(id *int64, m protocol.Publish) {
	pc, err := s.fs.newPC()
	if err != nil {
		s.fail(id, "publish", protocol.CodeInternal, err.Error())
		return
	}
	s.mu.Lock()
	s.nextStream++
	stream := fmt.Sprintf("st-%d-%d", s.id, s.nextStream)
	s.pubs[stream] = pc
	name := s.name
	closed := s.closed
	s.mu.Unlock()
	if closed {
		_ = pc.Close()
		return
	}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		s.send(&protocol.Candidate{Type: protocol.TypeCandidate, Target: protocol.TargetPublish, Stream: stream, Candidate: localCandidate(c)})
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			s.send(&protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventStreamStatus, Name: name, StreamID: stream, Status: protocol.StreamPublishing})
		}
	})
	pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		local, err := webrtc.NewTrackLocalStaticRTP(remote.Codec().RTPCodecCapability, remote.Kind().String(), stream)
		if err != nil {
			return
		}
		if !s.addSubTrack(stream, name, local) {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			// Like an SFU: forward from the first keyframe the subscriber can get,
			// asking the publisher for one (PLI) once the subscriber is connected.
			mime := remote.Codec().MimeType
			started, asked := remote.Kind() == webrtc.RTPCodecTypeAudio, false
			for {
				pkt, _, err := remote.ReadRTP()
				if err != nil {
					return
				}
				if !started {
					// Pion reports "connected" just before it starts SRTP, and drops
					// (silently) what is written in between: a keyframe that arrives
					// at that very moment would be lost, so start a little later.
					if !s.subConnected.Load() || time.Since(time.Unix(0, s.subUpAt.Load())) < 20*time.Millisecond {
						continue
					}
					if !codec.IsKeyframe(mime, pkt.Payload) {
						if !asked {
							asked = true
							_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(remote.SSRC())}})
						}
						continue
					}
					started = true
				}
				_ = local.WriteRTP(pkt)
			}
		}()
	})
	ans, err := answer(pc, m.SDP)
	if err != nil {
		s.fail(id, "publish", protocol.CodeInvalidSDP, err.Error())
		return
	}
	s.send(&protocol.SDP{Type: protocol.TypeAnswer, ID: id, Stream: stream, SDP: ans})
}

// addSubTrack adds an echoed track to the subscribe connection and renegotiates.
func (s *fakeSession) addSubTrack(stream, name string, local *webrtc.TrackLocalStaticRTP) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	if s.subPC == nil {
		pc, err := s.fs.newPC()
		if err != nil {
			s.mu.Unlock()
			return false
		}
		pc.OnICECandidate(func(c *webrtc.ICECandidate) {
			if c != nil {
				// pion calls this inside SetLocalDescription (under sigMu)
				// only for pooled candidates (there is no pool here) and for
				// the nil that ends gathering: only real ones wait.
				s.sigMu.Lock()
				defer s.sigMu.Unlock()
			}
			s.send(&protocol.Candidate{Type: protocol.TypeCandidate, Target: protocol.TargetSubscribe, Candidate: localCandidate(c)})
		})
		pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
			if st == webrtc.PeerConnectionStateConnected {
				s.subUpAt.Store(time.Now().UnixNano())
				s.subConnected.Store(true)
			}
		})
		s.subPC = pc
	}
	pc := s.subPC
	s.subStreams[stream] = name
	s.mu.Unlock()
	sender, err := pc.AddTrack(local)
	if err != nil {
		return false
	}
	s.wg.Add(1)
	go func() { // RTCP must be read for NACK and PLI handling
		defer s.wg.Done()
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			s.fs.noteReports(pkts)
		}
	}()
	s.renegotiate()
	return true
}

// renegotiate offers now, or after the pending answer.
func (s *fakeSession) renegotiate() {
	s.mu.Lock()
	if s.negotiating {
		s.dirty = true
		s.mu.Unlock()
		return
	}
	s.negotiating = true
	s.mu.Unlock()
	s.offer()
}

func (s *fakeSession) offer() {
	s.mu.Lock()
	pc := s.subPC
	restart := s.restart
	s.restart = false
	streams := map[string]string{}
	for k, v := range s.subStreams {
		streams[k] = v
	}
	s.mu.Unlock()
	s.sigMu.Lock()
	defer s.sigMu.Unlock()
	offer, err := pc.CreateOffer(&webrtc.OfferOptions{ICERestart: restart})
	if err != nil {
		return
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		return
	}
	s.mu.Lock()
	s.awaitingAnswer = true
	s.mu.Unlock()
	s.send(&protocol.SDP{Type: protocol.TypeOffer, SDP: offer.SDP, Streams: streams})
}
