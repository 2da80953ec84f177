package sfu

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/codec"
)

// Temporal layers. A VP8 or VP9 encoder with temporal scalability (a
// browser's L1T2/L1T3, a Go client's libvpx stream with ts_layering_mode)
// codes its frames in layers: the base layer (TID 0) references only base
// frames, layer 1 only layers 0 and 1, and so on, so a receiver can be left
// the higher layers' frames and still decode every frame it gets, at a
// fraction of the frame rate and the bitrate (with three layers: a quarter
// of the frames at TID 0, half up to TID 1). The payload descriptor carries
// each frame's TID and whether a receiver may start taking a higher layer
// at it (VP8's Y, VP9's U).
//
// The forwarder's reader parses the descriptor once per packet (packet.desc)
// and measures each layer's bitrate and frame rate. The allocation (alloc.go)
// caps a downTrack at a temporal layer (downTrack.tcap) when the full stream
// does not fit the subscriber's estimate, before it pauses the video. The
// subscriber's writer applies the cap at frame starts: down at once (leaving
// out higher layers is always decodable), up at a frame of a higher layer
// that says it is a switching point, or at a keyframe. Left-out packets take
// no sequence numbers (rewrite.go), and picture ids are moved down by the
// pictures left out, so the receiver sees neither a gap nor a missing picture
// (libwebrtc's VP8 and VP9 reference finders wait for a missing picture id).

// describedCodec is the payload descriptor a forwarder's reader parses.
type describedCodec uint8

const (
	describeNone describedCodec = iota
	describeVP8
	describeVP9
	// describeAV1: AV1's layers are in the dependency descriptor header
	// extension, when the publisher negotiated it (spatial.go).
	describeAV1
)

func describedCodecOf(mime string) describedCodec {
	switch strings.ToLower(mime) {
	case "video/vp8":
		return describeVP8
	case "video/vp9":
		return describeVP9
	}
	return describeNone
}

// describe parses a packet's payload descriptor, or its dependency
// descriptor (zero when it is malformed). Only the reader calls it.
func (f *forwarder) describe(p *packet) codec.Descriptor {
	var d codec.Descriptor
	var ok bool
	switch f.described {
	case describeVP8:
		d, ok = codec.ParseVP8(p.payload)
	case describeVP9:
		d, ok = codec.ParseVP9(p.payload)
	case describeAV1:
		d, ok = f.describeAV1(p)
	}
	if !ok {
		return codec.Descriptor{}
	}
	return d
}

// maxTemporal bounds temporal layer ids (VP9's TID has 3 bits).
const maxTemporal = 8

// allTemporal is a downTrack's cap when it takes every temporal layer.
const allTemporal = maxTemporal - 1

// temporalRates measures a track's temporal layers: the reader counts, and
// at the end of each rate window stores each layer's bitrate and frame rate.
type temporalRates struct {
	bytes  [maxTemporal]int // the reader's, this window
	frames [maxTemporal]int
	seen   int // highest TID + 1 seen this window

	rate   [maxTemporal]atomic.Int64 // bit/s, headers included
	fps    [maxTemporal]atomic.Int64 // frames per 1000 s
	layers atomic.Int32              // temporal layers in the last window (0: no layer ids)
}

// count adds a packet (the reader's).
func (t *temporalRates) count(p *packet) {
	if !p.desc.HasTID {
		return
	}
	tid := int(p.desc.TID)
	t.bytes[tid] += p.n
	if p.desc.Start {
		t.frames[tid]++
	}
	t.seen = max(t.seen, tid+1)
}

// measure ends a window of el (the reader's).
func (t *temporalRates) measure(el time.Duration) {
	for i := range maxTemporal {
		r := int64(float64(t.bytes[i]*8) / el.Seconds())
		if old := t.rate[i].Load(); old > 0 && r > 0 {
			r = (old + r) / 2
		}
		t.rate[i].Store(r)
		fps := int64(float64(t.frames[i]*1000) / el.Seconds())
		if old := t.fps[i].Load(); old > 0 && fps > 0 {
			fps = (old + fps) / 2 // a window holds a few frames of a layer: smooth
		}
		t.fps[i].Store(fps)
		t.bytes[i], t.frames[i] = 0, 0
	}
	t.layers.Store(int32(t.seen))
	t.seen = 0
}

// temporalLayers is how many temporal layers the track has (0 or 1: none
// to leave out).
func (f *forwarder) temporalLayers(now time.Time) int {
	if f.bitrate(now) == 0 {
		return 0
	}
	return int(f.temporal.layers.Load())
}

// rateUpTo is the track's bitrate with the temporal layers up to tid.
func (f *forwarder) rateUpTo(tid int, now time.Time) int {
	if tid >= f.temporalLayers(now)-1 {
		return f.bitrate(now)
	}
	r := int64(0)
	for i := 0; i <= tid; i++ {
		r += f.temporal.rate[i].Load()
	}
	return int(r)
}

// frameRateUpTo is the track's frame rate with the temporal layers up to
// tid (0 without layer ids).
func (f *forwarder) frameRateUpTo(tid int) float64 {
	r := int64(0)
	for i := 0; i <= min(tid, maxTemporal-1); i++ {
		r += f.temporal.fps[i].Load()
	}
	return float64(r) / 1000
}

// picShift is a picture id's shift, remembered so that a late packet or a
// retransmission of a picture is sent with the id it was sent with.
type picShift struct {
	in  uint16
	off int32
	ok  bool
}

// temporalState is a downTrack's temporal layer selection, its writer's.
type temporalState struct {
	cur     uint8 // the highest temporal layer sent now
	skipped int   // pictures left out since the newest one sent
	// newest is the newest picture id seen (sent or left out), when
	// haveNewest: only a newer one is a picture left out, or a new one.
	newest     uint16
	haveNewest bool
	picOff     int32 // added to the picture ids of new pictures
	recent     [32]picShift
	next       int
}

// ahead reports whether the picture id of d is newer than any seen, and
// makes it the newest.
func (t *temporalState) ahead(d *codec.Descriptor) bool {
	mod := uint16(0x80)
	if d.PicLong {
		mod = 0x8000
	}
	diff := (d.PicID - t.newest) & (mod - 1)
	if t.haveNewest && (diff == 0 || diff >= mod/2) {
		return false
	}
	t.newest, t.haveNewest = d.PicID, true
	return true
}

// reset starts again (the downTrack starts on a source, at a keyframe).
func (t *temporalState) reset(cap uint8) {
	*t = temporalState{cur: cap}
}

// leaveOut applies the downTrack's cap to p, the packet about to be
// numbered: it reports whether p belongs to a layer above it. first says p
// starts the downTrack on its source (a keyframe).
func (d *downTrack) leaveOut(p *packet, first bool) bool {
	t := &d.tl
	if first {
		t.reset(uint8(d.tcap.Load()))
		d.startSpatial()
	}
	if !p.desc.HasTID || p.padding {
		return false
	}
	if d.leaveOutSpatial(p) {
		return true // the picture's lower layers are sent: its id is not left out
	}
	tid := p.desc.TID
	if p.desc.Start {
		want := uint8(d.tcap.Load())
		switch {
		case p.keyframe || want < t.cur:
			t.cur = want
		case want > t.cur && tid > t.cur && tid <= want && p.desc.Sync:
			t.cur = tid // a switching point: it references only layers below
		}
	}
	if tid <= t.cur || p.keyframe {
		return false
	}
	if p.desc.PicAt != 0 && t.ahead(&p.desc) {
		t.skipped++
	}
	return true
}

// payloadFor is p's payload as the downTrack sends it: with the picture id
// moved down by the pictures left out before it (in the downTrack's
// buffer), or p's
// own when there is nothing to move. fresh says p is sent for the first
// time (not a retransmission): a picture not seen yet then takes the ids
// left out before it.
func (d *downTrack) payloadFor(p *packet, fresh bool) []byte {
	if p.desc.PicAt == 0 || p.padding {
		return p.payload
	}
	t := &d.tl
	off, found := int32(0), false
	for i := range len(t.recent) { // newest first: most packets are of the newest picture
		if r := &t.recent[(t.next-1-i+len(t.recent))%len(t.recent)]; r.ok && r.in == p.desc.PicID {
			off, found = r.off, true
			break
		}
	}
	if !found {
		if fresh && t.ahead(&p.desc) {
			t.picOff -= int32(t.skipped)
			t.skipped = 0
			t.recent[t.next] = picShift{in: p.desc.PicID, off: t.picOff, ok: true}
			t.next = (t.next + 1) % len(t.recent)
		}
		off = t.picOff
	}
	if off == 0 {
		return p.payload
	}
	b := d.payloadBuf[:len(p.payload)]
	copy(b, p.payload)
	codec.PutPicID(b, p.desc.PicAt, p.desc.PicLong, codec.PicIDAdd(p.desc.PicID, int(off), p.desc.PicLong))
	return b
}
