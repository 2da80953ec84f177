package av1dd

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/pion/rtp"

	"github.com/parley/parley/internal/rtpdump"
)

// captured returns the dependency descriptors of the browser capture in
// ../testdata/svc, in order: extension id 13, as its capture.txt says.
func captured(tb testing.TB, file string) [][]byte {
	tb.Helper()
	notes, err := os.ReadFile("../testdata/svc/capture.txt")
	if err != nil {
		tb.Fatal(err)
	}
	if !strings.Contains(string(notes), "AV1 a=extmap:13 "+URI+"\n") {
		tb.Fatal("the capture's dependency descriptor is not extension 13: see capture.txt")
	}
	f, err := os.Open(file)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	r, err := rtpdump.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]byte
	for {
		p, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		var pkt rtp.Packet
		if err := pkt.Unmarshal(p.Data); err != nil {
			tb.Fatal(err)
		}
		if ext := pkt.GetExtension(13); ext != nil {
			out = append(out, ext)
		}
	}
}

// FuzzParse feeds the reader arbitrary extensions, alone and after the
// structure of the captured AV1 L3T3 stream: it must return an error or a
// descriptor that keeps within its structure, never panic. The seeds are
// hand-built descriptors and the captured ones.
func FuzzParse(f *testing.F) {
	f.Add(l1t3())
	f.Add(custom())
	f.Add([]byte{0x80, 0x00, 0x01})
	dds := captured(f, "../testdata/svc/av1-l3t3.rtpdump")
	var structure *Structure
	seen := map[string]bool{}
	for _, b := range dds {
		if d, err := Parse(b, nil); err == nil && structure == nil {
			structure = d.Structure
		}
		if k := string(b[:1]) + string(b[3:]); !seen[k] { // one seed per kind, whatever its frame number
			seen[k] = true
			f.Add(b)
		}
	}
	if structure == nil {
		f.Fatal("no structure in the capture")
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, s := range []*Structure{nil, structure} {
			d, err := Parse(b, s)
			if err != nil {
				continue
			}
			in := s
			if d.Structure != nil {
				in = d.Structure
				checkStructure(t, b, in)
			}
			if d.HasActiveDecodeTargets && d.ActiveDecodeTargets&^allTargets(in.DecodeTargets) != 0 {
				t.Fatalf("% x: active decode targets %b beyond %d", b, d.ActiveDecodeTargets, in.DecodeTargets)
			}
			if len(d.DTIs) != in.DecodeTargets || len(d.ChainDiffs) != in.Chains ||
				int(d.Spatial) >= in.SpatialLayers() || int(d.Temporal) >= in.TemporalLayers() {
				t.Fatalf("% x: descriptor %+v outside its structure %+v", b, d, in)
			}
		}
	})
}

// checkStructure checks what a structure must be, whatever its bytes.
func checkStructure(t *testing.T, b []byte, s *Structure) {
	t.Helper()
	if len(s.Templates) == 0 || len(s.Templates) > MaxTemplates || s.DecodeTargets < 1 || s.DecodeTargets > MaxDecodeTargets ||
		s.Chains > s.DecodeTargets || len(s.TargetLayers) != s.DecodeTargets ||
		s.SpatialLayers() > MaxSpatialLayers || s.TemporalLayers() > MaxTemporalLayers {
		t.Fatalf("% x: structure %+v", b, s)
	}
	if s.Resolutions != nil && len(s.Resolutions) != s.SpatialLayers() {
		t.Fatalf("% x: %d resolutions for %d spatial layers", b, len(s.Resolutions), s.SpatialLayers())
	}
	if s.Chains > 0 && len(s.ProtectedBy) != s.DecodeTargets {
		t.Fatalf("% x: %d decode targets protected of %d", b, len(s.ProtectedBy), s.DecodeTargets)
	}
	for _, c := range s.ProtectedBy {
		if int(c) >= s.Chains {
			t.Fatalf("% x: protected by chain %d of %d", b, c, s.Chains)
		}
	}
	for i, tp := range s.Templates {
		if len(tp.DTIs) != s.DecodeTargets || len(tp.ChainDiffs) != s.Chains {
			t.Fatalf("% x: template %d: %+v", b, i, tp)
		}
		if i > 0 && tp.Spatial < s.Templates[i-1].Spatial {
			t.Fatalf("% x: template %d goes down a spatial layer", b, i)
		}
	}
}

// BenchmarkRead is the per-packet cost of reading the captured AV1 L3T3
// stream's dependency descriptors with a Reader (the structure packet among
// them).
func BenchmarkRead(b *testing.B) {
	dds := captured(b, "../testdata/svc/av1-l3t3.rtpdump")
	b.ReportAllocs()
	b.ResetTimer()
	var r Reader
	for i := range b.N {
		if _, err := r.Read(dds[i%len(dds)]); err != nil {
			b.Fatal(err)
		}
	}
}
