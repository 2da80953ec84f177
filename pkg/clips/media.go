package clips

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Containers a clip may come in.
const (
	ContainerWebM = "webm"
	ContainerOgg  = "ogg"
	ContainerMP4  = "mp4"
)

// SniffBytes is how many first bytes Sniff needs at most.
const SniffBytes = 64

// Sniff names the container of a clip by its first bytes: WebM (an EBML
// header whose DocType is "webm"), Ogg ("OggS") or MP4 (an "ftyp" box that
// is not an image's). Anything else is "".
func Sniff(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte{0x1A, 0x45, 0xDF, 0xA3}):
		// The DocType element (0x4282) comes early in the EBML header.
		if i := bytes.Index(head, []byte{0x42, 0x82}); i >= 0 && i+2 < len(head) {
			size := int(head[i+2] & 0x7F) // a one-byte size (0x84 = 4) is what every muxer writes
			if head[i+2]&0x80 != 0 && i+3+size <= len(head) && string(head[i+3:i+3+size]) == "webm" {
				return ContainerWebM
			}
		}
	case bytes.HasPrefix(head, []byte("OggS")):
		return ContainerOgg
	case len(head) >= 12 && string(head[4:8]) == "ftyp":
		switch string(head[8:12]) {
		case "heic", "heix", "mif1", "msf1", "avif", "avis", "hevc", "jp2 ", "crx ":
			return ""
		}
		return ContainerMP4
	}
	return ""
}

// Codecs a clip may hold (ffprobe's codec names).
var (
	audioCodecs = []string{"opus", "vorbis", "aac", "flac", "mp3"}
	videoCodecs = []string{"vp8", "vp9", "av1", "h264"}
)

// Probe is what ffprobe found in a clip.
type Probe struct {
	// Duration is the clip's length (from its header, or its packets'
	// timestamps when the header has none, as with a browser's MediaRecorder).
	Duration time.Duration
	// Audio and Video report an audio and a video stream.
	Audio, Video bool
	// Format is ffprobe's format name ("matroska,webm", "ogg", "mov,mp4,…").
	Format string
}

// Prober reads a clip's streams and duration.
type Prober func(ctx context.Context, path string) (Probe, error)

// ErrUnreadable says that ffprobe could not read a clip as media.
var ErrUnreadable = errors.New("not a readable audio or video file")

// FFprobe probes a clip with the ffprobe command (on PATH).
func FFprobe(ctx context.Context, path string) (Probe, error) {
	out, err := ffprobe(ctx, "-show_entries", "format=format_name,duration:stream=codec_type,codec_name", "-of", "json", path)
	if err != nil {
		return Probe{}, err
	}
	var r struct {
		Format struct {
			Name     string `json:"format_name"`
			Duration string `json:"duration"`
		} `json:"format"`
		Streams []struct {
			Type  string `json:"codec_type"`
			Codec string `json:"codec_name"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return Probe{}, fmt.Errorf("%w: ffprobe's answer: %v", ErrUnreadable, err)
	}
	p := Probe{Format: r.Format.Name}
	for _, s := range r.Streams {
		switch {
		case s.Type == "audio" && slices.Contains(audioCodecs, s.Codec):
			p.Audio = true
		case s.Type == "video" && slices.Contains(videoCodecs, s.Codec):
			p.Video = true
		case s.Type == "audio" || s.Type == "video":
			return Probe{}, fmt.Errorf("%w: its %s is %s (allowed: %s)", ErrUnreadable, s.Type, s.Codec,
				strings.Join(append(slices.Clone(audioCodecs), videoCodecs...), ", "))
		}
	}
	if !p.Audio && !p.Video {
		return Probe{}, fmt.Errorf("%w: no audio or video stream", ErrUnreadable)
	}
	if d, err := strconv.ParseFloat(r.Format.Duration, 64); err == nil && d > 0 && !math.IsInf(d, 0) {
		p.Duration = time.Duration(d * float64(time.Second))
		return p, nil
	}
	// A browser's MediaRecorder writes WebM without a duration: take it
	// from the packets' timestamps.
	out, err = ffprobe(ctx, "-show_entries", "packet=pts_time,duration_time", "-of", "csv=p=0", path)
	if err != nil {
		return Probe{}, err
	}
	first, last := math.Inf(1), math.Inf(-1)
	for _, line := range strings.Split(string(out), "\n") {
		pts, dur, _ := strings.Cut(strings.TrimSpace(line), ",")
		t, err := strconv.ParseFloat(pts, 64)
		if err != nil {
			continue
		}
		d, _ := strconv.ParseFloat(strings.TrimSuffix(dur, ","), 64)
		first = math.Min(first, t)
		last = math.Max(last, t+d)
	}
	if math.IsInf(first, 0) || last <= first {
		return Probe{}, fmt.Errorf("%w: no timed packets", ErrUnreadable)
	}
	p.Duration = time.Duration((last - first) * float64(time.Second))
	return p, nil
}

func ffprobe(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ffprobe", append([]string{"-v", "error"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("%w: %s", ErrUnreadable, firstLine(stderr.String()))
		}
		return nil, fmt.Errorf("run ffprobe (install ffmpeg): %w", err)
	}
	return out, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	// ffprobe names the file; the caller's error must not carry server paths.
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// mimeOf is the Content-Type a clip is served with.
func mimeOf(container string, video bool) string {
	kind := "audio"
	if video {
		kind = "video"
	}
	return kind + "/" + container
}

// ext is a container's file extension.
func ext(container string) string {
	switch container {
	case ContainerOgg:
		return ".ogg"
	case ContainerMP4:
		return ".mp4"
	}
	return ".webm"
}

// formatMatches reports whether ffprobe's format name agrees with the
// sniffed container.
func formatMatches(container, format string) bool {
	switch container {
	case ContainerWebM:
		return strings.Contains(format, "webm") || strings.Contains(format, "matroska")
	case ContainerOgg:
		return strings.Contains(format, "ogg")
	case ContainerMP4:
		return strings.Contains(format, "mp4") || strings.Contains(format, "mov")
	}
	return false
}
