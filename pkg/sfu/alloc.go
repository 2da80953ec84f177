package sfu

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/protocol"
	"github.com/pion/webrtc/v4"
)

// Allocation: what each subscriber receives of every video, from its own
// bandwidth estimate (pkg/bwe) and the size of the tile it shows the video
// in. Audio comes first and is never paused for video; then screen shares,
// then cameras. Each video gets the highest layer that fits the rest of the
// estimate and is no larger than its tile needs: the smallest layer at least
// as large as the tile (a smaller one would be shown stretched). When all
// of the lowest layer does not fit, it is sent with fewer of its temporal
// layers where it has them (temporal.go). A hidden tile gets nothing; a
// video whose lowest layer (its base temporal layer) does not fit pauses, the
// subscriber is told why, and it resumes by itself when the estimate allows
// (probing finds out when: the subscriber "wants" what its tiles need).
//
// Allocations run when the subscriber's feedback arrives (at most every
// allocEvery), when its tiles change, and when tracks or layers come and go.
// One subscriber's allocation touches only its own downTracks: a weak
// subscriber's choices cost the others nothing.

const (
	allocEvery    = 250 * time.Millisecond
	allocHeadroom = 0.9                     // of the estimate, allocated
	upgradeMargin = 1.15                    // a layer above the one sent must fit with this to spare
	keepMargin    = 1.3                     // the lowest layer, being sent, is kept while over the budget by at most this
	pauseAfter    = 1500 * time.Millisecond // and a video pauses once it did not fit for this long
	keepDip       = time.Second             // a layer being sent is kept through a dip of the estimate this long
	audioDefault  = 64_000
	videoUnknown  = 150_000 // a layer's rate before it was measured
)

// tile is how a subscriber shows a remote stream's video.
type tile struct {
	width, height int // device pixels; 0: not known (no limit)
	hidden        bool
}

// sizer is a layer with a picture size (0: not known): a simulcast layer, or
// a rung.
type sizer interface{ size() (w, h int) }

// size is the picture size the track's newest keyframe carried (0: none).
func (f *forwarder) size() (w, h int) { return int(f.width.Load()), int(f.height.Load()) }

// tileNeeds is the index in layers (lowest first) of the layer tile t needs:
// the smallest at least as large as the tile (a smaller one would be shown
// stretched), the last when none is or the tile's size is not known. sized
// reports whether every layer looked at before the answer had a known size
// (sizes are read from keyframes of the codecs that carry them); a layer
// without one is passed over.
func tileNeeds[L sizer](t tile, layers []L) (i int, sized bool) {
	sized = true
	if t.width <= 0 || t.height <= 0 {
		return len(layers) - 1, true
	}
	for i, f := range layers {
		w, h := f.size()
		if w == 0 || h == 0 {
			sized = false
			continue
		}
		if w >= t.width || h >= t.height {
			return i, sized
		}
	}
	return len(layers) - 1, sized
}

// VideoSignal is implemented by a Signal that can tell a subscriber that
// its video of a stream paused (its link cannot carry it) or plays again.
// Without it the subscriber gets STREAM_STATUS PLAYING with the reason.
type VideoSignal interface {
	VideoStatus(publisher, streamID string, paused bool, reason string)
}

// allocState is a subscriber's allocation bookkeeping.
type allocState struct {
	mu    sync.Mutex // serializes allocations
	last  atomic.Int64
	tiles map[string]tile // stream id -> tile, under subscriber.mu
	// avg is the estimate averaged over about estimateAverage (the
	// allocation's, under mu), avgAt when it was last updated.
	avg   float64
	avgAt time.Time
}

// estimateAverage is the time constant of allocState.avg; keepLoss the
// receiver's loss above which keeping a layer no longer leans on it.
const (
	estimateAverage = 3 * time.Second
	keepLoss        = 0.02
)

// maybeAllocate allocates unless an allocation ran within allocEvery.
func (s *subscriber) maybeAllocate(now time.Time) {
	if last := s.alloc.last.Load(); last != 0 && now.Sub(time.Unix(0, last)) < allocEvery {
		return
	}
	s.allocate(now)
}

// reallocate allocates now (tracks, layers or tiles changed).
func (s *subscriber) reallocate() { s.allocate(time.Now()) }

// SetTiles tells the subscriber's allocation how its client shows remote
// streams: the size of each stream's tile in device pixels, or that it is
// hidden. Streams not named keep what they had; a stream never named has no
// size limit.
func (p *Peer) SetTiles(tiles []protocol.Tile) error {
	if p.sub == nil {
		return &protocol.Error{Code: protocol.CodeBadRequest, Reason: "this session joined with subscribe: false"}
	}
	s := p.sub
	s.mu.Lock()
	if s.alloc.tiles == nil {
		s.alloc.tiles = make(map[string]tile)
	}
	for _, t := range tiles {
		s.alloc.tiles[t.Stream] = tile{width: t.Width, height: t.Height, hidden: !t.Visible}
	}
	// Forget tiles of streams no longer received, so the map stays bounded.
	if len(s.alloc.tiles) > len(s.streams)+len(tiles) {
		for id := range s.alloc.tiles {
			if s.streams[id] == nil {
				delete(s.alloc.tiles, id)
			}
		}
	}
	s.mu.Unlock()
	s.reallocate()
	return nil
}

// allocItem is one of the subscriber's tracks as the allocation sees it.
type allocItem struct {
	d      *downTrack
	st     *streamState
	tile   tile
	screen bool
}

// allocate chooses each video's layer from the subscriber's estimate.
func (s *subscriber) allocate(now time.Time) {
	s.alloc.mu.Lock()
	defer s.alloc.mu.Unlock()
	s.alloc.last.Store(now.UnixNano())
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	var audio, video []allocItem
	for f, d := range s.tracks {
		if d == nil {
			continue
		}
		it := allocItem{d: d, st: s.streams[f.streamID], tile: s.alloc.tiles[f.streamID], screen: f.streamKind == protocol.KindScreen}
		if f.kind == webrtc.RTPCodecTypeAudio {
			audio = append(audio, it)
		} else {
			video = append(video, it)
		}
	}
	s.mu.Unlock()

	estimate := float64(s.bwe.Target())
	budget := allocHeadroom * estimate
	// Keeping the lowest layer may lean on the estimate's average: a
	// delay-based estimate dips after every keyframe burst on a slow link
	// (to 0.85 of what got through), and a video that paused for each dip
	// would cost a keyframe wait each time. Not while the receiver loses
	// packets (a link that really fell: the video must make room for the
	// audio now), and going up never does.
	if s.alloc.avgAt.IsZero() || !s.bwe.Measured() {
		s.alloc.avg = estimate
	} else {
		s.alloc.avg += (estimate - s.alloc.avg) * min(now.Sub(s.alloc.avgAt).Seconds()/estimateAverage.Seconds(), 1)
	}
	s.alloc.avgAt = now
	keepExtra := allocHeadroom * max(s.alloc.avg-estimate, 0)
	if s.bwe.Loss() > keepLoss {
		keepExtra = 0
	}
	wanted := 0.0
	for _, a := range audio {
		r := float64(a.d.fwd.bitrate(now))
		if r == 0 {
			r = audioDefault
		}
		budget -= r
		wanted += r
	}
	// Screen shares first, then cameras, the dominant speaker's first; a
	// stable order within each.
	dominant := ""
	if s.peer != nil {
		dominant = s.peer.router.speakers.dominantStream()
	}
	slices.SortFunc(video, func(a, b allocItem) int {
		if a.screen != b.screen {
			if a.screen {
				return -1
			}
			return 1
		}
		if ad, bd := a.d.fwd.streamID == dominant, b.d.fwd.streamID == dominant; ad != bd {
			if ad {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.d.fwd.id, b.d.fwd.id)
	})
	held := false
	for _, v := range video {
		choice, tcap, want, pausedFor := s.pick(v, budget, budget+keepExtra, estimate, now)
		// Wanted is the estimate at which this allocation would give the
		// tiles what they need: going up (or resuming) takes upgradeMargin
		// to spare, so a probe must show that much, or it would raise the
		// estimate to just short of what any layer switch needs.
		wanted += want * upgradeMargin
		rate := 0.0
		if choice.f != nil {
			rate = float64(max(choice.rateUpTo(tcap, now), 1))
			budget -= rate
		}
		if choice.f == nil && pausedFor != "" || choice.f != nil && want > rate {
			held = true
		}
		if pausedFor != "" {
			v.d.setCarrier(v.d.fwd.layers.list()[0]) // probe on the lowest layer while paused
		}
		if old := v.d.tcap.Swap(int32(tcap)); old != int32(tcap) {
			s.log.Debug("temporal layers", "track", v.d.fwd.id, "from", old, "to", tcap,
				"frame rate", v.d.fwd.layers.list()[0].frameRateUpTo(tcap))
		}
		v.d.setTarget(choice.f)
		v.d.setSpatial(choice.sid, now)
		if pausedFor == "" {
			v.d.setCarrier(nil)
		}
		s.reportVideo(v, pausedFor, estimate)
	}
	if held {
		s.wanted.Store(int64(wanted / allocHeadroom))
	} else {
		s.wanted.Store(0)
	}
}

// pick chooses a video's layer within budget (keepBudget, for keeping the
// lowest layer being sent, may be more: alloc.avg): it returns the rung (a
// simulcast layer, or spatial layers; its f nil: none) and the highest of
// its temporal layers to send (allTemporal: all; only the lowest rung is
// ever sent without all of them), the rate its tile wants (the rung the
// tile needs), and, when it pauses for lack of bandwidth, why.
func (s *subscriber) pick(v allocItem, budget, keepBudget, estimate float64, now time.Time) (rung, int, float64, string) {
	if v.tile.hidden {
		v.d.dipSince = time.Time{}
		return rung{}, allTemporal, 0, ""
	}
	rungs := v.d.fwd.rungs(now)
	if len(rungs) == 0 {
		// Nothing measured yet (the stream just started): the lowest layer.
		return rung{f: v.d.fwd.layers.list()[0], sid: allSpatial}, allTemporal, videoUnknown, ""
	}
	// The rung the tile needs: the smallest at least as large as it.
	need, _ := tileNeeds(v.tile, rungs)
	want := float64(rungs[need].rateUpTo(allTemporal, now))
	// The rung being sent now (-1: none, or a simulcast layer no longer
	// arriving): spatial rungs are numbered by their top layer.
	sending := v.d.sending.Load()
	cur := -1
	for i, r := range rungs {
		if r.f == sending {
			cur = i
			if r.sid < allSpatial {
				cur = min(int(v.d.ssent.Load()), len(rungs)-1)
				break
			}
		}
	}
	above := func(i int) bool { // rungs[i] is above what is sent: going up, or resuming
		if cur < 0 {
			return sending == nil || rungs[i].f.layer > sending.layer
		}
		return i > cur
	}
	curCap := int(v.d.tcap.Load())
	for i := need; i >= 0; i-- {
		r := float64(rungs[i].rateUpTo(allTemporal, now))
		if above(i) || i == cur && curCap < allTemporal {
			r *= upgradeMargin // going up (or resuming): with some to spare
		}
		// The rung being sent is kept through a short dip of the estimate
		// (a burst queued somewhere, a stall of the sender) while the
		// estimate's average has room for it: going down and up again
		// would cost a keyframe of the lower layer now and one of this
		// layer a moment later, and every subscriber of the layer
		// receives those.
		if i == cur && r > budget && r <= keepBudget {
			if v.d.dipSince.IsZero() {
				v.d.dipSince = now
			}
			if now.Sub(v.d.dipSince) < keepDip {
				v.d.shortSince = time.Time{}
				return rungs[i], curCap, want, ""
			}
		}
		if r <= budget {
			v.d.dipSince = time.Time{}
			v.d.shortSince = time.Time{}
			return rungs[i], allTemporal, want, ""
		}
	}
	// Not all of the lowest rung fits: fewer of its temporal layers (a
	// lower frame rate), where it has them, before anything pauses.
	v.d.dipSince = time.Time{}
	low := rungs[0]
	lowRate, lowCap := float64(low.rateUpTo(allTemporal, now)), allTemporal
	if n := low.f.temporalLayers(now); n > 1 {
		for t := n - 2; t >= 0; t-- {
			r := float64(low.rateUpTo(t, now))
			if sending == nil || cur == 0 && t > curCap {
				r *= upgradeMargin
			}
			if r > 0 && r <= budget {
				v.d.shortSince = time.Time{}
				return low, t, want, ""
			}
		}
		lowRate, lowCap = float64(low.rateUpTo(0, now)), 0
	}
	// Not even the lowest rung's lowest rate fits. One being sent is kept
	// while it is over the budget by at most keepMargin, and beyond that
	// for pauseAfter: an estimate dips after each burst (a keyframe queues
	// on a slow link), and a pause costs the subscriber a keyframe wait
	// when it ends. Until the estimate rests on the receiver's feedback,
	// nothing pauses.
	//
	// A video being shown (on any rung) falls back to the lowest before it
	// pauses: at the start the optimistic first estimate may have put it
	// on a layer far above what the link carries.
	keeping := sending != nil || v.d.target.Load() != nil
	if keeping && lowRate <= keepMargin*keepBudget {
		v.d.shortSince = time.Time{}
		return low, lowCap, want, ""
	}
	if v.d.shortSince.IsZero() {
		v.d.shortSince = now
	}
	if !s.bwe.Measured() || keeping && now.Sub(v.d.shortSince) < pauseAfter {
		return low, lowCap, want, ""
	}
	return rung{}, allTemporal, want, fmt.Sprintf("video paused: the connection is too slow for it (about %d kbit/s)", int(estimate)/1000)
}

// reportVideo tells the subscriber when a stream's video paused for lack of
// bandwidth or plays again.
func (s *subscriber) reportVideo(v allocItem, pausedFor string, estimate float64) {
	if v.st == nil {
		return
	}
	s.mu.Lock()
	paused := pausedFor != ""
	changed := v.st.videoPaused != paused
	v.st.videoPaused = paused
	publisher := v.st.publisher
	s.mu.Unlock()
	if !changed {
		return
	}
	s.log.Info("video of a stream", "stream", v.d.fwd.streamID, "paused", paused, "estimate", int(estimate))
	sig := s.peer.signal()
	if vs, ok := sig.(VideoSignal); ok {
		vs.VideoStatus(publisher, v.d.fwd.streamID, paused, pausedFor)
		return
	}
	sig.StreamStatus(publisher, v.d.fwd.streamID, protocol.StreamPlaying, pausedFor)
}
