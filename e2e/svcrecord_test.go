package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/mixer"
)

// pageVideoOut is what a page's camera sender says of itself (outbound-rtp).
type pageVideoOut struct {
	Mode    string  `json:"mode"`
	Codec   string  `json:"codec"`
	Width   float64 `json:"width"`
	Height  float64 `json:"height"`
	Encoded float64 `json:"encoded"`
	Sent    float64 `json:"sent"`
	Keys    float64 `json:"keys"`
	FPS     float64 `json:"fps"`
}

// readPageVideoOut reads the page's camera sender statistics.
const readPageVideoOut = `(async () => {
  const cam = window.parley.room.getLocalStreams().find(s => s.kind() === 'camera');
  const r = {mode: '', codec: '', width: 0, height: 0, encoded: 0, sent: 0, keys: 0, fps: 0};
  if (!cam || !cam.getPeerConnection()) return r;
  const st = await cam.getPeerConnection().getStats();
  st.forEach(s => { if (s.type === 'outbound-rtp' && s.kind === 'video') {
    r.mode = s.scalabilityMode || ''; r.width = s.frameWidth || 0; r.height = s.frameHeight || 0;
    r.encoded = s.framesEncoded || 0; r.sent = s.framesSent || 0; r.keys = s.keyFramesEncoded || 0;
    r.fps = s.framesPerSecond || 0;
    const c = st.get(s.codecId); r.codec = c ? c.mimeType : ''; } });
  return r; })()`

// decodedFrame is one frame ffprobe decoded.
type decodedFrame struct {
	pts  float64
	w, h int
}

// decodeFrames decodes a file's video with ffprobe and returns its frames.
func decodeFrames(t *testing.T, path string) []decodedFrame {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time,width,height",
		"-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var r struct {
		Frames []struct {
			PTS    string `json:"pts_time"`
			Width  int    `json:"width"`
			Height int    `json:"height"`
		} `json:"frames"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	frames := make([]decodedFrame, 0, len(r.Frames))
	for _, f := range r.Frames {
		pts, _ := strconv.ParseFloat(f.PTS, 64)
		frames = append(frames, decodedFrame{pts: pts, w: f.Width, h: f.Height})
	}
	return frames
}

// videoDecodeErrors decodes a file's video with ffmpeg and returns what it
// says at level error (nothing for a clean file). The null output keeps the
// file's time base (-enc_time_base -1): with the one ffmpeg guesses from the
// frame rate (a camera's 20 fps, say), two frames of a browser's
// variable-rate video 40 ms apart can fall on one tick, which the null
// muxer reports as an error though every frame decoded.
func videoDecodeErrors(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:v", "-enc_time_base", "-1",
		"-f", "null", "-").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("ffmpeg: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// videoKeyPackets counts a file's video packets flagged as keyframes, and
// says whether the first is.
func videoKeyPackets(t *testing.T, path string) (keys int, first bool) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=flags",
		"-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	for i, line := range strings.Fields(string(out)) {
		if strings.Contains(line, "K") {
			keys++
			if i == 0 {
				first = true
			}
		}
	}
	return keys, first
}

// playFile is run in a page: a <video> plays src for a second, then seeks
// to its middle and plays a second more; it returns the video's size, the
// frames it decoded and those corrupt, its duration, where the seek landed
// and where playing went from there.
const playFile = `(async (src) => {
	const v = document.createElement('video');
	v.muted = true;
	document.body.append(v);
	const next = (name) => new Promise((resolve, reject) => {
		const t = setTimeout(() => reject(new Error('no ' + name + ' event')), 20000);
		v.addEventListener(name, () => { clearTimeout(t); resolve(); }, {once: true});
		v.addEventListener('error', () => { clearTimeout(t); reject(new Error('media error ' + (v.error && v.error.code) + ' ' + (v.error && v.error.message))); }, {once: true});
	});
	const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
	try {
		v.src = src;
		await next('loadeddata');
		await v.play();
		await sleep(1000);
		const duration = v.duration;
		v.currentTime = duration / 2;
		await next('seeked');
		const at = v.currentTime;
		await sleep(1000);
		const q = v.getVideoPlaybackQuality();
		const res = {width: v.videoWidth, height: v.videoHeight, frames: q.totalVideoFrames, corrupt: q.corruptedVideoFrames,
			duration, at, then: v.currentTime};
		v.remove();
		return res;
	} catch (e) {
		return {err: String(e)};
	}
})`

// download GETs url into a file in dir.
func download(t *testing.T, url, dir, name string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRecordVP9SpatialLayersFromBrowser: Chromium publishes its fake camera
// (1280x720) in VP9 through the web app (?codec=VP9) into a recorded room;
// the page says it sends L3T3_KEY (three spatial layers, three temporal)
// at 1280x720. The server's file of the stream holds the top spatial
// layer: the manifest gives 1280x720, every decoded frame is 1280x720 but
// the page's one-layer start, ffmpeg decodes it without an error, it has
// one frame for each picture the page sent (not one per layer), it lasts
// as long as the session, and Chromium plays it at 1280x720 and seeks in
// it; the offline mix holds the video, as long.
func TestRecordVP9SpatialLayersFromBrowser(t *testing.T) {
	recordSVCFromBrowser(t, "VP9")
}

// TestRecordAV1SpatialLayersFromBrowser is the same with AV1 (?codec=AV1),
// which the web app also publishes in L3T3_KEY.
func TestRecordAV1SpatialLayersFromBrowser(t *testing.T) {
	recordSVCFromBrowser(t, "AV1")
}

// recordSVCFromBrowser records a page publishing its camera in codec (VP9
// or AV1) with spatial layers, and checks the recording.
func recordSVCFromBrowser(t *testing.T, codec string) {
	srv, dir, admin := recordingMixServer(t)
	room := fmt.Sprintf("svcrec%d", time.Now().UnixNano()%100000)
	p := openPage(t, "A", fmt.Sprintf("%s/?room=%s&name=A&codec=%s&record=1", srv.URL(), room, codec))
	p.waitFor("the REC mark", func() (bool, string) {
		var rec bool
		_ = p.eval(`(() => { const r = document.querySelector('#rec'); return !!r && !r.hidden; })()`, &rec)
		return rec, fmt.Sprint(rec)
	})
	// The page sends codec in L3T3_KEY, its top layer at the capture's size.
	var out pageVideoOut
	p.waitFor(codec+" in L3T3_KEY at 1280x720", func() (bool, string) {
		if err := p.eval(readPageVideoOut, &out); err != nil {
			return false, err.Error()
		}
		return strings.EqualFold(out.Codec, "video/"+codec) && out.Mode == "L3T3_KEY" && out.Width == 1280 && out.Height == 720,
			fmt.Sprintf("%+v", out)
	})
	reached := time.Now() // the page said so by then
	t.Logf("the page sends: %+v", out)
	time.Sleep(8 * time.Second)
	if err := p.eval(readPageVideoOut, &out); err != nil {
		t.Fatal(err)
	}
	t.Logf("the page sent, before leaving: %+v", out)
	if out.Mode != "L3T3_KEY" || out.Width != 1280 {
		t.Fatalf("the page no longer sends L3T3_KEY at 1280 wide: %+v", out)
	}
	p.click("#leave")

	rec := mixedRecording(t, srv, admin, "in /api/recordings")
	if rec.State != "finished" || len(rec.Streams) != 1 {
		t.Fatalf("recording %+v: want one finished stream", rec)
	}
	tmp := t.TempDir()
	file := download(t, srv.URL()+rec.Streams[0].URL, tmp, "camera.webm")
	if d := os.Getenv("PARLEY_SVCREC_DIR"); d != "" {
		_ = os.MkdirAll(d, 0o755)
		if b, err := os.ReadFile(file); err == nil {
			_ = os.WriteFile(filepath.Join(d, "camera.webm"), b, 0o644)
		}
	}

	// The manifest gives the track the top layer's size.
	var man struct {
		Streams []struct {
			Tracks []struct {
				Kind          string
				Width, Height int
			}
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rec.Path), "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &man); err != nil {
		t.Fatal(err)
	}
	for _, st := range man.Streams {
		for _, tr := range st.Tracks {
			if tr.Kind == "video" && (tr.Width != 1280 || tr.Height != 720) {
				t.Errorf("the manifest's video track is %dx%d; want 1280x720", tr.Width, tr.Height)
			}
		}
	}

	// Every frame decodes, one a picture, at the top layer's size: from the
	// first on that is. Chromium starts an SVC stream as one 320x180
	// layer (its scalability structure says one layer) for a picture or
	// two, until its bandwidth estimate allows all three; the frames of
	// that start come before the page said it sent 1280x720 (the file's
	// times are on the room's time line, from the session's start).
	startEnd := reached.Sub(rec.Start).Seconds()
	frames := decodeFrames(t, file)
	sizes := map[string]int{}
	top := -1
	var wrong []string
	for i, f := range frames {
		size := fmt.Sprintf("%dx%d", f.w, f.h)
		sizes[size]++
		switch {
		case size == "1280x720":
			if top < 0 {
				top = i
			}
		case top >= 0 || f.pts > startEnd:
			wrong = append(wrong, fmt.Sprintf("%s at %.3f s", size, f.pts))
		}
	}
	kinds, dur := ffprobeStreams(t, file)
	t.Logf("the file: %v, %.2f s, %d frames decoded (%.1f a second), sizes %v, the first 1280x720 at %d (%.3f s; the page said it sent 1280x720 by %.3f s); the session %.2f s",
		kinds, dur, len(frames), float64(len(frames))/dur, sizes, top, frames[max(top, 0)].pts, startEnd, float64(rec.DurationMs)/1000)
	if top < 0 || len(wrong) > 0 {
		t.Errorf("%d frames decoded, the first 1280x720 at %d; not 1280x720 after it or after the page said it sent 1280x720 (%.2f s): %v",
			len(frames), top, startEnd, wrong)
	}
	if msg := videoDecodeErrors(t, file); msg != "" {
		t.Errorf("ffmpeg decoding the file's video says:\n%s", msg)
	}
	// The blocks flagged as keyframes (where a player may start) are the
	// page's keyframes, the first block one of them.
	keys, firstKey := videoKeyPackets(t, file)
	t.Logf("%d blocks flagged as keyframes; the page encoded %.0f keyframes", keys, out.Keys)
	if !firstKey || keys < 1 || float64(keys) > out.Keys {
		t.Errorf("%d video blocks flagged as keyframes (the first: %v); the page encoded %.0f keyframes", keys, firstKey, out.Keys)
	}
	// Chromium counts each spatial layer's frame as a frame sent: a
	// picture of L3T3_KEY is three.
	pictures := out.Sent / 3
	if n := float64(len(frames)); math.Abs(n-pictures) > max(5, 0.05*pictures) {
		t.Errorf("%d frames decoded; the page sent %.0f layer frames, %.0f pictures (want within 5%% of them)", len(frames), out.Sent, pictures)
	}
	if want := float64(rec.DurationMs) / 1000; math.Abs(dur-want) > 0.5 {
		t.Errorf("the file lasts %.2f s, the session %.2f s", dur, want)
	}

	// Chromium plays the file: at 1280x720, no frame corrupt, and it
	// seeks to the middle and plays on from there.
	var play struct {
		Width, Height      float64
		Frames, Corrupt    float64
		Duration, At, Then float64
		Err                string
	}
	if err := p.eval(playFile+"("+jsString(srv.URL()+rec.Streams[0].URL)+")", &play); err != nil {
		t.Fatal(err)
	}
	t.Logf("Chromium plays the file: %+v", play)
	if play.Err != "" || play.Width != 1280 || play.Height != 720 || play.Frames < 10 || play.Corrupt > 0 ||
		math.Abs(play.At-play.Duration/2) > 0.5 || play.Then <= play.At {
		t.Errorf("Chromium plays the file: %+v; want 1280x720, frames and none corrupt, a seek to the middle and playing on", play)
	}

	// The offline mix has the video.
	if rec.Mix.Status != mixer.StatusDone {
		t.Fatalf("the mix failed: %s", rec.Mix.Error)
	}
	mix := download(t, srv.URL()+rec.Mix.URL, tmp, "mix.mp4")
	mixKinds, mixDur := ffprobeStreams(t, mix)
	mixFrames := decodeFrames(t, mix)
	t.Logf("the mix: %v, %.2f s, %d frames", mixKinds, mixDur, len(mixFrames))
	if !strings.Contains(strings.Join(mixKinds, ","), "video") || len(mixFrames) == 0 {
		t.Errorf("the mix has streams %v and %d video frames; want its video", mixKinds, len(mixFrames))
	}
	if msg := videoDecodeErrors(t, mix); msg != "" {
		t.Errorf("ffmpeg decoding the mix's video says:\n%s", msg)
	}
	if want := float64(rec.DurationMs) / 1000; math.Abs(mixDur-want) > 0.5 {
		t.Errorf("the mix lasts %.2f s, the session %.2f s", mixDur, want)
	}
}
