package loadtest

import (
	"maps"
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

// printSlot finds a sent packet by its payload.
type printSlot struct {
	print atomic.Uint64 // the payload's hash
	key   atomic.Uint64 // its slotKey
}

func slotKey(seq uint16, ts uint32) uint64 { return 1<<48 | uint64(seq)<<32 | uint64(ts) }

// payloadPrint is a payload's 64-bit FNV-1a hash (never 0).
func payloadPrint(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h | 1
}

// sentTrack is one published track (or simulcast layer) as the load tool
// sent it: the send time of its recent packets by sequence number and
// timestamp, an index of them by payload, and counters. The SFU numbers
// each receiver's packets itself (offsets of its own, which change when it
// leaves packets out, adds probe padding or switches layers), so a receiver
// finds its packets' offsets from a payload (recvTrack.observe) and then
// looks them up by number.
type sentTrack struct {
	room, publisher, kind string
	rid                   string // simulcast layer ("" without)
	base                  time.Time
	win                   *window
	slots                 [sentSlots]sentSlot
	prints                [sentSlots]printSlot

	streamID   string // set once the server answered the publish
	packets    atomic.Int64
	bytes      atomic.Int64
	winPackets atomic.Int64
	winBytes   atomic.Int64
}

// record is the publication's OnPacketSent for this track.
func (s *sentTrack) record(pkt *rtp.Packet, at time.Time) {
	d := at.Sub(s.base)
	key := slotKey(pkt.SequenceNumber, pkt.Timestamp)
	sl := &s.slots[pkt.SequenceNumber&(sentSlots-1)]
	sl.at.Store(int64(d))
	sl.key.Store(key)
	if len(pkt.Payload) > 0 {
		pr := payloadPrint(pkt.Payload)
		ps := &s.prints[pr&(sentSlots-1)]
		ps.key.Store(key)
		ps.print.Store(pr)
	}
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

// byPrint returns the sequence number and timestamp of the packet sent with
// a payload of hash pr, if it is still remembered.
func (s *sentTrack) byPrint(pr uint64) (uint16, uint32, bool) {
	ps := &s.prints[pr&(sentSlots-1)]
	key := ps.key.Load()
	if ps.print.Load() != pr || key == 0 {
		return 0, 0, false
	}
	return uint16(key >> 32), uint32(key), true
}

// recvTrack is one remote track of one load session. Its observe method runs
// on the client's reader goroutine; the engine reads it under mu.
type recvTrack struct {
	key       streamKey
	clock     float64 // RTP clock rate
	base      time.Time
	win       *window
	lookup    func(streamKey) []*sentTrack
	rt        *client.RemoteTrack
	shaped    bool         // its session receives through a shaped link
	total     atomic.Int64 // every packet, for the progress line
	measured  atomic.Bool  // its session was ready when the window was set
	unmatched atomic.Int64 // packets whose send time is unknown

	// The reader's: how this receiver's numbers map to a sent layer's.
	layer       *sentTrack
	seqOff      uint16
	tsOff       uint32
	haveExt     bool
	ext         int64    // the newest sequence number, unwrapped
	seen        []uint64 // a bit per sequence number from base, in the window
	seenBase    int64
	first, last int64 // the window's packets: unwrapped sequence numbers
	inWin       bool
	counted     int64 // distinct sequence numbers seen from first to last

	mu          sync.Mutex
	received    int64            // packets sent in the window and received (media)
	winBytes    int64            // their payload bytes
	expected    int64            // the window's span of this receiver's sequence numbers
	got         int64            // of it, distinct packets received (media and padding)
	layers      map[string]int64 // media packets in the window by simulcast layer
	lat         histogram        // send → arrival at the receiver's socket
	read        histogram        // send → the receiver's reader
	unstamped   int64            // packets without a socket arrival time (lat has the reader's)
	jitter      float64          // RFC 3550 interarrival jitter, in RTP clock units
	lastTransit float64
	haveTransit bool
}

type streamKey struct{ streamID, kind string }

// match finds the send time of a received packet: by its numbers with the
// offsets of the layer it came from so far, else (a layer switch, padding
// the SFU added) by its payload, which gives the new offsets.
func (r *recvTrack) match(pkt *rtp.Packet) (time.Duration, *sentTrack, bool) {
	if r.layer != nil {
		if at, ok := r.layer.sentAt(pkt.SequenceNumber-r.seqOff, pkt.Timestamp-r.tsOff); ok {
			return at, r.layer, true
		}
	}
	layers := r.lookup(r.key)
	if len(layers) == 0 {
		return 0, nil, false
	}
	if r.layer == nil && len(layers) == 1 {
		// Without simulcast the SFU starts with the publisher's numbers.
		if at, ok := layers[0].sentAt(pkt.SequenceNumber, pkt.Timestamp); ok {
			r.layer = layers[0]
			return at, r.layer, true
		}
	}
	pr := payloadPrint(pkt.Payload)
	for _, l := range layers {
		if seq, ts, ok := l.byPrint(pr); ok {
			if at, ok := l.sentAt(seq, ts); ok {
				r.layer, r.seqOff, r.tsOff = l, pkt.SequenceNumber-seq, pkt.Timestamp-ts
				return at, l, true
			}
		}
	}
	return 0, nil, false
}

// account notes the receiver's sequence number of a packet, media or
// padding; inWindow says a media packet sent in the window.
func (r *recvTrack) account(seq uint16, inWindow bool) {
	if !r.haveExt {
		r.haveExt, r.ext = true, int64(seq)+1<<32
	}
	e := r.ext + int64(int16(seq-uint16(r.ext)))
	r.ext = max(r.ext, e)
	if inWindow && !r.inWin {
		r.inWin, r.first, r.last, r.seenBase = true, e, e, e
	}
	if !r.inWin {
		return
	}
	if inWindow {
		r.first, r.last = min(r.first, e), max(r.last, e)
	}
	i := e - r.seenBase
	if i < 0 || i >= 1<<20 {
		return // far off: a restarted sequence
	}
	for int(i/64) >= len(r.seen) {
		r.seen = append(r.seen, 0)
	}
	if r.seen[i/64]&(1<<(i%64)) == 0 {
		r.seen[i/64] |= 1 << (i % 64)
	}
}

// span counts the window's expected and received packets by the receiver's
// own numbers: everything from the window's first media packet to its last,
// padding included (the SFU's numbering has no gap but loss). Under mu.
func (r *recvTrack) span() (expected, got int64) {
	if !r.inWin {
		return 0, 0
	}
	lo, hi := r.first-r.seenBase, r.last-r.seenBase // bit indexes, inclusive
	for w := lo / 64; w <= hi/64 && int(w) < len(r.seen); w++ {
		word := r.seen[w]
		if w == lo/64 {
			word &^= 1<<(lo%64) - 1
		}
		if w == hi/64 && hi%64 < 63 {
			word &= 1<<(hi%64+1) - 1
		}
		got += int64(bits.OnesCount64(word))
	}
	return r.last - r.first + 1, got
}

// observe is the client's PacketReceivedFunc for this track. at is when the
// reader got pkt, arrived when it reached the socket (zero: unknown).
func (r *recvTrack) observe(pkt *rtp.Packet, at, arrived time.Time) {
	r.total.Add(1)
	if !r.measured.Load() {
		return
	}
	if len(pkt.Payload) == 0 {
		r.mu.Lock()
		r.account(pkt.SequenceNumber, false) // padding: a number, no media
		r.mu.Unlock()
		return
	}
	sent, layer, ok := r.match(pkt)
	if !ok {
		r.unmatched.Add(1)
		r.mu.Lock()
		r.account(pkt.SequenceNumber, false)
		r.mu.Unlock()
		return
	}
	inWin := r.win.contains(sent)
	if !inWin {
		r.mu.Lock()
		r.account(pkt.SequenceNumber, false)
		r.mu.Unlock()
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
	r.account(pkt.SequenceNumber, true)
	r.received++
	r.winBytes += int64(len(pkt.Payload))
	if layer.rid != "" {
		if r.layers == nil {
			r.layers = map[string]int64{}
		}
		r.layers[layer.rid]++
	}
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
	expected, got       int64
	bytes               int64
	layers              map[string]int64
	lat, read           histogram
	jitterMS            float64
}

// snapshot returns what the track got in the window.
func (r *recvTrack) snapshot() recvSnapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	expected, got := r.span()
	return recvSnapshot{received: r.received, unstamped: r.unstamped, expected: expected, got: got, bytes: r.winBytes,
		layers: maps.Clone(r.layers), lat: r.lat, read: r.read, jitterMS: r.jitter / r.clock * 1000}
}

// firstMedia is when the track's first frame arrived: for video the start of
// a keyframe, for audio the first packet (zero before).
func (r *recvTrack) firstMedia() time.Time {
	if r.key.kind == "video" {
		return r.rt.FirstKeyframeAt()
	}
	return r.rt.FirstPacketAt()
}

// receivedCount is how many packets sent in the window the track got so
// far, and how many of its own numbers that spans.
func (r *recvTrack) receivedCount() (expected, got int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.span()
}
