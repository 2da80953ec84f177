// Package queue provides a bounded first-in first-out queue that is safe for
// many producers and one consumer, and that allocates only as it fills: an
// idle queue of a large bound costs a few dozen bytes, not the bound.
//
// The media plane queues packets to each subscriber and the signaling hub
// queues messages to each session with it; thousands of mostly idle queues
// then cost little memory (docs/performance.md).
package queue

import "sync"

// minCap is the capacity a queue starts with once something is pushed.
const minCap = 8

// FIFO is a bounded queue. The zero value is not usable; call New.
type FIFO[T any] struct {
	mu     sync.Mutex
	ring   []T
	head   int
	n      int
	limit  int
	closed bool
}

// New returns an empty queue that holds at most limit items (at least one).
func New[T any](limit int) *FIFO[T] {
	return &FIFO[T]{limit: max(limit, 1)}
}

// Limit returns the most items the queue holds.
func (q *FIFO[T]) Limit() int { return q.limit }

// Push appends v. It reports false, and keeps nothing, when the queue holds
// its limit or is closed.
func (q *FIFO[T]) Push(v T) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.n == q.limit {
		return false
	}
	if q.n == len(q.ring) {
		q.grow()
	}
	i := q.head + q.n
	if i >= len(q.ring) {
		i -= len(q.ring)
	}
	q.ring[i] = v
	q.n++
	return true
}

// grow doubles the ring (up to the limit), keeping the order.
func (q *FIFO[T]) grow() {
	ring := make([]T, min(max(2*len(q.ring), minCap), q.limit))
	k := copy(ring, q.ring[q.head:])
	copy(ring[k:], q.ring[:q.head])
	q.ring, q.head = ring, 0
}

// Drain moves queued items to dst, oldest first, until dst is full (its
// capacity) or the queue is empty, and returns dst.
func (q *FIFO[T]) Drain(dst []T) []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.popLocked(dst, cap(dst)-len(dst))
}

// popLocked moves up to n queued items to dst, oldest first.
func (q *FIFO[T]) popLocked(dst []T, n int) []T {
	var zero T
	for ; q.n > 0 && n > 0; n-- {
		dst = append(dst, q.ring[q.head])
		q.ring[q.head] = zero
		q.head++
		if q.head == len(q.ring) {
			q.head = 0
		}
		q.n--
	}
	return dst
}

// Len returns how many items are queued.
func (q *FIFO[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Close refuses every later Push and returns what was queued, oldest first,
// appended to dst; the queue lets go of its memory.
func (q *FIFO[T]) Close(dst []T) []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	dst = q.popLocked(dst, q.n)
	q.ring, q.head = nil, 0
	return dst
}
