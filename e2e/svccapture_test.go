//go:build svccapture

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/rtpdump"
	"github.com/parley/parley/pkg/codec"
	"github.com/parley/parley/pkg/codec/av1dd"
)

// TestCaptureSVC records what headless Chromium sends when it publishes its
// fake camera (1280x720) with three spatial and three temporal layers
// (scalabilityMode L3T3), once in VP9 and once in AV1, to a Pion peer
// connection that negotiates the AV1 dependency descriptor extension: from a
// keyframe on, a few seconds of RTP packets, each stored as its header (with
// its extensions) and the first bytes of its payload, in rtpdump files
// (internal/rtpdump). They are pkg/codec's test data (testdata/svc); to make
// them again, with the browser of the day:
//
//	PARLEY_SVC_OUT=$PWD/pkg/codec/testdata/svc flock /tmp/parley-heavy.lock \
//	  go test -tags svccapture -run TestCaptureSVC -count=1 -v ./e2e
//
// then run pkg/codec's tests: they assert what such a capture must show. Without
// PARLEY_SVC_OUT the files go to a temporary directory. It is behind a
// build tag because it only makes data: the suite tests the data.
func TestCaptureSVC(t *testing.T) {
	out := os.Getenv("PARLEY_SVC_OUT")
	if out == "" {
		out = t.TempDir()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>svc capture</title>")
	}))
	defer srv.Close()
	var notes []string
	for _, c := range []struct{ codec, file string }{{"VP9", "vp9-l3t3.rtpdump"}, {"AV1", "av1-l3t3.rtpdump"}} {
		t.Run(c.codec, func(t *testing.T) {
			notes = append(notes, captureSVC(t, srv.URL, c.codec, "L3T3", filepath.Join(out, c.file), 64, 3*time.Second, 0)...)
		})
	}
	if err := os.WriteFile(filepath.Join(out, "capture.txt"), []byte(strings.Join(notes, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCaptureSVCRecording captures what pkg/recorder's tests record: 0.8 s
// of the VP9 camera a page publishes in L3T3_KEY (the web app's mode for a
// 1280x720 camera) from a keyframe on, whole packets, at most 1 Mbit/s
// (a small file). To make it again:
//
//	PARLEY_SVC_OUT=$PWD/pkg/recorder/testdata flock /tmp/parley-heavy.lock \
//	  go test -tags svccapture -run TestCaptureSVCRecording -count=1 -v ./e2e
func TestCaptureSVCRecording(t *testing.T) {
	out := os.Getenv("PARLEY_SVC_OUT")
	if out == "" {
		out = t.TempDir()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>svc capture</title>")
	}))
	defer srv.Close()
	notes := captureSVC(t, srv.URL, "VP9", "L3T3_KEY", filepath.Join(out, "vp9-l3t3-key.rtpdump"), 0, 800*time.Millisecond, 1_000_000)
	t.Log(strings.Join(notes, "\n"))
}

// publishSVC is run in the page: it publishes the fake camera in one codec
// with one scalability mode and returns its offer, once gathered, with what
// the browser says it can do.
const publishSVC = `async (codec, mode) => {
  const caps = RTCRtpSender.getCapabilities('video');
  const modes = [];
  for (const m of ['L1T1', 'L1T2', 'L1T3', 'L2T1', 'L2T2', 'L2T3', 'L3T1', 'L3T2', 'L3T3',
      'L2T1_KEY', 'L2T2_KEY', 'L2T3_KEY', 'L3T1_KEY', 'L3T2_KEY', 'L3T3_KEY', 'S2T1', 'S2T3', 'S3T1', 'S3T3']) {
    const info = await navigator.mediaCapabilities.encodingInfo({type: 'webrtc', video: {contentType: 'video/' + codec,
      width: 1280, height: 720, bitrate: 2500000, framerate: 30, scalabilityMode: m}});
    if (info.supported) modes.push(m);
  }
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: {exact: 1280}, height: {exact: 720}, frameRate: 30}});
  const pc = new RTCPeerConnection();
  window.__svc = pc;
  const tr = pc.addTransceiver(stream.getVideoTracks()[0], {direction: 'sendonly',
    sendEncodings: [{scalabilityMode: mode}], degradationPreference: 'maintain-resolution'});
  const want = caps.codecs.filter(c => c.mimeType.toLowerCase() === 'video/' + codec.toLowerCase() &&
    (codec !== 'VP9' || (c.sdpFmtpLine || '').includes('profile-id=0')));
  if (!want.length) throw new Error('no ' + codec + ' in ' + JSON.stringify(caps.codecs));
  tr.setCodecPreferences(want);
  await pc.setLocalDescription();
  await new Promise(r => {
    if (pc.iceGatheringState === 'complete') return r();
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r());
  });
  return {sdp: pc.localDescription.sdp, modes, agent: navigator.userAgent};
}`

// senderState is the publishing side's view of its stream.
const senderState = `(async () => {
  const pc = window.__svc;
  const out = {conn: pc.connectionState, mode: pc.getSenders()[0].getParameters().encodings[0].scalabilityMode || ''};
  (await pc.getStats()).forEach(s => {
    if (s.type === 'outbound-rtp') {
      out.width = s.frameWidth || 0; out.height = s.frameHeight || 0; out.statsMode = s.scalabilityMode || '';
      out.encoder = s.encoderImplementation || ''; out.limit = s.qualityLimitationReason || ''; out.bps = s.targetBitrate || 0;
    }
  });
  return out;
})()`

type svcSender struct {
	Conn, Mode, StatsMode, Encoder, Limit string
	Width, Height, Bps                    float64
}

// captureSVC publishes the fake camera in codec with scalability mode mode
// and writes what arrives in the first span from a keyframe on to file,
// each packet's header and the first keep bytes of its payload (all of it
// when keep is 0), with the sender held to maxBitrate bit/s (0: no limit);
// it returns lines for capture.txt.
func captureSVC(t *testing.T, pageURL, codecName, mode, file string, keep int, span time.Duration, maxBitrate int) []string {
	const ddURI = av1dd.URI
	p := openPage(t, "svc-"+codecName, pageURL)
	var offer struct {
		SDP   string   `json:"sdp"`
		Modes []string `json:"modes"`
		Agent string   `json:"agent"`
	}
	if err := p.eval(fmt.Sprintf("(%s)(%q, %q)", publishSVC, codecName, mode), &offer); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if maxBitrate > 0 {
		if err := p.eval(fmt.Sprintf(`(async () => { const s = window.__svc.getSenders()[0]; const p = s.getParameters();
			p.encodings[0].maxBitrate = %d; await s.setParameters(p); return true; })()`, maxBitrate), nil); err != nil {
			t.Fatalf("maxBitrate: %v", err)
		}
	}
	notes := []string{"# " + codecName + ": " + offer.Agent,
		fmt.Sprintf("%s scalability modes the browser supports at 1280x720 (mediaCapabilities.encodingInfo): %s",
			codecName, strings.Join(offer.Modes, " "))}
	if !strings.Contains(offer.SDP, ddURI) {
		t.Errorf("the offer has no dependency descriptor extension")
	}

	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: ddURI}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	record := make(chan struct{})
	var (
		mu     sync.Mutex
		stored []rtpdump.Packet
		start  time.Time
		mime   string
	)
	readerDone := make(chan struct{}) // the offer has one track: one reader
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		defer close(readerDone)
		mu.Lock()
		mime = tr.Codec().MimeType
		mu.Unlock()
		buf := make([]byte, 1500)
		keyed := false
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			select {
			case <-record:
			default:
				continue
			}
			var h rtp.Header
			hl, err := h.Unmarshal(buf[:n])
			if err != nil {
				continue
			}
			if !keyed {
				if !codec.IsKeyframe(tr.Codec().MimeType, buf[hl:n]) {
					continue
				}
				keyed = true
			}
			mu.Lock()
			if start.IsZero() {
				start = time.Now()
			}
			if time.Since(start) < span {
				end := n
				if keep > 0 {
					end = min(n, hl+keep)
				}
				stored = append(stored, rtpdump.Packet{Data: append([]byte(nil), buf[:end]...), Len: n, At: time.Since(start)})
			}
			mu.Unlock()
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.SDP}); err != nil {
		t.Fatal(err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	sdp := pc.LocalDescription().SDP
	if err := p.eval(fmt.Sprintf("window.__svc.setRemoteDescription({type: 'answer', sdp: %q}).then(() => true)", sdp), nil); err != nil {
		t.Fatalf("answer: %v", err)
	}

	// Wait for the top layer at full size (the browser starts low and
	// climbs as the transport-wide feedback lets it).
	var s svcSender
	for ctx.Err() == nil {
		if err := p.eval(senderState, &s); err != nil {
			t.Fatal(err)
		}
		if s.Width >= 1280 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if ctx.Err() != nil {
		t.Fatalf("the browser's stream did not reach 1280 wide: %+v", s)
	}
	t.Logf("sender: %+v", s)
	time.Sleep(2 * time.Second) // its layers settle
	close(record)
	// A keyframe to start the capture on (with VP9's SS, AV1's structure).
	for _, r := range pc.GetReceivers() {
		if tr := r.Track(); tr != nil {
			_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}})
		}
	}
	for ctx.Err() == nil {
		mu.Lock()
		done := !start.IsZero() && time.Since(start) > span+500*time.Millisecond
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := p.eval(senderState, &s); err != nil {
		t.Fatal(err)
	}
	pc.Close()
	select {
	case <-readerDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the track's reader did not end with the peer connection")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(stored) < 50 {
		t.Fatalf("%d packets stored from a keyframe on", len(stored))
	}
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	w, err := rtpdump.NewWriter(f, "127.0.0.1/0", start)
	if err == nil {
		for _, sp := range stored {
			if err = w.Write(sp); err != nil {
				break
			}
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d packets of %s to %s; sender after: %+v", codecName, len(stored), mime, file, s)
	layers := spatialLayersIn(t, codecName, stored, pc.LocalDescription().SDP)
	if layers != 3 {
		t.Errorf("%s: the capture has %d spatial layers, want 3", codecName, layers)
	}
	for _, line := range strings.Split(pc.LocalDescription().SDP, "\r\n") {
		if strings.HasPrefix(line, "a=extmap:") {
			notes = append(notes, codecName+" "+line)
		}
	}
	return append(notes, fmt.Sprintf("%s: asked %s, sender has %q (stats %q), encoder %s, %gx%g, target %g bit/s, limited by %q; %d packets in %s",
		codecName, mode, s.Mode, s.StatsMode, s.Encoder, s.Width, s.Height, s.Bps, s.Limit, len(stored), filepath.Base(file)))
}

// spatialLayersIn counts the spatial layers of stored packets: VP9's layer
// indices, AV1's dependency descriptors (found by the answer's extmap).
func spatialLayersIn(t *testing.T, codecName string, stored []rtpdump.Packet, answer string) int {
	ddID := 0
	for _, line := range strings.Split(answer, "\r\n") {
		if strings.HasSuffix(line, " "+av1dd.URI) {
			fmt.Sscanf(line, "a=extmap:%d", &ddID)
		}
	}
	seen := map[uint8]bool{}
	var dd av1dd.Reader
	for _, sp := range stored {
		var pkt rtp.Packet
		if err := pkt.Unmarshal(sp.Data); err != nil {
			t.Fatalf("stored packet: %v", err)
		}
		if len(pkt.Payload) == 0 {
			continue // padding
		}
		switch codecName {
		case "VP9":
			if d, ok := codec.ParseVP9(pkt.Payload); ok && d.HasTID {
				seen[d.SID] = true
			}
		case "AV1":
			if d, err := dd.Read(pkt.GetExtension(uint8(ddID))); err == nil {
				seen[d.Spatial] = true
			}
		}
	}
	return len(seen)
}
