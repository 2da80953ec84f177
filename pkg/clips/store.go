package clips

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/recorder"
)

// Clip is one stored media message.
type Clip struct {
	ID   string `json:"id"`
	Room string `json:"room"`
	// Author is the name the author had in the room; Owner is who may
	// delete it as its author (the identity of their access token, or the
	// name in a room without tokens).
	Author  string    `json:"author"`
	Owner   string    `json:"owner"`
	Created time.Time `json:"created"`
	// Expires is when the sweeper removes it (zero: never).
	Expires    time.Time `json:"expires,omitzero"`
	DurationMs int64     `json:"durationMs"`
	Bytes      int64     `json:"bytes"`
	// Kind is "audio" or "video"; MIME what it is served as.
	Kind string `json:"kind"`
	MIME string `json:"mime"`
	// File is the media file's name in the room's folder.
	File string `json:"file"`
	// Session is the room session it was posted in (a recorded one lists it
	// in its manifest), if the room was live.
	Session string `json:"session,omitempty"`
}

// Why clips are removed (OnDelete's reason, CLIP_DELETED's).
const (
	ReasonDeleted = "deleted" // by its author or a moderator
	ReasonExpired = "expired" // its lifetime passed (the sweeper)
	ReasonEvicted = "evicted" // the oldest, removed to make room for a new one
)

// Error is a refusal with the HTTP status and code to answer it with.
type Error struct {
	Status int
	Code   string
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func refuse(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Refusal codes.
const (
	CodeTooLarge  = "TOO_LARGE"
	CodeTooLong   = "TOO_LONG"
	CodeNotMedia  = "NOT_MEDIA"
	CodeNoVideo   = "VIDEO_NOT_ALLOWED"
	CodeDiskLow   = "DISK_LOW"
	CodeDisabled  = "CLIPS_DISABLED"
	CodeNotFound  = "NOT_FOUND"
	CodeTooMany   = "TOO_MANY_UPLOADS"
	CodeIncomplet = "INCOMPLETE"
)

// Config configures a Store.
type Config struct {
	// Dir holds one folder per room (its clips and catalog.json).
	Dir string
	// Limits returns a room's settings.
	Limits func(room string) Limits
	// MinFreeBytes is the free disk space floor the clips share with the
	// recordings: an upload that could take the disk below it is refused.
	MinFreeBytes int64
	// FreeSpace, when set, replaces statfs of Dir (tests).
	FreeSpace func(dir string) (int64, error)
	// Probe reads clips (default FFprobe).
	Probe Prober
	// MaxUploads bounds the uploads streaming at once (default 32) and
	// MaxProbes the probes running at once (default 2).
	MaxUploads, MaxProbes int
	// SweepInterval is how often expired clips are removed (default 30 s).
	SweepInterval time.Duration
	// OnDelete is called with clips removed by the sweeper (expired); the
	// other removals are returned to the caller.
	OnDelete func(c Clip, reason string)
	// Now is the clock (tests); nil is time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Store keeps the rooms' clips on disk.
type Store struct {
	cfg     Config
	log     *slog.Logger
	uploads chan struct{}
	probes  chan struct{}

	mu       sync.Mutex
	rooms    map[string]*roomClips // by room name
	reserved int64                 // bytes of uploads in flight

	read     atomic.Int64 // bytes read from upload bodies
	refusals sync.Map     // code -> *atomic.Int64

	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	running atomic.Bool
}

type roomClips struct {
	dir   string // folder name below Dir
	clips []Clip // oldest first
}

const catalogName = "catalog.json"

var idRE = regexp.MustCompile(`^c-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$`)

// ValidID reports whether id may name a clip.
func ValidID(id string) bool { return idRE.MatchString(id) }

// Open opens the clips directory (made if missing), reads every room's
// catalog, and removes what a crash left behind: unfinished uploads and
// files no catalog lists. Run starts the sweeper.
func Open(cfg Config) (*Store, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Probe == nil {
		cfg.Probe = FFprobe
	}
	if cfg.FreeSpace == nil {
		cfg.FreeSpace = recorder.FreeSpace
	}
	if cfg.Limits == nil {
		cfg.Limits = func(string) Limits { return DefaultLimits() }
	}
	if cfg.MaxUploads <= 0 {
		cfg.MaxUploads = 32
	}
	if cfg.MaxProbes <= 0 {
		cfg.MaxProbes = 2
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 30 * time.Second
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("clips directory: %w", err)
	}
	s := &Store{cfg: cfg, log: cfg.Logger, uploads: make(chan struct{}, cfg.MaxUploads),
		probes: make(chan struct{}, cfg.MaxProbes), rooms: map[string]*roomClips{},
		stop: make(chan struct{}), done: make(chan struct{})}
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("clips directory: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if err := s.load(e.Name()); err != nil {
			s.log.Error("clips: a room's catalog is unreadable; its folder is left as it is", "dir", e.Name(), "err", err)
		}
	}
	return s, nil
}

// load reads one room folder's catalog and tidies the folder.
func (s *Store) load(dir string) error {
	full := filepath.Join(s.cfg.Dir, dir)
	b, err := os.ReadFile(filepath.Join(full, catalogName))
	if errors.Is(err, fs.ErrNotExist) {
		b, err = []byte(`{}`), nil
	}
	if err != nil {
		return err
	}
	var cat catalog
	if err := json.Unmarshal(b, &cat); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	keep := map[string]bool{catalogName: true}
	var clips []Clip
	for _, c := range cat.Clips {
		st, err := os.Lstat(filepath.Join(full, c.File))
		if !ValidID(c.ID) || c.File != c.ID+filepath.Ext(c.File) || err != nil || !st.Mode().IsRegular() {
			s.log.Warn("clips: catalog entry without its file dropped", "room", cat.Room, "clip", c.ID)
			continue
		}
		keep[c.File] = true
		clips = append(clips, c)
	}
	files, _ := os.ReadDir(full)
	for _, f := range files {
		if !keep[f.Name()] {
			// An upload a crash interrupted, or a file whose catalog entry
			// was never written (or was removed before the file was).
			s.log.Info("clips: removing a file no catalog lists", "dir", dir, "file", f.Name())
			_ = os.RemoveAll(filepath.Join(full, f.Name()))
		}
	}
	if cat.Room == "" {
		return nil
	}
	s.rooms[cat.Room] = &roomClips{dir: dir, clips: clips}
	if len(clips) != len(cat.Clips) {
		return s.saveLocked(cat.Room)
	}
	return nil
}

type catalog struct {
	Room  string `json:"room"`
	Clips []Clip `json:"clips"`
}

// room returns a room's clips, making its folder.
func (s *Store) roomLocked(room string) (*roomClips, error) {
	if rc := s.rooms[room]; rc != nil {
		return rc, nil
	}
	rc := &roomClips{dir: recorder.SafeName(room)}
	if err := os.MkdirAll(filepath.Join(s.cfg.Dir, rc.dir), 0o755); err != nil {
		return nil, fmt.Errorf("clips folder of room %q: %w", room, err)
	}
	s.rooms[room] = rc
	return rc, nil
}

// saveLocked writes a room's catalog atomically (a temporary file, synced,
// renamed over the old one, and the folder synced).
func (s *Store) saveLocked(room string) error {
	rc := s.rooms[room]
	full := filepath.Join(s.cfg.Dir, rc.dir)
	b, err := json.MarshalIndent(catalog{Room: room, Clips: rc.clips}, "", " ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(full, ".catalog.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write catalog: %w", err)
	}
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, filepath.Join(full, catalogName))
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write catalog: %w", werr)
	}
	syncDir(full)
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// Upload is a clip to add.
type Upload struct {
	Room, Author, Owner string
	// Session is the live room session, if any.
	Session string
	// Body is the clip, read until EOF; Length is its announced length
	// (-1: unknown).
	Body   io.Reader
	Length int64
}

// Added is what Add did: the clip, and the clips removed to make room.
type Added struct {
	Clip    Clip
	Evicted []Clip
}

// Stats counts what the store holds and has done.
type Stats struct {
	Rooms, Clips int
	Bytes        int64
	// BytesRead counts the bytes read from upload bodies, refused ones included.
	BytesRead int64
	// Refused counts refused uploads by code.
	Refused map[string]int64
}

// Stats returns the store's counts.
func (s *Store) Stats() Stats {
	st := Stats{BytesRead: s.read.Load(), Refused: map[string]int64{}}
	s.refusals.Range(func(k, v any) bool {
		st.Refused[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rc := range s.rooms {
		if len(rc.clips) > 0 {
			st.Rooms++
		}
		st.Clips += len(rc.clips)
		for _, c := range rc.clips {
			st.Bytes += c.Bytes
		}
	}
	return st
}

func (s *Store) refused(err error) error {
	var e *Error
	if errors.As(err, &e) {
		v, _ := s.refusals.LoadOrStore(e.Code, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	return err
}

// countingReader counts what is read into the store's total.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Add stores a clip: it streams the body to a temporary file in the room's
// folder and stops reading as soon as the body passes the room's
// maxBlobBytes, checks its first bytes (WebM, Ogg or MP4), probes it (the
// streams allowed, the duration within maxClipSizeSec), removes expired and
// then the oldest clips to keep within maxClipCount and
// maxMediaFolderBytes, and writes the catalog. Refusals are *Error.
func (s *Store) Add(ctx context.Context, u Upload) (Added, error) {
	a, err := s.add(ctx, u)
	if err != nil {
		return Added{}, s.refused(err)
	}
	return a, nil
}

func (s *Store) add(ctx context.Context, u Upload) (Added, error) {
	lim := s.cfg.Limits(u.Room)
	if !lim.Enabled {
		return Added{}, refuse(http.StatusForbidden, CodeDisabled, "media messages are off in room %q", u.Room)
	}
	if u.Length > lim.MaxBlobBytes {
		return Added{}, refuse(http.StatusRequestEntityTooLarge, CodeTooLarge,
			"the clip is %d bytes; this room takes clips of at most %d bytes", u.Length, lim.MaxBlobBytes)
	}
	select {
	case s.uploads <- struct{}{}:
		defer func() { <-s.uploads }()
	default:
		return Added{}, refuse(http.StatusServiceUnavailable, CodeTooMany, "the server is receiving too many clips at once; try again in a moment")
	}
	// The disk floor: this upload, and every other in flight, may take the
	// room's largest clip.
	free, err := s.cfg.FreeSpace(s.cfg.Dir)
	if err != nil {
		return Added{}, fmt.Errorf("free disk space: %w", err)
	}
	s.mu.Lock()
	if free-s.reserved-lim.MaxBlobBytes < s.cfg.MinFreeBytes {
		s.mu.Unlock()
		return Added{}, refuse(http.StatusInsufficientStorage, CodeDiskLow, "the server is low on disk space; clips cannot be stored now")
	}
	s.reserved += lim.MaxBlobBytes
	rc, err := s.roomLocked(u.Room)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.reserved -= lim.MaxBlobBytes
		s.mu.Unlock()
	}()
	if err != nil {
		return Added{}, err
	}
	folder := filepath.Join(s.cfg.Dir, rc.dir)

	// Stream to a temporary file, sniffing the first bytes before the rest.
	body := bufio.NewReaderSize(countingReader{r: u.Body, n: &s.read}, 4096)
	head, err := body.Peek(SniffBytes)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return Added{}, readError(err, lim)
	}
	if len(head) == 0 {
		return Added{}, refuse(http.StatusBadRequest, CodeNotMedia, "the clip is empty")
	}
	container := Sniff(head)
	if container == "" {
		return Added{}, refuse(http.StatusUnsupportedMediaType, CodeNotMedia, "not a WebM, Ogg or MP4 file")
	}
	tmp, err := os.CreateTemp(folder, ".upload-*")
	if err != nil {
		return Added{}, fmt.Errorf("clip upload: %w", err)
	}
	tmpName := tmp.Name()
	keep := false
	defer func() {
		if !keep {
			_ = os.Remove(tmpName)
		}
	}()
	n, err := io.Copy(tmp, io.LimitReader(body, lim.MaxBlobBytes+1))
	if err == nil && n > lim.MaxBlobBytes {
		err = refuse(http.StatusRequestEntityTooLarge, CodeTooLarge, "the clip passed %d bytes, the most this room takes", lim.MaxBlobBytes)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Added{}, readError(err, lim)
	}
	if u.Length >= 0 && n != u.Length {
		return Added{}, refuse(http.StatusBadRequest, CodeIncomplet, "the clip ended after %d of %d bytes", n, u.Length)
	}

	select {
	case s.probes <- struct{}{}:
	case <-ctx.Done():
		return Added{}, ctx.Err()
	}
	p, err := s.cfg.Probe(ctx, tmpName)
	<-s.probes
	if err != nil {
		if errors.Is(err, ErrUnreadable) {
			return Added{}, refuse(http.StatusUnsupportedMediaType, CodeNotMedia, "%v", err)
		}
		return Added{}, fmt.Errorf("probe clip: %w", err)
	}
	if !formatMatches(container, p.Format) {
		return Added{}, refuse(http.StatusUnsupportedMediaType, CodeNotMedia, "the file starts as %s but reads as %s", container, p.Format)
	}
	// MediaRecorder stops a little after the page asks; a clip may pass
	// the limit by a fraction of a second.
	slack := max(300*time.Millisecond, time.Duration(lim.MaxClipSec*0.03*float64(time.Second)))
	if p.Duration > time.Duration(lim.MaxClipSec*float64(time.Second))+slack {
		return Added{}, refuse(http.StatusUnprocessableEntity, CodeTooLong, "the clip lasts %.1f s; this room takes clips of at most %g s",
			p.Duration.Seconds(), lim.MaxClipSec)
	}
	if p.Video && !lim.AllowVideo {
		return Added{}, refuse(http.StatusUnprocessableEntity, CodeNoVideo, "this room takes audio clips only")
	}
	if lim.MaxFolderBytes > 0 && n > lim.MaxFolderBytes {
		return Added{}, refuse(http.StatusRequestEntityTooLarge, CodeTooLarge, "the clip is larger than the room's whole folder (%d bytes)", lim.MaxFolderBytes)
	}

	now := s.cfg.Now()
	c := Clip{ID: newID(now), Room: u.Room, Author: u.Author, Owner: u.Owner, Created: now.UTC(),
		DurationMs: p.Duration.Milliseconds(), Bytes: n, Kind: "audio", MIME: mimeOf(container, p.Video), Session: u.Session}
	if p.Video {
		c.Kind = "video"
	}
	if lim.Lifetime > 0 {
		c.Expires = c.Created.Add(lim.Lifetime)
	}
	c.File = c.ID + ext(container)

	s.mu.Lock()
	defer s.mu.Unlock()
	rc, err = s.roomLocked(u.Room)
	if err != nil {
		return Added{}, err
	}
	var out Added
	out.Evicted = append(out.Evicted, s.takeExpiredLocked(rc, now)...)
	bytes := int64(0)
	for _, o := range rc.clips {
		bytes += o.Bytes
	}
	for len(rc.clips) > 0 && ((lim.MaxClipCount > 0 && len(rc.clips)+1 > lim.MaxClipCount) ||
		(lim.MaxFolderBytes > 0 && bytes+n > lim.MaxFolderBytes)) {
		old := rc.clips[0]
		rc.clips = rc.clips[1:]
		bytes -= old.Bytes
		out.Evicted = append(out.Evicted, old)
	}
	if err := os.Rename(tmpName, filepath.Join(s.cfg.Dir, rc.dir, c.File)); err != nil {
		return Added{}, fmt.Errorf("store clip: %w", err)
	}
	keep = true
	rc.clips = append(rc.clips, c)
	if err := s.saveLocked(u.Room); err != nil {
		// Not in the catalog: the file goes; the evicted stay gone from the
		// catalog in memory and will be removed from the disk at restart.
		rc.clips = rc.clips[:len(rc.clips)-1]
		_ = os.Remove(filepath.Join(s.cfg.Dir, rc.dir, c.File))
		return Added{}, err
	}
	s.removeFilesLocked(rc, out.Evicted)
	for i := range out.Evicted {
		if out.Evicted[i].Expires.IsZero() || now.Before(out.Evicted[i].Expires) {
			s.log.Info("clip evicted to make room", "room", u.Room, "clip", out.Evicted[i].ID)
		}
	}
	out.Clip = c
	s.log.Info("clip added", "room", u.Room, "clip", c.ID, "author", u.Author, "bytes", n, "duration", p.Duration, "kind", c.Kind)
	return out, nil
}

// readError turns a body's read error into a refusal: http.MaxBytesReader's
// limit is the room's size limit.
func readError(err error, lim Limits) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return refuse(http.StatusRequestEntityTooLarge, CodeTooLarge, "the clip passed %d bytes, the most this room takes", lim.MaxBlobBytes)
	}
	return refuse(http.StatusBadRequest, CodeIncomplet, "the upload broke off: %v", err)
}

func newID(now time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "c-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// takeExpiredLocked removes the room's expired clips from its list and returns them.
func (s *Store) takeExpiredLocked(rc *roomClips, now time.Time) []Clip {
	var gone []Clip
	rc.clips = slices.DeleteFunc(rc.clips, func(c Clip) bool {
		if !c.Expires.IsZero() && !now.Before(c.Expires) {
			gone = append(gone, c)
			return true
		}
		return false
	})
	return gone
}

func (s *Store) removeFilesLocked(rc *roomClips, gone []Clip) {
	for _, c := range gone {
		if err := os.Remove(filepath.Join(s.cfg.Dir, rc.dir, c.File)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("clips: remove file", "room", c.Room, "clip", c.ID, "err", err)
		}
	}
}

// List returns a room's clips, oldest first, without the expired ones.
func (s *Store) List(room string) []Clip {
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := s.rooms[room]
	if rc == nil {
		return []Clip{}
	}
	now := s.cfg.Now()
	out := make([]Clip, 0, len(rc.clips))
	for _, c := range rc.clips {
		if c.Expires.IsZero() || now.Before(c.Expires) {
			out = append(out, c)
		}
	}
	return out
}

// Get returns one clip.
func (s *Store) Get(room, id string) (Clip, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rc := s.rooms[room]; rc != nil {
		for _, c := range rc.clips {
			if c.ID == id && (c.Expires.IsZero() || s.cfg.Now().Before(c.Expires)) {
				return c, true
			}
		}
	}
	return Clip{}, false
}

// FilePath returns where a clip's file is on disk (for the server's own
// use, such as copying it into a recording; never for an answer).
func (s *Store) FilePath(c Clip) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := s.rooms[c.Room]
	if rc == nil {
		return "", false
	}
	return filepath.Join(s.cfg.Dir, rc.dir, c.File), true
}

// OpenFile opens a clip's media file for reading.
func (s *Store) OpenFile(room, id string) (*os.File, Clip, error) {
	s.mu.Lock()
	rc := s.rooms[room]
	var dir string
	if rc != nil {
		dir = rc.dir
	}
	s.mu.Unlock()
	c, ok := s.Get(room, id)
	if !ok {
		return nil, Clip{}, refuse(http.StatusNotFound, CodeNotFound, "no such clip (it may have expired or been deleted)")
	}
	root, err := os.OpenRoot(filepath.Join(s.cfg.Dir, dir))
	if err != nil {
		return nil, Clip{}, fmt.Errorf("open clip: %w", err)
	}
	defer root.Close()
	if fi, err := root.Lstat(c.File); err != nil || !fi.Mode().IsRegular() {
		return nil, Clip{}, refuse(http.StatusNotFound, CodeNotFound, "no such clip")
	}
	f, err := root.Open(c.File)
	if err != nil {
		return nil, Clip{}, refuse(http.StatusNotFound, CodeNotFound, "no such clip")
	}
	return f, c, nil
}

// Delete removes one clip (its catalog entry, then its file).
func (s *Store) Delete(room, id string) (Clip, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := s.rooms[room]
	if rc == nil {
		return Clip{}, refuse(http.StatusNotFound, CodeNotFound, "no such clip")
	}
	i := slices.IndexFunc(rc.clips, func(c Clip) bool { return c.ID == id })
	if i < 0 {
		return Clip{}, refuse(http.StatusNotFound, CodeNotFound, "no such clip")
	}
	c := rc.clips[i]
	rc.clips = slices.Delete(rc.clips, i, i+1)
	if err := s.saveLocked(room); err != nil {
		rc.clips = slices.Insert(rc.clips, i, c)
		return Clip{}, err
	}
	s.removeFilesLocked(rc, []Clip{c})
	s.log.Info("clip deleted", "room", room, "clip", id)
	return c, nil
}

// Sweep removes every expired clip and reports each to OnDelete.
func (s *Store) Sweep() {
	now := s.cfg.Now()
	var gone []Clip
	s.mu.Lock()
	for room, rc := range s.rooms {
		exp := s.takeExpiredLocked(rc, now)
		if len(exp) == 0 {
			continue
		}
		if err := s.saveLocked(room); err != nil {
			s.log.Error("clips: sweep", "room", room, "err", err)
			rc.clips = append(exp, rc.clips...)
			continue
		}
		s.removeFilesLocked(rc, exp)
		gone = append(gone, exp...)
	}
	s.mu.Unlock()
	for _, c := range gone {
		s.log.Info("clip expired", "room", c.Room, "clip", c.ID)
		if s.cfg.OnDelete != nil {
			s.cfg.OnDelete(c, ReasonExpired)
		}
	}
}

// Run sweeps expired clips every SweepInterval until Close.
func (s *Store) Run() {
	s.running.Store(true)
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.cfg.SweepInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.Sweep()
			case <-s.stop:
				return
			}
		}
	}()
}

// Close stops the sweeper (if Run started it) and waits for it to end.
func (s *Store) Close() {
	s.once.Do(func() {
		close(s.stop)
		if s.running.Load() {
			<-s.done
		}
	})
}
