package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/server"
)

// makeFlashBeepClip writes a 4 s clip for Chromium's fake devices: black
// video that turns white for 100 ms at 0.5 s of every second (y4m, 30 fps)
// and a 1 kHz beep over exactly the same 100 ms (WAV, 48 kHz). Chromium loops
// both files.
func makeFlashBeepClip(t *testing.T) (y4m, wav string) {
	t.Helper()
	dir := t.TempDir()
	y4m, wav = filepath.Join(dir, "clip.y4m"), filepath.Join(dir, "clip.wav")
	ffmpeg(t, "-f", "lavfi", "-i",
		"color=c=black:s=320x240:r=30,format=yuv420p,geq=lum='if(between(mod(T,1),0.5,0.59),235,16)':cb=128:cr=128",
		"-t", "4", "-pix_fmt", "yuv420p", y4m)
	ffmpeg(t, "-f", "lavfi", "-i",
		"aevalsrc='if(between(mod(t,1),0.5,0.6),0.7*sin(2*PI*1000*t),0)':s=48000:c=mono",
		"-t", "4", "-c:a", "pcm_s16le", wav)
	return y4m, wav
}

func ffmpeg(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffmpeg", append([]string{"-nostdin", "-hide_banner", "-y", "-loglevel", "info"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// flash is where a file's video turns white, and for how many frames.
type flash struct {
	at     float64
	frames int
}

// flashTimes returns the flashes of a file's video.
func flashTimes(t *testing.T, file string) []flash {
	out := ffmpeg(t, "-copyts", "-i", file, "-an", "-vf", "signalstats,metadata=mode=print:key=lavfi.signalstats.YAVG", "-f", "null", "-")
	re := regexp.MustCompile(`pts_time:([0-9.]+)[\s\S]*?YAVG=([0-9.]+)`)
	var res []flash
	white := false
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		ts, _ := strconv.ParseFloat(m[1], 64)
		y, _ := strconv.ParseFloat(m[2], 64)
		switch {
		case y > 128 && !white:
			res = append(res, flash{at: ts, frames: 1})
		case y > 128:
			res[len(res)-1].frames++
		}
		white = y > 128
	}
	return res
}

// beepTimes returns the times at which a file's audio turns loud.
func beepTimes(t *testing.T, file string) []float64 {
	out := ffmpeg(t, "-copyts", "-i", file, "-vn", "-af", "silencedetect=noise=-30dB:d=0.3", "-f", "null", "-")
	re := regexp.MustCompile(`silence_end: ([0-9.]+)`)
	var res []float64
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		res = append(res, v)
	}
	return res
}

// avEvents are a file's flashes and beep onsets.
type avEvents struct {
	flashes []flash
	beeps   []float64
}

func readAVEvents(t *testing.T, file string) avEvents {
	ev := avEvents{flashTimes(t, file), beepTimes(t, file)}
	t.Logf("%s: %d flashes, beeps at %v", filepath.Base(file), len(ev.flashes), round3(ev.beeps))
	return ev
}

// offsetAt is how much later the sound comes than the picture at flash f:
// the nearest beep onset minus f.
func (e avEvents) offsetAt(f float64) (float64, bool) {
	best := math.Inf(1)
	for _, b := range e.beeps {
		if d := b - f; math.Abs(d) < math.Abs(best) {
			best = d
		}
	}
	return best, !math.IsInf(best, 0)
}

// syncDifferences pairs each flash of the reference file with the same
// flash in the other file (at shift seconds later on its time line, give or
// take 0.4 s, and as many white frames: a flash whose first frame the
// encoder dropped starts a frame late) and returns, per pair, how much later
// the sound comes relative to the picture in the other file than in the
// reference.
func syncDifferences(t *testing.T, ref, other avEvents, shift float64) []float64 {
	var ds []float64
	for _, f := range ref.flashes {
		ro, ok := ref.offsetAt(f.at)
		if !ok {
			continue
		}
		for _, g := range other.flashes {
			if math.Abs(g.at-(f.at+shift)) > 0.4 {
				continue
			}
			oo, ok := other.offsetAt(g.at)
			if !ok {
				continue
			}
			if g.frames != f.frames {
				t.Logf("flash at %.3f s: %d white frames, %d in the reference: not compared", g.at, g.frames, f.frames)
				continue
			}
			d := oo - ro
			ds = append(ds, d)
			t.Logf("flash at %.3f s (sound %+.1f ms) and at %.3f s (sound %+.1f ms): %+.1f ms", f.at, ro*1000, g.at, oo*1000, d*1000)
		}
	}
	return ds
}

func round3(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = math.Round(x*1000) / 1000
	}
	return out
}

// TestLipSyncOfBrowserRecording: Chromium publishes a flash-and-beep clip
// (its fake camera and microphone) into a recorded room and records the same
// capture with the page's own MediaRecorder. At every flash found in both
// files, the audio-video offset of the server's file (fetched through the
// signed URL an admin token gets) differs from the MediaRecorder file's by
// at most 20 ms.
func TestLipSyncOfBrowserRecording(t *testing.T) {
	y4m, wav := makeFlashBeepClip(t)
	dir := t.TempDir()
	key := auth.Key{ID: "e2e", Secret: []byte("e2e-secret-e2e-secret-e2e-secret-e2e")}
	verifier, err := auth.NewVerifier([]auth.Key{key}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := auth.Sign(key, auth.Spec{Identity: "admin", Grants: auth.MustParseGrants("admin"), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, func(c *server.Config) {
		c.RecordsDir = dir
		c.Rooms.IdleTimeout = time.Second
		c.Auth.Tokens = verifier
	})
	room := fmt.Sprintf("sync%d", time.Now().UnixNano()%100000)
	p := openPage(t, "A", fmt.Sprintf("%s/?room=%s&name=A&record=1", srv.URL(), room),
		chromedp.Flag("use-file-for-fake-video-capture", y4m),
		chromedp.Flag("use-file-for-fake-audio-capture", wav))
	p.waitFor("the REC mark", func() (bool, string) {
		var rec bool
		_ = p.eval(`(() => { const r = document.querySelector('#rec'); return !!r && !r.hidden; })()`, &rec)
		return rec, fmt.Sprint(rec)
	})
	// The REC mark comes with the join; the capture comes when the camera
	// opens, which may be later.
	p.waitFor("the page's own capture", func() (bool, string) {
		var live int
		_ = p.eval(`(() => { const ms = document.querySelector('#local video').srcObject;
			return ms instanceof MediaStream ? ms.getTracks().filter((t) => t.readyState === 'live').length : -1; })()`, &live)
		return live >= 2, fmt.Sprintf("%d live tracks", live)
	})
	// The page records its own capture, the stream it publishes, with its
	// audio as PCM: Chromium's MediaRecorder stamps each 60 ms Opus packet
	// it makes with the capture time of the packet's last 10 ms, which puts
	// the sound of an Opus recording about 50 ms late (docs/recording.md).
	var mrStart float64
	if err := p.eval(`(() => {
		const ms = document.querySelector('#local video').srcObject;
		const rec = new MediaRecorder(ms, {mimeType: 'video/webm;codecs=vp8,pcm'});
		window.__chunks = [];
		rec.ondataavailable = (e) => window.__chunks.push(e.data);
		rec.start(1000);
		window.__rec = rec;
		return Date.now();
	})()`, &mrStart); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	var b64 string
	if err := p.eval(`new Promise((resolve) => {
		window.__rec.onstop = async () => {
			const buf = new Uint8Array(await new Blob(window.__chunks, {type: 'video/webm'}).arrayBuffer());
			let s = '';
			for (let i = 0; i < buf.length; i += 0x8000) s += String.fromCharCode(...buf.subarray(i, i + 0x8000));
			resolve(btoa(s));
		};
		window.__rec.stop();
	})`, &b64); err != nil {
		t.Fatal(err)
	}
	local, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	localFile := filepath.Join(t.TempDir(), "mediarecorder.webm")
	if err := os.WriteFile(localFile, local, 0o644); err != nil {
		t.Fatal(err)
	}
	p.click("#leave")

	// The server's file, through the admin token's signed URL.
	var rec apiRecording
	deadline := time.Now().Add(time.Minute)
	for {
		var list []apiRecording
		getJSON(t, srv.URL()+"/api/recordings", admin, &list)
		if len(list) == 1 && list[0].State == "finished" && len(list[0].Streams) == 1 {
			rec = list[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished recording: %+v", list)
		}
		time.Sleep(300 * time.Millisecond)
	}
	resp, err := http.Get(srv.URL() + rec.Streams[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	serverFile := filepath.Join(t.TempDir(), "server.webm")
	f, _ := os.Create(serverFile)
	_, _ = io.Copy(f, resp.Body)
	f.Close()
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET the stream's file: %s", resp.Status)
	}

	// The MediaRecorder file starts when it was started; the server's at the
	// room's start.
	shift := time.UnixMilli(int64(mrStart)).Sub(rec.Start).Seconds()
	diffs := syncDifferences(t, readAVEvents(t, localFile), readAVEvents(t, serverFile), shift)
	if len(diffs) < 6 {
		t.Fatalf("%d flashes compared, want 6 or more", len(diffs))
	}
	sorted := slices.Sorted(slices.Values(diffs))
	worst := sorted[0]
	if -sorted[0] < sorted[len(sorted)-1] {
		worst = sorted[len(sorted)-1]
	}
	t.Logf("the server's file has the sound later relative to the picture than the page's MediaRecorder by %+.1f ms at the first flash, %+.1f ms at the last, median %+.1f ms, worst %+.1f ms (%d flashes)",
		diffs[0]*1000, diffs[len(diffs)-1]*1000, sorted[len(sorted)/2]*1000, worst*1000, len(diffs))
	if math.Abs(worst) > 0.020 {
		t.Errorf("the server's file has the sound %+.1f ms later relative to the picture than the page's MediaRecorder at worst; want within ±20 ms at every flash", worst*1000)
	}
	if d := os.Getenv("PARLEY_LIPSYNC_DIR"); d != "" {
		_ = os.MkdirAll(d, 0o755)
		for _, f := range []string{localFile, serverFile} {
			if b, err := os.ReadFile(f); err == nil {
				_ = os.WriteFile(filepath.Join(d, filepath.Base(f)), b, 0o644)
			}
		}
	}
}
