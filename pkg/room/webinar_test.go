package room

import (
	"slices"
	"testing"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/protocol"
)

func (s *sink) find(kind string) []protocol.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []protocol.Event
	for _, e := range s.events {
		if e.Event == kind {
			out = append(out, e)
		}
	}
	return out
}

// In a webinar room viewers do not see each other (STATE, JOINED, LEFT,
// private messages), presenters see everyone, everyone gets the viewer
// count at a bounded rate, and a viewer brought on stage appears to the
// other viewers and disappears again when taken back.
func TestWebinarViewers(t *testing.T) {
	cfg := testConfig()
	cfg.MaxParticipants = 0
	reg := NewRegistry(cfg, nil)
	defer reg.Close("test over")
	viewer := JoinOptions{Webinar: true, Subscribe: true, Grants: auth.MustParseGrants("subscribe", "chat")}
	host := JoinOptions{Webinar: true, Subscribe: true, Grants: auth.MustParseGrants("publish", "subscribe", "chat", "moderate")}
	var hs, v1s, v2s sink
	h, err := reg.Join("web", "host", &hs, host)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := reg.Join("web", "v1", &v1s, viewer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Join("web", "v2", &v2s, viewer); err != nil {
		t.Fatal(err)
	}
	st := v2s.find(protocol.EventState)[0]
	if !st.Webinar || st.Role != protocol.RoleViewer || len(st.Participants) != 1 || st.Participants[0].Name != "host" ||
		st.Participants[0].Role != protocol.RolePresenter || st.Viewers != 1 {
		t.Errorf("v2's STATE: %+v", st)
	}
	if got := v1s.find(protocol.EventJoined); len(got) != 0 {
		t.Errorf("v1 saw %v join", got)
	}
	if got := hs.find(protocol.EventJoined); len(got) != 2 || got[1].Role != protocol.RoleViewer {
		t.Errorf("the host saw %+v join", got)
	}
	if _, err := v1.SendMessage("v2", "psst"); code(err) != protocol.CodeUnknownParticipant {
		t.Errorf("a viewer's private message to another viewer: %v", err)
	}
	if _, err := v1.SendMessage("host", "hello"); err != nil {
		t.Errorf("a viewer's private message to the host: %v", err)
	}
	// The count comes at most once per interval, and ends at the truth.
	last := func(sk *sink) (protocol.Event, int) {
		got := sk.find(protocol.EventViewers)
		if len(got) == 0 {
			return protocol.Event{}, 0
		}
		return got[len(got)-1], len(got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ev, _ := last(&v2s); ev.Viewers != 2 && time.Now().Before(deadline); ev, _ = last(&v2s) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, sk := range []*sink{&hs, &v2s} {
		if ev, n := last(sk); ev.Viewers != 2 || n > 2 {
			t.Fatalf("VIEWERS: %d events, the last %+v", n, ev)
		}
	}
	// On stage: v1 may publish, v2 sees it join, the host is told.
	if _, err := reg.Room("web").SetStaged(v1, "v2", true); code(err) != protocol.CodeUnknownParticipant {
		t.Errorf("a viewer stages another viewer it does not see: %v", err)
	}
	if _, err := reg.Room("web").SetStaged(h, "v1", true); err != nil {
		t.Fatal(err)
	}
	if !v1.Grants().CanPublish(auth.SourceCamera) || v1.Viewer() {
		t.Errorf("staged v1: grants %v, viewer %v", v1.Grants(), v1.Viewer())
	}
	states := v1s.find(protocol.EventState)
	if last := states[len(states)-1]; last.Role != protocol.RolePresenter || !slices.Contains(last.Grants, "publish") ||
		len(last.Participants) != 2 {
		t.Errorf("v1's STATE on stage: %+v", last)
	}
	if got := v2s.find(protocol.EventJoined); len(got) != 1 || got[0].Name != "v1" {
		t.Errorf("v2 on v1's stage: %+v", got)
	}
	if got := hs.find(protocol.EventStaged); len(got) != 1 || got[0].Name != "v1" || got[0].By != "host" {
		t.Errorf("the host on v1's stage: %+v", got)
	}
	// And back.
	if _, err := reg.Room("web").SetStaged(h, "v1", false); err != nil {
		t.Fatal(err)
	}
	if v1.Grants().PublishesAny() || !v1.Viewer() {
		t.Errorf("v1 back: grants %v", v1.Grants())
	}
	if got := v2s.find(protocol.EventLeft); len(got) != 1 || got[0].Name != "v1" {
		t.Errorf("v2 on v1's return: %+v", got)
	}
	if got := hs.find(protocol.EventUnstaged); len(got) != 1 {
		t.Errorf("the host on v1's return: %+v", got)
	}
	v1.Leave("left")
	if got := v2s.find(protocol.EventLeft); len(got) != 1 {
		t.Errorf("v2 saw a viewer leave: %+v", got)
	}
	if got := hs.find(protocol.EventLeft); len(got) != 1 {
		t.Errorf("the host did not see v1 leave: %+v", got)
	}
}
