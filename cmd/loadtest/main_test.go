package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseFlags(t *testing.T) {
	var stderr bytes.Buffer
	o, err := parseFlags([]string{"--subscribers", "200", "--video-size", "1280x720", "--duration", "5s",
		"--publishers-subscribe", "--no-nack", "--max-loss", "0.5"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.Subscribers != 200 || c.Width != 1280 || c.Height != 720 || c.Duration != 5*time.Second ||
		!c.PublishersSubscribe || !c.NoNACK || o.maxLoss != 0.5 || c.VideoPublishers != 1 || c.URL != "ws://127.0.0.1:7880/ws" {
		t.Fatalf("parsed %+v, options %+v", c, o)
	}
	for _, bad := range [][]string{{"--video-size", "big"}, {"--nope"}, {"extra"}} {
		if _, err := parseFlags(bad, &stderr); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestRunExitCodes checks the exit status of runs that cannot be made.
func TestRunExitCodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"--help"}, &stdout, &stderr); code != 0 {
		t.Errorf("--help: exit %d", code)
	}
	if code := run(ctx, []string{"--video-publishers", "0"}, &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "no publishers") {
		t.Errorf("no publishers: exit %d, stderr %q", code, stderr.String())
	}
}
