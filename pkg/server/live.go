package server

import (
	"errors"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"

	"github.com/parley/parley/pkg/mixer"
	"github.com/parley/parley/pkg/recorder"
	"github.com/parley/parley/pkg/room"
)

// Broadcasts (webinar rooms) kept for replay: a recorded webinar's session
// directory holds a marker, broadcastMarker (a dotfile: never served), so
// that the archive lists it as a broadcast; its replay is at a stable URL,
// /replay/{room}/{session}, under the access rules of the recordings
// (recordings_api.go): the presenter's own file when one presenter
// published one stream (ready when the live ends), else the mix once made.

const (
	replayPrefix    = "/replay/"
	broadcastMarker = ".broadcast"
)

// replayPath is the stable URL of a session's replay (without credentials).
func replayPath(roomDir, sessDir string) string { return replayPrefix + roomDir + "/" + sessDir }

// replayLink returns the replay of a recorded room session, signed like a
// participant's link to its recording (valid LinkTTL), or "" when the
// session recorded nothing.
func (rc *recordings) replayLink(room, session string) string {
	roomDir, sessDir := recorder.SafeName(room), recorder.SafeName(session)
	if _, err := os.Stat(filepath.Join(rc.dir, roomDir, sessDir, recorder.ManifestName)); err != nil {
		return ""
	}
	exp := time.Now().Add(rc.cfg.LinkTTL).Truncate(time.Second)
	return replayPath(roomDir, sessDir) + "?" + rc.urls.Sign(recordsScope(roomDir, sessDir), exp)
}

// markBroadcast marks a webinar's recording as a broadcast, once its
// directory exists (the recording started).
func (rc *recordings) markBroadcast(rm *room.Room, s *recorder.Session) {
	if !rm.Webinar() {
		return
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), broadcastMarker), []byte(rm.Name()+"\n"), 0o644); err != nil {
		rc.log.Error("mark a broadcast's recording", "room", rm.Name(), "session", rm.Session(), "err", err)
	}
}

// isBroadcast reports whether a stored session is a broadcast's.
func (s *Server) isBroadcast(roomDir, sessDir string) bool {
	fi, err := s.recs.root.Lstat(roomDir + "/" + sessDir + "/" + broadcastMarker)
	return err == nil && fi.Mode().IsRegular()
}

// errReplayPending says the replay is the mix, not made yet.
var errReplayPending = errors.New("the replay is being mixed")

// replayFile chooses a session's replay (its path below the records
// directory): the one file of its one presenter, else the mix.
func (s *Server) replayFile(ss storedSession, jobs map[string]mixer.Job) (string, error) {
	var files []string
	var people []string
	for _, st := range ss.m.Streams {
		if st.File == "" || recordTypes[path.Ext(st.File)] == "" || !validName(st.File) {
			continue
		}
		files = append(files, st.File)
		if !slices.Contains(people, st.Participant) {
			people = append(people, st.Participant)
		}
	}
	if len(files) == 1 && len(people) == 1 {
		return ss.roomDir + "/" + ss.sessDir + "/" + files[0], nil
	}
	if j, ok := jobs[filepath.Join(s.recs.abs, ss.roomDir, ss.sessDir, recorder.ManifestName)]; ok {
		switch j.Status {
		case mixer.StatusDone:
			if rel, err := filepath.Rel(s.recs.abs, j.Output); err == nil {
				return filepath.ToSlash(rel), nil
			}
		case mixer.StatusFailed:
			return "", errors.New("the mix failed")
		default:
			return "", errReplayPending
		}
	}
	if ss.m.State == recorder.StateRecording {
		return "", errReplayPending
	}
	return "", os.ErrNotExist
}

// replayURL is the replay's URL for v (signed as fileURL signs files).
func (s *Server) replayURL(v viewer, r *http.Request, roomDir, sessDir string) string {
	return s.signedURL(v, r, replayPath(roomDir, sessDir))
}

// serveReplay serves GET /replay/{room}/{session}: a session's replay, with
// HTTP ranges, to whoever may read the session (a token, the session's
// signed link, or a public archive).
func (s *Server) serveReplay(w http.ResponseWriter, r *http.Request) {
	v, ok := s.recordingsViewer(w, r)
	if !ok {
		return
	}
	roomDir, sessDir := r.PathValue("room"), r.PathValue("session")
	if !validName(roomDir) || !validName(sessDir) {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if v.signed && !s.checkSignature(w, r, r.URL.Path, recordsScope(roomDir, sessDir)) {
		return
	}
	m, ok := s.viewableSession(w, v, roomDir, sessDir)
	if !ok {
		return
	}
	rel, err := s.replayFile(storedSession{roomDir: roomDir, sessDir: sessDir, m: m}, s.mixJobs())
	switch {
	case errors.Is(err, errReplayPending):
		w.Header().Set("Retry-After", "30")
		http.Error(w, "the replay is being made (mixed); try again in a few minutes", http.StatusServiceUnavailable)
		return
	case err != nil:
		http.Error(w, "this recording has no replay: "+err.Error(), http.StatusNotFound)
		return
	}
	f, st, ok := s.openRecord(rel)
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", recordTypes[path.Ext(rel)])
	w.Header().Set("Content-Security-Policy", "sandbox")
	w.Header().Set("Cache-Control", "private, no-store")
	http.ServeContent(w, r, path.Base(rel), st.ModTime(), f)
}
