package server_test

import (
	"testing"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
)

// A raised hand and a participant's own microphone-off reach the others as
// PRESENCE with the whole state, and a later joiner finds them in STATE; a
// repeat sends nothing; lowering the hand reaches them too. A participant
// without the chat grant may not raise a hand, but may say its microphone is off.
func TestPresenceHandAndMute(t *testing.T) {
	k := hsKey("k1", 'a')
	srv := tokenServer(t, server.AuthToken, []auth.Key{k}, nil)
	alice := dial(t, srv, client.Options{Token: sign(t, k, "alice", "hands", "publish", "subscribe", "chat")})
	join(t, alice, "hands", "")
	bob := dial(t, srv, client.Options{Token: sign(t, k, "bob", "hands", "publish", "subscribe", "chat")})
	join(t, bob, "hands", "")
	waitEvent(t, alice, "bob's JOINED", isEvent(protocol.EventJoined, "bob"))

	yes, no := true, false
	if err := bob.SetPresence(ctxT(t, 5*time.Second), protocol.Presence{Hand: &yes}); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, alice, "bob's raised hand", isEvent(protocol.EventPresence, "bob"))
	if !ev.Hand || ev.MicOff || ev.CamOff {
		t.Fatalf("PRESENCE after raising the hand: %+v", ev)
	}
	// A repeat changes nothing and sends nothing; the microphone turned off does.
	if err := bob.SetPresence(ctxT(t, 5*time.Second), protocol.Presence{Hand: &yes}); err != nil {
		t.Fatal(err)
	}
	if err := bob.SetPresence(ctxT(t, 5*time.Second), protocol.Presence{MicOff: &yes}); err != nil {
		t.Fatal(err)
	}
	ev = waitEvent(t, alice, "bob's PRESENCE", isEvent(protocol.EventPresence, "bob"))
	if !ev.Hand || !ev.MicOff || ev.CamOff {
		t.Fatalf("PRESENCE after the microphone went off (the repeat sent one?): %+v", ev)
	}

	// A later joiner sees bob's hand and microphone in STATE.
	carol := dial(t, srv, client.Options{Token: sign(t, k, "carol", "hands", "subscribe")})
	st := join(t, carol, "hands", "")
	var seen bool
	for _, p := range st.Participants {
		if p.Name == "bob" {
			seen = true
			if !p.Hand || !p.MicOff || p.CamOff {
				t.Errorf("bob in carol's STATE: %+v", p)
			}
		}
	}
	if !seen {
		t.Fatalf("bob not in carol's STATE: %+v", st.Participants)
	}
	// carol has no chat grant: no hand, but her microphone state is hers to tell.
	err := carol.SetPresence(ctxT(t, 5*time.Second), protocol.Presence{Hand: &yes})
	wantForbidden(t, "a hand without the chat grant", err, "chat")
	if err := carol.SetPresence(ctxT(t, 5*time.Second), protocol.Presence{CamOff: &yes}); err != nil {
		t.Fatal(err)
	}
	ev = waitEvent(t, alice, "carol's PRESENCE", isEvent(protocol.EventPresence, "carol"))
	if ev.Hand || !ev.CamOff {
		t.Fatalf("carol's PRESENCE: %+v", ev)
	}

	if err := bob.SetPresence(ctxT(t, 5*time.Second), protocol.Presence{Hand: &no}); err != nil {
		t.Fatal(err)
	}
	ev = waitEvent(t, carol, "bob's lowered hand", isEvent(protocol.EventPresence, "bob"))
	if ev.Hand || !ev.MicOff {
		t.Fatalf("PRESENCE after lowering the hand: %+v", ev)
	}
}
