package room

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley/parley/pkg/protocol"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type sink struct {
	mu     sync.Mutex
	events []protocol.Event
}

func (s *sink) Deliver(ev *protocol.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, *ev)
}

func (s *sink) kinds() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events {
		out = append(out, e.Event+":"+e.Name+e.From)
	}
	return out
}

func code(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func testConfig() Config {
	c := DefaultConfig()
	c.IdleTimeout = 50 * time.Millisecond
	c.MaxParticipants = 3
	c.MaxStreams = 2
	return c
}

func TestEventsInOrder(t *testing.T) {
	reg := NewRegistry(testConfig(), nil)
	defer reg.Close("test over")
	var a, b sink
	pa, err := reg.Join("r1", "alice", &a, JoinOptions{Subscribe: true})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := reg.Join("r1", "bob", &b, JoinOptions{Subscribe: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := pa.AddStream(protocol.StreamInfo{ID: "st-1", Kind: protocol.KindCamera, Status: protocol.StreamPending}); err != nil {
		t.Fatal(err)
	}
	if _, err := pb.SendMessage("", "hi all"); err != nil {
		t.Fatal(err)
	}
	if _, err := pb.SendMessage("alice", "psst"); err != nil {
		t.Fatal(err)
	}
	if err := pa.RemoveStream("st-1"); err != nil {
		t.Fatal(err)
	}
	pb.Leave("left")

	wantA := []string{"STATE:", "JOINED:bob", "MESSAGE:bob", "MESSAGE:bob", "STREAM_STATUS:alice", "LEFT:bob"}
	wantB := []string{"STATE:", "PUBLISHED:alice", "UNPUBLISHED:alice"}
	if got := a.kinds(); strings.Join(got, ",") != strings.Join(wantA, ",") {
		t.Errorf("alice saw %v, want %v", got, wantA)
	}
	if got := b.kinds(); strings.Join(got, ",") != strings.Join(wantB, ",") {
		t.Errorf("bob saw %v, want %v", got, wantB)
	}
	if st := b.events[0]; len(st.Participants) != 1 || st.Participants[0].Name != "alice" {
		t.Errorf("bob's STATE lists %+v, want alice", st.Participants)
	}
	if m := a.events[3]; !m.Private || m.To != "alice" || m.Text != "psst" {
		t.Errorf("private message arrived as %+v", m)
	}
}

func TestNamesAndLimits(t *testing.T) {
	reg := NewRegistry(testConfig(), nil)
	defer reg.Close("test over")
	var s sink
	p, err := reg.Join("r", "alice", &s, JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Join("r", "alice", &s, JoinOptions{}); code(err) != protocol.CodeNameTaken {
		t.Errorf("same name: got %v, want NAME_TAKEN", err)
	}
	p.Leave("left")
	if _, err := reg.Join("r", "alice", &s, JoinOptions{}); err != nil {
		t.Errorf("join right after leave with the same name: %v", err)
	}
	for _, n := range []string{"b", "c"} {
		if _, err := reg.Join("r", n, &s, JoinOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.Join("r", "d", &s, JoinOptions{}); code(err) != protocol.CodeRoomFull {
		t.Errorf("fourth participant: got %v, want ROOM_FULL", err)
	}
	bad := map[string]string{"": protocol.CodeInvalidName, " x": protocol.CodeInvalidName, "<b>x</b>": protocol.CodeInvalidName,
		strings.Repeat("я", 40): protocol.CodeInvalidName}
	for name, want := range bad {
		if _, err := reg.Join("r2", name, &s, JoinOptions{}); code(err) != want {
			t.Errorf("name %q: got %v, want %s", name, err, want)
		}
	}
	if _, err := reg.Join("a/b", "x", &s, JoinOptions{}); code(err) != protocol.CodeInvalidRoom {
		t.Errorf("room a/b: got %v, want INVALID_ROOM", err)
	}
	if _, err := reg.Join("комната", "Иван Петров", &s, JoinOptions{}); err != nil {
		t.Errorf("Unicode names: %v", err)
	}
}

func TestStreamLimitAndText(t *testing.T) {
	reg := NewRegistry(testConfig(), nil)
	defer reg.Close("test over")
	var s sink
	p, _ := reg.Join("r", "alice", &s, JoinOptions{})
	for i := 0; i < 2; i++ {
		if err := p.AddStream(protocol.StreamInfo{ID: NewStreamID()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.CanPublish(); code(err) != protocol.CodeTooManyStreams {
		t.Errorf("third stream: got %v, want TOO_MANY_STREAMS", err)
	}
	if _, err := p.SendMessage("", strings.Repeat("x", 4097)); code(err) != protocol.CodeTooLarge {
		t.Errorf("long text: got %v, want TOO_LARGE", err)
	}
	if _, err := p.SendMessage("nobody", "x"); code(err) != protocol.CodeUnknownParticipant {
		t.Errorf("to nobody: got %v, want UNKNOWN_PARTICIPANT", err)
	}
	if err := p.RemoveStream("st-none"); code(err) != protocol.CodeUnknownStream {
		t.Errorf("remove unknown: got %v, want UNKNOWN_STREAM", err)
	}
}

func TestIdleFinalizeAndRevive(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = 300 * time.Millisecond
	reg := NewRegistry(cfg, nil)
	defer reg.Close("test over")
	finalized := make(chan Finalized, 4)
	reg.OnFinalize(func(f Finalized) { finalized <- f })

	var s sink
	p, _ := reg.Join("r", "alice", &s, JoinOptions{})
	session := p.Room().Session()
	p.Leave("left")
	// A join inside the idle window revives the same room session.
	p2, err := reg.Join("r", "bob", &s, JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p2.Room().Session() != session {
		t.Fatalf("join inside the idle window got session %s, want %s", p2.Room().Session(), session)
	}
	select {
	case f := <-finalized:
		t.Fatalf("room finalized while bob is in it: %+v", f)
	case <-time.After(2 * cfg.IdleTimeout):
	}
	p2.Leave("left")
	var f Finalized
	select {
	case f = <-finalized:
	case <-time.After(10 * time.Second):
		t.Fatal("room did not finalize after the idle timeout")
	}
	if f.Session != session || strings.Join(f.Participants, ",") != "alice,bob" {
		t.Errorf("finalized %+v, want session %s with alice,bob", f, session)
	}
	if reg.Room("r") != nil {
		t.Error("finalized room is still registered")
	}
	p3, err := reg.Join("r", "carol", &s, JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p3.Room().Session() == session {
		t.Error("a join after finalize reused the finalized room session")
	}
}

func TestRecordAllAndRecordedStreams(t *testing.T) {
	cfg := testConfig()
	reg := NewRegistry(cfg, nil)
	defer reg.Close("test over")
	var s sink
	p, _ := reg.Join("plain", "a", &s, JoinOptions{})
	if p.Room().Recording() {
		t.Error("a room nobody asked to record records")
	}
	if err := p.AddStream(protocol.StreamInfo{ID: "st-x", Recording: true}); err != nil {
		t.Fatal(err)
	}
	if st, _ := p.Stream("st-x"); !st.Recording {
		t.Error("a stream published with record is not marked recording")
	}
	p2, _ := reg.Join("asked", "a", &s, JoinOptions{Record: true})
	if !p2.Room().Recording() {
		t.Error("a room opened with record does not record")
	}
	cfg.RecordAll = true
	all := NewRegistry(cfg, nil)
	defer all.Close("test over")
	p3, _ := all.Join("any", "a", &s, JoinOptions{})
	if !p3.Room().Recording() {
		t.Error("with RecordAll a room does not record")
	}
	var st sink
	if _, err := all.Join("any", "b", &st, JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(st.events) == 0 || !st.events[0].Recording {
		t.Error("STATE of a recorded room lacks the recording flag")
	}
}

// Announce reaches everyone in the room; a kept announcement reaches each
// later joiner and a resumed session right after their STATE, fresh each
// time; a later Announce without keep ends it.
func TestAnnounce(t *testing.T) {
	reg := NewRegistry(testConfig(), nil)
	defer reg.Close("test over")
	var a, b, b2, c sink
	pa, err := reg.Join("r", "alice", &a, JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	pa.Room().Announce(func() *protocol.Event {
		n++
		return &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventRecording, Status: protocol.RecordingStarted,
			RecordingURL: "/link/" + string(rune('0'+n))}
	}, true)
	pb, err := reg.Join("r", "bob", &b, JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pb.SetSink(&b2); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(a.kinds(), " "); got != "STATE: RECORDING: JOINED:bob" {
		t.Errorf("alice got %s", got)
	}
	if got := strings.Join(b.kinds(), " "); got != "STATE: RECORDING:" {
		t.Errorf("bob got %s", got)
	}
	if got := strings.Join(b2.kinds(), " "); got != "STATE: RECORDING:" {
		t.Errorf("bob's resumed session got %s", got)
	}
	if a.events[1].RecordingURL != "/link/1" || b.events[1].RecordingURL != "/link/2" || b2.events[1].RecordingURL != "/link/3" ||
		b.events[1].Room != "r" {
		t.Errorf("links %q %q %q, room %q: want a fresh one per delivery", a.events[1].RecordingURL, b.events[1].RecordingURL,
			b2.events[1].RecordingURL, b.events[1].Room)
	}
	pa.Room().Announce(func() *protocol.Event {
		return &protocol.Event{Type: protocol.TypeEvent, Event: protocol.EventRecording, Status: protocol.RecordingStopped,
			Reason: protocol.RecordingQuotaBytes}
	}, false)
	if _, err := reg.Join("r", "carol", &c, JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.kinds(), " "); got != "STATE:" {
		t.Errorf("carol, joining after the recording stopped, got %s", got)
	}
	if last := b2.events[len(b2.events)-2]; last.Status != protocol.RecordingStopped || last.Reason != protocol.RecordingQuotaBytes {
		t.Errorf("bob's last recording event %+v", last)
	}
}
