package recorder

import (
	"container/heap"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// simTrack is one track of a simulated publisher.
type simTrack struct {
	src    client.Source
	video  bool
	clock  int64
	delay  time.Duration // network delay
	pk     rtp.Packetizer
	ssrc   uint32
	ts0    uint32        // RTP timestamp at base
	base   time.Duration // room time the packetizer's timestamps count from
	sent   int64         // ticks the packetizer has advanced since base
	next   time.Duration // room time of the next sample's capture
	seq0   uint16
	seqSet bool
	tsSet  bool
	muted  bool
	frames int // frames sent
}

// simEvent is a packet or a sender report arriving at the recorder.
type simEvent struct {
	at    time.Duration // room time of arrival
	order int
	track int
	pkt   *rtp.Packet
	sr    bool
	ssrc  uint32
	ntp   time.Time
	rtpTS uint32
}

type eventHeap []*simEvent

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].order < h[j].order
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(*simEvent)) }
func (h *eventHeap) Pop() any {
	o := *h
	x := o[len(o)-1]
	*h = o[:len(o)-1]
	return x
}

// window is a span of room time.
type window struct{ from, to time.Duration }

// simPub plays sources as a WebRTC publisher would send them, on a synthetic
// clock: RTP timestamps from capture times, arrivals after a network delay,
// sender reports on the sender's own (offset) clock.
type simPub struct {
	t            fataler
	w            *StreamWriter
	sess         time.Time // room session start
	startAt      time.Duration
	senderOffset time.Duration
	srEvery      time.Duration // 0: no sender reports
	srFrom       time.Duration // first sender report (room time)
	tracks       []*simTrack
	rng          *rand.Rand
	jitter       time.Duration
	mutes        []window
	// lose decides for a packet whether it arrives and when again (NACK).
	lose func(p *rtp.Packet) (lost bool, resend time.Duration)
	// ssrcChange makes every track switch SSRC (an encoder restart) at this room time.
	ssrcChange time.Duration
	padding    int  // padding-only packets after each video frame
	dropPad    bool // generate padding but do not deliver it (what the SFU does)
	keyReq     atomic.Bool
	lockstep   bool // wait for the writer after every step
	events     eventHeap
	order      int
	nextSR     time.Duration
	onSample   func(track int, at time.Duration) // before each sample is packetized
	keyReqs    []time.Duration                   // room times at which keyframe requests reached the sender
	now        time.Duration                     // the current step
	// switchAt swaps a track's source at a room time.
	switches []sourceSwitch
}

type sourceSwitch struct {
	at    time.Duration
	track int
	src   client.Source
	done  bool
}

func newSimPub(t fataler, sess time.Time, startAt time.Duration, seed uint64) *simPub {
	return &simPub{t: t, sess: sess, startAt: startAt, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		senderOffset: -3*time.Second - 712*time.Millisecond, srEvery: time.Second, srFrom: startAt}
}

// addTrack adds a source with a network delay.
func (p *simPub) addTrack(src client.Source, delay time.Duration) *simTrack {
	video := strings.HasPrefix(src.Codec().MimeType, "video/")
	tr := &simTrack{src: src, video: video, delay: delay, next: p.startAt, clock: int64(src.Codec().ClockRate)}
	p.tracks = append(p.tracks, tr)
	return tr
}

func (p *simPub) newPacketizer(tr *simTrack, at time.Duration) {
	var pay rtp.Payloader
	switch tr.src.Codec().MimeType {
	case "video/VP8":
		pay = &codecs.VP8Payloader{EnablePictureID: true}
	case "video/VP9":
		pay = &codecs.VP9Payloader{}
	case "video/H264":
		pay = &codecs.H264Payloader{}
	case "video/AV1":
		pay = &codecs.AV1Payloader{}
	case "audio/PCMU", "audio/PCMA":
		pay = &codecs.G711Payloader{}
	default:
		pay = &codecs.OpusPayloader{}
	}
	seq := uint16(p.rng.Uint32())
	if tr.seqSet {
		seq, tr.seqSet = tr.seq0, false
	}
	ts := p.rng.Uint32()
	if tr.tsSet {
		ts, tr.tsSet = tr.ts0, false
	}
	tr.ssrc = p.rng.Uint32()
	tr.ts0, tr.base, tr.sent = ts, at, 0
	tr.pk = rtp.NewPacketizerWithOptions(1200, pay, rtp.NewFixedSequencer(seq), uint32(tr.clock),
		rtp.WithSSRC(tr.ssrc), rtp.WithPayloadType(96), rtp.WithTimestamp(ts))
}

// rtpAt is track tr's RTP timestamp for room time at.
func (tr *simTrack) rtpAt(at time.Duration) uint32 {
	return tr.ts0 + uint32(ticks(at-tr.base, tr.clock))
}

func ticks(d time.Duration, clock int64) int64 {
	return (int64(d)*clock + int64(time.Second)/2) / int64(time.Second)
}

func (p *simPub) push(e *simEvent) {
	e.order = p.order
	p.order++
	heap.Push(&p.events, e)
}

func (p *simPub) muted(at time.Duration) bool {
	for _, m := range p.mutes {
		if at >= m.from && at < m.to {
			return true
		}
	}
	return false
}

// run sends everything captured before until and delivers what arrives by then.
func (p *simPub) run(until time.Duration) {
	const step = 5 * time.Millisecond
	if p.nextSR == 0 {
		p.nextSR = p.srFrom
	}
	for now := p.startAt; now < until; now += step {
		p.now = now
		if p.ssrcChange > 0 && now >= p.ssrcChange {
			p.ssrcChange = 0
			for _, tr := range p.tracks {
				p.newPacketizer(tr, now)
				if ks, ok := tr.src.(client.KeyframeSource); ok {
					ks.RequestKeyframe()
				}
			}
		}
		for i := range p.switches {
			sw := &p.switches[i]
			if !sw.done && now >= sw.at {
				sw.done = true
				p.tracks[sw.track].src = sw.src
			}
		}
		if p.keyReq.Swap(false) {
			p.keyReqs = append(p.keyReqs, now)
			for _, tr := range p.tracks {
				if ks, ok := tr.src.(client.KeyframeSource); ok && tr.video {
					ks.RequestKeyframe()
				}
			}
		}
		if p.srEvery > 0 && now >= p.nextSR {
			p.nextSR += p.srEvery
			for i, tr := range p.tracks {
				if tr.pk == nil {
					p.newPacketizer(tr, now)
				}
				p.push(&simEvent{at: now + tr.delay, track: i, sr: true, ssrc: tr.ssrc,
					ntp: p.sess.Add(now + p.senderOffset), rtpTS: tr.rtpAt(now)})
			}
		}
		for i, tr := range p.tracks {
			for tr.next <= now {
				p.sample(i, tr)
			}
		}
		p.deliver(now)
	}
	p.deliver(1 << 62)
}

func (p *simPub) sample(i int, tr *simTrack) {
	at := tr.next
	if tr.pk == nil {
		p.newPacketizer(tr, at)
	}
	if p.onSample != nil {
		p.onSample(i, at)
	}
	data, dur, err := tr.src.Next()
	if err != nil {
		p.t.Fatalf("source: %v", err)
	}
	tr.next += dur
	if p.muted(at) {
		tr.muted = true
		return
	}
	if tr.muted {
		tr.muted = false
		if ks, ok := tr.src.(client.KeyframeSource); ok && tr.video {
			// An encoder resuming sends a keyframe; this one was captured already.
			ks.RequestKeyframe()
			data, _, _ = tr.src.Next()
		}
	}
	start := ticks(at-tr.base, tr.clock)
	if start > tr.sent {
		tr.pk.SkipSamples(uint32(start - tr.sent))
		tr.sent = start
	}
	n := ticks(at+dur-tr.base, tr.clock) - tr.sent
	pkts := tr.pk.Packetize(data, uint32(n))
	tr.sent += n
	tr.frames++
	// Video leaves the sender at capture (encoding takes no simulated time);
	// an audio packet once its last sample is captured.
	sent := at
	if !tr.video {
		sent += dur
	}
	for _, pk := range pkts {
		arr := sent + tr.delay
		if p.jitter > 0 {
			arr += time.Duration(p.rng.Int64N(int64(p.jitter)))
		}
		if p.lose != nil {
			lost, resend := p.lose(pk)
			if lost {
				if resend > 0 {
					p.push(&simEvent{at: arr + resend, track: i, pkt: pk})
				}
				continue
			}
		}
		p.push(&simEvent{at: arr, track: i, pkt: pk})
	}
	if tr.video && p.padding > 0 {
		for _, pad := range tr.pk.GeneratePadding(uint32(p.padding)) {
			if !p.dropPad {
				p.push(&simEvent{at: at + tr.delay + time.Millisecond, track: i, pkt: pad})
			}
		}
	}
}

func (p *simPub) deliver(now time.Duration) {
	for p.events.Len() > 0 && p.events[0].at <= now {
		e := heap.Pop(&p.events).(*simEvent)
		if e.sr {
			p.w.SenderReport(e.track, e.ssrc, e.ntp, e.rtpTS, p.sess.Add(e.at))
		} else {
			p.w.WriteRTP(e.track, e.pkt, p.sess.Add(e.at))
		}
	}
	if p.lockstep {
		p.w.sync() // the writer's keyframe requests reach this sender at its next step
	}
}

// fataler is the part of testing.TB the simulator needs (a crash child has no T).
type fataler interface {
	Fatalf(format string, args ...any)
}

// lostPacket is a packet the simulated network lost for good.
type lostPacket struct {
	track int
	at    time.Duration // capture time of its frame (room time)
	step  time.Duration // the simulator's step that sent it: requests before or at it came too early to change it
}

// lostPacket identifies pk's track and the capture time of its frame.
func (p *simPub) lostPacket(pk *rtp.Packet) lostPacket {
	for i, tr := range p.tracks {
		if tr.ssrc == pk.SSRC {
			ticks := int64(int32(pk.Timestamp - tr.ts0))
			return lostPacket{track: i, at: tr.base + time.Duration(ticks*int64(time.Second)/tr.clock), step: p.now}
		}
	}
	p.t.Fatalf("lost packet of unknown SSRC %d", pk.SSRC)
	return lostPacket{}
}
