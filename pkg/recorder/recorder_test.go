package recorder

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/testmedia"
	"github.com/pion/rtp"
)

var (
	vp8Opus = []TrackInfo{{Kind: "video", MimeType: "video/VP8"}, {Kind: "audio", MimeType: "audio/opus", Channels: 2}}
	small   = testmedia.Options{Duration: 2 * time.Second, Width: 320, Height: 240, Bitrate: 300_000}
)

// record runs one simulated publisher into a new session and returns the file.
func recordOne(t *testing.T, tracks []TrackInfo, until time.Duration, setup func(p *simPub)) (string, *StreamWriter) {
	t.Helper()
	s, err := StartSession(t.TempDir(), "room", "s1", sessionStart, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	p := newSimPub(t, sessionStart, 0, 7)
	info := StreamInfo{Participant: "p", StreamID: "x", Kind: "camera", Tracks: tracks,
		RequestKeyframe: func() { p.keyReq.Store(true) }}
	w, err := s.AddStream(info)
	if err != nil {
		t.Fatal(err)
	}
	p.w = w
	setup(p)
	p.run(until)
	if err := s.Close(sessionStart.Add(until)); err != nil {
		t.Fatal(err)
	}
	return w.File(), w
}

// Two streams, the second published 3 s after the recording began: each file
// starts at its offset on the room time line, lasts its publishing time and decodes.
func TestTwoStreamsOnRoomTimeLine(t *testing.T) {
	dir := t.TempDir()
	s, err := StartSession(dir, "Design review / Q1?", "sess:1", sessionStart, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	const end = 6 * time.Second
	names := []string{"Anna Ünal", "../Bob <CON>"}
	starts := []time.Duration{0, 3 * time.Second}
	var pubs []*simPub
	for i := range names {
		p := newSimPub(t, sessionStart, starts[i], uint64(i+1))
		w, err := s.AddStream(StreamInfo{Participant: names[i], StreamID: fmt.Sprintf("st/%d", i), Kind: "camera", Tracks: vp8Opus,
			RequestKeyframe: func() { p.keyReq.Store(true) }})
		if err != nil {
			t.Fatal(err)
		}
		p.w = w
		p.addTrack(vp8Source(t, small), 20*time.Millisecond)
		p.addTrack(opusSource(t), 20*time.Millisecond)
		pubs = append(pubs, p)
	}
	for _, p := range pubs {
		p.run(end)
	}
	// The room closes after its idle timeout (and a reconnect grace) with
	// nobody in it: that time is not recorded.
	closed := sessionStart.Add(end + 65*time.Second)
	if err := s.Close(closed); err != nil {
		t.Fatal(err)
	}
	m, err := ReadManifest(s.ManifestPath())
	if err != nil {
		t.Fatal(err)
	}
	if m.State != StateFinished || len(m.Streams) != 2 || m.Room != "Design review / Q1?" || m.SessionID != "sess:1" {
		t.Fatalf("manifest: %+v", m)
	}
	// The session ends with its last frame (here 20 ms of network delay
	// after the last capture), not at its close.
	if got := m.Duration(); got < end || got > end+50*time.Millisecond {
		t.Errorf("session duration %v, want %v (+ up to 50 ms)", got, end)
	}
	if got := m.MediaEnd(); got != m.Duration() {
		t.Errorf("last frame ends at %v, the session at %v", got, m.Duration())
	}
	if !m.Closed.Equal(closed) {
		t.Errorf("closed %v, want %v", m.Closed, closed)
	}
	if filepath.Base(filepath.Dir(s.Dir())) == "Design review / Q1?" || strings.ContainsAny(s.Dir()[len(dir):], " ?:") {
		t.Errorf("session dir not sanitized: %s", s.Dir())
	}
	for i, e := range m.Streams {
		if e.Participant != names[i] || strings.ContainsAny(e.File, " <>/:") || !strings.HasSuffix(e.File, ".webm") {
			t.Errorf("stream %d: participant %q file %q", i, e.Participant, e.File)
		}
		path := filepath.Join(s.Dir(), e.File)
		if msg := decodeErrors(t, path); msg != "" {
			t.Errorf("%s does not decode cleanly: %s", e.File, msg)
		}
		r := probe(t, path, false)
		start, dur := fsec(r.Format.StartTime), fsec(r.Format.Duration)-fsec(r.Format.StartTime)
		want := starts[i].Seconds()
		t.Logf("%s: start_time %.3f (want %.3f), length %.3f s, manifest offset %d ms duration %d ms",
			e.File, start, want, dur, e.OffsetMs, e.DurationMs)
		if !near(start, want, 0.05) {
			t.Errorf("%s: start_time %.3f, want %.3f ± 0.05", e.File, start, want)
		}
		if !near(dur, (end - starts[i]).Seconds(), 0.3) {
			t.Errorf("%s: length %.3f, want %.3f ± 0.3", e.File, dur, (end - starts[i]).Seconds())
		}
		// ffprobe's start_time is the first packet's: an Opus packet's is its
		// block's time less the track's CodecDelay (6.5 ms).
		if off := float64(e.OffsetMs) / 1000; start < off-0.0075 || start > off+0.001 || !near(float64(e.DurationMs)/1000, dur, 0.05) {
			t.Errorf("manifest offset/duration %d/%d ms disagree with the file %.3f/%.3f", e.OffsetMs, e.DurationMs, start, dur)
		}
		if r.stream("video") == nil || r.stream("audio") == nil || r.stream("video").Width != 320 {
			t.Errorf("%s: streams %+v", e.File, r.Streams)
		}
		if e.State != StreamClosed || e.Tracks[0].Width != 320 || e.Tracks[0].Height != 240 {
			t.Errorf("entry %+v", e)
		}
	}
}

// H.264 goes to Matroska and decodes.
func TestH264ToMatroska(t *testing.T) {
	path, err := testmedia.H264AnnexB(mediaDir(t), small)
	if err != nil {
		t.Fatal(err)
	}
	src, err := client.NewH264Source(path, 30, true)
	if err != nil {
		t.Fatal(err)
	}
	file, _ := recordOne(t, []TrackInfo{{Kind: "video", MimeType: "video/H264"}, {Kind: "audio", MimeType: "audio/opus"}}, 3*time.Second, func(p *simPub) {
		p.addTrack(src, 20*time.Millisecond)
		p.addTrack(opusSource(t), 20*time.Millisecond)
	})
	if !strings.HasSuffix(file, ".mkv") {
		t.Fatalf("file %s, want .mkv", file)
	}
	if msg := decodeErrors(t, file); msg != "" {
		t.Fatalf("decode: %s", msg)
	}
	r := probe(t, file, true)
	v := r.stream("video")
	if r.Format.FormatName != "matroska,webm" || v == nil || v.CodecName != "h264" || v.Width != 320 || v.Height != 240 {
		t.Fatalf("probe: %+v", r)
	}
	if n := len(r.packetTimes("video")); n < 85 {
		t.Errorf("%d video frames, want about 90", n)
	}
}

// VP9 with Opus goes to WebM and decodes.
func TestVP9ToWebM(t *testing.T) {
	path, err := testmedia.VP9IVF(mediaDir(t), small)
	if err != nil {
		t.Fatal(err)
	}
	src, err := client.NewIVFSource(path, true)
	if err != nil {
		t.Fatal(err)
	}
	file, _ := recordOne(t, []TrackInfo{{Kind: "video", MimeType: "video/VP9"}, {Kind: "audio", MimeType: "audio/opus"}}, 2*time.Second, func(p *simPub) {
		p.addTrack(src, 20*time.Millisecond)
		p.addTrack(opusSource(t), 20*time.Millisecond)
	})
	if msg := decodeErrors(t, file); msg != "" {
		t.Fatalf("decode: %s", msg)
	}
	r := probe(t, file, false)
	if v := r.stream("video"); v == nil || v.CodecName != "vp9" || v.Width != 320 || !strings.HasSuffix(file, ".webm") {
		t.Fatalf("probe: %+v", r)
	}
}

// An unsupported codec is refused clearly, and nothing is left behind.
func TestRefusesUnsupportedCodec(t *testing.T) {
	s, err := StartSession(t.TempDir(), "r", "s", sessionStart, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(time.Time{})
	_, err = s.AddStream(StreamInfo{StreamID: "x", Tracks: []TrackInfo{{MimeType: "video/H265"}}})
	if err == nil || !strings.Contains(err.Error(), "video/H265") {
		t.Fatalf("err %v", err)
	}
	if _, err := s.AddStream(StreamInfo{StreamID: "y"}); err == nil {
		t.Fatal("a stream without tracks was accepted")
	}
	if m := s.Manifest(); len(m.Streams) != 0 {
		t.Fatalf("manifest lists %d streams", len(m.Streams))
	}
}

// flashes returns the times at which the video turns white (luma jumps).
func flashes(t *testing.T, file string) []float64 {
	out := runFFmpeg(t, "-copyts", "-i", file, "-an", "-vf", "signalstats,metadata=mode=print:key=lavfi.signalstats.YAVG", "-f", "null", "-")
	re := regexp.MustCompile(`pts_time:([0-9.]+)[\s\S]*?YAVG=([0-9.]+)`)
	var res []float64
	prev := 0.0
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		ts, y := fsec(m[1]), fsec(m[2])
		if y > 128 && prev <= 128 {
			res = append(res, ts)
		}
		prev = y
	}
	return res
}

// beeps returns the times at which the audio turns loud.
func beeps(t *testing.T, file string) []float64 {
	out := runFFmpeg(t, "-copyts", "-i", file, "-vn", "-af", "silencedetect=noise=-30dB:d=0.05", "-f", "null", "-")
	re := regexp.MustCompile(`silence_end: ([0-9.]+)`)
	var res []float64
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		res = append(res, fsec(m[1]))
	}
	return res
}

func runFFmpeg(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, testmedia.FFmpeg, append([]string{"-nostdin", "-hide_banner", "-loglevel", "info"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// Lip sync: a white flash and a beep at the same instants in the source stay
// within 10 ms of each other in the file (Opus's encoder delay is declared),
// although audio and video RTP clocks start at unrelated random values and
// audio arrives 150 ms later than video.
func TestLipSyncThroughSenderReports(t *testing.T) {
	ivf := genMedia(t, "flash-vp8-320x240-4s.ivf", "-f", "lavfi", "-i",
		"color=c=black:s=320x240:r=30,format=yuv420p,geq=lum='if(between(mod(T,1),0.5,0.6),235,16)':cb=128:cr=128",
		"-t", "4", "-c:v", "libvpx", "-b:v", "300k", "-deadline", "realtime", "-cpu-used", "8",
		"-g", "30", "-keyint_min", "30", "-auto-alt-ref", "0", "-f", "ivf")
	ogg := genMedia(t, "beep-opus-4s.ogg", "-f", "lavfi", "-i",
		"aevalsrc='if(between(mod(t,1),0.5,0.6),0.8*sin(2*PI*1000*t),0)':s=48000:c=mono",
		"-t", "4", "-c:a", "libopus", "-b:a", "64k", "-frame_duration", "20", "-page_duration", "20000", "-f", "ogg")
	run := func(t *testing.T, sr bool) (worst float64) {
		v, err := client.NewIVFSource(ivf, false)
		if err != nil {
			t.Fatal(err)
		}
		a, err := client.NewOpusSource(ogg, false)
		if err != nil {
			t.Fatal(err)
		}
		file, _ := recordOne(t, vp8Opus, 3900*time.Millisecond, func(p *simPub) {
			p.addTrack(v, 30*time.Millisecond)
			p.addTrack(a, 180*time.Millisecond) // 150 ms later than video
			if !sr {
				p.srEvery = 0
			}
		})
		if msg := decodeErrors(t, file); msg != "" {
			t.Fatalf("decode: %s", msg)
		}
		fl, bp := flashes(t, file), beeps(t, file)
		t.Logf("flashes %v beeps %v", fl, bp)
		if len(fl) < 3 || len(bp) < 3 {
			t.Fatalf("found %d flashes and %d beeps, want 3 each", len(fl), len(bp))
		}
		for _, f := range fl {
			best := math.Inf(1)
			for _, b := range bp {
				if d := b - f; math.Abs(d) < math.Abs(best) {
					best = d
				}
			}
			worst = max(worst, math.Abs(best))
		}
		return worst
	}
	t.Run("sender reports", func(t *testing.T) {
		if worst := run(t, true); worst > 0.010 {
			t.Errorf("audio/video offset up to %.1f ms, want at most 10 ms", worst*1000)
		} else {
			t.Logf("worst lip-sync error %.1f ms", worst*1000)
		}
	})
	// Without sender reports nothing can correct the 150 ms: this shows the
	// measurement would catch it.
	t.Run("control without sender reports", func(t *testing.T) {
		worst := run(t, false)
		if worst < 0.1 {
			t.Errorf("offset %.0f ms without sender reports; the test cannot see a lip-sync error", worst*1000)
		}
		t.Logf("without sender reports: %.1f ms", worst*1000)
	})
}

// maxGap returns the largest gap between consecutive times after from.
func maxGap(ts []float64, from float64) (gap, at float64) {
	sort.Float64s(ts)
	for i := 1; i < len(ts); i++ {
		if ts[i-1] >= from && ts[i]-ts[i-1] > gap {
			gap, at = ts[i]-ts[i-1], ts[i-1]
		}
	}
	return gap, at
}

// Adverse input: loss and reordering, a muted stretch, wrap-around, an SSRC
// change, padding, a resize.
func TestAdverseInput(t *testing.T) {
	t.Run("5% loss, NACK resends, reordering", func(t *testing.T) {
		var sent, lost atomic.Int64
		var gone []lostPacket // lost for good: never resent
		var sim *simPub
		file, w := recordOne(t, vp8Opus, 6*time.Second, func(p *simPub) {
			sim = p
			p.addTrack(vp8Source(t, small), 20*time.Millisecond)
			p.addTrack(opusSource(t), 20*time.Millisecond)
			p.jitter = 25 * time.Millisecond // reorders packets sent close together
			p.lockstep = true                // keyframe requests answered 5 ms later, deterministically
			p.lose = func(pk *rtp.Packet) (bool, time.Duration) {
				sent.Add(1)
				if p.rng.Float64() >= 0.05 {
					return false, 0
				}
				lost.Add(1)
				if p.rng.Float64() < 0.5 {
					return true, 150 * time.Millisecond // resent after a NACK
				}
				gone = append(gone, p.lostPacket(pk))
				return true, 0
			}
		})
		if msg := decodeErrors(t, file); msg != "" {
			t.Fatalf("decode with loss: %s", msg)
		}
		r := probe(t, file, true)
		video, audio := r.packetTimes("video"), r.packetTimes("audio")
		var goneVideo []lostPacket
		var goneAudio []float64
		for _, g := range gone {
			if g.track == 0 {
				goneVideo = append(goneVideo, g)
			} else {
				goneAudio = append(goneAudio, g.at.Seconds())
			}
		}
		t.Logf("lost %d of %d packets, %d for good (%d audio); file has %d video frames (of 180), %d audio (of 300); %d keyframe requests",
			lost.Load(), sent.Load(), len(gone), len(goneAudio), len(video), len(audio), w.Stats().KeyframeRequests)
		t.Logf("video lost for good %v, audio %v", goneVideo, goneAudio)
		// Every Opus packet is a frame of its own: all but those lost for
		// good are in the file (the resent ones came within the jitter delay).
		if want := 300 - len(goneAudio); len(audio) != want {
			t.Errorf("%d audio frames in the file, want 300 - %d lost = %d", len(audio), len(goneAudio), want)
			prev := 0.0
			for _, a := range audio {
				if a-prev > 0.03 {
					t.Logf("audio hole %.3f .. %.3f", prev, a)
				}
				prev = a
			}
		}
		assertLossRecovery(t, r, goneVideo, sim.keyReqs, 1.0/30, 6)
	})

	for _, sr := range []bool{true, false} {
		t.Run(fmt.Sprintf("10 s mute (sender reports %v)", sr), func(t *testing.T) {
			file, _ := recordOne(t, vp8Opus, 16*time.Second, func(p *simPub) {
				p.addTrack(vp8Source(t, small), 20*time.Millisecond)
				p.addTrack(opusSource(t), 20*time.Millisecond)
				p.mutes = []window{{3 * time.Second, 13 * time.Second}}
				if !sr {
					p.srEvery = 0
				}
			})
			if msg := decodeErrors(t, file); msg != "" {
				t.Fatalf("decode: %s", msg)
			}
			r := probe(t, file, true)
			for _, kind := range []string{"video", "audio"} {
				ts := r.packetTimes(kind)
				var resumed float64
				for _, x := range ts {
					if x > 5 {
						resumed = x
						break
					}
				}
				gap, _ := maxGap(ts, 0)
				t.Logf("%s: resumes at %.3f s, largest gap %.3f s, last %.3f", kind, resumed, gap, ts[len(ts)-1])
				if !near(resumed, 13.02, 0.1) {
					t.Errorf("%s resumes at %.3f s, want 13.02 ± 0.1", kind, resumed)
				}
				if !near(ts[len(ts)-1], 16, 0.1) {
					t.Errorf("%s ends at %.3f, want 16", kind, ts[len(ts)-1])
				}
			}
		})
	}

	t.Run("sequence and timestamp wrap-around", func(t *testing.T) {
		file, w := recordOne(t, vp8Opus, 4*time.Second, func(p *simPub) {
			v := p.addTrack(vp8Source(t, small), 20*time.Millisecond)
			a := p.addTrack(opusSource(t), 20*time.Millisecond)
			// Both wrap about a second in.
			v.seq0, v.seqSet, v.ts0, v.tsSet = 65535-150, true, math.MaxUint32-90000, true
			a.seq0, a.seqSet, a.ts0, a.tsSet = 65535-50, true, math.MaxUint32-48000, true
		})
		assertContinuous(t, file, 4, w)
	})

	t.Run("SSRC change", func(t *testing.T) {
		file, w := recordOne(t, vp8Opus, 5*time.Second, func(p *simPub) {
			p.addTrack(vp8Source(t, small), 20*time.Millisecond)
			p.addTrack(opusSource(t), 20*time.Millisecond)
			p.ssrcChange = 2 * time.Second
		})
		assertContinuous(t, file, 5, w)
	})

	t.Run("padding-only packets", func(t *testing.T) {
		for _, drop := range []bool{false, true} {
			file, w := recordOne(t, vp8Opus, 3*time.Second, func(p *simPub) {
				p.addTrack(vp8Source(t, small), 20*time.Millisecond)
				p.addTrack(opusSource(t), 20*time.Millisecond)
				p.padding, p.dropPad = 3, drop
			})
			assertContinuous(t, file, 3, w)
			if n := w.Stats().KeyframeRequests; n > 0 {
				t.Errorf("padding (dropped %v) caused %d keyframe requests", drop, n)
			}
		}
	})

	t.Run("resolution change", func(t *testing.T) {
		big := small
		big.Width, big.Height = 480, 270
		file, _ := recordOne(t, vp8Opus, 4*time.Second, func(p *simPub) {
			p.addTrack(vp8Source(t, small), 20*time.Millisecond)
			p.addTrack(opusSource(t), 20*time.Millisecond)
			p.switches = []sourceSwitch{{at: 2 * time.Second, track: 0, src: vp8Source(t, big)}}
		})
		if msg := decodeErrors(t, file); msg != "" {
			t.Fatalf("decode: %s", msg)
		}
		out := runFFmpeg(t, "-i", file, "-an", "-vf", "showinfo", "-f", "null", "-")
		if !strings.Contains(out, " s:320x240 ") || !strings.Contains(out, " s:480x270 ") {
			t.Errorf("decoded frames do not show both sizes")
		}
		r := probe(t, file, true)
		if gap, at := maxGap(r.packetTimes("video"), 0); gap > 0.1 {
			t.Errorf("video gap of %.3f s at %.3f", gap, at)
		}
	})
}

// assertContinuous checks a file decodes, lasts about secs and has no hole.
func assertContinuous(t *testing.T, file string, secs float64, w *StreamWriter) {
	t.Helper()
	if msg := decodeErrors(t, file); msg != "" {
		t.Fatalf("decode: %s", msg)
	}
	r := probe(t, file, true)
	for _, kind := range []string{"video", "audio"} {
		ts := r.packetTimes(kind)
		if len(ts) == 0 {
			t.Fatalf("no %s", kind)
		}
		gap, at := maxGap(ts, 0)
		if gap > 0.1 {
			t.Errorf("%s: gap of %.3f s at %.3f", kind, gap, at)
		}
		if !near(ts[0], 0.02, 0.05) || !near(ts[len(ts)-1], secs, 0.1) {
			t.Errorf("%s: from %.3f to %.3f, want 0.02 to %.1f", kind, ts[0], ts[len(ts)-1], secs)
		}
	}
	t.Logf("stats %+v", w.Stats())
}

// --- crash safety ---

const childEnv = "PARLEY_RECORDER_CRASH_CHILD"

// childFatal makes the simulator usable without a testing.T.
type childFatal struct{}

func (childFatal) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(2)
}

// crashChild records a long stream at four times real time, printing how
// much media it has handed over, until it is killed.
func crashChild(dir string) {
	s, err := StartSession(dir, "crash room", "s1", sessionStart, Options{BlockWhenFull: true})
	if err != nil {
		childFatal{}.Fatalf("%v", err)
	}
	p := newSimPub(childFatal{}, sessionStart, 0, 3)
	w, err := s.AddStream(StreamInfo{Participant: "victim", StreamID: "v", Kind: "camera", Tracks: vp8Opus})
	if err != nil {
		childFatal{}.Fatalf("%v", err)
	}
	p.w = w
	cache, _ := os.UserCacheDir()
	mdir := filepath.Join(cache, "parley-testmedia")
	ivf, err := testmedia.VP8IVF(mdir, small)
	if err != nil {
		childFatal{}.Fatalf("%v", err)
	}
	ogg, err := testmedia.OpusOgg(mdir, testmedia.Options{Duration: 2 * time.Second})
	if err != nil {
		childFatal{}.Fatalf("%v", err)
	}
	v, _ := client.NewIVFSource(ivf, true)
	a, _ := client.NewOpusSource(ogg, true)
	p.addTrack(v, 20*time.Millisecond)
	p.addTrack(a, 20*time.Millisecond)
	wall := time.Now()
	out := bufio.NewWriter(os.Stdout)
	next := time.Duration(0)
	p.onSample = func(track int, at time.Duration) {
		if track != 0 || at < next {
			return
		}
		next = at + 100*time.Millisecond
		// Everything captured until at-40ms has been delivered to the writer.
		fmt.Fprintf(out, "fed %d\n", (at - 40*time.Millisecond).Milliseconds())
		out.Flush()
		if d := time.Until(wall.Add(at / 4)); d > 0 {
			time.Sleep(d)
		}
	}
	p.run(10 * time.Minute)
}

// SIGKILL mid-recording: the file decodes to within 2 s of what was handed
// over, and Recover finishes the session.
func TestSurvivesSIGKILL(t *testing.T) {
	mediaDir(t)
	if _, err := testmedia.VP8IVF(mediaDir(t), small); err != nil { // generate before the child runs
		t.Fatal(err)
	}
	if _, err := testmedia.OpusOgg(mediaDir(t), testmedia.Options{Duration: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fed := int64(0)
	sc := bufio.NewScanner(stdout)
	deadline := time.Now().Add(time.Minute)
	for sc.Scan() && time.Now().Before(deadline) {
		if v, err := strconv.ParseInt(strings.TrimPrefix(sc.Text(), "fed "), 10, 64); err == nil {
			fed = v
		}
		if fed >= 7000 {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if fed < 7000 {
		t.Fatalf("child only fed %d ms", fed)
	}
	sessDir := filepath.Join(dir, SafeName("crash room"), "s1")
	m, err := ReadManifest(filepath.Join(sessDir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	if m.State != StateRecording || len(m.Streams) != 1 {
		t.Fatalf("manifest after kill: %+v", m)
	}
	file := filepath.Join(sessDir, m.Streams[0].File)
	// The kill may cut the last write short (a write of several pages stops
	// at a page boundary): the demuxer then notes that the file ends inside
	// a block, and everything before it must decode cleanly.
	if msg := decodeErrors(t, file); msg != "" && !onlyTruncation(msg) {
		t.Errorf("killed file does not decode cleanly: %s", msg)
	} else if msg != "" {
		t.Logf("the kill cut the last block: %s", msg)
	}
	if _, ok := readIndex(t, file); ok {
		t.Error("the killed file has a seek head")
	}
	r := probe(t, file, false)
	dur := fsec(r.Format.Duration)
	t.Logf("killed after %d ms handed over; file duration %.3f s", fed, dur)
	if dur < float64(fed)/1000-2 {
		t.Errorf("file lasts %.3f s, want at least %.3f", dur, float64(fed)/1000-2)
	}

	unfinished, err := Unfinished(dir)
	if err != nil || len(unfinished) != 1 || unfinished[0] != sessDir {
		t.Fatalf("Unfinished = %v, %v", unfinished, err)
	}
	rm, err := Recover(sessDir)
	if err != nil {
		t.Fatal(err)
	}
	e := rm.Streams[0]
	if rm.State != StateFinished || !rm.Recovered || e.State != StreamRecovered || rm.DurationMs < fed-2000 || e.DurationMs < fed-2000 {
		t.Fatalf("recovered manifest: %+v", rm)
	}
	if msg := decodeErrors(t, file); msg != "" {
		t.Errorf("recovered file does not decode cleanly: %s", msg)
	}
	// Recover indexes it as a finished file is: a cue at every keyframe.
	idx, ok := readIndex(t, file)
	keys := probe(t, file, true).keyTimes("video")
	if !ok || len(idx.cues) != len(keys) {
		t.Errorf("the recovered file: seek head %v, %d cues for %d keyframes", ok, len(idx.cues), len(keys))
	}
	for _, c := range idx.cues {
		if !keys[float64(c.CueTime)/1000] {
			t.Errorf("a cue at %d ms, where there is no keyframe", c.CueTime)
		}
	}
	r = probe(t, file, false)
	t.Logf("recovered: session %d ms, stream %d ms from %d ms; ffprobe duration %s", rm.DurationMs, e.DurationMs, e.OffsetMs, r.Format.Duration)
	if !near(fsec(r.Format.Duration), float64(e.OffsetMs+e.DurationMs)/1000, 0.05) {
		t.Errorf("file duration %s, manifest end %d ms", r.Format.Duration, e.OffsetMs+e.DurationMs)
	}
	again, err := Recover(sessDir)
	if err != nil || again.DurationMs != rm.DurationMs {
		t.Fatalf("second Recover: %v %+v", err, again)
	}
	if u, _ := Unfinished(dir); len(u) != 0 {
		t.Fatalf("still unfinished: %v", u)
	}
}

func TestSafeName(t *testing.T) {
	seen := map[string]string{}
	for _, in := range []string{"", ".", "..", "CON", "con.txt", "a/b", "a?b", "Zoë", "x\x00y", strings.Repeat("ab", 100), "ok-name_1.2", " lead ", "日本語"} {
		out := SafeName(in)
		if out == "" || out == "." || out == ".." || len(out) > maxNameLen+9 || strings.ContainsAny(out, "/\\:*?\"<>| \x00") ||
			strings.HasPrefix(out, ".") || windowsReserved[strings.ToUpper(strings.SplitN(out, ".", 2)[0])] {
			t.Errorf("SafeName(%q) = %q", in, out)
		}
		if prev, dup := seen[out]; dup {
			t.Errorf("SafeName(%q) = SafeName(%q) = %q", in, prev, out)
		}
		seen[out] = in
		if SafeName(in) != out {
			t.Errorf("SafeName not deterministic for %q", in)
		}
	}
	if SafeName("ok-name_1.2") != "ok-name_1.2" {
		t.Errorf("a safe name was changed: %q", SafeName("ok-name_1.2"))
	}
}

// AV1 with Opus goes to WebM (with an av1C built from the sequence header) and decodes.
func TestAV1ToWebM(t *testing.T) {
	o := small
	o.Duration = time.Second
	path, err := testmedia.AV1IVF(mediaDir(t), o)
	if err != nil {
		t.Fatal(err)
	}
	src, err := client.NewIVFSource(path, true)
	if err != nil {
		t.Fatal(err)
	}
	file, _ := recordOne(t, []TrackInfo{{Kind: "video", MimeType: "video/AV1"}, {Kind: "audio", MimeType: "audio/opus"}}, 2*time.Second, func(p *simPub) {
		p.addTrack(src, 20*time.Millisecond)
		p.addTrack(opusSource(t), 20*time.Millisecond)
	})
	if msg := decodeErrors(t, file); msg != "" {
		t.Fatalf("decode: %s", msg)
	}
	r := probe(t, file, true)
	if v := r.stream("video"); v == nil || v.CodecName != "av1" || v.Width != 320 || !strings.HasSuffix(file, ".webm") {
		t.Fatalf("probe: %+v", r.Streams)
	}
	if n := len(r.packetTimes("video")); n < 55 {
		t.Errorf("%d AV1 frames, want about 60", n)
	}
}

// assertLossRecovery checks the video of a file against the capture times
// (s) of the packets lost for good and the times the sender got keyframe
// requests. Every hole in the file starts at such a loss (packets merely
// reordered, at the start too, make none) and ends at a keyframe.
// For every loss that the hole outlasts, the writer asked for a keyframe once
// it gave the packet up (its jitter delay after the next frames came) or as
// soon as its throttle let it; the file resumes with the keyframe that answers
// the last request.
func assertLossRecovery(t *testing.T, r probeResult, losses []lostPacket, requests []time.Duration, frameDur, end float64) {
	t.Helper()
	const (
		delay    = 0.020         // network delay: a frame's pts is its capture time plus this
		giveUp   = 0.300 + 0.150 // Options.JitterDelay's default, plus the next frames' arrival, network delay and jitter
		resume   = 0.100         // from a request to the keyframe in the file: the sender's next frame, the delay
		throttle = 0.500         // keyframeRequestInterval
		slack    = 0.010
	)
	frames, keys := r.packetTimes("video"), r.keyTimes("video")
	if len(frames) == 0 {
		t.Fatal("no video in the file")
	}
	req := make([]float64, len(requests))
	for i, r := range requests {
		req[i] = r.Seconds()
	}
	t.Logf("keyframe requests at %v", req)
	sort.Float64s(frames)
	// The frame before the first and the one after the last that the sender
	// captured bound the holes at either end.
	prev := delay - frameDur
	for _, b := range append(frames, end+delay) {
		a := prev
		prev = b
		if b-a < 1.5*frameDur {
			continue
		}
		var in []lostPacket // losses in the frames after a
		for _, l := range losses {
			if at := l.at.Seconds(); at+delay > a+frameDur/2 && at+delay < b {
				in = append(in, l)
			}
		}
		t.Logf("hole %.3f .. %.3f, losses at %v", a, b, in)
		next := func(l lostPacket) (float64, bool) { // the first request that can answer l, before b
			k := sort.SearchFloat64s(req, l.step.Seconds()+1e-6)
			if k == len(req) || req[k] > b {
				return 0, false
			}
			return req[k], true
		}
		switch {
		case b > end:
			if len(in) == 0 || in[len(in)-1].at.Seconds()+giveUp+resume < end {
				t.Errorf("video stops at %.3f s, before the end at %.0f s", a, end)
			}
			continue
		case !keys[b]:
			t.Errorf("video resumes at %.3f s after a hole from %.3f, on a frame that is not a keyframe", b, a)
			continue
		case len(in) == 0:
			t.Errorf("video hole from %.3f to %.3f s without a packet lost for good in it", a, b)
			continue
		}
		for _, lp := range in {
			l := lp.at.Seconds()
			due := l + giveUp
			if b <= due+resume+slack {
				continue // a keyframe came before the writer gave the packet up
			}
			rq, ok := next(lp)
			if !ok {
				t.Errorf("hole %.3f .. %.3f: no keyframe request after the loss at %.3f", a, b, l)
				continue
			}
			if k := sort.SearchFloat64s(req, rq); k > 0 {
				due = max(due, req[k-1]+throttle+resume)
			}
			if rq > due+slack {
				t.Errorf("keyframe request at %.3f s, %.0f ms after the loss at %.3f s: later than the jitter delay or the throttle explains",
					rq, (rq-l)*1000, l)
			}
		}
		last := in[len(in)-1].at.Seconds()
		if rq, ok := next(in[len(in)-1]); ok && b > rq+resume+slack {
			t.Errorf("video resumes at %.3f s, %.0f ms after the keyframe request at %.3f s", b, (b-rq)*1000, rq)
		} else if !ok && b > last+giveUp+resume+slack {
			t.Errorf("video resumes at %.3f s, %.0f ms after the loss at %.3f s, without a keyframe request", b, (b-last)*1000, last)
		}
	}
}
