package sfu

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
)

// A subscriber's RTCP, read without allocating: every receiver sends a
// receiver report per track each second and transport-wide CC feedback about
// ten times a second, so at hundreds of subscribers rtcp.Unmarshal's
// allocations would be a cost per forwarded packet.

const (
	rtcpSR    = 200
	rtcpRR    = 201
	rtcpRTPFB = 205
	rtcpPSFB  = 206

	fmtNACK = 1
	fmtTWCC = 15
	fmtPLI  = 1
	fmtFIR  = 4
	fmtREMB = 15
)

// rxStats is what a subscriber's receiver reports say of one track, as the
// receiver saw it.
type rxStats struct {
	fractionLost atomic.Uint32 // of 256, over the last report's interval
	totalLost    atomic.Int32
	jitter       atomic.Uint32 // RTP clock units
	rtt          atomic.Int64  // ns; 0 unknown
	reports      atomic.Uint64
	highest      atomic.Uint32 // extended highest sequence number received
}

// onRTCP handles one compound RTCP packet from the subscriber about d's
// track, received at now. nacks is the reader's scratch for NACK pairs.
func (d *downTrack) onRTCP(b []byte, now time.Time, nacks []rtcp.NackPair) []rtcp.NackPair {
	for len(b) >= 8 {
		if b[0]>>6 != 2 {
			return nacks
		}
		n := (int(binary.BigEndian.Uint16(b[2:])) + 1) * 4
		if n > len(b) {
			return nacks // truncated
		}
		pkt := b[:n]
		b = b[n:]
		if n < 8 {
			continue // a bare header: shorter than any packet read here, but the next may be (FuzzRTCPFeedback)
		}
		count := int(pkt[0] & 0x1f)
		switch pkt[1] {
		case rtcpRR:
			d.onReportBlocks(pkt[8:], count, now)
		case rtcpSR:
			if len(pkt) >= 28 {
				d.onReportBlocks(pkt[28:], count, now)
			}
		case rtcpRTPFB:
			if len(pkt) < 12 {
				continue // no media SSRC: not feedback
			}
			switch count {
			case fmtNACK:
				nacks = nacks[:0]
				for p := pkt[12:]; len(p) >= 4; p = p[4:] {
					nacks = append(nacks, rtcp.NackPair{PacketID: binary.BigEndian.Uint16(p),
						LostPackets: rtcp.PacketBitmap(binary.BigEndian.Uint16(p[2:]))})
				}
				if len(nacks) > 0 {
					d.sub.markProgress(now) // it read the packets around the gap
					d.nack(nacks)
				}
			case fmtTWCC:
				d.sub.markProgress(now)
				d.sub.bwe.OnFeedback(pkt, now)
			}
		case rtcpPSFB:
			switch count {
			case fmtPLI, fmtFIR:
				d.keyframe(now)
			case fmtREMB:
				if bps, ok := parseREMB(pkt); ok {
					d.sub.bwe.OnREMB(bps, now)
				}
			}
		}
	}
	return nacks
}

// onReportBlocks reads the report blocks about d's SSRC: loss, jitter, and
// the round trip from the sender report they answer.
func (d *downTrack) onReportBlocks(blocks []byte, count int, now time.Time) {
	bd := d.bound.Load()
	if bd == nil {
		return
	}
	for ; count > 0 && len(blocks) >= 24; count, blocks = count-1, blocks[24:] {
		if binary.BigEndian.Uint32(blocks) != bd.ssrc {
			continue
		}
		st := &d.rx
		st.fractionLost.Store(uint32(blocks[4]))
		lost := int32(uint32(blocks[5])<<16|uint32(blocks[6])<<8|uint32(blocks[7])) << 8 >> 8 // 24-bit signed
		st.totalLost.Store(lost)
		st.jitter.Store(binary.BigEndian.Uint32(blocks[12:]))
		st.reports.Add(1)
		if hi := binary.BigEndian.Uint32(blocks[8:]); st.highest.Swap(hi) != hi {
			d.sub.markProgress(now)
		}
		lsr, dlsr := binary.BigEndian.Uint32(blocks[16:]), binary.BigEndian.Uint32(blocks[20:])
		var rtt time.Duration
		if lsr != 0 {
			mid := uint32(toNTP(now) >> 16)
			if units := mid - lsr - dlsr; units < 1<<31 {
				rtt = max(time.Duration(uint64(units)*uint64(time.Second)>>16), time.Microsecond)
				st.rtt.Store(int64(rtt))
				d.sub.bwe.SetRTT(rtt)
			}
		}
		d.observeReport(blocks[4], binary.BigEndian.Uint32(blocks[12:]), rtt)
		d.sub.bwe.OnReceiverLoss(float64(blocks[4])/256, now)
	}
}

// parseREMB reads a receiver estimated maximum bitrate message
// (draft-alvestrand-rmcat-remb-03).
func parseREMB(pkt []byte) (float64, bool) {
	if len(pkt) < 20 || string(pkt[12:16]) != "REMB" {
		return 0, false
	}
	exp := pkt[17] >> 2
	mantissa := uint64(pkt[17]&3)<<16 | uint64(pkt[18])<<8 | uint64(pkt[19])
	return float64(mantissa << exp), true
}
