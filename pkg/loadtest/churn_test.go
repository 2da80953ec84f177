package loadtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/server/servertest"
)

// The churn mode joins, publishes and leaves participants at its rate with
// real media against a real server, and samples the server's /metrics: every
// participant that had someone to receive received media, and once they all
// left the server is back to its goroutines and open files of before.
func TestChurnInProcess(t *testing.T) {
	srv := servertest.Start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := RunChurn(ctx, ChurnConfig{URL: servertest.WSURL(srv), Rooms: 2, Rate: 5, Lifetime: 1500 * time.Millisecond,
		Duration: 4 * time.Second, SampleEvery: time.Second, Width: 160, Height: 90, FPS: 15, VideoBitrate: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", table.String())
	if rep.Joined < 15 || rep.Failed != 0 || rep.Expected == 0 || rep.Received != rep.Expected {
		t.Errorf("%d joined, %d failed %v, %d of %d received media; want at least 15, none failed, all", rep.Joined, rep.Failed,
			rep.FailReasons, rep.Received, rep.Expected)
	}
	if len(rep.Samples) < 3 || rep.Samples[1].Participants == 0 {
		t.Errorf("samples %+v: want several, with participants in rooms", rep.Samples)
	}
	if rep.Idle == nil {
		t.Fatal("the server never was idle again")
	}
	// The same process runs the clients: they are all closed by now too.
	if rep.Idle.Goroutines > rep.Baseline.Goroutines+5 || rep.Idle.OpenFDs > rep.Baseline.OpenFDs+2 {
		t.Errorf("idle after the run: %.0f goroutines, %.0f fds; before it %.0f and %.0f", rep.Idle.Goroutines, rep.Idle.OpenFDs,
			rep.Baseline.Goroutines, rep.Baseline.OpenFDs)
	}
}
