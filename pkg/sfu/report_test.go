package sfu

import (
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

// Only compound RTCP packets with NACK, PLI or FIR are parsed by a
// subscriber's RTCP reader.
func TestCarriesFeedback(t *testing.T) {
	rr := &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2}}}
	sdes := &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 1,
		Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "x"}}}}}
	pli := &rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 2}
	fir := &rtcp.FullIntraRequest{SenderSSRC: 1, MediaSSRC: 2, FIR: []rtcp.FIREntry{{SSRC: 2}}}
	nack := &rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 2, Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{5, 7})}
	marshal := func(pkts ...rtcp.Packet) []byte {
		b, err := rtcp.Marshal(pkts)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withPLI := marshal(rr, sdes, pli)
	for _, tc := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"receiver report and SDES", marshal(rr, sdes), false},
		{"PLI after a receiver report", withPLI, true},
		{"FIR", marshal(fir), true},
		{"NACK", marshal(rr, nack), true},
		{"truncated before the PLI", withPLI[:len(withPLI)-4], false},
		{"empty", nil, false},
		{"not RTCP", []byte{0, 1, 2, 3, 4, 5, 6, 7}, false},
	} {
		if got := carriesFeedback(tc.b); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
