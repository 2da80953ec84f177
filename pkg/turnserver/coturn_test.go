package turnserver

import (
	"context"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests drive turnd with coturn's own test client, turnutils_uclient
// (Debian package coturn, installed by the README's test command). Without it
// they fail and say what to install.

func uclientPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("turnutils_uclient")
	if err != nil {
		t.Fatal("turnutils_uclient not found: apt-get install coturn (the README's test command does)")
	}
	return p
}

var (
	reSent = regexp.MustCompile(`tot_send_msgs=(\d+)`)
	reRecv = regexp.MustCompile(`tot_recv_msgs=(\d+)`)
)

// uclient runs turnutils_uclient in client-to-client mode (-y: each client
// relays to another client's relayed address, so no turnutils_peer on a
// fixed port is needed) and returns its output and the message counts.
func uclient(t *testing.T, srv *Server, port int, args ...string) (out string, sent, recv int, err error) {
	t.Helper()
	bin := uclientPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{
		"-y",       // client-to-client
		"-c",       // no RTCP allocations
		"-X",       // IPv4 relay address
		"-n", "20", // messages
		"-m", "2", // clients
		"-l", "200", // message length
		"-z", "5", // ms between messages
		"-p", strconv.Itoa(port),
	}, args...)
	full = append(full, "127.0.0.1")
	cmd := exec.CommandContext(ctx, bin, full...)
	b, err := cmd.CombinedOutput()
	out = string(b)
	if m := reSent.FindAllStringSubmatch(out, -1); len(m) > 0 {
		sent, _ = strconv.Atoi(m[len(m)-1][1])
	}
	if m := reRecv.FindAllStringSubmatch(out, -1); len(m) > 0 {
		recv, _ = strconv.Atoi(m[len(m)-1][1])
	}
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return out, sent, recv, err
}

func serverPort(srv *Server) int {
	return srv.Addr().(*net.UDPAddr).Port
}

func TestCoturnClientRelays(t *testing.T) {
	uclientPath(t)
	certFile, keyFile, _ := selfSignedCert(t)
	cfg := testConfig()
	allowLoopback(&cfg) // the clients' relayed addresses are on 127.0.0.1
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	srv, logs := startServer(t, cfg)
	port := serverPort(srv)
	tlsPort := srv.TLSAddr().(*net.TCPAddr).Port

	restUser, restPass := RESTCredentials(testSecret, "erin", time.Hour, time.Now())
	cases := []struct {
		name string
		port int
		args []string
	}{
		{"static udp", port, []string{"-u", "alice", "-w", testUsers["alice"]}},
		{"static tcp", port, []string{"-t", "-u", "bob", "-w", testUsers["bob"]}},
		{"static tls", tlsPort, []string{"-t", "-S", "-u", "carol", "-w", testUsers["carol"]}},
		{"rest secret", port, []string{"-u", "frank", "-W", testSecret}},
		{"rest computed", port, []string{"-u", restUser, "-w", restPass}},
	}
	// The cases run in parallel (uclient spends seconds waiting); the relayed
	// byte count is checked once all are done.
	t.Run("group", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				out, sent, recv, err := uclient(t, srv, tc.port, tc.args...)
				if err != nil || sent == 0 || recv < sent*9/10 {
					t.Fatalf("uclient: err=%v sent=%d recv=%d\n%s", err, sent, recv, out)
				}
				t.Logf("sent %d, received %d", sent, recv)
			})
		}
	})
	// 5 runs x 2 clients x 20 messages x 200 bytes, each way.
	for _, dir := range []string{"client_to_peer", "peer_to_client"} {
		if v := metricValue(t, srv, "turnd_relayed_bytes_total", `direction="`+dir+`"`); v < 0.9*5*2*20*200 {
			t.Errorf("relayed bytes %s = %v, want about %d", dir, v, 5*2*20*200)
		}
	}
	// REST users are counted by their user part.
	if out := logs.String(); !strings.Contains(out, "user=frank") || !strings.Contains(out, "user=erin") {
		t.Errorf("REST allocations not logged by user:\n%s", out)
	}
}

func TestCoturnClientRefused(t *testing.T) {
	uclientPath(t)
	cfg := testConfig()
	allowLoopback(&cfg)
	srv, _ := startServer(t, cfg)
	port := serverPort(srv)

	expUser, expPass := RESTCredentials(testSecret, "erin", -time.Minute, time.Now())
	cases := []struct {
		name, reason string
		args         []string
	}{
		{"wrong password", "bad_password", []string{"-u", "alice", "-w", "not-the-password"}},
		{"expired rest", "expired", []string{"-u", expUser, "-w", expPass}},
		{"rest wrong secret", "bad_password", []string{"-u", "frank", "-W", "not-the-secret"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := metricValue(t, srv, "turnd_auth_failures_total", `reason="`+tc.reason+`"`)
			out, _, recv, _ := uclient(t, srv, port, tc.args...)
			if recv != 0 {
				t.Fatalf("refused credentials relayed %d messages\n%s", recv, out)
			}
			if srv.AllocationCount() != 0 {
				t.Fatalf("allocation made with refused credentials\n%s", out)
			}
			after := metricValue(t, srv, "turnd_auth_failures_total", `reason="`+tc.reason+`"`)
			if after <= before {
				t.Fatalf("auth failures{%s} did not grow\n%s", tc.reason, out)
			}
			if !strings.Contains(out, "Cannot complete Allocation") {
				t.Errorf("uclient did not report the refused allocation:\n%s", out)
			}
		})
	}
	if v := metricValue(t, srv, "turnd_allocations_total", ""); v != 0 {
		t.Errorf("turnd_allocations_total = %v, want 0", v)
	}
}
