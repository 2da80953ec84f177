package sfu

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/parley/parley/pkg/srtpkeys"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// Both directions negotiate transport-wide CC: publish connections so that
// browsers adapt their bitrate to what the SFU receives, subscribe
// connections so that the SFU estimates each subscriber's link (with the
// header extension it stamps); subscribe connections also offer REMB.
func TestTransportCCBothWays(t *testing.T) {
	e, err := NewEngine(Config{ListenIP: "127.0.0.1", TCPPort: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	offer := func(api *webrtc.API, dir webrtc.RTPTransceiverDirection) string {
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: dir}); err != nil {
			t.Fatal(err)
		}
		o, err := pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		return o.SDP
	}
	pub := offer(e.pubAPI, webrtc.RTPTransceiverDirectionRecvonly)
	sub := offer(e.subAPI(&srtpkeys.Capture{}, &pionGuard{out: new(atomic.Pointer[sendPath]), refused: new(atomic.Uint64)}), webrtc.RTPTransceiverDirectionSendonly)
	if !strings.Contains(pub, "transport-cc") || !strings.Contains(pub, "transport-wide-cc") {
		t.Errorf("publish side lacks transport-cc:\n%s", pub)
	}
	for _, want := range []string{"nack pli", "ccm fir", "a=rtcp-fb:96 nack\r\n", "a=rtcp-fb:96 transport-cc", "a=rtcp-fb:96 goog-remb", "transport-wide-cc"} {
		if !strings.Contains(sub, want) {
			t.Errorf("subscribe side lacks %q:\n%s", want, sub)
		}
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
