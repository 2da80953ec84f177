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

func vp8Source(t *testing.T) client.Source {
	t.Helper()
	path, err := testmedia.VP8IVF(media(t), testmedia.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := client.NewIVFSource(path, true)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func ivfSource(t *testing.T, make func(string, testmedia.Options) (string, error)) client.Source {
	t.Helper()
	path, err := make(media(t), testmedia.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := client.NewIVFSource(path, true)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func h264Source(t *testing.T) client.Source {
	t.Helper()
	path, err := testmedia.H264AnnexB(media(t), testmedia.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := client.NewH264Source(path, 30, true)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func opusSource(t *testing.T) client.Source {
	t.Helper()
	path, err := testmedia.OpusOgg(media(t), testmedia.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := client.NewOpusSource(path, true)
	if err != nil {
		t.Fatal(err)
	}
	return src
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
