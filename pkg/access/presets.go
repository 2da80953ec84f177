package access

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/clips"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// Record policies of a preset.
const (
	// RecordNever: the room is never recorded; record: true is refused.
	RecordNever = "never"
	// RecordOnRequest (the default): a participant with the record grant
	// starts the recording (record: true, or a moderator's start).
	RecordOnRequest = "on_request"
	// RecordAlways: every room session is recorded from its first join.
	RecordAlways = "always"
)

// PublishersModerators in a preset's publishers list stands for every
// participant with the moderate grant.
const PublishersModerators = "moderators"

// Preset is a room preset: one YAML file in the rooms directory
// (configs/rooms/*.yaml) that applies to the rooms it names. Every key is
// optional; unknown keys are an error, so that a typo never silently leaves a
// room open. New sections (media messages, broadcast) are added as keys here.
type Preset struct {
	// Rooms are the room names or globs (path.Match syntax: "webinar-*") the
	// preset applies to.
	Rooms []string `yaml:"rooms"`
	// PasswordHash is a bcrypt hash (sfu password hash, htpasswd -B) of the
	// room's password. Participants without a token for the room must give
	// the password.
	PasswordHash string `yaml:"password_hash"`
	// Grants is what a participant without a token may do in the room,
	// replacing the mode's default (open: publish, subscribe, chat, record;
	// token: nothing). A token adds its grants to these.
	Grants *[]string `yaml:"grants"`
	// Publishers, when not empty, are the only participants who may
	// publish: identities (token subjects), or "moderators".
	Publishers []string `yaml:"publishers"`
	// Limits override the server's per-room limits.
	Limits PresetLimits `yaml:"limits"`
	// Record is the record policy: never, on_request (default) or always.
	Record string `yaml:"record"`
	// Codecs, when not empty, are the only codecs published in the room
	// (MIME types: "video/VP8", "audio/opus").
	Codecs []string `yaml:"codecs"`
	// Moderation tunes what moderators' actions mean in the room.
	Moderation PresetModeration `yaml:"moderation"`
	// Clips are the room's media messages (voice and video clips), with
	// mozchat's keys: maxBlobBytes, maxClipSizeSec, clipLifetimeSec,
	// maxMediaFolderBytes, maxClipCount, allowVideo, videoOn, onRecorded,
	// notify (and enabled, autoPlay, mix). The keys given are laid over the
	// server's clips.defaults; nil keeps those.
	Clips *clips.Settings `yaml:"clips"`

	// Set when loaded.
	file   string
	grants auth.Grants
	// clipLimits are Clips laid over the clip defaults the presets were
	// loaded with (LoadPresets: clips.DefaultLimits; a Policy: its own).
	clipLimits clips.Limits
}

// PresetLimits are a room's limits; nil keeps the server's.
type PresetLimits struct {
	MaxParticipants *int `yaml:"max_participants"`
	MaxStreams      *int `yaml:"max_streams"`
}

// PresetModeration tunes moderation in the room.
type PresetModeration struct {
	// SelfUnmute lets a participant a moderator muted unmute itself.
	SelfUnmute bool `yaml:"self_unmute"`
}

// Name returns the preset's file name (for logs and reasons).
func (p *Preset) Name() string { return p.file }

// RecordPolicy returns the record policy (RecordOnRequest when unset).
func (p *Preset) RecordPolicy() string {
	if p == nil || p.Record == "" {
		return RecordOnRequest
	}
	return p.Record
}

// CheckPassword reports whether password matches the preset's hash.
func (p *Preset) CheckPassword(password string) bool {
	return bcrypt.CompareHashAndPassword([]byte(p.PasswordHash), []byte(password)) == nil
}

// mayPublish reports whether a participant may publish under the publishers list.
func (p *Preset) mayPublish(identity string, g auth.Grants) bool {
	if p == nil || len(p.Publishers) == 0 {
		return true
	}
	for _, who := range p.Publishers {
		if (who == PublishersModerators && g.Moderate) || (identity != "" && who == identity) {
			return true
		}
	}
	return false
}

// HashPassword returns a bcrypt hash of password for a preset's password_hash.
func HashPassword(password string, cost int) (string, error) {
	if password == "" {
		return "", errors.New("the password is empty")
	}
	if cost == 0 {
		cost = 12
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("hash the password: %w", err)
	}
	return string(h), nil
}

// Presets are the room presets of a directory.
type Presets struct {
	list []*Preset
}

// Len returns the number of presets.
func (ps *Presets) Len() int {
	if ps == nil {
		return 0
	}
	return len(ps.list)
}

// LoadPresets reads every *.yaml and *.yml file of dir, in name order. Any
// invalid file fails the whole load, naming the file and what is wrong. A
// preset's clips block is laid over clips.DefaultLimits.
func LoadPresets(dir string) (*Presets, error) { return loadPresets(dir, clips.DefaultLimits()) }

// loadPresets is LoadPresets with the server's clip defaults: a clips block
// that does not hold together with them (a folder smaller than the
// defaults' largest clip) fails the load, never an upload.
func loadPresets(dir string, clipDefaults clips.Limits) (*Presets, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("room presets: %w", err)
	}
	ps := &Presets{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || (!strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("room preset %s: %w", name, err)
		}
		p, err := ParsePreset(name, b)
		if err != nil {
			return nil, err
		}
		if err := p.resolveClips(clipDefaults); err != nil {
			return nil, err
		}
		ps.list = append(ps.list, p)
	}
	if err := ps.checkOverlaps(); err != nil {
		return nil, err
	}
	return ps, nil
}

// ParsePreset reads one preset; file names it in errors.
func ParsePreset(file string, b []byte) (*Preset, error) {
	p := &Preset{file: file}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(p); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("room preset %s: %w", file, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("room preset %s: %s", file, fmt.Sprintf(format, args...))
	}
	if len(p.Rooms) == 0 {
		return nil, bad(`no rooms: list the room names or globs it applies to (rooms: ["webinar-*"])`)
	}
	for _, r := range p.Rooms {
		if r == "" {
			return nil, bad("an empty room name")
		}
		if _, err := path.Match(r, ""); err != nil {
			return nil, bad("room %q is not a valid glob", r)
		}
	}
	if p.PasswordHash != "" {
		if _, err := bcrypt.Cost([]byte(p.PasswordHash)); err != nil {
			return nil, bad("password_hash is not a bcrypt hash (make one with `sfu password hash`): %v", err)
		}
	}
	if p.Grants != nil {
		g, err := auth.ParseGrants(*p.Grants)
		if err != nil {
			return nil, bad("grants: %v", err)
		}
		if g.Admin {
			return nil, bad("grants: admin is server-wide and only a token grants it")
		}
		p.grants = g
	}
	switch p.Record {
	case "", RecordNever, RecordOnRequest, RecordAlways:
	case "on request", "on-request":
		p.Record = RecordOnRequest
	default:
		return nil, bad("record %q: use never, on_request or always", p.Record)
	}
	if l := p.Limits.MaxParticipants; l != nil && *l < 0 {
		return nil, bad("limits.max_participants must not be negative")
	}
	if l := p.Limits.MaxStreams; l != nil && *l < 0 {
		return nil, bad("limits.max_streams must not be negative")
	}
	for i, c := range p.Codecs {
		kind, name, ok := strings.Cut(c, "/")
		if !ok || (kind != "audio" && kind != "video") || name == "" {
			return nil, bad("codec %q: write a MIME type such as video/VP8 or audio/opus", c)
		}
		p.Codecs[i] = strings.ToLower(kind) + "/" + name
	}
	if p.Clips != nil {
		if err := p.Clips.Check(); err != nil {
			return nil, bad("clips: %v", err)
		}
	}
	if len(p.Codecs) > 0 && !slices.ContainsFunc(p.Codecs, func(c string) bool { return strings.HasPrefix(c, "audio/") }) &&
		!slices.ContainsFunc(p.Codecs, func(c string) bool { return strings.HasPrefix(c, "video/") }) {
		return nil, bad("codecs list neither audio nor video")
	}
	return p, nil
}

// resolveClips lays the preset's clips block over defaults.
func (p *Preset) resolveClips(defaults clips.Limits) error {
	if p.Clips == nil {
		p.clipLimits = defaults
		return nil
	}
	l, err := p.Clips.Apply(defaults)
	if err != nil {
		return fmt.Errorf("room preset %s: clips (over the server's clips.defaults): %w", p.file, err)
	}
	p.clipLimits = l
	return nil
}

// ClipLimits returns the room's media-message settings: the preset's clips
// block laid over the clip defaults it was loaded with.
func (p *Preset) ClipLimits() clips.Limits { return p.clipLimits }

// checkOverlaps refuses two presets that claim the same room name or glob:
// which one applies would depend on file order.
func (ps *Presets) checkOverlaps() error {
	seen := map[string]string{}
	for _, p := range ps.list {
		for _, r := range p.Rooms {
			if other, dup := seen[r]; dup {
				return fmt.Errorf("room presets %s and %s both name %q; keep it in one", other, p.file, r)
			}
			seen[r] = p.file
		}
	}
	return nil
}

// Match returns the preset for the room called name, or nil. An exact name
// wins over every glob; among globs, the one with the most characters that
// are not wildcards wins ("team-a*" over "team-*" over "*"); two globs of
// the same length: the first in file name order.
func (ps *Presets) Match(name string) *Preset {
	if ps == nil {
		return nil
	}
	var best *Preset
	bestScore := -1
	for _, p := range ps.list {
		for _, r := range p.Rooms {
			score := -1
			if r == name {
				score = 1 << 20
			} else if ok, _ := path.Match(r, name); ok {
				score = literalLen(r)
			}
			if score > bestScore {
				best, bestScore = p, score
			}
		}
	}
	return best
}

// literalLen counts a glob's characters that are not wildcards.
func literalLen(glob string) int {
	n := 0
	inClass := false
	for i := 0; i < len(glob); i++ {
		switch c := glob[i]; {
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
		case c == '*' || c == '?':
		case c == '\\' && i+1 < len(glob):
			i++
			n++
		default:
			n++
		}
	}
	return n
}
