package recorder

import (
	"bytes"
	"fmt"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
	"github.com/pion/rtp"
)

// The recorder's pieces for other consumers of a published stream (pkg/live
// packs a presenter's stream into a live WebM stream for viewers whom WebRTC
// cannot reach): TrackFrames is the recorder's jitter buffer and
// depacketizer for one track, and LiveHeader, AppendClusterStart and
// AppendSimpleBlock write the same Matroska the files get, as a stream.

// Frame is one whole frame (video) or packet (audio) of a track.
type Frame struct {
	// RTPTime is the frame's RTP timestamp.
	RTPTime uint32
	// Data is the frame as Matroska stores it (H.264: length-prefixed NAL
	// units; AV1: without temporal delimiters). It is valid until the next
	// call into the TrackFrames.
	Data []byte
	// Key: a video keyframe (every audio frame is one).
	Key bool
	// Gap: frames may be missing before this one.
	Gap bool
	// PictureID is the VP8/VP9 picture id, -1 when unknown.
	PictureID int
	// Arrival is when the frame's last packet arrived.
	Arrival time.Time
	// Width and Height of a video keyframe (0 when unknown).
	Width, Height int
	// CodecPrivate of a keyframe: the H.264 avcC record or the AV1 av1C
	// record it gives (nil for other codecs).
	CodecPrivate []byte
}

// TrackFrames turns one track's RTP packets into frames, as the recorder
// does: a jitter buffer puts packets back in order and waits up to its delay
// for a missing one (a retransmission); the depacketizer joins a frame's
// packets and drops every frame a packet of which is lost. It is not safe
// for concurrent use.
type TrackFrames struct {
	c        codec
	maxFrame int
	jitter   time.Duration
	jb       *jitterBuffer
	asm      *assembler
	ssrc     uint32
	haveSSRC bool
	free     []*jbPacket
	emit     func(*Frame)
	out      Frame
}

// NewTrackFrames returns the frame maker of a track of codec mime
// ("video/VP8", "audio/opus", …), waiting up to jitter for a missing packet.
func NewTrackFrames(mime string, jitter time.Duration) (*TrackFrames, error) {
	c := parseCodec(mime)
	if c == codecUnknown {
		return nil, fmt.Errorf("recorder: codec %q is not supported", mime)
	}
	t := &TrackFrames{c: c, maxFrame: 4 << 20, jitter: jitter, jb: newJitterBuffer(512, jitter)}
	t.asm = newAssembler(c, t.maxFrame)
	return t, nil
}

// Video reports whether the track is video.
func (t *TrackFrames) Video() bool { return t.c.video() }

func (t *TrackFrames) release(q *jbPacket, lost bool) {
	t.asm.push(q, lost, t.onFrame)
	if cap(q.payload) <= 4096 && len(t.free) < 64 {
		t.free = append(t.free, q)
	}
}

func (t *TrackFrames) onFrame(f *frameOut) {
	t.out = Frame{RTPTime: f.ts, Data: f.data, Key: f.key || !t.c.video(), Gap: f.gap, PictureID: f.picID,
		Arrival: f.arrival, Width: f.w, Height: f.h}
	if f.key {
		switch t.c {
		case codecH264:
			info := h264Info{sps: f.sps, pps: f.pps}
			t.out.CodecPrivate = info.avcC()
		case codecAV1:
			t.out.CodecPrivate = f.av1c
		}
	}
	t.emit(&t.out)
}

// Push takes one packet (copied), received at arrival, and calls emit with
// each frame it completes, in order. A new SSRC starts the track anew.
func (t *TrackFrames) Push(pkt *rtp.Packet, arrival time.Time, emit func(*Frame)) {
	if pkt == nil || len(pkt.Payload) > maxPayload {
		return
	}
	t.emit = emit
	if !t.haveSSRC || pkt.SSRC != t.ssrc {
		if len(pkt.Payload) == 0 {
			return
		}
		if t.haveSSRC {
			t.jb.drain(t.release)
			t.jb.reset()
			t.asm = newAssembler(t.c, t.maxFrame)
		}
		t.ssrc, t.haveSSRC = pkt.SSRC, true
	}
	var p *jbPacket
	if n := len(t.free); n > 0 {
		p, t.free = t.free[n-1], t.free[:n-1]
	} else {
		p = &jbPacket{payload: make([]byte, 0, 1500)}
	}
	p.ssrc, p.seq, p.ts, p.marker = pkt.SSRC, pkt.SequenceNumber, pkt.Timestamp, pkt.Marker
	p.padding = len(pkt.Payload) == 0
	p.payload = append(p.payload[:0], pkt.Payload...)
	p.arrival = arrival
	p.ext = t.jb.unwrap(p.seq)
	if !t.jb.push(p, t.release) {
		t.free = append(t.free, p)
	}
	t.jb.pop(arrival, t.release, false)
}

// Restart starts the track anew, as a packet of another SSRC does: emit
// gets the frames completed by what the jitter buffer still holds, and the
// frame in progress is dropped. A caller that maps each SSRC's timestamps on
// its own (sender reports are per SSRC) calls it before pushing the first
// packet of a new SSRC, so that the old SSRC's last frames come out under
// the old mapping.
func (t *TrackFrames) Restart(emit func(*Frame)) {
	t.emit = emit
	if t.haveSSRC {
		t.jb.drain(t.release)
		t.jb.reset()
		t.asm = newAssembler(t.c, t.maxFrame)
	}
	t.haveSSRC = false
}

// SSRC returns the SSRC of the packets pushed since the track (re)started,
// and whether there was one.
func (t *TrackFrames) SSRC() (uint32, bool) { return t.ssrc, t.haveSSRC }

// Flush gives up, at now, on missing packets waited for longer than the
// jitter delay, and calls emit with the frames that completes. Call it
// now and then while no packet comes.
func (t *TrackFrames) Flush(now time.Time, emit func(*Frame)) {
	t.emit = emit
	t.jb.pop(now, t.release, false)
}

// LiveTrack describes one track of a live Matroska stream.
type LiveTrack struct {
	// Number is the track number blocks name (1, 2, …).
	Number uint64
	// MimeType is the RTP codec ("video/VP8", "audio/opus", …).
	MimeType string
	// Width and Height of video (0: unknown yet; decoders use the bitstream's).
	Width, Height int
	// Channels of Opus audio (default 2).
	Channels int
	// CodecPrivate: H.264's avcC, AV1's av1C (from a keyframe's Frame).
	CodecPrivate []byte
}

// liveHead is the start of a live stream: no Duration, as it has none.
type liveHead struct {
	Header  webm.EBMLHeader `ebml:"EBML"`
	Segment liveSegmentHead `ebml:"Segment,size=unknown"`
}

type liveSegmentHead struct {
	Info   liveInfo  `ebml:"Info"`
	Tracks mkvTracks `ebml:"Tracks"`
}

type liveInfo struct {
	TimecodeScale uint64 `ebml:"TimecodeScale"`
	MuxingApp     string `ebml:"MuxingApp"`
	WritingApp    string `ebml:"WritingApp"`
	Title         string `ebml:"Title,omitempty"`
}

// LiveHeader returns the start of a live WebM (docType "webm") or Matroska
// stream of tracks: the EBML header, a Segment of unknown size, its Info
// (1 ms timecodes, no duration) and Tracks. Clusters follow
// (AppendClusterStart, AppendSimpleBlock). It is a Media Source Extensions
// initialization segment.
func LiveHeader(docType, title string, tracks []LiveTrack) ([]byte, error) {
	head := liveHead{
		Header: webm.EBMLHeader{EBMLVersion: 1, EBMLReadVersion: 1, EBMLMaxIDLength: 4, EBMLMaxSizeLength: 8,
			DocType: docType, DocTypeVersion: 4, DocTypeReadVersion: 2},
		Segment: liveSegmentHead{Info: liveInfo{TimecodeScale: 1_000_000, MuxingApp: "parley live (ebml-go)",
			WritingApp: "parley", Title: title}},
	}
	for _, t := range tracks {
		c := parseCodec(t.MimeType)
		if c == codecUnknown || c == codecPCMU || c == codecPCMA {
			return nil, fmt.Errorf("recorder: a live stream cannot carry %q", t.MimeType)
		}
		e := mkvTrackEntry{TrackNumber: t.Number, TrackUID: t.Number, CodecID: c.matroskaID(), CodecPrivate: t.CodecPrivate}
		if c.video() {
			w, h := t.Width, t.Height
			if w <= 0 || h <= 0 {
				w, h = 640, 480
			}
			e.TrackType = 1
			e.Video = &mkvVideo{PixelWidth: uint64(w), PixelHeight: uint64(h)}
		} else {
			ch := t.Channels
			if ch <= 0 {
				ch = 2
			}
			e.TrackType = 2
			e.CodecPrivate = opusHead(ch)
			e.SeekPreRoll = 80_000_000
			e.Audio = &mkvAudio{SamplingFrequency: 48000, Channels: uint64(ch)}
		}
		head.Segment.Tracks.TrackEntry = append(head.Segment.Tracks.TrackEntry, e)
	}
	var b bytes.Buffer
	if err := ebml.Marshal(&head, &b); err != nil {
		return nil, fmt.Errorf("recorder: live header: %w", err)
	}
	return b.Bytes(), nil
}

// AppendClusterStart appends the start of a Cluster of unknown size at
// timecode tsMs (milliseconds): the blocks that follow belong to it until
// the next one.
func AppendClusterStart(b []byte, tsMs int64) []byte {
	m := mkvWriter{buf: b}
	m.startCluster(tsMs)
	return m.buf
}

// AppendSimpleBlock appends a SimpleBlock of track at relMs from its
// cluster's timecode (-32768…32767).
func AppendSimpleBlock(b []byte, track uint64, relMs int16, key bool, frame []byte) ([]byte, error) {
	blk := ebml.Block{TrackNumber: track, Timecode: relMs, Keyframe: key, Data: [][]byte{frame}}
	b = append(b, idSimpleBlock...)
	b = appendVint(b, uint64(vintLen(track)+3+len(frame)))
	if err := ebml.MarshalBlock(&blk, (*sliceWriter)(&b)); err != nil {
		return b, fmt.Errorf("recorder: block: %w", err)
	}
	return b, nil
}
