package sfu

import (
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// H.264 profiles, as a decoder negotiates them.
//
// An H.264 payload type is one media format configuration: its
// packetization mode and the profile part of its profile-level-id (RFC 6184
// 8.2.2; the level may differ with level-asymmetry-allowed). Browsers
// (libwebrtc's H264 profile parsing) read the profile from profile_idc and
// the constraint flags (profile_iop), so 42e01f is Constrained Baseline and
// 42001f Baseline, 640c1f Constrained High and 64001f High. A stream of one
// profile reaches a subscriber only on a payload type whose profile decodes
// it: the same profile, or one whose decoders must decode every stream of it
// (a Constrained Baseline stream conforms to Baseline, Main and High; a Main
// or Constrained High one to High). Never the other way: a High stream has
// tools (8x8 transforms, CABAC, B-frames) that a Constrained Baseline
// decoder (a hardware decoder of a phone, say) does not have.

// h264Profile is an H.264 profile as negotiated.
type h264Profile uint8

const (
	h264Unknown h264Profile = iota
	h264ConstrainedBaseline
	h264Baseline
	h264Main
	h264ConstrainedHigh
	h264High
	h264PredictiveHigh444
)

func (p h264Profile) String() string {
	switch p {
	case h264ConstrainedBaseline:
		return "Constrained Baseline"
	case h264Baseline:
		return "Baseline"
	case h264Main:
		return "Main"
	case h264ConstrainedHigh:
		return "Constrained High"
	case h264High:
		return "High"
	case h264PredictiveHigh444:
		return "High 4:4:4 Predictive"
	}
	return "unknown profile"
}

// h264ProfilePatterns map profile_idc and the constraint flags to a
// profile, as libwebrtc's table does (x: any bit; the low four bits must be 0).
var h264ProfilePatterns = []struct {
	idc     byte
	pattern string // profile_iop, most significant bit first
	profile h264Profile
}{
	{0x42, "x1xx0000", h264ConstrainedBaseline},
	{0x4d, "1xxx0000", h264ConstrainedBaseline},
	{0x58, "11xx0000", h264ConstrainedBaseline},
	{0x42, "x0xx0000", h264Baseline},
	{0x58, "10xx0000", h264Baseline},
	{0x4d, "0x0x0000", h264Main},
	{0x64, "00000000", h264High},
	{0x64, "00001100", h264ConstrainedHigh},
	{0xf4, "00000000", h264PredictiveHigh444},
}

// parseH264Profile reads the profile of a profile-level-id (six hex digits).
func parseH264Profile(plid string) h264Profile {
	b, err := hex.DecodeString(plid)
	if err != nil || len(b) != 3 {
		return h264Unknown
	}
	for _, p := range h264ProfilePatterns {
		if p.idc == b[0] && bitsMatch(b[1], p.pattern) {
			return p.profile
		}
	}
	return h264Unknown
}

func bitsMatch(v byte, pattern string) bool {
	for i := range 8 {
		bit := v>>(7-i)&1 == 1
		switch pattern[i] {
		case '1':
			if !bit {
				return false
			}
		case '0':
			if bit {
				return false
			}
		}
	}
	return true
}

// h264Decodes reports whether a decoder that negotiated profile dec must
// decode every stream of profile stream.
func h264Decodes(dec, stream h264Profile) bool {
	if dec == h264Unknown || stream == h264Unknown {
		return false
	}
	if dec == stream {
		return true
	}
	switch stream {
	case h264ConstrainedBaseline:
		return dec == h264Baseline || dec == h264Main || dec == h264High || dec == h264ConstrainedHigh
	case h264Main, h264ConstrainedHigh:
		return dec == h264High
	}
	return false
}

// fmtpParam returns a parameter of an fmtp line ("" when absent).
func fmtpParam(fmtp, key string) string {
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), key) {
			return strings.ToLower(strings.TrimSpace(v))
		}
	}
	return ""
}

// h264Format is what identifies an H.264 payload type's configuration.
type h264Format struct {
	profile h264Profile
	mode    string // packetization-mode, "0" when absent (RFC 6184)
}

func parseH264Format(fmtp string) h264Format {
	mode := fmtpParam(fmtp, "packetization-mode")
	if mode == "" {
		mode = "0"
	}
	plid := fmtpParam(fmtp, "profile-level-id")
	if plid == "" {
		plid = "42000a" // RFC 6184's default: Baseline, level 1
	}
	return h264Format{profile: parseH264Profile(plid), mode: mode}
}

// codecDecodes reports whether a payload type a receiver negotiated (dec)
// carries a stream of codec stream: the same MIME type and, for H.264, the
// same packetization mode and a profile that decodes the stream's, for VP9
// the same profile.
func codecDecodes(dec, stream webrtc.RTPCodecCapability) bool {
	if !strings.EqualFold(dec.MimeType, stream.MimeType) {
		return false
	}
	switch strings.ToLower(stream.MimeType) {
	case "video/h264":
		d, s := parseH264Format(dec.SDPFmtpLine), parseH264Format(stream.SDPFmtpLine)
		return d.mode == s.mode && h264Decodes(d.profile, s.profile)
	case "video/vp9":
		return vp9Profile(dec.SDPFmtpLine) == vp9Profile(stream.SDPFmtpLine)
	}
	return true
}

func vp9Profile(fmtp string) string {
	if p := fmtpParam(fmtp, "profile-id"); p != "" {
		return p
	}
	return "0"
}

// sameFormat reports whether two codecs are one media format configuration:
// the MIME type and, for H.264, the packetization mode and profile (the
// level may differ), for VP9 the profile.
func sameFormat(a, b webrtc.RTPCodecCapability) bool {
	if !strings.EqualFold(a.MimeType, b.MimeType) {
		return false
	}
	switch strings.ToLower(a.MimeType) {
	case "video/h264":
		return parseH264Format(a.SDPFmtpLine) == parseH264Format(b.SDPFmtpLine)
	case "video/vp9":
		return vp9Profile(a.SDPFmtpLine) == vp9Profile(b.SDPFmtpLine)
	}
	return true
}

// codecLabel names a codec for a person: the MIME type, and the H.264
// profile.
func codecLabel(c webrtc.RTPCodecCapability) string {
	if strings.EqualFold(c.MimeType, webrtc.MimeTypeH264) {
		return c.MimeType + " (" + parseH264Format(c.SDPFmtpLine).profile.String() + " profile)"
	}
	return c.MimeType
}

// matchCodec picks, among a connection's negotiated codecs, the one to send
// a track of codec want with: the same configuration if there is one, else
// one whose receivers decode it (codecDecodes). None when no negotiated
// codec can carry it: an H.264 High stream is never sent on a payload type
// that negotiated Constrained Baseline only.
func matchCodec(negotiated []webrtc.RTPCodecParameters, want webrtc.RTPCodecCapability) (webrtc.RTPCodecParameters, bool) {
	var compatible *webrtc.RTPCodecParameters
	for i := range negotiated {
		c := &negotiated[i]
		if !codecDecodes(c.RTPCodecCapability, want) {
			continue
		}
		if !strings.EqualFold(want.MimeType, webrtc.MimeTypeH264) ||
			parseH264Format(c.SDPFmtpLine) == parseH264Format(want.SDPFmtpLine) {
			return *c, true
		}
		if compatible == nil {
			compatible = c
		}
	}
	if compatible != nil {
		return *compatible, true
	}
	return webrtc.RTPCodecParameters{}, false
}

// decoderSet is what a participant decodes: the codecs it declared in its
// join (MIME types, H.264 entries may name a profile-level-id), narrowed by
// what its subscribe connection's answers negotiated, per kind of media.
type decoderSet struct {
	declared []string
	// answered are the codecs of the subscriber's last answer per kind
	// (audio, video); nil while no answer had a section of that kind.
	answered map[string][]webrtc.RTPCodecCapability
}

// decodes reports whether the participant can decode a stream of codec c,
// and if not, why (a codec label for STREAM_STATUS).
func (ds *decoderSet) decodes(c webrtc.RTPCodecCapability) bool {
	if c.MimeType == "" {
		return true
	}
	if !declaredDecodes(ds.declared, c) {
		return false
	}
	kind, _, _ := strings.Cut(strings.ToLower(c.MimeType), "/")
	got, ok := ds.answered[kind]
	if !ok {
		return true // nothing of this kind negotiated yet
	}
	for _, a := range got {
		if codecDecodes(a, c) {
			return true
		}
	}
	return false
}

// declaredDecodes reads a join's codec declaration: MIME types ("video/H264":
// any profile) and, for H.264, entries with fmtp parameters
// ("video/H264;profile-level-id=42e01f;packetization-mode=1"): when some
// are listed, only their profiles. An empty declaration means everything.
func declaredDecodes(declared []string, c webrtc.RTPCodecCapability) bool {
	if len(declared) == 0 {
		return true
	}
	plain, qualified, matched := false, false, false
	for _, d := range declared {
		mime, params, hasParams := strings.Cut(d, ";")
		if !strings.EqualFold(strings.TrimSpace(mime), c.MimeType) {
			continue
		}
		if !hasParams || !strings.EqualFold(c.MimeType, webrtc.MimeTypeH264) {
			plain = true
			continue
		}
		qualified = true
		if codecDecodes(webrtc.RTPCodecCapability{MimeType: c.MimeType, SDPFmtpLine: params}, c) {
			matched = true
		}
	}
	if qualified {
		return matched
	}
	return plain
}

// answeredCodecs reads the codecs of a subscriber's answer per kind, from the
// media sections it accepted.
func answeredCodecs(answer string) map[string][]webrtc.RTPCodecCapability {
	out := map[string][]webrtc.RTPCodecCapability{}
	for _, m := range parseSections(answer) {
		if m.port == 0 || (m.kind != "audio" && m.kind != "video") {
			continue
		}
		out[m.kind] = append(out[m.kind], m.codecs...)
	}
	return out
}

// sdpSection is what the SFU reads of a media section: its kind, port, mid
// and codecs (payload type, MIME type, fmtp), in the section's order.
type sdpSection struct {
	kind, mid string
	port      int
	codecs    []webrtc.RTPCodecCapability
	pts       []uint8
}

// parseSections reads the media sections of an SDP; nil if it does not parse.
func parseSections(desc string) []sdpSection {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(desc); err != nil {
		return nil
	}
	var out []sdpSection
	for _, m := range sd.MediaDescriptions {
		sec := sdpSection{kind: m.MediaName.Media, port: m.MediaName.Port.Value}
		sec.mid, _ = m.Attribute("mid")
		fmtps := map[string]string{}
		for _, a := range m.Attributes {
			if a.Key == "fmtp" {
				if pt, v, ok := strings.Cut(a.Value, " "); ok {
					fmtps[pt] = v
				}
			}
		}
		for _, a := range m.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			pt, enc, ok := strings.Cut(a.Value, " ")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(pt, 10, 7)
			if err != nil {
				continue
			}
			name, _, _ := strings.Cut(enc, "/")
			sec.codecs = append(sec.codecs, webrtc.RTPCodecCapability{MimeType: sec.kind + "/" + name, SDPFmtpLine: fmtps[pt]})
			sec.pts = append(sec.pts, uint8(n))
		}
		out = append(out, sec)
	}
	return out
}
