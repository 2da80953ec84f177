package server_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/recorder"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/testmedia"
)

// speechSource publishes real Opus of a voice loud during the spans, with the
// RFC 6464 levels measured from the same audio.
func speechSource(t *testing.T, d time.Duration, loud ...testmedia.Span) client.Source {
	t.Helper()
	ogg, pcm, err := testmedia.SpeechOpus(media(t), testmedia.Options{Duration: d}, loud)
	if err != nil {
		t.Fatal(err)
	}
	src, err := client.NewOpusLevelSource(ogg, pcm, false)
	return must(t, src, err)
}

func sec(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// Two Pion publishers send real Opus with audio levels: alice talks, pauses
// (bob coughs: 400 ms), talks again and stops; then bob talks. A third
// participant gets ACTIVE_SPEAKERS in that order: alice dominant, bob shown
// speaking during his cough while alice stays dominant, then bob dominant;
// the dominant speaker comes first in the list; a latecomer gets the current
// speakers after its STATE. Both streams are recorded: the manifest has the
// dominant speaker's changes on the room's time line.
func TestActiveSpeakersFollowTheVoice(t *testing.T) {
	records := t.TempDir()
	srv := testServer(t, func(c *server.Config) { c.RecordsDir = records })
	const roomName = "speakers"
	carol := dial(t, srv, client.Options{})
	join(t, carol, roomName, "carol")
	alice := dial(t, srv, client.Options{})
	join(t, alice, roomName, "alice")
	bob := dial(t, srv, client.Options{})
	join(t, bob, roomName, "bob")

	const length = 10 * time.Second
	aliceVoice := speechSource(t, length, testmedia.Span{From: 0, To: sec(2.5)}, testmedia.Span{From: sec(4.5), To: sec(6)})
	bobVoice := speechSource(t, length, testmedia.Span{From: sec(3.2), To: sec(3.6)}, testmedia.Span{From: sec(7), To: sec(9.5)})
	ctx := ctxT(t, 30*time.Second)
	pa, err := alice.Publish(ctx, client.PublishOptions{Audio: aliceVoice, Record: true})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := bob.Publish(ctx, client.PublishOptions{Audio: bobVoice, Record: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := pa.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pb.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()

	var events []protocol.Event
	var at []time.Duration
	for {
		ev, err := carol.WaitEvent(ctx, isEvent(protocol.EventActiveSpeakers, ""))
		if err != nil {
			t.Fatalf("after %d ACTIVE_SPEAKERS (%+v): %v", len(events), events, err)
		}
		events = append(events, ev)
		at = append(at, time.Since(start))
		if ev.Dominant != nil && ev.Dominant.Name == "bob" {
			break
		}
	}
	for i, ev := range events {
		t.Logf("%5.2fs dominant %+v speakers %+v", at[i].Seconds(), ev.Dominant, ev.Speakers)
	}

	var dominants []string
	bobCoughed := false
	for i, ev := range events {
		if ev.Room != roomName {
			t.Errorf("event for room %q", ev.Room)
		}
		name := ""
		if ev.Dominant != nil {
			name = ev.Dominant.Name
			if ev.Dominant.StreamID != map[string]string{"alice": pa.ID(), "bob": pb.ID()}[name] {
				t.Errorf("dominant %+v: not %s's stream", ev.Dominant, name)
			}
		}
		if len(dominants) == 0 || dominants[len(dominants)-1] != name {
			dominants = append(dominants, name)
		}
		for j, s := range ev.Speakers {
			if s.Name == name {
				if j != 0 {
					t.Errorf("event %d: the dominant speaker %s is not first in %+v", i, name, ev.Speakers)
				}
			}
			if s.Level <= 0 || s.Level > 1 {
				t.Errorf("event %d: level %v out of (0, 1]", i, s.Level)
			}
		}
		if name == "alice" && slices.ContainsFunc(ev.Speakers, func(s protocol.Speaker) bool { return s.Name == "bob" }) {
			bobCoughed = true
		}
		if i > 0 && at[i]-at[i-1] < 250*time.Millisecond {
			t.Errorf("events %d and %d %v apart: more than a few a second", i-1, i, at[i]-at[i-1])
		}
	}
	// The first event may come before alice spoke long enough to dominate.
	if len(dominants) > 0 && dominants[0] == "" {
		dominants = dominants[1:]
	}
	if want := []string{"alice", "bob"}; !slices.Equal(dominants, want) {
		t.Fatalf("dominant speakers in order %q, want %q: bob's cough must not switch", dominants, want)
	}
	if !bobCoughed {
		t.Errorf("no event showed bob speaking (his cough) while alice was dominant")
	}
	if last := events[len(events)-1]; len(last.Speakers) == 0 || last.Speakers[0].Name != "bob" || last.Speakers[0].Level < 0.6 {
		t.Errorf("when bob became dominant: speakers %+v, want bob first and loud (his voice is about -25 dBov)", last.Speakers)
	}
	if at[len(at)-1] < sec(7) {
		t.Errorf("bob dominant after %v, before he talked for long (7 s)", at[len(at)-1])
	}

	// The recording's manifest, while it records: alice, then bob, at the
	// times the room saw them become dominant.
	matches, _ := filepath.Glob(filepath.Join(records, "*", "*", recorder.ManifestName))
	if len(matches) != 1 {
		t.Fatalf("manifests %q", matches)
	}
	// (The recorder hears of the change right after the room does.)
	var m *recorder.Manifest
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if m, err = recorder.ReadManifest(matches[0]); err != nil {
			t.Fatal(err)
		}
		if len(m.Speakers) >= 2 || time.Now().After(deadline) {
			break
		}
	}
	if len(m.Speakers) != 2 || m.Speakers[0].Participant != "alice" || m.Speakers[0].StreamID != pa.ID() ||
		m.Speakers[1].Participant != "bob" || m.Speakers[1].StreamID != pb.ID() {
		t.Fatalf("manifest speakers %+v, want alice (%s) then bob (%s)", m.Speakers, pa.ID(), pb.ID())
	}
	// On the room's time line: bob's change came about 7 s after the
	// media started, alice's within the first second or two.
	mediaStart := start.Sub(m.Start)
	if d := m.Speakers[1].At() - m.Speakers[0].At(); d < sec(5.5) || d > sec(8.5) {
		t.Errorf("speaker changes at %v and %v (media from %v): %v apart, want about 7 s", m.Speakers[0].At(), m.Speakers[1].At(), mediaStart, d)
	}
	if a := m.Speakers[0].At(); a < mediaStart || a > mediaStart+sec(2) {
		t.Errorf("alice dominant at %v on the time line, media from %v", a, mediaStart)
	}

	// A latecomer learns who speaks right after its STATE.
	dave := dial(t, srv, client.Options{})
	join(t, dave, roomName, "dave")
	ev := waitEvent(t, dave, "ACTIVE_SPEAKERS", isEvent(protocol.EventActiveSpeakers, ""))
	if ev.Dominant == nil || ev.Dominant.Name != "bob" {
		t.Errorf("the latecomer's ACTIVE_SPEAKERS: dominant %+v, want bob", ev.Dominant)
	}
}
