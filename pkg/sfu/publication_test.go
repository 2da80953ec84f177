package sfu

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// nopSignal drops what the media plane tells a participant.
type nopSignal struct{}

func (nopSignal) SubscribeOffer(string, map[string]string)          {}
func (nopSignal) Candidate(string, string, webrtc.ICECandidateInit) {}
func (nopSignal) StreamStatus(string, string, string, string)       {}
func (nopSignal) PublishStatus(string, string, string)              {}

// pionClientOffer is a publisher's offer of one Opus track, as pion makes it.
func pionClientOffer(t *testing.T) string {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "st")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

// A close that comes while a publish is being set up (shutdown, or a resumed
// session replacing the old one) closes the publish connection whichever
// side gets there first: none is left open, and the race detector sees the
// connection handed over under the publication's lock. First the close
// lands exactly between the making of the connection and its storing, then
// at random moments of the publish.
func TestCloseDuringPublish(t *testing.T) {
	e, err := NewEngine(Config{ListenIP: "127.0.0.1", TCPPort: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	offer := pionClientOffer(t)

	var mu sync.Mutex
	var made []*webrtc.PeerConnection
	var closeHere func()
	e.hooks.publishConnMade = func(_ *publication, pc *webrtc.PeerConnection) {
		mu.Lock()
		made = append(made, pc)
		fn := closeHere
		mu.Unlock()
		if fn != nil {
			fn()
		}
	}
	r := e.NewRouter("rs-test")
	defer r.Close()

	// The close between the connection's making and its storing.
	p, err := r.AddPeer("p0", PeerOptions{Name: "alice"}, nopSignal{})
	if err != nil {
		t.Fatal(err)
	}
	closeHere = p.Close
	if _, _, err := p.Publish("st-0", "camera", offer, false); err == nil {
		t.Error("a publish whose peer closed while it was set up succeeded")
	}
	closeHere = nil

	// The close at any moment of the publish, from another goroutine.
	const rounds = 30
	for i := range rounds {
		p, err := r.AddPeer("p"+string(rune('a'+i)), PeerOptions{Name: "bob"}, nopSignal{})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _, _ = p.Publish("st-1", "camera", offer, false)
		}()
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
			p.Close()
		}()
		wg.Wait()
	}

	mu.Lock()
	defer mu.Unlock()
	// A close that comes before the publish reaches the connection's making
	// (the other goroutine may not have started yet) refuses the publish
	// before any connection exists: the rounds make 0 or 1 each. The first
	// part made one; most rounds make one too.
	t.Logf("%d publish connections made in %d rounds and the first part", len(made), rounds)
	if len(made) < 1+rounds/2 {
		t.Fatalf("%d publish connections made in %d rounds: the closes did not race the publishes", len(made)-1, rounds)
	}
	for i, pc := range made {
		if st := pc.ConnectionState(); st != webrtc.PeerConnectionStateClosed {
			t.Errorf("publish connection %d is %s after its peer closed: leaked", i, st)
		}
	}
}
