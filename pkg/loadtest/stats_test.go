package loadtest

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
)

func TestHistogram(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * 10 * time.Microsecond) // 10 µs … 10 ms
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.99, 9900 * time.Microsecond}, {1, 10 * time.Millisecond}} {
		got := h.quantile(c.q)
		if rel := math.Abs(float64(got-c.want)) / float64(c.want); rel > 0.07 {
			t.Errorf("q%.2f = %v, want %v ±7%%", c.q, got, c.want)
		}
	}
	if h.max != 10*time.Millisecond || h.n != 1000 {
		t.Errorf("max %v n %d", h.max, h.n)
	}
	for us := uint64(0); us < 1<<30; us = us*2 + 1 {
		if v := histValue(histIndex(us)); math.Abs(v-float64(us)) > 0.07*float64(us)+1 {
			t.Fatalf("%d µs lands in a bucket worth %.0f", us, v)
		}
	}
	var m histogram
	m.merge(&h)
	m.merge(&h)
	if m.n != 2000 || m.quantile(0.5) != h.quantile(0.5) {
		t.Errorf("merge: n %d, p50 %v", m.n, m.quantile(0.5))
	}
}

func TestWindowCounting(t *testing.T) {
	base := time.Now()
	var w window
	w.set(time.Second, 2*time.Second)
	st := &sentTrack{kind: "video", base: base, win: &w}
	r := &recvTrack{key: streamKey{"st-1", "video"}, clock: 90000, base: base, win: &w,
		lookup: func(streamKey) []*sentTrack { return []*sentTrack{st} }}
	r.measured.Store(true)
	for i, at := range []time.Duration{500 * time.Millisecond, 1500 * time.Millisecond, 1999 * time.Millisecond, 2 * time.Second} {
		pkt := &rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(65534 + i), Timestamp: uint32(i * 3000)}, Payload: []byte{1, 2, 3}}
		st.record(pkt, base.Add(at))
		arrived := base.Add(at + time.Millisecond) // at the socket 1 ms after the send
		if i == 2 {
			arrived = time.Time{} // unknown: counted at the reader
		}
		r.observe(pkt, base.Add(at+3*time.Millisecond), arrived)
	}
	// An unknown packet.
	r.observe(&rtp.Packet{Header: rtp.Header{SequenceNumber: 7}, Payload: []byte{9}}, base.Add(1500*time.Millisecond), time.Time{})
	sn := r.snapshot()
	if st.winPackets.Load() != 2 || sn.received != 2 || st.packets.Load() != 4 || r.unmatched.Load() != 1 || r.total.Load() != 5 {
		t.Fatalf("window packets %d, received %d, sent %d, unmatched %d, total %d",
			st.winPackets.Load(), sn.received, st.packets.Load(), r.unmatched.Load(), r.total.Load())
	}
	near := func(got, want time.Duration) bool {
		return got > want-100*time.Microsecond && got < want+100*time.Microsecond
	}
	if q := sn.read.quantile(0.5); !near(q, 3*time.Millisecond) || sn.read.n != 2 {
		t.Errorf("reader latency %v over %d packets, want 3 ms over 2", q, sn.read.n)
	}
	if lo, hi := sn.lat.quantile(0), sn.lat.quantile(1); !near(lo, time.Millisecond) || !near(hi, 3*time.Millisecond) || sn.unstamped != 1 {
		t.Errorf("socket latency %v..%v with %d unstamped, want 1 ms, and 3 ms for the unstamped one", lo, hi, sn.unstamped)
	}
}

// A receiver whose numbers the server rewrote (offsets of its own, a
// switch to another simulcast layer, padding the server added, a loss)
// finds its packets all the same, counts its loss by its own numbers, and
// which layer each packet came from.
func TestReceiverFollowsRewrites(t *testing.T) {
	base := time.Now()
	var w window
	w.set(time.Second, 10*time.Second)
	q := &sentTrack{kind: "video", rid: "q", base: base, win: &w}
	f := &sentTrack{kind: "video", rid: "f", base: base, win: &w}
	r := &recvTrack{key: streamKey{"st-1", "video"}, clock: 90000, base: base, win: &w,
		lookup: func(streamKey) []*sentTrack { return []*sentTrack{q, f} }}
	r.measured.Store(true)
	at := 2 * time.Second
	out := uint16(65530) // the receiver's own numbers
	// send has the publisher send a packet; to this receiver (numbered
	// its own way), lost on the way, or not at all (another layer).
	send := func(st *sentTrack, seq uint16, ts uint32, to, lost bool) {
		pkt := &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts}, Payload: []byte{byte(seq), byte(seq >> 8), byte(ts), st.rid[0]}}
		st.record(pkt, base.Add(at))
		at += 10 * time.Millisecond
		if !to {
			return
		}
		got := *pkt
		got.SequenceNumber, got.Timestamp = out, ts+777
		out++
		if !lost {
			r.observe(&got, base.Add(at), time.Time{})
		}
	}
	for i := range 20 {
		send(q, 100+uint16(i), uint32(i/2)*3000, true, i == 7)     // one lost
		send(f, 5000+uint16(i), uint32(i/2)*3000+50, false, false) // to the others
	}
	// Padding the server added, then a switch to layer f.
	r.observe(&rtp.Packet{Header: rtp.Header{SequenceNumber: out}}, base.Add(at), time.Time{})
	out++
	for i := range 10 {
		send(f, 6000+uint16(i), uint32(i)*3000+99, true, false)
	}
	sn := r.snapshot()
	if sn.received != 29 || sn.expected != 31 || sn.got != 30 || r.unmatched.Load() != 0 {
		t.Errorf("received %d media packets, %d of %d numbers, %d unmatched; want 29, 30 of 31, 0", sn.received, sn.got, sn.expected, r.unmatched.Load())
	}
	if sn.layers["q"] != 19 || sn.layers["f"] != 10 {
		t.Errorf("layers %v, want q 19 and f 10", sn.layers)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 3.2e+07
# TYPE parley_rooms gauge
parley_rooms 1
`
	s, err := parseMetrics(strings.NewReader(text))
	if err != nil || s.CPUSeconds != 12.5 || s.RSSBytes != 32e6 {
		t.Fatalf("%+v %v", s, err)
	}
	if _, err := parseMetrics(strings.NewReader("parley_rooms 1\n")); err == nil {
		t.Fatal("missing metrics accepted")
	}
	for in, want := range map[string]string{
		"ws://127.0.0.1:7880/ws":      "http://127.0.0.1:7880/metrics",
		"wss://example.com/ws?x=1":    "https://example.com/metrics",
		"http://127.0.0.1:9/anything": "http://127.0.0.1:9/metrics",
	} {
		if got, err := MetricsURL(in); err != nil || got != want {
			t.Errorf("MetricsURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestCheck(t *testing.T) {
	rep := &Report{Sessions: SessionReport{Failed: 1}, Totals: Totals{Expected: 1000, Received: 980, LossPct: 2}}
	if p := rep.Check(1, 0); len(p) != 2 {
		t.Errorf("check: %v", p)
	}
	if p := rep.Check(5, 1); len(p) != 0 {
		t.Errorf("check: %v", p)
	}
}

func TestDelayQuantiles(t *testing.T) {
	inf := math.Inf(1)
	start := []Bucket{{0.001, 10}, {0.002, 10}, {0.01, 10}, {inf, 10}}
	// 100 more: 50 up to 1 ms, 40 in (1, 2] ms, 9 in (2, 10] ms, 1 beyond.
	end := []Bucket{{0.001, 60}, {0.002, 100}, {0.01, 109}, {inf, 110}}
	p50, p99, n, ok := delayQuantiles(start, end)
	if !ok || n != 100 {
		t.Fatalf("n %d, ok %v", n, ok)
	}
	// p50: rank 50, the end of the first bucket: 1 ms. p99: rank 99, the
	// last of the (2, 10] bucket: 10 ms.
	if math.Abs(p50-1) > 1e-9 || math.Abs(p99-10) > 1e-9 {
		t.Errorf("p50 %.4f ms, p99 %.4f ms, want 1 and 10", p50, p99)
	}
	// Halfway into a bucket interpolates.
	end2 := []Bucket{{0.001, 10}, {0.003, 110}, {0.01, 110}, {inf, 110}}
	if p50, _, _, _ := delayQuantiles(start, end2); math.Abs(p50-2) > 1e-9 {
		t.Errorf("p50 %.4f ms, want 2 (halfway through (1, 3] ms)", p50)
	}
	if _, _, _, ok := delayQuantiles(end, end); ok {
		t.Error("no observations, but ok")
	}
	if _, _, _, ok := delayQuantiles(nil, nil); ok {
		t.Error("no histogram, but ok")
	}
}
