package mixer

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkMixFiveMinuteRoom measures the mix of a 2-person, 5-minute room
// (640x360 VP8 + Opus each, the second joining after 1 minute) into the
// default 1280x720 MP4 with labels, as a multiple of real time. It first
// encodes the inputs (not timed):
//
//	go test -run '^$' -bench MixFiveMinuteRoom -benchtime 1x ./pkg/mixer
func BenchmarkMixFiveMinuteRoom(b *testing.B) {
	t := b
	total := 5 * time.Minute
	dir := t.TempDir()
	m := makeFixtureSized(t, dir, total, []fixStream{
		{name: "Alice", color: "testsrc2", kind: "camera", dur: total, freq: 440},
		{name: "Bob", color: "testsrc2", kind: "camera", offset: time.Minute, dur: 4 * time.Minute, freq: 660},
	})
	s := DefaultSettings()
	var last Progress
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out := filepath.Join(b.TempDir(), "mix.mp4")
		if err := Mix(context.Background(), m, out, s, func(p Progress) { last = p }); err != nil {
			b.Fatal(err)
		}
	}
	el := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(total.Seconds()/el.Seconds(), "x-realtime")
	b.Logf("mixed %v of a 2-person room in %v: %.2fx real time (ffmpeg's last reported speed %.2fx)",
		total, el.Round(time.Millisecond), total.Seconds()/el.Seconds(), last.Speed)
}
