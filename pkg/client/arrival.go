package client

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Arrival stamps: when a packet reached the receiving socket, as opposed to
// when the track's reader got it. The difference is the client's own receive
// path (ICE demultiplexing, SRTP decryption, pion's buffers and goroutine
// hand-offs), which on a loaded machine queues behind every other receiver in
// the process. A load tool that measures a server's forwarding latency wants
// the first: it is what a receiver on its own machine would see.
//
// The subscribe connection's UDP sockets (arrival_linux.go) ask the kernel to
// stamp every datagram (SO_TIMESTAMPNS), read the clear RTP header of each
// SRTP packet, and note (SSRC, sequence number) → stamp in an arrivalLog; the
// track's reader looks its packet up there.

// arrivalTracks bounds the tracks (SSRCs) an arrivalLog stamps per
// connection; packets of more are not stamped.
const arrivalTracks = 64

// arrivalSlots is the number of packets an arrivalLog remembers per track:
// far more than a reader lags behind its socket (256 video packets are two
// seconds of a 1 Mbit/s stream).
const arrivalSlots = 256

// arrivalLog maps recently arrived RTP packets of one connection to their
// arrival times, with a ring of slots per SSRC so that one track's packets
// never push out another's. The socket's read goroutine writes it and the
// tracks' readers read it, without locks on the way of a packet: a slot whose
// key changed while it was read is reported as unknown. The SSRCs sit
// together so that finding a track touches one cache line: with a thousand
// receivers in one process every receiver's state is cold.
type arrivalLog struct {
	mu    sync.Mutex                                 // adding a track
	ssrcs [arrivalTracks]atomic.Uint64               // 1<<32 | SSRC of rings[i]; 0 when free
	rings [arrivalTracks]atomic.Pointer[arrivalRing] // set before ssrcs[i]
}

type arrivalRing struct {
	slots [arrivalSlots]arrivalSlot
}

type arrivalSlot struct {
	seq atomic.Uint32 // 1<<16 | sequence number; 0 when empty
	at  atomic.Int64  // the kernel's receive timestamp: wall clock, ns since 1970
}

func newArrivalLog() *arrivalLog { return &arrivalLog{} }

// ring returns ssrc's ring, adding it if add is set and there is room.
func (l *arrivalLog) ring(ssrc uint32, add bool) *arrivalRing {
	key := 1<<32 | uint64(ssrc)
	for i := range l.ssrcs {
		switch l.ssrcs[i].Load() {
		case key:
			return l.rings[i].Load()
		case 0:
			if !add {
				return nil
			}
			return l.addRing(key)
		}
	}
	return nil
}

func (l *arrivalLog) addRing(key uint64) *arrivalRing {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.ssrcs {
		switch l.ssrcs[i].Load() {
		case key:
			return l.rings[i].Load()
		case 0:
			r := &arrivalRing{}
			l.rings[i].Store(r)
			l.ssrcs[i].Store(key)
			return r
		}
	}
	return nil
}

// note records that the packet (ssrc, seq) arrived at wall-clock time
// wallNs (the kernel's stamp).
func (l *arrivalLog) note(ssrc uint32, seq uint16, wallNs int64) {
	r := l.ring(ssrc, true)
	if r == nil {
		return
	}
	s := &r.slots[seq%arrivalSlots]
	s.seq.Store(0) // a reader between the two stores sees no key, not a wrong time
	s.at.Store(wallNs)
	s.seq.Store(1<<16 | uint32(seq))
}

// lookup returns when the packet (ssrc, seq) arrived, if it is still known,
// on the monotonic clock of now: the stamp is wall-clock time, so it is
// taken as an age against now's wall clock (a few milliseconds at most,
// over which the two clocks cannot drift apart), and that age is subtracted
// from now. So the socket path reads no clock of its own.
func (l *arrivalLog) lookup(ssrc uint32, seq uint16, now time.Time) (time.Time, bool) {
	if l == nil {
		return time.Time{}, false
	}
	r := l.ring(ssrc, false)
	if r == nil {
		return time.Time{}, false
	}
	s := &r.slots[seq%arrivalSlots]
	k := 1<<16 | uint32(seq)
	if s.seq.Load() != k {
		return time.Time{}, false
	}
	at := s.at.Load()
	if s.seq.Load() != k {
		return time.Time{}, false
	}
	age := time.Duration(now.UnixNano() - at)
	if age < 0 {
		age = 0
	}
	return now.Add(-age), true
}

// noteRTP records the arrival of datagram b, at wall-clock time wallNs, if it
// is an RTP (or SRTP) packet: RFC 7983's first byte 128–191, and not RTCP
// (payload types 192–223, RFC 5761).
func (l *arrivalLog) noteRTP(b []byte, wallNs int64) {
	if len(b) < 12 || b[0]&0xc0 != 0x80 || (b[1] >= 192 && b[1] <= 223) {
		return
	}
	seq := uint16(b[2])<<8 | uint16(b[3])
	ssrc := uint32(b[8])<<24 | uint32(b[9])<<16 | uint32(b[10])<<8 | uint32(b[11])
	l.note(ssrc, seq, wallNs)
}

// arrivedAt is when pkt, read at now, reached the track's connection's
// socket (zero where unknown).
func (t *RemoteTrack) arrivedAt(pkt *rtp.Packet, now time.Time) time.Time {
	at, _ := t.conn.arrivals.lookup(pkt.SSRC, pkt.SequenceNumber, now)
	return at
}
