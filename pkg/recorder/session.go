// Package recorder records the published streams of a room session to files:
// one WebM file (VP8, VP9 or AV1 with Opus) or Matroska file (H.264, or
// PCMU/PCMA audio) per published stream, with its audio and video together,
// timestamps on the room session's time line, and a manifest.json describing
// the session for the offline mixer (package mixer).
//
// A Session is one recorded room session: a directory
// <records dir>/<room>/<session id>/ holding the files and the manifest. Each
// published stream gets a StreamWriter, fed with the stream's RTP packets and
// RTCP sender reports. A StreamWriter copies what it is given into a bounded
// queue and does all the work (reordering, depacketizing, time mapping,
// muxing, writing) on a goroutine of its own, which ends with Close.
//
// Nothing is written before media arrives: the session directory, its
// manifest and a stream's file are made when the stream's first frame is
// ready to be written, so a publish whose media never connected leaves
// nothing behind (and a session without media has no manifest to mix).
//
// A session can be bounded (Options.MaxDuration, MaxBytes) and can stop when
// the disk holding it runs low (Options.MinFreeBytes): it then closes every
// file cleanly, finishes its manifest with the reason, and calls
// Options.OnStop.
//
// Files are written as live Matroska (unknown-size segment and clusters of at
// most one second), flushed as they grow and fsynced cluster by cluster, so a
// file of a process killed mid-meeting plays up to about a second before the
// kill; Recover finishes such a session on the next start. A finished (or
// recovered) file is indexed (Cues and a SeekHead), so players seek in it at
// once.
//
// See docs/recording.md for the time line, lip sync, crash safety and the
// manifest format.
package recorder

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options tune a Session. Zero fields take the defaults given.
type Options struct {
	// Logger receives the recorder's logs; default: discard.
	Logger *slog.Logger
	// JitterDelay is how long a missing packet is waited for (NACK
	// retransmission) before it is given up; default 300 ms.
	JitterDelay time.Duration
	// MuxDelay is how far (in media time) the interleaver waits for the other
	// tracks of a stream before writing a frame; default 500 ms.
	MuxDelay time.Duration
	// ClusterDuration is the longest cluster; default and maximum 1 s.
	ClusterDuration time.Duration
	// SyncInterval is the least time between two fsyncs of a file (done at
	// cluster ends); default 1 s.
	SyncInterval time.Duration
	// IdleFlush: when a stream got nothing for this long (wall clock), what it
	// holds is written out and fsynced; default 1 s.
	IdleFlush time.Duration
	// HeaderWait is how much media (audio) is held waiting for the first
	// keyframe of every video track before the file header is written
	// without it; default 5 s.
	HeaderWait time.Duration
	// QueueSize bounds the packets queued to a stream's goroutine; default 1024.
	// When the queue is full WriteRTP drops the packet (counted and logged)
	// unless BlockWhenFull is set.
	QueueSize int
	// BlockWhenFull makes WriteRTP wait for room in the queue instead of
	// dropping: for offline conversion and tests, never for a live SFU.
	BlockWhenFull bool
	// MaxFrameSize bounds one video frame; larger ones are dropped; default 4 MiB.
	MaxFrameSize int
	// KeyframeInterval: when a video track had no keyframe for this long
	// (media time), the writer asks for one (StreamInfo.RequestKeyframe), so
	// a seek never decodes from further back; default 10 s, negative: never.
	KeyframeInterval time.Duration

	// MaxDuration bounds the recorded time of the session: no frame later
	// than MaxDuration after the session's first recorded frame (on the room
	// time line) is written; the first one that would be stops the session
	// (StopQuotaDuration). 0: no bound.
	MaxDuration time.Duration
	// MaxBytes bounds the bytes of all the session's files together: a write
	// that would pass it is not made and the session stops
	// (StopQuotaBytes). 0: no bound.
	MaxBytes int64
	// MinFreeBytes is a floor of free disk space (for unprivileged users) on
	// the file system of the session: when there is less, no file is started
	// and a recording session stops (StopDiskLow). Checked before each file is
	// made and every CheckInterval while the session records. 0: no floor.
	MinFreeBytes int64
	// CheckInterval is how often the free space is checked; default 1 s.
	CheckInterval time.Duration
	// FreeSpace returns the free bytes of the file system holding dir;
	// default: statfs (available to unprivileged users).
	FreeSpace func(dir string) (int64, error)
	// OnStart, when set, is called once, from a stream's goroutine, when the
	// session's first file is made (its first media arrived). It must not block.
	OnStart func()
	// OnStop, when set, is called once when a limit stopped the session
	// before Close: the files are finished and the manifest says why
	// (Manifest.Stopped). It runs on a goroutine of the session's; Close
	// waits for it.
	OnStop func(reason StopReason)
}

// StopReason says why a session stopped recording before it was closed.
type StopReason string

// Stop reasons (Manifest.Stopped, Options.OnStop).
const (
	// StopQuotaDuration: Options.MaxDuration was reached.
	StopQuotaDuration StopReason = "QUOTA_DURATION"
	// StopQuotaBytes: Options.MaxBytes was reached.
	StopQuotaBytes StopReason = "QUOTA_BYTES"
	// StopDiskLow: the free disk space fell below Options.MinFreeBytes.
	StopDiskLow StopReason = "DISK_LOW"
)

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.JitterDelay <= 0 {
		o.JitterDelay = 300 * time.Millisecond
	}
	if o.MuxDelay <= 0 {
		o.MuxDelay = 500 * time.Millisecond
	}
	if o.ClusterDuration <= 0 || o.ClusterDuration > time.Second {
		o.ClusterDuration = time.Second
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = time.Second
	}
	if o.IdleFlush <= 0 {
		o.IdleFlush = time.Second
	}
	if o.HeaderWait <= 0 {
		o.HeaderWait = 5 * time.Second
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 1024
	}
	if o.MaxFrameSize <= 0 {
		o.MaxFrameSize = 4 << 20
	}
	if o.KeyframeInterval == 0 {
		o.KeyframeInterval = 10 * time.Second
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = time.Second
	}
	if o.FreeSpace == nil {
		o.FreeSpace = FreeSpace
	}
	return o
}

// TrackInfo describes one track of a published stream.
type TrackInfo struct {
	// Kind is "audio" or "video" (informative: the codec decides).
	Kind string
	// MimeType is the RTP codec, e.g. "video/VP8", "video/H264", "audio/opus".
	MimeType string
	// ClockRate is the RTP clock rate; default 90000 for video, 48000 for
	// Opus, 8000 for PCMU/PCMA.
	ClockRate uint32
	// Channels of audio; default 2 for Opus (decoders upmix mono packets), 1 for G.711.
	Channels uint16
}

// StreamInfo describes a published stream to record.
type StreamInfo struct {
	// Participant is the publisher's display name (any text; kept as is in the manifest).
	Participant string
	// StreamID is the stream's id, unique in the room session.
	StreamID string
	// Kind is "camera" or "screen".
	Kind string
	// Tracks are the stream's tracks; WriteRTP's track argument indexes this slice.
	Tracks []TrackInfo
	// RequestKeyframe, when set, is called (from the stream's goroutine, at
	// most every 500 ms of arrival time) while the recorder waits for a video
	// keyframe: at the start, after a loss, and when none came for
	// Options.KeyframeInterval. Wire it to a PLI. It must not block.
	RequestKeyframe func()
}

// Session is one recorded room session: a directory with one file per
// published stream and a manifest. Its methods are safe for concurrent use.
type Session struct {
	dir  string
	opts Options
	log  *slog.Logger

	// bytes counts (reserves) the bytes of the session's files, for MaxBytes.
	bytes atomic.Int64
	// quit ends the free-space monitor (closed by finish).
	quit chan struct{}
	// bg tracks the session's goroutines: the monitor and a stop.
	bg sync.WaitGroup

	mu       sync.Mutex
	m        Manifest
	writers  map[*StreamWriter]struct{}
	created  bool          // the directory and manifest exist (some media arrived)
	firstMs  int64         // room time of the first frame written, once created
	firstBy  *StreamWriter // the stream whose header created the session
	closed   bool
	stopping bool // a stop is under way or done (StopReason in m.Stopped)
	// speakersFull: maxSpeakerChanges were noted (and the warning logged).
	speakersFull bool
}

// StartSession prepares the recording of a room session in the directory
// <dir>/<room>/<sessionID>/ (names made safe with SafeName). Nothing is
// written yet: the directory and its manifest (state "recording") are made
// with the first file, when the first stream's media arrives. start is the
// origin of the session's time line: every timestamp in its files counts from it.
func StartSession(dir, room, sessionID string, start time.Time, opts Options) (*Session, error) {
	if sessionID == "" {
		return nil, errors.New("recorder: empty session id")
	}
	if start.IsZero() {
		return nil, errors.New("recorder: zero start time")
	}
	opts = opts.withDefaults()
	sdir := filepath.Join(dir, SafeName(room), SafeName(sessionID))
	if _, err := os.Stat(filepath.Join(sdir, ManifestName)); err == nil {
		return nil, fmt.Errorf("recorder: session %s already has a manifest", sdir)
	}
	s := &Session{
		dir:  sdir,
		opts: opts,
		log:  opts.Logger.With("room", room, "session", sessionID),
		quit: make(chan struct{}),
		m: Manifest{
			Version:   ManifestVersion,
			Room:      room,
			SessionID: sessionID,
			State:     StateRecording,
			Start:     start,
			Streams:   []StreamEntry{},
		},
		writers: make(map[*StreamWriter]struct{}),
	}
	if opts.MinFreeBytes > 0 {
		s.bg.Add(1)
		go s.monitor()
	}
	return s, nil
}

// createLocked makes the session directory and its manifest.
func (s *Session) createLocked() error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("create session dir: %w", err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, ManifestName)); err == nil {
		return errors.New("the session directory already has a manifest")
	}
	if err := s.saveLocked(); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(s.dir)); err != nil {
		return err
	}
	s.created = true
	s.log.Info("recording started", "dir", s.dir)
	return nil
}

// Recorded reports whether anything was recorded: whether the session
// directory and manifest exist.
func (s *Session) Recorded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.created
}

// Stopped returns why a limit stopped the session ("" if none did).
func (s *Session) Stopped() StopReason {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.Stopped
}

// Dir is the session directory.
func (s *Session) Dir() string { return s.dir }

// ManifestPath is the path of the session's manifest.
func (s *Session) ManifestPath() string { return filepath.Join(s.dir, ManifestName) }

// Manifest returns a copy of the session's current manifest.
func (s *Session) Manifest() Manifest {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.m
	m.Streams = append([]StreamEntry(nil), s.m.Streams...)
	m.Clips = append([]ClipEntry(nil), s.m.Clips...)
	m.Speakers = append([]SpeakerChange(nil), s.m.Speakers...)
	return m
}

// maxSpeakerChanges bounds the speaker changes a manifest keeps: at one
// every few seconds, a day-long meeting.
const maxSpeakerChanges = 20000

// SpeakerChanged notes that participant, speaking in streamID, became the
// room's dominant speaker at wall-clock time at. A change naming the
// speaker already noted is ignored; once the recording is closed, or after
// maxSpeakerChanges changes, so is every change.
func (s *Session) SpeakerChanged(at time.Time, participant, streamID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || streamID == "" {
		return
	}
	if n := len(s.m.Speakers); n > 0 && s.m.Speakers[n-1].StreamID == streamID {
		return
	}
	if len(s.m.Speakers) >= maxSpeakerChanges {
		if !s.speakersFull {
			s.speakersFull = true
			s.log.Warn("too many speaker changes: later ones are not in the manifest", "max", maxSpeakerChanges)
		}
		return
	}
	ms := max(at.Sub(s.m.Start).Milliseconds(), 0)
	if n := len(s.m.Speakers); n > 0 && ms < s.m.Speakers[n-1].AtMs {
		ms = s.m.Speakers[n-1].AtMs // in time order, whatever the clock did
	}
	s.m.Speakers = append(s.m.Speakers, SpeakerChange{AtMs: ms, Participant: participant, StreamID: streamID})
	if s.created {
		if err := s.saveLocked(); err != nil {
			s.log.Error("save manifest", "err", err)
		}
	}
}

// maxTracks bounds the tracks of one stream.
const maxTracks = 8

// AddStream starts recording a published stream into a new file and returns
// its writer. It refuses a codec it cannot record (the error names it).
func (s *Session) AddStream(info StreamInfo) (*StreamWriter, error) {
	if len(info.Tracks) == 0 || len(info.Tracks) > maxTracks {
		return nil, fmt.Errorf("recorder: stream %q has %d tracks (1 to %d)", info.StreamID, len(info.Tracks), maxTracks)
	}
	webm := true
	tracks := make([]TrackEntry, len(info.Tracks))
	codecs := make([]codec, len(info.Tracks))
	for i, t := range info.Tracks {
		c := parseCodec(t.MimeType)
		if c == codecUnknown {
			return nil, fmt.Errorf("recorder: stream %q track %d: codec %q cannot be recorded (supported: VP8, VP9, AV1, H264, opus, PCMU, PCMA)", info.StreamID, i, t.MimeType)
		}
		codecs[i] = c
		webm = webm && c.webmOK()
		kind := "audio"
		if c.video() {
			kind = "video"
		}
		clock, ch := t.ClockRate, t.Channels
		switch {
		case c.video():
			if clock == 0 {
				clock = 90000
			}
			ch = 0
		case c == codecOpus:
			if clock == 0 {
				clock = 48000
			}
			if ch == 0 || ch > 2 {
				ch = 2
			}
		default:
			if clock == 0 {
				clock = 8000
			}
			ch = 1
		}
		tracks[i] = TrackEntry{Kind: kind, Codec: t.MimeType, ClockRate: clock, Channels: ch, Number: i + 1}
	}
	container, ext := "matroska", ".mkv"
	if webm {
		container, ext = "webm", ".webm"
	}
	kind := info.Kind
	if kind == "" {
		kind = "camera"
	}
	info.Kind = kind

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.stopping {
		return nil, ErrStopped
	}
	if len(s.writers) >= maxStreams {
		return nil, errors.New("recorder: too many streams in the session")
	}
	w := newStreamWriter(s, info, codecs, tracks, container, ext)
	s.writers[w] = struct{}{}
	s.log.Info("stream to record", "stream", info.StreamID, "participant", info.Participant)
	return w, nil
}

// ErrStopped is AddStream's error once the session is closed or stopped.
var ErrStopped = errors.New("recorder: the session's recording has ended")

// headerBytes is reserved for a file's header (MaxBytes) before it is made.
const headerBytes = 1024

// errDiskLow is openFile's error when the disk is below the floor.
var errDiskLow = errors.New("recorder: free disk space below the floor")

// openFile makes the file of w's stream (and, for the session's first, the
// session directory and manifest), adds its manifest entry and returns it
// with the entry's index. firstMs is the room time of the stream's first frame.
func (s *Session) openFile(w *StreamWriter, firstMs int64) (*os.File, int, error) {
	s.mu.Lock()
	if s.closed || s.stopping {
		s.mu.Unlock()
		return nil, 0, ErrStopped
	}
	if s.opts.MinFreeBytes > 0 {
		free, err := s.freeSpace()
		if err != nil {
			s.log.Warn("cannot read the free disk space", "err", err)
		} else if free < s.opts.MinFreeBytes {
			s.mu.Unlock()
			s.log.Warn("free disk space below the floor; not recording", "free", free, "floor", s.opts.MinFreeBytes)
			return nil, 0, errDiskLow
		}
	}
	if len(s.m.Streams) >= maxStreams {
		s.mu.Unlock()
		return nil, 0, errors.New("recorder: too many streams in the session")
	}
	if !s.reserve(headerBytes) {
		s.mu.Unlock()
		return nil, 0, errQuota
	}
	first := !s.created
	if first {
		if err := s.createLocked(); err != nil {
			s.mu.Unlock()
			return nil, 0, fmt.Errorf("recorder: %w", err)
		}
		s.firstMs, s.firstBy = firstMs, w
	}
	info := w.info
	base := SafeName(info.Participant) + "_" + SafeName(info.Kind) + "_" + SafeName(info.StreamID)
	var f *os.File
	var name string
	for n := 1; ; n++ {
		name = base + w.ext
		if n > 1 {
			name = fmt.Sprintf("%s-%d%s", base, n, w.ext)
		}
		var err error
		f, err = os.OpenFile(filepath.Join(s.dir, name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || n >= 1000 {
			s.mu.Unlock()
			return nil, 0, fmt.Errorf("recorder: create file: %w", err)
		}
	}
	idx := len(s.m.Streams)
	s.m.Streams = append(s.m.Streams, StreamEntry{
		Participant: info.Participant,
		StreamID:    info.StreamID,
		Kind:        info.Kind,
		File:        name,
		Container:   w.container,
		Tracks:      w.entries,
		State:       StreamRecording,
	})
	if err := s.saveLocked(); err != nil {
		s.m.Streams = s.m.Streams[:idx]
		s.mu.Unlock()
		_ = f.Close()
		_ = os.Remove(filepath.Join(s.dir, name))
		return nil, 0, fmt.Errorf("recorder: %w", err)
	}
	s.mu.Unlock()
	s.log.Info("stream recording", "stream", info.StreamID, "participant", info.Participant, "file", name)
	if first && s.opts.OnStart != nil {
		s.opts.OnStart()
	}
	return f, idx, nil
}

// freeSpace reads the free space of the session's file system (its
// directory, or the nearest one that exists).
func (s *Session) freeSpace() (int64, error) {
	dir := s.dir
	for {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return s.opts.FreeSpace(dir)
}

// reserve counts n more bytes of the session's files; false (nothing
// counted) when that would pass MaxBytes.
func (s *Session) reserve(n int64) bool {
	if s.opts.MaxBytes <= 0 {
		s.bytes.Add(n)
		return true
	}
	for {
		cur := s.bytes.Load()
		if cur+n > s.opts.MaxBytes {
			return false
		}
		if s.bytes.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// Bytes returns the bytes written (or reserved) to the session's files.
func (s *Session) Bytes() int64 { return s.bytes.Load() }

// durationLimit returns the room time (ms) from which no frame is written,
// and whether there is one.
func (s *Session) durationLimit() (int64, bool) {
	if s.opts.MaxDuration <= 0 {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.created {
		return 0, false
	}
	return s.firstMs + s.opts.MaxDuration.Milliseconds(), true
}

// firstFrame tells the session that stream w wrote its first frame at room
// time ms. The session's first frame, from which MaxDuration counts, was
// taken when the first stream made its header, for the earliest frame it
// held then; but a frame of another of its tracks that came later, still
// within the mux delay, can be earlier (audio whose first sender report came
// after the video's keyframe), and the file then begins with it: the limit
// counts from there.
func (s *Session) firstFrame(w *StreamWriter, ms int64) {
	s.mu.Lock()
	if s.firstBy == w && ms < s.firstMs {
		s.firstMs = ms
	}
	s.mu.Unlock()
}

// requestStop stops the session for reason, on a goroutine of its own (a
// stream's goroutine cannot close its own writer). Only the first request counts.
func (s *Session) requestStop(reason StopReason) {
	s.mu.Lock()
	if s.closed || s.stopping {
		s.mu.Unlock()
		return
	}
	s.stopping = true
	s.m.Stopped = reason
	s.bg.Add(1)
	s.mu.Unlock()
	s.log.Warn("recording stops", "reason", reason)
	go func() {
		defer s.bg.Done()
		if err := s.finish(time.Now()); err != nil {
			s.log.Error("finish the stopped recording", "err", err)
		}
		if s.opts.OnStop != nil {
			s.opts.OnStop(reason)
		}
	}()
}

// monitor checks the free disk space while the session records.
func (s *Session) monitor() {
	defer s.bg.Done()
	t := time.NewTicker(s.opts.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		s.mu.Lock()
		created := s.created
		s.mu.Unlock()
		if !created {
			continue
		}
		free, err := s.freeSpace()
		if err != nil {
			s.log.Warn("cannot read the free disk space", "err", err)
			continue
		}
		if free < s.opts.MinFreeBytes {
			s.log.Warn("free disk space below the floor; the recording stops", "free", free, "floor", s.opts.MinFreeBytes)
			s.requestStop(StopDiskLow)
			return
		}
	}
}

// Close ends the room session: it closes every stream still recording, sets
// the end time (the end of the last recorded frame; end, or now if zero,
// when nothing was recorded), records end as the close time and marks the
// manifest finished. It returns the first error met; the manifest
// is finished even then. A session stopped by a limit is already closed;
// Close then waits for the stop (and its OnStop) to end. A session that
// recorded nothing leaves nothing on disk.
func (s *Session) Close(end time.Time) error {
	err := s.finish(end)
	s.bg.Wait()
	return err
}

func (s *Session) finish(end time.Time) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.quit)
	ws := make([]*StreamWriter, 0, len(s.writers))
	for w := range s.writers {
		ws = append(ws, w)
	}
	s.mu.Unlock()

	var firstErr error
	for _, w := range ws {
		if err := w.Close(); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if end.IsZero() {
		end = time.Now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m.Closed = end
	// The recording ends with its last recorded frame, not when the room
	// session closed: an empty room waits out its idle timeout (after the
	// reconnect grace of whoever left by closing a tab), which is no part of
	// the meeting.
	var last time.Time
	for _, e := range s.m.Streams {
		if !e.End.IsZero() && e.End.After(last) {
			last = e.End
		}
	}
	if !last.IsZero() {
		end = last
	}
	if end.Before(s.m.Start) {
		end = s.m.Start
	}
	s.m.End = end
	s.m.DurationMs = end.Sub(s.m.Start).Milliseconds()
	s.m.State = StateFinished
	if !s.created {
		s.log.Info("nothing was recorded: no media arrived")
		return firstErr
	}
	if err := s.saveLocked(); err != nil && firstErr == nil {
		firstErr = fmt.Errorf("recorder: %w", err)
	}
	s.log.Info("recording finished", "duration", end.Sub(s.m.Start), "bytes", s.bytes.Load(), "stopped", s.m.Stopped)
	return firstErr
}

// updateStream applies fn to stream idx's entry and saves the manifest.
func (s *Session) updateStream(idx int, fn func(e *StreamEntry)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.m.Streams[idx])
	return s.saveLocked()
}

func (s *Session) writerDone(w *StreamWriter) {
	s.mu.Lock()
	delete(s.writers, w)
	s.mu.Unlock()
}

func (s *Session) saveLocked() error {
	s.m.Updated = time.Now()
	return writeManifest(s.dir, &s.m)
}

// entryTimes fills the times of an entry from first and end (ms on the time line).
func entryTimes(e *StreamEntry, start time.Time, firstMs, endMs int64) {
	if firstMs < 0 {
		e.OffsetMs, e.DurationMs = 0, 0
		e.Start, e.End = time.Time{}, time.Time{}
		return
	}
	e.OffsetMs = firstMs
	e.DurationMs = max(endMs-firstMs, 0)
	e.Start = start.Add(time.Duration(firstMs) * time.Millisecond)
	e.End = start.Add(time.Duration(firstMs+e.DurationMs) * time.Millisecond)
}

// containerDoc is the EBML DocType of a container name.
func containerDoc(container string) string {
	if strings.EqualFold(container, "webm") {
		return "webm"
	}
	return "matroska"
}
