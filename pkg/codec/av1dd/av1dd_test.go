package av1dd

import (
	"errors"
	"reflect"
	"testing"
)

// bitWriter writes the specification's f(n) and ns(n), for building
// descriptors by hand.
type bitWriter struct {
	b []byte
	n int // bits written
}

func (w *bitWriter) f(n int, v uint32) {
	for i := n - 1; i >= 0; i-- {
		if w.n%8 == 0 {
			w.b = append(w.b, 0)
		}
		w.b[len(w.b)-1] |= byte(v>>i&1) << (7 - w.n%8)
		w.n++
	}
}

func (w *bitWriter) ns(n, v uint32) {
	if n == 1 {
		return
	}
	wb := 0
	for x := n; x != 0; x >>= 1 {
		wb++
	}
	m := uint32(1)<<wb - n
	if v < m {
		w.f(wb-1, v)
	} else {
		w.f(wb, v+m)
	}
}

func TestNonSymmetric(t *testing.T) {
	// The specification's table for n = 5.
	for v, bits := range []string{"00", "01", "10", "110", "111"} {
		var w bitWriter
		w.ns(5, uint32(v))
		if w.n != len(bits) {
			t.Errorf("ns(5) of %d: %d bits, want %s", v, w.n, bits)
		}
		for i, c := range bits {
			if got := w.b[i/8] >> (7 - i%8) & 1; got != byte(c-'0') {
				t.Errorf("ns(5) of %d: bit %d is %d, want %s", v, i, got, bits)
			}
		}
		r := bitReader{b: w.b}
		if got := r.ns(5); got != uint32(v) || r.pos != len(bits) {
			t.Errorf("read ns(5) of %d: %d after %d bits", v, got, r.pos)
		}
	}
}

// l1t3 writes the first packet of a key frame of an L1T3-like stream: the
// mandatory fields and a structure of four templates (S0T0 twice, S0T1,
// S0T2) with three decode targets, one chain and a 640x360 resolution.
func l1t3() []byte {
	var w bitWriter
	w.f(1, 1)                                  // start_of_frame
	w.f(1, 0)                                  // end_of_frame
	w.f(6, 5)                                  // frame_dependency_template_id
	w.f(16, 0x1234)                            // frame_number
	w.f(1, 1)                                  // template_dependency_structure_present_flag
	w.f(1, 0)                                  // active_decode_targets_present_flag
	w.f(3, 0)                                  // custom dtis, fdiffs, chains
	w.f(6, 5)                                  // template_id_offset
	w.f(5, 2)                                  // dt_cnt_minus_one
	for _, idc := range []uint32{0, 1, 1, 3} { // next_layer_idc
		w.f(2, idc)
	}
	for _, dtis := range [][3]DTI{{Switch, Switch, Switch}, {Required, Required, Required},
		{NotPresent, Discardable, Required}, {NotPresent, NotPresent, Discardable}} {
		for _, d := range dtis {
			w.f(2, uint32(d))
		}
	}
	for _, fd := range []uint32{0, 4, 2, 1} { // template_fdiffs: none, then one each
		if fd != 0 {
			w.f(1, 1)
			w.f(4, fd-1)
		}
		w.f(1, 0)
	}
	w.ns(4, 1) // chain_cnt
	for range 3 {
		w.ns(1, 0) // decode_target_protected_by: no bits
	}
	for _, c := range []uint32{0, 4, 2, 3} {
		w.f(4, c)
	}
	w.f(1, 1) // resolutions_present_flag
	w.f(16, 639)
	w.f(16, 359)
	return w.b
}

func l1t3Structure() *Structure {
	return &Structure{
		TemplateIDOffset: 5,
		DecodeTargets:    3,
		Templates: []Template{
			{Layer: Layer{0, 0}, DTIs: []DTI{Switch, Switch, Switch}, ChainDiffs: []uint8{0}},
			{Layer: Layer{0, 0}, DTIs: []DTI{Required, Required, Required}, FrameDiffs: []uint16{4}, ChainDiffs: []uint8{4}},
			{Layer: Layer{0, 1}, DTIs: []DTI{NotPresent, Discardable, Required}, FrameDiffs: []uint16{2}, ChainDiffs: []uint8{2}},
			{Layer: Layer{0, 2}, DTIs: []DTI{NotPresent, NotPresent, Discardable}, FrameDiffs: []uint16{1}, ChainDiffs: []uint8{3}},
		},
		Chains:       1,
		ProtectedBy:  []uint8{0, 0, 0},
		TargetLayers: []Layer{{0, 0}, {0, 1}, {0, 2}},
		Resolutions:  []Resolution{{640, 360}},
	}
}

func TestParseStructure(t *testing.T) {
	d, err := Parse(l1t3(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := l1t3Structure()
	if !reflect.DeepEqual(d.Structure, want) {
		t.Errorf("structure:\n%+v\nwant\n%+v", d.Structure, want)
	}
	if !d.StartOfFrame || d.EndOfFrame || d.TemplateID != 5 || d.FrameNumber != 0x1234 ||
		d.Layer != (Layer{0, 0}) || !reflect.DeepEqual(d.DTIs, want.Templates[0].DTIs) || d.FrameDiffs != nil ||
		d.ActiveDecodeTargets != 0b111 || !d.HasActiveDecodeTargets || d.Resolution != (Resolution{640, 360}) {
		t.Errorf("descriptor: %+v", d)
	}
	if d.Structure.SpatialLayers() != 1 || d.Structure.TemporalLayers() != 3 {
		t.Errorf("%d spatial, %d temporal layers", d.Structure.SpatialLayers(), d.Structure.TemporalLayers())
	}
	// Every cut of it fails, without a structure to fall back on.
	b := l1t3()
	for n := range len(b) {
		if _, err := Parse(b[:n], nil); err == nil {
			t.Errorf("cut to %d bytes: no error", n)
		}
	}
}

func TestParseWithTemplate(t *testing.T) {
	s := l1t3Structure()
	// Mandatory fields only: end of a frame on template 7 (S0T1).
	d, err := Parse([]byte{0x40 | 7, 0x12, 0x36}, s)
	if err != nil {
		t.Fatal(err)
	}
	if d.StartOfFrame || !d.EndOfFrame || d.FrameNumber != 0x1236 || d.Layer != (Layer{0, 1}) ||
		d.Structure != nil || d.HasActiveDecodeTargets || d.FrameDiffs[0] != 2 || d.ChainDiffs[0] != 2 ||
		d.DTIs[1] != Discardable || d.CustomDTIs || d.Resolution != (Resolution{640, 360}) {
		t.Errorf("descriptor: %+v", d)
	}
	if _, err := Parse([]byte{0x40 | 7, 0x12, 0x36}, nil); !errors.Is(err, ErrNoStructure) {
		t.Errorf("without a structure: %v", err)
	}
	for _, id := range []byte{4, 9, 63} { // before the offset, after the templates
		if _, err := Parse([]byte{id, 0, 0}, s); !errors.Is(err, ErrUnknownTemplate) {
			t.Errorf("template id %d: %v", id, err)
		}
	}
	if _, err := Parse([]byte{5, 0}, s); !errors.Is(err, ErrShort) {
		t.Errorf("2 bytes: %v", err)
	}
	if _, err := Parse(make([]byte, MaxSize+1), s); err == nil {
		t.Errorf("%d bytes: no error", MaxSize+1)
	}
}

// custom writes a packet of template 8 (S0T2) with an active decode target
// bitmask and its own DTIs, frame differences and chain differences.
func custom() []byte {
	var w bitWriter
	w.f(2, 0b11)
	w.f(6, 8)
	w.f(16, 0xffff)
	w.f(1, 0) // no structure
	w.f(1, 1) // active decode targets
	w.f(3, 0b111)
	w.f(3, 0b011) // active_decode_targets_bitmask
	for _, d := range []DTI{NotPresent, Switch, Required} {
		w.f(2, uint32(d))
	}
	w.f(2, 1)
	w.f(4, 3) // fdiff 4
	w.f(2, 2)
	w.f(8, 199) // fdiff 200
	w.f(2, 0)
	w.f(8, 9) // frame_chain_fdiff
	return w.b
}

func TestParseCustom(t *testing.T) {
	d, err := Parse(custom(), l1t3Structure())
	if err != nil {
		t.Fatal(err)
	}
	if !d.StartOfFrame || !d.EndOfFrame || d.FrameNumber != 0xffff || d.Layer != (Layer{0, 2}) ||
		!d.HasActiveDecodeTargets || d.ActiveDecodeTargets != 0b011 ||
		!d.CustomDTIs || !reflect.DeepEqual(d.DTIs, []DTI{NotPresent, Switch, Required}) ||
		!d.CustomFrameDiffs || !reflect.DeepEqual(d.FrameDiffs, []uint16{4, 200}) ||
		!d.CustomChains || !reflect.DeepEqual(d.ChainDiffs, []uint8{9}) {
		t.Errorf("descriptor: %+v", d)
	}
	b := custom()
	for n := 4; n < len(b); n++ {
		if _, err := Parse(b[:n], l1t3Structure()); !errors.Is(err, ErrShort) {
			t.Errorf("cut to %d bytes: %v", n, err)
		}
	}
}

func TestReader(t *testing.T) {
	var r Reader
	if _, err := r.Read([]byte{0x40 | 7, 0x12, 0x36}); !errors.Is(err, ErrNoStructure) {
		t.Errorf("before a structure: %v", err)
	}
	if _, err := r.Read(l1t3()); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Structure(), l1t3Structure()) || r.ActiveDecodeTargets() != 0b111 {
		t.Errorf("after the structure: %+v, active %b", r.Structure(), r.ActiveDecodeTargets())
	}
	if _, err := r.Read(custom()); err != nil || r.ActiveDecodeTargets() != 0b011 {
		t.Errorf("after the bitmask: %v, active %b", err, r.ActiveDecodeTargets())
	}
	if d, err := r.Read([]byte{0x40 | 7, 0x12, 0x36}); err != nil || d.Temporal != 1 || r.ActiveDecodeTargets() != 0b011 {
		t.Errorf("template packet: %+v %v, active %b", d, err, r.ActiveDecodeTargets())
	}
	// A bad packet changes nothing.
	s := r.Structure()
	if _, err := r.Read(l1t3()[:8]); err == nil || r.Structure() != s || r.ActiveDecodeTargets() != 0b011 {
		t.Errorf("a cut structure packet: %v; structure kept %v, active %b", err, r.Structure() == s, r.ActiveDecodeTargets())
	}
}
