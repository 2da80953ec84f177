package loadtest

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/client"
)

// A shaped subscriber receives through a relay of this process that limits
// the server-to-client direction as a slow downlink does: a token bucket of
// the link's rate with a queue in front of it (packets wait while the queue
// holds at most its time's worth at the rate; beyond, they are dropped), as
// tc's tbf does. The client sends to the relay instead of the server (its
// server candidates are rewritten) and hides its own candidates, so the
// server learns only the relay's address from the connectivity checks: all
// of the connection's traffic crosses the relay, unprivileged, in this
// process. (docs/shaped-links.md has the kernel's way, for browsers.)

// shaper makes the relays of one shaped session.
type shaper struct {
	ctx   context.Context
	rate  float64       // bytes per second
	queue time.Duration // the queue's length at the rate

	mu     sync.Mutex
	links  map[string]*shapedLink // by the server's address
	closed bool
	wg     sync.WaitGroup
}

func newShaper(ctx context.Context, bps int, queue time.Duration) *shaper {
	return &shaper{ctx: ctx, rate: float64(bps) / 8, queue: queue, links: map[string]*shapedLink{}}
}

// ice returns the ICE options that route a client through the shaper.
func (sh *shaper) ice() client.ICEOptions {
	return client.ICEOptions{HideLocalCandidates: true, RewriteRemoteCandidate: sh.rewrite}
}

// rewrite replaces a server UDP candidate's address with its relay's and
// drops every other candidate.
func (sh *shaper) rewrite(cand string) string {
	f := strings.Fields(cand)
	// candidate:foundation component transport priority address port typ ...
	if len(f) < 8 || !strings.EqualFold(f[2], "udp") {
		return ""
	}
	server := net.JoinHostPort(f[4], f[5])
	l, err := sh.link(server)
	if err != nil {
		return ""
	}
	addr := l.client.LocalAddr().(*net.UDPAddr)
	f[4], f[5] = addr.IP.String(), strconv.Itoa(addr.Port)
	return strings.Join(f, " ")
}

// link returns (making it on first use) the relay towards server.
func (sh *shaper) link(server string) (*shapedLink, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closed {
		return nil, net.ErrClosed
	}
	if l := sh.links[server]; l != nil {
		return l, nil
	}
	to, err := netip.ParseAddrPort(server)
	if err != nil {
		return nil, err
	}
	l, err := newShapedLink(to, sh.rate, sh.queue)
	if err != nil {
		return nil, err
	}
	sh.links[server] = l
	sh.wg.Add(3)
	go func() { defer sh.wg.Done(); l.upstream() }()
	go func() { defer sh.wg.Done(); l.downstream() }()
	go func() { defer sh.wg.Done(); l.pace(sh.ctx) }()
	return l, nil
}

// stats sums the relays' counters.
func (sh *shaper) stats() (forwarded, dropped int64) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, l := range sh.links {
		forwarded += l.forwarded.Load()
		dropped += l.dropped.Load()
	}
	return forwarded, dropped
}

// close stops every relay and waits for them.
func (sh *shaper) close() {
	sh.mu.Lock()
	sh.closed = true
	for _, l := range sh.links {
		l.close()
	}
	sh.mu.Unlock()
	sh.wg.Wait()
}

// shapedLink relays one client's UDP to one server address.
type shapedLink struct {
	client, server *net.UDPConn // the client's side and the server's
	to             netip.AddrPort
	rate           float64 // bytes/s
	maxQueue       int     // bytes

	mu      sync.Mutex
	peer    netip.AddrPort // the client, from its first packet
	q       [][]byte
	queued  int
	wake    chan struct{}
	done    chan struct{}
	closeMu sync.Once

	forwarded, dropped atomic.Int64
}

func newShapedLink(to netip.AddrPort, rate float64, queue time.Duration) (*shapedLink, error) {
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	c, err := net.ListenUDP("udp4", lo)
	if err != nil {
		return nil, err
	}
	s, err := net.ListenUDP("udp4", lo)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = s.SetReadBuffer(1 << 20)
	return &shapedLink{client: c, server: s, to: to, rate: rate, maxQueue: max(int(rate*queue.Seconds()), 3000),
		wake: make(chan struct{}, 1), done: make(chan struct{})}, nil
}

// upstream relays the client's packets to the server as they come.
func (l *shapedLink) upstream() {
	buf := make([]byte, 2048)
	for {
		n, from, err := l.client.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		l.mu.Lock()
		l.peer = from
		l.mu.Unlock()
		_, _ = l.server.WriteToUDPAddrPort(buf[:n], l.to)
	}
}

// downstream queues the server's packets for the pacer, dropping those the
// queue has no room for.
func (l *shapedLink) downstream() {
	buf := make([]byte, 2048)
	for {
		n, _, err := l.server.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.queued+n > l.maxQueue {
			l.mu.Unlock()
			l.dropped.Add(1)
			continue
		}
		l.q = append(l.q, append([]byte(nil), buf[:n]...))
		l.queued += n
		l.mu.Unlock()
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// pace sends the queue to the client at the link's rate.
func (l *shapedLink) pace(ctx context.Context) {
	tokens, last := 0.0, time.Now()
	burst := max(l.rate*0.01, 1500) // 10 ms of the rate, at least a packet
	for {
		l.mu.Lock()
		var p []byte
		if len(l.q) > 0 {
			p = l.q[0]
		}
		peer := l.peer
		l.mu.Unlock()
		if p == nil {
			select {
			case <-l.wake:
				continue
			case <-l.done:
				return
			case <-ctx.Done():
				return
			}
		}
		now := time.Now()
		tokens = min(burst, tokens+l.rate*now.Sub(last).Seconds())
		last = now
		if tokens < float64(len(p)) {
			wait := time.Duration((float64(len(p)) - tokens) / l.rate * float64(time.Second))
			select {
			case <-time.After(wait):
			case <-l.done:
				return
			case <-ctx.Done():
				return
			}
			continue
		}
		tokens -= float64(len(p))
		l.mu.Lock()
		l.q = l.q[1:]
		l.queued -= len(p)
		l.mu.Unlock()
		if peer.IsValid() {
			if _, err := l.client.WriteToUDPAddrPort(p, peer); err != nil && errors.Is(err, net.ErrClosed) {
				return
			}
			l.forwarded.Add(1)
		}
	}
}

func (l *shapedLink) close() {
	l.closeMu.Do(func() {
		close(l.done)
		_ = l.client.Close()
		_ = l.server.Close()
	})
}
