package whip

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/access"
	"github.com/parley/parley/pkg/codec"
	"github.com/parley/parley/pkg/live"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/sfu"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// startWHEP plays a room's stream to a player's offer: a peer connection of
// its own on the engine's ports, fed by a tap on the stream's forwarders
// (the subscribers' send path is left alone).
func (s *Server) startWHEP(ctx context.Context, res *resource, r *http.Request, offer string) (string, string, error) {
	adm, err := s.cfg.Access.Admit(access.JoinRequest{Room: res.room, Name: "WHEP player", Token: res.token, Remote: r.RemoteAddr})
	if err != nil {
		return "", "", err
	}
	if !adm.Grants.Subscribe {
		return "", "", access.Forbidden("your grants do not include subscribe: you may not watch room %q", res.room)
	}
	rm, router, ok := s.cfg.Live.Router(res.room)
	if !ok {
		return "", "", &protocol.Error{Code: "NOT_LIVE", Reason: fmt.Sprintf("room %q is not live now", res.room)}
	}
	if rm.Locked() && !adm.Grants.Moderate {
		return "", "", &protocol.Error{Code: protocol.CodeRoomLocked, Reason: fmt.Sprintf("room %q is locked", res.room)}
	}
	streams := router.PublishedStreams()
	var st sfu.PublishedStream
	if want := r.URL.Query().Get("stream"); want != "" {
		for _, c := range streams {
			if c.ID == want && c.Arrived >= len(c.Tracks) {
				st, ok = c, true
			}
		}
		if !ok {
			return "", "", &protocol.Error{Code: protocol.CodeUnknownStream, Reason: fmt.Sprintf("room %q has no stream %q", res.room, want)}
		}
	} else if st, ok = live.PickStream(streams); !ok {
		return "", "", &protocol.Error{Code: "NOT_LIVE", Reason: fmt.Sprintf("nobody publishes in room %q yet", res.room)}
	}

	pc, err := s.cfg.Engine.NewPlayerConnection()
	if err != nil {
		return "", "", err
	}
	fail := func(err error) (string, string, error) {
		_ = pc.Close()
		return "", "", err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: s.cfg.Engine.FilterSDP(offer)}); err != nil {
		return fail(&protocol.Error{Code: protocol.CodeInvalidSDP, Reason: "the offer was refused: " + err.Error()})
	}
	p := &player{log: s.log, in: make(chan playerPacket, 1024), quit: make(chan struct{}), done: make(chan struct{})}
	var senders []*webrtc.RTPSender
	for i, t := range st.Tracks {
		kind := "audio"
		if strings.HasPrefix(strings.ToLower(t.MimeType), "video/") {
			kind = "video"
		}
		lt, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: t.MimeType, ClockRate: t.ClockRate,
			Channels: t.Channels}, fmt.Sprintf("%s-%d", kind, i), st.ID)
		if err != nil {
			return fail(err)
		}
		sender, err := pc.AddTrack(lt)
		if err != nil {
			return fail(&protocol.Error{Code: protocol.CodeUnsupportedCodec, Reason: fmt.Sprintf("the player cannot take %s: %v", t.MimeType, err)})
		}
		senders = append(senders, sender)
		p.tracks = append(p.tracks, &playerTrack{lt: lt, mime: t.MimeType, video: kind == "video", gated: kind == "video"})
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(&protocol.Error{Code: protocol.CodeUnsupportedCodec, Reason: "cannot answer the offer: " + err.Error()})
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		return fail(err)
	}
	answer, err := sfu.GatheredLocal(pc, gatherTimeout)
	if err != nil {
		return fail(err)
	}
	go p.run()
	tap, err := router.TapStream(st.ID, p)
	if err != nil {
		_ = p.Close()
		return fail(err)
	}
	tap.RequestKeyframe()
	var wg sync.WaitGroup
	for _, sender := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			for {
				n, _, err := sender.Read(buf)
				if err != nil {
					return
				}
				pkts, err := rtcp.Unmarshal(buf[:n])
				if err != nil {
					continue
				}
				for _, pkt := range pkts {
					switch pkt.(type) {
					case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
						tap.RequestKeyframe()
					}
				}
			}
		}()
	}
	connected := make(chan struct{})
	var connOnce sync.Once
	pc.OnConnectionStateChange(func(cs webrtc.PeerConnectionState) {
		switch cs {
		case webrtc.PeerConnectionStateConnected:
			connOnce.Do(func() {
				// The tracks are bound now: what was written before went
				// nowhere, so the video starts at a keyframe asked for now.
				p.live.Store(true)
				tap.RequestKeyframe()
				close(connected)
			})
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			go s.remove(res)
		}
	})
	res.stop = func() {
		tap.Close()
		_ = p.Close()
		_ = pc.Close()
		wg.Wait()
	}
	res.trickle = pc.AddICECandidate
	res.restart = func(ctx context.Context, ufrag, pwd string) (string, error) {
		rd := pc.RemoteDescription()
		if rd == nil {
			return "", fmt.Errorf("no offer")
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer,
			SDP: sfu.WithICECredentials(rd.SDP, ufrag, pwd)}); err != nil {
			return "", &protocol.Error{Code: protocol.CodeInvalidSDP, Reason: "the restart was refused: " + err.Error()}
		}
		ans, err := pc.CreateAnswer(nil)
		if err != nil {
			return "", err
		}
		if err := pc.SetLocalDescription(ans); err != nil {
			return "", err
		}
		return sfu.GatheredLocal(pc, gatherTimeout)
	}
	// The stream's end ends the playback; so does media that never connects.
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		deadline := time.After(connectTimeout)
		for {
			select {
			case <-res.done:
				return
			case <-connected:
				connected = nil
				deadline = nil
			case <-deadline:
				s.log.Info("whep session never connected", "room", res.room, "resource", res.id)
				s.remove(res)
				return
			case <-t.C:
				if !tap.Refresh() {
					s.log.Info("whep session: the stream ended", "room", res.room, "resource", res.id)
					s.remove(res)
					return
				}
			}
		}
	}()
	identity := "anonymous"
	if res.token != nil {
		identity = res.token.Identity
	}
	return answer, identity, nil
}

// player writes a tapped stream to a WHEP player's tracks, on a goroutine
// of its own (the forwarder's reader only queues), video from a keyframe.
type player struct {
	log    interface{ Debug(string, ...any) }
	tracks []*playerTrack
	in     chan playerPacket
	quit   chan struct{}
	done   chan struct{}
	once   sync.Once
	mu     sync.RWMutex
	ended  bool
	live   atomic.Bool // the connection is up (its tracks bound)
}

type playerTrack struct {
	lt    *webrtc.TrackLocalStaticRTP
	mime  string
	video bool
	gated bool
}

type playerPacket struct {
	track int
	pkt   *rtp.Packet
}

// WriteRTP implements sfu.StreamRecorder.
func (p *player) WriteRTP(track int, pkt *rtp.Packet, _ time.Time) {
	if track < 0 || track >= len(p.tracks) {
		return
	}
	cp := &rtp.Packet{Header: pkt.Header, Payload: append([]byte(nil), pkt.Payload...)}
	cp.Header.Extension, cp.Header.Extensions = false, nil
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.ended {
		return
	}
	select {
	case p.in <- playerPacket{track: track, pkt: cp}:
	default: // the player's NACKs recover it
	}
}

// SenderReport implements sfu.StreamRecorder (pion's interceptor writes the player's).
func (p *player) SenderReport(int, uint32, time.Time, uint32, time.Time) {}

// Close implements sfu.StreamRecorder.
func (p *player) Close() error {
	p.once.Do(func() {
		p.mu.Lock()
		p.ended = true
		p.mu.Unlock()
		close(p.quit)
	})
	<-p.done
	return nil
}

func (p *player) run() {
	defer close(p.done)
	for {
		select {
		case <-p.quit:
			return
		case in := <-p.in:
			t := p.tracks[in.track]
			if !p.live.Load() {
				continue // written to a track not bound yet, it would be lost
			}
			if t.gated {
				if !codec.IsKeyframe(t.mime, in.pkt.Payload) {
					continue
				}
				t.gated = false
			}
			if err := t.lt.WriteRTP(in.pkt); err != nil {
				p.log.Debug("whep write", "err", err)
			}
		}
	}
}
