// Package sfu is Parley's media plane: a selective forwarding unit on Pion.
//
// Each participant has a Peer. A Peer publishes each of its streams on a
// peer connection of its own (the client offers, the SFU answers) and receives
// every other stream of its room on one subscribe connection that the SFU
// offers and renegotiates as streams come and go. Published tracks fan out to
// subscribers through per-subscriber bounded queues, so a slow subscriber only
// loses its own packets. docs/architecture.md explains the choices.
package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/pkg/bwe"
	"github.com/parley/parley/pkg/codec/av1dd"
	"github.com/parley/parley/pkg/pionlog"
	"github.com/parley/parley/pkg/srtpkeys"
	"github.com/parley/parley/pkg/udpbatch"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/webrtc/v4"
)

// Config configures the media plane.
type Config struct {
	// ListenIP is the address the media ports bind to; empty means all interfaces.
	ListenIP string
	// UDPPort is the single UDP port every ICE/UDP connection shares (UDP mux).
	UDPPort int
	// TCPPort is the single ICE-TCP port; 0 disables ICE-TCP and a negative
	// value picks any free port (tests).
	TCPPort int
	// PublicIPs are announced instead of the host addresses (NAT 1:1, e.g. a cloud VM).
	PublicIPs []string
	// LocalCandidates makes the SFU try client candidates on loopback,
	// link-local, unspecified, multicast and broadcast addresses, which it
	// otherwise ignores (candidates.go). They are always tried when ListenIP
	// is a loopback address: the server serves on loopback, so its clients
	// are on this machine (development and tests).
	LocalCandidates bool
	// QueueSize bounds each subscriber's packet queue; a full queue drops.
	QueueSize int
	// Logger receives the media plane's logs.
	Logger *slog.Logger
	// Estimate bounds each subscribe connection's bandwidth estimate.
	Estimate bwe.Config
	// ForwardDelay, if set, observes in seconds how long packets spend in
	// the SFU: from the read of a publisher's packet to the system call that
	// sends it to a subscriber. One observation per subscriber per writer
	// pass, for the oldest packet the pass sent it (a prometheus.Histogram fits).
	ForwardDelay Observer
	// ICE tunes the connections' ICE timers; zero values keep pion's.
	ICE ICETimeouts
	// Faults injects faults for tests; the zero value injects none.
	Faults Faults
	// Quality, if set, observes each subscriber receiver report's figures
	// about a track (prometheus.Histograms fit); QualityInterval is how
	// often each subscriber is told its own (QualitySignal; 2 s when 0).
	Quality         QualityObservers
	QualityInterval time.Duration
}

// QualityObservers take the figures of subscribers' receiver reports: the
// fraction lost (0 to 1), the interarrival jitter and the round trip, in
// seconds. Any may be nil.
type QualityObservers struct {
	Loss, Jitter, RTT Observer
}

// ICETimeouts are the ICE agents' timers (pion's defaults when zero).
type ICETimeouts struct {
	// Disconnected is how long a connection hears nothing from its peer
	// (no media, no consent check answered) before it is disconnected
	// (5 s); Failed before it has failed (25 s, under RFC 7675's 30 s of
	// consent): a subscribe connection stops sending then (direct.go).
	Disconnected, Failed time.Duration
	// Keepalive is how often a connection checks its peer's consent (2 s).
	Keepalive time.Duration
}

// Faults are faults a test makes the media plane suffer.
type Faults struct {
	// WrongSRTPKeys makes the direct send path encrypt with keys other than
	// the connection's, as a pion upgrade that changed how they are made
	// would: the receiver can open none of it (direct.go's progress check).
	WrongSRTPKeys bool
}

// Observer takes one measurement.
type Observer interface {
	Observe(float64)
}

// Engine owns the shared parts of the media plane: the webrtc API of publish
// connections, what every subscribe connection's API is made of (each has
// its own, to recover its SRTP keys: direct.go), and the UDP and TCP muxes.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	pubAPI *webrtc.API
	// pubAPIAV1 is for publish connections whose offer prefers AV1.
	pubAPIAV1 *webrtc.API
	// sub is the subscribe connections' media engine and settings; subAPI
	// makes one connection's API from them.
	sub    apiParts
	udp    ice.UDPMux
	udpNet *batchNet
	tcp    ice.TCPMux
	tcpLn  net.Listener
	pool   *packetPool
	// writers write every subscriber's media (writers.go).
	writers *writerPool

	// localCandidates: client candidates on local-only addresses are tried.
	localCandidates   bool
	ignoredCandidates atomic.Uint64

	// hooks let tests run code at chosen points; all nil in production.
	hooks testHooks

	mu      sync.Mutex
	routers map[*Router]struct{}
	// Totals of closed subscribers and publications, so the counters in
	// Stats never go back when a participant leaves.
	retiredSent, retiredDropped, retiredReceived atomic.Uint64
	retiredNACKed, retiredRetransmitted          atomic.Uint64
	retiredRtxLate, retiredRtxOver               atomic.Uint64
	// What happened to subscribe connections' send paths (direct.go).
	pathStops, fallbacksNoRoute, fallbacksNoProgress, fallbacksRefused atomic.Uint64
	guardRefused                                                       atomic.Uint64
	// The quality loop (quality.go).
	qualityDone chan struct{}
	qualityOnce sync.Once
	qualityWG   sync.WaitGroup
}

// testHooks are points where tests interleave code with the engine's.
type testHooks struct {
	// publishConnMade runs when a publication has made its connection and
	// has not stored it yet.
	publishConnMade func(*publication, *webrtc.PeerConnection)
}

// Stats are the media plane's packet counters since start.
type Stats struct {
	// Received counts RTP packets read from publishers.
	Received uint64
	// Forwarded counts packets written to subscribers.
	Forwarded uint64
	// Dropped counts packets dropped on full subscriber queues.
	Dropped uint64
	// NACKed counts the sequence numbers subscribers asked for again, and
	// Retransmitted the packets sent again for them; RetransmitLate those
	// not sent again because they could not arrive in time to be of use,
	// RetransmitOverBudget because the subscriber's retransmission budget
	// was spent.
	NACKed, Retransmitted                uint64
	RetransmitLate, RetransmitOverBudget uint64
	// UDP counts the media UDP sockets' writes: datagrams, messages and
	// system calls (batching makes calls far fewer than datagrams).
	UDP udpbatch.Stats
	// DirectSubscribers and PionSubscribers count the live subscribe
	// connections that send RTP on the direct path and through pion's SRTP
	// session (direct.go).
	DirectSubscribers, PionSubscribers int
	// PathStops counts subscribe connections that stopped sending because
	// ICE failed (their peer's consent expired): they resume on a new
	// selected pair.
	PathStops uint64
	// FallbacksNoRoute and FallbacksNoProgress count subscribe connections
	// whose RTP went from the direct path to pion's: their selected pair is
	// on no socket of the SFU, or their receiver reports showed no progress
	// while the SFU sent (wrong keys). FallbacksRefused counts those that
	// could not fall back without reusing the keystream, and stopped.
	FallbacksNoRoute, FallbacksNoProgress, FallbacksRefused uint64
	// GuardRefused counts RTP and RTCP writes refused on pion's path of a
	// connection whose RTP goes on the direct path (the same keys).
	GuardRefused uint64
}

// Stats sums the counters of every live and closed subscriber and track.
func (e *Engine) Stats() Stats {
	st := Stats{Received: e.retiredReceived.Load(), Forwarded: e.retiredSent.Load(), Dropped: e.retiredDropped.Load(),
		NACKed: e.retiredNACKed.Load(), Retransmitted: e.retiredRetransmitted.Load(),
		RetransmitLate: e.retiredRtxLate.Load(), RetransmitOverBudget: e.retiredRtxOver.Load(), UDP: e.udpNet.stats()}
	e.mu.Lock()
	routers := make([]*Router, 0, len(e.routers))
	for r := range e.routers {
		routers = append(routers, r)
	}
	e.mu.Unlock()
	for _, r := range routers {
		for _, p := range r.peerList() {
			if p.sub != nil {
				ss := p.sub.stats()
				st.Forwarded += ss.Forwarded
				st.Dropped += ss.Dropped
				st.NACKed += ss.NACKed
				st.Retransmitted += ss.Retransmitted
				st.RetransmitLate += ss.RetransmitLate
				st.RetransmitOverBudget += ss.RetransmitOverBudget
				if out := p.sub.out.Load(); out != nil && out.viaPion {
					st.PionSubscribers++
				} else if out != nil {
					st.DirectSubscribers++
				}
			}
			for _, pub := range p.publications() {
				for _, f := range pub.allForwarders() {
					st.Received += f.received.Load()
				}
			}
		}
	}
	st.PathStops, st.GuardRefused = e.pathStops.Load(), e.guardRefused.Load()
	st.FallbacksNoRoute, st.FallbacksNoProgress, st.FallbacksRefused = e.fallbacksNoRoute.Load(), e.fallbacksNoProgress.Load(), e.fallbacksRefused.Load()
	return st
}

// Subscribers describes every live subscribe connection.
func (e *Engine) Subscribers() []SubscriberStats {
	e.mu.Lock()
	routers := make([]*Router, 0, len(e.routers))
	for r := range e.routers {
		routers = append(routers, r)
	}
	e.mu.Unlock()
	var out []SubscriberStats
	for _, r := range routers {
		for _, p := range r.peerList() {
			if p.sub != nil {
				out = append(out, p.sub.snapshot(r.session, p.name))
			}
		}
	}
	return out
}

// retire adds a closed subscriber's or track's counters to the totals
// (a scrape during a close may see them briefly missing).
func (e *Engine) retire(st Stats) {
	e.retiredSent.Add(st.Forwarded)
	e.retiredDropped.Add(st.Dropped)
	e.retiredReceived.Add(st.Received)
	e.retiredNACKed.Add(st.NACKed)
	e.retiredRetransmitted.Add(st.Retransmitted)
	e.retiredRtxLate.Add(st.RetransmitLate)
	e.retiredRtxOver.Add(st.RetransmitOverBudget)
}

// NewEngine opens the media ports and builds the webrtc APIs.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 512
	}
	if cfg.Estimate.Initial <= 0 {
		// Optimistic: a subscriber gets what it asks for from the start,
		// and the estimate comes down within a second or two on a link
		// that cannot carry it (a pessimistic start would make everyone
		// wait for probing to climb).
		cfg.Estimate.Initial = 2_500_000
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, pool: newPacketPool(), routers: make(map[*Router]struct{}),
		localCandidates: cfg.LocalCandidates || isLoopbackHost(cfg.ListenIP)}

	var udpOpts []ice.UDPMuxFromPortOption
	pionLogs := pionlog.Quiet(cfg.Logger.With("part", "pion"))
	bn, err := newBatchNet(cfg.Logger.With("part", "udp"))
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	e.udpNet = bn
	udpOpts = append(udpOpts, ice.UDPMuxFromPortWithNet(bn), ice.UDPMuxFromPortWithLoopback(), ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4),
		ice.UDPMuxFromPortWithLogger(pionLogs.NewLogger("udpmux")))
	if cfg.ListenIP != "" {
		want := net.ParseIP(cfg.ListenIP)
		if want == nil {
			return nil, fmt.Errorf("media listen address %q is not an IP address", cfg.ListenIP)
		}
		udpOpts = append(udpOpts, ice.UDPMuxFromPortWithIPFilter(func(ip net.IP) bool { return ip.Equal(want) }))
	}
	udp, err := ice.NewMultiUDPMuxFromPort(cfg.UDPPort, udpOpts...)
	if err != nil {
		return nil, fmt.Errorf("open media UDP port %d: %w (is another server using it? choose another with --udp-port)", cfg.UDPPort, err)
	}
	e.udp = udp

	if cfg.TCPPort != 0 {
		ln, err := net.Listen("tcp4", net.JoinHostPort(cfg.ListenIP, strconv.Itoa(max(cfg.TCPPort, 0))))
		if err != nil {
			_ = udp.Close()
			return nil, fmt.Errorf("open ICE-TCP port %d: %w (choose another with --tcp-port, or 0 to disable)", cfg.TCPPort, err)
		}
		e.tcpLn = ln
		// WriteBufferSize gives each TCP connection a bounded buffer and a
		// goroutine that drains it into the socket: a write never blocks (the
		// subscribers' writers rely on it, writers.go); a full buffer drops.
		// ReadBufferSize is the packets queued between a TCP connection's
		// reader and ICE: a full queue holds the reader back (TCP's own flow
		// control), it loses nothing, and every connection has one, even
		// those on UDP, as each gathers an ICE-TCP candidate: 8 entries
		// instead of 64 are 3 KB less per participant.
		e.tcp = ice.NewTCPMuxDefault(ice.TCPMuxParams{Listener: ln, ReadBufferSize: 8, WriteBufferSize: 4 << 20,
			Logger: pionLogs.NewLogger("tcpmux")})
	}

	pub, err := e.newAPIParts(true)
	if err != nil {
		e.Close()
		return nil, err
	}
	e.pubAPI = pub.api()
	// Publish connections whose offer prefers AV1 negotiate the dependency
	// descriptor, which describes AV1's layers (spatial.go); not the others:
	// Chromium publishing VP8 simulcast with it negotiated made its
	// receivers' pictures freeze after keyframe requests (e2e
	// TestWeakLinkPage: 1 to 4 freezes of the good pages in 3 of 4 runs, none
	// without it), and VP9 carries its layers in its payload.
	pubDD, err := e.newAPIParts(true)
	if err == nil {
		err = pubDD.media.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: av1dd.URI}, webrtc.RTPCodecTypeVideo)
	}
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("publish connections with the dependency descriptor: %w", err)
	}
	e.pubAPIAV1 = pubDD.api()
	if e.sub, err = e.newAPIParts(false); err != nil {
		e.Close()
		return nil, err
	}
	e.writers = newWriterPool(runtime.GOMAXPROCS(0), bn.flush, cfg.ForwardDelay)
	e.qualityDone = make(chan struct{})
	e.qualityWG.Add(1)
	go e.qualityLoop()
	return e, nil
}

// apiParts are what a webrtc.API is made of.
type apiParts struct {
	media    *webrtc.MediaEngine // copied by each peer connection
	registry *interceptor.Registry
	settings webrtc.SettingEngine
}

func (a apiParts) api() *webrtc.API {
	return webrtc.NewAPI(webrtc.WithMediaEngine(a.media), webrtc.WithInterceptorRegistry(a.registry),
		webrtc.WithSettingEngine(a.settings))
}

// subAPI returns an API for one subscribe connection, whose DTLS handshake
// keys goes to keys. A connection of its own, because pion's DTLS hooks
// are per SettingEngine; a few hundred bytes, next to the connection's
// hundreds of kilobytes.
func (e *Engine) subAPI(keys *srtpkeys.Capture, guard *pionGuard) *webrtc.API {
	parts := e.sub
	keys.Install(&parts.settings)
	// The guard is the only interceptor of a subscribe connection, and its
	// own (direct.go).
	parts.registry = &interceptor.Registry{}
	parts.registry.Add(guard)
	return parts.api()
}

// newAPIParts builds the API parts for publish connections (receive side:
// NACK generator, receiver reports, transport-wide CC feedback) or subscribe
// connections (send side: sender reports; NACKs are answered from each
// track's shared history).
func (e *Engine) newAPIParts(publish bool) (apiParts, error) {
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m, publish); err != nil {
		return apiParts{}, fmt.Errorf("register codecs: %w", err)
	}
	reg := &interceptor.Registry{}
	if publish {
		gen, err := nack.NewGeneratorInterceptor()
		if err != nil {
			return apiParts{}, fmt.Errorf("nack generator: %w", err)
		}
		reg.Add(gen)
		rr, err := report.NewReceiverInterceptor()
		if err != nil {
			return apiParts{}, fmt.Errorf("receiver reports: %w", err)
		}
		reg.Add(rr)
		if err := webrtc.ConfigureTWCCSender(m, reg); err != nil {
			return apiParts{}, fmt.Errorf("twcc feedback: %w", err)
		}
		// Simulcast: the layers of a track are told apart by their RTP
		// stream id (a=rid, and its header extension).
		if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
			return apiParts{}, fmt.Errorf("simulcast header extensions: %w", err)
		}
	} else {
		// No interceptors: NACKs are answered from each published track's
		// shared history (history.go), not by pion's responder, which copies
		// every packet once per subscriber; sender reports are written by the
		// subscriber's writer with the publisher's clock (report.go); the
		// writer stamps the transport-wide sequence numbers where it writes
		// each packet, and the RTCP readers feed the receiver's feedback to
		// the connection's estimator (pkg/bwe), on the direct send path and
		// on pion's alike.
	}

	s := webrtc.SettingEngine{LoggerFactory: pionlog.Quiet(e.log.With("part", "pion"))}
	s.SetICEUDPMux(e.udp)
	// One view of the host's interfaces for every connection, instead of a
	// netlink dump (and its memory) per ICE agent.
	s.SetNet(e.udpNet)
	nets := []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	if e.tcp != nil {
		s.SetICETCPMux(e.tcp)
		nets = append(nets, webrtc.NetworkTypeTCP4)
	}
	s.SetNetworkTypes(nets)
	s.SetIncludeLoopbackCandidate(true)
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if len(e.cfg.PublicIPs) > 0 {
		s.SetNAT1To1IPs(e.cfg.PublicIPs, webrtc.ICECandidateTypeHost)
	}
	s.SetLite(false)
	if t := e.cfg.ICE; t != (ICETimeouts{}) {
		d, f, k := t.Disconnected, t.Failed, t.Keepalive
		if d <= 0 {
			d = 5 * time.Second
		}
		if f <= 0 {
			f = 25 * time.Second
		}
		if k <= 0 {
			k = 2 * time.Second
		}
		s.SetICETimeouts(d, f, k)
	}
	return apiParts{media: m, registry: reg, settings: s}, nil
}

// Close releases the media ports. Routers must be closed first.
func (e *Engine) Close() error {
	var errs []error
	if e.tcp != nil {
		errs = append(errs, e.tcp.Close())
	}
	if e.tcpLn != nil {
		_ = e.tcpLn.Close()
	}
	if e.udp != nil {
		errs = append(errs, e.udp.Close())
	}
	if e.writers != nil {
		e.writers.close()
	}
	if e.qualityDone != nil {
		e.qualityOnce.Do(func() { close(e.qualityDone) })
		e.qualityWG.Wait()
	}
	return errors.Join(errs...)
}

// TCPAddr returns the ICE-TCP listen address, or nil.
func (e *Engine) TCPAddr() net.Addr {
	if e.tcpLn == nil {
		return nil
	}
	return e.tcpLn.Addr()
}

// UDPPort returns the port of the media UDP sockets (the UDP mux), or 0.
func (e *Engine) UDPPort() int {
	for _, a := range e.udp.GetListenAddresses() {
		if u, ok := a.(*net.UDPAddr); ok {
			return u.Port
		}
	}
	return 0
}
