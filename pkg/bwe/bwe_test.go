package bwe

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// sim is a sender, a bottleneck link and a receiver that sends pion's
// transport-wide CC feedback (the recorder pion's clients use) every 100 ms,
// on a virtual clock.
type sim struct {
	t     *testing.T
	e     *Estimator
	start time.Time
	now   time.Duration // virtual time since start

	linkBps   float64       // bottleneck rate
	queueMax  int           // bytes the bottleneck holds before it drops
	oneWay    time.Duration // propagation delay each way
	lossRate  float64       // random loss after the queue
	overhead  int           // bytes the link carries per packet beyond what the sender counts (IP, UDP, SRTP tag)
	rng       *rand.Rand
	linkFree  time.Duration // when the bottleneck is free again
	seq       uint16
	arrivals  []arrival // packets on their way to the receiver
	rec       *twcc.Recorder
	nextFb    time.Duration
	feedbacks []pendingFb

	sentBytes, recvBytes int
	pausedMs             [2]int // weakmix: ms each video was paused

	// stall, when set, says when the receiver stamps an arrival at a: a
	// receiver starved of CPU reads a backlog late, all at once.
	stall func(at time.Duration) time.Duration
}

type arrival struct {
	at  time.Duration
	seq uint16
}

type pendingFb struct {
	at  time.Duration
	raw []byte
}

func newSim(t *testing.T, linkBps float64, cfg Config) *sim {
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	return &sim{t: t, e: New(cfg, start), start: start, linkBps: linkBps, queueMax: 60_000, oneWay: 20 * time.Millisecond,
		rng: rand.New(rand.NewPCG(1, 2)), rec: twcc.NewRecorder(1), nextFb: 100 * time.Millisecond}
}

func (s *sim) at(d time.Duration) time.Time { return s.start.Add(d) }

// send puts a packet of size bytes on the link now.
func (s *sim) send(size int, cluster uint8) {
	s.seq++
	s.e.Sent(s.seq, size, s.at(s.now), cluster)
	s.sentBytes += size
	if s.linkFree < s.now {
		s.linkFree = s.now
	}
	backlog := float64(s.linkFree-s.now) / float64(time.Second) * s.linkBps / 8
	if int(backlog)+size+s.overhead > s.queueMax {
		return // tail drop
	}
	s.linkFree += time.Duration(float64((size+s.overhead)*8) / s.linkBps * float64(time.Second))
	if s.lossRate > 0 && s.rng.Float64() < s.lossRate {
		return
	}
	s.arrivals = append(s.arrivals, arrival{at: s.linkFree + s.oneWay, seq: s.seq})
	s.recvBytes += size
}

// advance runs the receiver and the feedback path up to d.
func (s *sim) advance(d time.Duration) {
	for s.now < d {
		step := min(d-s.now, time.Millisecond)
		s.now += step
		kept := s.arrivals[:0]
		for _, a := range s.arrivals {
			if a.at <= s.now {
				at := a.at
				if s.stall != nil {
					at = s.stall(at)
				}
				s.rec.Record(2, a.seq, int64(at/time.Microsecond))
			} else {
				kept = append(kept, a)
			}
		}
		s.arrivals = kept
		if s.now >= s.nextFb {
			s.nextFb += 100 * time.Millisecond
			for _, p := range s.rec.BuildFeedbackPacket() {
				raw, err := p.Marshal()
				if err != nil {
					s.t.Fatal(err)
				}
				s.feedbacks = append(s.feedbacks, pendingFb{at: s.now + s.oneWay, raw: raw})
			}
		}
		pending := s.feedbacks[:0]
		for _, f := range s.feedbacks {
			if f.at <= s.now {
				if !s.e.OnFeedback(f.raw, s.at(s.now)) {
					s.t.Fatal("feedback not taken")
				}
			} else {
				pending = append(pending, f)
			}
		}
		s.feedbacks = pending
	}
}

// source sends media at mediaBps in 30 frames a second of up to 1200-byte
// packets for dur, probing as the estimator asks when wanted is more than
// the estimate (wanted 0: never); it returns the estimates at each second.
func (s *sim) source(mediaBps, wanted int, dur time.Duration) []int {
	var perSecond []int
	frame := 33333 * time.Microsecond
	var cluster uint8
	var goal int
	var probeEnd time.Duration
	begin := s.now
	end := s.now + dur
	for next := s.now; next < end; next += frame {
		s.advance(next)
		if cluster == 0 && wanted > 0 {
			if c, g := s.e.Probe(wanted, s.at(s.now)); c != 0 {
				cluster, goal, probeEnd = c, g, s.now+ProbeDuration
			}
		}
		bytes := mediaBps / 8 / 30
		for bytes > 0 {
			n := min(bytes, 1200)
			s.send(n, cluster)
			bytes -= n
		}
		if cluster != 0 {
			s.pad((goal-mediaBps)/8/30, 12, cluster)
		}
		cluster = s.endProbe(cluster, probeEnd)
		perSecond = s.sample(perSecond, begin)
	}
	return perSecond
}

// pad sends bytes of padding in packets of at most 255 bytes and header.
func (s *sim) pad(bytes, header int, cluster uint8) {
	for ; bytes > 0; bytes -= 255 {
		s.send(min(bytes, 255)+header, cluster)
	}
}

// endProbe ends the probe cluster once its time (end) is over; it returns
// the cluster still out (0: none).
func (s *sim) endProbe(cluster uint8, end time.Duration) uint8 {
	if cluster != 0 && s.now >= end {
		s.e.EndProbe(cluster, s.at(s.now))
		return 0
	}
	return cluster
}

// sample adds the estimate to perSecond at each second since begin.
func (s *sim) sample(perSecond []int, begin time.Duration) []int {
	if int((s.now-begin)/time.Second) > len(perSecond) {
		perSecond = append(perSecond, s.e.Target())
	}
	return perSecond
}

// A sender whose media is more than the link carries is brought down to
// about the link's rate.
func TestEstimateFallsToCapacity(t *testing.T) {
	s := newSim(t, 1_000_000, Config{Initial: 3_000_000})
	est := s.source(3_000_000, 0, 10*time.Second)
	st := s.e.Stats()
	t.Logf("estimates per second: %v; %+v", est, st)
	if got := s.e.Target(); got < 500_000 || got > 1_150_000 {
		t.Errorf("estimate %d after 10 s on a 1 Mbit/s link", got)
	}
	if st.Overuses == 0 {
		t.Error("the delay signal never said overuse")
	}
}

// A sender that sends less than the link carries keeps its estimate: the
// link is not the limit.
func TestEstimateHoldsWhenAppLimited(t *testing.T) {
	s := newSim(t, 5_000_000, Config{Initial: 1_000_000})
	est := s.source(600_000, 0, 10*time.Second)
	t.Logf("estimates per second: %v; %+v", est, s.e.Stats())
	for i, e := range est {
		if e < 900_000 {
			t.Fatalf("second %d: the estimate fell to %d on a link four times the media", i, e)
		}
	}
	if s.e.Stats().Overuses != 0 {
		t.Error("overuse on an idle link")
	}
	// No receiver reports: the round trip measured from the feedback, at
	// least the path's 40 ms, at most that and the feedback interval.
	if rtt := s.e.RTT(); rtt < 40*time.Millisecond || rtt > 150*time.Millisecond {
		t.Errorf("round trip %v from the feedback, want 40 to 150 ms", rtt)
	}
}

// A receiver that is starved of CPU now and then (150 ms each second, as
// on a loaded machine) stamps a backlog of packets at once: a burst, not a
// queue on the path. The estimate holds.
func TestStarvedReceiverIsNotOveruse(t *testing.T) {
	s := newSim(t, 5_000_000, Config{Initial: 1_000_000})
	s.stall = func(at time.Duration) time.Duration {
		if in := at % time.Second; in >= 500*time.Millisecond && in < 650*time.Millisecond {
			return at - in + 650*time.Millisecond
		}
		return at
	}
	est := s.source(600_000, 0, 10*time.Second)
	t.Logf("estimates per second: %v; %+v", est, s.e.Stats())
	for i, e := range est {
		if e < 900_000 {
			t.Fatalf("second %d: the estimate fell to %d on a link four times the media", i, e)
		}
	}
}

// Probing finds spare capacity: a sender held at 300 kbit/s that wants
// 2.5 Mbit/s reaches it on a 5 Mbit/s link within a few seconds; on a
// 1 Mbit/s link the probes stay near the link's rate and back off.
func TestProbeFindsCapacity(t *testing.T) {
	s := newSim(t, 5_000_000, Config{Initial: 300_000})
	est := s.source(300_000, 2_500_000, 8*time.Second)
	t.Logf("5 Mbit/s: estimates per second %v; %+v", est, s.e.Stats())
	reached := -1
	for i, e := range est {
		if e >= 2_500_000 {
			reached = i
			break
		}
	}
	if reached < 0 || reached > 5 {
		t.Errorf("the estimate reached 2.5 Mbit/s at second %d (-1: never)", reached)
	}

	s = newSim(t, 1_000_000, Config{Initial: 300_000})
	est = s.source(300_000, 2_500_000, 20*time.Second)
	st := s.e.Stats()
	t.Logf("1 Mbit/s: estimates per second %v; %+v", est, st)
	for i, e := range est {
		if e > 1_300_000 {
			t.Errorf("second %d: estimate %d on a 1 Mbit/s link", i, e)
		}
	}
	if est[len(est)-1] < 850_000 {
		t.Errorf("the estimate ended at %d: probing did not find the link's 1 Mbit/s", est[len(est)-1])
	}
	if st.Probes > 12 {
		t.Errorf("%d probes in 20 s on a link that cannot carry the goal: no back-off", st.Probes)
	}

	// The link lifts to 5 Mbit/s: the next probes find it.
	s.linkBps = 5_000_000
	est = s.source(300_000, 2_500_000, 15*time.Second)
	t.Logf("lifted to 5 Mbit/s: estimates per second %v; %+v", est, s.e.Stats())
	reached = -1
	for i, e := range est {
		if e >= 2_500_000 {
			reached = i
			break
		}
	}
	if reached < 0 || reached > 11 {
		t.Errorf("after the lift, the estimate reached 2.5 Mbit/s at second %d (-1: never)", reached)
	}
}

// A receiver that loses a fifth of the packets (no queue: a lossy radio)
// brings the estimate down.
func TestLossLowersEstimate(t *testing.T) {
	s := newSim(t, 50_000_000, Config{Initial: 2_000_000})
	s.lossRate = 0.2
	est := s.source(1_500_000, 0, 5*time.Second)
	t.Logf("estimates per second %v; %+v", est, s.e.Stats())
	if got := s.e.Target(); got > 1_300_000 {
		t.Errorf("estimate %d with 20 %% loss of 1.5 Mbit/s", got)
	}
}

// REMB caps the estimate while it is fresh.
func TestREMBCaps(t *testing.T) {
	s := newSim(t, 50_000_000, Config{Initial: 2_000_000})
	s.e.OnREMB(700_000, s.at(s.now))
	if got := s.e.Target(); got != 700_000 {
		t.Errorf("estimate %d with a REMB of 700 kbit/s", got)
	}
	s.e.OnREMB(5_000_000, s.at(s.now))
	if got := s.e.Target(); got != 2_000_000 {
		t.Errorf("estimate %d with a REMB above it", got)
	}
	s.e.OnREMB(700_000, s.at(s.now))
	s.source(1_000_000, 0, 2*time.Second)
	if got := s.e.Target(); got != 700_000 {
		t.Errorf("estimate %d with a fresh REMB of 700 kbit/s", got)
	}
	s.source(1_000_000, 0, 2*time.Second)
	if got := s.e.Target(); got < 2_000_000 {
		t.Errorf("estimate %d once the REMB went stale", got)
	}
}

// Without transport-wide feedback, receiver reports' loss moves the
// estimate; with it, they do not.
func TestReceiverLossWithoutFeedback(t *testing.T) {
	now := time.Now()
	e := New(Config{Initial: 1_000_000}, now)
	e.OnReceiverLoss(0.3, now)
	if got := e.Target(); got != 850_000 {
		t.Errorf("estimate %d after 30 %% loss, want 850000", got)
	}
	e.OnReceiverLoss(0, now)
	if got := e.Target(); got != 893_500 {
		t.Errorf("estimate %d after no loss, want 893500", got)
	}
	s := newSim(t, 50_000_000, Config{Initial: 1_000_000})
	s.source(500_000, 0, time.Second)
	before := s.e.Target()
	s.e.OnReceiverLoss(0.5, s.at(s.now))
	if got := s.e.Target(); got != before {
		t.Errorf("a receiver report moved the estimate of a path with feedback from %d to %d", before, got)
	}
}

// The feedback reader agrees with pion's parser on every kind of chunk:
// run lengths, one- and two-bit status vectors, large and negative deltas,
// across the sequence number wrap.
func TestFeedbackReader(t *testing.T) {
	rec := twcc.NewRecorder(5)
	rng := rand.New(rand.NewPCG(3, 4))
	at := int64(1_000_000)
	seq := uint16(65500)
	for i := range 300 {
		switch {
		case i > 50 && i < 80: // a run of losses
		case rng.IntN(7) == 0: // scattered losses
		default:
			d := int64(rng.IntN(3000))
			if i%37 == 0 {
				d = 90_000 // a large delta
			}
			at += d
			a := at
			if i%53 == 0 {
				a -= 5000 // arrived before its predecessor
			}
			rec.Record(2, seq, a)
		}
		seq++
	}
	for _, p := range rec.BuildFeedbackPacket() {
		raw, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		cc := p.(*rtcp.TransportLayerCC)
		var want []string
		ref := int64(cc.ReferenceTime) * 64000
		d := 0
		s := cc.BaseSequenceNumber
		for _, ch := range cc.PacketChunks {
			var syms []uint16
			switch c := ch.(type) {
			case *rtcp.RunLengthChunk:
				for range c.RunLength {
					syms = append(syms, c.PacketStatusSymbol)
				}
			case *rtcp.StatusVectorChunk:
				syms = c.SymbolList
			}
			for _, sym := range syms {
				if len(want) == int(cc.PacketStatusCount) {
					break
				}
				if sym == rtcp.TypeTCCPacketNotReceived {
					want = append(want, fmtStatus(s, false, 0))
				} else {
					ref += cc.RecvDeltas[d].Delta
					d++
					want = append(want, fmtStatus(s, true, ref))
				}
				s++
			}
		}
		var r feedbackReader
		if err := r.parse(raw); err != nil {
			t.Fatal(err)
		}
		var got []string
		if err := r.each(func(seq uint16, received bool, arrUs int64) bool {
			got = append(got, fmtStatus(seq, received, arrUs))
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%d statuses read, pion reads %d", len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("status %d: %s, pion reads %s", i, got[i], want[i])
			}
		}
	}
	var r feedbackReader
	for _, bad := range [][]byte{nil, {0x8f, 205, 0, 1}, {0x8f, 205, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 5, 0, 0, 0, 0}} {
		if r.parse(bad) == nil {
			if err := r.each(func(uint16, bool, int64) bool { return true }); err == nil {
				t.Errorf("malformed feedback % x read without an error", bad)
			}
		}
	}
}

func fmtStatus(seq uint16, received bool, at int64) string {
	if !received {
		return "seq " + itoa(int64(seq)) + " lost"
	}
	return "seq " + itoa(int64(seq)) + " at " + itoa(at)
}

func itoa(v int64) string {
	if v == 0 {
		return "0"
	}
	neg := v < 0
	if neg {
		v = -v
	}
	var b []byte
	for v > 0 {
		b = append([]byte{byte('0' + v%10)}, b...)
		v /= 10
	}
	if neg {
		b = append([]byte{'-'}, b...)
	}
	return string(b)
}

// Sent and OnFeedback allocate nothing: they run per packet and per
// feedback of every subscriber.
func TestNoAllocations(t *testing.T) {
	start := time.Now()
	e := New(Config{}, start)
	rec := twcc.NewRecorder(1)
	for i := range 100 {
		e.Sent(uint16(i), 1200, start.Add(time.Duration(i)*time.Millisecond), 0)
		rec.Record(2, uint16(i), int64(i*1000+20000))
	}
	raw, err := rec.BuildFeedbackPacket()[0].Marshal()
	if err != nil {
		t.Fatal(err)
	}
	at := start
	if n := testing.AllocsPerRun(100, func() {
		at = at.Add(time.Millisecond)
		e.Sent(7, 1200, at, 0)
	}); n != 0 {
		t.Errorf("Sent allocates %.1f times", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		at = at.Add(time.Millisecond)
		e.OnFeedback(raw, at)
	}); n != 0 {
		t.Errorf("OnFeedback allocates %.1f times", n)
	}
}
