package client

import (
	"bytes"
	"testing"

	"github.com/parley/parley/pkg/codec"
	"github.com/parley/parley/pkg/testmedia"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// A temporal VP8 source's frames are packetized with their layer in the
// descriptor: every packet of a frame carries its TID and Y, the picture id
// goes up by one a frame, TL0PICIDX by one a base layer frame, and pion's
// depacketizer gets the frame back whole; a keyframe request restarts the
// pattern at a base layer keyframe.
func TestTemporalSourcePacketized(t *testing.T) {
	tids, sync := testmedia.TemporalPattern(3)
	o := mediaOpts
	o.TemporalLayers = 3
	path, err := testmedia.VP8IVF(mediaDir(t), o)
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewTemporalIVFSource(path, tids, sync, true)
	if err != nil {
		t.Fatal(err)
	}
	ts := src.(TemporalSource)
	tp := &vp8TemporalPayloader{pictureID: 0x7ffe}
	pk := rtp.NewPacketizer(MTU, 96, 1, tp, rtp.NewRandomSequencer(), 90000)
	var lastPic, lastTL0 uint16
	for i := range 40 {
		if i == 17 {
			src.RequestKeyframe()
		}
		data, _, err := src.Next()
		if err != nil {
			t.Fatal(err)
		}
		tid, y := ts.Temporal()
		key := data[0]&0x01 == 0
		if key && tid != 0 {
			t.Fatalf("frame %d: a keyframe on layer %d", i, tid)
		}
		if i == 17 && !key {
			t.Fatal("the frame after a keyframe request is not a keyframe")
		}
		tp.frame(tid, y)
		var frame []byte
		for j, p := range pk.Packetize(data, 3000) {
			d, ok := codec.ParseVP8(p.Payload)
			if !ok || !d.HasTID || d.TID != tid || d.Sync != y || d.Start != (j == 0) || !d.PicLong {
				t.Fatalf("frame %d packet %d: descriptor %+v, want TID %d Y %v", i, j, d, tid, y)
			}
			if i > 0 && d.PicID != (lastPic+1)&0x7fff {
				t.Fatalf("frame %d: picture id %#x after %#x", i, d.PicID, lastPic)
			}
			var v codecs.VP8Packet
			part, err := v.Unmarshal(p.Payload)
			if err != nil {
				t.Fatal(err)
			}
			tl0 := uint16(v.TL0PICIDX)
			if i > 0 && j == 0 && (tid == 0) != (tl0 == (lastTL0+1)&0xff) {
				t.Fatalf("frame %d (layer %d): TL0PICIDX %d after %d", i, tid, tl0, lastTL0)
			}
			lastTL0 = tl0
			frame = append(frame, part...)
		}
		if !bytes.Equal(frame, data) {
			t.Fatalf("frame %d: depacketized differs", i)
		}
		lastPic = (lastPic + 1) & 0x7fff
		if i == 0 {
			lastPic = 0x7ffe
		}
		if want := tids[i%len(tids)]; i < 17 && tid != want {
			t.Fatalf("frame %d: layer %d, want %d", i, tid, want)
		}
	}
}
