package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/server"
)

// loadKeys reads the configured token keys: HS256 secrets (from their files
// or the configuration) and public keys (PEM files).
func loadKeys(a Auth) ([]auth.Key, error) {
	var keys []auth.Key
	for _, k := range a.Keys {
		secret := []byte(k.Secret)
		if k.SecretFile != "" {
			b, err := os.ReadFile(k.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("auth key %q: %w", k.ID, err)
			}
			secret = []byte(strings.TrimSpace(string(b)))
		}
		keys = append(keys, auth.Key{ID: k.ID, Secret: secret})
	}
	for _, k := range a.PublicKeys {
		b, err := os.ReadFile(k.File)
		if err != nil {
			return nil, fmt.Errorf("auth public key %q: %w", k.ID, err)
		}
		pub, err := auth.ParsePublicKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("auth public key %q (%s): %w", k.ID, k.File, err)
		}
		keys = append(keys, auth.Key{ID: k.ID, Public: pub})
	}
	return keys, nil
}

// loopbackAddr reports whether a listen address serves this machine only.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authConfig resolves the access model. An empty mode is open on a loopback
// address and token elsewhere; a server that other machines reach with no
// token keys refuses to start (protected mode) unless the operator said
// "open" explicitly.
func authConfig(cfg Config) (server.AuthConfig, error) {
	keys, err := loadKeys(cfg.Auth)
	if err != nil {
		return server.AuthConfig{}, err
	}
	mode := cfg.Auth.Mode
	if mode == "" {
		mode = server.AuthOpen
		if !loopbackAddr(cfg.Addr) {
			mode = server.AuthToken
			if len(keys) == 0 {
				return server.AuthConfig{}, fmt.Errorf("protected mode: --addr %s lets other machines in, and no token keys "+
					"are configured, so anyone could join, publish and record. Either configure a key for access tokens "+
					"(make a secret with `openssl rand -base64 32 > /etc/parley/key-1`, then --auth-key-file key-1=/etc/parley/key-1, "+
					"or %s=key-1=SECRET in the environment, or auth.keys in the YAML file) and hand out tokens with "+
					"`sfu token create`, or let anyone in on purpose with --auth open (PARLEY_AUTH=open, auth.mode: open)",
					cfg.Addr, envKeys)
			}
		}
	}
	ac := server.AuthConfig{Mode: mode, RoomsDir: cfg.RoomsDir}
	if len(keys) > 0 {
		v, err := auth.NewVerifier(keys, auth.Options{Issuer: cfg.Auth.Issuer, Audience: cfg.Auth.Audience})
		if err != nil {
			return server.AuthConfig{}, fmt.Errorf("auth: %w", err)
		}
		ac.Tokens = v
	} else if mode == server.AuthToken {
		return server.AuthConfig{}, fmt.Errorf("auth token needs at least one key: --auth-key-file ID=FILE, %s=ID=SECRET or auth.keys", envKeys)
	}
	return ac, nil
}

// runToken is "sfu token create …": it signs an access token with one of
// the configured HS256 keys and prints it and an invite link.
func runToken(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(stderr, "Usage: sfu token create --room ROOM --identity ID [--name NAME] [--grants LIST] [--ttl 1h] [--base-url URL]")
		return 2
	}
	fs := flag.NewFlagSet("sfu token create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("PARLEY_CONFIG"), "YAML configuration file with auth.keys")
	keyFiles := fs.String("auth-key-file", getenv("PARLEY_AUTH_KEY_FILE"), "HS256 keys, ID=FILE comma-separated (as sfu's)")
	keyID := fs.String("key", "", "id of the key to sign with (default: the last configured HS256 key, the newest)")
	room := fs.String("room", "", "room name or glob (team-*) the token admits to")
	identity := fs.String("identity", "", "who the holder is (the token's subject)")
	name := fs.String("name", "", "display name in the room (default: the name the holder types, else the identity)")
	grants := fs.String("grants", "publish,subscribe,chat",
		"comma-separated: join, publish, publish:camera, publish:microphone, publish:screen, subscribe, chat, record, moderate, admin")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	baseURL := fs.String("base-url", "", "the server's public URL for the invite link (default: from --addr in the configuration)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sfu token create --room ROOM --identity ID [flags]\n\nPrints an access token and an invite link. "+
			"The keys come from the configuration (--config, %s, PARLEY_AUTH_KEY_FILE).\n\n", envKeys)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "sfu token create:", err)
		return 2
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if *identity == "" {
		return fail(errors.New("--identity is required (who the holder is)"))
	}
	var cfgArgs []string
	if *configPath != "" {
		cfgArgs = append(cfgArgs, "--config", *configPath)
	}
	if *keyFiles != "" {
		cfgArgs = append(cfgArgs, "--auth-key-file", *keyFiles)
	}
	cfg, err := loadConfig(cfgArgs, func(k string) string {
		if k == "PARLEY_CONFIG" || k == "PARLEY_AUTH_KEY_FILE" {
			return ""
		}
		return getenv(k)
	}, stderr)
	if err != nil {
		return fail(err)
	}
	keys, err := loadKeys(Auth{Keys: cfg.Auth.Keys})
	if err != nil {
		return fail(err)
	}
	var key *auth.Key
	for i := range keys {
		if *keyID == "" || keys[i].ID == *keyID {
			key = &keys[i]
		}
	}
	if key == nil {
		if *keyID != "" {
			return fail(fmt.Errorf("no HS256 key %q configured", *keyID))
		}
		return fail(fmt.Errorf("no HS256 key configured: give --auth-key-file ID=FILE, %s=ID=SECRET or --config with auth.keys", envKeys))
	}
	g, err := auth.ParseGrants(strings.Split(*grants, ","))
	if err != nil {
		return fail(err)
	}
	now := time.Now()
	tok, err := auth.Sign(*key, auth.Spec{Identity: *identity, Name: *name, Room: *room, Grants: g, TTL: *ttl, Now: now,
		Issuer: cfg.Auth.Issuer, Audience: cfg.Auth.Audience})
	if err != nil {
		return fail(err)
	}
	fmt.Fprintln(stdout, tok)
	if *room != "" && !strings.ContainsAny(*room, "*?[") {
		base := *baseURL
		if base == "" {
			base = defaultBaseURL(cfg)
		}
		q := url.Values{"room": {*room}, "token": {tok}}
		fmt.Fprintln(stdout, strings.TrimSuffix(base, "/")+"/?"+q.Encode())
	}
	fmt.Fprintf(stderr, "token for %q in room %q, grants %s, key %q, valid until %s\n", *identity, *room, g.String(), key.ID,
		now.Add(*ttl).UTC().Format(time.RFC3339))
	return 0
}

// defaultBaseURL is the server's URL as its configuration says.
func defaultBaseURL(cfg Config) string {
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	host, port, _ := net.SplitHostPort(cfg.Addr)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if cfg.PublicIP != "" {
			host = cfg.PublicIP
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}
