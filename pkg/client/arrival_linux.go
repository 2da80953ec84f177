package client

import (
	"net"
	"net/netip"
	"unsafe"

	"github.com/pion/ice/v4"
	"github.com/pion/transport/v5"
	"golang.org/x/sys/unix"
)

// arrivalNet is a transport.Net whose UDP sockets stamp RTP arrivals in log.
// Everything else is the wrapped Net's.
type arrivalNet struct {
	transport.Net
	log *arrivalLog
}

// ListenUDP opens the socket and asks the kernel for receive timestamps. A
// socket that cannot have them is returned as it is: its packets are then
// stamped when the reader gets them.
func (n *arrivalNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	udp, ok := c.(*net.UDPConn)
	if !ok {
		return c, nil
	}
	raw, err := udp.SyscallConn()
	if err != nil {
		return c, nil //nolint:nilerr // no stamps, still a socket
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return c, nil //nolint:nilerr // no stamps, still a socket
	}
	return &arrivalConn{UDPConn: udp, log: n.log}, nil
}

// arrivalConn reads with the kernel's receive timestamp and notes RTP
// arrivals. pion's ICE reads a candidate's socket from one goroutine, so one
// control-message buffer serves every read. Writes are the UDPConn's.
type arrivalConn struct {
	*net.UDPConn
	log *arrivalLog
	oob [64]byte
}

// ReadFromAddrPort is what pion's ICE reads with.
func (c *arrivalConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, oobn, _, addr, err := c.UDPConn.ReadMsgUDPAddrPort(b, c.oob[:])
	if err == nil {
		if at, ok := kernelStamp(c.oob[:oobn]); ok {
			c.log.noteRTP(b[:n], at)
		}
	}
	return n, addr, err
}

// WriteToAddrPort makes arrivalConn an ice.AddrPortReaderWriter, so that
// pion's ICE reads it with ReadFromAddrPort (no address allocated per
// datagram) as it reads a bare *net.UDPConn.
func (c *arrivalConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return c.UDPConn.WriteToUDPAddrPort(b, addr)
}

var _ ice.AddrPortReaderWriter = (*arrivalConn)(nil)

// ReadFrom is ReadFromAddrPort for callers that want a net.Addr.
func (c *arrivalConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(addr), nil
}

// kernelStamp finds SCM_TIMESTAMPNS in a control message buffer: the
// kernel's receive time, wall clock, in ns since 1970.
func kernelStamp(oob []byte) (int64, bool) {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Len < unix.SizeofCmsghdr || int(h.Len) > len(oob) {
			return 0, false
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS &&
			int(h.Len) >= unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{}))) {
			ts := (*unix.Timespec)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
			return ts.Nano(), true
		}
		oob = oob[min(unix.CmsgSpace(int(h.Len)-unix.CmsgLen(0)), len(oob)):]
	}
	return 0, false
}
