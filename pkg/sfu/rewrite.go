package sfu

// Sequence numbers and timestamps per subscriber.
//
// A downTrack numbers what it sends itself: its sequence numbers are the
// publisher's plus an offset of its own, which shrinks by one each time the
// SFU leaves a packet out (a padding-only probe, later a packet of a layer
// this subscriber does not receive, or of a paused video), so the receiver
// sees no gap where nothing was lost. A packet lost before it reached the
// downTrack (upstream, or on a full queue) keeps its place: the receiver
// sees that gap, NACKs it, and the NACK is mapped back to the publisher's
// number and answered from the track's shared history. Timestamps carry an
// offset too, constant for as long as the downTrack follows one source.
//
// The mapping is kept as a short list of points, each saying "from this
// publisher sequence number on, add this offset": a packet that arrives late
// (it fills a gap) is numbered with the offset that was in force where it
// belongs, and a NACKed number is found by the same points read from the
// other side. A rewriter belongs to its downTrack's writer: no locks.

// rewritePoints is how many offset changes a downTrack remembers: a late
// packet or a NACK older than the oldest is not placed (about 2 s of a video
// that has padding after every frame; far more otherwise).
const rewritePoints = 64

// holeWindow is how far back (in publisher sequence numbers) a late packet
// may fill a gap.
const holeWindow = 64

// seqBase keeps extended sequence numbers far from zero.
const seqBase = 1 << 32

// offsetPoint says that from inStart up to inEnd (extended publisher
// sequence numbers of src), a packet's number is in + seqOff and its
// timestamp ts + tsOff. The newest point is open (inEnd 0: up to the newest
// packet); a point is closed where a packet was left out, a packet inserted
// or the source left, so an outgoing number that maps past its end is one
// the SFU inserted, never a publisher's packet.
type offsetPoint struct {
	src     *forwarder
	inStart int64
	inEnd   int64
	seqOff  int64
	tsOff   uint32
}

// outStart is the first outgoing sequence number the point numbers.
func (p *offsetPoint) outStart() int64 { return p.inStart + p.seqOff }

// rewriter numbers one downTrack's packets.
type rewriter struct {
	started bool
	src     *forwarder // the source followed now
	highIn  int64      // newest sequence number of src handled (sent or left out)
	missing uint64     // bit i: highIn-1-i has not been seen (a gap a late packet may fill)
	seqOff  int64
	tsOff   uint32
	sent    bool   // something was sent: lastOut and lastTS are set
	lastOut int64  // newest sequence number sent
	lastTS  uint32 // its timestamp

	points [rewritePoints]offsetPoint
	np     int // points kept
	head   int // index of the newest
}

// verdict is what the rewriter makes of a packet.
type verdict uint8

const (
	// drop: send nothing (left out, a duplicate, or too late to place).
	drop verdict = iota
	// send: send it with the numbers given.
	send
	// fill: a late packet that was to be left out, arriving where the
	// receiver already sees a gap: send a padding-only packet there.
	fill
)

// start begins numbering at the packet seq, ts of src. The first start keeps
// the publisher's numbers. A later one continues the sequence numbers where
// the last packet sent left off; its timestamps keep their offset when the
// source is the same (the publisher's clock is the receiver's), and follow
// on elapsed clock ticks after the last packet's when it is another source
// (a simulcast layer, whose timestamps start elsewhere).
func (r *rewriter) start(src *forwarder, seq uint16, ts uint32, elapsed uint32) {
	in := int64(seq) + seqBase
	prev, prevHigh := r.src, r.highIn
	r.closeNewest(r.highIn + 1)
	r.started, r.src, r.highIn, r.missing = true, src, in-1, 0
	// The next number is the one after everything numbered so far, places
	// of packets still missing included (the receiver may yet NACK them).
	nextOut := max(r.lastOut, prevHigh+r.seqOff) + 1
	switch {
	case !r.sent:
		r.seqOff, r.tsOff = 0, 0
	case src == prev:
		r.seqOff = nextOut - in
	default:
		r.seqOff = nextOut - in
		r.tsOff = r.lastTS + max(elapsed, 1) - ts
	}
	r.push(offsetPoint{src: src, inStart: in, seqOff: r.seqOff, tsOff: r.tsOff})
}

// stop forgets the source: the next packet starts numbering again.
func (r *rewriter) stop() { r.started = false }

// push adds a point after closing the newest at p.inStart.
func (r *rewriter) push(p offsetPoint) {
	r.closeNewest(p.inStart)
	if r.np > 0 {
		r.head = (r.head + 1) % rewritePoints
	}
	r.points[r.head] = p
	r.np = min(r.np+1, rewritePoints)
}

// closeNewest ends the newest point at end, if it is open.
func (r *rewriter) closeNewest(end int64) {
	if p := r.newest(); r.np > 0 && p.inEnd == 0 {
		p.inEnd = end
	}
}

// newest returns the newest point.
func (r *rewriter) newest() *offsetPoint { return &r.points[r.head] }

// unwrap extends a sequence number of the source next to the newest one.
func (r *rewriter) unwrap(seq uint16) int64 {
	return r.highIn + int64(int16(seq-uint16(r.highIn)))
}

// next numbers the packet seq, ts of the source followed; leaveOut says the
// SFU does not send it (padding only). It returns the outgoing numbers and
// what to do.
func (r *rewriter) next(seq uint16, ts uint32, leaveOut bool) (uint16, uint32, verdict) {
	in := r.unwrap(seq)
	d := in - r.highIn
	switch {
	case d > 0:
		if d > 64 {
			r.missing = ^uint64(0)
		} else {
			r.missing = r.missing<<d | (uint64(1)<<(d-1) - 1)
		}
		r.highIn = in
		if leaveOut {
			r.lastTS = ts + r.tsOff // what an inserted packet is stamped with
			r.seqOff--
			if p := r.newest(); p.src == r.src && p.inStart == in && p.inEnd == 0 {
				// Nothing was numbered since the last point: move it on.
				p.inStart, p.seqOff = in+1, r.seqOff
			} else {
				r.closeNewest(in)
				r.push(offsetPoint{src: r.src, inStart: in + 1, seqOff: r.seqOff, tsOff: r.tsOff})
			}
			return 0, 0, drop
		}
		r.sent, r.lastOut, r.lastTS = true, in+r.seqOff, ts+r.tsOff
		return uint16(r.lastOut), r.lastTS, send
	case d == 0 || -d > holeWindow:
		return 0, 0, drop
	}
	bit := uint64(1) << (-d - 1)
	if r.missing&bit == 0 {
		return 0, 0, drop // a duplicate
	}
	r.missing &^= bit
	p := r.pointAt(in)
	if p == nil {
		return 0, 0, drop
	}
	v := send
	if leaveOut {
		v = fill
	}
	out := in + p.seqOff
	r.lastOut = max(r.lastOut, out)
	return uint16(out), ts + p.tsOff, v
}

// insert numbers a packet the SFU adds after everything numbered so far
// (padding that probes the subscriber's link): the number the next packet
// in order would have had (after the places of missing ones too), the last
// timestamp. Later packets move on by one. It fails before numbering
// started.
func (r *rewriter) insert() (uint16, uint32, bool) {
	if !r.started {
		return 0, 0, false
	}
	r.sent = true
	out := r.highIn + 1 + r.seqOff
	r.seqOff++
	if p := r.newest(); p.src == r.src && p.inStart == r.highIn+1 && p.inEnd == 0 {
		p.seqOff = r.seqOff // nothing numbered since it began: its numbers move on
	} else {
		r.push(offsetPoint{src: r.src, inStart: r.highIn + 1, seqOff: r.seqOff, tsOff: r.tsOff})
	}
	r.lastOut = out
	return uint16(out), r.lastTS, true
}

// pointAt returns the point in force at in (of the current source), or nil.
func (r *rewriter) pointAt(in int64) *offsetPoint {
	for i := range r.np {
		p := &r.points[(r.head-i+rewritePoints)%rewritePoints]
		if p.src != r.src {
			return nil
		}
		if p.inStart <= in {
			if p.inEnd != 0 && in >= p.inEnd {
				return nil // a packet left out
			}
			return p
		}
	}
	return nil
}

// lookup maps an outgoing sequence number (a subscriber's NACK) to the
// source and publisher sequence number it was sent for, with the timestamp
// offset it was sent with. It fails for a number not sent yet, one the SFU
// inserted, or one older than the points kept.
func (r *rewriter) lookup(out uint16) (src *forwarder, in uint16, tsOff uint32, ok bool) {
	if !r.sent {
		return nil, 0, 0, false
	}
	ext := r.lastOut + int64(int16(out-uint16(r.lastOut)))
	if ext > r.lastOut {
		return nil, 0, 0, false
	}
	for i := range r.np {
		p := &r.points[(r.head-i+rewritePoints)%rewritePoints]
		if p.outStart() > ext {
			continue
		}
		in := ext - p.seqOff
		if end := p.inEnd; (end != 0 && in >= end) || (end == 0 && in > r.highIn) {
			return nil, 0, 0, false // not a publisher's packet
		}
		return p.src, uint16(in), p.tsOff, true
	}
	return nil, 0, 0, false
}
