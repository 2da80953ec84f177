package sfu

import (
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// binding is what a subscribe connection negotiated for a downTrack.
type binding struct {
	ssrc uint32
	pt   uint8
	ws   webrtc.TrackLocalWriter
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
	sr       srState
	rw       rewriter
	lastSent time.Time // when the newest packet went out

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
	d.bound.Store(&binding{ssrc: uint32(ctx.SSRC()), pt: uint8(c.PayloadType), ws: ctx.WriteStream()})
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
	if out.viaPion {
		if n, err := b.ws.WriteRTP(&d.hdr, payload); err != nil || n == 0 {
			return false
		}
	} else if err := out.writeRTP(&d.hdr, payload, sc); err != nil {
		return false
	}
	d.sub.sent.Add(1) // written by this subscriber's writer only: uncontended
	d.lastSent = now
	if d.sr.sent(seq, ts, len(payload), now) {
		d.sendSenderReport(b.ssrc, now, out, sc)
	}
	return true
}

// resend answers a subscriber's NACK of the sequence numbers in pair: each
// is mapped back to the publisher's number and sent again from the track's
// shared history, if it is still there. It reports how many went out.
// Called only by the subscriber's writer.
func (d *downTrack) resend(pair rtcp.NackPair, now time.Time, sc *sendScratch) int {
	b := d.bound.Load()
	out := d.sub.out.Load()
	if b == nil || out == nil {
		return 0
	}
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
		p := src.hist.get(in)
		if p == nil {
			continue
		}
		if d.send(b, out, p, seq, p.hdr.Timestamp+tsOff, false, now, sc) {
			n++
		}
		p.release()
	}
	return n
}

// nack hands a subscriber's NACK to its writer, which answers it from the
// track's history (resend). Audio is not retransmitted.
func (d *downTrack) nack(pkt *rtcp.TransportLayerNack) {
	if d.fwd.hist != nil {
		d.sub.queueNACK(d, pkt.Nacks)
	}
}

// readRTCP handles the subscriber's feedback for this track: keyframe
// requests go to the publisher (throttled) and NACKs to the writer. It ends
// when the sender stops.
func (d *downTrack) readRTCP() {
	buf := make([]byte, maxPacket)
	for {
		n, _, err := d.sender.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				d.sub.log.Debug("rtcp read ended", "track", d.fwd.id, "err", err)
			}
			return
		}
		if !carriesFeedback(buf[:n]) {
			continue // receiver reports, SDES: nothing to act on, nothing to parse
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, pkt := range pkts {
			switch pkt := pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				d.fwd.requestKeyframe()
			case *rtcp.TransportLayerNack:
				d.nack(pkt)
			}
		}
	}
}

// carriesFeedback reports whether a compound RTCP packet holds feedback the
// SFU acts on: transport-layer (NACK) or payload-specific (PLI, FIR). Every
// receiver sends a receiver report per track each second; skipping their
// parse (rtcp.Unmarshal allocates per packet) leaves the SFU nothing to
// collect for them.
func carriesFeedback(b []byte) bool {
	for len(b) >= 4 {
		var h rtcp.Header
		if err := h.Unmarshal(b); err != nil {
			return false
		}
		n := (int(h.Length) + 1) * 4
		if n > len(b) {
			return false // truncated
		}
		if h.Type == rtcp.TypeTransportSpecificFeedback || h.Type == rtcp.TypePayloadSpecificFeedback {
			return true
		}
		b = b[n:]
	}
	return false
}
