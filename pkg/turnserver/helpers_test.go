package turnserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/internal/testlog"
	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testRealm  = "parley.test"
	testSecret = "rest-secret-for-tests"
)

var testUsers = map[string]string{
	"alice": "alice-password",
	"bob":   "bob-password",
	"carol": "carol-password",
}

// testConfig is a server on 127.0.0.1 only, with free ports everywhere.
func testConfig() Config {
	c := DefaultConfig()
	c.Listen = "127.0.0.1:0"
	c.TLSListen = "127.0.0.1:0"
	c.Realm = testRealm
	c.RelayPortMin, c.RelayPortMax = 0, 0
	c.Users = testUsers
	c.AuthSecret = testSecret
	return c
}

// allowLoopback opens 127.0.0.0/8 as a peer range (the tests' only peers).
func allowLoopback(c *Config) {
	c.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
}

func startServer(t testing.TB, cfg Config) (*Server, *testlog.Buffer) {
	t.Helper()
	logs := &testlog.Buffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: testLogLevel}))
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return srv, logs
}

type quietLoggers struct{}

func (quietLoggers) NewLogger(string) logging.LeveledLogger {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f.NewLogger("client")
}

// pionClient is a pion TURN client over UDP (or over conn, when given).
func pionClient(t testing.TB, srv *Server, conn net.PacketConn, user, pass string) *turn.Client {
	t.Helper()
	if conn == nil {
		var err error
		conn, err = net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
	}
	server := srv.Addr().String()
	if _, ok := conn.(*turn.STUNConn); ok {
		server = conn.(*turn.STUNConn).RemoteAddr().String()
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server,
		TURNServerAddr: server,
		Conn:           conn,
		Username:       user,
		Password:       pass,
		Realm:          testRealm,
		RTO:            200 * time.Millisecond,
		LoggerFactory:  quietLoggers{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		_ = conn.Close()
	})
	return c
}

// allocate allocates or fails the test.
func allocate(t testing.TB, c *turn.Client) net.PacketConn {
	t.Helper()
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	return relay
}

func udpPeer(t testing.TB) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// eventually polls cond until it holds or the time is up.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metricsText scrapes the server's /metrics handler.
func metricsText(t testing.TB, srv *Server) string {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	return rec.Body.String()
}

// metricValue reads one sample from the Prometheus text; labels is the
// exact label string, e.g. `direction="client_to_peer"`.
func metricValue(t testing.TB, srv *Server, name, labels string) float64 {
	t.Helper()
	want := name
	if labels != "" {
		want += "{" + labels + "}"
	}
	for _, line := range strings.Split(metricsText(t, srv), "\n") {
		rest, ok := strings.CutPrefix(line, want+" ")
		if !ok {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(rest, &v); err != nil {
			t.Fatalf("metric %s: %q: %v", want, rest, err)
		}
		return v
	}
	t.Fatalf("metric %s not found", want)
	return 0
}

// exchange sends msg from one side until the other side reads it.
func exchange(t testing.TB, from net.PacketConn, to net.Addr, recv net.PacketConn, msg string) net.Addr {
	t.Helper()
	buf := make([]byte, 1600)
	for i := 0; i < 20; i++ {
		if _, err := from.WriteTo([]byte(msg), to); err != nil {
			t.Fatalf("WriteTo %s: %v", to, err)
		}
		_ = recv.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		n, addr, err := recv.ReadFrom(buf)
		if err == nil && string(buf[:n]) == msg {
			_ = recv.SetReadDeadline(time.Time{})
			return addr
		}
	}
	t.Fatalf("%q never arrived at %s", msg, recv.LocalAddr())
	return nil
}

// rawClient speaks just enough STUN/TURN over UDP to allocate with a chosen
// LIFETIME and refresh, which pion's client does not let a test choose.
type rawClient struct {
	t     testing.TB
	conn  net.PacketConn
	srv   net.Addr
	user  string
	pass  string
	nonce stun.Nonce
	realm stun.Realm
}

func newRawClient(t testing.TB, srv *Server, user, pass string) *rawClient {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &rawClient{t: t, conn: conn, srv: srv.Addr(), user: user, pass: pass}
}

func (c *rawClient) roundTrip(setters ...stun.Setter) *stun.Message {
	c.t.Helper()
	req := stun.MustBuild(setters...)
	buf := make([]byte, 1600)
	for try := 0; try < 5; try++ {
		if _, err := c.conn.WriteTo(req.Raw, c.srv); err != nil {
			c.t.Fatal(err)
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, _, err := c.conn.ReadFrom(buf)
			if err != nil {
				break
			}
			res := &stun.Message{Raw: append([]byte{}, buf[:n]...)}
			if res.Decode() != nil || res.TransactionID != req.TransactionID {
				continue
			}
			return res
		}
	}
	return nil // no answer (pion does not answer requests for unknown allocations)
}

func transportUDP() stun.Setter {
	return stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
}

func lifetimeAttr(d time.Duration) stun.Setter {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, uint32(d/time.Second))
	return stun.RawAttribute{Type: stun.AttrLifetime, Value: v}
}

func errorCode(m *stun.Message) int {
	var ec stun.ErrorCodeAttribute
	if ec.GetFrom(m) != nil {
		return 0
	}
	return int(ec.Code)
}

// request sends an authenticated request of method, learning the nonce first.
func (c *rawClient) request(method stun.Method, attrs ...stun.Setter) *stun.Message {
	c.t.Helper()
	for try := 0; try < 3; try++ {
		setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
		setters = append(setters, attrs...)
		if len(c.nonce) > 0 {
			setters = append(setters, stun.NewUsername(c.user), c.realm, c.nonce,
				stun.NewLongTermIntegrity(c.user, c.realm.String(), c.pass))
		}
		setters = append(setters, stun.Fingerprint)
		res := c.roundTrip(setters...)
		if res == nil {
			return nil
		}
		if code := errorCode(res); code == 401 || code == 438 {
			var nonce stun.Nonce
			var realm stun.Realm
			if nonce.GetFrom(res) == nil && realm.GetFrom(res) == nil {
				if len(c.nonce) > 0 && code == 401 {
					return res // credentials refused
				}
				c.nonce, c.realm = nonce, realm
				continue
			}
		}
		return res
	}
	c.t.Fatal("could not authenticate")
	return nil
}

// allocate returns the relayed address and granted lifetime, or the error code.
func (c *rawClient) allocate(lifetime time.Duration) (netip.AddrPort, time.Duration, int) {
	c.t.Helper()
	attrs := []stun.Setter{transportUDP()}
	if lifetime > 0 {
		attrs = append(attrs, lifetimeAttr(lifetime))
	}
	res := c.request(stun.MethodAllocate, attrs...)
	if res == nil {
		c.t.Fatal("no answer to Allocate")
	}
	if code := errorCode(res); code != 0 {
		return netip.AddrPort{}, 0, code
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		c.t.Fatalf("no XOR-RELAYED-ADDRESS: %v", err)
	}
	lt, _ := res.Get(stun.AttrLifetime)
	ip, _ := netip.AddrFromSlice(relayed.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(relayed.Port)), time.Duration(binary.BigEndian.Uint32(lt)) * time.Second, 0
}

// refresh returns the error code, 0 on success, -1 without an answer.
func (c *rawClient) refresh(lifetime time.Duration) int {
	c.t.Helper()
	res := c.request(stun.MethodRefresh, lifetimeAttr(lifetime))
	if res == nil {
		return -1
	}
	return errorCode(res)
}

// selfSignedCert writes a certificate for 127.0.0.1 and returns the file
// names and a pool that trusts it.
func selfSignedCert(t testing.TB) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "turnd test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func dialTLS(t testing.TB, srv *Server, pool *x509.CertPool) net.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", srv.TLSAddr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// turnErrorCode extracts the STUN error code from a pion client error.
func turnErrorCode(err error) int {
	var te *stun.TurnError
	if errors.As(err, &te) {
		return int(te.ErrorCodeAttr.Code)
	}
	var tv stun.TurnError
	if errors.As(err, &tv) {
		return int(tv.ErrorCodeAttr.Code)
	}
	return 0
}

var testLogLevel = func() slog.Level {
	if os.Getenv("TURND_TEST_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}()

func pionClientTLS(t testing.TB, srv *Server, pool *x509.CertPool) *turn.Client {
	t.Helper()
	return pionClient(t, srv, turn.NewSTUNConn(dialTLS(t, srv, pool)), "bob", testUsers["bob"])
}
