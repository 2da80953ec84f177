package client

import "sync"

// queue feeds an output channel from an unbounded list, so that a producer (the
// WebSocket reader) never blocks and a slow consumer never loses an item.
type queue[T any] struct {
	out    chan T
	notify chan struct{} // one pending wake-up of run
	stop   chan struct{} // closed by abort: run returns at once

	mu       sync.Mutex
	items    []T
	finished bool // no more pushes; run closes out once items are delivered
	stopOnce sync.Once
}

func newQueue[T any](buffer int) *queue[T] {
	return &queue[T]{
		out:    make(chan T, buffer),
		notify: make(chan struct{}, 1),
		stop:   make(chan struct{}),
	}
}

// push appends an item; it never blocks. Pushes after finish are dropped.
func (q *queue[T]) push(v T) {
	q.mu.Lock()
	if q.finished {
		q.mu.Unlock()
		return
	}
	q.items = append(q.items, v)
	q.mu.Unlock()
	q.wake()
}

// finish lets run close the output channel once every queued item was delivered.
func (q *queue[T]) finish() {
	q.mu.Lock()
	q.finished = true
	q.mu.Unlock()
	q.wake()
}

// abort makes run close the output channel now, dropping what is still queued.
func (q *queue[T]) abort() { q.stopOnce.Do(func() { close(q.stop) }) }

func (q *queue[T]) wake() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// run moves items to the output channel until finish (and delivery) or abort.
func (q *queue[T]) run() {
	defer close(q.out)
	for {
		q.mu.Lock()
		if len(q.items) == 0 {
			done := q.finished
			q.items = nil // release the backing array
			q.mu.Unlock()
			if done {
				return
			}
			select {
			case <-q.notify:
				continue
			case <-q.stop:
				return
			}
		}
		v := q.items[0]
		q.mu.Unlock()
		select {
		case q.out <- v:
			q.mu.Lock()
			var zero T
			q.items[0] = zero
			q.items = q.items[1:]
			q.mu.Unlock()
		case <-q.stop:
			return
		}
	}
}
