package sfu

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/parley/parley/pkg/protocol"
	"github.com/pion/rtp"
)

// Taps: other consumers of a published stream's RTP than its subscribers and
// its recorder (pkg/live packs a presenter's stream for viewers whom WebRTC
// cannot reach). A tap is a sink of the stream's forwarders, as a
// subscriber's downTrack is, added and removed the same way (a
// copy-on-write list), so the forwarding loop pays nothing for taps a
// stream does not have, and one interface call per packet for each it has.

// PublishedStream describes a stream published in a router's room session.
type PublishedStream struct {
	ID        string
	Publisher string
	Kind      string // camera or screen
	// Tracks are the stream's tracks as its publish answer accepted them;
	// a tap's track index is the index here.
	Tracks []RecordTrack
	// Arrived counts the tracks whose first packet has come.
	Arrived int
}

// PublishedStreams returns the streams published in the room session, in
// no particular order.
func (r *Router) PublishedStreams() []PublishedStream {
	var out []PublishedStream
	for _, p := range r.peerList() {
		for _, pub := range p.publications() {
			pub.mu.Lock()
			st := PublishedStream{ID: pub.id, Publisher: p.name, Kind: pub.kind, Arrived: len(pub.forwarders)}
			for _, c := range pub.codecs {
				kind, _, _ := strings.Cut(c, "/")
				st.Tracks = append(st.Tracks, recordTracks([]protocol.Track{{Kind: kind, Codec: c}})...)
			}
			closed := pub.closed
			pub.mu.Unlock()
			if !closed {
				out = append(out, st)
			}
		}
	}
	return out
}

// Tap is a consumer attached to the tracks of one published stream.
type Tap struct {
	router *Router
	stream string
	rec    StreamRecorder

	mu    sync.Mutex
	sinks map[*forwarder]*tapSink
	// followers take the layers of simulcast tracks, by track id: the
	// recorder gets the best arriving one (follow.go).
	followers map[string]*layerFollower
	closed    bool
}

// TapStream starts feeding rec the RTP packets (and the publisher's clock
// mapping, as sender reports) of the stream's tracks; WriteRTP's track is
// the index in PublishedStream.Tracks. rec's methods are called from the
// tracks' reader goroutines: they must return at once and copy what they
// keep. Tracks that arrive later are tapped by Refresh; Close stops.
func (r *Router) TapStream(streamID string, rec StreamRecorder) (*Tap, error) {
	t := &Tap{router: r, stream: streamID, rec: rec, sinks: make(map[*forwarder]*tapSink), followers: make(map[string]*layerFollower)}
	if !t.Refresh() {
		return nil, &protocol.Error{Code: protocol.CodeUnknownStream, Reason: fmt.Sprintf("no stream %q is published", streamID)}
	}
	return t, nil
}

// publication returns the tapped stream's publication, or nil.
func (t *Tap) publication() *publication {
	for _, p := range t.router.peerList() {
		for _, pub := range p.publications() {
			if pub.id == t.stream {
				return pub
			}
		}
	}
	return nil
}

// Refresh taps the stream's tracks that arrived since; it reports false
// when the stream is no longer published.
func (t *Tap) Refresh() bool {
	pub := t.publication()
	if pub == nil {
		return false
	}
	pub.mu.Lock()
	codecs := slices.Clone(pub.codecs)
	fwds := slices.Clone(pub.forwarders)
	closed := pub.closed
	pub.mu.Unlock()
	if closed {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	// A simulcast track is tapped on every layer, through a follower that
	// hands on the best one arriving (as the recorder records it).
	for _, f := range fwds {
		if t.sinks[f] != nil || f.isClosed() {
			continue
		}
		i := slices.IndexFunc(codecs, func(c string) bool { return strings.EqualFold(c, f.codec.MimeType) })
		if i < 0 {
			continue
		}
		s := &tapSink{f: f, rec: t.rec, track: i}
		if f.rid != "" {
			lf := t.followers[f.id]
			if lf == nil {
				lf = newLayerFollower(t.rec, i, f)
				t.followers[f.id] = lf
			}
			s.rec = lf.layer(f)
		}
		t.sinks[f] = s
		f.addSink(s)
	}
	return true
}

// RequestKeyframe asks the publisher for a keyframe of the video tracks
// the tap takes (throttled as every keyframe request is), whether or not
// the stream is recorded.
func (t *Tap) RequestKeyframe() {
	t.mu.Lock()
	fwds := make([]*forwarder, 0, len(t.sinks))
	for f := range t.sinks {
		if f.rid == "" {
			fwds = append(fwds, f)
		}
	}
	followers := make([]*layerFollower, 0, len(t.followers))
	for _, lf := range t.followers {
		followers = append(followers, lf)
	}
	t.mu.Unlock()
	for _, f := range fwds {
		f.requestKeyframe()
	}
	for _, lf := range followers {
		lf.requestKeyframe()
	}
}

// Close stops the tap; no packet reaches its recorder after it returns but
// those being handed over.
func (t *Tap) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for f, s := range t.sinks {
		f.removeSink(s)
	}
	clear(t.sinks)
	clear(t.followers)
}

// tapSink hands a forwarder's packets to a tap's recorder. Its methods run
// on the forwarder's reader goroutine.
type tapSink struct {
	f     *forwarder
	rec   StreamRecorder
	track int
	pkt   rtp.Packet   // scratch
	clock *clockAnchor // the last publisher clock mapping handed on
}

// enqueue implements packetSink: the recorder copies what it keeps, so no
// reference is taken.
func (s *tapSink) enqueue(p *packet, _ bool) bool {
	if len(p.payload) == 0 {
		return false
	}
	if c := s.f.pubClock.Load(); c != nil && c != s.clock {
		s.clock = c
		s.rec.SenderReport(s.track, p.hdr.SSRC, c.at, c.rtp, c.at)
	}
	s.pkt.Header = p.hdr
	s.pkt.Payload = p.payload
	s.rec.WriteRTP(s.track, &s.pkt, p.arrived)
	return false
}

// signal implements packetSink.
func (s *tapSink) signal() {}
