package bwe

import (
	"math"
	"time"
)

// Probing. An estimate only grows so far above what the receiver gets
// (1.5 times), so a subscriber held on a low layer would never show that its
// link could carry a higher one. A probe cluster sends more for a short
// while (the sender pads its media up to a goal rate), and the rate at which
// the cluster's packets arrived is capacity the path has shown: the
// estimate jumps to it unless the delay signal saw a queue grow meanwhile.
// Probes double the estimate at most, so a recovered link is found in a few
// steps; a probe that fails waits longer before the next (up to
// probeWaitMax: a link that lifts is found within about that), so a link
// that is truly weak is not flooded.
//
// A probe that found a limit (it delivered less than its goal) is
// remembered: the next probes aim only probeOverLimit above it, not at twice
// the estimate, until one carries its goal (the link lifted; probes double
// again from there). On a weak link a probe at twice its rate builds a queue
// that outlasts the probe and cuts the estimate well below the link after
// each probe (a 400 kbit/s link held at 200–300 kbit/s, probing every 2 s);
// one a quarter above what the link showed costs a queue of a few packets.
// Probes that keep finding the same limit also space out, as failed ones do.

const (
	probeClusters   = 16 // cluster ids 1..15; 0 means none
	probeDuration   = 200 * time.Millisecond
	probeWaitMin    = 500 * time.Millisecond
	probeWaitFailed = 2 * time.Second
	probeWaitMax    = 5 * time.Second
	probeTimeout    = time.Second            // after its end, a probe not fully reported is evaluated anyway
	probeAbandon    = 500 * time.Millisecond // a probe the sender did not end this long after its time is over
	probeMinPackets = 5
	probeOverLimit  = 1.25              // a probe after one that found a limit aims this far above it
	probeDrainFor   = 2 * probeDuration // a queue a probe built drains within this of its evaluation
)

// probe is one cluster's accounting, from the feedback of its packets.
type probe struct {
	active, done        bool
	goal                int
	startAt             time.Time // when Probe started it
	endUs               int64     // the sender's last packet of the cluster
	endAt               time.Time
	sentN, sentBytes    int
	firstSend, lastSend int64
	lastSize            int
	recvN, recvBytes    int
	firstArr, lastArr   int64
	firstSize           int
	evaluated           uint64
	best                int
}

func (p *probe) sentPacket(sendUs int64, size int) {
	if !p.active {
		return
	}
	if p.sentN == 0 || sendUs < p.firstSend {
		p.firstSend = sendUs
	}
	if sendUs >= p.lastSend {
		p.lastSend, p.lastSize = sendUs, size
	}
	p.sentN++
	p.sentBytes += size
}

func (p *probe) received(arrUs int64, size int) {
	if !p.active {
		return
	}
	if p.recvN == 0 || arrUs < p.firstArr {
		p.firstArr, p.firstSize = arrUs, size
	}
	p.lastArr = max(p.lastArr, arrUs)
	p.recvN++
	p.recvBytes += size
}

// result is what the cluster showed (0, 0: no result): the rates it was sent
// and received at. A cluster that filled the path makes a queue (the delay
// signal says overuse meanwhile), and its receive rate, under its send rate,
// is then the path's capacity.
func (p *probe) result() (send, recv int) {
	if p.sentN < probeMinPackets || p.recvN*5 < p.sentN*4 {
		return 0, 0
	}
	sendSpan := float64(p.lastSend-p.firstSend) / 1e6
	recvSpan := float64(p.lastArr-p.firstArr) / 1e6
	if sendSpan < 0.02 || recvSpan < 0.02 {
		return 0, 0
	}
	return int(float64(p.sentBytes-p.lastSize) * 8 / sendSpan), int(float64(p.recvBytes-p.firstSize) * 8 / recvSpan)
}

// Probe says whether a probe cluster should start now, for a sender that
// would send wanted bits per second if the estimate allowed: it returns the
// cluster's id (0: no probe now) and the rate to pad up to for
// ProbeDuration. The sender tags every packet it sends meanwhile with the
// cluster (Sent) and calls EndProbe after.
func (e *Estimator) Probe(wanted int, now time.Time) (cluster uint8, goal int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	target := e.Target()
	if wanted <= target || now.Before(e.probeAt) || e.delay.state == usageOver {
		return 0, 0
	}
	if e.probing() {
		return 0, 0
	}
	e.nextCluster = e.nextCluster%(probeClusters-1) + 1
	p := &e.probes[e.nextCluster]
	*p = probe{active: true, startAt: now, evaluated: p.evaluated, best: p.best}
	p.goal = min(wanted+wanted/5, max(2*target, target+100_000))
	if e.probeLimit > 0 {
		// Just above the limit found, even when the estimate grew past
		// it meanwhile (while the sender sent less than the path
		// carries): such a probe checks it.
		p.goal = min(p.goal, int(probeOverLimit*e.probeLimit))
	}
	return e.nextCluster, p.goal
}

// probing reports whether a probe cluster is out (started, not yet
// evaluated).
func (e *Estimator) probing() bool {
	for i := range e.probes {
		if e.probes[i].active {
			return true
		}
	}
	return false
}

// ProbeDuration is how long a probe cluster pads.
const ProbeDuration = probeDuration

// EndProbe says the sender sent the cluster's last packet at now.
func (e *Estimator) EndProbe(cluster uint8, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if cluster == 0 || cluster >= probeClusters {
		return
	}
	p := &e.probes[cluster]
	if p.active && !p.done {
		p.done, p.endUs, p.endAt = true, e.us(now), now
	}
}

// evaluateProbes applies the probes whose packets have all been reported
// (the newest packet reported was sent after the cluster's end), or whose
// time is up. lastSendUs is the send time of the newest packet reported.
func (e *Estimator) evaluateProbes(lastSendUs int64, now time.Time) {
	for i := range e.probes {
		p := &e.probes[i]
		if !p.active {
			continue
		}
		if !p.done && now.Sub(p.startAt) > probeDuration+probeAbandon {
			// The sender never ended it (its media stopped): over.
			p.done, p.endUs, p.endAt = true, e.us(now), now
		}
		if !p.done || (lastSendUs < p.endUs && now.Sub(p.endAt) < probeTimeout) {
			continue
		}
		p.active = false
		p.evaluated++
		send, recv := p.result()
		r := min(send, recv) // what the path showed it carries
		p.best = max(p.best, r)
		queued := e.probeQueued
		e.probeQueued = false
		carried := r > 0 && r*10 >= p.goal*9
		// It filled the path: it arrived slower than it was sent (a queue
		// grew, or the path dropped some). Its receive rate is the path's
		// capacity then, above or below the estimate.
		filled := !carried && r > 0 && recv*10 < send*9
		switch {
		case filled:
			e.rate = 0.95 * float64(r)
		case r > 0 && float64(r) > e.rate:
			// The path carried more than the estimate (all of the goal,
			// or what the sender sent of it).
			e.rate = 0.95 * float64(r)
		case queued:
			e.rate *= decrease // the cut the overuse meanwhile deferred
		}
		if float64(r) >= e.rate {
			e.lossCap = math.Inf(1)
			e.capMean, e.capVar = 0, 0
		}
		if queued || filled {
			// The queue the cluster built drains after it: the overuse
			// shown meanwhile is the cluster's own, already counted in
			// r, and cuts nothing.
			e.probeDrain = now.Add(probeDrainFor)
		}
		switch {
		case carried:
			e.probeWait = probeWaitMin // go on climbing soon
			e.probeLimit = 0
		case filled:
			// A limit below the goal: the next aims just above it, later
			// if it is the limit found before.
			if e.probeLimit > 0 && math.Abs(float64(r)-e.probeLimit) < 0.15*e.probeLimit {
				e.probeWait = min(max(2*e.probeWait, probeWaitFailed), probeWaitMax)
			} else {
				e.probeWait = probeWaitFailed
			}
			e.probeLimit = float64(r)
		case r > 0:
			e.probeWait = probeWaitFailed // the sender did not send all of the goal
		default:
			e.probeWait = min(max(2*e.probeWait, probeWaitFailed), probeWaitMax)
		}
		e.probeAt = now.Add(e.probeWait)
	}
}
