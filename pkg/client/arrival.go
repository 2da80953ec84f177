package client

import (
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

// arrivalSlots is the number of packets an arrivalLog remembers per
// connection: far more than a reader lags behind its socket.
const arrivalSlots = 1024

// arrivalLog maps recently arrived RTP packets of one connection to their
// arrival times. The socket's read goroutine writes it and the tracks'
// readers read it, without locks: a slot whose key changed while it was read
// is reported as unknown.
type arrivalLog struct {
	epoch time.Time // times are stored as offsets from it (monotonic)
	slots [arrivalSlots]arrivalSlot
}

type arrivalSlot struct {
	key atomic.Uint64 // 1<<63 | ssrc<<16 | seq; 0 when empty
	at  atomic.Int64  // arrival, in ns after epoch
}

func newArrivalLog() *arrivalLog { return &arrivalLog{epoch: time.Now()} }

func arrivalKey(ssrc uint32, seq uint16) uint64 { return 1<<63 | uint64(ssrc)<<16 | uint64(seq) }

func (l *arrivalLog) slot(ssrc uint32, seq uint16) *arrivalSlot {
	// Tracks of one connection have distinct SSRCs and advance their
	// sequence numbers together, so spread them apart.
	return &l.slots[(uint32(seq)+ssrc*0x9e3779b1)%arrivalSlots]
}

// note records that the packet (ssrc, seq) arrived at at.
func (l *arrivalLog) note(ssrc uint32, seq uint16, at time.Time) {
	s := l.slot(ssrc, seq)
	s.key.Store(0) // a reader between the two stores sees no key, not a wrong time
	s.at.Store(int64(at.Sub(l.epoch)))
	s.key.Store(arrivalKey(ssrc, seq))
}

// lookup returns when the packet (ssrc, seq) arrived, if it is still known.
func (l *arrivalLog) lookup(ssrc uint32, seq uint16) (time.Time, bool) {
	if l == nil {
		return time.Time{}, false
	}
	s := l.slot(ssrc, seq)
	k := arrivalKey(ssrc, seq)
	if s.key.Load() != k {
		return time.Time{}, false
	}
	at := s.at.Load()
	if s.key.Load() != k {
		return time.Time{}, false
	}
	return l.epoch.Add(time.Duration(at)), true
}

// noteRTP records the arrival of datagram b if it is an RTP (or SRTP) packet:
// RFC 7983's first byte 128–191, and not RTCP (payload types 192–223, RFC 5761).
func (l *arrivalLog) noteRTP(b []byte, at time.Time) {
	if len(b) < 12 || b[0]&0xc0 != 0x80 || (b[1] >= 192 && b[1] <= 223) {
		return
	}
	seq := uint16(b[2])<<8 | uint16(b[3])
	ssrc := uint32(b[8])<<24 | uint32(b[9])<<16 | uint32(b[10])<<8 | uint32(b[11])
	l.note(ssrc, seq, at)
}

// arrivedAt is when pkt reached the track's connection's socket (zero where unknown).
func (t *RemoteTrack) arrivedAt(pkt *rtp.Packet) time.Time {
	at, _ := t.arrivals.lookup(pkt.SSRC, pkt.SequenceNumber)
	return at
}
