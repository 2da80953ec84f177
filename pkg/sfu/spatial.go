package sfu

import (
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/pkg/codec"
	"github.com/parley/parley/pkg/codec/av1dd"
)

// Spatial layers. A VP9 encoder with spatial scalability (a browser's
// L3T3_KEY, L2T3_KEY, L3T3) codes each picture as a layer frame per spatial
// layer, lowest first, each twice the size of the one below, all with the
// picture's timestamp: the lowest alone is a small picture, each layer above
// adds detail on top of the ones below. No layer refers to one above it, so
// a receiver can be left the upper layers and still decode every picture it
// gets, smaller; in the _KEY structures an upper layer refers to the one
// below only at keyframes, and otherwise to its own earlier frames, so a
// receiver can take an upper layer again only from a keyframe. The payload
// descriptor carries each layer frame's spatial id (SID) and its begin and
// end bits; the keyframes carry the scalability structure (SS), which gives
// each layer's picture size.
//
// This is simulcast inside one track: the allocation (alloc.go) chooses,
// per subscriber, the highest spatial layer to send (downTrack.scap) the
// way it chooses a simulcast layer, from the layers' measured rates and
// sizes (rungs). The writer applies the choice at picture starts: down at
// once, up at a keyframe (the allocation asks the publisher for one). The
// layer frames above are left out, taking no sequence numbers (rewrite.go),
// and the last packet of the top layer frame sent is marked as the
// picture's end (the marker bit), as the publisher marked the last packet of
// its top layer: a receiver's frame assembly waits for it.

// maxSpatial bounds the spatial layers measured and chosen among (a browser
// sends at most three); a layer id above is counted with the top one.
const maxSpatial = 4

// allSpatial is a downTrack's spatial cap when it takes every layer.
const allSpatial = maxSpatial - 1

// spatialRates measures a track's spatial layers, per temporal layer: the
// reader counts, and at the end of each rate window stores each one's
// bitrate. The sizes come from the newest keyframe's scalability structure.
type spatialRates struct {
	bytes [maxSpatial][maxTemporal]int // the reader's, this window
	seen  int                          // highest SID + 1 seen this window

	rate   [maxSpatial][maxTemporal]atomic.Int64 // bit/s, headers included
	layers atomic.Int32                          // spatial layers in the last window (0 or 1: none to leave out)
	width  [maxSpatial]atomic.Int32              // from the scalability structure; 0: not known
	height [maxSpatial]atomic.Int32
}

// count adds a packet (the reader's).
func (s *spatialRates) count(p *packet) {
	if !p.desc.HasTID {
		return
	}
	sid := min(int(p.desc.SID), maxSpatial-1)
	s.bytes[sid][p.desc.TID] += p.n
	s.seen = max(s.seen, sid+1)
}

// measure ends a window of el (the reader's).
func (s *spatialRates) measure(el time.Duration) {
	for i := range s.seen {
		for j := range maxTemporal {
			r := int64(float64(s.bytes[i][j]*8) / el.Seconds())
			if old := s.rate[i][j].Load(); old > 0 && r > 0 {
				r = (old + r) / 2
			}
			s.rate[i][j].Store(r)
			s.bytes[i][j] = 0
		}
	}
	s.layers.Store(int32(s.seen))
	s.seen = 0
}

// sizes takes the layers' picture sizes from a keyframe's scalability
// structure (the reader's). It reports the top layer's size.
func (s *spatialRates) sizes(payload []byte) (w, h int, ok bool) {
	ss, err := codec.ParseVP9SS(payload)
	if err != nil || !ss.HasSize || ss.Layers < 1 {
		return 0, 0, false
	}
	n := min(ss.Layers, maxSpatial)
	for i := range n {
		s.width[i].Store(int32(ss.Width[i]))
		s.height[i].Store(int32(ss.Height[i]))
	}
	return int(ss.Width[ss.Layers-1]), int(ss.Height[ss.Layers-1]), true
}

// spatialLayers is how many spatial layers the track has (0 or 1: none to
// leave out).
func (f *forwarder) spatialLayers(now time.Time) int {
	if f.bitrate(now) == 0 {
		return 0
	}
	return int(f.spatial.layers.Load())
}

// rateOf is the track's bitrate with the spatial layers up to sid and, in
// each, the temporal layers up to tid.
func (f *forwarder) rateOf(sid, tid int, now time.Time) int {
	n := f.spatialLayers(now)
	if n <= 1 || sid >= n-1 {
		return f.rateUpTo(tid, now)
	}
	tid = min(tid, maxTemporal-1)
	r := int64(0)
	for i := 0; i <= sid; i++ {
		for j := 0; j <= tid; j++ {
			r += f.spatial.rate[i][j].Load()
		}
	}
	return int(r)
}

// rung is one step of what a subscriber may be sent of a published track,
// lowest first: a simulcast layer, or, in a track with spatial layers, the
// spatial layers up to sid (allSpatial: all there are).
type rung struct {
	f   *forwarder
	sid int
}

// rungs are the steps of the published track f stands for that are arriving
// now, lowest first: its simulcast layers, or its spatial layers when it has
// them and no simulcast.
func (f *forwarder) rungs(now time.Time) []rung {
	var out []rung
	layers := f.layers.list()
	if len(layers) == 1 {
		if n := layers[0].spatialLayers(now); n > 1 {
			for i := range n {
				out = append(out, rung{f: layers[0], sid: i})
			}
			out[n-1].sid = allSpatial
			return out
		}
	}
	for _, l := range layers {
		if l.bitrate(now) > 0 {
			out = append(out, rung{f: l, sid: allSpatial})
		}
	}
	return out
}

// rateUpTo is the rung's bitrate with the temporal layers up to tid.
func (r rung) rateUpTo(tid int, now time.Time) int { return r.f.rateOf(r.sid, tid, now) }

// size is the rung's picture size (0: not known).
func (r rung) size() (w, h int) {
	if r.sid < allSpatial {
		return int(r.f.spatial.width[r.sid].Load()), int(r.f.spatial.height[r.sid].Load())
	}
	return int(r.f.width.Load()), int(r.f.height.Load())
}

// spatialState is a downTrack's spatial layer selection, its writer's.
type spatialState struct {
	cur uint8 // the highest spatial layer sent now
}

// startSpatial takes the spatial cap as the downTrack starts on its source
// (at a keyframe), whether or not that packet's layer ids could be read.
func (d *downTrack) startSpatial() {
	d.sl.cur = uint8(d.scap.Load())
	d.ssent.Store(int32(d.sl.cur))
}

// leaveOutSpatial applies the downTrack's spatial cap to p, a packet of
// a stream with spatial layer ids: it reports whether p belongs to a layer
// above it.
func (d *downTrack) leaveOutSpatial(p *packet) bool {
	s := &d.sl
	if p.desc.Start {
		if want := uint8(d.scap.Load()); p.keyframe || want < s.cur {
			s.cur = want
			d.ssent.Store(int32(want))
		}
	}
	return p.desc.SID > s.cur
}

// endsPicture reports whether p, as d sends it, ends a picture: the
// publisher's marker, or the end of the top layer frame d sends.
func (d *downTrack) endsPicture(p *packet) bool {
	return p.hdr.Marker || p.desc.End && p.desc.HasTID && p.desc.SID == d.sl.cur
}

// spatialAskEvery is how often a downTrack waiting to go up a spatial layer
// asks the publisher for the keyframe it waits for again (one was lost, or
// the throttle dropped the request).
const spatialAskEvery = time.Second

// setSpatial makes sid the highest spatial layer d sends (the allocation's,
// under its lock). Going down takes effect at the next picture; going up
// waits for a keyframe, which it asks the publisher for.
func (d *downTrack) setSpatial(sid int, now time.Time) {
	old := int(d.scap.Swap(int32(sid)))
	sending := d.sending.Load()
	if sending == nil || sid <= int(d.ssent.Load()) {
		return
	}
	if old != sid || now.Sub(d.spatialAsked) >= spatialAskEvery {
		d.spatialAsked = now
		d.sub.log.Debug("spatial layer up", "track", d.fwd.id, "from", d.ssent.Load(), "to", sid)
		sending.requestKeyframe()
	}
}

// AV1's layers. An AV1 encoder's layer frames are described in the
// dependency descriptor header extension (pkg/codec/av1dd), not in the
// payload: a keyframe's packet carries the template structure (the layers,
// their resolutions, the decode targets), every packet its frame's
// template, hence its spatial and temporal layer, and whether it begins or
// ends its frame. The reader turns that into the descriptor VP9's payload
// gives, so the rest is the same: rates per layer, rungs, the writer's
// caps, the marker. A frame of a temporal layer is a switching point when
// its indication for its own decode target is Switch. Subscribers that
// negotiated the extension get the publisher's descriptor with each packet,
// as it is (downTrack.send): Chromium assembles and decodes a layered AV1
// stream by it, and decodes nothing of one without it. The frames left out
// leave gaps in its frame numbers, which no frame sent refers to.

// ddExtension returns the id a publish connection's receiver negotiated for
// the dependency descriptor header extension, 0 if none.
func ddExtension(recv *webrtc.RTPReceiver) uint8 {
	for _, x := range recv.GetParameters().HeaderExtensions {
		if x.URI == av1dd.URI && x.ID > 0 && x.ID < 256 {
			return uint8(x.ID)
		}
	}
	return 0
}

// describeDD makes an AV1 track's reader read its layers from the
// dependency descriptor, extension id ext (before the reader starts).
func (f *forwarder) describeDD(ext uint8) {
	if ext != 0 && strings.EqualFold(f.codec.MimeType, webrtc.MimeTypeAV1) {
		f.described, f.ddExt = describeAV1, ext
	}
}

// describeAV1 reads p's dependency descriptor (the reader's).
func (f *forwarder) describeAV1(p *packet) (codec.Descriptor, bool) {
	var d codec.Descriptor
	b := p.hdr.GetExtension(f.ddExt)
	if len(b) == 0 {
		return d, false
	}
	dd, err := f.dd.Read(b)
	if err != nil {
		return d, false
	}
	d.HasTID = true
	d.TID, d.SID = min(dd.Temporal, maxTemporal-1), dd.Spatial
	d.Begin, d.End = dd.StartOfFrame, dd.EndOfFrame
	d.Start = dd.StartOfFrame && dd.Spatial == 0
	if s := f.dd.Structure(); d.Start && dd.Temporal > 0 && s != nil {
		for i, l := range s.TargetLayers {
			if l == dd.Layer && i < len(dd.DTIs) {
				d.Sync = dd.DTIs[i] == av1dd.Switch
				break
			}
		}
	}
	return d, true
}

// sizesAV1 takes the layers' picture sizes from an AV1 stream's template
// structure. It reports the top layer's size.
func (s *spatialRates) sizesAV1(st *av1dd.Structure) (w, h int, ok bool) {
	if st == nil || len(st.Resolutions) == 0 {
		return 0, 0, false
	}
	for i, r := range st.Resolutions[:min(len(st.Resolutions), maxSpatial)] {
		s.width[i].Store(int32(r.Width))
		s.height[i].Store(int32(r.Height))
	}
	top := st.Resolutions[len(st.Resolutions)-1]
	return top.Width, top.Height, top.Width > 0 && top.Height > 0
}

// prefersAV1 reports whether a publish offer's video section puts AV1 first:
// the codec the answer will choose.
func prefersAV1(offer string) bool {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return false
	}
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media != "video" || len(m.MediaName.Formats) == 0 {
			continue
		}
		pt, err := strconv.ParseUint(m.MediaName.Formats[0], 10, 8)
		if err != nil {
			return false
		}
		c, ok := sectionCodecs(m)[uint8(pt)]
		return ok && strings.EqualFold(c.Name, "AV1")
	}
	return false
}
