// Package turnserver is Parley's TURN server (RFC 8656) on pion/turn: UDP
// and TCP listeners for turn:, TLS for turns:, static and coturn-compatible
// REST credentials, per-user and total allocation quotas, an allocation
// lifetime, a per-allocation bandwidth cap, a deny-by-default policy for
// relaying to internal addresses, structured logs and Prometheus metrics.
//
// cmd/turnd runs it standalone; the SFU can embed it (one binary) with New
// and Close and mount MetricsHandler on its own HTTP server. The SFU hands
// out credentials with RESTCredentials.
package turnserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"
)

// closeWait bounds how long Close waits for pion's goroutines to finish.
const closeWait = 5 * time.Second

// Server is a running TURN server. Create it with New, stop it with Close.
type Server struct {
	cfg        Config
	log        *slog.Logger
	now        func() time.Time
	limiter    logLimiter
	metrics    *metrics
	policy     *peerPolicy
	staticKeys map[string][]byte // user -> MD5(user:realm:password)
	cert       atomic.Pointer[tls.Certificate]

	turn    *turn.Server
	udp     net.PacketConn
	tcp     *trackedListener
	tlsLn   *trackedListener
	tlsAddr net.Addr

	mu      sync.Mutex
	idle    *sync.Cond
	closing bool
	total   int                      // open allocations (relay sockets)
	perUser map[string]int           // open allocations per user id
	perAddr map[netip.Prefix]int     // open and pending allocations per client address (addrKey)
	pending map[string]*pendingAlloc // allocations past the quota check, not yet created, by client transport address
	holders map[string]int           // open allocations by client transport address and user id (holderKey)
	relays  map[int]*relayConn       // by relay port
	tuples  map[string]*relayConn    // by client 5-tuple (src|dst)
	conns   map[*trackedConn]struct{}
	live    int  // pion loops still running (listeners, TCP conns, relays)
	gaveUp  bool // Close stopped waiting for them

	closeOnce sync.Once
	closeErr  error
}

// New checks cfg, binds the listeners and starts serving.
func New(cfg Config) (*Server, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		now:        cfg.Now,
		policy:     newPeerPolicy(cfg.AllowPeers, cfg.OnlyPeers),
		staticKeys: make(map[string][]byte, len(cfg.Users)),
		perUser:    map[string]int{},
		perAddr:    map[netip.Prefix]int{},
		pending:    map[string]*pendingAlloc{},
		holders:    map[string]int{},
		relays:     map[int]*relayConn{},
		tuples:     map[string]*relayConn{},
		conns:      map[*trackedConn]struct{}{},
	}
	s.idle = sync.NewCond(&s.mu)
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.metrics = newMetrics(s)
	for name, pw := range cfg.Users {
		s.staticKeys[name] = turn.GenerateAuthKey(name, cfg.Realm, pw)
	}

	var tlsCfg *tls.Config
	switch {
	case cfg.TLSConfig != nil:
		tlsCfg = cfg.TLSConfig.Clone()
	case cfg.TLSCertFile != "":
		if err := s.ReloadCertificate(); err != nil {
			return nil, err
		}
		tlsCfg = &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return s.cert.Load(), nil
			},
		}
	}

	if err := s.listen(tlsCfg); err != nil {
		s.closeListeners()
		return nil, err
	}

	gen := relayGenerator{s: s}
	sc := turn.ServerConfig{
		Realm:              cfg.Realm,
		AuthHandler:        s.authHandler(),
		QuotaHandler:       s.quotaHandler,
		EventHandler:       s.eventHandler(),
		LoggerFactory:      pionLoggerFactory{s: s},
		AllocationLifetime: cfg.AllocationLifetime,
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn:            s.udp,
			RelayAddressGenerator: gen,
			PermissionHandler:     s.permissionHandler,
		}},
		ListenerConfigs: []turn.ListenerConfig{{
			Listener:              s.tcp,
			RelayAddressGenerator: gen,
			PermissionHandler:     s.permissionHandler,
		}},
	}
	if s.tlsLn != nil {
		sc.ListenerConfigs = append(sc.ListenerConfigs, turn.ListenerConfig{
			Listener:              s.tlsLn,
			RelayAddressGenerator: gen,
			PermissionHandler:     s.permissionHandler,
		})
	}
	ts, err := turn.NewServer(sc)
	if err != nil {
		s.closeListeners()
		return nil, fmt.Errorf("turnserver: start: %w", err)
	}
	s.turn = ts

	attrs := []any{
		slog.String("udp", s.udp.LocalAddr().String()),
		slog.String("tcp", s.tcp.Addr().String()),
		slog.String("realm", cfg.Realm),
		slog.String("relay_ip", cfg.RelayIP.String()),
		slog.String("relay_bind", cfg.RelayBind.String()),
		slog.String("relay_ports", portRangeString(cfg.RelayPortMin, cfg.RelayPortMax)),
		slog.Int("static_users", len(cfg.Users)),
		slog.Bool("rest_auth", cfg.AuthSecret != ""),
		slog.Int("allow_peers", len(cfg.AllowPeers)),
		slog.Int("max_allocations_per_user", cfg.MaxAllocationsPerUser),
		slog.Int("max_allocations_per_address", cfg.MaxAllocationsPerAddress),
	}
	if len(cfg.OnlyPeers) > 0 {
		only := make([]string, len(cfg.OnlyPeers))
		for i, p := range cfg.OnlyPeers {
			only[i] = p.String()
		}
		attrs = append(attrs, slog.Any("only_peers", only))
	} else {
		attrs = append(attrs, slog.String("peers", "public"))
	}
	if s.tlsAddr != nil {
		attrs = append(attrs, slog.String("tls", s.tlsAddr.String()))
	}
	s.log.Info("turn server listening", attrs...)
	return s, nil
}

func portRangeString(lo, hi uint16) string {
	if lo == 0 {
		return "system"
	}
	return strconv.Itoa(int(lo)) + "-" + strconv.Itoa(int(hi))
}

// listen binds UDP and TCP on the same port, and TLS if configured.
func (s *Server) listen(tlsCfg *tls.Config) error {
	host, port, _ := net.SplitHostPort(s.cfg.Listen) // checked in cfg.check
	var lastErr error
	for try := 0; try < 20; try++ {
		udp, err := net.ListenPacket("udp", s.cfg.Listen)
		if err != nil {
			return cfgErr("listen", fmt.Sprintf("cannot listen on UDP %s: %v", s.cfg.Listen, err),
				"free the port or choose another --listen address")
		}
		if uc, ok := udp.(*net.UDPConn); ok {
			_ = uc.SetReadBuffer(1 << 20)
			_ = uc.SetWriteBuffer(1 << 20)
		}
		tcpAddr := net.JoinHostPort(host, strconv.Itoa(udp.LocalAddr().(*net.UDPAddr).Port))
		tcp, err := net.Listen("tcp", tcpAddr)
		if err != nil {
			_ = udp.Close()
			lastErr = err
			if port == "0" {
				continue // the free UDP port is taken for TCP: try another
			}
			return cfgErr("listen", fmt.Sprintf("cannot listen on TCP %s: %v", tcpAddr, err),
				"free the port or choose another --listen address")
		}
		s.live += 2
		s.udp = &servingPacketConn{PacketConn: udp, done: s.liveDone}
		s.tcp = &trackedListener{Listener: tcp, s: s, done: s.onceLiveDone()}
		lastErr = nil
		break
	}
	if lastErr != nil {
		return cfgErr("listen", fmt.Sprintf("no port free for both UDP and TCP on %s: %v", host, lastErr),
			"choose a fixed --listen port")
	}
	if tlsCfg != nil {
		ln, err := net.Listen("tcp", s.cfg.TLSListen)
		if err != nil {
			return cfgErr("tls-listen", fmt.Sprintf("cannot listen on TCP %s: %v", s.cfg.TLSListen, err),
				"free the port or choose another --tls-listen address")
		}
		s.live++
		s.tlsLn = &trackedListener{Listener: ln, s: s, tlsCfg: tlsCfg, done: s.onceLiveDone()}
		s.tlsAddr = ln.Addr()
	}
	return nil
}

// closeListeners is used when New fails half-way.
func (s *Server) closeListeners() {
	if s.udp != nil {
		_ = s.udp.Close()
	}
	if s.tcp != nil {
		_ = s.tcp.Close()
	}
	if s.tlsLn != nil {
		_ = s.tlsLn.Close()
	}
}

// ReloadCertificate reads TLSCertFile and TLSKeyFile again (for renewed
// certificates; cmd/turnd calls it on SIGHUP). New connections use the new
// certificate. It is a no-op without certificate files.
func (s *Server) ReloadCertificate() error {
	if s.cfg.TLSCertFile == "" {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
	if err != nil {
		return cfgErr("tls-cert", fmt.Sprintf("cannot load %s / %s: %v", s.cfg.TLSCertFile, s.cfg.TLSKeyFile, err),
			"give a PEM certificate (chain) in --tls-cert and its PEM private key in --tls-key")
	}
	s.cert.Store(&cert)
	return nil
}

// Addr is the UDP listening address (turn:?transport=udp).
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// TCPAddr is the TCP listening address (turn:?transport=tcp).
func (s *Server) TCPAddr() net.Addr { return s.tcp.Addr() }

// TLSAddr is the TLS listening address (turns:), nil without TLS.
func (s *Server) TLSAddr() net.Addr { return s.tlsAddr }

// AllocationCount is the number of allocations open now.
func (s *Server) AllocationCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Close stops the server: it closes the listeners, every client connection
// and every allocation, and waits (boundedly) for the serving goroutines.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		for ck, p := range s.pending {
			p.timer.Stop()
			delete(s.pending, ck)
			s.decAddrLocked(p.addr)
		}
		s.mu.Unlock()

		err := s.turn.Close()

		s.mu.Lock()
		conns := make([]*trackedConn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		relays := make([]*relayConn, 0, len(s.relays))
		for _, rc := range s.relays {
			relays = append(relays, rc)
		}
		s.mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
		for _, rc := range relays {
			_ = rc.Close()
		}

		deadline := time.AfterFunc(closeWait, func() {
			s.mu.Lock()
			s.gaveUp = true
			s.idle.Broadcast()
			s.mu.Unlock()
		})
		s.mu.Lock()
		for (s.live > 0 || s.total > 0) && !s.gaveUp {
			s.idle.Wait()
		}
		timedOut := s.gaveUp
		s.mu.Unlock()
		deadline.Stop()
		if timedOut {
			err = errors.Join(err, errors.New("turnserver: close: goroutines still running after 5s"))
		}
		s.log.Info("turn server stopped")
		s.closeErr = err
	})
	return s.closeErr
}

// liveDone marks one pion loop as finished.
func (s *Server) liveDone() {
	s.mu.Lock()
	s.live--
	s.idle.Broadcast()
	s.mu.Unlock()
}

func (s *Server) onceLiveDone() func() {
	var once sync.Once
	return func() { once.Do(s.liveDone) }
}

// addConn tracks a new TCP/TLS client connection, or refuses it when
// MaxTCPConnections are open or the server is closing.
func (s *Server) addConn(c net.Conn) (*trackedConn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || len(s.conns) >= s.cfg.MaxTCPConnections {
		return nil, false
	}
	tc := &trackedConn{Conn: c, s: s, idle: s.cfg.AllocationLifetime + idleMargin}
	s.conns[tc] = struct{}{}
	s.live++
	return tc, true
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) removeConn(c *trackedConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) tcpConnCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// permissionHandler applies the peer policy to CreatePermission, ChannelBind
// and Connect requests.
func (s *Server) permissionHandler(clientAddr net.Addr, peerIP net.IP) bool {
	if s.policy.allowedIP(peerIP) {
		return true
	}
	s.metrics.peerDenied.Inc()
	s.logLimited(slog.LevelInfo, "turn peer denied by policy",
		slog.String("client", addrString(clientAddr)), slog.String("peer", peerIP.String()))
	return false
}

func tupleKey(src, dst net.Addr) string {
	return addrString(src) + "|" + addrString(dst)
}

func (s *Server) relayByAddr(a net.Addr) *relayConn {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.relays[ua.Port]
}

// relayForEvent finds the open allocation an event is about: by the client's
// 5-tuple, checked against the relay port (a late event of a closed
// allocation must not touch a new one that reuses the port).
func (s *Server) relayForEvent(src, dst, relayAddr net.Addr) *relayConn {
	ua, ok := relayAddr.(*net.UDPAddr)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := s.tuples[tupleKey(src, dst)]
	if rc == nil || rc.port != ua.Port {
		return nil
	}
	return rc
}

// eventHandler hooks pion's allocation events: logs, metrics, the
// permission sets of relayConns and the Refresh clock.
func (s *Server) eventHandler() turn.EventHandler {
	return turn.EventHandler{
		OnAuth: func(src, dst net.Addr, _, username, _, method string, verdict bool) {
			if !verdict {
				s.metrics.authFailures.WithLabelValues(authBadPassword).Inc()
				s.warnLimited("turn auth failed",
					slog.String("reason", authBadPassword),
					slog.String("username", clip(username)),
					slog.String("client", addrString(src)),
					slog.String("method", method))
				return
			}
			if method == "Refresh" {
				s.mu.Lock()
				rc := s.tuples[tupleKey(src, dst)]
				s.mu.Unlock()
				if rc != nil {
					rc.refreshed()
				}
			}
		},
		OnAllocationCreated: func(src, dst net.Addr, protocol, userID, _ string, relayAddr net.Addr, _ int) {
			s.metrics.allocationsTotal.Inc()
			rc := s.relayByAddr(relayAddr)
			s.allocationCreated(rc, src, dst, userID)
			s.log.Info("turn allocation created",
				slog.String("user", clip(userID)),
				slog.String("client", addrString(src)),
				slog.String("transport", s.transportName(dst)),
				slog.String("relay", addrString(relayAddr)))
		},
		OnPermissionCreated: func(src, dst net.Addr, _, _, _ string, relayAddr net.Addr, peer net.IP) {
			if rc := s.relayForEvent(src, dst, relayAddr); rc != nil {
				rc.addPerm(peer)
			}
		},
		OnPermissionDeleted: func(src, dst net.Addr, _, _, _ string, relayAddr net.Addr, peer net.IP) {
			if rc := s.relayForEvent(src, dst, relayAddr); rc != nil {
				rc.removePerm(peer)
			}
		},
	}
}

// transportName tells the client transport from the listener address.
func (s *Server) transportName(dst net.Addr) string {
	switch a := dst.(type) {
	case *net.UDPAddr:
		return "udp"
	case *net.TCPAddr:
		if t, ok := s.tlsAddr.(*net.TCPAddr); ok && t.Port == a.Port {
			return "tls"
		}
		return "tcp"
	}
	return "unknown"
}
