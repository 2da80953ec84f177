// Package netnstest runs a test in a network namespace of its own, so that
// it can use addresses that exist nowhere else: the test binary runs the test
// again under `unshare --net` (with a user namespace too when not root),
// where only `lo` exists; Run brings it up and adds a veth pair whose one end
// holds the test's address, and the namespace ends with that process.
// Nothing is left to clean up, no name can clash with another run's, and no
// traffic leaves the namespace.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// childEnv marks the re-run process and names the test it runs.
const childEnv = "PARLEY_NETNS_TEST"

// Inside reports whether this process is the re-run of test t in its namespace.
func Inside(t *testing.T) bool { return os.Getenv(childEnv) == t.Name() }

// Run runs body in a new network namespace with lo (127.0.0.1) and an
// interface (not a loopback one) holding cidr, e.g. "10.99.0.1/24". t must be
// a top-level test. Outside, Run re-runs t in the namespace and reports its
// outcome; inside, it sets up the interfaces and calls body.
func Run(t *testing.T, cidr string, body func(t *testing.T)) {
	t.Helper()
	if Inside(t) {
		setup(t, cidr)
		body(t)
		return
	}
	if strings.Contains(t.Name(), "/") {
		t.Fatal("netnstest.Run needs a top-level test")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("the ip command (iproute2) is needed: apt-get install iproute2 (scripts/test.sh does)")
	}
	args := []string{"--net"}
	if os.Geteuid() != 0 {
		args = append([]string{"--user", "--map-root-user"}, args...)
	}
	args = append(args, "--", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v", "-test.timeout=5m")
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the test in its network namespace failed (%v):\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("the test did not run in its network namespace:\n%s", out)
	}
	if testing.Verbose() {
		t.Logf("in its network namespace:\n%s", out)
	}
}

func setup(t *testing.T, cidr string) {
	t.Helper()
	run := func(args ...string) {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	// Only lo exists in a new namespace; make sure it is the only one.
	out, err := exec.Command("ip", "-o", "link").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v: %s", err, out)
	}
	if n := strings.Count(strings.TrimSpace(string(out)), "\n") + 1; n != 1 || !strings.Contains(string(out), " lo:") {
		t.Fatalf("not in a fresh network namespace: %s", out)
	}
	run("link", "set", "lo", "up")
	run("link", "add", "v0", "type", "veth", "peer", "name", "v1")
	run("addr", "add", cidr, "dev", "v0")
	run("link", "set", "v0", "up")
	run("link", "set", "v1", "up")
	fmt.Fprintf(os.Stderr, "netnstest: lo up, %s on v0\n", cidr)
}
