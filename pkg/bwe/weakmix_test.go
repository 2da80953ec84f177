package bwe

import (
	"testing"
	"time"
)

// mixProbe is one probe cluster the weak page's sender ran.
type mixProbe struct {
	at   time.Duration
	goal int
}

// mix sends a weak page's traffic for dur: two audio streams (a 130-byte
// packet every 20 ms each, 52 kbit/s) and two small videos of videoBps each
// at 30 frames a second, each with a keyframe of keyBytes every keyEvery
// (the two half a period apart). The videos follow the estimate as the
// SFU's allocation does: a video's full rate when it fits 0.9 of the
// estimate after the audio and the videos before it, else its base temporal
// layer (every third frame), else nothing (s.pausedMs counts it). The
// sender wants wanted and probes for it as the estimator says. It returns
// the estimate at each second and the probes.
func (s *sim) mix(videoBps, keyBytes int, keyEvery time.Duration, wanted int, dur time.Duration) ([]int, []mixProbe) {
	var perSecond []int
	var probes []mixProbe
	var cluster uint8
	var goal int
	var probeEnd time.Duration
	begin := s.now
	end := s.now + dur
	for ms := time.Duration(0); s.now < end; ms += time.Millisecond {
		s.advance(begin + ms)
		if cluster == 0 && wanted > 0 {
			if c, g := s.e.Probe(wanted, s.at(s.now)); c != 0 {
				cluster, goal, probeEnd = c, g, s.now+ProbeDuration
				probes = append(probes, mixProbe{at: s.now - begin, goal: g})
			}
		}
		for v := range 2 {
			off := time.Duration(v) * 7 * time.Millisecond
			if (ms-off)%(20*time.Millisecond) == 0 {
				s.send(130, cluster)
			}
			budget := 0.9*float64(s.e.Target()) - 2*52_000 - float64(v*videoBps)
			every := 33 * time.Millisecond
			switch {
			case budget >= float64(videoBps):
			case budget >= float64(videoBps)/3:
				every = 99 * time.Millisecond
			default:
				every = 0
				s.pausedMs[v]++
			}
			if every > 0 && (ms-off)%every == 0 {
				bytes := videoBps / 8 / 30
				if (ms+time.Duration(v)*keyEvery/2)%keyEvery < 33*time.Millisecond {
					bytes = keyBytes
				}
				for bytes > 0 {
					n := min(bytes, 1100)
					s.send(n+40, cluster)
					bytes -= n
				}
			}
		}
		if cluster != 0 && ms%(5*time.Millisecond) == 0 {
			s.pad((goal-2*videoBps-2*52_000)/8/200, 40, cluster)
		}
		cluster = s.endProbe(cluster, probeEnd)
		perSecond = s.sample(perSecond, begin)
	}
	return perSecond, probes
}

// The weak page of the browser test: a 400 kbit/s link (52 bytes a packet
// beyond what the sender counts: Ethernet, IP, UDP, the SRTP tag) carrying
// two audio streams and two small videos, whose subscriber wants larger
// layers than the link carries, so the sender keeps probing. A probe at
// twice the estimate on such a link builds a queue that cut the estimate
// well below the link after each probe, every 2.4 s, and the second video
// paused. Once a probe found the link's limit, the next ones aim just
// above it, space out, and their queue is theirs: the estimate stays near
// what the link carries.
func TestProbesOnAWeakLink(t *testing.T) {
	s := newSim(t, 400_000, Config{Initial: 1_000_000})
	s.oneWay = time.Millisecond
	s.queueMax = 22_000 // tbf's 400 ms at 400 kbit/s, and its burst
	s.overhead = 52
	est, probes := s.mix(100_000, 6000, 10*time.Second, 440_000, 30*time.Second)
	st := s.e.Stats()
	t.Logf("estimates per second: %v; probes %v; %+v; video paused %v ms", est, probes, st, s.pausedMs)
	if st.ProbeBest == 0 {
		t.Fatal("no probe found what the link delivers")
	}
	// What the link delivers of this traffic, as the sender counts bytes:
	// the best a probe measured.
	found := float64(st.ProbeBest)
	for _, p := range probes[1:] { // the first finds the limit
		if float64(p.goal) > 1.3*found {
			t.Errorf("a probe at %v aimed at %d bit/s; the link delivered %.0f", p.at, p.goal, found)
		}
	}
	n := 0
	for _, p := range probes {
		if p.at >= 10*time.Second {
			n++
		}
	}
	if n > 6 {
		t.Errorf("%d probes in 20 s on a link that keeps showing the same limit", n)
	}
	for i, e := range est[10:] {
		if float64(e) < 0.75*found {
			t.Errorf("second %d: estimate %d on a link that delivers %.0f", 10+i, e, found)
		}
	}
	if s.pausedMs[1] > 1000 {
		t.Errorf("the second video paused for %d ms", s.pausedMs[1])
	}
}
