package sfu

import (
	"strings"

	"github.com/pion/webrtc/v4"
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

func registerCodecs(m *webrtc.MediaEngine) error {
	for _, c := range codecs {
		kind := webrtc.RTPCodecTypeVideo
		if strings.HasPrefix(strings.ToLower(c.MimeType), "audio/") {
			kind = webrtc.RTPCodecTypeAudio
		}
		if err := m.RegisterCodec(c, kind); err != nil {
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
// take mime (an empty declaration means everything).
func canDecode(declared []string, mime string) bool {
	if len(declared) == 0 {
		return true
	}
	for _, d := range declared {
		if strings.EqualFold(d, mime) {
			return true
		}
	}
	return false
}

// matchCodec picks, among a connection's negotiated codecs, the one to send a
// track of codec want with: the same MIME type and, for H.264 and VP9, the same
// profile if there is one; else the same MIME type.
func matchCodec(negotiated []webrtc.RTPCodecParameters, want webrtc.RTPCodecCapability) (webrtc.RTPCodecParameters, bool) {
	var fallback *webrtc.RTPCodecParameters
	for i := range negotiated {
		c := &negotiated[i]
		if !strings.EqualFold(c.MimeType, want.MimeType) {
			continue
		}
		if profileOf(c.MimeType, c.SDPFmtpLine) == profileOf(want.MimeType, want.SDPFmtpLine) {
			return *c, true
		}
		if fallback == nil {
			fallback = c
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return webrtc.RTPCodecParameters{}, false
}

// profileOf extracts what distinguishes incompatible variants of a codec.
func profileOf(mime, fmtp string) string {
	var key string
	switch strings.ToLower(mime) {
	case "video/h264":
		key = "profile-level-id"
	case "video/vp9":
		key = "profile-id"
	default:
		return ""
	}
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && strings.EqualFold(k, key) {
			v = strings.ToLower(v)
			if key == "profile-level-id" && len(v) >= 4 {
				return v[:4] // profile_idc and constraints; the level may differ
			}
			return v
		}
	}
	return ""
}

// IsKeyframe reports whether an RTP payload of the given codec starts a
// keyframe. Audio is always "key".
func IsKeyframe(mime string, payload []byte) bool {
	switch strings.ToLower(mime) {
	case "video/vp8":
		return vp8Keyframe(payload)
	case "video/vp9":
		return vp9Keyframe(payload)
	case "video/h264":
		return h264Keyframe(payload)
	case "video/av1":
		return av1Keyframe(payload)
	default:
		return !strings.HasPrefix(strings.ToLower(mime), "video/")
	}
}

// vp8Keyframe parses the VP8 payload descriptor (RFC 7741) and checks the
// P bit of the frame header at the start of partition 0.
func vp8Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	x, s, pid := p[0]&0x80 != 0, p[0]&0x10 != 0, p[0]&0x07
	if !s || pid != 0 {
		return false
	}
	i := 1
	if x {
		if len(p) <= i {
			return false
		}
		ext := p[i]
		i++
		if ext&0x80 != 0 { // I: picture id
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i += 2
			} else {
				i++
			}
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K
			i++
		}
	}
	return len(p) > i && p[i]&0x01 == 0
}

// vp9Keyframe checks the VP9 payload descriptor (RFC 9628): start of a frame
// (B), not inter-predicted (P clear), and for a non-flexible stream the
// uncompressed header's frame type.
func vp9Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	d := p[0]
	iBit, pBit, lBit, fBit, bBit, vBit := d&0x80 != 0, d&0x40 != 0, d&0x20 != 0, d&0x10 != 0, d&0x08 != 0, d&0x02 != 0
	if !bBit || pBit {
		return false
	}
	i := 1
	if iBit {
		if len(p) <= i {
			return false
		}
		if p[i]&0x80 != 0 {
			i += 2
		} else {
			i++
		}
	}
	if lBit {
		if len(p) <= i {
			return false
		}
		if p[i]&0x0e != 0 { // spatial layer > 0 is not where a keyframe starts
			return false
		}
		i++
		if !fBit {
			i++
		}
	}
	if fBit && pBit {
		return false
	}
	if vBit {
		if len(p) <= i {
			return false
		}
		ss := p[i]
		n := int(ss>>5) + 1
		y, g := ss&0x10 != 0, ss&0x08 != 0
		i++
		if y {
			i += 4 * n
		}
		if g {
			if len(p) <= i {
				return false
			}
			ng := int(p[i])
			i++
			for j := 0; j < ng; j++ {
				if len(p) <= i {
					return false
				}
				r := int(p[i]>>2) & 0x03
				i += 1 + r
			}
		}
	}
	if len(p) <= i {
		return false
	}
	// Uncompressed header: frame_marker(2) profile(2, low bit first) [reserved] show_existing_frame frame_type.
	h := p[i]
	if h>>6 != 0x2 {
		return false
	}
	profile := (h>>5)&1 | ((h>>4)&1)<<1
	bit := 3 // next bit index from the top (0-based)
	if profile == 3 {
		bit++
	}
	if (h>>(7-bit))&1 == 1 { // show_existing_frame
		return false
	}
	bit++
	return (h>>(7-bit))&1 == 0 // frame_type 0 = key frame
}

// h264Keyframe finds an IDR slice or an SPS at the start of the payload
// (single NAL, STAP-A aggregation or the first FU-A fragment).
func h264Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch t := p[0] & 0x1f; t {
	case 5, 7:
		return true
	case 24: // STAP-A
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if i >= len(p) {
				break
			}
			if nt := p[i] & 0x1f; nt == 5 || nt == 7 {
				return true
			}
			i += size
		}
	case 28: // FU-A
		return len(p) > 1 && p[1]&0x80 != 0 && (p[1]&0x1f == 5 || p[1]&0x1f == 7)
	}
	return false
}

// av1Keyframe uses the aggregation header's N bit (first packet of a coded
// video sequence), which encoders set on keyframes.
func av1Keyframe(p []byte) bool {
	return len(p) > 0 && p[0]&0x08 != 0 && p[0]&0x80 == 0
}
