package sfu

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/codec"
	"github.com/parley/parley/pkg/codec/av1dd"
	"github.com/parley/parley/pkg/speaker"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// maxPacket is the largest RTP packet the SFU reads.
const maxPacket = 1500

// packet is one received RTP packet, parsed once and shared read-only by every
// subscriber it is queued to; the last one to release it returns it to the pool.
type packet struct {
	buf      [maxPacket]byte
	n        int
	hdr      rtp.Header
	payload  []byte
	keyframe bool
	padding  bool // padding only: no payload (a bandwidth probe)
	// desc is the VP8 or VP9 payload descriptor's layer information
	// (zero for other codecs): temporal layer selection (temporal.go).
	desc    codec.Descriptor
	src     *forwarder // the track (simulcast layer) it came on
	arrived time.Time  // when the forwarder read it
	refs    atomic.Int32
	pool    *packetPool
}

func (p *packet) release() {
	if p.refs.Add(-1) == 0 {
		p.pool.put(p)
	}
}

// packetPool is a bounded free list of packets. Unlike sync.Pool it keeps
// its packets across garbage collections, so forwarding allocates nothing
// once the pool is warm; packets beyond its capacity are left to the GC.
type packetPool struct{ free chan *packet }

// packetPoolSize bounds the packets kept for reuse (about 6 MB).
const packetPoolSize = 4096

func newPacketPool() *packetPool {
	return &packetPool{free: make(chan *packet, packetPoolSize)}
}

func (pp *packetPool) get() *packet {
	select {
	case p := <-pp.free:
		return p
	default:
		return &packet{pool: pp}
	}
}

func (pp *packetPool) put(p *packet) {
	p.payload = nil
	select {
	case pp.free <- p:
	default:
	}
}

// packetSink receives a forwarder's packets. Enqueue must not block: it either
// takes a reference (and releases it later) or drops. wake says the packet
// ends a frame (or the frame before it), so the sink should send what it has:
// it marks itself ready on its writer, and the forwarder wakes the writers
// once the packet is queued to every sink. signal asks a sink to send what it
// has now, without a packet.
type packetSink interface {
	enqueue(p *packet, wake bool) bool
	signal()
}

// frameBackstop is how long the packets of an unfinished video frame wait
// before the sinks are woken anyway (the frame's last packet was lost, or the
// publisher paces its packets over longer than this).
const frameBackstop = 3 * time.Millisecond

// keyframeInterval throttles keyframe requests to a publisher.
const keyframeInterval = 500 * time.Millisecond

// forwarder reads one published track and hands every packet to its sinks.
type forwarder struct {
	id       string // unique: stream id + "/" + track kind
	streamID string
	siblings int // tracks in the stream, this one included (from the publish answer)
	// siblingCodecs are the MIME types of the stream's tracks (from the
	// answer), so a subscriber knows what it cannot decode before every
	// track's first packet has arrived.
	siblingCodecs []string
	track         *webrtc.TrackRemote
	ssrc          uint32 // the track's
	codec         webrtc.RTPCodecCapability
	kind          webrtc.RTPCodecType
	// described says which payload descriptor the reader parses for
	// temporal layers (temporal.go).
	described describedCodec
	// ddExt is the dependency descriptor's header extension id (AV1's
	// layers, 0: not negotiated) and dd its reader's state (spatial.go).
	ddExt uint8
	dd    av1dd.Reader
	pool  *packetPool
	log   *slog.Logger
	// wakeWriters wakes the writers of the sinks that enqueue made ready.
	wakeWriters func()

	// requestPLI sends a PLI to the publisher.
	requestPLI func(ssrc uint32)

	sinks atomic.Pointer[[]packetSink]
	mu    sync.Mutex // serializes sink list updates and keyframe throttling

	lastPLI    time.Time
	pliPending bool
	pliAsked   int64 // unix ns of the latest request held back (under mu)
	pliTimer   *time.Timer
	closed     bool

	received atomic.Uint64
	// muted drops the track's packets as they are read (moderation.go);
	// epoch counts the times it was unmuted, so downTracks number on
	// without a gap where the muted packets were.
	muted atomic.Bool
	epoch atomic.Uint32

	// pubClock is the publisher's RTP clock mapping from its last sender
	// report, at the report's arrival.
	pubClock atomic.Pointer[clockAnchor]

	// hist answers subscribers' NACKs (video only: audio is not retransmitted).
	hist *history

	// Simulcast: the layer this track is (0 the lowest; 0 without
	// simulcast), its RTP stream id, and the layers of the published track
	// it belongs to, shared by them (this one alone without simulcast). The
	// first layer to arrive stands for the published track (subscribers'
	// downTracks are made from it and follow whichever layer the
	// allocation picks, alloc.go).
	layer      int
	rid        string
	primary    bool // stands for the published track (its first layer to arrive)
	layers     *layerSet
	streamKind string // camera or screen

	// Measured by the reader: the track's bitrate (headers included),
	// when its newest packet came, and the picture size its newest
	// keyframe carried (0 until one did).
	rate          atomic.Int64
	lastAt        atomic.Int64
	width, height atomic.Int32
	rateBytes     int
	rateSince     time.Time
	// temporal is the same per temporal layer (temporal.go), spatial per
	// spatial layer, with their sizes (spatial.go).
	temporal temporalRates
	spatial  spatialRates

	// keyframeAt is when the newest keyframe's packet came (unix ns; 0:
	// none yet): a keyframe request held back by the throttle is dropped
	// when one came after it.
	keyframeAt atomic.Int64

	// level takes the audio level of each packet (RFC 6464) from the
	// header extension levelExt, for the room's speaker detector; both are
	// set before the reader starts (nil: the publisher sends no levels).
	level    *speaker.Meter
	levelExt uint8

	// rec is set once, before or while the reader runs; recPkt is the
	// reader goroutine's scratch packet for it.
	rec    atomic.Pointer[trackRecorder]
	recPkt rtp.Packet

	// Frame tracking for video, by the reader goroutine: sinks are woken at
	// the end of each frame, or by backstop if it does not come.
	frameOpen bool
	frameTS   uint32
	openSince atomic.Int64 // unix ns when the open frame began; 0 if none
	backstop  *time.Timer
	late      time.Duration // frameBackstop; tests shorten it
}

type trackRecorder struct {
	r     StreamRecorder
	track int
}

func (f *forwarder) setRecorder(r StreamRecorder, track int) {
	f.rec.Store(&trackRecorder{r: r, track: track})
}

// onRTCP takes the publisher's sender reports for this track: their clock
// mapping goes into the sender reports to subscribers (report.go), and to
// the recorder.
func (f *forwarder) onRTCP(b []byte) {
	pkts, err := rtcp.Unmarshal(b)
	if err != nil {
		return
	}
	now := time.Now()
	for _, p := range pkts {
		sr, ok := p.(*rtcp.SenderReport)
		if !ok || sr.SSRC != f.ssrc {
			continue
		}
		f.pubClock.Store(&clockAnchor{rtp: sr.RTPTime, at: now})
		if tr := f.rec.Load(); tr != nil {
			tr.r.SenderReport(tr.track, sr.SSRC, ntpTime(sr.NTPTime), sr.RTPTime, now)
		}
	}
}

func newForwarder(streamID string, track *webrtc.TrackRemote, pool *packetPool, writers *writerPool, log *slog.Logger,
	pli func(uint32)) *forwarder {
	f := &forwarder{
		id:          streamID + "/" + track.Kind().String(),
		streamID:    streamID,
		track:       track,
		ssrc:        uint32(track.SSRC()),
		codec:       track.Codec().RTPCodecCapability,
		kind:        track.Kind(),
		pool:        pool,
		log:         log,
		wakeWriters: writers.signal,
		requestPLI:  pli,
	}
	f.described = describedCodecOf(f.codec.MimeType)
	if f.kind == webrtc.RTPCodecTypeVideo {
		f.hist = &history{}
		f.startBackstop(frameBackstop)
	}
	f.layers = newLayerSet(f)
	empty := []packetSink{}
	f.sinks.Store(&empty)
	return f
}

func (f *forwarder) addSink(s packetSink) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := *f.sinks.Load()
	next := make([]packetSink, len(old), len(old)+1)
	copy(next, old)
	next = append(next, s)
	f.sinks.Store(&next)
}

func (f *forwarder) removeSink(s packetSink) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := *f.sinks.Load()
	next := make([]packetSink, 0, len(old))
	for _, o := range old {
		if o != s {
			next = append(next, o)
		}
	}
	f.sinks.Store(&next)
}

// run reads the track until it ends. It is the only reader of the track.
func (f *forwarder) run() {
	isVideo := f.kind == webrtc.RTPCodecTypeVideo
	wasMuted := false
	for {
		p := f.pool.get()
		n, _, err := f.track.Read(p.buf[:])
		if err != nil {
			f.pool.put(p)
			if !errors.Is(err, io.EOF) {
				f.log.Debug("track read ended", "track", f.id, "err", err)
			}
			return
		}
		hl, err := p.hdr.Unmarshal(p.buf[:n])
		if err != nil {
			f.pool.put(p)
			continue
		}
		end := n
		p.hdr.PaddingSize = 0
		if p.hdr.Padding {
			if n > hl {
				p.hdr.PaddingSize = p.buf[n-1]
			}
			end -= int(p.hdr.PaddingSize)
			if p.hdr.PaddingSize == 0 || end < hl {
				f.pool.put(p) // malformed padding
				continue
			}
		}
		// A padding-only packet (a browser probing its uplink; or one with
		// no payload at all) goes on to the downTracks and the recorder,
		// which leave it out without a gap in their sequence numbers
		// (rewrite.go).
		p.n = n
		p.arrived = time.Now()
		p.payload = p.buf[hl:end]
		p.padding = end == hl
		p.keyframe = !p.padding && (!isVideo || codec.IsKeyframe(f.codec.MimeType, p.payload))
		p.desc = codec.Descriptor{}
		if f.described != 0 && !p.padding {
			p.desc = f.describe(p)
		}
		f.received.Add(1)
		if f.muted.Load() {
			f.pool.put(p)
			wasMuted = true
			continue
		}
		if wasMuted {
			// What was muted left a gap no subscriber should wait for:
			// their numbering starts again (at a keyframe, for video).
			wasMuted = false
			f.epoch.Add(1)
		}
		f.measure(p)
		if tr := f.rec.Load(); tr != nil {
			f.recPkt.Header = p.hdr
			f.recPkt.Payload = p.payload
			tr.r.WriteRTP(tr.track, &f.recPkt, time.Now())
		}
		f.fanOut(p)
	}
}

// rateWindow is how often a track's bitrate is measured.
const rateWindow = 500 * time.Millisecond

// measure keeps the track's bitrate, its newest packet's time and, from
// keyframes, its picture size. Only the reader calls it.
func (f *forwarder) measure(p *packet) {
	f.lastAt.Store(p.arrived.UnixNano())
	f.rateBytes += p.n
	if f.rateSince.IsZero() {
		f.rateSince = p.arrived
	}
	f.temporal.count(p)
	f.spatial.count(p)
	if el := p.arrived.Sub(f.rateSince); el >= rateWindow {
		r := int64(float64(f.rateBytes*8) / el.Seconds())
		if old := f.rate.Load(); old > 0 {
			r = (old + r) / 2
		}
		f.rate.Store(r)
		f.rateBytes, f.rateSince = 0, p.arrived
		f.temporal.measure(el)
		f.spatial.measure(el)
	}
	if p.keyframe && f.kind == webrtc.RTPCodecTypeVideo {
		f.keyframeAt.Store(p.arrived.UnixNano())
		// A VP9 keyframe's scalability structure gives the size of each
		// spatial layer; its first layer frame, only the lowest's.
		w, h, ok := 0, 0, false
		switch {
		case f.described == describeVP9 && p.desc.SSAt != 0:
			w, h, ok = f.spatial.sizes(p.payload)
		case f.described == describeAV1:
			w, h, ok = f.spatial.sizesAV1(f.dd.Structure())
		}
		if !ok {
			w, h, ok = codec.FrameSize(f.codec.MimeType, p.payload)
		}
		if ok {
			f.width.Store(int32(w))
			f.height.Store(int32(h))
		}
	}
}

// bitrate is the track's measured bitrate, 0 when it sent nothing lately
// (a browser stopped the layer, or the publisher stalls).
func (f *forwarder) bitrate(now time.Time) int {
	if last := f.lastAt.Load(); last == 0 || now.Sub(time.Unix(0, last)) > time.Second {
		return 0
	}
	return int(f.rate.Load())
}

// layerSet is the layers of one published track, lowest first.
type layerSet struct {
	mu  sync.Mutex
	all atomic.Pointer[[]*forwarder]
}

func newLayerSet(f *forwarder) *layerSet {
	ls := &layerSet{}
	ls.all.Store(&[]*forwarder{f})
	return ls
}

// list returns the layers, lowest first.
func (ls *layerSet) list() []*forwarder { return *ls.all.Load() }

// add puts f among the layers by its layer index.
func (ls *layerSet) add(f *forwarder) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	next := append([]*forwarder(nil), ls.list()...)
	next = append(next, f)
	slices.SortStableFunc(next, func(a, b *forwarder) int { return a.layer - b.layer })
	ls.all.Store(&next)
}

// fanOut queues p to every sink without blocking; p goes back to the pool
// when the last sink is done with it. At the end of a frame (every audio
// packet is one) the writers are woken, once for all the sinks, so each
// writer runs once per frame.
func (f *forwarder) fanOut(p *packet) {
	// Padding belongs to no frame: it neither ends nor opens one.
	p.src = f
	if f.level != nil && !p.padding {
		// One atomic add: no lock, no allocation (the extensions were
		// parsed with the header).
		if b := p.hdr.GetExtension(f.levelExt); len(b) > 0 {
			f.level.Add(b[0] & 0x7f)
		}
	}
	wake := !p.padding && (f.kind != webrtc.RTPCodecTypeVideo || f.videoFrameEnds(p))
	sinks := *f.sinks.Load()
	p.refs.Store(int32(len(sinks)) + 1)
	if f.hist != nil {
		f.hist.add(p)
	}
	for _, s := range sinks {
		if !s.enqueue(p, wake) {
			p.release()
		}
	}
	p.release()
	if wake {
		f.wakeWriters()
	}
}

// videoFrameEnds tracks the frames of a video track: it reports whether p
// ends a frame, or shows that the open one's end was lost (a new timestamp),
// and arms the backstop when p opens a frame.
func (f *forwarder) videoFrameEnds(p *packet) bool {
	newTS := p.hdr.Timestamp != f.frameTS
	ends := p.hdr.Marker || (f.frameOpen && newTS)
	opens := !p.hdr.Marker && (!f.frameOpen || newTS)
	f.frameOpen, f.frameTS = !p.hdr.Marker, p.hdr.Timestamp
	switch {
	case opens:
		f.openSince.Store(p.arrived.UnixNano())
		f.backstop.Reset(f.late)
	case !f.frameOpen:
		f.openSince.Store(0)
	}
	return ends
}

func (f *forwarder) startBackstop(late time.Duration) {
	f.late = late
	f.backstop = time.AfterFunc(time.Hour, f.frameLate)
	f.backstop.Stop()
}

// frameLate runs frameBackstop after a frame began: if it is still open, the
// sinks send what they have.
func (f *forwarder) frameLate() {
	since := f.openSince.Load()
	if since == 0 || time.Since(time.Unix(0, since)) < f.late {
		return
	}
	for _, s := range *f.sinks.Load() {
		s.signal()
	}
}

// requestKeyframe asks the publisher for a keyframe, at most once per
// keyframeInterval; a request inside the interval is sent when it ends.
func (f *forwarder) requestKeyframe() {
	if f.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	if f.pliPending {
		// Joins the request held back; only a keyframe that comes after
		// this, the latest, answers them all.
		f.pliAsked = time.Now().UnixNano()
		return
	}
	since := time.Since(f.lastPLI)
	if since >= keyframeInterval {
		f.lastPLI = time.Now()
		f.log.Debug("keyframe request to the publisher", "track", f.id, "layer", layerName(f))
		f.requestPLI(f.ssrc)
		return
	}
	f.pliPending = true
	f.pliAsked = time.Now().UnixNano()
	f.pliTimer = time.AfterFunc(keyframeInterval-since, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.pliPending = false
		if f.closed {
			return
		}
		// A keyframe that came after the latest request held back answers
		// them all (the one asked for before, or one the publisher sent of
		// itself): asking again would cost every subscriber of the layer
		// one more. One that came between them does not: a later asker
		// (a subscriber whose connection just came up) may not have had it.
		if f.keyframeAt.Load() > f.pliAsked {
			f.log.Debug("keyframe request answered before it was sent", "track", f.id, "layer", layerName(f))
			return
		}
		f.lastPLI = time.Now()
		f.log.Debug("keyframe request to the publisher", "track", f.id, "layer", layerName(f), "delayed", true)
		f.requestPLI(f.ssrc)
	})
}

func (f *forwarder) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// close stops keyframe timers; the read loop ends with the publish connection.
func (f *forwarder) close() {
	f.mu.Lock()
	f.closed = true
	if f.pliTimer != nil {
		f.pliTimer.Stop()
	}
	if f.backstop != nil {
		f.backstop.Stop()
	}
	f.mu.Unlock()
}

// releaseHistory lets the kept packets go, once the reader has ended.
func (f *forwarder) releaseHistory() {
	if f.hist != nil {
		f.hist.clear()
	}
}

// pliPacket builds the keyframe request for a publisher's track.
func pliPacket(ssrc uint32) []rtcp.Packet {
	return []rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}
}
