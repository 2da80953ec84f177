package sfu

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/parley/parley/pkg/bwe"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// in is one publisher packet given to a rewriter.
type in struct {
	seq     uint16
	pad     bool // padding only: left out
	wantOut int  // outgoing sequence number, -1 for none
	want    verdict
}

func runRewriter(t *testing.T, r *rewriter, src *forwarder, steps []in) {
	t.Helper()
	for i, st := range steps {
		if !r.started {
			r.start(src, st.seq, uint32(st.seq)*10, 0)
		}
		out, ts, v := r.next(st.seq, uint32(st.seq)*10, st.pad)
		if v != st.want || (v != drop && int(out) != st.wantOut) {
			t.Fatalf("step %d (in %d, padding %v): out %d verdict %d, want %d verdict %d", i, st.seq, st.pad, out, v, st.wantOut, st.want)
		}
		if v != drop && ts != uint32(st.seq)*10+r.tsOff {
			t.Fatalf("step %d: timestamp %d, want the publisher's %d moved by %d", i, ts, uint32(st.seq)*10, r.tsOff)
		}
	}
}

// Padding-only packets are left out without a gap; a lost packet keeps its
// place (the receiver NACKs it) and fills it when it comes late; duplicates
// are not sent twice; a late padding packet whose place the receiver
// already sees as a gap is sent as padding.
func TestRewriterNumbers(t *testing.T) {
	src := &forwarder{}
	var r rewriter
	runRewriter(t, &r, src, []in{
		{100, false, 100, send},
		{101, true, -1, drop}, // padding between frames
		{102, true, -1, drop},
		{103, false, 101, send},
		{105, false, 103, send}, // 104 lost: a gap at 102
		{106, true, -1, drop},
		{104, false, 102, send}, // 104 arrives late: into its gap
		{104, false, -1, drop},  // and again: a duplicate
		{106, true, -1, drop},   // a duplicate of padding left out
		{107, false, 104, send},
		{109, false, 106, send}, // 108 lost
		{108, true, 105, fill},  // it was padding: fills the gap as padding
		{103, false, -1, drop},  // a duplicate of an old one
		{65535 - 200, false, -1, drop},
	})
	// NACKs map back to the publisher's numbers, whatever was left out in
	// between.
	for out, want := range map[uint16]uint16{100: 100, 101: 103, 102: 104, 103: 105, 104: 107, 105: 108, 106: 109} {
		s, got, tsOff, ok := r.lookup(out)
		if !ok || s != src || got != want || tsOff != 0 {
			t.Errorf("NACK of %d: %d (ok %v), want %d", out, got, ok, want)
		}
	}
	if _, _, _, ok := r.lookup(107); ok {
		t.Error("a NACK of a number not sent yet was mapped")
	}
}

// Numbering goes on across the publisher's wrap-around.
func TestRewriterWraps(t *testing.T) {
	var r rewriter
	src := &forwarder{}
	runRewriter(t, &r, src, []in{
		{65533, false, 65533, send},
		{65534, true, -1, drop},
		{65535, false, 65534, send},
		{0, true, -1, drop},
		{1, false, 65535, send},
		{3, false, 1, send}, // 2 lost
		{2, false, 0, send},
	})
	if _, in, _, ok := r.lookup(0); !ok || in != 2 {
		t.Errorf("NACK of 0 maps to %d (ok %v), want 2", in, ok)
	}
	if _, in, _, ok := r.lookup(65534); !ok || in != 65535 {
		t.Errorf("NACK of 65534 maps to %d (ok %v), want 65535", in, ok)
	}
}

// A new source (a simulcast layer) continues the numbers: the sequence
// number after the last one sent, the timestamp the elapsed time after the
// last one; NACKs of what went before still map to the old source.
func TestRewriterNewSource(t *testing.T) {
	var r rewriter
	a, b := &forwarder{}, &forwarder{}
	r.start(a, 1000, 5000, 0)
	for seq := uint16(1000); seq < 1010; seq++ {
		r.next(seq, 5000+uint32(seq-1000)/2*3000, false)
	}
	lastTS := r.lastTS
	r.start(b, 40000, 777, 3000)
	out, ts, v := r.next(40000, 777, false)
	if v != send || out != 1010 || ts != lastTS+3000 {
		t.Fatalf("first packet of the new source: %d at %d (%d), want 1010 at %d", out, ts, v, lastTS+3000)
	}
	if out, ts, _ := r.next(40001, 777+3000, false); out != 1011 || ts != lastTS+6000 {
		t.Fatalf("second packet of the new source: %d at %d", out, ts)
	}
	if s, in, tsOff, ok := r.lookup(1005); !ok || s != a || in != 1005 || tsOff != 0 {
		t.Errorf("NACK of 1005: %v %d %d %v, want the old source's 1005", s == a, in, tsOff, ok)
	}
	if s, in, _, ok := r.lookup(1011); !ok || s != b || in != 40001 {
		t.Errorf("NACK of 1011: %v %d %v, want the new source's 40001", s == b, in, ok)
	}
	// The same source again keeps its timestamps: the publisher's clock.
	r.start(b, 40010, 777+30000, 99999)
	if out, ts, _ := r.next(40010, 777+30000, false); out != 1012 || ts != 777+30000+r.tsOff || r.tsOff != lastTS+3000-777 {
		t.Errorf("the same source restarted: %d at %d (offset %d)", out, ts, r.tsOff)
	}
}

// Only so many changes of offsets are remembered: an older NACK is not
// placed, and nothing breaks.
func TestRewriterForgetsOldPoints(t *testing.T) {
	var r rewriter
	src := &forwarder{}
	r.start(src, 0, 0, 0)
	seq := uint16(0)
	for range 3 * rewritePoints {
		r.next(seq, 0, false)
		r.next(seq+1, 0, true)
		seq += 2
	}
	if _, _, _, ok := r.lookup(0); ok {
		t.Error("a NACK older than every point kept was mapped")
	}
	last := uint16(r.lastOut)
	if _, in, _, ok := r.lookup(last); !ok || in != seq-2 {
		t.Errorf("the newest NACK maps to %d (ok %v), want %d", in, ok, seq-2)
	}
}

// recordWriter keeps what a pion-path binding was given.
type recordWriter struct {
	pkts []rtp.Packet
}

func (w *recordWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	p := rtp.Packet{Header: *h, Payload: append([]byte(nil), payload...)}
	p.Header.Extensions = nil
	b, err := p.Marshal()
	if err != nil {
		return 0, err
	}
	var back rtp.Packet
	if err := back.Unmarshal(b); err != nil {
		return 0, err
	}
	w.pkts = append(w.pkts, back)
	return len(b), nil
}

func (w *recordWriter) Write(b []byte) (int, error) { return len(b), nil }

// Through a downTrack: padding-only packets leave no gap, a media packet's
// padding is not forwarded (the payload arrives whole), and a NACK of the
// subscriber's numbers gets the publisher's packet sent again with the
// subscriber's number.
func TestDownTrackNumbersAndResends(t *testing.T) {
	pool := newPacketPool()
	// A writer with no goroutine: the test writes.
	wp := &writerPool{workers: []*writer{{wake: make(chan struct{}, 1)}}}
	f := testForwarder(pool, wp)
	f.kind = webrtc.RTPCodecTypeVideo
	f.codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	f.hist = &history{}
	defer f.releaseHistory()
	s := testSubscriber(wp, 64)
	w := &recordWriter{}
	d := newDownTrack(f, s)
	d.bound.Store(&binding{ssrc: 99, pt: 96, ws: w})
	d.target.Store(f)
	sc := newSendScratch()
	now := time.Now()
	mk := func(seq uint16, pad bool, padBytes byte) *packet {
		p := makePacket(pool, seq)
		if pad {
			p.payload = p.payload[:0]
			p.padding, p.keyframe = true, false
		}
		p.hdr.Padding, p.hdr.PaddingSize = pad || padBytes > 0, padBytes
		p.src = f
		return p
	}
	var sent, all []*packet
	for seq := uint16(500); seq < 530; seq++ {
		p := mk(seq, seq%3 == 1, byte(seq%5)*3)
		p.refs.Store(1) // the test's
		all = append(all, p)
		f.hist.add(p)
		d.write(p, now, sc)
		if !p.padding {
			sent = append(sent, p)
		}
	}
	if len(w.pkts) != len(sent) {
		t.Fatalf("%d packets written, want the %d with payload", len(w.pkts), len(sent))
	}
	for i, got := range w.pkts {
		if got.SequenceNumber != 500+uint16(i) || got.SSRC != 99 || got.Padding || !bytes.Equal(got.Payload, sent[i].payload) ||
			got.Timestamp != sent[i].hdr.Timestamp {
			t.Fatalf("packet %d arrived as seq %d ts %d padding %v (%d bytes), want seq %d ts %d and the payload",
				i, got.SequenceNumber, got.Timestamp, got.Padding, len(got.Payload), 500+i, sent[i].hdr.Timestamp)
		}
	}
	w.pkts = nil
	d.sub.queueNACK(d, rtcp.NackPairsFromSequenceNumbers([]uint16{503, 505, 510}))
	if n := s.answerNACKs(now, sc); n != 3 {
		t.Fatalf("%d packets sent again, want 3", n)
	}
	for i, out := range []uint16{503, 505, 510} {
		got, want := w.pkts[i], sent[out-500]
		if got.SequenceNumber != out || !bytes.Equal(got.Payload, want.payload) || got.Timestamp != want.hdr.Timestamp {
			t.Errorf("NACK of %d answered with seq %d ts %d, want the publisher's seq %d", out, got.SequenceNumber, got.Timestamp, want.hdr.SequenceNumber)
		}
	}
	for _, p := range all {
		p.release()
	}
	for _, q := range s.queue.Close(nil) {
		q.p.release()
	}
}

// Padding the SFU adds (probes) takes the next numbers: later packets move
// on past it, and a NACK of an added number maps to nothing, on the current
// source and on one left since.
func TestRewriterInserts(t *testing.T) {
	var r rewriter
	a, b := &forwarder{}, &forwarder{}
	if _, _, ok := r.insert(); ok {
		t.Fatal("inserted before numbering started")
	}
	r.start(a, 100, 1000, 0)
	r.next(100, 1000, false)
	r.next(101, 1000, false)
	for i := range 3 {
		seq, ts, ok := r.insert()
		if !ok || seq != 102+uint16(i) || ts != 1000 {
			t.Fatalf("insert %d: %d at %d (%v), want %d at 1000", i, seq, ts, ok, 102+i)
		}
	}
	if out, _, _ := r.next(102, 4000, false); out != 105 {
		t.Fatalf("the packet after the inserts: %d, want 105", out)
	}
	r.next(103, 4000, true) // left out
	r.insert()              // 106
	if out, _, _ := r.next(104, 4000, false); out != 107 {
		t.Fatalf("after a packet left out and an insert: %d, want 107", out)
	}
	r.insert() // 108
	r.start(b, 9000, 50, 3000)
	if out, _, _ := r.next(9000, 50, false); out != 109 {
		t.Fatalf("the new source starts at %d, want 109", out)
	}
	for out, want := range map[uint16]int{100: 100, 101: 101, 102: -1, 103: -1, 104: -1, 105: 102, 106: -1, 107: 104, 108: -1, 109: 9000} {
		s, in, _, ok := r.lookup(out)
		if want < 0 {
			if ok {
				t.Errorf("NACK of inserted %d maps to %d", out, in)
			}
			continue
		}
		if !ok || int(in) != want || (want == 9000) != (s == b) {
			t.Errorf("NACK of %d maps to %d (ok %v), want %d", out, in, ok, want)
		}
	}
}

// A random mix of what a downTrack meets — packets left out, lost, late,
// duplicated, padding inserted, switches to another source — keeps the
// numbering sound: every outgoing number is used once, and every number maps
// back to what was sent with it (a NACK of an inserted one to nothing, a gap
// to a publisher packet that did not come in order, never to one left out).
func TestRewriterRandom(t *testing.T) {
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 99))
		var r rewriter
		type pub struct {
			src  int
			seq  uint16
			drop bool
		}
		srcs := []*forwarder{{}}
		cur := 0
		next := uint16(rng.IntN(65536))
		var pending []pub         // sent by the publisher, not yet arrived
		byOut := map[uint16]pub{} // outgoing number -> what was sent with it (src -1: inserted)
		onTime := map[pub]bool{}  // came in order
		deliver := func(ev pub) {
			if ev.src != cur {
				return // another source's: the downTrack does not give it
			}
			if !r.started || r.src != srcs[cur] {
				r.start(srcs[cur], ev.seq, 0, 3000)
			}
			out, _, v := r.next(ev.seq, 0, ev.drop)
			if v == drop {
				return
			}
			if prev, dup := byOut[out]; dup {
				t.Fatalf("seed %d: out %d used for %+v and for %+v", seed, out, prev, ev)
			}
			if (v == fill) != ev.drop {
				t.Fatalf("seed %d: %+v: verdict %d", seed, ev, v)
			}
			byOut[out] = ev
		}
		for range 6000 {
			if rng.IntN(700) == 0 {
				srcs = append(srcs, &forwarder{})
				cur++
				next = uint16(rng.IntN(65536))
			}
			ev := pub{src: cur, seq: next, drop: rng.IntN(5) == 0}
			next++
			switch x := rng.IntN(100); {
			case x < 5: // lost
			case x < 12:
				pending = append(pending, ev) // arrives late
			default:
				onTime[ev] = true
				deliver(ev)
				if rng.IntN(30) == 0 {
					deliver(ev) // a duplicate
				}
			}
			if len(pending) > 0 && rng.IntN(3) == 0 {
				k := rng.IntN(len(pending))
				deliver(pending[k])
				pending = append(pending[:k], pending[k+1:]...)
			}
			if r.sent && rng.IntN(40) == 0 {
				for range 1 + rng.IntN(3) {
					out, _, ok := r.insert()
					if !ok {
						t.Fatal("insert failed")
					}
					if prev, dup := byOut[out]; dup {
						t.Fatalf("seed %d: inserted out %d already used for %+v", seed, out, prev)
					}
					byOut[out] = pub{src: -1}
				}
			}
		}
		// As far back as the points kept reach.
		oldest := r.points[(r.head-r.np+1+rewritePoints)%rewritePoints].outStart()
		checked := 0
		for ext := oldest; ext <= r.lastOut; ext++ {
			out := uint16(ext)
			checked++
			s, in, _, ok := r.lookup(out)
			want, used := byOut[out]
			switch {
			case used && want.src == -1:
				if ok {
					t.Fatalf("seed %d: NACK of inserted %d maps to %d", seed, out, in)
				}
			case used:
				if !ok || in != want.seq || s != srcs[want.src] {
					t.Fatalf("seed %d: NACK of %d maps to %d (ok %v), sent for %+v", seed, out, in, ok, want)
				}
			case ok:
				// A gap: the receiver NACKs it. It is the place of a
				// publisher packet lost, late or still on its way, never
				// of one that came in order.
				k := slices.Index(srcs, s)
				if onTime[pub{src: k, seq: in, drop: true}] || onTime[pub{src: k, seq: in}] {
					t.Fatalf("seed %d: gap at out %d is publisher packet %d of source %d, which came in order", seed, out, in, k)
				}
			}
		}
		if checked < 100 {
			t.Fatalf("seed %d: only %d numbers checked", seed, checked)
		}
	}
}

// A subscriber held below what it wants probes its link: right after its
// video frames' ends, padding-only packets that pad its traffic up to the
// probe's rate, numbered in line with the media (no gap, no number twice),
// for the probe's duration; a NACK of one maps to nothing.
func TestProbePadding(t *testing.T) {
	pool := newPacketPool()
	wp := &writerPool{workers: []*writer{{wake: make(chan struct{}, 1)}}}
	f := testForwarder(pool, wp)
	f.kind = webrtc.RTPCodecTypeVideo
	f.codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	s := testSubscriber(wp, 64)
	s.wanted.Store(5_000_000) // more than the estimate's initial 1 Mbit/s
	w := &recordWriter{}
	d := newDownTrack(f, s)
	d.bound.Store(&binding{ssrc: 99, pt: 96, ws: w, twcc: 2})
	d.target.Store(f)
	sc := newSendScratch()
	now := time.Now()
	seq := uint16(1000)
	var all []*packet
	for frame := range 12 { // 400 ms of 30 fps
		for k := range 3 {
			p := videoPacket(pool, seq, uint32(frame)*3000, k == 2)
			p.refs.Store(1)
			p.src = f
			all = append(all, p)
			d.write(p, now, sc)
			seq++
		}
		now = now.Add(33 * time.Millisecond)
	}
	padding, media := 0, 0
	var padBytes int
	for i, p := range w.pkts {
		if i > 0 && p.SequenceNumber != w.pkts[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: seq %d after %d", i, p.SequenceNumber, w.pkts[i-1].SequenceNumber)
		}
		if len(p.Payload) == 0 {
			if !p.Padding || p.PaddingSize != 255 {
				t.Fatalf("packet %d: empty payload without padding", i)
			}
			if prev := w.pkts[i-1]; !prev.Marker && len(prev.Payload) > 0 {
				t.Fatalf("padding (packet %d) inside a frame", i)
			}
			if _, _, _, ok := d.rw.lookup(p.SequenceNumber); ok {
				t.Errorf("a NACK of padding %d maps to a packet", p.SequenceNumber)
			}
			padding++
			padBytes += 12 + 4 + 255
			continue
		}
		media++
		if p.Padding {
			t.Fatalf("packet %d: media with padding", i)
		}
	}
	probeBps := float64(padBytes*8) / bwe.ProbeDuration.Seconds()
	t.Logf("%d media packets, %d padding (%.0f kbit/s over the probe), probe state %+v", media, padding, probeBps/1000, s.probe)
	if media != 36 || padding == 0 || probeBps < 500_000 {
		t.Errorf("%d media and %d padding packets: the probe padded %.0f bit/s", media, padding, probeBps)
	}
	if s.probe.cluster != 0 {
		t.Error("the probe cluster did not end")
	}
	for _, p := range all {
		p.release()
	}
}

// A video paused for lack of bandwidth carries probe padding after its
// carrier's frames; every packet of the carrier (not only a frame's last)
// is left out without a number, so when the video resumes at a keyframe the
// receiver sees no gap, and has nothing of the paused frames to NACK.
func TestPausedCarrierLeavesNoGap(t *testing.T) {
	pool := newPacketPool()
	wp := &writerPool{workers: []*writer{{wake: make(chan struct{}, 1)}}}
	f := testForwarder(pool, wp)
	f.kind = webrtc.RTPCodecTypeVideo
	f.codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	s := testSubscriber(wp, 64)
	s.wanted.Store(5_000_000)
	w := &recordWriter{}
	d := newDownTrack(f, s)
	d.bound.Store(&binding{ssrc: 99, pt: 96, ws: w, twcc: 2})
	d.target.Store(f)
	sc := newSendScratch()
	now := time.Now()
	seq := uint16(2000)
	var all []*packet
	frames := func(n int, key bool) {
		for frame := range n {
			for k := range 3 {
				p := videoPacket(pool, seq, uint32(seq)*100, k == 2)
				p.keyframe = key && frame == 0 && k == 0
				p.refs.Store(1)
				p.src = f
				all = append(all, p)
				d.write(p, now, sc)
				seq++
			}
			now = now.Add(33 * time.Millisecond)
		}
	}
	frames(3, true)
	d.target.Store(nil) // paused, on f as the carrier
	d.carrier.Store(f)
	frames(10, false)
	d.carrier.Store(nil)
	d.target.Store(f)
	frames(3, true) // resumes at a keyframe
	media := 0
	for i, p := range w.pkts {
		if i > 0 && p.SequenceNumber != w.pkts[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: seq %d after %d", i, p.SequenceNumber, w.pkts[i-1].SequenceNumber)
		}
		if len(p.Payload) > 0 {
			media++
		}
	}
	if media != 18 {
		t.Errorf("%d media packets sent, want the 18 outside the pause", media)
	}
	for _, p := range all {
		p.release()
	}
}
