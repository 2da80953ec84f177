package sfu

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// outerWriter is an interceptor added after the guard, as a NACK responder
// or a padding generator would be: it writes RTP and RTCP of its own
// through what it was bound to.
type outerWriter struct {
	interceptor.NoOp
	rtp  interceptor.RTPWriter
	rtcp interceptor.RTCPWriter
}

func (o *outerWriter) NewInterceptor(string) (interceptor.Interceptor, error) { return o, nil }
func (o *outerWriter) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	o.rtp = w
	return w
}
func (o *outerWriter) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	o.rtcp = w
	return w
}

// Nothing but the direct path encrypts a connection's RTP or RTCP while its
// path is direct: the guard, first in the subscribe connection's interceptor
// chain, refuses what pion's session would write for it, whoever writes
// (here an interceptor registered after it), before the connection is up
// and after ICE failed as well; it lets everything through once the
// connection's RTP goes through pion.
func TestPionGuard(t *testing.T) {
	var out atomic.Pointer[sendPath]
	var refused atomic.Uint64
	reg := &interceptor.Registry{}
	reg.Add(&pionGuard{out: &out, refused: &refused})
	outer := &outerWriter{}
	reg.Add(outer)
	chain, err := reg.Build("")
	if err != nil {
		t.Fatal(err)
	}
	var wroteRTP, wroteRTCP int
	chain.BindLocalStream(&interceptor.StreamInfo{SSRC: 1234}, interceptor.RTPWriterFunc(
		func(*rtp.Header, []byte, interceptor.Attributes) (int, error) { wroteRTP++; return 1, nil }))
	chain.BindRTCPWriter(interceptor.RTCPWriterFunc(
		func([]rtcp.Packet, interceptor.Attributes) (int, error) { wroteRTCP++; return 1, nil }))
	write := func() (error, error) {
		_, e1 := outer.rtp.Write(&rtp.Header{SSRC: 1234, SequenceNumber: 7}, []byte{1, 2, 3}, nil)
		_, e2 := outer.rtcp.Write([]rtcp.Packet{&rtcp.SenderReport{SSRC: 1234}}, nil)
		return e1, e2
	}
	b, _ := loopbackPair(t)
	for name, p := range map[string]*sendPath{"direct": {srtp: testContext(t), udp: b}, "not up": nil,
		"no socket": {srtp: testContext(t)}} {
		out.Store(p)
		if e1, e2 := write(); !errors.Is(e1, errGuarded) || !errors.Is(e2, errGuarded) {
			t.Errorf("%s: pion's session wrote (rtp: %v, rtcp: %v)", name, e1, e2)
		}
	}
	if wroteRTP != 0 || wroteRTCP != 0 || refused.Load() != 6 {
		t.Fatalf("%d RTP and %d RTCP writes reached pion's session, %d refused; want none and 6", wroteRTP, wroteRTCP, refused.Load())
	}
	out.Store(&sendPath{viaPion: true})
	if e1, e2 := write(); e1 != nil || e2 != nil || wroteRTP != 1 || wroteRTCP != 1 {
		t.Errorf("on pion's path: %v %v, %d/%d writes; want both through", e1, e2, wroteRTP, wroteRTCP)
	}
}

// After a fallback, pion's SRTCP index of an SSRC the direct path sent
// reports on would be one the direct path used: the report goes behind an
// empty receiver report of an SSRC neither used.
func TestSenderReportAfterFallback(t *testing.T) {
	ctx := testContext(t)
	p, _, next := directLoopback(t)
	p.srtp = ctx
	raw, _ := (&rtcp.SenderReport{SSRC: 1234}).Marshal()
	if err := p.writeRTCP(raw, newSendScratch()); err != nil {
		t.Fatal(err)
	}
	next()
	pion := &sendPath{viaPion: true, spent: ctx, rtcpSSRC: freshSSRC(ctx, []uint32{1234, 5678})}
	if pion.rtcpSSRC == 1234 || pion.rtcpSSRC == 5678 || pion.rtcpSSRC == 0 {
		t.Fatalf("fresh SSRC %d", pion.rtcpSSRC)
	}
	pkts := pion.senderReportPackets(&rtcp.SenderReport{SSRC: 1234})
	if rr, ok := pkts[0].(*rtcp.ReceiverReport); len(pkts) != 2 || !ok || rr.SSRC != pion.rtcpSSRC {
		t.Errorf("report of a spent SSRC goes as %+v", pkts)
	}
	if pkts := pion.senderReportPackets(&rtcp.SenderReport{SSRC: 5678}); len(pkts) != 1 {
		t.Errorf("report of an unspent SSRC goes as %+v", pkts)
	}
}

// A fallback happens only when pion's context cannot reuse an index the
// direct path used: with an SSRC whose sequence numbers rolled over on the
// direct path, the connection stops instead (and says so in the counters).
func TestFallbackNeverReusesTheKeystream(t *testing.T) {
	for _, rolled := range []bool{false, true} {
		e := &Engine{}
		s := &subscriber{peer: &Peer{router: &Router{engine: e}}, log: slog.New(slog.DiscardHandler),
			tracks: map[*forwarder]*downTrack{}}
		d := &downTrack{}
		d.bound.Store(&binding{ssrc: 1234})
		s.tracks[&forwarder{}] = d
		p, _, next := directLoopback(t)
		s.srtp = p.srtp
		s.out.Store(p)
		sc := newSendScratch()
		seqs := []uint16{100, 101}
		if rolled {
			seqs = []uint16{65534, 65535, 0, 1}
		}
		for _, seq := range seqs {
			if err := p.writeRTP(&rtp.Header{Version: 2, SSRC: 1234, SequenceNumber: seq}, []byte{1}, sc); err != nil {
				t.Fatal(err)
			}
			next()
		}
		var counted atomic.Uint64
		ok := s.fallback(&counted, p)
		out := s.out.Load()
		switch {
		case rolled && (ok || out != nil || e.fallbacksRefused.Load() != 1 || counted.Load() != 0):
			t.Errorf("after a rollover: fallback %v, path %+v, refused %d; want a stop", ok, out, e.fallbacksRefused.Load())
		case !rolled && (!ok || out == nil || !out.viaPion || out.spent != p.srtp || counted.Load() != 1):
			t.Errorf("without a rollover: fallback %v, path %+v; want pion's path", ok, out)
		}
		if s.fallback(&counted, out) && counted.Load() > 1 {
			t.Error("a second fallback counted")
		}
	}
}
