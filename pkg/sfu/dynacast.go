package sfu

import (
	"sync"
	"time"

	"github.com/parley/parley/pkg/protocol"
)

// Layers nobody receives are switched off at the publisher. A phone that
// publishes three simulcast layers into a room whose receivers all show it
// in small tiles need not encode its 720p layer: every layerTick the room
// works out, for each simulcast track, the highest layer any receiver's
// tile needs (the layer the allocation would pick with bandwidth to spare:
// the smallest at least as large as the tile; the top one for a receiver
// that never said its tile's size; none for a hidden tile), and tells the
// publisher (LayerSignal) which layers are wanted. A layer goes inactive once
// no one has needed it for layerIdle, and active again as soon as someone
// does: a receiver that enlarges a tile waits only for the publisher to
// start the layer (a keyframe). A receiver's bandwidth does not count (its
// allocation chooses among what arrives; a weak receiver with a large tile
// keeps the top layer on, as LiveKit's dynacast does), the lowest layer is
// never switched off, and while anything but receivers takes the track (the
// recorder, a live broadcast's tap) every layer stays on.

const (
	layerTick = 500 * time.Millisecond
	layerIdle = 5 * time.Second
)

// LayerSignal is implemented by a Signal that can tell a publisher which
// simulcast layers of its stream anyone receives.
type LayerSignal interface {
	PublishLayers(streamID string, layers []protocol.LayerState)
}

// layerControl is a room session's switching of simulcast layers.
type layerControl struct {
	r     *Router
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	state map[*forwarder]*layerUse // by primary forwarder; only its goroutine uses it
}

// layerUse is what a publisher was told of one simulcast track.
type layerUse struct {
	rids     []string
	active   []bool
	idleFrom []time.Time // when each layer was last needed by no one (zero: needed)
}

func newLayerControl(r *Router) *layerControl {
	lc := &layerControl{r: r, stop: make(chan struct{}), done: make(chan struct{}), state: make(map[*forwarder]*layerUse)}
	go lc.run()
	return lc
}

func (lc *layerControl) run() {
	defer close(lc.done)
	t := time.NewTicker(layerTick)
	defer t.Stop()
	for {
		select {
		case <-lc.stop:
			return
		case now := <-t.C:
			lc.tick(now)
		}
	}
}

func (lc *layerControl) close() {
	lc.once.Do(func() { close(lc.stop) })
	<-lc.done
}

// tick decides every simulcast track's layers and tells their publishers
// what changed.
func (lc *layerControl) tick(now time.Time) {
	peers := lc.r.peerList()
	seen := make(map[*forwarder]bool)
	for _, pub := range peers {
		for _, publ := range pub.publications() {
			for _, primary := range publ.tracks() {
				layers := primary.layers.list()
				if len(layers) < 2 || primary.isClosed() {
					continue
				}
				seen[primary] = true
				lc.decide(publ, primary, layers, peers, now)
			}
		}
	}
	for f := range lc.state {
		if !seen[f] {
			delete(lc.state, f)
		}
	}
}

// decide works out one track's layers.
func (lc *layerControl) decide(publ *publication, primary *forwarder, layers []*forwarder, peers []*Peer, now time.Time) {
	need := 0 // the lowest layer is always on
	if tapped(layers) {
		need = len(layers) - 1
	} else {
		for _, p := range peers {
			if p == publ.peer || p.sub == nil {
				continue
			}
			need = max(need, p.sub.layerNeed(primary, layers))
			if need == len(layers)-1 {
				break
			}
		}
	}
	u := lc.state[primary]
	if u == nil || len(u.rids) != len(layers) {
		u = &layerUse{rids: make([]string, len(layers)), active: make([]bool, len(layers)), idleFrom: make([]time.Time, len(layers))}
		for i, f := range layers {
			u.rids[i], u.active[i] = f.rid, true // a publisher starts with every layer on
		}
		lc.state[primary] = u
	}
	changed := false
	for i := range layers {
		switch {
		case i <= need:
			u.idleFrom[i] = time.Time{}
			if !u.active[i] {
				u.active[i], changed = true, true
			}
		case u.idleFrom[i].IsZero():
			u.idleFrom[i] = now
		case u.active[i] && now.Sub(u.idleFrom[i]) >= layerIdle:
			u.active[i], changed = false, true
		}
	}
	if !changed {
		return
	}
	states := make([]protocol.LayerState, len(layers))
	for i := range layers {
		states[i] = protocol.LayerState{RID: u.rids[i], Active: u.active[i]}
	}
	publ.log.Info("simulcast layers", "stream", primary.streamID, "layers", states)
	if ls, ok := publ.peer.signal().(LayerSignal); ok {
		ls.PublishLayers(primary.streamID, states)
	}
}

// tapped reports whether anything but subscribers takes a layer of the
// track (the recorder, a live broadcast's tap): they follow the best layer
// arriving, so every layer stays on.
func tapped(layers []*forwarder) bool {
	for _, f := range layers {
		if f.rec.Load() != nil {
			return true
		}
		for _, s := range *f.sinks.Load() {
			if _, ok := s.(*downTrack); !ok {
				return true
			}
		}
	}
	return false
}

// layerNeed is the index in layers of the highest layer the subscriber's
// tile of the track needs: the smallest layer at least as large as the tile
// (the top one when the tile's size is not known, or larger than every
// layer, or a layer's size is not known: sizes are read from keyframes of
// the codecs that carry them); -1 when it does not receive the track or
// hides its tile.
func (s *subscriber) layerNeed(primary *forwarder, layers []*forwarder) int {
	s.mu.Lock()
	d := s.tracks[primary]
	t := s.alloc.tiles[primary.streamID]
	closed := s.closed
	s.mu.Unlock()
	if closed || d == nil || t.hidden {
		return -1
	}
	need, sized := tileNeeds(t, layers)
	if !sized {
		return len(layers) - 1
	}
	return need
}
