package server_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley/parley/internal/netnstest"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/sfu"
)

// mediaIP is the server's media address in the test's network namespace: not
// a loopback address, and nowhere but there.
const mediaIP = "10.99.0.1"

// stunTrap is a UDP socket on 127.0.0.1 named in a candidate; it counts the
// STUN requests (ICE checks) that reach it.
type stunTrap struct {
	conn  net.PacketConn
	port  int
	hits  atomic.Int64
	ended chan struct{}
}

func newTrap(t *testing.T) *stunTrap {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &stunTrap{conn: conn, port: conn.LocalAddr().(*net.UDPAddr).Port, ended: make(chan struct{})}
	go func() {
		defer close(tr.ended)
		buf := make([]byte, 1500)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 20 && binary.BigEndian.Uint32(buf[4:8]) == 0x2112A442 { // STUN magic cookie
				tr.hits.Add(1)
			}
		}
	}()
	t.Cleanup(func() { _ = conn.Close(); <-tr.ended })
	return tr
}

// candidate is a host candidate for the trap.
func (tr *stunTrap) candidate() string {
	return fmt.Sprintf("candidate:9 1 udp 2130706431 127.0.0.1 %d typ host", tr.port)
}

// withCandidate adds a candidate line after the first a=mid of an SDP (the
// bundled transport).
func withCandidate(sdp, cand string) string {
	i := strings.Index(sdp, "a=mid:")
	if i < 0 {
		return sdp
	}
	j := strings.Index(sdp[i:], "\r\n")
	if j < 0 {
		return sdp
	}
	at := i + j + 2
	return sdp[:at] + "a=" + cand + "\r\n" + sdp[at:]
}

// candidateRun is one run of the scenario: a publisher and a subscriber on
// mediaIP, each naming 127.0.0.1 traps besides their real candidates: in the
// publish offer, in the subscribe answer and trickled on the subscribe
// connection before the answer.
type candidateRun struct {
	offer, answer, trickled *stunTrap
	received                int64
	ignored                 float64
}

func runCandidates(t *testing.T, tweak func(*server.Config)) candidateRun {
	t.Helper()
	srv := testServer(t, func(c *server.Config) {
		c.Media = sfu.Config{ListenIP: mediaIP, UDPPort: 0, TCPPort: 0}
		if tweak != nil {
			tweak(c)
		}
	})
	run := candidateRun{offer: newTrap(t), answer: newTrap(t), trickled: newTrap(t)}
	ice := client.ICEOptions{ExcludeLoopback: true} // the clients' real candidates: mediaIP's interface only

	a := dial(t, srv, client.Options{Username: "a", ICE: ice,
		RewriteLocalSDP: func(sdp string) string { return withCandidate(sdp, run.offer.candidate()) }})
	join(t, a, "traps", "a")
	pub := publishCamera(t, a)

	var b *client.Client
	var bReady atomic.Bool
	trickle := func(frame []byte) {
		var m struct{ Type string }
		if json.Unmarshal(frame, &m) != nil || m.Type != protocol.TypeOffer || !bReady.Load() {
			return
		}
		// Sent before the client handles the offer: it reaches the server
		// before the answer, as a browser's early candidates do.
		mid, idx := "0", uint16(0)
		_ = b.Send(&protocol.Candidate{Type: protocol.TypeCandidate, Target: protocol.TargetSubscribe,
			Candidate: &protocol.ICECandidate{Candidate: run.trickled.candidate(), SDPMid: &mid, SDPMLineIndex: &idx}})
	}
	b = dial(t, srv, client.Options{Username: "b", ICE: ice, OnFrame: trickle,
		RewriteLocalSDP: func(sdp string) string { return withCandidate(sdp, run.answer.candidate()) }})
	bReady.Store(true)
	join(t, b, "traps", "b")
	tracks, err := b.WaitRemoteTracks(ctxT(t, 15*time.Second), 2)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "media from a to b", func() bool { return tracks[0].Packets() > 20 && tracks[1].Packets() > 20 })
	time.Sleep(2 * time.Second) // ICE keeps checking pairs a while after the first one works
	for _, tr := range tracks {
		run.received += tr.Packets()
	}
	if status := pub.Status(); status != protocol.StreamPublishing {
		t.Errorf("publisher status %s", status)
	}
	run.ignored = scrape(t, srv.URL(), "parley_ignored_candidates_total")
	return run
}

// A server whose media listens on an address that is not loopback ignores
// the loopback candidates a client names, in the SDP of its offers and
// answers and trickled, and sends them no ICE check, while the same clients
// connect through their real candidates. The control: told to try local
// candidates, the same server checks every one of the traps.
func TestLoopbackCandidateIgnoredOnNonLoopbackServer(t *testing.T) {
	netnstest.Run(t, mediaIP+"/24", func(t *testing.T) {
		control := runCandidates(t, func(c *server.Config) { c.Media.LocalCandidates = true })
		for name, tr := range map[string]*stunTrap{"publish offer": control.offer, "subscribe answer": control.answer,
			"trickled": control.trickled} {
			if tr.hits.Load() == 0 {
				t.Errorf("control: the server sent no ICE check to the loopback candidate of the %s: the test cannot see a leak", name)
			}
		}

		run := runCandidates(t, nil)
		for name, tr := range map[string]*stunTrap{"publish offer": run.offer, "subscribe answer": run.answer,
			"trickled": run.trickled} {
			if n := tr.hits.Load(); n != 0 {
				t.Errorf("the server sent %d ICE checks to the loopback candidate of the %s", n, name)
			}
		}
		if run.received == 0 {
			t.Error("no media through the valid candidates")
		}
		if run.ignored < 3 {
			t.Errorf("parley_ignored_candidates_total = %v, want the three named", run.ignored)
		}
		t.Logf("control: %d, %d, %d checks to the traps; filtered: %d packets received, %v candidates ignored",
			control.offer.hits.Load(), control.answer.hits.Load(), control.trickled.hits.Load(), run.received, run.ignored)
	})
}
