package turnserver

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"
)

// minBandwidthLimit is the smallest accepted --bandwidth-limit (bytes/s).
const minBandwidthLimit = 8000

// maxPortTries bounds the ports tried for one allocation in --relay-ports.
const maxPortTries = 64

var (
	errUserQuota  = errors.New("turnserver: per-user allocation quota reached")
	errTotalQuota = errors.New("turnserver: server allocation quota reached")
	errNoPort     = errors.New("turnserver: no free relay port")
	errTCPRelay   = errors.New("turnserver: TCP relay allocations (RFC 6062) are not supported")
	errFamily     = errors.New("turnserver: relay address family not supported")
	errClosing    = errors.New("turnserver: server is closing")
)

// relayGenerator is the pion RelayAddressGenerator turnd installs on every
// listener. It is where allocations are counted against the quotas (under one
// lock, so concurrent Allocate requests cannot overshoot), where relay ports
// are taken from --relay-ports, and where each relay socket is wrapped in a
// relayConn that meters, caps and filters its traffic.
type relayGenerator struct{ s *Server }

func (g relayGenerator) Validate() error { return nil }

func (g relayGenerator) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	s := g.s
	want4 := conf.Network == "udp4"
	if (conf.Network != "udp4" && conf.Network != "udp6") || want4 != s.cfg.RelayIP.Is4() {
		s.metrics.refusals.WithLabelValues(refuseFamily).Inc()
		return nil, nil, errFamily
	}
	// pion probes for an even port (EVEN-PORT) with an empty user id and
	// closes the socket at once; such probes are not allocations.
	probe := conf.UserID == ""
	if !probe {
		if err := s.reserve(conf.UserID); err != nil {
			return nil, nil, err
		}
	}
	pc, err := s.bindRelay(conf.Network, conf.RequestedPort)
	if err != nil {
		if !probe {
			s.release(conf.UserID)
		}
		s.metrics.refusals.WithLabelValues(refuseNoPort).Inc()
		s.warnLimited("turn relay port unavailable", slog.String("user", clip(conf.UserID)), slog.String("error", err.Error()))
		return nil, nil, errNoPort
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	rc := newRelayConn(s, pc, conf.UserID, port, probe)
	relayAddr := &net.UDPAddr{IP: s.cfg.RelayIP.AsSlice(), Port: port}
	if !probe {
		s.mu.Lock()
		closing := s.closing
		if !closing {
			s.relays[port] = rc
			s.live++ // pion starts a read loop on it
		}
		s.mu.Unlock()
		if closing { // Close has already taken its list of relays
			_ = rc.Close()
			return nil, nil, errClosing
		}
	}
	return rc, relayAddr, nil
}

func (g relayGenerator) AllocateListener(turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	g.s.metrics.refusals.WithLabelValues(refuseTCPRelay).Inc()
	return nil, nil, errTCPRelay
}

func (g relayGenerator) AllocateConn(turn.AllocateConnConfig) (net.Conn, error) {
	return nil, errTCPRelay
}

// bindRelay opens a UDP relay socket on RelayBind, in --relay-ports if set.
func (s *Server) bindRelay(network string, requested int) (net.PacketConn, error) {
	bind := s.cfg.RelayBind
	listen := func(port int) (net.PacketConn, error) {
		return net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, uint16(port))))
	}
	lo, hi := int(s.cfg.RelayPortMin), int(s.cfg.RelayPortMax)
	if requested != 0 {
		// A port reserved through EVEN-PORT/RESERVATION-TOKEN (pion picked
		// it through this generator); still keep it inside the range.
		if lo != 0 && (requested < lo || requested > hi) {
			return nil, errNoPort
		}
		return listen(requested)
	}
	if lo == 0 {
		return listen(0)
	}
	n := hi - lo + 1
	start := rand.IntN(n)
	var lastErr error
	for i := 0; i < min(n, maxPortTries); i++ {
		pc, err := listen(lo + (start+i)%n)
		if err == nil {
			return pc, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// reserve counts an allocation for user against the quotas.
func (s *Server) reserve(user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closing:
		return errClosing
	case s.total >= s.cfg.MaxAllocations:
		s.metrics.refusals.WithLabelValues(refuseTotalQuota).Inc()
		return errTotalQuota
	case s.perUser[user] >= s.cfg.MaxAllocationsPerUser:
		s.metrics.refusals.WithLabelValues(refuseUserQuota).Inc()
		return errUserQuota
	}
	s.total++
	s.perUser[user]++
	return nil
}

func (s *Server) release(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.perUser[user] <= 1 {
		delete(s.perUser, user)
	} else {
		s.perUser[user]--
	}
	if s.total == 0 {
		s.idle.Broadcast()
	}
}

// pendingTimeout is how long an allocation that passed the quota check is
// counted against its client address before pion reports it created; one
// that failed (no free port, …) is forgotten after it.
const pendingTimeout = 5 * time.Second

// pendingAlloc is an allocation that passed the quota check and is being
// made: it already counts against its client address, so that concurrent
// Allocate requests from one address (over several TCP connections) cannot
// overshoot the per-address quota.
type pendingAlloc struct {
	addr  netip.Prefix
	timer *time.Timer
}

// addrKey is what the per-address quota counts by: the client's IPv4
// address, or the /64 of its IPv6 address (one host commonly holds a whole
// /64).
func addrKey(a net.Addr) (netip.Prefix, bool) {
	var ip netip.Addr
	switch v := a.(type) {
	case *net.UDPAddr:
		ip = v.AddrPort().Addr()
	case *net.TCPAddr:
		ip = v.AddrPort().Addr()
	default:
		return netip.Prefix{}, false
	}
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32), true
	}
	p, _ := ip.Prefix(64)
	return p, true
}

// clientKey names a client transport address (one allocation at most per
// client transport address and listener).
func clientKey(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.Network() + " " + a.String()
}

// holderKey names the allocations a user holds from one client transport address.
func holderKey(src net.Addr, user string) string { return clientKey(src) + "\x00" + user }

// quotaHandler answers pion's quota question before the allocation is made,
// so that a client over quota gets 486 (Allocation Quota Reached). The
// per-user and total counts are taken again in AllocatePacketConn; the
// per-address count is taken here (AllocatePacketConn does not know the
// client), as a pending allocation until pion reports it created.
func (s *Server) quotaHandler(userID, _ string, srcAddr net.Addr) bool {
	addr, addrOK := addrKey(srcAddr)
	ck := clientKey(srcAddr)
	s.mu.Lock()
	_, already := s.pending[ck]
	reason := ""
	switch {
	case s.total >= s.cfg.MaxAllocations:
		reason = refuseTotalQuota
	case s.perUser[userID] >= s.cfg.MaxAllocationsPerUser:
		reason = refuseUserQuota
	case addrOK && !already && s.perAddr[addr] >= s.cfg.MaxAllocationsPerAddress:
		reason = refuseAddressQuota
	}
	if reason == "" && addrOK && !already && !s.closing {
		p := &pendingAlloc{addr: addr}
		p.timer = time.AfterFunc(pendingTimeout, func() { s.pendingExpired(ck, p) })
		s.pending[ck] = p
		s.perAddr[addr]++
	}
	s.mu.Unlock()
	if reason == "" {
		return true
	}
	s.metrics.refusals.WithLabelValues(reason).Inc()
	attrs := []slog.Attr{slog.String("reason", reason), slog.String("user", clip(userID)), slog.String("client", addrString(srcAddr))}
	switch reason {
	case refuseAddressQuota:
		attrs = append(attrs, slog.Int("limit", s.cfg.MaxAllocationsPerAddress), slog.String("address", addr.String()))
	case refuseUserQuota:
		attrs = append(attrs, slog.Int("limit", s.cfg.MaxAllocationsPerUser))
	case refuseTotalQuota:
		attrs = append(attrs, slog.Int("limit", s.cfg.MaxAllocations))
	}
	s.warnLimited("turn allocation refused", attrs...)
	return false
}

// pendingExpired forgets an allocation that passed the quota check but was
// never created.
func (s *Server) pendingExpired(ck string, p *pendingAlloc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[ck] == p {
		delete(s.pending, ck)
		s.decAddrLocked(p.addr)
	}
}

func (s *Server) decAddrLocked(addr netip.Prefix) {
	if s.perAddr[addr] <= 1 {
		delete(s.perAddr, addr)
	} else {
		s.perAddr[addr]--
	}
}

// allocationCreated registers what pion reports of a new allocation: its
// client (the per-address count moves from the pending allocation to the
// relay), its 5-tuple (for events) and its holder (for the credential check).
func (s *Server) allocationCreated(rc *relayConn, src, dst net.Addr, userID string) {
	ck := clientKey(src)
	addr, addrOK := addrKey(src)
	key := tupleKey(src, dst)
	if rc != nil {
		rc.infoMu.Lock()
		rc.client = addrString(src)
		rc.tuple = key
		rc.created = time.Now()
		rc.infoMu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pending[ck]; p != nil {
		delete(s.pending, ck)
		p.timer.Stop()
		addr, addrOK = p.addr, true
	} else if addrOK {
		s.perAddr[addr]++ // not seen by the quota check (not expected)
	}
	if rc == nil || s.relays[rc.port] != rc {
		// Already closed: nothing holds the count.
		if addrOK {
			s.decAddrLocked(addr)
		}
		return
	}
	s.tuples[key] = rc
	rc.addr, rc.addrCounted = addr, addrOK
	rc.holder = holderKey(src, userID)
	s.holders[rc.holder]++
}

// holds reports whether an open allocation of user was made from the client
// transport address src.
func (s *Server) holds(src net.Addr, user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holders[holderKey(src, user)] > 0
}

// relayConn wraps one allocation's relay socket. Packets from peers pass
// only if the client holds a permission for the peer's IP (tracked from
// pion's permission events; pion would drop them anyway, but only after
// logging each one) and fit the bandwidth cap; packets to peers must fit the
// cap. Everything that passes is counted in the metrics.
type relayConn struct {
	net.PacketConn
	s     *Server
	user  string
	port  int
	probe bool

	permMu sync.RWMutex
	perms  map[netip.Addr]struct{}

	rx, tx *tokenBucket // nil without a cap

	closeOnce  sync.Once
	readerDone sync.Once
	expiry     *time.Timer // allocation-lifetime without Refresh; nil for probes

	bytesIn, bytesOut atomic.Int64 // from peers, to peers

	// Set under s.mu when pion reports the allocation created; given back
	// under s.mu on Close.
	addr        netip.Prefix // the client address the allocation counts against
	addrCounted bool
	holder      string // holderKey, "" until created

	// Set once pion reports the allocation created.
	infoMu  sync.Mutex
	client  string
	tuple   string
	created time.Time
}

func newRelayConn(s *Server, pc net.PacketConn, user string, port int, probe bool) *relayConn {
	rc := &relayConn{PacketConn: pc, s: s, user: user, port: port, probe: probe, perms: map[netip.Addr]struct{}{}}
	if lim := s.cfg.BandwidthLimit; lim > 0 {
		rc.rx = newTokenBucket(lim)
		rc.tx = newTokenBucket(lim)
	}
	if !probe {
		rc.expiry = time.AfterFunc(s.cfg.AllocationLifetime, rc.expire)
	}
	return rc
}

// expire ends an allocation that was not refreshed in time: closing the
// relay socket makes pion's relay loop delete the allocation.
func (rc *relayConn) expire() {
	rc.s.log.Info("turn allocation expired", slog.String("user", clip(rc.user)),
		slog.String("relay", rc.relayAddr()), slog.Duration("lifetime", rc.s.cfg.AllocationLifetime))
	_ = rc.Close()
}

// refreshed restarts the lifetime clock after a Refresh.
func (rc *relayConn) refreshed() {
	if rc.expiry != nil {
		rc.expiry.Reset(rc.s.cfg.AllocationLifetime)
	}
}

func (rc *relayConn) relayAddr() string {
	return net.JoinHostPort(rc.s.cfg.RelayIP.String(), strconv.Itoa(rc.port))
}

func (rc *relayConn) addPerm(ip net.IP) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return
	}
	rc.permMu.Lock()
	rc.perms[a.Unmap()] = struct{}{}
	rc.permMu.Unlock()
}

func (rc *relayConn) removePerm(ip net.IP) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return
	}
	rc.permMu.Lock()
	delete(rc.perms, a.Unmap())
	rc.permMu.Unlock()
}

func (rc *relayConn) permitted(a netip.Addr) bool {
	rc.permMu.RLock()
	_, ok := rc.perms[a]
	rc.permMu.RUnlock()
	return ok
}

// ReadFrom returns the next packet from a permitted peer within the cap.
func (rc *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := rc.PacketConn.ReadFrom(p)
		if err != nil {
			if !rc.probe {
				rc.readerDone.Do(rc.s.liveDone) // pion's relay loop ends
			}
			return n, addr, err
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok || !rc.permitted(ua.AddrPort().Addr().Unmap()) {
			rc.s.metrics.dropNoPermission.Inc()
			continue
		}
		if !rc.s.policy.allowedAddrPort(ua.AddrPort()) {
			rc.s.metrics.dropPeerPortIn.Inc()
			continue
		}
		if rc.rx != nil && !rc.rx.take(n) {
			rc.s.metrics.dropBandwidthCli.Inc()
			continue
		}
		rc.bytesIn.Add(int64(n))
		rc.s.metrics.bytesToClient.Add(float64(n))
		rc.s.metrics.packetsToClient.Inc()
		return n, addr, nil
	}
}

// WriteTo sends a packet to a peer (pion has checked the permission for
// its IP; under the narrow policy the port is checked here); over the cap it
// is dropped as a congested network would.
func (rc *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if rc.s.policy.narrow() {
		ua, ok := addr.(*net.UDPAddr)
		if !ok || !rc.s.policy.allowedAddrPort(ua.AddrPort()) {
			rc.s.metrics.dropPeerPortOut.Inc()
			rc.s.logLimited(slog.LevelInfo, "turn packet to a peer port not allowed dropped",
				slog.String("user", clip(rc.user)), slog.String("peer", addrString(addr)))
			return len(p), nil // dropped like a packet the network lost; pion would log an error per packet
		}
	}
	if rc.tx != nil && !rc.tx.take(len(p)) {
		rc.s.metrics.dropBandwidthPeer.Inc()
		return len(p), nil
	}
	n, err := rc.PacketConn.WriteTo(p, addr)
	if n > 0 {
		rc.bytesOut.Add(int64(n))
		rc.s.metrics.bytesToPeer.Add(float64(n))
		rc.s.metrics.packetsToPeer.Inc()
	}
	return n, err
}

// Close closes the relay socket and gives the allocation's quota back. pion
// calls it when the allocation is deleted; turnd calls it on expiry and on
// shutdown. Only the first call counts.
func (rc *relayConn) Close() error {
	var err error // a second Close is not an error: pion closes after turnd did
	rc.closeOnce.Do(func() {
		err = rc.PacketConn.Close()
		if rc.probe {
			return
		}
		rc.expiry.Stop()
		rc.infoMu.Lock()
		client, tuple, created := rc.client, rc.tuple, rc.created
		rc.infoMu.Unlock()
		rc.s.mu.Lock()
		if rc.s.relays[rc.port] == rc {
			delete(rc.s.relays, rc.port)
		}
		if tuple != "" && rc.s.tuples[tuple] == rc {
			delete(rc.s.tuples, tuple)
		}
		if rc.addrCounted {
			rc.s.decAddrLocked(rc.addr)
			rc.addrCounted = false
		}
		if rc.holder != "" {
			if rc.s.holders[rc.holder] <= 1 {
				delete(rc.s.holders, rc.holder)
			} else {
				rc.s.holders[rc.holder]--
			}
			rc.holder = ""
		}
		rc.s.mu.Unlock()
		rc.s.release(rc.user)
		attrs := []slog.Attr{
			slog.String("user", clip(rc.user)),
			slog.String("client", client),
			slog.String("relay", rc.relayAddr()),
			slog.Int64("bytes_to_peer", rc.bytesOut.Load()),
			slog.Int64("bytes_to_client", rc.bytesIn.Load()),
		}
		if !created.IsZero() {
			attrs = append(attrs, slog.Duration("age", time.Since(created).Round(time.Millisecond)))
		}
		rc.s.log.LogAttrs(context.Background(), slog.LevelInfo, "turn allocation closed", attrs...)
	})
	return err
}

// tokenBucket is a byte-rate limiter: rate bytes per second with a burst of
// a quarter second (at least four full-size packets).
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate int64) *tokenBucket {
	burst := max(float64(rate)/4, 4*1600)
	return &tokenBucket{rate: float64(rate), burst: burst, tokens: burst, last: time.Now()}
}

func (b *tokenBucket) take(n int) bool {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens = min(b.burst, b.tokens+d*b.rate)
		b.last = now
	}
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}
