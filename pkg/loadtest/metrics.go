package loadtest

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ServerSample is what the server's /metrics said at one moment.
type ServerSample struct {
	At time.Time
	// CPUSeconds is process_cpu_seconds_total.
	CPUSeconds float64
	// RSSBytes is process_resident_memory_bytes.
	RSSBytes float64
	// Packets says whether the server exports its packet counters
	// (parley_{received,forwarded,dropped}_packets_total): packets received
	// from publishers, written to subscribers, and dropped at a full
	// subscriber queue.
	Packets                      bool
	Received, Forwarded, Dropped float64
	// Delay is the server's parley_forward_delay_seconds histogram, when it
	// exports one.
	Delay []Bucket `json:"-"`
}

// Bucket is one cumulative histogram bucket: Count observations were at most
// UpperBound.
type Bucket struct {
	UpperBound float64
	Count      uint64
}

// delayQuantiles returns the p50 and p99 in milliseconds of the observations
// made between two samples of a cumulative histogram, interpolating linearly
// within buckets (as Prometheus' histogram_quantile does); ok is false when
// there were none.
func delayQuantiles(start, end []Bucket) (p50, p99 float64, n uint64, ok bool) {
	if len(end) == 0 || len(start) != len(end) && len(start) != 0 {
		return 0, 0, 0, false
	}
	delta := make([]Bucket, len(end))
	for i, b := range end {
		delta[i] = b
		if len(start) > 0 {
			delta[i].Count -= start[i].Count
		}
	}
	n = delta[len(delta)-1].Count
	if n == 0 {
		return 0, 0, 0, false
	}
	q := func(phi float64) float64 {
		rank := phi * float64(n)
		lower, below := 0.0, uint64(0)
		for _, b := range delta {
			if float64(b.Count) >= rank {
				if math.IsInf(b.UpperBound, 1) {
					return lower * 1000 // beyond the last bound: report the bound
				}
				in := float64(b.Count - below)
				return (lower + (b.UpperBound-lower)*(rank-float64(below))/in) * 1000
			}
			lower, below = b.UpperBound, b.Count
		}
		return lower * 1000
	}
	return q(0.5), q(0.99), n, true
}

// metricsClient scrapes a Prometheus text endpoint.
type metricsClient struct {
	url  string
	http *http.Client
}

// maxMetricsBytes bounds a scrape.
const maxMetricsBytes = 8 << 20

// MetricsURL derives the /metrics URL of a server from its WebSocket URL
// (ws://host:port/ws → http://host:port/metrics; wss → https).
func MetricsURL(wsURL string) (string, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return "", fmt.Errorf("server URL %q: %w", wsURL, err)
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	case "http", "https":
	default:
		return "", fmt.Errorf("server URL %q: scheme %q is not ws or wss", wsURL, u.Scheme)
	}
	u.Path, u.RawQuery, u.Fragment = "/metrics", "", ""
	return u.String(), nil
}

func newMetricsClient(u string) *metricsClient {
	return &metricsClient{url: u, http: &http.Client{Timeout: 5 * time.Second}}
}

// scrape reads the server's CPU and memory.
func (m *metricsClient) scrape(ctx context.Context) (ServerSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.url, nil)
	if err != nil {
		return ServerSample{}, fmt.Errorf("scrape %s: %w", m.url, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := m.http.Do(req)
	if err != nil {
		return ServerSample{}, fmt.Errorf("scrape %s: %w", m.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ServerSample{}, fmt.Errorf("scrape %s: %s", m.url, resp.Status)
	}
	s, err := parseMetrics(io.LimitReader(resp.Body, maxMetricsBytes))
	if err != nil {
		return ServerSample{}, fmt.Errorf("scrape %s: %w", m.url, err)
	}
	s.At = time.Now()
	return s, nil
}

// parseMetrics reads process_cpu_seconds_total and
// process_resident_memory_bytes from the Prometheus text format.
func parseMetrics(r io.Reader) (ServerSample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return ServerSample{}, fmt.Errorf("parse metrics: %w", err)
	}
	value := func(name string) (float64, error) {
		f := fams[name]
		if f == nil || len(f.GetMetric()) == 0 {
			return 0, fmt.Errorf("metric %s missing", name)
		}
		m := f.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), nil
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), nil
		case m.GetUntyped() != nil:
			return m.GetUntyped().GetValue(), nil
		}
		return 0, fmt.Errorf("metric %s has no value", name)
	}
	var s ServerSample
	if s.CPUSeconds, err = value("process_cpu_seconds_total"); err != nil {
		return s, err
	}
	if s.RSSBytes, err = value("process_resident_memory_bytes"); err != nil {
		return s, err
	}
	var errs [3]error
	s.Received, errs[0] = value("parley_received_packets_total")
	s.Forwarded, errs[1] = value("parley_forwarded_packets_total")
	s.Dropped, errs[2] = value("parley_dropped_packets_total")
	s.Packets = errs[0] == nil && errs[1] == nil && errs[2] == nil
	if f := fams["parley_forward_delay_seconds"]; f != nil && len(f.GetMetric()) > 0 {
		if h := f.GetMetric()[0].GetHistogram(); h != nil {
			for _, b := range h.GetBucket() {
				s.Delay = append(s.Delay, Bucket{UpperBound: b.GetUpperBound(), Count: b.GetCumulativeCount()})
			}
			s.Delay = append(s.Delay, Bucket{UpperBound: math.Inf(1), Count: h.GetSampleCount()})
		}
	}
	return s, nil
}

// loadAverage returns the 1-minute load average of the machine (0 where
// /proc/loadavg does not exist).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// udpCounters are the host's UDP error counters (/proc/net/snmp): on
// loopback a datagram dropped because a socket's receive buffer was full
// (the server's or a receiver's) shows in RcvbufErrors.
type udpCounters struct {
	InErrors, RcvbufErrors, SndbufErrors int64
	ok                                   bool
}

func readUDPCounters() udpCounters {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return udpCounters{}
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		var c udpCounters
		for i, v := range f[1:] {
			if i >= len(names) {
				break
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			switch names[i] {
			case "InErrors":
				c.InErrors = n
			case "RcvbufErrors":
				c.RcvbufErrors = n
			case "SndbufErrors":
				c.SndbufErrors = n
			}
		}
		c.ok = true
		return c
	}
	return udpCounters{}
}
