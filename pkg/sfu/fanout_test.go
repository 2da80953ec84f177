package sfu

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// countWriter counts what a subscriber's connection would send.
type countWriter struct {
	packets atomic.Uint64
	block   chan struct{} // when set, every write waits on it
	lastSeq atomic.Uint32
}

func (w *countWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	if w.block != nil {
		<-w.block
	}
	w.packets.Add(1)
	w.lastSeq.Store(uint32(h.SequenceNumber))
	return len(payload), nil
}

func (w *countWriter) Write(b []byte) (int, error) { return len(b), nil }

// testSubscriber is a subscriber with only its queue and writer goroutine.
func testSubscriber(queueSize int) *subscriber {
	s := &subscriber{queue: newSendQueue(queueSize), flush: func() {}, done: make(chan struct{}),
		log: slog.New(slog.DiscardHandler)}
	s.wg.Add(1)
	go s.writeLoop()
	return s
}

func testForwarder(pool *packetPool) *forwarder {
	f := &forwarder{id: "st-test/audio", streamID: "st-test", kind: webrtc.RTPCodecTypeAudio,
		codec: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, pool: pool}
	empty := []packetSink{}
	f.sinks.Store(&empty)
	return f
}

func attach(f *forwarder, s *subscriber, w *countWriter) *downTrack {
	d := newDownTrack(f, s)
	d.bound.Store(&binding{ssrc: 1234, pt: 111, ws: w})
	f.addSink(d)
	return d
}

// makePacket fills a pooled packet the way forwarder.run does.
func makePacket(pool *packetPool, seq uint16) *packet {
	p := pool.get()
	h := rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: 42}
	n, _ := h.MarshalTo(p.buf[:])
	for i := 0; i < 160; i++ {
		p.buf[n+i] = byte(i)
	}
	p.n = n + 160
	hl, _ := p.hdr.Unmarshal(p.buf[:p.n])
	p.payload = p.buf[hl:p.n]
	p.keyframe = true
	p.arrived = time.Now()
	return p
}

// A subscriber whose connection blocks must not reduce what the others get:
// its queue fills and drops while the others receive every packet.
func TestSlowSubscriberDoesNotDelayOthers(t *testing.T) {
	pool := newPacketPool()
	f := testForwarder(pool)
	const queue, total = 64, 5000

	var fast []*countWriter
	var subs []*subscriber
	for i := 0; i < 3; i++ {
		s := testSubscriber(queue)
		w := &countWriter{}
		attach(f, s, w)
		fast = append(fast, w)
		subs = append(subs, s)
	}
	slowSub := testSubscriber(queue)
	slow := &countWriter{block: make(chan struct{})}
	slowTrack := attach(f, slowSub, slow)

	for i := 0; i < total; i++ {
		f.fanOut(makePacket(pool, uint16(i)))
		if i%queue == queue-1 {
			// Pace like media does, so that the fast writers keep up.
			waitFor(t, func() bool {
				for _, w := range fast {
					if w.packets.Load() < uint64(i+1) {
						return false
					}
				}
				return true
			})
		}
	}
	waitFor(t, func() bool {
		for _, w := range fast {
			if w.packets.Load() != total {
				return false
			}
		}
		return true
	})
	for i, w := range fast {
		if got := w.packets.Load(); got != total {
			t.Errorf("fast subscriber %d got %d packets, want %d", i, got, total)
		}
	}
	// Its writer holds at most one drained queue while the queue fills again.
	if d := slowTrack.dropped.Load(); d < total-2*queue {
		t.Errorf("slow subscriber dropped %d packets, want at least %d (its queue holds %d, its writer as many)", d, total-2*queue, queue)
	}
	close(slow.block)
	for _, s := range append(subs, slowSub) {
		close(s.done)
		s.wg.Wait()
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkFanOut measures the forwarding path per packet: hand-off from the
// publisher's reader to N subscriber queues, and each subscriber's writer
// rewriting the header and handing the packet to its connection's writer
// (a counting writer here: SRTP and the socket are measured in docs/performance.md).
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			pool := newPacketPool()
			f := testForwarder(pool)
			var subs []*subscriber
			var writers []*countWriter
			for i := 0; i < n; i++ {
				s := testSubscriber(1024)
				w := &countWriter{}
				attach(f, s, w)
				subs = append(subs, s)
				writers = append(writers, w)
			}
			var wg sync.WaitGroup
			// Warm the packet pool, as a running server's is.
			const warm = 512
			for i := 0; i < warm; i++ {
				f.fanOut(makePacket(pool, uint16(i)))
			}
			for _, w := range writers {
				for w.packets.Load() < warm {
					time.Sleep(10 * time.Microsecond)
				}
				w.packets.Store(0)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f.fanOut(makePacket(pool, uint16(i)))
				if i%256 == 255 {
					// Let the writers drain so that nothing is dropped.
					for _, w := range writers {
						for w.packets.Load() < uint64(i+1) {
							time.Sleep(10 * time.Microsecond)
						}
					}
				}
			}
			for _, w := range writers {
				for w.packets.Load() < uint64(b.N) {
					time.Sleep(10 * time.Microsecond)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/forwarded-pkt")
			for _, s := range subs {
				close(s.done)
				s.wg.Wait()
			}
			wg.Wait()
		})
	}
}

// videoPacket is a pooled VP8 packet of the frame at ts.
func videoPacket(pool *packetPool, seq uint16, ts uint32, marker bool) *packet {
	p := makePacket(pool, seq)
	p.hdr.Timestamp = ts
	p.hdr.Marker = marker
	return p
}

// Subscribers' writers are woken at the end of each video frame, when the
// next frame shows that an end was lost, and by the backstop when a frame
// stays open; every audio packet wakes them.
func TestWritersWokenPerFrame(t *testing.T) {
	pool := newPacketPool()
	f := testForwarder(pool)
	f.kind = webrtc.RTPCodecTypeVideo
	f.startBackstop(time.Hour)
	s := &subscriber{queue: newSendQueue(64)}
	attach(f, s, &countWriter{})
	woken := func() bool {
		select {
		case <-s.queue.wake:
			return true
		default:
			return false
		}
	}
	queuedN := func() int { return len(s.queue.drain(make([]queued, 0, 64))) }
	defer func() {
		for _, q := range s.queue.drain(make([]queued, 0, 64)) {
			q.p.release()
		}
	}()
	steps := []struct {
		ts     uint32
		marker bool
		wake   bool
	}{
		{1000, false, false}, {1000, false, false}, {1000, true, true}, // a frame of three
		{2000, true, true},                        // a frame of one
		{3000, false, false}, {4000, false, true}, // 3000's end was lost
		{4000, true, true},
	}
	for i, st := range steps {
		f.fanOut(videoPacket(pool, uint16(i), st.ts, st.marker))
		if got := woken(); got != st.wake {
			t.Fatalf("packet %d (ts %d, marker %v): woken %v, want %v", i, st.ts, st.marker, got, st.wake)
		}
	}
	if n := len(s.queue.drain(make([]queued, 0, 64))); n != len(steps) {
		t.Fatalf("%d packets queued, want %d", n, len(steps))
	}

	// A frame that never ends wakes the writer after the backstop.
	f.startBackstop(5 * time.Millisecond)
	f.fanOut(videoPacket(pool, 100, 9000, false))
	select {
	case <-s.queue.wake:
	case <-time.After(5 * time.Second):
		t.Fatal("an unfinished frame never woke the writer")
	}
	if n := queuedN(); n != 1 {
		t.Fatalf("%d packets queued, want 1", n)
	}
	f.close()

	// Audio: every packet.
	a := testForwarder(pool)
	as := &subscriber{queue: newSendQueue(64)}
	attach(a, as, &countWriter{})
	for i := range 3 {
		a.fanOut(makePacket(pool, uint16(i)))
		select {
		case <-as.queue.wake:
		default:
			t.Fatalf("audio packet %d did not wake the writer", i)
		}
	}
	for _, q := range as.queue.drain(make([]queued, 0, 64)) {
		q.p.release()
	}
}
