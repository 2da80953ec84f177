package sfu

import (
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/parley/parley/pkg/codec"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// vp8Pattern is libvpx's three-layer pattern (ts_layering_mode 3): the
// temporal layer of each frame of a period, and whether it is a switching
// point (it references the base layer only).
var vp8Pattern = []struct {
	tid  uint8
	sync bool
}{{0, false}, {2, true}, {1, true}, {2, false}}

// temporalStream makes VP8 packets of frames in vp8Pattern, two packets a
// frame, picture ids from pic0 (15 bits, wrapping), a keyframe first.
type temporalStream struct {
	pool  *packetPool
	f     *forwarder
	seq   uint16
	pic   uint16
	tl0   uint8
	frame int
}

func (st *temporalStream) nextFrame() []*packet {
	pat := vp8Pattern[st.frame%len(vp8Pattern)]
	if pat.tid == 0 {
		st.tl0++
	}
	var out []*packet
	for i := range 2 {
		p := makePacket(st.pool, st.seq)
		st.seq++
		p.hdr.Timestamp = uint32(st.frame) * 3000
		p.hdr.Marker = i == 1
		b := p.buf[:p.n]
		pl := b[len(b)-len(p.payload):]
		pl[0] = 0x80
		if i == 0 {
			pl[0] |= 0x10
		}
		pl[1] = 0xe0
		pl[2], pl[3] = 0x80|byte(st.pic>>8)&0x7f, byte(st.pic)
		pl[4] = st.tl0
		pl[5] = pat.tid << 6
		if pat.sync {
			pl[5] |= 0x20
		}
		pl[6] = 0x01 // an inter frame
		if st.frame == 0 {
			pl[6] = 0x00
		}
		p.keyframe = codec.IsKeyframe(webrtc.MimeTypeVP8, p.payload)
		p.desc = st.f.describe(p)
		p.src = st.f
		p.refs.Store(1) // the test's
		out = append(out, p)
	}
	st.pic = (st.pic + 1) & 0x7fff
	st.frame++
	return out
}

// A downTrack capped at a temporal layer sends only the frames of the
// layers up to it, numbered without gaps and with picture ids that go up by
// one per picture sent; it goes down at the next frame, up only at a
// switching point; a NACK is answered with the picture id first sent.
func TestTemporalLayersLeftOut(t *testing.T) {
	pool := newPacketPool()
	wp := &writerPool{workers: []*writer{{wake: make(chan struct{}, 1)}}}
	f := testForwarder(pool, wp)
	f.kind = webrtc.RTPCodecTypeVideo
	f.codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	f.described = describeVP8
	f.hist = &history{}
	defer f.releaseHistory()
	s := testSubscriber(wp, 64)
	w := &recordWriter{}
	d := newDownTrack(f, s)
	d.bound.Store(&binding{ssrc: 99, pt: 96, ws: w})
	d.target.Store(f)
	sc := newSendScratch()
	now := time.Now()
	st := &temporalStream{pool: pool, f: f, seq: 65530, pic: 0x7ffd}
	var all []*packet
	// sendFrames writes n frames; it returns the TIDs of the frames sent.
	sendFrames := func(n int) []uint8 {
		var tids []uint8
		for range n {
			for _, p := range st.nextFrame() {
				all = append(all, p)
				f.hist.add(p)
				before := len(w.pkts)
				d.write(p, now, sc)
				if len(w.pkts) > before && p.desc.Start {
					tids = append(tids, p.desc.TID)
				}
			}
		}
		return tids
	}
	d.tcap.Store(0)
	if got := sendFrames(8); !slices.Equal(got, []uint8{0, 0}) {
		t.Fatalf("capped at layer 0: frames of layers %v sent, want 0 0", got)
	}
	d.tcap.Store(1)
	// Frames 8..11: 0 2 1 2; layer 1 is taken at frame 10 (a switching point).
	if got := sendFrames(4); !slices.Equal(got, []uint8{0, 1}) {
		t.Fatalf("capped at layer 1: frames of layers %v sent, want 0 1", got)
	}
	d.tcap.Store(allTemporal)
	// Frames 12..15: 0 2 1 2: layer 2 from frame 13 (a switching point),
	// and frame 15 (not one, but layer 2 is taken by then).
	if got := sendFrames(4); !slices.Equal(got, []uint8{0, 2, 1, 2}) {
		t.Fatalf("all layers: frames of layers %v sent, want 0 2 1 2", got)
	}
	d.tcap.Store(0)
	if got := sendFrames(2); !slices.Equal(got, []uint8{0}) {
		t.Fatalf("down to layer 0: frames of layers %v sent, want 0", got)
	}
	d.tcap.Store(allTemporal)
	// Frames 18..20: 1 2 0: layer 1 at 18 (a switching point); 19 is of
	// layer 2 and no switching point, so it waits.
	if got := sendFrames(3); !slices.Equal(got, []uint8{1, 0}) {
		t.Fatalf("up again: frames of layers %v sent, want 1 0", got)
	}

	// What the receiver got: contiguous sequence numbers, picture ids one
	// apart from picture to picture (across the 15-bit wrap).
	var lastPic uint16
	for i, p := range w.pkts {
		if i > 0 && p.SequenceNumber != w.pkts[i-1].SequenceNumber+1 {
			t.Fatalf("sequence numbers %d then %d", w.pkts[i-1].SequenceNumber, p.SequenceNumber)
		}
		desc, ok := codec.ParseVP8(p.Payload)
		if !ok {
			t.Fatalf("packet %d: a descriptor that does not parse", i)
		}
		if i > 0 && desc.Start && desc.PicID != (lastPic+1)&0x7fff {
			t.Fatalf("packet %d: picture id %#x after %#x", i, desc.PicID, lastPic)
		}
		if i > 0 && !desc.Start && desc.PicID != lastPic {
			t.Fatalf("packet %d: picture id %#x within the picture %#x", i, desc.PicID, lastPic)
		}
		lastPic = desc.PicID
	}

	// A NACK of a packet sent after pictures were left out: sent again
	// with the picture id it was sent with.
	nacked := w.pkts[len(w.pkts)-3]
	nackedDesc, _ := codec.ParseVP8(nacked.Payload)
	w.pkts = nil
	d.sub.queueNACK(d, rtcp.NackPairsFromSequenceNumbers([]uint16{nacked.SequenceNumber}))
	if n := s.answerNACKs(now, sc); n != 1 {
		t.Fatalf("%d packets sent again, want 1", n)
	}
	if desc, _ := codec.ParseVP8(w.pkts[0].Payload); desc.PicID != nackedDesc.PicID {
		t.Errorf("sent again with picture id %#x, first sent with %#x", desc.PicID, nackedDesc.PicID)
	}
	for _, p := range all {
		p.release()
	}
	for _, q := range s.queue.Close(nil) {
		q.p.release()
	}
}

// setRates makes f look measured: rate bit/s in all, per temporal layer
// rates (none: no layer ids), now.
func setRates(f *forwarder, now time.Time, perLayer ...int64) {
	total := int64(0)
	for i, r := range perLayer {
		f.temporal.rate[i].Store(r)
		total += r
	}
	f.temporal.layers.Store(int32(len(perLayer)))
	f.rate.Store(total)
	f.lastAt.Store(now.UnixNano())
}

// The allocation caps a stream without simulcast at fewer temporal layers
// when all of it does not fit, goes up only with the margin an upgrade
// needs, and pauses only when not even the base layer fits; a stream
// without layer ids pauses at once below its rate.
func TestAllocationDropsTemporalLayersBeforePausing(t *testing.T) {
	pool := newPacketPool()
	wp := &writerPool{workers: []*writer{{wake: make(chan struct{}, 1)}}}
	f := testForwarder(pool, wp)
	f.kind = webrtc.RTPCodecTypeVideo
	s := testSubscriber(wp, 64)
	now := time.Now()
	s.bwe.OnREMB(1e6, now) // measured: a pause may come
	d := newDownTrack(f, s)
	it := allocItem{d: d}
	setRates(f, now, 250_000, 250_000, 500_000) // 1 Mbit/s: TL0 250k, TL0+1 500k

	for _, c := range []struct {
		budget  float64
		sending bool
		cap     int
	}{
		{1_200_000, false, allTemporal},
		{900_000, true, 1},   // all does not fit: TL0+TL1
		{560_000, true, 1},   // TL0+TL1 being sent
		{450_000, true, 0},   // only TL0
		{560_000, true, 0},   // TL1 back needs 500k * 1.15
		{580_000, true, 1},   // and it has it
		{1_100_000, true, 1}, // all back needs 1.15 Mbit/s
		{1_200_000, true, allTemporal},
	} {
		if c.sending {
			d.sending.Store(f)
		}
		got, tcap, want, paused := s.pick(it, c.budget, c.budget, c.budget, now)
		if got.f != f || tcap != c.cap || paused != "" || want != 1_000_000 {
			t.Fatalf("budget %.0f: layer %v, temporal cap %d, want %.0f, paused %q; want the stream capped at %d",
				c.budget, got.f != nil, tcap, want, paused, c.cap)
		}
		d.tcap.Store(int32(tcap))
		if got := f.rateUpTo(tcap, now); tcap == 1 && got != 500_000 || tcap == 0 && got != 250_000 {
			t.Fatalf("rate up to layer %d: %d", tcap, got)
		}
	}
	// Below the base layer (and beyond keepMargin): kept for pauseAfter,
	// then paused.
	if got, tcap, _, paused := s.pick(it, 150_000, 150_000, 150_000, now); got.f != f || tcap != 0 || paused != "" {
		t.Fatalf("just below the base layer: layer %v cap %d paused %q, want it kept at 0", got.f != nil, tcap, paused)
	}
	later := now.Add(pauseAfter)
	f.lastAt.Store(later.UnixNano())
	if got, _, _, paused := s.pick(it, 150_000, 150_000, 150_000, later); got.f != nil || paused == "" {
		t.Fatalf("below the base layer for %v: not paused", pauseAfter)
	}

	// Without temporal layers: nothing between all and the pause.
	setRates(f, now, 1_000_000)
	f.temporal.layers.Store(0)
	d.shortSince = time.Time{}
	if got, tcap, _, _ := s.pick(it, 600_000, 600_000, 600_000, now); got.f != f || tcap != allTemporal {
		t.Fatalf("no temporal layers, under the rate: cap %d, want all (kept, then paused)", tcap)
	}
	later = now.Add(2 * pauseAfter)
	f.lastAt.Store(later.UnixNano())
	if got, _, _, paused := s.pick(it, 600_000, 600_000, 600_000, later); got.f != nil || paused == "" {
		t.Fatal("no temporal layers, under the rate for long: not paused")
	}
}

// The reader measures each temporal layer's frame rate and bitrate from the
// descriptors: with three layers a quarter of the frames are the base
// layer's, a quarter layer 1's, half layer 2's.
func TestForwarderMeasuresTemporalLayers(t *testing.T) {
	pool := newPacketPool()
	wp := &writerPool{workers: []*writer{{wake: make(chan struct{}, 1)}}}
	f := testForwarder(pool, wp)
	f.kind = webrtc.RTPCodecTypeVideo
	f.described = describeVP8
	st := &temporalStream{pool: pool, f: f, pic: 1}
	start := time.Now()
	for i := range 3 * 30 { // 3 s at 30 frames a second
		for _, p := range st.nextFrame() {
			p.arrived = start.Add(time.Duration(i) * time.Second / 30)
			f.measure(p)
			p.release()
		}
	}
	now := start.Add(3 * time.Second)
	if n := f.temporalLayers(now); n != 3 {
		t.Fatalf("%d temporal layers, want 3", n)
	}
	for tid, want := range []float64{7.5, 15, 30} {
		if got := f.frameRateUpTo(tid); got < want*0.8 || got > want*1.2 {
			t.Errorf("frame rate up to layer %d: %.1f, want about %.1f", tid, got, want)
		}
	}
	if r0, r1, all := f.rateUpTo(0, now), f.rateUpTo(1, now), f.rateUpTo(2, now); !(r0 > 0 && r0 < r1 && r1 < all) || all != f.bitrate(now) {
		t.Errorf("rates up to each layer %d %d %d (stream %d)", r0, r1, all, f.bitrate(now))
	}
}

// BenchmarkFanOutTemporal is BenchmarkFanOut with VP8 video in three
// temporal layers (1100-byte packets, two a frame, descriptors parsed as the
// reader does) and half of the subscribers capped at the base layer: their
// writers leave three frames in four out and send the rest with moved
// picture ids (a copy of the payload each).
func BenchmarkFanOutTemporal(b *testing.B) {
	for _, n := range []int{2, 10, 100} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			pool := newPacketPool()
			wp, _ := testWriters(b, runtime.GOMAXPROCS(0))
			f := testForwarder(pool, wp)
			f.kind = webrtc.RTPCodecTypeVideo
			f.codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
			f.described = describeVP8
			f.startBackstop(time.Hour)
			defer f.close()
			var subs []*subscriber
			var writers []*countWriter
			for i := range n {
				s := testSubscriber(wp, 1024)
				w := &countWriter{}
				d := attach(f, s, w)
				if i%2 == 1 {
					d.tcap.Store(0)
				}
				subs = append(subs, s)
				writers = append(writers, w)
			}
			var seq, pic uint16
			frame, base := 0, uint64(0) // frames made, packets of the base layer
			next := func() *packet {
				p := pool.get()
				h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(frame) * 3000, SSRC: 42, Marker: seq%2 == 1}
				hl, _ := h.MarshalTo(p.buf[:])
				pat := vp8Pattern[frame%len(vp8Pattern)]
				pl := p.buf[hl : hl+1100]
				pl[0], pl[1], pl[2], pl[3], pl[4], pl[5], pl[6] = 0x80, 0xe0, 0x80|byte(pic>>8)&0x7f, byte(pic), byte(frame/4), pat.tid<<6, 0x01
				if seq%2 == 0 {
					pl[0] |= 0x10
				}
				if pat.sync {
					pl[5] |= 0x20
				}
				if frame == 0 {
					pl[6] = 0x00
				}
				p.n = hl + 1100
				_, _ = p.hdr.Unmarshal(p.buf[:p.n])
				p.payload = pl
				p.padding = false
				p.arrived = time.Now()
				p.keyframe = codec.IsKeyframe(webrtc.MimeTypeVP8, p.payload)
				p.desc = f.describe(p)
				if pat.tid == 0 {
					base++
				}
				if seq++; seq%2 == 0 {
					frame++
					pic = (pic + 1) & 0x7fff
				}
				return p
			}
			drain := func(all uint64) {
				for i, w := range writers {
					want := all
					if i%2 == 1 {
						want = base
					}
					for w.packets.Load() < want {
						time.Sleep(10 * time.Microsecond)
					}
				}
			}
			for range 512 { // warm the pool
				f.fanOut(next())
			}
			drain(512)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				f.fanOut(next())
				if i%256 == 255 {
					drain(uint64(512 + i + 1))
				}
			}
			total := uint64(512 + b.N)
			if seq%2 == 1 {
				f.fanOut(next()) // end the frame: writers wake at frame ends
				total++
			}
			drain(total)
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/subscriber-pkt")
			for _, s := range subs {
				s.stopWriting()
			}
		})
	}
}

// VP9 with two spatial layers a picture (one packet each: B on both, the
// picture starts at the first, SID 0), temporal layers in vp8Pattern with
// U as the switching points: capped at the base layer, a downTrack sends
// both spatial layers of every base picture and nothing of the others, in
// contiguous numbers, picture ids one apart.
func TestTemporalLayersVP9(t *testing.T) {
	pool := newPacketPool()
	wp := &writerPool{workers: []*writer{{wake: make(chan struct{}, 1)}}}
	f := testForwarder(pool, wp)
	f.kind = webrtc.RTPCodecTypeVideo
	f.codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000}
	f.described = describeVP9
	s := testSubscriber(wp, 64)
	w := &recordWriter{}
	d := newDownTrack(f, s)
	d.bound.Store(&binding{ssrc: 99, pt: 98, ws: w})
	d.target.Store(f)
	d.tcap.Store(0)
	sc := newSendScratch()
	now := time.Now()
	var all []*packet
	seq, pic := uint16(100), uint16(0x7ff0)
	for frame := range 16 {
		pat := vp8Pattern[frame%len(vp8Pattern)]
		for sid := range 2 {
			p := makePacket(pool, seq)
			seq++
			p.hdr.Timestamp = uint32(frame) * 3000
			p.hdr.Marker = sid == 1
			pl := p.payload
			pl[0] = 0x80 | 0x20 | 0x08 | 0x04 // I, L, B, E
			if frame > 0 {
				pl[0] |= 0x40 // P: inter-picture predicted
			}
			pl[1], pl[2] = 0x80|byte(pic>>8)&0x7f, byte(pic)
			pl[3] = pat.tid<<5 | byte(sid)<<1
			if pat.sync {
				pl[3] |= 0x10
			}
			pl[4] = byte(frame / 4) // TL0PICIDX
			p.keyframe = codec.IsKeyframe(webrtc.MimeTypeVP9, p.payload)
			p.desc = f.describe(p)
			p.src = f
			p.refs.Store(1)
			all = append(all, p)
			d.write(p, now, sc)
		}
		pic = (pic + 1) & 0x7fff
	}
	if len(w.pkts) != 4*2 {
		t.Fatalf("%d packets sent, want both spatial layers of the 4 base pictures", len(w.pkts))
	}
	var last uint16
	for i, p := range w.pkts {
		desc, ok := codec.ParseVP9(p.Payload)
		if !ok || desc.TID != 0 {
			t.Fatalf("packet %d: %+v", i, desc)
		}
		if i > 0 && p.SequenceNumber != w.pkts[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: seq %d after %d", i, p.SequenceNumber, w.pkts[i-1].SequenceNumber)
		}
		if i%2 == 1 && desc.PicID != last || i%2 == 0 && i > 0 && desc.PicID != (last+1)&0x7fff {
			t.Fatalf("packet %d: picture id %#x after %#x", i, desc.PicID, last)
		}
		last = desc.PicID
	}
	for _, p := range all {
		p.release()
	}
}
