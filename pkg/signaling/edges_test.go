package signaling

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestOriginAllowed(t *testing.T) {
	allowed := []string{"https://meet.example.com", "http://127.0.0.1:9000/"}
	for _, tc := range []struct {
		host, origin string
		want         bool
	}{
		{"parley.example.org", "", true}, // not a browser
		{"parley.example.org", "https://parley.example.org", true},
		{"parley.example.org:8443", "https://PARLEY.example.org:8443", true},
		{"parley.example.org", "https://meet.example.com", true},
		{"parley.example.org", "http://127.0.0.1:9000", true},
		{"parley.example.org", "https://evil.example", false},
		{"parley.example.org", "https://meet.example.com.evil.example", false},
		{"parley.example.org", "https://parley.example.org:8443", false}, // another port is another origin
		{"parley.example.org", "null", false},
		{"parley.example.org", "file://parley.example.org", false},
		{"parley.example.org", "%zz", false},
	} {
		r := httptest.NewRequest("GET", "http://"+tc.host+"/ws", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := originAllowed(r, allowed); got != tc.want {
			t.Errorf("Host %s, Origin %q: allowed=%v, want %v", tc.host, tc.origin, got, tc.want)
		}
	}
	r := httptest.NewRequest("GET", "http://parley.example.org/ws", nil)
	r.Header.Set("Origin", "https://anything.example")
	if !originAllowed(r, []string{"*"}) {
		t.Error(`"*" does not allow every origin`)
	}
}

func TestClientAddr(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		remote string
		xff    []string
		want   string
	}{
		{"192.0.2.7:5555", nil, "192.0.2.7"},
		{"192.0.2.7:5555", []string{"198.51.100.1"}, "192.0.2.7"}, // not a trusted proxy: the header is the client's word
		{"127.0.0.1:5555", []string{"198.51.100.1"}, "198.51.100.1"},
		{"127.0.0.1:5555", []string{"6.6.6.6, 198.51.100.1, 10.1.2.3"}, "198.51.100.1"}, // the last untrusted hop
		{"127.0.0.1:5555", []string{"6.6.6.6", "198.51.100.1"}, "198.51.100.1"},
		{"127.0.0.1:5555", []string{"10.1.2.3, 10.2.3.4"}, "10.1.2.3"}, // all trusted: the farthest
		{"127.0.0.1:5555", nil, "127.0.0.1"},
		{"127.0.0.1:5555", []string{"garbage, 198.51.100.1"}, "198.51.100.1"},
		{"127.0.0.1:5555", []string{"198.51.100.1, garbage"}, "127.0.0.1"},
		{"[2001:db8::5]:443", nil, "2001:db8::5"},
	} {
		r := httptest.NewRequest("GET", "/ws", nil)
		r.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := clientAddr(r, proxies).String(); got != tc.want {
			t.Errorf("%s with X-Forwarded-For %q: %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}

func TestAddressKey(t *testing.T) {
	if a, b := addrKey(netip.MustParseAddr("2001:db8:1:2:aaaa::1")), addrKey(netip.MustParseAddr("2001:db8:1:2:bbbb::9")); a != b {
		t.Errorf("one /64 counted as two addresses: %s %s", a, b)
	}
	if a, b := addrKey(netip.MustParseAddr("2001:db8:1:2::1")), addrKey(netip.MustParseAddr("2001:db8:1:3::1")); a == b {
		t.Errorf("two /64s counted as one: %s", a)
	}
	if k := addrKey(netip.MustParseAddr("::ffff:192.0.2.1")); k != netip.MustParsePrefix("192.0.2.1/32") {
		t.Errorf("mapped IPv4 key %s", k)
	}
}

// The limiter counts sessions and rates per address, gives sessions back, and
// forgets idle addresses only when forgetting grants nothing.
func TestAddrLimiter(t *testing.T) {
	l := newAddrLimiter(AddressLimits{MaxSessions: 2, SessionsPerSecond: 0.001, SessionBurst: 3, RoomsPerMinute: 1})
	a, b := addrKey(netip.MustParseAddr("192.0.2.1")), addrKey(netip.MustParseAddr("192.0.2.2"))
	for i := 0; i < 2; i++ {
		if code, _ := l.admitSession(a); code != "" {
			t.Fatalf("session %d refused: %s", i, code)
		}
	}
	if code, reason := l.admitSession(a); code != "TOO_MANY_SESSIONS" || reason == "" {
		t.Fatalf("third session: %q %q, want TOO_MANY_SESSIONS", code, reason)
	}
	if code, _ := l.admitSession(b); code != "" {
		t.Fatalf("another address refused: %s", code)
	}
	l.sessionEnded(a)
	if code, _ := l.admitSession(a); code != "" {
		t.Fatalf("session after one ended refused: %s", code)
	}
	// The burst of 3 is spent (3 admitted), the rate is tiny.
	l.sessionEnded(a)
	if code, _ := l.admitSession(a); code != "RATE_LIMITED" {
		t.Fatalf("fourth new session in a burst of 3: %q, want RATE_LIMITED", code)
	}
	cancel, ok := l.reserveRoom(a)
	if !ok {
		t.Fatal("first room refused")
	}
	if _, ok := l.reserveRoom(a); ok {
		t.Fatal("second room in a minute allowed")
	}
	cancel() // that join failed: the room is given back
	if _, ok := l.reserveRoom(a); !ok {
		t.Fatal("room given back not available")
	}
	r := l.refusals()
	if r.TooManySessions != 1 || r.SessionRate != 1 || r.RoomRate != 1 {
		t.Errorf("refusals %+v", r)
	}
	if l.forget < 3/0.001*1e9 {
		t.Errorf("idle addresses forgotten after %s, before their bucket refills", l.forget)
	}
}
