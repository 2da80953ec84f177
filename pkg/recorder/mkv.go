package recorder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
)

// Matroska element IDs written by hand (clusters and blocks are written
// without reflection: they are the hot path).
var (
	idCluster     = []byte{0x1F, 0x43, 0xB6, 0x75}
	idTimecode    = []byte{0xE7}
	idSimpleBlock = []byte{0xA3}
	// sizeUnknown is an 8-byte EBML size with all value bits set: "unknown size".
	sizeUnknown = []byte{0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}
	// durationPattern is the Duration element header: ID 0x4489, size 8.
	durationPattern = []byte{0x44, 0x89, 0x88}
)

// Header structures, marshalled with ebml-go. Duration comes right after
// TimecodeScale so that its bytes can be found (and patched) unambiguously.
// The Segment's header (of unknown size) and the Void reserved for the
// SeekHead (index.go) are written by the recorder.
type mkvEBMLHead struct {
	Header webm.EBMLHeader `ebml:"EBML"`
}

type mkvInfoHead struct {
	Info mkvInfo `ebml:"Info"`
}

type mkvTracksHead struct {
	Tracks mkvTracks `ebml:"Tracks"`
}

type mkvInfo struct {
	TimecodeScale uint64    `ebml:"TimecodeScale"`
	Duration      float64   `ebml:"Duration"`
	MuxingApp     string    `ebml:"MuxingApp"`
	WritingApp    string    `ebml:"WritingApp"`
	DateUTC       time.Time `ebml:"DateUTC"`
	Title         string    `ebml:"Title,omitempty"`
}

type mkvTracks struct {
	TrackEntry []mkvTrackEntry `ebml:"TrackEntry"`
}

type mkvTrackEntry struct {
	TrackNumber  uint64    `ebml:"TrackNumber"`
	TrackUID     uint64    `ebml:"TrackUID"`
	FlagLacing   uint64    `ebml:"FlagLacing"`
	Name         string    `ebml:"Name,omitempty"`
	CodecID      string    `ebml:"CodecID"`
	CodecPrivate []byte    `ebml:"CodecPrivate,omitempty"`
	CodecDelay   uint64    `ebml:"CodecDelay,omitempty"`
	SeekPreRoll  uint64    `ebml:"SeekPreRoll,omitempty"`
	TrackType    uint64    `ebml:"TrackType"`
	Video        *mkvVideo `ebml:"Video"`
	Audio        *mkvAudio `ebml:"Audio"`
}

type mkvVideo struct {
	PixelWidth  uint64 `ebml:"PixelWidth"`
	PixelHeight uint64 `ebml:"PixelHeight"`
}

type mkvAudio struct {
	SamplingFrequency float64 `ebml:"SamplingFrequency"`
	Channels          uint64  `ebml:"Channels"`
	BitDepth          uint64  `ebml:"BitDepth,omitempty"`
}

// mkvTrack is what the writer needs to know of a track for the header.
type mkvTrack struct {
	number       uint64
	video        bool
	codecID      string
	codecPrivate []byte
	codecDelay   uint64 // ns
	seekPreRoll  uint64
	width        int
	height       int
	sampleRate   float64
	channels     int
	bitDepth     int
}

// mkvWriter writes one Matroska/WebM file as a live stream: an unknown-size
// Segment of unknown-size Clusters, each cluster at most clusterMax long and
// written out as it grows, so a file cut at any block boundary still plays.
// The Segment's Duration is patched in place at every cluster end.
type mkvWriter struct {
	f       *os.File
	docType string
	title   string

	headerWritten bool
	durationPos   int64
	layout        segmentLayout
	hasVideo      bool
	cues          []cuePoint
	size          int64
	buf           []byte

	clusterOpen bool
	clusterTC   int64
	clusterPos  int64 // file offset of the open cluster
	clusterCued bool  // the open cluster has its cue point
	lastFlushTC int64
	endMs       int64
	firstMs     int64
	blocks      int64

	clusterMax   int64 // ms
	flushEvery   int64 // ms of media between writes to the file
	syncInterval time.Duration
	lastSync     time.Time
	err          error // sticky

	// reserve, when set, is asked for the bytes of each block (and cluster
	// start) before they are appended; false refuses the block (errQuota).
	reserve func(n int64) bool
}

// errQuota is writeBlock's error when reserve refused the bytes. It is not
// sticky: the file stays whole and can be closed.
var errQuota = errors.New("recording quota reached")

// clusterStartBytes bounds the bytes startCluster appends.
const clusterStartBytes = 4 + 8 + 1 + 1 + 8

func newMKVWriter(f *os.File, docType, title string, clusterMax time.Duration, sync time.Duration) *mkvWriter {
	cm := clusterMax.Milliseconds()
	if cm <= 0 || cm > 0x7FFF {
		cm = 1000
	}
	return &mkvWriter{
		f: f, docType: docType, title: title,
		clusterMax: cm, flushEvery: 250, syncInterval: sync,
		firstMs: -1, lastSync: time.Now(),
	}
}

// writeHeader writes the EBML header, Segment start, Info and Tracks.
func (m *mkvWriter) writeHeader(tracks []mkvTrack) error {
	if m.err != nil {
		return m.err
	}
	ebmlHead := mkvEBMLHead{Header: webm.EBMLHeader{
		EBMLVersion: 1, EBMLReadVersion: 1, EBMLMaxIDLength: 4, EBMLMaxSizeLength: 8,
		DocType: m.docType, DocTypeVersion: 4, DocTypeReadVersion: 2,
	}}
	info := mkvInfoHead{Info: mkvInfo{
		TimecodeScale: 1_000_000, // 1 ms
		MuxingApp:     "parley recorder (ebml-go)",
		WritingApp:    "parley",
		DateUTC:       time.Now().UTC(),
		Title:         m.title,
	}}
	var head mkvTracksHead
	for _, t := range tracks {
		e := mkvTrackEntry{
			TrackNumber:  t.number,
			TrackUID:     t.number,
			CodecID:      t.codecID,
			CodecPrivate: t.codecPrivate,
			CodecDelay:   t.codecDelay,
			SeekPreRoll:  t.seekPreRoll,
		}
		if t.video {
			m.hasVideo = true
			e.TrackType = 1
			w, h := t.width, t.height
			if w <= 0 || h <= 0 {
				w, h = 640, 480 // unknown before a keyframe; decoders use the bitstream's size
			}
			e.Video = &mkvVideo{PixelWidth: uint64(w), PixelHeight: uint64(h)}
		} else {
			e.TrackType = 2
			e.Audio = &mkvAudio{SamplingFrequency: t.sampleRate, Channels: uint64(t.channels), BitDepth: uint64(t.bitDepth)}
		}
		head.Tracks.TrackEntry = append(head.Tracks.TrackEntry, e)
	}
	var b bytes.Buffer
	if err := ebml.Marshal(&ebmlHead, &b); err != nil {
		m.err = fmt.Errorf("marshal matroska header: %w", err)
		return m.err
	}
	b.Write(idSegment)
	b.Write(sizeUnknown)
	m.layout.dataStart = int64(b.Len())
	b.Write(voidElement(seekHeadSpace))
	infoAt := b.Len()
	m.layout.info = uint64(int64(infoAt) - m.layout.dataStart)
	if err := ebml.Marshal(&info, &b); err != nil {
		m.err = fmt.Errorf("marshal matroska info: %w", err)
		return m.err
	}
	m.layout.tracks = uint64(int64(b.Len()) - m.layout.dataStart)
	if err := ebml.Marshal(&head, &b); err != nil {
		m.err = fmt.Errorf("marshal matroska tracks: %w", err)
		return m.err
	}
	idx := bytes.Index(b.Bytes()[infoAt:], durationPattern)
	if idx < 0 {
		m.err = errors.New("matroska header has no duration element")
		return m.err
	}
	m.durationPos = int64(infoAt+idx) + int64(len(durationPattern))
	if _, err := m.f.Write(b.Bytes()); err != nil {
		m.err = fmt.Errorf("write matroska header: %w", err)
		return m.err
	}
	m.size = int64(b.Len())
	m.headerWritten = true
	return nil
}

// writeBlock appends a SimpleBlock at tsMs (room time line, ms). endMs is
// where the frame ends (for the Segment duration). Blocks must come in
// non-decreasing tsMs order.
func (m *mkvWriter) writeBlock(track uint64, tsMs, endMs int64, key, video bool, data []byte) error {
	if m.err != nil {
		return m.err
	}
	newCluster := !m.clusterOpen || tsMs < m.clusterTC || tsMs-m.clusterTC >= m.clusterMax || (video && key && tsMs > m.clusterTC)
	if m.reserve != nil {
		need := int64(len(idSimpleBlock) + 8 + vintLen(track) + 3 + len(data))
		if newCluster {
			need += clusterStartBytes
		}
		// The cue this block makes is reserved with it, so the index of a
		// file a quota stopped still fits in the quota.
		if (newCluster || !m.clusterCued) && ((video && key) || !m.hasVideo) && len(m.cues) < maxCues {
			need += cuePointBytes
			if len(m.cues) == 0 {
				need += cuesHeaderBytes
			}
		}
		if !m.reserve(need) {
			return errQuota
		}
	}
	if newCluster {
		if m.clusterOpen {
			if err := m.endCluster(false); err != nil {
				return err
			}
		}
		m.startCluster(tsMs)
	}
	// A cue for the cluster's keyframe (a video keyframe starts a cluster,
	// perhaps after audio of the same time), or its first block in a file
	// without video.
	if !m.clusterCued && ((video && key) || !m.hasVideo) {
		m.clusterCued = true
		m.cues = addCue(m.cues, cuePoint{ms: tsMs, track: track, pos: uint64(m.clusterPos - m.layout.dataStart)})
	}
	if m.firstMs < 0 {
		m.firstMs = tsMs
	}
	if endMs < tsMs {
		endMs = tsMs
	}
	m.endMs = max(m.endMs, endMs)
	// SimpleBlock: ID, size, then ebml-go's block encoding (track vint,
	// int16 relative timecode, flags, frame).
	blk := ebml.Block{TrackNumber: track, Timecode: int16(tsMs - m.clusterTC), Keyframe: key, Data: [][]byte{data}}
	m.buf = append(m.buf, idSimpleBlock...)
	m.buf = appendVint(m.buf, uint64(vintLen(track)+3+len(data)))
	if err := ebml.MarshalBlock(&blk, (*sliceWriter)(&m.buf)); err != nil {
		m.err = fmt.Errorf("marshal block: %w", err)
		return m.err
	}
	m.blocks++
	if tsMs-m.lastFlushTC >= m.flushEvery || len(m.buf) >= 256<<10 {
		m.lastFlushTC = tsMs
		return m.flush()
	}
	return nil
}

func (m *mkvWriter) startCluster(tsMs int64) {
	m.clusterPos, m.clusterCued = m.size+int64(len(m.buf)), false
	m.buf = append(m.buf, idCluster...)
	m.buf = append(m.buf, sizeUnknown...)
	m.buf = append(m.buf, idTimecode...)
	var tc [8]byte
	binary.BigEndian.PutUint64(tc[:], uint64(tsMs))
	n := 8
	for n > 1 && tc[8-n] == 0 {
		n--
	}
	m.buf = appendVint(m.buf, uint64(n))
	m.buf = append(m.buf, tc[8-n:]...)
	m.clusterOpen = true
	m.clusterTC = tsMs
	m.lastFlushTC = tsMs
}

// endCluster writes the cluster out, patches the duration and fsyncs when
// syncInterval has passed since the last fsync (always when force is set).
func (m *mkvWriter) endCluster(force bool) error {
	m.clusterOpen = false
	if err := m.flush(); err != nil {
		return err
	}
	if err := m.patchDuration(); err != nil {
		return err
	}
	if force || time.Since(m.lastSync) >= m.syncInterval {
		m.lastSync = time.Now()
		if err := m.f.Sync(); err != nil {
			m.err = fmt.Errorf("fsync: %w", err)
			return m.err
		}
	}
	return nil
}

func (m *mkvWriter) flush() error {
	if m.err != nil {
		return m.err
	}
	if len(m.buf) == 0 {
		return nil
	}
	n, err := m.f.Write(m.buf)
	m.size += int64(n)
	m.buf = m.buf[:0]
	if err != nil {
		m.err = fmt.Errorf("write: %w", err)
	}
	return m.err
}

func (m *mkvWriter) patchDuration() error {
	if !m.headerWritten || m.err != nil {
		return m.err
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], math.Float64bits(float64(m.endMs)))
	if _, err := m.f.WriteAt(b[:], m.durationPos); err != nil {
		m.err = fmt.Errorf("patch duration: %w", err)
	}
	return m.err
}

// close finishes the file: last cluster, duration, index (Cues and
// SeekHead), fsync, close.
func (m *mkvWriter) close() error {
	var err error
	if m.headerWritten {
		err = m.endCluster(false)
		if err == nil {
			m.size, err = writeIndex(m.f, m.size, m.layout, m.cues) // its bytes were reserved with the blocks
			if err != nil {
				m.err = err
			}
		}
	}
	if cerr := m.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return err
}

// sliceWriter appends to a byte slice.
type sliceWriter []byte

func (s *sliceWriter) Write(p []byte) (int, error) {
	*s = append(*s, p...)
	return len(p), nil
}

// vintLen is the length of v as an EBML variable-size integer.
func vintLen(v uint64) int {
	n := 1
	for n < 8 && v >= (uint64(1)<<(7*n))-1 {
		n++
	}
	return n
}

// appendVint appends v as an EBML variable-size integer (data size).
func appendVint(b []byte, v uint64) []byte {
	n := vintLen(v)
	v |= uint64(1) << (7 * n)
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}
