package sfu

import (
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestHeldKeyframeRequestAnsweredMeanwhile: a keyframe request inside the
// throttle's interval is held until the interval ends, and dropped if a
// keyframe of the layer came after it was made (every subscriber of the layer
// would pay for the one more); without such a keyframe it is sent. A request
// that joins the held one after that keyframe (a subscriber whose connection
// came up since, which did not get it) is sent.
func TestHeldKeyframeRequestAnsweredMeanwhile(t *testing.T) {
	for _, answered := range []bool{false, true} {
		for _, later := range []bool{false, true} {
			testHeldKeyframeRequest(t, answered, later)
		}
	}
}

func testHeldKeyframeRequest(t *testing.T, answered, later bool) {
	var sent atomic.Int32
	f := &forwarder{id: "s/video", kind: webrtc.RTPCodecTypeVideo, rid: "f",
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), requestPLI: func(uint32) { sent.Add(1) }}
	f.requestKeyframe() // sent now
	f.requestKeyframe() // held for the rest of the interval
	if n := sent.Load(); n != 1 {
		t.Fatalf("%d requests sent at once; want 1", n)
	}
	if answered {
		time.Sleep(10 * time.Millisecond)
		f.keyframeAt.Store(time.Now().UnixNano()) // the first request's keyframe arrives
	}
	if later {
		time.Sleep(10 * time.Millisecond)
		f.requestKeyframe() // joins the held one, after that keyframe
	}
	time.Sleep(keyframeInterval + 200*time.Millisecond)
	want := int32(2)
	if answered && !later {
		want = 1
	}
	if n := sent.Load(); n != want {
		t.Errorf("answered meanwhile %v, a later request %v: %d requests sent; want %d", answered, later, n, want)
	}
	f.close()
}
