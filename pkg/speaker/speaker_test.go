package speaker

import (
	"slices"
	"sync"
	"testing"
)

// Levels as a browser reports them: speech around -20 dBov, a quiet room
// around -70, digital silence 127.
const (
	loud  = 20
	quiet = 70
)

// room drives a detector with synthetic level sequences: 5 packets (20 ms
// each) per 100 ms tick, as an Opus publisher sends them.
type room struct {
	t       *testing.T
	d       *Detector
	meters  map[string]*Meter
	updates []Update
	at      []int // the tick of each update
	tick    int
}

func newRoom(t *testing.T, ids ...string) *room {
	r := &room{t: t, d: New(Config{}), meters: map[string]*Meter{}}
	for _, id := range ids {
		r.meters[id] = r.d.Add(id)
	}
	return r
}

// run plays ticks of 100 ms: level(id, tick) gives each stream's level.
func (r *room) run(ticks int, level func(id string, tick int) uint8) {
	for range ticks {
		for id, m := range r.meters {
			for range 5 {
				m.Add(level(id, r.tick))
			}
		}
		r.tick++
		if u, ok := r.d.Tick(); ok {
			r.updates = append(r.updates, u)
			r.at = append(r.at, r.tick)
		}
	}
}

// talking returns a level function: id is loud during its spans (in ticks,
// [from, to)), everyone else quiet.
func talking(spans map[string][][2]int) func(string, int) uint8 {
	return func(id string, tick int) uint8 {
		for _, s := range spans[id] {
			if tick >= s[0] && tick < s[1] {
				return loud
			}
		}
		return quiet
	}
}

func (r *room) dominants() []string {
	var out []string
	for _, u := range r.updates {
		if len(out) == 0 || out[len(out)-1] != u.Dominant {
			out = append(out, u.Dominant)
		}
	}
	return out
}

func TestDominantFollowsSustainedSpeech(t *testing.T) {
	r := newRoom(t, "alice", "bob")
	// alice talks 3 s, then bob 3 s.
	r.run(60, talking(map[string][][2]int{"alice": {{0, 30}}, "bob": {{30, 60}}}))
	if got, want := r.dominants(), []string{"", "alice", "bob"}; !slices.Equal(got, want) {
		t.Fatalf("dominant speakers in order %q, want %q (updates %+v)", got, want, r.updates)
	}
	// alice became dominant within a second of speaking, bob within a
	// second and a half of taking over.
	for i, u := range r.updates {
		if u.Dominant == "alice" && (i == 0 || r.updates[i-1].Dominant != "alice") && r.at[i] > 10 {
			t.Errorf("alice dominant only at tick %d", r.at[i])
		}
		if u.Dominant == "bob" && r.updates[i-1].Dominant != "bob" && r.at[i] > 45 {
			t.Errorf("bob dominant only at tick %d", r.at[i])
		}
	}
	last := r.updates[len(r.updates)-1]
	if len(last.Speakers) != 1 || last.Speakers[0].ID != "bob" || last.Speakers[0].Level < 0.8 {
		t.Errorf("last update %+v: want bob alone speaking, loud", last)
	}
}

// A cough or a word (400 ms) while the dominant speaker is silent shows the
// cougher as speaking, but does not make them dominant.
func TestShortBurstDoesNotSwitch(t *testing.T) {
	r := newRoom(t, "alice", "bob")
	r.run(60, talking(map[string][][2]int{"alice": {{0, 20}, {40, 60}}, "bob": {{28, 32}}}))
	if got, want := r.dominants(), []string{"", "alice"}; !slices.Equal(got, want) {
		t.Fatalf("dominant speakers in order %q, want %q (updates %+v)", got, want, r.updates)
	}
	bobSpoke := false
	for _, u := range r.updates {
		for _, s := range u.Speakers {
			bobSpoke = bobSpoke || s.ID == "bob"
		}
	}
	if !bobSpoke {
		t.Errorf("bob's burst never showed him speaking: %+v", r.updates)
	}
}

// A dominant speaker who keeps talking is not taken over by someone talking
// over them; once they stop, the other takes over.
func TestDominantIsNotInterrupted(t *testing.T) {
	r := newRoom(t, "alice", "bob")
	r.run(80, talking(map[string][][2]int{"alice": {{0, 50}}, "bob": {{20, 80}}}))
	if got, want := r.dominants(), []string{"", "alice", "bob"}; !slices.Equal(got, want) {
		t.Fatalf("dominant speakers in order %q, want %q", got, want)
	}
	for i, u := range r.updates {
		if u.Dominant == "bob" && r.at[i] < 50 {
			t.Errorf("bob took over at tick %d, while alice still talked", r.at[i])
		}
		if u.Dominant == "alice" && len(u.Speakers) == 2 && u.Speakers[0].ID != "alice" {
			t.Errorf("the dominant speaker is not first: %+v", u)
		}
	}
}

// The pauses between words (200 ms every 600 ms) do not make a speaker
// flicker in and out of the list: updates come only when something changes.
func TestPausesDoNotFlicker(t *testing.T) {
	r := newRoom(t, "alice", "bob")
	r.run(100, func(id string, tick int) uint8 {
		if id == "alice" && tick%6 < 4 {
			return loud
		}
		return quiet
	})
	// "" with alice speaking, then alice dominant: two updates.
	if len(r.updates) != 2 {
		t.Fatalf("%d updates for one speaker with pauses, want 2: %+v", len(r.updates), r.updates)
	}
	if u := r.updates[1]; u.Dominant != "alice" || len(u.Speakers) != 1 {
		t.Errorf("update %+v", u)
	}
}

// Updates come at most every MinInterval (3 ticks), even when the speakers
// change faster, and none while nothing changes.
func TestUpdatesAreRateLimited(t *testing.T) {
	r := newRoom(t, "alice", "bob", "carol")
	r.run(20, talking(map[string][][2]int{"alice": {{0, 20}}}))
	n := len(r.updates)
	r.run(30, talking(map[string][][2]int{"alice": {{20, 50}}}))
	if len(r.updates) != n {
		t.Fatalf("%d updates while nothing changed", len(r.updates)-n)
	}
	// bob and carol come and go every 200 ms.
	r.run(40, func(id string, tick int) uint8 {
		if id == "alice" || (id == "bob" && tick%4 < 2) || (id == "carol" && tick%4 >= 2) {
			return loud
		}
		return quiet
	})
	for i := 1; i < len(r.at); i++ {
		if r.at[i]-r.at[i-1] < 3 {
			t.Errorf("updates at ticks %d and %d, closer than 300 ms", r.at[i-1], r.at[i])
		}
	}
}

// Silence from the start: no update at all.
func TestSilenceSendsNothing(t *testing.T) {
	r := newRoom(t, "alice", "bob")
	r.run(50, func(string, int) uint8 { return Silent })
	if len(r.updates) != 0 {
		t.Fatalf("updates in a silent room: %+v", r.updates)
	}
}

// When the dominant speaker's stream ends, whoever speaks takes over at once.
func TestRemovedDominantIsReplaced(t *testing.T) {
	r := newRoom(t, "alice", "bob")
	r.run(40, talking(map[string][][2]int{"alice": {{0, 40}}, "bob": {{25, 60}}}))
	if r.d.Current().Dominant != "alice" {
		t.Fatalf("dominant %q, want alice", r.d.Current().Dominant)
	}
	r.d.Remove("alice")
	delete(r.meters, "alice")
	r.run(5, talking(map[string][][2]int{"bob": {{0, 100}}}))
	if u := r.d.Current(); u.Dominant != "bob" || len(u.Speakers) != 1 || u.Speakers[0].ID != "bob" {
		t.Fatalf("after alice's stream ended: %+v, want bob dominant and alone", u)
	}
}

// Two speakers besides the dominant one are ordered by level.
func TestSpeakersOrderedByLevel(t *testing.T) {
	r := newRoom(t, "alice", "bob", "carol")
	r.run(20, talking(map[string][][2]int{"alice": {{0, 20}}}))
	r.run(10, func(id string, _ int) uint8 {
		switch id {
		case "alice":
			return loud
		case "bob":
			return 35
		default:
			return 10
		}
	})
	u := r.d.Current()
	var ids []string
	for _, s := range u.Speakers {
		ids = append(ids, s.ID)
	}
	if want := []string{"alice", "carol", "bob"}; !slices.Equal(ids, want) {
		t.Fatalf("speakers %q, want %q (%+v)", ids, want, u)
	}
}

// The meter is written by a stream's reader while the detector reads it.
func TestMeterConcurrent(t *testing.T) {
	d := New(Config{})
	m := d.Add("alice")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 20000 {
			m.Add(loud)
		}
	}()
	for range 50 {
		d.Tick()
	}
	wg.Wait()
	n, active, _ := m.take()
	if active != n {
		t.Fatalf("%d active of %d loud packets", active, n)
	}
}

func BenchmarkMeterAdd(b *testing.B) {
	m := New(Config{}).Add("x")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m.Add(uint8(i))
	}
}

// A dominant speaker who talks in short bursts (60 % of the time) keeps the
// place against someone who talks over them almost without pause (90 %), and
// loses it within a second and a half of stopping.
func TestMoreActiveChallengerWaits(t *testing.T) {
	r := newRoom(t, "alice", "bob")
	r.run(100, func(id string, tick int) uint8 {
		switch {
		case id == "alice" && tick < 70 && tick%5 < 3:
			return loud
		case id == "bob" && tick >= 20 && tick%10 != 9:
			return loud
		}
		return quiet
	})
	if got, want := r.dominants(), []string{"", "alice", "bob"}; !slices.Equal(got, want) {
		t.Fatalf("dominant speakers in order %q, want %q", got, want)
	}
	for i, u := range r.updates {
		if u.Dominant == "bob" {
			if r.at[i] < 70 || r.at[i] > 85 {
				t.Errorf("bob took over at tick %d, want after alice stopped (70) and within 1.5 s", r.at[i])
			}
			break
		}
	}
}
