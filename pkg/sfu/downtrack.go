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
// for its writer (writers.go).
type downTrack struct {
	fwd    *forwarder
	sub    *subscriber
	sender *webrtc.RTPSender

	bound        atomic.Pointer[binding]
	needKeyframe atomic.Bool

	// Touched only by the subscriber's writer, under the subscriber's writeMu.
	hdr    rtp.Header
	extBuf [4]rtp.Extension
	sr     srState

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

// write sends p to the subscriber, at now (the writer's batch time), and a
// sender report when one is due. Called only by the subscriber's writer,
// with its scratch buffer.
func (d *downTrack) write(p *packet, now time.Time, sc *sendScratch) {
	b := d.bound.Load()
	out := d.sub.out.Load()
	if b == nil || out == nil {
		return // not negotiated, or the connection is not up yet
	}
	gated := d.needKeyframe.Load()
	if gated && !p.keyframe {
		return
	}
	d.hdr = p.hdr
	d.hdr.SSRC = b.ssrc
	d.hdr.PayloadType = b.pt
	// Header extension ids are per connection: the publisher's mean nothing
	// here. The subscribe connection's interceptors add their own.
	d.hdr.Extension = false
	d.hdr.Extensions = d.extBuf[:0]
	if out.viaPion {
		// Pion drops writes (0 bytes, no error) until the connection's
		// SRTP is up: only a keyframe that was really sent opens the gate.
		if n, err := b.ws.WriteRTP(&d.hdr, p.payload); err != nil || n == 0 {
			return
		}
	} else if err := out.writeRTP(&d.hdr, p.payload, sc); err != nil {
		return
	}
	if gated {
		d.needKeyframe.Store(false)
	}
	d.sub.sent.Add(1) // written by this subscriber's writer only: uncontended
	if d.sr.sent(p, now) {
		d.sendSenderReport(b.ssrc, now, out, sc)
	}
}

// retransmit answers a NACK from the track's shared history, through the
// subscriber's queue like any packet (so it never blocks and keeps order
// with the writer).
func (d *downTrack) retransmit(nack *rtcp.TransportLayerNack) {
	h := d.fwd.hist
	if h == nil {
		return
	}
	d.sub.resent.Store(true)
	for _, pair := range nack.Nacks {
		pair.Range(func(seq uint16) bool {
			if p := h.get(seq); p != nil && !d.enqueue(p, false) {
				p.release()
			}
			return true
		})
	}
	d.sub.wake()
}

// readRTCP handles the subscriber's feedback for this track: keyframe
// requests go to the publisher (throttled) and NACKs are answered from the
// track's history. It ends when the sender stops.
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
				d.retransmit(pkt)
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
