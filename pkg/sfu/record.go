package sfu

import (
	"strings"
	"time"

	"github.com/parley/parley/pkg/protocol"
	"github.com/pion/rtp"
)

// StreamRecorder records one published stream. pkg/recorder's StreamWriter
// satisfies it. WriteRTP and SenderReport are called from the stream's
// reader goroutines and must return quickly; WriteRTP must copy what it keeps.
type StreamRecorder interface {
	WriteRTP(track int, pkt *rtp.Packet, arrival time.Time)
	SenderReport(track int, ssrc uint32, ntp time.Time, rtpTS uint32, arrival time.Time)
	Close() error
}

// RecordTrack describes one track of a stream to record.
type RecordTrack struct {
	Kind      string // audio or video
	MimeType  string
	ClockRate uint32
	Channels  uint16
}

// RecordStream describes a published stream to record; the track index in
// StreamRecorder calls is the index in Tracks.
type RecordStream struct {
	Participant string
	StreamID    string
	Kind        string // camera or screen
	Tracks      []RecordTrack
	// RequestKeyframe asks the publisher for a keyframe of the stream's video.
	RequestKeyframe func()
}

// RecorderFunc starts the recording of a stream. A router without one
// records nothing.
type RecorderFunc func(RecordStream) (StreamRecorder, error)

// SetRecorder makes the router record the streams published with record set.
func (r *Router) SetRecorder(fn RecorderFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recorder = fn
}

func (r *Router) recorderFunc() RecorderFunc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recorder
}

// recordTracks turns the tracks of a publish answer into recorder tracks.
func recordTracks(tracks []protocol.Track) []RecordTrack {
	out := make([]RecordTrack, 0, len(tracks))
	for _, t := range tracks {
		rt := RecordTrack{Kind: t.Kind, MimeType: t.Codec, ClockRate: 90000}
		for _, c := range codecs {
			if strings.EqualFold(c.MimeType, t.Codec) {
				rt.MimeType, rt.ClockRate, rt.Channels = c.MimeType, c.ClockRate, c.Channels
				break
			}
		}
		out = append(out, rt)
	}
	return out
}
