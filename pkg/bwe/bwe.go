// Package bwe estimates how fast one send path can carry media: a send-side
// bandwidth estimate from transport-wide congestion control feedback
// (draft-holmer-rmcat-transport-wide-cc-extensions-01), with a delay-based
// detector (delay.go), a loss-based cap, REMB from receivers that send it,
// and probe clusters that find spare capacity.
//
// One Estimator serves one subscribe connection. Its sender stamps each
// packet with a transport-wide sequence number and tells the estimator with
// Sent (lock-free, allocation-free: it runs once per forwarded packet); the
// connection's RTCP reader hands it the receiver's feedback (OnFeedback,
// OnREMB) and round-trip times (SetRTT). Target is the estimate, in bits per
// second, read by whoever decides what to send.
package bwe

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Config bounds an estimator. Zero fields take the defaults.
type Config struct {
	// Initial is the estimate before any feedback; default 1 Mbit/s.
	Initial int
	// Min and Max bound the estimate; default 30 kbit/s and 50 Mbit/s.
	Min, Max int
}

func (c Config) withDefaults() Config {
	if c.Initial <= 0 {
		c.Initial = 1_000_000
	}
	if c.Min <= 0 {
		c.Min = 30_000
	}
	if c.Max <= 0 {
		c.Max = 50_000_000
	}
	c.Initial = min(max(c.Initial, c.Min), c.Max)
	return c
}

// historySize is how many sent packets are remembered for their feedback:
// about 2 s at 1000 packets a second.
const historySize = 2048

const (
	ackBinUs      = 50_000 // acked bitrate bins
	ackBins       = 16
	ackWindowBins = 10 // the acked rate is measured over 500 ms
	decrease      = 0.85
	increasePerS  = 1.08 // multiplicative increase per second
	lossHigh      = 0.10
	lossLow       = 0.02
	lossMinCount  = 20
	lossPeriod    = 200 * time.Millisecond
	rembValidity  = 3 * time.Second
	alrRatio      = 0.5 // a sender under this share of the estimate is application-limited
	// minDropInterval is the least time between two decreases (a path of
	// a millisecond's round trip would otherwise cut at every feedback).
	minDropInterval = 100 * time.Millisecond
)

// Estimator is the bandwidth estimate of one send path.
type Estimator struct {
	cfg  Config
	base time.Time // send stamps are µs since base

	// hist is written by Sent (the sender) and read by OnFeedback: each
	// entry is seq<<48 | size<<36 | cluster<<32 | send µs (low 32 bits).
	hist     [historySize]atomic.Uint64
	target   atomic.Int64
	measured atomic.Bool
	rtt      atomic.Int64 // ns, from receiver reports; 0 unknown
	// fbRTT is a round trip measured from the feedback, for receivers
	// whose reports carry none: from a packet's send to the feedback's
	// arrival, less how long after the packet the feedback's last packet
	// arrived (the feedback is sent soon after), the least of a feedback.
	fbRTT atomic.Int64

	mu                  sync.Mutex
	fb                  feedbackReader
	delay               delayDetector
	started             bool
	highest             int64 // extended sequence number of the newest packet reported
	rate                float64
	lossCap             float64
	capMean             float64 // link capacity estimate at the last decreases (bits/s), 0 unknown
	capVar              float64
	holding             bool
	lastCtl             time.Time
	lastDrop            time.Time
	bins                rateBins // the bytes received, by arrival
	sentBins            rateBins // the bytes of the packets reported, by send time
	lastArrUs           int64
	lastSentUs          int64 // the send time of the newest packet reported
	lost, total         int
	lossSince           time.Time
	lastLoss            float64
	remb                float64
	rembAt              time.Time
	probes              [probeClusters]probe
	nextCluster         uint8
	probeAt             time.Time // when the next probe may start
	probeWait           time.Duration
	probeDrain          time.Time // until when an overuse is a probe's own queue draining
	probeLimit          float64   // the rate a probe found the path's limit at (bits/s), 0: none found
	probeQueued         bool      // the delay signal said overuse while a probe was out
	feedbacks, overuses uint64
}

// New returns an estimator whose clock starts now.
func New(cfg Config, now time.Time) *Estimator {
	cfg = cfg.withDefaults()
	e := &Estimator{cfg: cfg, base: now, rate: float64(cfg.Initial), lossCap: math.Inf(1), delay: newDelayDetector()}
	e.target.Store(int64(cfg.Initial))
	return e
}

// Target is the estimate in bits per second.
func (e *Estimator) Target() int { return int(e.target.Load()) }

// Measured reports whether the estimate rests on the receiver's word yet
// (a few feedback packets, a REMB or a receiver report's loss), not only on
// Config.Initial.
func (e *Estimator) Measured() bool { return e.measured.Load() }

// RTT is the path's round-trip time: the last one given to SetRTT (from
// receiver reports), else one measured from the feedback (0: none yet).
func (e *Estimator) RTT() time.Duration {
	if d := e.rtt.Load(); d > 0 {
		return time.Duration(d)
	}
	return time.Duration(e.fbRTT.Load())
}

// SetRTT gives the path's round-trip time (from receiver reports).
func (e *Estimator) SetRTT(d time.Duration) {
	if d > 0 {
		e.rtt.Store(int64(d))
	}
}

func (e *Estimator) us(t time.Time) int64 { return int64(t.Sub(e.base) / time.Microsecond) }

// Sent records that the packet with transport-wide sequence number seq, of
// size bytes, went out at at, as part of probe cluster (0: none). Only the
// sender calls it; it neither locks nor allocates.
func (e *Estimator) Sent(seq uint16, size int, at time.Time, cluster uint8) {
	v := uint64(seq)<<48 | uint64(min(size, 4095))<<36 | uint64(cluster&15)<<32 | uint64(uint32(e.us(at)))
	e.hist[seq%historySize].Store(v)
}

// sent looks up a packet's send time (µs, unwrapped next to nowUs), size and
// cluster.
func (e *Estimator) sent(seq uint16, nowUs int64) (sendUs int64, size int, cluster uint8, ok bool) {
	v := e.hist[seq%historySize].Load()
	if v == 0 || uint16(v>>48) != seq {
		return 0, 0, 0, false
	}
	lo := uint32(v)
	sendUs = nowUs - int64(uint32(nowUs)-lo)
	return sendUs, int(v>>36) & 4095, uint8(v>>32) & 15, true
}

// OnFeedback takes a transport-wide CC feedback packet (one RTCP packet,
// header included) received at now. It reports whether the packet was one.
func (e *Estimator) OnFeedback(b []byte, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fb.parse(b) != nil {
		return false
	}
	e.feedbacks++
	if e.feedbacks >= 5 {
		e.measured.Store(true)
	}
	nowUs := e.us(now)
	var lastArr, lastSend, maxArr int64
	minSince := int64(math.MaxInt64) // least of now - send - arrival, µs
	err := e.fb.each(func(seq uint16, received bool, arrUs int64) bool {
		ext := int64(seq)
		if e.started {
			ext = e.highest + int64(int16(seq-uint16(e.highest)))
			if ext <= e.highest {
				return true // reported before
			}
		}
		sendUs, size, cluster, ok := e.sent(seq, nowUs)
		if !ok {
			return true
		}
		if !e.started || ext > e.highest {
			e.started, e.highest = true, ext
		}
		e.total++
		lastSend = max(lastSend, sendUs)
		e.sentBins.add(sendUs, size)
		if cluster != 0 {
			e.probes[cluster].sentPacket(sendUs, size)
		}
		if !received {
			e.lost++
			return true
		}
		if cluster != 0 {
			e.probes[cluster].received(arrUs, size)
		}
		e.bins.add(arrUs, size)
		lastArr = arrUs
		maxArr = max(maxArr, arrUs)
		minSince = min(minSince, nowUs-sendUs-arrUs)
		if e.delay.packet(sendUs, arrUs, size) && e.delay.state == usageOver {
			e.overuses++
		}
		return true
	})
	if err != nil {
		return true
	}
	if lastArr != 0 {
		e.lastArrUs = lastArr
		// now - send - (maxArr - arr), least over the packets.
		if rtt := time.Duration(minSince+maxArr) * time.Microsecond; rtt > 0 && rtt < 10*time.Second {
			if old := e.fbRTT.Load(); old > 0 {
				rtt = time.Duration(0.8*float64(old) + 0.2*float64(rtt))
			}
			e.fbRTT.Store(int64(rtt))
		}
	}
	if lastSend != 0 {
		e.lastSentUs = max(e.lastSentUs, lastSend)
	}
	e.evaluateProbes(lastSend, now)
	e.control(now)
	return true
}

// rateBins count bytes in bins of ackBinUs by a packet's time (µs).
type rateBins [ackBins]struct {
	idx   int64
	bytes int
}

func (r *rateBins) add(us int64, size int) {
	idx := us / ackBinUs
	b := &r[idx%ackBins]
	if b.idx != idx {
		b.idx, b.bytes = idx, 0
	}
	b.bytes += size
}

// rate is the rate over the ackWindowBins bins up to the one of lastUs, in
// bits per second (0 when too little is known).
func (r *rateBins) rate(lastUs int64) float64 {
	last := lastUs / ackBinUs
	bytes, oldest := 0, last
	for _, b := range r {
		if b.bytes > 0 && b.idx > last-ackWindowBins && b.idx <= last {
			bytes += b.bytes
			oldest = min(oldest, b.idx)
		}
	}
	span := float64(last-oldest+1) * ackBinUs / 1e6
	if bytes == 0 || last-oldest < 2 {
		return 0
	}
	return float64(bytes) * 8 / span
}

// ackedRate is what the receiver got over the last ackWindowBins bins, in
// bits per second (0 when too little is known).
func (e *Estimator) ackedRate() float64 { return e.bins.rate(e.lastArrUs) }

// sentRate is what was sent over such a span, of the packets reported.
func (e *Estimator) sentRate() float64 { return e.sentBins.rate(e.lastSentUs) }

// control updates the estimate after a feedback: AIMD on the delay signal,
// capped by loss and REMB.
func (e *Estimator) control(now time.Time) {
	dt := 0.0
	if !e.lastCtl.IsZero() {
		dt = min(now.Sub(e.lastCtl).Seconds(), 1)
	}
	e.lastCtl = now
	acked := e.ackedRate()
	rtt := e.RTT()
	if rtt <= 0 {
		rtt = 100 * time.Millisecond
	}
	switch e.delay.state {
	case usageOver:
		if e.probing() {
			// A probe cluster fills the path on purpose: the queue it
			// builds is how it measures. Its evaluation decides
			// (evaluateProbes), with the rate the path delivered.
			e.probeQueued = true
		} else if now.Sub(e.lastDrop) >= max(rtt, minDropInterval) && now.After(e.probeDrain) {
			// Down to a little under what the receiver got: the queue
			// grew at that rate. Unless the sender was application-limited
			// (it sent under half the estimate, as a subscriber whose
			// video paused does: audio and probes), when what got through
			// says nothing of the path's capacity: the estimate itself
			// backs off then, as WebRTC's ALR-limited backoff does.
			base := e.rate
			if acked > 0 && e.sentRate() >= alrRatio*e.rate {
				base = acked
				e.updateCapacity(acked)
			}
			if r := decrease * base; r < e.rate {
				e.rate = r
			}
			e.lastDrop = now
		}
		e.holding = true
	case usageUnder:
		e.holding = true
	default:
		if e.holding {
			e.holding = false // start increasing from now on
			break
		}
		prev := e.rate
		if e.capMean > 0 && e.rate > e.capMean-3*math.Sqrt(e.capVar) {
			// Near the capacity last seen: a packet's worth per response time.
			resp := rtt.Seconds() + 0.1
			e.rate += 1200 * 8 / resp * dt
		} else {
			e.rate *= math.Pow(increasePerS, dt)
		}
		if e.capMean > 0 && e.rate > e.capMean+3*math.Sqrt(e.capVar) {
			e.capMean, e.capVar = 0, 0 // the capacity changed: forget it
		}
		if acked > 0 {
			// An estimate grows only so far above what the receiver gets
			// (the rest is found by probing); it is never pulled down by it.
			e.rate = math.Min(e.rate, math.Max(prev, 1.5*acked+10_000))
		}
	}
	e.lossControl(now, rtt)
	e.publish(now)
}

// updateCapacity folds an acked rate at a decrease into the capacity estimate.
func (e *Estimator) updateCapacity(acked float64) {
	if e.capMean == 0 {
		e.capMean, e.capVar = acked, (0.1*acked)*(0.1*acked)
		return
	}
	if math.Abs(acked-e.capMean) > 3*math.Sqrt(e.capVar) {
		e.capMean, e.capVar = acked, (0.1*acked)*(0.1*acked)
		return
	}
	d := acked - e.capMean
	e.capMean += 0.05 * d
	e.capVar = math.Max(0.95*e.capVar+0.05*d*d, (0.02*e.capMean)*(0.02*e.capMean))
}

// lossControl caps the estimate when the receiver loses much.
func (e *Estimator) lossControl(now time.Time, rtt time.Duration) {
	if e.lossSince.IsZero() {
		e.lossSince = now
	}
	if e.total < lossMinCount || now.Sub(e.lossSince) < lossPeriod {
		return
	}
	p := float64(e.lost) / float64(e.total)
	e.lastLoss = p
	e.lost, e.total, e.lossSince = 0, 0, now
	cur := math.Min(e.rate, e.lossCap)
	switch {
	case p > lossHigh:
		// Down by half the loss, but not far below what the receiver
		// got: a path that drops what it cannot carry delivers about its
		// capacity, and a lossy radio loses as much at a lower rate.
		e.lossCap = math.Max(cur*(1-0.5*p), 0.8*e.ackedRate())
		e.rate = math.Min(e.rate, e.lossCap)
	case p < lossLow:
		e.lossCap = math.Inf(1)
	}
}

// OnReceiverLoss takes the fraction lost of a receiver report. It moves
// the estimate only on a path without transport-wide feedback (a receiver
// that did not negotiate it), the loss-based way: down by half the loss
// above 10 %, up 5 % below 2 %.
func (e *Estimator) OnReceiverLoss(p float64, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.feedbacks > 0 {
		return
	}
	e.lastLoss = p
	e.measured.Store(true)
	switch {
	case p > lossHigh:
		e.rate *= 1 - 0.5*p
	case p < lossLow:
		e.rate = e.rate*1.05 + 1000
	}
	e.publish(now)
}

// OnREMB takes a receiver's estimate (REMB), in bits per second.
func (e *Estimator) OnREMB(bps float64, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.remb, e.rembAt = bps, now
	e.measured.Store(true)
	e.publish(now)
}

// publish stores the bounded estimate.
func (e *Estimator) publish(now time.Time) {
	t := math.Min(e.rate, e.lossCap)
	if e.remb > 0 && now.Sub(e.rembAt) < rembValidity {
		t = math.Min(t, e.remb)
	}
	t = math.Max(float64(e.cfg.Min), math.Min(float64(e.cfg.Max), t))
	if e.rate < float64(e.cfg.Min) {
		e.rate = float64(e.cfg.Min)
	}
	if e.rate > float64(e.cfg.Max) {
		e.rate = float64(e.cfg.Max)
	}
	e.target.Store(int64(t))
}

// Loss is the share of packets the receiver lost over the last loss period
// (from the feedback, else from receiver reports).
func (e *Estimator) Loss() float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastLoss
}

// Stats describe an estimator's state.
type Stats struct {
	Target     int     // the estimate, bits/s
	Acked      int     // what the receiver got lately, bits/s
	Loss       float64 // the receiver's loss over the last period
	Usage      string  // the delay signal: normal, overuse, underuse
	RTT        time.Duration
	Feedbacks  uint64 // feedback packets taken
	Overuses   uint64 // times the delay signal said overuse
	Probes     uint64 // probe clusters evaluated
	ProbeBest  int    // the best rate a probe delivered, bits/s
	Threshold  float64
	REMB       int // the receiver's own estimate, bits/s (0: none)
	DelayBased int // the delay-based estimate before the loss and REMB caps
}

// Stats returns the estimator's state.
func (e *Estimator) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := Stats{Target: e.Target(), Acked: int(e.ackedRate()), Loss: e.lastLoss, Usage: e.delay.state.String(),
		RTT: e.RTT(), Feedbacks: e.feedbacks, Overuses: e.overuses, Threshold: e.delay.threshold,
		REMB: int(e.remb), DelayBased: int(e.rate)}
	for i := range e.probes {
		st.Probes += e.probes[i].evaluated
		st.ProbeBest = max(st.ProbeBest, e.probes[i].best)
	}
	return st
}
