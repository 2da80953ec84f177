package turnserver

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// clientFrom is a pion TURN client whose UDP socket is bound to ip (any
// address of 127.0.0.0/8 works on Linux), so that tests can be several
// client addresses.
func clientFrom(t *testing.T, srv *Server, ip, user, pass string) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	return pionClient(t, srv, conn, user, pass)
}

// The per-address quota counts a client address's allocations whatever
// user names they carry (486 over it, counted and logged), leaves other
// addresses alone, and gives the quota back when an allocation closes.
func TestPerAddressQuota(t *testing.T) {
	cfg := testConfig()
	cfg.MaxAllocationsPerAddress = 2
	srv, logs := startServer(t, cfg)

	first := allocate(t, clientFrom(t, srv, "127.0.0.1", "alice", testUsers["alice"]))
	allocate(t, clientFrom(t, srv, "127.0.0.1", "bob", testUsers["bob"]))
	restUser, restPass := RESTCredentials(testSecret, "room/dave", time.Hour, time.Now())
	_, err := clientFrom(t, srv, "127.0.0.1", restUser, restPass).Allocate()
	if code := turnErrorCode(err); code != 486 {
		t.Fatalf("third allocation from 127.0.0.1: %v (code %d), want 486", err, code)
	}
	// Another address is not affected.
	allocate(t, clientFrom(t, srv, "127.0.0.2", "carol", testUsers["carol"]))
	if v := metricValue(t, srv, "turnd_allocation_refusals_total", `reason="address_quota"`); v != 1 {
		t.Errorf("address_quota refusals = %v, want 1", v)
	}
	eventually(t, time.Second, "refusal logged", func() bool {
		return strings.Contains(logs.String(), "reason=address_quota") && strings.Contains(logs.String(), "address=127.0.0.1/32")
	})

	_ = first.Close()
	eventually(t, 3*time.Second, "allocation freed", func() bool { return srv.AllocationCount() == 2 })
	allocate(t, clientFrom(t, srv, "127.0.0.1", restUser, restPass))
}

// Allocate requests from one address over many TCP connections at once
// (each served by its own goroutine) cannot overshoot the per-address quota.
func TestPerAddressQuotaHoldsUnderConcurrency(t *testing.T) {
	const limit, clients = 3, 12
	cfg := testConfig()
	cfg.MaxAllocationsPerAddress = limit
	cfg.MaxAllocationsPerUser = 100
	srv, _ := startServer(t, cfg)

	var ok, refused atomic.Int32
	var wg sync.WaitGroup
	cs := make([]*turn.Client, clients)
	for i := range cs {
		conn, err := net.Dial("tcp", srv.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = pionClient(t, srv, turn.NewSTUNConn(conn), "alice", testUsers["alice"])
	}
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			relay, err := c.Allocate()
			if err != nil {
				if turnErrorCode(err) == 486 {
					refused.Add(1)
				}
				return
			}
			ok.Add(1)
			t.Cleanup(func() { _ = relay.Close() })
		}()
	}
	wg.Wait()
	if ok.Load() != limit || refused.Load() != clients-limit {
		t.Fatalf("%d allocations made and %d refused with 486, want %d and %d", ok.Load(), refused.Load(), limit, clients-limit)
	}
	if n := srv.AllocationCount(); n != limit {
		t.Fatalf("AllocationCount = %d, want %d", n, limit)
	}
}

// The narrow policy (an SFU's own media addresses) relays to the named
// address and port, both ways, though it is loopback; it refuses a
// permission for any other address and drops packets to another port of
// the named address.
func TestNarrowPeerPolicy(t *testing.T) {
	sfu := udpPeer(t)   // the SFU's media port
	other := udpPeer(t) // another service on the same address
	cfg := testConfig()
	cfg.OnlyPeers = []netip.AddrPort{sfu.LocalAddr().(*net.UDPAddr).AddrPort()}
	srv, _ := startServer(t, cfg)

	c := pionClient(t, srv, nil, "alice", testUsers["alice"])
	relay := allocate(t, c)
	exchange(t, relay, sfu.LocalAddr(), sfu, "to the sfu")
	exchange(t, sfu, relay.LocalAddr(), relay, "from the sfu")

	// Another address: the permission is refused (403) and nothing arrives.
	elsewhere, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer elsewhere.Close()
	err = c.CreatePermission(elsewhere.LocalAddr())
	if err == nil {
		t.Fatal("permission for a peer other than the SFU granted")
	}
	if code := turnErrorCode(err); code != 403 {
		t.Errorf("CreatePermission to another peer: %v (code %d), want 403", err, code)
	}
	_, _ = relay.WriteTo([]byte("not for you"), elsewhere.LocalAddr())
	// The same address, another port: the permission (per IP) exists, the
	// packets are dropped.
	for i := 0; i < 5; i++ {
		_, _ = relay.WriteTo([]byte("not for you either"), other.LocalAddr())
	}
	for _, pc := range []net.PacketConn{elsewhere, other} {
		_ = pc.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
		if n, _, err := pc.ReadFrom(make([]byte, 100)); err == nil {
			t.Errorf("%s received %d bytes through the relay", pc.LocalAddr(), n)
		}
	}
	if v := metricValue(t, srv, "turnd_peer_denied_total", ""); v < 1 {
		t.Errorf("turnd_peer_denied_total = %v, want >= 1", v)
	}
	if v := metricValue(t, srv, "turnd_dropped_packets_total", `direction="client_to_peer",reason="peer_port"`); v < 1 {
		t.Errorf("peer_port drops = %v, want >= 1", v)
	}
	// The SFU still gets through afterwards.
	exchange(t, relay, sfu.LocalAddr(), sfu, "still to the sfu")
}

// An expired REST credential makes no new allocation, but the allocation made
// with it while it was valid is refreshed past the expiry (a meeting longer
// than the credential's lifetime keeps its relay).
func TestExpiredCredentialKeepsItsAllocation(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	cfg := testConfig()
	cfg.Now = func() time.Time { return time.Unix(clock.Load(), 0) }
	srv, _ := startServer(t, cfg)

	user, pass := RESTCredentials(testSecret, "standup/alice", time.Minute, cfg.Now())
	holder := newRawClient(t, srv, user, pass)
	if _, _, code := holder.allocate(time.Minute); code != 0 {
		t.Fatalf("allocate with a valid credential: error %d", code)
	}
	clock.Add(3600) // the credential expired an hour ago
	if code := holder.refresh(time.Minute); code != 0 {
		t.Fatalf("refresh of an allocation made while the credential was valid: error %d", code)
	}
	if code := holder.refresh(time.Minute); code != 0 {
		t.Fatalf("second refresh: error %d", code)
	}
	if _, _, code := newRawClient(t, srv, user, pass).allocate(time.Minute); code != 401 {
		t.Fatalf("new allocation with the expired credential: code %d, want 401", code)
	}
	if code := holder.refresh(0); code != 0 {
		t.Fatalf("deallocate: error %d", code)
	}
	eventually(t, 3*time.Second, "allocation freed", func() bool { return srv.AllocationCount() == 0 })
	// Once its allocation is gone, the expired credential is worth nothing,
	// from the same address too.
	if code := holder.refresh(time.Minute); code == 0 {
		t.Fatal("refresh with an expired credential and no allocation succeeded")
	}
}
