package server_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/clips"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
)

// clipPresetServer starts a server in mode with room presets and media
// messages whose settings come from the presets.
func clipPresetServer(t *testing.T, mode string, key auth.Key, rooms string) *server.Server {
	t.Helper()
	return tokenServer(t, mode, []auth.Key{key}, func(c *server.Config) {
		c.Auth.RoomsDir = rooms
		c.Clips = &server.ClipsConfig{Dir: t.TempDir(), SweepInterval: 100 * time.Millisecond,
			FreeSpace: func(string) (int64, error) { return 1 << 40, nil }}
	})
}

// listClips lists a room's clips with cred; it returns the status and the answer.
func listClips(t *testing.T, srv *server.Server, roomName, cred string) (int, []protocol.Clip, protocol.ClipLimits) {
	t.Helper()
	got := fetch(t, "GET", srv.URL()+"/api/rooms/"+roomName+"/clips", bearer(cred))
	var out struct {
		Clips  []protocol.Clip     `json:"clips"`
		Limits protocol.ClipLimits `json:"limits"`
	}
	if got.status == http.StatusOK {
		if err := json.Unmarshal(got.body, &out); err != nil {
			t.Fatalf("list: %v: %s", err, got.body)
		}
	}
	return got.status, out.Clips, out.Limits
}

// TestClipGrants: what a participant may do with clips comes from its grants
// (pkg/access), in token mode with a room preset's default grants: without
// chat it lists and plays but cannot post; a moderator deletes another's clip;
// a clip's owner is its author's identity, so the author deletes it after
// rejoining in a new session, while someone else, or a participant without a
// token under the same name, cannot; a barred identity's token is refused.
func TestClipGrants(t *testing.T) {
	k := hsKey("k1", 'c')
	dir := roomsDir(t, map[string]string{
		// Guests (no token) may watch but not chat.
		"radio.yaml": "rooms: [radio]\ngrants: [subscribe]\n",
		// Guests may chat, and so post clips, in token mode.
		"lounge.yaml": "rooms: [lounge]\ngrants: [subscribe, chat]\n",
	})
	srv := clipPresetServer(t, server.AuthToken, k, dir)
	clip := clipBytes(t, 1, false)

	guest := dial(t, srv, client.Options{Username: "guest"})
	accGuest := joinClips(t, guest, "radio", "guest")
	if accGuest.Post || accGuest.Moderate {
		t.Errorf("a guest without chat: %+v", accGuest)
	}
	spkTok := sign(t, k, "spk", "radio", "publish", "subscribe", "chat")
	spk := dial(t, srv, client.Options{Token: spkTok})
	accSpk := joinClips(t, spk, "radio", "")
	host := dial(t, srv, client.Options{Token: sign(t, k, "host", "radio", "subscribe", "chat", "moderate")})
	accHost := joinClips(t, host, "radio", "")
	if !accSpk.Post || accSpk.Moderate || accSpk.Self != "id:spk" || !accHost.Post || !accHost.Moderate {
		t.Errorf("speaker %+v\nhost %+v", accSpk, accHost)
	}

	// Without chat: 403 on post, but list and play.
	if st, body := post(t, srv, "radio", accGuest.Pass, clip); st != http.StatusForbidden {
		t.Errorf("a guest without chat posts: %d %v", st, body)
	}
	if st, body := post(t, srv, "radio", sign(t, k, "viewer", "radio", "subscribe"), clip); st != http.StatusForbidden {
		t.Errorf("a token without chat posts: %d %v", st, body)
	}
	st, info := post(t, srv, "radio", accSpk.Pass, clip)
	if st != http.StatusCreated || info["owner"] != "id:spk" {
		t.Fatalf("the speaker posts: %d %v", st, info)
	}
	added := waitEvent(t, guest, "CLIP_ADDED to the guest", isEvent(protocol.EventClipAdded, ""))
	if st, list, _ := listClips(t, srv, "radio", accGuest.Pass); st != 200 || len(list) != 1 || list[0].ID != added.Clip.ID {
		t.Errorf("the guest lists: %d %v", st, list)
	}
	if got := fetch(t, "GET", srv.URL()+added.Clip.URL, bearer(accGuest.Pass)); got.status != 200 || len(got.body) != len(clip) {
		t.Errorf("the guest plays: %d, %d bytes", got.status, len(got.body))
	}
	if got := fetch(t, "GET", srv.URL()+added.Clip.URL, bearer(sign(t, k, "viewer", "radio", "subscribe"))); got.status != 200 {
		t.Errorf("a subscribe token plays: %d", got.status)
	}

	// A moderator deletes another's clip, over HTTP with its pass.
	if got := fetch(t, "DELETE", srv.URL()+added.Clip.URL, bearer(accGuest.Pass)); got.status != http.StatusForbidden {
		t.Errorf("the guest deletes the speaker's clip: %d", got.status)
	}
	if got := fetch(t, "DELETE", srv.URL()+added.Clip.URL, bearer(accHost.Pass)); got.status != http.StatusNoContent {
		t.Fatalf("the moderator deletes the speaker's clip: %d %s", got.status, got.body)
	}
	if del := waitEvent(t, spk, "CLIP_DELETED", isEvent(protocol.EventClipDeleted, "")); del.ClipID != added.Clip.ID {
		t.Errorf("CLIP_DELETED %+v", del)
	}

	// The owner is the identity: the speaker leaves, comes back in a new
	// session (a new participant) and still deletes its clip; nobody else does.
	_, info = post(t, srv, "radio", accSpk.Pass, clip)
	id, _ := info["id"].(string)
	u := srv.URL() + "/api/rooms/radio/clips/" + id
	if err := spk.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, host, "the speaker leaves", isEvent(protocol.EventLeft, "spk"))
	if got := fetch(t, "DELETE", u, bearer(accSpk.Pass)); got.status != http.StatusUnauthorized {
		t.Errorf("the pass of a participant who left: %d", got.status)
	}
	// A guest who takes the speaker's identity as its name is not its owner.
	impostor := dial(t, srv, client.Options{Username: "spk"})
	accImp := joinClips(t, impostor, "radio", "spk")
	if accImp.Self == accSpk.Self {
		t.Fatalf("a guest named spk is the owner %q of the token holder spk", accImp.Self)
	}
	if got := fetch(t, "DELETE", u, bearer(accImp.Pass)); got.status != http.StatusForbidden {
		t.Errorf("a guest named spk deletes spk's clip: %d", got.status)
	}
	if err := impostor.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, host, "the impostor leaves", isEvent(protocol.EventLeft, "spk"))
	other := dial(t, srv, client.Options{Token: sign(t, k, "other", "radio", "subscribe", "chat")})
	accOther := joinClips(t, other, "radio", "")
	if got := fetch(t, "DELETE", u, bearer(accOther.Pass)); got.status != http.StatusForbidden {
		t.Errorf("another identity deletes spk's clip: %d", got.status)
	}
	spk2 := dial(t, srv, client.Options{Token: spkTok})
	accSpk2 := joinClips(t, spk2, "radio", "")
	if accSpk2.Pass == accSpk.Pass || accSpk2.Self != accSpk.Self {
		t.Errorf("the rejoined speaker: %+v", accSpk2)
	}
	if got := fetch(t, "DELETE", u, bearer(accSpk2.Pass)); got.status != http.StatusNoContent {
		t.Errorf("the speaker, rejoined, deletes its own clip: %d %s", got.status, got.body)
	}
	// With its access token over HTTP too (no join needed).
	_, info = post(t, srv, "radio", accSpk2.Pass, clip)
	id, _ = info["id"].(string)
	if got := fetch(t, "DELETE", srv.URL()+"/api/rooms/radio/clips/"+id, bearer(spkTok)); got.status != http.StatusNoContent {
		t.Errorf("the speaker deletes its clip with its token: %d %s", got.status, got.body)
	}

	// A moderator removes and bars the speaker: its token no longer reaches
	// the room's clips while the room session lasts.
	if err := moderate(t, host, protocol.Moderate{Action: protocol.ActionRemove, Name: "spk", Bar: true}); err != nil {
		t.Fatal(err)
	}
	if st, _ := post(t, srv, "radio", spkTok, clip); st != http.StatusForbidden {
		t.Errorf("a barred identity's token posts: %d", st)
	}
	if st, _, _ := listClips(t, srv, "radio", spkTok); st != http.StatusForbidden {
		t.Errorf("a barred identity's token lists: %d", st)
	}

	// A preset whose default grants include chat: guests post in token mode.
	g2 := dial(t, srv, client.Options{Username: "walker"})
	accG2 := joinClips(t, g2, "lounge", "walker")
	if !accG2.Post || accG2.Moderate {
		t.Errorf("a guest in the lounge: %+v", accG2)
	}
	if st, body := post(t, srv, "lounge", accG2.Pass, clip); st != http.StatusCreated || body["owner"] != accG2.Self {
		t.Errorf("a guest with the preset's chat posts: %d %v", st, body)
	}
}

// TestClipPresetLimits: a room's clip limits are its preset's clips block
// over the server's defaults; a reload applies to the next upload, without a
// new join; a preset can turn clips off in its rooms.
func TestClipPresetLimits(t *testing.T) {
	k := hsKey("k1", 'l')
	dir := roomsDir(t, map[string]string{
		"chat.yaml":  "rooms: ['chat-*']\nclips: {maxClipSizeSec: 1, maxBlobBytes: 2000000, onRecorded: upload}\n",
		"quiet.yaml": "rooms: [quiet]\nclips: {enabled: false}\n",
	})
	srv := tokenServer(t, server.AuthOpen, []auth.Key{k}, func(c *server.Config) {
		defs := clips.DefaultLimits()
		defs.MaxClipSec = 30
		c.Auth.RoomsDir = dir
		c.Clips = &server.ClipsConfig{Dir: t.TempDir(), Defaults: &defs,
			FreeSpace: func(string) (int64, error) { return 1 << 40, nil }}
	})
	clip := clipBytes(t, 1.5, false)

	a := dial(t, srv, client.Options{Username: "ann"})
	acc := joinClips(t, a, "chat-1", "ann")
	if l := acc.Limits; l.MaxClipSizeSec != 1 || l.MaxBlobBytes != 2_000_000 || l.OnRecorded != clips.OnRecordedUpload {
		t.Errorf("chat-1's limits in the join reply: %+v", l)
	}
	if st, body := post(t, srv, "chat-1", acc.Pass, clip); st != http.StatusUnprocessableEntity || body["code"] != clips.CodeTooLong {
		t.Errorf("a 1.5 s clip where the preset says 1 s: %d %v", st, body)
	}
	b := dial(t, srv, client.Options{Username: "bo"})
	accLobby := joinClips(t, b, "lobby", "bo")
	if accLobby.Limits.MaxClipSizeSec != 30 || accLobby.Limits.OnRecorded != clips.OnRecordedPreview {
		t.Errorf("lobby (no preset): %+v, want the server's defaults", accLobby.Limits)
	}
	if st, body := post(t, srv, "lobby", accLobby.Pass, clip); st != http.StatusCreated {
		t.Errorf("the same clip in a room with the defaults: %d %v", st, body)
	}

	// The preset changes: the next upload follows it, with the same pass.
	if err := os.WriteFile(filepath.Join(dir, "chat.yaml"), []byte("rooms: ['chat-*']\nclips: {maxClipSizeSec: 5}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.ReloadPresets(); err != nil {
		t.Fatal(err)
	}
	if st, body := post(t, srv, "chat-1", acc.Pass, clip); st != http.StatusCreated {
		t.Errorf("after the reload: %d %v", st, body)
	}
	if st, _, l := listClips(t, srv, "chat-1", acc.Pass); st != 200 || l.MaxClipSizeSec != 5 || l.OnRecorded != clips.OnRecordedPreview {
		t.Errorf("the list's limits after the reload: %d %+v", st, l)
	}

	// Clips off in a preset's rooms: no access with the join, uploads refused.
	q := dial(t, srv, client.Options{Username: "quinn"})
	raw, err := q.Request(ctxT(t, 10*time.Second), &protocol.Join{Type: protocol.TypeJoin, Room: "quiet", Name: "quinn"})
	if err != nil {
		t.Fatal(err)
	}
	var r protocol.Reply
	if err := json.Unmarshal(raw, &r); err != nil || r.Clips != nil {
		t.Errorf("the join reply in a room without clips: %s", raw)
	}
	if st, body := post(t, srv, "quiet", sign(t, k, "q", "quiet", "chat"), clip); st != http.StatusForbidden || body["code"] != clips.CodeDisabled {
		t.Errorf("a post where the preset turned clips off: %d %v", st, body)
	}
}
