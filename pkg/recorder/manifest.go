package recorder

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// ManifestName is the manifest's file name in a session directory.
const ManifestName = "manifest.json"

// ManifestVersion is the version of the manifest format this package writes.
const ManifestVersion = 1

// Session states in a manifest.
const (
	// StateRecording: the room session is being recorded, or the process that
	// recorded it died before finishing it (see Recover).
	StateRecording = "recording"
	// StateFinished: every file is closed and every time in the manifest is final.
	StateFinished = "finished"
)

// Stream states in a manifest.
const (
	// StreamRecording: the stream's file is being written.
	StreamRecording = "recording"
	// StreamClosed: the stream ended normally and its file is complete.
	StreamClosed = "closed"
	// StreamRecovered: the recording process died; Recover closed the file
	// from what was on disk.
	StreamRecovered = "recovered"
	// StreamEmpty: nothing decodable was recorded (no frame reached the file).
	StreamEmpty = "empty"
)

// Manifest describes one recorded room session: its directory's manifest.json.
// All times in it are on the room session's time line, which starts at Start.
type Manifest struct {
	Version   int    `json:"version"`
	Room      string `json:"room"`
	SessionID string `json:"sessionId"`
	// State is StateRecording or StateFinished.
	State string `json:"state"`
	// Recovered is set when Recover finished the session after a crash.
	Recovered bool `json:"recovered,omitempty"`
	// Stopped is set when a limit (a quota, the disk space floor) stopped
	// the recording before the room session ended.
	Stopped StopReason `json:"stopped,omitempty"`
	// Start is the wall-clock time of the room session's time line origin.
	Start time.Time `json:"start"`
	// End is the wall-clock end of the recording (zero while recording):
	// the end of its last recorded frame, so a room that stays open, empty,
	// for its idle timeout (or a participant kept through the reconnect grace
	// after their media stopped) adds nothing to it.
	End time.Time `json:"end,omitzero"`
	// DurationMs is End-Start in milliseconds (0 while recording): the
	// length of the session's time line, and of its mix.
	DurationMs int64 `json:"durationMs"`
	// Closed is when the recording was closed: the room session ended, or a
	// limit stopped it (zero while recording, and in manifests of a
	// recovered session).
	Closed time.Time `json:"closed,omitzero"`
	// Updated is when the manifest was last written.
	Updated time.Time `json:"updated"`
	// Streams are the published streams, in the order they were added.
	Streams []StreamEntry `json:"streams"`
	// Clips are the media messages posted to the room during the session
	// (clips.go).
	Clips []ClipEntry `json:"clips,omitempty"`
	// Speakers are the changes of the room's dominant speaker while it was
	// recorded, in time order (the mixer's speaker layout follows them).
	Speakers []SpeakerChange `json:"speakers,omitempty"`
}

// SpeakerChange is when someone became the room's dominant speaker.
type SpeakerChange struct {
	// AtMs is the time on the room session's time line.
	AtMs int64 `json:"atMs"`
	// Participant is the speaker's display name, as given.
	Participant string `json:"participant"`
	// StreamID is the stream they speak in (a Streams entry's StreamID when
	// that stream is recorded).
	StreamID string `json:"streamId"`
}

// At is the change's time on the room session's time line.
func (c SpeakerChange) At() time.Duration { return time.Duration(c.AtMs) * time.Millisecond }

// StreamEntry describes one recorded stream and its file.
type StreamEntry struct {
	// Participant is the publisher's display name, as given (unsanitized).
	Participant string `json:"participant"`
	// StreamID is the stream's id, as given.
	StreamID string `json:"streamId"`
	// Kind is the stream kind: "camera" or "screen" (or what the caller gave).
	Kind string `json:"kind"`
	// File is the file name, relative to the session directory.
	File string `json:"file"`
	// Container is "webm" or "matroska".
	Container string `json:"container"`
	// Tracks are the file's tracks in track-number order (track 1 first).
	Tracks []TrackEntry `json:"tracks"`
	// State is one of the Stream* states.
	State string `json:"state"`
	// OffsetMs is the time of the file's first frame on the room time line,
	// which is also the first timestamp in the file (ffprobe's start_time).
	OffsetMs int64 `json:"offsetMs"`
	// DurationMs is the time from the first frame to the end of the last one.
	DurationMs int64 `json:"durationMs"`
	// Start and End are the wall-clock times of the first frame and of the end
	// of the last one (Manifest.Start + OffsetMs, + DurationMs).
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
	// Error is set when the stream's writer failed.
	Error string `json:"error,omitempty"`
}

// TrackEntry describes one track of a stream's file.
type TrackEntry struct {
	// Kind is "audio" or "video".
	Kind string `json:"kind"`
	// Codec is the RTP MIME type, e.g. "video/VP8", "audio/opus".
	Codec string `json:"codec"`
	// ClockRate and Channels are the RTP codec's.
	ClockRate uint32 `json:"clockRate"`
	Channels  uint16 `json:"channels,omitempty"`
	// Width and Height of the first keyframe (video; a later resize is not recorded here).
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
	// Number is the Matroska track number.
	Number int `json:"number"`
}

// Offset is the stream's first frame on the room time line.
func (e StreamEntry) Offset() time.Duration { return time.Duration(e.OffsetMs) * time.Millisecond }

// Duration is the stream's recorded length.
func (e StreamEntry) Duration() time.Duration { return time.Duration(e.DurationMs) * time.Millisecond }

// HasVideo reports whether the stream's file has a video track.
func (e StreamEntry) HasVideo() bool { return e.hasKind("video") }

// HasAudio reports whether the stream's file has an audio track.
func (e StreamEntry) HasAudio() bool { return e.hasKind("audio") }

func (e StreamEntry) hasKind(k string) bool {
	for _, t := range e.Tracks {
		if t.Kind == k {
			return true
		}
	}
	return false
}

// Duration is the session's length (0 while recording).
func (m *Manifest) Duration() time.Duration { return time.Duration(m.DurationMs) * time.Millisecond }

// MediaEnd is the end of the last recorded frame of any stream on the time
// line; 0 when no stream recorded anything.
func (m *Manifest) MediaEnd() time.Duration {
	var end time.Duration
	for _, e := range m.Streams {
		if e.State == StreamEmpty || e.DurationMs <= 0 {
			continue
		}
		end = max(end, e.Offset()+e.Duration())
	}
	return end
}

// maxManifestSize bounds what ReadManifest accepts.
const maxManifestSize = 16 << 20

// maxStreams bounds the streams of one manifest.
const maxStreams = 10000

// ReadManifest reads and validates a manifest. It refuses a manifest whose file
// names leave the session directory, so a reader can join them to its directory.
func ReadManifest(path string) (*Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	defer f.Close()
	m, err := ParseManifest(f)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", path, err)
	}
	return m, nil
}

// ParseManifest reads and validates a manifest from r (at most 16 MiB), as
// ReadManifest does; its errors name no file.
func ParseManifest(r io.Reader) (*Manifest, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxManifestSize {
		return nil, fmt.Errorf("larger than %d bytes", maxManifestSize)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Manifest) validate() error {
	if m.Version != ManifestVersion {
		return fmt.Errorf("unsupported manifest version %d", m.Version)
	}
	if m.State != StateRecording && m.State != StateFinished {
		return fmt.Errorf("unknown state %q", m.State)
	}
	if len(m.Streams) > maxStreams {
		return fmt.Errorf("%d streams (at most %d)", len(m.Streams), maxStreams)
	}
	if m.DurationMs < 0 {
		return errors.New("negative duration")
	}
	for i, s := range m.Streams {
		if s.File == "" || !filepath.IsLocal(s.File) || filepath.Base(s.File) != s.File {
			return fmt.Errorf("stream %d: file %q is not a plain name in the session directory", i, s.File)
		}
		if s.OffsetMs < 0 || s.DurationMs < 0 {
			return fmt.Errorf("stream %d: negative offset or duration", i)
		}
	}
	return nil
}

// writeManifest writes m to dir/manifest.json atomically: a temp file in the
// same directory, fsync, rename, fsync of the directory.
func writeManifest(dir string, m *Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	data = append(data, '\n')
	return writeFileAtomic(filepath.Join(dir, ManifestName), data)
}

// writeFileAtomic replaces path with data so a reader (or a crash) sees the old
// or the new content, never a mix.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(name)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	ok = true
	return syncDir(dir)
}

// syncDir makes a directory's entries (a new or renamed file) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
