package recorder

import (
	"container/heap"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	parleycodec "github.com/parley/parley/pkg/codec"

	"github.com/pion/rtp"
)

// maxPayload bounds one RTP payload the recorder accepts.
const maxPayload = 16 << 10

// keyframeRequestInterval throttles RequestKeyframe (input time: the latest arrival).
const keyframeRequestInterval = 500 * time.Millisecond

// maxKeyNudge is how far (ms) a video keyframe that falls before the frame
// written last is moved after it instead of being dropped (a simulcast
// layer switch: the recorder follows the best layer arriving).
const maxKeyNudge = 200

// maxHeldFrames bounds the frames waiting in the interleaver.
const maxHeldFrames = 4096

// StreamWriter records one published stream into one file. WriteRTP and
// SenderReport may be called from any goroutines (typically one per track);
// they copy what they keep and never block (unless Options.BlockWhenFull).
type StreamWriter struct {
	s         *Session
	info      StreamInfo
	opts      Options
	log       *slog.Logger
	start     time.Time
	entries   []TrackEntry
	container string
	ext       string

	mu     sync.RWMutex
	closed bool
	in     chan item
	quit   chan struct{}
	done   chan struct{}
	err    error // result of Close
	pool   sync.Pool

	packets, queueDrops, frames, keyReqs atomic.Uint64

	// file is the path of the stream's file, once made.
	file atomic.Pointer[string]

	// Owned by the goroutine.
	idx         int  // the stream's manifest entry, once the file exists
	ended       bool // the file could not be made or the session stopped: nothing more is written
	tracks      []*track
	mkv         *mkvWriter // nil until the first frame is ready
	held        frameHeap
	order       uint64
	maxSeen     int64
	seen        bool
	deltaOK     bool
	delta       time.Duration // server clock minus sender clock
	headerDone  bool
	annexB      bool
	firstMs     int64
	endMs       int64
	lastInput   time.Time
	idleDone    bool
	inputAt     time.Time // the latest arrival: the writer's clock for the keyframe request throttle
	keyReqAt    time.Time
	keyReqOK    bool
	writeErr    error
	lateFrames  uint64
	loggedDrops uint64
}

// item is one queued input: a packet or a sender report.
type item struct {
	track   int
	pkt     *jbPacket // nil for a sender report
	ssrc    uint32
	ntp     time.Time
	rtpTS   uint32
	arrival time.Time
	barrier chan struct{} // closed once everything before it is handled (tests)
}

type srInfo struct {
	ntp time.Time
	rtp uint32
}

// track is the per-track state (goroutine-owned).
type track struct {
	i     int
	c     codec
	clock float64
	video bool
	jb    *jitterBuffer
	asm   *assembler

	ssrc     uint32
	haveSSRC bool
	srs      map[uint32]srInfo
	sr       srInfo
	srOK     bool

	tsInit  bool
	lastTS  uint32
	extTS   int64
	anchOK  bool
	anchAt  time.Duration
	anchExt int64

	needKey bool
	// switched: the SSRC changed (a simulcast track's recording follows
	// the best layer arriving) and no frame of the new one is written yet.
	switched   bool
	started    bool
	lastPicID  int
	lastPts    int64
	havePts    bool
	lastKeyPts int64 // the latest keyframe's time (video)
	interval   int64
	w, h       int
	private    []byte
	channels   int
}

func newStreamWriter(s *Session, info StreamInfo, cs []codec, entries []TrackEntry, container, ext string) *StreamWriter {
	w := &StreamWriter{
		s: s, info: info, opts: s.opts, start: s.m.Start, entries: entries, container: container, ext: ext, idx: -1,
		log:     s.log.With("stream", info.StreamID),
		in:      make(chan item, s.opts.QueueSize),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		firstMs: -1,
	}
	w.pool.New = func() any { return &jbPacket{payload: make([]byte, 0, 1500)} }
	for i, c := range cs {
		t := &track{
			i: i, c: c, clock: float64(entries[i].ClockRate), video: c.video(),
			jb:  newJitterBuffer(512, s.opts.JitterDelay),
			asm: newAssembler(c, s.opts.MaxFrameSize),
			srs: make(map[uint32]srInfo), needKey: c.video(), lastPicID: -1,
			channels: int(entries[i].Channels),
		}
		w.tracks = append(w.tracks, t)
	}
	w.lastInput = time.Now()
	go w.run()
	return w
}

// WriteRTP queues one RTP packet of track (an index into StreamInfo.Tracks),
// received at arrival. The packet is copied: the caller may reuse it at once.
// A padding-only packet (empty payload) is kept as a sequence placeholder.
func (w *StreamWriter) WriteRTP(track int, pkt *rtp.Packet, arrival time.Time) {
	if pkt == nil || track < 0 || track >= len(w.tracks) || len(pkt.Payload) > maxPayload {
		return
	}
	p := w.pool.Get().(*jbPacket)
	p.ssrc, p.seq, p.ts, p.marker = pkt.SSRC, pkt.SequenceNumber, pkt.Timestamp, pkt.Marker
	p.padding = len(pkt.Payload) == 0
	p.payload = append(p.payload[:0], pkt.Payload...)
	p.arrival = arrival
	w.send(item{track: track, pkt: p})
}

// SenderReport gives the RTP/NTP mapping of an RTCP sender report for track
// (ntp is the report's NTP time as a time.Time, see NTPTime), received at arrival.
func (w *StreamWriter) SenderReport(track int, ssrc uint32, ntp time.Time, rtpTS uint32, arrival time.Time) {
	if track < 0 || track >= len(w.tracks) || ntp.IsZero() {
		return
	}
	w.send(item{track: track, ssrc: ssrc, ntp: ntp, rtpTS: rtpTS, arrival: arrival})
}

// NTPTime converts a 64-bit NTP timestamp (RTCP's format) to a time.Time.
func NTPTime(ntp uint64) time.Time {
	const ntpToUnix = 2208988800
	sec := int64(ntp>>32) - ntpToUnix
	frac := (ntp & 0xffffffff) * uint64(time.Second) >> 32
	return time.Unix(sec, int64(frac))
}

func (w *StreamWriter) send(it item) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.free(it.pkt)
		return
	}
	if w.opts.BlockWhenFull {
		w.in <- it
		return
	}
	select {
	case w.in <- it:
	default:
		w.queueDrops.Add(1)
		w.free(it.pkt)
	}
}

func (w *StreamWriter) free(p *jbPacket) {
	if p != nil && cap(p.payload) <= 4096 {
		w.pool.Put(p)
	}
}

// sync waits until the writer has handled everything queued before it
// (tests use it to make keyframe requests take effect deterministically).
func (w *StreamWriter) sync() {
	b := make(chan struct{})
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return
	}
	w.in <- item{barrier: b}
	w.mu.RUnlock()
	<-b
}

// Close finishes the stream's file (writing out what is held), updates the
// manifest, and stops the stream's goroutine. Later calls return the same result.
func (w *StreamWriter) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.quit)
	}
	w.mu.Unlock()
	<-w.done
	w.s.writerDone(w)
	return w.err
}

// File is the path of the stream's file: empty until its first frame is
// written (a stream whose media never arrived has no file).
func (w *StreamWriter) File() string {
	if p := w.file.Load(); p != nil {
		return *p
	}
	return ""
}

// StreamStats are counters of a StreamWriter.
type StreamStats struct {
	Packets          uint64 // packets handled
	QueueDrops       uint64 // packets dropped because the queue was full
	Frames           uint64 // frames written to the file
	KeyframeRequests uint64 // RequestKeyframe calls
}

// Stats returns the writer's counters.
func (w *StreamWriter) Stats() StreamStats {
	return StreamStats{
		Packets: w.packets.Load(), QueueDrops: w.queueDrops.Load(),
		Frames: w.frames.Load(), KeyframeRequests: w.keyReqs.Load(),
	}
}

func (w *StreamWriter) run() {
	defer close(w.done)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case it := <-w.in:
			w.handle(it)
		case now := <-tick.C:
			w.tick(now)
		case <-w.quit:
			for {
				select {
				case it := <-w.in:
					w.handle(it)
					continue
				default:
				}
				break
			}
			w.err = w.finalize()
			return
		}
	}
}

func (w *StreamWriter) handle(it item) {
	if it.barrier != nil {
		close(it.barrier)
		return
	}
	if w.ended {
		w.free(it.pkt)
		return
	}
	w.lastInput = time.Now()
	w.idleDone = false
	t := w.tracks[it.track]
	if it.pkt == nil {
		w.senderReport(t, it)
		return
	}
	p := it.pkt
	w.packets.Add(1)
	if !t.haveSSRC || p.ssrc != t.ssrc {
		if p.padding {
			w.free(p) // padding of another SSRC (RTX probing): not this stream's sequence
			return
		}
		w.switchSSRC(t, p.ssrc)
	}
	p.ext = t.jb.unwrap(p.seq)
	now := p.arrival // p may be released (and reused) inside push
	if now.After(w.inputAt) {
		w.inputAt = now
	}
	release := func(q *jbPacket, lost bool) {
		t.asm.push(q, lost, func(f *frameOut) { w.onFrame(t, f) })
		w.free(q)
	}
	if !t.jb.push(p, release) {
		w.free(p)
	}
	t.jb.pop(now, release, false)
	w.mux(false, false)
}

func (w *StreamWriter) senderReport(t *track, it item) {
	sr := srInfo{ntp: it.ntp, rtp: it.rtpTS}
	if _, ok := t.srs[it.ssrc]; !ok && len(t.srs) >= 4 {
		clear(t.srs)
	}
	t.srs[it.ssrc] = sr
	if t.haveSSRC && it.ssrc == t.ssrc {
		t.sr, t.srOK = sr, true
	}
	if !w.deltaOK {
		w.delta = it.arrival.Sub(it.ntp)
		w.deltaOK = true
	}
}

func (w *StreamWriter) switchSSRC(t *track, ssrc uint32) {
	if t.haveSSRC {
		w.log.Info("SSRC changed", "track", t.i, "from", t.ssrc, "to", ssrc)
		t.jb.drain(func(q *jbPacket, lost bool) {
			t.asm.push(q, lost, func(f *frameOut) { w.onFrame(t, f) })
			w.free(q)
		})
		t.jb.reset()
		t.asm = newAssembler(t.c, w.opts.MaxFrameSize)
		t.needKey = t.video
		t.switched = t.video && t.havePts
		t.lastPicID = -1
	}
	t.ssrc, t.haveSSRC = ssrc, true
	t.sr, t.srOK = t.srs[ssrc]
	t.tsInit, t.anchOK = false, false
}

// roomTime maps an RTP timestamp of track t to the room time line: through
// the track's latest sender report when there is one, else from the arrival
// of the SSRC's first frame plus the RTP clock since. length is the frame's
// duration for audio (0 for video): an audio packet leaves its sender once
// its last sample is captured, so its first sample, which the RTP timestamp
// stamps, was captured that much before the packet arrived.
func (w *StreamWriter) roomTime(t *track, ts uint32, arrival time.Time, length time.Duration) time.Duration {
	if !t.tsInit {
		t.tsInit, t.lastTS, t.extTS = true, ts, int64(ts)
	} else {
		t.extTS += int64(int32(ts - t.lastTS))
		t.lastTS = ts
	}
	if t.srOK && w.deltaOK {
		d := float64(int32(ts-t.sr.rtp)) * 1e9 / t.clock
		return t.sr.ntp.Add(time.Duration(d)).Add(w.delta).Sub(w.start)
	}
	if !t.anchOK {
		t.anchOK, t.anchAt, t.anchExt = true, arrival.Sub(w.start)-length, t.extTS
	}
	return t.anchAt + time.Duration(float64(t.extTS-t.anchExt)*1e9/t.clock)
}

// requestKeyframe asks the sender for a keyframe, at most once per
// keyframeRequestInterval of input time. The throttle runs on the latest
// arrival, not on the arrival of the frame that needs the keyframe: a frame
// leaves the jitter buffer up to its delay after it came, and frames behind a
// resent packet come out of arrival order.
func (w *StreamWriter) requestKeyframe() {
	if w.info.RequestKeyframe == nil {
		return
	}
	at := w.inputAt
	if w.keyReqOK && at.Sub(w.keyReqAt) < keyframeRequestInterval {
		return
	}
	w.keyReqOK, w.keyReqAt = true, at
	w.keyReqs.Add(1)
	w.info.RequestKeyframe()
}

// picContinues reports whether picture id b directly follows a.
func picContinues(a, b int) bool {
	return a >= 0 && b >= 0 && (b-a)&0x7f == 1
}

// onFrame takes a complete frame of track t.
func (w *StreamWriter) onFrame(t *track, f *frameOut) {
	if t.video {
		switch {
		case t.needKey:
			if !f.key {
				w.requestKeyframe()
				return
			}
			t.needKey = false
		case f.gap && !f.key && !picContinues(t.lastPicID, f.picID):
			t.needKey = true
			w.requestKeyframe()
			return
		}
		t.lastPicID = f.picID
		if f.key {
			if f.w > 0 && f.h > 0 && (f.w != t.w || f.h != t.h) {
				if t.started {
					w.log.Info("resolution changed", "track", t.i, "from", fmt.Sprintf("%dx%d", t.w, t.h), "to", fmt.Sprintf("%dx%d", f.w, f.h))
				}
				t.w, t.h = f.w, f.h
			}
			if !w.headerDone {
				switch t.c {
				case codecH264:
					info := h264Info{sps: f.sps, pps: f.pps}
					if p := info.avcC(); p != nil {
						t.private = p
					}
				case codecAV1:
					if f.av1c != nil {
						t.private = append([]byte(nil), f.av1c...)
					}
				}
			}
			t.started = true
		}
	} else {
		t.started = true
	}
	var length time.Duration
	switch {
	case t.c == codecOpus:
		length = parleycodec.OpusPacketDuration(f.data)
	case !t.video:
		length = time.Duration(len(f.data)/2) * time.Second / 8000
	}
	pts := (w.roomTime(t, f.ts, f.arrival, length) + 500*time.Microsecond).Milliseconds()
	if pts < 0 {
		pts = 0
	}
	if t.switched && f.key {
		// The keyframe a simulcast layer switch starts at may stand for
		// the moment of the last frames of the layer before (the same
		// picture, or the next that comes sooner than a frame interval):
		// it takes their place if they are still held, else it goes just
		// after them.
		t.switched = false
		iv := t.interval
		if iv <= 0 {
			iv = 33 // one frame at 30 fps, before any interval is known
		}
		if w.dropHeldFrom(t.i, pts-iv+1) {
			t.lastPts = pts - 1
			for _, mf := range w.held {
				if mf.track == t.i {
					t.lastPts = max(t.lastPts, mf.pts)
				}
			}
		}
		if pts <= t.lastPts && t.lastPts-pts <= maxKeyNudge {
			pts = t.lastPts + 1
		}
	}
	if t.havePts && pts < t.lastPts {
		w.lateFrames++ // a time line correction moved it before what is written
		return
	}
	var dur int64
	switch {
	case !t.video:
		dur = length.Milliseconds()
	default:
		if t.havePts && pts > t.lastPts && pts-t.lastPts <= 200 {
			t.interval = pts - t.lastPts
		}
		dur = t.interval
		if dur <= 0 {
			dur = 33
		}
	}
	t.lastPts, t.havePts = pts, true
	if t.video && w.opts.KeyframeInterval > 0 {
		// Keyframes are where a player can start decoding after a seek: ask
		// for one when the sender has sent none for KeyframeInterval
		// (browsers send one only when asked, or every 100 s or so).
		if f.key {
			t.lastKeyPts = pts
		} else if pts-t.lastKeyPts >= w.opts.KeyframeInterval.Milliseconds() {
			w.requestKeyframe()
		}
	}
	src := f.data
	if w.annexB && t.c == codecH264 {
		src = f.annexB
	}
	mf := &muxFrame{track: t.i, pts: pts, end: pts + dur, key: f.key || !t.video, video: t.video, order: w.order}
	mf.data = append(make([]byte, 0, len(src)), src...)
	w.order++
	heap.Push(&w.held, mf)
	if !w.seen || pts > w.maxSeen {
		w.maxSeen, w.seen = pts, true
	}
}

// mux writes the held frames that are ready: older than MuxDelay behind the
// newest (all when flush), once the header could be written.
func (w *StreamWriter) mux(flush, forceHeader bool) {
	for w.held.Len() > 0 {
		top := w.held[0]
		overfull := w.held.Len() > maxHeldFrames
		if !w.headerDone {
			ready := true
			for _, t := range w.tracks {
				if t.video && !t.started {
					ready = false
				}
			}
			waited := w.maxSeen-top.pts >= w.opts.HeaderWait.Milliseconds()
			if !ready && !forceHeader && !waited {
				if overfull {
					heap.Pop(&w.held)
					continue
				}
				return
			}
			if !w.writeHeader(top.pts) {
				w.held = w.held[:0]
				return
			}
		}
		if !flush && !overfull && top.pts > w.maxSeen-w.opts.MuxDelay.Milliseconds() {
			return
		}
		heap.Pop(&w.held)
		w.writeFrame(top)
	}
}

// writeHeader makes the stream's file (the session's first makes the
// session) and writes its header; firstMs is the time of the first frame.
// False when there is no file to write to: the stream then ends.
func (w *StreamWriter) writeHeader(firstMs int64) bool {
	w.headerDone = true
	f, idx, err := w.s.openFile(w, firstMs)
	if err != nil {
		w.ended = true
		switch {
		case errors.Is(err, errDiskLow):
			w.s.requestStop(StopDiskLow)
		case errors.Is(err, errQuota):
			w.s.requestStop(StopQuotaBytes)
		case errors.Is(err, ErrStopped):
			w.log.Info("stream not recorded: the session's recording has ended")
		default:
			w.log.Error("stream not recorded", "err", err)
		}
		return false
	}
	w.idx = idx
	name := f.Name()
	w.file.Store(&name)
	w.mkv = newMKVWriter(f, containerDoc(w.container), w.info.Participant+" "+w.info.Kind, w.opts.ClusterDuration, w.opts.SyncInterval)
	w.mkv.reserve = w.s.reserve
	var tracks []mkvTrack
	for _, t := range w.tracks {
		mt := mkvTrack{number: uint64(t.i + 1), video: t.video, codecID: t.c.matroskaID(), width: t.w, height: t.h}
		switch t.c {
		case codecH264:
			mt.codecPrivate = t.private
			if t.private == nil {
				w.annexB = true // no parameter set seen yet: keep the stream's own Annex-B form
				w.log.Warn("H.264 header written before a keyframe; the video is stored as Annex-B")
			}
		case codecAV1:
			mt.codecPrivate = t.private
		case codecOpus:
			mt.codecPrivate = opusHead(t.channels)
			mt.codecDelay = opusCodecDelay
			mt.seekPreRoll = 80_000_000
			mt.sampleRate, mt.channels = 48000, t.channels
		case codecPCMU, codecPCMA:
			mt.sampleRate, mt.channels, mt.bitDepth = 8000, 1, 16
		}
		tracks = append(tracks, mt)
	}
	if err := w.mkv.writeHeader(tracks); err != nil {
		w.fail(err)
	}
	// openFile reserved headerBytes for the header; count what it took.
	w.s.bytes.Add(w.mkv.size - headerBytes)
	return true
}

// quota ends the stream's writing because a limit of the session is
// reached, and stops the session.
func (w *StreamWriter) quota(reason StopReason) {
	if !w.ended {
		w.ended = true
		w.log.Info("recording quota reached", "reason", reason)
	}
	w.s.requestStop(reason)
}

func (w *StreamWriter) writeFrame(f *muxFrame) {
	if w.writeErr != nil || w.ended || w.mkv == nil {
		return
	}
	if limit, ok := w.s.durationLimit(); ok && f.pts >= limit {
		w.quota(StopQuotaDuration)
		return
	}
	if w.mkv.clusterOpen && f.pts < w.mkv.clusterTC {
		w.lateFrames++ // older than what is on disk already
		return
	}
	if err := w.mkv.writeBlock(uint64(f.track+1), f.pts, f.end, f.key, f.video, f.data); err != nil {
		if errors.Is(err, errQuota) {
			w.quota(StopQuotaBytes)
		} else {
			w.fail(err)
		}
		return
	}
	w.frames.Add(1)
	first := w.firstMs < 0
	if first {
		w.firstMs = f.pts
		w.s.firstFrame(w, f.pts)
	}
	w.endMs = max(w.endMs, f.end)
	if first {
		w.saveEntry(StreamRecording)
	}
}

func (w *StreamWriter) fail(err error) {
	if w.writeErr == nil {
		w.writeErr = err
		w.log.Error("recording failed", "err", err)
	}
}

// saveEntry writes this stream's state and times to the manifest.
func (w *StreamWriter) saveEntry(state string) {
	if w.idx < 0 {
		return
	}
	err := w.s.updateStream(w.idx, func(e *StreamEntry) {
		e.State = state
		entryTimes(e, w.start, w.firstMs, w.endMs)
		for _, t := range w.tracks {
			if t.video {
				e.Tracks[t.i].Width, e.Tracks[t.i].Height = t.w, t.h
			}
		}
		if w.writeErr != nil {
			e.Error = publicError(w.writeErr)
		}
	})
	if err != nil {
		w.log.Error("manifest update failed", "err", err)
	}
}

// tick writes out what an idle stream holds.
func (w *StreamWriter) tick(now time.Time) {
	if d := w.queueDrops.Load(); d != w.loggedDrops {
		w.log.Warn("packets dropped: recorder queue full", "total", d)
		w.loggedDrops = d
	}
	if w.idleDone || now.Sub(w.lastInput) < w.opts.IdleFlush {
		return
	}
	w.idleDone = true
	if w.ended {
		return
	}
	w.drainAll()
	w.mux(true, false)
	if w.mkv != nil && w.mkv.clusterOpen && w.writeErr == nil {
		if err := w.mkv.endCluster(true); err != nil {
			w.fail(err)
		}
	}
}

func (w *StreamWriter) drainAll() {
	for _, t := range w.tracks {
		t.jb.drain(func(q *jbPacket, lost bool) {
			t.asm.push(q, lost, func(f *frameOut) { w.onFrame(t, f) })
			w.free(q)
		})
		t.asm.abort()
	}
}

func (w *StreamWriter) finalize() error {
	if !w.ended {
		w.drainAll()
		w.mux(true, true)
	}
	w.held = w.held[:0]
	if w.mkv == nil {
		w.log.Info("stream not recorded: no media", "packets", w.packets.Load())
		return nil
	}
	err := w.mkv.close()
	if err != nil && !errors.Is(err, errQuota) {
		w.fail(err)
	}
	state := StreamClosed
	if w.firstMs < 0 {
		state = StreamEmpty
	}
	w.saveEntry(state)
	w.log.Info("stream recorded", "state", state, "frames", w.frames.Load(), "late_frames", w.lateFrames,
		"queue_drops", w.queueDrops.Load(), "duration_ms", max(w.endMs-w.firstMs, 0))
	if w.writeErr != nil {
		return fmt.Errorf("recorder: stream %s: %w", w.info.StreamID, w.writeErr)
	}
	return nil
}

// publicError is err's text without the directories of the paths it
// names: manifests are read by people and tools that need no server path.
func publicError(err error) string {
	msg := err.Error()
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path != "" {
		msg = strings.ReplaceAll(msg, pe.Path, filepath.Base(pe.Path))
	}
	return msg
}

// muxFrame is a frame waiting in the interleaver.
type muxFrame struct {
	track int
	pts   int64
	end   int64
	key   bool
	video bool
	order uint64
	data  []byte
}

// dropHeldFrom removes from the interleaver the frames of track that are
// not yet written and stand at or after pts; it reports whether it removed
// any.
func (w *StreamWriter) dropHeldFrom(track int, pts int64) bool {
	n := len(w.held)
	kept := w.held[:0]
	for _, mf := range w.held {
		if mf.track != track || mf.pts < pts {
			kept = append(kept, mf)
		}
	}
	clear(w.held[len(kept):])
	w.held = kept
	if len(kept) == n {
		return false
	}
	heap.Init(&w.held)
	return true
}

// frameHeap orders frames by time, then arrival order.
type frameHeap []*muxFrame

func (h frameHeap) Len() int { return len(h) }
func (h frameHeap) Less(i, j int) bool {
	if h[i].pts != h[j].pts {
		return h[i].pts < h[j].pts
	}
	return h[i].order < h[j].order
}
func (h frameHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *frameHeap) Push(x any)   { *h = append(*h, x.(*muxFrame)) }
func (h *frameHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return x
}
