package server

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/recorder"
	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/sfu"
)

// RecordingsConfig says who may read the recordings and how much a room
// session may record (docs/security.md, docs/recording.md).
type RecordingsConfig struct {
	// Public serves the archive (GET /api/recordings and /records/) to
	// anyone, without a token or a signed link: an operator's explicit
	// choice, never the default.
	Public bool
	// LinkTTL is how long the signed link that each participant of a
	// recorded room session gets (RECORDING event) stays valid; long enough
	// to outlive the mix. Default 72 h.
	LinkTTL time.Duration
	// URLTTL is how long the signed file URLs in the API's answers to token
	// holders stay valid (never past the token's own expiry). Default 6 h.
	URLTTL time.Duration
	// MaxDuration bounds the recorded time of a room session; 0: no bound.
	MaxDuration time.Duration
	// MaxBytes bounds the bytes of a room session's files; 0: no bound.
	MaxBytes int64
	// MinFreeBytes is the free disk space below which recordings stop (and
	// do not start); 0: no floor.
	MinFreeBytes int64
	// FreeSpace, when set, replaces the free-space check (statfs of the
	// records directory); tests use it.
	FreeSpace func(dir string) (int64, error)
	// CheckInterval is how often the free space is checked while recording;
	// default 1 s.
	CheckInterval time.Duration
}

func (c RecordingsConfig) withDefaults() RecordingsConfig {
	if c.LinkTTL <= 0 {
		c.LinkTTL = 72 * time.Hour
	}
	if c.URLTTL <= 0 {
		c.URLTTL = 6 * time.Hour
	}
	return c
}

// recordings connects rooms to the recorder: a recorded room session gets a
// recorder.Session (made at its first recorded stream), each recorded stream
// a writer (whose file is made when its media arrives), and when the room
// finalizes, or a limit stops the recording first, the session is closed
// and handed on (to the mixer queue). The room hears of it (RECORDING), with
// a signed link to the session's recording page for each participant.
type recordings struct {
	dir  string
	root *os.Root // dir, through which everything served is read (recordings_api.go)
	abs  string   // dir's absolute path (the mix queue's jobs name manifests by it)
	log  *slog.Logger
	cfg  RecordingsConfig
	urls *auth.URLSigner // signs the links and file URLs handed out
	// finished, when set, is called with the manifest of each closed session
	// (set before the server serves).
	finished func(manifest string)
	// rooms tells whether a room session is still live (set before the
	// server serves): a recorder is never made for one that finalized.
	rooms *room.Registry

	mu       sync.Mutex
	sessions map[string]*recorder.Session // by room session id
}

// newRecordings prepares the records directory (made if missing).
func newRecordings(dir string, cfg RecordingsConfig, urls *auth.URLSigner, log *slog.Logger) (*recordings, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("records directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("records directory: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("records directory: %w", err)
	}
	return &recordings{dir: dir, root: root, abs: abs, cfg: cfg.withDefaults(), urls: urls, log: log,
		sessions: make(map[string]*recorder.Session)}, nil
}

// close releases the records directory.
func (rc *recordings) close() { _ = rc.root.Close() }

// attach gives a room session's router its recorder.
func (rc *recordings) attach(rm *room.Room, r *sfu.Router) {
	r.SetRecorder(func(rs sfu.RecordStream) (sfu.StreamRecorder, error) {
		sess, err := rc.session(rm)
		if err != nil {
			return nil, err
		}
		info := recorder.StreamInfo{Participant: rs.Participant, StreamID: rs.StreamID, Kind: rs.Kind,
			RequestKeyframe: rs.RequestKeyframe}
		for _, t := range rs.Tracks {
			info.Tracks = append(info.Tracks, recorder.TrackInfo{Kind: t.Kind, MimeType: t.MimeType,
				ClockRate: t.ClockRate, Channels: t.Channels})
		}
		if d := r.ActiveSpeakers().Dominant; d != nil {
			// The speaker of the time before this session's first stream
			// (a recording a moderator started mid-meeting).
			sess.SpeakerChanged(time.Now(), d.Participant, d.StreamID)
		}
		w, err := sess.AddStream(info)
		if errors.Is(err, recorder.ErrStopped) {
			// A limit ended the room session's recording (the room was told):
			// the stream goes on unrecorded.
			rc.log.Info("stream not recorded: the room session's recording has ended", "room", rm.Name(),
				"stream", rs.StreamID, "stopped", sess.Stopped())
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("record stream %s: %w", rs.StreamID, err)
		}
		rc.log.Info("stream to record once its media arrives", "room", rm.Name(), "stream", rs.StreamID,
			"participant", rs.Participant)
		return w, nil
	})
	// The dominant speaker's changes go into the manifest of a recording
	// under way (the mixer's speaker layout follows them).
	r.OnActiveSpeakers(func(as sfu.ActiveSpeakers) {
		if as.Dominant == nil {
			return
		}
		rc.mu.Lock()
		sess := rc.sessions[rm.Session()]
		rc.mu.Unlock()
		if sess != nil {
			sess.SpeakerChanged(as.At, as.Dominant.Participant, as.Dominant.StreamID)
		}
	})
}

// session returns the recorder session of a room session, starting it.
func (rc *recordings) session(rm *room.Room) (*recorder.Session, error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if s := rc.sessions[rm.Session()]; s != nil {
		return s, nil
	}
	// A publish racing the room's end: its finalize hook (which takes rc.mu
	// after the room left the registry) would never close this session.
	if rc.rooms != nil && rc.rooms.Room(rm.Name()) != rm {
		return nil, fmt.Errorf("room %q: its session %s has ended", rm.Name(), rm.Session())
	}
	var s *recorder.Session
	opts := recorder.Options{Logger: rc.log, MaxDuration: rc.cfg.MaxDuration, MaxBytes: rc.cfg.MaxBytes,
		MinFreeBytes: rc.cfg.MinFreeBytes, FreeSpace: rc.cfg.FreeSpace, CheckInterval: rc.cfg.CheckInterval,
		// The callbacks run after StartSession returned (from the session's
		// goroutines), so s is set.
		OnStart: func() { rc.started(rm, s) },
		OnStop:  func(reason recorder.StopReason) { rc.stopped(rm, s, reason) },
	}
	// The recorder puts the files in <dir>/<room>/<room session>/, once media arrives.
	s, err := recorder.StartSession(rc.dir, rm.Name(), rm.Session(), rm.Started(), opts)
	if err != nil {
		return nil, fmt.Errorf("start recording of room %q: %w", rm.Name(), err)
	}
	rc.sessions[rm.Session()] = s
	rc.log.Info("room session to record", "room", rm.Name(), "session", rm.Session(), "dir", s.Dir())
	return s, nil
}

// sessionDirs returns the names of a session's room and session directories.
func sessionDirs(s *recorder.Session) (roomDir, sessDir string) {
	return filepath.Base(filepath.Dir(s.Dir())), filepath.Base(s.Dir())
}

// recordingEvent makes a RECORDING event; with a link, each call signs a
// fresh one (valid LinkTTL from now).
func (rc *recordings) recordingEvent(s *recorder.Session, status, reason string, withLink bool) func() *protocol.Event {
	roomDir, sessDir := sessionDirs(s)
	return func() *protocol.Event {
		ev := &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventRecording, Status: status, Reason: reason}
		if withLink {
			url, exp := rc.link(roomDir, sessDir)
			ev.RecordingURL, ev.RecordingExpires = url, exp.UnixMilli()
		}
		return ev
	}
}

// started tells the room its recording began, giving everyone in it (and
// everyone who joins while it records) a link to the session's recording.
func (rc *recordings) started(rm *room.Room, s *recorder.Session) {
	rc.log.Info("recording started", "room", rm.Name(), "session", rm.Session())
	rc.markBroadcast(rm, s)
	rm.Announce(rc.recordingEvent(s, protocol.RecordingStarted, "", true), true)
}

// stopped hands the finished session on at once (its mix is queued) and
// then tells the room a limit stopped its recording (with the link, if
// anything was recorded): whoever follows the link finds the mix queued.
func (rc *recordings) stopped(rm *room.Room, s *recorder.Session, reason recorder.StopReason) {
	recorded := s.Recorded()
	rc.log.Warn("recording stopped", "room", rm.Name(), "session", rm.Session(), "reason", reason, "recorded", recorded)
	if recorded && rc.finished != nil {
		rc.finished(s.ManifestPath())
	}
	rm.Announce(rc.recordingEvent(s, protocol.RecordingStopped, string(reason), recorded), false)
}

// finalized closes a finalized room session's recording (its router has
// already closed every stream) and hands its manifest on, unless nothing
// was recorded or a limit stopped it before (it was handed on then).
func (rc *recordings) finalized(info room.Finalized) {
	rc.mu.Lock()
	s := rc.sessions[info.Session]
	delete(rc.sessions, info.Session)
	rc.mu.Unlock()
	if s == nil {
		return
	}
	if err := s.Close(info.Ended); err != nil {
		rc.log.Error("close recording", "room", info.Room, "session", info.Session, "err", err)
	}
	if !s.Recorded() {
		rc.log.Info("nothing recorded: no recorded stream's media arrived", "room", info.Room, "session", info.Session)
		return
	}
	if s.Stopped() != "" {
		return // stopped handed it on
	}
	rc.log.Info("recording finished", "room", info.Room, "session", info.Session, "manifest", s.ManifestPath())
	if rc.finished != nil {
		rc.finished(s.ManifestPath())
	}
}

// addClip lists a media message posted in a recorded room session in its
// manifest (with a copy of its file), for the mixer to play at that time
// when mix is set. A room session that records nothing (yet) gets none.
func (rc *recordings) addClip(roomSession, src string, e recorder.ClipEntry, posted time.Time) {
	rc.mu.Lock()
	s := rc.sessions[roomSession]
	rc.mu.Unlock()
	if s == nil {
		return
	}
	if err := s.AddClip(src, posted, e); err != nil {
		if !errors.Is(err, recorder.ErrNotRecording) {
			rc.log.Error("clip into the recording", "session", roomSession, "clip", e.ID, "err", err)
		}
		return
	}
	rc.log.Info("clip in the recording", "session", roomSession, "clip", e.ID, "mix", e.Mix)
}

// recover closes the sessions a previous run left unfinished (a crash) and
// hands each on, like a finalized one.
func (rc *recordings) recover() {
	dirs, err := recorder.Unfinished(rc.dir)
	if err != nil {
		rc.log.Error("look for unfinished recordings", "dir", rc.dir, "err", err)
		return
	}
	for _, d := range dirs {
		m, err := recorder.Recover(d)
		if err != nil {
			rc.log.Error("recover recording", "dir", d, "err", err)
			continue
		}
		rc.log.Warn("recovered an unfinished recording", "room", m.Room, "session", m.SessionID, "dir", d)
		if rc.finished != nil {
			rc.finished(filepath.Join(d, recorder.ManifestName))
		}
	}
}
