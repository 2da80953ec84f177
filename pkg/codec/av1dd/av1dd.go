// Package av1dd reads the dependency descriptor RTP header extension of the
// AV1 RTP specification (appendix A,
// https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension):
// what a forwarder needs to know of a packet's frame without reading the
// payload — whether the packet starts or ends a frame, the frame's number, its
// spatial and temporal layer, the decode targets it belongs to, the frames it
// refers to and the chains that protect the decode targets.
//
// Most of that comes from a template dependency structure which a sender
// attaches to the first packet of a coded video sequence (a keyframe) and
// later packets refer to by template id. Parse reads one extension given the
// structure in force; a Reader remembers the structure (and the active decode
// targets) from packet to packet of one stream.
package av1dd

import (
	"errors"
	"fmt"
)

// URI is the extension's name in SDP (a=extmap).
const URI = "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension"

// Bounds of a structure. Template ids have 6 bits and the decode target count
// 5; AV1's spatial_id has 2 bits and its temporal_id 3, which bound the layers.
const (
	MaxTemplates      = 64
	MaxDecodeTargets  = 32
	MaxSpatialLayers  = 4
	MaxTemporalLayers = 8
)

// MaxSize is the most data an RTP header extension element holds (RFC 8285's
// two-byte form).
const MaxSize = 255

// DTI is a decode target indication (table A.1): what a frame is to a decode
// target.
type DTI uint8

// The decode target indications.
const (
	// NotPresent: the frame is not in the decode target.
	NotPresent DTI = iota
	// Discardable: the frame is in the decode target, and no later frame
	// of the decode target refers to it.
	Discardable
	// Switch: a decoder may start decoding the decode target at this
	// frame (all the frames it needs are below it).
	Switch
	// Required: the frame is in the decode target and later ones refer to
	// it.
	Required
)

// Resolution is a spatial layer's maximum render size.
type Resolution struct {
	Width, Height int
}

// Layer is a spatial and temporal layer id pair.
type Layer struct {
	Spatial, Temporal uint8
}

// Template is a frame dependency template: what frames that name it share.
type Template struct {
	Layer
	// DTIs has one indication per decode target.
	DTIs []DTI
	// FrameDiffs are the differences of frame_number between the frame and
	// each frame it refers to.
	FrameDiffs []uint16
	// ChainDiffs has one per chain: how many frames back the previous
	// frame of that chain is (0: this frame starts the chain anew).
	ChainDiffs []uint8
}

// Structure is a template dependency structure (A.8.2
// template_dependency_structure).
type Structure struct {
	// TemplateIDOffset is the template id of Templates[0]; ids count on
	// from it, modulo 64.
	TemplateIDOffset uint8
	// DecodeTargets is the number of decode targets (1 to 32).
	DecodeTargets int
	// Templates is in template id order; their layers go up, spatial
	// layer by spatial layer.
	Templates []Template
	// Chains is the number of chains (0: none); ProtectedBy has, for each
	// decode target, the chain that protects it (empty without chains).
	Chains      int
	ProtectedBy []uint8
	// TargetLayers has each decode target's highest spatial and temporal
	// layer.
	TargetLayers []Layer
	// Resolutions has each spatial layer's maximum render size, when the
	// structure gives them (else nil).
	Resolutions []Resolution
}

// SpatialLayers is the number of spatial layers the templates use (the
// last template's are the highest).
func (s *Structure) SpatialLayers() int {
	if len(s.Templates) == 0 {
		return 0
	}
	return int(s.Templates[len(s.Templates)-1].Spatial) + 1
}

// TemporalLayers is the number of temporal layers the templates use.
func (s *Structure) TemporalLayers() int {
	n := 0
	for _, t := range s.Templates {
		n = max(n, int(t.Temporal)+1)
	}
	return n
}

// Descriptor is one packet's dependency descriptor, its frame dependency
// definition resolved against the structure in force.
type Descriptor struct {
	// StartOfFrame and EndOfFrame say the packet is the first or the last
	// of its frame.
	StartOfFrame, EndOfFrame bool
	// TemplateID names the frame's template; FrameNumber counts frames in
	// decode order, the same on every packet of a frame (it wraps).
	TemplateID  uint8
	FrameNumber uint16
	// Structure is the template dependency structure this packet carries
	// (nil: none; it then came before).
	Structure *Structure
	// ActiveDecodeTargets is the bitmask of the decode targets the sender
	// sends (bit i: decode target i), when the packet carries one
	// (HasActiveDecodeTargets) or a structure (then all are active).
	ActiveDecodeTargets    uint32
	HasActiveDecodeTargets bool

	// The frame's layer, its decode target indications, the differences to
	// the frames it refers to and its chain differences: the template's,
	// unless the packet overrides them (the Custom flags). Slices from the
	// template are the structure's own: read them, do not change them.
	Layer
	DTIs             []DTI
	FrameDiffs       []uint16
	ChainDiffs       []uint8
	CustomDTIs       bool
	CustomFrameDiffs bool
	CustomChains     bool
	// Resolution is the maximum render size of the frame's spatial layer
	// (zero when the structure gives none).
	Resolution Resolution
}

// Errors that the caller may want to tell apart (wrapped; errors.Is).
var (
	// ErrNoStructure: the packet refers to a structure no packet gave yet.
	ErrNoStructure = errors.New("av1dd: no template dependency structure yet")
	// ErrUnknownTemplate: the packet's template is not in the structure in
	// force (the packet with a newer structure was lost, or is late).
	ErrUnknownTemplate = errors.New("av1dd: template id outside the structure")
	// ErrShort: the extension ends before its fields do.
	ErrShort = errors.New("av1dd: extension cut short")
)

// Parse reads one dependency descriptor, b being the extension's data.
// structure is the one in force (nil if none yet): a packet that carries its
// own is read with that. Parse allocates only for what the packet itself
// carries (a structure, custom fields).
func Parse(b []byte, structure *Structure) (Descriptor, error) {
	var d Descriptor
	if len(b) > MaxSize {
		return d, fmt.Errorf("av1dd: %d bytes, more than an extension element holds (%d)", len(b), MaxSize)
	}
	if len(b) < 3 {
		return d, fmt.Errorf("%w: %d bytes, the mandatory fields take 3", ErrShort, len(b))
	}
	r := bitReader{b: b}
	d.StartOfFrame = r.f(1) == 1
	d.EndOfFrame = r.f(1) == 1
	d.TemplateID = uint8(r.f(6))
	d.FrameNumber = uint16(r.f(16))
	activePresent := false
	if len(b) > 3 {
		structurePresent := r.f(1) == 1
		activePresent = r.f(1) == 1
		d.CustomDTIs = r.f(1) == 1
		d.CustomFrameDiffs = r.f(1) == 1
		d.CustomChains = r.f(1) == 1
		if structurePresent {
			s, err := readStructure(&r)
			if err != nil {
				return d, err
			}
			d.Structure, structure = s, s
			d.ActiveDecodeTargets, d.HasActiveDecodeTargets = allTargets(s.DecodeTargets), true
		}
	}
	if structure == nil {
		return d, ErrNoStructure
	}
	if activePresent {
		d.ActiveDecodeTargets, d.HasActiveDecodeTargets = r.f(structure.DecodeTargets), true
	}
	idx := (int(d.TemplateID) + MaxTemplates - int(structure.TemplateIDOffset)) % MaxTemplates
	if idx >= len(structure.Templates) {
		return d, fmt.Errorf("%w: id %d, the structure has %d from %d", ErrUnknownTemplate,
			d.TemplateID, len(structure.Templates), structure.TemplateIDOffset)
	}
	t := &structure.Templates[idx]
	d.Layer, d.DTIs, d.FrameDiffs, d.ChainDiffs = t.Layer, t.DTIs, t.FrameDiffs, t.ChainDiffs
	if d.CustomDTIs {
		d.DTIs = make([]DTI, structure.DecodeTargets)
		for i := range d.DTIs {
			d.DTIs[i] = DTI(r.f(2))
		}
	}
	if d.CustomFrameDiffs {
		d.FrameDiffs = nil
		for size := r.f(2); size != 0 && r.ok(); size = r.f(2) {
			d.FrameDiffs = append(d.FrameDiffs, uint16(r.f(4*int(size))+1))
		}
	}
	if d.CustomChains {
		d.ChainDiffs = make([]uint8, structure.Chains)
		for i := range d.ChainDiffs {
			d.ChainDiffs[i] = uint8(r.f(8))
		}
	}
	if !r.ok() {
		return d, fmt.Errorf("%w: %d bytes, the fields need more", ErrShort, len(b))
	}
	if structure.Resolutions != nil {
		d.Resolution = structure.Resolutions[d.Spatial]
	}
	return d, nil
}

// allTargets is the bitmask of n decode targets.
func allTargets(n int) uint32 {
	return uint32(uint64(1)<<n - 1)
}

// readStructure reads a template_dependency_structure.
func readStructure(r *bitReader) (*Structure, error) {
	s := &Structure{TemplateIDOffset: uint8(r.f(6)), DecodeTargets: int(r.f(5)) + 1}
	// template_layers: each template's layer follows from the one before.
	var cur Layer
	for {
		if len(s.Templates) == MaxTemplates {
			return nil, fmt.Errorf("av1dd: structure: more than %d templates", MaxTemplates)
		}
		s.Templates = append(s.Templates, Template{Layer: cur})
		next := r.f(2)
		if !r.ok() {
			return nil, fmt.Errorf("%w: in the template layers", ErrShort)
		}
		if next == 3 {
			break
		}
		switch next {
		case 1:
			cur.Temporal++
		case 2:
			cur.Spatial, cur.Temporal = cur.Spatial+1, 0
		}
		if cur.Spatial >= MaxSpatialLayers || cur.Temporal >= MaxTemporalLayers {
			return nil, fmt.Errorf("av1dd: structure: layer S%dT%d beyond %d spatial and %d temporal layers",
				cur.Spatial, cur.Temporal, MaxSpatialLayers, MaxTemporalLayers)
		}
	}
	// template_dtis
	dtis := make([]DTI, len(s.Templates)*s.DecodeTargets)
	for i := range s.Templates {
		t := &s.Templates[i]
		t.DTIs = dtis[i*s.DecodeTargets : (i+1)*s.DecodeTargets : (i+1)*s.DecodeTargets]
		for j := range t.DTIs {
			t.DTIs[j] = DTI(r.f(2))
		}
	}
	// template_fdiffs
	for i := range s.Templates {
		t := &s.Templates[i]
		for r.f(1) == 1 && r.ok() {
			t.FrameDiffs = append(t.FrameDiffs, uint16(r.f(4))+1)
		}
	}
	// template_chains
	s.Chains = int(r.ns(uint32(s.DecodeTargets) + 1))
	if s.Chains > 0 {
		s.ProtectedBy = make([]uint8, s.DecodeTargets)
		for i := range s.ProtectedBy {
			s.ProtectedBy[i] = uint8(r.ns(uint32(s.Chains)))
		}
		chains := make([]uint8, len(s.Templates)*s.Chains)
		for i := range s.Templates {
			t := &s.Templates[i]
			t.ChainDiffs = chains[i*s.Chains : (i+1)*s.Chains : (i+1)*s.Chains]
			for j := range t.ChainDiffs {
				t.ChainDiffs[j] = uint8(r.f(4))
			}
		}
	}
	// decode_target_layers: each decode target's highest layers among the
	// templates that are in it.
	s.TargetLayers = make([]Layer, s.DecodeTargets)
	for dt := range s.TargetLayers {
		for _, t := range s.Templates {
			if t.DTIs[dt] != NotPresent {
				s.TargetLayers[dt].Spatial = max(s.TargetLayers[dt].Spatial, t.Spatial)
				s.TargetLayers[dt].Temporal = max(s.TargetLayers[dt].Temporal, t.Temporal)
			}
		}
	}
	if r.f(1) == 1 { // resolutions_present_flag
		s.Resolutions = make([]Resolution, s.SpatialLayers())
		for i := range s.Resolutions {
			s.Resolutions[i].Width = int(r.f(16)) + 1
			s.Resolutions[i].Height = int(r.f(16)) + 1
		}
	}
	if !r.ok() {
		return nil, fmt.Errorf("%w: in the template dependency structure", ErrShort)
	}
	return s, nil
}

// Reader reads the dependency descriptors of one stream in order of
// arrival: it keeps the template dependency structure and the active decode
// targets the packets give. Its zero value is ready; it is not safe for
// concurrent use.
type Reader struct {
	structure *Structure
	active    uint32
}

// Read parses one packet's dependency descriptor. A packet that carries a
// structure makes it the one in force (with every decode target active), one
// that carries an active decode target bitmask updates it; a packet that
// cannot be read changes nothing. Before the first structure, and after a
// structure change whose packet was lost, Read fails (ErrNoStructure,
// ErrUnknownTemplate): the stream needs a keyframe.
func (r *Reader) Read(b []byte) (Descriptor, error) {
	d, err := Parse(b, r.structure)
	if err != nil {
		return d, err
	}
	if d.Structure != nil {
		r.structure = d.Structure
	}
	if d.HasActiveDecodeTargets {
		r.active = d.ActiveDecodeTargets
	}
	return d, nil
}

// Structure is the template dependency structure in force (nil before the
// first one).
func (r *Reader) Structure() *Structure { return r.structure }

// ActiveDecodeTargets is the bitmask of the decode targets the sender sends
// now (bit i: decode target i).
func (r *Reader) ActiveDecodeTargets() uint32 { return r.active }

// bitReader reads bits high to low (the specification's f(n) and ns(n)).
// Past the end it reads zeros and remembers it: check ok.
type bitReader struct {
	b   []byte
	pos int // in bits
	bad bool
}

// f reads an n-bit unsigned number (n <= 32).
func (r *bitReader) f(n int) uint32 {
	if r.pos+n > 8*len(r.b) {
		r.bad, r.pos = true, 8*len(r.b)
		return 0
	}
	var v uint32
	for range n {
		v = v<<1 | uint32(r.b[r.pos>>3]>>(7-r.pos&7))&1
		r.pos++
	}
	return v
}

// ns reads a non-symmetric unsigned number below n (n >= 1).
func (r *bitReader) ns(n uint32) uint32 {
	w := 0
	for x := n; x != 0; x >>= 1 {
		w++
	}
	m := uint32(1)<<w - n
	v := r.f(w - 1)
	if v < m {
		return v
	}
	return v<<1 - m + r.f(1)
}

func (r *bitReader) ok() bool { return !r.bad }
