package server_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/turnserver"
	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"
)

// frames records the frames a client receives, in order.
type frames struct {
	mu  sync.Mutex
	all []map[string]any
}

func (f *frames) add(b []byte) {
	var m map[string]any
	if json.Unmarshal(b, &m) == nil {
		f.mu.Lock()
		f.all = append(f.all, m)
		f.mu.Unlock()
	}
}

func (f *frames) list() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.all...)
}

// iceServersOf decodes the iceServers of a frame (nil: none).
func iceServersOf(t *testing.T, m map[string]any) []protocol.ICEServer {
	t.Helper()
	raw, ok := m["iceServers"]
	if !ok {
		return nil
	}
	b, _ := json.Marshal(raw)
	var out []protocol.ICEServer
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("iceServers %s: %v", b, err)
	}
	return out
}

// checkCredential checks a REST credential against the secret: the user
// part names the participant and the expiry is ttl from about now.
func checkCredential(t *testing.T, s protocol.ICEServer, secret, wantUser string, ttl time.Duration) int64 {
	t.Helper()
	exp, user, ok := strings.Cut(s.Username, ":")
	if !ok || user != wantUser {
		t.Fatalf("TURN user name %q, want EXPIRY:%s", s.Username, wantUser)
	}
	expiry, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		t.Fatalf("TURN user name %q: expiry: %v", s.Username, err)
	}
	if d := time.Until(time.Unix(expiry, 0)); d < ttl-time.Minute || d > ttl+time.Second {
		t.Errorf("credential valid for %s, want %s", d.Round(time.Second), ttl)
	}
	if _, want := turnserver.RESTCredentials(secret, user, 0, time.Unix(expiry, 0)); s.Credential != want {
		t.Errorf("credential %q is not the HMAC of %q with the secret", s.Credential, s.Username)
	}
	return expiry
}

// TURN credentials come with a successful join, not with connect: the
// session message has none, the join's reply has them, named after the
// participant and valid for the configured lifetime, before the subscribe
// offer; a refused join gets none; a resumed session gets fresh ones.
func TestTURNCredentialsComeWithTheJoin(t *testing.T) {
	const secret = "s3cret-for-tests"
	urls := []string{"turn:203.0.113.7:3478?transport=udp", "turn:203.0.113.7:3478?transport=tcp"}
	srv := testServer(t, func(c *server.Config) {
		c.TURN = server.TURNConfig{URLs: urls, Secret: secret} // TTL: the default, one hour
	})

	pub := dial(t, srv, client.Options{Username: "alice"})
	join(t, pub, "standup", "alice")
	publishCamera(t, pub)

	var seen frames
	c := dial(t, srv, client.Options{Username: "Bob Smith", OnFrame: seen.add})
	fs := seen.list()
	if len(fs) != 1 || fs[0]["type"] != "session" {
		t.Fatalf("frames after connect: %v", fs)
	}
	if _, has := fs[0]["iceServers"]; has {
		t.Fatalf("the session message carries ICE servers: %v", fs[0])
	}
	if len(c.ICEServers()) != 0 {
		t.Fatalf("ICE servers before any join: %v", c.ICEServers())
	}

	// A join that fails gets no credentials.
	if _, err := c.Join(ctxT(t, 5*time.Second), client.JoinOptions{Room: "no room/here", Name: "Bob Smith"}); errCode(err) != protocol.CodeInvalidRoom {
		t.Fatalf("join of an invalid room: %v", err)
	}
	if len(c.ICEServers()) != 0 {
		t.Fatalf("ICE servers after a refused join: %v", c.ICEServers())
	}

	join(t, c, "standup", "Bob Smith")
	waitEvent(t, c, "alice's stream", func(e protocol.Event) bool {
		return e.Event == protocol.EventStreamStatus && e.Status == protocol.StreamPlaying
	})
	var reply map[string]any
	replyAt, offerAt := -1, -1
	for i, f := range seen.list() {
		switch {
		case f["type"] == "reply" && replyAt < 0:
			reply, replyAt = f, i
		case f["type"] == "offer" && offerAt < 0:
			offerAt = i
		}
	}
	if replyAt < 0 || offerAt < 0 || replyAt > offerAt {
		t.Fatalf("the join's reply (frame %d) must come before the first subscribe offer (frame %d)", replyAt, offerAt)
	}
	servers := iceServersOf(t, reply)
	if len(servers) != 1 || strings.Join(servers[0].URLs, ",") != strings.Join(urls, ",") {
		t.Fatalf("join reply ICE servers %+v, want %v", servers, urls)
	}
	first := checkCredential(t, servers[0], secret, "standup/Bob%20Smith", server.DefaultTURNTTL)
	if got := c.ICEServers(); len(got) != 1 || got[0].Username != servers[0].Username {
		t.Errorf("client ICE servers %+v, want the join reply's", got)
	}
	// The subscribe connection, made after the join, uses them.
	pc := c.SubscribePeerConnection()
	if pc == nil {
		t.Fatal("no subscribe connection")
	}
	if cfg := pc.GetConfiguration(); len(cfg.ICEServers) != 1 || cfg.ICEServers[0].Username != servers[0].Username {
		t.Errorf("subscribe connection ICE servers %+v, want the join reply's", cfg.ICEServers)
	}

	// Resume: the resumed session gets fresh credentials for the same person.
	time.Sleep(1100 * time.Millisecond) // the expiry has a resolution of one second
	seen.mu.Lock()
	seen.all = nil
	seen.mu.Unlock()
	if err := c.Reconnect(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	var resumed map[string]any
	for _, f := range seen.list() {
		if f["type"] == "session" {
			resumed = f
		}
	}
	if resumed == nil || resumed["resumed"] != true {
		t.Fatalf("no resumed session message: %v", seen.list())
	}
	fresh := iceServersOf(t, resumed)
	if len(fresh) != 1 {
		t.Fatalf("resumed session ICE servers %+v", fresh)
	}
	if again := checkCredential(t, fresh[0], secret, "standup/Bob%20Smith", server.DefaultTURNTTL); again <= first {
		t.Errorf("resumed credential expires at %d, not later than the first (%d)", again, first)
	}
	if cfg := c.SubscribePeerConnection().GetConfiguration(); len(cfg.ICEServers) != 1 || cfg.ICEServers[0].Username != fresh[0].Username {
		t.Errorf("subscribe connection after resume has ICE servers %+v, want the fresh ones", cfg.ICEServers)
	}
}

// TURNUser names a participant in plain ASCII without the REST scheme's
// separator, one to one, and bounded.
func TestTURNUser(t *testing.T) {
	for _, tc := range []struct{ room, id, want string }{
		{"standup", "alice", "standup/alice"},
		{"standup", "Bob Smith", "standup/Bob%20Smith"},
		{"standup", "Zoë:/x", "standup/Zo%C3%AB%3A%2Fx"},
		{"a.b-c_d", "x@y", "a.b-c_d/x@y"},
	} {
		if got := server.TURNUser(tc.room, tc.id); got != tc.want {
			t.Errorf("TURNUser(%q, %q) = %q, want %q", tc.room, tc.id, got, tc.want)
		}
	}
	long := strings.Repeat("é", 64)
	a, b := server.TURNUser("r", long), server.TURNUser("r", long+"x")
	if len(a) > 200 || len(b) > 200 || a == b {
		t.Errorf("long identities: %d and %d bytes, equal=%v", len(a), len(b), a == b)
	}
}

// embeddedTURN runs the SFU with its TURN server on loopback, relaying by
// default (only to the SFU's media).
func embeddedTURN(t *testing.T, tweak func(*server.Config)) *server.Server {
	t.Helper()
	return testServer(t, func(c *server.Config) {
		tc := turnserver.DefaultConfig()
		tc.Listen = "127.0.0.1:0"
		tc.TLSListen = ""
		tc.RelayIP = netip.MustParseAddr("127.0.0.1")
		tc.RelayPortMin, tc.RelayPortMax = 0, 0
		c.EmbedTURN = &tc
		if tweak != nil {
			tweak(c)
		}
	})
}

// Two Pion clients that may only relay (iceTransportPolicy relay) publish and
// receive through the embedded TURN server with the credentials of their join
// replies, and nothing else: media flows, the relay counts the bytes, and the
// allocations are made under the participants' names.
func TestRelayWithCredentialsFromTheJoin(t *testing.T) {
	srv := embeddedTURN(t, nil)
	relayOnly := client.ICEOptions{TransportPolicy: webrtc.ICETransportPolicyRelay}
	a := dial(t, srv, client.Options{Username: "a", ICE: relayOnly})
	b := dial(t, srv, client.Options{Username: "b", ICE: relayOnly})
	join(t, a, "relayed", "a")
	join(t, b, "relayed", "b")
	if len(a.ICEServers()) != 1 || !strings.HasSuffix(a.ICEServers()[0].Username, ":relayed/a") {
		t.Fatalf("a's ICE servers %+v", a.ICEServers())
	}
	pub := publishCamera(t, a)
	tracks, err := b.WaitRemoteTracks(ctxT(t, 20*time.Second), 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range tracks {
		tr := tr
		eventually(t, 15*time.Second, "b receives "+tr.Kind()+" through the relay", func() bool { return tr.Packets() > 20 })
	}
	for name, pc := range map[string]*webrtc.PeerConnection{"publish": pub.PeerConnection(), "subscribe": b.SubscribePeerConnection()} {
		if typ := selectedLocalType(pc); typ != "relay" {
			t.Errorf("%s connection's selected local candidate is %q, want relay", name, typ)
		}
	}
	if n := srv.TURN().AllocationCount(); n < 2 {
		t.Errorf("%d allocations open, want those of a's publish and b's subscribe connection", n)
	}
	if v := scrape(t, srv.URL(), `turnd_relayed_bytes_total{direction="peer_to_client"}`); v < 10_000 {
		t.Errorf("the relay forwarded %v bytes to clients", v)
	}
}

// selectedLocalType returns the type of the selected pair's local candidate.
func selectedLocalType(pc *webrtc.PeerConnection) string {
	for _, s := range pc.GetStats() {
		if pair, ok := s.(webrtc.ICECandidatePairStats); ok && pair.Nominated && pair.State == webrtc.StatsICECandidatePairStateSucceeded {
			if local, ok := pc.GetStats()[pair.LocalCandidateID].(webrtc.ICECandidateStats); ok {
				return local.CandidateType.String()
			}
		}
	}
	return "none"
}

// turnClientFor allocates on srv's embedded TURN server with the
// credentials of a participant's join reply.
func turnClientFor(t *testing.T, srv *server.Server, name string) (*turn.Client, net.PacketConn) {
	t.Helper()
	c := dial(t, srv, client.Options{Username: name})
	join(t, c, "r", name)
	creds := c.ICEServers()
	if len(creds) != 1 {
		t.Fatalf("no TURN credentials in the join reply: %+v", creds)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	tc, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: srv.TURN().Addr().String(), TURNServerAddr: srv.TURN().Addr().String(),
		Conn: conn, Username: creds[0].Username, Password: creds[0].Credential, Realm: turnserver.DefaultRealm,
		LoggerFactory: quietPion{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	if err := tc.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := tc.Allocate()
	if err != nil {
		t.Fatalf("allocate with the join's credentials: %v", err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	return tc, relay
}

// The embedded TURN server relays only to the SFU: with a participant's own
// credentials, a permission for a public address (which a public-peer relay
// grants) is refused, packets to another port of the SFU's own address are
// dropped, and the SFU's media address is a permitted peer. (Relayed media to
// the SFU: TestRelayWithCredentialsFromTheJoin.)
func TestEmbeddedRelayReachesOnlyTheSFU(t *testing.T) {
	public := netip.MustParseAddrPort("8.8.8.8:53") // permissions send nothing: no packet leaves this machine

	// The control: a relay with turnd's public-peer policy grants it.
	open := embeddedTURN(t, func(c *server.Config) { c.EmbedTURNPeers = server.TURNPeersPublic })
	otc, _ := turnClientFor(t, open, "alice")
	if err := otc.CreatePermission(net.UDPAddrFromAddrPort(public)); err != nil {
		t.Fatalf("control: the public-peer relay refused a public peer: %v", err)
	}

	srv := embeddedTURN(t, nil)
	tc, relay := turnClientFor(t, srv, "mallory")
	err := tc.CreatePermission(net.UDPAddrFromAddrPort(public))
	var te *stun.TurnError
	if err == nil {
		t.Fatal("the embedded relay granted a permission for a peer other than the SFU")
	}
	if !asTurnError(err, &te) || te.ErrorCodeAttr.Code != stun.CodeForbidden {
		t.Errorf("permission refused with %v, want 403 Forbidden", err)
	}

	// Another port of the SFU's own address: a service the relay must not reach.
	media := srv.Media().MediaAddrs()
	if len(media) != 1 || media[0].Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("media addresses %v, want the one on 127.0.0.1", media)
	}
	sameHost, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sameHost.Close()
	for i := 0; i < 5; i++ {
		_, _ = relay.WriteTo([]byte("to another port"), sameHost.LocalAddr())
	}
	_ = sameHost.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, _, err := sameHost.ReadFrom(make([]byte, 100)); err == nil {
		t.Errorf("%s received %d bytes through the SFU's relay", sameHost.LocalAddr(), n)
	}
	if v := scrape(t, srv.URL(), "turnd_peer_denied_total"); v < 1 {
		t.Errorf("turnd_peer_denied_total = %v", v)
	}
	eventually(t, 2*time.Second, "peer_port drops counted", func() bool {
		return scrape(t, srv.URL(), `turnd_dropped_packets_total{direction="client_to_peer",reason="peer_port"}`) >= 1
	})
	if err := tc.CreatePermission(net.UDPAddrFromAddrPort(media[0])); err != nil {
		t.Errorf("permission for the SFU's media address %s refused: %v", media[0], err)
	}
}

func asTurnError(err error, te **stun.TurnError) bool {
	for e := err; e != nil; {
		if v, ok := e.(*stun.TurnError); ok {
			*te = v
			return true
		}
		if v, ok := e.(stun.TurnError); ok {
			*te = &v
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

type quietPion struct{}

func (quietPion) NewLogger(string) logging.LeveledLogger {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f.NewLogger("test")
}

// scrape reads one sample of base's /metrics (0 when absent).
func scrape(t *testing.T, base, sample string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("%s: %q", sample, rest)
			}
			return v
		}
	}
	return 0
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
