package server

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/mixer"
	"github.com/parley/parley/pkg/recorder"
)

// The recordings archive is private in every access mode: GET
// /api/recordings, GET /api/recordings/{room}/{session} and the files under
// /records/ need a token with the admin grant, or the record grant for the
// room (which the manifest names), or a signed URL the server issued: the
// API's file URLs (one file), or a participant's link (one room session).
// RecordingsConfig.Public opens them to anyone. Only the recordings and the
// mixes are served (by extension, as regular files reached without a
// symbolic link, below <room>/<session>/): never a directory listing, a
// dotfile, the manifest, the mix queue (.mixjobs) or ffmpeg's logs. No answer
// names a path of the server's file system.

const recordsPrefix = "/records/"

// recordTypes are the files served under /records/, by extension: the
// per-stream recordings and the mixes.
var recordTypes = map[string]string{".webm": "video/webm", ".mkv": "video/x-matroska", ".mp4": "video/mp4"}

// recordingInfo is one room session in GET /api/recordings.
type recordingInfo struct {
	Room         string         `json:"room"`
	Session      string         `json:"session"`
	Path         string         `json:"path"` // "<room dir>/<session dir>": its id in /api/recordings/{room}/{session}
	State        string         `json:"state"`
	Recovered    bool           `json:"recovered,omitempty"`
	Stopped      string         `json:"stopped,omitempty"`
	Start        time.Time      `json:"start"`
	End          time.Time      `json:"end,omitzero"`
	DurationMs   int64          `json:"durationMs"`
	Participants []string       `json:"participants"`
	Streams      []recordedFile `json:"streams"`
	Mix          *mixInfo       `json:"mix,omitempty"`
	// Broadcast: a webinar's recording; Replay is its replay's URL (live.go).
	Broadcast bool   `json:"broadcast,omitempty"`
	Replay    string `json:"replay,omitempty"`
}

type recordedFile struct {
	Participant string `json:"participant"`
	Kind        string `json:"kind"`
	URL         string `json:"url"`
	OffsetMs    int64  `json:"offsetMs"`
	DurationMs  int64  `json:"durationMs"`
	State       string `json:"state"`
}

type mixInfo struct {
	Status   string  `json:"status"`
	Progress float64 `json:"progress"`
	URL      string  `json:"url,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// viewer is who asks for recordings, once authenticated.
type viewer struct {
	public bool        // the archive is public
	token  *auth.Token // a verified token
	signed bool        // the request carries a URL signature (checked per resource)
	// urlExp is the expiry of the signed URLs answered to a token holder.
	urlExp time.Time
}

// all reports whether v may read every recording.
func (v viewer) all() bool { return v.public || (v.token != nil && v.token.Grants.Admin) }

// mayReadRoom reports whether v's token covers the recordings of the room named room.
func (v viewer) mayReadRoom(room string) bool {
	return v.all() || (v.token != nil && v.token.Grants.Record && v.token.AllowsRoom(room))
}

// recordsScope is the path a participant's link signs: every file of one
// room session.
func recordsScope(roomDir, sessDir string) string {
	return recordsPrefix + roomDir + "/" + sessDir + "/"
}

// link signs a link to a session's recording page, valid for LinkTTL: what
// each participant of a recorded room session gets.
func (rc *recordings) link(roomDir, sessDir string) (string, time.Time) {
	exp := time.Now().Add(rc.cfg.LinkTTL).Truncate(time.Second)
	q := rc.urls.Sign(recordsScope(roomDir, sessDir), exp)
	return "/recordings.html?session=" + url.QueryEscape(roomDir+"/"+sessDir) + "&" + q, exp
}

// unauthorized answers 401 with a bearer challenge.
func unauthorized(w http.ResponseWriter, invalid bool, msg string) {
	c := `Bearer realm="parley recordings"`
	if invalid {
		c += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", c)
	http.Error(w, msg, http.StatusUnauthorized)
}

// recordingsViewer authenticates a request for recordings; it answers 401
// itself (and returns false) when the request has no valid credentials.
func (s *Server) recordingsViewer(w http.ResponseWriter, r *http.Request) (viewer, bool) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if s.recs.cfg.Public {
		return viewer{public: true}, true
	}
	if raw := auth.FromRequest(r); raw != "" {
		if s.cfg.Auth.Tokens == nil {
			unauthorized(w, true, "this server accepts no access tokens (it has no token keys); recordings can be read through the signed links it hands out")
			return viewer{}, false
		}
		tok, err := s.cfg.Auth.Tokens.Verify(raw)
		if err != nil {
			s.log.Info("recordings: token refused", "remote", r.RemoteAddr, "err", err)
			unauthorized(w, true, "access token refused: "+err.Error())
			return viewer{}, false
		}
		exp := time.Now().Add(s.recs.cfg.URLTTL)
		if tok.Expires.Before(exp) {
			exp = tok.Expires
		}
		return viewer{token: tok, urlExp: exp.Truncate(time.Second)}, true
	}
	if q := r.URL.Query(); q.Has("sig") || q.Has("expires") {
		return viewer{signed: true}, true
	}
	unauthorized(w, false, "recordings are private: send an access token with the admin grant or the record grant "+
		"for the room (Authorization: Bearer …), or use a signed link")
	return viewer{}, false
}

// checkSignature checks a signed request for path, accepting a signature
// of path itself or of scope; it answers 403 itself when neither holds.
func (s *Server) checkSignature(w http.ResponseWriter, r *http.Request, p, scope string) bool {
	q := r.URL.Query()
	err := s.recs.urls.Verify(p, q)
	if err != nil && scope != "" {
		if serr := s.recs.urls.Verify(scope, q); serr == nil || errors.Is(serr, auth.ErrURLExpired) {
			err = serr
		}
	}
	switch {
	case err == nil:
		return true
	case errors.Is(err, auth.ErrURLExpired):
		http.Error(w, "this link has expired; ask for a new one", http.StatusForbidden)
	default:
		http.Error(w, "this link is not valid for this recording", http.StatusForbidden)
	}
	return false
}

// validName reports whether a path component may name something served: a
// name the recorder makes (recorder.SafeName), never a dotfile.
func validName(s string) bool {
	if s == "" || len(s) > 255 || s[0] == '.' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return !strings.Contains(s, "..")
}

// storedSession is a session directory with its manifest.
type storedSession struct {
	roomDir, sessDir string
	m                *recorder.Manifest
}

// lstatChain checks that every component of rel (slash-separated, below the
// records directory) exists without a symbolic link: directories, and a
// regular file last. It returns the last one's info.
func (s *Server) lstatChain(rel string) (fs.FileInfo, bool) {
	parts := strings.Split(rel, "/")
	var fi fs.FileInfo
	for i := range parts {
		var err error
		fi, err = s.recs.root.Lstat(path.Join(parts[:i+1]...))
		if err != nil {
			return nil, false
		}
		if last := i == len(parts)-1; (!last && !fi.IsDir()) || (last && !fi.Mode().IsRegular()) {
			return nil, false
		}
	}
	return fi, true
}

// openRecord opens a regular file below the records directory, refusing
// symbolic links anywhere on the way (and, through os.Root, anything outside).
func (s *Server) openRecord(rel string) (*os.File, fs.FileInfo, bool) {
	fi, ok := s.lstatChain(rel)
	if !ok {
		return nil, nil, false
	}
	f, err := s.recs.root.Open(rel)
	if err != nil {
		return nil, nil, false
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || !os.SameFile(fi, st) {
		_ = f.Close() // replaced since the check
		return nil, nil, false
	}
	return f, st, true
}

// viewableSession reads a stored session's manifest for v, or answers the
// request: 403 when v's token does not cover the session's room (without
// the admin grant a missing session looks like another room's), 404 when
// there is no such session.
func (s *Server) viewableSession(w http.ResponseWriter, v viewer, roomDir, sessDir string) (*recorder.Manifest, bool) {
	m, found := s.readSession(roomDir, sessDir)
	if v.token != nil && !v.all() && (!found || !v.mayReadRoom(m.Room)) {
		http.Error(w, "this access token does not cover this recording's room", http.StatusForbidden)
		return nil, false
	}
	if !found {
		http.Error(w, "no such recording", http.StatusNotFound)
		return nil, false
	}
	return m, true
}

// readSession reads the manifest of <roomDir>/<sessDir>.
func (s *Server) readSession(roomDir, sessDir string) (*recorder.Manifest, bool) {
	if !validName(roomDir) || !validName(sessDir) {
		return nil, false
	}
	f, _, ok := s.openRecord(roomDir + "/" + sessDir + "/" + recorder.ManifestName)
	if !ok {
		return nil, false
	}
	defer f.Close()
	m, err := recorder.ParseManifest(f)
	if err != nil {
		s.log.Warn("recordings: unreadable manifest", "session", roomDir+"/"+sessDir, "err", err)
		return nil, false
	}
	return m, true
}

// storedSessions lists the session directories that hold a manifest.
func (s *Server) storedSessions() []storedSession {
	var out []storedSession
	rooms, err := fs.ReadDir(s.recs.root.FS(), ".")
	if err != nil {
		s.log.Error("recordings: list the records directory", "err", err)
		return nil
	}
	for _, rd := range rooms {
		if !rd.IsDir() || !validName(rd.Name()) {
			continue // symbolic links, dotfiles (the mix queue), stray files
		}
		sessions, err := fs.ReadDir(s.recs.root.FS(), rd.Name())
		if err != nil {
			continue
		}
		for _, sd := range sessions {
			if !sd.IsDir() || !validName(sd.Name()) {
				continue
			}
			if m, ok := s.readSession(rd.Name(), sd.Name()); ok {
				out = append(out, storedSession{roomDir: rd.Name(), sessDir: sd.Name(), m: m})
			}
		}
	}
	return out
}

// mixJobs returns the mix queue's jobs by absolute manifest path.
func (s *Server) mixJobs() map[string]mixer.Job {
	jobs := map[string]mixer.Job{}
	if s.mixes != nil {
		for _, j := range s.mixes.Jobs() {
			jobs[j.Manifest] = j
		}
	}
	return jobs
}

// fileURL returns the URL of a served file (rel below the records
// directory), signed for v: a token holder's URLs carry a signature of
// their own, a signed request's the request's (the same expiry), a public
// archive's none.
func (s *Server) fileURL(v viewer, r *http.Request, rel string) string {
	return s.signedURL(v, r, recordsPrefix+rel)
}

// signedURL is p with what lets v fetch it: the signature of a token
// holder's own, a signed request's (the same expiry), none for a public
// archive.
func (s *Server) signedURL(v viewer, r *http.Request, p string) string {
	switch {
	case v.public:
		return p
	case v.signed:
		q := r.URL.Query()
		return p + "?" + url.Values{"expires": {q.Get("expires")}, "sig": {q.Get("sig")}}.Encode()
	default:
		return p + "?" + s.recs.urls.Sign(p, v.urlExp)
	}
}

// sessionInfo describes a stored session for v.
func (s *Server) sessionInfo(v viewer, r *http.Request, ss storedSession, jobs map[string]mixer.Job) recordingInfo {
	m := ss.m
	base := ss.roomDir + "/" + ss.sessDir
	ri := recordingInfo{Room: m.Room, Session: m.SessionID, Path: base, State: m.State, Recovered: m.Recovered,
		Stopped: string(m.Stopped), Start: m.Start, End: m.End, DurationMs: m.DurationMs, Participants: []string{},
		Streams: []recordedFile{}}
	for _, st := range m.Streams {
		if !slices.Contains(ri.Participants, st.Participant) {
			ri.Participants = append(ri.Participants, st.Participant)
		}
		if _, ok := recordTypes[path.Ext(st.File)]; !ok || !validName(st.File) {
			continue
		}
		ri.Streams = append(ri.Streams, recordedFile{Participant: st.Participant, Kind: st.Kind,
			URL: s.fileURL(v, r, base+"/"+st.File), OffsetMs: st.OffsetMs, DurationMs: st.DurationMs, State: st.State})
	}
	if j, ok := jobs[filepath.Join(s.recs.abs, ss.roomDir, ss.sessDir, recorder.ManifestName)]; ok {
		mi := &mixInfo{Status: j.Status, Progress: j.Progress}
		if j.Status == mixer.StatusFailed {
			mi.Error = "the mix failed; the server's log says why" // the job's error names server paths
		}
		if j.Status == mixer.StatusDone {
			if rel, err := filepath.Rel(s.recs.abs, j.Output); err == nil {
				rel = filepath.ToSlash(rel)
				if parts := strings.Split(rel, "/"); len(parts) == 3 && validName(parts[2]) && recordTypes[path.Ext(rel)] != "" {
					mi.URL = s.fileURL(v, r, rel)
				}
			}
		}
		ri.Mix = mi
	}
	if s.isBroadcast(ss.roomDir, ss.sessDir) {
		ri.Broadcast = true
		ri.Replay = s.replayURL(v, r, ss.roomDir, ss.sessDir)
	}
	return ri
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// listRecordings serves GET /api/recordings: the recorded room sessions the
// requester may read, newest first, with who took part, their files and the
// mix's status; file URLs are signed for the requester.
func (s *Server) listRecordings(w http.ResponseWriter, r *http.Request) {
	v, ok := s.recordingsViewer(w, r)
	if !ok {
		return
	}
	if v.signed {
		http.Error(w, "a signed link opens one recording; the list needs an access token with the admin grant, "+
			"or the record grant for a room", http.StatusForbidden)
		return
	}
	if !v.all() && !v.token.Grants.Record {
		http.Error(w, "this access token has neither the admin grant nor the record grant", http.StatusForbidden)
		return
	}
	jobs := s.mixJobs()
	out := []recordingInfo{}
	for _, ss := range s.storedSessions() {
		if v.mayReadRoom(ss.m.Room) {
			out = append(out, s.sessionInfo(v, r, ss, jobs))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.After(out[j].Start) })
	writeJSON(w, out)
}

// getRecording serves GET /api/recordings/{room}/{session}: one session,
// for a token holder as in the list, or for the holder of its signed link.
func (s *Server) getRecording(w http.ResponseWriter, r *http.Request) {
	v, ok := s.recordingsViewer(w, r)
	if !ok {
		return
	}
	roomDir, sessDir := r.PathValue("room"), r.PathValue("session")
	if v.signed && !s.checkSignature(w, r, recordsScope(roomDir, sessDir), "") {
		return
	}
	m, ok := s.viewableSession(w, v, roomDir, sessDir)
	if !ok {
		return
	}
	writeJSON(w, s.sessionInfo(v, r, storedSession{roomDir: roomDir, sessDir: sessDir, m: m}, s.mixJobs()))
}

// serveRecord serves a file under /records/: a recording or a mix, with
// HTTP ranges, to whoever may read its room session.
func (s *Server) serveRecord(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	v, ok := s.recordingsViewer(w, r)
	if !ok {
		return
	}
	rel := strings.TrimPrefix(r.URL.Path, recordsPrefix)
	parts := strings.Split(rel, "/")
	ctype := recordTypes[path.Ext(rel)]
	if len(parts) != 3 || !validName(parts[0]) || !validName(parts[1]) || !validName(parts[2]) || ctype == "" {
		// Directories, dotfiles, manifests, logs, partial mixes: never served.
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if v.signed && !s.checkSignature(w, r, r.URL.Path, recordsScope(parts[0], parts[1])) {
		return
	}
	if v.token != nil && !v.all() {
		m, found := s.readSession(parts[0], parts[1])
		if !found || !v.mayReadRoom(m.Room) {
			http.Error(w, "this access token does not cover this recording's room", http.StatusForbidden)
			return
		}
	}
	f, st, ok := s.openRecord(rel)
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Security-Policy", "sandbox")
	w.Header().Set("Cache-Control", "private, no-store")
	http.ServeContent(w, r, parts[2], st.ModTime(), f)
}
