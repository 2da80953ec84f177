package server_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
)

// modRoom is a token-mode server with a moderator, a publisher and a viewer
// in one room.
type modRoom struct {
	srv              *server.Server
	key              auth.Key
	mod, bob, viewer *client.Client
}

func newModRoom(t *testing.T, tweak func(*server.Config)) *modRoom {
	t.Helper()
	k := hsKey("k1", 'm')
	r := &modRoom{key: k, srv: tokenServer(t, server.AuthToken, []auth.Key{k}, tweak)}
	r.mod = dial(t, r.srv, client.Options{Token: sign(t, k, "mod", "r", "moderate", "subscribe", "chat")})
	join(t, r.mod, "r", "")
	r.bob = dial(t, r.srv, client.Options{Token: sign(t, k, "bob", "r", "publish", "subscribe", "chat")})
	join(t, r.bob, "r", "")
	r.viewer = dial(t, r.srv, client.Options{Token: sign(t, k, "viewer", "r", "subscribe")})
	join(t, r.viewer, "r", "")
	return r
}

func moderate(t *testing.T, c *client.Client, m protocol.Moderate) error {
	t.Helper()
	return c.Moderate(ctxT(t, 10*time.Second), m)
}

// growth returns how many packets a track received over d.
func growth(tr *client.RemoteTrack, d time.Duration) int64 {
	before := tr.Packets()
	time.Sleep(d)
	return tr.Packets() - before
}

func trackOf(t *testing.T, tracks []*client.RemoteTrack, kind string) *client.RemoteTrack {
	t.Helper()
	for _, tr := range tracks {
		if tr.Kind() == kind {
			return tr
		}
	}
	t.Fatalf("no %s track", kind)
	return nil
}

// A moderator mutes a participant's microphone: everyone gets MUTED, the SFU
// stops forwarding that audio (the viewer's packet count stops growing while
// the video goes on), the muted participant cannot unmute itself, someone
// without the grant cannot mute, and the moderator's unmute brings it back.
func TestModeratorMutes(t *testing.T) {
	r := newModRoom(t, nil)
	publishCamera(t, r.bob)
	tracks, err := r.viewer.WaitRemoteTracks(ctxT(t, 20*time.Second), 2)
	if err != nil {
		t.Fatal(err)
	}
	audio, video := trackOf(t, tracks, "audio"), trackOf(t, tracks, "video")
	if n := growth(audio, time.Second); n < 20 {
		t.Fatalf("audio before the mute: %d packets in 1 s", n)
	}

	err = moderate(t, r.viewer, protocol.Moderate{Action: protocol.ActionMute, Name: "bob", Source: auth.SourceMicrophone})
	wantForbidden(t, "mute without the grant", err, "moderate grant")

	if err := moderate(t, r.mod, protocol.Moderate{Action: protocol.ActionMute, Name: "bob", Source: auth.SourceMicrophone}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{r.mod, r.bob, r.viewer} {
		ev := waitEvent(t, c, "MUTED", isEvent(protocol.EventMuted, "bob"))
		if ev.Source != auth.SourceMicrophone || ev.By != "mod" {
			t.Errorf("MUTED %+v", ev)
		}
	}
	time.Sleep(300 * time.Millisecond) // what was in flight
	if n := growth(audio, 1500*time.Millisecond); n > 2 {
		t.Errorf("muted audio: %d packets forwarded in 1.5 s", n)
	}
	if n := growth(video, time.Second); n < 10 {
		t.Errorf("the video stopped too: %d packets in 1 s", n)
	}
	err = moderate(t, r.bob, protocol.Moderate{Action: protocol.ActionUnmute, Source: auth.SourceMicrophone})
	wantForbidden(t, "self-unmute", err, "only a moderator")

	// A late joiner's STATE says who is muted.
	late := dial(t, r.srv, client.Options{Token: sign(t, r.key, "late", "r", "subscribe")})
	st := join(t, late, "r", "")
	for _, p := range st.Participants {
		if p.Name == "bob" && strings.Join(p.Muted, ",") != "microphone" {
			t.Errorf("bob in a late STATE: muted %v", p.Muted)
		}
	}

	if err := moderate(t, r.mod, protocol.Moderate{Action: protocol.ActionUnmute, Name: "bob", Source: auth.SourceMicrophone}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, r.viewer, "UNMUTED", isEvent(protocol.EventUnmuted, "bob"))
	deadline := time.Now().Add(5 * time.Second)
	for growth(audio, 500*time.Millisecond) < 10 {
		if time.Now().After(deadline) {
			t.Fatal("audio did not come back after the unmute")
		}
	}
}

// A room preset may let muted participants unmute themselves.
func TestSelfUnmuteByPreset(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte("rooms: [r]\nmoderation: {self_unmute: true}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newModRoom(t, func(c *server.Config) { c.Auth.RoomsDir = dir })
	if err := moderate(t, r.mod, protocol.Moderate{Action: protocol.ActionMute, Name: "bob", Source: auth.SourceCamera}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, r.bob, "MUTED", isEvent(protocol.EventMuted, "bob"))
	if err := moderate(t, r.bob, protocol.Moderate{Action: protocol.ActionUnmute, Source: auth.SourceCamera}); err != nil {
		t.Fatalf("self-unmute allowed by the preset: %v", err)
	}
	if ev := waitEvent(t, r.viewer, "UNMUTED", isEvent(protocol.EventUnmuted, "bob")); ev.By != "bob" {
		t.Errorf("UNMUTED by %q", ev.By)
	}
}

// A moderator removes a participant: everyone gets REMOVED, the others LEFT;
// barred, it may not rejoin; without the bar it may.
func TestModeratorRemoves(t *testing.T) {
	r := newModRoom(t, nil)
	publishCamera(t, r.bob)
	err := moderate(t, r.viewer, protocol.Moderate{Action: protocol.ActionRemove, Name: "bob"})
	wantForbidden(t, "remove without the grant", err, "moderate grant")

	if err := moderate(t, r.mod, protocol.Moderate{Action: protocol.ActionRemove, Name: "bob", Bar: true}); err != nil {
		t.Fatal(err)
	}
	if ev := waitEvent(t, r.bob, "REMOVED", isEvent(protocol.EventRemoved, "bob")); ev.By != "mod" || !ev.Barred {
		t.Errorf("REMOVED to bob: %+v", ev)
	}
	waitEvent(t, r.viewer, "REMOVED", isEvent(protocol.EventRemoved, "bob"))
	if ev := waitEvent(t, r.viewer, "LEFT", isEvent(protocol.EventLeft, "bob")); !strings.Contains(ev.Reason, "removed by mod") {
		t.Errorf("LEFT reason %q", ev.Reason)
	}
	_, err = r.bob.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "r"})
	wantForbidden(t, "barred rejoin", err, "removed you")
	// Another session of the same identity is barred as well.
	again := dial(t, r.srv, client.Options{Token: sign(t, r.key, "bob", "r", "subscribe")})
	_, err = again.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "r", Name: "bobby"})
	wantForbidden(t, "barred identity, another name", err, "removed you")

	if err := moderate(t, r.mod, protocol.Moderate{Action: protocol.ActionRemove, Name: "viewer"}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, r.viewer, "REMOVED", isEvent(protocol.EventRemoved, "viewer"))
	if _, err := r.viewer.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "r"}); err != nil {
		t.Errorf("rejoin without a bar: %v", err)
	}
}

// A locked room admits only moderators until it is unlocked.
func TestModeratorLocks(t *testing.T) {
	r := newModRoom(t, nil)
	err := moderate(t, r.bob, protocol.Moderate{Action: protocol.ActionLock})
	wantForbidden(t, "lock without the grant", err, "moderate grant")
	if err := moderate(t, r.mod, protocol.Moderate{Action: protocol.ActionLock}); err != nil {
		t.Fatal(err)
	}
	if ev := waitEvent(t, r.bob, "LOCKED", isEvent(protocol.EventLocked, "")); ev.By != "mod" || !ev.Locked {
		t.Errorf("LOCKED %+v", ev)
	}
	carol := dial(t, r.srv, client.Options{Token: sign(t, r.key, "carol", "r", "subscribe")})
	if _, err := carol.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "r"}); errCode(err) != protocol.CodeRoomLocked {
		t.Fatalf("join a locked room: %v", err)
	}
	mod2 := dial(t, r.srv, client.Options{Token: sign(t, r.key, "mod2", "r", "moderate")})
	if st := join(t, mod2, "r", ""); !st.Locked {
		t.Error("the STATE of a locked room does not say so")
	}
	if err := moderate(t, r.mod, protocol.Moderate{Action: protocol.ActionUnlock}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, r.bob, "UNLOCKED", isEvent(protocol.EventUnlocked, ""))
	if _, err := carol.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "r"}); err != nil {
		t.Errorf("join after unlock: %v", err)
	}
}

// A moderator ends the room: everyone gets ENDED and FAILED, the room
// finalizes, the sessions stay connected and may join again.
func TestModeratorEndsRoom(t *testing.T) {
	r := newModRoom(t, nil)
	publishCamera(t, r.bob)
	err := moderate(t, r.bob, protocol.Moderate{Action: protocol.ActionEnd})
	wantForbidden(t, "end without the grant", err, "moderate grant")
	if err := moderate(t, r.mod, protocol.Moderate{Action: protocol.ActionEnd}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{r.bob, r.viewer} {
		if ev := waitEvent(t, c, "ENDED", isEvent(protocol.EventEnded, "")); ev.By != "mod" {
			t.Errorf("ENDED %+v", ev)
		}
		if ev := waitEvent(t, c, "FAILED", isEvent(protocol.EventFailed, "")); !strings.Contains(ev.Reason, "ended by mod") {
			t.Errorf("FAILED %+v", ev)
		}
	}
	if rooms, _ := r.srv.Rooms().Count(); rooms != 0 {
		t.Errorf("%d rooms after the end", rooms)
	}
	st := join(t, r.viewer, "r", "")
	if len(st.Participants) != 0 {
		t.Errorf("a new room session has %v", st.Participants)
	}
}

// A moderator starts and stops the recording of a room whose streams are
// already published: everyone gets RECORDING, the stream gets a file that
// holds its media; without the grant the start is refused.
func TestModeratorRecords(t *testing.T) {
	dir := t.TempDir()
	r := newModRoom(t, func(c *server.Config) { c.RecordsDir = dir })
	publishCamera(t, r.bob)
	err := moderate(t, r.viewer, protocol.Moderate{Action: protocol.ActionStartRecording})
	wantForbidden(t, "record without the grant", err, "record grant")
	if err := moderate(t, r.mod, protocol.Moderate{Action: protocol.ActionStartRecording}); err != nil {
		t.Fatal(err)
	}
	if ev := waitEvent(t, r.viewer, "RECORDING", isEvent(protocol.EventRecording, "")); ev.Status != protocol.RecordingStarted || ev.By != "mod" {
		t.Errorf("RECORDING %+v", ev)
	}
	time.Sleep(2 * time.Second)
	if err := moderate(t, r.mod, protocol.Moderate{Action: protocol.ActionStopRecording}); err != nil {
		t.Fatal(err)
	}
	if ev := waitEvent(t, r.bob, "RECORDING off", func(e protocol.Event) bool {
		return e.Event == protocol.EventRecording && e.Status == protocol.RecordingStopped
	}); ev.By != "mod" || ev.Reason != protocol.RecordingStoppedByModerator {
		t.Errorf("RECORDING off %+v", ev)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "r", "*", "bob_camera_*.webm"))
	if len(files) != 1 {
		t.Fatalf("recorded files %v", files)
	}
	start, dur := probe(t, files[0])
	if dur < 1 {
		t.Errorf("the recording of about 2 s probes %.2f s (start %.2f)", dur, start)
	}
}
