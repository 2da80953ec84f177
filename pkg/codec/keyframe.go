// Package codec holds what Parley knows of codecs at the RTP level, shared by
// the SFU and the Go client: where a keyframe starts.
package codec

import "strings"

// IsKeyframe reports whether an RTP payload of the given codec (a MIME type such
// as "video/VP8", compared case-insensitively) is the first packet of a keyframe,
// that is a packet from which a decoder can start:
//
//   - VP8: a payload descriptor with S=1 and partition index 0, followed by a
//     payload header whose P bit is 0 (RFC 7741).
//   - VP9: a payload descriptor with B=1 (start of a frame) and P=0 (not
//     inter-picture predicted), on spatial layer 0 when layer indices are present
//     (draft-ietf-payload-vp9).
//   - H.264: an IDR or SPS NAL unit, a STAP-A aggregating one, or the first
//     fragment (FU-A with S=1) of an IDR (RFC 6184). A picture made of several
//     slices has several such packets; a STAP-A with SPS and PPS is one.
//   - AV1: an aggregation header with N=1 (a new coded video sequence) and Z=0.
//
// Audio and unknown codecs are never keyframes.
func IsKeyframe(mimeType string, payload []byte) bool {
	// EqualFold, not ToLower: the forwarders call this for every video
	// packet, and ToLower allocates for "video/VP8".
	switch {
	case strings.EqualFold(mimeType, "video/vp8"):
		return isVP8Keyframe(payload)
	case strings.EqualFold(mimeType, "video/vp9"):
		return isVP9Keyframe(payload)
	case strings.EqualFold(mimeType, "video/h264"):
		return isH264Keyframe(payload)
	case strings.EqualFold(mimeType, "video/av1"):
		return len(payload) > 0 && payload[0]&0x08 != 0 && payload[0]&0x80 == 0
	}
	return false
}

func isVP8Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	x := p[0]&0x80 != 0
	s := p[0]&0x10 != 0
	pid := p[0] & 0x07
	if !s || pid != 0 {
		return false
	}
	i := 1
	if x {
		if len(p) < 2 {
			return false
		}
		ext := p[1]
		i = 2
		if ext&0x80 != 0 { // I: picture ID
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 { // M: 15-bit picture ID
				i++
			}
			i++
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K: TID/Y/KEYIDX
			i++
		}
	}
	if len(p) <= i {
		return false
	}
	return p[i]&0x01 == 0
}

func isVP9Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	b0 := p[0]
	iBit, pBit, lBit, fBit, bBit := b0&0x80 != 0, b0&0x40 != 0, b0&0x20 != 0, b0&0x10 != 0, b0&0x08 != 0
	if pBit || !bBit {
		return false
	}
	i := 1
	if iBit {
		if len(p) <= i {
			return false
		}
		if p[i]&0x80 != 0 {
			i++
		}
		i++
	}
	if lBit {
		if len(p) <= i {
			return false
		}
		sid := (p[i] >> 1) & 0x07
		if sid != 0 {
			return false
		}
	}
	_ = fBit
	return true
}

func isH264Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch typ := p[0] & 0x1f; typ {
	case 5, 7:
		return true
	case 24: // STAP-A: 16-bit size, then the NAL unit
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				return false
			}
			if t := p[i] & 0x1f; t == 5 || t == 7 {
				return true
			}
			i += size
		}
	case 28: // FU-A: start fragment of an IDR
		return len(p) >= 2 && p[1]&0x80 != 0 && (p[1]&0x1f == 5 || p[1]&0x1f == 7)
	}
	return false
}
