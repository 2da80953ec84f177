// Package mixer mixes a recorded room session (a recorder manifest and its
// files) into one file with ffmpeg: the video streams in a grid that follows
// who was publishing when, each tile optionally labelled with the
// participant's name, and all the audio mixed without clipping. A persistent
// Queue runs mixes in the background, survives restarts, and runs a hook
// script once per finished mix.
//
// See docs/recording.md for the layout rules, the settings
// (configs/offline_mixer.json) and the queue's guarantees.
package mixer

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
)

// Layouts of the video.
const (
	LayoutGrid    = "grid"    // equal tiles (a screen share large)
	LayoutSpeaker = "speaker" // the dominant speaker large, the others small
)

// Output formats.
const (
	FormatMP4  = "mp4"  // H.264 + AAC, +faststart
	FormatWebM = "webm" // VP8 (or VP9) + Opus
)

// Settings shape a mix. The JSON keys hasVideo, hasAudio and
// mixerDisplayStreamName are Flashphoner's offline mixer keys.
type Settings struct {
	// HasVideo: the output has a video stream (else it is audio only).
	HasVideo bool `json:"hasVideo"`
	// HasAudio: the output has an audio stream.
	HasAudio bool `json:"hasAudio"`
	// MixerDisplayStreamName labels each tile with the participant's name.
	MixerDisplayStreamName bool `json:"mixerDisplayStreamName"`
	// Width, Height and FrameRate of the output video; default 1280x720 at 30.
	Width     int `json:"width"`
	Height    int `json:"height"`
	FrameRate int `json:"frameRate"`
	// Format is "mp4" (default) or "webm".
	Format string `json:"format"`
	// Layout is LayoutGrid (default) or LayoutSpeaker.
	Layout string `json:"layout,omitempty"`
	// VideoCodec for WebM: "vp8" (default) or "vp9". MP4 is always H.264.
	VideoCodec string `json:"videoCodec,omitempty"`
	// VideoBitrate in bit/s for WebM (default 1.5 Mbit/s); MP4 uses CRF 23.
	VideoBitrate int `json:"videoBitrate,omitempty"`
	// AudioBitrate in bit/s; default 128 kbit/s.
	AudioBitrate int `json:"audioBitrate,omitempty"`
	// Preset is x264's preset for MP4; default "veryfast".
	Preset string `json:"preset,omitempty"`
	// Font is the TrueType font for labels; default the first of
	// DejaVuSans, LiberationSans, FreeSans found under /usr/share/fonts.
	Font string `json:"font,omitempty"`
	// Nice is the niceness ffmpeg runs at (0 to 19); default 10.
	Nice *int `json:"nice,omitempty"`
	// FFmpeg is the ffmpeg binary; default /usr/bin/ffmpeg, else the one in PATH.
	FFmpeg string `json:"ffmpeg,omitempty"`
	// Threads bounds ffmpeg's threads (0: ffmpeg decides).
	Threads int `json:"threads,omitempty"`

	// Logger receives the mixer's logs; default: discard.
	Logger *slog.Logger `json:"-"`
}

// fontCandidates are fonts Debian ships (fonts-dejavu-core, fonts-liberation, fonts-freefont-ttf).
var fontCandidates = []string{
	"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
	"/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
	"/usr/share/fonts/truetype/freefont/FreeSans.ttf",
}

// DefaultSettings are the settings of a missing or empty configuration.
func DefaultSettings() Settings {
	return Settings{HasVideo: true, HasAudio: true, MixerDisplayStreamName: true,
		Width: 1280, Height: 720, FrameRate: 30, Format: FormatMP4}
}

// LoadSettings reads a JSON settings file (configs/offline_mixer.json).
// Keys it does not hold keep their defaults.
func LoadSettings(path string) (Settings, error) {
	s := DefaultSettings()
	f, err := os.Open(path)
	if err != nil {
		return s, fmt.Errorf("mixer settings: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(io.LimitReader(f, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("mixer settings %s: %w", path, err)
	}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("mixer settings %s: %w", path, err)
	}
	return s, nil
}

// Validate checks the settings' ranges.
func (s Settings) Validate() error {
	if !s.HasVideo && !s.HasAudio {
		return fmt.Errorf("hasVideo and hasAudio are both false: nothing to mix")
	}
	if s.Width != 0 && (s.Width < 64 || s.Width > 7680 || s.Width%2 != 0) {
		return fmt.Errorf("width %d: want an even number from 64 to 7680", s.Width)
	}
	if s.Height != 0 && (s.Height < 64 || s.Height > 4320 || s.Height%2 != 0) {
		return fmt.Errorf("height %d: want an even number from 64 to 4320", s.Height)
	}
	if s.FrameRate != 0 && (s.FrameRate < 1 || s.FrameRate > 60) {
		return fmt.Errorf("frameRate %d: want 1 to 60", s.FrameRate)
	}
	switch strings.ToLower(s.Format) {
	case "", FormatMP4, FormatWebM:
	default:
		return fmt.Errorf("format %q: want mp4 or webm", s.Format)
	}
	switch strings.ToLower(s.Layout) {
	case "", LayoutGrid, LayoutSpeaker:
	default:
		return fmt.Errorf("layout %q: want grid or speaker", s.Layout)
	}
	switch strings.ToLower(s.VideoCodec) {
	case "", "vp8", "vp9", "h264":
	default:
		return fmt.Errorf("videoCodec %q: want vp8 or vp9", s.VideoCodec)
	}
	if s.Nice != nil && (*s.Nice < 0 || *s.Nice > 19) {
		return fmt.Errorf("nice %d: want 0 to 19", *s.Nice)
	}
	if s.VideoBitrate < 0 || s.AudioBitrate < 0 || s.Threads < 0 || s.Threads > 64 {
		return fmt.Errorf("negative bitrate or bad thread count")
	}
	if s.Preset != "" && strings.ContainsAny(s.Preset, " \t\n") {
		return fmt.Errorf("preset %q", s.Preset)
	}
	return nil
}

func (s Settings) withDefaults() Settings {
	if s.Width == 0 {
		s.Width = 1280
	}
	if s.Height == 0 {
		s.Height = 720
	}
	if s.FrameRate == 0 {
		s.FrameRate = 30
	}
	s.Layout = strings.ToLower(s.Layout)
	if s.Layout == "" {
		s.Layout = LayoutGrid
	}
	s.Format = strings.ToLower(s.Format)
	if s.Format == "" {
		s.Format = FormatMP4
	}
	if s.VideoBitrate == 0 {
		s.VideoBitrate = 1_500_000
	}
	if s.AudioBitrate == 0 {
		s.AudioBitrate = 128_000
	}
	if s.Preset == "" {
		s.Preset = "veryfast"
	}
	if s.Nice == nil {
		n := 10
		s.Nice = &n
	}
	if s.FFmpeg == "" {
		s.FFmpeg = "/usr/bin/ffmpeg"
		if _, err := os.Stat(s.FFmpeg); err != nil {
			if p, err := exec.LookPath("ffmpeg"); err == nil {
				s.FFmpeg = p
			}
		}
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return s
}

// font returns the font to label with, or "" (with the reason) when there is none.
func (s Settings) font() (string, string) {
	if s.Font != "" {
		if st, err := os.Stat(s.Font); err == nil && st.Mode().IsRegular() {
			return s.Font, ""
		}
	}
	for _, f := range fontCandidates {
		if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() {
			return f, ""
		}
	}
	return "", "no font found (configured " + s.Font + "; install fonts-dejavu-core): tiles are not labelled"
}
