package sfu

import (
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley/parley/pkg/bwe"
	"github.com/parley/parley/pkg/queue"
	"github.com/parley/parley/pkg/speaker"
	"github.com/pion/rtcp"
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

// testWriters is a writer pool whose flushes are counted; it stops with the test.
func testWriters(t testing.TB, n int) (*writerPool, *atomic.Int64) {
	var flushes atomic.Int64
	wp := newWriterPool(n, func() { flushes.Add(1) }, nil)
	t.Cleanup(wp.close)
	return wp, &flushes
}

// testSubscriber is a subscriber with only its queue, on a writer of wp.
func testSubscriber(wp *writerPool, queueSize int) *subscriber {
	s := &subscriber{queue: queue.New[queued](queueSize), writer: wp.assign(), log: slog.New(slog.DiscardHandler),
		bwe: bwe.New(bwe.Config{}, time.Now())}
	s.out.Store(&sendPath{viaPion: true}) // the binding's writer counts
	return s
}

func testForwarder(pool *packetPool, wp *writerPool) *forwarder {
	f := &forwarder{id: "st-test/audio", streamID: "st-test", kind: webrtc.RTPCodecTypeAudio,
		codec: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, pool: pool, wakeWriters: wp.signal,
		requestPLI: func(uint32) {}, log: slog.New(slog.DiscardHandler)}
	empty := []packetSink{}
	f.sinks.Store(&empty)
	f.layers = newLayerSet(f)
	return f
}

func attach(f *forwarder, s *subscriber, w *countWriter) *downTrack {
	d := newDownTrack(f, s)
	d.bound.Store(&binding{ssrc: 1234, pt: 111, ws: w, twcc: 3}) // stamped and reported to the estimator, as negotiated
	d.setTarget(f)
	return d
}

// makePacket fills a pooled packet the way forwarder.run does.
func makePacket(pool *packetPool, seq uint16) *packet {
	return makeLevelPacket(pool, seq, 0)
}

// makeLevelPacket is makePacket with an audio level (RFC 6464) in header
// extension 1, as browsers send it, unless level is 0.
func makeLevelPacket(pool *packetPool, seq uint16, level uint8) *packet {
	p := pool.get()
	h := rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: 42}
	n, _ := h.MarshalTo(p.buf[:])
	if level != 0 {
		// By hand, without allocating: X bit, profile 0xBEDE, one word of
		// one-byte extensions: id 1, length 1, the level, padding.
		p.buf[0] |= 0x10
		n += copy(p.buf[n:], []byte{0xBE, 0xDE, 0, 1, 1<<4 | 0, level, 0, 0})
	}
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

// A subscriber that NACKs everything again and again (as a receiver on a
// very lossy link would) costs only itself: its retransmissions are written
// by its writer between the others' packets, never queued ahead of them, and
// the others, on the same writers, receive every packet without a drop.
func TestNACKStormIsTheSubscribersOwn(t *testing.T) {
	pool := newPacketPool()
	wp, _ := testWriters(t, 2)
	f := testForwarder(pool, wp)
	f.kind = webrtc.RTPCodecTypeVideo // video keeps a history for NACKs
	f.hist = &history{}
	f.startBackstop(time.Hour)
	defer f.close()
	defer f.releaseHistory()
	const queueLen, total = 64, 3000

	var fast []*countWriter
	var subs []*subscriber
	for range 3 {
		s := testSubscriber(wp, queueLen)
		w := &countWriter{}
		attach(f, s, w).needKeyframe.Store(false)
		fast = append(fast, w)
		subs = append(subs, s)
	}
	lossy := testSubscriber(wp, queueLen)
	lossyW := &countWriter{}
	lossyTrack := attach(f, lossy, lossyW)
	lossyTrack.needKeyframe.Store(false)
	subs = append(subs, lossy)

	all := &rtcp.TransportLayerNack{}
	for i := 0; i < total; i++ {
		// Every packet is a frame of its own (marker set).
		p := makePacket(pool, uint16(i))
		p.hdr.Marker = true
		f.fanOut(p)
		if i%50 == 49 {
			// NACK the last 200 packets: 3× the queue.
			all.Nacks = rtcp.NackPairsFromSequenceNumbers(seqRange(uint16(i-199), 200))
			lossyTrack.nack(all.Nacks)
		}
		if i%queueLen == queueLen-1 {
			// Pace like media does, so that the writers keep up.
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
	for i, s := range subs[:3] {
		if st := s.stats(); st.Dropped != 0 || st.Retransmitted != 0 {
			t.Errorf("subscriber %d: %+v, want nothing dropped or sent again", i, st)
		}
	}
	// (Its own queue may have dropped while its writer resent.)
	waitFor(t, func() bool { return lossyW.packets.Load()+lossy.dropped.Load() >= total })
	st := lossy.stats()
	if st.NACKed != total/50*200 || st.Retransmitted == 0 || st.Retransmitted > st.NACKed {
		t.Errorf("the NACKing subscriber: %+v; want %d NACKed and some of them sent again", st, total/50*200)
	}
	t.Logf("the NACKing subscriber: %+v, %d packets written", st, lossyW.packets.Load())
	for _, s := range subs {
		s.stopWriting()
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

// seqRange returns n sequence numbers from first.
func seqRange(first uint16, n int) []uint16 {
	seqs := make([]uint16, n)
	for i := range seqs {
		seqs[i] = first + uint16(i)
	}
	return seqs
}

// A frame to many subscribers is written in one pass per writer, and the
// media sockets are flushed once per flushEvery packets, not once per
// subscriber.
func TestWritersFlushOncePerFrame(t *testing.T) {
	pool := newPacketPool()
	wp, flushes := testWriters(t, 1)
	f := testForwarder(pool, wp)
	f.kind = webrtc.RTPCodecTypeVideo
	f.startBackstop(time.Hour)
	defer f.close()
	const subsN, frames, perFrame = 100, 20, 5
	var writers []*countWriter
	var subs []*subscriber
	for range subsN {
		s := testSubscriber(wp, 256)
		w := &countWriter{}
		attach(f, s, w).needKeyframe.Store(false)
		writers = append(writers, w)
		subs = append(subs, s)
	}
	seq := uint16(0)
	for fr := range frames {
		for k := range perFrame {
			p := videoPacket(pool, seq, uint32(fr)*3000, k == perFrame-1)
			seq++
			f.fanOut(p)
		}
		waitFor(t, func() bool {
			for _, w := range writers {
				if w.packets.Load() < uint64((fr+1)*perFrame) {
					return false
				}
			}
			return flushes.Load() > int64(fr)
		})
	}
	// A pass starts once a frame's end woke the writer, with every
	// subscriber ready, and flushes every flushEvery packets and at its end;
	// a writer still looking for work after the last frame's pass may catch
	// part of the subscribers first, and pass twice (one more flush).
	most := frames * (subsN*perFrame/flushEvery + 2)
	if n := flushes.Load(); n < frames || n > int64(most) {
		t.Fatalf("%d frames of %d packets to %d subscribers: %d flushes, want %d to %d (one per %d packets, not one per subscriber)",
			frames, perFrame, subsN, n, frames, most, flushEvery)
	}
	for _, s := range subs {
		s.stopWriting()
	}
}

// BenchmarkFanOut measures the forwarding path per packet: hand-off from the
// publisher's reader to N subscriber queues, and each subscriber's writer
// rewriting the header and handing the packet to its connection's writer
// (a counting writer here: SRTP and the socket are measured in docs/performance.md).
// The packets are audio with a level extension, which the forwarder meters
// for the room's speaker detector, as a browser's.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			pool := newPacketPool()
			wp, _ := testWriters(b, runtime.GOMAXPROCS(0))
			f := testForwarder(pool, wp)
			f.level, f.levelExt = speaker.New(speaker.Config{}).Add("st-test"), 1
			makePacket := func(pool *packetPool, seq uint16) *packet { return makeLevelPacket(pool, seq, 30) }
			var subs []*subscriber
			var writers []*countWriter
			for i := 0; i < n; i++ {
				s := testSubscriber(wp, 1024)
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
				f.fanOut(makePacket(pool, uint16(warm+i)))
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
				s.stopWriting()
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
	// A writer with no goroutine: the test takes its wake-ups.
	w := &writer{wake: make(chan struct{}, 1)}
	wp := &writerPool{workers: []*writer{w}}
	w.pool = wp
	f := testForwarder(pool, wp)
	f.kind = webrtc.RTPCodecTypeVideo
	f.startBackstop(time.Hour)
	s := &subscriber{queue: queue.New[queued](64), writer: w, log: slog.New(slog.DiscardHandler)}
	attach(f, s, &countWriter{})
	// woken reports whether the writer was woken with s ready, and resets both.
	woken := func() bool {
		select {
		case <-w.wake:
		default:
			return false
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		ready := len(w.ready) == 1 && w.ready[0] == s
		w.ready = nil
		s.scheduled.Store(false)
		return ready
	}
	drain := func(s *subscriber) int {
		batch := s.queue.Drain(make([]queued, 0, 64))
		for _, q := range batch {
			q.p.release()
		}
		return len(batch)
	}
	defer drain(s)
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
	if n := drain(s); n != len(steps) {
		t.Fatalf("%d packets queued, want %d", n, len(steps))
	}

	// A frame that never ends wakes the writer after the backstop.
	f.startBackstop(5 * time.Millisecond)
	f.fanOut(videoPacket(pool, 100, 9000, false))
	waitFor(t, woken)
	if n := drain(s); n != 1 {
		t.Fatalf("%d packets queued, want 1", n)
	}
	f.close()

	// Audio: every packet.
	a := testForwarder(pool, wp)
	as := &subscriber{queue: queue.New[queued](64), writer: w, log: slog.New(slog.DiscardHandler)}
	attach(a, as, &countWriter{})
	for i := range 3 {
		a.fanOut(makePacket(pool, uint16(i)))
		select {
		case <-w.wake:
			w.mu.Lock()
			if len(w.ready) != 1 || w.ready[0] != as {
				t.Fatalf("audio packet %d: %d subscribers ready, want the one", i, len(w.ready))
			}
			w.ready = nil
			as.scheduled.Store(false)
			w.mu.Unlock()
		default:
			t.Fatalf("audio packet %d did not wake the writer", i)
		}
	}
	drain(as)
}

// The forwarder hands each audio packet's level to the room's speaker
// detector; a packet without the extension, or padding, counts for nothing.
func TestForwarderMetersAudioLevels(t *testing.T) {
	pool := newPacketPool()
	wp, _ := testWriters(t, 1)
	f := testForwarder(pool, wp)
	det := speaker.New(speaker.Config{})
	f.level, f.levelExt = det.Add("st-test"), 1
	seq := uint16(0)
	for range 10 {
		for range 5 {
			f.fanOut(makeLevelPacket(pool, seq, 20))
			seq++
			f.fanOut(makePacket(pool, seq)) // no level: not counted as silence either
			seq++
		}
		det.Tick()
	}
	u := det.Current()
	if u.Dominant != "st-test" || len(u.Speakers) != 1 || u.Speakers[0].Level < 0.8 {
		t.Fatalf("after 1 s of packets at -20 dBov: %+v, want st-test dominant and loud", u)
	}
	det2 := speaker.New(speaker.Config{})
	f.level = det2.Add("st-test")
	for range 10 {
		for range 5 {
			p := makeLevelPacket(pool, seq, 20)
			p.padding = true
			f.fanOut(p)
			seq++
		}
		det2.Tick()
	}
	if u := det2.Current(); len(u.Speakers) != 0 {
		t.Fatalf("padding counted as speech: %+v", u)
	}
}
