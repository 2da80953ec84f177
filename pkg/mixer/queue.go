package mixer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/parley/parley/pkg/recorder"
)

// Job statuses.
const (
	StatusPending = "pending"
	StatusRunning = "running"
	StatusDone    = "done"
	StatusFailed  = "failed"
)

// Hook states of a job.
const (
	HookNone        = ""            // no hook configured when the job finished
	HookPending     = "pending"     // to run
	HookStarted     = "started"     // recorded before the hook is started
	HookDone        = "done"        // the hook exited 0
	HookFailed      = "failed"      // the hook failed (exit status, missing, timeout)
	HookInterrupted = "interrupted" // the process died while the hook ran: not run again
)

// Job is one mix in the queue.
type Job struct {
	ID       string `json:"id"`
	Manifest string `json:"manifest"`
	Output   string `json:"output"`
	Status   string `json:"status"`
	// Progress is the percent mixed (kept in memory; 100 once done).
	Progress float64   `json:"progress"`
	Error    string    `json:"error,omitempty"`
	Attempts int       `json:"attempts"`
	Hook     string    `json:"hook,omitempty"`
	HookErr  string    `json:"hookError,omitempty"`
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
}

// QueueConfig configures a Queue.
type QueueConfig struct {
	// Dir holds the queue's state: one JSON file per job. Required.
	Dir string
	// Workers is how many mixes run at once; default 1.
	Workers int
	// Hook is a program run after each successful mix with two arguments: the
	// output path and the manifest path (and PARLEY_MIX_JOB_ID in its
	// environment). Empty: none.
	Hook string
	// HookTimeout bounds one hook run; default 5 minutes.
	HookTimeout time.Duration
	// Settings of every mix.
	Settings Settings
	// OutputDir receives the mixes as <room>_<session>.<format>; default:
	// each session's own directory, as mix.<format>.
	OutputDir string
	// MaxAttempts bounds how often a job is started (a job interrupted by
	// crashes again and again fails at last); default 3.
	MaxAttempts int
	// Logger receives the queue's logs; default: discard.
	Logger *slog.Logger
}

// Queue runs mixes in the background, one JSON file per job in its
// directory, so that jobs survive a restart: a pending job, or one that was
// running when the process stopped, runs (again) when a queue is started on
// the same directory. See Start for the hook's guarantee.
type Queue struct {
	cfg QueueConfig
	log *slog.Logger

	mu      sync.Mutex
	jobs    map[string]*Job
	started bool
	closed  bool
	cancel  context.CancelFunc
	wake    chan struct{}
	wg      sync.WaitGroup
}

// NewQueue opens (or creates) a queue directory and loads its jobs. Nothing
// runs before Start.
func NewQueue(cfg QueueConfig) (*Queue, error) {
	if cfg.Dir == "" {
		return nil, errors.New("mixer queue: empty state dir")
	}
	if err := cfg.Settings.Validate(); err != nil {
		return nil, fmt.Errorf("mixer queue: %w", err)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.HookTimeout <= 0 {
		cfg.HookTimeout = 5 * time.Minute
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Settings.Logger == nil {
		cfg.Settings.Logger = cfg.Logger
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("mixer queue: %w", err)
	}
	q := &Queue{cfg: cfg, log: cfg.Logger, jobs: map[string]*Job{}, wake: make(chan struct{}, 1)}
	files, err := filepath.Glob(filepath.Join(cfg.Dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("mixer queue: %w", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		var j Job
		if err == nil {
			err = json.Unmarshal(data, &j)
		}
		if err != nil || j.ID == "" || j.ID+".json" != filepath.Base(f) {
			q.log.Warn("ignoring a bad job file", "file", f, "err", err)
			continue
		}
		q.jobs[j.ID] = &j
	}
	return q, nil
}

// Enqueue adds a mix of the session whose manifest is at manifestPath. A
// manifest already queued (and not failed) is not queued twice: its job is returned.
func (q *Queue) Enqueue(manifestPath string) (Job, error) {
	abs, err := filepath.Abs(manifestPath)
	if err != nil {
		return Job{}, fmt.Errorf("enqueue: %w", err)
	}
	m, err := recorder.ReadManifest(abs)
	if err != nil {
		return Job{}, fmt.Errorf("enqueue: %w", err)
	}
	ext := strings.ToLower(q.cfg.Settings.Format)
	if ext == "" {
		ext = FormatMP4
	}
	out := filepath.Join(filepath.Dir(abs), "mix."+ext)
	if q.cfg.OutputDir != "" {
		out = filepath.Join(q.cfg.OutputDir, recorder.SafeName(m.Room)+"_"+recorder.SafeName(m.SessionID)+"."+ext)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return Job{}, errors.New("enqueue: queue closed")
	}
	for _, j := range q.jobs {
		if j.Manifest == abs && j.Status != StatusFailed {
			return *j, nil
		}
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	now := time.Now().UTC()
	j := &Job{ID: now.Format("20060102T150405.000") + "-" + hex.EncodeToString(rnd[:]), Manifest: abs, Output: out,
		Status: StatusPending, Created: now}
	j.ID = strings.ReplaceAll(j.ID, ".", "")
	if err := q.saveLocked(j); err != nil {
		return Job{}, fmt.Errorf("enqueue: %w", err)
	}
	q.jobs[j.ID] = j
	q.poke()
	q.log.Info("mix queued", "job", j.ID, "manifest", abs, "output", out)
	return *j, nil
}

// Jobs returns a snapshot of every job, oldest first.
func (q *Queue) Jobs() []Job {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]Job, 0, len(q.jobs))
	for _, j := range q.jobs {
		out = append(out, *j)
	}
	slices.SortFunc(out, func(a, b Job) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Job returns one job by id.
func (q *Queue) Job(id string) (Job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	j, ok := q.jobs[id]
	if !ok {
		return Job{}, false
	}
	return *j, true
}

// Start runs the queue's workers until ctx ends or Close. Jobs left
// "running" by a process that stopped are pending again, and run.
//
// The hook's guarantee: it runs at most once per job, and exactly once for
// a job whose mix succeeded unless the process dies while the hook runs.
// The job's hook state is written durably as "started" before the hook is
// run and as "done"/"failed" after; a queue that finds "started" on start-up
// marks it "interrupted" and does not run it again.
func (q *Queue) Start(ctx context.Context) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started || q.closed {
		return
	}
	q.started = true
	for _, j := range q.jobs {
		changed := false
		if j.Status == StatusRunning {
			q.log.Info("resuming an interrupted mix", "job", j.ID)
			j.Status, j.Progress = StatusPending, 0
			changed = true
		}
		if j.Hook == HookStarted {
			q.log.Warn("the hook was running when the process stopped; it is not run again", "job", j.ID)
			j.Hook, j.HookErr = HookInterrupted, "the process stopped while the hook ran"
			changed = true
		}
		if changed {
			if err := q.saveLocked(j); err != nil {
				q.log.Error("saving job", "job", j.ID, "err", err)
			}
		}
	}
	ctx, q.cancel = context.WithCancel(ctx)
	for range q.cfg.Workers {
		q.wg.Add(1)
		go q.worker(ctx)
	}
	q.poke()
}

// Close stops the workers: a running mix is stopped (its job stays
// "running" on disk and runs again at the next Start, as after a crash); a
// running hook is let finish (up to HookTimeout). Close waits for them.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	cancel := q.cancel
	q.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	q.wg.Wait()
	return nil
}

func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// task is what a worker does next.
type task struct {
	job  *Job
	hook bool
}

// next takes the oldest pending job (marking it running) or a job whose hook is due.
func (q *Queue) next() (task, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var best *Job
	hook := false
	for _, j := range q.jobs {
		switch {
		case j.Status == StatusDone && j.Hook == HookPending:
			if best == nil || !hook || j.Created.Before(best.Created) {
				best, hook = j, true
			}
		case j.Status == StatusPending && !hook:
			if best == nil || j.Created.Before(best.Created) || (j.Created.Equal(best.Created) && j.ID < best.ID) {
				best = j
			}
		}
	}
	if best == nil {
		return task{}, false
	}
	if hook {
		best.Hook = HookStarted
	} else {
		best.Status, best.Started, best.Progress = StatusRunning, time.Now().UTC(), 0
		best.Attempts++
	}
	if err := q.saveLocked(best); err != nil {
		q.log.Error("saving job", "job", best.ID, "err", err)
	}
	q.poke() // another worker may take the next one
	return task{job: best, hook: hook}, true
}

func (q *Queue) worker(ctx context.Context) {
	defer q.wg.Done()
	for {
		if ctx.Err() != nil {
			return
		}
		t, ok := q.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-q.wake:
				continue
			}
		}
		if t.hook {
			q.runHook(t.job)
		} else {
			q.runMix(ctx, t.job)
		}
	}
}

func (q *Queue) update(j *Job, fn func(*Job)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	fn(j)
	if err := q.saveLocked(j); err != nil {
		q.log.Error("saving job", "job", j.ID, "err", err)
	}
}

func (q *Queue) runMix(ctx context.Context, j *Job) {
	q.mu.Lock()
	id, manifest, out, attempts := j.ID, j.Manifest, j.Output, j.Attempts
	q.mu.Unlock()
	log := q.log.With("job", id)
	if attempts > q.cfg.MaxAttempts {
		q.update(j, func(j *Job) {
			j.Status, j.Error, j.Finished = StatusFailed, fmt.Sprintf("interrupted %d times", attempts-1), time.Now().UTC()
		})
		log.Error("mix given up", "attempts", attempts-1)
		return
	}
	if dir := filepath.Dir(out); dir != "" {
		_ = os.MkdirAll(dir, 0o755)
	}
	err := Mix(ctx, manifest, out, q.cfg.Settings, func(p Progress) {
		q.mu.Lock()
		j.Progress = p.Percent
		q.mu.Unlock()
	})
	if ctx.Err() != nil {
		log.Info("mix interrupted; it runs again at the next start")
		return // left "running" on disk
	}
	if err != nil {
		log.Error("mix failed", "err", err)
		q.update(j, func(j *Job) { j.Status, j.Error, j.Finished = StatusFailed, err.Error(), time.Now().UTC() })
		return
	}
	q.update(j, func(j *Job) {
		j.Status, j.Progress, j.Error, j.Finished = StatusDone, 100, "", time.Now().UTC()
		if q.cfg.Hook != "" {
			j.Hook = HookPending
		}
	})
	log.Info("mix done", "output", out)
	q.poke()
}

// runHook runs the hook of a job whose state is already durably "started".
func (q *Queue) runHook(j *Job) {
	q.mu.Lock()
	id, manifest, out := j.ID, j.Manifest, j.Output
	q.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), q.cfg.HookTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, q.cfg.Hook, out, manifest)
	cmd.Env = append(os.Environ(), "PARLEY_MIX_JOB_ID="+id)
	cmd.WaitDelay = 2 * time.Second
	var outBuf limitedBuffer
	cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", q.cfg.HookTimeout, err)
	}
	q.update(j, func(j *Job) {
		if err != nil {
			j.Hook, j.HookErr = HookFailed, err.Error()
		} else {
			j.Hook, j.HookErr = HookDone, ""
		}
	})
	if err != nil {
		q.log.Error("hook failed", "job", id, "hook", q.cfg.Hook, "err", err, "output", outBuf.String())
	} else {
		q.log.Info("hook done", "job", id, "output", outBuf.String())
	}
}

func (q *Queue) saveLocked(j *Job) error {
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(q.cfg.Dir, j.ID+".json"), append(data, '\n'))
}

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := 4096 - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.b.String())
}

// writeFileAtomic replaces path with data (temp file, fsync, rename, fsync dir).
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(name)
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(name)
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(name)
		return err
	}
	if err := os.Rename(name, path); err != nil {
		os.Remove(name)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
