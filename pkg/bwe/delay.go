package bwe

import "math"

// The delay-based part: are packets queueing somewhere on the path? Packets
// sent within a burst form a group; for consecutive groups the difference
// between how far apart they arrived and how far apart they were sent is
// the change of the queueing delay. A trend line through its running sum
// tells whether the queue grows (overuse: the send rate is above the path's
// capacity), shrinks (underuse) or holds (normal). This is the scheme of
// Google congestion control (draft-ietf-rmcat-gcc-02 and WebRTC's
// TrendlineEstimator), written for this package.

// usage is what the delay signal says about the path.
type usage int8

const (
	usageNormal usage = iota
	usageOver
	usageUnder
)

func (u usage) String() string {
	switch u {
	case usageOver:
		return "overuse"
	case usageUnder:
		return "underuse"
	}
	return "normal"
}

const (
	burstUs        = 5000    // packets sent within this of a group's first are one group
	maxBurstUs     = 100_000 // a group of packets that arrived in a burst spans at most this
	trendWindow    = 20      // groups the trend line is fitted through
	trendSmoothing = 0.9
	trendGain      = 4.0
	maxTrendCount  = 60
	overuseTimeUs  = 10000 // the trend must stay above the threshold this long
	thresholdStart = 12.5
	thresholdMin   = 6.0
	thresholdMax   = 600.0
	thresholdUp    = 0.0087 // threshold gain towards larger trends
	thresholdDown  = 0.039  // and towards smaller ones
)

// group is a burst of packets.
type group struct {
	firstSendUs, lastSendUs       int64
	firstArrivalUs, lastArrivalUs int64
	size                          int
}

// delayDetector turns (send time, arrival time) pairs, in send order, into a
// usage verdict.
type delayDetector struct {
	cur, prev     group
	haveCur       bool
	havePrev      bool
	firstArrival  int64
	acc, smoothed float64
	xs, ys        [trendWindow]float64
	n, next       int // points in the window; where the next goes
	deltas        int // group deltas seen (capped)
	threshold     float64
	lastUpdateUs  int64
	overUs        int64 // time the trend has been above the threshold, -1 when not
	overCount     int
	prevTrend     float64
	state         usage
}

func newDelayDetector() delayDetector {
	return delayDetector{threshold: thresholdStart, overUs: -1}
}

// packet adds one received packet; it reports whether a group delta was
// evaluated (state may have changed).
func (d *delayDetector) packet(sendUs, arrivalUs int64, size int) bool {
	if !d.haveCur {
		d.cur = group{firstSendUs: sendUs, lastSendUs: sendUs, firstArrivalUs: arrivalUs, lastArrivalUs: arrivalUs, size: size}
		d.haveCur = true
		return false
	}
	if sendUs < d.cur.firstSendUs {
		return false // reordered across groups: ignore
	}
	// A packet joins the group when it was sent within a burst of the
	// group's first, or when it arrived in a burst with the group's last,
	// sooner after it than it was sent, while the group's arrivals span
	// less than maxBurstUs: a receiver (or a relay) that was starved of CPU
	// and read a backlog at once, or a queue that drained, is not a trend.
	arrDelta := arrivalUs - d.cur.lastArrivalUs
	if sendUs-d.cur.firstSendUs <= burstUs ||
		(arrDelta <= burstUs && arrDelta < sendUs-d.cur.lastSendUs && arrivalUs-d.cur.firstArrivalUs < maxBurstUs) {
		d.cur.lastSendUs = max(d.cur.lastSendUs, sendUs)
		d.cur.lastArrivalUs = max(d.cur.lastArrivalUs, arrivalUs)
		d.cur.size += size
		return false
	}
	evaluated := false
	if d.havePrev {
		sendDelta := d.cur.lastSendUs - d.prev.lastSendUs
		arrDelta := d.cur.lastArrivalUs - d.prev.lastArrivalUs
		d.update(float64(arrDelta-sendDelta)/1000, d.cur.lastArrivalUs, sendDelta)
		evaluated = true
	} else {
		d.firstArrival = d.cur.lastArrivalUs
	}
	d.prev, d.havePrev = d.cur, true
	d.cur = group{firstSendUs: sendUs, lastSendUs: sendUs, firstArrivalUs: arrivalUs, lastArrivalUs: arrivalUs, size: size}
	return evaluated
}

// update takes one delay variation (ms) between groups, the later group's
// arrival (µs) and how far apart the groups were sent (µs).
func (d *delayDetector) update(varMs float64, arrivalUs, sendDeltaUs int64) {
	d.deltas = min(d.deltas+1, maxTrendCount)
	d.acc += varMs
	d.smoothed = trendSmoothing*d.smoothed + (1-trendSmoothing)*d.acc
	d.xs[d.next] = float64(arrivalUs-d.firstArrival) / 1000
	d.ys[d.next] = d.smoothed
	d.next = (d.next + 1) % trendWindow
	d.n = min(d.n+1, trendWindow)
	trend := d.prevTrend
	if d.n == trendWindow {
		if s, ok := slope(d.xs[:], d.ys[:]); ok {
			trend = s
		}
	}
	d.detect(trend, arrivalUs, sendDeltaUs)
}

// slope fits a line through the points and returns its slope.
func slope(xs, ys []float64) (float64, bool) {
	var sx, sy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
	}
	mx, my := sx/float64(len(xs)), sy/float64(len(ys))
	var num, den float64
	for i := range xs {
		num += (xs[i] - mx) * (ys[i] - my)
		den += (xs[i] - mx) * (xs[i] - mx)
	}
	if den == 0 {
		return 0, false
	}
	return num / den, true
}

func (d *delayDetector) detect(trend float64, nowUs, sendDeltaUs int64) {
	m := math.Min(float64(d.deltas), maxTrendCount) * trend * trendGain
	switch {
	case m > d.threshold:
		if d.overUs < 0 {
			d.overUs = sendDeltaUs / 2
		} else {
			d.overUs += sendDeltaUs
		}
		d.overCount++
		if d.overUs > overuseTimeUs && d.overCount > 1 && trend >= d.prevTrend {
			d.overUs, d.overCount = 0, 0
			d.state = usageOver
		}
	case m < -d.threshold:
		d.overUs, d.overCount = -1, 0
		d.state = usageUnder
	default:
		d.overUs, d.overCount = -1, 0
		d.state = usageNormal
	}
	d.prevTrend = trend
	d.adapt(m, nowUs)
}

// adapt moves the threshold towards |m|, quickly down and slowly up, so that
// it follows the path's normal jitter but a real queue still stands out.
func (d *delayDetector) adapt(m float64, nowUs int64) {
	if d.lastUpdateUs == 0 {
		d.lastUpdateUs = nowUs
	}
	am := math.Abs(m)
	if am > d.threshold+15 {
		d.lastUpdateUs = nowUs // a spike: do not let it drag the threshold up
		return
	}
	k := thresholdUp
	if am < d.threshold {
		k = thresholdDown
	}
	dt := math.Min(float64(nowUs-d.lastUpdateUs)/1000, 100)
	d.threshold = math.Max(thresholdMin, math.Min(thresholdMax, d.threshold+k*(am-d.threshold)*dt))
	d.lastUpdateUs = nowUs
}
