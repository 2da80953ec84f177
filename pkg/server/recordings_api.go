package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/parley/parley/pkg/mixer"
	"github.com/parley/parley/pkg/recorder"
)

// recordingInfo is one room session in GET /api/recordings.
type recordingInfo struct {
	Room         string         `json:"room"`
	Session      string         `json:"session"`
	State        string         `json:"state"`
	Recovered    bool           `json:"recovered,omitempty"`
	Start        time.Time      `json:"start"`
	End          time.Time      `json:"end,omitzero"`
	DurationMs   int64          `json:"durationMs"`
	Participants []string       `json:"participants"`
	Streams      []recordedFile `json:"streams"`
	Mix          *mixInfo       `json:"mix,omitempty"`
	Manifest     string         `json:"manifest"`
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

// recordsURL maps a file under the records directory to its /records/ URL.
func (s *Server) recordsURL(path string) string {
	rel, err := filepath.Rel(s.cfg.RecordsDir, path)
	if err != nil || !filepath.IsLocal(rel) {
		return ""
	}
	return (&url.URL{Path: "/records/" + filepath.ToSlash(rel)}).EscapedPath()
}

// listRecordings serves GET /api/recordings: every recorded room session,
// newest first, with who took part, its files and its mix's status.
func (s *Server) listRecordings(w http.ResponseWriter, _ *http.Request) {
	manifests, err := filepath.Glob(filepath.Join(s.cfg.RecordsDir, "*", "*", recorder.ManifestName))
	if err != nil {
		http.Error(w, "cannot list recordings", http.StatusInternalServerError)
		return
	}
	jobs := map[string]mixInfo{}
	if s.mixes != nil {
		for _, j := range s.mixes.Jobs() {
			mi := mixInfo{Status: j.Status, Progress: j.Progress, Error: j.Error}
			if j.Status == mixer.StatusDone {
				mi.URL = s.recordsURL(j.Output)
			}
			if abs, err := filepath.Abs(j.Manifest); err == nil {
				jobs[abs] = mi
			}
		}
	}
	out := []recordingInfo{}
	for _, path := range manifests {
		m, err := recorder.ReadManifest(path)
		if err != nil {
			continue
		}
		dir := filepath.Dir(path)
		ri := recordingInfo{Room: m.Room, Session: m.SessionID, State: m.State, Recovered: m.Recovered, Start: m.Start,
			End: m.End, DurationMs: m.DurationMs, Participants: []string{}, Streams: []recordedFile{},
			Manifest: s.recordsURL(path)}
		for _, st := range m.Streams {
			if !slices.Contains(ri.Participants, st.Participant) {
				ri.Participants = append(ri.Participants, st.Participant)
			}
			ri.Streams = append(ri.Streams, recordedFile{Participant: st.Participant, Kind: st.Kind,
				URL: s.recordsURL(filepath.Join(dir, st.File)), OffsetMs: st.OffsetMs, DurationMs: st.DurationMs, State: st.State})
		}
		if abs, err := filepath.Abs(path); err == nil {
			if mi, ok := jobs[abs]; ok {
				ri.Mix = &mi
			}
		}
		out = append(out, ri)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.After(out[j].Start) })
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}
