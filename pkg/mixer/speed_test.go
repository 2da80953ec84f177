package mixer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMixSpeedFiveMinutes measures the mix of a 2-person, 5-minute room
// (640x360 VP8 + Opus each, the second joining after 1 minute) into the
// default 1280x720 MP4 with labels. It is slow (it first encodes the inputs),
// so it runs only with PARLEY_MIX_BENCH=1:
//
//	PARLEY_MIX_BENCH=1 go test -run TestMixSpeedFiveMinutes -v ./pkg/mixer
func TestMixSpeedFiveMinutes(t *testing.T) {
	if os.Getenv("PARLEY_MIX_BENCH") == "" {
		t.Skip("set PARLEY_MIX_BENCH=1 to measure the mix speed")
	}
	total := 5 * time.Minute
	dir := t.TempDir()
	m := makeFixtureSized(t, dir, total, []fixStream{
		{name: "Alice", color: "testsrc2", kind: "camera", dur: total, freq: 440},
		{name: "Bob", color: "testsrc2", kind: "camera", offset: time.Minute, dur: 4 * time.Minute, freq: 660},
	})
	out := filepath.Join(t.TempDir(), "mix.mp4")
	s := DefaultSettings()
	began := time.Now()
	var last Progress
	if err := Mix(context.Background(), m, out, s, func(p Progress) { last = p }); err != nil {
		t.Fatal(err)
	}
	el := time.Since(began)
	t.Logf("mixed %v of a 2-person room in %v: %.2fx real time (ffmpeg's last reported speed %.2fx)",
		total, el.Round(time.Millisecond), total.Seconds()/el.Seconds(), last.Speed)
}
