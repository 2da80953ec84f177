package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// drain returns the events a client has received so far, waiting a moment
// for stragglers.
func drain(c *client.Client, wait time.Duration) []protocol.Event {
	var out []protocol.Event
	deadline := time.After(wait)
	for {
		select {
		case ev := <-c.Events():
			out = append(out, ev)
		case <-deadline:
			return out
		}
	}
}

func roomEvents(evs []protocol.Event) []string {
	var out []string
	for _, e := range evs {
		switch e.Event {
		case protocol.EventJoined, protocol.EventLeft, protocol.EventPublished, protocol.EventUnpublished:
			out = append(out, e.Event+":"+e.Name)
		case protocol.EventMessage:
			out = append(out, e.Event+":"+e.From+">"+e.To+":"+e.Text)
		case protocol.EventState:
			var names []string
			for _, p := range e.Participants {
				names = append(names, p.Name)
			}
			out = append(out, "STATE:"+strings.Join(names, ","))
		}
	}
	return out
}

func TestRoomEventsInOrder(t *testing.T) {
	srv := testServer(t, nil)
	a := dial(t, srv, client.Options{Username: "alice"})
	b := dial(t, srv, client.Options{Username: "bob"})
	c := dial(t, srv, client.Options{Username: "carol"})
	join(t, a, "ev", "alice")
	join(t, b, "ev", "bob")
	pub, err := a.Publish(ctxT(t, 10*time.Second), client.PublishOptions{Audio: opusSource(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatal(err)
	}
	st := join(t, c, "ev", "carol")
	if len(st.Participants) != 2 || st.Participants[0].Name != "alice" || st.Participants[1].Name != "bob" {
		t.Fatalf("carol's STATE: %+v, want alice and bob in join order", st.Participants)
	}
	if s := st.Participants[0].Streams; len(s) != 1 || s[0].ID != pub.ID() || s[0].Kind != protocol.KindCamera ||
		len(s[0].Tracks) != 1 || s[0].Tracks[0].Codec != "audio/opus" {
		t.Fatalf("carol's STATE shows alice's streams as %+v", s)
	}

	text := "Привет, 世界 👋 مرحبا"
	if _, err := b.SendMessage(ctxT(t, 5*time.Second), "", text); err != nil {
		t.Fatal(err)
	}
	if _, err := b.SendMessage(ctxT(t, 5*time.Second), "carol", "only for carol"); err != nil {
		t.Fatal(err)
	}
	if err := pub.Unpublish(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := b.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)

	got := map[string][]string{
		"alice": roomEvents(drain(a, 200*time.Millisecond)),
		"bob":   roomEvents(drain(b, 200*time.Millisecond)),
		"carol": roomEvents(drain(c, 200*time.Millisecond)),
	}
	want := map[string][]string{
		"alice": {"STATE:", "JOINED:bob", "JOINED:carol", "MESSAGE:bob>:" + text, "LEFT:bob"},
		"bob":   {"STATE:alice", "PUBLISHED:alice", "JOINED:carol", "UNPUBLISHED:alice"},
		"carol": {"STATE:alice,bob", "MESSAGE:bob>:" + text, "MESSAGE:bob>carol:only for carol", "UNPUBLISHED:alice", "LEFT:bob"},
	}
	for who := range want {
		if strings.Join(got[who], "|") != strings.Join(want[who], "|") {
			t.Errorf("%s saw\n  %v\nwant\n  %v", who, got[who], want[who])
		}
	}
}

func TestChatToOneAndToAll(t *testing.T) {
	srv := testServer(t, nil)
	a := dial(t, srv, client.Options{Username: "a"})
	b := dial(t, srv, client.Options{Username: "b"})
	c := dial(t, srv, client.Options{Username: "c"})
	join(t, a, "chat", "a")
	join(t, b, "chat", "b")
	join(t, c, "chat", "c")
	text := "Привет, 世界 👋 مرحبا"
	if _, err := a.SendMessage(ctxT(t, 5*time.Second), "", text); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SendMessage(ctxT(t, 5*time.Second), "c", "secret"); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*client.Client{b, c} {
		m := waitEvent(t, x, "MESSAGE", isEvent(protocol.EventMessage, "a"))
		if m.Text != text || m.Private {
			t.Errorf("message to all arrived as %+v", m)
		}
	}
	m := waitEvent(t, c, "private MESSAGE", isEvent(protocol.EventMessage, "a"))
	if m.Text != "secret" || !m.Private || m.To != "c" {
		t.Errorf("private message arrived as %+v", m)
	}
	for _, ev := range drain(b, 300*time.Millisecond) {
		if ev.Event == protocol.EventMessage {
			t.Errorf("b got a message meant for c: %+v", ev)
		}
	}
	if _, err := a.SendMessage(ctxT(t, 5*time.Second), "nobody", "x"); errCode(err) != protocol.CodeUnknownParticipant {
		t.Errorf("message to an unknown participant: %v, want UNKNOWN_PARTICIPANT", err)
	}
	long := strings.Repeat("ж", 3000) // 6000 bytes > 4096
	if _, err := a.SendMessage(ctxT(t, 5*time.Second), "", long); errCode(err) != protocol.CodeTooLarge {
		t.Errorf("long message: %v, want TOO_LARGE", err)
	}
}

func TestNamesLeaveRejoinAndResume(t *testing.T) {
	srv := testServer(t, nil)
	a := dial(t, srv, client.Options{Username: "a"})
	watcher := dial(t, srv, client.Options{Username: "w"})
	join(t, watcher, "names", "w")
	join(t, a, "names", "alice")

	// The same name from another live session is refused.
	other := dial(t, srv, client.Options{Username: "x"})
	if _, err := other.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "names", Name: "alice"}); errCode(err) != protocol.CodeNameTaken {
		t.Fatalf("second alice: %v, want NAME_TAKEN", err)
	}
	// Leave, then join at once with the same name.
	if err := a.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	join(t, a, "names", "alice")
	if err := other.Leave(ctxT(t, 5*time.Second)); errCode(err) != protocol.CodeNotJoined {
		t.Errorf("leave without a room: %v, want NOT_JOINED", err)
	}

	// The WebSocket dies (a network change); a new one with the resume token
	// takes over and the others see no LEFT/JOINED.
	drain(watcher, 200*time.Millisecond)
	token := a.ResumeToken()
	a.CloseWebSocketOnly()
	time.Sleep(500 * time.Millisecond)
	a2 := dial(t, srv, client.Options{Resume: token})
	if !a2.Resumed() || a2.Session().Room != "names" || a2.Session().Name != "alice" {
		t.Fatalf("resumed session: %+v", a2.Session())
	}
	waitEvent(t, a2, "STATE after resume", isEvent(protocol.EventState, ""))
	// Past the reconnect grace (2 s in tests): alice must still be there.
	time.Sleep(2500 * time.Millisecond)
	for _, ev := range drain(watcher, 200*time.Millisecond) {
		if ev.Event == protocol.EventLeft || ev.Event == protocol.EventJoined {
			t.Errorf("watcher saw %s %s across a resume", ev.Event, ev.Name)
		}
	}
	if _, err := a2.SendMessage(ctxT(t, 5*time.Second), "w", "still here"); err != nil {
		t.Fatalf("resumed session cannot chat: %v", err)
	}
	waitEvent(t, watcher, "message from resumed alice", isEvent(protocol.EventMessage, "alice"))

	// A resume while the old session is still alive replaces it at once (page reload).
	a3 := dial(t, srv, client.Options{Resume: token})
	if !a3.Resumed() {
		t.Fatal("second resume was not accepted")
	}
	select {
	case <-a2.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the replaced session was not closed")
	}
	// The reloaded page joins again: same participant, no LEFT/JOINED.
	join(t, a3, "names", "alice")
	for _, ev := range drain(watcher, 500*time.Millisecond) {
		if ev.Event == protocol.EventLeft || ev.Event == protocol.EventJoined {
			t.Errorf("watcher saw %s %s across a page reload", ev.Event, ev.Name)
		}
	}

	// A session that dies for good: the others get LEFT after the grace.
	a3.CloseWebSocketOnly()
	left := waitEvent(t, watcher, "LEFT after the grace", isEvent(protocol.EventLeft, "alice"))
	if left.Reason != "disconnected" {
		t.Errorf("LEFT reason %q, want disconnected", left.Reason)
	}
	// An expired token is refused with a clear reason.
	if _, err := client.Dial(ctxT(t, 5*time.Second), wsURL(srv), client.Options{Resume: token}); err == nil {
		t.Error("a resume after the participant left was accepted")
	}
}
