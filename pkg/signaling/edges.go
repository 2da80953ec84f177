package signaling

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// AddressLimits bound what one client address may do, so that one host
// cannot take the server (an IPv6 client is counted by its /64, which one
// host commonly holds whole). Zero disables a limit. The defaults leave room
// for an office whose people all come from one NAT address.
type AddressLimits struct {
	// MaxSessions bounds the sessions (WebSockets) open at once.
	MaxSessions int
	// SessionsPerSecond bounds how fast new sessions may be opened, with
	// bursts of SessionBurst (default: twice the rate, at least 10).
	SessionsPerSecond float64
	SessionBurst      int
	// RoomsPerMinute bounds how many rooms may be created (a join to a room
	// that does not exist) per minute, with bursts of as many.
	RoomsPerMinute float64
}

// DefaultAddressLimits are the production defaults.
func DefaultAddressLimits() AddressLimits {
	return AddressLimits{MaxSessions: 100, SessionsPerSecond: 10, RoomsPerMinute: 30}
}

func (l AddressLimits) sessionBurst() int {
	if l.SessionBurst > 0 {
		return l.SessionBurst
	}
	return max(10, int(2*l.SessionsPerSecond))
}

func (l AddressLimits) roomBurst() int { return max(1, int(l.RoomsPerMinute)) }

// Refusals counts what the edge checks refused since start.
type Refusals struct {
	// Origin counts WebSocket requests from a page origin not allowed (403).
	Origin uint64
	// TooManySessions counts sessions refused because their address had
	// AddressLimits.MaxSessions open.
	TooManySessions uint64
	// SessionRate counts sessions refused over AddressLimits.SessionsPerSecond.
	SessionRate uint64
	// RoomRate counts joins refused over AddressLimits.RoomsPerMinute.
	RoomRate uint64
}

// addrState is one client address's counters.
type addrState struct {
	sessions int
	newSess  *bucket // nil: no rate limit
	rooms    *bucket // nil: no room limit
	last     time.Time
}

// bucket is a token bucket (rate per second, burst), used under the
// limiter's lock; unlike rate.Limiter it can give a token back.
type bucket struct {
	rate, burst, tokens float64
	at                  time.Time
}

func newBucket(perSecond float64, burst int) *bucket {
	return &bucket{rate: perSecond, burst: float64(burst), tokens: float64(burst)}
}

func (b *bucket) take(now time.Time) bool {
	if !b.at.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.at).Seconds()*b.rate)
	}
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) refund() { b.tokens = min(b.burst, b.tokens+1) }

// addrLimiter keeps the per-address counters. Addresses with no session open
// are forgotten once their buckets would have refilled, so the table stays as
// small as the set of recently active clients.
type addrLimiter struct {
	cfg AddressLimits
	// forget is how long an idle address is kept: long enough for its
	// buckets to refill, so forgetting it grants nothing.
	forget time.Duration

	mu        sync.Mutex
	addrs     map[netip.Prefix]*addrState
	lastSweep time.Time

	origin, tooMany, sessRate, roomRate atomic.Uint64
}

func newAddrLimiter(cfg AddressLimits) *addrLimiter {
	forget := 2 * time.Minute
	if cfg.SessionsPerSecond > 0 {
		forget = max(forget, time.Duration(float64(cfg.sessionBurst())/cfg.SessionsPerSecond*float64(time.Second)))
	}
	if cfg.RoomsPerMinute > 0 {
		forget = max(forget, time.Duration(float64(cfg.roomBurst())/cfg.RoomsPerMinute*float64(time.Minute)))
	}
	return &addrLimiter{cfg: cfg, forget: forget, addrs: make(map[netip.Prefix]*addrState)}
}

// stateLocked returns addr's state, making it.
func (l *addrLimiter) stateLocked(addr netip.Prefix, now time.Time) *addrState {
	st := l.addrs[addr]
	if st == nil {
		if now.Sub(l.lastSweep) > l.forget/2 {
			l.lastSweep = now
			for a, s := range l.addrs {
				if s.sessions == 0 && now.Sub(s.last) > l.forget {
					delete(l.addrs, a)
				}
			}
		}
		st = &addrState{}
		if l.cfg.SessionsPerSecond > 0 {
			st.newSess = newBucket(l.cfg.SessionsPerSecond, l.cfg.sessionBurst())
		}
		if l.cfg.RoomsPerMinute > 0 {
			st.rooms = newBucket(l.cfg.RoomsPerMinute/60, l.cfg.roomBurst())
		}
		l.addrs[addr] = st
	}
	st.last = now
	return st
}

// admitSession counts a new session of addr, or says why it is refused
// (code and a reason for people).
func (l *addrLimiter) admitSession(addr netip.Prefix) (code, reason string) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stateLocked(addr, now)
	if l.cfg.MaxSessions > 0 && st.sessions >= l.cfg.MaxSessions {
		l.tooMany.Add(1)
		return "TOO_MANY_SESSIONS", fmt.Sprintf("%d sessions are open from your address %s, the most allowed; "+
			"close some (other tabs or devices) and try again, or ask the operator to raise max_sessions_per_address",
			st.sessions, addrString(addr))
	}
	if st.newSess != nil && !st.newSess.take(now) {
		l.sessRate.Add(1)
		return "RATE_LIMITED", fmt.Sprintf("more than %g new sessions per second from your address %s; "+
			"wait a moment and try again", l.cfg.SessionsPerSecond, addrString(addr))
	}
	st.sessions++
	return "", ""
}

// sessionEnded gives back a session of addr.
func (l *addrLimiter) sessionEnded(addr netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.addrs[addr]; st != nil && st.sessions > 0 {
		st.sessions--
		st.last = time.Now()
	}
}

// reserveRoom takes one room creation of addr; cancel gives it back (the
// join failed). ok is false over the limit.
func (l *addrLimiter) reserveRoom(addr netip.Prefix) (cancel func(), ok bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stateLocked(addr, now)
	if st.rooms == nil {
		return func() {}, true
	}
	if !st.rooms.take(now) {
		l.roomRate.Add(1)
		return nil, false
	}
	return func() {
		l.mu.Lock()
		st.rooms.refund()
		l.mu.Unlock()
	}, true
}

func (l *addrLimiter) refusals() Refusals {
	return Refusals{Origin: l.origin.Load(), TooManySessions: l.tooMany.Load(), SessionRate: l.sessRate.Load(),
		RoomRate: l.roomRate.Load()}
}

// addrString shows an address key as people know it: the IPv4 address, or
// the IPv6 /64.
func addrString(p netip.Prefix) string {
	if p.Addr().Is4() {
		return p.Addr().String()
	}
	return p.String()
}

// addrKey is what per-address limits count by: an IPv4 address, or the /64
// of an IPv6 address.
func addrKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// clientAddr returns the address a request comes from: the peer of the TCP
// connection, or, when that peer is a trusted reverse proxy, the last
// address of X-Forwarded-For that is not one of the trusted proxies.
func clientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	peer = peer.Unmap().WithZone("")
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	if !isTrusted(peer) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // garbage: stop at the last hop that made sense
		}
		a = a.Unmap().WithZone("")
		if !isTrusted(a) {
			return a
		}
		peer = a
	}
	return peer
}

// originAllowed reports whether a WebSocket request may come from its page's
// origin: no Origin header (a client that is not a browser), the server's
// own origin, or one of allowed ("*" allows any).
func originAllowed(r *http.Request, allowed []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, a := range allowed {
		if a == "*" || strings.EqualFold(strings.TrimSuffix(a, "/"), origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}
