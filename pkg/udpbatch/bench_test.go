package udpbatch

import (
	"net"
	"net/netip"
	"testing"
)

// BenchmarkSend compares the ways of sending one 4-packet frame (1200-byte
// packets) to each of 100 destinations on loopback: a sendto per packet, a
// Conn flushed after each destination's frame (as the SFU's writers do), and
// a Conn flushed once per round. The destinations do not read: the kernel
// drops what overflows their buffers, the same for every variant.
// Run: go test -run '^$' -bench Send -benchtime 2000x ./pkg/udpbatch/
func BenchmarkSend(b *testing.B) {
	const dests, perFrame, size = 100, 4, 1200
	addrs := make([]netip.AddrPort, dests)
	for i := range addrs {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		addrs[i] = c.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	pkt := make([]byte, size)
	open := func(b *testing.B) *net.UDPConn {
		uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		_ = uc.SetWriteBuffer(4 << 20)
		return uc
	}
	// A variant writes with write and flushes after each destination's frame
	// (perDest) and after each round (perRound).
	type variant struct {
		name              string
		batched           bool
		perDest, perRound bool
	}
	for _, v := range []variant{{name: "sendto"}, {name: "gso-per-destination", batched: true, perDest: true},
		{name: "gso-sendmmsg-per-round", batched: true, perRound: true}} {
		b.Run(v.name, func(b *testing.B) {
			uc := open(b)
			write, flush := uc.WriteToUDPAddrPort, func() {}
			if v.batched {
				c, err := New(uc, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				write, flush = c.WriteToAddrPort, c.Flush
			} else {
				defer uc.Close()
			}
			b.ReportAllocs()
			for b.Loop() {
				for _, a := range addrs {
					for range perFrame {
						if _, err := write(pkt, a); err != nil {
							b.Fatal(err)
						}
					}
					if v.perDest {
						flush()
					}
				}
				if v.perRound {
					flush()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*dests*perFrame), "ns/packet")
		})
	}
}
