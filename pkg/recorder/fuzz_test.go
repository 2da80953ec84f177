package recorder

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// The recorder takes RTP from publishers (any bytes a client sends) and, after
// a crash, files it did not finish. These targets feed both arbitrary input
// (go test -fuzz, see docs/testing.md; seed corpora in testdata/fuzz).

// fuzzCodecs are the codecs an input's first byte picks from.
var fuzzCodecs = []string{"video/VP8", "video/VP9", "video/H264", "video/AV1", "audio/opus", "audio/PCMU", "audio/PCMA"}

// fuzzPacket is one packet of a fuzz input: flags, sequence and timestamp
// steps, arrival step in ms, payload length (big-endian), then the payload.
//
//	flags bit 0: marker, bit 1: the packet before it was lost, bit 2: second track
type fuzzPacket struct {
	marker, lost, second bool
	seqStep              uint16
	tsStep               uint16
	arrivalMs            byte
	payload              []byte
}

// fuzzPackets splits b into packets (at most 256).
func fuzzPackets(b []byte) []fuzzPacket {
	var out []fuzzPacket
	for len(b) >= 8 && len(out) < 256 {
		p := fuzzPacket{marker: b[0]&1 != 0, lost: b[0]&2 != 0, second: b[0]&4 != 0,
			seqStep: binary.BigEndian.Uint16(b[1:3]), tsStep: binary.BigEndian.Uint16(b[3:5]), arrivalMs: b[5]}
		n := min(int(binary.BigEndian.Uint16(b[6:8])), len(b)-8)
		p.payload = b[8 : 8+n]
		b = b[8+n:]
		out = append(out, p)
	}
	return out
}

// fuzzInput encodes packets in fuzzPackets' format (for seeds).
func fuzzInput(pkts ...fuzzPacket) []byte {
	var b []byte
	for _, p := range pkts {
		var flags byte
		if p.marker {
			flags |= 1
		}
		if p.lost {
			flags |= 2
		}
		if p.second {
			flags |= 4
		}
		b = append(b, flags)
		b = binary.BigEndian.AppendUint16(b, p.seqStep)
		b = binary.BigEndian.AppendUint16(b, p.tsStep)
		b = append(b, p.arrivalMs)
		b = binary.BigEndian.AppendUint16(b, uint16(len(p.payload)))
		b = append(b, p.payload...)
	}
	return b
}

// Hand-made packets for the seeds (testdata/fuzz has real ones, made from
// pkg/testmedia clips).
var (
	seedVP8Key   = fuzzPacket{marker: true, seqStep: 1, arrivalMs: 10, payload: []byte{0x10, 0x50, 0x05, 0x00, 0x9d, 0x01, 0x2a, 0xa0, 0x00, 0x5a, 0x00, 0, 0}}
	seedVP8Delta = fuzzPacket{marker: true, seqStep: 1, tsStep: 9000, arrivalMs: 100, payload: []byte{0x10, 0x31, 0x00}}
	seedOpus     = fuzzPacket{marker: true, seqStep: 1, tsStep: 960, arrivalMs: 20, payload: []byte{0xfc, 0xff, 0xfe}}
	seedH264SPS  = fuzzPacket{seqStep: 1, arrivalMs: 10, payload: []byte{0x78, 0x00, 0x08, 0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xc4, 0x00, 0x02, 0x68, 0xce}}
	seedH264IDR  = fuzzPacket{marker: true, seqStep: 1, payload: []byte{0x65, 0x88, 0x84, 0x00}}
	seedAV1Seq   = fuzzPacket{marker: true, seqStep: 1, arrivalMs: 10, payload: []byte{0x18, 0x0c, 0x0a, 0x0b, 0x00, 0x00, 0x00, 0x24, 0xcf, 0x7f, 0x0d, 0xbf, 0xff, 0x30}}
)

// FuzzDepacketize runs RTP payloads of each codec through the assembler (the
// depacketizers, frame assembly, and what a frame tells: VP8/VP9 keyframe
// sizes, H.264 parameter sets and SPS size, the AV1 sequence header):
// whatever comes in, every frame out has data, and a keyframe's size, when
// read, is positive.
func FuzzDepacketize(f *testing.F) {
	f.Add(byte(0), fuzzInput(seedVP8Key, seedVP8Delta))
	f.Add(byte(2), fuzzInput(seedH264SPS, seedH264IDR))
	f.Add(byte(3), fuzzInput(seedAV1Seq))
	f.Add(byte(4), fuzzInput(seedOpus, seedOpus, seedOpus))
	f.Add(byte(1), svcSeed(f))
	f.Fuzz(func(t *testing.T, which byte, input []byte) {
		c := parseCodec(fuzzCodecs[int(which)%len(fuzzCodecs)])
		const maxFrame = 64 << 10
		a := newAssembler(c, maxFrame)
		var seq uint16
		var ts uint32
		for _, fp := range fuzzPackets(input) {
			seq += fp.seqStep
			ts += uint32(fp.tsStep)
			p := &jbPacket{seq: seq, ts: ts, marker: fp.marker, payload: fp.payload, padding: len(fp.payload) == 0}
			a.push(p, fp.lost, func(fr *frameOut) {
				if len(fr.data) == 0 {
					t.Fatalf("%v: an empty frame", c)
				}
				if fr.key && c.video() && (fr.w < 0 || fr.h < 0) {
					t.Fatalf("%v: keyframe of size %dx%d", c, fr.w, fr.h)
				}
				if c == codecVP8 && fr.key && (fr.w <= 0 || fr.h <= 0) {
					t.Fatalf("VP8 keyframe without a size")
				}
			})
		}
	})
}

// FuzzRecordRTP records arbitrary packets of a stream (one track of the
// chosen codec and an Opus track) through a StreamWriter, as the SFU feeds it:
// jitter buffer, depacketizer, muxer. Whatever comes in, Close succeeds and
// leaves no file if no frame was written, else a file the crash recovery's
// scanner reads whole, with a block for every frame the writer counted.
func FuzzRecordRTP(f *testing.F) {
	f.Add(byte(0), fuzzInput(seedVP8Key, fuzzPacket{marker: true, second: true, seqStep: 1, lost: true, payload: seedOpus.payload}, seedVP8Delta))
	f.Add(byte(4), fuzzInput(seedOpus, seedOpus))
	f.Add(byte(1), svcSeed(f))
	f.Fuzz(func(t *testing.T, which byte, input []byte) {
		mime := fuzzCodecs[int(which)%len(fuzzCodecs)]
		s, err := StartSession(t.TempDir(), "fuzz", "s", sessionStart, Options{BlockWhenFull: true, QueueSize: 64,
			JitterDelay: 20 * time.Millisecond, MuxDelay: 20 * time.Millisecond, HeaderWait: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		w, err := s.AddStream(StreamInfo{Participant: "p", StreamID: "st", Tracks: []TrackInfo{{MimeType: mime}, {MimeType: "audio/opus"}}})
		if err != nil {
			t.Fatal(err)
		}
		var seq [2]uint16
		var ts [2]uint32
		at := sessionStart
		for _, fp := range fuzzPackets(input) {
			tr := 0
			if fp.second {
				tr = 1
			}
			seq[tr] += fp.seqStep
			ts[tr] += uint32(fp.tsStep)
			at = at.Add(time.Duration(fp.arrivalMs) * time.Millisecond)
			w.WriteRTP(tr, &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq[tr], Timestamp: ts[tr],
				Marker: fp.marker, SSRC: uint32(100 + tr)}, Payload: fp.payload}, at)
			if fp.lost { // the flag doubles as "a sender report comes here"
				w.SenderReport(tr, uint32(100+tr), at, ts[tr], at)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if err := s.Close(at); err != nil {
			t.Fatalf("session close: %v", err)
		}
		if w.File() == "" {
			// No file before the first frame.
			if st := w.Stats(); st.Frames != 0 {
				t.Fatalf("no file, but %d frames written", st.Frames)
			}
			return
		}
		file, err := os.Open(w.File())
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		res, err := scanMatroska(file)
		if err != nil {
			t.Fatalf("the finished file does not scan: %v", err)
		}
		if res.validEnd != res.size {
			t.Fatalf("the finished file scans to byte %d of %d", res.validEnd, res.size)
		}
		if st := w.Stats(); uint64(res.blocks) != st.Frames {
			t.Fatalf("the file holds %d blocks; the writer wrote %d frames", res.blocks, st.Frames)
		}
	})
}

// FuzzRepairFile gives crash recovery arbitrary files: repairFile (cut a
// partly written last element, write the duration) never fails on them in a
// way other than refusing a file that is not Matroska, and what it leaves
// scans whole, with the blocks it counted.
func FuzzRepairFile(f *testing.F) {
	// The head of a real recording made by the writer, cut at a few places.
	dir := f.TempDir()
	s, err := StartSession(dir, "seed", "s", sessionStart, Options{BlockWhenFull: true, JitterDelay: time.Millisecond,
		MuxDelay: time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	w, err := s.AddStream(StreamInfo{StreamID: "st", Tracks: []TrackInfo{{MimeType: "audio/opus"}}})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 20 {
		w.WriteRTP(0, &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i * 960), SSRC: 1},
			Payload: []byte{0xfc, 0xff, 0xfe}}, sessionStart.Add(time.Duration(i)*20*time.Millisecond))
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	_ = s.Close(sessionStart.Add(time.Second))
	whole, err := os.ReadFile(w.File())
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range []int{len(whole), len(whole) - 3, len(whole) * 2 / 3, 200, 40} {
		if n > 0 && n <= len(whole) {
			f.Add(whole[:n])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "f.webm")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := repairFile(path)
		if err != nil || len(data) == 0 {
			return // not Matroska, or empty: Recover reports the stream as lost or empty
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		file, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		again, err := scanMatroska(file)
		if err != nil {
			t.Fatalf("the repaired file does not scan: %v", err)
		}
		if again.validEnd != st.Size() || again.blocks != res.blocks {
			t.Fatalf("repaired: %d bytes, scans to %d with %d blocks; the repair counted %d blocks to %d",
				st.Size(), again.validEnd, again.blocks, res.blocks, res.validEnd)
		}
	})
}
