package sfu

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley/parley/pkg/protocol"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// What the SFU does with what clients send: publish offers, subscribe
// answers, ICE candidates, RTCP feedback. These targets feed it arbitrary
// input (go test -fuzz, see docs/testing.md; seed corpora in testdata/fuzz):
// it never panics, and a refusal is always a protocol error the client is
// told (never an internal one).

// fuzzSignal keeps the last subscribe offer.
type fuzzSignal struct {
	mu    sync.Mutex
	offer string
}

func (s *fuzzSignal) SubscribeOffer(sdp string, _ map[string]string) {
	s.mu.Lock()
	s.offer = sdp
	s.mu.Unlock()
}
func (s *fuzzSignal) Candidate(string, string, webrtc.ICECandidateInit) {}
func (s *fuzzSignal) StreamStatus(string, string, string, string)       {}
func (s *fuzzSignal) PublishStatus(string, string, string)              {}

func (s *fuzzSignal) lastOffer() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.offer
}

// fuzzRouter is an engine on loopback and a router, closed when f ends.
func fuzzRouter(f *testing.F) (*Engine, *Router) {
	e, err := NewEngine(Config{ListenIP: "127.0.0.1", TCPPort: -1})
	if err != nil {
		f.Fatal(err)
	}
	r := e.NewRouter("fuzz")
	f.Cleanup(func() {
		r.Close()
		_ = e.Close()
	})
	return e, r
}

// clientError fails the test unless err is nil or a protocol error with a
// code a client's bad input may get.
func clientError(t *testing.T, what string, err error, codes ...string) {
	t.Helper()
	if err == nil {
		return
	}
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		t.Fatalf("%s: %v (%T): bad input must get a protocol error", what, err, err)
	}
	for _, c := range codes {
		if pe.Code == c {
			return
		}
	}
	t.Fatalf("%s: code %s (%s), want one of %v", what, pe.Code, pe.Reason, codes)
}

// clientOffer is what a Pion client offers to publish: audio and video, sendonly.
func clientOffer(f *testing.F) string {
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		f.Fatal(err)
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			f.Fatal(err)
		}
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		f.Fatal(err)
	}
	return o.SDP
}

// FuzzPublishOffer publishes a stream with an arbitrary offer, then trickles
// an arbitrary candidate and re-offers: an offer is answered (an answer that
// parses, with at most one audio and one video track) or refused with
// INVALID_SDP or UNSUPPORTED_CODEC.
func FuzzPublishOffer(f *testing.F) {
	_, r := fuzzRouter(f)
	f.Add(clientOffer(f), "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host")
	f.Add("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n", "")
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, offer, candidate string) {
		peer, err := r.AddPeer(fmt.Sprintf("p%d", n.Add(1)), PeerOptions{Name: "pub"}, &fuzzSignal{})
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		answer, tracks, err := peer.Publish("st-fuzz", protocol.KindCamera, offer, false)
		clientError(t, "publish", err, protocol.CodeInvalidSDP, protocol.CodeUnsupportedCodec)
		if err != nil {
			return
		}
		var sd sdp.SessionDescription
		if err := sd.UnmarshalString(answer); err != nil {
			t.Fatalf("the answer does not parse: %v\n%s", err, answer)
		}
		kinds := map[string]int{}
		for _, tr := range tracks {
			if tr.Kind != "audio" && tr.Kind != "video" {
				t.Fatalf("answer accepts a track of kind %q", tr.Kind)
			}
			if kinds[tr.Kind]++; kinds[tr.Kind] > 1 {
				t.Fatalf("answer accepts %d %s tracks in one stream", kinds[tr.Kind], tr.Kind)
			}
		}
		peer.StartTrickle("st-fuzz")
		clientError(t, "candidate", peer.AddCandidate(protocol.TargetPublish, "st-fuzz", webrtc.ICECandidateInit{Candidate: candidate}),
			protocol.CodeBadRequest)
		_, err = peer.Reoffer("st-fuzz", offer)
		clientError(t, "re-offer", err, protocol.CodeInvalidSDP)
		clientError(t, "unpublish", peer.Unpublish("st-fuzz"))
	})
}

// FuzzSubscribeAnswer answers a subscribe offer (one audio track) with an
// arbitrary answer, then trickles an arbitrary candidate: the answer is
// applied or refused with INVALID_SDP; a refused one is offered again.
func FuzzSubscribeAnswer(f *testing.F) {
	e, r := fuzzRouter(f)
	fwd := testForwarder(e.pool, e.writers)
	// A well-formed answer from a Pion client, to an offer like the ones below.
	{
		sig := &fuzzSignal{}
		peer, err := r.AddPeer("seed", PeerOptions{Name: "seed", Subscribe: true}, sig)
		if err != nil {
			f.Fatal(err)
		}
		peer.sub.addForwarder(fwd, "pub")
		pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			f.Fatal(err)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sig.lastOffer()}); err != nil {
			f.Fatal(err)
		}
		a, err := pc.CreateAnswer(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(a.SDP, "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host")
		_ = pc.Close()
		peer.Close()
	}
	f.Add("v=0", "")
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, answer, candidate string) {
		sig := &fuzzSignal{}
		peer, err := r.AddPeer(fmt.Sprintf("s%d", n.Add(1)), PeerOptions{Name: "sub", Subscribe: true}, sig)
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		peer.sub.addForwarder(fwd, "pub")
		offer := sig.lastOffer()
		if n, waiting := peer.AwaitingAnswer(); offer == "" || !waiting || n != 1 {
			t.Fatalf("subscribe offer: %d media sections, waiting %v; want one, waiting", n, waiting)
		}
		err = peer.Answer(answer)
		clientError(t, "answer", err, protocol.CodeInvalidSDP)
		if err != nil {
			peer.AnswerRefused("INVALID_SDP")
			if _, waiting := peer.AwaitingAnswer(); !waiting || sig.lastOffer() == "" {
				t.Fatal("a refused answer left no offer out")
			}
		}
		clientError(t, "candidate", peer.AddCandidate(protocol.TargetSubscribe, "", webrtc.ICECandidateInit{Candidate: candidate}),
			protocol.CodeBadRequest, protocol.CodeTooLarge)
	})
}

// FuzzRTCPFeedback reads arbitrary RTCP from a subscriber as the SFU does
// (rtcpin.go: the allocation-free reader of receiver reports, NACKs, PLI,
// FIR, REMB and transport-wide CC feedback): it never panics, and when pion's
// parser reads the same bytes as a whole, the SFU queues exactly the NACKs
// and asks for a keyframe exactly when pion finds them.
func FuzzRTCPFeedback(f *testing.F) {
	pool := newPacketPool()
	wp := &writerPool{workers: []*writer{{wake: make(chan struct{}, 1)}}}
	fwd := testForwarder(pool, wp)
	fwd.kind = webrtc.RTPCodecTypeVideo
	fwd.hist = &history{}
	plis := 0
	fwd.requestPLI = func(uint32) { plis++ }
	sub := testSubscriber(wp, 16)
	d := newDownTrack(fwd, sub)
	d.bound.Store(&binding{ssrc: 1234, pt: 96, ws: &countWriter{}})
	d.target.Store(fwd)
	for _, pkts := range [][]rtcp.Packet{
		{&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 1234, FractionLost: 10}}},
			&rtcp.TransportLayerNack{MediaSSRC: 1234, Nacks: []rtcp.NackPair{{PacketID: 3, LostPackets: 0xffff}}}},
		{&rtcp.ReceiverReport{SSRC: 1}, &rtcp.PictureLossIndication{MediaSSRC: 1234}},
		{&rtcp.FullIntraRequest{MediaSSRC: 1234, FIR: []rtcp.FIREntry{{SSRC: 1234}}}},
		{&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 400_000, SSRCs: []uint32{1234}}},
		{&rtcp.TransportLayerCC{MediaSSRC: 1234, BaseSequenceNumber: 1, PacketStatusCount: 2, ReferenceTime: 1,
			PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 2}},
			RecvDeltas:   []*rtcp.RecvDelta{{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 250}, {Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 250}}}},
		{&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 1234}}}, &rtcp.SourceDescription{}},
	} {
		b, err := rtcp.Marshal(pkts)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sub.nackMu.Lock()
		sub.nacks = sub.nacks[:0]
		sub.nackMu.Unlock()
		plis = 0
		d.lastPLI.Store(0)
		fwd.mu.Lock() // no throttle left from the previous input
		fwd.lastPLI, fwd.pliPending = time.Time{}, false
		fwd.mu.Unlock()
		scratch := make([]rtcp.NackPair, 0, 64)
		d.onRTCP(b, time.Now(), scratch)

		pkts, err := rtcp.Unmarshal(b)
		if err != nil {
			return // pion refuses it as a whole; the SFU took what it could
		}
		var want []rtcp.NackPair
		keyframe := false
		for _, pkt := range pkts {
			switch pkt := pkt.(type) {
			case *rtcp.TransportLayerNack:
				want = append(want, pkt.Nacks...)
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				keyframe = true
			}
		}
		sub.nackMu.Lock()
		var got []rtcp.NackPair
		for _, n := range sub.nacks {
			got = append(got, n.pair)
		}
		sub.nackMu.Unlock()
		if len(want) <= maxPendingNACKs && fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("% x: NACKs queued %v, pion reads %v", b, got, want)
		}
		if keyframe != (plis > 0) {
			t.Fatalf("% x: %d keyframe requests; pion reads a PLI or FIR: %v", b, plis, keyframe)
		}
	})
}
