package sfu

import (
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/pkg/codec/av1dd"
)

// binding is what a subscribe connection negotiated for a downTrack.
type binding struct {
	ssrc uint32
	pt   uint8
	ws   webrtc.TrackLocalWriter
	// twcc is the transport-wide sequence number's header extension id;
	// 0 when the subscriber did not negotiate it.
	twcc uint8
	// dd is the dependency descriptor's (AV1's layers, forwarded); 0: not
	// negotiated.
	dd uint8
}

// downTrack is one published track as sent to one subscriber. It implements
// webrtc.TrackLocal, so the subscribe connection binds it to the negotiated
// SSRC and payload type, and packetSink, queueing packets to its subscriber
// for its writer (writers.go). It numbers what it sends itself (rewrite.go).
type downTrack struct {
	fwd    *forwarder
	sub    *subscriber
	sender *webrtc.RTPSender

	bound atomic.Pointer[binding]
	// refused says the connection negotiated no codec that carries the
	// track (Bind): it is never sent, and leaves the connection after the
	// answer (subscriber.dropRefusedLocked).
	refused atomic.Bool
	// needKeyframe says the track was (re)bound: video starts again at a
	// keyframe that really went out.
	needKeyframe atomic.Bool

	// Touched only by the subscriber's writer, under the subscriber's writeMu.
	hdr      rtp.Header
	extBuf   [4]rtp.Extension
	twccBuf  [2]byte
	sr       srState
	rw       rewriter
	lastSent time.Time // when the newest packet went out
	// tl is the temporal layer selection (temporal.go); payloadBuf holds
	// a payload whose picture id it moved.
	tl         temporalState
	sl         spatialState
	payloadBuf [maxPacket]byte
	// resent remembers when recent sequence numbers were sent again, so a
	// NACK repeated within a round trip does not send a packet twice.
	resent [64]struct {
		seq uint16
		at  time.Time
	}

	rx      rxStats // what the subscriber's receiver reports say
	dropped atomic.Uint64

	// Layers (alloc.go): target is the track (simulcast layer) to send,
	// chosen by the allocation, nil while the video is paused; sending is
	// the one the writer sends now (nil before its first keyframe and
	// while paused). The writer switches to the target at the target's
	// next keyframe. layerMu orders changes of the tracks d is a sink of
	// (attached).
	target  atomic.Pointer[forwarder]
	sending atomic.Pointer[forwarder]
	// tcap is the highest temporal layer to send (allTemporal: all), the
	// allocation's choice; the writer follows it at frames where that is
	// decodable (temporal.go).
	tcap atomic.Int32
	// scap is the highest spatial layer to send (allSpatial: all), the
	// allocation's choice, and ssent the one the writer sends now (it
	// follows scap at keyframes going up, spatial.go).
	scap, ssent atomic.Int32
	// carrier is the layer a video paused for lack of bandwidth stays a
	// sink of: after its frames the writer may send probe padding, so the
	// estimate can show the link recovered.
	carrier  atomic.Pointer[forwarder]
	layerMu  sync.Mutex
	attached []*forwarder
	lastPLI  atomic.Int64 // unix ns of the subscriber's last keyframe request passed on
	// epoch is the sending track's epoch when the writer started on it.
	epoch uint32
	// shortSince is when the allocation found that not even the lowest
	// layer fits, not even keepMargin over the budget (zero: it fits); the
	// allocation's, under its lock.
	shortSince time.Time
	// dipSince is when the allocation began keeping the layer being sent
	// over the budget, through a dip of the estimate (zero: not keeping);
	// the allocation's, under its lock.
	dipSince time.Time
	// spatialAsked is when the allocation last asked for a keyframe to go
	// up a spatial layer at (spatial.go); under its lock.
	spatialAsked time.Time
}

func newDownTrack(f *forwarder, s *subscriber) *downTrack {
	d := &downTrack{fwd: f, sub: s}
	d.needKeyframe.Store(f.kind == webrtc.RTPCodecTypeVideo)
	d.tcap.Store(allTemporal)
	d.scap.Store(allSpatial)
	d.ssent.Store(allSpatial)
	return d
}

// Bind implements webrtc.TrackLocal.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	c, ok := matchCodec(ctx.CodecParameters(), d.fwd.codec)
	if !ok {
		// Failing the bind would fail the whole answer (pion starts every
		// sender in SetRemoteDescription): the track is bound to a codec
		// it never uses, and taken out right after the answer.
		negotiated := ctx.CodecParameters()
		if len(negotiated) == 0 {
			return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
		}
		d.refused.Store(true)
		d.bound.Store(nil)
		return negotiated[0], nil
	}
	b := &binding{ssrc: uint32(ctx.SSRC()), pt: uint8(c.PayloadType), ws: ctx.WriteStream()}
	for _, x := range ctx.HeaderExtensions() {
		if x.URI == sdp.TransportCCURI && x.ID > 0 && x.ID < 15 {
			b.twcc = uint8(x.ID)
		}
		if x.URI == av1dd.URI && x.ID > 0 && x.ID < 256 {
			b.dd = uint8(x.ID)
		}
	}
	d.bound.Store(b)
	if d.fwd.kind == webrtc.RTPCodecTypeVideo {
		d.needKeyframe.Store(true)
		if t := d.target.Load(); t != nil {
			t.requestKeyframe()
		}
	}
	return c, nil
}

// Unbind implements webrtc.TrackLocal.
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error {
	d.bound.Store(nil)
	return nil
}

// ID implements webrtc.TrackLocal: the track id is the forwarder's.
func (d *downTrack) ID() string { return strings.ReplaceAll(d.fwd.id, "/", "-") }

// RID implements webrtc.TrackLocal.
func (d *downTrack) RID() string { return "" }

// StreamID implements webrtc.TrackLocal: the room's stream id, so a browser's
// MediaStream.id names the stream.
func (d *downTrack) StreamID() string { return d.fwd.streamID }

// Kind implements webrtc.TrackLocal.
func (d *downTrack) Kind() webrtc.RTPCodecType { return d.fwd.kind }

// enqueue implements packetSink.
func (d *downTrack) enqueue(p *packet, wake bool) bool {
	if d.bound.Load() == nil {
		return false
	}
	if !d.sub.push(queued{d: d, p: p}, wake) {
		d.dropped.Add(1)
		d.sub.dropped.Add(1)
		return false
	}
	return true
}

// signal implements packetSink.
func (d *downTrack) signal() { d.sub.wake() }

// fillPadding is the padding of a padding-only packet the SFU sends where
// the receiver already sees a gap (rewrite.go: fill).
const fillPadding = 4

// write sends p to the subscriber, at now (the writer's batch time), and a
// sender report when one is due. Called only by the subscriber's writer,
// with its scratch buffer.
func (d *downTrack) write(p *packet, now time.Time, sc *sendScratch) {
	b := d.bound.Load()
	out := d.sub.out.Load()
	if b == nil || out == nil {
		return // not negotiated, or the connection is not up yet
	}
	src, target := p.src, d.target.Load()
	if target == nil {
		// Paused (alloc.go): nothing goes out, and d stops being a sink of
		// the track it was sending; the numbering stays where it is. A
		// video paused for lack of bandwidth may carry probe padding.
		d.sending.Store(nil)
		if c := d.carrier.Load(); c != nil && c == src {
			d.followPaused(p, b, out, now, sc)
			return
		}
		d.detachUnlessWanted(src)
		return
	}
	sending := d.sending.Load()
	if sending == src && src.epoch.Load() != d.epoch {
		// The track was muted (moderation.go) and is not anymore: start
		// again, as after a pause.
		d.rw.stop()
		d.sending.Store(nil)
		sending = nil
	}
	first := false
	if src != sending || !d.rw.started || d.needKeyframe.Load() {
		// Start, resume, or switch to another layer: only at the first
		// packet of a keyframe of the target (audio packets all are).
		if src != target || p.padding || !p.keyframe {
			return
		}
		d.rw.start(src, p.hdr.SequenceNumber, p.hdr.Timestamp, d.ticksSince(now))
		d.epoch = src.epoch.Load()
		first = true
	}
	seq, ts, v := d.rw.next(p.hdr.SequenceNumber, p.hdr.Timestamp, p.padding || d.leaveOut(p, first))
	if v == drop {
		return
	}
	if !d.send(b, out, p, d.payloadFor(p, true), seq, ts, v == fill, now, sc) {
		if first {
			// Pion drops writes (0 bytes, no error) until the connection's
			// SRTP is up: only a keyframe that really went out starts the
			// track.
			d.rw.stop()
			d.sending.Store(nil)
		}
		return
	}
	if first {
		d.needKeyframe.Store(false)
		if src != sending {
			d.sending.Store(src)
			d.detachUnlessWanted(sending)
		}
	}
	if v == send && d.fwd.kind == webrtc.RTPCodecTypeVideo && d.endsPicture(p) {
		d.sub.probePad(d, b, out, now, sc) // a frame's end: room for probe padding
	}
}

// setTarget makes t (a layer of d's published track; nil: none, the video
// pauses) the track to send. d becomes a sink of t, and t is asked for a
// keyframe to switch at; the layer a pending switch was for is left. It
// reports whether the target changed.
func (d *downTrack) setTarget(t *forwarder) bool {
	d.layerMu.Lock()
	old := d.target.Swap(t)
	if old == t {
		d.layerMu.Unlock()
		return false
	}
	if t != nil {
		d.attachLocked(t)
	}
	if old != nil && old != d.sending.Load() && old != d.carrier.Load() {
		d.detachLocked(old)
	}
	d.layerMu.Unlock()
	if t != nil && t != d.sending.Load() {
		t.requestKeyframe()
	}
	d.sub.log.Debug("layer target", "track", d.fwd.id, "from", layerName(old), "to", layerName(t),
		"sending", layerName(d.sending.Load()))
	return true
}

// layerName names a layer in logs: its rid, "-" for none.
func layerName(f *forwarder) string {
	if f == nil {
		return "-"
	}
	if f.rid == "" {
		return "(one layer)"
	}
	return f.rid
}

// detachUnlessWanted stops d being a sink of f unless f is its target or
// the track it sends.
func (d *downTrack) detachUnlessWanted(f *forwarder) {
	if f == nil {
		return
	}
	d.layerMu.Lock()
	defer d.layerMu.Unlock()
	if f != d.target.Load() && f != d.sending.Load() && f != d.carrier.Load() {
		d.detachLocked(f)
	}
}

// followPaused lets a paused video carry probe padding after the frames of
// its carrier: once numbering follows the carrier, every packet of it is
// left out (so no number is left where a receiver would see a gap, and NACK
// the paused frames when the video resumes), and after a frame's end, while
// the subscriber wants more than it gets, padding takes the next numbers.
func (d *downTrack) followPaused(p *packet, b *binding, out *sendPath, now time.Time, sc *sendScratch) {
	following := d.rw.started && d.rw.src == p.src
	if following {
		d.rw.next(p.hdr.SequenceNumber, p.hdr.Timestamp, true)
	}
	if !p.hdr.Marker || d.sub.wanted.Load() == 0 {
		return
	}
	if !following {
		d.rw.start(p.src, p.hdr.SequenceNumber, p.hdr.Timestamp, d.ticksSince(now))
		d.rw.next(p.hdr.SequenceNumber, p.hdr.Timestamp, true)
	}
	d.sub.probePad(d, b, out, now, sc)
}

// setCarrier makes c (nil: none) the layer a paused d stays a sink of.
func (d *downTrack) setCarrier(c *forwarder) {
	d.layerMu.Lock()
	defer d.layerMu.Unlock()
	old := d.carrier.Swap(c)
	if c != nil {
		d.attachLocked(c)
	}
	if old != nil && old != c && old != d.target.Load() && old != d.sending.Load() {
		d.detachLocked(old)
	}
}

// detachAll stops d being a sink of any track (the track was removed, or
// the subscriber closes).
func (d *downTrack) detachAll() {
	d.layerMu.Lock()
	defer d.layerMu.Unlock()
	d.target.Store(nil)
	d.carrier.Store(nil)
	for _, f := range d.attached {
		f.removeSink(d)
	}
	d.attached = nil
}

func (d *downTrack) attachLocked(f *forwarder) {
	if !slices.Contains(d.attached, f) {
		d.attached = append(d.attached, f)
		f.addSink(d)
	}
}

func (d *downTrack) detachLocked(f *forwarder) {
	if i := slices.Index(d.attached, f); i >= 0 {
		d.attached = slices.Delete(d.attached, i, i+1)
		f.removeSink(d)
	}
}

// subscriberPLIInterval is how often one subscriber's keyframe requests for
// a track are passed on: a receiver on a bad link asks again and again, and
// every keyframe costs the publisher and all the others bandwidth.
const subscriberPLIInterval = time.Second

// keyframe passes the subscriber's keyframe request on to the layer it
// receives (or is switching to), at most once per subscriberPLIInterval;
// the layer's own throttle limits what all subscribers ask together.
func (d *downTrack) keyframe(now time.Time) {
	f := d.sending.Load()
	if f == nil {
		f = d.target.Load()
	}
	if f == nil {
		return
	}
	last := d.lastPLI.Load()
	if last != 0 && now.Sub(time.Unix(0, last)) < subscriberPLIInterval {
		return
	}
	if d.lastPLI.CompareAndSwap(last, now.UnixNano()) {
		d.sub.log.Debug("keyframe asked for by the subscriber", "track", d.fwd.id, "layer", layerName(f))
		f.requestKeyframe()
	}
}

// ticksSince is the time since the newest packet went out, in the track's
// clock (0 before any).
func (d *downTrack) ticksSince(now time.Time) uint32 {
	if d.lastSent.IsZero() {
		return 0
	}
	return uint32(now.Sub(d.lastSent).Seconds() * float64(d.fwd.codec.ClockRate))
}

// send writes p with the subscriber's sequence number seq and timestamp ts:
// payload (p's, without the publisher's padding, or a copy the downTrack
// rewrote), or, with pad or for a padding-only packet, a padding-only packet.
// It reports whether the packet went out.
func (d *downTrack) send(b *binding, out *sendPath, p *packet, payload []byte, seq uint16, ts uint32, pad bool, now time.Time, sc *sendScratch) bool {
	d.hdr = p.hdr
	d.hdr.SSRC = b.ssrc
	d.hdr.PayloadType = b.pt
	d.hdr.SequenceNumber = seq
	d.hdr.Timestamp = ts
	d.hdr.Marker = d.endsPicture(p)
	// Header extension ids are per connection: the publisher's mean nothing
	// here.
	d.hdr.Extension = false
	d.hdr.Extensions = d.extBuf[:0]
	// The publisher's padding (alignment, or its own probing) is not
	// forwarded: it would cost the subscriber's link and carries nothing.
	d.hdr.Padding, d.hdr.PaddingSize = false, 0
	if pad || p.padding {
		payload = nil
		d.hdr.Padding, d.hdr.PaddingSize, d.hdr.Marker = true, fillPadding, false
	} else if b.dd != 0 && p.src != nil && p.src.ddExt != 0 {
		// The publisher's dependency descriptor, as it is: the frames left
		// out leave gaps in its frame numbers, which a receiver's frame
		// references skip (no frame sent refers to one left out).
		if x := p.hdr.GetExtension(p.src.ddExt); len(x) > 0 {
			_ = d.hdr.SetExtension(b.dd, x)
		}
	}
	return d.sendRTP(b, out, payload, now, sc)
}

// sendRTP writes d.hdr (numbered, with its SSRC and payload type) and
// payload, stamped with the connection's next transport-wide sequence number
// when negotiated, and tells the bandwidth estimator. It reports whether the
// packet went out.
func (d *downTrack) sendRTP(b *binding, out *sendPath, payload []byte, now time.Time, sc *sendScratch) bool {
	s := d.sub
	tw := s.twccSeq
	if b.twcc != 0 {
		binary.BigEndian.PutUint16(d.twccBuf[:], tw)
		_ = d.hdr.SetExtension(b.twcc, d.twccBuf[:])
	}
	if out.viaPion {
		if n, err := b.ws.WriteRTP(&d.hdr, payload); err != nil || n == 0 {
			return false
		}
	} else if err := out.writeRTP(&d.hdr, payload, sc); err != nil {
		return false
	}
	size := d.hdr.MarshalSize() + len(payload) + int(d.hdr.PaddingSize)
	s.wireBytes += int64(size)
	if b.twcc != 0 {
		s.twccSeq++
		s.bwe.Sent(tw, size, now, s.probe.cluster)
	}
	s.sent.Add(1) // written by this subscriber's writer only: uncontended
	s.sentBytes.Add(uint64(len(payload)))
	d.lastSent = now
	if d.sr.sent(d.hdr.SequenceNumber, d.hdr.Timestamp, len(payload), now) {
		d.sendSenderReport(b.ssrc, now, out, sc)
	}
	return true
}

// resend answers a subscriber's NACK of the sequence numbers in pair: each
// is mapped back to the publisher's number and sent again from the track's
// shared history, if it is still there, can still arrive in time to be of
// use, was not sent again within the last round trip, and fits the
// subscriber's retransmission budget (rtx). It reports how many went out.
// Called only by the subscriber's writer.
func (d *downTrack) resend(pair rtcp.NackPair, now time.Time, sc *sendScratch) int {
	b := d.bound.Load()
	out := d.sub.out.Load()
	if b == nil || out == nil {
		return 0
	}
	rtt := d.sub.bwe.RTT()
	maxAge := rtxMaxAge(rtt)
	n := 0
	for i := range 17 {
		if i > 0 && pair.LostPackets&(1<<(i-1)) == 0 {
			continue
		}
		seq := pair.PacketID + uint16(i)
		src, in, tsOff, ok := d.rw.lookup(seq)
		if !ok || src.hist == nil {
			continue
		}
		slot := &d.resent[seq%uint16(len(d.resent))]
		if slot.seq == seq && !slot.at.IsZero() && now.Sub(slot.at) < max(rtt, 20*time.Millisecond) {
			continue // sent again already; it may still be on its way
		}
		p := src.hist.get(in)
		if p == nil {
			continue
		}
		switch {
		case now.Sub(p.arrived) > maxAge:
			d.sub.rtxLate.Add(1) // it would come too late to be of use
		case !d.sub.rtx.take(len(p.payload)+40, d.sub.bwe.Target(), now):
			d.sub.rtxOver.Add(1) // over the budget: the link is busy enough
		case d.send(b, out, p, d.payloadFor(p, false), seq, p.hdr.Timestamp+tsOff, false, now, sc):
			slot.seq, slot.at = seq, now
			n++
		}
		p.release()
	}
	return n
}

// rtxMaxAge is how old a packet may be and still be worth sending again
// over a path of round trip rtt: a receiver waits for a missing packet
// about a round trip and a jitter allowance beyond its expected arrival.
func rtxMaxAge(rtt time.Duration) time.Duration {
	if rtt <= 0 {
		return time.Second // not known yet
	}
	return min(max(rtt+250*time.Millisecond, 300*time.Millisecond), time.Second)
}

// rtxShare is the part of a subscriber's estimate its retransmissions may use.
const rtxShare = 0.25

// rtxBudget is a token bucket of bytes that refills at rtxShare of the
// estimate and holds 200 ms of it (at least a few packets).
type rtxBudget struct {
	tokens float64
	at     time.Time
}

func (r *rtxBudget) take(size, estimate int, now time.Time) bool {
	rate := rtxShare * float64(estimate) / 8 // bytes per second
	capacity := max(rate*0.2, 3*1300)
	if r.at.IsZero() {
		r.tokens = capacity
	} else {
		r.tokens = min(capacity, r.tokens+rate*now.Sub(r.at).Seconds())
	}
	r.at = now
	if r.tokens < float64(size) {
		return false
	}
	r.tokens -= float64(size)
	return true
}

// nack hands a subscriber's NACK to its writer, which answers it from the
// track's history (resend). Audio is not retransmitted.
func (d *downTrack) nack(pairs []rtcp.NackPair) {
	if d.fwd.hist != nil {
		d.sub.queueNACK(d, pairs)
	}
}

// readRTCP handles the subscriber's feedback for this track (rtcpin.go):
// keyframe requests go to the publisher (throttled), NACKs to the writer,
// receiver reports and transport-wide CC feedback to the bandwidth
// estimate. It ends when the sender stops.
func (d *downTrack) readRTCP() {
	buf := make([]byte, maxPacket)
	nacks := make([]rtcp.NackPair, 0, 64)
	for {
		n, _, err := d.sender.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				d.sub.log.Debug("rtcp read ended", "track", d.fwd.id, "err", err)
			}
			return
		}
		now := time.Now()
		nacks = d.onRTCP(buf[:n], now, nacks)
		d.sub.maybeAllocate(now) // the estimate may have moved
	}
}
