package recorder

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/testmedia"
)

// fileIndex is what a recording's SeekHead and Cues say.
type fileIndex struct {
	seek      map[uint64]uint64 // element ID -> position in the Segment
	cues      []webm.CuePoint
	dataStart int64
}

// readIndex reads the SeekHead in the room reserved at the start of a
// recording's Segment and the Cues it points to; ok is false when the file
// has no SeekHead (a live file). It checks that each cue point is a Cluster
// whose timecode is the cue's time.
func readIndex(t *testing.T, path string) (idx fileIndex, ok bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := func(off int64) (id, size uint64, hdr int) {
		id, n1, _, ok1 := readVint(data[off:], true)
		size, n2, _, ok2 := readVint(data[off+int64(n1):], false)
		if !ok1 || !ok2 {
			t.Fatalf("%s: no element at %d", path, off)
		}
		return id, size, n1 + n2
	}
	_, size, hdr := at(0) // EBML header
	_, _, hdr2 := at(int64(hdr) + int64(size))
	idx.dataStart = int64(hdr) + int64(size) + int64(hdr2)
	id, size, hdr := at(idx.dataStart)
	switch id {
	case ebmlIDVoid:
		return idx, false
	case ebmlIDSeekHead:
	default:
		t.Fatalf("%s: the Segment starts with element %x", path, id)
	}
	var sh struct {
		SeekHead webm.SeekHead `ebml:"SeekHead"`
	}
	if err := ebml.Unmarshal(bytes.NewReader(data[idx.dataStart:idx.dataStart+int64(hdr)+int64(size)]), &sh); err != nil {
		t.Fatalf("%s: seek head: %v", path, err)
	}
	idx.seek = map[uint64]uint64{}
	for _, s := range sh.SeekHead.Seek {
		var v uint64
		for _, b := range s.SeekID {
			v = v<<8 | uint64(b)
		}
		idx.seek[v] = s.SeekPosition
	}
	for _, want := range []uint64{ebmlIDInfo, ebmlIDTracks} {
		pos, ok := idx.seek[want]
		if !ok {
			t.Fatalf("%s: the seek head has no entry for %x", path, want)
		}
		if got, _, _ := at(idx.dataStart + int64(pos)); got != want {
			t.Errorf("%s: the seek head puts %x at %d, where %x is", path, want, pos, got)
		}
	}
	cuesPos, ok := idx.seek[ebmlIDCues]
	if !ok {
		return idx, true
	}
	id, size, hdr = at(idx.dataStart + int64(cuesPos))
	if id != ebmlIDCues {
		t.Fatalf("%s: the seek head's Cues position holds %x", path, id)
	}
	start := idx.dataStart + int64(cuesPos)
	var cues struct {
		Cues webm.Cues `ebml:"Cues"`
	}
	if err := ebml.Unmarshal(bytes.NewReader(data[start:start+int64(hdr)+int64(size)]), &cues); err != nil {
		t.Fatalf("%s: cues: %v", path, err)
	}
	idx.cues = cues.Cues.CuePoint
	for _, c := range idx.cues {
		if len(c.CueTrackPositions) != 1 {
			t.Fatalf("%s: cue at %d ms has %d positions", path, c.CueTime, len(c.CueTrackPositions))
		}
		off := idx.dataStart + int64(c.CueTrackPositions[0].CueClusterPosition)
		id, _, hdr := at(off)
		if id != ebmlIDCluster {
			t.Fatalf("%s: cue at %d ms points at element %x, not a cluster", path, c.CueTime, id)
		}
		tid, tsize, thdr := at(off + int64(hdr))
		if tid != ebmlIDTimecode {
			t.Fatalf("%s: the cluster of the cue at %d ms starts with %x", path, c.CueTime, tid)
		}
		var tc uint64
		for _, b := range data[off+int64(hdr)+int64(thdr) : off+int64(hdr)+int64(thdr)+int64(tsize)] {
			tc = tc<<8 | uint64(b)
		}
		// The cluster's first block of the cue's track is at the cue's time,
		// a keyframe (blocks of other tracks of the same time may come first).
		boff := off + int64(hdr) + int64(thdr) + int64(tsize)
		found := false
		for !found && boff < int64(len(data)) {
			bid, bsize, bhdr := at(boff)
			if bid != ebmlIDSimpleBlock {
				break
			}
			b := data[boff+int64(bhdr) : boff+int64(bhdr)+int64(bsize)]
			tn, n, _, _ := readVint(b, false)
			if tn == c.CueTrackPositions[0].CueTrack {
				found = true
				rel := int64(int16(binary.BigEndian.Uint16(b[n : n+2])))
				if tc+uint64(rel) != c.CueTime || b[n+2]&0x80 == 0 {
					t.Errorf("%s: cue at %d ms: its cluster's first block of track %d is at %d ms, flags %x",
						path, c.CueTime, tn, int64(tc)+rel, b[n+2])
				}
			}
			boff += int64(bhdr) + int64(bsize)
		}
		if !found {
			t.Errorf("%s: the cluster of the cue at %d ms has no block of track %d", path, c.CueTime, c.CueTrackPositions[0].CueTrack)
		}
	}
	return idx, true
}

// onlyTruncation reports whether ffmpeg's complaints about a file are only
// that it ends inside an element.
func onlyTruncation(msg string) bool {
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasSuffix(l, "File ended prematurely") {
			return false
		}
	}
	return true
}

var statsRe = regexp.MustCompile(`Statistics: (\d+) bytes read, (\d+) seeks`)

// probeSeek asks ffprobe for the first video packets from at (seconds) on
// and returns the first one's time and keyframe flag, and how many bytes
// ffprobe read from the file (its I/O statistics).
func probeSeek(t *testing.T, path string, at float64) (pts float64, key bool, read int64) {
	return probeSeekKind(t, path, at, "v")
}

// probeSeekAudio is probeSeek for the audio.
func probeSeekAudio(t *testing.T, path string, at float64) (pts float64, key bool, read int64) {
	return probeSeekKind(t, path, at, "a")
}

func probeSeekKind(t *testing.T, path string, at float64, kind string) (pts float64, key bool, read int64) {
	t.Helper()
	out, err := exec.Command(ffprobe, "-v", "verbose", "-read_intervals", strconv.FormatFloat(at, 'f', 3, 64)+"%+#5",
		"-select_streams", kind, "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", path, err, out)
	}
	m := statsRe.FindSubmatch(out)
	if m == nil {
		t.Fatalf("ffprobe printed no I/O statistics:\n%s", out)
	}
	read, _ = strconv.ParseInt(string(m[1]), 10, 64)
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(strings.TrimSpace(line), ",")
		if len(f) == 2 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				return v, strings.Contains(f[1], "K"), read
			}
		}
	}
	t.Fatalf("ffprobe showed no packet after %.1f s:\n%s", at, out)
	return 0, false, 0
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// Seeking: a finished recording has Cues (a cue at every video keyframe,
// each pointing at the cluster that starts with it) and a SeekHead, so a seek
// to the middle of 10 minutes reads a few tens of kilobytes; the same file
// while it was being recorded (no index) makes ffprobe read half of it.
func TestSeekableFiles(t *testing.T) {
	const length = 10 * time.Minute
	src := vp8Source(t, testmedia.Options{Duration: 2 * time.Second, Width: 160, Height: 120, FPS: 15, Bitrate: 150_000})
	s, err := StartSession(t.TempDir(), "room", "s1", sessionStart, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	p := newSimPub(t, sessionStart, 0, 11)
	w, err := s.AddStream(StreamInfo{Participant: "p", StreamID: "x", Kind: "camera", Tracks: vp8Opus,
		RequestKeyframe: func() { p.keyReq.Store(true) }})
	if err != nil {
		t.Fatal(err)
	}
	p.w = w
	p.addTrack(src, 20*time.Millisecond)
	p.addTrack(opusSource(t), 20*time.Millisecond)
	p.run(length)
	w.sync()
	live := filepath.Join(t.TempDir(), "live.webm")
	copyFile(t, w.File(), live) // as a player sees it while it records
	if err := s.Close(sessionStart.Add(length)); err != nil {
		t.Fatal(err)
	}
	file := w.File()
	if msg := decodeErrors(t, file); msg != "" {
		t.Fatalf("decode: %s", msg)
	}
	if _, ok := readIndex(t, live); ok {
		t.Error("a file being recorded has a seek head")
	}
	idx, ok := readIndex(t, file)
	if !ok || len(idx.cues) == 0 {
		t.Fatalf("the finished file has no index: seek head %v, %d cues", ok, len(idx.cues))
	}
	// A cue at every video keyframe.
	keys := probe(t, file, true).keyTimes("video")
	cued := map[float64]bool{}
	for _, c := range idx.cues {
		cued[float64(c.CueTime)/1000] = true
		if c.CueTrackPositions[0].CueTrack != 1 {
			t.Errorf("cue at %d ms on track %d, want the video track 1", c.CueTime, c.CueTrackPositions[0].CueTrack)
		}
	}
	for k := range keys {
		if !cued[k] {
			t.Errorf("the keyframe at %.3f s has no cue", k)
		}
	}
	if len(cued) != len(keys) {
		t.Errorf("%d cues for %d keyframes", len(cued), len(keys))
	}

	mid := length.Seconds() / 2
	st, _ := os.Stat(file)
	pts, key, read := probeSeek(t, file, mid)
	t.Logf("%d cues for %d keyframes; a seek to %.0f s of the %.1f MB file: first video packet %.3f s (keyframe %v), %d bytes read",
		len(idx.cues), len(keys), mid, float64(st.Size())/1e6, pts, key, read)
	if !key || pts > mid+0.001 || pts < mid-1.1 {
		t.Errorf("the seek to %.0f s starts at %.3f s (keyframe %v), want the keyframe at most a second before", mid, pts, key)
	}
	if read > st.Size()/50 {
		t.Errorf("the seek read %d of %d bytes, want at most 2%%", read, st.Size())
	}
	lst, _ := os.Stat(live)
	_, _, liveRead := probeSeek(t, live, mid)
	t.Logf("the same seek in the file being recorded (no index) read %d of %d bytes", liveRead, lst.Size())
	if liveRead < lst.Size()/3 {
		t.Errorf("without an index the seek read only %d of %d bytes: the measurement cannot tell an index from none", liveRead, lst.Size())
	}
}

// A sender that sends keyframes only every 30 s (browsers send one only when
// asked) is asked for one after 10 s without: no keyframe of the file is
// more than about 10 s from the one before, so a seek decodes at most that.
func TestKeyframeInterval(t *testing.T) {
	ivf := genMedia(t, "vp8-160x120-15fps-gop30s-40s.ivf", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15",
		"-t", "40", "-c:v", "libvpx", "-b:v", "100k", "-deadline", "realtime", "-cpu-used", "8",
		"-g", "450", "-keyint_min", "450", "-auto-alt-ref", "0", "-f", "ivf")
	gaps := func(t *testing.T, interval time.Duration) (worst float64, requests uint64) {
		src, err := client.NewIVFSource(ivf, true)
		if err != nil {
			t.Fatal(err)
		}
		s, err := StartSession(t.TempDir(), "room", "s1", sessionStart, Options{BlockWhenFull: true, QueueSize: 32, KeyframeInterval: interval})
		if err != nil {
			t.Fatal(err)
		}
		p := newSimPub(t, sessionStart, 0, 5)
		w, err := s.AddStream(StreamInfo{Participant: "p", StreamID: "x", Tracks: vp8Opus,
			RequestKeyframe: func() { p.keyReq.Store(true) }})
		if err != nil {
			t.Fatal(err)
		}
		p.w = w
		p.lockstep = true
		p.addTrack(src, 20*time.Millisecond)
		p.addTrack(opusSource(t), 20*time.Millisecond)
		p.run(60 * time.Second)
		if err := s.Close(sessionStart.Add(60 * time.Second)); err != nil {
			t.Fatal(err)
		}
		keys := probe(t, w.File(), true).keyTimes("video")
		var ts []float64
		for k := range keys {
			ts = append(ts, k)
		}
		worst, _ = maxGap(ts, 0)
		idx, _ := readIndex(t, w.File())
		t.Logf("KeyframeInterval %v: %d keyframes (%d cues), at most %.2f s apart; %d keyframe requests",
			interval, len(keys), len(idx.cues), worst, w.Stats().KeyframeRequests)
		return worst, w.Stats().KeyframeRequests
	}
	if worst, req := gaps(t, 0); worst > 10.6 || req < 4 {
		t.Errorf("by default: keyframes up to %.2f s apart after %d requests, want at most 10.6 s", worst, req)
	}
	if worst, _ := gaps(t, -1); worst < 25 {
		t.Errorf("without requests the keyframes are at most %.2f s apart: the source does not show the need", worst)
	}
}

// An audio-only file has a cue at every cluster (at most a second apart).
func TestAudioOnlyCues(t *testing.T) {
	file, _ := recordOne(t, []TrackInfo{{Kind: "audio", MimeType: "audio/opus"}}, 30*time.Second, func(p *simPub) {
		p.addTrack(opusSource(t), 20*time.Millisecond)
	})
	idx, ok := readIndex(t, file)
	if !ok || len(idx.cues) < 29 || len(idx.cues) > 32 {
		t.Fatalf("seek head %v, %d cues for 30 s of audio, want one a second", ok, len(idx.cues))
	}
	for i, c := range idx.cues {
		if c.CueTrackPositions[0].CueTrack != 1 || (i > 0 && c.CueTime-idx.cues[i-1].CueTime > 1000) {
			t.Errorf("cue %d at %d ms on track %d", i, c.CueTime, c.CueTrackPositions[0].CueTrack)
		}
	}
	// (The seek starts a cue before 15 s less Opus's 80 ms SeekPreRoll.)
	if pts, _, _ := probeSeekAudio(t, file, 15); pts > 15.001 || pts < 13.9 {
		t.Errorf("a seek to 15 s starts at %.3f s", pts)
	}
}
