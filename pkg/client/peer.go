package client

import (
	"fmt"
	"strings"

	"github.com/parley/parley/pkg/pionlog"
	"github.com/parley/parley/pkg/protocol"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
)

// codecTable lists the codecs a Client registers, with browser-like payload types
// (the same as pion's defaults). Each video codec is followed by its RTX codec.
func codecTable() []webrtc.RTPCodecParameters {
	// Like a browser: NACK (retransmissions), PLI and FIR (keyframes), TWCC.
	fb := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"},
		{Type: "nack", Parameter: "pli"}, {Type: "transport-cc"}}
	video := func(pt webrtc.PayloadType, mime, fmtp string) []webrtc.RTPCodecParameters {
		return []webrtc.RTPCodecParameters{
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: fb}, PayloadType: pt},
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", pt)}, PayloadType: pt + 1},
		}
	}
	h264 := func(profile string) string {
		return "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + profile
	}
	out := []webrtc.RTPCodecParameters{{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType:        111,
	}}
	out = append(out,
		webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
		webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMA, ClockRate: 8000}, PayloadType: 8})
	out = append(out, video(96, webrtc.MimeTypeVP8, "")...)
	out = append(out, video(98, webrtc.MimeTypeVP9, "profile-id=0")...)
	out = append(out, video(100, webrtc.MimeTypeVP9, "profile-id=2")...)
	out = append(out, video(102, webrtc.MimeTypeH264, h264("42001f"))...)
	out = append(out, video(106, webrtc.MimeTypeH264, h264("42e01f"))...)
	out = append(out, video(112, webrtc.MimeTypeH264, h264("64001f"))...)
	out = append(out, video(45, webrtc.MimeTypeAV1, "")...)
	return out
}

// filterCodecs keeps the codecs whose MIME type is in mimes (and their RTX).
// An entry may name fmtp parameters after the MIME type
// ("video/H264;profile-level-id=42e01f"): then only the codecs of that MIME
// type whose fmtp line has those parameters.
func filterCodecs(all []webrtc.RTPCodecParameters, mimes []string) []webrtc.RTPCodecParameters {
	if len(mimes) == 0 {
		return all
	}
	keepPT := map[webrtc.PayloadType]bool{}
	var out []webrtc.RTPCodecParameters
	for _, c := range all {
		if c.MimeType == webrtc.MimeTypeRTX {
			continue
		}
		for _, m := range mimes {
			if codecEntryMatches(m, c) {
				keepPT[c.PayloadType] = true
				out = append(out, c)
				break
			}
		}
	}
	for _, c := range all {
		if c.MimeType == webrtc.MimeTypeRTX {
			var apt int
			if _, err := fmt.Sscanf(c.SDPFmtpLine, "apt=%d", &apt); err == nil && keepPT[webrtc.PayloadType(apt)] {
				out = append(out, c)
			}
		}
	}
	return out
}

// codecPreferences returns the table entries that match a source's codec
// (MIME type and, when the source has one, fmtp line), with their RTX.
func codecPreferences(c webrtc.RTPCodecCapability) ([]webrtc.RTPCodecParameters, error) {
	all := codecTable()
	var match []webrtc.RTPCodecParameters
	for _, p := range all {
		if strings.EqualFold(p.MimeType, c.MimeType) && (c.SDPFmtpLine == "" || p.SDPFmtpLine == c.SDPFmtpLine) {
			match = append(match, p)
			break
		}
	}
	if len(match) == 0 {
		for _, p := range all {
			if strings.EqualFold(p.MimeType, c.MimeType) {
				match = append(match, p)
				break
			}
		}
	}
	if len(match) == 0 {
		return nil, fmt.Errorf("codec %s is not supported", c.MimeType)
	}
	apt := fmt.Sprintf("apt=%d", match[0].PayloadType)
	for _, p := range all {
		if p.MimeType == webrtc.MimeTypeRTX && p.SDPFmtpLine == apt {
			match = append(match, p)
		}
	}
	return match, nil
}

// newPeerConnection builds a peer connection with the client's ICE settings:
// for a publish connection (subscribe false) every codec and a transport-wide
// sequence number on outgoing packets; for the subscribe connection the join's
// codecs and, with LightReceiver, no NACK generator. With arrivals, its UDP
// sockets note when RTP packets arrive there.
func (c *Client) newPeerConnection(subscribe bool, arrivals *arrivalLog) (*webrtc.PeerConnection, error) {
	me := &webrtc.MediaEngine{}
	codecs := codecTable()
	if subscribe {
		c.mu.Lock()
		codecs = filterCodecs(codecs, c.joinCodes)
		c.mu.Unlock()
	}
	light := subscribe && c.opts.LightReceiver
	for _, codec := range codecs {
		if light && !c.opts.NegotiateNACK {
			// A light receiver asks for no retransmissions: no plain "nack".
			var fb []webrtc.RTCPFeedback
			for _, f := range codec.RTCPFeedback {
				if f.Type != "nack" || f.Parameter != "" {
					fb = append(fb, f)
				}
			}
			codec.RTCPFeedback = fb
		}
		typ := webrtc.RTPCodecTypeVideo
		if strings.HasPrefix(strings.ToLower(codec.MimeType), "audio/") {
			typ = webrtc.RTPCodecTypeAudio
		}
		if err := me.RegisterCodec(codec, typ); err != nil {
			return nil, fmt.Errorf("register codec %s: %w", codec.MimeType, err)
		}
	}

	ir := &interceptor.Registry{}
	if light {
		// Load testing: a receiver that never asks for retransmissions. Only PLI
		// feedback is negotiated (no "nack"), so the server sends no
		// retransmissions either; RTCP reports and TWCC feedback remain.
		me.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack", Parameter: "pli"}, webrtc.RTPCodecTypeVideo)
		if c.opts.NegotiateNACK {
			me.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack"}, webrtc.RTPCodecTypeVideo)
		}
		responder, err := nack.NewResponderInterceptor()
		if err != nil {
			return nil, fmt.Errorf("nack responder: %w", err)
		}
		ir.Add(responder)
		// No report interceptors: the subscriber sends the receiver
		// reports itself (lightReports), without a per-packet hook.
		if err := webrtc.ConfigureTWCCSender(me, ir); err != nil {
			return nil, fmt.Errorf("twcc: %w", err)
		}
	} else if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	if !subscribe {
		// Simulcast layers name themselves with their RTP stream id.
		if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil {
			return nil, fmt.Errorf("simulcast header extensions: %w", err)
		}
		// Audio levels (RFC 6464) of a LevelSource, as browsers send them.
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("audio level header extension: %w", err)
		}
		// Number outgoing packets so the server can send TWCC feedback.
		hdr, err := twcc.NewHeaderExtensionInterceptor()
		if err != nil {
			return nil, fmt.Errorf("twcc header extension: %w", err)
		}
		ir.Add(hdr)
	}

	se := webrtc.SettingEngine{LoggerFactory: pionlog.Factory(c.log)}
	ico := c.opts.ICE
	se.SetIncludeLoopbackCandidate(!ico.ExcludeLoopback)
	networks := ico.NetworkTypes
	if ico.TCPOnly {
		networks = []webrtc.NetworkType{webrtc.NetworkTypeTCP4}
	}
	if len(networks) == 0 {
		networks = []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	}
	se.SetNetworkTypes(networks)
	if ico.IPFilter != nil {
		se.SetIPFilter(ico.IPFilter)
	}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if arrivals != nil {
		n, err := stdnet.NewNet()
		if err != nil {
			return nil, fmt.Errorf("network: %w", err)
		}
		se.SetNet(&arrivalNet{Net: n, log: arrivals})
	}
	if subscribe && c.opts.SubscribeDTLSServer {
		if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer); err != nil {
			return nil, fmt.Errorf("dtls role: %w", err)
		}
	}
	if ico.DisconnectedTimeout != 0 || ico.FailedTimeout != 0 || ico.KeepAliveInterval != 0 {
		dis, fail, keep := ico.DisconnectedTimeout, ico.FailedTimeout, ico.KeepAliveInterval
		if dis == 0 {
			dis = 5e9
		}
		if fail == 0 {
			fail = 25e9
		}
		if keep == 0 {
			keep = 2e9
		}
		se.SetICETimeouts(dis, fail, keep)
	}

	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	cfg := webrtc.Configuration{ICETransportPolicy: ico.TransportPolicy}
	if ico.Servers != nil {
		cfg.ICEServers = ico.Servers
	} else {
		for _, s := range c.ICEServers() {
			cfg.ICEServers = append(cfg.ICEServers, webrtc.ICEServer{
				URLs: s.URLs, Username: s.Username, Credential: s.Credential,
			})
		}
	}
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	return pc, nil
}

// rewriteCandidate applies ICEOptions.RewriteRemoteCandidate.
func (c *Client) rewriteCandidate(cand string) string {
	if f := c.opts.ICE.RewriteRemoteCandidate; f != nil && cand != "" {
		return f(cand)
	}
	return cand
}

// rewriteSDP applies ICEOptions.RewriteRemoteCandidate to the a=candidate lines of sdp.
func (c *Client) rewriteSDP(sdp string) string {
	if c.opts.ICE.RewriteRemoteCandidate == nil {
		return sdp
	}
	lines := strings.SplitAfter(sdp, "\n")
	var b strings.Builder
	for _, line := range lines {
		body := strings.TrimRight(line, "\r\n")
		if !strings.HasPrefix(body, "a=candidate:") {
			b.WriteString(line)
			continue
		}
		nl := line[len(body):]
		if rw := c.rewriteCandidate(strings.TrimPrefix(body, "a=")); rw != "" {
			b.WriteString("a=" + rw + nl)
		}
	}
	return b.String()
}

// remoteCandidate converts a server candidate for pion, rewritten; ok is false
// for an end-of-candidates marker or a dropped candidate.
func (c *Client) remoteCandidate(pc *protocol.ICECandidate) (webrtc.ICECandidateInit, bool) {
	if pc == nil || pc.Candidate == "" {
		return webrtc.ICECandidateInit{}, false
	}
	cand := c.rewriteCandidate(pc.Candidate)
	if cand == "" {
		return webrtc.ICECandidateInit{}, false
	}
	return webrtc.ICECandidateInit{
		Candidate: cand, SDPMid: pc.SDPMid, SDPMLineIndex: pc.SDPMLineIndex, UsernameFragment: pc.UsernameFragment,
	}, true
}

// localCandidate converts a pion candidate (nil: end of candidates) for the wire.
func localCandidate(cand *webrtc.ICECandidate) *protocol.ICECandidate {
	if cand == nil {
		return nil
	}
	init := cand.ToJSON()
	return &protocol.ICECandidate{
		Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex,
		UsernameFragment: init.UsernameFragment,
	}
}

// onRemoteCandidate routes a trickled server candidate to its peer connection.
func (c *Client) onRemoteCandidate(cand protocol.Candidate) {
	switch cand.Target {
	case protocol.TargetSubscribe:
		c.sub.enqueue(subItem{candidate: cand.Candidate, isCandidate: true})
	case protocol.TargetPublish:
		init, ok := c.remoteCandidate(cand.Candidate)
		if !ok {
			return
		}
		c.mu.Lock()
		p := c.pubByID[cand.Stream]
		if p == nil {
			// The answer naming this stream has not been processed yet.
			c.orphanCands[cand.Stream] = append(c.orphanCands[cand.Stream], init)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		p.addRemoteCandidate(init)
	default:
		c.log.Warn("candidate with unknown target", "target", cand.Target)
	}
}

// codecEntryMatches reports whether a join codec entry (a MIME type, maybe
// with fmtp parameters) names c.
func codecEntryMatches(entry string, c webrtc.RTPCodecParameters) bool {
	mime, params, _ := strings.Cut(entry, ";")
	if !strings.EqualFold(strings.TrimSpace(mime), c.MimeType) {
		return false
	}
	have := map[string]string{}
	for _, kv := range strings.Split(c.SDPFmtpLine, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			have[strings.ToLower(strings.TrimSpace(k))] = strings.ToLower(strings.TrimSpace(v))
		}
	}
	for _, kv := range strings.Split(params, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if have[strings.ToLower(strings.TrimSpace(k))] != strings.ToLower(strings.TrimSpace(v)) {
			return false
		}
	}
	return true
}
