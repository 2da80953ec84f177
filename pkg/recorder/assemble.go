package recorder

import (
	"encoding/binary"
	"time"

	parleycodec "github.com/parley/parley/pkg/codec"

	"github.com/pion/rtp/codecs"
)

// frameOut is one complete frame (video) or packet (audio) out of the assembler.
// data belongs to the assembler until the next push.
type frameOut struct {
	ts      uint32
	data    []byte
	key     bool
	gap     bool // frames may be missing before this one
	picID   int  // VP8/VP9 picture id, -1 when unknown
	arrival time.Time
	w, h    int
	// H.264 parameter sets of a keyframe; AV1 configuration record of a keyframe.
	sps, pps, av1c []byte
	// annexB is the H.264 access unit as received (for a file whose header
	// had to be written before any parameter set was seen).
	annexB []byte
}

// assembler turns in-order packets into frames: it depacketizes, joins the
// packets of one frame, and discards every frame a packet of which is lost.
type assembler struct {
	c        codec
	maxFrame int

	buf     []byte
	out     []byte
	open    bool
	broken  bool
	ts      uint32
	gap     bool
	picID   int
	arrival time.Time
	svc     vp9Layers

	vp8  codecs.VP8Packet
	vp9  codecs.VP9Packet
	h264 codecs.H264Packet
	av1  codecs.AV1Depacketizer
	nals [][]byte
	g711 *g711Table
}

func newAssembler(c codec, maxFrame int) *assembler {
	a := &assembler{c: c, maxFrame: maxFrame, picID: -1, svc: vp9Layers{top: -1}}
	switch c {
	case codecPCMU:
		a.g711 = ulawTable()
	case codecPCMA:
		a.g711 = alawTable()
	}
	return a
}

// loss tells the assembler that packets were lost before the next one.
func (a *assembler) loss() {
	if a.open {
		a.broken = true
	}
	a.gap = true
	a.h264 = codecs.H264Packet{}
	a.av1 = codecs.AV1Depacketizer{}
}

// abort drops a frame in progress (its end will never come).
func (a *assembler) abort() {
	if a.open {
		a.open = false
		a.gap = true
	}
}

// push adds the next packet in sequence order; emit gets each completed frame.
func (a *assembler) push(p *jbPacket, lost bool, emit func(*frameOut)) {
	if lost {
		a.loss()
	}
	if p.padding || len(p.payload) == 0 {
		return
	}
	if !a.c.video() {
		a.pushAudio(p, emit)
		return
	}
	if a.open && p.ts != a.ts {
		a.finish(emit) // the frame ended without a marker
	}
	data, start, picID, ok := a.depack(p.payload)
	if !ok {
		a.loss()
		return
	}
	if !a.open {
		if !start {
			a.gap = true // the middle of a frame whose start is lost
			return
		}
		a.open, a.ts, a.broken, a.picID = true, p.ts, false, picID
		a.buf = a.buf[:0]
		a.svc.offs, a.svc.sids = a.svc.offs[:0], a.svc.sids[:0]
		if lost && (a.c == codecH264 || a.c == codecAV1) {
			// Nothing in these payloads marks the first packet of a frame:
			// after a loss its first packets may be gone.
			a.broken = true
		}
	}
	if a.c == codecVP9 {
		if a.vp9.V {
			a.svc.top, a.svc.short = int(a.vp9.NS), 0
		}
		if a.vp9.B {
			a.svc.offs = append(a.svc.offs, len(a.buf))
			a.svc.sids = append(a.svc.sids, a.vp9.SID)
		}
	}
	if len(a.buf)+len(data) > a.maxFrame {
		a.broken = true
	} else {
		a.buf = append(a.buf, data...)
	}
	a.arrival = p.arrival
	if p.marker {
		a.finish(emit)
	}
}

func (a *assembler) pushAudio(p *jbPacket, emit func(*frameOut)) {
	f := frameOut{ts: p.ts, key: true, picID: -1, arrival: p.arrival, gap: a.gap}
	a.gap = false
	if a.g711 != nil {
		a.out = a.g711.decode(a.out[:0], p.payload)
		f.data = a.out
	} else {
		f.data = p.payload
	}
	emit(&f)
}

// depack returns a packet's part of the frame, whether it starts a frame and
// the picture id.
func (a *assembler) depack(payload []byte) (data []byte, start bool, picID int, ok bool) {
	picID = -1
	switch a.c {
	case codecVP8:
		d, err := a.vp8.Unmarshal(payload)
		if err != nil {
			return nil, false, -1, false
		}
		if a.vp8.I == 1 {
			picID = int(a.vp8.PictureID)
		}
		return d, a.vp8.S == 1 && a.vp8.PID == 0, picID, true
	case codecVP9:
		d, err := a.vp9.Unmarshal(payload)
		if err != nil {
			return nil, false, -1, false
		}
		if a.vp9.I {
			picID = int(a.vp9.PictureID)
		}
		return d, a.vp9.B && (!a.vp9.L || a.vp9.SID == 0), picID, true
	case codecH264:
		start = a.h264.IsPartitionHead(payload)
		d, err := a.h264.Unmarshal(payload)
		if err != nil {
			return nil, false, -1, false
		}
		return d, start, -1, true
	case codecAV1:
		start = a.av1.IsPartitionHead(payload)
		d, err := a.av1.Unmarshal(payload)
		if err != nil {
			return nil, false, -1, false
		}
		return d, start, -1, true
	}
	return nil, false, -1, false
}

func (a *assembler) finish(emit func(*frameOut)) {
	a.open = false
	if a.broken || len(a.buf) == 0 {
		a.gap = true
		return
	}
	f := frameOut{ts: a.ts, gap: a.gap, picID: a.picID, arrival: a.arrival}
	switch a.c {
	case codecVP8:
		f.data = a.buf
		f.key = a.buf[0]&0x01 == 0
		if f.key {
			w, h, ok := vp8Size(a.buf)
			if !ok {
				f.key = false
			}
			f.w, f.h = w, h
		}
	case codecVP9:
		f.data, f.key, f.w, f.h = a.vp9Picture()
	case codecH264:
		f.data = a.h264AVCC(&f)
		f.annexB = a.buf
	case codecAV1:
		f.data = a.av1Strip()
		f.key, f.av1c, f.w, f.h = av1Info(f.data)
	}
	if len(f.data) == 0 {
		a.gap = true
		return
	}
	a.gap = false
	emit(&f)
}

// vp9Picture returns the frame to store for a VP9 picture, whether it is a
// keyframe (its first layer frame is), and the size it shows (0 when it
// shows none). A picture of several layer frames (spatial layers) goes as a
// superframe (VP9 bitstream specification, annex B) in which every layer
// frame but the last is hidden (vp9svc.go): it shows one frame, the top
// layer's. A picture without the stream's top layer shows nothing (the
// frame before stays): see vp9Layers.shows.
func (a *assembler) vp9Picture() (data []byte, key bool, w, h int) {
	key, w, h = vp9Key(a.buf)
	l := &a.svc
	n := len(l.offs)
	if n == 0 || n > 8 {
		if f, ok := parseVP9Frame(a.buf, &l.refs); ok {
			f.update(&l.refs)
			l.note(&f)
		}
		return a.buf, key, w, h
	}
	show := l.shows(int(l.sids[n-1]))
	if !show {
		w, h = 0, 0
	}
	if n == 1 {
		f, ok := parseVP9Frame(a.buf, &l.refs)
		if !ok {
			return a.buf, key, w, h
		}
		f.update(&l.refs)
		l.note(&f)
		if !show && !l.fragile {
			if out, hidden := appendHidden(a.out[:0], a.buf, &f); hidden {
				a.out = out
				return a.out, key, 0, 0
			}
		}
		return a.buf, key, w, h
	}
	// Parse every layer frame first (in order: each may take its size
	// from a slot the one before refreshed), then hide what may be.
	var frames [8]vp9Frame
	var parsed [8]bool
	for i := range n {
		frames[i], parsed[i] = parseVP9Frame(l.layer(a.buf, i), &l.refs)
		if parsed[i] {
			frames[i].update(&l.refs)
			l.note(&frames[i])
		}
	}
	a.out = a.out[:0]
	var sizes [8]int
	for i := range n {
		lf := l.layer(a.buf, i)
		start := len(a.out)
		hidden := false
		if parsed[i] && (i+1 < n && parsed[i+1] && hideable(&frames[i], &frames[i+1]) || i+1 == n && !show && !l.fragile) {
			a.out, hidden = appendHidden(a.out, lf, &frames[i])
		}
		if !hidden {
			a.out = append(a.out, lf...)
		}
		sizes[i] = len(a.out) - start
	}
	if last := &frames[n-1]; show && key && parsed[n-1] && last.size.w > 0 {
		w, h = last.size.w, last.size.h
	}
	marker := byte(0xc0 | 3<<3 | byte(n-1))
	a.out = append(a.out, marker)
	for _, size := range sizes[:n] {
		a.out = binary.LittleEndian.AppendUint32(a.out, uint32(size))
	}
	a.out = append(a.out, marker)
	return a.out, key, w, h
}

// h264AVCC converts the Annex-B access unit to 4-byte length prefixed NAL
// units (Matroska's AVC format), noting SPS/PPS and IDR.
func (a *assembler) h264AVCC(f *frameOut) []byte {
	a.nals = parleycodec.AppendAnnexBNALs(a.nals[:0], a.buf)
	a.out = a.out[:0]
	for _, n := range a.nals {
		if len(n) == 0 {
			continue
		}
		switch n[0] & 0x1f {
		case 5:
			f.key = true
		case 7:
			f.sps = n
		case 8:
			f.pps = n
		case 9:
			continue // access unit delimiter: not stored
		}
		a.out = binary.BigEndian.AppendUint32(a.out, uint32(len(n)))
		a.out = append(a.out, n...)
	}
	if f.key && f.sps != nil {
		f.w, f.h, _ = spsSize(f.sps)
	}
	return a.out
}

// av1Strip drops temporal delimiter OBUs (Matroska blocks carry none).
func (a *assembler) av1Strip() []byte {
	a.out = a.out[:0]
	if !av1Walk(a.buf, func(typ byte, obu []byte) {
		if typ != 2 {
			a.out = append(a.out, obu...)
		}
	}) {
		return nil
	}
	return a.out
}
