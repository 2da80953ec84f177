package loadtest

import (
	"context"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/server/servertest"
	"github.com/parley/parley/pkg/testmedia"
)

// TestRunInProcess runs the load tool against a real in-process server for a
// few seconds, one publisher (VP8 + Opus) and five subscribers, and checks
// that every subscriber got every packet on loopback and that the report's
// figures agree with each other.
func TestRunInProcess(t *testing.T) {
	if _, err := os.Stat(testmedia.FFmpeg); err != nil {
		t.Fatalf("ffmpeg not available (apt-get install ffmpeg): %v", err)
	}
	srv := servertest.Start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var logs strings.Builder
	const subscribers = 5
	rep, err := Run(ctx, Config{
		URL: servertest.WSURL(srv), VideoPublishers: 1, Subscribers: subscribers,
		Duration: 3 * time.Second, Settle: 500 * time.Millisecond, Drain: 500 * time.Millisecond, RampRate: 50,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", table.String())

	if s := rep.Sessions; s.Planned != subscribers+1 || s.Connected != subscribers+1 || s.Failed != 0 {
		t.Fatalf("sessions %+v", s)
	}
	if len(rep.Streams) != 2 {
		t.Fatalf("%d streams, want audio and video", len(rep.Streams))
	}
	var sent, received int64
	for _, s := range rep.Streams {
		// ~3 s of 30 fps video (several packets a frame) and 50 packets/s of audio.
		minSent := map[string]int64{"audio": 100, "video": 150}[s.Kind]
		if s.Sent < minSent || s.Receivers != subscribers {
			t.Errorf("%s: sent %d (want ≥ %d), %d receivers", s.Kind, s.Sent, minSent, s.Receivers)
		}
		if s.Expected != s.Sent*subscribers || s.Received != s.Expected || s.LossPct != 0 {
			t.Errorf("%s: sent %d × %d receivers, expected %d, received %d, loss %.3f%%",
				s.Kind, s.Sent, subscribers, s.Expected, s.Received, s.LossPct)
		}
		if s.Latency.N != s.Received || s.JitterMaxMS < s.JitterMeanMS {
			t.Errorf("%s: %d latency samples for %d packets; jitter mean %.2f max %.2f", s.Kind, s.Latency.N, s.Received,
				s.JitterMeanMS, s.JitterMaxMS)
		}
		if s.Kind == "video" && (s.Kbps < 200 || s.Kbps > 3000) {
			t.Errorf("video at %.0f kbit/s", s.Kbps)
		}
		sent += s.Sent
		received += s.Received
	}
	tot := rep.Totals
	if tot.Sent != sent || tot.Received != received || tot.Received != subscribers*tot.Sent || tot.Expected != tot.Received ||
		tot.LossPct != 0 || tot.Unmatched != 0 {
		t.Errorf("totals %+v (streams: sent %d, received %d)", tot, sent, received)
	}
	if want := float64(tot.Received) / rep.WindowSeconds; math.Abs(tot.ReceivedPerSecond-want) > 1e-6 || rep.WindowSeconds != 3 {
		t.Errorf("received per second %.1f, window %.1f s", tot.ReceivedPerSecond, rep.WindowSeconds)
	}
	l := rep.Latency
	if l.N != tot.Received || l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.Max || l.Max > 1000 {
		t.Errorf("latency %+v", l)
	}
	// Every packet had its arrival at the receiver's socket stamped by the
	// kernel (Linux), before the reader got it: no quantile of the socket
	// latency is above the reader's.
	r := rep.ReaderLatency
	if (runtime.GOOS == "linux" && tot.Unstamped != 0) || r.N != tot.Received || l.P50 > r.P50 || l.P99 > r.P99 || l.Max > r.Max {
		t.Errorf("%d packets without a socket arrival time; latency to the socket %+v, to the reader %+v", tot.Unstamped, l, r)
	}
	if rep.Join.N != subscribers+1 || rep.Join.P50 <= 0 || rep.FirstFrame.N != subscribers || rep.FirstFrame.P50 <= 0 ||
		rep.FirstFrame.Max > 15000 {
		t.Errorf("join %+v, first frame %+v", rep.Join, rep.FirstFrame)
	}
	srvRep := rep.Server
	if !srvRep.Available || srvRep.CPUCores <= 0 || srvRep.RSSMB <= 0 || srvRep.Baseline.RSSBytes <= 0 {
		t.Errorf("server %+v", srvRep)
	}
	forwarded := float64(tot.Received)
	if srvRep.Start.Packets {
		// The server's own count covers the scrape-to-scrape interval, not
		// the send-time window: equal but for the packets at either end.
		if d := srvRep.Forwarded - tot.Received; d < -tot.Received/10 || d > tot.Received/10 || srvRep.Dropped != 0 {
			t.Errorf("server forwarded %d, dropped %d; receivers got %d", srvRep.Forwarded, srvRep.Dropped, tot.Received)
		}
		forwarded = float64(srvRep.Forwarded)
	}
	if want := (srvRep.End.CPUSeconds - srvRep.Start.CPUSeconds) * 1e6 / forwarded; math.Abs(srvRep.MicrosPerPacket-want) > 1e-6 {
		t.Errorf("server µs per packet %.2f, want %.2f", srvRep.MicrosPerPacket, want)
	}
	// The server's own delay histogram: about one observation per receiver
	// burst (a video frame or an audio packet), with ordered quantiles.
	if d := srvRep; d.DelayObservations == 0 || d.DelayObservations > uint64(tot.Received) ||
		d.DelayP50MS <= 0 || d.DelayP99MS < d.DelayP50MS || d.DelayP99MS > 1000 {
		t.Errorf("server delay: %d observations for %d packets received, p50 %.3f ms, p99 %.3f ms",
			d.DelayObservations, tot.Received, d.DelayP50MS, d.DelayP99MS)
	}
	if rep.Self.CPUCores <= 0 || rep.Self.MicrosPerPacket <= 0 {
		t.Errorf("self %+v", rep.Self)
	}
	if p := rep.Check(0, 0); len(p) != 0 {
		t.Errorf("check: %v", p)
	}
	if t.Failed() {
		t.Logf("logs:\n%s", logs.String())
	}
}

// TestShapedSubscribersInProcess: a simulcast publisher and three
// subscribers, one of them behind a 400 kbit/s link of the load tool's own
// (shaper.go). The report tells the groups apart: the unshaped receivers
// get the top layer without loss; the shaped one the lowest layer, with
// little video loss and its audio whole.
func TestShapedSubscribersInProcess(t *testing.T) {
	srv := servertest.Start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rep, err := Run(ctx, Config{
		URL: servertest.WSURL(srv), VideoPublishers: 1, Subscribers: 3, Simulcast: true, Width: 1280, Height: 720,
		VideoBitrate: 1_500_000, Shaped: 1, ShapedRate: 400_000,
		Duration: 6 * time.Second, Settle: 8 * time.Second, Drain: 500 * time.Millisecond, RampRate: 50,
	})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", table.String())
	if len(rep.Groups) != 2 || rep.Groups[0].Receivers != 2 || rep.Groups[1].Receivers != 1 {
		t.Fatalf("groups %+v, want 2 unshaped and 1 shaped receiver", rep.Groups)
	}
	good, shaped := rep.Groups[0], rep.Groups[1]
	if good.Layers["f"] < 0.95 || good.VideoLossPct > 0.5 || good.AudioLossPct > 0.5 {
		t.Errorf("unshaped: %+v, want the top layer without loss", good)
	}
	if shaped.Layers["q"] < 0.9 || shaped.VideoLossPct > 3 || shaped.AudioLossPct > 1 || shaped.VideoKbps > 400 {
		t.Errorf("shaped: %+v, want the lowest layer, little video loss, audio whole", shaped)
	}
	if rep.Totals.Unmatched > rep.Totals.Received/100 {
		t.Errorf("%d packets unmatched of %d", rep.Totals.Unmatched, rep.Totals.Received)
	}
}

// TestWebinarInProcess: the view-only shape in a webinar room of a server
// in token mode. The publisher joins with a token the tool signs (publish),
// the subscribers without one: the webinar preset admits them as viewers,
// and they receive the presenter without loss.
func TestWebinarInProcess(t *testing.T) {
	key := auth.Key{ID: "load", Secret: []byte(strings.Repeat("k", 32))}
	v, err := auth.NewVerifier([]auth.Key{key}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "webinar.yaml"), []byte("rooms: ['load-*']\nwebinar: true\ngrants: [subscribe, chat]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, func(c *server.Config) {
		c.Auth = server.AuthConfig{Mode: server.AuthToken, Tokens: v, RoomsDir: dir}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const viewers = 4
	cfg := Config{URL: servertest.WSURL(srv), VideoPublishers: 1, Subscribers: viewers,
		Duration: 2 * time.Second, Settle: 500 * time.Millisecond, Drain: 500 * time.Millisecond, RampRate: 50}
	// Without the key the publisher is a viewer too, and may not publish.
	bad := cfg
	bad.Subscribers, bad.Duration, bad.ReadyTimeout = 1, time.Second, 5*time.Second
	if rep, err := Run(ctx, bad); err != nil || rep.Sessions.FailedBy["publish"] != 1 {
		t.Fatalf("without a token key: %v, sessions %+v", err, rep.Sessions)
	}
	cfg.TokenKey = key
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", table.String())
	if s := rep.Sessions; s.Connected != viewers+1 || s.Failed != 0 || s.Viewers != viewers {
		t.Fatalf("sessions %+v, want the publisher and %d viewers connected", s, viewers)
	}
	if !strings.Contains(table.String(), "(4 as webinar viewers)") {
		t.Errorf("the table does not say the viewers")
	}
	if tot := rep.Totals; tot.Received == 0 || tot.LossPct != 0 {
		t.Errorf("totals %+v", tot)
	}
}
