package server_test

import (
	"math"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/pion/rtcp"
)

// receivedSR is a sender report as a subscriber got it.
type receivedSR struct {
	sr *rtcp.SenderReport
	at time.Time
}

// Every track a subscriber receives comes with sender reports, about one a
// second, carrying the SSRC it receives, what the SFU sent it, and an
// RTP-to-wall-clock mapping that agrees with the publisher's own clock
// (receivers line audio and video up by it). Publisher and subscriber share
// this process's clock, so the mapping is checked against the publisher's
// record of when it sent each timestamp.
func TestSenderReportsToSubscribers(t *testing.T) {
	srv := testServer(t, nil)
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "reports", "a")
	pub := publishCamera(t, a)
	b := dial(t, srv, client.Options{Username: "b"})
	join(t, b, "reports", "b")
	tracks, err := b.WaitRemoteTracks(ctxT(t, 10*time.Second), 2)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(4500 * time.Millisecond)
	got := map[string][]receivedSR{}
	for _, tr := range tracks {
		for _, r := range tr.SenderReports() {
			got[tr.Kind()] = append(got[tr.Kind()], receivedSR{sr: r.SenderReport, at: r.At})
		}
	}
	b.Close()

	for _, tr := range tracks {
		kind := tr.Kind()
		srs := got[kind]
		if len(srs) < 3 || len(srs) > 7 {
			t.Errorf("%s: %d sender reports in 4.5 s, want about one a second", kind, len(srs))
			continue
		}
		clock := float64(tr.Track().Codec().ClockRate)
		sent := pub.SentPackets(kind)
		var prev uint32
		for i, r := range srs {
			if r.sr.SSRC != uint32(tr.Track().SSRC()) {
				t.Errorf("%s: report for SSRC %d, the track is %d", kind, r.sr.SSRC, tr.Track().SSRC())
			}
			if r.sr.PacketCount == 0 || r.sr.PacketCount < prev || int64(r.sr.PacketCount) > tr.Packets() ||
				r.sr.OctetCount < r.sr.PacketCount {
				t.Errorf("%s: report %d counts %d packets, %d bytes (before: %d; received in all: %d)",
					kind, i, r.sr.PacketCount, r.sr.OctetCount, prev, tr.Packets())
			}
			prev = r.sr.PacketCount
			// The publisher's clock at the report's NTP time: its last packet
			// sent before then, extrapolated.
			ntp := ntpToTime(r.sr.NTPTime)
			// (The first may have waited in pion's buffer until this test read it.)
			if d := r.at.Sub(ntp); d < 0 || (i > 0 && d > 100*time.Millisecond) {
				t.Errorf("%s: report %d stamped %v before it was read", kind, i, d)
			}
			var ref *client.PacketRecord
			for j := range sent {
				if !sent[j].SentAt.After(ntp) {
					ref = &sent[j]
				}
			}
			if ref == nil {
				t.Errorf("%s: report %d is older than the publisher's first packet", kind, i)
				continue
			}
			want := float64(ref.Timestamp) + ntp.Sub(ref.SentAt).Seconds()*clock
			off := float64(int32(r.sr.RTPTime-uint32(int64(want)))) / clock
			if math.Abs(off) > 0.02 {
				t.Errorf("%s: report %d maps RTP %d to %v, %.1f ms off the publisher's clock",
					kind, i, r.sr.RTPTime, ntp.Format("15:04:05.000"), off*1000)
			}
		}
		t.Logf("%s: %d reports, last %d packets %d bytes", kind, len(srs), srs[len(srs)-1].sr.PacketCount, srs[len(srs)-1].sr.OctetCount)
	}
}

func ntpToTime(ntp uint64) time.Time {
	secs := int64(ntp>>32) - 2208988800
	frac := (ntp & 0xffffffff) * 1e9 >> 32
	return time.Unix(secs, int64(frac))
}
