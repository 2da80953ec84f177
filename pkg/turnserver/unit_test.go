package turnserver

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPeerPolicy(t *testing.T) {
	def := newPeerPolicy(nil, nil)
	cases := []struct {
		ip   string
		want bool
	}{
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"2001:4860:4860::8888", true},
		{"127.0.0.1", false},
		{"127.255.255.254", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"172.32.0.1", true},
		{"192.168.1.1", false},
		{"100.64.0.1", false},
		{"169.254.169.254", false}, // cloud metadata
		{"0.0.0.0", false},
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"255.255.255.255", false},
		{"240.0.0.1", false},
		{"::", false},
		{"::1", false},
		{"fe80::1", false},
		{"fd00::1", false},
		{"ff02::1", false},
		{"::ffff:10.0.0.1", false}, // IPv4-mapped private
		{"::ffff:8.8.8.8", true},
		{"64:ff9b::a00:1", false},  // NAT64 of 10.0.0.1
		{"64:ff9b::808:808", true}, // NAT64 of 8.8.8.8
	}
	for _, tc := range cases {
		if got := def.allowed(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("default policy: %s allowed=%v, want %v", tc.ip, got, tc.want)
		}
	}
	if def.allowedIP(nil) || def.allowedIP(net.IP{1, 2, 3}) {
		t.Error("malformed IPs allowed")
	}

	allow := newPeerPolicy([]netip.Prefix{
		netip.MustParsePrefix("10.1.0.0/16"),
		netip.MustParsePrefix("::ffff:192.168.7.0/120"), // mapped form is normalised
	}, nil)
	for ip, want := range map[string]bool{
		"10.1.200.3": true, "10.2.0.1": false, "192.168.7.9": true, "192.168.8.1": false,
		"::ffff:10.1.0.1": true, "8.8.8.8": true, "127.0.0.1": false,
	} {
		if got := allow.allowed(netip.MustParseAddr(ip)); got != want {
			t.Errorf("allow-list policy: %s allowed=%v, want %v", ip, got, want)
		}
	}

	// The narrow policy (an SFU's own media addresses): those addresses,
	// private or loopback as they may be, and the allow-list, nothing else;
	// and packets only to the named ports.
	narrow := newPeerPolicy([]netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}, []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:7882"), netip.MustParseAddrPort("192.168.1.5:7882"),
		netip.MustParseAddrPort("[::ffff:198.51.100.7]:0"),
	})
	for ip, want := range map[string]bool{
		"127.0.0.1": true, "192.168.1.5": true, "198.51.100.7": true, "10.9.3.4": true,
		"127.0.0.2": false, "192.168.1.6": false, "8.8.8.8": false, "1.1.1.1": false, "::1": false,
	} {
		if got := narrow.allowed(netip.MustParseAddr(ip)); got != want {
			t.Errorf("narrow policy: %s allowed=%v, want %v", ip, got, want)
		}
	}
	for ap, want := range map[string]bool{
		"127.0.0.1:7882": true, "127.0.0.1:22": false, "192.168.1.5:7882": true, "192.168.1.5:7881": false,
		"198.51.100.7:40000": true, "10.9.3.4:5432": true, "8.8.8.8:7882": false,
		"[::ffff:127.0.0.1]:7882": true,
	} {
		if got := narrow.allowedAddrPort(netip.MustParseAddrPort(ap)); got != want {
			t.Errorf("narrow policy: packets to %s allowed=%v, want %v", ap, got, want)
		}
	}
	if !def.allowedAddrPort(netip.MustParseAddrPort("8.8.8.8:53")) {
		t.Error("the public policy filters ports")
	}
}

// Known answer computed independently:
// printf '1700000000:alice' | openssl dgst -sha1 -hmac s3cret -binary | base64
func TestRESTCredentials(t *testing.T) {
	u, p := RESTCredentials("s3cret", "alice", 100*time.Second, time.Unix(1699999900, 0))
	if u != "1700000000:alice" || p != "TtElzSjT0GdnTQ9xdcRNxx96yQs=" {
		t.Fatalf("got %q %q", u, p)
	}
	u, _ = RESTCredentials("s3cret", "", time.Minute, time.Unix(1700000000, 0))
	if u != "1700000060" {
		t.Fatalf("bare form: %q", u)
	}
	for name, want := range map[string][3]any{
		"1700000000:alice":       {int64(1700000000), "alice", true},
		"1700000000":             {int64(1700000000), "1700000000", true},
		"1700000000:":            {int64(1700000000), "1700000000:", true},
		"1700000000:a:b":         {int64(1700000000), "a:b", true},
		"alice":                  {int64(0), "", false},
		"alice:1700000000":       {int64(0), "", false},
		"-5:alice":               {int64(0), "", false},
		":alice":                 {int64(0), "", false},
		"99999999999999999999:x": {int64(0), "", false},
	} {
		e, u, ok := parseRESTUsername(name)
		if e != want[0] || u != want[1] || ok != want[2] {
			t.Errorf("parseRESTUsername(%q) = %d %q %v, want %v", name, e, u, ok, want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		field string
		edit  func(*Config)
	}{
		{"listen", func(c *Config) { c.Listen = "3478" }},
		{"listen", func(c *Config) { c.Listen = "turn.example.com:3478" }},
		{"relay-ip", func(c *Config) { c.Listen = "0.0.0.0:3478"; c.RelayIP = netip.Addr{} }},
		{"relay-ip", func(c *Config) { c.RelayIP = netip.MustParseAddr("0.0.0.0") }},
		{"relay-bind", func(c *Config) { c.RelayBind = netip.MustParseAddr("::1") }},
		{"relay-ports", func(c *Config) { c.RelayPortMin, c.RelayPortMax = 5000, 4000 }},
		{"relay-ports", func(c *Config) { c.RelayPortMin, c.RelayPortMax = 0, 4000 }},
		{"user", func(c *Config) { c.Users = nil; c.AuthSecret = "" }},
		{"user", func(c *Config) { c.Users = map[string]string{"a:b": "pw"} }},
		{"user", func(c *Config) { c.Users = map[string]string{"bob": ""} }},
		{"realm", func(c *Config) { c.Realm = "" }},
		{"tls-cert", func(c *Config) { c.TLSCertFile = "/x.pem" }},
		{"max-allocations", func(c *Config) { c.MaxAllocations = 0 }},
		{"max-allocations-per-user", func(c *Config) { c.MaxAllocationsPerUser = -1 }},
		{"allocation-lifetime", func(c *Config) { c.AllocationLifetime = 2 * time.Hour }},
		{"bandwidth-limit", func(c *Config) { c.BandwidthLimit = -1 }},
		{"bandwidth-limit", func(c *Config) { c.BandwidthLimit = 100 }},
		{"max-tcp-connections", func(c *Config) { c.MaxTCPConnections = 0 }},
	}
	for _, tc := range cases {
		c := testConfig()
		tc.edit(&c)
		_, err := New(c)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || ce.Hint == "" {
			t.Errorf("want a %s error with a hint, got %v", tc.field, err)
		}
	}
	// Missing certificate files are reported at start, naming the field.
	c := testConfig()
	c.TLSCertFile, c.TLSKeyFile = "/nonexistent/cert.pem", "/nonexistent/key.pem"
	if _, err := New(c); err == nil || !strings.HasPrefix(err.Error(), "tls-cert:") {
		t.Errorf("missing certificate: %v", err)
	}
}

func TestParsers(t *testing.T) {
	if lo, hi, err := ParsePortRange("49152-65535"); err != nil || lo != 49152 || hi != 65535 {
		t.Errorf("ParsePortRange: %d %d %v", lo, hi, err)
	}
	if lo, hi, err := ParsePortRange("0"); err != nil || lo != 0 || hi != 0 {
		t.Errorf("ParsePortRange(0): %d %d %v", lo, hi, err)
	}
	for _, bad := range []string{"", "-", "1-", "0-10", "10-5", "1-70000", "a-b", "100"} {
		if _, _, err := ParsePortRange(bad); err == nil {
			t.Errorf("ParsePortRange(%q) accepted", bad)
		}
	}
	if n, p, err := ParseUser("alice:pa:ss"); err != nil || n != "alice" || p != "pa:ss" {
		t.Errorf("ParseUser: %q %q %v", n, p, err)
	}
	for _, bad := range []string{"alice", ":pw", "alice:"} {
		_, _, err := ParseUser(bad)
		if err == nil {
			t.Errorf("ParseUser(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("ParseUser error shows the password: %v", err)
		}
	}
	if p, err := ParsePeerPrefix("10.1.2.3/16"); err != nil || p.String() != "10.1.0.0/16" {
		t.Errorf("ParsePeerPrefix: %v %v", p, err)
	}
	if p, err := ParsePeerPrefix("192.168.1.5"); err != nil || p.String() != "192.168.1.5/32" {
		t.Errorf("ParsePeerPrefix(single): %v %v", p, err)
	}
	if _, err := ParsePeerPrefix("10.0.0.0/33"); err == nil {
		t.Error("ParsePeerPrefix(/33) accepted")
	}
}

func FuzzParsers(f *testing.F) {
	for _, s := range []string{"1-2", "0", "alice:pw", "10.0.0.0/8", "::1", "1700000000:bob", "", ":", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _, _ = ParsePortRange(s)
		_, _, _ = ParseUser(s)
		_, _ = ParsePeerPrefix(s)
		_, _, _ = parseRESTUsername(s)
	})
}

func TestTokenBucket(t *testing.T) {
	b := newTokenBucket(100_000) // burst 25000
	taken := 0
	for b.take(1000) {
		taken += 1000
	}
	if taken != 25000 {
		t.Fatalf("burst %d, want 25000", taken)
	}
	time.Sleep(100 * time.Millisecond) // ~10000 bytes refill
	taken = 0
	for b.take(1000) {
		taken += 1000
	}
	if taken < 8000 || taken > 16000 {
		t.Fatalf("refill after 100ms: %d, want about 10000", taken)
	}
}

// Garbage on every listener neither crashes the server nor stops it from
// serving; nothing panics on bad input.
func TestGarbageInput(t *testing.T) {
	certFile, keyFile, pool := selfSignedCert(t)
	cfg := testConfig()
	allowLoopback(&cfg)
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	srv, _ := startServer(t, cfg)

	junk := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return b
	}
	stunHeader := func(length uint16) []byte {
		b := make([]byte, 20)
		binary.BigEndian.PutUint16(b[0:], 0x0003) // Allocate request
		binary.BigEndian.PutUint16(b[2:], length)
		binary.BigEndian.PutUint32(b[4:], 0x2112A442)
		copy(b[8:], junk(12))
		return b
	}
	channelData := func(length uint16) []byte {
		b := make([]byte, 4)
		binary.BigEndian.PutUint16(b[0:], 0x4000)
		binary.BigEndian.PutUint16(b[2:], length)
		return append(b, junk(8)...)
	}
	var payloads [][]byte
	for i := 0; i < 300; i++ {
		payloads = append(payloads, junk(i*7%1700))
	}
	payloads = append(payloads, stunHeader(0xFFFC), stunHeader(4), append(stunHeader(8), 0, 0x19, 0xFF, 0xFF),
		channelData(0xFFFF), channelData(0), []byte{0x40}, nil)

	udp, err := net.Dial("udp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for _, p := range payloads {
		_, _ = udp.Write(p)
	}
	for _, p := range payloads[len(payloads)-8:] {
		for _, addr := range []string{srv.TCPAddr().String(), srv.TLSAddr().String()} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = c.Write(p)
			_, _ = c.Write(junk(3000))
			_ = c.Close()
		}
	}
	// A TCP client that sends half a frame and stalls is cut off later;
	// meanwhile everyone else is served.
	stall, err := net.Dial("tcp", srv.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stall.Close()
	_, _ = stall.Write(stunHeader(100)[:10])

	c := pionClient(t, srv, nil, "alice", testUsers["alice"])
	relay := allocate(t, c)
	peer := udpPeer(t)
	exchange(t, relay, peer.LocalAddr(), peer, "still alive")
	tc := pionClientTLS(t, srv, pool)
	allocate(t, tc)
}
