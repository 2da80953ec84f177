package client

import (
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Hooks for load testing (pkg/loadtest): packet observers that cost no
// per-packet records, NACK counts, a cheaper reader for light receivers and
// media files whose samples many sources share.

// PacketSentFunc observes a packet a publication is about to write: kind is
// "audio" or "video" ("video:q", "video:h" or "video:f" for a simulcast
// layer), sentAt is taken just before the write. It runs on the
// track's pump goroutine: it must be quick and must not keep pkt.
type PacketSentFunc func(kind string, pkt *rtp.Packet, sentAt time.Time)

// PacketReceivedFunc observes a packet a remote track's reader got, after the
// track's counters are updated: receivedAt is when the reader got it,
// arrivedAt when it reached the connection's socket (the kernel's receive
// timestamp, with Options.StampArrivals; zero where unknown: not asked for,
// not Linux, ICE-TCP, or too long ago). It runs
// on the reader goroutine: it must be quick and must not keep pkt (with
// Options.LightReceiver its buffers are reused).
type PacketReceivedFunc func(pkt *rtp.Packet, receivedAt, arrivedAt time.Time)

// NACKs is how many packets the track of a kind was asked to retransmit
// (the sum of the RTCP generic NACKs' packet lists it received).
func (p *Publication) NACKs(kind string) int64 {
	if t := p.track(kind); t != nil {
		return t.nacks.Load()
	}
	return 0
}

// readLight is read for light receivers: the same counters with one reused
// buffer and packet instead of pion's ReadRTP, which allocates both per packet.
func (t *RemoteTrack) readLight(c *Client) {
	defer close(t.done)
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		if !c.waitReading() {
			return
		}
		n, _, err := t.track.Read(buf)
		if err != nil {
			c.log.Debug("remote track ended", "stream", t.streamID, "kind", t.kind, "err", err)
			return
		}
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		now := time.Now()
		t.onPacket(pkt.SequenceNumber, pkt.Timestamp, pkt.Marker, pkt.Payload, now)
		if t.observe != nil {
			t.observe(&pkt, now, t.arrivedAt(&pkt, now))
		}
	}
}

// reportInterval is how often a light receiver sends receiver reports, as
// pion's report interceptor does.
const reportInterval = time.Second

// lightReports sends a light receiver's RTCP receiver reports until stop is
// closed: every reportInterval one RR with a report block per remote track of
// pc (highest sequence number, losses), from the counters its readers keep.
// It stands in for pion's receiver-report interceptor, which locks and
// updates its statistics on every packet (about an eighth of a load-testing
// receiver's CPU), so that the server still gets a report per track each
// second, as from a browser.
func (s *subscriber) lightReports(pc *webrtc.PeerConnection, stop <-chan struct{}) {
	tick := time.NewTicker(reportInterval)
	defer tick.Stop()
	type last struct{ maxSeq, packets int64 }
	prev := map[*RemoteTrack]last{}
	rr := &rtcp.ReceiverReport{SSRC: rand.Uint32()}
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		rr.Reports = rr.Reports[:0]
		for _, t := range s.c.RemoteTracks() {
			if t.pc != pc {
				continue
			}
			t.mu.Lock()
			have, maxSeq, packets, gaps := t.haveSeq, t.maxSeq, t.packets, t.gaps
			t.mu.Unlock()
			if !have {
				continue
			}
			p := prev[t]
			prev[t] = last{maxSeq, packets}
			rr.Reports = append(rr.Reports, rtcp.ReceptionReport{
				SSRC:               uint32(t.track.SSRC()),
				FractionLost:       fractionLost(maxSeq-p.maxSeq, packets-p.packets, p.packets == 0),
				TotalLost:          uint32(min(max(gaps, 0), 0x7fffff)),
				LastSequenceNumber: uint32(maxSeq),
			})
			if len(rr.Reports) == 31 { // the most an RR carries
				break
			}
		}
		if len(rr.Reports) == 0 {
			continue
		}
		if err := pc.WriteRTCP([]rtcp.Packet{rr}); err != nil {
			s.c.log.Debug("receiver report not sent", "err", err)
		}
	}
}

// fractionLost is RFC 3550's fraction lost over an interval, in 1/256.
func fractionLost(expected, received int64, first bool) uint8 {
	if first || expected <= 0 || received >= expected {
		return 0
	}
	return uint8(min((expected-received)*256/expected, 255))
}

// Media is a media file read and parsed once (IVF or Ogg Opus), from which any
// number of sources can be made: they share the samples, each has its own
// position, so many publishers of one file hold one copy of it.
type Media struct {
	src *memSource
}

// LoadIVF reads an IVF file (VP8, VP9 or AV1) for NewSource.
func LoadIVF(path string) (*Media, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load ivf: %w", err)
	}
	src, err := parseIVF(data, true)
	if err != nil {
		return nil, fmt.Errorf("load ivf %s: %w", path, err)
	}
	return &Media{src: src}, nil
}

// LoadOpus reads an Ogg Opus file for NewSource.
func LoadOpus(path string) (*Media, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load opus: %w", err)
	}
	src, err := parseOggOpus(data, true)
	if err != nil {
		return nil, fmt.Errorf("load opus %s: %w", path, err)
	}
	return &Media{src: src}, nil
}

// Samples is how many samples (frames or audio packets) the file has.
func (m *Media) Samples() int { return len(m.src.samples) }

// NewSource returns a source that plays the file from its start (forever with
// loop), sharing its samples with every other source of m.
func (m *Media) NewSource(loop bool) KeyframeSource {
	return &memSource{codec: m.src.codec, samples: m.src.samples, loop: loop}
}

// LayerNACKs is NACKs for one simulcast layer (q, h or f).
func (p *Publication) LayerNACKs(rid string) int64 {
	if t := p.layer(rid); t != nil {
		return t.nacks.Load()
	}
	return 0
}
