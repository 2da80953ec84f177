package e2e

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/server"
)

// tokenServer serves the web app in token mode with one HS256 key.
func tokenServer(t *testing.T, key auth.Key, tweak func(*server.Config)) *server.Server {
	t.Helper()
	v, err := auth.NewVerifier([]auth.Key{key}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return startServer(t, func(c *server.Config) {
		c.Auth = server.AuthConfig{Mode: server.AuthToken, Tokens: v}
		if tweak != nil {
			tweak(c)
		}
	})
}

func mustSign(t *testing.T, key auth.Key, spec auth.Spec) string {
	t.Helper()
	if spec.TTL == 0 {
		spec.TTL = time.Hour
	}
	tok, err := auth.Sign(key, spec)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestInviteLinkToken: a page opened from an invite link (/?room=R&token=T,
// no name) joins with the token's name, takes the token out of the address
// bar, and, holding only subscribe and chat, publishes nothing and offers no
// publishing controls (so the server refuses nothing).
func TestInviteLinkToken(t *testing.T) {
	key := auth.Key{ID: "k1", Secret: []byte(strings.Repeat("e", 32))}
	srv := tokenServer(t, key, nil)
	room := fmt.Sprintf("inv%d", time.Now().UnixNano()%100000)
	tok := mustSign(t, key, auth.Spec{Identity: "u-9", Name: "Zoë Viewer", Room: room,
		Grants: auth.MustParseGrants("subscribe", "chat")})
	p := openPage(t, "viewer", srv.URL()+"/?"+url.Values{"room": {room}, "token": {tok}}.Encode())
	p.waitFor("joined as the token's name", func() (bool, string) {
		var self string
		_ = p.eval(`(window.parley.room && window.parley.room.isJoined()) ? window.parley.room.selfName() : ''`, &self)
		return self == "Zoë Viewer", self + " / " + p.text("#error")
	})
	var st struct {
		Search  string   `json:"search"`
		Grants  []string `json:"grants"`
		Local   int      `json:"local"`
		Share   bool     `json:"shareHidden"`
		Publish bool     `json:"publishHidden"`
		Error   string   `json:"error"`
	}
	// Give a refused publish time to come back before looking for errors.
	time.Sleep(time.Second)
	if err := p.eval(`({search: location.search, grants: window.parley.room.grants(),
		local: window.parley.room.getLocalStreams().length,
		shareHidden: document.querySelector('#shareScreen').hidden,
		publishHidden: document.querySelector('#publishToggle').hidden,
		error: document.querySelector('#error').hidden ? '' : document.querySelector('#error').textContent})`, &st); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(st.Search, "token") || !strings.Contains(st.Search, "room="+room) {
		t.Errorf("address after joining: %q, want the room and no token", st.Search)
	}
	if strings.Join(st.Grants, ",") != "join,subscribe,chat" || st.Local != 0 || !st.Share || !st.Publish || st.Error != "" {
		t.Errorf("viewer page: %+v", st)
	}
}
