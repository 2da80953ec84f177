package client

import (
	"errors"
	"fmt"
	"os"
)

// TemporalSource is a video source whose frames belong to temporal layers:
// the publication writes each frame's layer into the RTP payload
// descriptor (VP8's TID and layer sync bit Y, RFC 7741), so the server can
// leave the higher layers out for a receiver whose link cannot carry them.
type TemporalSource interface {
	Source
	// Temporal is the temporal layer of the sample Next returned last, and
	// whether it is a layer sync frame (it references the base layer only).
	Temporal() (tid uint8, sync bool)
}

// temporalSource is an IVF source whose frames follow a known temporal
// pattern from each keyframe on.
type temporalSource struct {
	*memSource
	tids []uint8
	sync []bool
}

// NewTemporalIVFSource reads a VP8 IVF file coded with temporal layers in a
// fixed pattern restarted by every keyframe (testmedia.VP8IVF with
// Options.TemporalLayers: tids and sync are testmedia.TemporalPattern's):
// frame k after a keyframe is of layer tids[k%len(tids)].
func NewTemporalIVFSource(path string, tids []uint8, sync []bool, loop bool) (KeyframeSource, error) {
	if len(tids) == 0 || len(sync) != len(tids) || tids[0] != 0 {
		return nil, errors.New("temporal ivf source: a pattern starts with the base layer, one sync flag a frame")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("temporal ivf source: %w", err)
	}
	src, err := parseIVF(data, loop)
	if err != nil {
		return nil, fmt.Errorf("temporal ivf source %s: %w", path, err)
	}
	if src.codec.MimeType != codecVP8.MimeType {
		return nil, fmt.Errorf("temporal ivf source %s: %s, want VP8", path, src.codec.MimeType)
	}
	k := 0
	for i := range src.samples {
		if src.samples[i].key {
			k = 0
		}
		src.samples[i].tid = tids[k%len(tids)]
		src.samples[i].sync = sync[k%len(tids)]
		k++
	}
	return &temporalSource{memSource: src, tids: tids, sync: sync}, nil
}

// Temporal implements TemporalSource.
func (s *temporalSource) Temporal() (uint8, bool) {
	if s.pos == 0 {
		return 0, false
	}
	smp := s.samples[s.pos-1]
	return smp.tid, smp.sync
}

// vp8TemporalPayloader payloads VP8 frames with the full payload descriptor
// a temporally scalable stream needs (RFC 7741 section 4.2): a 15-bit
// picture id, TL0PICIDX (the index of the base layer frame the frame
// belongs to) and the frame's TID and Y, which frame sets before each
// frame is packetized.
type vp8TemporalPayloader struct {
	pictureID uint16
	tl0       uint8
	tid       uint8
	sync      bool
}

// frame sets the next frame's layer.
func (p *vp8TemporalPayloader) frame(tid uint8, sync bool) {
	if tid == 0 {
		p.tl0++
	}
	p.tid, p.sync = tid, sync
}

const vp8TemporalDescriptor = 6

// Payload implements rtp.Payloader.
func (p *vp8TemporalPayloader) Payload(mtu uint16, payload []byte) [][]byte {
	size := int(mtu) - vp8TemporalDescriptor
	if size <= 0 || len(payload) == 0 {
		return nil
	}
	var out [][]byte
	for i := 0; i < len(payload); i += size {
		chunk := payload[i:min(i+size, len(payload))]
		b := make([]byte, vp8TemporalDescriptor+len(chunk))
		b[0] = 0x80 // X
		if i == 0 {
			b[0] |= 0x10 // S, partition 0
		}
		b[1] = 0xe0 // I, L, T
		b[2], b[3] = 0x80|byte(p.pictureID>>8)&0x7f, byte(p.pictureID)
		b[4] = p.tl0
		b[5] = p.tid << 6
		if p.sync {
			b[5] |= 0x20
		}
		copy(b[vp8TemporalDescriptor:], chunk)
		out = append(out, b)
	}
	p.pictureID = (p.pictureID + 1) & 0x7fff
	return out
}
