package turnserver

import (
	"encoding/binary"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Benchmarks of relaying on loopback (go test -run '^$' -bench . ./pkg/turnserver/).
// Both report, besides ns/op and MB/s, "cpu-ns/pkt": the CPU time (user +
// system) of the whole test process per relayed packet, which includes the
// benchmark's own sender and receiver (one send or receive syscall each per
// packet) besides the server.

const benchPayload = 1200 // a typical RTP packet

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchSetup returns a server with one allocation whose client has a
// channel bound to a UDP peer on 127.0.0.1, the client's socket, the channel
// number and the peer.
func benchSetup(b *testing.B, bandwidthLimit int64) (srv *Server, clientConn net.PacketConn, relay net.PacketConn, channel uint16, peer net.PacketConn) {
	b.Helper()
	cfg := testConfig()
	allowLoopback(&cfg)
	cfg.BandwidthLimit = bandwidthLimit
	srv, _ = startServer(b, cfg)
	clientConn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []net.PacketConn{clientConn} {
		if uc, ok := c.(*net.UDPConn); ok {
			_ = uc.SetReadBuffer(1 << 20)
		}
	}
	c := pionClient(b, srv, clientConn, "alice", testUsers["alice"])
	relay = allocate(b, c)
	peer = udpPeer(b)
	_ = peer.(*net.UDPConn).SetReadBuffer(1 << 20)

	type channels interface {
		FindChannelNumberByAddr(net.Addr) (uint16, bool)
		IsChannelActive(uint16) bool
	}
	ch, ok := relay.(channels)
	if !ok {
		b.Fatal("pion relay conn has no channel accessors")
	}
	// The first packets go as Send indications while pion binds a channel.
	deadline := time.Now().Add(5 * time.Second)
	for {
		exchange(b, relay, peer.LocalAddr(), peer, "bind")
		if n, ok := ch.FindChannelNumberByAddr(peer.LocalAddr()); ok && ch.IsChannelActive(n) {
			channel = n
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("channel never bound")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return srv, clientConn, relay, channel, peer
}

// BenchmarkRelayChannelData streams ChannelData frames from the client
// socket through the server to the peer, with at most 64 packets in flight.
// One op = one 1200-byte packet relayed client -> server -> peer. "cap=off"
// runs without --bandwidth-limit, "cap=on" with a cap too high to drop
// anything (1 GB/s), to show the limiter's own cost.
func BenchmarkRelayChannelData(b *testing.B) {
	b.Run("cap=off", func(b *testing.B) { benchChannelData(b, 0) })
	b.Run("cap=on", func(b *testing.B) { benchChannelData(b, 1_000_000_000) })
}

func benchChannelData(b *testing.B, bandwidthLimit int64) {
	srv, clientConn, _, channel, peer := benchSetup(b, bandwidthLimit)
	frame := make([]byte, 4+benchPayload)
	binary.BigEndian.PutUint16(frame[0:], channel)
	binary.BigEndian.PutUint16(frame[2:], benchPayload)
	server := srv.Addr()

	const window = 64
	credits := make(chan struct{}, 4*window)
	for i := 0; i < window; i++ {
		credits <- struct{}{}
	}
	var received atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			_ = peer.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := peer.ReadFrom(buf); err != nil {
				return
			}
			received.Add(1)
			select {
			case credits <- struct{}{}:
			default:
			}
		}
	}()

	lost := 0
	timer := time.NewTimer(time.Hour)
	b.SetBytes(benchPayload)
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		select {
		case <-credits:
		default:
			timer.Reset(50 * time.Millisecond)
			select {
			case <-credits:
			case <-timer.C: // a packet was lost: go on without its credit
				lost++
			}
			timer.Stop()
		}
		if _, err := clientConn.WriteTo(frame, server); err != nil {
			b.Fatal(err)
		}
	}
	for end := time.Now().Add(time.Second); received.Load() < int64(b.N) && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	_ = peer.SetReadDeadline(time.Now())
	<-done
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/pkt")
	b.ReportMetric(100*float64(int64(b.N)-min(received.Load(), int64(b.N)))/float64(b.N), "loss%")
}

// BenchmarkRelayRoundTrip sends a packet from a pion client through the
// relay to a peer that echoes it back through the relay. One op = one round
// trip = two relayed packets (and pion client work on the client side).
func BenchmarkRelayRoundTrip(b *testing.B) {
	_, _, relay, _, peer := benchSetup(b, 0)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := peer.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = peer.WriteTo(buf[:n], from)
		}
	}()
	msg := make([]byte, benchPayload)
	buf := make([]byte, 2048)
	peerAddr := peer.LocalAddr()
	b.SetBytes(2 * benchPayload)
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		binary.BigEndian.PutUint64(msg, uint64(i))
		if _, err := relay.WriteTo(msg, peerAddr); err != nil {
			b.Fatal(err)
		}
		for {
			_ = relay.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, _, err := relay.ReadFrom(buf)
			if err != nil { // lost: send again
				if _, err := relay.WriteTo(msg, peerAddr); err != nil {
					b.Fatal(err)
				}
				continue
			}
			if n >= 8 && binary.BigEndian.Uint64(buf) == uint64(i) {
				break
			}
		}
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(2*b.N), "cpu-ns/pkt")
	_ = peer.Close() // ends the echo goroutine
}
