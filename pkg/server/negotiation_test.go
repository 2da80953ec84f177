package server_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
	"github.com/pion/webrtc/v4"
)

// rawSubscriber is a participant that speaks the protocol by hand over a
// bare WebSocket and answers subscribe offers with a pion connection of its
// own, so that a test decides what each answer frame looks like.
type rawSubscriber struct {
	t       *testing.T
	conn    *websocket.Conn
	writeMu sync.Mutex
	pc      *webrtc.PeerConnection
	msgs    chan map[string]any
	cands   []webrtc.ICECandidateInit // trickled before the first offer
	backlog []map[string]any          // read, not yet awaited
	packets atomic.Int64
	limits  protocol.Limits
}

func newRawSubscriber(t *testing.T, srv *server.Server, room, name string) *rawSubscriber {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	r := &rawSubscriber{t: t, conn: conn, pc: pc, msgs: make(chan map[string]any, 256)}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			r.packets.Add(1)
		}
	})
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			j := c.ToJSON()
			r.sendJSON(map[string]any{"type": "candidate", "target": "subscribe", "candidate": j})
		}
	})
	go func() {
		defer close(r.msgs)
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(b, &m) == nil {
				r.msgs <- m
			}
		}
	}()
	r.sendJSON(map[string]any{"type": "connect", "id": 1, "username": name})
	s := r.await("the session", func(m map[string]any) bool { return m["type"] == protocol.TypeSession })
	if b, err := json.Marshal(s["limits"]); err != nil || json.Unmarshal(b, &r.limits) != nil {
		t.Fatalf("session limits: %v", s)
	}
	r.sendJSON(map[string]any{"type": "join", "id": 2, "room": room})
	r.await("the join reply", func(m map[string]any) bool { return m["type"] == protocol.TypeReply && m["id"] == 2.0 })
	return r
}

func (r *rawSubscriber) sendJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		r.t.Fatal(err)
	}
	r.send(string(b))
}

func (r *rawSubscriber) send(frame string) {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	_ = r.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := r.conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		r.t.Errorf("write: %v", err)
	}
}

// await returns the first message, kept or new, that match accepts; it
// fails the test after 15 s.
func (r *rawSubscriber) await(what string, match func(map[string]any) bool) map[string]any {
	r.t.Helper()
	m := r.awaitFor(15*time.Second, match)
	if m == nil {
		r.t.Fatalf("timed out waiting for %s", what)
	}
	return m
}

// awaitFor returns the first message, kept or new, that match accepts, or
// nil after d. The others are kept for later, the server's candidates applied.
func (r *rawSubscriber) awaitFor(d time.Duration, match func(map[string]any) bool) map[string]any {
	r.t.Helper()
	for i, m := range r.backlog {
		if match(m) {
			r.backlog = append(r.backlog[:i], r.backlog[i+1:]...)
			return m
		}
	}
	timeout := time.After(d)
	for {
		select {
		case m, ok := <-r.msgs:
			if !ok {
				r.t.Fatal("the server closed the connection")
			}
			if match(m) {
				return m
			}
			if m["type"] == protocol.TypeCandidate {
				r.candidate(m)
			} else {
				r.backlog = append(r.backlog, m)
			}
		case <-timeout:
			return nil
		}
	}
}

// quiet checks that no message matching match is kept or arrives for d.
func (r *rawSubscriber) quiet(d time.Duration, what string, match func(map[string]any) bool) {
	r.t.Helper()
	if m := r.awaitFor(d, match); m != nil {
		r.t.Fatalf("unexpected %s: %.200v", what, m)
	}
}

func (r *rawSubscriber) candidate(m map[string]any) {
	c, _ := m["candidate"].(map[string]any)
	if c == nil || c["candidate"] == "" {
		return
	}
	init := webrtc.ICECandidateInit{Candidate: c["candidate"].(string)}
	if r.pc.RemoteDescription() == nil {
		r.cands = append(r.cands, init)
		return
	}
	if err := r.pc.AddICECandidate(init); err != nil {
		r.t.Logf("candidate: %v", err)
	}
}

func isOffer(m map[string]any) bool { return m["type"] == protocol.TypeOffer }

// withoutCandidates is an SDP without its candidate lines (the server's
// description gains them as they are gathered).
func withoutCandidates(sdp any) string {
	var keep []string
	for _, l := range strings.Split(fmt.Sprint(sdp), "\r\n") {
		if !strings.HasPrefix(l, "a=candidate:") && l != "a=end-of-candidates" {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\r\n")
}

// settle answers the offers that follow (tracks are offered as they come)
// until none comes for a second.
func (r *rawSubscriber) settle() {
	r.t.Helper()
	for id := 1000; ; id++ {
		offer := r.awaitFor(time.Second, isOffer)
		if offer == nil {
			return
		}
		r.send(answerFrame(id, r.answer(offer), 0))
		if rep := r.await("the answer's reply", func(m map[string]any) bool { return m["id"] == float64(id) }); rep["type"] != protocol.TypeReply {
			r.t.Fatalf("answer: %v", rep)
		}
	}
}

// answer applies the offer and returns the answer's SDP.
func (r *rawSubscriber) answer(offer map[string]any) string {
	r.t.Helper()
	if err := r.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer["sdp"].(string)}); err != nil {
		r.t.Fatal(err)
	}
	for _, c := range r.cands {
		_ = r.pc.AddICECandidate(c)
	}
	r.cands = nil
	a, err := r.pc.CreateAnswer(nil)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.pc.SetLocalDescription(a); err != nil {
		r.t.Fatal(err)
	}
	return a.SDP
}

// answerFrame is an answer request of about size bytes: sdp padded with
// session-level attributes that mean nothing (a=x-pad).
func answerFrame(id int, sdp string, size int) string {
	head := fmt.Sprintf(`{"type":"answer","id":%d,"sdp":`, id)
	pad := size - len(head) - len(sdp) - 16
	var b strings.Builder
	b.WriteString(sdp)
	for pad > 0 {
		n := min(pad, 1000)
		b.WriteString("a=x-pad:" + strings.Repeat("p", n) + "\r\n")
		pad -= n + 10
	}
	return head + jsonString(b.String()) + "}"
}

// TestRefusedAnswerIsOfferedAgain: a subscribe answer may be larger than an
// ordinary request, by 2 KiB per media section of the offer it answers (up to
// a cap the room's limits call for), and only while that offer waits for it.
// A refused answer (over that limit) gets an error with its id, and the
// outstanding offer comes again; so does one without ICE credentials
// (INVALID_SDP); an answer then brings the media. After three refusals in a row the streams waiting for
// the offer are reported FAILED with the reason, and a late good answer still
// completes the negotiation.
func TestRefusedAnswerIsOfferedAgain(t *testing.T) {
	srv := testServer(t, func(c *server.Config) {
		c.Rooms.MaxParticipants = 3
		c.Rooms.MaxStreams = 1
	})
	cam := dial(t, srv, client.Options{Username: "cam"})
	join(t, cam, "neg", "cam")
	camPub := publishCamera(t, cam)

	r := newRawSubscriber(t, srv, "neg", "viewer")
	limits := r.limits
	want := 64<<10 + 2*1*4<<10
	if limits.MaxFrameBytes != 64<<10 || limits.MaxAnswerBytes != want {
		t.Fatalf("limits %+v: want maxFrameBytes 65536 and maxAnswerBytes %d (the room's 2 others × 1 stream × 2 sections × 2 KiB more)", limits, want)
	}

	// An answer over what its offer calls for (2 KiB per media section more
	// than an ordinary request), though under the cap: TOO_LARGE for that
	// request, then the offer again.
	offer := r.await("the subscribe offer", isOffer)
	sections := strings.Count(offer["sdp"].(string), "\nm=")
	sdp := r.answer(offer)
	r.send(answerFrame(3, sdp, limits.MaxFrameBytes+sections*2048+512))
	e := r.await("the refusal", func(m map[string]any) bool { return m["type"] == protocol.TypeError })
	if e["code"] != protocol.CodeTooLarge || e["id"] != 3.0 || e["request"] != protocol.TypeAnswer {
		t.Fatalf("answer %d bytes over what an offer of %d sections allows: got %v, want TOO_LARGE with id 3 and request answer",
			512, sections, e)
	}
	again := r.await("the offer again", isOffer)
	if withoutCandidates(again["sdp"]) != withoutCandidates(offer["sdp"]) {
		t.Errorf("the offer sent again differs from the outstanding one:\n%s\nthen\n%s", offer["sdp"], again["sdp"])
	}

	// An answer without ICE credentials (pion would take it in, then refuse
	// it, and the connection could never start): INVALID_SDP, the offer again.
	var noICE []string
	for _, l := range strings.Split(r.answer(again), "\r\n") {
		if !strings.HasPrefix(l, "a=ice-ufrag:") && !strings.HasPrefix(l, "a=ice-pwd:") {
			noICE = append(noICE, l)
		}
	}
	r.send(answerFrame(30, strings.Join(noICE, "\r\n"), 0))
	if e := r.await("the refusal", func(m map[string]any) bool { return m["id"] == 30.0 }); e["code"] != protocol.CodeInvalidSDP {
		t.Fatalf("an answer without ICE credentials: got %v, want INVALID_SDP", e)
	}
	again = r.await("the offer again", isOffer)

	// An answer over the ordinary frame limit but within what its offer allows is taken.
	sdp = r.answer(again)
	r.send(answerFrame(4, sdp, limits.MaxFrameBytes+1024))
	rep := r.await("the answer's reply", func(m map[string]any) bool { return m["id"] == 4.0 })
	if rep["type"] != protocol.TypeReply {
		t.Fatalf("answer of %d bytes: got %v, want a reply", limits.MaxFrameBytes+1024, rep)
	}
	r.settle()
	r.await("cam's stream PLAYING", func(m map[string]any) bool {
		return m["event"] == protocol.EventStreamStatus && m["name"] == "cam" && m["status"] == protocol.StreamPlaying
	})
	deadline := time.Now().Add(10 * time.Second)
	for r.packets.Load() < 50 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := r.packets.Load(); got < 50 {
		t.Fatalf("viewer received %d packets of cam's stream, want 50 or more", got)
	}

	// No offer is out: the same large frame is now refused, and nothing is offered.
	r.send(answerFrame(5, sdp, limits.MaxFrameBytes+1024))
	e = r.await("the refusal", func(m map[string]any) bool { return m["id"] == 5.0 })
	if e["code"] != protocol.CodeTooLarge || e["request"] != protocol.TypeAnswer {
		t.Errorf("an answer nobody waits for: got %v, want TOO_LARGE", e)
	}
	r.send(`{"type":"message","id":6,"text":"` + strings.Repeat("m", limits.MaxFrameBytes) + `"}`)
	if e := r.await("the refusal", func(m map[string]any) bool { return m["id"] == 6.0 }); e["code"] != protocol.CodeTooLarge {
		t.Errorf("a chat frame over %d bytes: got %v, want TOO_LARGE", limits.MaxFrameBytes, e)
	}
	r.quiet(time.Second, "offer", isOffer)

	// A second camera: its offer is refused three times; the third time its
	// stream is FAILED with the reason instead of offered again.
	cam2 := dial(t, srv, client.Options{Username: "cam2"})
	join(t, cam2, "neg", "cam2")
	publishCamera(t, cam2)
	offer = r.await("the offer with cam2", isOffer)
	for i := range 3 {
		id := 10 + i
		r.send(answerFrame(id, r.answer(offer), limits.MaxAnswerBytes+4096))
		if e := r.await("the refusal", func(m map[string]any) bool { return m["id"] == float64(id) }); e["code"] != protocol.CodeTooLarge {
			t.Fatalf("refusal %d: got %v", i+1, e)
		}
		if i < 2 {
			offer = r.await("the offer again", isOffer)
		}
	}
	failed := r.await("cam2's stream FAILED", func(m map[string]any) bool {
		return m["event"] == protocol.EventStreamStatus && m["name"] == "cam2"
	})
	if failed["status"] != protocol.StreamFailed || !strings.Contains(fmt.Sprint(failed["reason"]), "refused 3 times") {
		t.Fatalf("after three refusals: %v, want FAILED with the reason", failed)
	}
	r.quiet(time.Second, "offer", isOffer)
	// The offer is still out: a good answer completes it.
	r.send(answerFrame(20, r.answer(offer), 0))
	if rep := r.await("the answer's reply", func(m map[string]any) bool { return m["id"] == 20.0 }); rep["type"] != protocol.TypeReply {
		t.Fatalf("late answer: %v", rep)
	}
	r.await("cam2's stream PLAYING", func(m map[string]any) bool {
		return m["event"] == protocol.EventStreamStatus && m["name"] == "cam2" && m["status"] == protocol.StreamPlaying
	})
	_ = camPub
}

// TestICERestartCandidatesFollowTheirDescription: on an ICE restart the
// server gathers new candidates, and a candidate that reaches the client
// before the description with its new credentials is one the client cannot
// use (a browser refuses a candidate of an unknown ufrag; pion adds it to the
// old generation and drops it at the restart): the restarted ICE then may
// have nothing to check. Every candidate of the server's, for the subscribe
// connection and for a publish connection whose client restarts it, names
// (its ufrag) the credentials of a description the client already has; five
// restarts each, as gathering often finishes before the description is made
// and the wrong order shows only some of the time.
func TestICERestartCandidatesFollowTheirDescription(t *testing.T) {
	srv := testServer(t, nil)
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "restarts", "a")
	publishCamera(t, a)
	r := newRawSubscriber(t, srv, "restarts", "raw")
	r.settle()
	r.backlog = nil

	known := map[string]bool{} // the ufrags of the server's descriptions so far
	learn := func(sdp any) {
		for _, l := range strings.Split(fmt.Sprint(sdp), "\r\n") {
			if u, ok := strings.CutPrefix(l, "a=ice-ufrag:"); ok {
				known[u] = true
			}
		}
	}
	if ld := r.pc.RemoteDescription(); ld != nil {
		learn(ld.SDP)
	}
	// within returns the next frame of type want within d (nil after d:
	// none); on the way every candidate must name a known ufrag.
	within := func(d time.Duration, what, want string) map[string]any {
		t.Helper()
		timeout := time.After(d)
		for {
			select {
			case m, ok := <-r.msgs:
				if !ok {
					t.Fatal("the server closed the connection")
				}
				if m["type"] == want {
					learn(m["sdp"])
					return m
				}
				if m["type"] == protocol.TypeCandidate {
					c, _ := m["candidate"].(map[string]any)
					_, u, _ := strings.Cut(fmt.Sprint(c["candidate"]), " ufrag ")
					u, _, _ = strings.Cut(u, " ")
					if !known[u] {
						t.Fatalf("while waiting for %s: a %v candidate of credentials (ufrag %q) no description has given yet: %v",
							what, m["target"], u, c["candidate"])
					}
				}
			case <-timeout:
				return nil
			}
		}
	}
	next := func(what, want string) map[string]any {
		t.Helper()
		m := within(15*time.Second, what, want)
		if m == nil {
			t.Fatalf("timed out waiting for %s", what)
		}
		return m
	}
	for i := range 5 {
		r.sendJSON(map[string]any{"type": protocol.TypeRestartICE, "id": 100 + i})
		m := next("the subscribe connection's restart offer", protocol.TypeOffer)
		r.send(answerFrame(200+i, r.answer(m), 0))
		next("the reply to the answer", protocol.TypeReply)
	}

	// A publish connection of the raw session, restarted by its client.
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "raw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer := func(restart bool) string {
		t.Helper()
		o, err := pc.CreateOffer(&webrtc.OfferOptions{ICERestart: restart})
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.SetLocalDescription(o); err != nil {
			t.Fatal(err)
		}
		return o.SDP
	}
	setAnswer := func(m map[string]any) {
		t.Helper()
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m["sdp"].(string)}); err != nil {
			t.Fatal(err)
		}
	}
	r.sendJSON(map[string]any{"type": protocol.TypePublish, "id": 300, "kind": "camera", "sdp": offer(false)})
	ans := next("the publish answer", protocol.TypeAnswer)
	if ans["id"] != 300.0 {
		t.Fatalf("publish: %v", ans)
	}
	setAnswer(ans)
	for i := range 5 {
		id := 400 + i
		r.sendJSON(map[string]any{"type": protocol.TypeOffer, "id": id, "stream": ans["stream"], "sdp": offer(true)})
		m := next("the answer to the publisher's restart offer", protocol.TypeAnswer)
		if m["id"] != float64(id) {
			t.Fatalf("restart %d: the answer %v", i+1, m)
		}
		setAnswer(m)
	}
	// The last restart's candidates, after its answer, are of its ufrag.
	within(500*time.Millisecond, "the last candidates", "none")
}
