package codec

import (
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/pion/rtp"

	"github.com/parley/parley/internal/rtpdump"
	"github.com/parley/parley/pkg/codec/av1dd"
)

// The captures in testdata/svc are what headless Chromium sent when it
// published its fake camera at 1280x720 with scalabilityMode L3T3, in VP9 and
// in AV1 with the dependency descriptor (extension 13): e2e's TestCaptureSVC
// (build tag svccapture) made them, and says how to make them again;
// capture.txt says with which browser. Each packet is stored as its RTP header
// and the first 64 bytes of its payload.

// ddExtension is the dependency descriptor's extension id in the captures.
const ddExtension = 13

// capturedPacket is one packet of a capture.
type capturedPacket struct {
	hdr     rtp.Header
	payload []byte // its first bytes
	ext     []byte // the dependency descriptor, if any
}

// readCapture returns a capture's media packets in sequence number order,
// once each (a retransmission is dropped); padding-only packets (the
// browser's bandwidth probes) are left out.
func readCapture(t testing.TB, name string) []capturedPacket {
	t.Helper()
	notes, err := os.ReadFile("testdata/svc/capture.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(notes), " a=extmap:13 "+av1dd.URI+"\n") {
		t.Fatal("the capture's dependency descriptor is not extension 13: see testdata/svc/capture.txt")
	}
	f, err := os.Open("testdata/svc/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := rtpdump.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []capturedPacket
	seen := map[uint16]bool{}
	var ext uint32 // sequence numbers, unwrapped
	var last uint16
	keys := map[uint16]uint32{}
	pkts, err := r.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		var c capturedPacket
		n, err := c.hdr.Unmarshal(p.Data)
		if err != nil {
			t.Fatalf("%s: packet %d: %v", name, len(out), err)
		}
		if c.hdr.Padding && p.Len-n <= 255 && int(p.Data[len(p.Data)-1]) == p.Len-n {
			continue // padding only (stored whole: it is short)
		}
		if seen[c.hdr.SequenceNumber] {
			continue
		}
		seen[c.hdr.SequenceNumber] = true
		if len(out) == 0 {
			ext = uint32(c.hdr.SequenceNumber)
		} else {
			ext += uint32(int16(c.hdr.SequenceNumber - last))
		}
		last = c.hdr.SequenceNumber
		keys[c.hdr.SequenceNumber] = ext
		c.payload, c.ext = p.Data[n:], c.hdr.GetExtension(ddExtension)
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool { return keys[out[i].hdr.SequenceNumber] < keys[out[j].hdr.SequenceNumber] })
	for i := 1; i < len(out); i++ {
		if out[i].hdr.SequenceNumber != out[i-1].hdr.SequenceNumber+1 {
			t.Fatalf("%s: sequence %d after %d: the capture lost a packet", name, out[i].hdr.SequenceNumber, out[i-1].hdr.SequenceNumber)
		}
	}
	if len(out) < 300 {
		t.Fatalf("%s: %d media packets", name, len(out))
	}
	return out
}

// l3t3Temporal is the temporal layer of L3T3's pictures, from a keyframe on.
var l3t3Temporal = [4]uint8{0, 2, 1, 2}

// TestVP9CaptureL3T3 reads Chromium's VP9 L3T3 stream with ParseVP9 and
// ParseVP9SS: the keyframe's scalability structure gives three spatial
// layers at the captured sizes; every picture has its three layer frames in
// order, each begun and ended by the B and E bits, the last ending with the
// marker; the temporal layers go 0, 2, 1, 2; the upper layers of the
// keyframe depend on the layer below (D), the lowest never does. The
// dependency descriptor Chromium also sends with VP9 agrees on every packet.
func TestVP9CaptureL3T3(t *testing.T) {
	pkts := readCapture(t, "vp9-l3t3.rtpdump")
	first, ok := ParseVP9(pkts[0].payload)
	if !ok || !IsKeyframe("video/VP9", pkts[0].payload) || first.SSAt == 0 {
		t.Fatalf("the capture does not start with a keyframe's scalability structure: %+v", first)
	}
	ss, err := ParseVP9SS(pkts[0].payload)
	if err != nil {
		t.Fatal(err)
	}
	if ss.Layers != 3 || !ss.HasSize || ss.Width != [MaxVP9SpatialLayers]uint16{320, 640, 1280} ||
		ss.Height != [MaxVP9SpatialLayers]uint16{180, 360, 720} {
		t.Fatalf("scalability structure: %+v", ss)
	}

	var dd av1dd.Reader
	pictures, withDD := 0, 0
	var prev Descriptor
	for i, p := range pkts {
		d, ok := ParseVP9(p.payload)
		if !ok || !d.HasTID || !d.PicLong {
			t.Fatalf("packet %d: %+v %v", i, d, ok)
		}
		newPicture := i == 0 || d.PicID != prev.PicID
		switch {
		case newPicture && i > 0:
			if d.PicID != PicIDAdd(prev.PicID, 1, true) {
				t.Fatalf("packet %d: picture %d after %d", i, d.PicID, prev.PicID)
			}
			if prev.SID != 2 || !prev.End || !pkts[i-1].hdr.Marker {
				t.Fatalf("packet %d: picture %d ended on %+v (marker %v)", i-1, prev.PicID, prev, pkts[i-1].hdr.Marker)
			}
			fallthrough
		case newPicture:
			pictures++
			if d.SID != 0 || !d.Begin || !d.Start {
				t.Fatalf("packet %d: picture %d starts with %+v", i, d.PicID, d)
			}
		case d.SID != prev.SID:
			if d.SID != prev.SID+1 || !prev.End || !d.Begin || pkts[i-1].hdr.Marker {
				t.Fatalf("packet %d: layer frame %+v after %+v", i, d, prev)
			}
		default:
			if prev.End || d.Begin || pkts[i-1].hdr.Marker {
				t.Fatalf("packet %d: within a layer frame, %+v after %+v", i, d, prev)
			}
		}
		if want := l3t3Temporal[(d.PicID-first.PicID)&0x7fff%4]; d.TID != want {
			t.Fatalf("packet %d: picture %d is on temporal layer %d, want %d", i, d.PicID, d.TID, want)
		}
		if d.SID == 0 && d.InterLayer || d.PicID == first.PicID && d.SID > 0 && !d.InterLayer {
			t.Fatalf("packet %d: inter-layer dependency %v on layer %d", i, d.InterLayer, d.SID)
		}
		if (d.SSAt != 0) != (i == 0) {
			t.Fatalf("packet %d: scalability structure %v", i, d.SSAt != 0)
		}
		if p.ext != nil {
			withDD++
			g, err := dd.Read(p.ext)
			if err != nil {
				t.Fatalf("packet %d: dependency descriptor: %v", i, err)
			}
			if g.Spatial != d.SID || g.Temporal != d.TID || g.StartOfFrame != d.Begin || g.EndOfFrame != d.End {
				t.Fatalf("packet %d: the dependency descriptor says %+v, the payload descriptor %+v", i, g, d)
			}
		}
		prev = d
	}
	if pictures < 60 {
		t.Errorf("%d pictures", pictures)
	}
	if withDD != len(pkts) {
		t.Errorf("%d of %d packets have a dependency descriptor", withDD, len(pkts))
	}
	t.Logf("%d packets, %d pictures", len(pkts), pictures)
}

// TestAV1CaptureL3T3 reads Chromium's AV1 L3T3 stream with av1dd: the first
// packet carries a structure of three spatial and three temporal layers (nine
// decode targets) at the captured sizes; frame numbers go up by one frame to
// frame, each frame's packets begin and end with start_of_frame and
// end_of_frame, every temporal unit has its three spatial layers in order and
// ends with the marker, and the temporal layers go 0, 2, 1, 2. The AV1
// aggregation header of each payload agrees: Z and Y where a frame goes on
// from or to another packet, N where a structure comes.
func TestAV1CaptureL3T3(t *testing.T) {
	pkts := readCapture(t, "av1-l3t3.rtpdump")
	var r av1dd.Reader
	var prev av1dd.Descriptor
	frames, units := 0, 0
	var unitLayer int // spatial layer expected next in the temporal unit
	for i, p := range pkts {
		d, err := r.Read(p.ext)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if i == 0 {
			s := d.Structure
			if s == nil {
				t.Fatal("the capture does not start with a structure")
			}
			want := []av1dd.Resolution{{Width: 320, Height: 180}, {Width: 640, Height: 360}, {Width: 1280, Height: 720}}
			if s.SpatialLayers() != 3 || s.TemporalLayers() != 3 || s.DecodeTargets != 9 || !slices.Equal(s.Resolutions, want) {
				t.Fatalf("structure: %d spatial, %d temporal layers, %d decode targets, %v", s.SpatialLayers(), s.TemporalLayers(), s.DecodeTargets, s.Resolutions)
			}
			targets := map[av1dd.Layer]bool{}
			for _, l := range s.TargetLayers {
				targets[l] = true
			}
			if len(targets) != 9 {
				t.Fatalf("decode targets' layers: %v", s.TargetLayers)
			}
		}
		agg := p.payload[0]
		if z, y, n := agg&0x80 != 0, agg&0x40 != 0, agg&0x08 != 0; z == d.StartOfFrame || y == d.EndOfFrame || n != (d.Structure != nil) {
			t.Fatalf("packet %d: aggregation header %08b, descriptor %+v", i, agg, d)
		}
		if d.Resolution != r.Structure().Resolutions[d.Spatial] {
			t.Fatalf("packet %d: resolution %v", i, d.Resolution)
		}
		if i == 0 || d.FrameNumber != prev.FrameNumber {
			if i > 0 && (d.FrameNumber != prev.FrameNumber+1 || !prev.EndOfFrame) {
				t.Fatalf("packet %d: frame %d after %d (ended %v)", i, d.FrameNumber, prev.FrameNumber, prev.EndOfFrame)
			}
			if !d.StartOfFrame {
				t.Fatalf("packet %d: frame %d does not start", i, d.FrameNumber)
			}
			frames++
			newUnit := i == 0 || p.hdr.Timestamp != pkts[i-1].hdr.Timestamp
			if newUnit != (unitLayer == 0) || int(d.Spatial) != unitLayer {
				t.Fatalf("packet %d: frame %d on spatial layer %d, want %d (new temporal unit %v)", i, d.FrameNumber, d.Spatial, unitLayer, newUnit)
			}
			if newUnit {
				units++
			}
			unitLayer = (unitLayer + 1) % 3
		} else if d.StartOfFrame || prev.EndOfFrame || d.TemplateID != prev.TemplateID {
			t.Fatalf("packet %d: within frame %d, %+v after %+v", i, d.FrameNumber, d, prev)
		}
		if want := l3t3Temporal[(units-1)%4]; d.Temporal != want {
			t.Fatalf("packet %d: temporal unit %d on temporal layer %d, want %d", i, units-1, d.Temporal, want)
		}
		if p.hdr.Marker != (d.EndOfFrame && d.Spatial == 2) {
			t.Fatalf("packet %d: marker %v on %+v", i, p.hdr.Marker, d)
		}
		prev = d
	}
	if units < 60 || frames != 3*units && frames != 3*units-1 && frames != 3*units-2 {
		t.Errorf("%d frames in %d temporal units", frames, units)
	}
	t.Logf("%d packets, %d frames, %d temporal units", len(pkts), frames, units)
}
