package sfu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/parley/parley/pkg/udpbatch"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

var (
	testKey  = bytes.Repeat([]byte{7}, 16)
	testSalt = bytes.Repeat([]byte{9}, 12)
)

func testContext(t testing.TB) *srtp.Context {
	ctx, err := srtp.CreateContext(testKey, testSalt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

// loopbackPair is a batching socket and a plain receiving one on 127.0.0.1.
func loopbackPair(t testing.TB) (*udpbatch.Conn, *net.UDPConn) {
	t.Helper()
	s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = r.SetReadBuffer(4 << 20)
	b, err := udpbatch.New(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(); _ = r.Close() })
	return b, r
}

// directLoopback is a direct path on a loopback socket pair, the
// receiver's SRTP context, and next, which flushes the path and returns the
// datagram that arrived at the receiver.
func directLoopback(t *testing.T) (p *sendPath, recv *srtp.Context, next func() []byte) {
	t.Helper()
	b, r := loopbackPair(t)
	p = &sendPath{srtp: testContext(t), udp: b, to: r.LocalAddr().(*net.UDPAddr).AddrPort()}
	buf := make([]byte, 2048)
	return p, testContext(t), func() []byte {
		t.Helper()
		b.Flush()
		_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := r.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return buf[:n]
	}
}

// What the direct path sends is SRTP that the receiver's context opens into
// the packet as written, across a sequence number wrap.
func TestDirectPathSendsSRTP(t *testing.T) {
	p, recv, next := directLoopback(t)
	sc := newSendScratch()
	payload := bytes.Repeat([]byte("vp8 "), 250)
	h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 65534, Timestamp: 3000, SSRC: 0xabc, Marker: true}
	for i := range 4 {
		if err := p.writeRTP(&h, payload, sc); err != nil {
			t.Fatal(err)
		}
		wire := next()
		if bytes.Contains(wire, payload[:16]) {
			t.Fatal("the payload went out in the clear")
		}
		plain, err := recv.DecryptRTP(nil, wire, nil)
		if err != nil {
			t.Fatalf("packet %d (seq %d): %v", i, h.SequenceNumber, err)
		}
		var got rtp.Packet
		if err := got.Unmarshal(plain); err != nil {
			t.Fatal(err)
		}
		if got.SequenceNumber != h.SequenceNumber || got.SSRC != h.SSRC || !got.Marker || !bytes.Equal(got.Payload, payload) {
			t.Fatalf("packet %d arrived as %+v", i, got.Header)
		}
		h.SequenceNumber++
	}
	if err := p.writeRTP(&h, make([]byte, maxPacket), sc); err == nil {
		t.Error("a packet larger than the scratch buffer was accepted")
	}
	if err := (&sendPath{srtp: testContext(t)}).writeRTP(&h, payload, sc); !errors.Is(err, errNoRoute) {
		t.Errorf("a path without a socket: %v, want errNoRoute", err)
	}
}

// A packet with padding goes out with its padding bytes, so the receiver
// finds the payload whole; a padding-only packet is a valid packet too.
func TestDirectPathWritesPadding(t *testing.T) {
	p, recv, next := directLoopback(t)
	sc := newSendScratch()
	payload := bytes.Repeat([]byte{0xab}, 300)
	for i, tc := range []struct {
		payload []byte
		pad     byte
	}{{payload, 7}, {nil, fillPadding}, {payload, 1}} {
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(10 + i), Timestamp: 3000, SSRC: 0xabc,
			Padding: true, PaddingSize: tc.pad}
		if err := p.writeRTP(&h, tc.payload, sc); err != nil {
			t.Fatal(err)
		}
		plain, err := recv.DecryptRTP(nil, next(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var got rtp.Packet
		if err := got.Unmarshal(plain); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !got.Padding || got.PaddingSize != tc.pad || !bytes.Equal(got.Payload, tc.payload) {
			t.Errorf("packet %d: padding %v of %d bytes, %d bytes of payload; want %d of padding and %d of payload",
				i, got.Padding, got.PaddingSize, len(got.Payload), tc.pad, len(tc.payload))
		}
	}
	h := rtp.Header{Version: 2, Padding: true}
	if err := p.writeRTP(&h, payload, sc); err == nil {
		t.Error("padding of 0 bytes was written")
	}
}

// Sender reports on the direct path are SRTCP that the receiver's context
// opens, report after report (each with the next SRTCP index: a replayed
// index would be refused).
func TestDirectPathSendsSRTCP(t *testing.T) {
	p, recv, next := directLoopback(t)
	sc := newSendScratch()
	for i := range 3 {
		sr := &rtcp.SenderReport{SSRC: 0xabc, NTPTime: uint64(i+1) << 32, RTPTime: uint32(90000 * i), PacketCount: uint32(100 * i), OctetCount: 1}
		raw, err := sr.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := p.writeRTCP(raw, sc); err != nil {
			t.Fatal(err)
		}
		plain, err := recv.DecryptRTCP(nil, next(), nil)
		if err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
		pkts, err := rtcp.Unmarshal(plain)
		if err != nil || len(pkts) != 1 {
			t.Fatalf("report %d: %v %v", i, pkts, err)
		}
		if got, ok := pkts[0].(*rtcp.SenderReport); !ok || got.SSRC != sr.SSRC || got.NTPTime != sr.NTPTime || got.RTPTime != sr.RTPTime || got.PacketCount != sr.PacketCount {
			t.Fatalf("report %d arrived as %+v, sent %+v", i, pkts[0], sr)
		}
	}
	if err := (&sendPath{srtp: testContext(t)}).writeRTCP([]byte{0x80, 200, 0, 1, 0, 0, 0, 1}, sc); !errors.Is(err, errNoRoute) {
		t.Errorf("a path without a socket: %v, want errNoRoute", err)
	}
}

// route finds the media socket of a pair's local candidate, and says why
// when there is none.
func TestRoute(t *testing.T) {
	e, err := NewEngine(Config{ListenIP: "127.0.0.1", TCPPort: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := testContext(t)
	cand := func(addr string, port uint16, proto webrtc.ICEProtocol) *webrtc.ICECandidate {
		return &webrtc.ICECandidate{Address: addr, Port: port, Protocol: proto, Typ: webrtc.ICECandidateTypeHost}
	}
	p, err := e.route(webrtc.NewICECandidatePair(cand("127.0.0.1", 7882, webrtc.ICEProtocolUDP),
		cand("127.0.0.1", 50000, webrtc.ICEProtocolUDP)), ctx, "ufrag")
	if err != nil || p.udp == nil || p.to != netip.MustParseAddrPort("127.0.0.1:50000") || p.srtp != ctx {
		t.Fatalf("udp pair: %+v, %v", p, err)
	}
	// A public address announced for NAT 1:1: the socket the kernel sends
	// to the remote from.
	if p, err := e.route(webrtc.NewICECandidatePair(cand("203.0.113.7", 7882, webrtc.ICEProtocolUDP),
		cand("127.0.0.2", 50000, webrtc.ICEProtocolUDP)), ctx, "ufrag"); err != nil || p.udp == nil {
		t.Fatalf("NAT 1:1 pair: %+v, %v", p, err)
	}
	for _, tc := range []struct {
		name        string
		local, rem  *webrtc.ICECandidate
		wantNoRoute bool
	}{
		{"tcp without ICE-TCP", cand("127.0.0.1", 7881, webrtc.ICEProtocolTCP), cand("127.0.0.1", 50000, webrtc.ICEProtocolTCP), false},
		{"remote not an address", cand("127.0.0.1", 7882, webrtc.ICEProtocolUDP), cand("abc.local", 50000, webrtc.ICEProtocolUDP), false},
	} {
		p, err := e.route(webrtc.NewICECandidatePair(tc.local, tc.rem), ctx, "ufrag")
		if err == nil || p.udp != nil || p.tcp != nil {
			t.Errorf("%s: %+v, %v; want an error and no socket", tc.name, p, err)
		}
	}
	if p, err := e.route(nil, ctx, "ufrag"); err == nil || p.srtp != ctx {
		t.Errorf("no pair: %+v, %v", p, err)
	}
}

// batchWriter is a net.Conn that queues its writes on a batching socket,
// the way pion's write path ends on the SFU's media socket; it reads
// nothing until closed.
type batchWriter struct {
	net.Conn
	b    *udpbatch.Conn
	to   netip.AddrPort
	done chan struct{}
}

func (w *batchWriter) Write(p []byte) (int, error)     { return w.b.WriteToAddrPort(p, w.to) }
func (w *batchWriter) Read([]byte) (int, error)        { <-w.done; return 0, io.EOF }
func (w *batchWriter) SetReadDeadline(time.Time) error { return nil }
func (w *batchWriter) Close() error {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	return nil
}

// BenchmarkSendPath: the cost of encrypting and queueing one 1200-byte RTP
// packet on the batching socket, on the direct path and through pion's SRTP
// session (a lower bound of pion's path: the mux, ICE conn and UDP mux conn
// layers it also crosses are left out), flushed every 64 packets.
func BenchmarkSendPath(b *testing.B) {
	payload := bytes.Repeat([]byte{0x5a}, 1200)
	for _, via := range []string{"direct", "pion-srtp-session"} {
		b.Run(via, func(b *testing.B) {
			bc, r := loopbackPair(b)
			to := r.LocalAddr().(*net.UDPAddr).AddrPort()
			go func() { // drain the receiver
				buf := make([]byte, 2048)
				for {
					if _, err := r.Read(buf); err != nil {
						return
					}
				}
			}()
			h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 1}
			var write func() error
			switch via {
			case "direct":
				p := &sendPath{srtp: testContext(b), udp: bc, to: to}
				sc := newSendScratch()
				write = func() error { return p.writeRTP(&h, payload, sc) }
			default:
				sess, err := srtp.NewSessionSRTP(&batchWriter{b: bc, to: to, done: make(chan struct{})}, &srtp.Config{Profile: srtp.ProtectionProfileAeadAes128Gcm,
					Keys: srtp.SessionKeys{LocalMasterKey: testKey, LocalMasterSalt: testSalt, RemoteMasterKey: testKey, RemoteMasterSalt: testSalt}})
				if err != nil {
					b.Fatal(err)
				}
				defer sess.Close()
				ws, err := sess.OpenWriteStream()
				if err != nil {
					b.Fatal(err)
				}
				write = func() error { _, err := ws.WriteRTP(&h, payload); return err }
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				h.SequenceNumber = uint16(i)
				if err := write(); err != nil {
					b.Fatal(fmt.Errorf("packet %d: %w", i, err))
				}
				if i%64 == 63 {
					bc.Flush()
				}
			}
			bc.Flush()
		})
	}
}
