package recorder

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// ClipEntry is a media message (pkg/clips) posted to the room during a
// recorded session: its file, copied into the session directory, and
// when it was posted on the session's time line.
type ClipEntry struct {
	ID     string `json:"id"`
	Author string `json:"author"`
	// File is the copy's name, relative to the session directory.
	File string `json:"file"`
	// OffsetMs is when it was posted on the time line.
	OffsetMs   int64  `json:"offsetMs"`
	DurationMs int64  `json:"durationMs"`
	Kind       string `json:"kind"` // audio or video
	// Mix asks the mixer to play it in the mix at OffsetMs.
	Mix bool `json:"mix,omitempty"`
}

// Offset is when the clip was posted on the session's time line.
func (e ClipEntry) Offset() time.Duration { return time.Duration(e.OffsetMs) * time.Millisecond }

// ErrNotRecording is AddClip's error for a session that has recorded
// nothing yet (no directory) or is over.
var ErrNotRecording = errors.New("the room session is not being recorded")

// AddClip lists a media message posted at posted in the manifest and puts
// a copy of its file (src; a hard link where the file system allows)
// beside the recordings as clip-<id><ext>.
func (s *Session) AddClip(src string, posted time.Time, e ClipEntry) error {
	s.mu.Lock()
	ok := s.created && !s.closed && !s.stopping
	start := s.m.Start
	s.mu.Unlock()
	if !ok {
		return ErrNotRecording
	}
	e.File = "clip-" + SafeName(e.ID) + filepath.Ext(src)
	e.OffsetMs = max(posted.Sub(start).Milliseconds(), 0)
	dst := filepath.Join(s.dir, e.File)
	if err := os.Link(src, dst); err != nil {
		if err := copyClipFile(src, dst); err != nil {
			return fmt.Errorf("copy clip into the recording: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = os.Remove(dst)
		return ErrNotRecording
	}
	s.m.Clips = append(s.m.Clips, e)
	return s.saveLocked()
}

// copyClipFile copies a clip into the session's folder through a .partial file,
// renamed when it is complete (a crash leaves no half clip under its name).
func copyClipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".partial"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
