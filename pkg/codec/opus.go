package codec

import "time"

// OpusPacketDuration returns the duration of an Opus packet from its TOC byte
// (RFC 6716 section 3.1), or 0 for an empty or malformed packet (one that
// would last more than 120 ms, or holds no frame).
func OpusPacketDuration(p []byte) time.Duration {
	if len(p) == 0 {
		return 0
	}
	toc := p[0]
	cfg := toc >> 3
	var frame time.Duration
	switch {
	case cfg < 12:
		frame = [4]time.Duration{10, 20, 40, 60}[cfg%4] * time.Millisecond
	case cfg < 16:
		frame = [2]time.Duration{10, 20}[cfg%2] * time.Millisecond
	default:
		frame = [4]time.Duration{2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}[cfg%4]
	}
	switch toc & 0x03 {
	case 0:
		return frame
	case 1, 2:
		return 2 * frame
	default:
		// Code 3: the frame count M is in the next byte; M = 0, or more than
		// 120 ms of audio, is malformed (RFC 6716 section 3.2.5).
		if len(p) < 2 {
			return 0
		}
		d := time.Duration(p[1]&0x3f) * frame
		if d > 120*time.Millisecond {
			return 0
		}
		return d
	}
}
