package clips

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// PassPrefix starts every pass, so that a server tells it from an access
// token (a JWT) in the same Authorization header.
const PassPrefix = "pc1."

// Pass is the short-lived credential a participant gets with its join for
// the room's clips over HTTP (which cannot reuse the WebSocket): it names
// the room, the participant (who must still be in the room when it is
// used), who they are and what they may do.
type Pass struct {
	Room        string    `json:"r"`
	Participant string    `json:"p"` // the room participant's id
	Name        string    `json:"n"` // their name in the room
	Owner       string    `json:"o"` // their identity (token subject, else the name)
	Post        bool      `json:"w,omitempty"`
	Moderate    bool      `json:"m,omitempty"`
	Expires     time.Time `json:"e"`
}

// Passes issues and checks passes with a secret of its own (made at
// random: passes end with the process, as the rooms do).
type Passes struct {
	secret []byte
}

// NewPasses returns an issuer with a random secret.
func NewPasses() *Passes {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return &Passes{secret: b}
}

func (p *Passes) mac(payload string) string {
	h := hmac.New(sha256.New, p.secret)
	h.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// Issue returns a pass as a string.
func (p *Passes) Issue(ps Pass) string {
	ps.Expires = ps.Expires.Truncate(time.Second)
	b, _ := json.Marshal(ps)
	payload := base64.RawURLEncoding.EncodeToString(b)
	return PassPrefix + payload + "." + p.mac(payload)
}

// Errors of a pass's check.
var (
	ErrPassInvalid = errors.New("clip pass invalid")
	ErrPassExpired = errors.New("clip pass expired; join the room again")
)

// Verify checks a pass's signature and expiry.
func (p *Passes) Verify(s string, now time.Time) (Pass, error) {
	rest, ok := strings.CutPrefix(s, PassPrefix)
	if !ok || len(s) > 4096 {
		return Pass{}, ErrPassInvalid
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(p.mac(payload))) {
		return Pass{}, ErrPassInvalid
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return Pass{}, ErrPassInvalid
	}
	var ps Pass
	if err := json.Unmarshal(b, &ps); err != nil {
		return Pass{}, ErrPassInvalid
	}
	if !now.Before(ps.Expires) {
		return Pass{}, ErrPassExpired
	}
	return ps, nil
}
