package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/parley/parley/pkg/codec"

	"github.com/pion/rtp/codecs/vp9"
	"github.com/pion/webrtc/v4"
)

// Source produces the encoded samples of one track: a video frame (access unit)
// or an audio packet at a time. Next returns io.EOF when the source is exhausted
// (a looping source never is). Publish calls Next from one goroutine and sends
// each sample dur after the previous one, so RTP timestamps advance by dur.
type Source interface {
	// Codec is the codec of the samples; it becomes the track's codec.
	Codec() webrtc.RTPCodecCapability
	// Next returns the next sample and how long it lasts. An empty sample
	// sends nothing and lets its duration pass on the track's clock (an
	// encoder that skips frames, a simulcast layer its sender stopped).
	Next() (sample []byte, dur time.Duration, err error)
}

// KeyframeSource is implemented by sources that can answer a keyframe request
// (an RTCP PLI or FIR from the server) the way an encoder does: after
// RequestKeyframe the next sample Next returns is a keyframe. The file sources
// of this package do it by restarting the current group of pictures, so the
// stream stays decodable and its timestamps keep increasing.
type KeyframeSource interface {
	Source
	RequestKeyframe()
}

// Codec capabilities of the sources of this package.
var (
	codecVP8  = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	codecVP9  = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"}
	codecAV1  = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000}
	codecH264 = webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
	}
	// codecH264High is a High profile stream's (profile_idc 100).
	codecH264High = webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f",
	}
	codecOpus = webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
		SDPFmtpLine: "minptime=10;useinbandfec=1",
	}
)

// sample is one frame of an in-memory source.
type sample struct {
	data []byte
	dur  time.Duration
	key  bool
	// tid and sync are the frame's temporal layer (temporalSource).
	tid  uint8
	sync bool
}

// memSource plays a list of samples, optionally in a loop. Every file source
// reads its whole file up front: test media is small and this makes looping and
// keyframe requests trivial.
type memSource struct {
	codec   webrtc.RTPCodecCapability
	samples []sample
	loop    bool
	pos     int
}

func (s *memSource) Codec() webrtc.RTPCodecCapability { return s.codec }

func (s *memSource) Next() ([]byte, time.Duration, error) {
	if s.pos >= len(s.samples) {
		if !s.loop {
			return nil, 0, io.EOF
		}
		s.pos = 0
	}
	smp := s.samples[s.pos]
	s.pos++
	return smp.data, smp.dur, nil
}

// RequestKeyframe makes the next sample a keyframe by going back to the start of
// the current group of pictures (a no-op when the next sample is a keyframe already).
func (s *memSource) RequestKeyframe() {
	pos := s.pos
	if pos >= len(s.samples) {
		if !s.loop {
			return
		}
		pos = 0
	}
	for k := pos; k >= 0; k-- {
		if s.samples[k].key {
			s.pos = k
			return
		}
	}
}

// NewIVFSource reads an IVF file (VP8, VP9 or AV1, from the header's fourcc).
// Frame durations come from the IVF timestamps. With loop the file plays forever.
func NewIVFSource(path string, loop bool) (KeyframeSource, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ivf source: %w", err)
	}
	src, err := parseIVF(data, loop)
	if err != nil {
		return nil, fmt.Errorf("ivf source %s: %w", path, err)
	}
	return src, nil
}

func parseIVF(data []byte, loop bool) (*memSource, error) {
	// IVF: a 32-byte file header ("DKIF", version, header size, fourcc, width,
	// height, time base denominator (rate), numerator (scale), frame count), then
	// frames of a 12-byte header (size, 64-bit pts in scale/rate seconds) and data.
	if len(data) < 32 || string(data[:4]) != "DKIF" {
		return nil, errors.New("not an IVF file")
	}
	hdrLen := int(binary.LittleEndian.Uint16(data[6:8]))
	if hdrLen < 32 || hdrLen > len(data) {
		hdrLen = 32
	}
	fourcc := string(data[8:12])
	rate := uint64(binary.LittleEndian.Uint32(data[16:20]))
	scale := uint64(binary.LittleEndian.Uint32(data[20:24]))
	if rate == 0 || scale == 0 {
		rate, scale = 30, 1
	}
	src := &memSource{loop: loop}
	var isKey func([]byte) bool
	switch fourcc {
	case "VP80":
		src.codec = codecVP8
		isKey = func(f []byte) bool { return len(f) > 0 && f[0]&0x01 == 0 }
	case "VP90":
		src.codec = codecVP9
		isKey = func(f []byte) bool {
			var hd vp9.Header
			return hd.Unmarshal(f) == nil && !hd.ShowExistingFrame && !hd.NonKeyFrame
		}
	case "AV01":
		src.codec = codecAV1
		isKey = av1HasSequenceHeader
	default:
		return nil, fmt.Errorf("unsupported fourcc %q", fourcc)
	}
	unit := func(ticks uint64) time.Duration {
		return time.Duration(ticks * scale * uint64(time.Second) / rate)
	}
	var pts []uint64
	for rest := data[hdrLen:]; len(rest) >= 12; {
		size := int(binary.LittleEndian.Uint32(rest[:4]))
		if size > len(rest)-12 {
			break // a truncated last frame
		}
		frame := rest[12 : 12+size]
		pts = append(pts, binary.LittleEndian.Uint64(rest[4:12]))
		src.samples = append(src.samples, sample{data: frame, key: isKey(frame)})
		rest = rest[12+size:]
	}
	if len(src.samples) == 0 {
		return nil, errors.New("no frames")
	}
	last := unit(1)
	for i := range src.samples {
		if i+1 < len(pts) && pts[i+1] > pts[i] {
			last = unit(pts[i+1] - pts[i])
		}
		src.samples[i].dur = last
	}
	return src, nil
}

// av1HasSequenceHeader reports whether a temporal unit (low-overhead OBU format)
// carries a sequence header OBU, as every keyframe of an encoder's output does.
func av1HasSequenceHeader(tu []byte) bool {
	for len(tu) > 0 {
		hdr := tu[0]
		obuType := (hdr >> 3) & 0x0f
		hasExt := hdr&0x04 != 0
		hasSize := hdr&0x02 != 0
		n := 1
		if hasExt {
			n++
		}
		if obuType == 1 {
			return true
		}
		if !hasSize || n > len(tu) {
			return false
		}
		size, l := binary.Uvarint(tu[n:]) // LEB128 is the same encoding as Uvarint
		if l <= 0 {
			return false
		}
		n += l
		if uint64(len(tu)-n) < size {
			return false
		}
		tu = tu[n+int(size):]
	}
	return false
}

// NewH264Source reads an H.264 Annex-B elementary stream and groups its NAL units
// into access units (one per picture; SPS, PPS and SEI stay with the picture that
// follows them, so an IDR carries its parameter sets). Each access unit lasts 1/fps.
func NewH264Source(path string, fps int, loop bool) (KeyframeSource, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("h264 source: %w", err)
	}
	src, err := parseH264(data, fps, loop)
	if err != nil {
		return nil, fmt.Errorf("h264 source %s: %w", path, err)
	}
	return src, nil
}

var annexBStart = []byte{0, 0, 0, 1}

func parseH264(data []byte, fps int, loop bool) (*memSource, error) {
	if fps <= 0 {
		return nil, fmt.Errorf("fps %d", fps)
	}
	dur := time.Second / time.Duration(fps)
	src := &memSource{codec: codecH264, loop: loop}
	var au []byte
	auHasVCL, auKey := false, false
	flush := func() {
		if auHasVCL {
			src.samples = append(src.samples, sample{data: au, dur: dur, key: auKey})
		}
		// An access unit without a picture (trailing parameter sets) is dropped.
		au, auHasVCL, auKey = nil, false, false
	}
	for _, nal := range codec.AppendAnnexBNALs(nil, data) {
		if len(nal) == 0 {
			continue
		}
		typ := nal[0] & 0x1f
		switch {
		case typ == 9: // access unit delimiter: starts a new AU, not sent
			if auHasVCL {
				flush()
			}
			continue
		case typ == 6 || typ == 7 || typ == 8 || (typ >= 14 && typ <= 18):
			// Non-VCL units that precede the picture they belong to.
			if auHasVCL {
				flush()
			}
		case typ >= 1 && typ <= 5:
			// first_mb_in_slice == 0 (ue(v) "1" bit) starts a new picture.
			if auHasVCL && len(nal) > 1 && nal[1]&0x80 != 0 {
				flush()
			}
			auHasVCL = true
			if typ == 5 {
				auKey = true
			}
		}
		if typ == 7 && len(nal) >= 4 && nal[1] == 100 {
			// The SPS says High profile: the stream is offered as such
			// (a Constrained Baseline decoder could not decode it).
			src.codec = codecH264High
		}
		au = append(au, annexBStart...)
		au = append(au, nal...)
	}
	flush()
	if len(src.samples) == 0 {
		return nil, errors.New("no pictures")
	}
	return src, nil
}

// NewOpusSource reads an Ogg Opus file and returns its packets, each lasting what
// its TOC byte says (20 ms for the files of pkg/testmedia).
func NewOpusSource(path string, loop bool) (Source, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("opus source: %w", err)
	}
	src, err := parseOggOpus(data, loop)
	if err != nil {
		return nil, fmt.Errorf("opus source %s: %w", path, err)
	}
	return src, nil
}

func parseOggOpus(data []byte, loop bool) (*memSource, error) {
	packets, err := oggPackets(data)
	if err != nil {
		return nil, err
	}
	if len(packets) < 2 || !bytes.HasPrefix(packets[0], []byte("OpusHead")) {
		return nil, errors.New("not an Ogg Opus stream")
	}
	src := &memSource{codec: codecOpus, loop: loop}
	for _, p := range packets[1:] {
		if bytes.HasPrefix(p, []byte("OpusTags")) || len(p) == 0 {
			continue
		}
		d := codec.OpusPacketDuration(p)
		if d <= 0 {
			return nil, fmt.Errorf("bad opus packet (TOC %#x)", p[0])
		}
		src.samples = append(src.samples, sample{data: p, dur: d, key: true})
	}
	if len(src.samples) == 0 {
		return nil, errors.New("no audio packets")
	}
	return src, nil
}

// oggPackets splits the first logical stream of an Ogg file into its packets.
func oggPackets(data []byte) ([][]byte, error) {
	var (
		packets [][]byte
		cur     []byte
		serial  uint32
		first   = true
	)
	for len(data) > 0 {
		if len(data) < 27 || string(data[:4]) != "OggS" {
			return nil, errors.New("bad ogg page")
		}
		nseg := int(data[26])
		if len(data) < 27+nseg {
			return nil, errors.New("truncated ogg page")
		}
		lacing := data[27 : 27+nseg]
		body := 27 + nseg
		total := 0
		for _, l := range lacing {
			total += int(l)
		}
		if len(data) < body+total {
			return nil, errors.New("truncated ogg page")
		}
		s := binary.LittleEndian.Uint32(data[14:18])
		if first {
			serial, first = s, false
		}
		if s == serial {
			off := body
			for _, l := range lacing {
				cur = append(cur, data[off:off+int(l)]...)
				off += int(l)
				if l < 255 {
					packets = append(packets, cur)
					cur = nil
				}
			}
		}
		data = data[body+total:]
	}
	return packets, nil
}

// silenceSource produces 20 ms Opus silence frames forever.
type silenceSource struct{}

// opusSilence is a 20 ms CELT fullband stereo frame that decodes to silence.
var opusSilence = []byte{0xfc, 0xff, 0xfe}

// NewSilenceOpusSource returns a source of 20 ms Opus silence frames that never ends.
func NewSilenceOpusSource() Source { return silenceSource{} }

func (silenceSource) Codec() webrtc.RTPCodecCapability { return codecOpus }

func (silenceSource) Next() ([]byte, time.Duration, error) {
	return append([]byte(nil), opusSilence...), 20 * time.Millisecond, nil
}

// rtpClock turns sample durations into RTP timestamp increments without
// accumulating rounding errors (33.3 ms is 2999.99… ticks of 90 kHz).
type rtpClock struct {
	rate    int64
	elapsed time.Duration // since the last whole second
	ticks   int64         // ticks handed out since the last whole second
}

func (c *rtpClock) advance(d time.Duration) uint32 {
	c.elapsed += d
	t := (int64(c.elapsed)*c.rate + int64(time.Second)/2) / int64(time.Second)
	inc := t - c.ticks
	c.ticks = t
	if c.elapsed >= time.Second {
		n := c.elapsed / time.Second
		c.elapsed -= n * time.Second
		c.ticks -= int64(n) * c.rate
	}
	return uint32(inc)
}

// LevelSource is an audio Source that knows the level of each sample it
// returns, as a browser measures its capture: Publish sends it in the audio
// level header extension (RFC 6464) when the server negotiates it.
type LevelSource interface {
	Source
	// Level is the level of the sample Next returned last: 0 (0 dBov, the
	// loudest) to 127 (-127 dBov or quieter).
	Level() uint8
}

// levelSource is an in-memory Opus source with a level per packet.
type levelSource struct {
	*memSource
	levels []uint8
}

func (s *levelSource) Level() uint8 {
	if s.pos == 0 {
		return 127
	}
	return s.levels[s.pos-1]
}

// NewOpusLevelSource reads an Ogg Opus file and the raw audio it was
// encoded from (signed 16-bit little-endian samples, 48 kHz, mono: what
// pkg/testmedia's SpeechOpus writes beside it), and returns a source that
// sends each packet with the level of its stretch of that audio.
func NewOpusLevelSource(oggPath, pcmPath string, loop bool) (LevelSource, error) {
	data, err := os.ReadFile(oggPath)
	if err != nil {
		return nil, fmt.Errorf("opus source: %w", err)
	}
	src, err := parseOggOpus(data, loop)
	if err != nil {
		return nil, fmt.Errorf("opus source %s: %w", oggPath, err)
	}
	pcm, err := os.ReadFile(pcmPath)
	if err != nil {
		return nil, fmt.Errorf("opus source levels: %w", err)
	}
	return &levelSource{memSource: src, levels: packetLevels(src.samples, pcm, 48000)}, nil
}

// packetLevels measures the RFC 6464 level of each sample's stretch of pcm
// (s16le mono at rate): the RMS in dBov, rounded, 127 for silence.
func packetLevels(samples []sample, pcm []byte, rate int) []uint8 {
	levels := make([]uint8, len(samples))
	total := len(pcm) / 2
	at := 0
	for i, smp := range samples {
		n := int(smp.dur.Seconds() * float64(rate))
		end := min(at+n, total)
		var sum float64
		for k := at; k < end; k++ {
			v := float64(int16(binary.LittleEndian.Uint16(pcm[2*k:]))) / 32768
			sum += v * v
		}
		levels[i] = 127
		if end > at && sum > 0 {
			db := -10 * math.Log10(sum/float64(end-at))
			levels[i] = uint8(min(127, max(0, math.Round(db))))
		}
		at += n
	}
	return levels
}
