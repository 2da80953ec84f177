package server_test

import (
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/sfu"
)

// TestSubscriberEstimate: subscribe connections negotiate transport-wide
// CC; the SFU stamps every packet it writes, on the direct send path and on
// pion's, and reads each receiver's feedback and reports: every subscriber
// has an estimate fed by feedback, at least what it receives on loopback,
// and a round trip and a loss figure per track from its receiver reports.
func TestSubscriberEstimate(t *testing.T) {
	srv := testServer(t, nil)
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "bwe", "a")
	pub := publishCamera(t, a)
	direct := dial(t, srv, client.Options{Username: "direct"})
	join(t, direct, "bwe", "direct")
	viaPion := dial(t, srv, client.Options{Username: "pion", SubscribeDTLSServer: true})
	join(t, viaPion, "bwe", "pion")
	for _, c := range []*client.Client{direct, viaPion} {
		if _, err := c.WaitRemoteTracks(ctxT(t, 10*time.Second), 2); err != nil {
			t.Fatalf("remote tracks: %v", err)
		}
	}
	time.Sleep(4 * time.Second)
	subs := map[string]sfu.SubscriberStats{}
	for _, s := range srv.Media().Subscribers() {
		subs[s.Participant] = s
	}
	sentBps := float64(pub.BytesSent("video")+pub.BytesSent("audio")) * 8 / time.Since(pub.SentPackets("audio")[0].SentAt).Seconds()
	for name, wantDirect := range map[string]bool{"direct": true, "pion": false} {
		s, ok := subs[name]
		if !ok {
			t.Fatalf("no subscriber %s among %+v", name, subs)
		}
		est := s.Estimate
		t.Logf("%s: direct %v, estimate %+v, tracks %+v", name, s.Direct, est, s.Tracks)
		if s.Direct != wantDirect {
			t.Errorf("%s: direct path %v, want %v", name, s.Direct, wantDirect)
		}
		if est.Feedbacks < 20 {
			t.Errorf("%s: %d transport-wide CC feedbacks in 4 s", name, est.Feedbacks)
		}
		if est.Acked < int(sentBps/2) || float64(est.Target) < sentBps {
			t.Errorf("%s: estimate %d, acked %d bit/s; the publisher sends %.0f bit/s", name, est.Target, est.Acked, sentBps)
		}
		if est.RTT <= 0 || est.RTT > time.Second {
			t.Errorf("%s: round trip %v", name, est.RTT)
		}
		if len(s.Tracks) != 2 {
			t.Fatalf("%s: %d tracks", name, len(s.Tracks))
		}
		for _, tr := range s.Tracks {
			if tr.Reports < 2 || tr.RTT <= 0 || tr.FractionLost > 0.05 {
				t.Errorf("%s/%s: %+v, want receiver reports with a round trip and no loss", name, tr.Kind, tr)
			}
		}
	}
}
