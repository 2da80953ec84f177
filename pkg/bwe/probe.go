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

const (
	probeClusters   = 16 // cluster ids 1..15; 0 means none
	probeDuration   = 200 * time.Millisecond
	probeWaitMin    = 500 * time.Millisecond
	probeWaitFailed = 2 * time.Second
	probeWaitMax    = 5 * time.Second
	probeTimeout    = time.Second // after its end, a probe not fully reported is evaluated anyway
	probeMinPackets = 5
)

// probe is one cluster's accounting, from the feedback of its packets.
type probe struct {
	active, done        bool
	goal                int
	endUs               int64 // the sender's last packet of the cluster
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

// result is the rate the cluster showed the path carries (0: no result):
// the lower of the rates it was sent and received at. A cluster that filled
// the path makes a queue (the delay signal says overuse meanwhile), and its
// receive rate is then the path's capacity: a result all the same.
func (p *probe) result() int {
	if p.sentN < probeMinPackets || p.recvN*5 < p.sentN*4 {
		return 0
	}
	sendSpan := float64(p.lastSend-p.firstSend) / 1e6
	recvSpan := float64(p.lastArr-p.firstArr) / 1e6
	if sendSpan < 0.02 || recvSpan < 0.02 {
		return 0
	}
	send := float64(p.sentBytes-p.lastSize) * 8 / sendSpan
	recv := float64(p.recvBytes-p.firstSize) * 8 / recvSpan
	return int(math.Min(send, recv))
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
	for i := range e.probes {
		if e.probes[i].active {
			return 0, 0
		}
	}
	e.nextCluster = e.nextCluster%(probeClusters-1) + 1
	p := &e.probes[e.nextCluster]
	*p = probe{active: true, evaluated: p.evaluated, best: p.best}
	p.goal = min(wanted+wanted/5, max(2*target, target+100_000))
	return e.nextCluster, p.goal
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
		if !p.done || (lastSendUs < p.endUs && now.Sub(p.endAt) < probeTimeout) {
			continue
		}
		p.active = false
		p.evaluated++
		r := p.result()
		p.best = max(p.best, r)
		ok := r > 0 && float64(r) > e.rate
		if ok {
			e.rate = math.Max(e.rate, 0.95*float64(r))
			e.lossCap = math.Inf(1)
			e.capMean, e.capVar = 0, 0
			// The queue the cluster built (it is what a cluster that
			// found the path's capacity does) drains within about the
			// cluster's length: the overuse it shows meanwhile is the
			// cluster's own, already counted in r, and cuts nothing.
			e.probeDrain = now.Add(probeDuration)
		}
		switch {
		case ok && r*10 >= p.goal*9:
			e.probeWait = probeWaitMin // it carried the goal: go on climbing soon
		case ok:
			e.probeWait = probeWaitFailed // it found a limit below the goal
		default:
			e.probeWait = min(max(2*e.probeWait, probeWaitFailed), probeWaitMax)
		}
		e.probeAt = now.Add(e.probeWait)
	}
}
