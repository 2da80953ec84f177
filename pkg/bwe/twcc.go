package bwe

import (
	"encoding/binary"
	"errors"
)

// Transport-wide congestion control feedback
// (draft-holmer-rmcat-transport-wide-cc-extensions-01, section 3.1), read
// without allocating: the SFU gets one from every subscriber about ten times
// a second.

// twccFMT is the feedback message type of transport-wide CC in RTPFB (205).
const twccFMT = 15

// Packet status symbols.
const (
	statusNotReceived = 0
	statusSmallDelta  = 1
	statusLargeDelta  = 2
)

var errFeedback = errors.New("malformed transport-wide CC feedback")

// feedbackReader walks one feedback packet: the status of each packet it
// reports, in sequence order, and the arrival times of those received.
type feedbackReader struct {
	base   uint16 // first sequence number reported
	count  int    // packets reported
	refUs  int64  // reference time, µs (wraps with the 24-bit field)
	fbSeq  uint8  // feedback packet count
	chunks []byte // packet status chunks
	deltas []byte // receive deltas
}

// parse reads the fixed part of a feedback packet (the whole RTCP packet,
// header included) and splits its chunks from its deltas.
func (r *feedbackReader) parse(b []byte) error {
	if len(b) < 20 || b[0]>>6 != 2 || b[0]&0x1f != twccFMT || b[1] != 205 {
		return errFeedback
	}
	n := (int(binary.BigEndian.Uint16(b[2:])) + 1) * 4
	if n > len(b) {
		return errFeedback
	}
	b = b[:n]
	if b[0]&0x20 != 0 { // padding
		p := int(b[len(b)-1])
		if p == 0 || p > len(b)-20 {
			return errFeedback
		}
		b = b[:len(b)-p]
	}
	r.base = binary.BigEndian.Uint16(b[12:])
	r.count = int(binary.BigEndian.Uint16(b[14:]))
	ref := int64(b[16])<<16 | int64(b[17])<<8 | int64(b[18])
	r.refUs = ref * 64000
	r.fbSeq = b[19]
	// The chunks: as many as it takes to cover count statuses.
	rest := b[20:]
	covered, i := 0, 0
	for covered < r.count {
		if i+2 > len(rest) {
			return errFeedback
		}
		c := binary.BigEndian.Uint16(rest[i:])
		i += 2
		switch {
		case c&0x8000 == 0: // run length
			covered += int(c & 0x1fff)
		case c&0x4000 == 0: // 14 one-bit symbols
			covered += 14
		default: // 7 two-bit symbols
			covered += 7
		}
	}
	r.chunks, r.deltas = rest[:i], rest[i:]
	return nil
}

// each calls fn for every packet reported, in order: its sequence number,
// whether it arrived, and if so its arrival time in µs on the receiver's
// clock (reference time plus the deltas so far). It stops early when fn
// returns false, or when the deltas run out (a malformed packet).
func (r *feedbackReader) each(fn func(seq uint16, received bool, arrivalUs int64) bool) error {
	seq, left := r.base, r.count
	at := r.refUs
	deltas := r.deltas
	emit := func(sym int) (bool, error) {
		received := false
		switch sym {
		case statusSmallDelta:
			if len(deltas) < 1 {
				return false, errFeedback
			}
			at += int64(deltas[0]) * 250
			deltas = deltas[1:]
			received = true
		case statusLargeDelta:
			if len(deltas) < 2 {
				return false, errFeedback
			}
			at += int64(int16(binary.BigEndian.Uint16(deltas))) * 250
			deltas = deltas[2:]
			received = true
		}
		ok := fn(seq, received, at)
		seq++
		left--
		return ok, nil
	}
	for c := r.chunks; len(c) >= 2 && left > 0; c = c[2:] {
		chunk := binary.BigEndian.Uint16(c)
		switch {
		case chunk&0x8000 == 0:
			sym := int(chunk>>13) & 3
			for n := min(int(chunk&0x1fff), left); n > 0; n-- {
				if ok, err := emit(sym); !ok || err != nil {
					return err
				}
			}
		case chunk&0x4000 == 0:
			for k := 13; k >= 0 && left > 0; k-- {
				if ok, err := emit(int(chunk>>k) & 1); !ok || err != nil {
					return err
				}
			}
		default:
			for k := 12; k >= 0 && left > 0; k -= 2 {
				if ok, err := emit(int(chunk>>k) & 3); !ok || err != nil {
					return err
				}
			}
		}
	}
	return nil
}
