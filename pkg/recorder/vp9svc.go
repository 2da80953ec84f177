package recorder

// VP9 with spatial layers (SVC): a picture is several frames, one a
// spatial layer, smallest first, each with show_frame set (a receiver that
// gets the lower layers alone shows the top one it has). A browser's
// decoder (libvpx) shows only the last frame of a superframe; others
// (FFmpeg's, so the offline mix) show every frame with show_frame set: a
// recording would flicker through the layers' sizes, three frames a
// picture. The recorder stores a picture as a superframe whose lower
// layers are hidden (show_frame cleared), so every decoder shows one frame
// a picture, the top layer's, and still decodes the lower layers the top
// one refers to. Clearing show_frame on an inter frame adds a bit to its
// uncompressed header (intra_only is coded only for hidden frames), so the
// header is parsed to its end (VP9 bitstream specification 6.2) and
// rewritten one bit longer.

// vp9Layers is an assembler's VP9 state: the layer frames of the picture
// being assembled, the sizes in the reference slots, and the stream's top
// spatial layer.
type vp9Layers struct {
	offs []int   // where each layer frame of the picture starts
	sids []uint8 // and its spatial layer
	refs vp9Refs
	// top is the stream's top spatial layer: the scalability structure's
	// last (a browser sends it when its layers change), or the highest
	// sent lately; -1 before either.
	top int
	// short counts the pictures in a row without the top layer.
	short int
	// fragile: an inter frame of the stream was not error resilient (see
	// hideable).
	fragile bool
}

// layer returns layer frame i of the picture in buf.
func (l *vp9Layers) layer(buf []byte, i int) []byte {
	end := len(buf)
	if i+1 < len(l.offs) {
		end = l.offs[i+1]
	}
	return buf[l.offs[i]:end]
}

// note takes in what a frame says of the stream.
func (l *vp9Layers) note(f *vp9Frame) {
	if !f.key && !f.intraOnly && !f.showExisting && !f.errorRes {
		l.fragile = true
	}
}

// hideable says whether frame f may be hidden when next is the frame
// decoded after it. Whether the frame before was shown is one of the
// conditions for a frame to use its motion vectors (the specification's
// UsePrevFrameMvs; FFmpeg's use_last_frame_mvs), so hiding f changes how
// next decodes unless next does not use them anyway: it is error resilient
// (Chromium's layer frames all are), intra, or of another size (the layer
// above). A picture left out whole is hidden only in a stream whose inter
// frames are all error resilient, as the frame after it is not known yet.
func hideable(f, next *vp9Frame) bool {
	return next.errorRes || next.key || next.intraOnly || next.size.w > 0 && next.size != f.size
}

// maxShortPictures: the recording follows the layer below when so many
// pictures in a row lack the top spatial layer (a sender that stops sending
// a layer without a new scalability structure); the ones before show
// nothing.
const maxShortPictures = 3

// shows says whether a picture whose highest spatial layer is sid shows
// a frame in the recording. A sender's rate control leaves out the upper
// layers of a picture now and then (mostly while its bandwidth estimate
// climbs): a browser receiving every layer then shows the picture's lower
// layer for a frame, a blur between sharp frames; the recording keeps the
// top layer's frame before instead.
func (l *vp9Layers) shows(sid int) bool {
	if sid >= l.top || l.short+1 >= maxShortPictures {
		l.top, l.short = sid, 0
		return true
	}
	l.short++
	return false
}

// vp9Size is a frame size in a VP9 reference slot; zero when unknown.
type vp9Size struct{ w, h int }

// vp9Refs are the sizes of the frames in the eight reference slots, as the
// frames of the stream refresh them: an inter frame may take its size
// from a reference ("found_ref") instead of coding it.
type vp9Refs [8]vp9Size

// vp9Frame is what the recorder needs of a VP9 frame's uncompressed header.
type vp9Frame struct {
	key, show, intraOnly, showExisting bool
	errorRes                           bool
	size                               vp9Size // zero when unknown
	refresh                            byte
	showBit                            int // bit offset of show_frame
	// headerBits is the uncompressed header's length in bits (before the
	// trailing bits that align it to a byte); 0 when it was not parsed to
	// its end.
	headerBits int
}

// parseVP9Frame parses a frame's uncompressed header; refs gives the sizes
// of reference slots for an inter frame that takes its size from one.
func parseVP9Frame(b []byte, refs *vp9Refs) (f vp9Frame, ok bool) {
	r := &bitReader{b: b}
	if r.u(2) != 2 {
		return f, false
	}
	profile := r.u(1) | r.u(1)<<1
	if profile == 3 {
		r.u(1)
	}
	if r.u(1) == 1 {
		f.showExisting = true
		f.show = true
		return f, r.err == nil
	}
	f.key = r.u(1) == 0
	f.showBit = r.pos
	f.show = r.u(1) == 1
	f.errorRes = r.u(1) == 1
	frameSize := func() {
		f.size = vp9Size{int(r.u(16)) + 1, int(r.u(16)) + 1}
	}
	renderSize := func() {
		if r.u(1) == 1 {
			r.u(32)
		}
	}
	syncCode := func() bool { return r.u(24) == 0x498342 }
	colorConfig := func() {
		if profile >= 2 {
			r.u(1)
		}
		if r.u(3) != 7 { // not sRGB
			r.u(1)
			if profile == 1 || profile == 3 {
				r.u(3)
			}
		} else if profile == 1 || profile == 3 {
			r.u(1)
		}
	}
	if f.key {
		if !syncCode() {
			return f, false
		}
		colorConfig()
		frameSize()
		renderSize()
		f.refresh = 0xff
	} else {
		if !f.show {
			f.intraOnly = r.u(1) == 1
		}
		if !f.errorRes {
			r.u(2) // reset_frame_context
		}
		if f.intraOnly {
			if !syncCode() {
				return f, false
			}
			if profile > 0 {
				colorConfig()
			}
			f.refresh = byte(r.u(8))
			frameSize()
			renderSize()
		} else {
			f.refresh = byte(r.u(8))
			var idx [3]uint64
			for i := range idx {
				idx[i] = r.u(3)
				r.u(1) // sign bias
			}
			found := false
			for i := range idx {
				if r.u(1) == 1 {
					if refs != nil {
						f.size = refs[idx[i]]
					}
					found = true
					break
				}
			}
			if !found {
				frameSize()
			}
			renderSize()
			r.u(1)           // allow_high_precision_mv
			if r.u(1) == 0 { // is_filter_switchable
				r.u(2)
			}
		}
	}
	if r.err != nil {
		return f, false
	}
	if f.size.w == 0 {
		return f, true // the rest depends on a size not known
	}
	if !f.errorRes {
		r.u(2) // refresh_frame_context, frame_parallel_decoding_mode
	}
	r.u(2) // frame_context_idx
	// loop_filter_params
	r.u(9)
	if r.u(1) == 1 && r.u(1) == 1 {
		for range 6 {
			if r.u(1) == 1 {
				r.u(7)
			}
		}
	}
	// quantization_params
	r.u(8)
	for range 3 {
		if r.u(1) == 1 {
			r.u(5)
		}
	}
	// segmentation_params
	if r.u(1) == 1 {
		if r.u(1) == 1 { // update_map
			for range 7 {
				if r.u(1) == 1 {
					r.u(8)
				}
			}
			if r.u(1) == 1 { // temporal_update
				for range 3 {
					if r.u(1) == 1 {
						r.u(8)
					}
				}
			}
		}
		if r.u(1) == 1 { // update_data
			r.u(1)
			featureBits := [4]int{8, 6, 2, 0}
			featureSigned := [4]int{1, 1, 0, 0}
			for range 8 {
				for j := range 4 {
					if r.u(1) == 1 {
						r.u(featureBits[j] + featureSigned[j])
					}
				}
			}
		}
	}
	// tile_info
	sb64Cols := ((f.size.w+7)>>3 + 7) >> 3
	minLog2 := 0
	for 64<<minLog2 < sb64Cols {
		minLog2++
	}
	maxLog2 := 1
	for sb64Cols>>maxLog2 >= 4 {
		maxLog2++
	}
	maxLog2--
	for cols := minLog2; cols < maxLog2 && r.u(1) == 1; cols++ {
	}
	if r.u(1) == 1 {
		r.u(1)
	}
	headerSize := int(r.u(16))
	if r.err != nil || headerSize == 0 {
		return f, r.err == nil
	}
	// The trailing bits are zero, and the compressed header follows.
	end := (r.pos + 7) / 8
	if end+headerSize > len(b) || r.pos%8 != 0 && b[r.pos/8]<<(r.pos%8) != 0 {
		return f, true
	}
	f.headerBits = r.pos
	return f, true
}

// update records in refs the size of the frame in the slots it refreshes.
func (f *vp9Frame) update(refs *vp9Refs) {
	if f.showExisting {
		return
	}
	for i := range refs {
		if f.refresh&(1<<i) != 0 {
			refs[i] = f.size
		}
	}
}

// appendHidden appends frame b (parsed as f) to dst with show_frame
// cleared; false (and dst unchanged) when it cannot be.
func appendHidden(dst, b []byte, f *vp9Frame) ([]byte, bool) {
	switch {
	case f.showExisting:
		return dst, false
	case !f.show:
		return append(dst, b...), true
	case f.key:
		// Nothing in a keyframe's header depends on show_frame.
		n := len(dst)
		dst = append(dst, b...)
		dst[n+f.showBit/8] &^= 0x80 >> (f.showBit % 8)
		return dst, true
	case f.headerBits == 0:
		return dst, false
	}
	// An inter frame: intra_only (0) goes in after error_resilient_mode,
	// the rest of the uncompressed header moves one bit on.
	at := f.showBit + 2
	total := f.headerBits + 1
	n := len(dst)
	dst = append(dst, make([]byte, (total+7)/8)...)
	out := dst[n:]
	bit := func(i int) byte { return b[i/8] >> (7 - i%8) & 1 }
	for i := range f.headerBits {
		v := bit(i)
		if i == f.showBit {
			v = 0
		}
		j := i
		if i >= at {
			j++
		}
		out[j/8] |= v << (7 - j%8)
	}
	return append(dst, b[(f.headerBits+7)/8:]...), true
}
