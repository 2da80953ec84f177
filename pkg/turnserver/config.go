package turnserver

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Config configures a Server. Start from DefaultConfig and change what you
// need; New checks every field and reports the first problem as a
// *ConfigError. Field names in errors are the turnd flag / YAML key names.
type Config struct {
	// Listen is the UDP and TCP address for turn: URLs ("host:port"). Port 0
	// picks a free port, the same one for UDP and TCP.
	Listen string
	// TLSListen is the address of the turns: (TLS over TCP) listener. It is
	// used only when a certificate is given (TLSCertFile and TLSKeyFile, or
	// TLSConfig).
	TLSListen string
	// TLSCertFile and TLSKeyFile are PEM files for turns:. Both or neither.
	TLSCertFile, TLSKeyFile string
	// TLSConfig, when not nil, is used for turns: instead of the files (for
	// an embedding program that manages its own certificates).
	TLSConfig *tls.Config

	// Realm is the long-term-credential realm sent to clients.
	Realm string

	// RelayIP is the address given to clients as their relayed address: the
	// server's public IP. When invalid (zero), the host of Listen is used if
	// it is a specific address.
	RelayIP netip.Addr
	// RelayBind is the local address relay sockets are bound to. When invalid
	// (zero), the host of Listen is used. Behind 1:1 NAT (cloud VMs) RelayIP
	// is the public address and RelayBind the local one (or 0.0.0.0).
	RelayBind netip.Addr
	// RelayPortMin and RelayPortMax bound the relay ports (inclusive). Both 0
	// lets the operating system pick ephemeral ports.
	RelayPortMin, RelayPortMax uint16

	// Users are static long-term credentials, user name to password.
	Users map[string]string
	// AuthSecret enables coturn-compatible TURN REST credentials (see
	// RESTCredentials). Empty disables them.
	AuthSecret string

	// AllowPeers are peer ranges that may be relayed to even though they are
	// in the denied ranges (loopback, private, link-local, multicast,
	// unspecified, ...). With OnlyPeers they widen the narrow policy.
	AllowPeers []netip.Prefix
	// OnlyPeers, when not empty, replaces the public-peer policy with a
	// narrow one: the server relays only to these transport addresses (a
	// zero port stands for every port of the address) and to AllowPeers,
	// whatever the address ranges. An SFU that embeds the server sets its
	// own media addresses here, so the relay reaches the SFU and nothing else.
	OnlyPeers []netip.AddrPort

	// MaxAllocations bounds the allocations open at once on the server.
	MaxAllocations int
	// MaxAllocationsPerUser bounds the allocations open at once per user
	// (static user name, or the user part of a REST username).
	MaxAllocationsPerUser int
	// MaxAllocationsPerAddress bounds the allocations open at once per
	// client IP address (an IPv6 client by its /64), whatever the user names:
	// one host cannot take the whole server with many credentials.
	MaxAllocationsPerAddress int
	// AllocationLifetime is the lifetime given to allocations and the
	// longest an allocation lives without a successful Refresh, whatever
	// lifetime the client asked for. At most one hour.
	AllocationLifetime time.Duration
	// BandwidthLimit caps each allocation's relayed payload, in bytes per
	// second, in each direction separately (like coturn's max-bps); excess
	// packets are dropped. 0 means no cap.
	BandwidthLimit int64
	// MaxTCPConnections bounds the TCP and TLS client connections open at
	// once; more are closed on accept.
	MaxTCPConnections int

	// Logger receives the server's structured logs; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for REST credential expiry; nil means time.Now.
	Now func() time.Time
}

// Defaults.
const (
	DefaultListen                = "0.0.0.0:3478"
	DefaultTLSListen             = "0.0.0.0:5349"
	DefaultRealm                 = "parley"
	DefaultRelayPortMin          = 49152
	DefaultRelayPortMax          = 65535
	DefaultMaxAllocations        = 1000
	DefaultMaxAllocationsPerUser = 20
	// DefaultMaxAllocationsPerAddress leaves room for an office whose people
	// all relay from one NAT address (a participant holds four to six
	// allocations: one per peer connection and TURN URL).
	DefaultMaxAllocationsPerAddress = 300
	DefaultAllocationLifetime       = 10 * time.Minute
	DefaultBandwidthLimit           = 2_500_000 // bytes/s, 20 Mbit/s
	DefaultMaxTCPConnections        = 2000

	// MaxAllocationLifetime is the longest allocation lifetime accepted
	// (pion caps client requests at one hour, RFC 8656 recommends 3600 s).
	MaxAllocationLifetime = time.Hour
)

// DefaultConfig returns the defaults. RelayIP is left unset: it must be the
// public address and cannot be guessed.
func DefaultConfig() Config {
	return Config{
		Listen:                   DefaultListen,
		TLSListen:                DefaultTLSListen,
		Realm:                    DefaultRealm,
		RelayPortMin:             DefaultRelayPortMin,
		RelayPortMax:             DefaultRelayPortMax,
		MaxAllocations:           DefaultMaxAllocations,
		MaxAllocationsPerUser:    DefaultMaxAllocationsPerUser,
		MaxAllocationsPerAddress: DefaultMaxAllocationsPerAddress,
		AllocationLifetime:       DefaultAllocationLifetime,
		BandwidthLimit:           DefaultBandwidthLimit,
		MaxTCPConnections:        DefaultMaxTCPConnections,
	}
}

// ConfigError is a configuration problem: the field (flag / YAML key name),
// what is wrong and what to do.
type ConfigError struct {
	Field   string
	Problem string
	Hint    string
}

func (e *ConfigError) Error() string {
	s := e.Field + ": " + e.Problem
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	return s
}

func cfgErr(field, problem, hint string) *ConfigError {
	return &ConfigError{Field: field, Problem: problem, Hint: hint}
}

// Limits of the configuration values themselves.
const (
	maxUserNameBytes = 128
	maxPasswordBytes = 256
	maxRealmBytes    = 127 // STUN REALM is < 128 characters
)

// Validate checks c without binding anything and fills in the derived
// fields (RelayIP and RelayBind from Listen when unset). New calls it.
func (c *Config) Validate() error { return c.check() }

// check validates c and fills the derived relay addresses.
func (c *Config) check() error {
	lhost, _, err := splitHostPort("listen", c.Listen, "give host:port, e.g. 0.0.0.0:3478")
	if err != nil {
		return err
	}
	if c.tlsEnabled() {
		if _, _, err := splitHostPort("tls-listen", c.TLSListen, "give host:port, e.g. 0.0.0.0:5349"); err != nil {
			return err
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return cfgErr("tls-cert", "tls-cert and tls-key must be given together",
			"set both --tls-cert and --tls-key (PEM files), or neither to run without turns:")
	}
	if c.Realm == "" || len(c.Realm) > maxRealmBytes {
		return cfgErr("realm", fmt.Sprintf("%q is not a usable realm", c.Realm),
			"give a non-empty name under 128 bytes, e.g. your domain")
	}

	if !c.RelayIP.IsValid() {
		if lhost.IsValid() && !lhost.IsUnspecified() {
			c.RelayIP = lhost
		} else {
			return cfgErr("relay-ip", "not set",
				"give the public IP address clients reach this server on (it is sent to them as their relayed address)")
		}
	}
	c.RelayIP = c.RelayIP.Unmap().WithZone("")
	if c.RelayIP.IsUnspecified() || c.RelayIP.IsMulticast() {
		return cfgErr("relay-ip", fmt.Sprintf("%s cannot be a relayed address", c.RelayIP),
			"give the server's public unicast IP address")
	}
	if !c.RelayBind.IsValid() {
		switch {
		case lhost.IsValid() && (lhost.Is4() == c.RelayIP.Is4()):
			c.RelayBind = lhost
		case c.RelayIP.Is4():
			c.RelayBind = netip.IPv4Unspecified()
		default:
			c.RelayBind = netip.IPv6Unspecified()
		}
	}
	c.RelayBind = c.RelayBind.Unmap()
	if c.RelayBind.Is4() != c.RelayIP.Is4() {
		return cfgErr("relay-bind", fmt.Sprintf("%s is not of the same address family as relay-ip %s", c.RelayBind, c.RelayIP),
			"bind relay sockets to an address of relay-ip's family, e.g. 0.0.0.0 for an IPv4 relay-ip")
	}
	if (c.RelayPortMin == 0) != (c.RelayPortMax == 0) || c.RelayPortMin > c.RelayPortMax {
		return cfgErr("relay-ports", fmt.Sprintf("%d-%d is not a port range", c.RelayPortMin, c.RelayPortMax),
			"give MIN-MAX with 1 <= MIN <= MAX <= 65535, e.g. 49152-65535, or 0 to let the system choose")
	}

	if len(c.Users) == 0 && c.AuthSecret == "" {
		return cfgErr("user", "no credentials configured",
			"add static users with --user NAME:PASSWORD and/or set --auth-secret for REST credentials")
	}
	for name, pw := range c.Users {
		if err := checkUser(name, pw); err != nil {
			return err
		}
	}

	switch {
	case c.MaxAllocations < 1:
		return cfgErr("max-allocations", fmt.Sprintf("%d is below 1", c.MaxAllocations),
			"give the most allocations the server may hold at once, e.g. 1000")
	case c.MaxAllocationsPerUser < 1:
		return cfgErr("max-allocations-per-user", fmt.Sprintf("%d is below 1", c.MaxAllocationsPerUser),
			"give the most allocations one user may hold at once, e.g. 20")
	case c.MaxAllocationsPerAddress < 1:
		return cfgErr("max-allocations-per-address", fmt.Sprintf("%d is below 1", c.MaxAllocationsPerAddress),
			"give the most allocations one client address may hold at once, e.g. 300")
	case c.AllocationLifetime < time.Second || c.AllocationLifetime > MaxAllocationLifetime:
		return cfgErr("allocation-lifetime", fmt.Sprintf("%s is out of range", c.AllocationLifetime),
			"give a duration from 1s to 1h, e.g. 10m")
	case c.BandwidthLimit < 0:
		return cfgErr("bandwidth-limit", fmt.Sprintf("%d is negative", c.BandwidthLimit),
			"give bytes per second per allocation and direction, or 0 for no cap")
	case c.BandwidthLimit > 0 && c.BandwidthLimit < minBandwidthLimit:
		return cfgErr("bandwidth-limit", fmt.Sprintf("%d bytes/s is below %d", c.BandwidthLimit, minBandwidthLimit),
			"one relayed packet can be 1500 bytes; give at least 8000 bytes/s, or 0 for no cap")
	case c.MaxTCPConnections < 1:
		return cfgErr("max-tcp-connections", fmt.Sprintf("%d is below 1", c.MaxTCPConnections),
			"give the most TCP/TLS client connections open at once, e.g. 2000")
	}
	for _, p := range c.OnlyPeers {
		if !p.IsValid() || p.Addr().Zone() != "" {
			return cfgErr("only-peer", fmt.Sprintf("%s is not a transport address", p),
				"give IP:PORT addresses (port 0: every port of the address)")
		}
	}
	return nil
}

func (c *Config) tlsEnabled() bool {
	return c.TLSConfig != nil || c.TLSCertFile != "" || c.TLSKeyFile != ""
}

// checkUser validates one static user.
func checkUser(name, pw string) error {
	switch {
	case name == "":
		return cfgErr("user", "empty user name", "give NAME:PASSWORD")
	case len(name) > maxUserNameBytes:
		return cfgErr("user", fmt.Sprintf("user name %.20q… is over %d bytes", name, maxUserNameBytes), "use a shorter name")
	case strings.ContainsAny(name, ":\x00\r\n"):
		return cfgErr("user", fmt.Sprintf("user name %q contains ':' or a control character", name), "give NAME:PASSWORD with a plain name")
	case pw == "":
		return cfgErr("user", fmt.Sprintf("user %q has an empty password", name), "give NAME:PASSWORD with a password")
	case len(pw) > maxPasswordBytes:
		return cfgErr("user", fmt.Sprintf("user %q has a password over %d bytes", name, maxPasswordBytes), "use a shorter password")
	}
	return nil
}

// ParseUser parses "NAME:PASSWORD" (the password may contain ':').
func ParseUser(s string) (name, password string, err error) {
	name, password, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", cfgErr("user", "missing ':' (the password is never shown)", "give NAME:PASSWORD")
	}
	if err := checkUser(name, password); err != nil {
		return "", "", err
	}
	return name, password, nil
}

// ParsePortRange parses "MIN-MAX" (or "0" for system-chosen ports).
func ParsePortRange(s string) (lo, hi uint16, err error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, 0, nil
	}
	a, b, ok := strings.Cut(s, "-")
	if ok {
		x, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
		y, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
		if err1 == nil && err2 == nil && x >= 1 && x <= y {
			return uint16(x), uint16(y), nil
		}
	}
	return 0, 0, cfgErr("relay-ports", fmt.Sprintf("%q is not a port range", s),
		"give MIN-MAX with 1 <= MIN <= MAX <= 65535, e.g. 49152-65535, or 0 to let the system choose")
}

// ParsePeerPrefix parses a CIDR ("10.0.0.0/8") or a single address.
func ParsePeerPrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, cfgErr("allow-peer", fmt.Sprintf("%q is not a CIDR", s),
		"give an address range such as 10.1.0.0/16 or one address such as 192.168.1.5")
}

// ParsePeerAddrPort parses an OnlyPeers entry: "IP:PORT" ("[IPv6]:PORT"),
// port 0 standing for every port of the address.
func ParsePeerAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(strings.TrimSpace(s))
	if err != nil || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, cfgErr("only-peer", fmt.Sprintf("%q is not IP:PORT", s),
			"give the SFU's media address such as 203.0.113.7:7882, or 203.0.113.7:0 for every port of it")
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// splitHostPort checks "host:port" with a literal IP host (or an empty host,
// meaning all addresses) and a port in 0..65535.
func splitHostPort(field, hp, hint string) (netip.Addr, uint16, error) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return netip.Addr{}, 0, cfgErr(field, fmt.Sprintf("%q is not host:port", hp), hint)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.Addr{}, 0, cfgErr(field, fmt.Sprintf("%q has a bad port", hp), hint)
	}
	if host == "" {
		return netip.Addr{}, uint16(p), nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, 0, cfgErr(field, fmt.Sprintf("host %q is not an IP address", host), hint+" (use an IP address, not a name)")
	}
	return a.Unmap(), uint16(p), nil
}
