package servertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/testmedia"
)

// SmallCamera is the media of a cheap camera for tests of big rooms: VP8
// 160x90 at 10 frames per second and 60 kbit/s, a keyframe a second, with
// Opus; 4 s, looped.
var SmallCamera = testmedia.Options{Width: 160, Height: 90, FPS: 10, Bitrate: 60_000, Duration: 4 * time.Second}

// Camera is one Pion participant that publishes a camera stream (video and
// audio) and receives nothing.
type Camera struct {
	Name   string
	Client *client.Client
	Pub    *client.Publication
}

// MediaDir is the shared cache directory of the test media made with ffmpeg.
func MediaDir(t testing.TB) string {
	t.Helper()
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "parley-testmedia")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Cameras joins n participants named prefix-1 … prefix-n to room at wsURL,
// each publishing opts' VP8 video and Opus audio with subscribe: false, and
// returns once every stream is PUBLISHING. A few join at a time, so that ICE
// and DTLS handshakes do not all compete at once. They close when the test ends.
func Cameras(t testing.TB, wsURL, room, prefix string, n int, opts testmedia.Options) []*Camera {
	t.Helper()
	dir := MediaDir(t)
	video, err := testmedia.VP8IVF(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	audio, err := testmedia.OpusOgg(dir, testmedia.Options{Duration: opts.Duration, Bitrate: 24_000})
	if err != nil {
		t.Fatal(err)
	}
	cams := make([]*Camera, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 6)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cams[i], errs[i] = startCamera(wsURL, room, fmt.Sprintf("%s-%d", prefix, i+1), video, audio)
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range cams {
			if c != nil {
				_ = c.Client.Close()
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("camera %d: %v", i+1, err)
		}
	}
	return cams
}

func startCamera(wsURL, room, name, videoPath, audioPath string) (*Camera, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, wsURL, client.Options{Username: name})
	if err != nil {
		return nil, err
	}
	cam := &Camera{Name: name, Client: c}
	fail := func(err error) (*Camera, error) {
		_ = c.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	no := false
	if _, err := c.Join(ctx, client.JoinOptions{Room: room, Subscribe: &no}); err != nil {
		return fail(err)
	}
	v, err := client.NewIVFSource(videoPath, true)
	if err != nil {
		return fail(err)
	}
	a, err := client.NewOpusSource(audioPath, true)
	if err != nil {
		return fail(err)
	}
	// The stream lives as long as the client: Close ends it.
	pub, err := c.Publish(context.Background(), client.PublishOptions{Video: v, Audio: a})
	if err != nil {
		return fail(err)
	}
	if err := pub.WaitStatus(ctx, protocol.StreamPublishing); err != nil {
		return fail(fmt.Errorf("publish: %w (status %s)", err, pub.Status()))
	}
	cam.Pub = pub
	return cam, nil
}
