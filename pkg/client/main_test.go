package client

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley/parley/pkg/testmedia"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// mediaOpts keeps the generated test media short.
var mediaOpts = testmedia.Options{Duration: 2 * time.Second}

// mediaDir is where the tests' media is cached across runs.
func mediaDir(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(testmedia.FFmpeg); err != nil {
		t.Fatalf("ffmpeg not available (apt-get install ffmpeg; the README's test command does): %v", err)
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "parley-testmedia")
	}
	return t.TempDir()
}

func mediaFile(t testing.TB, gen func(string, testmedia.Options) (string, error)) string {
	t.Helper()
	p, err := gen(mediaDir(t), mediaOpts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
