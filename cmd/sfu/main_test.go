package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley/parley/internal/testlog"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sfu.yaml")
	if err := os.WriteFile(file, []byte("addr: 0.0.0.0:9000\nudp_port: 9002\nroom_idle_timeout: 90s\nlimits:\n  max_streams: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig([]string{"--config", file, "--addr", "127.0.0.1:9100"},
		env(map[string]string{"PARLEY_UDP_PORT": "9102", "PARLEY_ADDR": "127.0.0.1:9200"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:9100" {
		t.Errorf("addr %s: the flag must win over env and file", cfg.Addr)
	}
	if cfg.UDPPort != 9102 {
		t.Errorf("udp port %d: env must win over the file", cfg.UDPPort)
	}
	if time.Duration(cfg.RoomIdleTimeout) != 90*time.Second || cfg.Limits.MaxStreams != 5 {
		t.Errorf("file values not applied: %+v", cfg)
	}
	if cfg.TCPPort != 7881 || cfg.Limits.MaxParticipants != 50 {
		t.Errorf("defaults lost: %+v", cfg)
	}

	def, err := loadConfig(nil, env(nil), &bytes.Buffer{})
	if err != nil || def.Addr != "127.0.0.1:7880" || def.UDPPort != 7882 || def.TCPPort != 7881 ||
		time.Duration(def.RoomIdleTimeout) != 60*time.Second {
		t.Errorf("embedded defaults: %+v, %v", def, err)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := loadConfig([]string{"--config", "../../configs/sfu.yaml"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, defaultConfig()) {
		t.Errorf("configs/sfu.yaml should show the defaults; it differs: %+v", cfg)
	}
}

func TestBadConfigSaysWhat(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo.yaml")
	_ = os.WriteFile(typo, []byte("adr: 1.2.3.4:5\n"), 0o644)
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--udp-port", "abc"}, nil, "udp-port"},
		{nil, map[string]string{"PARLEY_ROOM_IDLE_TIMEOUT": "soon"}, "PARLEY_ROOM_IDLE_TIMEOUT"},
		{[]string{"--config", typo}, nil, "adr"},
		{[]string{"--tls-cert", "c.pem"}, nil, "tls_key"},
		{[]string{"--public-ip", "not-an-ip"}, nil, "public_ip"},
		{[]string{"--max-frame-bytes", "100"}, nil, "max_frame_bytes"},
		{[]string{"stray"}, nil, "stray"},
	} {
		_, err := loadConfig(tc.args, env(tc.env), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want one naming %q", tc.args, tc.env, err, tc.want)
		}
	}
}

// The real binary with no config serves, and on SIGTERM tells its sessions,
// closes the rooms and exits 0.
// buildSFU builds the sfu binary once per test.
func buildSFU(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sfu")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// startSFU runs the binary on loopback with free ports plus args, and returns
// it with its base URL (read from its log). It is killed when the test ends.
func startSFU(t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd, base, _ := startSFULog(t, bin, args...)
	return cmd, base
}

// startSFULog is startSFU that also returns the log lines written before the
// server said where it serves.
func startSFULog(t *testing.T, bin string, args ...string) (*exec.Cmd, string, []string) {
	t.Helper()
	return startSFUEnv(t, bin, nil, args...)
}

// startSFUEnv is startSFULog with environment variables added to the binary's.
func startSFUEnv(t *testing.T, bin string, env []string, args ...string) (*exec.Cmd, string, []string) {
	t.Helper()
	return startSFUImpl(t, bin, env, nil, args...)
}

// startSFUWatch is startSFUEnv that also returns the log written after the
// server said where it serves.
func startSFUWatch(t *testing.T, bin string, env []string, args ...string) (*exec.Cmd, string, *testlog.Buffer) {
	t.Helper()
	var later testlog.Buffer
	cmd, base, _ := startSFUImpl(t, bin, env, &later, args...)
	return cmd, base, &later
}

func startSFUImpl(t *testing.T, bin string, env []string, later *testlog.Buffer, args ...string) (*exec.Cmd, string, []string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--addr", "127.0.0.1:0", "--udp-port", "0", "--tcp-port", "0",
		"--media-ip", "127.0.0.1"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil { // not waited for yet
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	lines := bufio.NewScanner(stderr)
	urlRe := regexp.MustCompile(`url=(http://[0-9.:\[\]]+)/`)
	var base string
	var before []string
	// A server that never says where it serves is killed, so the scan ends.
	hung := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	for lines.Scan() {
		if m := urlRe.FindStringSubmatch(lines.Text()); m != nil {
			base = m[1]
			break
		}
		before = append(before, lines.Text())
	}
	hung.Stop()
	if base == "" {
		t.Fatalf("the server never said where it serves; its log:\n%s", strings.Join(before, "\n"))
	}
	go func() {
		for lines.Scan() {
			if later != nil {
				fmt.Fprintln(later, lines.Text())
			}
			if testing.Verbose() {
				t.Log(lines.Text())
			}
		}
	}()
	return cmd, base, before
}

func TestSIGTERMEndsSessionsAndExitsZero(t *testing.T) {
	cmd, base := startSFU(t, buildSFU(t))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", client.Options{Username: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Join(ctx, client.JoinOptions{Room: "r", Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	failed, err := c.WaitEvent(ctx, func(e protocol.Event) bool { return e.Event == protocol.EventFailed })
	if err != nil || !strings.Contains(failed.Reason, "shutting down") {
		t.Errorf("room FAILED event: %+v, %v", failed, err)
	}
	if _, err := c.WaitEvent(ctx, func(e protocol.Event) bool { return e.Event == protocol.SessionDisconnected }); err != nil {
		t.Errorf("no DISCONNECTED: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-ctx.Done():
		t.Fatal("the server did not exit after SIGTERM")
	}
}

// The profiler is served only when asked, and only on its own address.
func TestProfilerOnlyOnDebugAddr(t *testing.T) {
	bin := buildSFU(t)
	_, base, logs := startSFULog(t, bin, "--debug-addr", "127.0.0.1:0")
	var debug string
	pprofRe := regexp.MustCompile(`pprof=http://([0-9.:]+)/debug/pprof/`)
	for _, l := range logs {
		if m := pprofRe.FindStringSubmatch(l); m != nil {
			debug = m[1]
		}
	}
	if debug == "" {
		t.Fatalf("the server did not log its profiler's address; log:\n%s", strings.Join(logs, "\n"))
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + debug + "/debug/pprof/heap?debug=1"); code != 200 || !strings.Contains(body, "heap profile") {
		t.Errorf("profiler heap: %d %.80q", code, body)
	}
	if code, _ := get(base + "/debug/pprof/heap?debug=1"); code == 200 {
		t.Error("the public address serves the profiler")
	}
	_, base = startSFU(t, bin)
	if code, _ := get(base + "/debug/pprof/"); code == 200 {
		t.Error("the profiler is served without --debug-addr")
	}
}

func TestEmbeddedTURNSettings(t *testing.T) {
	cfg, err := loadConfig([]string{"--turn", "--public-ip", "203.0.113.7", "--turn-allow-peer", "10.0.0.0/8"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := serverConfig(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sc.EmbedTURN == nil || sc.EmbedTURN.RelayIP.String() != "203.0.113.7" || sc.EmbedTURN.Listen != "0.0.0.0:3478" ||
		len(sc.EmbedTURN.AllowPeers) != 1 {
		t.Errorf("embedded TURN config: %+v", sc.EmbedTURN)
	}
	cfg, _ = loadConfig([]string{"--turn"}, env(nil), &bytes.Buffer{})
	if _, err := serverConfig(cfg, nil); err == nil || !strings.Contains(err.Error(), "--public-ip") {
		t.Errorf("--turn without a relay address: %v, want an error that says to set --public-ip", err)
	}
	if _, err := loadConfig([]string{"--turn-url", "turn:x:3478"}, env(nil), &bytes.Buffer{}); err == nil ||
		!strings.Contains(err.Error(), "secret") {
		t.Errorf("TURN URLs without a secret: %v, want an error naming the secret", err)
	}
}

// The edge settings reach the server's configuration, and bad ones say what is wrong.
func TestEdgeSettings(t *testing.T) {
	cfg, err := loadConfig([]string{"--metrics-addr", "127.0.0.1:9640", "--allowed-origins", "https://meet.example.com, *",
		"--trusted-proxies", "127.0.0.1,10.0.0.0/8", "--max-sessions-per-address", "7", "--new-sessions-per-address", "0.5",
		"--new-rooms-per-address", "0", "--turn", "--public-ip", "203.0.113.7", "--turn-peers", "public",
		"--turn-max-allocations-per-address", "9", "--turn-ttl", "2h"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := serverConfig(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sc.MetricsAddr != "127.0.0.1:9640" || !reflect.DeepEqual(sc.Signaling.AllowedOrigins, []string{"https://meet.example.com", "*"}) ||
		len(sc.Signaling.TrustedProxies) != 2 || sc.Signaling.TrustedProxies[0].String() != "127.0.0.1/32" {
		t.Errorf("edge settings: metrics %q, origins %v, proxies %v", sc.MetricsAddr, sc.Signaling.AllowedOrigins, sc.Signaling.TrustedProxies)
	}
	if l := sc.Signaling.AddressLimits; l.MaxSessions != 7 || l.SessionsPerSecond != 0.5 || l.RoomsPerMinute != 0 {
		t.Errorf("address limits %+v", l)
	}
	if sc.EmbedTURNPeers != "public" || sc.EmbedTURN.MaxAllocationsPerAddress != 9 || sc.EmbedTURN.MaxAllocationsPerUser != 20 ||
		sc.TURN.TTL != 2*time.Hour {
		t.Errorf("TURN: peers %q, per address %d, per user %d, ttl %s", sc.EmbedTURNPeers, sc.EmbedTURN.MaxAllocationsPerAddress,
			sc.EmbedTURN.MaxAllocationsPerUser, sc.TURN.TTL)
	}
	def, _ := loadConfig(nil, env(nil), &bytes.Buffer{})
	dsc, _ := serverConfig(def, nil)
	if l := dsc.Signaling.AddressLimits; l.MaxSessions != 100 || l.SessionsPerSecond != 10 || l.RoomsPerMinute != 30 {
		t.Errorf("default address limits %+v", l)
	}
	if dsc.TURN.TTL != time.Hour {
		t.Errorf("default TURN TTL %s, want 1h", dsc.TURN.TTL)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--allowed-origins", "meet.example.com"}, "allowed_origins"},
		{[]string{"--allowed-origins", "https://meet.example.com/room"}, "allowed_origins"},
		{[]string{"--trusted-proxies", "proxy.local"}, "trusted_proxies"},
		{[]string{"--metrics-addr", "9640"}, "metrics_addr"},
		{[]string{"--turn-ttl", "48h"}, "turn.ttl"},
		{[]string{"--turn-peers", "everyone"}, "turn.peers"},
		{[]string{"--new-sessions-per-address", "-1"}, "new-sessions-per-address"},
	} {
		if _, err := loadConfig(tc.args, env(nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %q", tc.args, err, tc.want)
		}
	}
}
