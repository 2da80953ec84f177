package mixer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/parley/parley/pkg/recorder"
)

// Progress reports a running mix.
type Progress struct {
	// Percent of the session mixed, 0 to 100.
	Percent float64
	// Speed is how many seconds of session are mixed per second (ffmpeg's speed).
	Speed float64
	// OutTime is how much of the output is written.
	OutTime time.Duration
}

// maxLabel bounds a tile label (runes).
const maxLabel = 64

// input is one file given to ffmpeg.
type input struct {
	stream int
	path   string
	offset time.Duration
	video  bool
	audio  bool
}

// plan is an ffmpeg command line and its filter graph.
type plan struct {
	args     []string
	graph    string
	labels   map[string]string // label file name -> text
	duration time.Duration
	warnings []string
}

// Mix mixes the session of manifestPath into outPath. It writes to a
// temporary name next to outPath and renames it into place only when ffmpeg
// succeeded; ffmpeg's log is kept in outPath+".log". It only reads the
// manifest and its files. progress (may be nil) is called from Mix's
// goroutine as ffmpeg reports. Cancelling ctx stops ffmpeg.
func Mix(ctx context.Context, manifestPath, outPath string, settings Settings, progress func(Progress)) error {
	if err := settings.Validate(); err != nil {
		return fmt.Errorf("mix: %w", err)
	}
	s := settings.withDefaults()
	log := s.Logger.With("manifest", manifestPath)
	m, err := recorder.ReadManifest(manifestPath)
	if err != nil {
		return fmt.Errorf("mix: %w", err)
	}
	if m.State != recorder.StateFinished {
		return fmt.Errorf("mix: session %s is still %q (run recorder.Recover on it first)", m.SessionID, m.State)
	}
	if m.DurationMs <= 0 {
		return fmt.Errorf("mix: session %s has no duration", m.SessionID)
	}
	absOut, err := filepath.Abs(outPath)
	if err != nil {
		return fmt.Errorf("mix: %w", err)
	}
	dir := filepath.Dir(manifestPath)
	absDir, _ := filepath.Abs(dir)
	if absOut == filepath.Join(absDir, recorder.ManifestName) {
		return errors.New("mix: the output would overwrite the manifest")
	}
	for _, e := range m.Streams {
		if absOut == filepath.Join(absDir, e.File) {
			return fmt.Errorf("mix: the output would overwrite the input %s", e.File)
		}
	}

	work, err := os.MkdirTemp("", "parley-mix-")
	if err != nil {
		return fmt.Errorf("mix: %w", err)
	}
	defer os.RemoveAll(work)
	p, err := buildPlan(m, absDir, work, s)
	if err != nil {
		return fmt.Errorf("mix: %w", err)
	}
	for _, w := range p.warnings {
		log.Warn(w)
	}
	for name, text := range p.labels {
		if err := os.WriteFile(filepath.Join(work, name), []byte(text), 0o600); err != nil {
			return fmt.Errorf("mix: %w", err)
		}
	}
	script := filepath.Join(work, "graph.txt")
	if err := os.WriteFile(script, []byte(p.graph), 0o600); err != nil {
		return fmt.Errorf("mix: %w", err)
	}
	tmp := absOut + ".partial"
	args := append([]string{"-hide_banner", "-nostdin", "-y", "-nostats", "-progress", "pipe:1", "-loglevel", "info"}, p.args...)
	args = append(args, "-filter_complex_script", script)
	args = append(args, outputArgs(s, p.duration)...)
	args = append(args, tmp)

	logFile, err := os.Create(absOut + ".log")
	if err != nil {
		return fmt.Errorf("mix: create log: %w", err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "# %s %s\n# filter graph:\n# %s\n", s.FFmpeg, strings.Join(args, " "), strings.ReplaceAll(p.graph, "\n", "\n# "))

	cmd := exec.CommandContext(ctx, s.FFmpeg, args...)
	cmd.Stderr = logFile
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("mix: %w", err)
	}
	log.Info("mix started", "out", absOut, "duration", p.duration)
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("mix: start ffmpeg: %w", err)
	}
	if err := setNice(cmd.Process.Pid, *s.Nice); err != nil {
		log.Debug("could not lower ffmpeg's priority", "err", err)
	}
	readProgress(stdout, p.duration, progress)
	err = cmd.Wait()
	if err != nil {
		_ = os.Remove(tmp)
		if ctx.Err() != nil {
			return fmt.Errorf("mix: %w", ctx.Err())
		}
		return fmt.Errorf("mix: ffmpeg failed (see %s): %w", absOut+".log", err)
	}
	if err := os.Rename(tmp, absOut); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("mix: %w", err)
	}
	elapsed := time.Since(started)
	log.Info("mix done", "out", absOut, "elapsed", elapsed, "speed", p.duration.Seconds()/max(elapsed.Seconds(), 1e-3))
	return nil
}

// readProgress parses ffmpeg's -progress output (key=value lines, a block
// ending with progress=continue or progress=end).
func readProgress(r io.Reader, total time.Duration, fn func(Progress)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	var cur Progress
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		switch k {
		case "out_time_us", "out_time_ms": // both are microseconds
			if us, err := strconv.ParseInt(v, 10, 64); err == nil && us >= 0 {
				cur.OutTime = time.Duration(us) * time.Microsecond
			}
		case "speed":
			if f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), "x"), 64); err == nil {
				cur.Speed = f
			}
		case "progress":
			if total > 0 {
				cur.Percent = min(100, max(0, 100*cur.OutTime.Seconds()/total.Seconds()))
			}
			if v == "end" {
				cur.Percent = 100
			}
			if fn != nil {
				fn(cur)
			}
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

func outputArgs(s Settings, d time.Duration) []string {
	var a []string
	if s.HasVideo {
		a = append(a, "-map", "[vout]", "-r", strconv.Itoa(s.FrameRate))
		if s.Format == FormatWebM {
			codec := "libvpx"
			if strings.EqualFold(s.VideoCodec, "vp9") {
				codec = "libvpx-vp9"
			}
			a = append(a, "-c:v", codec, "-b:v", strconv.Itoa(s.VideoBitrate), "-deadline", "realtime", "-cpu-used", "8",
				"-g", strconv.Itoa(s.FrameRate*2))
			if codec == "libvpx-vp9" {
				a = append(a, "-row-mt", "1")
			}
		} else {
			a = append(a, "-c:v", "libx264", "-preset", s.Preset, "-crf", "23", "-pix_fmt", "yuv420p",
				"-g", strconv.Itoa(s.FrameRate*2))
		}
	}
	if s.HasAudio {
		a = append(a, "-map", "[aout]")
		if s.Format == FormatWebM {
			a = append(a, "-c:a", "libopus", "-b:a", strconv.Itoa(s.AudioBitrate))
		} else {
			a = append(a, "-c:a", "aac", "-b:a", strconv.Itoa(s.AudioBitrate))
		}
	}
	if s.Threads > 0 {
		a = append(a, "-threads", strconv.Itoa(s.Threads))
	}
	a = append(a, "-t", secs(d))
	if s.Format == FormatWebM {
		a = append(a, "-f", "webm")
	} else {
		a = append(a, "-movflags", "+faststart", "-f", "mp4")
	}
	return a
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }

// buildPlan makes the inputs and the filter graph for a session.
func buildPlan(m *recorder.Manifest, dir, work string, s Settings) (*plan, error) {
	p := &plan{duration: timeline(m), labels: map[string]string{}}
	// Inputs: every stream with something recorded and a readable file.
	var inputs []input
	inputOf := map[int]int{}
	for i, e := range m.Streams {
		if e.DurationMs <= 0 || e.State == recorder.StreamEmpty {
			continue
		}
		path := filepath.Join(dir, e.File)
		if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
			p.warnings = append(p.warnings, fmt.Sprintf("stream %s: file %s is missing; left out", e.StreamID, e.File))
			continue
		}
		in := input{stream: i, path: path, offset: e.Offset(), video: e.HasVideo(), audio: e.HasAudio()}
		if (in.video && s.HasVideo) || (in.audio && s.HasAudio) {
			inputOf[i] = len(inputs)
			inputs = append(inputs, in)
		}
	}
	if s.HasAudio {
		// Media messages posted during the session that the room's preset
		// mixes: their sound, at the time they were posted.
		for _, c := range m.Clips {
			if !c.Mix || c.DurationMs <= 0 {
				continue
			}
			path := filepath.Join(dir, c.File)
			if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() || filepath.Base(c.File) != c.File {
				p.warnings = append(p.warnings, fmt.Sprintf("clip %s: file %s is missing; left out", c.ID, c.File))
				continue
			}
			inputs = append(inputs, input{stream: -1, path: path, offset: c.Offset(), audio: true})
		}
	}
	for _, in := range inputs {
		// -itsoffset puts the file's first frame (its start_time, which
		// ffmpeg subtracts) back at its offset on the session's time line.
		p.args = append(p.args, "-itsoffset", secs(in.offset), "-i", in.path)
	}
	dur := secs(p.duration)
	var g []string
	if s.HasVideo {
		font, why := "", ""
		if s.MixerDisplayStreamName {
			if font, why = s.font(); font == "" {
				p.warnings = append(p.warnings, why)
			}
		}
		g = append(g, fmt.Sprintf("color=c=black:s=%dx%d:r=%d:d=%s[base0]", s.Width, s.Height, s.FrameRate, dur))
		segs := LayoutFor(m, s.Width, s.Height, s.Layout)
		// Branches of each stream's video, one per segment it shows in.
		uses := map[int][]int{} // stream -> indexes into tiles
		type tileUse struct {
			seg  Segment
			tile Tile
		}
		var all []tileUse
		for _, seg := range segs {
			for _, t := range seg.Tiles {
				if _, ok := inputOf[t.Stream]; !ok {
					continue
				}
				uses[t.Stream] = append(uses[t.Stream], len(all))
				all = append(all, tileUse{seg, t})
			}
		}
		branch := make([]string, len(all))
		for stream, idx := range uses {
			src := fmt.Sprintf("[%d:v:0]", inputOf[stream])
			if len(idx) == 1 {
				branch[idx[0]] = src
				continue
			}
			outs := ""
			for _, k := range idx {
				branch[k] = fmt.Sprintf("[s%db%d]", stream, k)
				outs += branch[k]
			}
			g = append(g, fmt.Sprintf("%ssplit=%d%s", src, len(idx), outs))
		}
		cur := "[base0]"
		for k, u := range all {
			r := u.tile.Rect
			t0, t1 := u.seg.Start.Seconds(), u.seg.End.Seconds()
			chain := fmt.Sprintf("%strim=start=%.3f:end=%.3f,scale=%d:%d:force_original_aspect_ratio=decrease,pad=%d:%d:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1",
				branch[k], t0, t1, r.W, r.H, r.W, r.H)
			if font != "" {
				name := fmt.Sprintf("label%d.txt", k)
				p.labels[name] = labelText(m.Streams[u.tile.Stream].Participant)
				// About 14 lines a tile high, narrower when the name is long (a glyph is about 0.6 em).
				label := p.labels[name]
				size := max(10, min(48, r.H/14, r.W*10/(6*max(len([]rune(label)), 6)+12)))
				chain += fmt.Sprintf(",drawtext=fontfile=%s:textfile=%s:expansion=none:fontsize=%d:fontcolor=white:box=1:boxcolor=black@0.55:boxborderw=%d:x=%d:y=h-th-%d",
					escapeValue(font), escapeValue(filepath.Join(work, name)), size, size/4, size/2, size/2)
			}
			tl := fmt.Sprintf("[t%d]", k)
			g = append(g, chain+tl)
			next := fmt.Sprintf("[base%d]", k+1)
			g = append(g, fmt.Sprintf("%s%soverlay=x=%d:y=%d:eof_action=pass:enable='gte(t,%.3f)*lt(t,%.3f)'%s", cur, tl, r.X, r.Y, t0, t1, next))
			cur = next
		}
		g = append(g, cur+"format=yuv420p[vout]")
	}
	if s.HasAudio {
		var labels []string
		for k, in := range inputs {
			if !in.audio {
				continue
			}
			l := fmt.Sprintf("[a%d]", k)
			// async fills what the file does not hold (before its offset,
			// gaps of a muted microphone) with silence on the time line.
			g = append(g, fmt.Sprintf("[%d:a:0]aresample=48000:async=1:first_pts=0,aformat=sample_fmts=fltp:channel_layouts=stereo%s", k, l))
			labels = append(labels, l)
		}
		switch len(labels) {
		case 0:
			g = append(g, fmt.Sprintf("anullsrc=r=48000:cl=stereo,atrim=end=%s[aout]", dur))
		default:
			mix := labels[0] + "anull"
			if len(labels) > 1 {
				mix = fmt.Sprintf("%samix=inputs=%d:normalize=0:dropout_transition=0", strings.Join(labels, ""), len(labels))
			}
			// Summed voices can exceed full scale: a limiter keeps them below it.
			g = append(g, mix+fmt.Sprintf(",alimiter=limit=0.9:level=0:latency=1,apad=whole_dur=%s,atrim=end=%s[aout]", dur, dur))
		}
	}
	p.graph = strings.Join(g, ";\n")
	return p, nil
}

// timeline is how long the mix lasts: the session's duration, cut at the end
// of its last recorded frame (manifests written before the recorder ended
// sessions there run on to the room's close, up to its idle timeout later).
func timeline(m *recorder.Manifest) time.Duration {
	d := m.Duration()
	if e := m.MediaEnd(); e > 0 && e < d {
		d = e
	}
	return d
}

// labelText makes a participant name printable on one line.
func labelText(name string) string {
	var b strings.Builder
	n := 0
	for _, r := range name {
		if n >= maxLabel {
			b.WriteString("…")
			break
		}
		if !unicode.IsPrint(r) {
			r = ' '
		}
		b.WriteRune(r)
		n++
	}
	out := strings.TrimSpace(b.String())
	if out == "" {
		out = "?"
	}
	return out
}

// escapeValue escapes a filter option value for both levels of ffmpeg's
// filter graph syntax: the option value (\ ' :) and the graph (\ ' [ ] , ;).
func escapeValue(v string) string {
	var l1 strings.Builder
	for _, r := range v {
		if r == '\\' || r == '\'' || r == ':' {
			l1.WriteByte('\\')
		}
		l1.WriteRune(r)
	}
	var l2 strings.Builder
	for _, r := range l1.String() {
		if strings.ContainsRune(`\'[],;`, r) {
			l2.WriteByte('\\')
		}
		l2.WriteRune(r)
	}
	return l2.String()
}
