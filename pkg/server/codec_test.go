package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/testmedia"
)

// mediaFileOpts makes (or reuses) a test media file with options.
func mediaFileOpts(t *testing.T, gen func(string, testmedia.Options) (string, error), o testmedia.Options) string {
	t.Helper()
	path, err := gen(media(t), o)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

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

// An H.264 High stream never reaches a decoder that negotiated only
// Constrained Baseline: a subscriber that said so in its join, and one that
// said nothing and answered with Constrained Baseline only, each get PLAYING
// with a reason naming the profile and receive the audio alone; a subscriber
// that decodes High receives the video, on a payload type of the High
// profile.
func TestH264HighNeverReachesBaseline(t *testing.T) {
	srv := testServer(t, nil)
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "profiles", "a")
	cbOnly := []string{"audio/opus", "video/H264;profile-level-id=42e01f;packetization-mode=1"}
	declared := dial(t, srv, client.Options{Username: "declared"})
	if _, err := declared.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "profiles", Name: "declared", Codecs: cbOnly}); err != nil {
		t.Fatal(err)
	}
	answered := dial(t, srv, client.Options{Username: "answered"})
	if _, err := answered.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "profiles", Name: "answered", Codecs: cbOnly,
		Undeclared: true}); err != nil {
		t.Fatal(err)
	}
	high := dial(t, srv, client.Options{Username: "high"})
	join(t, high, "profiles", "high")

	src, err := client.NewH264Source(mediaFileOpts(t, testmedia.H264AnnexB, testmedia.Options{H264Profile: "high"}), 30, true)
	cam, err := a.Publish(ctxT(t, 20*time.Second), client.PublishOptions{Video: must(t, src, err), Audio: opusSource(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{declared, answered} {
		ev := waitEvent(t, c, "status of a's camera", func(e protocol.Event) bool {
			return e.Event == protocol.EventStreamStatus && e.StreamID == cam.ID() && e.Reason != ""
		})
		if ev.Status != protocol.StreamPlaying || !strings.Contains(ev.Reason, "High profile") {
			t.Errorf("camera status %s %q, want PLAYING with a reason naming the High profile", ev.Status, ev.Reason)
		}
	}
	tracks, err := high.WaitRemoteTracks(ctxT(t, 10*time.Second), 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{declared, answered} {
		if _, err := c.WaitRemoteTracks(ctxT(t, 10*time.Second), 1); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second)
	for _, tr := range tracks {
		if tr.Packets() == 0 {
			t.Errorf("high receives no %s", tr.Kind())
		}
		if tr.Kind() == "video" {
			if c := tr.Track().Codec(); !strings.Contains(c.SDPFmtpLine, "profile-level-id=64") || tr.FirstKeyframeAt().IsZero() {
				t.Errorf("high receives video as %s %q (keyframe at %v), want the High profile with a keyframe", c.MimeType, c.SDPFmtpLine, tr.FirstKeyframeAt())
			}
		}
	}
	for name, c := range map[string]*client.Client{"declared": declared, "answered": answered} {
		for _, tr := range c.RemoteTracks() {
			if tr.Kind() != "audio" || tr.Packets() == 0 {
				t.Errorf("%s receives %s (%d packets), want a's audio only, flowing", name, tr.Kind(), tr.Packets())
			}
		}
	}
}
