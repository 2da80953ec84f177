// Package server assembles a Parley server from its parts: the media engine,
// the room registry, the signaling hub, the web app and the HTTP endpoints
// (/, /ws, /healthz, /metrics). cmd/sfu runs it; tests start it in-process.
package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parley/parley/pkg/access"
	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/mixer"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/room"
	"github.com/parley/parley/pkg/sfu"
	"github.com/parley/parley/pkg/signaling"
	"github.com/parley/parley/pkg/turnserver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config is everything a server needs.
type Config struct {
	// Addr is the HTTP listen address ("127.0.0.1:0" picks a free port).
	Addr      string
	TLSCert   string
	TLSKey    string
	Media     sfu.Config
	Rooms     room.Config
	Signaling signaling.Config
	// Web is the web app's file tree, served at /. Nil serves nothing there.
	Web fs.FS
	// TURN hands each session TURN servers with short-lived credentials.
	TURN TURNConfig
	// RecordsDir is where recordings go (<dir>/<room>/<room session>/);
	// empty disables recording.
	RecordsDir string
	// Mix, when set, mixes every finished recording into one file (pkg/mixer)
	// and runs its hook; the queue keeps its jobs in <RecordsDir>/.mixjobs
	// (never served).
	Mix *MixConfig
	// Recordings says who may read the recordings (private unless Public)
	// and bounds what a room session records.
	Recordings RecordingsConfig
	// EmbedTURN, when set, runs a TURN server (pkg/turnserver) in this
	// process; TURN.Secret becomes its REST secret and, when TURN.URLs is
	// empty, its address is announced.
	EmbedTURN *turnserver.Config
	// EmbedTURNPeers is where the embedded TURN server relays to:
	// TURNPeersSFU (the default) relays only to this server's media
	// addresses (and EmbedTURN.AllowPeers), TURNPeersPublic to any public
	// address, as a standalone turnd does.
	EmbedTURNPeers string
	// MetricsAddr, when set, serves /metrics on a listener of its own at
	// this address instead of on Addr.
	MetricsAddr string
	// HTTPTimeouts bound the HTTP server's waits for clients.
	HTTPTimeouts HTTPTimeouts
	// Auth is the access model (docs/security.md): who may join, publish,
	// moderate and read recordings.
	Auth AuthConfig
	// Clips, when set, turns on media messages: voice and video clips
	// posted to rooms (clips.go). They share the recordings' disk floor
	// (Recordings.MinFreeBytes).
	Clips  *ClipsConfig
	Logger *slog.Logger
}

// Access modes (AuthConfig.Mode).
const (
	// AuthOpen lets anyone join, publish, chat and record a room; moderation,
	// administration and the recordings archive still need a token.
	AuthOpen = access.ModeOpen
	// AuthToken takes every grant from a token or the room's preset.
	AuthToken = access.ModeToken
)

// AuthConfig is the server's access model.
type AuthConfig struct {
	// Mode is AuthOpen (the default when empty) or AuthToken.
	Mode string
	// Tokens verifies access tokens; nil accepts none.
	Tokens *auth.Verifier
	// URLs signs the links to recordings that the server hands out; nil
	// makes one with a random secret.
	URLs *auth.URLSigner
	// RoomsDir is the directory of room presets (configs/rooms/*.yaml:
	// passwords, default grants, limits, record policy, codecs); empty: none.
	RoomsDir string
}

// Values of Config.EmbedTURNPeers.
const (
	TURNPeersSFU    = "sfu"
	TURNPeersPublic = "public"
)

// MixConfig configures the offline mixer.
type MixConfig struct {
	Settings mixer.Settings
	// Workers is how many mixes run at once (default 1).
	Workers int
	// Hook runs after each mix with the output and manifest paths.
	Hook string
}

// TURNConfig describes the TURN servers clients are told about.
type TURNConfig struct {
	// URLs are turn:/turns: URLs ("turn:turn.example.com:3478?transport=udp").
	URLs []string
	// Secret is the REST-credential secret shared with the TURN server
	// (coturn's static-auth-secret, turnd's --auth-secret).
	Secret string
	// TTL is how long a session's credentials stay valid.
	TTL time.Duration
}

// DefaultTURNTTL is the lifetime of TURN credentials unless configured.
const DefaultTURNTTL = time.Hour

// iceServers returns the ICE servers of a participant admitted to a room:
// the TURN URLs with fresh REST credentials whose user name names the
// participant ("expiry:room/identity"), so that the TURN server's per-user
// quota applies per person.
func (t TURNConfig) iceServers(room, identity string) []protocol.ICEServer {
	if len(t.URLs) == 0 {
		return nil
	}
	ttl := t.TTL
	if ttl <= 0 {
		ttl = DefaultTURNTTL
	}
	user, pass := turnserver.RESTCredentials(t.Secret, TURNUser(room, identity), ttl, time.Now())
	return []protocol.ICEServer{{URLs: t.URLs, Username: user, Credential: pass}}
}

// maxTURNUserBytes bounds the user part of a TURN user name (turnd accepts
// user names up to 256 bytes, the expiry and its colon included).
const maxTURNUserBytes = 200

// TURNUser is the user part of a participant's TURN user name: "room/identity",
// each escaped so that it is plain ASCII without ':' (the REST scheme's
// separator) or '/'. A longer one ends in a hash of the whole, so that it
// still names one person.
func TURNUser(room, identity string) string {
	u := turnEscape(room) + "/" + turnEscape(identity)
	if len(u) <= maxTURNUserBytes {
		return u
	}
	sum := sha256.Sum256([]byte(room + "/" + identity))
	return u[:maxTURNUserBytes-17] + "~" + hex.EncodeToString(sum[:8])
}

// turnEscape percent-encodes every byte but ASCII letters, digits and -._@.
func turnEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._@", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Server is a running Parley server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	engine *sfu.Engine
	// forwardDelay is parley_forward_delay_seconds (sfu.Config.ForwardDelay).
	forwardDelay prometheus.Histogram
	// quality are the subscribers' receiver reports' loss, jitter and
	// round trip (sfu.Config.Quality).
	quality     []prometheus.Histogram
	rooms       *room.Registry
	access      *access.Policy
	hub         *signaling.Hub
	http        *http.Server
	ln          net.Listener
	metricsHTTP *http.Server // nil: /metrics is on http
	metricsLn   net.Listener
	served      chan error
	turn        *turnserver.Server
	recs        *recordings
	clips       *clipService
	mixes       *mixer.Queue
	stop        context.CancelFunc // ends the mix queue's work

	shutdownOnce sync.Once
	shutdownErr  error
}

// New opens the media ports and the HTTP listener; Serve starts serving.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Media.Logger = cfg.Logger.With("part", "sfu")
	ac := access.Config{Mode: cfg.Auth.Mode, Tokens: cfg.Auth.Tokens, RoomsDir: cfg.Auth.RoomsDir}
	if cfg.Clips != nil {
		ac.ClipDefaults = cfg.Clips.Defaults
	}
	policy, err := access.New(ac)
	if err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	cfg.Signaling.Access = policy
	if host, _, err := net.SplitHostPort(cfg.Addr); err == nil && cfg.Media.ListenIP == "" && loopbackHost(host) {
		// A server for this machine only (the default development set-up):
		// its clients' candidates on loopback are real.
		cfg.Media.LocalCandidates = true
	}
	forwardDelay := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "parley_forward_delay_seconds",
		Help: "Time packets spend in the SFU, from the read of a publisher's packet to the send to a subscriber " +
			"(the oldest packet of each burst to each subscriber).",
		Buckets: []float64{.0002, .0005, .001, .002, .003, .005, .0075, .01, .015, .02, .03, .05, .1, .2, .5, 1}})
	cfg.Media.ForwardDelay = forwardDelay
	quality := []prometheus.Histogram{
		prometheus.NewHistogram(prometheus.HistogramOpts{Name: "parley_subscriber_loss_ratio",
			Help:    "Fraction of packets lost, as subscribers' receiver reports give it for each track they receive (one observation per report).",
			Buckets: []float64{0, .005, .01, .02, .05, .1, .2, .5, 1}}),
		prometheus.NewHistogram(prometheus.HistogramOpts{Name: "parley_subscriber_jitter_seconds",
			Help:    "Interarrival jitter, as subscribers' receiver reports give it for each track they receive (one observation per report).",
			Buckets: []float64{.001, .002, .005, .01, .02, .03, .05, .1, .2, .5}}),
		prometheus.NewHistogram(prometheus.HistogramOpts{Name: "parley_subscriber_rtt_seconds",
			Help:    "Round trip to subscribers, measured from their receiver reports of the server's sender reports (one observation per report).",
			Buckets: []float64{.001, .005, .01, .02, .05, .1, .15, .2, .3, .5, 1, 2}}),
	}
	cfg.Media.Quality = sfu.QualityObservers{Loss: quality[0], Jitter: quality[1], RTT: quality[2]}
	engine, err := sfu.NewEngine(cfg.Media)
	if err != nil {
		return nil, err
	}
	var turn *turnserver.Server
	if cfg.EmbedTURN != nil {
		if turn, err = embedTURN(&cfg, engine); err != nil {
			_ = engine.Close()
			return nil, err
		}
	}
	if len(cfg.TURN.URLs) > 0 && cfg.Signaling.ICEServers == nil {
		cfg.Signaling.ICEServers = cfg.TURN.iceServers
	}
	rooms := room.NewRegistry(cfg.Rooms, cfg.Logger.With("part", "room"))
	if cfg.Auth.URLs == nil {
		cfg.Auth.URLs = auth.NewURLSigner(nil)
	}
	var recs *recordings
	var mixes *mixer.Queue
	if cfg.RecordsDir != "" {
		var err error
		recs, err = newRecordings(cfg.RecordsDir, cfg.Recordings, cfg.Auth.URLs, cfg.Logger.With("part", "recorder"))
		if err != nil {
			if turn != nil {
				_ = turn.Close()
			}
			_ = engine.Close()
			return nil, err
		}
		if cfg.Mix != nil {
			var err error
			mixes, err = mixer.NewQueue(mixer.QueueConfig{Dir: filepath.Join(cfg.RecordsDir, ".mixjobs"),
				Workers: cfg.Mix.Workers, Hook: cfg.Mix.Hook, Settings: cfg.Mix.Settings,
				Logger: cfg.Logger.With("part", "mixer")})
			if err != nil {
				if turn != nil {
					_ = turn.Close()
				}
				_ = engine.Close()
				recs.close()
				return nil, fmt.Errorf("mix queue: %w", err)
			}
		}
		recs.finished = func(manifest string) {
			if mixes == nil {
				return
			}
			if job, err := mixes.Enqueue(manifest); err != nil {
				cfg.Logger.Error("queue the mix", "manifest", manifest, "err", err)
			} else {
				cfg.Logger.Info("mix queued", "job", job.ID, "manifest", manifest)
			}
		}
		recs.rooms = rooms
		cfg.Signaling.OnRouter = recs.attach
	}
	var cs *clipService
	if cfg.Clips != nil {
		var err error
		if cs, err = newClipService(*cfg.Clips, cfg.Recordings.MinFreeBytes, rooms, cfg.Auth.URLs, policy,
			cfg.Logger.With("part", "clips")); err != nil {
			if turn != nil {
				_ = turn.Close()
			}
			_ = engine.Close()
			if recs != nil {
				recs.close()
			}
			if mixes != nil {
				_ = mixes.Close()
			}
			return nil, fmt.Errorf("media messages: %w", err)
		}
		cfg.Signaling.Clips = cs.participantAccess
	}
	// The hub's finalize hook closes the room's router (and so its streams'
	// files) before the recordings' hook closes the recording session.
	hub := signaling.NewHub(cfg.Signaling, rooms, engine, cfg.Logger.With("part", "signaling"))
	if recs != nil {
		rooms.OnFinalize(recs.finalized)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, engine: engine, access: policy, forwardDelay: forwardDelay, quality: quality, rooms: rooms, hub: hub, served: make(chan error, 1), turn: turn,
		recs: recs, clips: cs, mixes: mixes}

	closeAll := func() {
		_ = engine.Close()
		if turn != nil {
			_ = turn.Close()
		}
		if recs != nil {
			recs.close()
		}
		if cs != nil {
			cs.close()
		}
		if s.metricsLn != nil {
			_ = s.metricsLn.Close()
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("listen on %s: %w (is another server running? choose another with --addr)", cfg.Addr, err)
	}
	s.ln = ln
	if cs != nil && cs.cfg.PublicURL == "" {
		cs.cfg.PublicURL = s.URL()
	}
	if cfg.MetricsAddr != "" {
		if s.metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			_ = ln.Close()
			closeAll()
			return nil, fmt.Errorf("listen on %s for /metrics: %w (choose another with --metrics-addr)", cfg.MetricsAddr, err)
		}
	}
	t := cfg.HTTPTimeouts.withDefaults()
	metrics := s.metricsHandler()
	main := s.routes(metrics)
	// WebSocket sessions outlive these timeouts: the hub clears the
	// connection's deadlines after the upgrade and the session keeps its own.
	// No WriteTimeout: a recording download may take long on a slow link.
	s.http = &http.Server{Handler: main, ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read, IdleTimeout: t.Idle}
	if s.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics)
		s.metricsHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read, IdleTimeout: t.Idle}
	}
	return s, nil
}

// HTTPTimeouts bound how long the HTTP server waits for clients; zero
// fields take the defaults.
type HTTPTimeouts struct {
	// ReadHeader bounds reading a request's headers (default 10 s).
	ReadHeader time.Duration
	// Read bounds reading a whole request (default 30 s).
	Read time.Duration
	// Idle bounds how long a keep-alive connection waits for its next
	// request (default 120 s).
	Idle time.Duration
}

func (t HTTPTimeouts) withDefaults() HTTPTimeouts {
	if t.ReadHeader <= 0 {
		t.ReadHeader = 10 * time.Second
	}
	if t.Read <= 0 {
		t.Read = 30 * time.Second
	}
	if t.Idle <= 0 {
		t.Idle = 120 * time.Second
	}
	return t
}

func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// embedTURN starts the embedded TURN server: its REST secret is the one
// the credentials are made with, its URLs are announced unless others are
// configured, and it relays only to this server's media addresses unless
// EmbedTURNPeers says otherwise.
func embedTURN(cfg *Config, engine *sfu.Engine) (*turnserver.Server, error) {
	tc := *cfg.EmbedTURN
	if cfg.TURN.Secret == "" {
		cfg.TURN.Secret = randomID() + randomID()
	}
	tc.AuthSecret = cfg.TURN.Secret
	if tc.Logger == nil {
		tc.Logger = cfg.Logger.With("part", "turn")
	}
	switch cfg.EmbedTURNPeers {
	case "", TURNPeersSFU:
		tc.OnlyPeers = append(tc.OnlyPeers, engine.MediaAddrs()...)
		if len(tc.OnlyPeers) == 0 {
			return nil, errors.New("embedded TURN server: the media port has no address to relay to")
		}
	case TURNPeersPublic:
	default:
		return nil, fmt.Errorf("embedded TURN server: peers %q: use %q or %q", cfg.EmbedTURNPeers, TURNPeersSFU, TURNPeersPublic)
	}
	turn, err := turnserver.New(tc)
	if err != nil {
		return nil, fmt.Errorf("embedded TURN server: %w", err)
	}
	if len(cfg.TURN.URLs) == 0 {
		host := tc.RelayIP.String()
		if !tc.RelayIP.IsValid() {
			host, _, _ = net.SplitHostPort(turn.Addr().String())
		}
		port := turn.Addr().(*net.UDPAddr).Port
		cfg.TURN.URLs = []string{
			fmt.Sprintf("turn:%s?transport=udp", net.JoinHostPort(host, strconv.Itoa(port))),
			fmt.Sprintf("turn:%s?transport=tcp", net.JoinHostPort(host, strconv.Itoa(port))),
		}
	}
	return turn, nil
}

// routes is the main listener's handler; metrics is served there unless it
// has a listener of its own.
func (s *Server) routes(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/ws", s.hub)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		rooms, participants := s.rooms.Count()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "ok", "rooms": rooms, "participants": participants,
			"sessions": s.hub.Sessions()})
	})
	if s.metricsLn == nil {
		mux.Handle("/metrics", metrics)
	}
	if s.recs != nil {
		// Private unless configured public: recordings_api.go.
		mux.HandleFunc(recordsPrefix, s.serveRecord)
		mux.HandleFunc("GET /api/recordings", s.listRecordings)
		mux.HandleFunc("GET /api/recordings/{room}/{session}", s.getRecording)
	}
	if s.clips != nil {
		mux.HandleFunc("GET /api/rooms/{room}/clips", s.listClips)
		mux.HandleFunc("POST /api/rooms/{room}/clips", s.postClip)
		mux.HandleFunc("GET /api/rooms/{room}/clips/{id}", s.clipMedia)
		mux.HandleFunc("DELETE /api/rooms/{room}/clips/{id}", s.deleteClip)
	}
	if s.cfg.Web != nil {
		files := http.FileServerFS(s.cfg.Web)
		mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("Referrer-Policy", "no-referrer")
			files.ServeHTTP(w, r)
		}))
	}
	return mux
}

// metricsHandler serves the Prometheus metrics.
func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_rooms", Help: "Live rooms."},
		func() float64 { r, _ := s.rooms.Count(); return float64(r) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_participants", Help: "Participants in rooms."},
		func() float64 { _, p := s.rooms.Count(); return float64(p) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_sessions", Help: "Open signaling sessions."},
		func() float64 { return float64(s.hub.Sessions()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_received_packets_total",
		Help: "RTP packets received from publishers."}, func() float64 { return float64(s.engine.Stats().Received) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_forwarded_packets_total",
		Help: "RTP packets written to subscribers."}, func() float64 { return float64(s.engine.Stats().Forwarded) }))
	for _, via := range []string{"direct", "pion"} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_subscribe_connections",
			Help:        "Live subscribe connections, by how their RTP is sent: encrypted by Parley on its media socket (direct) or through pion's SRTP session (pion).",
			ConstLabels: prometheus.Labels{"rtp": via}}, func() float64 {
			st := s.engine.Stats()
			if via == "direct" {
				return float64(st.DirectSubscribers)
			}
			return float64(st.PionSubscribers)
		}))
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_subscribe_path_stops_total",
		Help: "Subscribe connections that stopped sending because ICE failed (the client's consent expired); they resume on a new candidate pair."},
		func() float64 { return float64(s.engine.Stats().PathStops) }))
	for reason, get := range map[string]func(sfu.Stats) uint64{
		"no_route":    func(st sfu.Stats) uint64 { return st.FallbacksNoRoute },
		"no_progress": func(st sfu.Stats) uint64 { return st.FallbacksNoProgress },
		"refused":     func(st sfu.Stats) uint64 { return st.FallbacksRefused },
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_subscribe_path_fallbacks_total",
			Help: "Subscribe connections whose RTP left the direct path for pion's SRTP session, by reason: no_route (the selected " +
				"candidate pair is on no socket of the server), no_progress (the receiver's reports showed nothing of what was sent: " +
				"wrong keys); refused: one that could not fall back without reusing the keystream, and stopped.",
			ConstLabels: prometheus.Labels{"reason": reason}}, func() float64 { return float64(get(s.engine.Stats())) }))
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_pion_path_refused_writes_total",
		Help: "RTP and RTCP writes refused on pion's SRTP session of a connection whose RTP goes on the direct path (the same keys)."},
		func() float64 { return float64(s.engine.Stats().GuardRefused) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_dropped_packets_total",
		Help: "RTP packets dropped because a subscriber's queue was full."}, func() float64 { return float64(s.engine.Stats().Dropped) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_udp_sent_datagrams_total",
		Help: "Datagrams the media UDP sockets sent."}, func() float64 { return float64(s.engine.Stats().UDP.Packets) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_udp_send_calls_total",
		Help: "Send system calls of the media UDP sockets (batched: sendmmsg with UDP GSO)."},
		func() float64 { return float64(s.engine.Stats().UDP.Calls) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_udp_send_errors_total",
		Help: "Datagrams the kernel refused to send."}, func() float64 { return float64(s.engine.Stats().UDP.Errors) }))
	reg.MustRegister(s.forwardDelay)
	s.clipMetrics(reg)
	for _, h := range s.quality {
		reg.MustRegister(h)
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_ignored_candidates_total",
		Help: "Client ICE candidates ignored because they name a loopback, link-local, unspecified or broadcast address, or a host name."},
		func() float64 { return float64(s.engine.IgnoredCandidates()) }))
	refusals := func(limit string, get func(signaling.Refusals) uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_refused_total",
			Help: "Requests refused at the edge, by limit: origin (a page origin not allowed, 403), " +
				"sessions_per_address (too many open, TOO_MANY_SESSIONS), session_rate (new sessions per second " +
				"per address, RATE_LIMITED), room_rate (rooms created per minute per address, RATE_LIMITED).",
			ConstLabels: prometheus.Labels{"limit": limit}}, func() float64 { return float64(get(s.hub.Refusals())) }))
	}
	refusals("origin", func(r signaling.Refusals) uint64 { return r.Origin })
	refusals("sessions_per_address", func(r signaling.Refusals) uint64 { return r.TooManySessions })
	refusals("session_rate", func(r signaling.Refusals) uint64 { return r.SessionRate })
	refusals("room_rate", func(r signaling.Refusals) uint64 { return r.RoomRate })
	gatherers := prometheus.Gatherers{reg}
	if s.turn != nil {
		gatherers = append(gatherers, s.turn.Registry())
	}
	return promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{})
}

// Addr returns the HTTP listen address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL returns the server's base URL (http or https).
func (s *Server) URL() string {
	scheme := "http"
	if s.cfg.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + s.ln.Addr().String()
}

// ReloadPresets reads the room presets again (SIGHUP). On an error the
// presets in force stay and the error says which file is wrong; nobody in a
// room is dropped either way. It returns how many presets are in force.
func (s *Server) ReloadPresets() (int, error) {
	ps, err := s.access.ReloadPresets()
	if err != nil {
		s.log.Error("room presets not reloaded; the previous ones stay in force", "dir", s.cfg.Auth.RoomsDir, "err", err)
		return s.access.Presets().Len(), err
	}
	s.log.Info("room presets reloaded", "dir", s.cfg.Auth.RoomsDir, "presets", ps.Len())
	return ps.Len(), nil
}

// TURN returns the embedded TURN server, or nil.
func (s *Server) TURN() *turnserver.Server { return s.turn }

// Media returns the media engine (its ports, for tests and logs).
func (s *Server) Media() *sfu.Engine { return s.engine }

// Rooms returns the room registry (for finalize hooks).
func (s *Server) Rooms() *room.Registry { return s.rooms }

// Serve serves HTTP in the background. Recordings a previous run left
// unfinished are closed first.
func (s *Server) Serve() {
	if s.recs != nil {
		s.recs.recover()
	}
	if s.mixes != nil {
		ctx, cancel := context.WithCancel(context.Background())
		s.stop = cancel
		s.mixes.Start(ctx)
	}
	if s.clips != nil {
		s.clips.start()
	}
	go func() {
		var err error
		if s.cfg.TLSCert != "" {
			err = s.http.ServeTLS(s.ln, s.cfg.TLSCert, s.cfg.TLSKey)
		} else {
			err = s.http.Serve(s.ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.served <- err
	}()
	if s.metricsHTTP != nil {
		go func() {
			if err := s.metricsHTTP.Serve(s.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("metrics server", "err", err)
			}
		}()
	}
}

// MetricsAddr returns the address of the /metrics listener when it has one
// of its own, else nil.
func (s *Server) MetricsAddr() net.Addr {
	if s.metricsLn == nil {
		return nil
	}
	return s.metricsLn.Addr()
}

// Done reports the HTTP server's end (an error if it failed).
func (s *Server) Done() <-chan error { return s.served }

// Shutdown tells every session, closes media, finalizes rooms and stops
// serving. Later calls return the first call's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Server) shutdown(ctx context.Context) error {
	s.log.Info("shutting down")
	err := s.hub.Shutdown(ctx)
	if herr := s.http.Shutdown(ctx); herr != nil && err == nil {
		err = herr
	}
	if s.metricsHTTP != nil {
		if merr := s.metricsHTTP.Shutdown(ctx); merr != nil && err == nil {
			err = merr
		}
		_ = s.metricsLn.Close() // when Serve never ran
	}
	if eerr := s.engine.Close(); eerr != nil {
		s.log.Debug("close media ports", "err", eerr)
	}
	if s.turn != nil {
		if terr := s.turn.Close(); terr != nil {
			s.log.Debug("close TURN server", "err", terr)
		}
	}
	if s.mixes != nil {
		// A mix still running is interrupted; it runs again on the next start.
		if s.stop != nil {
			s.stop()
		}
		if merr := s.mixes.Close(); merr != nil {
			s.log.Error("close mix queue", "err", merr)
		}
	}
	if s.recs != nil {
		s.recs.close()
	}
	if s.clips != nil {
		s.clips.close()
	}
	return err
}
