package procs

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestControllerSteps(t *testing.T) {
	c := &controller{cfg: Config{Max: 4, Up: 0.5, Down: 0.25, DownAfter: time.Second}.withDefaults(), procs: 4}
	step := 250 * time.Millisecond
	for i, tc := range []struct {
		cores float64
		want  int
	}{
		{0.1, 4}, {0.1, 4}, {0.1, 4}, // 750 ms quiet: not yet
		{0.1, 1}, // a second quiet: one P
		{0.3, 1}, // between Down and Up: stays
		{0.6, 4}, // over Up: every P at once
		{0.1, 4}, {0.1, 4}, {0.1, 4},
		{0.4, 4}, // the quiet spell is broken
		{0.1, 4}, {0.1, 4}, {0.1, 4},
		{0.1, 1},
	} {
		if got := c.step(tc.cores, step); got != tc.want {
			t.Fatalf("step %d (%.2f cores): %d Ps, want %d", i, tc.cores, got, tc.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	c := Config{Up: 0.4, Down: 0.9}.withDefaults()
	if c.Down != 0.2 || c.Max != runtime.GOMAXPROCS(0) || c.Every <= 0 || c.DownAfter <= 0 {
		t.Fatalf("defaults: %+v", c)
	}
}

// TestRunFollowsLoad runs the controller on this process: idle, it goes to
// one P; a goroutine spinning brings back Max; when it stops, one P again;
// when the controller ends, Max.
func TestRunFollowsLoad(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	const max = 3
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		Run(ctx, Config{Max: max, Every: 20 * time.Millisecond, Up: 0.2, Down: 0.1, DownAfter: 100 * time.Millisecond}, nil)
	}()
	waitProcs := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for runtime.GOMAXPROCS(0) != want {
			if time.Now().After(deadline) {
				t.Fatalf("GOMAXPROCS %d, want %d", runtime.GOMAXPROCS(0), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitProcs(1)

	var stop atomic.Bool
	var spin sync.WaitGroup
	spin.Add(1)
	go func() {
		defer spin.Done()
		x := 0
		for !stop.Load() {
			for i := range 1000 {
				x += i
			}
		}
		_ = x
	}()
	waitProcs(max)
	stop.Store(true)
	spin.Wait()
	waitProcs(1)

	cancel()
	wg.Wait()
	if got := runtime.GOMAXPROCS(0); got != max {
		t.Fatalf("after Run: GOMAXPROCS %d, want %d", got, max)
	}
}
