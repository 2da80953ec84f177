package recorder

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
)

// A finished recording is indexed so players seek in it at once: Cues after
// the last cluster (where each cue point is a cluster that starts with a
// video keyframe, or every cluster of an audio-only file) and a SeekHead at
// the start of the Segment saying where Info, Tracks and the Cues are. The
// SeekHead goes into room the header reserved for it as a Void element, so
// nothing is moved. The Segment and its Clusters keep their unknown sizes
// (players read the Clusters up to the next top-level element, the Cues); a
// known Segment size would make readers reject the unknown-size Clusters
// inside it. A file being recorded (or cut by a crash) has no index; Recover
// adds it.

// seekHeadSpace is the room reserved for the SeekHead (a Void element right
// after the Segment's header): three Seek entries take at most 68 bytes.
const seekHeadSpace = 96

// maxCues bounds the cue points of one file (a day of one per second).
const maxCues = 1 << 17

// cuePointBytes bounds one encoded cue point (times and positions of up to
// 8 bytes), cuesHeaderBytes the Cues element's header; both are reserved
// against Options.MaxBytes as the cues are made.
const (
	cuePointBytes   = 28
	cuesHeaderBytes = 12
)

// Element IDs of the index.
var (
	idSegment      = []byte{0x18, 0x53, 0x80, 0x67}
	idInfo         = []byte{0x15, 0x49, 0xA9, 0x66}
	idTracks       = []byte{0x16, 0x54, 0xAE, 0x6B}
	idCues         = []byte{0x1C, 0x53, 0xBB, 0x6B}
	idVoid         = byte(0xEC)
	ebmlIDCues     = uint64(0x1C53BB6B)
	ebmlIDSeekHead = uint64(0x114D9B74)
	ebmlIDVoid     = uint64(0xEC)
)

// cuePoint is a place players can start decoding: a cluster (its position
// in the Segment's data) whose first block, at ms, is a keyframe of track.
type cuePoint struct {
	ms    int64
	track uint64
	pos   uint64
}

// segmentLayout is where a file's Segment parts are (offsets in the file;
// info and tracks relative to the Segment's data, as a SeekHead gives them).
type segmentLayout struct {
	dataStart int64 // the Segment's data: the reserved Void, then Info, Tracks
	info      uint64
	tracks    uint64
}

// voidElement is a Void element of n bytes in all (2 ≤ n ≤ 128).
func voidElement(n int) []byte {
	b := make([]byte, n)
	b[0] = idVoid
	b[1] = 0x80 | byte(n-2)
	return b
}

// addCue appends a cue point, keeping them in time order and bounded.
func addCue(cues []cuePoint, c cuePoint) []cuePoint {
	if len(cues) >= maxCues || (len(cues) > 0 && c.ms <= cues[len(cues)-1].ms) {
		return cues
	}
	return append(cues, c)
}

// marshalCues encodes the Cues element.
func marshalCues(cues []cuePoint) ([]byte, error) {
	var v struct {
		Cues webm.Cues `ebml:"Cues"`
	}
	for _, c := range cues {
		v.Cues.CuePoint = append(v.Cues.CuePoint, webm.CuePoint{CueTime: uint64(c.ms),
			CueTrackPositions: []webm.CueTrackPosition{{CueTrack: c.track, CueClusterPosition: c.pos}}})
	}
	var b bytes.Buffer
	if err := ebml.Marshal(&v, &b); err != nil {
		return nil, fmt.Errorf("marshal cues: %w", err)
	}
	return b.Bytes(), nil
}

// seekHead encodes a SeekHead for the layout (and the Cues at cues, when
// set), padded with a Void to exactly seekHeadSpace bytes.
func seekHead(l segmentLayout, cues uint64, haveCues bool) ([]byte, error) {
	var v struct {
		SeekHead webm.SeekHead `ebml:"SeekHead"`
	}
	v.SeekHead.Seek = []webm.Seek{{SeekID: idInfo, SeekPosition: l.info}, {SeekID: idTracks, SeekPosition: l.tracks}}
	if haveCues {
		v.SeekHead.Seek = append(v.SeekHead.Seek, webm.Seek{SeekID: idCues, SeekPosition: cues})
	}
	var b bytes.Buffer
	if err := ebml.Marshal(&v, &b); err != nil {
		return nil, fmt.Errorf("marshal seek head: %w", err)
	}
	pad := seekHeadSpace - b.Len()
	if pad < 2 {
		return nil, errors.New("seek head larger than its room")
	}
	return append(b.Bytes(), voidElement(pad)...), nil
}

// writeIndex appends the Cues to f at end, fills the reserved room with the
// SeekHead and fsyncs. It returns the file's new end. On an error the file is
// cut back to end, as whole as it was.
func writeIndex(f *os.File, end int64, l segmentLayout, cues []cuePoint) (int64, error) {
	newEnd := end
	haveCues := false
	if len(cues) > 0 {
		b, err := marshalCues(cues)
		if err != nil {
			return end, err
		}
		if _, err := f.WriteAt(b, end); err != nil {
			_ = f.Truncate(end)
			return end, fmt.Errorf("write cues: %w", err)
		}
		newEnd, haveCues = end+int64(len(b)), true
	}
	head, err := seekHead(l, uint64(end-l.dataStart), haveCues)
	if err != nil {
		_ = f.Truncate(end)
		return end, err
	}
	// Cues first, then the pointers to them: a crash in between leaves a
	// file as whole as before (Cues are skipped by a reader that was not
	// told of them).
	if err := f.Sync(); err != nil {
		_ = f.Truncate(end)
		return end, fmt.Errorf("fsync: %w", err)
	}
	if _, err := f.WriteAt(head, l.dataStart); err != nil {
		_ = f.Truncate(end)
		return end, fmt.Errorf("write seek head: %w", err)
	}
	if err := f.Sync(); err != nil {
		return end, fmt.Errorf("fsync: %w", err)
	}
	return newEnd, nil
}
