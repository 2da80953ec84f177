package turnserver

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// A pion client allocates, gets a permission for a peer on an allowed
// address and relays data both ways; the metrics count the bytes.
func TestRelayToAllowedPeer(t *testing.T) {
	cfg := testConfig()
	allowLoopback(&cfg)
	srv, logs := startServer(t, cfg)

	c := pionClient(t, srv, nil, "alice", testUsers["alice"])
	relay := allocate(t, c)
	if got := relay.LocalAddr().(*net.UDPAddr); !got.IP.Equal(net.IPv4(127, 0, 0, 1)) || got.Port == 0 {
		t.Fatalf("relayed address %v, want 127.0.0.1:PORT", got)
	}
	peer := udpPeer(t)

	from := exchange(t, relay, peer.LocalAddr(), peer, "hello peer")
	if from.String() != relay.LocalAddr().String() {
		t.Fatalf("peer got data from %v, want the relayed address %v", from, relay.LocalAddr())
	}
	from = exchange(t, peer, relay.LocalAddr(), relay, "hello client")
	if from.String() != peer.LocalAddr().String() {
		t.Fatalf("client got data from %v, want the peer %v", from, peer.LocalAddr())
	}

	if n := srv.AllocationCount(); n != 1 {
		t.Fatalf("AllocationCount = %d, want 1", n)
	}
	// The counters are bumped right after the send: give them a moment.
	eventually(t, time.Second, "client_to_peer bytes counted", func() bool {
		return metricValue(t, srv, "turnd_relayed_bytes_total", `direction="client_to_peer"`) >= float64(len("hello peer"))
	})
	eventually(t, time.Second, "peer_to_client bytes counted", func() bool {
		return metricValue(t, srv, "turnd_relayed_bytes_total", `direction="peer_to_client"`) >= float64(len("hello client"))
	})
	if v := metricValue(t, srv, "turnd_allocations", ""); v != 1 {
		t.Errorf("turnd_allocations = %v, want 1", v)
	}
	if v := metricValue(t, srv, "turnd_allocations_total", ""); v != 1 {
		t.Errorf("turnd_allocations_total = %v, want 1", v)
	}

	// The client leaves: the allocation is freed.
	_ = relay.Close()
	eventually(t, 3*time.Second, "allocation freed", func() bool { return srv.AllocationCount() == 0 })
	if v := metricValue(t, srv, "turnd_allocations", ""); v != 0 {
		t.Errorf("turnd_allocations = %v after close, want 0", v)
	}
	eventually(t, 3*time.Second, "closing log", func() bool { return strings.Contains(logs.String(), "turn allocation closed") })
	if !strings.Contains(logs.String(), "turn allocation created") {
		t.Errorf("no allocation log line:\n%s", logs)
	}
}

// Under the default policy a peer on 127.0.0.1 is refused (403 to
// CreatePermission) and nothing reaches it.
func TestDefaultPolicyRefusesLoopbackPeer(t *testing.T) {
	srv, _ := startServer(t, testConfig()) // no allow-list
	c := pionClient(t, srv, nil, "alice", testUsers["alice"])
	relay := allocate(t, c)
	peer := udpPeer(t)

	err := c.CreatePermission(peer.LocalAddr())
	if err == nil {
		t.Fatal("CreatePermission to 127.0.0.1 succeeded under the default policy")
	}
	if code := turnErrorCode(err); code != 403 {
		t.Logf("CreatePermission error: %v (code %d)", err, code)
	}
	// Writing through the relay must not reach the peer either.
	_, _ = relay.WriteTo([]byte("should not arrive"), peer.LocalAddr())
	_ = peer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := peer.ReadFrom(make([]byte, 100)); err == nil {
		t.Fatalf("peer on 127.0.0.1 received %d bytes", n)
	}
	if v := metricValue(t, srv, "turnd_peer_denied_total", ""); v < 1 {
		t.Errorf("turnd_peer_denied_total = %v, want >= 1", v)
	}
	if v := metricValue(t, srv, "turnd_relayed_bytes_total", `direction="client_to_peer"`); v != 0 {
		t.Errorf("relayed %v bytes to a denied peer", v)
	}
}

// An allow-list entry for another range does not open 127.0.0.1.
func TestAllowListIsNarrow(t *testing.T) {
	cfg := testConfig()
	cfg.AllowPeers = []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}
	srv, _ := startServer(t, cfg)
	c := pionClient(t, srv, nil, "alice", testUsers["alice"])
	allocate(t, c)
	if err := c.CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err == nil {
		t.Fatal("permission to 127.0.0.1 granted with only 10.1.0.0/16 allowed")
	}
}

// Static users, REST credentials, and the refusals: wrong password, unknown
// user, expired REST credential, REST credential signed with another secret.
// Failures are counted by reason and logged without the password.
func TestAuthentication(t *testing.T) {
	srv, logs := startServer(t, testConfig())
	now := time.Now()

	okUser, okPass := RESTCredentials(testSecret, "dave", time.Hour, now)
	expUser, expPass := RESTCredentials(testSecret, "dave", -time.Minute, now)
	_, otherPass := RESTCredentials("another-secret", "dave", time.Hour, now)

	cases := []struct {
		name, user, pass string
		wantOK           bool
		reason           string
	}{
		{"static", "bob", testUsers["bob"], true, ""},
		{"rest", okUser, okPass, true, ""},
		{"wrong password", "bob", "not-bobs-password", false, "bad_password"},
		{"unknown user", "mallory", "whatever-password", false, "unknown_user"},
		{"expired rest", expUser, expPass, false, "expired"},
		{"rest other secret", okUser, otherPass, false, "bad_password"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before float64
			if tc.reason != "" {
				before = metricValue(t, srv, "turnd_auth_failures_total", `reason="`+tc.reason+`"`)
			}
			c := pionClient(t, srv, nil, tc.user, tc.pass)
			relay, err := c.Allocate()
			if tc.wantOK {
				if err != nil {
					t.Fatalf("Allocate: %v", err)
				}
				_ = relay.Close()
				return
			}
			if err == nil {
				_ = relay.Close()
				t.Fatal("Allocate succeeded")
			}
			if code := turnErrorCode(err); code != 401 {
				t.Errorf("error %v (code %d), want 401", err, code)
			}
			if after := metricValue(t, srv, "turnd_auth_failures_total", `reason="`+tc.reason+`"`); after <= before {
				t.Errorf("auth failures{%s} did not grow: %v -> %v", tc.reason, before, after)
			}
		})
	}
	out := logs.String()
	for _, secret := range []string{"not-bobs-password", "whatever-password", expPass, otherPass, testUsers["bob"], okPass} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains a password %q", secret)
		}
	}
	if !strings.Contains(out, "turn auth failed") || !strings.Contains(out, "reason=expired") {
		t.Errorf("auth failures not logged:\n%s", out)
	}
	eventually(t, 3*time.Second, "allocations freed", func() bool { return srv.AllocationCount() == 0 })
}

// The per-user cap refuses allocations with 486 and does not touch other
// users; closing allocations frees their quota.
func TestPerUserQuota(t *testing.T) {
	cfg := testConfig()
	cfg.MaxAllocationsPerUser = 2
	srv, _ := startServer(t, cfg)

	var relays []net.PacketConn
	for i := 0; i < 2; i++ {
		relays = append(relays, allocate(t, pionClient(t, srv, nil, "alice", testUsers["alice"])))
	}
	// REST credentials count by their user part: two more for "alice" via
	// REST are over the cap too.
	restUser, restPass := RESTCredentials(testSecret, "alice", time.Hour, time.Now())
	for _, cred := range [][2]string{{"alice", testUsers["alice"]}, {restUser, restPass}} {
		_, err := pionClient(t, srv, nil, cred[0], cred[1]).Allocate()
		if err == nil {
			t.Fatalf("third allocation for alice (%s) succeeded", cred[0])
		}
		if code := turnErrorCode(err); code != 486 {
			t.Fatalf("over-quota error %v (code %d), want 486", err, code)
		}
	}
	allocate(t, pionClient(t, srv, nil, "bob", testUsers["bob"]))
	if n := srv.AllocationCount(); n != 3 {
		t.Fatalf("AllocationCount = %d, want 3", n)
	}
	if v := metricValue(t, srv, "turnd_allocation_refusals_total", `reason="user_quota"`); v != 2 {
		t.Errorf("user_quota refusals = %v, want 2", v)
	}

	for _, r := range relays {
		_ = r.Close()
	}
	eventually(t, 3*time.Second, "alice's allocations freed", func() bool { return srv.AllocationCount() == 1 })
	if v := metricValue(t, srv, "turnd_allocations", ""); v != 1 {
		t.Errorf("turnd_allocations gauge = %v, want 1", v)
	}
	allocate(t, pionClient(t, srv, nil, "alice", testUsers["alice"]))
}

// The total cap refuses allocations of any user.
func TestTotalQuota(t *testing.T) {
	cfg := testConfig()
	cfg.MaxAllocations = 2
	srv, _ := startServer(t, cfg)
	allocate(t, pionClient(t, srv, nil, "alice", testUsers["alice"]))
	allocate(t, pionClient(t, srv, nil, "bob", testUsers["bob"]))
	_, err := pionClient(t, srv, nil, "carol", testUsers["carol"]).Allocate()
	if code := turnErrorCode(err); code != 486 {
		t.Fatalf("third allocation: %v (code %d), want 486", err, code)
	}
	if v := metricValue(t, srv, "turnd_allocation_refusals_total", `reason="total_quota"`); v != 1 {
		t.Errorf("total_quota refusals = %v, want 1", v)
	}
}

// A client that asks for a long LIFETIME and never refreshes loses its
// allocation after --allocation-lifetime; one that refreshes keeps it.
func TestAllocationLifetimeCap(t *testing.T) {
	cfg := testConfig()
	cfg.AllocationLifetime = 1500 * time.Millisecond
	srv, logs := startServer(t, cfg)

	idle := newRawClient(t, srv, "alice", testUsers["alice"])
	if _, lt, code := idle.allocate(30 * time.Minute); code != 0 {
		t.Fatalf("allocate: error %d", code)
	} else if lt != 30*time.Minute {
		t.Logf("granted lifetime %s", lt)
	}
	busy := newRawClient(t, srv, "bob", testUsers["bob"])
	if _, _, code := busy.allocate(30 * time.Minute); code != 0 {
		t.Fatalf("allocate: error %d", code)
	}
	if n := srv.AllocationCount(); n != 2 {
		t.Fatalf("AllocationCount = %d, want 2", n)
	}
	for i := 0; i < 5; i++ { // 2.5 s, longer than the lifetime
		time.Sleep(500 * time.Millisecond)
		if code := busy.refresh(30 * time.Minute); code != 0 {
			t.Fatalf("refresh %d: error %d", i, code)
		}
	}
	if n := srv.AllocationCount(); n != 1 {
		t.Fatalf("AllocationCount = %d after the lifetime, want 1 (the refreshed one)", n)
	}
	if !strings.Contains(logs.String(), "turn allocation expired") {
		t.Errorf("no expiry log line")
	}
	if code := busy.refresh(0); code != 0 {
		t.Errorf("deallocate: code %d", code)
	}
	if code := idle.refresh(time.Minute); code == 0 {
		t.Errorf("refresh of the expired allocation succeeded")
	}
	eventually(t, 3*time.Second, "allocations freed", func() bool { return srv.AllocationCount() == 0 })
}

// The bandwidth cap holds relayed bytes near the cap in each direction.
func TestBandwidthCap(t *testing.T) {
	const limit = 50_000 // bytes/s
	cfg := testConfig()
	allowLoopback(&cfg)
	cfg.BandwidthLimit = limit
	srv, _ := startServer(t, cfg)

	c := pionClient(t, srv, nil, "alice", testUsers["alice"])
	relay := allocate(t, c)
	peer := udpPeer(t)
	exchange(t, relay, peer.LocalAddr(), peer, "warm-up")
	exchange(t, peer, relay.LocalAddr(), relay, "warm-up")

	const (
		pkt      = 1000
		duration = 2500 * time.Millisecond
		skip     = 500 * time.Millisecond // the burst allowance is spent by then
	)
	type result struct{ total, window int }
	count := func(conn net.PacketConn, start time.Time, out chan<- result) {
		var r result
		buf := make([]byte, 1600)
		for {
			_ = conn.SetReadDeadline(start.Add(duration + 300*time.Millisecond))
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				out <- r
				return
			}
			r.total += n
			if since := time.Since(start); since >= skip && since < duration {
				r.window += n
			}
		}
	}
	send := func(conn net.PacketConn, to net.Addr, start time.Time) int {
		payload := make([]byte, pkt)
		sent := 0
		for time.Since(start) < duration {
			for i := 0; i < 4; i++ {
				if _, err := conn.WriteTo(payload, to); err == nil {
					sent += pkt
				}
			}
			time.Sleep(2 * time.Millisecond) // ~2 MB/s offered, 40x the cap
		}
		return sent
	}

	start := time.Now()
	toPeer, toClient := make(chan result, 1), make(chan result, 1)
	go count(peer, start, toPeer)
	go count(relay, start, toClient)
	sentUp := make(chan int, 1)
	go func() { sentUp <- send(relay, peer.LocalAddr(), start) }()
	sentDown := send(peer, relay.LocalAddr(), start)
	up, down := <-toPeer, <-toClient
	t.Logf("client->peer: offered %d B, relayed %d B (%d B in the %s window); peer->client: offered %d B, relayed %d B (%d B in window)",
		<-sentUp, up.total, up.window, duration-skip, sentDown, down.total, down.window)

	windowCap := limit * (duration - skip).Seconds()
	burst := max(float64(limit)/4, 4*1600) // as in newTokenBucket
	for name, r := range map[string]result{"client->peer": up, "peer->client": down} {
		if w := float64(r.window); w > windowCap*1.15+pkt || w < windowCap*0.6 {
			t.Errorf("%s: %v bytes in the window, want about %v (the cap)", name, w, windowCap)
		}
		if tot := float64(r.total); tot > limit*duration.Seconds()+burst+2*pkt {
			t.Errorf("%s: %v bytes in %s exceeds cap %v/s plus burst", name, tot, duration, limit)
		}
	}
	if v := metricValue(t, srv, "turnd_dropped_packets_total", `direction="client_to_peer",reason="bandwidth"`); v == 0 {
		t.Error("no client_to_peer bandwidth drops counted")
	}
	if v := metricValue(t, srv, "turnd_dropped_packets_total", `direction="peer_to_client",reason="bandwidth"`); v == 0 {
		t.Error("no peer_to_client bandwidth drops counted")
	}
}

// turn over TCP and turns: over TLS, relay over UDP to the peer. RFC 6062 TCP
// relay allocations are refused.
func TestTCPAndTLSTransports(t *testing.T) {
	certFile, keyFile, pool := selfSignedCert(t)
	cfg := testConfig()
	allowLoopback(&cfg)
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	srv, logs := startServer(t, cfg)
	if srv.TLSAddr() == nil {
		t.Fatal("no TLS listener")
	}

	tcpConn, err := net.Dial("tcp", srv.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	for name, conn := range map[string]net.Conn{"tcp": tcpConn, "tls": dialTLS(t, srv, pool)} {
		t.Run(name, func(t *testing.T) {
			c := pionClient(t, srv, turn.NewSTUNConn(conn), "carol", testUsers["carol"])
			relay := allocate(t, c)
			peer := udpPeer(t)
			exchange(t, relay, peer.LocalAddr(), peer, "over "+name)
			exchange(t, peer, relay.LocalAddr(), relay, "back over "+name)
			if v := metricValue(t, srv, "turnd_tcp_connections", ""); v < 1 {
				t.Errorf("turnd_tcp_connections = %v", v)
			}
		})
	}
	if !strings.Contains(logs.String(), "transport=tls") || !strings.Contains(logs.String(), "transport=tcp") {
		t.Errorf("transports not logged:\n%s", logs)
	}

	tcp2, err := net.Dial("tcp", srv.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := pionClient(t, srv, turn.NewSTUNConn(tcp2), "bob", testUsers["bob"])
	if _, err := c.AllocateTCP(); err == nil {
		t.Fatal("TCP relay allocation succeeded")
	}
	if v := metricValue(t, srv, "turnd_allocation_refusals_total", `reason="tcp_relay"`); v != 1 {
		t.Errorf("tcp_relay refusals = %v", v)
	}
}

// Client TCP connections above --max-tcp-connections are closed at once.
func TestMaxTCPConnections(t *testing.T) {
	cfg := testConfig()
	cfg.MaxTCPConnections = 2
	srv, _ := startServer(t, cfg)
	var conns []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", srv.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	eventually(t, 3*time.Second, "refusal counted", func() bool {
		return metricValue(t, srv, "turnd_tcp_connections_refused_total", "") == 1
	})
	_ = conns[2].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conns[2].Read(make([]byte, 1)); err == nil {
		t.Fatal("third connection still open")
	}
	if v := metricValue(t, srv, "turnd_tcp_connections", ""); v != 2 {
		t.Errorf("turnd_tcp_connections = %v, want 2", v)
	}
}

// A TCP client that drops its connection without deallocating loses its
// allocation at once.
func TestTCPDisconnectFreesAllocation(t *testing.T) {
	srv, _ := startServer(t, testConfig())
	conn, err := net.Dial("tcp", srv.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := pionClient(t, srv, turn.NewSTUNConn(conn), "alice", testUsers["alice"])
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close() // stops the client's timers; the server side is gone by then
	if n := srv.AllocationCount(); n != 1 {
		t.Fatalf("AllocationCount = %d", n)
	}
	_ = conn.Close()
	eventually(t, 3*time.Second, "allocation freed", func() bool { return srv.AllocationCount() == 0 })
	eventually(t, 3*time.Second, "connection gone", func() bool { return metricValue(t, srv, "turnd_tcp_connections", "") == 0 })
}

// ReloadCertificate makes new TLS connections use the renewed certificate.
func TestReloadCertificate(t *testing.T) {
	certFile, keyFile, pool1 := selfSignedCert(t)
	cfg := testConfig()
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	srv, _ := startServer(t, cfg)
	dialTLS(t, srv, pool1).Close()

	cert2, key2, pool2 := selfSignedCert(t)
	for src, dst := range map[string]string{cert2: certFile, key2: keyFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.ReloadCertificate(); err != nil {
		t.Fatal(err)
	}
	dialTLS(t, srv, pool2).Close()

	// A broken file keeps the old certificate.
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.ReloadCertificate(); err == nil {
		t.Fatal("reload of a broken certificate succeeded")
	}
	dialTLS(t, srv, pool2).Close()
}
