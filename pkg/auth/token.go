// Package auth verifies and issues Parley's access tokens: JWTs
// (github.com/golang-jwt/jwt/v5) signed with HS256 keys known by key id (several
// at once, for rotation) or with an EdDSA or RS256 key whose public half the
// server holds, so that another service can sign them.
//
// A token names an identity (sub), a display name, a room (an exact name or a
// glob such as "team-*") and grants (grants.go). The server checks every
// request against the grants; this package only says what a token allows.
package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenBytes bounds a token's length; longer ones are refused unread.
const MaxTokenBytes = 8 << 10

// MinSecretBytes is the shortest HS256 secret accepted (RFC 7518 §3.2: at
// least the hash's size).
const MinSecretBytes = 32

// Errors a verification can end with; Verify wraps them with details.
var (
	ErrMalformed   = errors.New("token malformed")
	ErrUnknownKey  = errors.New("token signed with an unknown key")
	ErrSignature   = errors.New("token signature invalid")
	ErrExpired     = errors.New("token expired")
	ErrNotYetValid = errors.New("token not valid yet")
	ErrClaims      = errors.New("token claims invalid")
)

// Key is one verification (and, for HS256, signing) key.
type Key struct {
	// ID is the key id: the "kid" header of the tokens it signs.
	ID string
	// Secret is an HS256 key (at least MinSecretBytes).
	Secret []byte
	// Public is an ed25519.PublicKey (EdDSA) or *rsa.PublicKey (RS256):
	// tokens signed by another service.
	Public crypto.PublicKey
}

// method returns the signing method the key verifies.
func (k Key) method() (jwt.SigningMethod, any, error) {
	switch {
	case len(k.Secret) > 0 && k.Public != nil:
		return nil, nil, fmt.Errorf("key %q has both a secret and a public key; give one", k.ID)
	case len(k.Secret) > 0:
		if len(k.Secret) < MinSecretBytes {
			return nil, nil, fmt.Errorf("key %q: an HS256 secret needs at least %d bytes (make one with `openssl rand -base64 32`)", k.ID, MinSecretBytes)
		}
		return jwt.SigningMethodHS256, k.Secret, nil
	case k.Public != nil:
		switch pub := k.Public.(type) {
		case ed25519.PublicKey:
			return jwt.SigningMethodEdDSA, pub, nil
		case *rsa.PublicKey:
			if pub.N.BitLen() < 2048 {
				return nil, nil, fmt.Errorf("key %q: an RSA key needs at least 2048 bits", k.ID)
			}
			return jwt.SigningMethodRS256, pub, nil
		default:
			return nil, nil, fmt.Errorf("key %q: public keys must be Ed25519 (EdDSA) or RSA (RS256), not %T", k.ID, k.Public)
		}
	}
	return nil, nil, fmt.Errorf("key %q has neither a secret nor a public key", k.ID)
}

// ParsePublicKeyPEM reads a PEM "PUBLIC KEY" (PKIX) block holding an Ed25519
// or RSA key.
func ParsePublicKeyPEM(b []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block found (expected -----BEGIN PUBLIC KEY-----)")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	switch pub.(type) {
	case ed25519.PublicKey, *rsa.PublicKey:
		return pub, nil
	}
	return nil, fmt.Errorf("public key of type %T; use Ed25519 or RSA", pub)
}

// Claims is a token's payload.
type Claims struct {
	jwt.RegisteredClaims
	// Name is the display name (defaults to the subject).
	Name string `json:"name,omitempty"`
	// Room is the room the token is for: an exact name, or a glob ("*" is
	// every room). Empty: no room (a token for the server's own API).
	Room string `json:"room,omitempty"`
	// Grants lists grant names (ParseGrants).
	Grants []string `json:"grants,omitempty"`
}

// Token is a verified token.
type Token struct {
	// KeyID is the id of the key that verified it.
	KeyID string
	// Identity is the subject: who the holder is, stable across sessions.
	Identity string
	// Name is the display name the token gives (may be empty).
	Name string
	// Room is the room name or glob.
	Room string
	// Grants is what the holder may do.
	Grants Grants
	// Expires is when the token stops being valid.
	Expires time.Time
}

// AllowsRoom reports whether the token is for the room called name.
func (t *Token) AllowsRoom(name string) bool {
	return RoomMatches(t.Room, name)
}

// RoomMatches reports whether name matches pattern: an exact name, or a glob
// in path.Match syntax ("*" matches every room). An empty pattern matches nothing.
func RoomMatches(pattern, name string) bool {
	if pattern == "" {
		return false
	}
	if pattern == name {
		return true
	}
	ok, err := path.Match(pattern, name)
	return err == nil && ok
}

// Options tune a Verifier.
type Options struct {
	// Issuer and Audience, when set, must be the token's iss and one of its aud.
	Issuer   string
	Audience string
	// Leeway allows for clocks that disagree (default 30 s).
	Leeway time.Duration
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// Verifier checks tokens against a set of keys.
type Verifier struct {
	keys   map[string]Key
	single string // the key id to use for a token without "kid", when there is one key only
	opts   Options
}

// NewVerifier returns a verifier for the keys. Key ids must be unique and
// non-empty.
func NewVerifier(keys []Key, opts Options) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("no keys: configure at least one token key")
	}
	if opts.Leeway == 0 {
		opts.Leeway = 30 * time.Second
	}
	v := &Verifier{keys: make(map[string]Key, len(keys)), opts: opts}
	for _, k := range keys {
		if k.ID == "" {
			return nil, errors.New("a token key needs an id (the tokens' kid header)")
		}
		if _, dup := v.keys[k.ID]; dup {
			return nil, fmt.Errorf("two token keys with id %q", k.ID)
		}
		if _, _, err := k.method(); err != nil {
			return nil, err
		}
		v.keys[k.ID] = k
	}
	if len(keys) == 1 {
		v.single = keys[0].ID
	}
	return v, nil
}

// KeyIDs returns the ids of the verifier's keys.
func (v *Verifier) KeyIDs() []string {
	ids := make([]string, 0, len(v.keys))
	for id := range v.keys {
		ids = append(ids, id)
	}
	return ids
}

func (v *Verifier) now() time.Time {
	if v.opts.Now != nil {
		return v.opts.Now()
	}
	return time.Now()
}

// Verify checks raw's signature, key, validity window and claims, and returns
// what it grants. Errors wrap one of the Err values with a reason for people.
func (v *Verifier) Verify(raw string) (*Token, error) {
	if len(raw) > MaxTokenBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxTokenBytes)
	}
	if raw == "" {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	var claims Claims
	var keyID string
	popts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"HS256", "EdDSA", "RS256"}),
		jwt.WithLeeway(v.opts.Leeway),
		jwt.WithTimeFunc(v.now),
		jwt.WithExpirationRequired(),
	}
	if v.opts.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(v.opts.Issuer))
	}
	if v.opts.Audience != "" {
		popts = append(popts, jwt.WithAudience(v.opts.Audience))
	}
	_, err := jwt.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			kid = v.single
		}
		key, ok := v.keys[kid]
		if !ok {
			if kid == "" {
				return nil, fmt.Errorf("%w: the token has no kid and the server has several keys", ErrUnknownKey)
			}
			return nil, fmt.Errorf("%w %q", ErrUnknownKey, kid)
		}
		method, vk, err := key.method()
		if err != nil {
			return nil, err
		}
		if t.Method.Alg() != method.Alg() {
			return nil, fmt.Errorf("%w: key %q verifies %s, the token is %s", ErrSignature, kid, method.Alg(), t.Method.Alg())
		}
		keyID = kid
		return vk, nil
	}, popts...)
	if err != nil {
		return nil, classify(err)
	}
	if claims.Subject == "" {
		return nil, fmt.Errorf("%w: no subject (sub): a token names who holds it", ErrClaims)
	}
	if claims.Room != "" {
		if _, err := path.Match(claims.Room, ""); err != nil {
			return nil, fmt.Errorf("%w: room %q is not a valid glob", ErrClaims, claims.Room)
		}
	}
	g, err := ParseGrants(claims.Grants)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrClaims, err)
	}
	return &Token{KeyID: keyID, Identity: claims.Subject, Name: claims.Name, Room: claims.Room, Grants: g,
		Expires: claims.ExpiresAt.Time}, nil
}

// classify maps jwt's errors onto this package's.
func classify(err error) error {
	for _, own := range []error{ErrUnknownKey, ErrSignature, ErrClaims} {
		if errors.Is(err, own) {
			return err
		}
	}
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return fmt.Errorf("%w: get a new one", ErrExpired)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fmt.Errorf("%w (check the clocks of the issuer and the server)", ErrNotYetValid)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return fmt.Errorf("%w", ErrSignature)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return fmt.Errorf("%w: %v", ErrClaims, err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer), errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fmt.Errorf("%w: %v", ErrClaims, err)
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

// Spec describes a token to issue.
type Spec struct {
	Identity string
	Name     string
	Room     string
	Grants   Grants
	TTL      time.Duration
	// NotBefore, when set, is when the token starts being valid.
	NotBefore time.Time
	Issuer    string
	Audience  string
	// Now is the issue time (zero: time.Now()).
	Now time.Time
}

// Sign issues an HS256 token with key (which must have a Secret).
func Sign(key Key, s Spec) (string, error) {
	if len(key.Secret) == 0 {
		return "", fmt.Errorf("key %q has no secret: only HS256 keys sign here (public keys verify tokens another service signs)", key.ID)
	}
	if _, _, err := key.method(); err != nil {
		return "", err
	}
	return SignWith(jwt.SigningMethodHS256, key.ID, key.Secret, s)
}

// SignWith issues a token with any jwt signing method and key (tests and
// tools that hold an EdDSA or RSA private key).
func SignWith(method jwt.SigningMethod, keyID string, signingKey any, s Spec) (string, error) {
	if s.Identity == "" {
		return "", errors.New("a token needs an identity")
	}
	if s.TTL <= 0 {
		return "", errors.New("a token needs a positive lifetime")
	}
	if s.Room != "" {
		if _, err := path.Match(s.Room, ""); err != nil {
			return "", fmt.Errorf("room %q is not a valid glob", s.Room)
		}
	}
	now := s.Now
	if now.IsZero() {
		now = time.Now()
	}
	c := Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: s.Identity, IssuedAt: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(s.TTL)), Issuer: s.Issuer},
		Name: s.Name, Room: s.Room, Grants: s.Grants.List()}
	if !s.NotBefore.IsZero() {
		c.NotBefore = jwt.NewNumericDate(s.NotBefore)
	}
	if s.Audience != "" {
		c.Audience = jwt.ClaimStrings{s.Audience}
	}
	t := jwt.NewWithClaims(method, c)
	if keyID != "" {
		t.Header["kid"] = keyID
	}
	out, err := t.SignedString(signingKey)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return out, nil
}

// FromRequest returns the token an HTTP request carries: the Authorization
// header's bearer token, else the access_token query parameter (RFC 6750),
// which a <video src> or a download link can carry. Empty when none.
func FromRequest(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	return r.URL.Query().Get("access_token")
}
