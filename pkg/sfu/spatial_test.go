package sfu

import (
	"os"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley/parley/internal/rtpdump"
	"github.com/parley/parley/pkg/codec"
	"github.com/parley/parley/pkg/codec/av1dd"
)

// readCapture reads an L3T3 stream headless Chromium sent (the codec
// package's testdata, which says how it was made; the dependency descriptor
// is extension 13): each packet as its header and the first 64 bytes of its
// payload, in sequence number order, once each, without the padding-only
// ones.
func readCapture(t *testing.T, name string) []rtp.Packet {
	t.Helper()
	fh, err := os.Open("../codec/testdata/svc/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r, err := rtpdump.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	all, err := r.All()
	if err != nil {
		t.Fatal(err)
	}
	var out []rtp.Packet
	seen := map[uint16]bool{}
	for _, p := range all {
		var pkt rtp.Packet
		if err := pkt.Unmarshal(p.Data); err != nil {
			// Cut short inside its padding: a padding-only probe.
			continue
		}
		if len(pkt.Payload) == 0 || seen[pkt.SequenceNumber] {
			continue
		}
		seen[pkt.SequenceNumber] = true
		out = append(out, pkt)
	}
	// The capture holds one keyframe, at its start, and a run of sequence
	// numbers (codec's TestVP9CaptureL3T3 checks it).
	for i := 1; i < len(out); i++ {
		if out[i].SequenceNumber != out[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: sequence %d after %d", i, out[i].SequenceNumber, out[i-1].SequenceNumber)
		}
	}
	if len(out) < 300 {
		t.Fatalf("%d packets in the capture", len(out))
	}
	return out
}

// capturedPacket fills a pooled packet from pkt the way forwarder.run does.
func capturedPacket(t *testing.T, f *forwarder, pkt rtp.Packet, arrived time.Time) *packet {
	t.Helper()
	b, err := pkt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := f.pool.get()
	p.n = copy(p.buf[:], b)
	hl, err := p.hdr.Unmarshal(p.buf[:p.n])
	if err != nil {
		t.Fatal(err)
	}
	p.payload = p.buf[hl:p.n]
	p.padding = false
	p.keyframe = codec.IsKeyframe(f.codec.MimeType, p.payload)
	p.desc = f.describe(p)
	p.arrived = arrived
	p.src = f
	p.refs.Store(1) // the test's
	return p
}

// sentPictures checks what a downTrack capped at spatial layer top sent of
// the capture: only packets of layers up to top, numbered without a gap,
// every picture ending with the marker on the end of its top layer frame
// and nowhere else. It returns the number of pictures sent.
func sentPictures(t *testing.T, name string, pkts []rtp.Packet, top uint8, layerOf func(rtp.Packet) (codec.Descriptor, bool)) int {
	t.Helper()
	pictures := 0
	for i, p := range pkts {
		d, ok := layerOf(p)
		if !ok || !d.HasTID {
			t.Fatalf("%s: packet %d: no layer ids", name, i)
		}
		if d.SID > top {
			t.Fatalf("%s: packet %d is of spatial layer %d, above %d", name, i, d.SID, top)
		}
		if i > 0 && p.SequenceNumber != pkts[i-1].SequenceNumber+1 {
			t.Fatalf("%s: packet %d: sequence %d after %d", name, i, p.SequenceNumber, pkts[i-1].SequenceNumber)
		}
		ends := d.End && d.SID == top
		if p.Marker != ends {
			t.Fatalf("%s: packet %d (layer %d, end %v): marker %v", name, i, d.SID, d.End, p.Marker)
		}
		if d.Start {
			pictures++
		}
		lastOfPicture := i == len(pkts)-1 || pkts[i+1].Timestamp != p.Timestamp
		if lastOfPicture && !p.Marker && i != len(pkts)-1 {
			t.Fatalf("%s: packet %d ends picture %d without the marker", name, i, d.PicID)
		}
	}
	return pictures
}

// Chromium's L3T3 streams through the forwarder, VP9's layers read from its
// payload descriptor, AV1's from the dependency descriptor: the reader takes
// each spatial layer's size from the keyframe's scalability structure (the
// template structure) and measures each layer's rate, so the allocation sees
// three rungs, each larger and dearer than the one below. Three downTracks
// capped at layer 0, layer 1 and none send the layer frames up to their cap,
// numbered without gaps, each picture ending with the marker on its top
// layer frame sent. A downTrack going down a layer does so at the next
// picture; going up it waits for a keyframe, and asks the publisher for one.
func TestSpatialLayersOfChromiumVP9(t *testing.T) {
	testSpatialCapture(t, readCapture(t, "vp9-l3t3.rtpdump"), webrtc.MimeTypeVP9, 0,
		func(p rtp.Packet) (codec.Descriptor, bool) { return codec.ParseVP9(p.Payload) },
		func(payload []byte) { payload[0] &^= 0x40 }) // P cleared: not inter-picture predicted
}

// TestSpatialLayersOfChromiumAV1 is the same for AV1, whose layers only the
// dependency descriptor gives.
func TestSpatialLayersOfChromiumAV1(t *testing.T) {
	capture := readCapture(t, "av1-l3t3.rtpdump")
	// What the sent packets were (they go without the extension): by
	// payload, the layer the dependency descriptor gave.
	var r av1dd.Reader
	layers := map[string]codec.Descriptor{}
	for i, p := range capture {
		dd, err := r.Read(p.GetExtension(13))
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		key := string(p.Payload)
		if _, dup := layers[key]; dup {
			t.Fatalf("packet %d: its payload's first bytes are another's", i)
		}
		layers[key] = codec.Descriptor{HasTID: true, SID: dd.Spatial, TID: dd.Temporal, Begin: dd.StartOfFrame,
			End: dd.EndOfFrame, Start: dd.StartOfFrame && dd.Spatial == 0}
	}
	testSpatialCapture(t, capture, webrtc.MimeTypeAV1, 13,
		func(p rtp.Packet) (codec.Descriptor, bool) { d, ok := layers[string(p.Payload)]; return d, ok },
		func(payload []byte) { // N: a new coded video sequence
			d := layers[string(payload)]
			payload[0] |= 0x08
			layers[string(payload)] = d
		})
}

// testSpatialCapture replays capture (of codec mime; its dependency
// descriptor is extension ddExt, 0: not read) as the test above says.
// layerOf gives a sent packet's layer; makeKey makes a payload a keyframe's.
func testSpatialCapture(t *testing.T, capture []rtp.Packet, mime string, ddExt uint8,
	layerOf func(rtp.Packet) (codec.Descriptor, bool), makeKey func([]byte)) {
	pool := newPacketPool()
	wp := &writerPool{workers: []*writer{{wake: make(chan struct{}, 1)}}}
	f := testForwarder(pool, wp)
	f.kind = webrtc.RTPCodecTypeVideo
	f.codec = webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000}
	f.described = describedCodecOf(mime)
	f.describeDD(ddExt)
	plis := 0
	f.requestPLI = func(uint32) { plis++ }
	s := testSubscriber(wp, 64)
	sc := newSendScratch()

	caps := []int{0, 1, allSpatial, 2} // the last one moves
	var ws []*recordWriter
	var ds []*downTrack
	for i, c := range caps {
		w := &recordWriter{}
		d := newDownTrack(f, s)
		d.bound.Store(&binding{ssrc: uint32(100 + i), pt: 98, ws: w})
		d.target.Store(f)
		d.scap.Store(int32(c))
		ws, ds = append(ws, w), append(ds, d)
	}
	mover := ds[3]
	moverSent := func() (sids [8]int) {
		for _, p := range ws[3].pkts {
			d, _ := layerOf(p)
			sids[d.SID]++
		}
		return sids
	}

	start := time.Now()
	ts0 := capture[0].Timestamp
	var last time.Time
	feed := func(pkts []rtp.Packet) {
		for _, pkt := range pkts {
			now := start.Add(time.Duration(pkt.Timestamp-ts0) * time.Second / 90000)
			p := capturedPacket(t, f, pkt, now)
			f.measure(p)
			for _, d := range ds {
				d.write(p, now, sc)
			}
			p.release()
			last = now
		}
	}
	half := len(capture) / 2
	feed(capture[:half])

	// The sizes and rates the allocation chooses by.
	if n := f.spatialLayers(last); n != 3 {
		t.Fatalf("%d spatial layers measured, want 3", n)
	}
	rungs := f.rungs(last)
	if len(rungs) != 3 {
		t.Fatalf("%d rungs, want 3", len(rungs))
	}
	wantSize := [][2]int{{320, 180}, {640, 360}, {1280, 720}}
	prevRate := 0
	for i, r := range rungs {
		if w, h := r.size(); w != wantSize[i][0] || h != wantSize[i][1] {
			t.Errorf("rung %d: %dx%d, want %dx%d", i, w, h, wantSize[i][0], wantSize[i][1])
		}
		rate := r.rateUpTo(allTemporal, last)
		if rate <= prevRate {
			t.Errorf("rung %d: %d bit/s, not above the one below (%d)", i, rate, prevRate)
		}
		if low := r.rateUpTo(0, last); low <= 0 || low >= rate {
			t.Errorf("rung %d: %d bit/s with temporal layer 0 alone, of %d", i, low, rate)
		}
		prevRate = rate
	}
	if top := rungs[2].rateUpTo(allTemporal, last); top != f.bitrate(last) {
		t.Errorf("the top rung's rate %d is not the track's %d", top, f.bitrate(last))
	}
	if got := moverSent(); got[0] == 0 || got[1] == 0 || got[2] == 0 {
		t.Fatalf("capped at layer 2: layer frames sent per layer %v", got)
	}

	// Down to layer 0 at the next picture; then up to 2 waits for a
	// keyframe, which the downTrack asks for.
	mover.setSpatial(0, last)
	before := len(ws[3].pkts)
	quarter := half + len(capture)/4
	feed(capture[half:quarter])
	started := false // the picture in flight goes on as it began
	for i, p := range ws[3].pkts[before:] {
		d, _ := layerOf(p)
		started = started || d.Start
		if started && d.SID != 0 {
			t.Fatalf("after going down to layer 0: packet %d of layer %d", i, d.SID)
		}
	}
	if !started {
		t.Fatal("nothing sent after going down")
	}
	if plis != 0 {
		t.Fatalf("%d keyframe requests going down", plis)
	}
	mover.sending.Store(f) // as the writer has it (a recordWriter is no connection)
	mover.setSpatial(2, last)
	if plis != 1 {
		t.Fatalf("%d keyframe requests going up, want 1", plis)
	}
	mover.setSpatial(2, last.Add(spatialAskEvery/2))
	if plis != 1 {
		t.Fatalf("%d keyframe requests, asked again within %v", plis, spatialAskEvery)
	}
	before = len(ws[3].pkts)
	rest := capture[quarter:]
	// A keyframe a third of the way into the rest: the lowest layer's
	// first packet of a base layer picture made intra (the P bit cleared).
	key := -1
	for i := len(rest) / 3; i < len(rest); i++ {
		if d, ok := layerOf(rest[i]); ok && d.Start && d.TID == 0 {
			key = i
			break
		}
	}
	if key < 0 {
		t.Fatal("no base layer picture to make a keyframe of")
	}
	rest = append([]rtp.Packet(nil), rest...)
	rest[key].Payload = append([]byte(nil), rest[key].Payload...)
	makeKey(rest[key].Payload)
	feed(rest[:key])
	if len(ws[3].pkts) == before {
		t.Fatal("nothing sent while waiting for a keyframe")
	}
	for _, p := range ws[3].pkts[before:] {
		if d, _ := layerOf(p); d.SID != 0 {
			t.Fatalf("went up to layer %d before a keyframe", d.SID)
		}
	}
	upAt := len(ws[3].pkts)
	feed(rest[key:])
	var upper int
	for _, p := range ws[3].pkts[upAt:] {
		if d, _ := layerOf(p); d.SID > 0 {
			upper++
		}
	}
	if upper == 0 {
		t.Fatal("not up at the keyframe")
	}
	if !codec.IsKeyframe(mime, ws[3].pkts[upAt].Payload) {
		d, _ := layerOf(ws[3].pkts[upAt])
		t.Fatalf("after the keyframe came, the first packet sent is %+v", d)
	}

	// Every downTrack's packets, checked whole: the fixed caps sent the same
	// pictures; the one that moved, as many, ending on the right layer.
	names := []string{"layer 0", "layers 0-1", "all layers", "moving"}
	var pictures []int
	for i, w := range ws {
		if i == 3 {
			continue
		}
		top := uint8(min(caps[i], 2))
		pictures = append(pictures, sentPictures(t, names[i], w.pkts, top, layerOf))
	}
	if pictures[0] != pictures[1] || pictures[1] != pictures[2] || pictures[0] < 60 {
		t.Fatalf("pictures sent per cap: %v", pictures)
	}
	for i, p := range ws[3].pkts {
		if i > 0 && p.SequenceNumber != ws[3].pkts[i-1].SequenceNumber+1 {
			t.Fatalf("moving: packet %d: sequence %d after %d", i, p.SequenceNumber, ws[3].pkts[i-1].SequenceNumber)
		}
	}
	for _, q := range s.queue.Close(nil) {
		q.p.release()
	}
	if n := len(ws[2].pkts); n != len(capture) {
		t.Fatalf("all layers: %d packets sent of %d", n, len(capture))
	}
}

// The allocation chooses among spatial layers as among simulcast layers: the
// smallest at least as large as the tile, the highest that fits the budget,
// going up only with the margin an upgrade needs, and fewer temporal layers
// of the lowest before the video pauses.
func TestAllocationChoosesSpatialLayers(t *testing.T) {
	pool := newPacketPool()
	wp := &writerPool{workers: []*writer{{wake: make(chan struct{}, 1)}}}
	f := testForwarder(pool, wp)
	f.kind = webrtc.RTPCodecTypeVideo
	s := testSubscriber(wp, 64)
	now := time.Now()
	s.bwe.OnREMB(1e6, now)
	d := newDownTrack(f, s)
	// Three spatial layers of 100, 300 and 900 kbit/s, each half in its
	// base temporal layer (TL0 and TL1 only, for short).
	perLayer := []int64{100_000, 300_000, 900_000}
	total := int64(0)
	for i, r := range perLayer {
		f.spatial.rate[i][0].Store(r / 2)
		f.spatial.rate[i][1].Store(r / 2)
		f.spatial.width[i].Store(int32(320 << i))
		f.spatial.height[i].Store(int32(180 << i))
		total += r
	}
	f.spatial.layers.Store(3)
	f.temporal.rate[0].Store(total / 2)
	f.temporal.rate[1].Store(total / 2)
	f.temporal.layers.Store(2)
	f.width.Store(1280)
	f.height.Store(720)
	f.rate.Store(total)
	f.lastAt.Store(now.UnixNano())

	for _, c := range []struct {
		name      string
		tile      tile
		budget    float64
		sending   int // spatial layer sent (-1: none)
		sid, tcap int
	}{
		{"small tile", tile{width: 300, height: 170}, 5e6, -1, 0, allTemporal},
		{"middle tile", tile{width: 600, height: 340}, 5e6, -1, 1, allTemporal},
		{"large tile", tile{width: 1200, height: 700}, 5e6, -1, allSpatial, allTemporal},
		{"no size", tile{}, 5e6, -1, allSpatial, allTemporal},
		{"short of the top", tile{}, 1.2e6, -1, 1, allTemporal},        // 1.3M does not fit, 400k*1.15 does
		{"top being sent", tile{}, 1.31e6, 2, allSpatial, allTemporal}, // kept without the margin
		{"top not yet sent", tile{}, 1.31e6, 1, 1, allTemporal},        // going up needs 1.3M*1.15
		{"short of layer 1", tile{}, 300_000, 0, 0, allTemporal},
		{"short of layer 0", tile{}, 80_000, 0, 0, 0}, // 100k does not fit: its base temporal layer
	} {
		t.Run(c.name, func(t *testing.T) {
			d.sending.Store(nil)
			d.tcap.Store(allTemporal)
			if c.sending >= 0 {
				d.sending.Store(f)
				d.ssent.Store(int32(c.sending))
			}
			d.dipSince, d.shortSince = time.Time{}, time.Time{}
			got, tcap, _, paused := s.pick(allocItem{d: d, tile: c.tile}, c.budget, c.budget, c.budget, now)
			if got.f != f || got.sid != c.sid || tcap != c.tcap || paused != "" {
				t.Fatalf("budget %.0f: layer %d, temporal cap %d, paused %q; want layer %d cap %d",
					c.budget, got.sid, tcap, paused, c.sid, c.tcap)
			}
			if c.tcap == 0 && got.rateUpTo(0, now) != 50_000 {
				t.Fatalf("layer 0, temporal layer 0: %d bit/s, want 50000", got.rateUpTo(0, now))
			}
		})
	}
}
