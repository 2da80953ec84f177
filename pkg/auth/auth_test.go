package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func secret(c byte) []byte { return []byte(strings.Repeat(string(c), 32)) }

func TestParseGrants(t *testing.T) {
	g, err := ParseGrants([]string{"publish:camera", " Subscribe ", "chat"})
	if err != nil {
		t.Fatal(err)
	}
	if !g.Join || !g.Camera || g.Microphone || g.Screen || !g.Subscribe || !g.Chat || g.Record || g.Admin {
		t.Fatalf("grants %+v", g)
	}
	if got := g.String(); got != "join,publish:camera,subscribe,chat" {
		t.Fatalf("String = %q", got)
	}
	all := MustParseGrants("publish")
	if !all.CanPublish(SourceScreen) || !all.CanPublish(SourceMicrophone) || all.CanPublish("speaker") {
		t.Fatalf("publish grants %+v", all)
	}
	if got := all.List(); len(got) != 2 || got[1] != "publish" {
		t.Fatalf("List = %v", got)
	}
	// admin alone does not let its holder into a room.
	if a := MustParseGrants("admin"); a.Join {
		t.Fatal("admin implied join")
	}
	for _, bad := range []string{"publsh", "publish:speaker", "root"} {
		if _, err := ParseGrants([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	back, err := ParseGrants(MustParseGrants("publish:microphone", "moderate", "record").List())
	if err != nil || back != MustParseGrants("publish:microphone", "moderate", "record") {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}

func TestRoomMatches(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"standup", "standup", true},
		{"standup", "standup2", false},
		{"team-*", "team-a", true},
		{"team-*", "other", false},
		{"*", "anything", true},
		{"", "standup", false},
		{"[", "[", true}, // an exact name matches even when it is no valid glob
	} {
		if got := RoomMatches(c.pattern, c.name); got != c.want {
			t.Errorf("RoomMatches(%q, %q) = %v", c.pattern, c.name, got)
		}
	}
}

func TestVerifyHS256(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	k1 := Key{ID: "k1", Secret: secret('a')}
	v, err := NewVerifier([]Key{k1}, Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Sign(k1, Spec{Identity: "alice", Name: "Alice", Room: "team-*", TTL: time.Hour, Now: now,
		Grants: MustParseGrants("publish:camera", "publish:microphone", "subscribe")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.Identity != "alice" || got.Name != "Alice" || got.KeyID != "k1" || !got.Grants.Camera || got.Grants.Screen ||
		!got.AllowsRoom("team-x") || got.AllowsRoom("other") || !got.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("token %+v", got)
	}

	// Expired, beyond the leeway.
	old, _ := Sign(k1, Spec{Identity: "alice", Room: "r", TTL: time.Minute, Now: now.Add(-2 * time.Minute)})
	if _, err := v.Verify(old); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired token: %v", err)
	}
	// Not yet valid.
	early, _ := Sign(k1, Spec{Identity: "alice", Room: "r", TTL: time.Hour, Now: now, NotBefore: now.Add(10 * time.Minute)})
	if _, err := v.Verify(early); !errors.Is(err, ErrNotYetValid) {
		t.Fatalf("early token: %v", err)
	}
	// Another key with the same id: bad signature.
	forged, _ := Sign(Key{ID: "k1", Secret: secret('b')}, Spec{Identity: "mallory", Room: "*", TTL: time.Hour, Now: now})
	if _, err := v.Verify(forged); !errors.Is(err, ErrSignature) {
		t.Fatalf("forged token: %v", err)
	}
	// An unknown key id.
	other, _ := Sign(Key{ID: "k9", Secret: secret('a')}, Spec{Identity: "alice", Room: "r", TTL: time.Hour, Now: now})
	if _, err := v.Verify(other); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown kid: %v", err)
	}
	// alg "none" and garbage.
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "x",
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for _, bad := range []string{none, "", "a.b.c", strings.Repeat("x", MaxTokenBytes+1)} {
		if _, err := v.Verify(bad); err == nil {
			t.Fatalf("accepted %.40q", bad)
		}
	}
	// No expiry.
	noexp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "x"}}).SignedString(k1.Secret)
	if _, err := v.Verify(noexp); err == nil {
		t.Fatal("a token without expiry was accepted")
	}
	// No subject; an unknown grant.
	nosub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, Claims{RegisteredClaims: jwt.RegisteredClaims{
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}}).SignedString(k1.Secret)
	if _, err := v.Verify(nosub); !errors.Is(err, ErrClaims) {
		t.Fatalf("no subject: %v", err)
	}
	badGrant, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "x",
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}, Grants: []string{"root"}}).SignedString(k1.Secret)
	if _, err := v.Verify(badGrant); !errors.Is(err, ErrClaims) {
		t.Fatalf("unknown grant: %v", err)
	}
}

func TestKeyRotation(t *testing.T) {
	old, cur := Key{ID: "2026-11", Secret: secret('o')}, Key{ID: "2026-12", Secret: secret('n')}
	both, err := NewVerifier([]Key{old, cur}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	onlyNew, _ := NewVerifier([]Key{cur}, Options{})
	spec := Spec{Identity: "bob", Room: "r", TTL: time.Hour}
	tOld, _ := Sign(old, spec)
	tNew, _ := Sign(cur, spec)
	for _, tok := range []string{tOld, tNew} {
		if _, err := both.Verify(tok); err != nil {
			t.Fatalf("while both keys are configured: %v", err)
		}
	}
	if _, err := onlyNew.Verify(tOld); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old key after it was removed: %v", err)
	}
	// Without a kid a token is ambiguous when there are several keys.
	spec.Now = time.Now()
	nokid, _ := SignWith(jwt.SigningMethodHS256, "", cur.Secret, spec)
	if _, err := both.Verify(nokid); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("no kid with two keys: %v", err)
	}
	if _, err := onlyNew.Verify(nokid); err != nil {
		t.Fatalf("no kid with one key: %v", err)
	}
}

func TestPublicKeys(t *testing.T) {
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	rsaPriv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(pub any) []byte {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	edParsed, err := ParsePublicKeyPEM(pemOf(edPub))
	if err != nil {
		t.Fatal(err)
	}
	rsaParsed, err := ParsePublicKeyPEM(pemOf(&rsaPriv.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier([]Key{{ID: "ed", Public: edParsed}, {ID: "rsa", Public: rsaParsed}, {ID: "hs", Secret: secret('h')}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Identity: "carol", Room: "r", TTL: time.Hour, Grants: MustParseGrants("subscribe")}
	edTok, _ := SignWith(jwt.SigningMethodEdDSA, "ed", edPriv, spec)
	rsaTok, _ := SignWith(jwt.SigningMethodRS256, "rsa", rsaPriv, spec)
	for _, tok := range []string{edTok, rsaTok} {
		got, err := v.Verify(tok)
		if err != nil || got.Identity != "carol" || !got.Grants.Subscribe {
			t.Fatalf("verify: %+v %v", got, err)
		}
	}
	// A token claiming the RSA key's id but signed HS256 with the public key
	// bytes (the classic algorithm confusion) must fail.
	der, _ := x509.MarshalPKIXPublicKey(&rsaPriv.PublicKey)
	confused, _ := SignWith(jwt.SigningMethodHS256, "rsa", der, spec)
	if _, err := v.Verify(confused); !errors.Is(err, ErrSignature) {
		t.Fatalf("algorithm confusion: %v", err)
	}
	// Public keys never sign here.
	if _, err := Sign(Key{ID: "ed", Public: edParsed}, spec); err == nil {
		t.Fatal("signed with a public key")
	}
	if _, err := ParsePublicKeyPEM([]byte("not pem")); err == nil {
		t.Fatal("parsed garbage")
	}
}

func TestNewVerifierRefusesWeakKeys(t *testing.T) {
	for _, keys := range [][]Key{
		nil,
		{{ID: "", Secret: secret('a')}},
		{{ID: "short", Secret: []byte("secret")}},
		{{ID: "a", Secret: secret('a')}, {ID: "a", Secret: secret('b')}},
		{{ID: "none"}},
	} {
		if _, err := NewVerifier(keys, Options{}); err == nil {
			t.Errorf("accepted %+v", keys)
		}
	}
}

func TestIssuerAudience(t *testing.T) {
	k := Key{ID: "k", Secret: secret('k')}
	v, _ := NewVerifier([]Key{k}, Options{Issuer: "https://app.example", Audience: "parley"})
	good, _ := Sign(k, Spec{Identity: "a", Room: "r", TTL: time.Hour, Issuer: "https://app.example", Audience: "parley"})
	if _, err := v.Verify(good); err != nil {
		t.Fatal(err)
	}
	bad, _ := Sign(k, Spec{Identity: "a", Room: "r", TTL: time.Hour, Issuer: "https://evil.example", Audience: "parley"})
	if _, err := v.Verify(bad); !errors.Is(err, ErrClaims) {
		t.Fatalf("wrong issuer: %v", err)
	}
}

func TestFromRequest(t *testing.T) {
	r := httptest.NewRequest("GET", "/api/recordings?access_token=q", nil)
	if got := FromRequest(r); got != "q" {
		t.Fatalf("query token %q", got)
	}
	r.Header.Set("Authorization", "Bearer  h ")
	if got := FromRequest(r); got != "h" {
		t.Fatalf("bearer token %q", got)
	}
}

func TestURLSigner(t *testing.T) {
	s := NewURLSigner(nil)
	now := time.Now()
	s.now = func() time.Time { return now }
	q, _ := url.ParseQuery(s.Sign("/records/r/s/mix.mp4", now.Add(time.Minute)))
	if err := s.Verify("/records/r/s/mix.mp4", q); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify("/records/r/other/mix.mp4", q); !errors.Is(err, ErrURLInvalid) {
		t.Fatalf("other path: %v", err)
	}
	if err := s.Verify("/records/r/s/mix.mp4", url.Values{}); !errors.Is(err, ErrURLUnsigned) {
		t.Fatalf("unsigned: %v", err)
	}
	q.Set("expires", q.Get("expires")+"0")
	if err := s.Verify("/records/r/s/mix.mp4", q); !errors.Is(err, ErrURLInvalid) {
		t.Fatalf("moved expiry: %v", err)
	}
	q2, _ := url.ParseQuery(s.Sign("/p", now.Add(-time.Second)))
	if err := s.Verify("/p", q2); !errors.Is(err, ErrURLExpired) {
		t.Fatalf("expired: %v", err)
	}
	if err := NewURLSigner(nil).Verify("/p", q2); !errors.Is(err, ErrURLInvalid) {
		t.Fatalf("another server's signature: %v", err)
	}
}
