package sfu

import (
	"strings"
	"testing"

	"github.com/parley/parley/pkg/srtpkeys"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// Publish connections offer transport-wide CC feedback (so browsers adapt
// their bitrate to what the SFU receives); subscribe connections neither
// negotiate it nor stamp its header extension, since nothing would read it.
func TestTransportCCOnlyOnPublish(t *testing.T) {
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
	sub := offer(e.subAPI(&srtpkeys.Capture{}), webrtc.RTPTransceiverDirectionSendonly)
	if !strings.Contains(pub, "transport-cc") || !strings.Contains(pub, "transport-wide-cc") {
		t.Errorf("publish side lacks transport-cc:\n%s", pub)
	}
	if strings.Contains(sub, "transport-cc") || strings.Contains(sub, "transport-wide-cc") {
		t.Errorf("subscribe side negotiates transport-cc:\n%s", sub)
	}
	for _, want := range []string{"nack pli", "ccm fir", "a=rtcp-fb:96 nack\r\n"} {
		if !strings.Contains(sub, want) {
			t.Errorf("subscribe side lacks %q:\n%s", want, sub)
		}
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
