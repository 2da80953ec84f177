package codec

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/pion/rtp/codecs"
)

func TestParseVP8(t *testing.T) {
	for _, c := range []struct {
		name string
		p    []byte
		want Descriptor
		ok   bool
	}{
		{"no extension", []byte{0x10, 0x9d}, Descriptor{Start: true}, true},
		{"continuation", []byte{0x00, 0x9d}, Descriptor{}, true},
		{"15-bit picture id, TL0PICIDX, TID 2 with Y", []byte{0x90, 0xe0, 0x81, 0x02, 0x07, 0xa0, 0x00},
			Descriptor{Start: true, PicAt: 2, PicLong: true, PicID: 0x102, HasTID: true, TID: 2, Sync: true}, true},
		{"7-bit picture id, TID 1", []byte{0x80, 0xa0, 0x11, 0x40, 0x00},
			Descriptor{PicAt: 2, PicID: 0x11, HasTID: true, TID: 1}, true},
		{"KEYIDX only", []byte{0x90, 0x10, 0x1f, 0x00}, Descriptor{Start: true}, true},
		{"partition 1", []byte{0x91, 0x00, 0x00}, Descriptor{}, true},
		{"T announced, missing", []byte{0x90, 0x20}, Descriptor{Start: true}, false},
		{"long picture id cut", []byte{0x90, 0x80, 0x81}, Descriptor{Start: true, PicAt: 2}, false},
	} {
		got, ok := ParseVP8(c.p)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("%s: got %+v %v, want %+v %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

func TestParseVP9(t *testing.T) {
	for _, c := range []struct {
		name string
		p    []byte
		want Descriptor
		ok   bool
	}{
		{"begin, 15-bit id, L with TID 2 U SID 0", []byte{0xa8, 0x80, 0x05, 0x50, 0x03},
			Descriptor{Start: true, Begin: true, PicAt: 1, PicLong: true, PicID: 5, HasTID: true, TID: 2, Sync: true}, true},
		{"begin on spatial layer 1", []byte{0xa8, 0x05, 0x22, 0x03},
			Descriptor{Begin: true, PicAt: 1, PicID: 5, HasTID: true, TID: 1, SID: 1}, true},
		{"no layer indices", []byte{0x0c, 0x00}, Descriptor{Start: true, Begin: true, End: true}, true},
		{"L announced, missing", []byte{0x28}, Descriptor{}, false},
		{"end of spatial layer 2, inter-layer dependency, Z", []byte{0xa5, 0x05, 0x45, 0x03},
			Descriptor{End: true, NoUpperRef: true, PicAt: 1, PicID: 5, HasTID: true, TID: 2, SID: 2, InterLayer: true}, true},
		{"non-flexible with SS after TL0PICIDX", []byte{0xaa, 0x80, 0x05, 0x00, 0x07, 0x48, 0x01, 0x00},
			Descriptor{Start: true, Begin: true, PicAt: 1, PicLong: true, PicID: 5, HasTID: true, SSAt: 5}, true},
		{"flexible with two reference indices and SS", []byte{0xfa, 0x05, 0x02, 0x03, 0x04, 0x00},
			Descriptor{Begin: true, PicAt: 1, PicID: 5, HasTID: true, SID: 1, SSAt: 5}, true},
		{"SS announced, missing", []byte{0xaa, 0x05, 0x00, 0x07}, Descriptor{}, false},
		{"four reference indices", []byte{0xda, 0x05, 0x03, 0x03, 0x03, 0x02, 0x00}, Descriptor{}, false},
	} {
		got, ok := ParseVP9(c.p)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("%s: got %+v %v, want %+v %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

func TestParseVP9SS(t *testing.T) {
	// Non-flexible, 15-bit picture id, layer indices, TL0PICIDX; an SS of
	// three layers with sizes and an L1T3-like group of four pictures.
	p := []byte{0x8a | 0x20, 0x80, 0x05, 0x00, 0x07,
		0x58, // N_S 2, Y, G
		0x01, 0x40, 0x00, 0xb4, 0x02, 0x80, 0x01, 0x68, 0x05, 0x00, 0x02, 0xd0,
		0x04,       // N_G
		0x04, 0x04, // TID 0, R 1: 4 back
		0x44 | 0x10, 0x01, // TID 2, U, R 1: 1 back
		0x24 | 0x10, 0x02, // TID 1, U, R 1: 2 back
		0x48 | 0x10, 0x01, 0x02, // TID 2, U, R 2
		0xde, 0xad}
	ss, err := ParseVP9SS(p)
	if err != nil {
		t.Fatal(err)
	}
	want := VP9SS{Layers: 3, HasSize: true, HasGroup: true,
		Width:  [MaxVP9SpatialLayers]uint16{320, 640, 1280},
		Height: [MaxVP9SpatialLayers]uint16{180, 360, 720},
		Group: []VP9GroupPicture{{TID: 0, NRefs: 1, Refs: [3]uint8{4}}, {TID: 2, Sync: true, NRefs: 1, Refs: [3]uint8{1}},
			{TID: 1, Sync: true, NRefs: 1, Refs: [3]uint8{2}}, {TID: 2, Sync: true, NRefs: 2, Refs: [3]uint8{1, 2}}}}
	if !reflect.DeepEqual(ss, want) {
		t.Errorf("got %+v\nwant %+v", ss, want)
	}
	for n := range len(p) - 2 {
		if _, err := ParseVP9SS(p[:n]); err == nil {
			t.Errorf("cut to %d bytes: no error", n)
		}
	}
	if _, err := ParseVP9SS([]byte{0xa8, 0x05, 0x00, 0x07, 0x00}); err == nil {
		t.Error("V clear: no error")
	}
	// No Y, no G: one layer, nothing else.
	if ss, err := ParseVP9SS([]byte{0x0a, 0x00}); err != nil || ss.Layers != 1 || ss.HasSize || ss.HasGroup || ss.Group != nil {
		t.Errorf("bare SS: %+v %v", ss, err)
	}
}

func TestPutPicID(t *testing.T) {
	p := []byte{0x90, 0x80, 0xff, 0xff, 0x00}
	d, _ := ParseVP8(p)
	PutPicID(p, d.PicAt, d.PicLong, PicIDAdd(d.PicID, 1, d.PicLong))
	if d2, _ := ParseVP8(p); d2.PicID != 0 || !d2.PicLong {
		t.Errorf("0x7fff + 1: got %+v", d2)
	}
	p = []byte{0x90, 0x80, 0x7f, 0x00}
	d, _ = ParseVP8(p)
	PutPicID(p, d.PicAt, d.PicLong, PicIDAdd(d.PicID, -0x80, d.PicLong))
	if d2, _ := ParseVP8(p); d2.PicID != 0x7f || d2.PicLong {
		t.Errorf("7-bit wrap: got %+v", d2)
	}
}

// FuzzParseVP8 checks the descriptor readers against pion's on any bytes:
// for VP8 they agree exactly; whatever pion reads as a VP9 descriptor, ours
// reads too, with the same layer indices, picture id and B, E, Z, V bits.
func FuzzParseVP8(f *testing.F) {
	f.Add([]byte{0x90, 0xe0, 0x81, 0x02, 0x07, 0xa0, 0x00})
	f.Add([]byte{0x80, 0xa0, 0x11, 0x40})
	f.Add([]byte{0x90, 0x30, 0x1f})
	f.Add([]byte{0xa8, 0x80, 0x05, 0x50, 0x03})
	f.Fuzz(func(t *testing.T, p []byte) {
		var v9 codecs.VP9Packet
		if _, err := v9.Unmarshal(p); err == nil {
			d, ok := ParseVP9(p)
			if !ok || (d.PicAt != 0) != v9.I || v9.I && d.PicID != v9.PictureID || d.HasTID != v9.L ||
				v9.L && (d.TID != v9.TID || d.Sync != v9.U || d.SID != v9.SID || d.InterLayer != v9.D) ||
				d.Start != (v9.B && (!v9.L || v9.SID == 0)) || d.Begin != v9.B || d.End != v9.E || d.NoUpperRef != v9.Z ||
				(d.SSAt != 0) != v9.V {
				t.Fatalf("% x: ParseVP9 %+v %v, pion %+v", p, d, ok, v9)
			}
		}
		d, ok := ParseVP8(p)
		var v codecs.VP8Packet
		_, err := v.Unmarshal(p)
		if ok != (err == nil) {
			t.Fatalf("% x: ParseVP8 ok %v, pion's err %v", p, ok, err)
		}
		if !ok {
			return
		}
		if d.Start != (v.S == 1 && v.PID == 0) || d.HasTID != (v.T == 1) || d.HasTID && (d.TID != v.TID || d.Sync != (v.Y == 1)) ||
			(d.PicAt != 0) != (v.I == 1) || d.PicAt != 0 && d.PicID != v.PictureID {
			t.Fatalf("% x: ParseVP8 %+v, pion %+v", p, d, v)
		}
	})
}

// FuzzParseVP9SS checks the scalability structure reader against pion's on
// any bytes: where the descriptor announces one, the two succeed or fail
// together, and read the same layers, sizes and picture group. The seeds
// include the keyframe of the captured browser stream (testdata/svc).
func FuzzParseVP9SS(f *testing.F) {
	f.Add([]byte{0xaa, 0x80, 0x05, 0x00, 0x07, 0x58, 0x01, 0x40, 0x00, 0xb4, 0x02, 0x80, 0x01, 0x68, 0x05, 0x00, 0x02, 0xd0,
		0x02, 0x04, 0x04, 0x54, 0x01})
	f.Add([]byte{0xfa, 0x05, 0x02, 0x03, 0x04, 0x00})
	f.Add([]byte{0x0a, 0x18, 0x00})
	for i, c := range readCapture(f, "vp9-l3t3.rtpdump") {
		if d, ok := ParseVP9(c.payload); ok && (d.SSAt != 0 || i < 3) {
			f.Add(c.payload)
		}
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		ss, err := ParseVP9SS(p)
		var v9 codecs.VP9Packet
		_, perr := v9.Unmarshal(p)
		if perr == nil && !v9.V {
			if err == nil {
				t.Fatalf("% x: no V bit, yet ParseVP9SS read %+v", p, ss)
			}
			return
		}
		if perr != nil && v9.L && v9.SID >= 5 {
			return // pion's own limit (libvpx's 5 layers); the RFC's SID has 3 bits
		}
		if (err == nil) != (perr == nil) {
			t.Fatalf("% x: ParseVP9SS err %v, pion's %v", p, err, perr)
		}
		if err != nil {
			return
		}
		if ss.Layers != int(v9.NS)+1 || ss.HasSize != v9.Y || ss.HasGroup != v9.G || len(ss.Group) != int(v9.NG) {
			t.Fatalf("% x: ParseVP9SS %+v, pion %+v", p, ss, v9)
		}
		for l := 0; ss.HasSize && l < ss.Layers; l++ {
			if ss.Width[l] != v9.Width[l] || ss.Height[l] != v9.Height[l] {
				t.Fatalf("% x: layer %d: %dx%d, pion %dx%d", p, l, ss.Width[l], ss.Height[l], v9.Width[l], v9.Height[l])
			}
		}
		for g, pic := range ss.Group {
			if pic.TID != v9.PGTID[g] || pic.Sync != v9.PGU[g] || !bytes.Equal(pic.Refs[:pic.NRefs], v9.PGPDiff[g]) {
				t.Fatalf("% x: group picture %d: %+v, pion TID %d U %v refs %v", p, g, pic, v9.PGTID[g], v9.PGU[g], v9.PGPDiff[g])
			}
		}
	})
}

// BenchmarkParseVP8 is the per-packet cost the reader adds for a VP8
// track: one descriptor with picture id, TL0PICIDX and TID.
func BenchmarkParseVP8(b *testing.B) {
	p := []byte{0x90, 0xe0, 0x81, 0x02, 0x07, 0xa0, 0x00, 0x01, 0x02}
	b.ReportAllocs()
	for range b.N {
		if d, ok := ParseVP8(p); !ok || d.TID != 2 {
			b.Fatal("parse")
		}
	}
}

// BenchmarkParseVP9 is the per-packet cost the reader adds for a VP9
// track: a descriptor with a 15-bit picture id and the layer indices
// (non-flexible mode, so TL0PICIDX follows), as a browser's SVC sends it.
func BenchmarkParseVP9(b *testing.B) {
	p := []byte{0xac, 0x81, 0x02, 0x43, 0x07, 0x01, 0x02, 0x03}
	b.ReportAllocs()
	for range b.N {
		if d, ok := ParseVP9(p); !ok || d.TID != 2 {
			b.Fatal("parse")
		}
	}
}
