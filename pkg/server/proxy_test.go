package server_test

import (
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/server"
)

// tcpProxy relays ICE-TCP (RFC 4571 framing) between clients and the
// server's ICE-TCP port. It can stall the server-to-client direction (a
// subscriber whose network stops draining) and drop every n-th VP8 RTP
// packet in one direction (a lossy path).
type tcpProxy struct {
	ln           net.Listener
	target       string
	dropEvery    int  // 0: drop nothing
	dropToClient bool // drop on the way to the client, else on the way to the server

	mu      sync.Mutex
	frozen  chan struct{} // nil: flowing; open: server-to-client stalled until closed
	dropped int
	conns   []net.Conn
	wg      sync.WaitGroup
}

// newTCPProxy starts a proxy to srv's ICE-TCP port; it stops with the test.
func newTCPProxy(t *testing.T, srv *server.Server, dropEvery int, dropToClient bool) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: srv.Media().TCPAddr().String(), dropEvery: dropEvery, dropToClient: dropToClient}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// ice routes a client's media through the proxy: only the server's ICE-TCP
// candidate is kept, with the proxy's port.
func (p *tcpProxy) ice() client.ICEOptions {
	_, serverPort, _ := net.SplitHostPort(p.target)
	proxyPort := strconv.Itoa(p.ln.Addr().(*net.TCPAddr).Port)
	return client.ICEOptions{TCPOnly: true, RewriteRemoteCandidate: func(c string) string {
		if !strings.Contains(c, " tcp ") || !strings.Contains(c, " "+serverPort+" ") {
			return ""
		}
		return strings.Replace(c, " "+serverPort+" ", " "+proxyPort+" ", 1)
	}}
}

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp4", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); p.relay(s, c, false); _ = s.Close() }()
		go func() { defer p.wg.Done(); p.relay(c, s, true); _ = c.Close() }()
	}
}

// relay copies framed packets from src to dst.
func (p *tcpProxy) relay(dst, src net.Conn, toClient bool) {
	var hdr [2]byte
	buf := make([]byte, 65536)
	seen := 0
	for {
		if toClient {
			p.mu.Lock()
			gate := p.frozen
			p.mu.Unlock()
			if gate != nil {
				<-gate
			}
		}
		if _, err := io.ReadFull(src, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(src, buf[:n]); err != nil {
			return
		}
		// RTP (not RTCP, STUN or DTLS) with the VP8 payload type.
		if p.dropEvery > 0 && toClient == p.dropToClient && n > 12 && buf[0]>>6 == 2 && buf[1]&0x7f == 96 {
			if seen++; seen%p.dropEvery == 0 {
				p.mu.Lock()
				p.dropped++
				p.mu.Unlock()
				continue
			}
		}
		if _, err := dst.Write(hdr[:]); err != nil {
			return
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// stall stops relaying from the server to clients.
func (p *tcpProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen == nil {
		p.frozen = make(chan struct{})
	}
}

// resume relays again.
func (p *tcpProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen != nil {
		close(p.frozen)
		p.frozen = nil
	}
}

// droppedPackets returns how many packets the proxy dropped.
func (p *tcpProxy) droppedPackets() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

func (p *tcpProxy) close() {
	p.resume()
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
