// Package udpbatch is a UDP socket whose writes are queued and sent in
// batches: one sendmmsg system call per flush, and consecutive packets of equal
// size to one address coalesced into one UDP GSO message (UDP_SEGMENT) that
// the kernel splits back into datagrams.
//
// An SFU writes the same packet to many subscribers and several packets of a
// video frame to each; one sendto per packet per subscriber is the largest
// single cost of forwarding (docs/performance.md). With a Conn under the ICE
// UDP mux, a subscriber's writer flushes once after each burst, so a frame to
// one subscriber costs one message, and writes from other goroutines (ICE
// checks, DTLS, RTCP) ride along or go out after at most FlushDelay.
//
// A Conn keeps at most QueueLen packets; a writer that finds the queue full
// flushes it itself, so writers slow down rather than lose packets.
package udpbatch

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// MaxPacket is the largest datagram that is queued; larger ones are sent
	// at once (after the queue, to keep their order).
	MaxPacket = 1500
	// QueueLen bounds the packets waiting for a flush.
	QueueLen = 256
	// FlushDelay bounds how long a queued packet waits when nobody flushes.
	FlushDelay = time.Millisecond
	// maxSegments is the kernel's UDP_MAX_SEGMENTS for GSO.
	maxSegments = 64
	// maxGSOBytes bounds one GSO message (an IP datagram's payload).
	maxGSOBytes = 65000
)

type slot struct {
	buf  [MaxPacket]byte
	n    int
	addr netip.AddrPort
}

// Stats are a Conn's write counters.
type Stats struct {
	// Packets counts datagrams handed to the kernel.
	Packets uint64
	// Messages counts messages (a GSO message carries several datagrams).
	Messages uint64
	// Calls counts send system calls.
	Calls uint64
	// Errors counts datagrams the kernel refused (they are dropped, as UDP would).
	Errors uint64
}

// Conn wraps a *net.UDPConn. WriteTo, WriteToUDP, WriteToUDPAddrPort and
// WriteToAddrPort queue; reads and the other methods are the socket's own.
type Conn struct {
	*net.UDPConn
	log *slog.Logger

	mu     sync.Mutex
	queue  *[QueueLen]slot
	n      int
	armed  bool
	closed bool
	timer  *time.Timer

	// flushMu is held by the one goroutine sending; the fields below it
	// belong to that goroutine.
	flushMu sync.Mutex
	spare   *[QueueLen]slot
	order   []int
	msgs    []message
	bufs    [][]byte
	iovs    []unix.Iovec
	hdrs    []mmsghdr
	sa4     []unix.RawSockaddrInet4
	sa6     []unix.RawSockaddrInet6
	oob     []byte

	v6        bool // the socket is IPv6 (IPv4 destinations are v4-mapped)
	raw       syscall.RawConn
	sendFn    func(fd uintptr) bool
	callHdrs  []mmsghdr
	callN     int
	callErrno syscall.Errno

	// readMu is held by the goroutine reading; the fields below it belong
	// to that goroutine.
	readMu    sync.Mutex
	recvFn    func(fd uintptr) bool
	recvBuf   []byte
	recvFrom  unix.RawSockaddrAny
	recvN     int
	recvErrno syscall.Errno

	gso                            atomic.Bool
	packets, messages, calls, errs atomic.Uint64
}

// New wraps c. Its writes are batched from now on; log receives the one-time
// notices (GSO unavailable) and send errors at debug level.
func New(c *net.UDPConn, log *slog.Logger) (*Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udp socket: %w", err)
	}
	b := &Conn{
		UDPConn: c,
		log:     log,
		raw:     raw,
		queue:   new([QueueLen]slot),
		spare:   new([QueueLen]slot),
		order:   make([]int, 0, QueueLen),
		msgs:    make([]message, 0, QueueLen),
		bufs:    make([][]byte, QueueLen),
		iovs:    make([]unix.Iovec, QueueLen),
		hdrs:    make([]mmsghdr, QueueLen),
		sa4:     make([]unix.RawSockaddrInet4, QueueLen),
		sa6:     make([]unix.RawSockaddrInet6, QueueLen),
		oob:     make([]byte, QueueLen*unix.CmsgSpace(2)),
	}
	b.sendFn = b.sendOnFD
	b.recvFn = b.recvOnFD
	if la, ok := c.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil {
		b.v6 = true
	}
	b.gso.Store(true)
	b.timer = time.AfterFunc(time.Hour, b.timerFlush)
	b.timer.Stop()
	return b, nil
}

// Stats returns the write counters.
func (c *Conn) Stats() Stats {
	return Stats{Packets: c.packets.Load(), Messages: c.messages.Load(), Calls: c.calls.Load(), Errors: c.errs.Load()}
}

// GSO reports whether writes still use UDP segmentation offload (it is turned
// off for good when the kernel refuses it).
func (c *Conn) GSO() bool { return c.gso.Load() }

// ReadFromAddrPort reads a datagram (pion/ice's UDP mux reads with it).
//
// It is a raw recvfrom, as sendmmsg is (see Conn.sendmmsg): the socket is
// non-blocking and the poller waits when nothing is there. A regular system
// call (net.UDPConn's read) tells the runtime it enters one, and that wakes
// the runtime's monitor thread (sysmon) whenever it slept because every P
// was idle, which is every packet in a quiet process: the monitor's wake-up
// and its 20 µs sleeps that follow were about a third of the SFU's CPU in a
// meeting of 4 (docs/performance.md, "Meeting shapes").
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	if len(b) == 0 {
		return c.ReadFromUDPAddrPort(b)
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	c.recvBuf = b
	err := c.raw.Read(c.recvFn)
	c.recvBuf = nil
	if err != nil {
		return 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Err: err}
	}
	if c.recvErrno != 0 {
		return 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(),
			Err: os.NewSyscallError("recvfrom", c.recvErrno)}
	}
	return c.recvN, fromSockaddr(&c.recvFrom), nil
}

// recvOnFD is the raw connection's read callback (a method value made once,
// so that a read allocates nothing).
func (c *Conn) recvOnFD(fd uintptr) bool {
	for {
		l := uint32(unix.SizeofSockaddrAny)
		r, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.recvBuf[0])),
			uintptr(len(c.recvBuf)), 0, uintptr(unsafe.Pointer(&c.recvFrom)), uintptr(unsafe.Pointer(&l)))
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait until the socket is readable
		}
		c.recvN, c.recvErrno = int(r), errno
		return true
	}
}

// fromSockaddr is the address recvfrom filled in.
func fromSockaddr(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		sa6 := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa6.Port))
		ip := netip.AddrFrom16(sa6.Addr)
		if sa6.Scope_id != 0 {
			ip = ip.WithZone(strconv.FormatUint(uint64(sa6.Scope_id), 10))
		}
		return netip.AddrPortFrom(ip, uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

// WriteTo queues b for addr, a *net.UDPAddr.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: fmt.Errorf("not a UDP address: %T", addr)}
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

// WriteToUDP queues b for addr.
func (c *Conn) WriteToUDP(b []byte, addr *net.UDPAddr) (int, error) {
	return c.WriteToAddrPort(b, addr.AddrPort())
}

// WriteToUDPAddrPort queues b for addr.
func (c *Conn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return c.WriteToAddrPort(b, addr)
}

// WriteToAddrPort queues a copy of b for addr and returns len(b). The packet
// leaves at the next Flush, or after FlushDelay.
func (c *Conn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if !addr.IsValid() {
		return 0, &net.OpError{Op: "write", Net: "udp", Err: errors.New("invalid destination address")}
	}
	if len(b) > MaxPacket {
		c.flushMu.Lock()
		defer c.flushMu.Unlock()
		c.flushLocked()
		return c.UDPConn.WriteToUDPAddrPort(b, addr)
	}
	c.mu.Lock()
	for c.n == QueueLen && !c.closed {
		// Full: send the queue from here rather than drop.
		c.mu.Unlock()
		c.flushWait()
		c.mu.Lock()
	}
	if c.closed {
		c.mu.Unlock()
		return 0, &net.OpError{Op: "write", Net: "udp", Err: net.ErrClosed}
	}
	s := &c.queue[c.n]
	s.n = copy(s.buf[:], b)
	s.addr = addr
	c.n++
	if !c.armed {
		c.armed = true
		c.timer.Reset(FlushDelay)
	}
	c.mu.Unlock()
	return len(b), nil
}

func (c *Conn) timerFlush() {
	c.mu.Lock()
	c.armed = false
	c.mu.Unlock()
	c.Flush()
}

// Flush sends the queued packets. If another goroutine is sending, Flush
// leaves the queue to it (it looks again when done) instead of waiting.
func (c *Conn) Flush() {
	for range 4 {
		if !c.flushMu.TryLock() {
			return
		}
		c.flushLocked()
		c.flushMu.Unlock()
		c.mu.Lock()
		empty := c.n == 0
		c.mu.Unlock()
		if empty {
			return
		}
	}
	// Still busy after a few rounds: the timer picks up the rest.
	c.mu.Lock()
	if !c.armed && c.n > 0 {
		c.armed = true
		c.timer.Reset(FlushDelay)
	}
	c.mu.Unlock()
}

// flushWait sends the queue, waiting for a send in progress to end first.
func (c *Conn) flushWait() {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.flushLocked()
}

// flushLocked swaps the queue out and sends it; flushMu is held.
func (c *Conn) flushLocked() {
	c.mu.Lock()
	n := c.n
	if n == 0 {
		c.mu.Unlock()
		return
	}
	c.queue, c.spare = c.spare, c.queue
	c.n = 0
	if c.armed {
		// Nothing is left for the timer: a timer that fires runs a goroutine
		// (time.AfterFunc), which cost more than stopping it.
		c.armed = false
		c.timer.Stop()
	}
	c.mu.Unlock()
	c.send(c.spare[:n])
}

// send writes slots with as few system calls as it can: grouped by
// destination (keeping each destination's order), runs of equal-size packets
// as GSO messages, every message in sendmmsg calls.
func (c *Conn) send(slots []slot) {
	c.order = c.order[:0]
	for i := range slots {
		c.order = append(c.order, i)
	}
	if !grouped(slots) {
		slices.SortStableFunc(c.order, func(a, b int) int { return slots[a].addr.Compare(slots[b].addr) })
	}

	gso := c.gso.Load()
	c.msgs = c.msgs[:0]
	nb := 0
	for i := 0; i < len(c.order); {
		first := &slots[c.order[i]]
		size := first.n
		j := i + 1
		if gso {
			total := size
			for j < len(c.order) && j-i < maxSegments {
				s := &slots[c.order[j]]
				if s.addr != first.addr || s.n > size || total+s.n > maxGSOBytes {
					break
				}
				total += s.n
				j++
				if s.n < size {
					break // a shorter segment can only be the last
				}
			}
		}
		m := len(c.msgs)
		h := &c.hdrs[m]
		*h = mmsghdr{}
		for k := i; k < j; k++ {
			s := &slots[c.order[k]]
			c.bufs[nb+k-i] = s.buf[:s.n]
			c.iovs[nb+k-i].Base = &s.buf[0]
			c.iovs[nb+k-i].SetLen(s.n)
		}
		h.hdr.Iov = &c.iovs[nb]
		h.hdr.SetIovlen(j - i)
		c.setName(m, first.addr)
		if j-i > 1 {
			oob := c.segmentCmsg(m, size)
			h.hdr.Control = &oob[0]
			h.hdr.SetControllen(len(oob))
		}
		c.msgs = append(c.msgs, message{bufs: c.bufs[nb : nb+j-i : nb+j-i], addr: first.addr})
		nb += j - i
		i = j
	}

	for i := 0; i < len(c.msgs); {
		n, err := c.sendmmsg(c.hdrs[i:len(c.msgs)])
		c.calls.Add(1)
		if err == nil && n > 0 {
			packets := 0
			for _, m := range c.msgs[i : i+n] {
				packets += len(m.bufs)
			}
			c.messages.Add(uint64(n))
			c.packets.Add(uint64(packets))
			i += n
			continue
		}
		// The first message failed.
		c.refused(&c.msgs[i], err)
		i++
	}
	clear(c.bufs[:nb])
	clear(c.iovs[:nb])
}

// message is one entry of a sendmmsg call: its datagrams (several for GSO)
// and destination.
type message struct {
	bufs [][]byte
	addr netip.AddrPort
}

// mmsghdr is struct mmsghdr of sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// setName points message m at addr.
// groupedRuns is the most runs of one destination grouped looks through
// before it leaves the question to the sort.
const groupedRuns = 32

// grouped reports whether each destination's packets are already one run
// (the SFU writes a subscriber's packets together), so that the sort can be
// skipped. It gives up, reporting false, past groupedRuns runs.
func grouped(slots []slot) bool {
	var heads [groupedRuns]netip.AddrPort
	runs := 0
	for i := range slots {
		if i > 0 && slots[i].addr == slots[i-1].addr {
			continue
		}
		if runs == groupedRuns {
			return false
		}
		for _, h := range heads[:runs] {
			if h == slots[i].addr {
				return false // a destination seen before, after another
			}
		}
		heads[runs] = slots[i].addr
		runs++
	}
	return true
}

func (c *Conn) setName(m int, addr netip.AddrPort) {
	h := &c.hdrs[m].hdr
	ip := addr.Addr()
	port := addr.Port()
	if ip.Is4() && !c.v6 {
		sa := &c.sa4[m]
		sa.Family = unix.AF_INET
		sa.Addr = ip.As4()
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		h.Name = (*byte)(unsafe.Pointer(sa))
		h.Namelen = unix.SizeofSockaddrInet4
		return
	}
	sa := &c.sa6[m]
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	h.Name = (*byte)(unsafe.Pointer(sa))
	h.Namelen = unix.SizeofSockaddrInet6
}

// sendmmsg sends hdrs with one system call and returns how many were sent.
// It is a raw system call: it does not block (the socket is non-blocking;
// when its buffer is full the poller waits), so the goroutine keeps its P and
// the runtime neither hands the P to another thread nor wakes its monitor
// for it, which a regular system call of this length makes it do.
func (c *Conn) sendmmsg(hdrs []mmsghdr) (int, error) {
	c.callHdrs = hdrs
	err := c.raw.Write(c.sendFn)
	n, errno := c.callN, c.callErrno
	c.callHdrs = nil
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return n, nil
}

// sendOnFD is the raw connection's write callback (a method value made once,
// so that a send allocates nothing).
func (c *Conn) sendOnFD(fd uintptr) bool {
	r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.callHdrs[0])),
		uintptr(len(c.callHdrs)), 0, 0, 0)
	if errno == unix.EAGAIN {
		return false // wait until the socket is writable
	}
	c.callN, c.callErrno = int(r), errno
	return true
}

// refused handles a message the kernel did not take. A GSO message is sent
// again datagram by datagram, and GSO is turned off if the kernel cannot do it.
func (c *Conn) refused(m *message, err error) {
	if len(m.bufs) > 1 {
		if errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOPROTOOPT) ||
			errors.Is(err, syscall.EOPNOTSUPP) {
			if c.gso.CompareAndSwap(true, false) {
				c.log.Info("UDP segmentation offload unavailable, sending datagrams one by one in batches", "err", err)
			}
		}
		for _, b := range m.bufs {
			c.calls.Add(1)
			if _, err := c.UDPConn.WriteToUDPAddrPort(b, m.addr); err != nil {
				c.errs.Add(1)
				c.log.Debug("udp send", "to", m.addr, "err", err)
				continue
			}
			c.messages.Add(1)
			c.packets.Add(1)
		}
		return
	}
	c.errs.Add(1)
	c.log.Debug("udp send", "to", m.addr, "err", err)
}

// segmentCmsg writes the UDP_SEGMENT control message for message m.
func (c *Conn) segmentCmsg(m, size int) []byte {
	space := unix.CmsgSpace(2)
	b := c.oob[m*space : (m+1)*space]
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = uint16(size)
	return b
}

// Close sends what is queued and closes the socket.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true // no write queues after this
	c.timer.Stop()
	c.mu.Unlock()
	c.flushWait()
	return c.UDPConn.Close()
}
