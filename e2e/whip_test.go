package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
)

// whipPage publishes the fake camera with the third-party WHIP client
// (npm whip-whep: medooze's) and, on startPlay(), plays the room with its
// WHEP client; window.state says how far it got.
const whipPage = `<!doctype html><meta charset="utf-8"><video autoplay muted playsinline></video>
<script type="module">
import {WHIPClient} from './whip.js';
import {WHEPClient} from './whep.js';
const q = new URLSearchParams(location.search);
const base = q.get('server'), room = q.get('room'), token = q.get('token');
window.state = {};
// The clients' DELETEs and what the server answered.
window.deletes = [];
const origFetch = window.fetch;
window.fetch = async (url, opts) => {
  const resp = await origFetch(url, opts);
  if (opts && opts.method === 'DELETE') window.deletes.push(new URL(String(url), location.href).pathname.split('/')[1] + ' ' + resp.status);
  return resp;
};
window.startPlay = async () => {
  try {
    const play = new RTCPeerConnection();
    play.addTransceiver('audio', {direction: 'recvonly'});
    play.addTransceiver('video', {direction: 'recvonly'});
    play.ontrack = (e) => {
      const v = document.querySelector('video');
      if (!v.srcObject) v.srcObject = new MediaStream();
      v.srcObject.addTrack(e.track);
    };
    const whep = new WHEPClient();
    await whep.view(play, base + '/whep/' + room, token);
    window.whep = whep; window.playPC = play;
    state.playing = true;
  } catch (e) { state.error = String((e && e.stack) || e); }
};
window.stopAll = async () => { await window.whip.stop(); await window.whep.stop(); state.stopped = true; };
(async () => {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
    const pub = new RTCPeerConnection();
    for (const t of stream.getTracks()) pub.addTransceiver(t, {direction: 'sendonly', streams: [stream]});
    const whip = new WHIPClient();
    await whip.publish(pub, base + '/whip/' + room + '?name=whip-cam', token);
    window.whip = whip; window.pubPC = pub;
    state.published = true;
  } catch (e) { state.error = String((e && e.stack) || e); }
})();
</script>`

// TestThirdPartyWHIPAndWHEP: a page of another origin (served by the test)
// publishes Chromium's fake camera into a webinar room with a WHIP client
// Parley did not write (npm whip-whep); a participant of the room (a Pion
// client) receives it, video from a keyframe, and a Chromium participant
// (the viewer page) decodes its picture and sound. The page then plays the
// room's presenter with the same package's WHEP client and decodes the
// picture and the sound (samples decoded, not concealed). The
// clients' stop (DELETE) ends both sessions: the server holds none, and the
// publisher has left the room.
func TestThirdPartyWHIPAndWHEP(t *testing.T) {
	lib := filepath.Join("whip", "node_modules", "whip-whep")
	if _, err := os.Stat(filepath.Join(lib, "whip.js")); err != nil {
		t.Fatalf("the npm package whip-whep is not installed: run `npm ci --prefix e2e/whip` (scripts/test.sh does): %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(whipPage))
	})
	for _, f := range []string{"whip.js", "whep.js"} {
		mux.HandleFunc("/"+f, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/javascript")
			http.ServeFile(w, r, filepath.Join(lib, f))
		})
	}
	pages := httptest.NewServer(mux)
	defer pages.Close()
	srv := webinarServer(t, func(c *server.Config) { c.Signaling.AllowedOrigins = []string{pages.URL} })
	room := fmt.Sprintf("webinar-%d", time.Now().UnixNano()%100000)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	viewer, err := client.Dial(ctx, "ws"+srv.URL()[len("http"):]+"/ws", client.Options{Username: "viewer"})
	if err != nil {
		t.Fatal(err)
	}
	defer viewer.Close()
	if _, err := viewer.Join(ctx, client.JoinOptions{Room: room, Name: "viewer"}); err != nil {
		t.Fatal(err)
	}
	tok := mustSign(t, webinarKey, auth.Spec{Identity: "encoder", Room: room, Grants: auth.MustParseGrants("publish", "subscribe")})
	p := openPage(t, "whip", pages.URL+"/?"+url.Values{"server": {srv.URL()}, "room": {room}, "token": {tok}}.Encode())

	tracks, err := viewer.WaitRemoteTracks(ctx, 2)
	if err != nil {
		var st map[string]any
		_ = p.eval(`window.state`, &st)
		t.Fatalf("the WHIP stream in the room: %v (page %v)", err, st)
	}
	for _, tr := range tracks {
		deadline := time.Now().Add(15 * time.Second)
		for tr.Packets() < 30 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if tr.Publisher() != "whip-cam" || tr.Packets() < 30 || (tr.Kind() == "video" && !tr.FirstPacketKeyframe()) {
			t.Errorf("%s from %s: %d packets, first a keyframe: %v", tr.Kind(), tr.Publisher(), tr.Packets(), tr.FirstPacketKeyframe())
		}
	}

	// A Chromium participant of the room (the viewer page) decodes it.
	w := openPage(t, "whip-watch", fmt.Sprintf("%s/watch.html?room=%s&name=chromium-viewer", srv.URL(), room))
	var seen watchState
	w.waitFor("a Chromium participant decoding the WHIP stream", func() (bool, string) {
		seen = watchState{}
		_ = w.eval(readWatch, &seen)
		return seen.Frames > 10 && seen.Samples > 0 && seen.Path == "webrtc", fmt.Sprintf("%+v", seen)
	})

	if err := p.eval(`window.startPlay().then(() => true)`, nil); err != nil {
		t.Fatal(err)
	}
	type playState struct {
		Frames  float64 `json:"frames"`
		Samples float64 `json:"samples"` // decoded, not concealed
		Error   string  `json:"error"`
	}
	const readPlay = `(async () => {
	  let frames = 0, samples = 0;
	  if (window.playPC) (await window.playPC.getStats()).forEach(s => {
	    if (s.type !== 'inbound-rtp') return;
	    if (s.kind === 'video') frames += s.framesDecoded || 0;
	    else samples += (s.totalSamplesReceived || 0) - (s.concealedSamples || 0);
	  });
	  return {frames, samples, error: window.state.error || ''};
	})()`
	var first playState
	p.waitFor("the WHEP player's picture and sound", func() (bool, string) {
		first = playState{}
		_ = p.eval(readPlay, &first)
		return first.Frames > 10 && first.Samples > 0, fmt.Sprintf("%+v", first)
	})
	p.waitFor("more frames", func() (bool, string) {
		var st playState
		_ = p.eval(readPlay, &st)
		return st.Frames > first.Frames+10 && st.Samples > first.Samples, fmt.Sprintf("%+v then %+v", first, st)
	})

	if err := p.eval(`window.stopAll().then(() => true)`, nil); err != nil {
		t.Fatal(err)
	}
	var deletes []string
	p.waitFor("the clients' DELETEs", func() (bool, string) {
		deletes = nil
		_ = p.eval(`window.deletes`, &deletes)
		return len(deletes) == 2, fmt.Sprint(deletes)
	})
	if !slices.Contains(deletes, "whip 200") || !slices.Contains(deletes, "whep 200") {
		t.Errorf("the DELETEs: %v, want whip 200 and whep 200", deletes)
	}
	if _, err := viewer.WaitEvent(ctx, func(e protocol.Event) bool { return e.Event == protocol.EventLeft && e.Name == "whip-cam" }); err != nil {
		t.Fatalf("the WHIP publisher did not leave the room after DELETE: %v", err)
	}
	p.waitFor("the server to end both sessions", func() (bool, string) {
		var h struct {
			WHIPWHEP int `json:"whip_whep"`
		}
		resp, err := http.Get(srv.URL() + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		_ = jsonDecode(resp, &h)
		return h.WHIPWHEP == 0, fmt.Sprintf("%d WHIP/WHEP sessions", h.WHIPWHEP)
	})
}

func jsonDecode(resp *http.Response, out any) error { return json.NewDecoder(resp.Body).Decode(out) }
