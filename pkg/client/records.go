package client

import (
	"hash/fnv"
	"sync"
	"time"
)

// maxRecords is how many packets a Publication or a RemoteTrack remembers per track.
const maxRecords = 20000

// PacketRecord describes one RTP packet sent by a Publication or received on a
// RemoteTrack. PayloadHash lets a test match a received packet to the one sent
// even though the server rewrites sequence numbers, timestamps and SSRCs.
type PacketRecord struct {
	// Seq, Timestamp and Marker are the RTP header's fields as sent or received.
	Seq       uint16
	Timestamp uint32
	Marker    bool
	// Keyframe is codec.IsKeyframe(codec, payload).
	Keyframe bool
	// Padding says the packet is padding only (no payload).
	Padding bool
	// PayloadHash is the 64-bit FNV-1a hash of the RTP payload.
	PayloadHash uint64
	// PayloadSize is the payload length in bytes.
	PayloadSize int
	// SentAt is when the publisher wrote the packet (zero on received packets).
	SentAt time.Time
	// ReceivedAt is when the reader got the packet (zero on sent packets).
	ReceivedAt time.Time
}

// HashPayload is the PayloadHash of a payload: 64-bit FNV-1a.
func HashPayload(payload []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(payload)
	return h.Sum64()
}

// recordRing keeps the last maxRecords packet records.
type recordRing struct {
	mu    sync.Mutex
	buf   []PacketRecord
	next  int // where the next record goes once buf is full
	total int64
}

func (r *recordRing) add(rec PacketRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	if len(r.buf) < maxRecords {
		r.buf = append(r.buf, rec)
		return
	}
	r.buf[r.next] = rec
	r.next = (r.next + 1) % maxRecords
}

// snapshot returns the records oldest first.
func (r *recordRing) snapshot() []PacketRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]PacketRecord, 0, len(r.buf))
	out = append(out, r.buf[r.next:]...)
	out = append(out, r.buf[:r.next]...)
	return out
}

func (r *recordRing) count() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}
