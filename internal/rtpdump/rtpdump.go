// Package rtpdump reads and writes RTP packets in the rtpdump file format of
// rtptools (rtpdump -F dump; Wireshark opens it too): a text line, a 16-byte
// file header, then each packet behind an 8-byte header that gives its stored
// length, its length on the wire and its time since the start. A packet may be
// stored cut short (its RTP header and the first bytes of its payload), which
// keeps captures used as test data small.
package rtpdump

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Packet is one stored packet.
type Packet struct {
	// Data is the packet as stored: the whole packet, or its first bytes.
	Data []byte
	// Len is the packet's length on the wire (Len >= len(Data)).
	Len int
	// At is its time since the start of the capture (millisecond steps).
	At time.Duration
}

// The file starts with this line, then the address the packets went to.
const magic = "#!rtpplay1.0 "

// maxData bounds a packet's stored bytes (the record length is 16 bits).
const maxData = 0xffff - 8

// Writer writes an rtpdump file.
type Writer struct {
	w io.Writer
}

// NewWriter writes the file header to w: addr is the "address/port" the
// packets went to (text only), start the capture's start time.
func NewWriter(w io.Writer, addr string, start time.Time) (*Writer, error) {
	var h [16]byte
	binary.BigEndian.PutUint32(h[0:], uint32(start.Unix()))
	binary.BigEndian.PutUint32(h[4:], uint32(start.Nanosecond()/1000))
	if _, err := io.WriteString(w, magic+addr+"\n"); err != nil {
		return nil, fmt.Errorf("rtpdump: write header: %w", err)
	}
	if _, err := w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("rtpdump: write header: %w", err)
	}
	return &Writer{w: w}, nil
}

// Write stores p: its Data (at most 65527 bytes), Len and At.
func (w *Writer) Write(p Packet) error {
	if len(p.Data) > maxData || p.Len < len(p.Data) || p.Len > 0xffff || p.At < 0 {
		return fmt.Errorf("rtpdump: packet of %d bytes stored of %d at %v does not fit the format", len(p.Data), p.Len, p.At)
	}
	var h [8]byte
	binary.BigEndian.PutUint16(h[0:], uint16(8+len(p.Data)))
	binary.BigEndian.PutUint16(h[2:], uint16(p.Len))
	binary.BigEndian.PutUint32(h[4:], uint32(p.At/time.Millisecond))
	if _, err := w.w.Write(h[:]); err != nil {
		return fmt.Errorf("rtpdump: write packet: %w", err)
	}
	if _, err := w.w.Write(p.Data); err != nil {
		return fmt.Errorf("rtpdump: write packet: %w", err)
	}
	return nil
}

// Reader reads an rtpdump file.
type Reader struct {
	r *bufio.Reader
	// Addr is the address/port of the file's first line; Start the
	// capture's start.
	Addr  string
	Start time.Time
}

// NewReader reads the file header from r.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReader(r)
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("rtpdump: read first line: %w", err)
	}
	if len(line) < len(magic) || line[:len(magic)] != magic {
		return nil, errors.New("rtpdump: not an rtpdump file (no #!rtpplay1.0 line)")
	}
	var h [16]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, fmt.Errorf("rtpdump: read file header: %w", err)
	}
	start := time.Unix(int64(binary.BigEndian.Uint32(h[0:])), int64(binary.BigEndian.Uint32(h[4:]))*1000)
	return &Reader{r: br, Addr: line[len(magic) : len(line)-1], Start: start}, nil
}

// Next reads the next packet; it returns io.EOF after the last one.
func (r *Reader) Next() (Packet, error) {
	var h [8]byte
	if _, err := io.ReadFull(r.r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return Packet{}, io.EOF
		}
		return Packet{}, fmt.Errorf("rtpdump: read packet header: %w", err)
	}
	n := int(binary.BigEndian.Uint16(h[0:]))
	if n < 8 {
		return Packet{}, fmt.Errorf("rtpdump: record length %d is shorter than its header", n)
	}
	p := Packet{Data: make([]byte, n-8), Len: int(binary.BigEndian.Uint16(h[2:])),
		At: time.Duration(binary.BigEndian.Uint32(h[4:])) * time.Millisecond}
	if _, err := io.ReadFull(r.r, p.Data); err != nil {
		return Packet{}, fmt.Errorf("rtpdump: read packet: %w", io.ErrUnexpectedEOF)
	}
	return p, nil
}

// All reads the packets up to the end.
func (r *Reader) All() ([]Packet, error) {
	var out []Packet
	for {
		p, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, p)
	}
}
