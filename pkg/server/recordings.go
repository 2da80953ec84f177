package server

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/parley/parley/pkg/recorder"
	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/sfu"
)

// recordings connects rooms to the recorder: a recorded room session gets a
// recorder.Session (made at its first recorded stream), each recorded stream
// a file, and when the room finalizes the session is closed and handed on
// (to the mixer queue).
type recordings struct {
	dir      string
	log      *slog.Logger
	finished func(manifest string) // called with the manifest of each closed session

	mu       sync.Mutex
	sessions map[string]*recorder.Session // by room session id
}

func newRecordings(dir string, log *slog.Logger, finished func(string)) *recordings {
	return &recordings{dir: dir, log: log, finished: finished, sessions: make(map[string]*recorder.Session)}
}

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
		w, err := sess.AddStream(info)
		if err != nil {
			return nil, fmt.Errorf("record stream %s: %w", rs.StreamID, err)
		}
		rc.log.Info("recording stream", "room", rm.Name(), "stream", rs.StreamID, "participant", rs.Participant,
			"file", w.File())
		return w, nil
	})
}

// session returns the recorder session of a room session, starting it.
func (rc *recordings) session(rm *room.Room) (*recorder.Session, error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if s := rc.sessions[rm.Session()]; s != nil {
		return s, nil
	}
	// The recorder puts the files in <dir>/<room>/<room session>/.
	s, err := recorder.StartSession(rc.dir, rm.Name(), rm.Session(), rm.Started(),
		recorder.Options{Logger: rc.log})
	if err != nil {
		return nil, fmt.Errorf("start recording of room %q: %w", rm.Name(), err)
	}
	rc.sessions[rm.Session()] = s
	rc.log.Info("recording room session", "room", rm.Name(), "session", rm.Session(), "dir", s.Dir())
	return s, nil
}

// finalized closes a finalized room session's recording (its router has
// already closed every stream) and hands its manifest on.
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
	rc.log.Info("recording finished", "room", info.Room, "session", info.Session, "manifest", s.ManifestPath())
	if rc.finished != nil {
		rc.finished(s.ManifestPath())
	}
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
