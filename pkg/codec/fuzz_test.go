package codec

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/rtp/codecs"
)

// The RTP payloads the SFU's forwarders and the clients inspect come from
// the network: these targets feed them arbitrary bytes (go test -fuzz, see
// docs/testing.md; the seed corpora are in testdata/fuzz).

// FuzzIsKeyframe checks keyframe detection on every codec against pion's
// depacketizers: for VP8 it agrees exactly with pion's payload descriptor
// (S=1, partition 0, and a keyframe's P bit 0 in the first payload byte); for
// VP9, whatever pion parses as the start of a non-predicted picture on the
// base spatial layer is a keyframe.
func FuzzIsKeyframe(f *testing.F) {
	f.Add([]byte{0x10, 0x00, 0x9d, 0x01, 0x2a})                         // VP8, S=1, keyframe
	f.Add([]byte{0x90, 0x80, 0x80, 0x01, 0x00})                         // VP8 with a 15-bit picture id
	f.Add([]byte{0x90, 0xf0, 0x12, 0x34, 0x56, 0x78, 0x00})             // VP8 with I, L, T, K
	f.Add([]byte{0x8a, 0x80, 0x01, 0x00})                               // VP9 B=1, I with a 15-bit id
	f.Add([]byte{0xaa, 0x05, 0x02, 0x00})                               // VP9 B=1, L with SID 1
	f.Add([]byte{0x65, 0x88, 0x84})                                     // H.264 IDR slice
	f.Add([]byte{0x78, 0x00, 0x03, 0x67, 0x42, 0xc0, 0x00, 0x01, 0x68}) // H.264 STAP-A: SPS, PPS
	f.Add([]byte{0x7c, 0x85, 0x88})                                     // H.264 FU-A start of an IDR
	f.Add([]byte{0x18, 0x0a, 0x0b})                                     // AV1 N=1
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, mime := range []string{"video/VP8", "video/vp9", "VIDEO/H264", "video/AV1", "audio/opus", "video/H265"} {
			key := IsKeyframe(mime, payload)
			if key && len(payload) == 0 {
				t.Fatalf("%s: an empty payload is a keyframe", mime)
			}
			if key && (mime == "audio/opus" || mime == "video/H265") {
				t.Fatalf("%s: a keyframe of a codec without any", mime)
			}
		}

		var vp8 codecs.VP8Packet
		rest, err := vp8.Unmarshal(payload)
		pionKey := err == nil && vp8.S == 1 && vp8.PID == 0 && len(rest) > 0 && rest[0]&0x01 == 0
		if got := IsKeyframe("video/VP8", payload); got != pionKey {
			t.Fatalf("VP8 % x: IsKeyframe %v, pion's descriptor says %v (err %v, S %d, PID %d, rest % x)",
				payload, got, pionKey, err, vp8.S, vp8.PID, rest)
		}

		var vp9 codecs.VP9Packet
		if _, err := vp9.Unmarshal(payload); err == nil && vp9.B && !vp9.P && (!vp9.L || vp9.SID == 0) {
			if !IsKeyframe("video/VP9", payload) {
				t.Fatalf("VP9 % x: pion parses the start of an intra picture on layer 0 (%+v); IsKeyframe says no", payload, vp9)
			}
		}
	})
}

// FuzzAppendAnnexBNALs checks the Annex-B splitter the H.264 reader and the
// recorder use: every unit aliases the input, none is empty, ends with a zero
// byte or contains a start code, and units come in order without overlapping.
func FuzzAppendAnnexBNALs(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88})
	f.Add([]byte{0, 0, 1})
	f.Add([]byte{0x65, 0, 0, 1, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		nals := AppendAnnexBNALs(nil, b)
		end := 0
		for i, n := range nals {
			if len(n) == 0 {
				t.Fatalf("unit %d is empty", i)
			}
			if n[len(n)-1] == 0 {
				t.Fatalf("unit %d (% x) ends with a zero byte", i, n)
			}
			if bytes.Contains(n, []byte{0, 0, 1}) {
				t.Fatalf("unit %d (% x) holds a start code", i, n)
			}
			// The unit is a window of b at or after the previous one's end.
			off := -1
			for o := end; o+len(n) <= len(b); o++ {
				if &b[o] == &n[0] {
					off = o
					break
				}
			}
			if off < 0 {
				t.Fatalf("unit %d does not alias the input after byte %d", i, end)
			}
			end = off + len(n)
		}
	})
}

// FuzzOpusPacketDuration checks the TOC parser against RFC 6716: a packet
// lasts 2.5 to 120 ms, or 0 when it is empty or malformed.
func FuzzOpusPacketDuration(f *testing.F) {
	f.Add([]byte{0xfc, 0xff, 0xfe}) // config 31, one frame
	f.Add([]byte{0x7b, 0x03})       // code 3, three 60 ms frames: 180 ms, malformed
	f.Add([]byte{0x03, 0x00})       // code 3 with no frame: malformed
	f.Add([]byte{0x01})             // code 1: two frames
	f.Fuzz(func(t *testing.T, p []byte) {
		d := OpusPacketDuration(p)
		if d != 0 && (d < 2500*time.Microsecond || d > 120*time.Millisecond) {
			t.Fatalf("% x: %v, outside 2.5 ms to 120 ms", p, d)
		}
		if len(p) == 0 && d != 0 {
			t.Fatalf("empty packet: %v", d)
		}
	})
}
