package server_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/testmedia"
)

// Shaped links for Pion clients (docs/shaped-links.md): the test runs
// itself again inside a network namespace of its own, whose lo has an htb
// class for one address, 127.0.0.5, with a byte-limited queue in front of
// it; a client whose candidates are on that address has that downlink,
// everyone else (on 127.0.0.1) is unshaped. The namespace exists only for
// the test and is removed after it, failed or not.

// shapedEnv names the namespace to a test run inside it.
const shapedEnv = "PARLEY_SHAPED_NETNS"

// shapedAddr is the shaped client's address.
const shapedAddr = "127.0.0.5"

// inShapedNetns runs the calling test inside a fresh namespace (and
// returns false: the caller returns), or, inside it, returns true.
func inShapedNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(shapedEnv) != "" {
		return true
	}
	ns := fmt.Sprintf("parley-shape-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s\n(shaped-link tests need root, iproute2 and tc with htb: docs/shaped-links.md)", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run("ip", "-n", ns, "link", "set", "lo", "up")
	run("ip", "-n", ns, "addr", "add", shapedAddr+"/32", "dev", "lo")
	run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10")
	run("ip", "netns", "exec", ns, "tc", "class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit")
	run("ip", "netns", "exec", ns, "tc", "class", "add", "dev", "lo", "parent", "1:", "classid", "1:20", "htb", "rate", "10gbit")
	run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "parent", "1:20", "handle", "20:", "bfifo", "limit", "100000")
	run("ip", "netns", "exec", ns, "tc", "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
		"match", "ip", "dst", shapedAddr+"/32", "flowid", "1:20")
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1",
		"-test.timeout=5m")
	cmd.Env = append(os.Environ(), shapedEnv+"="+ns)
	out, err := cmd.CombinedOutput()
	t.Logf("inside namespace %s:\n%s", ns, out)
	if err != nil {
		// Where packets were lost inside the namespace: the qdiscs' drops
		// and the UDP sockets' buffer overflows.
		qd, _ := exec.Command("ip", "netns", "exec", ns, "tc", "-s", "qdisc", "show", "dev", "lo").CombinedOutput()
		snmp, _ := exec.Command("ip", "netns", "exec", ns, "grep", "^Udp:", "/proc/net/snmp").CombinedOutput()
		t.Logf("namespace %s after the failure:\n%s\n%s", ns, qd, snmp)
		t.Fatalf("the test failed inside its namespace: %v", err)
	}
	return false
}

// shapeTo sets the shaped address's downlink to bps, with a queue of
// about 400 ms at that rate (at least 3 packets), as a home router's.
func shapeTo(t *testing.T, bps int) {
	t.Helper()
	rate := fmt.Sprintf("%dbit", bps)
	limit := max(bps/8*4/10, 4500)
	for _, args := range [][]string{
		{"tc", "class", "change", "dev", "lo", "parent", "1:", "classid", "1:20", "htb", "rate", rate, "ceil", rate},
		{"tc", "qdisc", "change", "dev", "lo", "parent", "1:20", "handle", "20:", "bfifo", "limit", fmt.Sprint(limit)},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Logf("%s: downlink %d kbit/s, queue %d bytes", time.Now().Format("15:04:05.000"), bps/1000, limit)
}

// loss is the share of a track's own sequence numbers, from the lowest to
// the highest received in [from, to), that did not arrive (the SFU's
// numbering has no gap but loss); n is how many did.
func loss(tr *client.RemoteTrack, from, to time.Time) (lost float64, n int) {
	seen := map[int64]bool{}
	var newest, lo, hi int64
	var newestSeq uint16
	have := false
	for _, p := range tr.ReceivedPackets() {
		e := int64(p.Seq)
		if have {
			e = newest + int64(int16(p.Seq-newestSeq))
		}
		if !have || e > newest {
			newest, newestSeq, have = e, p.Seq, true
		}
		if p.ReceivedAt.Before(from) || !p.ReceivedAt.Before(to) {
			continue
		}
		if len(seen) == 0 {
			lo, hi = e, e
		}
		lo, hi = min(lo, e), max(hi, e)
		seen[e] = true
	}
	if len(seen) == 0 {
		return 1, 0
	}
	return 1 - float64(len(seen))/float64(hi-lo+1), len(seen)
}

// TestShapedSubscriber (issue 13, item 1): a publisher sends three
// simulcast layers and audio to three subscribers, one of them on a
// 500 kbit/s downlink. Within 10 s that one receives the lowest layer, with
// under 2 % video and 1 % audio loss; the other two receive the top layer
// throughout, and the weak one never makes the top layer send a keyframe.
// When its link lifts to 5 Mbit/s it is back on the top layer within 15 s;
// at 60 kbit/s its video pauses with a reason and its audio keeps coming.
func TestShapedSubscriber(t *testing.T) {
	if !inShapedNetns(t) {
		return
	}
	srv := testServer(t, nil)
	weakIP := net.ParseIP(shapedAddr)
	// Only the weak subscriber may use the shaped address: each client
	// gathers a host candidate for every address of lo, and a good one
	// whose ICE chose 127.0.0.5 shared the weak one's 500 kbit/s (the test
	// failed one run in a few, both of them losing video).
	unshaped := client.ICEOptions{IPFilter: func(ip net.IP) bool { return !ip.Equal(weakIP) }}
	a := dial(t, srv, client.Options{Username: "a", ICE: unshaped})
	join(t, a, "shaped", "a")
	speech, err := testmedia.OpusOgg(media(t), testmedia.Options{Bitrate: 32_000})
	if err != nil {
		t.Fatal(err)
	}
	audio, err := client.NewOpusSource(speech, true)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := a.Publish(ctxT(t, 60*time.Second), client.PublishOptions{Simulcast: simulcastSources(t), Audio: audio})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatal(err)
	}
	shapeTo(t, 500_000)
	weak := dial(t, srv, client.Options{Username: "weak", ICE: client.ICEOptions{IPFilter: func(ip net.IP) bool { return ip.Equal(weakIP) }}})
	join(t, weak, "shaped", "weak")
	var good []*client.Client
	for i := range 2 {
		c := dial(t, srv, client.Options{Username: fmt.Sprint("good", i), ICE: unshaped})
		join(t, c, "shaped", fmt.Sprint("good", i))
		good = append(good, c)
	}
	tracks := func(c *client.Client) (v, au *client.RemoteTrack) {
		ts, err := c.WaitRemoteTracks(ctxT(t, 15*time.Second), 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range ts {
			if tr.Kind() == "video" {
				v = tr
			} else {
				au = tr
			}
		}
		return v, au
	}
	weakV, weakA := tracks(weak)
	goodV := []*client.RemoteTrack{}
	for _, c := range good {
		v, _ := tracks(c)
		goodV = append(goodV, v)
	}
	joined := time.Now()

	// Within 10 s the weak one is on the lowest layer, and stays there.
	// (Every subscriber starts on the lowest layer and goes up as far as
	// its estimate allows: the good ones' first top-layer keyframe comes
	// with their join.)
	waitLayer(t, "weak at 500 kbit/s", pub, weakV, "q", 10*time.Second, nil)
	time.Sleep(time.Until(joined.Add(10 * time.Second)))
	settled := time.Now()
	if got, n := layerOf(pub, weakV, settled.Add(-time.Second)); got != "q" {
		t.Fatalf("10 s after joining the weak subscriber receives layer %q (%d packets), want q", got, n)
	}
	fReq, fKeys := pub.LayerKeyframeRequests("f"), pub.KeyframesSent("f")
	time.Sleep(10 * time.Second)
	end := time.Now()
	vLoss, vn := loss(weakV, settled, end)
	aLoss, an := loss(weakA, settled, end)
	t.Logf("weak over 10 s: video %d packets, %.2f%% lost; audio %d packets, %.2f%% lost", vn, 100*vLoss, an, 100*aLoss)
	if got, _ := layerOf(pub, weakV, settled); got != "q" {
		t.Errorf("the weak subscriber received layer %q, want q", got)
	}
	if vLoss >= 0.02 || aLoss >= 0.01 || vn < 100 || an < 400 {
		t.Errorf("weak subscriber: video loss %.2f%% (%d packets), audio loss %.2f%% (%d packets); want under 2 %% and 1 %%",
			100*vLoss, vn, 100*aLoss, an)
	}
	for i, v := range goodV {
		if got, n := layerOf(pub, v, joined.Add(5*time.Second)); got != "f" {
			t.Errorf("good subscriber %d received layer %q (%d packets), want f throughout", i, got, n)
		}
		if l, _ := loss(v, settled, end); l > 0.005 {
			t.Errorf("good subscriber %d lost %.2f%% of its video", i, 100*l)
		}
	}
	if n := pub.LayerKeyframeRequests("f") - fReq; n != 0 {
		t.Errorf("the top layer got %d keyframe requests while the weak subscriber was on its link", n)
	}
	t.Logf("top layer: %d keyframes sent in those 10 s (the file has one a second)", pub.KeyframesSent("f")-fKeys)
	if n := pub.KeyframesSent("f") - fKeys; n > 11 {
		t.Errorf("the top layer sent %d keyframes in 10 s: more than its own one a second", n)
	}

	// The link lifts: back to the top layer within 15 s.
	shapeTo(t, 5_000_000)
	d := waitLayer(t, "weak lifted to 5 Mbit/s", pub, weakV, "f", 15*time.Second, nil)
	t.Logf("weak subscriber back on the top layer %v after its link lifted", d.Round(10*time.Millisecond))

	// 60 kbit/s: the video pauses with a reason; audio goes on.
	shapeTo(t, 60_000)
	start := time.Now()
	for {
		if paused, _ := weak.VideoPaused(pub.ID()); paused {
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatal("the weak subscriber's video did not pause at 60 kbit/s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, reason := weak.VideoPaused(pub.ID())
	t.Logf("at 60 kbit/s the video paused after %v: %q", time.Since(start).Round(10*time.Millisecond), reason)
	if reason == "" {
		t.Error("paused without a reason")
	}
	before := weakA.Packets()
	time.Sleep(5 * time.Second)
	got := weakA.Packets() - before
	t.Logf("audio at 60 kbit/s: %d packets in 5 s", got)
	if got < 150 {
		t.Errorf("audio at 60 kbit/s: %d packets in 5 s, want it flowing (250 sent)", got)
	}
}
