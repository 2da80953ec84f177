package sfu

import "sync"

// queued is one packet for one of a subscriber's tracks.
type queued struct {
	d *downTrack
	p *packet
}

// sendQueue is a subscriber's bounded packet queue: many producers (the
// forwarders of the tracks it receives, its NACK handler), one consumer (its
// writer goroutine). A producer wakes the writer only when it asks to, at the
// end of a frame: the writer then runs once per frame rather than once per
// packet, and sends the frame in one system call. A full queue refuses the
// packet, so a slow subscriber loses its own packets and never holds up the
// forwarder.
type sendQueue struct {
	mu   sync.Mutex
	ring []queued
	head int
	n    int
	// wake holds one pending wake-up for the writer.
	wake chan struct{}
}

func newSendQueue(size int) *sendQueue {
	return &sendQueue{ring: make([]queued, size), wake: make(chan struct{}, 1)}
}

// push adds q, and wakes the writer if asked; it reports false when the queue
// is full.
func (s *sendQueue) push(q queued, wake bool) bool {
	s.mu.Lock()
	if s.n == len(s.ring) {
		s.mu.Unlock()
		s.signal() // whatever is queued should go
		return false
	}
	i := s.head + s.n
	if i >= len(s.ring) {
		i -= len(s.ring)
	}
	s.ring[i] = q
	s.n++
	s.mu.Unlock()
	if wake {
		s.signal()
	}
	return true
}

// signal wakes the writer (or leaves it a wake-up if it is busy).
func (s *sendQueue) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// drain moves queued packets to dst, in order, up to its capacity, and
// returns it.
func (s *sendQueue) drain(dst []queued) []queued {
	s.mu.Lock()
	for s.n > 0 && len(dst) < cap(dst) {
		dst = append(dst, s.ring[s.head])
		s.ring[s.head] = queued{}
		s.head++
		if s.head == len(s.ring) {
			s.head = 0
		}
		s.n--
	}
	s.mu.Unlock()
	return dst
}
