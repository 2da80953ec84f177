package sfu

import (
	"sync"
	"sync/atomic"
	"time"
)

// queued is one packet for one of a subscriber's tracks.
type queued struct {
	d *downTrack
	p *packet
}

// writerPool runs every subscriber's writes on a few goroutines, one per
// CPU, instead of one goroutine per subscriber. A forwarder queues a frame
// to each of its subscribers and marks them ready on their writer (the
// subscriber's share of the pool); at the frame's end it wakes the writers
// once, not once per subscriber. A writer then writes the frame to every
// ready subscriber and flushes the media sockets once: a frame to 200
// subscribers costs a couple of wake-ups and a few sendmmsg calls, where one
// goroutine per subscriber cost 200 of each (docs/performance.md).
//
// This relies on writes that do not block: UDP goes to the batching socket
// (udp.go), which queues and sends without waiting on any one receiver;
// ICE-TCP goes to pion's bounded write buffer of each TCP connection
// (TCPMuxParams.WriteBufferSize in engine.go), which refuses a packet when
// full, a goroutine per TCP connection draining it into the socket. A slow
// subscriber loses its own packets, never the writer's time
// (pkg/server TestSlowSubscriberDoesNotReduceOthers stalls an ICE-TCP one).
type writerPool struct {
	workers []*writer
	next    atomic.Uint64
	flush   func()   // sends what the media sockets queued
	delay   Observer // forwarding delay, or nil
	done    chan struct{}
	wg      sync.WaitGroup
}

// writer is one goroutine of the pool and the subscribers ready on it.
type writer struct {
	pool *writerPool
	wake chan struct{} // one pending wake-up

	mu    sync.Mutex
	ready []*subscriber
}

func newWriterPool(n int, flush func(), delay Observer) *writerPool {
	p := &writerPool{flush: flush, delay: delay, done: make(chan struct{})}
	for range max(n, 1) {
		w := &writer{pool: p, wake: make(chan struct{}, 1)}
		p.workers = append(p.workers, w)
		p.wg.Add(1)
		go w.run()
	}
	return p
}

// assign returns the writer for a new subscriber, in turn.
func (p *writerPool) assign() *writer {
	return p.workers[(p.next.Add(1)-1)%uint64(len(p.workers))]
}

// signal wakes every writer that has subscribers ready.
func (p *writerPool) signal() {
	for _, w := range p.workers {
		w.mu.Lock()
		pending := len(w.ready) > 0
		w.mu.Unlock()
		if pending {
			w.signal()
		}
	}
}

// roomShare is how many subscribers of a room share the room's writer
// before the next ones are spread over the pool.
const roomShare = 16

// writerGroup keeps the subscribers of one room on one writer while they
// are few. In a meeting every subscriber receives every publisher: with the
// subscribers on one writer, a packet of a publisher costs one wake-up and
// one sendmmsg for all its receivers, where spread over the pool it cost one
// of each per writer (in a meeting of 4 with two writers, a packet for 3
// receivers took two of each). A large room's subscribers past the first
// roomShare go to the pool in turn, so that its writers share the work.
type writerGroup struct {
	pool *writerPool

	mu   sync.Mutex
	home *writer // the room's writer, or nil before its first subscriber
	n    int     // subscribers on home
}

// assign returns the writer for a new subscriber of the room; release gives
// it back when the subscriber closes.
func (g *writerGroup) assign() *writer {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n == 0 {
		g.home = g.pool.assign() // rooms take the writers in turn
	}
	if g.n < roomShare {
		g.n++
		return g.home
	}
	return g.pool.assign()
}

// release is the end of a subscriber that assign gave w.
func (g *writerGroup) release(w *writer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if w == g.home && g.n > 0 {
		g.n--
	}
}

// close stops the writers. Subscribers must be closed first.
func (p *writerPool) close() {
	close(p.done)
	p.wg.Wait()
}

// schedule marks s ready to write; the caller wakes the writer (signal).
func (w *writer) schedule(s *subscriber) {
	if s.scheduled.Swap(true) {
		return // already ready
	}
	w.mu.Lock()
	w.ready = append(w.ready, s)
	w.mu.Unlock()
}

// signal wakes the writer, or leaves it a wake-up if it is busy.
func (w *writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *writer) run() {
	defer w.pool.wg.Done()
	var ready []*subscriber
	oldest := make([]time.Time, 0, 64)
	batch := make([]queued, 0, writeBatch)
	sc := newSendScratch()
	for {
		select {
		case <-w.wake:
		case <-w.pool.done:
			return
		}
		for {
			w.mu.Lock()
			ready, w.ready = w.ready, ready[:0]
			w.mu.Unlock()
			if len(ready) == 0 {
				break
			}
			oldest = w.pass(ready, batch, oldest[:0], sc)
			clear(ready)
		}
	}
}

// flushEvery is how many packets a pass writes before it flushes the media
// sockets: the first subscribers of a long pass need not wait for the last,
// and a flush still sends dozens of packets in one system call.
const flushEvery = 64

// pass writes what each ready subscriber has queued and flushes the media
// sockets every flushEvery packets and at the end, unless every subscriber
// since the last flush was left inside a video frame whose end has not come
// (the sockets' timer, or the frame's end, flushes then). After each flush it
// observes the forwarding delay of the subscribers it sent.
func (w *writer) pass(ready []*subscriber, batch []queued, oldest []time.Time, sc *sendScratch) []time.Time {
	now := time.Now()
	from, written, flush := 0, 0, false
	for i, s := range ready {
		s.scheduled.Store(false) // a packet queued from here on schedules s again
		n, frameOpen, first := s.writeQueued(batch, now, sc)
		if frameOpen {
			first = time.Time{}
		} else {
			flush = true
		}
		oldest = append(oldest, first)
		if written += n; flush && written >= flushEvery {
			w.flush(oldest[from : i+1])
			from, written, flush = i+1, 0, false
		}
	}
	if flush {
		w.flush(oldest[from:])
	}
	return oldest
}

// flush sends what the media sockets queued and observes, for each
// subscriber written since the last flush, how long its oldest queued packet
// spent in the SFU (retransmissions are not queued: their age is not a
// forwarding delay).
func (w *writer) flush(oldest []time.Time) {
	w.pool.flush()
	if w.pool.delay == nil {
		return
	}
	for _, at := range oldest {
		if !at.IsZero() {
			w.pool.delay.Observe(time.Since(at).Seconds())
		}
	}
}
