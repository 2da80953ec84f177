package recorder

import (
	"encoding/binary"
	"errors"
	"strings"

	"github.com/pion/rtp/codecs/vp9"
)

// codec identifies a supported RTP codec.
type codec int

const (
	codecUnknown codec = iota
	codecVP8
	codecVP9
	codecAV1
	codecH264
	codecOpus
	codecPCMU
	codecPCMA
)

// parseCodec maps an RTP MIME type to a codec.
func parseCodec(mime string) codec {
	switch strings.ToLower(mime) {
	case "video/vp8":
		return codecVP8
	case "video/vp9":
		return codecVP9
	case "video/av1":
		return codecAV1
	case "video/h264":
		return codecH264
	case "audio/opus":
		return codecOpus
	case "audio/pcmu":
		return codecPCMU
	case "audio/pcma":
		return codecPCMA
	}
	return codecUnknown
}

func (c codec) video() bool { return c == codecVP8 || c == codecVP9 || c == codecAV1 || c == codecH264 }

// webmOK reports whether WebM can hold the codec.
func (c codec) webmOK() bool {
	return c == codecVP8 || c == codecVP9 || c == codecAV1 || c == codecOpus
}

func (c codec) matroskaID() string {
	switch c {
	case codecVP8:
		return "V_VP8"
	case codecVP9:
		return "V_VP9"
	case codecAV1:
		return "V_AV1"
	case codecH264:
		return "V_MPEG4/ISO/AVC"
	case codecOpus:
		return "A_OPUS"
	case codecPCMU, codecPCMA:
		return "A_PCM/INT/LIT" // G.711 is decoded to 16-bit PCM (tiny, lossless)
	}
	return ""
}

// vp8Size returns the size carried by a VP8 keyframe (RFC 6386 9.1).
func vp8Size(frame []byte) (w, h int, ok bool) {
	if len(frame) < 10 || frame[0]&0x01 != 0 || frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a {
		return 0, 0, false
	}
	w = int(binary.LittleEndian.Uint16(frame[6:8]) & 0x3fff)
	h = int(binary.LittleEndian.Uint16(frame[8:10]) & 0x3fff)
	return w, h, w > 0 && h > 0
}

// vp9Key reports whether a VP9 frame is a keyframe, with its size.
func vp9Key(frame []byte) (key bool, w, h int) {
	var hd vp9.Header
	if err := hd.Unmarshal(frame); err != nil || hd.ShowExistingFrame || hd.NonKeyFrame {
		return false, 0, 0
	}
	return true, int(hd.Width()), int(hd.Height())
}

// opusPreSkip is the encoder delay of an Opus stream, in 48 kHz samples:
// libopus's lookahead (2.5 ms of analysis and 4 ms of delay compensation),
// which every WebRTC implementation uses (Chromium, Firefox, Safari, and
// libopus behind Pion and GStreamer senders). The first 312 samples a
// decoder makes come before the first input sample; an RTP timestamp is
// that of the first input sample. Declaring it (OpusHead pre-skip and the
// track's CodecDelay) makes players drop them, so a sound plays at its RTP
// time and not 6.5 ms later.
const opusPreSkip = 312

// opusCodecDelay is opusPreSkip in nanoseconds (Matroska CodecDelay).
const opusCodecDelay = opusPreSkip * 1_000_000_000 / 48000

// opusHead is the Matroska CodecPrivate of an Opus track (RFC 7845 5.1):
// version 1, channels, pre-skip, 48 kHz, gain 0, mapping family 0.
func opusHead(channels int) []byte {
	h := []byte("OpusHead")
	h = append(h, 1, byte(channels))
	h = binary.LittleEndian.AppendUint16(h, opusPreSkip)
	h = binary.LittleEndian.AppendUint32(h, 48000)
	h = append(h, 0, 0, 0)
	return h
}

// --- H.264 ---

// h264Info is what a keyframe tells about an H.264 stream.
type h264Info struct {
	sps, pps []byte
	w, h     int
}

// avcC builds an AVCDecoderConfigurationRecord (ISO 14496-15 5.2.4.1) from one SPS and PPS.
func (i *h264Info) avcC() []byte {
	if len(i.sps) < 4 || len(i.pps) == 0 || len(i.sps) > 0xffff || len(i.pps) > 0xffff {
		return nil
	}
	b := []byte{1, i.sps[1], i.sps[2], i.sps[3], 0xff, 0xe1}
	b = binary.BigEndian.AppendUint16(b, uint16(len(i.sps)))
	b = append(b, i.sps...)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(i.pps)))
	b = append(b, i.pps...)
	return b
}

// bitReader reads bits MSB first; reads past the end return errShort.
type bitReader struct {
	b   []byte
	pos int
	err error
}

var errShort = errors.New("short bitstream")

func (r *bitReader) u(n int) uint64 {
	var v uint64
	for range n {
		if r.pos >= len(r.b)*8 {
			r.err = errShort
			return 0
		}
		bit := (r.b[r.pos/8] >> (7 - r.pos%8)) & 1
		v = v<<1 | uint64(bit)
		r.pos++
	}
	return v
}

func (r *bitReader) ue() uint64 {
	zeros := 0
	for r.u(1) == 0 {
		if r.err != nil || zeros > 31 {
			r.err = errShort
			return 0
		}
		zeros++
	}
	return (uint64(1)<<zeros - 1) + r.u(zeros)
}

func (r *bitReader) se() int64 {
	v := r.ue()
	if v%2 == 1 {
		return int64(v/2 + 1)
	}
	return -int64(v / 2)
}

// unescapeRBSP removes emulation prevention bytes (00 00 03).
func unescapeRBSP(b []byte) []byte {
	out := make([]byte, 0, len(b))
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
		out = append(out, c)
	}
	return out
}

// spsSize decodes the picture size of an H.264 SPS NAL unit (with its header byte).
func spsSize(nal []byte) (w, h int, ok bool) {
	if len(nal) < 4 {
		return 0, 0, false
	}
	r := &bitReader{b: unescapeRBSP(nal[1:])}
	profile := r.u(8)
	r.u(16) // constraint flags, level
	r.ue()  // seq_parameter_set_id
	chroma := uint64(1)
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma = r.ue()
		if chroma == 3 {
			r.u(1)
		}
		r.ue()
		r.ue()
		r.u(1)
		if r.u(1) == 1 { // seq_scaling_matrix_present_flag
			n := 8
			if chroma == 3 {
				n = 12
			}
			for i := range n {
				if r.u(1) == 1 {
					size := 16
					if i >= 6 {
						size = 64
					}
					last, next := int64(8), int64(8)
					for range size {
						if next != 0 {
							next = (last + r.se() + 256) % 256
						}
						if next != 0 {
							last = next
						}
					}
				}
			}
		}
	}
	r.ue() // log2_max_frame_num_minus4
	switch r.ue() {
	case 0:
		r.ue()
	case 1:
		r.u(1)
		r.se()
		r.se()
		n := r.ue()
		if n > 255 {
			return 0, 0, false
		}
		for range n {
			r.se()
		}
	}
	r.ue()
	r.u(1)
	wmb := r.ue() + 1
	hmu := r.ue() + 1
	frameMbsOnly := r.u(1)
	if frameMbsOnly == 0 {
		r.u(1)
	}
	r.u(1)
	var cl, cr, ct, cb uint64
	if r.u(1) == 1 {
		cl, cr, ct, cb = r.ue(), r.ue(), r.ue(), r.ue()
	}
	if r.err != nil || wmb > 1024 || hmu > 1024 {
		return 0, 0, false
	}
	cx, cy := uint64(2), uint64(2)*(2-frameMbsOnly)
	if chroma == 0 {
		cx, cy = 1, 2-frameMbsOnly
	}
	width := int(wmb*16) - int(cx*(cl+cr))
	height := int((2-frameMbsOnly)*hmu*16) - int(cy*(ct+cb))
	return width, height, width > 0 && height > 0
}

// --- AV1 ---

// av1Walk calls fn for each OBU of a low-overhead bitstream (every OBU has a size field).
func av1Walk(tu []byte, fn func(typ byte, obu []byte)) bool {
	for len(tu) > 0 {
		hdr := tu[0]
		if hdr&0x02 == 0 {
			return false
		}
		n := 1
		if hdr&0x04 != 0 {
			n++
		}
		if n > len(tu) {
			return false
		}
		size, l := binary.Uvarint(tu[n:])
		if l <= 0 || uint64(len(tu)-n-l) < size {
			return false
		}
		end := n + l + int(size)
		fn((hdr>>3)&0x0f, tu[:end])
		tu = tu[end:]
	}
	return true
}

// av1Info inspects a temporal unit: whether it has a sequence header (a
// keyframe for recording purposes), and the av1C record and size it gives.
func av1Info(tu []byte) (key bool, av1c []byte, w, h int) {
	av1Walk(tu, func(typ byte, obu []byte) {
		if typ != 1 || key {
			return
		}
		key = true
		// Payload offset: header (+ext) + leb128 size.
		n := 1
		if obu[0]&0x04 != 0 {
			n++
		}
		_, l := binary.Uvarint(obu[n:])
		profile, level, tier, w0, h0, ok := av1SeqHeader(obu[n+l:])
		if !ok {
			return
		}
		w, h = w0, h0
		// AV1CodecConfigurationRecord: marker+version, profile/level,
		// tier/bitdepth/mono/subsampling (8-bit 4:2:0 assumed), delay byte, configOBUs.
		av1c = []byte{0x81, profile<<5 | level&0x1f, tier<<7 | 0x0c, 0}
		av1c = append(av1c, obu...)
	})
	return key, av1c, w, h
}

// av1SeqHeader parses the start of a sequence header OBU payload (AV1 spec 5.5.1).
func av1SeqHeader(p []byte) (profile, level, tier byte, w, h int, ok bool) {
	r := &bitReader{b: p}
	profile = byte(r.u(3))
	r.u(1) // still_picture
	reduced := r.u(1) == 1
	if reduced {
		level = byte(r.u(5))
	} else {
		decoderModel := false
		bufferDelayLen := 0
		if r.u(1) == 1 { // timing_info_present_flag
			r.u(32)
			r.u(32)
			if r.u(1) == 1 { // equal_picture_interval: uvlc
				zeros := 0
				for r.u(1) == 0 && r.err == nil && zeros < 32 {
					zeros++
				}
				r.u(zeros)
			}
			if r.u(1) == 1 {
				decoderModel = true
				bufferDelayLen = int(r.u(5)) + 1
				r.u(32)
				r.u(5)
				r.u(5)
			}
		}
		initialDisplayDelay := r.u(1) == 1
		ops := int(r.u(5)) + 1
		for i := range ops {
			r.u(12)
			lv := byte(r.u(5))
			var t byte
			if lv > 7 {
				t = byte(r.u(1))
			}
			if i == 0 {
				level, tier = lv, t
			}
			if decoderModel && r.u(1) == 1 {
				r.u(bufferDelayLen)
				r.u(bufferDelayLen)
				r.u(1)
			}
			if initialDisplayDelay && r.u(1) == 1 {
				r.u(4)
			}
		}
	}
	wb := int(r.u(4)) + 1
	hb := int(r.u(4)) + 1
	w = int(r.u(wb)) + 1
	h = int(r.u(hb)) + 1
	return profile, level, tier, w, h, r.err == nil
}

// --- G.711 ---

// g711Table decodes G.711 bytes to 16-bit linear samples.
type g711Table [256]int16

func ulawTable() *g711Table {
	var t g711Table
	for i := range 256 {
		u := ^byte(i)
		sign := u & 0x80
		exp := (u >> 4) & 0x07
		mant := int(u & 0x0f)
		v := ((mant << 3) + 0x84) << exp
		v -= 0x84
		if sign != 0 {
			v = -v
		}
		t[i] = int16(v)
	}
	return &t
}

func alawTable() *g711Table {
	var t g711Table
	for i := range 256 {
		a := byte(i) ^ 0x55
		sign := a & 0x80
		exp := (a >> 4) & 0x07
		mant := int(a & 0x0f)
		var v int
		if exp == 0 {
			v = (mant << 4) + 8
		} else {
			v = ((mant << 4) + 0x108) << (exp - 1)
		}
		if sign == 0 {
			v = -v
		}
		t[i] = int16(v)
	}
	return &t
}

// decode appends the little-endian PCM of g711 to dst.
func (t *g711Table) decode(dst, g711 []byte) []byte {
	for _, c := range g711 {
		v := uint16(t[c])
		dst = append(dst, byte(v), byte(v>>8))
	}
	return dst
}
