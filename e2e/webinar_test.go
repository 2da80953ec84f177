package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/testmedia"
)

// countGetUserMedia counts the page's camera and microphone requests.
const countGetUserMedia = `(() => {
  window.__gum = 0;
  const md = navigator.mediaDevices;
  if (md && md.getUserMedia) {
    const orig = md.getUserMedia.bind(md);
    md.getUserMedia = (...args) => { window.__gum++; return orig(...args); };
  }
})();`

// webinarKey signs the presenters' tokens of the webinar tests.
var webinarKey = auth.Key{ID: "w1", Secret: []byte(strings.Repeat("w", 32))}

// webinarServer serves the web app with a webinar preset for rooms
// webinar-*: anonymous participants are viewers; tokens of webinarKey name
// presenters.
func webinarServer(t *testing.T, tweak func(*server.Config)) *server.Server {
	t.Helper()
	dir := t.TempDir()
	preset := "rooms: ['webinar-*']\nwebinar: true\ngrants: [subscribe, chat]\n"
	if tweak != nil {
		// A server with a records directory keeps its broadcasts.
		var c server.Config
		tweak(&c)
		if c.RecordsDir != "" {
			preset += "record: always\n"
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "webinar.yaml"), []byte(preset), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier([]auth.Key{webinarKey}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return startServer(t, func(c *server.Config) {
		c.Auth = server.AuthConfig{Mode: server.AuthOpen, Tokens: v, RoomsDir: dir}
		if tweak != nil {
			tweak(c)
		}
	})
}

// testMedia returns the paths of the VP8 and Opus test media (made with ffmpeg once).
func testMedia(t *testing.T) (ivf, ogg string) {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "parley-testmedia")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if ivf, err = testmedia.VP8IVF(dir, testmedia.Options{}); err != nil {
		t.Fatal(err)
	}
	if ogg, err = testmedia.OpusOgg(dir, testmedia.Options{}); err != nil {
		t.Fatal(err)
	}
	return ivf, ogg
}

// presenter joins room as a Pion client with a presenter's token (publish,
// moderate) and publishes VP8 and Opus test media.
func presenter(t *testing.T, srv *server.Server, room, name string) *client.Client {
	t.Helper()
	// The client's media runs as long as the context of its publish.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ivf, ogg := testMedia(t)
	video, err := client.NewIVFSource(ivf, true)
	if err != nil {
		t.Fatal(err)
	}
	audio, err := client.NewOpusSource(ogg, true)
	if err != nil {
		t.Fatal(err)
	}
	tok := mustSign(t, webinarKey, auth.Spec{Identity: name, Room: room,
		Grants: auth.MustParseGrants("publish", "subscribe", "chat", "moderate", "record")})
	c, err := client.Dial(ctx, strings.Replace(srv.URL(), "http", "ws", 1)+"/ws", client.Options{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Join(ctx, client.JoinOptions{Room: room}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, client.PublishOptions{Video: video, Audio: audio}); err != nil {
		t.Fatal(err)
	}
	return c
}

// readWatch reads what the viewer page decoded from the presenters and shows.
const readWatch = `(async () => {
  let frames = 0, samples = 0;
  for (const pc of (window.__pcs || [])) {
    if (pc.connectionState === 'closed') continue;
    const report = await pc.getStats();
    report.forEach(s => {
      if (s.type !== 'inbound-rtp') return;
      if (s.kind === 'video') frames += s.framesDecoded || 0;
      else samples += s.totalSamplesReceived || 0;
    });
  }
  return {frames, samples, tiles: document.querySelectorAll('#presenters video').length,
    viewers: document.querySelector('#viewers').textContent, path: document.querySelector('#path').dataset.path || '',
    gum: window.__gum, error: document.querySelector('#error').hidden ? '' : document.querySelector('#error').textContent};
})()`

type watchState struct {
	Frames  float64 `json:"frames"`
	Samples float64 `json:"samples"`
	Tiles   int     `json:"tiles"`
	Viewers string  `json:"viewers"`
	Path    string  `json:"path"`
	GUM     int     `json:"gum"`
	Error   string  `json:"error"`
}

// TestWebinarViewerPage: a viewer of a webinar room on the viewer page
// (watch.html) decodes the presenter's video and receives its audio over
// WebRTC, in one large tile, sees the viewer count, and is never asked for
// a camera or microphone. The presenter is a Pion client.
func TestWebinarViewerPage(t *testing.T) {
	srv := webinarServer(t, nil)
	room := fmt.Sprintf("webinar-%d", time.Now().UnixNano()%100000)
	presenter(t, srv, room, "host")
	p := openPageScripts(t, "viewer", fmt.Sprintf("%s/watch.html?room=%s&name=viewer1", srv.URL(), room),
		[]string{countGetUserMedia})
	var first watchState
	p.waitFor("the presenter's video and audio", func() (bool, string) {
		first = watchState{}
		_ = p.eval(readWatch, &first)
		return first.Frames > 0 && first.Samples > 0 && first.Tiles == 1 && first.Viewers == "1 viewer", fmt.Sprintf("%+v", first)
	})
	p.waitFor("more frames", func() (bool, string) {
		var st watchState
		_ = p.eval(readWatch, &st)
		return st.Frames > first.Frames+10 && st.Samples > first.Samples, fmt.Sprintf("%+v then %+v", first, st)
	})
	var st watchState
	_ = p.eval(readWatch, &st)
	if st.GUM != 0 || st.Path != "webrtc" || st.Error != "" {
		t.Errorf("viewer page: %+v (no camera request, WebRTC, no error expected)", st)
	}
}

// noWebRTC removes WebRTC from the page before it loads.
const noWebRTC = `(() => {
  for (const n of ['RTCPeerConnection', 'webkitRTCPeerConnection', 'RTCSessionDescription', 'RTCIceCandidate']) {
    try { delete window[n]; } catch (e) {}
    try { Object.defineProperty(window, n, {value: undefined, configurable: true}); } catch (e) {}
  }
})();`

// readLive reads the WebSocket path's player on the viewer page.
const readLive = `(() => {
  const v = document.querySelector('#presenters video');
  return {time: v ? v.currentTime : -1, audio: v ? (v.webkitAudioDecodedByteCount || 0) : 0,
    video: v ? (v.webkitVideoDecodedByteCount || 0) : 0, paused: v ? v.paused : true,
    path: document.querySelector('#path').dataset.path || '', label: document.querySelector('#path').textContent,
    viewers: document.querySelector('#viewers').textContent, hasRTC: typeof window.RTCPeerConnection,
    ended: !document.querySelector('#ended').hidden, replay: document.querySelector('#replay').hidden ? '' : document.querySelector('#replay').getAttribute('href'),
    error: document.querySelector('#error').hidden ? '' : document.querySelector('#error').textContent};
})()`

type liveState struct {
	Time    float64 `json:"time"`
	Audio   float64 `json:"audio"`
	Video   float64 `json:"video"`
	Paused  bool    `json:"paused"`
	Path    string  `json:"path"`
	Label   string  `json:"label"`
	Viewers string  `json:"viewers"`
	HasRTC  string  `json:"hasRTC"`
	Ended   bool    `json:"ended"`
	Replay  string  `json:"replay"`
	Error   string  `json:"error"`
}

// healthz reads the server's session and live viewer counts.
func healthz(t *testing.T, srv *server.Server) (sessions, liveViewers int) {
	t.Helper()
	resp, err := http.Get(srv.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct {
		Sessions    int `json:"sessions"`
		LiveViewers int `json:"live_viewers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h.Sessions, h.LiveViewers
}

// TestViewerPageWithoutWebRTC: the viewer page in a Chromium whose
// RTCPeerConnection is removed before the page loads plays the presenter
// over the WebSocket path (Media Source Extensions): its <video>'s
// currentTime advances and it decodes audio and video, with a label that
// says so; it stays in the room (the count). When the presenter ends the
// live the page says so, and the server holds nothing of it any more: no
// session, no WebSocket viewer.
func TestViewerPageWithoutWebRTC(t *testing.T) {
	records := t.TempDir()
	srv := webinarServer(t, func(c *server.Config) { c.RecordsDir = records })
	room := fmt.Sprintf("webinar-%d", time.Now().UnixNano()%100000)
	host := presenter(t, srv, room, "host")
	p := openPageScripts(t, "viewer", fmt.Sprintf("%s/watch.html?room=%s&name=ws-viewer", srv.URL(), room),
		[]string{noWebRTC})
	var first liveState
	p.waitFor("the presenter over the WebSocket path", func() (bool, string) {
		first = liveState{}
		_ = p.eval(readLive, &first)
		return first.Time > 0.5 && first.Audio > 0 && first.Video > 0 && first.Path == "websocket", fmt.Sprintf("%+v", first)
	})
	p.waitFor("currentTime and audio advancing", func() (bool, string) {
		var st liveState
		_ = p.eval(readLive, &st)
		return st.Time > first.Time+2 && st.Audio > first.Audio && st.Video > first.Video && !st.Paused,
			fmt.Sprintf("%+v then %+v", first, st)
	})
	var st liveState
	_ = p.eval(readLive, &st)
	if st.HasRTC != "undefined" || !strings.Contains(st.Label, "WebSocket") || st.Viewers != "1 viewer" || st.Error != "" {
		t.Errorf("viewer page: %+v", st)
	}
	if _, lv := healthz(t, srv); lv != 1 {
		t.Errorf("the server counts %d WebSocket viewers", lv)
	}

	// The end of the live: the page says so, and everything is let go.
	if err := host.Moderate(context.Background(), protocol.Moderate{Action: protocol.ActionEnd}); err != nil {
		t.Fatal(err)
	}
	var end liveState
	p.waitFor("the end of the live, with the replay", func() (bool, string) {
		end = liveState{}
		_ = p.eval(readLive, &end)
		return end.Ended && end.Replay != "", fmt.Sprintf("%+v", end)
	})
	// The replay the page offers plays: the presenter's recording.
	resp, err := http.Get(srv.URL() + end.Replay)
	if err != nil {
		t.Fatal(err)
	}
	replay := filepath.Join(t.TempDir(), "replay.webm")
	f, err := os.Create(replay)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(f, resp.Body)
	resp.Body.Close()
	f.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the replay %s: %s %v", end.Replay, resp.Status, err)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", replay).Output()
	if d, perr := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err != nil || perr != nil || d < 1.5 {
		t.Errorf("the replay: duration %q, %v", out, err)
	}
	_ = host.Close()
	p.waitFor("the server to let go of everything", func() (bool, string) {
		sessions, lv := healthz(t, srv)
		return sessions == 0 && lv == 0, fmt.Sprintf("%d sessions, %d live viewers", sessions, lv)
	})
}

// iceFails makes every peer connection of the page relay-only with no relay
// to use, as on a network that blocks UDP and TURN alike: ICE never connects.
const iceFails = `(() => {
  const Orig = window.RTCPeerConnection;
  window.RTCPeerConnection = function(cfg) {
    return new Orig({...(cfg || {}), iceServers: [], iceTransportPolicy: 'relay'});
  };
  window.RTCPeerConnection.prototype = Orig.prototype;
  Object.setPrototypeOf(window.RTCPeerConnection, Orig);
})();`

// TestViewerPageFallsBackWhenICEFails: on the viewer page WebRTC is tried
// first; when its connection does not come up (ICE fails, through TURN too)
// the page plays over the WebSocket path on its own, and says so.
func TestViewerPageFallsBackWhenICEFails(t *testing.T) {
	srv := webinarServer(t, nil)
	room := fmt.Sprintf("webinar-%d", time.Now().UnixNano()%100000)
	presenter(t, srv, room, "host")
	p := openPageScripts(t, "viewer", fmt.Sprintf("%s/watch.html?room=%s&name=blocked", srv.URL(), room),
		[]string{iceFails})
	var first liveState
	p.waitFor("the fallback to the WebSocket path", func() (bool, string) {
		first = liveState{}
		_ = p.eval(readLive, &first)
		return first.Path == "websocket" && first.Time > 0.5 && first.Video > 0, fmt.Sprintf("%+v", first)
	})
	p.waitFor("currentTime advancing", func() (bool, string) {
		var st liveState
		_ = p.eval(readLive, &st)
		return st.Time > first.Time+1 && st.Audio > first.Audio, fmt.Sprintf("%+v then %+v", first, st)
	})
	var pcs int
	_ = p.eval(`(window.__pcs || []).filter(pc => pc.connectionState !== 'closed').length`, &pcs)
	if pcs != 0 {
		t.Errorf("%d peer connections left open after the fallback", pcs)
	}
}
