package turnserver

import (
	"net"
	"net/netip"
)

// deniedPeerPrefixes are the peer ranges turnd refuses to relay to unless an
// allow-list entry (Config.AllowPeers, --allow-peer) covers the address. They
// are the ranges that reach the operator's own machine or network rather than
// the Internet: this host, private and shared (CGNAT) ranges, link-local,
// multicast and broadcast, reserved and unspecified addresses. This mirrors
// the denied-peer-ip lines that coturn's documentation recommends.
var deniedPeerPrefixes = func() []netip.Prefix {
	list := []string{
		// IPv4
		"0.0.0.0/8",          // "this network", includes the unspecified 0.0.0.0
		"10.0.0.0/8",         // private (RFC 1918)
		"100.64.0.0/10",      // shared address space / CGNAT (RFC 6598)
		"127.0.0.0/8",        // loopback
		"169.254.0.0/16",     // link-local; also cloud metadata services (169.254.169.254)
		"172.16.0.0/12",      // private (RFC 1918)
		"192.0.0.0/24",       // IETF protocol assignments
		"192.0.2.0/24",       // documentation (TEST-NET-1)
		"192.88.99.0/24",     // deprecated 6to4 relay anycast
		"192.168.0.0/16",     // private (RFC 1918)
		"198.18.0.0/15",      // benchmarking
		"198.51.100.0/24",    // documentation (TEST-NET-2)
		"203.0.113.0/24",     // documentation (TEST-NET-3)
		"224.0.0.0/4",        // multicast
		"240.0.0.0/4",        // reserved for future use
		"255.255.255.255/32", // limited broadcast
		// IPv6
		"::/128",         // unspecified
		"::1/128",        // loopback
		"64:ff9b:1::/48", // local-use IPv4/IPv6 translation (RFC 8215)
		"100::/64",       // discard-only
		"2001:db8::/32",  // documentation
		"fc00::/7",       // unique local
		"fe80::/10",      // link-local
		"fec0::/10",      // deprecated site-local
		"ff00::/8",       // multicast
	}
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// nat64Prefix is the well-known NAT64 prefix (RFC 6052): an address in it
// embeds an IPv4 address in its last 32 bits, and a NAT64 gateway on the
// operator's network would forward to that IPv4 address, so it is judged by
// the embedded address.
var nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")

// peerPolicy decides which peer addresses an allocation may relay to.
// It is immutable after construction and safe for concurrent use.
type peerPolicy struct {
	allow []netip.Prefix
	// only, when not empty, is the narrow policy: these transport addresses
	// (port 0: any port) and allow, nothing else.
	only []netip.AddrPort
}

func newPeerPolicy(allow []netip.Prefix, only []netip.AddrPort) *peerPolicy {
	p := &peerPolicy{}
	for _, pfx := range allow {
		p.allow = append(p.allow, canonicalPrefix(pfx))
	}
	for _, ap := range only {
		p.only = append(p.only, netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()))
	}
	return p
}

// narrow reports whether the policy names its peers one by one (OnlyPeers),
// so that ports matter too.
func (p *peerPolicy) narrow() bool { return len(p.only) > 0 }

// allowedAddrPort reports whether a packet may go to (or come from) peer
// under the narrow policy: the IP is judged by allowed (the permission),
// the port here. Under the public-peer policy every port is allowed.
func (p *peerPolicy) allowedAddrPort(peer netip.AddrPort) bool {
	if len(p.only) == 0 {
		return true
	}
	addr := peer.Addr().Unmap().WithZone("")
	for _, pfx := range p.allow {
		if pfx.Contains(addr) {
			return true
		}
	}
	for _, o := range p.only {
		if o.Addr() == addr && (o.Port() == 0 || o.Port() == peer.Port()) {
			return true
		}
	}
	return false
}

// canonicalPrefix turns an IPv4-mapped IPv6 prefix into its IPv4 form so that
// it matches the unmapped addresses the policy compares against.
func canonicalPrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr()
	if a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

// allowedIP reports whether relaying to ip is allowed.
func (p *peerPolicy) allowedIP(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	return p.allowed(a)
}

// allowed reports whether relaying to addr is allowed: an allow-list entry
// wins; under the narrow policy only the addresses of OnlyPeers are allowed
// besides; otherwise addresses in the denied ranges are refused and
// everything else (public unicast) is allowed.
func (p *peerPolicy) allowed(addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	addr = addr.Unmap().WithZone("")
	for _, pfx := range p.allow {
		if pfx.Contains(addr) {
			return true
		}
	}
	if len(p.only) > 0 {
		for _, o := range p.only {
			if o.Addr() == addr {
				return true
			}
		}
		return false
	}
	if addr.Is6() && nat64Prefix.Contains(addr) {
		b := addr.As16()
		return p.allowed(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	for _, pfx := range deniedPeerPrefixes {
		if pfx.Contains(addr) {
			return false
		}
	}
	return true
}
