package sfu

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// A room's first roomShare subscribers share one writer, the next ones go
// to the pool in turn, and a closed subscriber's place on the room's writer
// is free again; rooms take the pool's writers in turn.
func TestRoomSubscribersShareAWriter(t *testing.T) {
	wp, _ := testWriters(t, 2)
	a, b := &writerGroup{pool: wp}, &writerGroup{pool: wp}
	var got []*writer
	for range roomShare {
		got = append(got, a.assign())
	}
	for _, w := range got {
		if w != got[0] {
			t.Fatalf("the room's first %d subscribers are on more than one writer", roomShare)
		}
	}
	if w := b.assign(); w == got[0] {
		t.Fatal("a second room is on the first room's writer, with another writer idle")
	}
	spread := map[*writer]int{}
	for range 4 {
		spread[a.assign()]++
	}
	if len(spread) != 2 {
		t.Fatalf("past %d subscribers the room uses %d writers, want both", roomShare, len(spread))
	}
	a.release(got[0])
	if w := a.assign(); w != got[0] {
		t.Fatal("a subscriber after one left is not on the room's writer")
	}
}

// In a meeting, a frame of one publisher to its 3 receivers costs one flush
// of the media sockets (one sendmmsg), on a pool of two writers: the room's
// subscribers share a writer.
func TestMeetingFrameIsOneFlush(t *testing.T) {
	pool := newPacketPool()
	wp, flushes := testWriters(t, 2)
	room := &writerGroup{pool: wp}
	f := testForwarder(pool, wp)
	f.kind = webrtc.RTPCodecTypeVideo
	f.startBackstop(time.Hour)
	defer f.close()
	const receivers, frames, perFrame = 3, 20, 4
	var writers []*countWriter
	var subs []*subscriber
	for range receivers {
		s := testSubscriber(wp, 256)
		s.writer = room.assign()
		w := &countWriter{}
		attach(f, s, w).needKeyframe.Store(false)
		writers = append(writers, w)
		subs = append(subs, s)
	}
	seq := uint16(0)
	for fr := range frames {
		for k := range perFrame {
			f.fanOut(videoPacket(pool, seq, uint32(fr)*3000, k == perFrame-1))
			seq++
		}
		waitFor(t, func() bool {
			for _, w := range writers {
				if w.packets.Load() < uint64((fr+1)*perFrame) {
					return false
				}
			}
			return true
		})
	}
	// One pass per frame (the frame's end wakes the writer once every
	// receiver has the frame queued); spread over two writers it was two.
	if n := flushes.Load(); n != frames {
		t.Fatalf("%d frames to %d receivers: %d flushes, want %d", frames, receivers, n, frames)
	}
	for _, s := range subs {
		s.stopWriting()
	}
}
