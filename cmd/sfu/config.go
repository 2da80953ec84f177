package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the server's configuration: embedded defaults, overridden by a
// YAML file (--config), then by PARLEY_* environment variables, then by flags.
type Config struct {
	Addr            string   `yaml:"addr"`
	MediaIP         string   `yaml:"media_ip"`
	UDPPort         int      `yaml:"udp_port"`
	TCPPort         int      `yaml:"tcp_port"`
	PublicIP        string   `yaml:"public_ip"`
	TLSCert         string   `yaml:"tls_cert"`
	TLSKey          string   `yaml:"tls_key"`
	RoomIdleTimeout Duration `yaml:"room_idle_timeout"`
	ReconnectGrace  Duration `yaml:"reconnect_grace"`
	LogLevel        string   `yaml:"log_level"`
	DebugAddr       string   `yaml:"debug_addr"`
	AdaptiveProcs   bool     `yaml:"adaptive_procs"`
	MetricsAddr     string   `yaml:"metrics_addr"`
	AllowedOrigins  []string `yaml:"allowed_origins"`
	TrustedProxies  []string `yaml:"trusted_proxies"`
	Limits          Limits   `yaml:"limits"`
	TURN            TURN     `yaml:"turn"`
	RecordsDir      string   `yaml:"records_dir"`
	RecordAll       bool     `yaml:"record_all"`
	Mix             bool     `yaml:"mix"`
	MixerConfig     string   `yaml:"mixer_config"`
	MixHook         string   `yaml:"mix_hook"`
	MixWorkers      int      `yaml:"mix_workers"`

	// Who reads the recordings, and how much a room session records
	// (docs/security.md "Recordings", docs/recording.md).
	Recordings          string   `yaml:"recordings"`            // private (default) or public
	RecordingsURLSecret string   `yaml:"recordings_url_secret"` // signs the recordings' links; empty: random per start
	RecordingsLinkTTL   Duration `yaml:"recordings_link_ttl"`
	RecordingsURLTTL    Duration `yaml:"recordings_url_ttl"`
	RecordMaxDuration   Duration `yaml:"record_max_duration"`
	RecordMaxBytes      ByteSize `yaml:"record_max_bytes"`
	RecordMinFree       ByteSize `yaml:"record_min_free"`

	// Media messages (clips.go).
	Clips ClipsSettings `yaml:"clips"`

	// Who may do what (docs/security.md).
	Auth     Auth   `yaml:"auth"`
	RoomsDir string `yaml:"rooms_dir"`
}

// Auth is who may do what (docs/security.md).
type Auth struct {
	// Mode is "open", "token", or empty: open on a loopback address, token
	// elsewhere (which needs keys: protected mode).
	Mode string `yaml:"mode"`
	// Keys are HS256 keys by id, for rotation several at once; list the
	// newest last (sfu token create signs with it).
	Keys []AuthKey `yaml:"keys"`
	// PublicKeys verify tokens another service signs (EdDSA, RS256).
	PublicKeys []PublicKey `yaml:"public_keys"`
	// Issuer and Audience, when set, must be the tokens' iss and aud.
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
}

// AuthKey is an HS256 key: its id (the tokens' kid) and its secret, from a
// file (secret_file) or, in the YAML file itself, secret.
type AuthKey struct {
	ID         string `yaml:"id"`
	SecretFile string `yaml:"secret_file"`
	Secret     string `yaml:"secret"`
}

// PublicKey is a PEM public key file (Ed25519 or RSA) by id.
type PublicKey struct {
	ID   string `yaml:"id"`
	File string `yaml:"file"`
}

// Recordings access modes.
const (
	recordingsPrivate = "private"
	recordingsPublic  = "public"
)

// ByteSize is a size in bytes, written as 1073741824, 1GiB, 500MB, 2G…
type ByteSize int64

// parseByteSize reads a size: a whole number with an optional unit: B; k, M,
// G, T or KiB, MiB, GiB, TiB (powers of 1024); KB, MB, GB, TB (powers of 1000).
func parseByteSize(v string) (ByteSize, error) {
	s := strings.TrimSpace(v)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || i == 0 {
		return 0, fmt.Errorf("%q is not a size (write e.g. 500MB, 2GiB or a number of bytes)", v)
	}
	units := map[string]int64{"": 1, "B": 1, "k": 1 << 10, "K": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20,
		"G": 1 << 30, "GiB": 1 << 30, "T": 1 << 40, "TiB": 1 << 40, "KB": 1e3, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
	mul, ok := units[strings.TrimSpace(s[i:])]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)", v, strings.TrimSpace(s[i:]))
	}
	if n > (1<<63-1)/mul {
		return 0, fmt.Errorf("%q is too large", v)
	}
	return ByteSize(n * mul), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

func sizeOpt(p func(*Config) *ByteSize) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := parseByteSize(v)
		if err != nil {
			return err
		}
		*p(c) = b
		return nil
	}
}

// recordingsOptions are the recordings' settings, kept apart for merging.
var recordingsOptions = []option{
	{flag: "recordings", usage: "who reads recordings without a token: private (admin or record token, or a signed link) or public (anyone)",
		set: func(c *Config, v string) error {
			if v != recordingsPrivate && v != recordingsPublic {
				return fmt.Errorf("%q: write private or public", v)
			}
			c.Recordings = v
			return nil
		}},
	{flag: "recordings-url-secret", usage: "secret (32+ bytes) that signs the recordings' links; set it so links outlive a restart (empty: random per start)",
		set: strOpt(func(c *Config) *string { return &c.RecordingsURLSecret })},
	{flag: "recordings-link-ttl", usage: "how long the link each participant of a recorded meeting gets stays valid",
		set: durOpt(func(c *Config) *Duration { return &c.RecordingsLinkTTL })},
	{flag: "recordings-url-ttl", usage: "how long the signed file URLs that /api/recordings answers stay valid (never past the token)",
		set: durOpt(func(c *Config) *Duration { return &c.RecordingsURLTTL })},
	{flag: "record-max-duration", usage: "recorded time per room session (0: no limit)",
		set: durOpt(func(c *Config) *Duration { return &c.RecordMaxDuration })},
	{flag: "record-max-bytes", usage: "bytes of recordings per room session, e.g. 2GiB (0: no limit)",
		set: sizeOpt(func(c *Config) *ByteSize { return &c.RecordMaxBytes })},
	{flag: "record-min-free", usage: "free disk space below which recordings stop (and do not start), e.g. 1GiB (0: no floor)",
		set: sizeOpt(func(c *Config) *ByteSize { return &c.RecordMinFree })},
}

func init() { options = append(options, recordingsOptions...) }

// TURN tells clients about TURN servers and can run one in this process.
type TURN struct {
	URLs       []string `yaml:"urls"`
	Secret     string   `yaml:"secret"`
	TTL        Duration `yaml:"ttl"`
	Embed      bool     `yaml:"embed"`
	Listen     string   `yaml:"listen"`
	RelayIP    string   `yaml:"relay_ip"`
	AllowPeers []string `yaml:"allow_peers"`
	// Peers is where the embedded server relays to: sfu (only this
	// server's media addresses) or public (any public address).
	Peers                    string `yaml:"peers"`
	MaxAllocationsPerUser    int    `yaml:"max_allocations_per_user"`
	MaxAllocationsPerAddress int    `yaml:"max_allocations_per_address"`
}

// Limits are the per-room and per-session limits.
type Limits struct {
	MaxParticipants   int     `yaml:"max_participants"`
	MaxStreams        int     `yaml:"max_streams"`
	MaxFrameBytes     int     `yaml:"max_frame_bytes"`
	MaxTextBytes      int     `yaml:"max_text_bytes"`
	MaxNameBytes      int     `yaml:"max_name_bytes"`
	MessagesPerSecond float64 `yaml:"messages_per_second"`
	// Per client address (an IPv6 client by its /64); 0 disables each.
	MaxSessionsPerAddress int     `yaml:"max_sessions_per_address"`
	NewSessionsPerAddress float64 `yaml:"new_sessions_per_address"` // per second
	NewRoomsPerAddress    float64 `yaml:"new_rooms_per_address"`    // per minute
}

// Duration is a time.Duration written as "60s" in YAML.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (write e.g. 60s or 2m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

func defaultConfig() Config {
	return Config{
		Addr:            "127.0.0.1:7880",
		UDPPort:         7882,
		TCPPort:         7881,
		RoomIdleTimeout: Duration(60 * time.Second),
		ReconnectGrace:  Duration(5 * time.Second),
		LogLevel:        "info",
		AdaptiveProcs:   true,
		Limits: Limits{MaxParticipants: 50, MaxStreams: 3, MaxFrameBytes: 64 << 10, MaxTextBytes: 4096,
			MaxNameBytes: 64, MessagesPerSecond: 20, MaxSessionsPerAddress: 100, NewSessionsPerAddress: 10,
			NewRoomsPerAddress: 30},
		TURN: TURN{TTL: Duration(time.Hour), Listen: "0.0.0.0:3478", Peers: "sfu",
			MaxAllocationsPerUser: 20, MaxAllocationsPerAddress: 300},
		RecordsDir: "records",
		Mix:        true,
		MixWorkers: 1,

		Recordings:        recordingsPrivate,
		RecordingsLinkTTL: Duration(72 * time.Hour),
		RecordingsURLTTL:  Duration(6 * time.Hour),
		RecordMinFree:     1 << 30,
		Clips:             defaultClips(),
	}
}

// option is one setting reachable as a flag and an environment variable.
type option struct {
	flag, usage string
	set         func(c *Config, v string) error
	boolean     bool
}

func (o option) env() string {
	return "PARLEY_" + strings.ToUpper(strings.ReplaceAll(o.flag, "-", "_"))
}

func intOpt(p func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("%q is not a non-negative whole number", v)
		}
		*p(c) = n
		return nil
	}
}

func durOpt(p func(*Config) *Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("%q is not a duration (write e.g. 60s or 2m)", v)
		}
		*p(c) = Duration(d)
		return nil
	}
}

func boolOpt(p func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*p(c) = b
		return nil
	}
}

// rateOpt is a non-negative rate; 0 disables the limit.
func rateOpt(p func(*Config) *float64) func(*Config, string) error {
	return func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f != f {
			return fmt.Errorf("%q is not a non-negative number", v)
		}
		*p(c) = f
		return nil
	}
}

func listOpt(p func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		var out []string
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
		*p(c) = out
		return nil
	}
}

func strOpt(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

var options = []option{
	{flag: "addr", usage: "HTTP and WebSocket listen address", set: strOpt(func(c *Config) *string { return &c.Addr })},
	{flag: "media-ip", usage: "IP address the media ports bind to (empty: all)", set: strOpt(func(c *Config) *string { return &c.MediaIP })},
	{flag: "udp-port", usage: "UDP port for all media (ICE UDP mux; 0 picks a free one)", set: intOpt(func(c *Config) *int { return &c.UDPPort })},
	{flag: "tcp-port", usage: "TCP port for ICE-TCP media (0 disables)", set: intOpt(func(c *Config) *int { return &c.TCPPort })},
	{flag: "public-ip", usage: "public IP announced in ICE candidates (NAT 1:1)", set: strOpt(func(c *Config) *string { return &c.PublicIP })},
	{flag: "tls-cert", usage: "TLS certificate file (serves https; browsers allow cameras only on https or localhost)", set: strOpt(func(c *Config) *string { return &c.TLSCert })},
	{flag: "tls-key", usage: "TLS key file", set: strOpt(func(c *Config) *string { return &c.TLSKey })},
	{flag: "room-idle-timeout", usage: "how long an empty room waits before it finalizes", set: durOpt(func(c *Config) *Duration { return &c.RoomIdleTimeout })},
	{flag: "reconnect-grace", usage: "how long a participant whose connection dropped may resume", set: durOpt(func(c *Config) *Duration { return &c.ReconnectGrace })},
	{flag: "log-level", usage: "debug, info, warn or error", set: strOpt(func(c *Config) *string { return &c.LogLevel })},
	{flag: "debug-addr", usage: "serve Go's profiler (/debug/pprof/) on this address, e.g. 127.0.0.1:6060 (empty: off)", set: strOpt(func(c *Config) *string { return &c.DebugAddr })},
	{flag: "adaptive-procs", usage: "run Go's scheduler on one CPU while the server is nearly idle, on all once it is busy (fewer thread wake-ups per packet in small meetings; ignored when GOMAXPROCS is set)", boolean: true,
		set: boolOpt(func(c *Config) *bool { return &c.AdaptiveProcs })},
	{flag: "metrics-addr", usage: "serve /metrics on this address only (its own listener, e.g. 127.0.0.1:9640), not on --addr", set: strOpt(func(c *Config) *string { return &c.MetricsAddr })},
	{flag: "allowed-origins", usage: "page origins besides the server's own that may open a WebSocket, comma-separated (https://meet.example.com; * for any)", set: listOpt(func(c *Config) *[]string { return &c.AllowedOrigins })},
	{flag: "trusted-proxies", usage: "reverse proxies (CIDRs, comma-separated) whose X-Forwarded-For names the client address for the per-address limits", set: listOpt(func(c *Config) *[]string { return &c.TrustedProxies })},
	{flag: "max-sessions-per-address", usage: "sessions open at once from one client address (IPv6: /64; 0: no limit)", set: intOpt(func(c *Config) *int { return &c.Limits.MaxSessionsPerAddress })},
	{flag: "new-sessions-per-address", usage: "new sessions per second from one client address, bursts of twice that (0: no limit)", set: rateOpt(func(c *Config) *float64 { return &c.Limits.NewSessionsPerAddress })},
	{flag: "new-rooms-per-address", usage: "rooms created per minute from one client address (0: no limit)", set: rateOpt(func(c *Config) *float64 { return &c.Limits.NewRoomsPerAddress })},
	{flag: "max-participants", usage: "participants per room (0: no limit)", set: intOpt(func(c *Config) *int { return &c.Limits.MaxParticipants })},
	{flag: "max-streams", usage: "streams per participant (0: no limit)", set: intOpt(func(c *Config) *int { return &c.Limits.MaxStreams })},
	{flag: "max-frame-bytes", usage: "largest signaling message in bytes", set: intOpt(func(c *Config) *int { return &c.Limits.MaxFrameBytes })},
	{flag: "max-text-bytes", usage: "largest chat message in bytes", set: intOpt(func(c *Config) *int { return &c.Limits.MaxTextBytes })},
	{flag: "max-name-bytes", usage: "longest room or participant name in bytes", set: intOpt(func(c *Config) *int { return &c.Limits.MaxNameBytes })},
	{flag: "records-dir", usage: "directory for recordings (<dir>/<room>/<room session>/)", set: strOpt(func(c *Config) *string { return &c.RecordsDir })},
	{flag: "record-all", usage: "record every room", boolean: true, set: boolOpt(func(c *Config) *bool { return &c.RecordAll })},
	{flag: "mix", usage: "mix each finished recording into one file (false: keep only the per-stream files)", boolean: true,
		set: boolOpt(func(c *Config) *bool { return &c.Mix })},
	{flag: "mixer-config", usage: "offline mixer settings, JSON (see configs/offline_mixer.json; empty: defaults)", set: strOpt(func(c *Config) *string { return &c.MixerConfig })},
	{flag: "mix-hook", usage: "program run after each mix with the output and manifest paths (on_multiple_record_hook_script)", set: strOpt(func(c *Config) *string { return &c.MixHook })},
	{flag: "mix-workers", usage: "mixes run at once", set: intOpt(func(c *Config) *int { return &c.MixWorkers })},
	{flag: "turn", usage: "run a TURN server in this process (see the turn-* settings)", boolean: true,
		set: boolOpt(func(c *Config) *bool { return &c.TURN.Embed })},
	{flag: "turn-url", usage: "TURN URLs given to clients, comma-separated (turn:host:3478?transport=udp,...)", set: listOpt(func(c *Config) *[]string { return &c.TURN.URLs })},
	{flag: "turn-secret", usage: "TURN REST secret shared with turnd or coturn (static-auth-secret)", set: strOpt(func(c *Config) *string { return &c.TURN.Secret })},
	{flag: "turn-ttl", usage: "lifetime of the TURN credentials handed to each participant with its join (1m..24h)", set: durOpt(func(c *Config) *Duration { return &c.TURN.TTL })},
	{flag: "turn-listen", usage: "with --turn: UDP and TCP address of the embedded TURN server", set: strOpt(func(c *Config) *string { return &c.TURN.Listen })},
	{flag: "turn-relay-ip", usage: "with --turn: relay address clients reach (default: --public-ip)", set: strOpt(func(c *Config) *string { return &c.TURN.RelayIP })},
	{flag: "turn-allow-peer", usage: "with --turn: more peer ranges to relay to, comma-separated CIDRs (widens --turn-peers)", set: listOpt(func(c *Config) *[]string { return &c.TURN.AllowPeers })},
	{flag: "turn-peers", usage: "with --turn: where it relays to: sfu (only this server's media addresses) or public (any public address)", set: strOpt(func(c *Config) *string { return &c.TURN.Peers })},
	{flag: "turn-max-allocations-per-user", usage: "with --turn: allocations open at once per participant", set: intOpt(func(c *Config) *int { return &c.TURN.MaxAllocationsPerUser })},
	{flag: "turn-max-allocations-per-address", usage: "with --turn: allocations open at once per client address (IPv6: /64)", set: intOpt(func(c *Config) *int { return &c.TURN.MaxAllocationsPerAddress })},
	{flag: "auth", usage: "who may join: open (anyone) or token (an access token or the room's preset); empty: open on a loopback --addr, token elsewhere",
		set: strOpt(func(c *Config) *string { return &c.Auth.Mode })},
	{flag: "auth-key-file", usage: "HS256 token keys, ID=FILE comma-separated, oldest first (the file holds the secret; PARLEY_AUTH_KEYS=ID=SECRET,... gives secrets in the environment)",
		set: keyFilesOpt},
	{flag: "auth-public-key", usage: "public keys (PEM, Ed25519 or RSA) of services that sign tokens, ID=FILE comma-separated",
		set: publicKeysOpt},
	{flag: "rooms-dir", usage: "directory of room presets, *.yaml (see configs/rooms; SIGHUP reloads them); empty: none",
		set: strOpt(func(c *Config) *string { return &c.RoomsDir })},
	{flag: "auth-issuer", usage: "when set, tokens must carry this issuer (iss)", set: strOpt(func(c *Config) *string { return &c.Auth.Issuer })},
	{flag: "auth-audience", usage: "when set, tokens must carry this audience (aud)", set: strOpt(func(c *Config) *string { return &c.Auth.Audience })},
	{flag: "messages-per-second", usage: "signaling requests per second per session", set: func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return fmt.Errorf("%q is not a positive number", v)
		}
		c.Limits.MessagesPerSecond = f
		return nil
	}},
}

// idPairs reads "ID=VALUE,ID=VALUE".
func idPairs(v string) ([][2]string, error) {
	var out [][2]string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		id, val, ok := strings.Cut(item, "=")
		if !ok || strings.TrimSpace(id) == "" || strings.TrimSpace(val) == "" {
			return nil, fmt.Errorf("%q: write ID=VALUE", item)
		}
		out = append(out, [2]string{strings.TrimSpace(id), strings.TrimSpace(val)})
	}
	return out, nil
}

func keyFilesOpt(c *Config, v string) error {
	pairs, err := idPairs(v)
	if err != nil {
		return err
	}
	keys := slices.DeleteFunc(slices.Clone(c.Auth.Keys), func(k AuthKey) bool { return k.SecretFile != "" })
	for _, p := range pairs {
		keys = append(keys, AuthKey{ID: p[0], SecretFile: p[1]})
	}
	c.Auth.Keys = keys
	return nil
}

func publicKeysOpt(c *Config, v string) error {
	pairs, err := idPairs(v)
	if err != nil {
		return err
	}
	c.Auth.PublicKeys = nil
	for _, p := range pairs {
		c.Auth.PublicKeys = append(c.Auth.PublicKeys, PublicKey{ID: p[0], File: p[1]})
	}
	return nil
}

// envKeys is the environment variable that holds HS256 secrets
// ("ID=SECRET,ID=SECRET"); there is no flag for it, so that secrets never
// stand on a command line (where ps shows them).
const envKeys = "PARLEY_AUTH_KEYS"

// loadConfig builds the configuration from args and the environment.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("sfu", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("PARLEY_CONFIG"), "YAML configuration file (see configs/sfu.yaml)")
	set := map[string]string{}
	for _, o := range options {
		record := func(v string) error {
			set[o.flag] = v
			return o.set(&Config{}, v) // validate now, apply in order below
		}
		if o.boolean {
			fs.BoolFunc(o.flag, o.usage+" (env "+o.env()+")", func(v string) error { return record(v) })
		} else {
			fs.Func(o.flag, o.usage+" (env "+o.env()+")", record)
		}
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sfu [flags]\n\nRuns Parley. With no flags it serves a conference at http://127.0.0.1:7880/.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (run sfu -h for the flags)", fs.Arg(0))
	}
	if *configPath != "" {
		b, err := os.ReadFile(*configPath)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, fmt.Errorf("config %s: %w", *configPath, err)
		}
	}
	for _, o := range options {
		if v := getenv(o.env()); v != "" {
			if err := o.set(&cfg, v); err != nil {
				return cfg, fmt.Errorf("environment %s: %w", o.env(), err)
			}
		}
	}
	if v := getenv(envKeys); v != "" {
		pairs, err := idPairs(v)
		if err != nil {
			return cfg, fmt.Errorf("environment %s: %w", envKeys, err)
		}
		cfg.Auth.Keys = slices.DeleteFunc(cfg.Auth.Keys, func(k AuthKey) bool { return k.SecretFile == "" })
		for _, p := range pairs {
			cfg.Auth.Keys = append(cfg.Auth.Keys, AuthKey{ID: p[0], Secret: p[1]})
		}
	}
	for _, o := range options {
		if v, ok := set[o.flag]; ok {
			if err := o.set(&cfg, v); err != nil {
				return cfg, fmt.Errorf("flag --%s: %w", o.flag, err)
			}
		}
	}
	if len(cfg.TURN.URLs) == 0 {
		cfg.TURN.URLs = nil
	}
	if len(cfg.TURN.AllowPeers) == 0 {
		cfg.TURN.AllowPeers = nil
	}
	if len(cfg.Auth.Keys) == 0 {
		cfg.Auth.Keys = nil
	}
	if len(cfg.Auth.PublicKeys) == 0 {
		cfg.Auth.PublicKeys = nil
	}
	if len(cfg.AllowedOrigins) == 0 {
		cfg.AllowedOrigins = nil
	}
	if len(cfg.TrustedProxies) == 0 {
		cfg.TrustedProxies = nil
	}
	return cfg, cfg.validate()
}

func (c Config) validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("addr %q: %w (write host:port, e.g. 0.0.0.0:7880)", c.Addr, err)
	}
	if c.UDPPort > 65535 {
		return fmt.Errorf("udp_port %d is not a port number", c.UDPPort)
	}
	if c.TCPPort > 65535 {
		return fmt.Errorf("tcp_port %d is not a port number", c.TCPPort)
	}
	if c.PublicIP != "" && net.ParseIP(c.PublicIP) == nil {
		return fmt.Errorf("public_ip %q is not an IP address", c.PublicIP)
	}
	if c.MediaIP != "" && net.ParseIP(c.MediaIP) == nil {
		return fmt.Errorf("media_ip %q is not an IP address", c.MediaIP)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls_cert and tls_key go together: give both or neither")
	}
	if c.Limits.MaxFrameBytes < 4096 {
		return fmt.Errorf("max_frame_bytes %d is too small for an SDP offer (at least 4096)", c.Limits.MaxFrameBytes)
	}
	if c.Limits.MaxTextBytes < 1 || c.Limits.MaxTextBytes > c.Limits.MaxFrameBytes/2 {
		return fmt.Errorf("max_text_bytes %d must be between 1 and half of max_frame_bytes", c.Limits.MaxTextBytes)
	}
	if c.Limits.MaxNameBytes < 1 {
		return fmt.Errorf("max_name_bytes must be at least 1")
	}
	if c.Limits.MessagesPerSecond <= 0 {
		return fmt.Errorf("messages_per_second must be positive")
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if c.MixWorkers < 1 {
		return errors.New("mix_workers must be at least 1")
	}
	switch c.Auth.Mode {
	case "", "open", "token":
	default:
		return fmt.Errorf("auth mode %q: use open or token", c.Auth.Mode)
	}
	for _, k := range c.Auth.Keys {
		if k.ID == "" {
			return errors.New("auth.keys: every key needs an id (the tokens' kid)")
		}
		if (k.SecretFile == "") == (k.Secret == "") {
			return fmt.Errorf("auth key %q: give secret_file (or, in the environment, %s) or secret, one of them", k.ID, envKeys)
		}
	}
	for _, k := range c.Auth.PublicKeys {
		if k.ID == "" || k.File == "" {
			return errors.New("auth.public_keys: every key needs an id and a file")
		}
	}
	if err := c.validateRecordings(); err != nil {
		return err
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("metrics_addr %q: %w (write host:port, e.g. 127.0.0.1:9640)", c.MetricsAddr, err)
		}
	}
	for _, o := range c.AllowedOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.TrimSuffix(u.Path, "/") != "" {
			return fmt.Errorf("allowed_origins %q is not an origin: write scheme://host[:port], e.g. https://meet.example.com, or *", o)
		}
	}
	for _, p := range c.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			return fmt.Errorf("trusted_proxies %q is not an address or CIDR, e.g. 127.0.0.1 or 10.0.0.0/8", p)
		}
	}
	if ttl := time.Duration(c.TURN.TTL); ttl < time.Minute || ttl > 24*time.Hour {
		return fmt.Errorf("turn.ttl %s must be between 1m and 24h (default 1h; an allocation made in time outlives it)", ttl)
	}
	if c.TURN.Peers != "sfu" && c.TURN.Peers != "public" {
		return fmt.Errorf("turn.peers %q: use sfu (relay only to this server's media) or public (any public address)", c.TURN.Peers)
	}
	if c.TURN.MaxAllocationsPerUser < 1 || c.TURN.MaxAllocationsPerAddress < 1 {
		return errors.New("turn.max_allocations_per_user and turn.max_allocations_per_address must be at least 1")
	}
	if len(c.TURN.URLs) > 0 && c.TURN.Secret == "" && !c.TURN.Embed {
		return errors.New("turn.urls needs turn.secret, the REST secret your TURN server shares (coturn's static-auth-secret)")
	}
	for _, u := range c.TURN.URLs {
		if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") && !strings.HasPrefix(u, "stun:") {
			return fmt.Errorf("turn url %q must start with turn:, turns: or stun:", u)
		}
	}
	if c.TURN.Embed {
		if _, _, err := net.SplitHostPort(c.TURN.Listen); err != nil {
			return fmt.Errorf("turn.listen %q: %w", c.TURN.Listen, err)
		}
		if c.TURN.RelayIP != "" && net.ParseIP(c.TURN.RelayIP) == nil {
			return fmt.Errorf("turn.relay_ip %q is not an IP address", c.TURN.RelayIP)
		}
	}
	return nil
}

func (c Config) validateRecordings() error {
	if c.Recordings != recordingsPrivate && c.Recordings != recordingsPublic {
		return fmt.Errorf("recordings %q: write private or public", c.Recordings)
	}
	if c.RecordingsURLSecret != "" && len(c.RecordingsURLSecret) < 32 {
		return errors.New("recordings_url_secret needs at least 32 bytes (make one with `openssl rand -base64 32`)")
	}
	if c.RecordingsLinkTTL <= 0 || c.RecordingsURLTTL <= 0 {
		return errors.New("recordings_link_ttl and recordings_url_ttl must be positive")
	}
	if c.RecordMaxBytes < 0 || c.RecordMinFree < 0 {
		return errors.New("record_max_bytes and record_min_free cannot be negative")
	}
	return nil
}

// parsePrefix parses a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log_level %q: use debug, info, warn or error", s)
	}
	return l, nil
}
