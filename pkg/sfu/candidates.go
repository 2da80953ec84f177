package sfu

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/webrtc/v4"
)

// A client names the addresses the SFU should try in its ICE candidates. The
// SFU sends connectivity checks there, and for TCP candidates opens
// connections, so a candidate is a request to reach an address from the
// server. Addresses that can only mean the server itself or its own link
// (loopback, link-local, unspecified, multicast and broadcast) are ignored
// unless the server serves on loopback (development and tests, where the
// client runs on the same machine); names are never resolved. A client always
// reaches the SFU with its real addresses, and the SFU learns the address its
// checks come from anyway (peer-reflexive candidates).

// candidateAddr returns the connection address of an ICE candidate attribute
// ("candidate:1 1 udp 2130706431 192.0.2.4 50000 typ host …", with or
// without "a="); ok is false when the candidate does not parse or names a
// host name (an mDNS .local name or any other) instead of an IP address.
func candidateAddr(c string) (netip.Addr, bool) {
	c = strings.TrimPrefix(strings.TrimSpace(c), "a=")
	if !strings.HasPrefix(c, "candidate:") {
		return netip.Addr{}, false
	}
	f := strings.Fields(c)
	if len(f) < 8 {
		return netip.Addr{}, false
	}
	addr, err := netip.ParseAddr(f[4])
	if err != nil {
		return netip.Addr{}, false
	}
	if _, err := strconv.ParseUint(f[5], 10, 16); err != nil {
		return netip.Addr{}, false
	}
	return addr.Unmap().WithZone(""), true
}

// localOnly reports whether addr can only mean this machine or its own
// link: a client elsewhere cannot be reached there.
func localOnly(addr netip.Addr) bool {
	return addr.IsLoopback() || addr.IsLinkLocalUnicast() || addr.IsUnspecified() || addr.IsMulticast() ||
		addr == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// acceptCandidate reports whether a client's candidate may be tried, and
// counts the ones ignored.
func (e *Engine) acceptCandidate(c string) bool {
	addr, ok := candidateAddr(c)
	if ok && (e.localCandidates || !localOnly(addr)) {
		return true
	}
	e.ignoredCandidates.Add(1)
	return false
}

// acceptCandidateInit is acceptCandidate for a trickled candidate. An empty
// candidate (end of candidates) is accepted.
func (e *Engine) acceptCandidateInit(c webrtc.ICECandidateInit) bool {
	return c.Candidate == "" || e.acceptCandidate(c.Candidate)
}

// filterSDP removes the a=candidate lines of a client's offer or answer that
// acceptCandidate refuses.
func (e *Engine) filterSDP(sdp string) string {
	if !strings.Contains(sdp, "a=candidate:") {
		return sdp
	}
	var b strings.Builder
	b.Grow(len(sdp))
	for rest := sdp; rest != ""; {
		line := rest
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			rest = ""
		}
		if strings.HasPrefix(line, "a=candidate:") && !e.acceptCandidate(line) {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// isLoopbackHost reports whether host (an IP address or "localhost") is a
// loopback address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// MediaAddrs returns the transport addresses clients send media to: each
// address the UDP media port is bound to, and each public address announced
// in its place (NAT 1:1), with the UDP port. An embedded TURN server relays
// to these and nothing else.
func (e *Engine) MediaAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	add := func(ap netip.AddrPort) {
		for _, o := range out {
			if o == ap {
				return
			}
		}
		out = append(out, ap)
	}
	var port uint16
	for _, a := range e.udp.GetListenAddresses() {
		ua, ok := a.(*net.UDPAddr)
		if !ok {
			continue
		}
		ap := ua.AddrPort()
		port = ap.Port()
		add(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	for _, ip := range e.cfg.PublicIPs {
		if a, err := netip.ParseAddr(ip); err == nil && port != 0 {
			add(netip.AddrPortFrom(a.Unmap(), port))
		}
	}
	return out
}

// IgnoredCandidates counts the client candidates ignored since start.
func (e *Engine) IgnoredCandidates() uint64 { return e.ignoredCandidates.Load() }
