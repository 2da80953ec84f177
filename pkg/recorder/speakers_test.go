package recorder

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// The dominant speaker's changes go into the manifest on the room's time
// line, with who and which stream: kept from before the first file, saved
// as they come, repeated ones left out, nothing after the close.
func TestSpeakerChangesInManifest(t *testing.T) {
	dir := t.TempDir()
	s, err := StartSession(dir, "talk", "s1", sessionStart, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	s.SpeakerChanged(sessionStart.Add(time.Second), "Ann", "st-a") // before any media
	w, err := s.AddStream(StreamInfo{Participant: "Ann", StreamID: "st-a", Kind: "camera",
		Tracks: []TrackInfo{{Kind: "audio", MimeType: "audio/opus", ClockRate: 48000, Channels: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i), Timestamp: uint32(i * 960), SSRC: 1},
			Payload: []byte{0xfc, 0xff, 0xfe}}
		w.WriteRTP(0, pkt, sessionStart.Add(500*time.Millisecond+time.Duration(i)*20*time.Millisecond))
	}
	deadline := time.Now().Add(10 * time.Second)
	for !s.Recorded() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !s.Recorded() {
		t.Fatal("nothing recorded")
	}
	s.SpeakerChanged(sessionStart.Add(3*time.Second), "Bob", "st-b")
	s.SpeakerChanged(sessionStart.Add(4*time.Second), "Bob", "st-b") // the same speaker: no change
	s.SpeakerChanged(sessionStart.Add(5*time.Second), "Ann", "st-a")
	want := []SpeakerChange{{1000, "Ann", "st-a"}, {3000, "Bob", "st-b"}, {5000, "Ann", "st-a"}}
	check := func(when string) {
		t.Helper()
		m, err := ReadManifest(filepath.Join(s.Dir(), ManifestName))
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Speakers) != len(want) {
			t.Fatalf("%s: manifest speakers %+v, want %+v", when, m.Speakers, want)
		}
		for i := range want {
			if m.Speakers[i] != want[i] {
				t.Fatalf("%s: manifest speakers %+v, want %+v", when, m.Speakers, want)
			}
		}
	}
	check("while recording")
	if err := s.Close(sessionStart.Add(6 * time.Second)); err != nil {
		t.Fatal(err)
	}
	s.SpeakerChanged(sessionStart.Add(7*time.Second), "Bob", "st-b")
	check("after the close")
}
