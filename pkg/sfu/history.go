package sfu

import "sync"

// historySize is how many recent packets of a published track are kept to
// answer NACKs: about 4 s of 1 Mbit/s video.
const historySize = 512

// history keeps the recent packets of one published track, shared by all its
// subscribers, to answer their NACKs. It replaces pion's NACK responder,
// which copies every packet once per subscriber. Each kept packet holds one
// reference, released when it is evicted.
type history struct {
	mu   sync.Mutex
	ring [historySize]*packet
}

// add keeps p (taking a reference) and releases the packet it evicts.
func (h *history) add(p *packet) {
	p.refs.Add(1)
	i := p.hdr.SequenceNumber % historySize
	h.mu.Lock()
	old := h.ring[i]
	h.ring[i] = p
	h.mu.Unlock()
	if old != nil {
		old.release()
	}
}

// get returns the kept packet with sequence number seq with a reference
// taken for the caller, or nil.
func (h *history) get(seq uint16) *packet {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.ring[seq%historySize]
	if p == nil || p.hdr.SequenceNumber != seq {
		return nil
	}
	p.refs.Add(1)
	return p
}

// clear releases every kept packet.
func (h *history) clear() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, p := range h.ring {
		if p != nil {
			p.release()
			h.ring[i] = nil
		}
	}
}
