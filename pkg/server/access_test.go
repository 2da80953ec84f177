package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
)

// hsKey returns an HS256 key with id and a secret made of c.
func hsKey(id string, c byte) auth.Key {
	return auth.Key{ID: id, Secret: []byte(strings.Repeat(string(c), 32))}
}

// tokenServer starts a server in mode with a verifier of keys.
func tokenServer(t *testing.T, mode string, keys []auth.Key, tweak func(*server.Config)) *server.Server {
	t.Helper()
	v, err := auth.NewVerifier(keys, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return testServer(t, func(c *server.Config) {
		c.Auth = server.AuthConfig{Mode: mode, Tokens: v}
		if tweak != nil {
			tweak(c)
		}
	})
}

// sign issues a token with key for identity in room with grants, valid for an hour.
func sign(t *testing.T, key auth.Key, identity, room string, grants ...string) string {
	t.Helper()
	tok, err := auth.Sign(key, auth.Spec{Identity: identity, Room: room, TTL: time.Hour, Grants: auth.MustParseGrants(grants...)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dialErr connects with opts and returns the refusal.
func dialErr(t *testing.T, srv *server.Server, opts client.Options) error {
	t.Helper()
	c, err := client.Dial(ctxT(t, 10*time.Second), wsURL(srv), opts)
	if err == nil {
		_ = c.Close()
	}
	return err
}

func wantForbidden(t *testing.T, what string, err error, reason string) {
	t.Helper()
	if errCode(err) != protocol.CodeForbidden || !strings.Contains(err.Error(), reason) {
		t.Fatalf("%s: %v, want FORBIDDEN mentioning %q", what, err, reason)
	}
}

// A subscribe-only token's publish is refused with FORBIDDEN naming the
// sources, while its subscription receives the others' media; the session
// goes on (it can still subscribe after the refusal).
func TestSubscribeOnlyTokenCannotPublish(t *testing.T) {
	k := hsKey("k1", 'a')
	srv := tokenServer(t, server.AuthToken, []auth.Key{k}, nil)

	alice := dial(t, srv, client.Options{Token: sign(t, k, "alice", "standup", "publish", "subscribe", "chat")})
	st := join(t, alice, "standup", "alice")
	if strings.Join(st.Grants, ",") != "join,publish,subscribe,chat" {
		t.Errorf("alice's STATE grants %v", st.Grants)
	}
	viewer := dial(t, srv, client.Options{Token: sign(t, k, "viewer-7", "standup", "subscribe")})
	st = join(t, viewer, "standup", "")
	if st.Self != "viewer-7" || strings.Join(st.Grants, ",") != "join,subscribe" {
		t.Errorf("viewer's STATE: self %q, grants %v", st.Self, st.Grants)
	}

	_, err := viewer.Publish(ctxT(t, 20*time.Second), client.PublishOptions{Video: vp8Source(t), Audio: opusSource(t)})
	wantForbidden(t, "viewer publishes", err, "publishing")
	_, err = viewer.SendMessage(ctxT(t, 5*time.Second), "", "hello")
	wantForbidden(t, "viewer chats", err, "chat")

	publishCamera(t, alice)
	tracks, err := viewer.WaitRemoteTracks(ctxT(t, 20*time.Second), 2)
	if err != nil {
		t.Fatalf("the viewer's subscription: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, tr := range tracks {
		for tr.Packets() < 20 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if tr.Packets() < 20 {
			t.Errorf("viewer got %d %s packets from %s", tr.Packets(), tr.Kind(), tr.Publisher())
		}
	}
}

// A camera-only token may publish video but not audio; the refusal names the microphone.
func TestPublishBySource(t *testing.T) {
	k := hsKey("k1", 'a')
	srv := tokenServer(t, server.AuthToken, []auth.Key{k}, nil)
	c := dial(t, srv, client.Options{Token: sign(t, k, "cam", "r", "publish:camera")})
	join(t, c, "r", "cam")
	_, err := c.Publish(ctxT(t, 20*time.Second), client.PublishOptions{Video: vp8Source(t), Audio: opusSource(t)})
	wantForbidden(t, "camera+microphone", err, "microphone")
	pub, err := c.Publish(ctxT(t, 20*time.Second), client.PublishOptions{Video: vp8Source(t)})
	if err != nil {
		t.Fatalf("video alone: %v", err)
	}
	if err := pub.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatal(err)
	}
	_, err = c.Publish(ctxT(t, 20*time.Second), client.PublishOptions{Kind: protocol.KindScreen, Video: vp8Source(t)})
	wantForbidden(t, "screen", err, "screen")
}

// Tokens for another room, expired, signed by an unknown key or with a bad
// signature are refused, each with its reason.
func TestBadTokensRefused(t *testing.T) {
	k := hsKey("k1", 'a')
	srv := tokenServer(t, server.AuthToken, []auth.Key{k}, nil)

	other := dial(t, srv, client.Options{Token: sign(t, k, "bob", "other-room", "subscribe")})
	_, err := other.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "standup"})
	wantForbidden(t, "token for another room", err, `for room "other-room", not "standup"`)
	if _, err := other.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "other-room"}); err != nil {
		t.Errorf("the same session, its own room: %v", err)
	}

	expired, _ := auth.Sign(k, auth.Spec{Identity: "bob", Room: "standup", TTL: time.Minute, Now: time.Now().Add(-time.Hour)})
	wantForbidden(t, "expired token", dialErr(t, srv, client.Options{Token: expired}), "expired")
	unknown := sign(t, hsKey("k2", 'a'), "bob", "standup", "subscribe")
	wantForbidden(t, "unknown key", dialErr(t, srv, client.Options{Token: unknown}), `unknown key "k2"`)
	forged := sign(t, hsKey("k1", 'z'), "mallory", "*", "moderate", "admin")
	wantForbidden(t, "bad signature", dialErr(t, srv, client.Options{Token: forged}), "signature invalid")
	wantForbidden(t, "garbage", dialErr(t, srv, client.Options{Token: "not.a.jwt"}), "malformed")

	// Without a token: the session connects, its join is refused, it goes on.
	anon := dial(t, srv, client.Options{Username: "anon"})
	_, err = anon.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "standup"})
	wantForbidden(t, "no token", err, "access token only")
	if _, err := anon.Request(ctxT(t, 5*time.Second), &protocol.Envelope{Type: protocol.TypePing}); err != nil {
		t.Errorf("the session after a refusal: %v", err)
	}
}

// While two keys are configured (a rotation), tokens of both are accepted.
func TestKeyRotationAtServer(t *testing.T) {
	old, cur := hsKey("2026-11", 'o'), hsKey("2026-12", 'n')
	srv := tokenServer(t, server.AuthToken, []auth.Key{old, cur}, nil)
	for _, k := range []auth.Key{old, cur} {
		c := dial(t, srv, client.Options{Token: sign(t, k, "user-"+k.ID, "r", "subscribe")})
		if st := join(t, c, "r", ""); st.Self != "user-"+k.ID {
			t.Errorf("joined as %q", st.Self)
		}
	}
	after := tokenServer(t, server.AuthToken, []auth.Key{cur}, nil)
	wantForbidden(t, "the old key once removed", dialErr(t, after, client.Options{Token: sign(t, old, "u", "r", "subscribe")}), "unknown key")
}

// record: true from a participant without the record grant is refused, on
// join and on publish; with the grant the room records.
func TestRecordNeedsGrant(t *testing.T) {
	k := hsKey("k1", 'a')
	srv := tokenServer(t, server.AuthToken, []auth.Key{k}, func(c *server.Config) { c.RecordsDir = t.TempDir() })

	guest := dial(t, srv, client.Options{Token: sign(t, k, "guest", "r", "publish", "subscribe")})
	_, err := guest.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "r", Record: true})
	wantForbidden(t, "join with record", err, "record grant")
	st := join(t, guest, "r", "")
	if st.Recording {
		t.Fatal("the room records after a refused record")
	}
	_, err = guest.Publish(ctxT(t, 20*time.Second), client.PublishOptions{Video: vp8Source(t), Record: true})
	wantForbidden(t, "publish with record", err, "record grant")

	host := dial(t, srv, client.Options{Token: sign(t, k, "host", "r2", "publish", "subscribe", "record")})
	if st, err := host.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "r2", Record: true}); err != nil || !st.Recording {
		t.Fatalf("join with record and the grant: %+v %v", st.Recording, err)
	}
}

// In open mode anyone may do what they could before, and records; a token
// still names who its holder is and may not be used for another room.
func TestOpenModeWithTokens(t *testing.T) {
	k := hsKey("k1", 'a')
	srv := tokenServer(t, server.AuthOpen, []auth.Key{k}, nil)
	anon := dial(t, srv, client.Options{Username: "anon"})
	st, err := anon.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "r", Record: true})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(st.Grants, ",") != "join,publish,subscribe,chat,record" {
		t.Errorf("open grants %v", st.Grants)
	}
	named := dial(t, srv, client.Options{Username: "typed", Token: func() string {
		tok, _ := auth.Sign(k, auth.Spec{Identity: "u-42", Name: "Dana Scully", Room: "r", TTL: time.Hour,
			Grants: auth.MustParseGrants("moderate")})
		return tok
	}()})
	st = join(t, named, "r", "")
	if st.Self != "Dana Scully" || !strings.Contains(strings.Join(st.Grants, ","), "moderate") {
		t.Errorf("token holder in open mode: self %q grants %v", st.Self, st.Grants)
	}
	waitEvent(t, anon, "JOINED Dana Scully", isEvent(protocol.EventJoined, "Dana Scully"))
	_, err = named.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "elsewhere"})
	wantForbidden(t, "open mode, token for another room", err, "not \"elsewhere\"")
}

// A resumed session keeps the grants of the token it connected with.
func TestResumeKeepsGrants(t *testing.T) {
	k := hsKey("k1", 'a')
	srv := tokenServer(t, server.AuthToken, []auth.Key{k}, nil)
	c := dial(t, srv, client.Options{Token: sign(t, k, "ann", "r", "publish:camera", "subscribe")})
	join(t, c, "r", "")
	if err := c.ReconnectWebSocket(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !c.Resumed() {
		t.Fatal("not resumed")
	}
	_, err := c.SendMessage(ctxT(t, 5*time.Second), "", "hi")
	wantForbidden(t, "chat after resume", err, "chat")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pub, err := c.Publish(ctx, client.PublishOptions{Video: vp8Source(t)})
	if err != nil {
		t.Fatalf("publish after resume: %v", err)
	}
	if err := pub.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatal(err)
	}
}

// Look-alike names are refused at the server: invisible characters with
// INVALID_NAME, a Cyrillic look-alike with NAME_TAKEN.
func TestLookAlikeNamesRefused(t *testing.T) {
	srv := testServer(t, nil)
	a := dial(t, srv, client.Options{Username: "alice"})
	join(t, a, "names", "alice")
	for name, code := range map[string]string{
		"alice\u034f":  protocol.CodeInvalidName,
		"alice\ufe0f":  protocol.CodeInvalidName,
		"alice\u3164":  protocol.CodeInvalidName,
		"\u0430lice":   protocol.CodeNameTaken,
		"\u0410LICE":   protocol.CodeNameTaken,
		"\uff41\uff4c": "",
	} {
		c := dial(t, srv, client.Options{Username: name})
		_, err := c.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "names", Name: name})
		if errCode(err) != code {
			t.Errorf("%+q joins: %v, want %q", name, err, code)
		}
	}
}

// The TURN user name a participant gets with its join names it by its
// token's subject, so per-user TURN quotas count the person, whatever
// name it shows.
func TestTURNUserIsTokenSubject(t *testing.T) {
	k := hsKey("k1", 't')
	srv := tokenServer(t, server.AuthToken, []auth.Key{k}, func(c *server.Config) {
		c.TURN = server.TURNConfig{URLs: []string{"turn:203.0.113.7:3478?transport=udp"}, Secret: "s3cret-for-tests"}
	})
	tok, err := auth.Sign(k, auth.Spec{Identity: "u-42", Name: "Dana Scully", Room: "standup", TTL: time.Hour,
		Grants: auth.MustParseGrants("subscribe")})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv, client.Options{Token: tok})
	if st := join(t, c, "standup", ""); st.Self != "Dana Scully" {
		t.Fatalf("joined as %q", st.Self)
	}
	servers := c.ICEServers()
	if len(servers) != 1 {
		t.Fatalf("ICE servers after the join: %v", servers)
	}
	if _, user, _ := strings.Cut(servers[0].Username, ":"); user != "standup/u-42" {
		t.Errorf("TURN user name %q, want EXPIRY:standup/u-42", servers[0].Username)
	}
}
