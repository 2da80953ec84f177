package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/access"
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

// TestRoomPasswordInBrowser: a room whose preset has a password: the page
// asks for it, a wrong one is refused (WRONG_PASSWORD) and asked again, the
// right one lets the participant in, and its camera is published, in the
// one video codec the preset allows (Chromium prefers VP8 otherwise).
func TestRoomPasswordInBrowser(t *testing.T) {
	hash, err := access.HashPassword("pa55 word", 4)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	preset := "rooms: ['board-*']\npassword_hash: '" + hash + "'\ncodecs: [video/H264, audio/opus]\n"
	if err := os.WriteFile(filepath.Join(dir, "board.yaml"), []byte(preset), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, func(c *server.Config) { c.Auth.RoomsDir = dir })
	room := fmt.Sprintf("board-%d", time.Now().UnixNano()%100000)
	p := openPage(t, "ann", fmt.Sprintf("%s/?room=%s&name=ann", srv.URL(), room))

	asked := func(code string) {
		t.Helper()
		p.waitFor("the password box after "+code, func() (bool, string) {
			var st struct {
				Hidden bool   `json:"hidden"`
				Focus  bool   `json:"focus"`
				Error  string `json:"error"`
			}
			_ = p.eval(`({hidden: document.querySelector('#passwordForm').hidden,
				focus: document.activeElement === document.querySelector('#password'),
				error: document.querySelector('#error').textContent})`, &st)
			return !st.Hidden && st.Focus && strings.HasPrefix(st.Error, code+":"), fmt.Sprintf("%+v", st)
		})
	}
	enter := func(pw string) {
		t.Helper()
		if err := p.eval(fmt.Sprintf(`(() => { document.querySelector('#password').value = %q;
			document.querySelector('#passwordEnter').click(); return true; })()`, pw), nil); err != nil {
			t.Fatal(err)
		}
	}
	asked("PASSWORD_REQUIRED")
	enter("password")
	asked("WRONG_PASSWORD")
	enter("pa55 word")
	p.waitFor("joined and publishing", func() (bool, string) {
		var st struct {
			Joined   bool   `json:"joined"`
			Camera   string `json:"camera"`
			Hidden   bool   `json:"hidden"`
			Leftover string `json:"leftover"`
		}
		_ = p.eval(`(() => { const r = window.parley.room; const cam = r && r.getLocalStreams()[0];
			return {joined: !!r && r.isJoined(), camera: cam ? cam.status() : '',
				hidden: document.querySelector('#passwordForm').hidden,
				leftover: document.querySelector('#password').value}; })()`, &st)
		return st.Joined && st.Camera == "PUBLISHING" && st.Hidden && st.Leftover == "", fmt.Sprintf("%+v", st)
	})
	p.waitFor("H.264 sent", func() (bool, string) {
		var mimes []string
		_ = p.eval(`(async () => { const out = [];
			for (const pc of window.parley.connection.peerConnections()) {
				const r = await pc.getStats();
				r.forEach(s => { if (s.type === 'outbound-rtp' && s.codecId && (s.packetsSent || 0) > 0) out.push(r.get(s.codecId).mimeType); });
			}
			return [...new Set(out)].sort(); })()`, &mimes) // a simulcast camera sends a stream per layer
		return strings.Join(mimes, ",") == "audio/opus,video/H264", strings.Join(mimes, ",")
	})
}

// audioOf reads, on a page, the bytes received of name's camera audio and
// the tile's moderation state.
type audioState struct {
	Found      bool    `json:"found"`
	Bytes      float64 `json:"bytes"`
	Muted      string  `json:"muted"`
	ModVisible bool    `json:"modVisible"`
}

func (p *page) audioOf(name string) audioState {
	p.t.Helper()
	var st audioState
	js := fmt.Sprintf(`(async () => {
  const tile = [...document.querySelectorAll('#tiles .tile')].find(t => t.dataset.name === %q && t.dataset.kind === 'camera');
  if (!tile) return {found: false};
  const ms = tile.querySelector('video').srcObject;
  const ids = ms ? ms.getAudioTracks().map(t => t.id) : [];
  let bytes = 0;
  for (const pc of (window.__pcs || [])) {
    if (pc.connectionState === 'closed') continue;
    (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp' && ids.includes(s.trackIdentifier)) bytes += s.bytesReceived || 0; });
  }
  return {found: true, bytes, muted: tile.dataset.muted || '',
    modVisible: getComputedStyle(tile.querySelector('.mod')).display !== 'none'};
})()`, name)
	if err := p.eval(js, &st); err != nil {
		p.t.Logf("%s: reading %s's audio: %v", p.name, name, err)
	}
	return st
}

// TestModeratorMutesAndRemovesInBrowser: three pages; the moderator (a
// token with moderate, in an open room) sees moderation buttons on the
// tiles, the others do not; it mutes bob's microphone: the others see it,
// and bob's audio really stops (inbound-rtp bytesReceived stops growing on
// both other pages) while his video goes on; then it removes bob: his page
// says so and his tiles leave the others' pages.
func TestModeratorMutesAndRemovesInBrowser(t *testing.T) {
	key := auth.Key{ID: "k1", Secret: []byte(strings.Repeat("m", 32))}
	v, err := auth.NewVerifier([]auth.Key{key}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, func(c *server.Config) { c.Auth = server.AuthConfig{Mode: server.AuthOpen, Tokens: v} })
	room := fmt.Sprintf("mod%d", time.Now().UnixNano()%100000)
	tok := mustSign(t, key, auth.Spec{Identity: "host-1", Name: "Mod", Room: room,
		Grants: auth.MustParseGrants("moderate", "publish", "subscribe", "chat")})
	mod := openPage(t, "Mod", srv.URL()+"/?"+url.Values{"room": {room}, "token": {tok}}.Encode())
	bob := openPage(t, "bob", fmt.Sprintf("%s/?room=%s&name=bob", srv.URL(), room))
	carol := openPage(t, "carol", fmt.Sprintf("%s/?room=%s&name=carol", srv.URL(), room))
	others := []*page{mod, carol}
	for _, p := range others {
		p.waitDecoding("bob", "camera", true)
	}
	if st := mod.audioOf("bob"); !st.ModVisible {
		t.Errorf("the moderator sees no moderation buttons: %+v", st)
	}
	if st := carol.audioOf("bob"); st.ModVisible {
		t.Errorf("carol, no moderator, sees moderation buttons: %+v", st)
	}
	// The measurement can fail: before the mute, bob's audio bytes grow.
	for _, p := range others {
		b1 := p.audioOf("bob").Bytes
		time.Sleep(time.Second)
		if b2 := p.audioOf("bob").Bytes; b2 < b1+1000 {
			t.Fatalf("%s: bob's audio before the mute: %.0f then %.0f bytes", p.name, b1, b2)
		}
	}

	mod.click(`#tiles .tile[data-name="bob"][data-kind="camera"] .mod-mute[data-source="microphone"]`)
	for _, p := range others {
		p.waitFor("bob's microphone marked muted", func() (bool, string) {
			st := p.audioOf("bob")
			return strings.Contains(st.Muted, "microphone"), fmt.Sprintf("%+v", st)
		})
	}
	bob.waitFor("bob told he is muted", func() (bool, string) {
		var st struct {
			Muted  []string `json:"muted"`
			Button string   `json:"button"`
		}
		_ = bob.eval(`({muted: window.parley.room.mutedSources(), button: document.querySelector('#muteAudio').textContent})`, &st)
		return strings.Join(st.Muted, ",") == "microphone" && st.Button == "Unmute mic", fmt.Sprintf("%+v", st)
	})
	time.Sleep(700 * time.Millisecond) // what was on its way
	before := map[*page]float64{}
	for _, p := range others {
		before[p] = p.audioOf("bob").Bytes
	}
	time.Sleep(2 * time.Second)
	for _, p := range others {
		if after := p.audioOf("bob").Bytes; after != before[p] {
			t.Errorf("%s: bob's muted audio still arrives: %.0f then %.0f bytes over 2 s", p.name, before[p], after)
		}
		p.waitDecoding("bob", "camera", false) // his video goes on
	}

	mod.click(`#tiles .tile[data-name="bob"][data-kind="camera"] .mod-remove`)
	bob.waitFor("bob's page says he was removed", func() (bool, string) {
		e := bob.text("#error")
		var joined bool
		_ = bob.eval(`!!window.parley.room && window.parley.room.isJoined()`, &joined)
		return strings.HasPrefix(e, "REMOVED:") && strings.Contains(e, "Mod") && !joined, e
	})
	for _, p := range others {
		p.waitFor("bob's tiles gone", func() (bool, string) {
			_, ok := find(p.tiles(), "bob", "camera")
			return !ok, ""
		})
	}
}
