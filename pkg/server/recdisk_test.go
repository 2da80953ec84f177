package server_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/recorder"
	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/server"
)

// diskChildEnv marks the run of TestRecordingDiskFloorOnTmpfs inside its
// own mount namespace.
const diskChildEnv = "PARLEY_TEST_DISK_FLOOR_CHILD"

// TestRecordingDiskFloorOnTmpfs: the records directory lives on a real 8 MiB
// tmpfs, filled so that about 200 kB are left above a 4 MiB floor of free
// space. A recorded meeting fills it: the recording stops cleanly before the
// disk is full, everyone in the room gets RECORDING STOPPED DISK_LOW, the
// file is finished, decodes and ffprobe reads its duration, and the
// manifest says why.
//
// The tmpfs is mounted in a mount namespace of its own (unshare; with a user
// namespace when not root), so that nothing outside the test sees it and it
// goes away with the test's child process, whatever happens.
func TestRecordingDiskFloorOnTmpfs(t *testing.T) {
	if os.Getenv(diskChildEnv) == "" {
		args := []string{"--mount", "--propagation", "private"}
		if os.Geteuid() != 0 {
			// A user namespace lets an unprivileged user mount a tmpfs in its
			// own mount namespace.
			args = append([]string{"--user", "--map-root-user"}, args...)
		}
		args = append(args, os.Args[0], "-test.run=^TestRecordingDiskFloorOnTmpfs$", "-test.count=1", "-test.v", "-test.timeout=3m")
		cmd := exec.Command("unshare", args...)
		cmd.Env = append(os.Environ(), diskChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in a mount namespace of its own:\n%s", out)
		if err != nil || !strings.Contains(string(out), "--- PASS: TestRecordingDiskFloorOnTmpfs") {
			t.Fatalf("the test in its mount namespace failed: %v (it needs unshare from util-linux, and root or "+
				"unprivileged user namespaces)", err)
		}
		return
	}

	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=8m,mode=0755"); err != nil {
		t.Fatalf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	const floor = 4 << 20
	free0, err := recorder.FreeSpace(mnt)
	if err != nil {
		t.Fatal(err)
	}
	filler := make([]byte, free0-floor-200_000)
	if err := os.WriteFile(filepath.Join(mnt, "filler"), filler, 0o644); err != nil {
		t.Fatal(err)
	}
	free1, _ := recorder.FreeSpace(mnt)
	t.Logf("tmpfs: %d bytes free, then %d after the filler; floor %d", free0, free1, floor)

	records := filepath.Join(mnt, "records")
	srv := testServer(t, func(c *server.Config) {
		c.RecordsDir = records
		c.Rooms.IdleTimeout = 300 * time.Millisecond
		c.Recordings.MinFreeBytes = floor
		c.Recordings.CheckInterval = 100 * time.Millisecond
	})
	finalized := make(chan room.Finalized, 1)
	srv.Rooms().OnFinalize(func(f room.Finalized) { finalized <- f })
	a := dial(t, srv, client.Options{Username: "a"})
	if _, err := a.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "disk", Name: "a", Record: true}); err != nil {
		t.Fatal(err)
	}
	b := dial(t, srv, client.Options{Username: "b"})
	join(t, b, "disk", "b")
	publishCamera(t, a)
	waitEvent(t, a, "RECORDING STARTED", isRecording(protocol.RecordingStarted))
	began := time.Now()
	for _, c := range []*client.Client{a, b} {
		ev, err := c.WaitEvent(ctxT(t, 60*time.Second), isRecording(protocol.RecordingStopped))
		if err != nil {
			t.Fatalf("no RECORDING STOPPED: %v", err)
		}
		if ev.Reason != protocol.RecordingDiskLow || ev.RecordingURL == "" {
			t.Errorf("STOPPED: reason %q, link %q; want DISK_LOW with the link", ev.Reason, ev.RecordingURL)
		}
	}
	stoppedAfter := time.Since(began)
	freeAtStop, _ := recorder.FreeSpace(mnt)
	time.Sleep(time.Second) // the meeting goes on; nothing more is written
	if free, _ := recorder.FreeSpace(mnt); free != freeAtStop {
		t.Errorf("the free space went from %d to %d after the stop", freeAtStop, free)
	}
	if err := a.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := b.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	m, sessDir := finishedRecording(t, finalized, records)
	if m.State != recorder.StateFinished || m.Stopped != recorder.StopDiskLow || len(m.Streams) != 1 ||
		m.Streams[0].State != recorder.StreamClosed {
		t.Fatalf("manifest: state %s, stopped %q, streams %+v", m.State, m.Stopped, m.Streams)
	}
	file := filepath.Join(sessDir, m.Streams[0].File)
	if e := decodeErrors(t, file); e != "" {
		t.Errorf("the stopped recording does not decode cleanly: %s", e)
	}
	start, end := probe(t, file)
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	freeEnd, _ := recorder.FreeSpace(mnt)
	media := end - start
	t.Logf("stopped after %v: %.2f s of media in %d bytes; free %d at the end (floor %d)", stoppedAfter.Round(time.Millisecond),
		media, st.Size(), freeEnd, floor)
	if media < 1 {
		t.Errorf("ffprobe reads %.2f s of media", media)
	}
	// Past the floor go at most what a check interval and the writer's held
	// media (under a second) hold: allow one second of this stream.
	perSecond := int64(float64(st.Size()) / media)
	if freeEnd < floor-perSecond {
		t.Errorf("free space %d: more than a second of media (%d bytes) past the floor %d", freeEnd, perSecond, floor)
	}
}
