package recorder

import (
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/testmedia"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// benchPackets packetizes a looping source: 20 s of it.
func benchPackets(b *testing.B, src client.Source, pay rtp.Payloader, clock uint32) (pkts []*rtp.Packet, period uint32, arrival []time.Duration) {
	b.Helper()
	pk := rtp.NewPacketizerWithOptions(1200, pay, rtp.NewFixedSequencer(0), clock, rtp.WithSSRC(1), rtp.WithTimestamp(0))
	var at time.Duration
	for at < 20*time.Second {
		data, dur, err := src.Next()
		if err != nil {
			b.Fatal(err)
		}
		n := uint32(ticks(at+dur, int64(clock)) - ticks(at, int64(clock)))
		for _, p := range pk.Packetize(data, n) {
			pkts = append(pkts, p)
			arrival = append(arrival, at)
		}
		at += dur
	}
	return pkts, uint32(ticks(at, int64(clock))), arrival
}

func benchWrite(b *testing.B, tracks []TrackInfo, pkts []*rtp.Packet, period uint32, arrival []time.Duration) {
	s, err := StartSession(b.TempDir(), "bench", "s", sessionStart, Options{BlockWhenFull: true})
	if err != nil {
		b.Fatal(err)
	}
	w, err := s.AddStream(StreamInfo{Participant: "b", StreamID: "b", Tracks: tracks})
	if err != nil {
		b.Fatal(err)
	}
	n := len(pkts)
	span := arrival[n-1] + 20*time.Millisecond
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := range b.N {
		p := *pkts[i%n]
		loop := i / n
		p.SequenceNumber = uint16(i)
		p.Timestamp += uint32(loop) * period
		w.WriteRTP(0, &p, sessionStart.Add(arrival[i%n]+time.Duration(loop)*span))
	}
	if err := s.Close(time.Time{}); err != nil { // waits until every packet is written
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/packet")
}

// BenchmarkWriteRTPVP8 is the whole cost of recording one VP8 packet (640x360,
// 800 kbit/s): WriteRTP plus the writer goroutine's work, until the file is closed.
func BenchmarkWriteRTPVP8(b *testing.B) {
	pkts, period, arr := benchPackets(b, vp8Source(b, testOptsVideo()), &codecs.VP8Payloader{EnablePictureID: true}, 90000)
	benchWrite(b, []TrackInfo{{Kind: "video", MimeType: "video/VP8"}}, pkts, period, arr)
}

// BenchmarkWriteRTPOpus is the same for one Opus packet (20 ms).
func BenchmarkWriteRTPOpus(b *testing.B) {
	pkts, period, arr := benchPackets(b, opusSource(b), &codecs.OpusPayloader{}, 48000)
	benchWrite(b, []TrackInfo{{Kind: "audio", MimeType: "audio/opus"}}, pkts, period, arr)
}

// testOptsVideo is testmedia's default video (640x360, 30 fps, 800 kbit/s), 2 s long.
func testOptsVideo() testmedia.Options { return testmedia.Options{Duration: 2 * time.Second} }

// BenchmarkMemoryPerStream records 20 VP8+Opus streams at once (2 s each,
// fed with keyframe-interval GOPs) and reports the heap they hold while open.
func BenchmarkMemoryPerStream(b *testing.B) {
	const streams = 20
	for range b.N {
		s, err := StartSession(b.TempDir(), "mem", "s", sessionStart, Options{BlockWhenFull: true})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range streams {
			p := newSimPub(b, sessionStart, 0, uint64(i))
			w, err := s.AddStream(StreamInfo{Participant: "m", StreamID: string(rune('a' + i)), Tracks: vp8Opus})
			if err != nil {
				b.Fatal(err)
			}
			p.w = w
			p.addTrack(vp8Source(b, testOptsVideo()), 20*time.Millisecond)
			p.addTrack(opusSource(b), 20*time.Millisecond)
			p.run(2 * time.Second)
		}
		time.Sleep(200 * time.Millisecond) // let the writers catch up
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/streams, "heap-bytes/stream")
		if err := s.Close(time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWriteRTPVP9SVC is the same for a packet of Chromium's VP9 in
// L3T3_KEY at 1280x720 (testdata/vp9-l3t3-key.rtpdump, looped from its
// keyframe), whose pictures are stored with their lower layers hidden.
func BenchmarkWriteRTPVP9SVC(b *testing.B) {
	stored := readCapturePackets(b)
	var pkts []*rtp.Packet
	var arr []time.Duration
	for _, sp := range stored {
		p := &rtp.Packet{}
		if err := p.Unmarshal(sp.Data); err != nil {
			b.Fatal(err)
		}
		pkts = append(pkts, p)
		arr = append(arr, sp.At)
	}
	// A loop lasts the capture and one frame more (50 ms at its 20 fps).
	period := pkts[len(pkts)-1].Timestamp - pkts[0].Timestamp + 4500
	benchWrite(b, []TrackInfo{{Kind: "video", MimeType: "video/VP9"}}, pkts, period, arr)
}

// BenchmarkVP9HideLayerFrame is the cost of hiding one layer frame of the
// capture (parsing its uncompressed header and writing it one bit longer).
func BenchmarkVP9HideLayerFrame(b *testing.B) {
	frames := captureLayerFrames(b)
	var dst []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		fr := frames[i%len(frames)]
		var refs vp9Refs
		f, ok := parseVP9Frame(fr, &refs)
		if !ok {
			b.Fatal("parse")
		}
		if dst, ok = appendHidden(dst[:0], fr, &f); !ok {
			b.Fatal("hide")
		}
	}
}
