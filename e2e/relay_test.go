package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/turnserver"
	dto "github.com/prometheus/client_model/go"
)

// selectedRelay reports, for each connected peer connection of the page,
// whether its selected candidate pair uses a relayed local candidate.
const selectedRelay = `(async () => {
  const out = [];
  for (const pc of (window.__pcs || [])) {
    if (pc.connectionState !== 'connected') continue;
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach(s => { if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId); });
    if (!pair) stats.forEach(s => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
    const local = pair && stats.get(pair.localCandidateId);
    out.push(local ? local.candidateType : 'none');
  }
  return out;
})()`

// TestRelayThroughTurnd: two pages with ?relay=1 (iceTransportPolicy relay)
// join a room and decode each other's video through the embedded turnd,
// whose metrics then show the relayed bytes. The pages' TURN credentials come
// with their join's reply (the session message has none), named after each
// participant, and the relay reaches the SFU under its default policy (only
// the SFU's media addresses, loopback here).
func TestRelayThroughTurnd(t *testing.T) {
	srv := startServer(t, func(c *server.Config) {
		tc := turnserver.DefaultConfig()
		tc.Listen = "127.0.0.1:0"
		tc.TLSListen = ""
		tc.RelayIP = netip.MustParseAddr("127.0.0.1")
		tc.RelayPortMin, tc.RelayPortMax = 0, 0
		c.EmbedTURN = &tc
	})
	room := fmt.Sprintf("relay%d", time.Now().UnixNano()%100000)
	a := openPage(t, "r1", fmt.Sprintf("%s/?room=%s&name=r1&relay=1", srv.URL(), room))
	b := openPage(t, "r2", fmt.Sprintf("%s/?room=%s&name=r2&relay=1", srv.URL(), room))
	a.waitDecoding("r2", "camera", true)
	b.waitDecoding("r1", "camera", true)

	for _, p := range []*page{a, b} {
		var users []string
		if err := p.eval(`window.parley.connection.iceServers().map(s => s.username)`, &users); err != nil {
			t.Fatal(err)
		}
		if len(users) != 1 || !strings.HasSuffix(users[0], ":"+room+"/"+p.name) {
			t.Errorf("%s: TURN user names %q, want one EXPIRY:%s/%s from the join", p.name, users, room, p.name)
		}
		var types []string
		if err := p.eval(selectedRelay, &types); err != nil {
			t.Fatal(err)
		}
		if len(types) < 2 {
			t.Errorf("%s: %d connected peer connections, want publish and subscribe", p.name, len(types))
		}
		for _, ty := range types {
			if ty != "relay" {
				t.Errorf("%s: a connection uses a %q candidate, want relay only", p.name, ty)
			}
		}
	}

	relayed := relayedBytes(t, srv.TURN())
	if relayed < 200_000 {
		t.Errorf("turnd relayed %.0f bytes, want the media of two pages (hundreds of kB)", relayed)
	}
	t.Logf("turnd relayed %.0f bytes, %d allocations open", relayed, srv.TURN().AllocationCount())
}

// relayedBytes sums turnd_relayed_bytes_total over both directions.
func relayedBytes(t *testing.T, ts *turnserver.Server) float64 {
	t.Helper()
	families, err := ts.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != "turnd_relayed_bytes_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += counter(m)
		}
	}
	return sum
}

func counter(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return 0
}
