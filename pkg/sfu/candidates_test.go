package sfu

import (
	"strings"
	"testing"
)

func TestCandidateFilter(t *testing.T) {
	remote := &Engine{}                     // serves on a public address
	local := &Engine{localCandidates: true} // serves on loopback
	for c, wantRemote := range map[string]bool{
		"candidate:1 1 udp 2130706431 192.0.2.4 50000 typ host":                          true,
		"a=candidate:1 1 udp 2130706431 10.1.2.3 50000 typ host":                         true,
		"candidate:2 1 udp 1694498815 203.0.113.9 61000 typ srflx raddr 0.0.0.0 rport 0": true,
		"candidate:3 1 tcp 1518280447 198.51.100.3 9 typ host tcptype active":            true,
		"candidate:4 1 udp 2130706431 2001:db8::7 50000 typ host":                        true,
		"candidate:1 1 udp 2130706431 127.0.0.1 6379 typ host":                           false,
		"candidate:1 1 udp 2130706431 127.9.9.9 6379 typ host":                           false,
		"candidate:1 1 tcp 2130706431 127.0.0.1 5432 typ host tcptype passive":           false,
		"candidate:1 1 udp 2130706431 ::1 6379 typ host":                                 false,
		"candidate:1 1 udp 2130706431 ::ffff:127.0.0.1 6379 typ host":                    false,
		"candidate:1 1 udp 2130706431 169.254.169.254 80 typ host":                       false,
		"candidate:1 1 udp 2130706431 fe80::1%eth0 80 typ host":                          false,
		"candidate:1 1 udp 2130706431 0.0.0.0 80 typ host":                               false,
		"candidate:1 1 udp 2130706431 :: 80 typ host":                                    false,
		"candidate:1 1 udp 2130706431 224.0.0.251 5353 typ host":                         false,
		"candidate:1 1 udp 2130706431 255.255.255.255 9 typ host":                        false,
	} {
		if got := remote.acceptCandidate(c); got != wantRemote {
			t.Errorf("server on a public address: %q accepted=%v, want %v", c, got, wantRemote)
		}
		if !local.acceptCandidate(c) {
			t.Errorf("server on loopback: %q refused", c)
		}
	}
	// Names are never resolved, not even on loopback; garbage is refused.
	for _, c := range []string{
		"candidate:1 1 udp 2130706431 localhost 6379 typ host",
		"candidate:1 1 udp 2130706431 2f1c9c1e-1111-4d0e-9c43-7a1e2b7b1d3a.local 50000 typ host",
		"candidate:1 1 udp 2130706431 db.internal.example 5432 typ host",
		"candidate:1 1 udp 2130706431 10.0.0.1 99999 typ host",
		"candidate:1 1 udp",
		"",
		"hello",
	} {
		if remote.acceptCandidate(c) || local.acceptCandidate(c) {
			t.Errorf("%q accepted", c)
		}
	}
	if n := remote.IgnoredCandidates(); n == 0 {
		t.Error("ignored candidates not counted")
	}
}

func TestFilterSDP(t *testing.T) {
	e := &Engine{}
	sdp := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 6379 typ host\r\n" +
		"a=candidate:2 1 udp 2130706431 192.0.2.4 50000 typ host\r\n" +
		"a=candidate:3 1 udp 2130706431 169.254.169.254 80 typ host\r\n" +
		"a=candidate:4 1 udp 2130706431 printer.local 631 typ host\r\n" +
		"a=end-of-candidates\r\na=mid:0\r\n"
	got := e.filterSDP(sdp)
	if strings.Contains(got, "127.0.0.1") || strings.Contains(got, "169.254.169.254") || strings.Contains(got, "printer.local") {
		t.Errorf("local-only candidates kept:\n%s", got)
	}
	want := strings.NewReplacer("a=candidate:1 1 udp 2130706431 127.0.0.1 6379 typ host\r\n", "",
		"a=candidate:3 1 udp 2130706431 169.254.169.254 80 typ host\r\n", "",
		"a=candidate:4 1 udp 2130706431 printer.local 631 typ host\r\n", "").Replace(sdp)
	if got != want {
		t.Errorf("filtered SDP:\n%q\nwant\n%q", got, want)
	}
	if (&Engine{localCandidates: true}).filterSDP(sdp) != strings.Replace(sdp,
		"a=candidate:4 1 udp 2130706431 printer.local 631 typ host\r\n", "", 1) {
		t.Error("a server on loopback dropped more than the name")
	}
}
