package recorder

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/parley/parley/internal/rtpdump"
	"github.com/parley/parley/pkg/testmedia"
)

// svcPicture is what the packets of one VP9 picture say of it.
type svcPicture struct {
	ts       uint32
	topSID   uint8
	complete bool // its last packet (the marker) came
}

// readCapturePackets reads the packets of testdata/vp9-l3t3-key.rtpdump.
func readCapturePackets(t testing.TB) []rtpdump.Packet {
	t.Helper()
	f, err := os.Open("testdata/vp9-l3t3-key.rtpdump")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := rtpdump.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	pkts, err := r.All()
	if err != nil {
		t.Fatal(err)
	}
	return pkts
}

// readSVCCapture reads testdata/vp9-l3t3-key.rtpdump: what Chromium sent
// when it published its fake camera (1280x720) in VP9 with L3T3_KEY, whole
// packets from a keyframe on (e2e TestCaptureSVCRecording makes it). It
// returns the packets, the pictures in order (the last may be cut short) and the spatial layers' sizes
// from the keyframe's scalability structure.
func readSVCCapture(t *testing.T) (pkts []rtpdump.Packet, pics []svcPicture, sizes [][2]int) {
	t.Helper()
	pkts = readCapturePackets(t)
	for _, sp := range pkts {
		var p rtp.Packet
		if err := p.Unmarshal(sp.Data); err != nil || len(sp.Data) != sp.Len {
			t.Fatalf("stored packet: %v (%d of %d bytes)", err, len(sp.Data), sp.Len)
		}
		if len(p.Payload) == 0 {
			continue
		}
		var d codecs.VP9Packet
		if _, err := d.Unmarshal(p.Payload); err != nil {
			t.Fatal(err)
		}
		if d.V && d.Y && sizes == nil {
			for i := range d.Width {
				sizes = append(sizes, [2]int{int(d.Width[i]), int(d.Height[i])})
			}
		}
		if len(pics) == 0 || pics[len(pics)-1].ts != p.Timestamp {
			pics = append(pics, svcPicture{ts: p.Timestamp})
		}
		pics[len(pics)-1].topSID = max(pics[len(pics)-1].topSID, d.SID)
		pics[len(pics)-1].complete = p.Marker
	}
	return pkts, pics, sizes
}

// frameHashes decodes a file's video with ffmpeg's decoder dec and returns
// the size and MD5 of each frame it outputs.
func frameHashes(t *testing.T, file, dec string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var args []string
	if dec != "" {
		args = append(args, "-c:v", dec)
	}
	args = append(args, "-i", file, "-an", "-f", "framemd5", "-")
	cmd := exec.CommandContext(ctx, testmedia.FFmpeg, append([]string{"-nostdin", "-v", "error"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg %s: %v\n%s", dec, err, stderr.String())
	}
	var hashes []string
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) == 6 {
			hashes = append(hashes, strings.TrimSpace(f[4])+" "+strings.TrimSpace(f[5]))
		}
	}
	return hashes
}

// decodedSizes returns the size of each frame ffprobe decodes from a file's video.
func decodedSizes(t *testing.T, file string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, ffprobe, "-v", "error", "-select_streams", "v:0",
		"-show_entries", "frame=width,height", "-of", "json", file).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", file, err)
	}
	var r struct {
		Frames []struct {
			W int `json:"width"`
			H int `json:"height"`
		} `json:"frames"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	var sizes []string
	for _, f := range r.Frames {
		sizes = append(sizes, fmt.Sprintf("%dx%d", f.W, f.H))
	}
	return sizes
}

// recordPackets records stored packets as one VP9 track and returns the file.
func recordPackets(t *testing.T, pkts []rtpdump.Packet) string {
	t.Helper()
	s, err := StartSession(t.TempDir(), "room", "s1", sessionStart, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.AddStream(StreamInfo{Participant: "p", StreamID: "x", Kind: "camera",
		Tracks: []TrackInfo{{Kind: "video", MimeType: "video/VP9", ClockRate: 90000}}})
	if err != nil {
		t.Fatal(err)
	}
	var end time.Time
	for _, sp := range pkts {
		var p rtp.Packet
		if err := p.Unmarshal(sp.Data); err != nil {
			t.Fatal(err)
		}
		end = sessionStart.Add(100*time.Millisecond + sp.At)
		w.WriteRTP(0, &p, end)
	}
	if err := s.Close(end.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	return w.File()
}

// A browser's VP9 with three spatial layers (L3T3_KEY) is recorded as one
// frame a picture, the top layer's: the file's header has the top layer's
// size, FFmpeg's decoder (which shows every frame not hidden, as the offline
// mix does) makes one frame a picture at the size of the picture's top
// layer, without an error, and the very frames libvpx (a browser's
// decoder, which shows the last frame of a superframe) makes.
func TestVP9SpatialLayersFromBrowser(t *testing.T) {
	pkts, pics, sizes := readSVCCapture(t)
	if len(sizes) != 3 {
		t.Fatalf("the capture's scalability structure gives layer sizes %v; want three", sizes)
	}
	layers := map[uint8]int{}
	for _, p := range pics {
		layers[p.topSID]++
	}
	t.Logf("%d packets, %d pictures (by top spatial layer: %v), layer sizes %v", len(pkts), len(pics), layers, sizes)

	file := recordPackets(t, pkts)
	if msg := decodeErrors(t, file); msg != "" {
		t.Errorf("decoding: %s", msg)
	}
	top := sizes[len(sizes)-1]
	if v := probe(t, file, false).stream("video"); v == nil || v.Width != top[0] || v.Height != top[1] {
		t.Errorf("the file's video stream: %+v; want %dx%d", v, top[0], top[1])
	}
	got := decodedSizes(t, file)
	var want []string
	for _, p := range pics {
		if !p.complete {
			continue // the capture ends in it
		}
		want = append(want, fmt.Sprintf("%dx%d", sizes[p.topSID][0], sizes[p.topSID][1]))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("FFmpeg decodes %d frames:\n%v\nwant one a picture, the size of its top layer (%d):\n%v", len(got), got, len(want), want)
	}
	native, libvpx := frameHashes(t, file, ""), frameHashes(t, file, "libvpx-vp9")
	if strings.Join(native, "\n") != strings.Join(libvpx, "\n") {
		t.Errorf("FFmpeg's decoder makes %d frames, libvpx %d, not the same:\n%s\nlibvpx:\n%s", len(native), len(libvpx),
			strings.Join(native, "\n"), strings.Join(libvpx, "\n"))
	}
}

// captureLayerFrames returns the layer frames of the capture's complete
// pictures, in order.
func captureLayerFrames(t testing.TB) [][]byte {
	t.Helper()
	pkts := readCapturePackets(t)
	var frames [][]byte
	var cur []byte
	for _, sp := range pkts {
		var p rtp.Packet
		var d codecs.VP9Packet
		if p.Unmarshal(sp.Data) != nil || len(p.Payload) == 0 {
			continue
		}
		data, err := d.Unmarshal(p.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if d.B {
			cur = nil
		}
		cur = append(cur, data...)
		if d.E {
			frames = append(frames, cur)
		}
	}
	return frames
}

// checkHidden hides frame b and checks the result: a frame with the same
// header but show_frame, the inter frame's header one bit longer, and the
// same compressed data.
func checkHidden(t *testing.T, b []byte) (hidden bool) {
	var refs vp9Refs
	f, ok := parseVP9Frame(b, &refs)
	if !ok {
		return false
	}
	out, ok := appendHidden([]byte{0xaa}, b, &f)
	if !ok {
		if len(out) != 1 {
			t.Fatalf("appendHidden failed but changed dst: %x", out)
		}
		return false
	}
	if out[0] != 0xaa {
		t.Fatalf("appendHidden changed what dst held")
	}
	out = out[1:]
	g, ok := parseVP9Frame(out, &refs)
	if !ok || g.show || g.key != f.key || g.size != f.size || g.refresh != f.refresh || g.errorRes != f.errorRes {
		t.Fatalf("hidden frame parses as %+v (%v); the frame was %+v", g, ok, f)
	}
	if f.show && !f.key {
		if g.headerBits != f.headerBits+1 || g.intraOnly {
			t.Fatalf("hidden inter frame: %+v, the frame %+v", g, f)
		}
		if !bytes.Equal(out[(g.headerBits+7)/8:], b[(f.headerBits+7)/8:]) {
			t.Fatalf("the compressed data changed")
		}
	}
	return true
}

// Every layer frame of the capture can be hidden, and hides right.
func TestVP9HideLayerFrames(t *testing.T) {
	frames := captureLayerFrames(t)
	for i, b := range frames {
		if !checkHidden(t, b) {
			t.Errorf("layer frame %d (%d bytes, %x…) not hidden", i, len(b), b[:min(8, len(b))])
		}
	}
	if len(frames) < 30 {
		t.Errorf("%d layer frames in the capture", len(frames))
	}
}

// Hiding any bytes never panics, and what it hides keeps its header.
func FuzzVP9Hide(f *testing.F) {
	for _, b := range captureLayerFrames(f)[:6] {
		f.Add(b[:min(len(b), 64)])
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkHidden(t, b)
	})
}

// A picture whose upper spatial layers the sender left out (as its rate
// control does now and then) shows nothing: the top layer's frame before
// stays, where a browser receiving the stream shows the picture's 320x180
// base for a frame; FFmpeg and libvpx decode the file alike.
// The capture's picture left short is a non-reference one (its frames
// refresh no reference slot), so leaving its upper layers out is just what
// an encoder's layer drop sends.
func TestVP9PictureWithoutTopLayer(t *testing.T) {
	pkts, pics, sizes := readSVCCapture(t)
	drop := -1
	var kept []rtpdump.Packet
	pic := -1
	var lastTS uint32
	for _, sp := range pkts {
		var p rtp.Packet
		var d codecs.VP9Packet
		if err := p.Unmarshal(sp.Data); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Unmarshal(p.Payload); err != nil {
			t.Fatal(err)
		}
		if pic < 0 || p.Timestamp != lastTS {
			pic, lastTS = pic+1, p.Timestamp
		}
		// The first non-reference picture after the first five.
		if drop < 0 && pic > 5 && d.TID == 2 && d.SID == 0 && d.B {
			drop = pic
		}
		if pic == drop {
			if d.SID > 0 {
				continue
			}
			if d.E { // the base layer's last packet ends the picture now
				p.Marker = true
				b, err := p.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				sp = rtpdump.Packet{Data: b, Len: len(b), At: sp.At}
			}
		}
		kept = append(kept, sp)
	}
	if drop < 0 {
		t.Fatal("no non-reference picture in the capture")
	}
	file := recordPackets(t, kept)
	if msg := decodeErrors(t, file); msg != "" {
		t.Errorf("decoding: %s", msg)
	}
	got := decodedSizes(t, file)
	var want []string
	for i, p := range pics {
		if p.complete && i != drop {
			want = append(want, fmt.Sprintf("%dx%d", sizes[p.topSID][0], sizes[p.topSID][1]))
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("picture %d without its upper layers: FFmpeg decodes %d frames:\n%v\nwant %d:\n%v", drop, len(got), got, len(want), want)
	}
	native, libvpx := frameHashes(t, file, ""), frameHashes(t, file, "libvpx-vp9")
	if strings.Join(native, "\n") != strings.Join(libvpx, "\n") {
		t.Errorf("FFmpeg's decoder makes %d frames, libvpx %d, not the same", len(native), len(libvpx))
	}
}

// The top spatial layer the recording shows follows the scalability
// structure, a picture with a higher layer, or the third picture in a row
// without it.
func TestVP9LayersShows(t *testing.T) {
	l := vp9Layers{top: -1}
	steps := []struct {
		sid  int
		ss   int // -1: none
		want bool
	}{
		{0, 0, true},  // one layer, by the structure
		{0, -1, true}, //
		{2, 2, true},  // three
		{2, -1, true},
		{0, -1, false}, // a drop of the upper layers
		{1, -1, false}, // two, then the layer below is followed
		{1, -1, true},
		{1, -1, true},
		{2, -1, true}, // the top again
		{1, -1, false},
		{2, -1, true},
		{1, 1, true}, // a structure with two layers
		{0, -1, false},
	}
	for i, s := range steps {
		if s.ss >= 0 {
			l.top, l.short = s.ss, 0
		}
		if got := l.shows(s.sid); got != s.want {
			t.Errorf("step %d (layer %d): shows %v, want %v", i, s.sid, got, s.want)
		}
	}
}

// svcSeed is a fuzz input (fuzzPackets' format) of the capture's first
// pictures: a keyframe of three spatial layers and what follows.
func svcSeed(t testing.TB) []byte {
	var pkts []fuzzPacket
	var lastTS uint32
	for i, sp := range readCapturePackets(t)[:40] {
		var p rtp.Packet
		if err := p.Unmarshal(sp.Data); err != nil {
			t.Fatal(err)
		}
		fp := fuzzPacket{marker: p.Marker, seqStep: 1, arrivalMs: 2, payload: p.Payload}
		if i > 0 {
			fp.tsStep = uint16(p.Timestamp - lastTS)
		}
		lastTS = p.Timestamp
		pkts = append(pkts, fp)
	}
	return fuzzInput(pkts...)
}

// A frame is hidden only where that changes nothing in how the next one
// decodes (its use of the previous frame's motion vectors).
func TestVP9Hideable(t *testing.T) {
	small, big := vp9Size{320, 180}, vp9Size{640, 360}
	for _, c := range []struct {
		next vp9Frame
		want bool
	}{
		{vp9Frame{size: big}, true},                    // the layer above
		{vp9Frame{size: small, errorRes: true}, true},  // error resilient
		{vp9Frame{size: small, key: true}, true},       // intra
		{vp9Frame{size: small, intraOnly: true}, true}, //
		{vp9Frame{size: small}, false},                 // same size, may use the motion vectors
		{vp9Frame{}, false},                            // size not known
	} {
		f := vp9Frame{size: small}
		if got := hideable(&f, &c.next); got != c.want {
			t.Errorf("hide a %v frame before %+v: %v, want %v", small, c.next, got, c.want)
		}
	}
	var l vp9Layers
	for _, f := range []vp9Frame{{key: true}, {intraOnly: true}, {errorRes: true}} {
		l.note(&f)
	}
	if l.fragile {
		t.Error("a stream of error resilient inter frames taken as fragile")
	}
	l.note(&vp9Frame{})
	if !l.fragile {
		t.Error("an inter frame without error resilience not noted")
	}
}
