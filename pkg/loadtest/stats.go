package loadtest

import (
	"math"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/pion/rtp"
)

// histogram counts durations in log-linear microsecond buckets: values below
// 16 µs exactly, then 16 buckets per power of two (a relative error under
// 7 %), up to about 2^40 µs. Its zero value is ready; it is not safe for
// concurrent use.
type histogram struct {
	counts [histBuckets]uint32
	n      uint64
	max    time.Duration
}

const (
	histSub     = 16
	histBuckets = histSub + 36*histSub
)

func histIndex(us uint64) int {
	if us < histSub {
		return int(us)
	}
	e := bits.Len64(us) - 5 // us>>e is in [16, 32)
	i := histSub + e*histSub + int(us>>uint(e)) - histSub
	return min(i, histBuckets-1)
}

// histValue is the middle of bucket i, in microseconds.
func histValue(i int) float64 {
	if i < histSub {
		return float64(i)
	}
	e := (i - histSub) / histSub
	m := (i-histSub)%histSub + histSub
	lo := float64(uint64(m) << uint(e))
	return lo + float64(uint64(1)<<uint(e))/2
}

func (h *histogram) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d/time.Microsecond))]++
	h.n++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0 < q ≤ 1), never above the maximum seen.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			v := time.Duration(histValue(i) * float64(time.Microsecond))
			return min(v, h.max)
		}
	}
	return h.max
}

// Quantiles summarize a distribution, in milliseconds.
type Quantiles struct {
	// N is the number of samples.
	N   int64   `json:"n"`
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (h *histogram) summary() Quantiles {
	return Quantiles{N: int64(h.n), P50: ms(h.quantile(0.5)), P95: ms(h.quantile(0.95)), P99: ms(h.quantile(0.99)), Max: ms(h.max)}
}

// exactQuantiles summarizes a few samples (one per session) exactly.
func exactQuantiles(ds []time.Duration) Quantiles {
	if len(ds) == 0 {
		return Quantiles{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return ms(s[max(i, 0)])
	}
	return Quantiles{N: int64(len(s)), P50: at(0.5), P95: at(0.95), P99: at(0.99), Max: ms(s[len(s)-1])}
}

// window is the measuring window, as offsets from the run's base time. Both
// ends are set once, before the window opens, so the publishers (deciding
// what they sent in it) and the receivers (deciding what they got of it)
// agree on every packet.
type window struct {
	start, end atomic.Int64 // 0: not set
}

func (w *window) set(start, end time.Duration) {
	w.end.Store(int64(end))
	w.start.Store(int64(start))
}

func (w *window) contains(d time.Duration) bool {
	s := w.start.Load()
	return s != 0 && int64(d) >= s && int64(d) < w.end.Load()
}

// sentSlots is how many recent packets a sent track remembers (a power of
// two): 8192 packets are over a minute of 1 Mbit/s video.
const sentSlots = 8192

type sentSlot struct {
	key atomic.Uint64 // 1<<48 | seq<<32 | timestamp; 0 when empty
	at  atomic.Int64  // send time, offset from base
}

func slotKey(seq uint16, ts uint32) uint64 { return 1<<48 | uint64(seq)<<32 | uint64(ts) }

// sentTrack is one published track as the load tool sent it: the send time of
// its recent packets by sequence number (the SFU passes sequence numbers and
// timestamps through unchanged), and counters.
type sentTrack struct {
	room, publisher, kind string
	base                  time.Time
	win                   *window
	slots                 [sentSlots]sentSlot

	streamID   string // set once the server answered the publish
	packets    atomic.Int64
	bytes      atomic.Int64
	winPackets atomic.Int64
	winBytes   atomic.Int64
}

// record is the publication's OnPacketSent for this track.
func (s *sentTrack) record(pkt *rtp.Packet, at time.Time) {
	d := at.Sub(s.base)
	sl := &s.slots[pkt.SequenceNumber&(sentSlots-1)]
	sl.at.Store(int64(d))
	sl.key.Store(slotKey(pkt.SequenceNumber, pkt.Timestamp))
	s.packets.Add(1)
	s.bytes.Add(int64(len(pkt.Payload)))
	if s.win.contains(d) {
		s.winPackets.Add(1)
		s.winBytes.Add(int64(len(pkt.Payload)))
	}
}

// sentAt returns when a packet was sent, if it is still remembered.
func (s *sentTrack) sentAt(seq uint16, ts uint32) (time.Duration, bool) {
	sl := &s.slots[seq&(sentSlots-1)]
	if sl.key.Load() != slotKey(seq, ts) {
		return 0, false
	}
	return time.Duration(sl.at.Load()), true
}

// recvTrack is one remote track of one load session. Its observe method runs
// on the client's reader goroutine; the engine reads it under mu.
type recvTrack struct {
	key       streamKey
	clock     float64 // RTP clock rate
	base      time.Time
	win       *window
	lookup    func(streamKey) *sentTrack
	rt        *client.RemoteTrack
	total     atomic.Int64 // every packet, for the progress line
	measured  atomic.Bool  // its session was ready when the window was set
	sent      atomic.Pointer[sentTrack]
	unmatched atomic.Int64 // packets whose send time is unknown

	mu          sync.Mutex
	received    int64     // packets sent in the window and received
	lat         histogram // send → arrival at the receiver's socket
	read        histogram // send → the receiver's reader
	unstamped   int64     // packets without a socket arrival time (lat has the reader's)
	jitter      float64   // RFC 3550 interarrival jitter, in RTP clock units
	lastTransit float64
	haveTransit bool
}

type streamKey struct{ streamID, kind string }

// observe is the client's PacketReceivedFunc for this track. at is when the
// reader got pkt, arrived when it reached the socket (zero: unknown).
func (r *recvTrack) observe(pkt *rtp.Packet, at, arrived time.Time) {
	r.total.Add(1)
	if !r.measured.Load() {
		return
	}
	st := r.sent.Load()
	if st == nil {
		if st = r.lookup(r.key); st == nil {
			r.unmatched.Add(1)
			return
		}
		r.sent.Store(st)
	}
	sent, ok := st.sentAt(pkt.SequenceNumber, pkt.Timestamp)
	if !ok {
		r.unmatched.Add(1)
		return
	}
	if !r.win.contains(sent) {
		return
	}
	read := at.Sub(r.base)
	recv, stamped := read, !arrived.IsZero()
	if stamped {
		recv = arrived.Sub(r.base)
	}
	// RFC 3550 A.8: transit = arrival - RTP timestamp, both in clock units.
	transit := recv.Seconds()*r.clock - float64(pkt.Timestamp)
	r.mu.Lock()
	r.received++
	r.lat.add(recv - sent)
	r.read.add(read - sent)
	if !stamped {
		r.unstamped++
	}
	if r.haveTransit {
		d := transit - r.lastTransit
		// The RTP timestamp wrapped.
		if d > 1<<31 {
			d -= 1 << 32
		} else if d < -(1 << 31) {
			d += 1 << 32
		}
		r.jitter += (math.Abs(d) - r.jitter) / 16
	}
	r.lastTransit, r.haveTransit = transit, true
	r.mu.Unlock()
}

// recvSnapshot is what a track got in the window.
type recvSnapshot struct {
	received, unstamped int64
	lat, read           histogram
	jitterMS            float64
}

// snapshot returns what the track got in the window.
func (r *recvTrack) snapshot() recvSnapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return recvSnapshot{received: r.received, unstamped: r.unstamped, lat: r.lat, read: r.read,
		jitterMS: r.jitter / r.clock * 1000}
}

// firstMedia is when the track's first frame arrived: for video the start of
// a keyframe, for audio the first packet (zero before).
func (r *recvTrack) firstMedia() time.Time {
	if r.key.kind == "video" {
		return r.rt.FirstKeyframeAt()
	}
	return r.rt.FirstPacketAt()
}

// receivedCount is how many packets sent in the window the track got so far.
func (r *recvTrack) receivedCount() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.received
}
