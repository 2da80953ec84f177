package server_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
)

// webinarPreset is the preset of the webinar tests: anonymous viewers.
const webinarPreset = "rooms: ['webinar-*']\nwebinar: true\ngrants: [subscribe, chat]\n"

// waitPackets waits until tr has received at least n more packets than it had.
func waitPackets(t *testing.T, tr *client.RemoteTrack, n int64) {
	t.Helper()
	start := tr.Packets()
	deadline := time.Now().Add(15 * time.Second)
	for tr.Packets() < start+n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := tr.Packets() - start; got < n {
		t.Fatalf("%s track of %s: %d packets, want %d", tr.Kind(), tr.Publisher(), got, n)
	}
}

// TestWebinarViewers: Pion clients in a webinar room, in token mode. A
// presenter (its token grants publish) publishes; viewers without a token
// receive its media, are refused publishing (FORBIDDEN; over WHIP 403), are not listed to
// each other (STATE, JOINED) while the presenter sees them and their count;
// the moderator brings one on stage, which publishes to the others, and
// back, which ends its stream and refuses its next publish.
func TestWebinarViewers(t *testing.T) {
	k := hsKey("k1", 'w')
	srv := tokenServer(t, server.AuthToken, []auth.Key{k}, func(c *server.Config) {
		c.Auth.RoomsDir = roomsDir(t, map[string]string{"webinar.yaml": webinarPreset})
	})
	const room = "webinar-7"
	host := dial(t, srv, client.Options{Token: sign(t, k, "host", room, "publish", "subscribe", "chat", "moderate")})
	st := join(t, host, room, "")
	if !st.Webinar || st.Role != protocol.RolePresenter {
		t.Fatalf("host's STATE: %+v", st)
	}
	publishCamera(t, host)

	v1 := dial(t, srv, client.Options{Username: "v1"})
	join(t, v1, room, "v1")
	v2 := dial(t, srv, client.Options{Username: "v2"})
	st = join(t, v2, room, "v2")
	names := func(ps []protocol.ParticipantInfo) (out []string) {
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}
	if st.Role != protocol.RoleViewer || !slices.Equal(names(st.Participants), []string{"host"}) {
		t.Errorf("v2's STATE: role %q, participants %v", st.Role, names(st.Participants))
	}
	waitEvent(t, host, "v2 joined", func(e protocol.Event) bool {
		return e.Event == protocol.EventJoined && e.Name == "v2" && e.Role == protocol.RoleViewer
	})
	waitEvent(t, host, "2 viewers", func(e protocol.Event) bool { return e.Event == protocol.EventViewers && e.Viewers == 2 })
	waitEvent(t, v1, "2 viewers", func(e protocol.Event) bool { return e.Event == protocol.EventViewers && e.Viewers == 2 })

	// Viewers watch: audio and video of the presenter.
	for _, v := range []*client.Client{v1, v2} {
		tracks, err := v.WaitRemoteTracks(ctxT(t, 20*time.Second), 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range tracks {
			waitPackets(t, tr, 20)
		}
	}
	// They cannot publish, and may chat.
	_, err := v1.Publish(ctxT(t, 20*time.Second), client.PublishOptions{Video: vp8Source(t), Audio: opusSource(t)})
	wantForbidden(t, "a viewer publishes", err, "publishing")
	// Nor over WHIP, without a token or with a viewer's.
	for _, tok := range []string{"", sign(t, k, "v3", room, "subscribe", "chat")} {
		if resp, body := request(t, "POST", srv.URL()+"/whip/"+room, "application/sdp", "v=0\r\n", tok, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("a viewer's WHIP publish (token %v): %s %s", tok != "", resp.Status, body)
		}
	}
	if _, err := v1.SendMessage(ctxT(t, 5*time.Second), "", "hello from v1"); err != nil {
		t.Fatalf("a viewer chats: %v", err)
	}
	waitEvent(t, host, "v1's message", isEvent(protocol.EventMessage, "v1"))
	if _, err := v2.SendMessage(ctxT(t, 5*time.Second), "v1", "psst"); errCode(err) != protocol.CodeUnknownParticipant {
		t.Errorf("a viewer's private message to another viewer: %v", err)
	}
	// Only a moderator stages.
	if err := v2.Moderate(ctxT(t, 5*time.Second), protocol.Moderate{Action: protocol.ActionStage, Name: "v2"}); errCode(err) != protocol.CodeForbidden {
		t.Errorf("a viewer stages itself: %v", err)
	}

	// On stage: v1 gets a STATE that grants publish, v2 sees it join, and
	// its stream reaches v2.
	if err := host.Moderate(ctxT(t, 5*time.Second), protocol.Moderate{Action: protocol.ActionStage, Name: "v1"}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, v1, "v1's STATE on stage", func(e protocol.Event) bool {
		return e.Event == protocol.EventState && e.Role == protocol.RolePresenter && slices.Contains(e.Grants, "publish")
	})
	waitEvent(t, v2, "v1 on stage", isEvent(protocol.EventJoined, "v1"))
	waitEvent(t, host, "STAGED", func(e protocol.Event) bool {
		return e.Event == protocol.EventStaged && e.Name == "v1" && e.By == "host"
	})
	pub := publishCamera(t, v1)
	tracks, err := v2.WaitRemoteTracks(ctxT(t, 20*time.Second), 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range tracks {
		if tr.Publisher() == "v1" {
			waitPackets(t, tr, 20)
		}
	}

	// Back: its stream ends, v2 sees it leave, and it may not publish again.
	if err := host.Moderate(ctxT(t, 5*time.Second), protocol.Moderate{Action: protocol.ActionUnstage, Name: "v1"}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, v2, "v1 off stage", isEvent(protocol.EventLeft, "v1"))
	waitEvent(t, host, "v1's stream ends", func(e protocol.Event) bool {
		return e.Event == protocol.EventUnpublished && e.Name == "v1" && e.StreamID == pub.ID()
	})
	_, err = v1.Publish(ctxT(t, 20*time.Second), client.PublishOptions{Video: vp8Source(t)})
	wantForbidden(t, "v1 publishes off stage", err, "publishing")
	waitEvent(t, host, "UNSTAGED", isEvent(protocol.EventUnstaged, "v1"))
}
