package live

import (
	"container/heap"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/recorder"
	"github.com/parley/parley/pkg/sfu"
	"github.com/pion/rtp"
)

// Muxer timings.
const (
	// jitterDelay is how long a missing packet is waited for (a
	// retransmission) before its frame is given up.
	jitterDelay = 150 * time.Millisecond
	// muxDelay is how far (in media time) frames wait for the other
	// track's before they are written, so blocks go out in time order.
	muxDelay = 150 * time.Millisecond
	// maxCluster bounds a cluster without a keyframe (a block's timecode
	// is 16 bits of milliseconds from its cluster's).
	maxCluster = 5000
	// audioCluster is a cluster's length in a stream without video: each
	// is a place to join.
	audioCluster = 1000
	// inQueue bounds the packets waiting for the muxer's goroutine.
	inQueue = 2048
)

// chunk is what the muxer hands on: bytes of the live stream. A key chunk
// starts a cluster that starts with a video keyframe (or, without video,
// any cluster): a viewer may start there.
type chunk struct {
	data []byte
	key  bool
	ms   int64 // the media time of its first block
}

// output receives a muxer's stream: the header, then chunks. Called on the
// muxer's goroutine.
type output interface {
	header(init []byte, mime string)
	chunk(c chunk)
}

// muxer packs one published stream (VP8, VP9 or AV1 video and Opus audio)
// into a live WebM stream, without transcoding: it implements
// sfu.StreamRecorder, fed by an sfu.Tap, and does its work on a goroutine
// of its own: the recorder's jitter buffer and depacketizer per track, the
// publisher's clock for lip sync, an interleaver, and clusters that start
// at video keyframes.
type muxer struct {
	log    *slog.Logger
	out    output
	tracks []*muxTrack
	video  int // index of the video track, -1 without
	// requestKeyframe asks the publisher for a keyframe (a tap's).
	requestKeyframe func()

	in       chan muxIn
	quit     chan struct{}
	done     chan struct{}
	closed   sync.Once
	dropped  atomic.Uint64
	inputMu  sync.RWMutex
	inputEnd bool

	// Owned by the goroutine.
	start      time.Time
	headerDone bool
	held       muxHeap
	order      uint64
	maxSeen    int64
	buf        []byte
	bufKey     bool
	bufMs      int64
	clusterTC  int64
	clusterOn  bool
	lastKeyReq time.Time
}

type muxIn struct {
	track   int
	pkt     *rtp.Packet // nil: a sender report
	arrival time.Time
	srSSRC  uint32
	srRTP   uint32
	srAt    time.Time
}

// clockMap is a sender report's mapping: an RTP time and the local time it
// stands for.
type clockMap struct {
	rtp uint32
	at  time.Time
}

type muxTrack struct {
	i       int
	number  uint64
	mime    string
	clock   float64
	video   bool
	frames  *recorder.TrackFrames
	needKey bool
	lastPic int
	w, h    int
	private []byte
	// Time line: the publisher's clock mapping of the SSRC whose packets
	// come now (a simulcast track's layers each have theirs: srs, by SSRC),
	// else the first frame's arrival.
	srs    map[uint32]clockMap
	srOK   bool
	srRTP  uint32
	srAt   time.Time
	anchOK bool
	anchTS uint32
	anchAt time.Time
	lastMs int64
	hasMs  bool
	// interval is the last frame interval (video), the duration written.
	interval int64
}

// mimeFor returns the Media Source Extensions type of a live WebM stream of
// tracks, or an error naming what it cannot carry.
func mimeFor(tracks []sfu.RecordTrack) (string, error) {
	var codecs []string
	for _, t := range tracks {
		switch strings.ToLower(t.MimeType) {
		case "video/vp8":
			codecs = append(codecs, "vp8")
		case "video/vp9":
			codecs = append(codecs, "vp9")
		case "video/av1":
			codecs = append(codecs, "av01.0.08M.08")
		case "audio/opus":
			codecs = append(codecs, "opus")
		default:
			return "", fmt.Errorf("the presenter sends %s, which this path does not carry (VP8, VP9, AV1 and Opus)", t.MimeType)
		}
	}
	if len(codecs) == 0 {
		return "", fmt.Errorf("the stream has no tracks")
	}
	return `video/webm; codecs="` + strings.Join(codecs, ",") + `"`, nil
}

// newMuxer starts the muxer of a stream of tracks (PublishedStream.Tracks).
func newMuxer(tracks []sfu.RecordTrack, out output, keyframe func(), log *slog.Logger) (*muxer, error) {
	if _, err := mimeFor(tracks); err != nil {
		return nil, err
	}
	m := &muxer{log: log, out: out, video: -1, requestKeyframe: keyframe,
		in: make(chan muxIn, inQueue), quit: make(chan struct{}), done: make(chan struct{})}
	for i, t := range tracks {
		f, err := recorder.NewTrackFrames(t.MimeType, jitterDelay)
		if err != nil {
			return nil, err
		}
		mt := &muxTrack{i: i, number: uint64(i + 1), mime: t.MimeType, clock: float64(t.ClockRate), video: f.Video(),
			frames: f, needKey: f.Video(), lastPic: -1, srs: map[uint32]clockMap{}}
		if mt.clock <= 0 {
			mt.clock = 90000
		}
		if mt.video {
			if m.video >= 0 {
				return nil, fmt.Errorf("the stream has two video tracks")
			}
			m.video = i
		}
		m.tracks = append(m.tracks, mt)
	}
	go m.run()
	return m, nil
}

// WriteRTP implements sfu.StreamRecorder: the packet is copied and queued.
func (m *muxer) WriteRTP(track int, pkt *rtp.Packet, arrival time.Time) {
	if track < 0 || track >= len(m.tracks) {
		return
	}
	cp := &rtp.Packet{Header: pkt.Header, Payload: append([]byte(nil), pkt.Payload...)}
	cp.Header.Extensions = nil
	m.send(muxIn{track: track, pkt: cp, arrival: arrival})
}

// SenderReport implements sfu.StreamRecorder: the publisher's clock
// mapping (here: an RTP time and the local time it stands for).
func (m *muxer) SenderReport(track int, ssrc uint32, ntp time.Time, rtpTS uint32, _ time.Time) {
	if track < 0 || track >= len(m.tracks) {
		return
	}
	m.send(muxIn{track: track, srSSRC: ssrc, srRTP: rtpTS, srAt: ntp})
}

func (m *muxer) send(in muxIn) {
	m.inputMu.RLock()
	defer m.inputMu.RUnlock()
	if m.inputEnd {
		return
	}
	select {
	case m.in <- in:
	default:
		m.dropped.Add(1)
	}
}

// Close implements sfu.StreamRecorder: the goroutine ends.
func (m *muxer) Close() error {
	m.closed.Do(func() {
		m.inputMu.Lock()
		m.inputEnd = true
		m.inputMu.Unlock()
		close(m.quit)
	})
	<-m.done
	return nil
}

func (m *muxer) run() {
	defer close(m.done)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case in := <-m.in:
			m.handle(in)
		case now := <-tick.C:
			for _, t := range m.tracks {
				t.frames.Flush(now, func(f *recorder.Frame) { m.onFrame(t, f) })
			}
			m.mux(now)
		case <-m.quit:
			return
		}
	}
}

func (m *muxer) handle(in muxIn) {
	t := m.tracks[in.track]
	emit := func(f *recorder.Frame) { m.onFrame(t, f) }
	cur, have := t.frames.SSRC()
	if in.pkt == nil {
		if _, ok := t.srs[in.srSSRC]; !ok && len(t.srs) >= 4 {
			clear(t.srs) // SSRCs gone by
		}
		t.srs[in.srSSRC] = clockMap{rtp: in.srRTP, at: in.srAt}
		if !have || in.srSSRC == cur {
			t.srOK, t.srRTP, t.srAt = true, in.srRTP, in.srAt
		}
		return
	}
	if m.start.IsZero() {
		m.start = in.arrival
	}
	if (!have || in.pkt.SSRC != cur) && len(in.pkt.Payload) > 0 {
		// Another SSRC (a simulcast track's layer switch, or the first):
		// the frames of the old one come out under its mapping, then the
		// new one's applies.
		t.frames.Restart(emit)
		sr, ok := t.srs[in.pkt.SSRC]
		t.srOK, t.srRTP, t.srAt = ok, sr.rtp, sr.at
		t.anchOK, t.lastPic = false, -1
		if t.video {
			t.needKey = true
		}
	}
	t.frames.Push(in.pkt, in.arrival, emit)
	m.mux(in.arrival)
}

// maxNudge is how far (ms) a keyframe that falls at or before the frame
// written last is moved after it instead of being dropped.
const maxNudge = 200

// mediaMs maps a frame's RTP time to the stream's time line (ms since the
// muxer's first packet): through the publisher's clock mapping when there is
// one, so audio and video line up as captured, else from the track's first
// frame's arrival.
func (m *muxer) mediaMs(t *muxTrack, ts uint32, arrival time.Time) int64 {
	var at time.Time
	if t.srOK {
		at = t.srAt.Add(time.Duration(float64(int32(ts-t.srRTP)) * 1e9 / t.clock))
	} else {
		if !t.anchOK {
			t.anchOK, t.anchTS, t.anchAt = true, ts, arrival
		}
		at = t.anchAt.Add(time.Duration(float64(int32(ts-t.anchTS)) * 1e9 / t.clock))
	}
	return at.Sub(m.start).Milliseconds()
}

// keyframe asks for a keyframe at most twice a second.
func (m *muxer) keyframe(now time.Time) {
	if m.requestKeyframe != nil && now.Sub(m.lastKeyReq) >= 500*time.Millisecond {
		m.lastKeyReq = now
		m.requestKeyframe()
	}
}

// onFrame takes a complete frame: video starts at a keyframe and, after a
// loss that breaks the picture chain, waits for the next one.
func (m *muxer) onFrame(t *muxTrack, f *recorder.Frame) {
	if t.video {
		switch {
		case t.needKey:
			if !f.Key {
				m.keyframe(f.Arrival)
				return
			}
			t.needKey = false
		case f.Gap && !f.Key && !(t.lastPic >= 0 && f.PictureID >= 0 && (f.PictureID-t.lastPic)&0x7f == 1):
			t.needKey = true
			m.keyframe(f.Arrival)
			return
		}
		t.lastPic = f.PictureID
		if f.Key {
			if f.Width > 0 && f.Height > 0 {
				t.w, t.h = f.Width, f.Height
			}
			if f.CodecPrivate != nil && !m.headerDone {
				t.private = append([]byte(nil), f.CodecPrivate...)
			}
		}
	} else if m.video >= 0 && !m.headerDone && m.tracks[m.video].needKey {
		return // nothing before the video can start
	}
	ms := max(m.mediaMs(t, f.RTPTime, f.Arrival), 0)
	if t.video && f.Key && t.hasMs && ms <= t.lastMs && t.lastMs-ms <= maxNudge {
		// The keyframe a layer switch starts at may stand for the same
		// moment as the last frame of the layer before: it goes just after.
		ms = t.lastMs + 1
	}
	if t.hasMs && ms <= t.lastMs {
		return // a correction of the time line moved it to or before what is out
	}
	if t.video && t.hasMs && ms > t.lastMs && ms-t.lastMs <= 200 {
		t.interval = ms - t.lastMs
	}
	t.lastMs, t.hasMs = ms, true
	heap.Push(&m.held, &heldFrame{track: t.i, ms: ms, key: f.Key, video: t.video, order: m.order,
		data: append([]byte(nil), f.Data...)})
	m.order++
	m.maxSeen = max(m.maxSeen, ms)
}

// mux writes the held frames older than muxDelay behind the newest, then
// hands the bytes on.
func (m *muxer) mux(now time.Time) {
	for m.held.Len() > 0 {
		top := m.held[0]
		if top.ms > m.maxSeen-muxDelay.Milliseconds() && m.held.Len() < 512 {
			break
		}
		heap.Pop(&m.held)
		m.write(top)
	}
	m.flush()
}

func (m *muxer) writeHeader() bool {
	tracks := make([]recorder.LiveTrack, 0, len(m.tracks))
	rt := make([]sfu.RecordTrack, 0, len(m.tracks))
	for _, t := range m.tracks {
		tracks = append(tracks, recorder.LiveTrack{Number: t.number, MimeType: t.mime, Width: t.w, Height: t.h,
			CodecPrivate: t.private})
		rt = append(rt, sfu.RecordTrack{MimeType: t.mime})
	}
	mime, _ := mimeFor(rt)
	init, err := recorder.LiveHeader("webm", "parley live", tracks)
	if err != nil {
		m.log.Error("live header", "err", err)
		return false
	}
	m.headerDone = true
	m.out.header(init, mime)
	return true
}

func (m *muxer) write(f *heldFrame) {
	if !m.headerDone {
		if m.video >= 0 && !(f.video && f.key) {
			return
		}
		if !m.writeHeader() {
			return
		}
	}
	if m.clusterOn && f.ms < m.clusterTC {
		return // older than the cluster it would go in
	}
	if len(m.buf) == 0 {
		m.bufMs = f.ms
	}
	keyStart := (f.video && f.key) || (m.video < 0 && (!m.clusterOn || f.ms-m.clusterTC >= audioCluster))
	if !m.clusterOn || keyStart || f.ms-m.clusterTC >= maxCluster {
		if keyStart {
			m.flush() // a place to join starts a chunk of its own
			m.bufKey = true
			m.bufMs = f.ms
		}
		m.buf = recorder.AppendClusterStart(m.buf, f.ms)
		m.clusterOn, m.clusterTC = true, f.ms
	}
	var err error
	m.buf, err = recorder.AppendSimpleBlock(m.buf, m.tracks[f.track].number, int16(f.ms-m.clusterTC), f.key, f.data)
	if err != nil {
		m.log.Error("live block", "err", err)
	}
}

// flush hands on what was written since the last flush.
func (m *muxer) flush() {
	if len(m.buf) == 0 {
		return
	}
	m.out.chunk(chunk{data: m.buf, key: m.bufKey, ms: m.bufMs})
	m.buf, m.bufKey = nil, false
}

// heldFrame is a frame waiting in the interleaver.
type heldFrame struct {
	track int
	ms    int64
	key   bool
	video bool
	order uint64
	data  []byte
}

type muxHeap []*heldFrame

func (h muxHeap) Len() int { return len(h) }
func (h muxHeap) Less(i, j int) bool {
	if h[i].ms != h[j].ms {
		return h[i].ms < h[j].ms
	}
	return h[i].order < h[j].order
}
func (h muxHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *muxHeap) Push(x any)   { *h = append(*h, x.(*heldFrame)) }
func (h *muxHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return x
}
