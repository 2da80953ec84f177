package sfu

import (
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Sender reports towards subscribers.
//
// A receiver maps each track's RTP timestamps to wall-clock time with the
// sender reports it gets, and lines audio and video up by that mapping (lip
// sync). The SFU reports the publisher's own mapping, taken from the
// publisher's sender reports, moved to the SFU's clock at their arrival and
// to the subscriber's timestamps by the downTrack's offset (rewrite.go): the
// audio and video of one publisher keep the offsets their sender measured at
// capture, whatever each spent in its encoder. Until the publisher has sent
// a report, the mapping is the last forwarded packet's timestamp at the time
// it was written (as pion's sender-report interceptor does). The
// subscriber's writer sends the reports, about once a second per track, in
// the same flush as the media: no goroutine, timer or lock per subscriber,
// and on the direct send path (direct.go) no trip through pion's SRTCP
// session and ICE conn either.

// senderReportInterval is how often each track to a subscriber gets a report.
const senderReportInterval = time.Second

// clockAnchor ties an RTP timestamp to a local time.
type clockAnchor struct {
	rtp uint32
	at  time.Time
}

// rtpAt extrapolates the anchor to t.
func (a clockAnchor) rtpAt(t time.Time, clockRate uint32) uint32 {
	return a.rtp + uint32(int64(t.Sub(a.at).Seconds()*float64(clockRate)))
}

// srState is a downTrack's sender-report accounting, touched only by the
// subscriber's writer.
type srState struct {
	packets, octets uint32
	last            clockAnchor // the newest forwarded timestamp, when it was written
	lastSeq         uint16
	next            time.Time // when the next report is due
}

// sent accounts for a packet with the subscriber's sequence number seq and
// timestamp ts and size payload bytes, written at now, and reports whether a
// sender report is due.
func (s *srState) sent(seq uint16, ts uint32, size int, now time.Time) bool {
	diff := seq - s.lastSeq
	if s.packets == 0 || (diff > 0 && diff < 1<<15) { // not a retransmission
		s.lastSeq = seq
		if s.packets == 0 || ts != s.last.rtp {
			s.last = clockAnchor{rtp: ts, at: now}
		}
	}
	s.packets++
	s.octets += uint32(size)
	return !now.Before(s.next)
}

// senderReport builds the report for d at now, in the subscriber's
// timestamps: the publisher's clock moved by the track's timestamp offset.
func (d *downTrack) senderReport(ssrc uint32, now time.Time) *rtcp.SenderReport {
	clock := d.fwd.codec.ClockRate
	anchor := d.sr.last
	src := d.rw.src
	if src == nil {
		src = d.fwd
	}
	if pub := src.pubClock.Load(); pub != nil {
		anchor = *pub
		anchor.rtp += d.rw.tsOff
	}
	return &rtcp.SenderReport{SSRC: ssrc, NTPTime: toNTP(now), RTPTime: anchor.rtpAt(now, clock),
		PacketCount: d.sr.packets, OctetCount: d.sr.octets}
}

// sendSenderReport writes d's report on the subscriber's path out; it goes
// out with the writer's flush. On the direct path the writer encrypts it, as
// the media; otherwise pion's SRTCP session does.
func (d *downTrack) sendSenderReport(ssrc uint32, now time.Time, out *sendPath, sc *sendScratch) {
	d.sr.next = now.Add(senderReportInterval)
	sr := d.senderReport(ssrc, now)
	if !out.viaPion {
		raw, err := sr.Marshal()
		if err == nil {
			err = out.writeRTCP(raw, sc)
		}
		if err != nil {
			d.sub.log.Debug("sender report", "track", d.fwd.id, "err", err)
		}
		return
	}
	var t *webrtc.DTLSTransport
	if s := d.sender; s != nil {
		t = s.Transport()
	}
	if t == nil {
		return
	}
	if _, err := t.WriteRTCP(out.senderReportPackets(sr)); err != nil {
		d.sub.log.Debug("sender report", "track", d.fwd.id, "err", err)
	}
}

// ntpTime converts a 64-bit NTP timestamp to time.
func ntpTime(ntp uint64) time.Time {
	const ntpToUnix = 2208988800
	secs := int64(ntp>>32) - ntpToUnix
	frac := (ntp & 0xffffffff) * 1e9 >> 32
	return time.Unix(secs, int64(frac))
}

// toNTP converts a time to a 64-bit NTP timestamp.
func toNTP(t time.Time) uint64 {
	const ntpToUnix = 2208988800
	secs := uint64(t.Unix() + ntpToUnix)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return secs<<32 | frac
}
