package server_test

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// stoppableSource is a layer whose sender can be stopped and started again,
// as a browser stops its top simulcast layer when its uplink or CPU cannot
// carry it: while stopped, its samples are encoded and not sent (empty
// samples: the track's clock runs on).
type stoppableSource struct {
	client.KeyframeSource
	stopped atomic.Bool
}

func (s *stoppableSource) Next() ([]byte, time.Duration, error) {
	b, d, err := s.KeyframeSource.Next()
	if s.stopped.Load() {
		b = nil
	}
	return b, d, err
}

// videoFrames lists the presentation time and width of each video frame
// of a file, as ffprobe decodes them.
func videoFrames(t *testing.T, path string) (pts []float64, widths []int) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time,width",
		"-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	for _, line := range strings.Fields(string(out)) {
		f := strings.Split(strings.Trim(line, ","), ",")
		if len(f) < 2 {
			continue
		}
		p, err1 := strconv.ParseFloat(f[0], 64)
		w, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			continue
		}
		pts, widths = append(pts, p), append(widths, w)
	}
	return pts, widths
}

// TestRecordingFollowsTheArrivingLayer: a simulcast publisher records; a
// few seconds in, its top layer stops for 4 s (a browser whose uplink
// cannot carry it) and comes back. The recording has a picture all along:
// the highest layer arriving, switched at keyframes, with no gap of more
// than about a second, the top layer's size before and after the stop and
// a lower one during it; and it decodes cleanly.
func TestRecordingFollowsTheArrivingLayer(t *testing.T) {
	srv, dir, finalized := recordingServer(t)

	a := dial(t, srv, client.Options{Username: "a"})
	if _, err := a.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "layers-rec", Name: "a", Record: true}); err != nil {
		t.Fatal(err)
	}
	layers := simulcastSources(t)
	top := &stoppableSource{KeyframeSource: layers[len(layers)-1].(client.KeyframeSource)}
	layers[len(layers)-1] = top
	pub, err := a.Publish(ctxT(t, 60*time.Second), client.PublishOptions{Simulcast: layers, Audio: opusSource(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	top.stopped.Store(true)
	time.Sleep(4 * time.Second)
	top.stopped.Store(false)
	time.Sleep(3 * time.Second)
	if err := a.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	m, sessDir := finishedRecording(t, finalized, dir)
	if len(m.Streams) != 1 {
		t.Fatalf("manifest: %+v", m)
	}
	file := filepath.Join(sessDir, m.Streams[0].File)
	if e := decodeErrors(t, file); e != "" {
		t.Errorf("%s does not decode cleanly: %s", m.Streams[0].File, e)
	}
	pts, widths := videoFrames(t, file)
	if len(pts) < 100 {
		t.Fatalf("%d video frames in %s", len(pts), m.Streams[0].File)
	}
	topW, lowerW := simulcastLayers[len(simulcastLayers)-1].width, simulcastLayers[len(simulcastLayers)-2].width
	gap, atGap := 0.0, 0.0
	seen := map[int]int{}
	for i := range pts {
		seen[widths[i]]++
		if i > 0 && pts[i]-pts[i-1] > gap {
			gap, atGap = pts[i]-pts[i-1], pts[i-1]
		}
	}
	t.Logf("%d frames over %.1f s, the widest gap %.2f s at %.2f s; frames by width %v", len(pts), pts[len(pts)-1]-pts[0], gap, atGap, seen)
	if gap > 1.5 {
		t.Errorf("the recording has no picture for %.2f s (from %.2f s): it did not follow the layers that arrived", gap, atGap)
	}
	if widths[0] != topW && widths[min(30, len(widths)-1)] != topW {
		t.Errorf("the recording starts at width %d, want the top layer's %d", widths[0], topW)
	}
	if widths[len(widths)-1] != topW {
		t.Errorf("the recording ends at width %d, want the top layer's %d again", widths[len(widths)-1], topW)
	}
	if seen[lowerW] < 30 {
		t.Errorf("%d frames of the middle layer's width %d, want the seconds the top layer was stopped", seen[lowerW], lowerW)
	}
}
