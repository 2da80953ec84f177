// Package clips keeps a room's media messages: voice and video clips that
// participants record in the page and post to the room (docs/roomapi.md,
// docs/protocol.md). It bounds them per room (Limits, with mozchat's keys),
// checks every upload while it streams to disk (size), by its first bytes
// (WebM, Ogg or MP4 only) and with ffprobe (duration, streams), keeps a
// catalog per room that survives a restart, and sweeps expired clips.
//
// The package knows rooms by name only; pkg/server connects it to the rooms
// (events, credentials) and serves it over HTTP.
package clips

import (
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"
)

// What the page does with a clip once it is recorded (Limits.OnRecorded).
const (
	// OnRecordedUpload posts the clip at once (mozchat's "upload").
	OnRecordedUpload = "upload"
	// OnRecordedPreview shows the clip with Play, Upload and Discard first
	// (mozchat's "stop").
	OnRecordedPreview = "preview"
)

// Bounds no room's settings may pass, whatever a preset says.
const (
	// MaxBlobBytesCeiling bounds one clip (1 GiB).
	MaxBlobBytesCeiling = 1 << 30
	// MaxClipSecCeiling bounds one clip's duration (one hour).
	MaxClipSecCeiling = 3600
	// MaxNotify bounds the addresses one room notifies.
	MaxNotify = 1000
)

// Limits are one room's media-message settings. The YAML keys (and those of
// a mozchat thread's .ini, ReadMozchatINI) are mozchat's own.
type Limits struct {
	// Enabled turns media messages on in the room.
	Enabled bool
	// MaxBlobBytes bounds one clip's size; an upload is refused as soon as
	// it passes it.
	MaxBlobBytes int64
	// MaxClipSec bounds one clip's duration (mozchat's maxClipSizeSec):
	// the page stops recording there, the server refuses longer clips.
	MaxClipSec float64
	// Lifetime is how long a clip is kept (mozchat's clipLifetimeSec); 0:
	// until evicted.
	Lifetime time.Duration
	// MaxFolderBytes bounds the room's clips together (mozchat's
	// maxMediaFolderBytes); the oldest are removed to make room. 0: no bound.
	MaxFolderBytes int64
	// MaxClipCount bounds how many clips the room keeps; the oldest are
	// removed to make room. 0: no bound.
	MaxClipCount int
	// AllowVideo lets people record video clips (audio only otherwise).
	AllowVideo bool
	// VideoOn makes video the page's default when AllowVideo.
	VideoOn bool
	// OnRecorded is OnRecordedUpload or OnRecordedPreview.
	OnRecorded string
	// AutoPlay makes pages play new clips from others as they arrive (each
	// person can turn it off).
	AutoPlay bool
	// Mix makes the mixer play a clip posted during a recorded room
	// session in the recording's mix, at the time it was posted.
	Mix bool
	// Notify maps user names (a participant's identity or name) to e-mail
	// addresses told of each new clip, its author excepted.
	Notify map[string]string
}

// DefaultLimits are the settings of a room no preset speaks of: voice
// notes by default, a minute at most, kept a week.
func DefaultLimits() Limits {
	return Limits{Enabled: true, MaxBlobBytes: 10_000_000, MaxClipSec: 60, Lifetime: 7 * 24 * time.Hour,
		MaxFolderBytes: 100_000_000, MaxClipCount: 100, AllowVideo: true, OnRecorded: OnRecordedPreview, AutoPlay: true}
}

// Validate checks the settings and says what is wrong.
func (l Limits) Validate() error {
	if !l.Enabled {
		return nil
	}
	switch {
	case l.MaxBlobBytes <= 0 || l.MaxBlobBytes > MaxBlobBytesCeiling:
		return fmt.Errorf("maxBlobBytes %d: give 1..%d", l.MaxBlobBytes, MaxBlobBytesCeiling)
	case !(l.MaxClipSec > 0) || l.MaxClipSec > MaxClipSecCeiling:
		return fmt.Errorf("maxClipSizeSec %g: give a duration above 0 and at most %d", l.MaxClipSec, MaxClipSecCeiling)
	case l.Lifetime < 0:
		return errors.New("clipLifetimeSec must not be negative")
	case l.MaxFolderBytes < 0:
		return errors.New("maxMediaFolderBytes must not be negative")
	case l.MaxFolderBytes > 0 && l.MaxFolderBytes < l.MaxBlobBytes:
		return fmt.Errorf("maxMediaFolderBytes %d is below maxBlobBytes %d: no clip of the largest size would fit", l.MaxFolderBytes, l.MaxBlobBytes)
	case l.MaxClipCount < 0:
		return errors.New("maxClipCount must not be negative")
	case l.OnRecorded != OnRecordedUpload && l.OnRecorded != OnRecordedPreview:
		return fmt.Errorf("onRecorded %q: use %q or %q", l.OnRecorded, OnRecordedUpload, OnRecordedPreview)
	case len(l.Notify) > MaxNotify:
		return fmt.Errorf("notify lists %d addresses; at most %d", len(l.Notify), MaxNotify)
	}
	for user, addr := range l.Notify {
		if strings.TrimSpace(user) == "" {
			return errors.New("notify: an empty user name")
		}
		if _, err := mail.ParseAddress(addr); err != nil {
			return fmt.Errorf("notify: %s: %q is not an e-mail address: %v", user, addr, err)
		}
	}
	return nil
}

// Settings are a preset's clips block (or a mozchat .ini) as written: only
// the keys given are set, and Apply lays them over other limits.
type Settings struct {
	Enabled             *bool             `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	MaxBlobBytes        *int64            `yaml:"maxBlobBytes,omitempty" json:"maxBlobBytes,omitempty"`
	MaxClipSizeSec      *float64          `yaml:"maxClipSizeSec,omitempty" json:"maxClipSizeSec,omitempty"`
	ClipLifetimeSec     *int64            `yaml:"clipLifetimeSec,omitempty" json:"clipLifetimeSec,omitempty"`
	MaxMediaFolderBytes *int64            `yaml:"maxMediaFolderBytes,omitempty" json:"maxMediaFolderBytes,omitempty"`
	MaxClipCount        *int              `yaml:"maxClipCount,omitempty" json:"maxClipCount,omitempty"`
	AllowVideo          *bool             `yaml:"allowVideo,omitempty" json:"allowVideo,omitempty"`
	VideoOn             *bool             `yaml:"videoOn,omitempty" json:"videoOn,omitempty"`
	OnRecorded          *string           `yaml:"onRecorded,omitempty" json:"onRecorded,omitempty"`
	AutoPlay            *bool             `yaml:"autoPlay,omitempty" json:"autoPlay,omitempty"`
	Mix                 *bool             `yaml:"mix,omitempty" json:"mix,omitempty"`
	Notify              map[string]string `yaml:"notify,omitempty" json:"notify,omitempty"`
}

// Apply returns base with the settings given laid over it, validated.
func (s Settings) Apply(base Limits) (Limits, error) {
	l := base
	set := func(dst *bool, src *bool) {
		if src != nil {
			*dst = *src
		}
	}
	set(&l.Enabled, s.Enabled)
	set(&l.AllowVideo, s.AllowVideo)
	set(&l.VideoOn, s.VideoOn)
	set(&l.AutoPlay, s.AutoPlay)
	set(&l.Mix, s.Mix)
	if s.MaxBlobBytes != nil {
		l.MaxBlobBytes = *s.MaxBlobBytes
	}
	if s.MaxClipSizeSec != nil {
		l.MaxClipSec = *s.MaxClipSizeSec
	}
	if s.ClipLifetimeSec != nil {
		if *s.ClipLifetimeSec < 0 || *s.ClipLifetimeSec > 100*365*24*3600 {
			return Limits{}, fmt.Errorf("clipLifetimeSec %d: give 0 (no expiry) up to a century", *s.ClipLifetimeSec)
		}
		l.Lifetime = time.Duration(*s.ClipLifetimeSec) * time.Second
	}
	if s.MaxMediaFolderBytes != nil {
		l.MaxFolderBytes = *s.MaxMediaFolderBytes
	}
	if s.MaxClipCount != nil {
		l.MaxClipCount = *s.MaxClipCount
	}
	if s.OnRecorded != nil {
		v, err := onRecorded(*s.OnRecorded)
		if err != nil {
			return Limits{}, err
		}
		l.OnRecorded = v
	}
	if s.Notify != nil {
		l.Notify = make(map[string]string, len(s.Notify))
		for k, v := range s.Notify {
			l.Notify[k] = v
		}
	}
	if err := l.Validate(); err != nil {
		return Limits{}, err
	}
	return l, nil
}

// Check validates the keys given, each on its own and together, before
// they are laid over the limits they will change (a room preset's clips
// block is checked when the preset is read; Apply checks the result against
// the server's defaults). It normalizes onRecorded (mozchat's "stop" is
// preview).
func (s *Settings) Check() error {
	// Over a base that cannot conflict with any valid value, checked even
	// when the block turns media messages off (enabled: false).
	t := *s
	t.Enabled = nil
	l, err := t.Apply(Limits{Enabled: true, MaxBlobBytes: 1, MaxClipSec: 1, OnRecorded: OnRecordedPreview})
	if err != nil {
		return err
	}
	if s.OnRecorded != nil {
		s.OnRecorded = &l.OnRecorded
	}
	return nil
}

// onRecorded reads an onRecorded value: upload, preview, or mozchat's stop
// (= preview).
func onRecorded(v string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case OnRecordedUpload:
		return OnRecordedUpload, nil
	case OnRecordedPreview, "stop":
		return OnRecordedPreview, nil
	}
	return "", fmt.Errorf("onRecorded %q: use %q or %q (mozchat's \"stop\")", v, OnRecordedUpload, OnRecordedPreview)
}

// NotifyFor returns the addresses to tell of a clip by author (identity or
// name), in user order, the author's own excepted.
func (l Limits) NotifyFor(author ...string) []string {
	users := make([]string, 0, len(l.Notify))
	for u := range l.Notify {
		if !slices.Contains(author, u) {
			users = append(users, u)
		}
	}
	slices.Sort(users)
	out := make([]string, 0, len(users))
	for _, u := range users {
		out = append(out, l.Notify[u])
	}
	return out
}
