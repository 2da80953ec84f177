package codec

import "strings"

// FrameSize returns the picture size a keyframe's first RTP payload carries,
// where the codec puts it there: VP8 (the keyframe's frame header, RFC 6386
// section 9.1) and H.264 (a sequence parameter set, alone or in a STAP-A).
// ok is false for other payloads and codecs.
func FrameSize(mimeType string, payload []byte) (w, h int, ok bool) {
	switch {
	case strings.EqualFold(mimeType, "video/vp8"):
		return vp8Size(payload)
	case strings.EqualFold(mimeType, "video/h264"):
		return h264Size(payload)
	}
	return 0, 0, false
}

// vp8Size reads the size from the first packet of a VP8 keyframe.
func vp8Size(p []byte) (int, int, bool) {
	if !isVP8Keyframe(p) {
		return 0, 0, false
	}
	i := 1
	if p[0]&0x80 != 0 {
		ext := p[1]
		i = 2
		if ext&0x80 != 0 {
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if ext&0x40 != 0 {
			i++
		}
		if ext&0x30 != 0 {
			i++
		}
	}
	// 3-byte frame tag, start code 9d 01 2a, then 14-bit width and height.
	f := p[i:]
	if len(f) < 10 || f[3] != 0x9d || f[4] != 0x01 || f[5] != 0x2a {
		return 0, 0, false
	}
	w := int(f[6]) | int(f[7]&0x3f)<<8
	h := int(f[8]) | int(f[9]&0x3f)<<8
	return w, h, w > 0 && h > 0
}

// h264Size finds a sequence parameter set in a payload (a single NAL unit or
// a STAP-A) and reads its picture size.
func h264Size(p []byte) (int, int, bool) {
	if len(p) < 1 {
		return 0, 0, false
	}
	switch p[0] & 0x1f {
	case 7:
		return spsSize(p)
	case 24:
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				break
			}
			if p[i]&0x1f == 7 {
				return spsSize(p[i : i+size])
			}
			i += size
		}
	}
	return 0, 0, false
}

// bits reads an RBSP (emulation prevention removed as it goes) bit by bit.
type bits struct {
	b   []byte
	pos int // bit position
	bad bool
}

func (r *bits) bit() uint64 {
	i := r.pos / 8
	if i >= len(r.b) {
		r.bad = true
		return 0
	}
	if r.pos%8 == 0 && i > 0 && r.b[i] == 3 && r.b[i-1] == 0 && i > 1 && r.b[i-2] == 0 {
		r.pos += 8 // an emulation prevention byte
		return r.bit()
	}
	v := uint64(r.b[i]>>(7-r.pos%8)) & 1
	r.pos++
	return v
}

func (r *bits) u(n int) uint64 {
	var v uint64
	for range n {
		v = v<<1 | r.bit()
	}
	return v
}

// ue reads an unsigned exp-Golomb code.
func (r *bits) ue() uint64 {
	n := 0
	for r.bit() == 0 {
		if n++; n > 31 || r.bad {
			r.bad = true
			return 0
		}
	}
	return 1<<n - 1 + r.u(n)
}

// se reads a signed exp-Golomb code.
func (r *bits) se() int64 {
	v := r.ue()
	if v&1 == 1 {
		return int64(v+1) / 2
	}
	return -int64(v / 2)
}

// spsSize reads the picture size of an H.264 sequence parameter set NAL unit
// (ITU-T H.264 section 7.3.2.1.1), cropping applied.
func spsSize(nal []byte) (int, int, bool) {
	if len(nal) < 4 {
		return 0, 0, false
	}
	r := &bits{b: nal[1:]}
	profile := r.u(8)
	r.u(16) // constraint flags, level
	r.ue()  // seq_parameter_set_id
	chroma := uint64(1)
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		if chroma = r.ue(); chroma == 3 {
			r.u(1) // separate_colour_plane_flag
		}
		r.ue()           // bit_depth_luma_minus8
		r.ue()           // bit_depth_chroma_minus8
		r.u(1)           // qpprime_y_zero_transform_bypass_flag
		if r.u(1) == 1 { // seq_scaling_matrix_present_flag
			lists := 8
			if chroma == 3 {
				lists = 12
			}
			for i := range lists {
				if r.u(1) == 0 {
					continue
				}
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
	r.ue()          // log2_max_frame_num_minus4
	switch r.ue() { // pic_order_cnt_type
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
	r.ue() // max_num_ref_frames
	r.u(1) // gaps_in_frame_num_value_allowed_flag
	wmb, hmu := r.ue()+1, r.ue()+1
	frameMbsOnly := r.u(1)
	if frameMbsOnly == 0 {
		r.u(1) // mb_adaptive_frame_field_flag
	}
	r.u(1) // direct_8x8_inference_flag
	var cl, cr, ct, cb uint64
	if r.u(1) == 1 { // frame_cropping_flag
		cl, cr, ct, cb = r.ue(), r.ue(), r.ue(), r.ue()
	}
	if r.bad || wmb > 1024 || hmu > 1024 {
		return 0, 0, false
	}
	cx, cy := uint64(2), 2*(2-frameMbsOnly)
	if chroma == 0 {
		cx, cy = 1, 2-frameMbsOnly
	}
	w := int(wmb*16) - int(cx*(cl+cr))
	h := int((2-frameMbsOnly)*hmu*16) - int(cy*(ct+cb))
	return w, h, w > 0 && h > 0
}
