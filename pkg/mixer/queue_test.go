package mixer

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeScript(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readJobFile(t *testing.T, dir, id string) Job {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, id+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// A queue stopped in the middle of a mix resumes it when a new queue starts
// on the same directory, and the hook runs exactly once, with the output and
// manifest paths.
func TestQueueResumesAndHooksOnce(t *testing.T) {
	f := makeFixture(t, 4*time.Second, []fixStream{
		{name: "A", color: "red", kind: "camera", dur: 4 * time.Second, freq: 440},
		{name: "B", color: "blue", kind: "camera", offset: time.Second, dur: 3 * time.Second, freq: 660},
	})
	tmp := t.TempDir()
	state := filepath.Join(tmp, "queue")
	lines := filepath.Join(tmp, "hook.lines")
	hook := writeScript(t, filepath.Join(tmp, "hook.sh"), `echo "$1|$2|$PARLEY_MIX_JOB_ID" >> '`+lines+`'`)
	slow := writeScript(t, filepath.Join(tmp, "slow-ffmpeg.sh"), `exec sleep 60`) // a mix that takes long

	// 1. A queue whose mix hangs; it is closed mid-job.
	s := smallSettings()
	s.FFmpeg = slow
	q1, err := NewQueue(QueueConfig{Dir: state, Hook: hook, Settings: s})
	if err != nil {
		t.Fatal(err)
	}
	q1.Start(context.Background())
	job, err := q1.Enqueue(f.manifest)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := q1.Enqueue(f.manifest); again.ID != job.ID {
		t.Errorf("the same manifest was queued twice")
	}
	waitFor(t, "the mix to start", func() bool { j, _ := q1.Job(job.ID); return j.Status == StatusRunning })
	closed := time.Now()
	if err := q1.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(closed); d > 10*time.Second {
		t.Errorf("Close took %v", d)
	}
	if j := readJobFile(t, state, job.ID); j.Status != StatusRunning || j.Attempts != 1 {
		t.Fatalf("job on disk after the stop: %+v", j)
	}
	if _, err := os.Stat(job.Output); !os.IsNotExist(err) {
		t.Fatalf("an output exists after the interrupted mix")
	}

	// 2. A new queue on the same directory finishes it and runs the hook.
	q2, err := NewQueue(QueueConfig{Dir: state, Hook: hook, Settings: smallSettings()})
	if err != nil {
		t.Fatal(err)
	}
	q2.Start(context.Background())
	waitFor(t, "the hook", func() bool { j, _ := q2.Job(job.ID); return j.Hook == HookDone || j.Hook == HookFailed })
	j, _ := q2.Job(job.ID)
	if err := q2.Close(); err != nil {
		t.Fatal(err)
	}
	if j.Status != StatusDone || j.Progress != 100 || j.Attempts != 2 || j.Hook != HookDone {
		t.Fatalf("job: %+v", j)
	}
	if p := probe(t, j.Output); p.count("video") != 1 || p.count("audio") != 1 {
		t.Fatalf("output streams %+v", p.Streams)
	}

	// 3. Another restart: nothing runs again.
	q3, err := NewQueue(QueueConfig{Dir: state, Hook: hook, Settings: smallSettings()})
	if err != nil {
		t.Fatal(err)
	}
	q3.Start(context.Background())
	time.Sleep(300 * time.Millisecond)
	_ = q3.Close()
	b, err := os.ReadFile(lines)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(got) != 1 || got[0] != j.Output+"|"+f.manifest+"|"+j.ID {
		t.Fatalf("hook lines %q, want one %q", got, j.Output+"|"+f.manifest+"|"+j.ID)
	}

	// 4. A crash while the hook ran ("started" on disk): it is not run again.
	j.Hook = HookStarted
	data, _ := json.Marshal(j)
	if err := os.WriteFile(filepath.Join(state, j.ID+".json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	q4, err := NewQueue(QueueConfig{Dir: state, Hook: hook, Settings: smallSettings()})
	if err != nil {
		t.Fatal(err)
	}
	q4.Start(context.Background())
	time.Sleep(300 * time.Millisecond)
	j4, _ := q4.Job(j.ID)
	_ = q4.Close()
	b, _ = os.ReadFile(lines)
	if n := strings.Count(string(b), "\n"); n != 1 || j4.Hook != HookInterrupted {
		t.Fatalf("after a crash in the hook: %d hook runs, hook state %q", n, j4.Hook)
	}
}

// A failing hook (missing, non-zero exit, timeout) is logged and the queue goes on.
func TestQueueHookFailuresDoNotStopIt(t *testing.T) {
	f1 := makeFixture(t, 2*time.Second, []fixStream{{name: "A", color: "red", kind: "camera", dur: 2 * time.Second, freq: 440}})
	f2 := makeFixture(t, 2*time.Second, []fixStream{{name: "B", color: "blue", kind: "camera", dur: 2 * time.Second, freq: 440}})
	tmp := t.TempDir()
	for _, hook := range []string{
		filepath.Join(tmp, "missing.sh"),
		writeScript(t, filepath.Join(tmp, "fail.sh"), "exit 3"),
		writeScript(t, filepath.Join(tmp, "hang.sh"), "exec sleep 30"),
	} {
		state := filepath.Join(tmp, "q-"+filepath.Base(hook))
		s := smallSettings()
		s.HasVideo = false // audio only: quick
		q, err := NewQueue(QueueConfig{Dir: state, Hook: hook, HookTimeout: 500 * time.Millisecond, Settings: s, Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
		q.Start(context.Background())
		a, _ := q.Enqueue(f1.manifest)
		b, _ := q.Enqueue(f2.manifest)
		waitFor(t, "both hooks", func() bool {
			ja, _ := q.Job(a.ID)
			jb, _ := q.Job(b.ID)
			return ja.Hook == HookFailed && jb.Hook == HookFailed
		})
		for _, j := range q.Jobs() {
			if j.Status != StatusDone || j.HookErr == "" {
				t.Errorf("%s: job %+v", filepath.Base(hook), j)
			}
		}
		_ = q.Close()
	}
}
