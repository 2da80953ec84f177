package server_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/server/servertest"
	"github.com/parley/parley/pkg/testmedia"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testServer starts a server on loopback with ephemeral ports; tweak adjusts
// its configuration. The server shuts down when the test ends.
func testServer(t *testing.T, tweak func(*server.Config)) *server.Server {
	t.Helper()
	return servertest.Start(t, tweak)
}

func wsURL(srv *server.Server) string { return servertest.WSURL(srv) }

// dial connects a client that is closed when the test ends.
func dial(t *testing.T, srv *server.Server, opts client.Options) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, wsURL(srv), opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func join(t *testing.T, c *client.Client, roomName, name string) protocol.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Join(ctx, client.JoinOptions{Room: roomName, Name: name})
	if err != nil {
		t.Fatalf("%s joins %s: %v", name, roomName, err)
	}
	return st
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var (
	mediaOnce sync.Once
	mediaDir  string
	mediaErr  error
)

// media returns the directory of the test media made with ffmpeg.
func media(t *testing.T) string {
	t.Helper()
	mediaOnce.Do(func() {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		mediaDir = filepath.Join(base, "parley-testmedia")
		mediaErr = os.MkdirAll(mediaDir, 0o755)
	})
	if mediaErr != nil {
		t.Fatal(mediaErr)
	}
	return mediaDir
}

// mediaFile makes (or reuses) a test media file with ffmpeg.
func mediaFile(t *testing.T, gen func(string, testmedia.Options) (string, error)) string {
	t.Helper()
	path, err := gen(media(t), testmedia.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// must fails the test on a source's open error.
func must[S client.Source](t *testing.T, src S, err error) client.Source {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func vp8Source(t *testing.T) client.Source { return ivfSource(t, testmedia.VP8IVF) }

func ivfSource(t *testing.T, gen func(string, testmedia.Options) (string, error)) client.Source {
	t.Helper()
	src, err := client.NewIVFSource(mediaFile(t, gen), true)
	return must(t, src, err)
}

func h264Source(t *testing.T) client.Source {
	t.Helper()
	src, err := client.NewH264Source(mediaFile(t, testmedia.H264AnnexB), 30, true)
	return must(t, src, err)
}

func opusSource(t *testing.T) client.Source {
	t.Helper()
	src, err := client.NewOpusSource(mediaFile(t, testmedia.OpusOgg), true)
	return must(t, src, err)
}

// waitEvent waits for the first event that matches.
func waitEvent(t *testing.T, c *client.Client, what string, match func(protocol.Event) bool) protocol.Event {
	t.Helper()
	ev, err := c.WaitEvent(ctxT(t, 10*time.Second), match)
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
	return ev
}

func isEvent(kind, name string) func(protocol.Event) bool {
	return func(e protocol.Event) bool {
		return e.Event == kind && (name == "" || e.Name == name || e.From == name)
	}
}

func errCode(err error) string {
	var p *protocol.Error
	if errors.As(err, &p) {
		return p.Code
	}
	return ""
}

// publishCamera publishes VP8 and Opus from c and waits until the stream is
// PUBLISHING.
func publishCamera(t *testing.T, c *client.Client) *client.Publication {
	t.Helper()
	pub, err := c.Publish(ctxT(t, 60*time.Second), client.PublishOptions{Video: vp8Source(t), Audio: opusSource(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatalf("publisher status: %v (now %s)", err, pub.Status())
	}
	return pub
}
