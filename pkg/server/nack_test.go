package server_test

import (
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// lossyProxy relays ICE-TCP (RFC 4571 framing) between a client and the
// server and drops every n-th video RTP packet going to the server, or, with
// toClient, going to the client.
type lossyProxy struct {
	ln       net.Listener
	target   string
	every    int
	toClient bool
	mu      sync.Mutex
	dropped int
	conns   []net.Conn
	wg      sync.WaitGroup
}

func newLossyProxy(t *testing.T, target string, every int, toClient bool) *lossyProxy {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{ln: ln, target: target, every: every, toClient: toClient}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp4", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Add(2)
			if p.toClient {
				go func() { defer p.wg.Done(); _, _ = io.Copy(s, c); _ = s.Close() }()
				go func() { defer p.wg.Done(); p.relayDropping(c, s); _ = c.Close() }()
			} else {
				go func() { defer p.wg.Done(); p.relayDropping(s, c); _ = s.Close() }()
				go func() { defer p.wg.Done(); _, _ = io.Copy(c, s); _ = c.Close() }()
			}
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *lossyProxy) relayDropping(dst, src net.Conn) {
	var hdr [2]byte
	buf := make([]byte, 65536)
	seen := 0
	for {
		if _, err := io.ReadFull(src, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(src, buf[:n]); err != nil {
			return
		}
		// RTP (not RTCP, not STUN or DTLS) with the VP8 payload type: count and maybe drop.
		if n > 12 && buf[0]>>6 == 2 && buf[1]&0x7f == 96 {
			seen++
			if seen%p.every == 0 {
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

// TestNACKRepairsPublisherLoss: 5 % of a publisher's video packets are lost
// on the way to the SFU; the SFU's NACK generator asks for them again, and a
// subscriber gets (almost) all of them.
func TestNACKRepairsPublisherLoss(t *testing.T) {
	srv := testServer(t, nil)
	tcpAddr := srv.Media().TCPAddr().String()
	proxy := newLossyProxy(t, tcpAddr, 20, false)
	_, serverPort, _ := net.SplitHostPort(tcpAddr)
	proxyPort := strconv.Itoa(proxy.ln.Addr().(*net.TCPAddr).Port)

	pubC := dial(t, srv, client.Options{Username: "pub", ICE: client.ICEOptions{TCPOnly: true,
		RewriteRemoteCandidate: func(c string) string {
			if !strings.Contains(c, " tcp ") || !strings.Contains(c, " "+serverPort+" ") {
				return ""
			}
			return strings.Replace(c, " "+serverPort+" ", " "+proxyPort+" ", 1)
		}}})
	join(t, pubC, "nack", "pub")
	sub := dial(t, srv, client.Options{Username: "sub"})
	join(t, sub, "nack", "sub")
	pub, err := pubC.Publish(ctxT(t, 30*time.Second), client.PublishOptions{Video: vp8Source(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatal(err)
	}
	tracks, err := sub.WaitRemoteTracks(ctxT(t, 10*time.Second), 1)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	proxy.mu.Lock()
	dropped := proxy.dropped
	proxy.mu.Unlock()
	if dropped < 10 {
		t.Fatalf("the proxy dropped only %d packets", dropped)
	}
	if n := pub.NACKs("video"); n < int64(dropped)/2 {
		t.Errorf("the SFU asked for %d retransmissions of %d lost packets", n, dropped)
	}
	// What the subscriber got against what was sent, over the range it saw.
	recv := tracks[0].ReceivedPackets()
	got := map[uint16]bool{}
	for _, r := range recv {
		got[r.Seq] = true
	}
	missing, expected := 0, 0
	for _, s := range pub.SentPackets("video") {
		if s.Seq-recv[0].Seq < 0x8000 && recv[len(recv)-1].Seq-s.Seq < 0x8000 {
			expected++
			if !got[s.Seq] {
				missing++
			}
		}
	}
	t.Logf("proxy dropped %d video packets, the SFU NACKed %d, the subscriber misses %d of %d", dropped, pub.NACKs("video"), missing, expected)
	if missing*100 > expected {
		t.Errorf("the subscriber misses %d of %d packets despite NACKs (the proxy dropped %d)", missing, expected, dropped)
	}
}

// TestNACKRepairsSubscriberLoss: 5 % of the video packets the SFU sends a
// subscriber are lost; the subscriber's NACKs are answered from the track's
// shared history and it ends up with (almost) every packet.
func TestNACKRepairsSubscriberLoss(t *testing.T) {
	srv := testServer(t, nil)
	tcpAddr := srv.Media().TCPAddr().String()
	proxy := newLossyProxy(t, tcpAddr, 20, true)
	_, serverPort, _ := net.SplitHostPort(tcpAddr)
	proxyPort := strconv.Itoa(proxy.ln.Addr().(*net.TCPAddr).Port)

	pubC := dial(t, srv, client.Options{Username: "pub"})
	join(t, pubC, "nack2", "pub")
	sub := dial(t, srv, client.Options{Username: "sub", ICE: client.ICEOptions{TCPOnly: true,
		RewriteRemoteCandidate: func(c string) string {
			if !strings.Contains(c, " tcp ") || !strings.Contains(c, " "+serverPort+" ") {
				return ""
			}
			return strings.Replace(c, " "+serverPort+" ", " "+proxyPort+" ", 1)
		}}})
	join(t, sub, "nack2", "sub")
	pub, err := pubC.Publish(ctxT(t, 30*time.Second), client.PublishOptions{Video: vp8Source(t)})
	if err != nil {
		t.Fatal(err)
	}
	tracks, err := sub.WaitRemoteTracks(ctxT(t, 10*time.Second), 1)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	proxy.mu.Lock()
	dropped := proxy.dropped
	proxy.mu.Unlock()
	if dropped < 10 {
		t.Fatalf("the proxy dropped only %d packets", dropped)
	}
	// Leave the last half second out: its retransmissions may be on the way.
	recv := tracks[0].ReceivedPackets()
	got := map[uint16]bool{}
	for _, r := range recv {
		got[r.Seq] = true
	}
	cutoff := time.Now().Add(-500 * time.Millisecond)
	missing, expected := 0, 0
	for _, s := range pub.SentPackets("video") {
		if s.Seq-recv[0].Seq < 0x8000 && s.SentAt.Before(cutoff) {
			expected++
			if !got[s.Seq] {
				missing++
			}
		}
	}
	t.Logf("proxy dropped %d video packets to the subscriber, which misses %d of %d", dropped, missing, expected)
	if missing*100 > expected {
		t.Errorf("the subscriber misses %d of %d packets: NACKs were not answered (the proxy dropped %d)", missing, expected, dropped)
	}
}
