package server_test

import (
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/mixer"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/recorder"
	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/signaling"
)

// lastSent is when a publication sent its last packet (audio or video).
func lastSent(p *client.Publication) time.Time {
	var last time.Time
	for _, kind := range []string{"audio", "video"} {
		if s := p.SentPackets(kind); len(s) > 0 && s[len(s)-1].SentAt.After(last) {
			last = s[len(s)-1].SentAt
		}
	}
	return last
}

// TestMixEndsWithTheMeeting: a recorded meeting with the default idle
// timeout (60 s) and reconnect grace (5 s). A leaves; B, the last one,
// closes the tab (the client drops its connections without leaving), so the
// room finalizes about 65 s after B's media stopped. The recording (manifest
// and mix) ends when B's media stopped: the mix's duration, probed, is within
// 2 s of B's last packet and of the streams' end in the manifest, not the
// room's 65 s later.
func TestMixEndsWithTheMeeting(t *testing.T) {
	dir := t.TempDir()
	settings := mixer.DefaultSettings()
	settings.Width, settings.Height, settings.FrameRate = 320, 180, 15
	srv := testServer(t, func(c *server.Config) {
		c.RecordsDir = dir
		c.Mix = &server.MixConfig{Settings: settings, Workers: 1}
		c.Rooms.IdleTimeout = room.DefaultConfig().IdleTimeout
		c.Signaling.ReconnectGrace = signaling.DefaultConfig().ReconnectGrace
	})
	finalized := make(chan room.Finalized, 1)
	srv.Rooms().OnFinalize(func(f room.Finalized) { finalized <- f })

	a := dial(t, srv, client.Options{Username: "a"})
	if _, err := a.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "standup", Name: "Ann", Record: true}); err != nil {
		t.Fatal(err)
	}
	publishCamera(t, a)
	started := waitEvent(t, a, "RECORDING STARTED", isRecording(protocol.RecordingStarted))
	b := dial(t, srv, client.Options{Username: "b"})
	join(t, b, "standup", "Bob")
	pubB := publishCamera(t, b)
	time.Sleep(3 * time.Second)
	if err := a.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	aLeft := time.Now()
	time.Sleep(2 * time.Second)
	// B closes the tab: media and WebSocket drop at once, no leave.
	_ = b.Close()
	bEnd := lastSent(pubB)
	if bEnd.IsZero() {
		t.Fatal("B sent nothing")
	}

	var fin room.Finalized
	select {
	case fin = <-finalized:
	case <-time.After(2 * time.Minute):
		t.Fatal("the room did not finalize")
	}
	t.Logf("the room finalized %.1f s after B's last packet", fin.Ended.Sub(bEnd).Seconds())
	if fin.Ended.Sub(bEnd) < 60*time.Second {
		t.Fatalf("the room finalized %v after B's media stopped; the test wants the default idle timeout", fin.Ended.Sub(bEnd))
	}

	api := linkAPI(t, srv.URL(), started.RecordingURL)
	deadline := time.Now().Add(2 * time.Minute)
	var done sessionAnswer
	for {
		done = getSession(t, api)
		if done.Mix != nil && (done.Mix.Status == mixer.StatusDone || done.Mix.Status == mixer.StatusFailed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no mix: %+v", done)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if done.Mix.Status != mixer.StatusDone {
		t.Fatalf("the mix: %+v", done.Mix)
	}
	sessDir := filepath.Join(dir, filepath.FromSlash(done.Path))
	m, err := recorder.ReadManifest(filepath.Join(sessDir, recorder.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Streams) != 2 {
		t.Fatalf("%d streams in the manifest, want 2", len(m.Streams))
	}
	realEnd := bEnd.Sub(m.Start).Seconds()
	mediaEnd := m.MediaEnd().Seconds()
	_, mixDur := probe(t, filepath.Join(sessDir, "mix.mp4"))
	t.Logf("B's last packet at %.3f s, the streams end at %.3f s, the manifest's duration %.3f s, the mix %.3f s; the room closed at %.3f s",
		realEnd, mediaEnd, m.Duration().Seconds(), mixDur, fin.Ended.Sub(m.Start).Seconds())
	if math.Abs(mixDur-realEnd) > 2 || math.Abs(mixDur-mediaEnd) > 2 {
		t.Errorf("the mix lasts %.3f s; B's media stopped at %.3f s and the streams end at %.3f s (want within 2 s)", mixDur, realEnd, mediaEnd)
	}
	if math.Abs(m.Duration().Seconds()-mediaEnd) > 0.001 {
		t.Errorf("the manifest's duration %v, its streams end at %v", m.Duration(), m.MediaEnd())
	}
	if d := m.Closed.Sub(fin.Ended); d < -time.Second || d > time.Second {
		t.Errorf("the manifest says the recording closed at %v, the room finalized at %v", m.Closed, fin.Ended)
	}
	// Each stream ends when its media stopped: A's at its leave, B's
	// (closed tab) at its last packet, not when the grace ran out.
	for _, e := range m.Streams {
		want := map[string]time.Time{"Ann": aLeft, "Bob": bEnd}[e.Participant]
		if d := e.End.Sub(want); d < -time.Second || d > time.Second {
			t.Errorf("%s's stream ends at %v, %v from when its media stopped", e.Participant, e.End, d)
		}
	}
}
