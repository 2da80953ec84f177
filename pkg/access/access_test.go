package access

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/protocol"
)

func forbidden(t *testing.T, err error, want string) {
	t.Helper()
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeForbidden || !strings.Contains(pe.Reason, want) {
		t.Errorf("got %v, want FORBIDDEN mentioning %q", err, want)
	}
}

var (
	now = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	key = auth.Key{ID: "k1", Secret: []byte(strings.Repeat("s", 32))}
)

func policy(t *testing.T, mode string) *Policy {
	t.Helper()
	v, err := auth.NewVerifier([]auth.Key{key}, auth.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Mode: mode, Tokens: v, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func token(t *testing.T, p *Policy, spec auth.Spec) *auth.Token {
	t.Helper()
	if spec.TTL == 0 {
		spec.TTL = time.Hour
	}
	if spec.Now.IsZero() {
		spec.Now = now
	}
	raw, err := auth.Sign(key, spec)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := p.Verify(raw)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestNewRefusesTokenModeWithoutKeys(t *testing.T) {
	if _, err := New(Config{Mode: ModeToken}); err == nil || !strings.Contains(err.Error(), "keys") {
		t.Errorf("token mode without keys: %v", err)
	}
	if _, err := New(Config{Mode: "closed"}); err == nil {
		t.Error("unknown mode accepted")
	}
	if p, err := New(Config{}); err != nil || p.Mode() != ModeOpen {
		t.Errorf("default mode: %v %v", p, err)
	}
}

func TestOpenMode(t *testing.T) {
	p := policy(t, ModeOpen)
	a, err := p.Admit(JoinRequest{Room: "r", Name: "ann", Record: true})
	if err != nil {
		t.Fatal(err)
	}
	if a.Grants != OpenGrants || !a.Subscribe || !a.Record || a.Identity != "" || a.Name != "ann" {
		t.Errorf("open admission %+v", a)
	}
	if a.Grants.Moderate || a.Grants.Admin {
		t.Error("open mode grants moderation or administration without a token")
	}
	// A token adds what it grants and names who the holder is.
	mod := token(t, p, auth.Spec{Identity: "u-1", Name: "Mo", Room: "r", Grants: auth.MustParseGrants("moderate")})
	a, err = p.Admit(JoinRequest{Room: "r", Name: "typed", Token: mod})
	if err != nil || !a.Grants.Moderate || !a.Grants.Camera || a.Identity != "u-1" || a.Name != "Mo" {
		t.Errorf("open mode with a token: %+v %v", a, err)
	}
	// A token for another room is refused even where anyone may join.
	_, err = p.Admit(JoinRequest{Room: "other", Name: "x", Token: mod})
	forbidden(t, err, `for room "r", not "other"`)
}

func TestTokenMode(t *testing.T) {
	p := policy(t, ModeToken)
	_, err := p.Admit(JoinRequest{Room: "r", Name: "anon"})
	forbidden(t, err, "access token only")

	viewer := token(t, p, auth.Spec{Identity: "v", Room: "team-*", Grants: auth.MustParseGrants("subscribe")})
	a, err := p.Admit(JoinRequest{Room: "team-a", Token: viewer})
	if err != nil || a.Name != "v" || !a.Subscribe || a.Grants.Chat || a.Grants.PublishesAny() {
		t.Errorf("viewer: %+v %v", a, err)
	}
	_, err = p.Admit(JoinRequest{Room: "team-a", Token: viewer, Record: true})
	forbidden(t, err, "record grant")
	no := false
	if a, err := p.Admit(JoinRequest{Room: "team-a", Token: viewer, Subscribe: &no}); err != nil || a.Subscribe {
		t.Errorf("subscribe false: %+v %v", a, err)
	}
	publisher := token(t, p, auth.Spec{Identity: "p", Room: "r", Grants: auth.MustParseGrants("publish:camera")})
	yes := true
	_, err = p.Admit(JoinRequest{Room: "r", Token: publisher, Subscribe: &yes})
	forbidden(t, err, "subscribe")
	if a, err := p.Admit(JoinRequest{Room: "r", Token: publisher}); err != nil || a.Subscribe {
		t.Errorf("publisher without subscribe by default: %+v %v", a, err)
	}
	adminOnly := token(t, p, auth.Spec{Identity: "root", Room: "*", Grants: auth.MustParseGrants("admin")})
	_, err = p.Admit(JoinRequest{Room: "r", Token: adminOnly})
	forbidden(t, err, "does not grant joining")
	api := token(t, p, auth.Spec{Identity: "svc", Grants: auth.MustParseGrants("subscribe")})
	_, err = p.Admit(JoinRequest{Room: "r", Token: api})
	forbidden(t, err, "no room")
}

func TestExpiryAtJoin(t *testing.T) {
	p := policy(t, ModeToken)
	tok := token(t, p, auth.Spec{Identity: "a", Room: "r", TTL: time.Minute, Grants: auth.MustParseGrants("subscribe")})
	p.now = func() time.Time { return now.Add(2 * time.Minute) }
	_, err := p.Admit(JoinRequest{Room: "r", Token: tok})
	forbidden(t, err, "expired")
}

func TestVerifyReasons(t *testing.T) {
	p := policy(t, ModeToken)
	expired, _ := auth.Sign(key, auth.Spec{Identity: "a", Room: "r", TTL: time.Minute, Now: now.Add(-time.Hour)})
	_, err := p.Verify(expired)
	forbidden(t, err, "expired")
	other, _ := auth.Sign(auth.Key{ID: "k9", Secret: key.Secret}, auth.Spec{Identity: "a", Room: "r", TTL: time.Hour, Now: now})
	_, err = p.Verify(other)
	forbidden(t, err, "unknown key")
	forged, _ := auth.Sign(auth.Key{ID: "k1", Secret: []byte(strings.Repeat("x", 32))}, auth.Spec{Identity: "a", Room: "r", TTL: time.Hour, Now: now})
	_, err = p.Verify(forged)
	forbidden(t, err, "signature")
	_, err = Open().Verify(expired)
	forbidden(t, err, "no token keys")
}

const cameraOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n"

func TestOfferSources(t *testing.T) {
	if got, err := OfferSources(protocol.KindCamera, cameraOffer); err != nil || strings.Join(got, ",") != "camera,microphone" {
		t.Errorf("camera offer: %v %v", got, err)
	}
	if got, _ := OfferSources(protocol.KindScreen, cameraOffer); strings.Join(got, ",") != "screen" {
		t.Errorf("screen offer: %v", got)
	}
	inactiveAudio := strings.Replace(cameraOffer, "a=mid:0\r\na=sendonly", "a=mid:0\r\na=inactive", 1)
	if got, _ := OfferSources(protocol.KindCamera, inactiveAudio); strings.Join(got, ",") != "camera" {
		t.Errorf("inactive audio: %v", got)
	}
	if _, err := OfferSources(protocol.KindCamera, "garbage"); err == nil {
		t.Error("garbage parsed")
	}
}

func TestCheckPublish(t *testing.T) {
	cam := auth.MustParseGrants("publish:camera")
	forbidden(t, CheckPublish(cam, protocol.KindCamera, cameraOffer, false), "from the microphone (grant publish:microphone)")
	forbidden(t, CheckPublish(auth.MustParseGrants("subscribe"), protocol.KindCamera, cameraOffer, false), "publishing")
	both := auth.MustParseGrants("publish:camera", "publish:microphone")
	if err := CheckPublish(both, protocol.KindCamera, cameraOffer, false); err != nil {
		t.Error(err)
	}
	forbidden(t, CheckPublish(both, protocol.KindScreen, cameraOffer, false), "screen")
	forbidden(t, CheckPublish(both, protocol.KindCamera, cameraOffer, true), "record grant")
	forbidden(t, CheckChat(both), "chat")
}
