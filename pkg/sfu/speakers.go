package sfu

import (
	"sync"
	"time"

	"github.com/parley/parley/pkg/speaker"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// ActiveSpeaker is a speaking stream: its publisher, the stream and its
// smoothed level (0 silence to 1 the loudest, pkg/speaker).
type ActiveSpeaker struct {
	Participant string
	StreamID    string
	Level       float64
}

// ActiveSpeakers is who speaks in a room session: the dominant speaker (nil
// before anyone spoke) and everyone speaking now, the dominant one first.
type ActiveSpeakers struct {
	Dominant *ActiveSpeaker
	Speakers []ActiveSpeaker
	// At is when the detector decided it.
	At time.Time
}

// speakers runs a room session's speaker detector: every published audio
// track whose publisher sends RFC 6464 levels has a meter, read once per
// tick by a goroutine that runs while the room has such tracks.
type speakers struct {
	det *speaker.Detector

	mu        sync.Mutex
	names     map[string]string // stream id → participant
	listeners []func(ActiveSpeakers)
	current   ActiveSpeakers
	running   bool
	closed    bool
	stop      chan struct{}
	done      chan struct{}
}

func newSpeakers() *speakers {
	return &speakers{det: speaker.New(speaker.Config{}), names: make(map[string]string), stop: make(chan struct{})}
}

// levelExtension returns the id a publish connection's receiver negotiated
// for the audio level header extension, 0 if none.
func levelExtension(recv *webrtc.RTPReceiver) uint8 {
	for _, x := range recv.GetParameters().HeaderExtensions {
		if x.URI == sdp.AudioLevelURI && x.ID > 0 && x.ID < 256 {
			return uint8(x.ID)
		}
	}
	return 0
}

// add meters a published audio stream, starting the detector's goroutine.
func (s *speakers) add(streamID, participant string) *speaker.Meter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.names[streamID] = participant
	m := s.det.Add(streamID)
	if !s.running {
		s.running = true
		s.done = make(chan struct{})
		go s.run(s.done)
	}
	return m
}

// remove stops metering a stream that ended.
func (s *speakers) remove(streamID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.names, streamID)
	s.det.Remove(streamID)
}

// listen adds fn to what each update is given to. fn runs on the detector's
// goroutine and must not block.
func (s *speakers) listen(fn func(ActiveSpeakers)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, fn)
}

// dominantStream is the dominant speaker's stream id, "" if none.
func (s *speakers) dominantStream() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current.Dominant == nil {
		return ""
	}
	return s.current.Dominant.StreamID
}

func (s *speakers) get() ActiveSpeakers {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// idleTicks is how long the goroutine goes on after the last metered stream
// ended, so the update that says so goes out.
const idleTicks = 10

func (s *speakers) run(done chan struct{}) {
	defer close(done)
	t := time.NewTicker(s.det.Config().Tick)
	defer t.Stop()
	idle := 0
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		u, ok := s.det.Tick()
		var out ActiveSpeakers
		var listeners []func(ActiveSpeakers)
		if ok {
			out = s.resolveLocked(u)
			s.current = out
			listeners = s.listeners
		}
		if s.det.Len() == 0 {
			idle++
		} else {
			idle = 0
		}
		exit := idle >= idleTicks
		if exit {
			s.running = false
		}
		s.mu.Unlock()
		for _, fn := range listeners {
			fn(out)
		}
		if exit {
			return
		}
	}
}

// resolveLocked names the publishers of an update's streams.
func (s *speakers) resolveLocked(u speaker.Update) ActiveSpeakers {
	out := ActiveSpeakers{At: time.Now()}
	if name, ok := s.names[u.Dominant]; ok && u.Dominant != "" {
		d := ActiveSpeaker{Participant: name, StreamID: u.Dominant}
		if len(u.Speakers) > 0 && u.Speakers[0].ID == u.Dominant {
			d.Level = u.Speakers[0].Level
		}
		out.Dominant = &d
	}
	for _, sp := range u.Speakers {
		if name, ok := s.names[sp.ID]; ok {
			out.Speakers = append(out.Speakers, ActiveSpeaker{Participant: name, StreamID: sp.ID, Level: sp.Level})
		}
	}
	return out
}

// close stops the detector's goroutine and waits for it.
func (s *speakers) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	done := s.done
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

// OnActiveSpeakers adds fn to what is told when the room session's speakers
// change (at most a few times a second). fn runs on the detector's goroutine
// and must not block.
func (r *Router) OnActiveSpeakers(fn func(ActiveSpeakers)) { r.speakers.listen(fn) }

// ActiveSpeakers returns the room session's speakers as last reported.
func (r *Router) ActiveSpeakers() ActiveSpeakers { return r.speakers.get() }
