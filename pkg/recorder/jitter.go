package recorder

import "time"

// jbPacket is one received RTP packet owned by the recorder.
type jbPacket struct {
	ssrc    uint32
	seq     uint16
	ext     int64 // extended (unwrapped) sequence number
	ts      uint32
	marker  bool
	padding bool // padding only: holds a sequence number, carries nothing
	payload []byte
	arrival time.Time
}

// jitterBuffer puts one SSRC's packets back in sequence order. A missing
// packet is waited for until the first packet held after it is maxWait old
// (by arrival time), then given up as lost. It holds at most len(slots)
// packets; a sequence jump beyond that flushes it. The first packets of a
// sequence are held for maxWait too, so that one sent before the first to
// arrive (reordered, or resent after a NACK) becomes the start instead of
// being dropped as late: the first keyframe and the first audio frame are
// as safe as any other.
type jitterBuffer struct {
	slots   []*jbPacket
	mask    int64
	maxWait time.Duration

	started bool
	primed  bool      // releasing: the start hold is over
	startAt time.Time // arrival of the first packet
	next    int64     // next sequence number to release
	highest int64     // highest sequence number seen
	held    int

	late, dup, lost uint64
}

func newJitterBuffer(size int, maxWait time.Duration) *jitterBuffer {
	n := 1
	for n < size {
		n <<= 1
	}
	return &jitterBuffer{slots: make([]*jbPacket, n), mask: int64(n - 1), maxWait: maxWait}
}

// unwrap extends a 16-bit sequence number next to the highest one seen.
func (j *jitterBuffer) unwrap(seq uint16) int64 {
	if !j.started {
		return int64(seq) + 1<<32 // far from zero so that going back never goes negative
	}
	return j.highest + int64(int16(seq-uint16(j.highest)))
}

// push stores p (p.ext must come from unwrap). It reports false when p is
// not kept (late, duplicate); the caller then still owns p. release is called
// for every packet that leaves the buffer, in order; lost tells that packets
// before it were given up.
func (j *jitterBuffer) push(p *jbPacket, release func(p *jbPacket, lost bool)) bool {
	if !j.started {
		j.started, j.primed, j.startAt = true, false, p.arrival
		j.next, j.highest = p.ext, p.ext
	}
	if !j.primed && p.ext < j.next && j.highest-p.ext < int64(len(j.slots)) {
		j.next = p.ext // sent before the first to arrive: the sequence starts here
	}
	if p.ext < j.next && j.next-p.ext <= int64(len(j.slots)) {
		j.late++
		return false
	}
	if p.ext-j.next >= int64(len(j.slots)) || p.ext < j.next {
		// A jump further than the buffer holds (either way: a sender that
		// restarted its sequence): release what is held and restart there.
		j.drain(release)
		j.next = p.ext
		j.highest = p.ext
		j.lost++
		j.slots[p.ext&j.mask] = p
		j.held = 1
		j.primed = true // a restarted sequence is not held: what came before is gone
		j.pop(p.arrival, release, true)
		return true
	}
	slot := &j.slots[p.ext&j.mask]
	if *slot != nil {
		j.dup++
		return false
	}
	*slot = p
	j.held++
	if p.ext > j.highest {
		j.highest = p.ext
	}
	return true
}

// pop releases what is ready at time now. lostFirst marks the first release as after a loss.
func (j *jitterBuffer) pop(now time.Time, release func(*jbPacket, bool), lostFirst bool) {
	if !j.primed {
		if now.Sub(j.startAt) < j.maxWait {
			return
		}
		j.primed = true
	}
	lost := lostFirst
	for j.held > 0 {
		s := j.slots[j.next&j.mask]
		if s != nil && s.ext == j.next {
			j.slots[j.next&j.mask] = nil
			j.held--
			j.next++
			release(s, lost)
			lost = false
			continue
		}
		// A gap at next: wait for it unless the first packet after it is too old.
		first := j.firstHeld()
		if first == nil {
			j.held = 0 // cannot happen; keep the invariant
			return
		}
		if now.Sub(first.arrival) < j.maxWait {
			return
		}
		j.lost += uint64(first.ext - j.next)
		j.next = first.ext
		lost = true
	}
}

// drain releases everything held, giving up every gap.
func (j *jitterBuffer) drain(release func(*jbPacket, bool)) {
	lost := false
	for j.held > 0 {
		s := j.slots[j.next&j.mask]
		if s != nil && s.ext == j.next {
			j.slots[j.next&j.mask] = nil
			j.held--
			release(s, lost)
			lost = false
		} else {
			lost = true
			j.lost++
		}
		j.next++
	}
}

func (j *jitterBuffer) firstHeld() *jbPacket {
	for e := j.next; e <= j.highest; e++ {
		if s := j.slots[e&j.mask]; s != nil && s.ext == e {
			return s
		}
	}
	return nil
}

// reset forgets the sequence (a new SSRC); the buffer must be drained first.
func (j *jitterBuffer) reset() {
	for i := range j.slots {
		j.slots[i] = nil
	}
	j.started, j.primed = false, false
	j.held = 0
}
