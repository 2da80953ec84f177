package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley/parley/internal/testlog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func envFrom(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// flag > env > YAML > default, for single values and lists.
func TestPrecedence(t *testing.T) {
	yml := writeFile(t, "turnd.yaml", `
listen: 127.0.0.1:3478
realm: from-yaml
max-allocations: 5
max-allocations-per-user: 4
bandwidth-limit: 9000
users: ["yaml1:pw1", "yaml2:pw2"]
allow-peers: [10.9.0.0/16]
only-peers: ["198.51.100.7:7882", "[2001:db8::7]:0"]
max-allocations-per-address: 7
`)
	env := map[string]string{
		"TURND_REALM":           "from-env",
		"TURND_MAX_ALLOCATIONS": "6",
		"TURND_USERS":           "env1:pw, env2:pw:with:colons",
	}
	o, err := loadOptions([]string{"--config", yml, "--realm", "from-flag", "--user", "flag1:pw"}, envFrom(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := o.server
	if c.Realm != "from-flag" {
		t.Errorf("realm %q: flag should win", c.Realm)
	}
	if c.MaxAllocations != 6 {
		t.Errorf("max-allocations %d: env should beat YAML", c.MaxAllocations)
	}
	if c.MaxAllocationsPerUser != 4 || c.BandwidthLimit != 9000 {
		t.Errorf("YAML values not used: %d %d", c.MaxAllocationsPerUser, c.BandwidthLimit)
	}
	if c.AllocationLifetime != 10*time.Minute || c.RelayPortMin != 49152 {
		t.Errorf("defaults not used: %s %d", c.AllocationLifetime, c.RelayPortMin)
	}
	if len(c.Users) != 1 || c.Users["flag1"] != "pw" {
		t.Errorf("users %v: the flag list should replace the others", c.Users)
	}
	if len(c.AllowPeers) != 1 || c.AllowPeers[0].String() != "10.9.0.0/16" {
		t.Errorf("allow-peers %v", c.AllowPeers)
	}
	if len(c.OnlyPeers) != 2 || c.OnlyPeers[0].String() != "198.51.100.7:7882" || c.OnlyPeers[1].String() != "[2001:db8::7]:0" {
		t.Errorf("only-peers %v", c.OnlyPeers)
	}
	if c.MaxAllocationsPerAddress != 7 {
		t.Errorf("max-allocations-per-address %d, want 7 from YAML", c.MaxAllocationsPerAddress)
	}

	// Without the flag, the env list wins over YAML.
	o, err = loadOptions([]string{"--config", yml}, envFrom(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.server.Users) != 2 || o.server.Users["env2"] != "pw:with:colons" {
		t.Errorf("users from env: %v", o.server.Users)
	}
	// TURND_CONFIG names the file too.
	o, err = loadOptions(nil, envFrom(map[string]string{"TURND_CONFIG": yml}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.server.Realm != "from-yaml" || len(o.server.Users) != 2 || o.server.Users["yaml2"] != "pw2" {
		t.Errorf("YAML via TURND_CONFIG: %q %v", o.server.Realm, o.server.Users)
	}
}

// The checked-in example configuration is valid.
func TestExampleConfig(t *testing.T) {
	var out bytes.Buffer
	code := run(context.Background(), []string{"--config", "../../configs/turnd.yaml", "--check-config"}, envFrom(nil), &out, io.Discard)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out.String())
	}
	for _, want := range []string{"configuration OK", "203.0.113.10", "parley:***", "auth-secret                ***"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--check-config output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "change-me-please") || strings.Contains(out.String(), "change-this-shared-secret") {
		t.Errorf("--check-config shows a secret:\n%s", out.String())
	}
}

// Bad configuration exits 2 with a message naming the field, what to do
// and where the value came from.
func TestConfigErrors(t *testing.T) {
	badYAML := writeFile(t, "bad.yaml", "listen: 127.0.0.1:3478\nrelay_port: 1000-2000\n")
	badValue := writeFile(t, "badvalue.yaml", "listen: 127.0.0.1:3478\nusers: [a:b]\nallocation-lifetime: forever\n")
	notMap := writeFile(t, "list.yaml", "- a\n- b\n")
	base := []string{"--listen", "127.0.0.1:0", "--user", "a:b"}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"relay ports", append(base, "--relay-ports", "10-5"), nil,
			[]string{"relay-ports:", "MIN-MAX", "from flag --relay-ports"}},
		{"env number", base, map[string]string{"TURND_MAX_ALLOCATIONS": "lots"},
			[]string{"max-allocations:", "whole number", "from env TURND_MAX_ALLOCATIONS"}},
		{"no relay ip", []string{"--listen", "0.0.0.0:3478", "--user", "a:b"}, nil,
			[]string{"relay-ip: not set", "--relay-ip", "TURND_RELAY_IP"}},
		{"no credentials", []string{"--listen", "127.0.0.1:0"}, nil,
			[]string{"no credentials", "--user NAME:PASSWORD", "--auth-secret"}},
		{"bad user", append(base, "--user", "nocolon"), nil,
			[]string{"user:", "NAME:PASSWORD"}},
		{"bad cidr", append(base, "--allow-peer", "10.0.0.0/40"), nil,
			[]string{"allow-peer:", "10.1.0.0/16"}},
		{"bad only-peer", append(base, "--only-peer", "198.51.100.7"), nil,
			[]string{"only-peer:", "IP:PORT"}},
		{"lifetime", append(base, "--allocation-lifetime", "3h"), nil,
			[]string{"allocation-lifetime:", "1s to 1h"}},
		{"tls half", append(base, "--tls-cert", "/x.pem"), nil,
			[]string{"tls-cert", "--tls-key"}},
		{"yaml unknown key", []string{"--config", badYAML}, nil,
			[]string{"bad.yaml:2", `unknown key "relay_port"`, "relay-ports"}},
		{"yaml bad value", []string{"--config", badValue}, nil,
			[]string{"allocation-lifetime:", "not a duration", "badvalue.yaml:3"}},
		{"yaml not a mapping", []string{"--config", notMap}, nil,
			[]string{"must be a mapping"}},
		{"missing file", []string{"--config", "/nonexistent/turnd.yaml"}, nil,
			[]string{"cannot read /nonexistent/turnd.yaml"}},
		{"stray argument", append(base, "extra"), nil,
			[]string{`unexpected argument "extra"`}},
		{"log level", append(base, "--log-level", "loud"), nil,
			[]string{"log-level:", "debug, info, warn or error"}},
		{"metrics addr", append(base, "--metrics-addr", "9641"), nil,
			[]string{"metrics-addr:", "127.0.0.1:9641"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(context.Background(), tc.args, envFrom(tc.env), io.Discard, &stderr)
			if code != exitConfig {
				t.Fatalf("exit %d, want %d\n%s", code, exitConfig, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("message lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
	// A port in use is a start failure (exit 1), named in the log.
	busy, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"--listen", busy.LocalAddr().String(), "--user", "a:b"},
		envFrom(nil), io.Discard, &stderr)
	if code != exitFailure || !strings.Contains(stderr.String(), "listen: cannot listen on UDP") {
		t.Errorf("port in use: exit %d\n%s", code, stderr.String())
	}
}

// logField finds msg in JSON log lines and returns one of its fields.
func logField(logs, msg, field string) string {
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			s, _ := m[field].(string)
			return s
		}
	}
	return ""
}

func waitLog(t *testing.T, logs interface{ String() string }, msg, field string) string {
	t.Helper()
	end := time.Now().Add(20 * time.Second)
	for time.Now().Before(end) {
		if v := logField(logs.String(), msg, field); v != "" {
			return v
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %q log line with %s:\n%s", msg, field, logs.String())
	return ""
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("/metrics: %s", res.Status)
	}
	return string(b)
}

var testArgs = []string{
	"--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0", "--relay-ports", "0",
	"--metrics-addr", "127.0.0.1:0", "--user", "alice:secret-password", "--log-format", "json",
}

// run serves turn and /metrics until its context ends, then returns 0.
func TestRunServesMetricsAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &testlog.Buffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, testArgs, envFrom(nil), io.Discard, logs) }()

	udp := waitLog(t, logs, "turn server listening", "udp")
	metricsAddr := waitLog(t, logs, "metrics listening", "metrics_addr")
	if !strings.HasPrefix(udp, "127.0.0.1:") || !strings.HasPrefix(metricsAddr, "127.0.0.1:") {
		t.Fatalf("listening on %s / %s", udp, metricsAddr)
	}
	body := scrape(t, metricsAddr)
	for _, want := range []string{"turnd_allocations 0", "turnd_relayed_bytes_total", "turnd_auth_failures_total", "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if strings.Contains(logs.String(), "secret-password") {
		t.Error("log shows a password")
	}
	if logField(logs.String(), "turn server stopped", "level") == "" {
		t.Errorf("no stop log line:\n%s", logs.String())
	}
}

// The real binary exits 0 on SIGTERM and on SIGINT.
func TestSignalsExitZero(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "turnd")
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go") //nolint:staticcheck // fallback when go is not on PATH
	}
	build := exec.Command(gobin, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			logs := &testlog.Buffer{}
			cmd := exec.Command(bin, testArgs...)
			cmd.Stderr = logs
			cmd.Env = []string{"PATH=/usr/bin:/bin"}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			waited := false
			defer func() {
				if !waited {
					_ = cmd.Process.Kill()
					<-exited
				}
			}()
			metricsAddr := waitLog(t, logs, "metrics listening", "metrics_addr")
			scrape(t, metricsAddr)
			// SIGHUP reloads (no certificate here: a no-op) and keeps running.
			_ = cmd.Process.Signal(syscall.SIGHUP)
			time.Sleep(100 * time.Millisecond)
			scrape(t, metricsAddr)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				waited = true
				if err != nil {
					t.Fatalf("turnd exited with %v after %s\n%s", err, sig, logs.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("turnd still running 10s after %s", sig)
			}
			if logField(logs.String(), "turnd shutting down", "level") == "" {
				t.Errorf("no shutdown log line:\n%s", logs.String())
			}
		})
	}
}
