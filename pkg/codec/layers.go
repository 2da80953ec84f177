package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Layers: what an SFU reads of a VP8 or VP9 payload descriptor to leave out
// the frames of the higher temporal layers for a receiver whose link cannot
// carry them all (RFC 7741 for VP8, RFC 9628 for VP9), and, for VP9, what
// spatial layer selection will need (the spatial layer of each packet, the
// layers' sizes). AV1's layers are in the dependency descriptor: package
// av1dd.

// Descriptor is the part of a VP8 or VP9 payload descriptor that layer
// selection needs. Its zero value is a packet without layer
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

	// The rest is VP9's alone (RFC 9628 section 4.2), for spatial layer
	// selection. SID is the spatial layer id, valid when HasTID (the layer
	// indices are present; without them the stream has one spatial
	// layer). InterLayer is the D bit: this layer frame depends on the one
	// of the spatial layer below in the same picture. Begin and End are the
	// B and E bits: the packet begins or ends a layer frame (the picture on
	// one spatial layer; Start is Begin on the lowest). NoUpperRef is the Z
	// bit: no layer frame above refers to this one.
	SID        uint8
	InterLayer bool
	Begin      bool
	End        bool
	NoUpperRef bool
	// SSAt is the offset of the scalability structure in the payload, when
	// the packet has one (the V bit; 0: none). ParseVP9SS reads it.
	SSAt uint8
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
// 4.2): the picture id, the layer indices and the B, E, Z bits, and where
// the scalability structure is when the V bit announces one. It reports
// false when p is too short for them. It is called once per forwarded
// packet: it allocates nothing, and reads the bytes between the layer
// indices and the scalability structure (TL0PICIDX, the reference
// indices) only on packets that have one.
func ParseVP9(p []byte) (Descriptor, bool) {
	var d Descriptor
	if len(p) < 1 {
		return d, false
	}
	b0 := p[0]
	layered, flexible := b0&0x20 != 0, b0&0x10 != 0
	d.Begin, d.End, d.NoUpperRef = b0&0x08 != 0, b0&0x04 != 0, b0&0x01 != 0
	i := 1
	if b0&0x80 != 0 { // I: picture id
		var ok bool
		if i, ok = d.readPictureID(p, i); !ok {
			return d, false
		}
	}
	d.Start = d.Begin
	if layered {
		if len(p) <= i {
			return d, false
		}
		l := p[i]
		d.HasTID, d.TID, d.Sync = true, l>>5, l&0x10 != 0
		d.SID, d.InterLayer = (l>>1)&0x07, l&0x01 != 0
		d.Start = d.Begin && d.SID == 0
	}
	if b0&0x02 == 0 { // V: no scalability structure
		return d, true
	}
	if layered {
		i++ // the layer indices
		if !flexible {
			i++ // TL0PICIDX
		}
	}
	if flexible && b0&0x40 != 0 { // F and P: up to 3 reference indices
		for n := 0; ; n++ {
			if len(p) <= i || n == 3 {
				return d, false
			}
			more := p[i]&0x01 != 0
			i++
			if !more {
				break
			}
		}
	}
	if len(p) <= i {
		return d, false
	}
	d.SSAt = uint8(i)
	return d, true
}

// MaxVP9SpatialLayers bounds a VP9 stream's spatial layers (the SS's N_S
// has 3 bits).
const MaxVP9SpatialLayers = 8

// VP9SS is a VP9 scalability structure (RFC 9628 section 4.2.1): what a
// sender says of its spatial layers at the start of a picture group (a
// browser: on every keyframe).
type VP9SS struct {
	// Layers is the number of spatial layers (N_S + 1).
	Layers int
	// HasSize says Width and Height hold each layer's resolution (the Y
	// bit), lowest layer first.
	HasSize bool
	Width   [MaxVP9SpatialLayers]uint16
	Height  [MaxVP9SpatialLayers]uint16
	// HasGroup says the picture group description is present (the G bit);
	// Group is its pictures, in order (empty when N_G is 0).
	HasGroup bool
	Group    []VP9GroupPicture
}

// VP9GroupPicture is one picture of a VP9 picture group: its temporal
// layer, its switching up point bit, and how many pictures back each of
// its references is.
type VP9GroupPicture struct {
	TID  uint8
	Sync bool
	// Refs holds the reference differences (P_DIFF), Refs[:NRefs].
	Refs  [3]uint8
	NRefs uint8
}

// ParseVP9SS reads the scalability structure of a VP9 payload (one whose
// descriptor has the V bit set). It allocates only for the picture group.
func ParseVP9SS(p []byte) (VP9SS, error) {
	var ss VP9SS
	d, ok := ParseVP9(p)
	if !ok {
		return ss, errors.New("vp9: payload descriptor cut short")
	}
	if d.SSAt == 0 {
		return ss, errors.New("vp9: no scalability structure (V bit clear)")
	}
	i := int(d.SSAt)
	b := p[i]
	i++
	ss.Layers = int(b>>5) + 1
	ss.HasSize, ss.HasGroup = b&0x10 != 0, b&0x08 != 0
	if ss.HasSize {
		if len(p) < i+4*ss.Layers {
			return ss, fmt.Errorf("vp9: scalability structure: %d layers' sizes need %d bytes, %d left", ss.Layers, 4*ss.Layers, len(p)-i)
		}
		for l := range ss.Layers {
			ss.Width[l] = binary.BigEndian.Uint16(p[i:])
			ss.Height[l] = binary.BigEndian.Uint16(p[i+2:])
			i += 4
		}
	}
	if !ss.HasGroup {
		return ss, nil
	}
	if len(p) <= i {
		return ss, errors.New("vp9: scalability structure: picture group size (N_G) missing")
	}
	ng := int(p[i])
	i++
	ss.Group = make([]VP9GroupPicture, 0, min(ng, len(p)-i))
	for g := range ng {
		if len(p) <= i {
			return ss, fmt.Errorf("vp9: scalability structure: picture %d of %d missing", g, ng)
		}
		pic := VP9GroupPicture{TID: p[i] >> 5, Sync: p[i]&0x10 != 0, NRefs: (p[i] >> 2) & 0x03}
		i++
		if len(p) < i+int(pic.NRefs) {
			return ss, fmt.Errorf("vp9: scalability structure: picture %d's %d references missing", g, pic.NRefs)
		}
		copy(pic.Refs[:], p[i:i+int(pic.NRefs)])
		i += int(pic.NRefs)
		ss.Group = append(ss.Group, pic)
	}
	return ss, nil
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
