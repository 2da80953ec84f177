package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/codec"
	"github.com/parley/parley/pkg/server"
	"github.com/pion/webrtc/v4"
)

// whepClient is a Go WHEP player: pion with audio and video receive-only.
type whepClient struct {
	t        *testing.T
	pc       *webrtc.PeerConnection
	audio    atomic.Int64
	video    atomic.Int64
	firstKey atomic.Bool
	mu       sync.Mutex
	cands    []string
	gathered chan struct{}
	once     sync.Once
}

func newWHEPClient(t *testing.T) *whepClient {
	t.Helper()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	c := &whepClient{t: t, pc: pc, gathered: make(chan struct{})}
	t.Cleanup(func() { _ = pc.Close() })
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			c.once.Do(func() { close(c.gathered) })
			return
		}
		c.mu.Lock()
		c.cands = append(c.cands, cand.ToJSON().Candidate)
		c.mu.Unlock()
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		first := true
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if tr.Kind() == webrtc.RTPCodecTypeVideo {
				if first {
					c.firstKey.Store(codec.IsKeyframe(tr.Codec().MimeType, p.Payload))
					first = false
				}
				c.video.Add(1)
			} else {
				c.audio.Add(1)
			}
		}
	})
	return c
}

// waitMedia waits until the client received n more audio and video packets.
func (c *whepClient) waitMedia(n int64) {
	c.t.Helper()
	a0, v0 := c.audio.Load(), c.video.Load()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c.audio.Load() >= a0+n && c.video.Load() >= v0+n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("WHEP media: %d audio, %d video packets (had %d, %d)", c.audio.Load(), c.video.Load(), a0, v0)
}

func request(t *testing.T, method, url, ctype, body, token string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var (
	ufragRe = regexp.MustCompile(`a=ice-ufrag:(.*)\r\n`)
	pwdRe   = regexp.MustCompile(`a=ice-pwd:(.*)\r\n`)
)

// TestWHEPGoClient: a Go WHEP player watches a webinar's presenter: a
// token's POST gets 201 with the answer, Location, ETag and the ICE
// servers' Link; its candidates trickle by PATCH (If-Match: 204; a stale
// ETag 412, none 428); it receives the presenter's audio and video, video
// from a keyframe; an ICE restart by PATCH (If-Match: *) answers new
// credentials and a new ETag, and the media goes on; DELETE ends the
// session (the server holds none), a second DELETE is 404. A player that
// closes its connection first ends its session so, and its DELETE is still
// answered 200 (once). Without the grants the POST is refused.
func TestWHEPGoClient(t *testing.T) {
	k := hsKey("k1", 'h')
	srv := tokenServer(t, server.AuthToken, []auth.Key{k}, func(c *server.Config) {
		c.Auth.RoomsDir = roomsDir(t, map[string]string{"webinar.yaml": webinarPreset})
		c.TURN = server.TURNConfig{URLs: []string{"turn:127.0.0.1:3478?transport=udp"}, Secret: "s3cret"}
	})
	const room = "webinar-whep"
	host := dial(t, srv, client.Options{Token: sign(t, k, "host", room, "publish", "subscribe", "moderate")})
	join(t, host, room, "")
	cam := publishCamera(t, host)
	time.Sleep(time.Second) // the tracks' first packets
	asked := cam.KeyframeRequests("video")

	if resp, body := request(t, "POST", srv.URL()+"/whep/elsewhere", "application/sdp", "v=0\r\n", "", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("WHEP of a room without grants: %s %s", resp.Status, body)
	}
	c := newWHEPClient(t)
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	token := sign(t, k, "player-1", room, "subscribe")
	resp, answer := request(t, "POST", srv.URL()+"/whep/"+room, "application/sdp", offer.SDP, token, nil)
	loc, etag := resp.Header.Get("Location"), resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Content-Type") != "application/sdp" ||
		!strings.HasPrefix(loc, "/whep/"+room+"/") || etag == "" || !strings.Contains(answer, "a=candidate:") {
		t.Fatalf("POST /whep: %s, Location %q, ETag %q, %q", resp.Status, loc, etag, answer)
	}
	if l := resp.Header.Get("Link"); !strings.Contains(l, `<turn:127.0.0.1:3478?transport=udp>; rel="ice-server"`) ||
		!strings.Contains(l, `credential-type="password"`) {
		t.Errorf("Link: %q", l)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	<-c.gathered
	c.mu.Lock()
	frag := "a=ice-ufrag:" + ufragRe.FindStringSubmatch(offer.SDP)[1] + "\r\na=ice-pwd:" + pwdRe.FindStringSubmatch(offer.SDP)[1] +
		"\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
	for _, cand := range c.cands {
		frag += "a=" + cand + "\r\n"
	}
	c.mu.Unlock()
	res := srv.URL() + loc
	if resp, _ := request(t, "PATCH", res, "application/trickle-ice-sdpfrag", frag, token, nil); resp.StatusCode != http.StatusPreconditionRequired {
		t.Errorf("PATCH without If-Match: %s", resp.Status)
	}
	if resp, _ := request(t, "PATCH", res, "application/trickle-ice-sdpfrag", frag, token, map[string]string{"If-Match": `"stale"`}); resp.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("PATCH with a stale ETag: %s", resp.Status)
	}
	if resp, body := request(t, "PATCH", res, "application/trickle-ice-sdpfrag", frag, token, map[string]string{"If-Match": etag}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH candidates: %s %s", resp.Status, body)
	}
	if resp, _ := request(t, "PATCH", res, "application/trickle-ice-sdpfrag", frag, sign(t, k, "someone-else", room, "subscribe"),
		map[string]string{"If-Match": etag}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("PATCH with another identity's token: %s", resp.Status)
	}
	c.waitMedia(30)
	if !c.firstKey.Load() {
		t.Error("the player's video did not start with a keyframe")
	}
	// The room does not record: the player's keyframe was asked for all the
	// same (a publisher may send none unasked).
	if got := cam.KeyframeRequests("video"); got <= asked {
		t.Errorf("the presenter was asked for %d keyframes for the player (%d before)", got-asked, asked)
	}

	// An ICE restart.
	restart, err := c.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.pc.SetLocalDescription(restart); err != nil {
		t.Fatal(err)
	}
	frag = "a=ice-ufrag:" + ufragRe.FindStringSubmatch(restart.SDP)[1] + "\r\na=ice-pwd:" + pwdRe.FindStringSubmatch(restart.SDP)[1] + "\r\n"
	resp, body := request(t, "PATCH", res, "application/trickle-ice-sdpfrag", frag, token, map[string]string{"If-Match": "*"})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == etag || !strings.Contains(body, "a=candidate:") {
		t.Fatalf("PATCH ICE restart: %s, ETag %q (was %q), %q", resp.Status, resp.Header.Get("ETag"), etag, body)
	}
	remote := c.pc.RemoteDescription().SDP
	remote = ufragRe.ReplaceAllString(remote, "a=ice-ufrag:"+ufragRe.FindStringSubmatch(body)[1]+"\r\n")
	remote = pwdRe.ReplaceAllString(remote, "a=ice-pwd:"+pwdRe.FindStringSubmatch(body)[1]+"\r\n")
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: remote}); err != nil {
		t.Fatal(err)
	}
	c.waitMedia(30)

	if resp, _ := request(t, "DELETE", res, "", "", token, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %s", resp.Status)
	}
	if resp, _ := request(t, "DELETE", res, "", "", token, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a second DELETE: %s", resp.Status)
	}
	var h struct {
		WHIPWHEP int `json:"whip_whep"`
	}
	getJSONBody(t, srv.URL()+"/healthz", &h)
	if h.WHIPWHEP != 0 {
		t.Errorf("after DELETE the server holds %d WHIP/WHEP sessions", h.WHIPWHEP)
	}
	time.Sleep(500 * time.Millisecond)
	v := c.video.Load()
	time.Sleep(time.Second)
	if got := c.video.Load() - v; got > 0 {
		t.Errorf("%d video packets after DELETE", got)
	}

	// A player that closes its connection before its DELETE (as players
	// do): the close ends the session, and the DELETE that follows is
	// still answered 200, once.
	c2 := newWHEPClient(t)
	offer, err = c2.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-c2.gathered
	resp, answer = request(t, "POST", srv.URL()+"/whep/"+room, "application/sdp", c2.pc.LocalDescription().SDP, token, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /whep: %s %s", resp.Status, answer)
	}
	res2 := srv.URL() + resp.Header.Get("Location")
	if err := c2.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	c2.waitMedia(10)
	_ = c2.pc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for getJSONBody(t, srv.URL()+"/healthz", &h); h.WHIPWHEP != 0; getJSONBody(t, srv.URL()+"/healthz", &h) {
		if time.Now().After(deadline) {
			t.Fatalf("the closed player's session is still held (%d)", h.WHIPWHEP)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if resp, _ := request(t, "DELETE", res2, "", "", sign(t, k, "someone-else", room, "subscribe"), nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("DELETE of the ended session with another identity's token: %s", resp.Status)
	}
	if resp, _ := request(t, "DELETE", res2, "", "", token, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("DELETE after the player closed: %s", resp.Status)
	}
	if resp, _ := request(t, "DELETE", res2, "", "", token, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a second DELETE after the player closed: %s", resp.Status)
	}
}

func getJSONBody(t *testing.T, url string, out any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}
