// Package testmedia generates real, small media files with ffmpeg for tests, the
// load tool and bots: VP8, VP9 and AV1 in IVF, H.264 as an Annex-B elementary
// stream and Opus in Ogg.
//
// Files are cached in a directory chosen by the caller (a test's temp dir, or
// os.UserCacheDir()/parley-testmedia to share them between runs). Generation is
// idempotent: a file whose name matches the options is reused when it exists, and
// a new one is written under a temporary name and renamed into place only once
// ffmpeg has succeeded, so a crash never leaves a truncated file behind.
package testmedia

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// FFmpeg is the path of the ffmpeg binary used when Options.FFmpeg is empty.
const FFmpeg = "/usr/bin/ffmpeg"

// Options shape the generated media. Zero fields take the defaults below.
type Options struct {
	// Duration of the file; default 10 s.
	Duration time.Duration
	// Width and Height of video; default 640x360.
	Width, Height int
	// FPS of video; default 30. The keyframe interval is one second (FPS frames).
	FPS int
	// Bitrate in bits per second; default 800 kbit/s for video, 48 kbit/s for audio.
	Bitrate int
	// FFmpeg is the ffmpeg binary; default FFmpeg, or the one in PATH if that does not exist.
	FFmpeg string
	// Timeout bounds one ffmpeg run; default 2 minutes.
	Timeout time.Duration
	// H264Profile is the profile of H264AnnexB: baseline (the default,
	// constrained baseline), main or high.
	H264Profile string
	// TemporalLayers, 2 or 3, makes VP8IVF code temporal layers with
	// libvpx's preset patterns (ts_layering_mode 2 and 3: the frames of
	// each period are of the layers TemporalPattern gives), error resilient
	// (no frame's probabilities carry over to the next, so a frame of the
	// higher layers can be left out), with a keyframe every FPS frames
	// that restarts the pattern. 0 or 1: none.
	TemporalLayers int
}

// TemporalPattern is the temporal layer of each frame of a period of a
// VP8IVF file with Options.TemporalLayers layers, from a keyframe on (nil
// for other counts); sync says the frame references only the base layer (a
// receiver may start taking its layer there: VP8's layer sync bit).
func TemporalPattern(layers int) (tids []uint8, sync []bool) {
	switch layers {
	case 2:
		return []uint8{0, 1}, []bool{false, true}
	case 3:
		// Frame 1 references the base frame, frame 2 too (and is kept as
		// the golden frame), frame 3 references frame 2.
		return []uint8{0, 2, 1, 2}, []bool{false, true, true, false}
	}
	return nil, nil
}

func (o Options) withVideoDefaults() Options {
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Width <= 0 || o.Height <= 0 {
		o.Width, o.Height = 640, 360
	}
	if o.FPS <= 0 {
		o.FPS = 30
	}
	if o.Bitrate <= 0 {
		o.Bitrate = 800_000
	}
	return o
}

func (o Options) withAudioDefaults() Options {
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Bitrate <= 0 {
		o.Bitrate = 48_000
	}
	return o
}

func (o Options) ffmpeg() string {
	if o.FFmpeg != "" {
		return o.FFmpeg
	}
	if _, err := os.Stat(FFmpeg); err == nil {
		return FFmpeg
	}
	if p, err := exec.LookPath("ffmpeg"); err == nil {
		return p
	}
	return FFmpeg
}

func (o Options) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return 2 * time.Minute
}

func secs(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

func (o Options) videoName(codec, ext string) string {
	return fmt.Sprintf("%s-%dx%d-%dfps-%dbps-%dms.%s", codec, o.Width, o.Height, o.FPS, o.Bitrate, o.Duration.Milliseconds(), ext)
}

func (o Options) videoInput() []string {
	return []string{
		"-f", "lavfi",
		"-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=%d", o.Width, o.Height, o.FPS),
		"-t", secs(o.Duration),
	}
}

func (o Options) gop() []string {
	g := strconv.Itoa(o.FPS)
	return []string{"-g", g, "-keyint_min", g}
}

// VP8IVF returns the path of a VP8 IVF file in dir, generating it if needed.
func VP8IVF(dir string, opts Options) (string, error) {
	o := opts.withVideoDefaults()
	args := append(o.videoInput(), "-c:v", "libvpx", "-b:v", strconv.Itoa(o.Bitrate),
		"-deadline", "realtime", "-cpu-used", "8")
	name := o.videoName("vp8", "ivf")
	switch o.TemporalLayers {
	case 0, 1:
		args = append(args, o.gop()...)
	case 2, 3:
		// Only a forced keyframe restarts libvpx's pattern (ffmpeg's
		// libvpxenc): the encoder's own keyframes are kept away.
		kb := o.Bitrate / 1000
		ts := "ts_number_layers=2:ts_target_bitrate=" + fmt.Sprintf("%d,%d", kb*6/10, kb) +
			":ts_rate_decimator=2,1:ts_periodicity=2:ts_layer_id=0,1:ts_layering_mode=2"
		if o.TemporalLayers == 3 {
			ts = "ts_number_layers=3:ts_target_bitrate=" + fmt.Sprintf("%d,%d,%d", kb/4, kb/2, kb) +
				":ts_rate_decimator=4,2,1:ts_periodicity=4:ts_layer_id=0,2,1,2:ts_layering_mode=3"
		}
		args = append(args, "-g", strconv.Itoa(100*o.FPS), "-force_key_frames", fmt.Sprintf("expr:eq(mod(n,%d),0)", o.FPS),
			"-error-resilient", "default", "-ts-parameters", ts)
		name = strings.TrimSuffix(name, ".ivf") + fmt.Sprintf("-tl%d.ivf", o.TemporalLayers)
	default:
		return "", fmt.Errorf("testmedia: vp8: %d temporal layers (want 2 or 3)", o.TemporalLayers)
	}
	args = append(args, "-auto-alt-ref", "0", "-f", "ivf")
	p, err := generate(dir, name, o, args)
	if err != nil {
		return "", fmt.Errorf("testmedia: vp8: %w", err)
	}
	return p, nil
}

// VP9IVF returns the path of a VP9 (profile 0) IVF file in dir, generating it if needed.
func VP9IVF(dir string, opts Options) (string, error) {
	o := opts.withVideoDefaults()
	args := append(o.videoInput(), "-c:v", "libvpx-vp9", "-b:v", strconv.Itoa(o.Bitrate),
		"-deadline", "realtime", "-cpu-used", "8", "-pix_fmt", "yuv420p")
	args = append(args, o.gop()...)
	args = append(args, "-auto-alt-ref", "0", "-lag-in-frames", "0", "-row-mt", "1", "-f", "ivf")
	p, err := generate(dir, o.videoName("vp9", "ivf"), o, args)
	if err != nil {
		return "", fmt.Errorf("testmedia: vp9: %w", err)
	}
	return p, nil
}

// AV1IVF returns the path of an AV1 IVF file in dir (libaom, realtime usage),
// generating it if needed. It is slower to encode than the others.
func AV1IVF(dir string, opts Options) (string, error) {
	o := opts.withVideoDefaults()
	args := append(o.videoInput(), "-c:v", "libaom-av1", "-b:v", strconv.Itoa(o.Bitrate),
		"-usage", "realtime", "-cpu-used", "8", "-pix_fmt", "yuv420p", "-lag-in-frames", "0")
	args = append(args, o.gop()...)
	args = append(args, "-f", "ivf")
	p, err := generate(dir, o.videoName("av1", "ivf"), o, args)
	if err != nil {
		return "", fmt.Errorf("testmedia: av1: %w", err)
	}
	return p, nil
}

// H264AnnexB returns the path of an H.264 Annex-B elementary stream in dir
// (.h264: constrained baseline unless Options.H264Profile says otherwise; no
// B-frames, SPS and PPS before every IDR), generating it if needed.
func H264AnnexB(dir string, opts Options) (string, error) {
	o := opts.withVideoDefaults()
	profile, name := "baseline", "h264"
	switch o.H264Profile {
	case "", "baseline":
	case "main", "high":
		profile, name = o.H264Profile, "h264"+o.H264Profile
	default:
		return "", fmt.Errorf("testmedia: h264: profile %q (want baseline, main or high)", o.H264Profile)
	}
	args := append(o.videoInput(), "-c:v", "libx264", "-profile:v", profile, "-level", "3.1",
		"-pix_fmt", "yuv420p", "-b:v", strconv.Itoa(o.Bitrate), "-tune", "zerolatency", "-bf", "0")
	args = append(args, o.gop()...)
	// repeat-headers puts SPS/PPS before every IDR, so playback can start at any keyframe.
	args = append(args, "-x264-params", "repeat-headers=1:scenecut=0",
		"-bsf:v", "h264_mp4toannexb", "-f", "h264")
	p, err := generate(dir, o.videoName(name, "h264"), o, args)
	if err != nil {
		return "", fmt.Errorf("testmedia: h264: %w", err)
	}
	return p, nil
}

// OpusOgg returns the path of an Ogg Opus file in dir (a 440 Hz sine, 48 kHz,
// 20 ms frames, one frame per page), generating it if needed.
func OpusOgg(dir string, opts Options) (string, error) {
	o := opts.withAudioDefaults()
	args := []string{
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", secs(o.Duration),
		"-c:a", "libopus", "-b:a", strconv.Itoa(o.Bitrate),
		"-page_duration", "20000", "-frame_duration", "20", "-f", "ogg",
	}
	name := fmt.Sprintf("opus-%dbps-%dms.ogg", o.Bitrate, o.Duration.Milliseconds())
	p, err := generate(dir, name, o, args)
	if err != nil {
		return "", fmt.Errorf("testmedia: opus: %w", err)
	}
	return p, nil
}

// Span is a stretch of a generated file, from its start.
type Span struct{ From, To time.Duration }

// speechText is what the voice says, again and again: synthetic speech
// (ffmpeg's flite), which a browser's noise suppression leaves alone where it
// removes a steady tone.
const speechText = "we are talking about the plan for the next release and what we should ship first then we look at the numbers again "

// speechInput is a voice talking during the loud spans, at about -25 dBFS
// (an RFC 6464 level of 15 to 45 from word to word), and 60 dB quieter
// (about -85 dBFS, a quiet room) elsewhere.
func speechInput(o Options, loud []Span) []string {
	expr := "0"
	for _, s := range loud {
		expr += fmt.Sprintf("+between(t,%s,%s)", secs(s.From), secs(s.To))
	}
	// flite says the text in about 5.5 s.
	text := strings.Repeat(speechText, int(o.Duration/(5*time.Second))+2)
	return []string{
		"-f", "lavfi", "-i", "flite=text='" + text + "':voice=slt",
		"-af", fmt.Sprintf("aresample=48000,volume=0.5,volume='if(%s,1,0.001)':eval=frame", expr),
		"-t", secs(o.Duration), "-ac", "1",
	}
}

func speechName(o Options, loud []Span, ext string) string {
	var spans strings.Builder
	for _, s := range loud {
		fmt.Fprintf(&spans, "%d-%d,", s.From.Milliseconds(), s.To.Milliseconds())
	}
	sum := sha256.Sum256([]byte(spans.String()))
	return fmt.Sprintf("voice-%dms-%dspans-%x.%s", o.Duration.Milliseconds(), len(loud), sum[:6], ext)
}

// SpeechOpus returns an Ogg Opus file (mono, 20 ms frames, one frame per
// page) of a voice that talks during the spans and is quiet elsewhere, and
// the same audio as raw samples (s16le, 48 kHz, mono) from which a sender
// measures its levels (pkg/client NewOpusLevelSource), generating them if
// needed.
func SpeechOpus(dir string, opts Options, loud []Span) (ogg, pcm string, err error) {
	o := opts.withAudioDefaults()
	args := append(speechInput(o, loud), "-c:a", "libopus", "-b:a", strconv.Itoa(o.Bitrate),
		"-page_duration", "20000", "-frame_duration", "20", "-f", "ogg")
	if ogg, err = generate(dir, speechName(o, loud, "ogg"), o, args); err != nil {
		return "", "", fmt.Errorf("testmedia: speech opus: %w", err)
	}
	args = append(speechInput(o, loud), "-ar", "48000", "-f", "s16le")
	if pcm, err = generate(dir, speechName(o, loud, "s16le"), o, args); err != nil {
		return "", "", fmt.Errorf("testmedia: speech samples: %w", err)
	}
	return ogg, pcm, nil
}

// SpeechWAV returns a WAV file (48 kHz, mono) of the voice SpeechOpus
// makes, for Chromium's --use-file-for-fake-audio-capture.
func SpeechWAV(dir string, opts Options, loud []Span) (string, error) {
	o := opts.withAudioDefaults()
	args := append(speechInput(o, loud), "-ar", "48000", "-c:a", "pcm_s16le", "-f", "wav")
	p, err := generate(dir, speechName(o, loud, "wav"), o, args)
	if err != nil {
		return "", fmt.Errorf("testmedia: speech wav: %w", err)
	}
	return p, nil
}

// generate runs ffmpeg with args into dir/name unless that file already exists.
func generate(dir, name string, o Options, args []string) (string, error) {
	if dir == "" {
		return "", errors.New("empty cache directory")
	}
	final := filepath.Join(dir, name)
	if st, err := os.Stat(final); err == nil && st.Mode().IsRegular() && st.Size() > 0 {
		return final, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create cache dir: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-"+name+"-*")
	if err != nil {
		return "", fmt.Errorf("create temp file: %w", err)
	}
	tmpName := tmp.Name()
	_ = tmp.Close()
	defer os.Remove(tmpName) // no-op after a successful rename

	ctx, cancel := context.WithTimeout(context.Background(), o.timeout())
	defer cancel()
	full := append([]string{"-hide_banner", "-loglevel", "error", "-nostdin", "-y"}, args...)
	full = append(full, tmpName)
	cmd := exec.CommandContext(ctx, o.ffmpeg(), full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ffmpeg %v: %w: %s", full, err, bytes.TrimSpace(stderr.Bytes()))
	}
	if st, err := os.Stat(tmpName); err != nil || st.Size() == 0 {
		return "", fmt.Errorf("ffmpeg wrote no output to %s", tmpName)
	}
	if err := os.Rename(tmpName, final); err != nil {
		return "", fmt.Errorf("rename into place: %w", err)
	}
	return final, nil
}
