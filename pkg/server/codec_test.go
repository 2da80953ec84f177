package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// A subscriber that cannot decode a publisher's codec is told so, never
// shown a black tile: PLAYING with a reason when only the video is affected
// (the audio plays), FAILED when nothing of the stream can be decoded.
func TestUndecodableCodecGetsStatus(t *testing.T) {
	srv := testServer(t, nil)
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "codecs", "a")
	b := dial(t, srv, client.Options{Username: "b"})
	if _, err := b.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "codecs", Name: "b",
		Codecs: []string{"audio/opus", "video/VP8"}}); err != nil {
		t.Fatal(err)
	}

	cam, err := a.Publish(ctxT(t, 20*time.Second), client.PublishOptions{Video: h264Source(t), Audio: opusSource(t)})
	if err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, b, "status of a's camera", func(e protocol.Event) bool {
		return e.Event == protocol.EventStreamStatus && e.StreamID == cam.ID()
	})
	if ev.Status != protocol.StreamPlaying || !strings.Contains(ev.Reason, "video/H264") {
		t.Errorf("camera status %s %q, want PLAYING with a reason naming video/H264", ev.Status, ev.Reason)
	}
	tracks, err := b.WaitRemoteTracks(ctxT(t, 10*time.Second), 1)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if len(b.RemoteTracks()) != 1 || tracks[0].Kind() != "audio" || tracks[0].Packets() == 0 {
		t.Errorf("b receives %d tracks (first: %s, %d packets), want only a's audio, flowing",
			len(b.RemoteTracks()), tracks[0].Kind(), tracks[0].Packets())
	}

	screen, err := a.Publish(ctxT(t, 20*time.Second), client.PublishOptions{Kind: protocol.KindScreen, Video: h264Source(t)})
	if err != nil {
		t.Fatal(err)
	}
	ev = waitEvent(t, b, "status of a's screen", func(e protocol.Event) bool {
		return e.Event == protocol.EventStreamStatus && e.StreamID == screen.ID()
	})
	if ev.Status != protocol.StreamFailed || !strings.Contains(ev.Reason, "video/H264") || ev.Name != "a" {
		t.Errorf("screen status %s %q (from %q), want FAILED with a reason naming video/H264", ev.Status, ev.Reason, ev.Name)
	}
}
