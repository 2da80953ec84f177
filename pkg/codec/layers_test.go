package codec

import (
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
			Descriptor{Start: true, PicAt: 1, PicLong: true, PicID: 5, HasTID: true, TID: 2, Sync: true}, true},
		{"begin on spatial layer 1", []byte{0xa8, 0x05, 0x22, 0x03},
			Descriptor{PicAt: 1, PicID: 5, HasTID: true, TID: 1}, true},
		{"no layer indices", []byte{0x0c, 0x00}, Descriptor{Start: true}, true},
		{"L announced, missing", []byte{0x28}, Descriptor{}, false},
	} {
		got, ok := ParseVP9(c.p)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("%s: got %+v %v, want %+v %v", c.name, got, ok, c.want, c.ok)
		}
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
// reads too, with the same layer indices and picture id.
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
				v9.L && (d.TID != v9.TID || d.Sync != v9.U) || d.Start != (v9.B && (!v9.L || v9.SID == 0)) {
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
