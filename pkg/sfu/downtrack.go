package sfu

import (
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// binding is what a subscribe connection negotiated for a downTrack.
type binding struct {
	ssrc uint32
	pt   uint8
	ws   webrtc.TrackLocalWriter
	// twcc is the transport-wide sequence number's header extension id;
	// 0 when the subscriber did not negotiate it.
	twcc uint8
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
	// resent remembers when recent sequence numbers were sent again, so a
	// NACK repeated within a round trip does not send a packet twice.
	resent [64]struct {
		seq uint16
		at  time.Time
	}

	rx      rxStats // what the subscriber's receiver reports say
	dropped atomic.Uint64
}

func newDownTrack(f *forwarder, s *subscriber) *downTrack {
	d := &downTrack{fwd: f, sub: s}
	d.needKeyframe.Store(f.kind == webrtc.RTPCodecTypeVideo)
	return d
}

// Bind implements webrtc.TrackLocal.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	c, ok := matchCodec(ctx.CodecParameters(), d.fwd.codec)
	if !ok {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	b := &binding{ssrc: uint32(ctx.SSRC()), pt: uint8(c.PayloadType), ws: ctx.WriteStream()}
	for _, x := range ctx.HeaderExtensions() {
		if x.URI == sdp.TransportCCURI && x.ID > 0 && x.ID < 15 {
			b.twcc = uint8(x.ID)
		}
	}
	d.bound.Store(b)
	if d.fwd.kind == webrtc.RTPCodecTypeVideo {
		d.needKeyframe.Store(true)
		d.fwd.requestKeyframe()
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
	first := false
	if !d.rw.started || d.needKeyframe.Load() {
		// Start on a packet the receiver can begin with: a keyframe's
		// first packet for video (audio packets all are).
		if p.padding || !p.keyframe {
			return
		}
		d.rw.start(d.fwd, p.hdr.SequenceNumber, p.hdr.Timestamp, d.ticksSince(now))
		first = true
	}
	seq, ts, v := d.rw.next(p.hdr.SequenceNumber, p.hdr.Timestamp, p.padding)
	if v == drop {
		return
	}
	if !d.send(b, out, p, seq, ts, v == fill, now, sc) {
		if first {
			// Pion drops writes (0 bytes, no error) until the connection's
			// SRTP is up: only a keyframe that really went out starts the
			// track.
			d.rw.stop()
		}
		return
	}
	if first {
		d.needKeyframe.Store(false)
	}
	if p.hdr.Marker && v == send && d.fwd.kind == webrtc.RTPCodecTypeVideo {
		d.sub.probePad(d, b, out, now, sc) // a frame's end: room for probe padding
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
// its payload without the publisher's padding, or, with pad or for a
// padding-only packet, a padding-only packet. It reports whether the packet
// went out.
func (d *downTrack) send(b *binding, out *sendPath, p *packet, seq uint16, ts uint32, pad bool, now time.Time, sc *sendScratch) bool {
	d.hdr = p.hdr
	d.hdr.SSRC = b.ssrc
	d.hdr.PayloadType = b.pt
	d.hdr.SequenceNumber = seq
	d.hdr.Timestamp = ts
	// Header extension ids are per connection: the publisher's mean nothing
	// here.
	d.hdr.Extension = false
	d.hdr.Extensions = d.extBuf[:0]
	// The publisher's padding (alignment, or its own probing) is not
	// forwarded: it would cost the subscriber's link and carries nothing.
	d.hdr.Padding, d.hdr.PaddingSize = false, 0
	payload := p.payload
	if pad || p.padding {
		payload = nil
		d.hdr.Padding, d.hdr.PaddingSize, d.hdr.Marker = true, fillPadding, false
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
		case d.send(b, out, p, seq, p.hdr.Timestamp+tsOff, false, now, sc):
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
		nacks = d.onRTCP(buf[:n], time.Now(), nacks)
	}
}
