package sfu

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/parley/parley/pkg/udpbatch"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// The direct send path: a subscribe connection's RTP is encrypted by the
// SFU with the connection's own SRTP keys (recovered by srtpkeys from the
// DTLS handshake, in which the SFU is the server) and queued straight on the
// media socket of the selected ICE candidate pair, skipping pion's track
// writer, SRTP session, DTLS/SRTP mux and ICE conn: about a third of the CPU
// per forwarded packet (docs/performance.md). pion still does everything
// else on the connection: ICE (checks, consent, restarts), DTLS, RTCP both
// ways, but for the sender reports, which the writer encrypts with the same
// context and queues with the media (report.go).
//
// Once a connection's keys are known, every RTP packet it sends goes this
// way, on UDP or ICE-TCP, whatever the pair becomes after ICE restarts: one
// SRTP context per connection, so its rollover counters never disagree with
// the receiver's. A connection whose keys cannot be recovered (its client
// made the SFU the DTLS client, or chose a cipher suite srtpkeys does not
// know) sends through pion's SRTP session for its whole life instead; so
// does one whose selected pair is on no socket of the SFU, or whose receiver
// shows no sign of opening what the direct path sends. A connection whose
// ICE failed sends nothing until it has a pair again (pathhealth.go).

// sendPath is how a subscribe connection's RTP leaves the SFU. A subscriber
// has none until its connection is up (nothing can be sent before: pion
// drops RTP until SRTP is up, too).
type sendPath struct {
	// viaPion says RTP goes through pion's SRTP session (binding.ws).
	viaPion bool
	// srtp encrypts the connection's RTP; it is the subscriber's, shared by
	// every path the connection has, and only its writer uses it.
	srtp *srtp.Context
	// udp and to are the selected pair's media socket and remote address;
	// or tcp and tcpTo its ICE-TCP connection (a reference the path holds).
	// Neither is set while the pair is one the SFU cannot send on.
	udp   *udpbatch.Conn
	to    netip.AddrPort
	tcp   net.PacketConn
	tcpTo net.Addr
	// spent is, on pion's path after a fallback, the direct path's
	// context: the SRTCP indexes it used are not pion's to use again, so a
	// sender report of an SSRC it reported on goes behind an empty receiver
	// report of rtcpSSRC (pathhealth.go).
	spent    *srtp.Context
	rtcpSSRC uint32
}

// sendScratch is a writer's buffer for encrypting one packet.
type sendScratch struct {
	buf     []byte
	hdr     rtp.Header  // EncryptRTP's parse of the packet, kept apart from the shared packets' headers
	rtcpHdr rtcp.Header // EncryptRTCP's
}

// srtpOverhead bounds what SRTP adds to a packet (an authentication tag).
const srtpOverhead = 32

func newSendScratch() *sendScratch {
	return &sendScratch{buf: make([]byte, maxPacket+srtpOverhead)}
}

var errNoRoute = errors.New("the selected candidate pair is not on a socket of the SFU")

// writeRTP encrypts the packet (with h.PaddingSize bytes of padding when
// h.Padding is set) and queues it on the path's socket.
func (o *sendPath) writeRTP(h *rtp.Header, payload []byte, sc *sendScratch) error {
	if o.udp == nil && o.tcp == nil {
		return errNoRoute
	}
	pad := 0
	if h.Padding {
		if pad = int(h.PaddingSize); pad == 0 {
			return errors.New("rtp padding of 0 bytes")
		}
	}
	n, err := h.MarshalTo(sc.buf)
	if err != nil {
		return fmt.Errorf("marshal rtp header: %w", err)
	}
	if n+len(payload)+pad+srtpOverhead > len(sc.buf) {
		return fmt.Errorf("rtp packet of %d bytes is too large", n+len(payload)+pad)
	}
	n += copy(sc.buf[n:], payload)
	if pad > 0 {
		clear(sc.buf[n : n+pad-1])
		sc.buf[n+pad-1] = byte(pad)
		n += pad
	}
	// In place, as pion's SRTP session does: the buffer has room for the tag.
	enc, err := o.srtp.EncryptRTP(sc.buf, sc.buf[:n], &sc.hdr)
	if err != nil {
		return fmt.Errorf("srtp encrypt: %w", err)
	}
	return o.send(enc)
}

// writeRTCP encrypts an RTCP compound packet and queues it on the path's
// socket. The context's SRTCP index counts per SSRC: the SFU's only RTCP to
// a subscriber, the sender reports of its tracks' SSRCs, goes this way for
// the connection's whole life once the path is direct, so the receiver's
// replay window sees one sequence of indexes.
func (o *sendPath) writeRTCP(raw []byte, sc *sendScratch) error {
	if o.udp == nil && o.tcp == nil {
		return errNoRoute
	}
	if len(raw)+srtpOverhead > len(sc.buf) {
		return fmt.Errorf("rtcp packet of %d bytes is too large", len(raw))
	}
	n := copy(sc.buf, raw)
	enc, err := o.srtp.EncryptRTCP(sc.buf, sc.buf[:n], &sc.rtcpHdr)
	if err != nil {
		return fmt.Errorf("srtcp encrypt: %w", err)
	}
	return o.send(enc)
}

// send queues an encrypted packet on the path's socket.
func (o *sendPath) send(enc []byte) (err error) {
	if o.udp != nil {
		_, err = o.udp.WriteToAddrPort(enc, o.to)
	} else {
		_, err = o.tcp.WriteTo(enc, o.tcpTo)
	}
	return err
}

// close lets go of the path's ICE-TCP reference.
func (o *sendPath) close() {
	if o != nil && o.tcp != nil {
		_ = o.tcp.Close()
	}
}

// route returns the direct path for a selected candidate pair with the
// connection's SRTP context; a path with no socket when the pair is not on
// one of the SFU's sockets. ufrag is the connection's local ICE username
// fragment (ICE-TCP connections are kept by it).
func (e *Engine) route(pair *webrtc.ICECandidatePair, ctx *srtp.Context, ufrag string) (*sendPath, error) {
	p := &sendPath{srtp: ctx}
	if pair == nil || pair.Local == nil || pair.Remote == nil {
		return p, errors.New("no selected candidate pair")
	}
	remote, err := netip.ParseAddr(pair.Remote.Address)
	if err != nil {
		return p, fmt.Errorf("remote candidate address %q: %w", pair.Remote.Address, err)
	}
	remote = remote.Unmap()
	local, ok := e.localIP(pair.Local.Address, remote)
	if !ok {
		return p, fmt.Errorf("local candidate %s: %w", pair.Local.Address, errNoRoute)
	}
	to := netip.AddrPortFrom(remote, pair.Remote.Port)
	switch pair.Local.Protocol {
	case webrtc.ICEProtocolUDP:
		c := e.udpNet.conn(local)
		if c == nil {
			return p, fmt.Errorf("local candidate %s: %w", pair.Local.Address, errNoRoute)
		}
		p.udp, p.to = c, to
	case webrtc.ICEProtocolTCP:
		if e.tcp == nil {
			return p, errors.New("an ICE-TCP pair, and ICE-TCP is off")
		}
		c, err := e.tcp.GetConnByUfrag(ufrag, local.Is6(), local.AsSlice())
		if err != nil {
			return p, fmt.Errorf("ICE-TCP connection: %w", err)
		}
		p.tcp, p.tcpTo = c, net.TCPAddrFromAddrPort(to)
	default:
		return p, fmt.Errorf("candidate protocol %s", pair.Local.Protocol)
	}
	return p, nil
}

// localIP returns the address of the SFU's socket that a local candidate
// stands for: the candidate's own address, or, for a public address announced
// for NAT 1:1, the address the kernel sends to remote from.
func (e *Engine) localIP(candidate string, remote netip.Addr) (netip.Addr, bool) {
	if ip, err := netip.ParseAddr(candidate); err == nil && e.udpNet.conn(ip.Unmap()) != nil {
		return ip.Unmap(), true
	}
	// connect(2) on a UDP socket only picks the route and source address.
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote, 9)))
	if err != nil {
		return netip.Addr{}, false
	}
	defer c.Close()
	src := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	return src, e.udpNet.conn(src) != nil
}
