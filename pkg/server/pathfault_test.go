package server_test

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley/parley/internal/netnstest"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/sfu"
)

// udpRelay relays one client's ICE/UDP to the server's media port, as a
// link between them: cut drops everything both ways (the client's network
// went away), and it counts the RTP and RTCP the server sends.
type udpRelay struct {
	down, up *net.UDPConn // the client's side, the server's side
	server   *net.UDPAddr
	cut      atomic.Bool
	// dropEvery, when set, drops every n-th SRTP datagram from the server
	// (a lossy link).
	dropEvery atomic.Int64
	seen      atomic.Int64
	// fromServer counts the server's SRTP/SRTCP datagrams (not STUN, not
	// DTLS: RFC 7983's first byte 128-191); cutDrops those dropped while cut.
	fromServer, cutDrops atomic.Int64
	// stunUp and stunDown count the STUN datagrams relayed each way
	// (RFC 7983's first byte 0-3), for a failure's message.
	stunUp, stunDown atomic.Int64
	mu               sync.Mutex
	client           *net.UDPAddr
	wg               sync.WaitGroup
}

func newUDPRelay(t *testing.T, srv *server.Server) *udpRelay {
	t.Helper()
	port := srv.Media().UDPPort()
	if port == 0 {
		t.Fatal("the server has no media UDP port")
	}
	r := &udpRelay{server: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}
	var err error
	if r.down, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	if r.up, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	r.wg.Add(2)
	go r.run(r.down, true)
	go r.run(r.up, false)
	t.Cleanup(func() { _ = r.down.Close(); _ = r.up.Close(); r.wg.Wait() })
	return r
}

func (r *udpRelay) run(c *net.UDPConn, fromClient bool) {
	defer r.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			return
		}
		srtp := n > 0 && buf[0] >= 128 && buf[0] <= 191
		if n > 0 && buf[0] < 4 && !r.cut.Load() {
			if fromClient {
				r.stunUp.Add(1)
			} else {
				r.stunDown.Add(1)
			}
		}
		if !fromClient && srtp {
			r.fromServer.Add(1)
		}
		if every := r.dropEvery.Load(); every > 0 && !fromClient && srtp && n > 12 && (buf[1] < 192 || buf[1] > 223) {
			if r.seen.Add(1)%every == 0 {
				continue // RTP (not RTCP: RFC 5761's packet types 192-223)
			}
		}
		if r.cut.Load() {
			if !fromClient && srtp {
				r.cutDrops.Add(1)
			}
			continue
		}
		if fromClient {
			r.mu.Lock()
			r.client = from
			r.mu.Unlock()
			_, _ = r.up.WriteToUDP(buf[:n], r.server)
			continue
		}
		r.mu.Lock()
		to := r.client
		r.mu.Unlock()
		if to != nil {
			_, _ = r.down.WriteToUDP(buf[:n], to)
		}
	}
}

// ice routes a subscribing client's media through the relay: it shows the
// server none of its own candidates (the server learns the relay's address
// from the checks), and sees only the server's UDP candidate, at the relay.
func (r *udpRelay) ice() client.ICEOptions {
	serverPort := " " + strconv.Itoa(r.server.Port) + " "
	relayPort := " " + strconv.Itoa(r.down.LocalAddr().(*net.UDPAddr).Port) + " "
	return client.ICEOptions{HideLocalCandidates: true, RewriteRemoteCandidate: func(c string) string {
		if !strings.Contains(c, " udp ") || !strings.Contains(c, serverPort) {
			return ""
		}
		return strings.Replace(c, serverPort, relayPort, 1)
	}}
}

// subscriberStats returns the stats of name's subscribe connection.
func subscriberStats(t *testing.T, srv *server.Server, name string) sfu.SubscriberStats {
	t.Helper()
	for _, s := range srv.Media().Subscribers() {
		if s.Participant == name {
			return s
		}
	}
	t.Fatalf("no subscribe connection of %s", name)
	return sfu.SubscriberStats{}
}

// waitUntil polls cond every 50 ms until it holds, or fails after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metricsText returns the server's /metrics.
func metricsText(t *testing.T, srv *server.Server) string {
	t.Helper()
	resp, err := http.Get(srv.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// receivedVideo sums the packets of c's remote video tracks.
func receivedVideo(c *client.Client) int64 {
	var n int64
	for _, tr := range c.RemoteTracks() {
		if tr.Kind() == "video" {
			n += tr.Packets()
		}
	}
	return n
}

// When the subscriber's network goes away, ICE fails on the server (no
// consent for the failed timeout) and the direct path stops sending: not one
// SRTP packet more reaches the link. On the ICE restart that follows the
// network's return, the new selected pair carries the media again, on the
// direct path; the receiver reports never made it fall back.
func TestDirectPathStopsOnICEFailureAndResumes(t *testing.T) {
	srv := testServer(t, func(c *server.Config) {
		c.Media.ICE = sfu.ICETimeouts{Disconnected: time.Second, Failed: 3 * time.Second, Keepalive: 250 * time.Millisecond}
	})
	relay := newUDPRelay(t, srv)
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "faults", "a")
	b := dial(t, srv, client.Options{Username: "b", ICE: relay.ice()})
	join(t, b, "faults", "b")
	publishCamera(t, a)
	if _, err := b.WaitRemoteTracks(ctxT(t, 20*time.Second), 2); err != nil {
		t.Fatal(err)
	}
	// Longer than the progress check's window: a receiver that reports
	// keeps its connection on the direct path.
	time.Sleep(5 * time.Second)
	if st := subscriberStats(t, srv, "b"); st.Path != "direct" || receivedVideo(b) == 0 {
		t.Fatalf("before the cut: path %q, %d video packets; want direct and flowing", st.Path, receivedVideo(b))
	}

	relay.cut.Store(true)
	waitUntil(t, 20*time.Second, "the direct path did not stop after ICE failed", func() bool {
		return subscriberStats(t, srv, "b").Path == "none"
	})
	stopped := relay.fromServer.Load()
	time.Sleep(1500 * time.Millisecond)
	if n := relay.fromServer.Load() - stopped; n != 0 {
		t.Errorf("the server sent %d SRTP/SRTCP datagrams after ICE failed", n)
	}
	if relay.cutDrops.Load() == 0 {
		t.Error("the relay dropped nothing of the server's media while cut: the cut was not tested")
	}

	relay.cut.Store(false)
	before := receivedVideo(b)
	relay.stunUp.Store(0)
	relay.stunDown.Store(0)
	if err := b.RestartICE(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	resumeDeadline := time.Now().Add(20 * time.Second)
	for !(receivedVideo(b) > before+30 && subscriberStats(t, srv, "b").Path == "direct") {
		if time.Now().After(resumeDeadline) {
			t.Fatalf("after 20s: the media did not resume after the ICE restart: %d video packets (%d before), STUN relayed since the restart %d from the client, %d from the server; the subscriber %+v",
				receivedVideo(b), before, relay.stunUp.Load(), relay.stunDown.Load(), subscriberStats(t, srv, "b"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := srv.Media().Stats()
	if st.PathStops != 1 || st.FallbacksNoProgress != 0 || st.FallbacksNoRoute != 0 || st.GuardRefused != 0 {
		t.Errorf("stops %d, fallbacks %d (no progress) %d (no route), guard refusals %d; want 1, 0, 0, 0",
			st.PathStops, st.FallbacksNoProgress, st.FallbacksNoRoute, st.GuardRefused)
	}
	if m := metricsText(t, srv); !strings.Contains(m, "parley_subscribe_path_stops_total 1\n") {
		t.Error("/metrics does not count the stop")
	}
}

// When the direct path encrypts with wrong keys (injected: as a pion upgrade
// that changed how they are made would), the receiver opens nothing and its
// reports show no progress: within seconds the connection falls back to
// pion's SRTP session, the receiver gets the audio and the video from a
// keyframe, and /metrics counts the fallback.
func TestDirectPathFallsBackOnWrongKeys(t *testing.T) {
	srv := testServer(t, func(c *server.Config) { c.Media.Faults.WrongSRTPKeys = true })
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "wrongkeys", "a")
	b := dial(t, srv, client.Options{Username: "b"})
	join(t, b, "wrongkeys", "b")
	publishCamera(t, a)
	tracks, err := b.WaitRemoteTracks(ctxT(t, 30*time.Second), 2)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 15*time.Second, "b receives no video from a keyframe and audio", func() bool {
		var audio, video bool
		for _, tr := range tracks {
			audio = audio || tr.Kind() == "audio" && tr.Packets() > 20
			video = video || tr.Kind() == "video" && tr.Packets() > 20 && !tr.FirstKeyframeAt().IsZero()
		}
		return audio && video
	})
	if s := subscriberStats(t, srv, "b"); s.Path != "pion" {
		t.Errorf("b's path is %q, want pion", s.Path)
	}
	st := srv.Media().Stats()
	if st.FallbacksNoProgress != 1 || st.FallbacksRefused != 0 || st.GuardRefused != 0 {
		t.Errorf("fallbacks %d, refused %d, guard refusals %d; want 1, 0, 0", st.FallbacksNoProgress, st.FallbacksRefused, st.GuardRefused)
	}
	if m := metricsText(t, srv); !strings.Contains(m, `parley_subscribe_path_fallbacks_total{reason="no_progress"} 1`) {
		t.Error("/metrics does not count the fallback")
	}
}

// A selected pair whose local candidate is on no socket of the server makes
// the connection send through pion's SRTP session, which writes on the ICE
// agent's own socket: the subscriber gets everything, where the direct path
// would have dropped it all. In a network namespace of its own, the server
// listens on mediaIP only and announces 10.99.0.9 for it (NAT 1:1); the
// clients are on 127.0.0.1, which the kernel sends to from 127.0.0.1, where
// the server has no socket (as with several interfaces or policy routing).
func TestNoRouteFallsBackToPion(t *testing.T) {
	netnstest.Run(t, mediaIP+"/24", func(t *testing.T) {
		srv := testServer(t, func(c *server.Config) {
			c.Media.ListenIP = mediaIP
			c.Media.PublicIPs = []string{"10.99.0.9"}
			c.Media.LocalCandidates = true
		})
		ice := client.ICEOptions{IPFilter: func(ip net.IP) bool { return ip.IsLoopback() },
			RewriteRemoteCandidate: func(c string) string {
				if !strings.Contains(c, " udp ") {
					return ""
				}
				return strings.Replace(c, " 10.99.0.9 ", " "+mediaIP+" ", 1)
			}}
		a := dial(t, srv, client.Options{Username: "a", ICE: ice})
		no := false
		if _, err := a.Join(ctxT(t, 10*time.Second), client.JoinOptions{Room: "noroute", Name: "a", Subscribe: &no}); err != nil {
			t.Fatal(err)
		}
		b := dial(t, srv, client.Options{Username: "b", ICE: ice})
		join(t, b, "noroute", "b")
		publishCamera(t, a)
		tracks, err := b.WaitRemoteTracks(ctxT(t, 20*time.Second), 2)
		if err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 15*time.Second, "b receives no video from a keyframe and audio", func() bool {
			var audio, video bool
			for _, tr := range tracks {
				audio = audio || tr.Kind() == "audio" && tr.Packets() > 20
				video = video || tr.Kind() == "video" && tr.Packets() > 20 && !tr.FirstKeyframeAt().IsZero()
			}
			return audio && video
		})
		if s := subscriberStats(t, srv, "b"); s.Path != "pion" {
			t.Errorf("b's path is %q, want pion", s.Path)
		}
		st := srv.Media().Stats()
		if st.FallbacksNoRoute != 1 || st.FallbacksNoProgress != 0 || st.GuardRefused != 0 {
			t.Errorf("fallbacks %d (no route) %d (no progress), guard refusals %d; want 1, 0, 0", st.FallbacksNoRoute, st.FallbacksNoProgress, st.GuardRefused)
		}
		if m := metricsText(t, srv); !strings.Contains(m, `parley_subscribe_path_fallbacks_total{reason="no_route"} 1`) {
			t.Error("/metrics does not count the fallback")
		}
	})
}

// A subscriber is told how it receives each remote track, from its own
// receiver reports: QUALITY names the publisher's audio and video with the
// loss the relay between them causes (every 8th RTP datagram dropped) and
// a measured round trip; /metrics aggregates the reports' loss, jitter and
// round trip as histograms.
func TestReceiverReportQuality(t *testing.T) {
	srv := testServer(t, nil)
	relay := newUDPRelay(t, srv)
	relay.dropEvery.Store(8)
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "quality", "a")
	b := dial(t, srv, client.Options{Username: "b", ICE: relay.ice()})
	join(t, b, "quality", "b")
	cam := publishCamera(t, a)
	if _, err := b.WaitRemoteTracks(ctxT(t, 20*time.Second), 2); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	lossy, rtt := false, false
	deadline := time.After(20 * time.Second)
	for !(seen["audio"] && seen["video"] && lossy && rtt) {
		select {
		case ev := <-b.Events():
			if ev.Event != protocol.EventQuality {
				continue
			}
			for _, q := range ev.Quality {
				if q.StreamID != cam.ID() || q.Name != "a" || q.LossPct < 0 || q.LossPct > 100 || q.JitterMS < 0 {
					t.Fatalf("quality %+v", q)
				}
				seen[q.Kind] = true
				lossy = lossy || q.LossPct > 0
				rtt = rtt || q.RTTMS > 0
			}
		case <-deadline:
			t.Fatalf("after 20 s: QUALITY named %v, loss seen %v, round trip seen %v", seen, lossy, rtt)
		}
	}
	m := metricsText(t, srv)
	for _, name := range []string{"parley_subscriber_loss_ratio", "parley_subscriber_jitter_seconds", "parley_subscriber_rtt_seconds"} {
		i := strings.Index(m, name+"_count ")
		if i < 0 {
			t.Errorf("/metrics has no %s", name)
			continue
		}
		line := m[i:]
		line = line[:strings.IndexByte(line, '\n')]
		if n, err := strconv.Atoi(strings.TrimPrefix(line, name+"_count ")); err != nil || n == 0 {
			t.Errorf("%s: %q, want observations", name, line)
		}
	}
	// The lossy link shows in the histogram: not every report said 0.
	if strings.Contains(m, "parley_subscriber_loss_ratio_bucket{le=\"0\"} ") {
		i := strings.Index(m, "parley_subscriber_loss_ratio_bucket{le=\"0\"} ")
		zero := m[i+len("parley_subscriber_loss_ratio_bucket{le=\"0\"} "):]
		zero = zero[:strings.IndexByte(zero, '\n')]
		j := strings.Index(m, "parley_subscriber_loss_ratio_count ")
		all := m[j+len("parley_subscriber_loss_ratio_count "):]
		all = all[:strings.IndexByte(all, '\n')]
		if zero == all {
			t.Errorf("every one of %s reports said no loss", all)
		}
	}
}
