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
// Files are written as live Matroska (unknown-size segment and clusters of at
// most one second), flushed as they grow and fsynced cluster by cluster, so a
// file of a process killed mid-meeting plays up to about a second before the
// kill; Recover finishes such a session on the next start.
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
}

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
	// keyframe: at the start and after a loss. Wire it to a PLI. It must not block.
	RequestKeyframe func()
}

// Session is one recorded room session: a directory with one file per
// published stream and a manifest. Its methods are safe for concurrent use.
type Session struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	m       Manifest
	writers map[*StreamWriter]struct{}
	closed  bool
}

// StartSession creates the directory <dir>/<room>/<sessionID>/ (names made
// safe with SafeName) and its manifest in state "recording". start is the
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
	if err := os.MkdirAll(sdir, 0o755); err != nil {
		return nil, fmt.Errorf("recorder: create session dir: %w", err)
	}
	if _, err := os.Stat(filepath.Join(sdir, ManifestName)); err == nil {
		return nil, fmt.Errorf("recorder: session %s already has a manifest", sdir)
	}
	s := &Session{
		dir:  sdir,
		opts: opts,
		log:  opts.Logger.With("room", room, "session", sessionID),
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
	if err := s.saveLocked(); err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	if err := syncDir(filepath.Dir(sdir)); err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	s.log.Info("recording started", "dir", sdir)
	return s, nil
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
	return m
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

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("recorder: session closed")
	}
	if len(s.m.Streams) >= maxStreams {
		return nil, errors.New("recorder: too many streams in the session")
	}
	base := SafeName(info.Participant) + "_" + SafeName(kind) + "_" + SafeName(info.StreamID)
	var f *os.File
	var name string
	for n := 1; ; n++ {
		name = base + ext
		if n > 1 {
			name = fmt.Sprintf("%s-%d%s", base, n, ext)
		}
		var err error
		f, err = os.OpenFile(filepath.Join(s.dir, name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || n >= 1000 {
			return nil, fmt.Errorf("recorder: create file: %w", err)
		}
	}
	idx := len(s.m.Streams)
	s.m.Streams = append(s.m.Streams, StreamEntry{
		Participant: info.Participant,
		StreamID:    info.StreamID,
		Kind:        kind,
		File:        name,
		Container:   container,
		Tracks:      tracks,
		State:       StreamRecording,
	})
	if err := s.saveLocked(); err != nil {
		s.m.Streams = s.m.Streams[:idx]
		_ = f.Close()
		_ = os.Remove(filepath.Join(s.dir, name))
		return nil, fmt.Errorf("recorder: %w", err)
	}
	w := newStreamWriter(s, idx, info, codecs, tracks, f, container)
	s.writers[w] = struct{}{}
	s.log.Info("stream recording", "stream", info.StreamID, "participant", info.Participant, "file", name)
	return w, nil
}

// Close ends the room session: it closes every stream still recording, sets
// the end time (end, or the end of the last frame if later; now if zero) and
// marks the manifest finished. It returns the first error met; the manifest
// is finished even then.
func (s *Session) Close(end time.Time) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
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
	for _, e := range s.m.Streams {
		if !e.End.IsZero() && e.End.After(end) {
			end = e.End
		}
	}
	if end.Before(s.m.Start) {
		end = s.m.Start
	}
	s.m.End = end
	s.m.DurationMs = end.Sub(s.m.Start).Milliseconds()
	s.m.State = StateFinished
	if err := s.saveLocked(); err != nil && firstErr == nil {
		firstErr = fmt.Errorf("recorder: %w", err)
	}
	s.log.Info("recording finished", "duration", end.Sub(s.m.Start))
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
