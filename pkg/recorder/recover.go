package recorder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	parleycodec "github.com/parley/parley/pkg/codec"
)

// Matroska IDs the scanner knows (with their length marker bits).
const (
	ebmlIDHeader      = 0x1A45DFA3
	ebmlIDSegment     = 0x18538067
	ebmlIDCluster     = 0x1F43B675
	ebmlIDTracks      = 0x1654AE6B
	ebmlIDInfo        = 0x1549A966
	ebmlIDTrackEntry  = 0xAE
	ebmlIDTrackNumber = 0xD7
	ebmlIDCodecID     = 0x86
	ebmlIDTimecode    = 0xE7
	ebmlIDSimpleBlock = 0xA3
	ebmlIDBlockGroup  = 0xA0
	ebmlIDBlock       = 0xA1
)

// topLevel are the Segment children that end an unknown-size cluster.
var topLevel = map[uint64]bool{
	ebmlIDCluster: true, 0x1C53BB6B: true, 0x1254C367: true, 0x1941A469: true,
	0x1043A770: true, ebmlIDTracks: true, ebmlIDInfo: true, 0x114D9B74: true,
	ebmlIDHeader: true, ebmlIDSegment: true,
}

// scanResult is what a scan of a recording finds.
type scanResult struct {
	firstMs, endMs int64 // -1 when no block
	blocks         int
	validEnd       int64 // end of the last complete element
	durationPos    int64 // offset of the Duration float, -1 if none
	size           int64

	layout  segmentLayout // where the Segment's parts are
	slot    bool          // the Segment starts with the Void reserved for a SeekHead
	indexed bool          // the file has a SeekHead or Cues already
	cues    []cuePoint    // where players could start decoding (see index.go)
}

// maxScanFile bounds the file Recover reads into memory at once (larger files are scanned in a window).
const scanWindow = 8 << 20

// readVint reads an EBML variable-size integer at b; keepMarker for IDs.
func readVint(b []byte, keepMarker bool) (v uint64, n int, unknown bool, ok bool) {
	if len(b) == 0 || b[0] == 0 {
		return 0, 0, false, false
	}
	n = 1
	for mask := byte(0x80); b[0]&mask == 0; mask >>= 1 {
		n++
	}
	if n > 8 || len(b) < n {
		return 0, 0, false, false
	}
	first := b[0]
	if !keepMarker {
		first &= byte(0xff >> n)
	}
	v = uint64(first)
	allOnes := first == byte(0xff>>n)
	for i := 1; i < n; i++ {
		v = v<<8 | uint64(b[i])
		allOnes = allOnes && b[i] == 0xff
	}
	return v, n, !keepMarker && allOnes, true
}

// fileReader gives random access to a file with a bounded buffer.
type fileReader struct {
	f    *os.File
	size int64
}

func (r *fileReader) at(off int64, n int) []byte {
	if off >= r.size {
		return nil
	}
	if int64(n) > r.size-off {
		n = int(r.size - off)
	}
	b := make([]byte, n)
	k, _ := r.f.ReadAt(b, off)
	return b[:k]
}

// scanMatroska walks a recording made by this package (or any Matroska file
// of SimpleBlocks) and finds its first and last block times and where the
// last complete element ends.
func scanMatroska(f *os.File) (scanResult, error) {
	st, err := f.Stat()
	if err != nil {
		return scanResult{}, err
	}
	r := &fileReader{f: f, size: st.Size()}
	res := scanResult{firstMs: -1, endMs: -1, durationPos: -1, size: r.size}
	off := int64(0)
	// elem reads an element header at off.
	elem := func(off int64) (id, size uint64, hdr int, unknown, ok bool) {
		b := r.at(off, 16)
		id, n1, _, ok1 := readVint(b, true)
		if !ok1 {
			return 0, 0, 0, false, false
		}
		size, n2, unk, ok2 := readVint(b[n1:], false)
		if !ok2 {
			return 0, 0, 0, false, false
		}
		return id, size, n1 + n2, unk, true
	}
	id, size, hdr, _, ok := elem(off)
	if !ok || id != ebmlIDHeader {
		return res, errors.New("not a Matroska file")
	}
	off += int64(hdr) + int64(size)
	id, size, hdr, unknown, ok := elem(off)
	if !ok || id != ebmlIDSegment {
		return res, errors.New("no segment")
	}
	segEnd := r.size
	if !unknown && off+int64(hdr)+int64(size) < segEnd {
		segEnd = off + int64(hdr) + int64(size)
	}
	off += int64(hdr)
	res.validEnd = off
	res.layout.dataStart = off
	trackCodec := map[uint64]string{}
	hasVideo := false
	lastVideo := map[uint64]int64{}
	interval := map[uint64]int64{}
	for off < segEnd {
		id, size, hdr, unknown, ok := elem(off)
		if !ok {
			break
		}
		body := off + int64(hdr)
		switch {
		case id == ebmlIDCluster:
			end := segEnd
			if !unknown {
				end = min(body+int64(size), segEnd)
			}
			var tc int64
			p := body
			res.validEnd = p
			clusterPos := uint64(off - res.layout.dataStart)
			cued := false
			for p < end {
				cid, csize, chdr, cunk, ok := elem(p)
				if !ok || cunk {
					break
				}
				if unknown && topLevel[cid] {
					break
				}
				cend := p + int64(chdr) + int64(csize)
				if cend > end || csize > scanWindow {
					break // truncated
				}
				switch cid {
				case ebmlIDTimecode:
					b := r.at(p+int64(chdr), int(csize))
					var v uint64
					for _, c := range b {
						v = v<<8 | uint64(c)
					}
					tc = int64(v)
				case ebmlIDSimpleBlock:
					b := r.at(p+int64(chdr), int(csize))
					tn, n, _, ok := readVint(b, false)
					if !ok || len(b) < n+3 {
						break
					}
					ts := tc + int64(int16(binary.BigEndian.Uint16(b[n:n+2])))
					data := b[n+3:]
					// The cue point the writer would have made (mkv.go).
					if video := strings.HasPrefix(trackCodec[tn], "V_"); !cued && ((video && b[n+2]&0x80 != 0) || !hasVideo) {
						cued = true
						res.cues = addCue(res.cues, cuePoint{ms: ts, track: tn, pos: clusterPos})
					}
					dur := int64(0)
					switch codec := trackCodec[tn]; {
					case codec == "A_OPUS":
						dur = parleycodec.OpusPacketDuration(data).Milliseconds()
					case strings.HasPrefix(codec, "A_PCM"):
						dur = int64(len(data)/2) * 1000 / 8000
					default:
						if prev, ok := lastVideo[tn]; ok && ts > prev && ts-prev <= 200 {
							interval[tn] = ts - prev
						}
						lastVideo[tn] = ts
						dur = interval[tn]
						if dur == 0 {
							dur = 33
						}
					}
					if res.firstMs < 0 || ts < res.firstMs {
						res.firstMs = ts
					}
					res.endMs = max(res.endMs, ts+dur)
					res.blocks++
				}
				p = cend
				res.validEnd = p
			}
			if p < end && !unknown {
				return res, nil // a known-size cluster cut short
			}
			if p >= segEnd {
				return res, nil
			}
			nid, _, _, _, ok := elem(p)
			if !ok || !topLevel[nid] {
				return res, nil
			}
			off = p
			continue
		case id == ebmlIDTracks:
			res.layout.tracks = uint64(off - res.layout.dataStart)
			b := r.at(body, int(min(size, scanWindow)))
			parseTracks(b, trackCodec)
			for _, c := range trackCodec {
				hasVideo = hasVideo || strings.HasPrefix(c, "V_")
			}
		case id == ebmlIDInfo:
			res.layout.info = uint64(off - res.layout.dataStart)
			b := r.at(body, int(min(size, 4096)))
			if i := bytes.Index(b, durationPattern); i >= 0 {
				res.durationPos = body + int64(i) + int64(len(durationPattern))
			}
		case id == ebmlIDVoid && off == res.layout.dataStart && int64(hdr)+int64(size) == seekHeadSpace:
			res.slot = true
		case id == ebmlIDSeekHead || id == ebmlIDCues:
			res.indexed = true
		}
		if unknown {
			break
		}
		next := body + int64(size)
		if next > r.size {
			break
		}
		off = next
		res.validEnd = off
	}
	return res, nil
}

// parseTracks fills number -> codec id from the body of a Tracks element.
func parseTracks(b []byte, out map[uint64]string) {
	for len(b) > 0 {
		id, n1, _, ok := readVint(b, true)
		if !ok {
			return
		}
		size, n2, _, ok := readVint(b[n1:], false)
		if !ok || uint64(len(b)-n1-n2) < size {
			return
		}
		body := b[n1+n2 : n1+n2+int(size)]
		if id == ebmlIDTrackEntry {
			var num uint64
			var cid string
			for e := body; len(e) > 0; {
				eid, m1, _, ok := readVint(e, true)
				if !ok {
					break
				}
				esz, m2, _, ok := readVint(e[m1:], false)
				if !ok || uint64(len(e)-m1-m2) < esz {
					break
				}
				v := e[m1+m2 : m1+m2+int(esz)]
				switch eid {
				case ebmlIDTrackNumber:
					for _, c := range v {
						num = num<<8 | uint64(c)
					}
				case ebmlIDCodecID:
					cid = string(v)
				}
				e = e[m1+m2+int(esz):]
			}
			out[num] = cid
		}
		b = b[n1+n2+int(size):]
	}
}

// repairFile makes a recording cut by a crash whole again: it cuts a
// partly written last element, writes the Segment duration, and fsyncs.
func repairFile(path string) (scanResult, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return scanResult{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return scanResult{}, err
	}
	if st.Size() == 0 {
		return scanResult{firstMs: -1, endMs: -1}, nil
	}
	res, err := scanMatroska(f)
	if err != nil {
		return res, err
	}
	end := res.size
	if res.validEnd > 0 && res.validEnd < res.size {
		if err := f.Truncate(res.validEnd); err != nil {
			return res, fmt.Errorf("truncate: %w", err)
		}
		end = res.validEnd
	}
	if res.durationPos > 0 && res.endMs >= 0 {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], math.Float64bits(float64(res.endMs)))
		if _, err := f.WriteAt(b[:], res.durationPos); err != nil {
			return res, fmt.Errorf("write duration: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("fsync: %w", err)
	}
	// Index it as a finished file is (files from before the SeekHead's room
	// was reserved stay without).
	if res.slot && !res.indexed && res.blocks > 0 {
		if _, err := writeIndex(f, end, res.layout, res.cues); err != nil {
			return res, fmt.Errorf("index: %w", err)
		}
	}
	return res, nil
}

// Recover finishes a room session whose recording process died: for every
// stream still "recording" in sessionDir's manifest it cuts a partly written
// last block off the file, writes the file's duration, and fills the
// stream's offset, duration and times from what the file holds; then it sets
// the session's end (the end of its last frame) and marks it finished and
// recovered. A finished session is returned as it is. Run it only when no
// process records the session (at start-up, before recording anew).
func Recover(sessionDir string) (*Manifest, error) {
	path := filepath.Join(sessionDir, ManifestName)
	m, err := ReadManifest(path)
	if err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	if tmps, _ := filepath.Glob(filepath.Join(sessionDir, ".tmp-"+ManifestName+"-*")); len(tmps) > 0 {
		for _, t := range tmps {
			_ = os.Remove(t) // an interrupted manifest write; the manifest itself is whole
		}
	}
	if m.State == StateFinished {
		return m, nil
	}
	end := m.Start
	for i := range m.Streams {
		e := &m.Streams[i]
		if e.State == StreamRecording {
			res, err := repairFile(filepath.Join(sessionDir, e.File))
			switch {
			case err != nil && !errors.Is(err, io.EOF):
				e.Error = "recover: " + err.Error()
				e.State = StreamEmpty
				entryTimes(e, m.Start, -1, -1)
			case res.firstMs < 0:
				e.State = StreamEmpty
				entryTimes(e, m.Start, -1, -1)
			default:
				e.State = StreamRecovered
				entryTimes(e, m.Start, res.firstMs, res.endMs)
			}
		}
		if !e.End.IsZero() && e.End.After(end) {
			end = e.End
		}
	}
	m.End = end
	m.DurationMs = end.Sub(m.Start).Milliseconds()
	m.State = StateFinished
	m.Recovered = true
	m.Updated = time.Now()
	if err := writeManifest(sessionDir, m); err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	return m, nil
}

// Unfinished lists the session directories under a records directory
// (<dir>/<room>/<session>/) whose manifest is still "recording": the
// sessions to Recover at start-up.
func Unfinished(dir string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "*", "*", ManifestName))
	if err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	var out []string
	for _, p := range matches {
		m, err := ReadManifest(p)
		if err != nil {
			continue
		}
		if m.State == StateRecording {
			out = append(out, filepath.Dir(p))
		}
	}
	return out, nil
}
