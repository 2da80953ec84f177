package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
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
	Limits          Limits   `yaml:"limits"`
}

// Limits are the per-room and per-session limits.
type Limits struct {
	MaxParticipants   int     `yaml:"max_participants"`
	MaxStreams        int     `yaml:"max_streams"`
	MaxFrameBytes     int     `yaml:"max_frame_bytes"`
	MaxTextBytes      int     `yaml:"max_text_bytes"`
	MaxNameBytes      int     `yaml:"max_name_bytes"`
	MessagesPerSecond float64 `yaml:"messages_per_second"`
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
		Limits: Limits{MaxParticipants: 50, MaxStreams: 3, MaxFrameBytes: 64 << 10, MaxTextBytes: 4096,
			MaxNameBytes: 64, MessagesPerSecond: 20},
	}
}

// option is one setting reachable as a flag and an environment variable.
type option struct {
	flag, usage string
	set         func(c *Config, v string) error
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

func strOpt(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

var options = []option{
	{"addr", "HTTP and WebSocket listen address", strOpt(func(c *Config) *string { return &c.Addr })},
	{"media-ip", "IP address the media ports bind to (empty: all)", strOpt(func(c *Config) *string { return &c.MediaIP })},
	{"udp-port", "UDP port for all media (ICE UDP mux; 0 picks a free one)", intOpt(func(c *Config) *int { return &c.UDPPort })},
	{"tcp-port", "TCP port for ICE-TCP media (0 disables)", intOpt(func(c *Config) *int { return &c.TCPPort })},
	{"public-ip", "public IP announced in ICE candidates (NAT 1:1)", strOpt(func(c *Config) *string { return &c.PublicIP })},
	{"tls-cert", "TLS certificate file (serves https; browsers allow cameras only on https or localhost)", strOpt(func(c *Config) *string { return &c.TLSCert })},
	{"tls-key", "TLS key file", strOpt(func(c *Config) *string { return &c.TLSKey })},
	{"room-idle-timeout", "how long an empty room waits before it finalizes", durOpt(func(c *Config) *Duration { return &c.RoomIdleTimeout })},
	{"reconnect-grace", "how long a participant whose connection dropped may resume", durOpt(func(c *Config) *Duration { return &c.ReconnectGrace })},
	{"log-level", "debug, info, warn or error", strOpt(func(c *Config) *string { return &c.LogLevel })},
	{"max-participants", "participants per room (0: no limit)", intOpt(func(c *Config) *int { return &c.Limits.MaxParticipants })},
	{"max-streams", "streams per participant (0: no limit)", intOpt(func(c *Config) *int { return &c.Limits.MaxStreams })},
	{"max-frame-bytes", "largest signaling message in bytes", intOpt(func(c *Config) *int { return &c.Limits.MaxFrameBytes })},
	{"max-text-bytes", "largest chat message in bytes", intOpt(func(c *Config) *int { return &c.Limits.MaxTextBytes })},
	{"max-name-bytes", "longest room or participant name in bytes", intOpt(func(c *Config) *int { return &c.Limits.MaxNameBytes })},
	{"messages-per-second", "signaling requests per second per session", func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return fmt.Errorf("%q is not a positive number", v)
		}
		c.Limits.MessagesPerSecond = f
		return nil
	}},
}

// loadConfig builds the configuration from args and the environment.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("sfu", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("PARLEY_CONFIG"), "YAML configuration file (see configs/sfu.yaml)")
	set := map[string]string{}
	for _, o := range options {
		fs.Func(o.flag, o.usage+" (env "+o.env()+")", func(v string) error {
			set[o.flag] = v
			return o.set(&Config{}, v) // validate now, apply in order below
		})
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
	for _, o := range options {
		if v, ok := set[o.flag]; ok {
			if err := o.set(&cfg, v); err != nil {
				return cfg, fmt.Errorf("flag --%s: %w", o.flag, err)
			}
		}
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
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log_level %q: use debug, info, warn or error", s)
	}
	return l, nil
}
