package client

import (
	"testing"
	"time"
)

// The arrival log finds a packet by SSRC and sequence number, tells a packet
// it never saw or has forgotten from one it knows, and ignores RTCP, STUN
// and DTLS datagrams. Each track keeps its own recent packets.
func TestArrivalLog(t *testing.T) {
	l := newArrivalLog()
	t0 := time.Now()
	now := t0.Add(2 * time.Second) // when the reader looks (the stamps are wall clock; now is monotonic too)
	rtpPkt := func(ssrc uint32, seq uint16, pt byte) []byte {
		return []byte{0x80, pt, byte(seq >> 8), byte(seq), 0, 0, 0, 1, byte(ssrc >> 24), byte(ssrc >> 16), byte(ssrc >> 8), byte(ssrc), 0xaa}
	}
	l.noteRTP(rtpPkt(0x11223344, 65535, 96), t0.UnixNano())
	l.noteRTP(rtpPkt(0x55667788, 65535, 111|0x80), t0.Add(time.Millisecond).UnixNano()) // marker bit set
	l.noteRTP(rtpPkt(0x99aabbcc, 7, 200), t0.UnixNano())                                // RTCP sender report
	l.noteRTP([]byte{0, 1, 0, 0}, t0.UnixNano())                                        // STUN
	l.noteRTP(append([]byte{22}, make([]byte, 20)...), t0.UnixNano())                   // DTLS
	if at, ok := l.lookup(0x11223344, 65535, now); !ok || !at.Equal(t0) {
		t.Errorf("first packet: %v %v, want %v", at, ok, t0)
	}
	if at, ok := l.lookup(0x55667788, 65535, now); !ok || at.Sub(t0) != time.Millisecond {
		t.Errorf("second track: %v %v", at, ok)
	}
	if _, ok := l.lookup(0x99aabbcc, 7, now); ok {
		t.Error("RTCP was noted as RTP")
	}
	if _, ok := l.lookup(0x11223344, 0, now); ok {
		t.Error("a packet never seen was found")
	}
	// A whole log's worth of later packets of the first track replaces it.
	for seq := range uint16(arrivalSlots) {
		l.noteRTP(rtpPkt(0x11223344, seq, 96), t0.Add(time.Second).UnixNano())
	}
	if _, ok := l.lookup(0x11223344, 65535, now); ok {
		t.Error("a forgotten packet was found")
	}
	if at, ok := l.lookup(0x11223344, arrivalSlots-1, now); !ok || at.Sub(t0) != time.Second {
		t.Errorf("latest packet: %v %v", at, ok)
	}
	// ... but not another track's.
	if _, ok := l.lookup(0x55667788, 65535, now); !ok {
		t.Error("one track's packets pushed out another's")
	}
	// Tracks past the limit are not stamped; those before still are.
	for ssrc := range uint32(arrivalTracks) {
		l.noteRTP(rtpPkt(0x1000+ssrc, 1, 96), t0.UnixNano())
	}
	if _, ok := l.lookup(0x1000+arrivalTracks-3, 1, now); !ok {
		t.Error("a track within the limit was not stamped")
	}
	if _, ok := l.lookup(0x1000+arrivalTracks-1, 1, now); ok {
		t.Error("a track past the limit was stamped")
	}
	var none *arrivalLog
	if _, ok := none.lookup(1, 1, now); ok {
		t.Error("a nil log found a packet")
	}
}
