package client

import (
	"math"
	"strings"
	"time"

	"github.com/parley/parley/pkg/codec"
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
			out[i] = codec.EncodeALaw(v)
		} else {
			out[i] = codec.EncodeULaw(v)
		}
		s.n++
	}
	return out, 20 * time.Millisecond, nil
}
