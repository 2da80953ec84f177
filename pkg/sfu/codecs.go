package sfu

import (
	"slices"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/pkg/codec/av1dd"
)

var videoFeedback = []webrtc.RTCPFeedback{
	{Type: webrtc.TypeRTCPFBNACK}, {Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
	{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"}, {Type: webrtc.TypeRTCPFBTransportCC},
}

// codecs lists what the SFU forwards, in the order it prefers them. Payload
// types follow Chrome's where they can; they only need to be consistent per
// connection, since the SFU rewrites the payload type for each subscriber.
var codecs = []webrtc.RTPCodecParameters{
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
		SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMA, ClockRate: 8000}, PayloadType: 8},

	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000,
		RTCPFeedback: videoFeedback}, PayloadType: 96},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000,
		SDPFmtpLine: "profile-id=0", RTCPFeedback: videoFeedback}, PayloadType: 98},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: videoFeedback}, PayloadType: 102},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", RTCPFeedback: videoFeedback}, PayloadType: 104},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f", RTCPFeedback: videoFeedback}, PayloadType: 106},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640034", RTCPFeedback: videoFeedback}, PayloadType: 108},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000,
		RTCPFeedback: videoFeedback}, PayloadType: 45},
}

// registerCodecs registers the forwarded codecs. Both directions negotiate
// transport-wide congestion control: on publish connections the SFU sends
// the feedback (so a browser's send-side estimator adapts its bitrate), on
// subscribe connections it reads it (its own estimate per subscriber,
// pkg/bwe). Subscribe connections also offer REMB feedback, for receivers
// that estimate themselves.
func registerCodecs(m *webrtc.MediaEngine, publish bool) error {
	for _, c := range codecs {
		kind := webrtc.RTPCodecTypeVideo
		if strings.HasPrefix(strings.ToLower(c.MimeType), "audio/") {
			kind = webrtc.RTPCodecTypeAudio
		}
		if !publish && kind == webrtc.RTPCodecTypeVideo {
			c.RTCPFeedback = append(slices.Clone(c.RTCPFeedback), webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBGoogREMB})
		}
		if err := m.RegisterCodec(c, kind); err != nil {
			return err
		}
	}
	if publish {
		// Publishers' audio levels (RFC 6464) tell who speaks (speakers.go).
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
			return err
		}
		// AV1's layers are described in the dependency descriptor
		// (spatial.go).
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: av1dd.URI}, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
	}
	if !publish {
		for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
			if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, kind); err != nil {
				return err
			}
		}
		// An AV1 stream's dependency descriptor is forwarded: a browser
		// assembles and decodes AV1 layer frames by it (spatial.go).
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: av1dd.URI}, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
	}
	return nil
}

// supportedMime reports whether the SFU forwards this MIME type.
func supportedMime(mime string) bool {
	for _, c := range codecs {
		if strings.EqualFold(c.MimeType, mime) {
			return true
		}
	}
	return false
}

// canDecode reports whether a client that declared decodable MIME types can
// take mime (an empty declaration means everything). An entry may carry
// fmtp parameters after the MIME type (h264profile.go).
func canDecode(declared []string, mime string) bool {
	if len(declared) == 0 {
		return true
	}
	for _, d := range declared {
		m, _, _ := strings.Cut(d, ";")
		if strings.EqualFold(strings.TrimSpace(m), mime) {
			return true
		}
	}
	return false
}
