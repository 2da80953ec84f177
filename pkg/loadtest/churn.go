package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/testmedia"
	"github.com/pion/rtp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ChurnConfig describes a churn run: participants join a room, publish VP8
// and Opus, receive the others of their room, and leave, at a steady rate,
// for Duration, while the server's goroutines, open files and memory are
// sampled from its /metrics.
type ChurnConfig struct {
	// URL is the server's WebSocket URL; MetricsURL its Prometheus
	// endpoint (default: derived from URL).
	URL, MetricsURL string
	// Rooms are the rooms participants are spread over (round robin).
	Rooms int
	// Rate is how many participants join per second.
	Rate float64
	// Lifetime is how long each stays: about Rate × Lifetime are in rooms
	// at any time.
	Lifetime time.Duration
	// Duration is the length of the run; Warmup, from its start, is left
	// out of the figures (the server's pools and caches fill).
	Duration, Warmup time.Duration
	// SampleEvery is how often /metrics is read.
	SampleEvery time.Duration
	// Width, Height, FPS and VideoBitrate shape the published VP8.
	Width, Height, FPS, VideoBitrate int
	// MediaDir caches the generated media (default: the user cache dir).
	MediaDir string
	// Logger gets the run's log; ClientLogger the clients'.
	Logger, ClientLogger *slog.Logger
	// Progress, when set, gets a line per sample.
	Progress io.Writer
}

func (c ChurnConfig) withDefaults() (ChurnConfig, error) {
	if c.URL == "" {
		return c, errors.New("no server URL")
	}
	if c.MetricsURL == "" {
		u, err := MetricsURL(c.URL)
		if err != nil {
			return c, err
		}
		c.MetricsURL = u
	}
	if c.Rooms <= 0 {
		c.Rooms = 1
	}
	if c.Rate <= 0 || c.Rate > 100 {
		return c, fmt.Errorf("churn rate %v: want more than 0 and at most 100 joins per second", c.Rate)
	}
	if c.Lifetime <= 0 {
		c.Lifetime = 20 * time.Second
	}
	if c.Duration <= 0 {
		return c, errors.New("churn: no duration")
	}
	if c.SampleEvery <= 0 {
		c.SampleEvery = 30 * time.Second
	}
	if c.Width <= 0 || c.Height <= 0 {
		c.Width, c.Height = 320, 180
	}
	if c.FPS <= 0 {
		c.FPS = 15
	}
	if c.VideoBitrate <= 0 {
		c.VideoBitrate = 250_000
	}
	if c.MediaDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		c.MediaDir = filepath.Join(dir, "parley-testmedia")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ClientLogger == nil {
		c.ClientLogger = c.Logger
	}
	return c, nil
}

// ChurnSample is what the server's /metrics said at one moment of a churn
// run.
type ChurnSample struct {
	// At is the time since the run started.
	At time.Duration `json:"at_ns"`
	// Goroutines is go_goroutines, OpenFDs process_open_fds, RSSBytes
	// process_resident_memory_bytes, HeapBytes go_memstats_heap_inuse_bytes.
	Goroutines, OpenFDs, RSSBytes, HeapBytes float64
	// Participants is parley_participants, Sessions parley_sessions.
	Participants, Sessions float64
}

// ChurnReport is the outcome of a churn run.
type ChurnReport struct {
	Config ChurnConfig `json:"-"`
	// Joined counts participants that joined and published, Failed those
	// that did not; Received those that received media from another
	// participant while in their room (of those that had one to receive).
	Joined, Failed, Received, Expected int64
	// FailReasons counts the failures by stage.
	FailReasons map[string]int64
	// Samples are the server's figures, every SampleEvery.
	Samples []ChurnSample
	// Baseline is the sample taken before the first participant joined,
	// Idle the one taken after the last left and the server let go of
	// their rooms and sessions.
	Baseline ChurnSample
	Idle     *ChurnSample
}

// RunChurn runs a churn load against the server. It returns an error when
// the run could not be made (no media, no /metrics); a run with failed
// participants returns a report that says so.
func RunChurn(ctx context.Context, cfg ChurnConfig) (*ChurnReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("churn: %w", err)
	}
	o := testmedia.Options{Duration: mediaDuration, Width: cfg.Width, Height: cfg.Height, FPS: cfg.FPS, Bitrate: cfg.VideoBitrate}
	vp, err := testmedia.VP8IVF(cfg.MediaDir, o)
	if err != nil {
		return nil, fmt.Errorf("churn: video media: %w", err)
	}
	video, err := client.LoadIVF(vp)
	if err != nil {
		return nil, fmt.Errorf("churn: %w", err)
	}
	ap, err := testmedia.OpusOgg(cfg.MediaDir, testmedia.Options{Duration: mediaDuration})
	if err != nil {
		return nil, fmt.Errorf("churn: audio media: %w", err)
	}
	audio, err := client.LoadOpus(ap)
	if err != nil {
		return nil, fmt.Errorf("churn: %w", err)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	start := time.Now()
	sample := func() (ChurnSample, error) { return scrapeChurn(ctx, hc, cfg.MetricsURL, start) }
	baseline, err := sample()
	if err != nil {
		return nil, fmt.Errorf("churn: server metrics: %w", err)
	}

	rep := &ChurnReport{Config: cfg, FailReasons: map[string]int64{}, Baseline: baseline}
	var mu sync.Mutex
	var joined, failed, received, expected atomic.Int64
	fail := func(stage string, err error) {
		failed.Add(1)
		mu.Lock()
		rep.FailReasons[stage]++
		mu.Unlock()
		cfg.Logger.Debug("churn participant failed", "stage", stage, "err", err)
	}
	var wg sync.WaitGroup
	participant := func(n int) {
		defer wg.Done()
		room := fmt.Sprintf("churn-%d", n%cfg.Rooms+1)
		name := fmt.Sprintf("p%d", n)
		jctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		var got atomic.Int64
		c, err := client.Dial(jctx, cfg.URL, client.Options{Username: name, LightReceiver: true,
			Logger: cfg.ClientLogger.With("participant", name),
			OnRemoteTrack: func(*client.RemoteTrack) client.PacketReceivedFunc {
				return func(*rtp.Packet, time.Time, time.Time) { got.Add(1) }
			}})
		if err != nil {
			fail("dial", err)
			return
		}
		defer c.Close()
		go func() {
			for range c.Events() {
			}
		}()
		st, err := c.Join(jctx, client.JoinOptions{Room: room, Name: name})
		if err != nil {
			fail("join", err)
			return
		}
		pub, err := c.Publish(ctx, client.PublishOptions{Video: video.NewSource(true), Audio: audio.NewSource(true)})
		if err != nil {
			fail("publish", err)
			return
		}
		if err := pub.WaitStatus(jctx, protocol.StreamPublishing); err != nil {
			fail("publishing", err)
			return
		}
		joined.Add(1)
		others := false
		for _, p := range st.Participants {
			others = others || p.Name != name
		}
		select {
		case <-ctx.Done():
		case <-time.After(cfg.Lifetime):
		}
		if others {
			expected.Add(1)
			if got.Load() > 0 {
				received.Add(1)
			}
		}
	}

	sampler := time.NewTicker(cfg.SampleEvery)
	defer sampler.Stop()
	launch := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
	defer launch.Stop()
	end := time.After(cfg.Duration)
	n := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case <-launch.C:
			wg.Add(1)
			go participant(n)
			n++
		case <-sampler.C:
			s, err := sample()
			if err != nil {
				cfg.Logger.Warn("churn: server metrics", "err", err)
				continue
			}
			rep.Samples = append(rep.Samples, s)
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "churn %v: %d joined, %d failed; server: %.0f participants, %.0f goroutines, %.0f fds, %.1f MB RSS, %.1f MB heap\n",
					s.At.Round(time.Second), joined.Load(), failed.Load(), s.Participants, s.Goroutines, s.OpenFDs, s.RSSBytes/1e6, s.HeapBytes/1e6)
			}
		}
	}
	wg.Wait()
	// The server lets go of a participant's room a little after the last
	// one left; sample once everything is gone.
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		s, err := sample()
		if err == nil && s.Participants == 0 && s.Sessions == 0 {
			time.Sleep(min(5*time.Second, cfg.SampleEvery)) // the last goroutines end
			if s, err = sample(); err == nil {
				rep.Idle = &s
			}
			break
		}
		time.Sleep(time.Second)
	}
	rep.Joined, rep.Failed, rep.Received, rep.Expected = joined.Load(), failed.Load(), received.Load(), expected.Load()
	return rep, nil
}

func scrapeChurn(ctx context.Context, hc *http.Client, url string, start time.Time) (ChurnSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ChurnSample{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return ChurnSample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ChurnSample{}, fmt.Errorf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, maxMetricsBytes))
	if err != nil {
		return ChurnSample{}, fmt.Errorf("%s: %w", url, err)
	}
	value := func(name string) (float64, error) {
		f := fams[name]
		if f == nil || len(f.Metric) == 0 {
			return 0, fmt.Errorf("%s: no %s", url, name)
		}
		m := f.Metric[0]
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), nil
		case m.Counter != nil:
			return m.Counter.GetValue(), nil
		case m.Untyped != nil:
			return m.Untyped.GetValue(), nil
		}
		return 0, fmt.Errorf("%s: %s is not a number", url, name)
	}
	s := ChurnSample{At: time.Since(start)}
	for _, x := range []struct {
		name string
		to   *float64
	}{{"go_goroutines", &s.Goroutines}, {"process_open_fds", &s.OpenFDs}, {"process_resident_memory_bytes", &s.RSSBytes},
		{"go_memstats_heap_inuse_bytes", &s.HeapBytes}, {"parley_participants", &s.Participants}, {"parley_sessions", &s.Sessions}} {
		if *x.to, err = value(x.name); err != nil {
			return ChurnSample{}, err
		}
	}
	return s, nil
}

// ChurnTrend summarizes one figure over a run: its mean in the first and
// the last third of the samples after the warmup, and its range there.
type ChurnTrend struct {
	Name                  string
	First, Last, Min, Max float64
}

// Trends returns the figures' trends after the warmup.
func (r *ChurnReport) Trends() []ChurnTrend {
	var s []ChurnSample
	for _, x := range r.Samples {
		if x.At >= r.Config.Warmup {
			s = append(s, x)
		}
	}
	if len(s) < 3 {
		return nil
	}
	third := len(s) / 3
	var out []ChurnTrend
	for _, f := range []struct {
		name string
		get  func(ChurnSample) float64
	}{
		{"participants", func(x ChurnSample) float64 { return x.Participants }},
		{"goroutines", func(x ChurnSample) float64 { return x.Goroutines }},
		{"open fds", func(x ChurnSample) float64 { return x.OpenFDs }},
		{"heap in use (MB)", func(x ChurnSample) float64 { return x.HeapBytes / 1e6 }},
		{"RSS (MB)", func(x ChurnSample) float64 { return x.RSSBytes / 1e6 }},
	} {
		t := ChurnTrend{Name: f.name, Min: math.Inf(1), Max: math.Inf(-1)}
		for i, x := range s {
			v := f.get(x)
			t.Min, t.Max = min(t.Min, v), max(t.Max, v)
			if i < third {
				t.First += v / float64(third)
			}
			if i >= len(s)-third {
				t.Last += v / float64(third)
			}
		}
		out = append(out, t)
	}
	return out
}

// WriteTable writes the report for a person.
func (r *ChurnReport) WriteTable(w io.Writer) error {
	c := r.Config
	fmt.Fprintf(w, "churn: %v, %.2f joins/s, each staying %v, over %d rooms (VP8 %dx%d@%d %d kbit/s + Opus)\n",
		c.Duration, c.Rate, c.Lifetime, c.Rooms, c.Width, c.Height, c.FPS, c.VideoBitrate/1000)
	fmt.Fprintf(w, "participants: %d joined and published, %d failed", r.Joined, r.Failed)
	if len(r.FailReasons) > 0 {
		stages := make([]string, 0, len(r.FailReasons))
		for s := range r.FailReasons {
			stages = append(stages, s)
		}
		sort.Strings(stages)
		for _, s := range stages {
			fmt.Fprintf(w, " %s:%d", s, r.FailReasons[s])
		}
	}
	fmt.Fprintf(w, "; %d of %d with someone to receive received media\n", r.Received, r.Expected)
	fmt.Fprintf(w, "%-18s %12s %12s %10s %10s\n", "after warmup", "first third", "last third", "min", "max")
	for _, t := range r.Trends() {
		fmt.Fprintf(w, "%-18s %12.1f %12.1f %10.1f %10.1f\n", t.Name, t.First, t.Last, t.Min, t.Max)
	}
	if r.Idle != nil {
		_, err := fmt.Fprintf(w, "idle after the run: %.0f goroutines, %.0f fds, %.1f MB heap, %.1f MB RSS (before it: %.0f goroutines, %.0f fds, %.1f MB heap, %.1f MB RSS)\n",
			r.Idle.Goroutines, r.Idle.OpenFDs, r.Idle.HeapBytes/1e6, r.Idle.RSSBytes/1e6,
			r.Baseline.Goroutines, r.Baseline.OpenFDs, r.Baseline.HeapBytes/1e6, r.Baseline.RSSBytes/1e6)
		return err
	}
	_, err := fmt.Fprintf(w, "idle after the run: not reached (participants or sessions remained); before it: %.0f goroutines, %.0f fds\n",
		r.Baseline.Goroutines, r.Baseline.OpenFDs)
	return err
}
