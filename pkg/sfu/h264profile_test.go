package sfu

import (
	"testing"

	"github.com/pion/webrtc/v4"
)

func h264(plid string) webrtc.RTPCodecCapability {
	return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + plid}
}

// Profiles are read from profile_idc and the constraint flags as browsers
// read them, and a stream goes only to a decoder whose profile must decode it.
func TestH264Profiles(t *testing.T) {
	for plid, want := range map[string]h264Profile{
		"42e01f": h264ConstrainedBaseline, "42c01f": h264ConstrainedBaseline, "4de01f": h264ConstrainedBaseline,
		"42001f": h264Baseline, "42801f": h264Baseline, "4d001f": h264Main, "4d401f": h264Main,
		"64001f": h264High, "640034": h264High, "640c1f": h264ConstrainedHigh, "f4001f": h264PredictiveHigh444,
		"6e001f": h264Unknown, "42e0": h264Unknown, "zz001f": h264Unknown, "42011f": h264Unknown,
	} {
		if got := parseH264Profile(plid); got != want {
			t.Errorf("%s: %v, want %v", plid, got, want)
		}
	}
	for _, tc := range []struct {
		dec, stream string
		want        bool
	}{
		{"42e01f", "42e01f", true},
		{"42e01f", "42e034", true}, // the level may differ
		{"42001f", "42e01f", true}, // a CB stream is Baseline
		{"4d001f", "42e01f", true},
		{"640034", "42e01f", true},
		{"640034", "4d001f", true},
		{"640034", "640c1f", true},
		{"42e01f", "64001f", false}, // the case of the issue
		{"42e01f", "42001f", false}, // Baseline may use FMO/ASO
		{"42e01f", "4d001f", false},
		{"4d001f", "64001f", false},
		{"4d001f", "42001f", false},
		{"640c1f", "64001f", false},
	} {
		if got := codecDecodes(h264(tc.dec), h264(tc.stream)); got != tc.want {
			t.Errorf("decoder %s, stream %s: %v, want %v", tc.dec, tc.stream, got, tc.want)
		}
	}
	mode0 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, SDPFmtpLine: "profile-level-id=42e01f"}
	if codecDecodes(mode0, h264("42e01f")) {
		t.Error("packetization mode 0 carries a mode 1 stream")
	}
	if !codecDecodes(webrtc.RTPCodecCapability{MimeType: "video/vp9"}, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, SDPFmtpLine: "profile-id=0"}) ||
		codecDecodes(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, SDPFmtpLine: "profile-id=2"}, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9}) {
		t.Error("VP9 profiles are not told apart")
	}
}

// A track is sent with the same configuration when negotiated, else one
// that decodes it, never one that does not.
func TestMatchCodec(t *testing.T) {
	pt := func(pt webrtc.PayloadType, c webrtc.RTPCodecCapability) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{RTPCodecCapability: c, PayloadType: pt}
	}
	negotiated := []webrtc.RTPCodecParameters{pt(96, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}),
		pt(104, h264("42001f")), pt(102, h264("42e01f")), pt(108, h264("640034"))}
	for _, tc := range []struct {
		want   webrtc.RTPCodecCapability
		pt     webrtc.PayloadType
		exists bool
	}{
		{h264("42e01f"), 102, true}, // exact, though Baseline comes first and decodes it too
		{h264("64001f"), 108, true},
		{h264("4d001f"), 108, true}, // Main: only High decodes it
		{webrtc.RTPCodecCapability{MimeType: "video/vp8"}, 96, true},
		{webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1}, 0, false},
	} {
		c, ok := matchCodec(negotiated, tc.want)
		if ok != tc.exists || c.PayloadType != tc.pt {
			t.Errorf("%s %s: payload type %d (%v), want %d (%v)", tc.want.MimeType, tc.want.SDPFmtpLine, c.PayloadType, ok, tc.pt, tc.exists)
		}
	}
	if c, ok := matchCodec(negotiated[2:3], h264("64001f")); ok {
		t.Errorf("a High stream matched Constrained Baseline only (payload type %d)", c.PayloadType)
	}
}

// A join's declaration names MIME types, and for H.264 maybe profiles; an
// answer narrows what the client decodes per kind of media.
func TestDecoderSet(t *testing.T) {
	ds := decoderSet{declared: []string{"audio/opus", "video/H264;profile-level-id=42e01f;packetization-mode=1", "video/VP8"}}
	if !ds.decodes(h264("42e01f")) || ds.decodes(h264("64001f")) || !ds.decodes(webrtc.RTPCodecCapability{MimeType: "video/VP8"}) ||
		ds.decodes(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9}) {
		t.Error("the declaration's profiles are not followed")
	}
	anyProfile := decoderSet{declared: []string{"video/H264"}}
	if !anyProfile.decodes(h264("64001f")) {
		t.Error("a plain video/H264 declaration does not take every profile")
	}
	answered := decoderSet{answered: answeredCodecs("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 102 103\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:102 H264/90000\r\n" +
		"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\na=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n")}
	if !answered.decodes(h264("42e01f")) || answered.decodes(h264("64001f")) || answered.decodes(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}) ||
		!answered.decodes(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}) {
		t.Error("the answer's codecs are not followed")
	}
}

// offerH264 is a publisher's offer of H.264 video in the order of plids.
func offerH264(t *testing.T, plids ...string) string {
	t.Helper()
	m := &webrtc.MediaEngine{}
	for i, plid := range plids {
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: h264(plid), PayloadType: webrtc.PayloadType(100 + 2*i)},
			webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

// A publisher that offers High and Constrained Baseline is steered to
// Constrained Baseline when a subscriber of the room decodes only that, and
// keeps High when everyone decodes it.
func TestH264ProfileSteering(t *testing.T) {
	e, err := NewEngine(Config{ListenIP: "127.0.0.1", TCPPort: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	answerProfiles := func(declared []string) []h264Profile {
		r := e.NewRouter("rs-steer")
		defer r.Close()
		if _, err := r.AddPeer("sub", PeerOptions{Name: "sub", Subscribe: true, Codecs: declared}, nopSignal{}); err != nil {
			t.Fatal(err)
		}
		pub, err := r.AddPeer("pub", PeerOptions{Name: "pub"}, nopSignal{})
		if err != nil {
			t.Fatal(err)
		}
		answer, _, err := pub.Publish("st-1", "camera", offerH264(t, "64001f", "42e01f"), false)
		if err != nil {
			t.Fatal(err)
		}
		var out []h264Profile
		for _, sec := range parseSections(answer) {
			for _, c := range sec.codecs {
				if sec.port != 0 && c.MimeType == "video/H264" {
					out = append(out, parseH264Format(c.SDPFmtpLine).profile)
				}
			}
		}
		return out
	}
	if got := answerProfiles([]string{"video/H264;profile-level-id=42e01f;packetization-mode=1"}); len(got) != 1 || got[0] != h264ConstrainedBaseline {
		t.Errorf("with a Constrained Baseline subscriber the answer has %v, want Constrained Baseline only", got)
	}
	got := answerProfiles(nil)
	hasHigh := false
	for _, p := range got {
		hasHigh = hasHigh || p == h264High
	}
	if !hasHigh {
		t.Errorf("with subscribers that decode everything the answer has %v, want High among them", got)
	}
}
