package sfu

import (
	"sync"
	"time"

	"github.com/parley/parley/pkg/codec"
	"github.com/pion/rtp"
)

// Recording a simulcast track.
//
// A recorder (and a tap: pkg/live) takes one stream per track, but a
// simulcast track arrives as several layers, and a browser stops sending
// its higher layers when its uplink or its CPU cannot carry them: following
// only the top layer would record no picture for as long as that lasts. A
// layerFollower hands its consumer the highest layer that is arriving: it
// switches at a keyframe of the layer it goes to (asked for), and the
// consumer sees the switch as a change of SSRC, which it handles as a
// stream that starts again (its jitter buffer drained, a keyframe awaited),
// placing the new layer's frames on its time line by that layer's own
// sender reports, all of which are handed on. Each layer's reader goroutine
// calls it; a lock orders them.

// layerLive is how long a layer counts as arriving after its newest packet.
const layerLive = time.Second

// layerFollower feeds rec's track the best arriving layer of one simulcast
// track.
type layerFollower struct {
	rec   StreamRecorder
	track int
	mime  string
	set   *layerSet

	mu      sync.Mutex
	current *forwarder // the layer handed on now (nil: none yet)
}

func newLayerFollower(rec StreamRecorder, track int, f *forwarder) *layerFollower {
	return &layerFollower{rec: rec, track: track, mime: f.codec.MimeType, set: f.layers}
}

// layer returns the StreamRecorder that f's reader feeds.
func (lf *layerFollower) layer(f *forwarder) StreamRecorder { return followedLayer{lf: lf, f: f} }

// best is the highest layer that is arriving at now; f, whose packet is
// being handed in, is (nil: none is being handed in). It is nil when none
// arrives.
func (lf *layerFollower) best(f *forwarder, now time.Time) *forwarder {
	list := lf.set.list()
	for i := len(list) - 1; i >= 0; i-- {
		l := list[i]
		if l == f {
			return f
		}
		if last := l.lastAt.Load(); last != 0 && now.Sub(time.Unix(0, last)) <= layerLive && !l.isClosed() {
			return l
		}
	}
	return f
}

// write hands on f's packet if f is the layer followed, or switches to f
// at its keyframe when f is the best layer arriving.
func (lf *layerFollower) write(f *forwarder, pkt *rtp.Packet, arrival time.Time) {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	best := lf.best(f, arrival)
	switch {
	case f == lf.current:
		if best != f {
			best.requestKeyframe() // a better layer arrives: switch at its keyframe (throttled per layer)
		}
	case f != best:
		return
	case len(pkt.Payload) == 0 || !codec.IsKeyframe(lf.mime, pkt.Payload):
		f.requestKeyframe()
		return
	default:
		lf.current = f
	}
	lf.rec.WriteRTP(lf.track, pkt, arrival)
}

// requestKeyframe asks for a keyframe of the layer followed (or, before
// any, of the best arriving).
func (lf *layerFollower) requestKeyframe() {
	lf.mu.Lock()
	f := lf.current
	lf.mu.Unlock()
	if f == nil {
		f = lf.best(nil, time.Now())
	}
	if f != nil {
		f.requestKeyframe()
	}
}

// followedLayer is what one layer's reader feeds: the follower, told which
// layer calls. Every layer's sender reports go through (a consumer keeps
// them by SSRC). Closing it closes nothing (the recorder's owner does).
type followedLayer struct {
	lf *layerFollower
	f  *forwarder
}

func (l followedLayer) WriteRTP(_ int, pkt *rtp.Packet, arrival time.Time) {
	l.lf.write(l.f, pkt, arrival)
}

func (l followedLayer) SenderReport(_ int, ssrc uint32, ntp time.Time, rtpTS uint32, arrival time.Time) {
	l.lf.rec.SenderReport(l.lf.track, ssrc, ntp, rtpTS, arrival)
}

func (l followedLayer) Close() error { return nil }
