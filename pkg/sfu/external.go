package sfu

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/parley/parley/pkg/protocol"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/webrtc/v4"
)

// What WHIP and WHEP (pkg/whip) need of the media plane: a publish
// connection's answer with its candidates in it (no trickle from the
// server), an ICE restart that a client asks for with new credentials, and
// peer connections of their own for players on the engine's ports.

// waitGathered waits until pc has gathered its candidates (host candidates
// on the engine's muxes: at once) or ctx ends, and returns its local
// description.
func waitGathered(ctx context.Context, pc *webrtc.PeerConnection) (string, error) {
	select {
	case <-webrtc.GatheringCompletePromise(pc):
	case <-ctx.Done():
		return "", fmt.Errorf("gather candidates: %w", ctx.Err())
	}
	ld := pc.LocalDescription()
	if ld == nil {
		return "", fmt.Errorf("no local description")
	}
	return ld.SDP, nil
}

// GatheredAnswer returns the answer of the publish connection of streamID
// with the server's candidates in it, once they are gathered.
func (p *Peer) GatheredAnswer(ctx context.Context, streamID string) (string, error) {
	pub, err := p.publication(streamID)
	if err != nil {
		return "", err
	}
	return waitGathered(ctx, pub.pc)
}

var (
	iceUfragRe = regexp.MustCompile(`(?m)^a=ice-ufrag:.*\r?\n`)
	icePwdRe   = regexp.MustCompile(`(?m)^a=ice-pwd:.*\r?\n`)
	candRe     = regexp.MustCompile(`(?m)^a=(candidate:.*|end-of-candidates)\r?\n`)
)

// WithICECredentials returns sdp with its ICE credentials replaced and its
// candidates dropped: the offer of a client's ICE restart made of its
// previous one (WHIP and WHEP restart ICE by a PATCH with new credentials).
func WithICECredentials(sdp, ufrag, pwd string) string {
	sdp = iceUfragRe.ReplaceAllString(sdp, "a=ice-ufrag:"+ufrag+"\r\n")
	sdp = icePwdRe.ReplaceAllString(sdp, "a=ice-pwd:"+pwd+"\r\n")
	return candRe.ReplaceAllString(sdp, "")
}

// RestartPublishICE restarts ICE on the publish connection of streamID with
// the client's new credentials and returns the new answer, gathered.
func (p *Peer) RestartPublishICE(ctx context.Context, streamID, ufrag, pwd string) (string, error) {
	pub, err := p.publication(streamID)
	if err != nil {
		return "", err
	}
	rd := pub.pc.RemoteDescription()
	if rd == nil {
		return "", &protocol.Error{Code: protocol.CodeInvalidSDP, Reason: "the connection has no offer yet"}
	}
	if _, err := pub.reoffer(WithICECredentials(rd.SDP, ufrag, pwd)); err != nil {
		return "", err
	}
	return waitGathered(ctx, pub.pc)
}

// FilterSDP drops the candidates of sdp that the server does not try
// (candidates.go).
func (e *Engine) FilterSDP(sdp string) string { return e.filterSDP(sdp) }

// AcceptCandidate reports whether the server tries a client's candidate.
func (e *Engine) AcceptCandidate(c webrtc.ICECandidateInit) bool { return e.acceptCandidateInit(c) }

// NewPlayerConnection returns a peer connection on the engine's media ports
// for a player that is not a participant (WHEP): it sends the codecs the
// SFU forwards, answers NACKs and writes sender reports through pion's
// interceptors (a few players, not the room's subscribers).
func (e *Engine) NewPlayerConnection() (*webrtc.PeerConnection, error) {
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m, false); err != nil {
		return nil, fmt.Errorf("register codecs: %w", err)
	}
	reg := &interceptor.Registry{}
	responder, err := nack.NewResponderInterceptor()
	if err != nil {
		return nil, fmt.Errorf("nack responder: %w", err)
	}
	reg.Add(responder)
	sr, err := report.NewSenderInterceptor()
	if err != nil {
		return nil, fmt.Errorf("sender reports: %w", err)
	}
	reg.Add(sr)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(e.sub.settings))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("new player connection: %w", err)
	}
	return pc, nil
}

// GatheredLocal waits (up to timeout) until pc gathered its candidates and
// returns its local description.
func GatheredLocal(pc *webrtc.PeerConnection, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return waitGathered(ctx, pc)
}
