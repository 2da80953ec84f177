package sfu

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// A sender report maps RTP time to wall-clock time by the publisher's own
// report when there is one, else by the last forwarded packet; counts leave
// retransmissions out of the mapping but not out of the counts.
func TestSenderReportClock(t *testing.T) {
	pool := newPacketPool()
	f := testForwarder(pool, &writerPool{}) // Opus, 48 kHz
	f.codec.ClockRate = 48000
	d := newDownTrack(f, &subscriber{})
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

	p := makePacket(pool, 100) // timestamp 96000
	if !d.sr.sent(p.hdr.SequenceNumber, p.hdr.Timestamp, len(p.payload), t0) {
		t.Fatal("the first packet does not make a report due")
	}
	d.sr.next = t0.Add(senderReportInterval)
	old := makePacket(pool, 90) // a retransmission: counted, but not the clock's anchor
	old.hdr.Timestamp = 1000
	if d.sr.sent(old.hdr.SequenceNumber, old.hdr.Timestamp, len(old.payload), t0.Add(10*time.Millisecond)) {
		t.Fatal("a report is due again within the interval")
	}
	if !d.sr.sent(101, 101*960, 160, t0.Add(time.Second)) {
		t.Fatal("no report due after the interval")
	}

	at := t0.Add(1500 * time.Millisecond)
	sr := d.senderReport(77, at)
	// Last packet: timestamp 101*960 written at t0+1s; 0.5 s later at 48 kHz.
	if want := uint32(101*960 + 24000); sr.RTPTime != want || sr.SSRC != 77 || sr.PacketCount != 3 ||
		sr.OctetCount != 3*160 || ntpTime(sr.NTPTime).Sub(at).Abs() > time.Microsecond {
		t.Errorf("report %+v, want RTP %d, 3 packets, 480 bytes, NTP %v", sr, want, at)
	}

	// The publisher reported RTP 5000000 at t0+1.2 s: 0.3 s later at 48 kHz.
	f.pubClock.Store(&clockAnchor{rtp: 5_000_000, at: t0.Add(1200 * time.Millisecond)})
	if sr := d.senderReport(77, at); sr.RTPTime != 5_000_000+14400 {
		t.Errorf("with the publisher's clock: RTP %d, want %d", sr.RTPTime, 5_000_000+14400)
	}
	// A downTrack whose timestamps carry an offset reports in its own.
	d.rw.tsOff = 1000
	if sr := d.senderReport(77, at); sr.RTPTime != 5_000_000+14400+1000 {
		t.Errorf("with a timestamp offset of 1000: RTP %d, want %d", sr.RTPTime, 5_000_000+14400+1000)
	}
	d.rw.tsOff = 0
	// Video clock, and wrap-around.
	f.codec.ClockRate = 90000
	f.kind = webrtc.RTPCodecTypeVideo
	f.pubClock.Store(&clockAnchor{rtp: 1<<32 - 9000, at: t0})
	if sr := d.senderReport(77, t0.Add(200*time.Millisecond)); sr.RTPTime != 9000 {
		t.Errorf("across the wrap: RTP %d, want 9000", sr.RTPTime)
	}
}

func TestNTPRoundTrip(t *testing.T) {
	for _, tm := range []time.Time{time.Unix(0, 0), time.Date(2026, 11, 25, 7, 30, 0, 123456789, time.UTC)} {
		if back := ntpTime(toNTP(tm)); back.Sub(tm).Abs() > time.Microsecond {
			t.Errorf("%v -> %v", tm, back)
		}
	}
}

// A subscriber's RTCP is read without allocating: receiver reports give the
// track's loss, jitter and round trip (from the SFU's own sender report they
// answer), NACKs go to the writer, PLI and FIR to the publisher, REMB and
// transport-wide CC feedback to the connection's estimate.
func TestSubscriberRTCP(t *testing.T) {
	pool := newPacketPool()
	wp := &writerPool{workers: []*writer{{wake: make(chan struct{}, 1)}}}
	f := testForwarder(pool, wp)
	f.kind = webrtc.RTPCodecTypeVideo
	f.hist = &history{}
	plis := 0
	f.requestPLI = func(uint32) { plis++ }
	s := testSubscriber(wp, 16)
	d := newDownTrack(f, s)
	d.bound.Store(&binding{ssrc: 4242, pt: 96, ws: &countWriter{}})
	d.target.Store(f)
	now := time.Now()
	// The report answers a sender report sent 150 ms ago and held 50 ms.
	sentSR := toNTP(now.Add(-150 * time.Millisecond))
	rr := &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{
		{SSRC: 999, FractionLost: 200},
		{SSRC: 4242, FractionLost: 64, TotalLost: 12, Jitter: 900, LastSenderReport: uint32(sentSR >> 16), Delay: 50 * 65536 / 1000},
	}}
	nack := &rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 4242, Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{5, 7, 40})}
	remb := &rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 400_000, SSRCs: []uint32{4242}}
	raw, err := rtcp.Marshal([]rtcp.Packet{rr, nack, &rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 4242}, remb})
	if err != nil {
		t.Fatal(err)
	}
	scratch := make([]rtcp.NackPair, 0, 64)
	scratch = d.onRTCP(raw, now, scratch)
	if got := d.rx.fractionLost.Load(); got != 64 {
		t.Errorf("fraction lost %d, want 64 (the block of this track's SSRC)", got)
	}
	if got, want := time.Duration(d.rx.rtt.Load()), 100*time.Millisecond; got < want-time.Millisecond || got > want+time.Millisecond {
		t.Errorf("round trip %v, want %v", got, want)
	}
	if d.rx.totalLost.Load() != 12 || d.rx.jitter.Load() != 900 || s.bwe.RTT() != time.Duration(d.rx.rtt.Load()) {
		t.Errorf("lost %d, jitter %d, estimator's RTT %v", d.rx.totalLost.Load(), d.rx.jitter.Load(), s.bwe.RTT())
	}
	if plis != 1 {
		t.Errorf("%d keyframe requests, want 1", plis)
	}
	if got := s.bwe.Target(); got != 400_000 {
		t.Errorf("estimate %d after a REMB of 400 kbit/s", got)
	}
	if len(s.nacks) != 2 || s.nacked.Load() != 3 || !s.nackPending.Load() {
		t.Errorf("NACK queued as %+v (%d NACKed), want two ranges of 3 packets", s.nacks, s.nacked.Load())
	}
	s.nacks, s.nackPending = s.nacks[:0], atomic.Bool{}
	// Receiver reports and feedback, every second of every subscriber: no allocation.
	rrOnly, _ := rtcp.Marshal([]rtcp.Packet{rr})
	if n := testing.AllocsPerRun(100, func() { scratch = d.onRTCP(rrOnly, now, scratch) }); n != 0 {
		t.Errorf("a receiver report allocates %.1f times", n)
	}
	for _, bad := range [][]byte{nil, {0x80}, {0x81, 201, 0, 40, 0, 0, 0, 1}, {0x41, 201, 0, 1, 0, 0, 0, 0}} {
		d.onRTCP(bad, now, scratch) // truncated or not RTCP: ignored, no panic
	}
}
