package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/parley/parley/pkg/turnserver"
	"gopkg.in/yaml.v3"
)

// A setting is one configuration field, settable by flag, environment
// variable and YAML key. Precedence: flag > env > YAML > default.
type setting struct {
	name   string // flag name; also the YAML key unless yaml is set
	yaml   string // YAML key when it differs (plural for lists)
	env    string // environment variable
	def    string // default, as text
	usage  string
	list   bool // repeatable flag; YAML sequence; comma-separated env
	secret bool // never printed
}

func (s setting) yamlKey() string {
	if s.yaml != "" {
		return s.yaml
	}
	return s.name
}

var settings = []setting{
	{name: "listen", env: "TURND_LISTEN", def: turnserver.DefaultListen,
		usage: "UDP and TCP `address` for turn: (host:port)"},
	{name: "tls-listen", env: "TURND_TLS_LISTEN", def: turnserver.DefaultTLSListen,
		usage: "TCP `address` for turns: (TLS); used only with --tls-cert/--tls-key"},
	{name: "tls-cert", env: "TURND_TLS_CERT", usage: "PEM certificate (chain) `file` for turns:; reloaded on SIGHUP"},
	{name: "tls-key", env: "TURND_TLS_KEY", usage: "PEM private key `file` for turns:"},
	{name: "realm", env: "TURND_REALM", def: turnserver.DefaultRealm, usage: "authentication `realm`"},
	{name: "relay-ip", env: "TURND_RELAY_IP",
		usage: "public `IP` sent to clients as their relayed address (default: the --listen host, if it is a specific address)"},
	{name: "relay-bind", env: "TURND_RELAY_BIND",
		usage: "local `IP` relay sockets bind to (default: the --listen host); differs from --relay-ip behind 1:1 NAT"},
	{name: "relay-ports", env: "TURND_RELAY_PORTS", def: "49152-65535",
		usage: "relay port `range` MIN-MAX, or 0 to let the system choose"},
	{name: "user", yaml: "users", env: "TURND_USERS", list: true, secret: true,
		usage: "static user `NAME:PASSWORD` (repeatable; env: comma-separated)"},
	{name: "auth-secret", env: "TURND_AUTH_SECRET", secret: true,
		usage: "shared `secret` for coturn-compatible REST credentials (static-auth-secret)"},
	{name: "allow-peer", yaml: "allow-peers", env: "TURND_ALLOW_PEERS", list: true,
		usage: "`CIDR` of otherwise denied peers (loopback, private, ...) to relay to anyway (repeatable; env: comma-separated)"},
	{name: "only-peer", yaml: "only-peers", env: "TURND_ONLY_PEERS", list: true,
		usage: "relay only to this `IP:PORT` (port 0: any port of the IP) and the --allow-peer ranges, instead of to every public address; for a turnd that serves one SFU (repeatable; env: comma-separated)"},
	{name: "max-allocations", env: "TURND_MAX_ALLOCATIONS", def: strconv.Itoa(turnserver.DefaultMaxAllocations),
		usage: "most allocations open at once on the server (`number`)"},
	{name: "max-allocations-per-user", env: "TURND_MAX_ALLOCATIONS_PER_USER", def: strconv.Itoa(turnserver.DefaultMaxAllocationsPerUser),
		usage: "most allocations open at once per user (`number`)"},
	{name: "max-allocations-per-address", env: "TURND_MAX_ALLOCATIONS_PER_ADDRESS", def: strconv.Itoa(turnserver.DefaultMaxAllocationsPerAddress),
		usage: "most allocations open at once per client IP address, IPv6 by /64 (`number`)"},
	{name: "allocation-lifetime", env: "TURND_ALLOCATION_LIFETIME", def: "10m",
		usage: "allocation lifetime `duration`: granted to clients, and the longest an allocation lives without a Refresh (1s..1h)"},
	{name: "bandwidth-limit", env: "TURND_BANDWIDTH_LIMIT", def: strconv.Itoa(turnserver.DefaultBandwidthLimit),
		usage: "cap per allocation and direction in `bytes/s` (0: no cap)"},
	{name: "max-tcp-connections", env: "TURND_MAX_TCP_CONNECTIONS", def: strconv.Itoa(turnserver.DefaultMaxTCPConnections),
		usage: "most TCP/TLS client connections open at once (`number`)"},
	{name: "metrics-addr", env: "TURND_METRICS_ADDR",
		usage: "serve Prometheus /metrics on this `address` (host:port; empty: off)"},
	{name: "log-level", env: "TURND_LOG_LEVEL", def: "info", usage: "log `level`: debug, info, warn or error"},
	{name: "log-format", env: "TURND_LOG_FORMAT", def: "text", usage: "log `format`: text or json"},
}

// value is a setting's effective value and where it came from.
type value struct {
	vals   []string
	source string // "flag --x", "env X", "FILE:LINE", "default"
}

func (v value) one() string {
	if len(v.vals) == 0 {
		return ""
	}
	return v.vals[len(v.vals)-1]
}

// options is the loaded configuration.
type options struct {
	server      turnserver.Config
	metricsAddr string
	logLevel    slog.Level
	logFormat   string
	checkOnly   bool
	values      map[string]value // effective values, for --check-config
	configFile  string
}

// errHelp is returned for -h/--help (usage already printed).
var errHelp = errors.New("help requested")

// maxConfigBytes bounds the YAML file read.
const maxConfigBytes = 1 << 20

// configError is a configuration problem with the source of the value.
type configError struct {
	err    error
	source string
}

func (e *configError) Error() string {
	switch e.source {
	case "":
		return e.err.Error()
	case "default":
		var ce *turnserver.ConfigError
		if errors.As(e.err, &ce) {
			for _, s := range settings {
				if s.name == ce.Field {
					return fmt.Sprintf("%v (set it with --%s, %s or the YAML key %s)", e.err, s.name, s.env, s.yamlKey())
				}
			}
		}
		return e.err.Error()
	}
	return e.err.Error() + " (from " + e.source + ")"
}

func (e *configError) Unwrap() error { return e.err }

// loadOptions reads flags, environment and the YAML file.
func loadOptions(args []string, getenv func(string) (string, bool), stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("turnd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flagVals := map[string]*value{}
	for _, s := range settings {
		s := s
		usage := s.usage
		if s.def != "" {
			usage += " (default " + s.def + ")"
		}
		usage += " [env " + s.env + "; YAML " + s.yamlKey() + "]"
		fs.Func(s.name, usage, func(v string) error {
			fv := flagVals[s.name]
			if fv == nil {
				fv = &value{source: "flag --" + s.name}
				flagVals[s.name] = fv
			}
			if s.list {
				fv.vals = append(fv.vals, v)
			} else {
				fv.vals = []string{v}
			}
			return nil
		})
	}
	configPath := fs.String("config", "", "YAML configuration `file` (see configs/turnd.yaml) [env TURND_CONFIG]")
	checkOnly := fs.Bool("check-config", false, "check the configuration, print the effective settings (secrets hidden) and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: turnd [flags]\n\nturnd is Parley's TURN server. Precedence: flag > environment > YAML > default.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: turnd takes only flags (see turnd -h)", fs.Arg(0))
	}

	path := *configPath
	if path == "" {
		path, _ = getenv("TURND_CONFIG")
	}
	var fileVals map[string]value
	if path != "" {
		var err error
		if fileVals, err = readYAML(path); err != nil {
			return nil, err
		}
	}

	eff := map[string]value{}
	for _, s := range settings {
		switch {
		case flagVals[s.name] != nil:
			eff[s.name] = *flagVals[s.name]
		case envSet(getenv, s.env):
			raw, _ := getenv(s.env)
			v := value{source: "env " + s.env}
			if s.list {
				for _, part := range strings.Split(raw, ",") {
					if part = strings.TrimSpace(part); part != "" {
						v.vals = append(v.vals, part)
					}
				}
			} else {
				v.vals = []string{raw}
			}
			eff[s.name] = v
		case fileVals != nil && fileVals[s.name].source != "":
			eff[s.name] = fileVals[s.name]
		default:
			v := value{source: "default"}
			if s.def != "" {
				v.vals = []string{s.def}
			}
			eff[s.name] = v
		}
	}
	o, err := buildOptions(eff)
	if err != nil {
		return nil, err
	}
	o.checkOnly = *checkOnly
	o.configFile = path
	return o, nil
}

func envSet(getenv func(string) (string, bool), name string) bool {
	_, ok := getenv(name)
	return ok
}

// readYAML reads the config file into values keyed by setting name.
func readYAML(path string) (map[string]value, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: cannot read %s: %w; check the --config path", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: cannot read %s: %w", path, err)
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("config: %s is over %d bytes; is it the right file?", path, maxConfigBytes)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config: %s is not valid YAML: %w", path, err)
	}
	out := map[string]value{}
	if doc.Kind == 0 || len(doc.Content) == 0 { // empty file
		return out, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config: %s:%d: the file must be a mapping of settings (key: value)", path, root.Line)
	}
	byKey := map[string]setting{}
	var known []string
	for _, s := range settings {
		byKey[s.yamlKey()] = s
		known = append(known, s.yamlKey())
	}
	sort.Strings(known)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		where := fmt.Sprintf("%s:%d", path, k.Line)
		s, ok := byKey[k.Value]
		if !ok {
			return nil, fmt.Errorf("config: %s: unknown key %q; known keys: %s", where, k.Value, strings.Join(known, ", "))
		}
		if _, dup := out[s.name]; dup {
			return nil, fmt.Errorf("config: %s: key %q given twice", where, k.Value)
		}
		val := value{source: where}
		switch {
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
			// "key:" with no value: an explicit empty value
		case v.Kind == yaml.ScalarNode:
			val.vals = []string{v.Value}
		case s.list && v.Kind == yaml.SequenceNode:
			for j, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("config: %s:%d: %s[%d] must be a plain string (quote it: \"NAME:PASSWORD\")", path, item.Line, k.Value, j)
				}
				val.vals = append(val.vals, item.Value)
			}
		case s.name == "user" && v.Kind == yaml.MappingNode:
			// users: {alice: password}
			for j := 0; j+1 < len(v.Content); j += 2 {
				name, pw := v.Content[j], v.Content[j+1]
				if name.Kind != yaml.ScalarNode || pw.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("config: %s:%d: users entries must be NAME: PASSWORD strings", path, name.Line)
				}
				val.vals = append(val.vals, name.Value+":"+pw.Value)
			}
		default:
			what := "a single value"
			if s.list {
				what = "a list of strings"
			}
			return nil, fmt.Errorf("config: %s: %s must be %s", where, k.Value, what)
		}
		out[s.name] = val
	}
	return out, nil
}

// buildOptions converts the effective text values into typed options.
func buildOptions(eff map[string]value) (*options, error) {
	o := &options{server: turnserver.DefaultConfig(), values: eff}
	c := &o.server
	var err error
	fail := func(name string, e error) error {
		return &configError{err: e, source: eff[name].source}
	}
	bad := func(name, problem, hint string) error {
		return fail(name, &turnserver.ConfigError{Field: name, Problem: problem, Hint: hint})
	}

	c.Listen = eff["listen"].one()
	c.TLSListen = eff["tls-listen"].one()
	c.TLSCertFile = eff["tls-cert"].one()
	c.TLSKeyFile = eff["tls-key"].one()
	c.Realm = eff["realm"].one()
	for _, name := range []string{"relay-ip", "relay-bind"} {
		s := strings.TrimSpace(eff[name].one())
		if s == "" {
			continue
		}
		a, perr := netip.ParseAddr(s)
		if perr != nil || a.Zone() != "" {
			return nil, bad(name, fmt.Sprintf("%q is not an IP address", s), "give an address such as 203.0.113.10")
		}
		if name == "relay-ip" {
			c.RelayIP = a
		} else {
			c.RelayBind = a
		}
	}
	if c.RelayPortMin, c.RelayPortMax, err = turnserver.ParsePortRange(eff["relay-ports"].one()); err != nil {
		return nil, fail("relay-ports", err)
	}
	c.Users = map[string]string{}
	for _, u := range eff["user"].vals {
		name, pw, perr := turnserver.ParseUser(u)
		if perr != nil {
			return nil, fail("user", perr)
		}
		if _, dup := c.Users[name]; dup {
			return nil, bad("user", fmt.Sprintf("user %q is given twice", name), "give each user once")
		}
		c.Users[name] = pw
	}
	c.AuthSecret = eff["auth-secret"].one()
	for _, p := range eff["allow-peer"].vals {
		pfx, perr := turnserver.ParsePeerPrefix(p)
		if perr != nil {
			return nil, fail("allow-peer", perr)
		}
		c.AllowPeers = append(c.AllowPeers, pfx)
	}
	for _, p := range eff["only-peer"].vals {
		ap, perr := turnserver.ParsePeerAddrPort(p)
		if perr != nil {
			return nil, fail("only-peer", perr)
		}
		c.OnlyPeers = append(c.OnlyPeers, ap)
	}
	ints := []struct {
		name string
		dst  *int
	}{
		{"max-allocations", &c.MaxAllocations},
		{"max-allocations-per-user", &c.MaxAllocationsPerUser},
		{"max-allocations-per-address", &c.MaxAllocationsPerAddress},
		{"max-tcp-connections", &c.MaxTCPConnections},
	}
	for _, it := range ints {
		s := strings.TrimSpace(eff[it.name].one())
		n, perr := strconv.Atoi(s)
		if perr != nil {
			return nil, bad(it.name, fmt.Sprintf("%q is not a whole number", s), "give a number such as "+defaultOf(it.name))
		}
		*it.dst = n
	}
	if s := strings.TrimSpace(eff["bandwidth-limit"].one()); s != "" {
		n, perr := strconv.ParseInt(s, 10, 64)
		if perr != nil {
			return nil, bad("bandwidth-limit", fmt.Sprintf("%q is not a whole number of bytes per second", s),
				"give bytes/s per allocation and direction, e.g. 2500000, or 0 for no cap")
		}
		c.BandwidthLimit = n
	}
	if s := strings.TrimSpace(eff["allocation-lifetime"].one()); s != "" {
		d, perr := time.ParseDuration(s)
		if perr != nil {
			return nil, bad("allocation-lifetime", fmt.Sprintf("%q is not a duration", s), "give a duration such as 10m or 1h")
		}
		c.AllocationLifetime = d
	}

	o.metricsAddr = strings.TrimSpace(eff["metrics-addr"].one())
	if o.metricsAddr != "" {
		if _, port, serr := net.SplitHostPort(o.metricsAddr); serr != nil || port == "" {
			return nil, bad("metrics-addr", fmt.Sprintf("%q is not host:port", o.metricsAddr), "give e.g. 127.0.0.1:9641, or leave it empty to turn metrics off")
		}
	}
	switch lvl := strings.ToLower(eff["log-level"].one()); lvl {
	case "debug":
		o.logLevel = slog.LevelDebug
	case "info":
		o.logLevel = slog.LevelInfo
	case "warn", "warning":
		o.logLevel = slog.LevelWarn
	case "error":
		o.logLevel = slog.LevelError
	default:
		return nil, bad("log-level", fmt.Sprintf("%q is not a level", lvl), "give debug, info, warn or error")
	}
	switch f := strings.ToLower(eff["log-format"].one()); f {
	case "text", "json":
		o.logFormat = f
	default:
		return nil, bad("log-format", fmt.Sprintf("%q is not a format", f), "give text or json")
	}

	// The server's own checks (ranges, required fields, consistency).
	if verr := c.Validate(); verr != nil {
		var ce *turnserver.ConfigError
		if errors.As(verr, &ce) {
			return nil, fail(ce.Field, verr)
		}
		return nil, verr
	}
	return o, nil
}

func defaultOf(name string) string {
	for _, s := range settings {
		if s.name == name {
			return s.def
		}
	}
	return ""
}

// printSettings writes the effective settings with their sources; secrets
// show only whether they are set.
func printSettings(w io.Writer, o *options) {
	if o.configFile != "" {
		fmt.Fprintf(w, "config file: %s\n", o.configFile)
	}
	for _, s := range settings {
		v := o.values[s.name]
		shown := strings.Join(v.vals, ", ")
		if s.secret && len(v.vals) > 0 {
			if s.name == "user" {
				var names []string
				for _, u := range v.vals {
					n, _, _ := strings.Cut(u, ":")
					names = append(names, n+":***")
				}
				shown = strings.Join(names, ", ")
			} else {
				shown = "***"
			}
		}
		fmt.Fprintf(w, "%-26s %-40s %s\n", s.name, shown, v.source)
	}
	c := o.server
	fmt.Fprintf(w, "effective relay: %s (bound on %s)\n", c.RelayIP, c.RelayBind)
}
