package codec

// Temporal layers: what an SFU reads of a VP8 or VP9 payload descriptor to
// leave out the frames of the higher temporal layers for a receiver whose
// link cannot carry them all (RFC 7741 for VP8, RFC 9628 for VP9).

// Descriptor is the part of a VP8 or VP9 payload descriptor that temporal
// layer selection needs. Its zero value is a packet without layer
// information (everything is the base layer).
type Descriptor struct {
	// TID is the temporal layer id (0: the base layer), valid when HasTID.
	TID    uint8
	HasTID bool
	// Sync says a decoder that had only the layers below TID can decode
	// this frame and the following ones of its layer: VP8's layer sync
	// bit Y, VP9's switching up point U.
	Sync bool
	// Start says the packet begins a picture: VP8 S=1 with partition index
	// 0; VP9 B=1 on the lowest spatial layer.
	Start bool
	// PicAt is the offset of the picture id in the payload (0: none), and
	// PicLong says it is 15 bits (else 7); PicID is its value.
	PicAt   uint8
	PicLong bool
	PicID   uint16
}

// ParseVP8 reads a VP8 payload descriptor (RFC 7741 section 4.2). It
// reports false when p is too short for the descriptor it announces.
func ParseVP8(p []byte) (Descriptor, bool) {
	var d Descriptor
	if len(p) < 1 {
		return d, false
	}
	d.Start = p[0]&0x10 != 0 && p[0]&0x07 == 0
	if p[0]&0x80 == 0 {
		return d, true
	}
	if len(p) < 2 {
		return d, false
	}
	ext, i := p[1], 2
	if ext&0x80 != 0 { // I: picture id
		var ok bool
		if i, ok = d.readPictureID(p, i); !ok {
			return d, false
		}
	}
	if ext&0x40 != 0 { // L: TL0PICIDX
		i++
	}
	if ext&0x30 != 0 { // T or K: TID|Y|KEYIDX
		if len(p) <= i {
			return d, false
		}
		if ext&0x20 != 0 {
			d.HasTID, d.TID, d.Sync = true, p[i]>>6, p[i]&0x20 != 0
		}
		i++
	}
	if len(p) < i {
		return d, false
	}
	return d, true
}

// ParseVP9 reads a VP9 payload descriptor's first bytes (RFC 9628 section
// 4.2): the picture id and the layer indices. It reports false when p is
// too short for them.
func ParseVP9(p []byte) (Descriptor, bool) {
	var d Descriptor
	if len(p) < 1 {
		return d, false
	}
	b0 := p[0]
	begin, layered := b0&0x08 != 0, b0&0x20 != 0
	i := 1
	if b0&0x80 != 0 { // I: picture id
		var ok bool
		if i, ok = d.readPictureID(p, i); !ok {
			return d, false
		}
	}
	d.Start = begin
	if layered {
		if len(p) <= i {
			return d, false
		}
		l := p[i]
		d.HasTID, d.TID, d.Sync = true, l>>5, l&0x10 != 0
		d.Start = begin && (l>>1)&0x07 == 0
	}
	return d, true
}

// PicIDAdd returns a picture id moved on by n, in the id's own width (15 or
// 7 bits).
func PicIDAdd(id uint16, n int, long bool) uint16 {
	if long {
		return uint16((int(id) + n) & 0x7fff)
	}
	return uint16((int(id) + n) & 0x7f)
}

// PutPicID writes a picture id at the offset a Descriptor gave, in the
// same width (the M bit stays as it was).
func PutPicID(p []byte, at uint8, long bool, id uint16) {
	if long {
		p[at] = 0x80 | byte(id>>8)&0x7f
		p[at+1] = byte(id)
		return
	}
	p[at] = byte(id) & 0x7f
}

// readPictureID reads the picture id at p[i] (VP8 and VP9 write it alike: 7
// bits, or 15 after an M bit) into d; it returns the index after it, false
// when p is too short.
func (d *Descriptor) readPictureID(p []byte, i int) (int, bool) {
	if len(p) <= i {
		return i, false
	}
	d.PicAt = uint8(i)
	if p[i]&0x80 != 0 {
		if len(p) <= i+1 {
			return i, false
		}
		d.PicLong, d.PicID = true, uint16(p[i]&0x7f)<<8|uint16(p[i+1])
		return i + 2, true
	}
	d.PicID = uint16(p[i])
	return i + 1, true
}
