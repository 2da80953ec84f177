package server

import (
	"os"
	"path/filepath"

	"github.com/parley/parley/pkg/recorder"
)

// replayLink returns the replay of a recorded room session: a signed link
// to its recording page, which plays the mix once it is made (the access
// rules of private recordings, docs/security.md), or "" when the session
// recorded nothing.
func (rc *recordings) replayLink(room, session string) string {
	roomDir, sessDir := recorder.SafeName(room), recorder.SafeName(session)
	if _, err := os.Stat(filepath.Join(rc.dir, roomDir, sessDir, recorder.ManifestName)); err != nil {
		return ""
	}
	url, _ := rc.link(roomDir, sessDir)
	return url
}
