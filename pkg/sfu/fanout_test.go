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
	s := &subscriber{queue: make(chan queued, queueSize), flush: func() {}, done: make(chan struct{}),
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
	if d := slowTrack.dropped.Load(); d < total-queue-1 {
		t.Errorf("slow subscriber dropped %d packets, want at least %d (its queue holds %d)", d, total-queue-1, queue)
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
