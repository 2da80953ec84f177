package sfu

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/parley/parley/pkg/udpbatch"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// udpSocketBuffer is the send and receive buffer asked for each media socket
// (the kernel caps it at net.core.{w,r}mem_max).
const udpSocketBuffer = 4 << 20

// batchNet is the network the ICE UDP mux opens its sockets on: the host's,
// with every UDP socket wrapped in a udpbatch.Conn so that subscriber writers
// send a burst in one system call (see flush).
type batchNet struct {
	*stdnet.Net
	log *slog.Logger

	mu    sync.Mutex
	conns []*udpbatch.Conn
}

func newBatchNet(log *slog.Logger) (*batchNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return &batchNet{Net: n, log: log}, nil
}

// ListenUDP implements transport.Net.
func (n *batchNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	_ = c.SetReadBuffer(udpSocketBuffer)
	_ = c.SetWriteBuffer(udpSocketBuffer)
	b, err := udpbatch.New(c, n.log.With("socket", c.LocalAddr().String()))
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	n.mu.Lock()
	n.conns = append(n.conns, b)
	n.mu.Unlock()
	return b, nil
}

// conn returns the media socket bound to ip, or nil.
func (n *batchNet) conn(ip netip.Addr) *udpbatch.Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		if la, ok := c.LocalAddr().(*net.UDPAddr); ok && la.AddrPort().Addr().Unmap() == ip {
			return c
		}
	}
	return nil
}

// flush sends what the media sockets have queued.
func (n *batchNet) flush() {
	n.mu.Lock()
	conns := n.conns
	n.mu.Unlock()
	for _, c := range conns {
		c.Flush()
	}
}

// stats sums the media sockets' write counters.
func (n *batchNet) stats() udpbatch.Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	var st udpbatch.Stats
	for _, c := range n.conns {
		s := c.Stats()
		st.Packets += s.Packets
		st.Messages += s.Messages
		st.Calls += s.Calls
		st.Errors += s.Errors
	}
	return st
}
