package e2e

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/mixer"
	"github.com/parley/parley/pkg/recorder"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/testmedia"
)

// feedStream records from..to of the session's time line into w: VP8 and
// Opus from files, packetized as a WebRTC sender does, arriving 20 ms after
// capture (audio once its 20 ms are captured), as fast as the writer takes
// them (the session's Options.BlockWhenFull).
func feedStream(t *testing.T, w *recorder.StreamWriter, start time.Time, from, to time.Duration, video, audio client.Source) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(from), 7))
	pack := func(pay rtp.Payloader, clock uint32) rtp.Packetizer {
		return rtp.NewPacketizerWithOptions(1200, pay, rtp.NewRandomSequencer(), clock,
			rtp.WithSSRC(rng.Uint32()), rtp.WithPayloadType(96), rtp.WithTimestamp(rng.Uint32()))
	}
	type track struct {
		src   client.Source
		pk    rtp.Packetizer
		clock int64
		at    time.Duration
		audio bool
	}
	tracks := []*track{
		{src: video, pk: pack(&codecs.VP8Payloader{EnablePictureID: true}, 90000), clock: 90000, at: from},
		{src: audio, pk: pack(&codecs.OpusPayloader{}, 48000), clock: 48000, at: from, audio: true},
	}
	for {
		tr, i := tracks[0], 0
		if tracks[1].at < tr.at {
			tr, i = tracks[1], 1
		}
		if tr.at >= to {
			return
		}
		data, dur, err := tr.src.Next()
		if err != nil {
			t.Fatal(err)
		}
		arrival := start.Add(tr.at + 20*time.Millisecond)
		if tr.audio {
			arrival = arrival.Add(dur)
		}
		for _, p := range tr.pk.Packetize(data, uint32(int64(dur)*tr.clock/int64(time.Second))) {
			w.WriteRTP(i, p, arrival)
		}
		tr.at += dur
	}
}

// copyDir copies the files of a directory tree.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if info.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// seekResult is what a <video> did when seeked to the middle of its media.
type seekResult struct {
	Start, End float64 // the seekable range
	Target     float64
	At         float64 // currentTime when seeked fired
	Ready      int     // readyState then
	Later      float64 // currentTime after playing a second from there
	SeekMs     float64 // from setting currentTime to seeked (informative)
	Err        string
}

const seekVideo = `(async (src) => {
	const v = document.createElement('video');
	v.muted = true;
	v.preload = 'metadata';
	document.body.append(v);
	const next = (name) => new Promise((resolve, reject) => {
		const t = setTimeout(() => reject(new Error('no ' + name + ' event')), 20000);
		v.addEventListener(name, () => { clearTimeout(t); resolve(); }, {once: true});
		v.addEventListener('error', () => { clearTimeout(t); reject(new Error('media error ' + (v.error && v.error.code) + ' ' + (v.error && v.error.message))); }, {once: true});
	});
	try {
		v.src = src;
		await next('loadedmetadata');
		const start = v.seekable.length ? v.seekable.start(0) : 0, end = v.seekable.length ? v.seekable.end(0) : 0;
		const target = (start + end) / 2;
		const t0 = performance.now();
		v.currentTime = target;
		await next('seeked');
		const res = {start, end, target, at: v.currentTime, ready: v.readyState, seekMs: performance.now() - t0};
		await v.play();
		await new Promise((r) => setTimeout(r, 1000));
		res.later = v.currentTime;
		v.pause();
		v.remove();
		return res;
	} catch (e) {
		return {err: String(e)};
	}
})`

// TestSeekInBrowser: a recorded session of 4 minutes, A's stream closed by
// the recorder, B's cut by a crash (the files copied while B recorded) and
// finished by the server's Recover at start-up, then mixed: a <video> in
// headless Chromium loads each stream's file and the mix through the signed
// URLs an admin token gets, seeks to the middle (the seeked event fires and
// currentTime is the target) and plays on from there.
func TestSeekInBrowser(t *testing.T) {
	const length = 4 * time.Minute
	media := filepath.Join(os.TempDir(), "parley-testmedia")
	ivf, err := testmedia.VP8IVF(media, testmedia.Options{Duration: 2 * time.Second, Width: 160, Height: 120, FPS: 15, Bitrate: 150_000})
	if err != nil {
		t.Fatal(err)
	}
	ogg, err := testmedia.OpusOgg(media, testmedia.Options{Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sources := func() (client.Source, client.Source) {
		v, err := client.NewIVFSource(ivf, true)
		if err != nil {
			t.Fatal(err)
		}
		a, err := client.NewOpusSource(ogg, true)
		if err != nil {
			t.Fatal(err)
		}
		return v, a
	}

	// The recording, made by the recorder as the server would.
	work := t.TempDir()
	start := time.Now().Add(-length - time.Minute).Truncate(time.Millisecond)
	sess, err := recorder.StartSession(work, "seek room", "rs-seek", start,
		recorder.Options{BlockWhenFull: true, QueueSize: 256, IdleFlush: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tracks := []recorder.TrackInfo{{Kind: "video", MimeType: "video/VP8"}, {Kind: "audio", MimeType: "audio/opus"}}
	wa, err := sess.AddStream(recorder.StreamInfo{Participant: "A", StreamID: "a", Kind: "camera", Tracks: tracks})
	if err != nil {
		t.Fatal(err)
	}
	wb, err := sess.AddStream(recorder.StreamInfo{Participant: "B", StreamID: "b", Kind: "camera", Tracks: tracks})
	if err != nil {
		t.Fatal(err)
	}
	v, a := sources()
	feedStream(t, wa, start, 0, length, v, a)
	v, a = sources()
	feedStream(t, wb, start, length/4, length, v, a)
	if err := wa.Close(); err != nil {
		t.Fatal(err)
	}
	// B's writer writes out what it holds once idle; then the session is
	// copied as a crash would leave it: B still recording, without index.
	time.Sleep(time.Second)
	records := t.TempDir()
	copyDir(t, filepath.Join(work, recorder.SafeName("seek room")), filepath.Join(records, recorder.SafeName("seek room")))
	if err := sess.Close(time.Time{}); err != nil {
		t.Fatal(err)
	}
	// B's file as the crash left it, without index, for comparison.
	crashed := filepath.Join(t.TempDir(), "crashed.webm")
	copyDir(t, filepath.Join(records, recorder.SafeName("seek room"), "rs-seek", filepath.Base(wb.File())), crashed)

	key := auth.Key{ID: "e2e", Secret: []byte("e2e-secret-e2e-secret-e2e-secret-e2e")}
	verifier, err := auth.NewVerifier([]auth.Key{key}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := auth.Sign(key, auth.Spec{Identity: "admin", Grants: auth.MustParseGrants("admin"), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	settings := mixer.DefaultSettings()
	settings.Width, settings.Height, settings.FrameRate = 320, 180, 10
	srv := startServer(t, func(c *server.Config) {
		c.RecordsDir = records
		c.Mix = &server.MixConfig{Settings: settings, Workers: 1}
		c.Auth.Tokens = verifier
	})
	rec := mixedRecording(t, srv, admin, "of the recovered session")
	if rec.Mix.Status != mixer.StatusDone || len(rec.Streams) != 2 {
		t.Fatalf("recording %+v", rec)
	}
	urls := map[string]string{"mix": rec.Mix.URL}
	for _, s := range rec.Streams {
		urls[s.Participant] = s.URL
	}

	// ffprobe: a seek to the middle of each file (fetched through its signed
	// URL) reads a few percent of it; B's file as the crash left it, half.
	dl := t.TempDir()
	for _, name := range []string{"A", "B", "mix"} {
		resp, err := http.Get(srv.URL() + urls[name])
		if err != nil {
			t.Fatal(err)
		}
		f, _ := os.Create(filepath.Join(dl, name))
		_, err = io.Copy(f, resp.Body)
		resp.Body.Close()
		f.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s's file: %v %s", name, err, resp.Status)
		}
	}
	mid, midB := length.Seconds()/2, (length/4+length).Seconds()/2 // B records from length/4
	for _, c := range []struct {
		name, path string
		at, max    float64
	}{
		{"A", filepath.Join(dl, "A"), mid, 0.05}, {"B", filepath.Join(dl, "B"), midB, 0.05}, {"mix", filepath.Join(dl, "mix"), mid, 0.05},
		{"B before Recover", crashed, midB, 0},
	} {
		st, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		pts, read := ffprobeSeek(t, c.path, c.at)
		t.Logf("ffprobe: a seek to %.0f s of %s (%.1f MB) starts at %.3f s, %d bytes read (%.1f %%)",
			c.at, c.name, float64(st.Size())/1e6, pts, read, 100*float64(read)/float64(st.Size()))
		if pts > c.at+0.001 || pts < c.at-2 {
			t.Errorf("%s: the seek to %.0f s starts at %.3f s", c.name, c.at, pts)
		}
		switch {
		case c.max > 0 && float64(read) > c.max*float64(st.Size()):
			t.Errorf("%s: the seek read %d of %d bytes, want at most %.0f %%", c.name, read, st.Size(), 100*c.max)
		case c.max == 0 && float64(read) < 0.3*float64(st.Size()):
			t.Errorf("%s: without an index the seek read only %d of %d bytes: the measurement cannot tell", c.name, read, st.Size())
		}
	}

	p := openPage(t, "player", srv.URL()+"/recordings.html")
	for _, name := range []string{"A", "B", "mix"} {
		u := urls[name]
		if !strings.Contains(u, "sig=") {
			t.Fatalf("%s: %q is not a signed URL", name, u)
		}
		var r seekResult
		if err := p.eval(seekVideo+"("+jsString(srv.URL()+u)+")", &r); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: seekable %.2f–%.2f s, seek to %.2f s: seeked at %.3f s (readyState %d) in %.0f ms, a second of play later at %.3f s",
			name, r.Start, r.End, r.Target, r.At, r.Ready, r.SeekMs, r.Later)
		switch {
		case r.Err != "":
			t.Errorf("%s: %s", name, r.Err)
		case r.End-r.Start < 100:
			t.Errorf("%s: seekable %.2f–%.2f s, want the whole recording", name, r.Start, r.End)
		case math.Abs(r.At-r.Target) > 0.05:
			t.Errorf("%s: seeked to %.3f s, want %.3f s", name, r.At, r.Target)
		case r.Ready < 2:
			t.Errorf("%s: readyState %d after the seek, want the frame there (2 or more)", name, r.Ready)
		case r.Later < r.At+0.3:
			t.Errorf("%s: did not play on from the seek: %.3f s a second later", name, r.Later)
		}
	}
}

func jsString(s string) string { return fmt.Sprintf("%q", s) }

var avioStats = regexp.MustCompile(`Statistics: (\d+) bytes read`)

// ffprobeSeek has ffprobe seek to at (seconds) in a file and read its first
// video packets: it returns the first one's time and the bytes ffprobe read
// (its I/O statistics).
func ffprobeSeek(t *testing.T, path string, at float64) (pts float64, read int64) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "verbose", "-read_intervals", strconv.FormatFloat(at, 'f', 3, 64)+"%+#5",
		"-select_streams", "v", "-show_entries", "packet=pts_time", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", path, err, out)
	}
	m := avioStats.FindSubmatch(out)
	if m == nil {
		t.Fatalf("ffprobe printed no I/O statistics:\n%s", out)
	}
	read, _ = strconv.ParseInt(string(m[1]), 10, 64)
	for _, line := range strings.Split(string(out), "\n") {
		if v, err := strconv.ParseFloat(strings.TrimSpace(line), 64); err == nil {
			return v, read
		}
	}
	t.Fatalf("ffprobe showed no video packet after %.1f s:\n%s", at, out)
	return 0, 0
}
