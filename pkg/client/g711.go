package client

import (
	"math"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
)

// toneSource makes a G.711 (PCMU or PCMA) sine tone, 20 ms per sample, forever.
type toneSource struct {
	codec webrtc.RTPCodecCapability
	alaw  bool
	hz    float64
	n     int // samples made so far
}

// NewToneSource returns a source of a G.711 tone at hz: mime is
// webrtc.MimeTypePCMU (µ-law) or webrtc.MimeTypePCMA (A-law), 8 kHz mono.
func NewToneSource(mime string, hz float64) Source {
	return &toneSource{codec: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 8000},
		alaw: strings.EqualFold(mime, webrtc.MimeTypePCMA), hz: hz}
}

func (s *toneSource) Codec() webrtc.RTPCodecCapability { return s.codec }

func (s *toneSource) Next() ([]byte, time.Duration, error) {
	const perFrame = 160 // 20 ms at 8 kHz
	out := make([]byte, perFrame)
	for i := range out {
		v := int16(12000 * math.Sin(2*math.Pi*s.hz*float64(s.n)/8000))
		if s.alaw {
			out[i] = linearToALaw(v)
		} else {
			out[i] = linearToULaw(v)
		}
		s.n++
	}
	return out, 20 * time.Millisecond, nil
}

// linearToULaw encodes a 16-bit sample as G.711 µ-law.
func linearToULaw(v int16) byte {
	const bias, clip = 0x84, 32635
	sign := byte(0)
	x := int(v)
	if x < 0 {
		x, sign = -x, 0x80
	}
	if x > clip {
		x = clip
	}
	x += bias
	exp := 7
	for mask := 0x4000; x&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (x >> (exp + 3)) & 0x0f
	return ^(sign | byte(exp<<4) | byte(mant))
}

// linearToALaw encodes a 16-bit sample as G.711 A-law.
func linearToALaw(v int16) byte {
	sign := byte(0x80)
	x := int(v) >> 3 // 13-bit magnitude
	if x < 0 {
		x, sign = -x-1, 0
	}
	var b byte
	if x < 32 {
		b = byte(x >> 1)
	} else {
		exp := 1
		for y := x >> 5; y > 1; y >>= 1 {
			exp++
		}
		b = byte(exp<<4) | byte((x>>exp)&0x0f)
	}
	return (b | sign) ^ 0x55
}
