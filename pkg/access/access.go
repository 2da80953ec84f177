// Package access decides who may do what in Parley's rooms (docs/security.md):
// the server's mode (open or token), the access tokens a session presents
// (pkg/auth verifies them) and the grants a participant gets in a room. The
// signaling layer asks it at connect, join, publish, chat and record, and
// refuses what it refuses with FORBIDDEN and the reason it gives.
package access

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/clips"
	"github.com/parley/parley/pkg/protocol"
)

// Modes.
const (
	// ModeOpen lets anyone join, publish, subscribe, chat and record; a token
	// adds what it grants (moderate, admin) and an identity.
	ModeOpen = "open"
	// ModeToken takes every grant from a token (or the room's preset).
	ModeToken = "token"
)

// OpenGrants is what anyone may do in a room in open mode.
var OpenGrants = auth.MustParseGrants(auth.GrantPublish, auth.GrantSubscribe, auth.GrantChat, auth.GrantRecord)

// Config configures a Policy.
type Config struct {
	// Mode is ModeOpen (the default when empty) or ModeToken.
	Mode string
	// Tokens verifies access tokens; nil accepts none (open mode only).
	Tokens *auth.Verifier
	// RoomsDir is the directory of room presets (*.yaml); empty: none.
	RoomsDir string
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
	// ClipDefaults are the media-message settings of rooms whose preset has
	// no clips block, and what a clips block is laid over (the server's
	// clips.defaults); nil is clips.DefaultLimits.
	ClipDefaults *clips.Limits
}

// Policy is the server's access model.
type Policy struct {
	mode     string
	tokens   *auth.Verifier
	now      func() time.Time
	roomsDir string
	presets  atomic.Pointer[Presets]
	guesses  guessLimiter
	clipDefs clips.Limits
}

// New returns the policy cfg describes. Token mode needs a verifier; a
// rooms directory must load.
func New(cfg Config) (*Policy, error) {
	p := &Policy{mode: cfg.Mode, tokens: cfg.Tokens, now: cfg.Now, roomsDir: cfg.RoomsDir}
	if p.mode == "" {
		p.mode = ModeOpen
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.clipDefs = clips.DefaultLimits()
	if cfg.ClipDefaults != nil {
		if err := cfg.ClipDefaults.Validate(); err != nil {
			return nil, fmt.Errorf("clips.defaults: %w", err)
		}
		p.clipDefs = *cfg.ClipDefaults
	}
	switch p.mode {
	case ModeOpen:
	case ModeToken:
		if p.tokens == nil {
			return nil, fmt.Errorf("auth mode %q needs token keys (auth.keys or auth.public_keys)", ModeToken)
		}
	default:
		return nil, fmt.Errorf("auth mode %q: use %q or %q", p.mode, ModeOpen, ModeToken)
	}
	if p.roomsDir != "" {
		ps, err := loadPresets(p.roomsDir, p.clipDefs)
		if err != nil {
			return nil, err
		}
		p.presets.Store(ps)
	}
	return p, nil
}

// Presets returns the room presets in force (nil: none).
func (p *Policy) Presets() *Presets { return p.presets.Load() }

// ReloadPresets reads the rooms directory again. On any error the presets in
// force stay, and the error says which file is wrong. Participants already in
// rooms keep what they were admitted with; the new presets apply to joins,
// and their clips blocks to the next clip uploads (ClipLimits).
func (p *Policy) ReloadPresets() (*Presets, error) {
	if p.roomsDir == "" {
		return nil, errors.New("no rooms directory is configured (--rooms-dir)")
	}
	ps, err := loadPresets(p.roomsDir, p.clipDefs)
	if err != nil {
		return nil, err
	}
	p.presets.Store(ps)
	return ps, nil
}

// ClipLimits returns room's media-message settings: its preset's clips block
// laid over the server's clip defaults, or those defaults. The presets in
// force at each call decide (a reload applies to the next upload).
func (p *Policy) ClipLimits(room string) clips.Limits {
	if pr := p.Presets().Match(room); pr != nil {
		return pr.ClipLimits()
	}
	return p.clipDefs
}

// Open returns the open policy without token keys (tests, and servers built
// without an access configuration).
func Open() *Policy {
	p, _ := New(Config{Mode: ModeOpen})
	return p
}

// Mode returns ModeOpen or ModeToken.
func (p *Policy) Mode() string { return p.mode }

// Forbidden returns a FORBIDDEN refusal with a reason for people.
func Forbidden(format string, args ...any) *protocol.Error {
	return &protocol.Error{Code: protocol.CodeForbidden, Reason: fmt.Sprintf(format, args...)}
}

// Verify checks a token a session presents in connect. Its refusals say why:
// expired, not valid yet, unknown key, bad signature, malformed claims.
func (p *Policy) Verify(raw string) (*auth.Token, error) {
	if p.tokens == nil {
		return nil, Forbidden("this server accepts no access tokens (it has no token keys configured); connect without one")
	}
	tok, err := p.tokens.Verify(raw)
	if err != nil {
		return nil, Forbidden("access token refused: %v", err)
	}
	return tok, nil
}

// JoinRequest is what a join asks for.
type JoinRequest struct {
	// Room is the room's name.
	Room string
	// Name is the name asked for (join's name, else connect's username).
	Name string
	// Token is the session's verified token, or nil.
	Token *auth.Token
	// Subscribe is join's subscribe field (nil: not given).
	Subscribe *bool
	// Record is join's record field.
	Record bool
	// Password is join's password field (a room preset's password).
	Password string
	// Remote is the client's address (wrong passwords are limited per address and room).
	Remote string
}

// Admission is what a participant may do in a room, and who it is.
type Admission struct {
	// Identity is the token's subject; empty for a participant without a token.
	Identity string
	// Name is the participant's name: the token's name when it has one, else
	// the name asked for, else the identity.
	Name string
	// Grants is what the participant may do in the room.
	Grants auth.Grants
	// Subscribe is whether the participant receives the room's media.
	Subscribe bool
	// Record is whether the join starts the room's recording.
	Record bool
	// Preset is the room's preset, or nil.
	Preset *Preset
	// MaxParticipants and MaxStreams are the preset's limits (nil: the server's).
	MaxParticipants, MaxStreams *int
}

// NeverRecord reports whether the room's preset forbids recording.
func (a Admission) NeverRecord() bool { return a.Preset.RecordPolicy() == RecordNever }

// Admit decides whether req may join its room, and with what grants. A
// participant without a token gets the room preset's grants (or the mode's);
// one with a token gets the token's grants added to those. A preset's
// password is asked of participants without a token.
func (p *Policy) Admit(req JoinRequest) (Admission, error) {
	preset := p.Presets().Match(req.Room)
	a := Admission{Name: req.Name, Preset: preset}
	if preset != nil {
		a.MaxParticipants, a.MaxStreams = preset.Limits.MaxParticipants, preset.Limits.MaxStreams
	}
	anyone := auth.Grants{}
	switch {
	case preset != nil && preset.Grants != nil:
		anyone = preset.grants
	case p.mode == ModeOpen:
		anyone = OpenGrants
	}
	tok := req.Token
	if tok != nil {
		if now := p.now(); !now.Before(tok.Expires) {
			return a, Forbidden("access token expired at %s; get a new one", tok.Expires.UTC().Format(time.RFC3339))
		}
		if tok.Room == "" {
			return a, Forbidden("access token is for no room; ask for one for room %q", req.Room)
		}
		if !tok.AllowsRoom(req.Room) {
			return a, Forbidden("access token is for room %q, not %q", tok.Room, req.Room)
		}
		a.Identity = tok.Identity
		if tok.Name != "" {
			a.Name = tok.Name
		}
		if a.Name == "" {
			a.Name = tok.Identity
		}
		a.Grants = tok.Grants
	}
	a.Grants = a.Grants.Union(anyone)
	if !a.Grants.Join {
		switch {
		case tok == nil:
			return a, Forbidden("room %q admits participants with an access token only; ask its organizer for an invite link", req.Room)
		default:
			return a, Forbidden("your access token does not grant joining room %q", req.Room)
		}
	}
	if preset != nil && preset.PasswordHash != "" && tok == nil {
		if err := p.guesses.check(preset, req); err != nil {
			return a, err
		}
	}
	if !preset.mayPublish(a.Identity, a.Grants) {
		a.Grants.Camera, a.Grants.Microphone, a.Grants.Screen = false, false, false
	}
	switch {
	case req.Subscribe == nil:
		a.Subscribe = a.Grants.Subscribe
	case *req.Subscribe && !a.Grants.Subscribe:
		return a, Forbidden("your grants do not include subscribe: join with subscribe false")
	default:
		a.Subscribe = *req.Subscribe
	}
	switch preset.RecordPolicy() {
	case RecordNever:
		if req.Record {
			return a, Forbidden("room %q is never recorded (room preset %s)", req.Room, preset.Name())
		}
	case RecordAlways:
		a.Record = true
	default:
		if req.Record && !a.Grants.Record {
			return a, Forbidden("recording room %q needs the record grant", req.Room)
		}
		a.Record = req.Record
	}
	return a, nil
}

// CheckChat refuses a chat message from a participant without the chat grant.
func CheckChat(g auth.Grants) error {
	if !g.Chat {
		return Forbidden("your grants do not include chat")
	}
	return nil
}

// CheckPublish refuses a publish of kind (camera or screen) whose offer holds
// a track from a source the grants do not include: a camera stream's video
// is the camera and its audio the microphone; everything in a screen share
// is the screen. record asks for the stream to be recorded. It returns the
// offer to answer: with only the room preset's codecs, when it has a list.
func (a Admission) CheckPublish(kind, offer string, record bool) (string, error) {
	if err := CheckPublish(a.Grants, kind, offer, record && a.Preset.RecordPolicy() != RecordAlways); err != nil {
		return "", err
	}
	if record && a.NeverRecord() {
		return "", Forbidden("this room is never recorded (room preset %s)", a.Preset.Name())
	}
	if a.Preset != nil && len(a.Preset.Codecs) > 0 {
		return FilterOffer(offer, a.Preset.Codecs)
	}
	return offer, nil
}

// CheckPublish refuses a publish of kind (camera or screen) whose offer holds
// a track from a source the grants g do not include: a camera stream's video
// is the camera and its audio the microphone; everything in a screen share
// is the screen. record asks for the stream to be recorded.
func CheckPublish(g auth.Grants, kind, offer string, record bool) error {
	if !g.PublishesAny() {
		return Forbidden("your grants do not include publishing")
	}
	sources, err := OfferSources(kind, offer)
	if err != nil {
		return err
	}
	var refused []string
	for _, s := range sources {
		if !g.CanPublish(s) {
			refused = append(refused, s)
		}
	}
	if len(refused) > 0 {
		return Forbidden("your grants do not include publishing from the %s (grant publish:%s); publish without it",
			strings.Join(refused, " or the "), refused[0])
	}
	if record && !g.Record {
		return Forbidden("recording a stream needs the record grant")
	}
	return nil
}
