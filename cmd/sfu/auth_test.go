package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
)

const secretA = "0123456789abcdef0123456789abcdef-a"

func TestAuthSettings(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k2")
	if err := os.WriteFile(keyFile, []byte(secretA+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig([]string{"--auth-key-file", "k2=" + keyFile, "--addr", "0.0.0.0:7880"},
		env(map[string]string{envKeys: "k1=" + secretA}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Auth.Keys) != 2 || cfg.Auth.Keys[0].ID != "k1" || cfg.Auth.Keys[1].SecretFile != keyFile {
		t.Fatalf("keys %+v", cfg.Auth.Keys)
	}
	ac, err := authConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ac.Mode != server.AuthToken || ac.Tokens == nil || len(ac.Tokens.KeyIDs()) != 2 {
		t.Errorf("keys on a public address: %+v", ac)
	}

	// Loopback without keys: open; explicit token mode without keys: an error.
	def, _ := loadConfig(nil, env(nil), &bytes.Buffer{})
	if ac, err := authConfig(def); err != nil || ac.Mode != server.AuthOpen || ac.Tokens != nil {
		t.Errorf("default: %+v %v", ac, err)
	}
	tok, _ := loadConfig([]string{"--auth", "token"}, env(nil), &bytes.Buffer{})
	if _, err := authConfig(tok); err == nil || !strings.Contains(err.Error(), "key") {
		t.Errorf("token mode without keys: %v", err)
	}
	for _, bad := range [][]string{{"--auth", "closed"}, {"--auth-key-file", "nofile"}, {"--auth-public-key", "=x"}} {
		if _, err := loadConfig(bad, env(nil), &bytes.Buffer{}); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	short, _ := loadConfig(nil, env(map[string]string{envKeys: "k=short"}), &bytes.Buffer{})
	if _, err := authConfig(short); err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Errorf("a short secret: %v", err)
	}
}

// Protected mode: the real binary on a non-loopback address with no keys
// refuses to start and says what to set; --auth open or a key lets it start.
func TestProtectedModeRefusesToStart(t *testing.T) {
	bin := buildSFU(t)
	cmd := exec.Command(bin, "--addr", "0.0.0.0:0", "--udp-port", "0", "--tcp-port", "0", "--media-ip", "127.0.0.1")
	cmd.Env = append(os.Environ(), envKeys+"=", "PARLEY_AUTH=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2; log:\n%s", err, stderr.String())
	}
	for _, want := range []string{"protected mode", "--auth-key-file", envKeys, "--auth open", "openssl rand"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the refusal does not mention %q:\n%s", want, stderr.String())
		}
	}
	// Each of these serves (startSFU fails the test if the server never says where).
	startSFULog(t, bin, "--addr", "0.0.0.0:0", "--auth", "open")
	startSFUEnv(t, bin, []string{envKeys + "=k1=" + secretA}, "--addr", "0.0.0.0:0")
}

// sfu token create prints a token and an invite link that the server
// accepts: its holder joins with the token's name and grants, and nobody
// joins without one.
func TestTokenCreateAndJoin(t *testing.T) {
	bin := buildSFU(t)
	keys := []string{envKeys + "=old=" + secretA + ",new=" + strings.Repeat("n", 40)}
	_, base := func() (*exec.Cmd, string) {
		cmd, base, _ := startSFUEnv(t, bin, keys, "--auth", "token")
		return cmd, base
	}()
	create := exec.Command(bin, "token", "create", "--room", "standup", "--identity", "u-17", "--name", "Alice Liddell",
		"--grants", "subscribe,chat", "--ttl", "10m", "--base-url", "https://meet.example/")
	create.Env = append(os.Environ(), keys...)
	var stderr bytes.Buffer
	create.Stderr = &stderr
	out, err := create.Output()
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !regexp.MustCompile(`^[\w-]+\.[\w-]+\.[\w-]+$`).MatchString(lines[0]) {
		t.Fatalf("output %q, want a token and a link", out)
	}
	link, err := url.Parse(lines[1])
	if err != nil || link.Host != "meet.example" || link.Query().Get("room") != "standup" || link.Query().Get("token") != lines[0] {
		t.Errorf("invite link %q", lines[1])
	}
	if !strings.Contains(stderr.String(), `key "new"`) || !strings.Contains(stderr.String(), "join,subscribe,chat") {
		t.Errorf("token create signs with the newest key and says so: %s", stderr.String())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws := "ws" + strings.TrimPrefix(base, "http") + "/ws"
	c, err := client.Dial(ctx, ws, client.Options{Token: lines[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Join(ctx, client.JoinOptions{Room: "standup", Name: "whatever"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Self != "Alice Liddell" || strings.Join(st.Grants, ",") != "join,subscribe,chat" {
		t.Errorf("joined as %q with %v", st.Self, st.Grants)
	}
	anon, err := client.Dial(ctx, ws, client.Options{Username: "anon"})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	var pe *protocol.Error
	if _, err := anon.Join(ctx, client.JoinOptions{Room: "standup"}); !errors.As(err, &pe) || pe.Code != protocol.CodeForbidden {
		t.Errorf("join without a token: %v, want FORBIDDEN", err)
	}
}

// A public key file (PEM) verifies tokens another service signs with its
// private key, with the configured issuer and audience.
func TestPublicKeySettings(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "app.pub.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig([]string{"--auth-public-key", "app=" + file, "--auth-issuer", "https://app.example",
		"--auth-audience", "parley", "--addr", "0.0.0.0:443"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := authConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ac.Mode != server.AuthToken {
		t.Errorf("mode %q with a public key on a public address", ac.Mode)
	}
	spec := auth.Spec{Identity: "u", Room: "r", TTL: time.Hour, Issuer: "https://app.example", Audience: "parley"}
	good, _ := auth.SignWith(jwt.SigningMethodEdDSA, "app", priv, spec)
	if tok, err := ac.Tokens.Verify(good); err != nil || tok.Identity != "u" {
		t.Errorf("a token of the app: %v %v", tok, err)
	}
	spec.Issuer = "https://other.example"
	other, _ := auth.SignWith(jwt.SigningMethodEdDSA, "app", priv, spec)
	if _, err := ac.Tokens.Verify(other); err == nil {
		t.Error("a token of another issuer was accepted")
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	_ = os.WriteFile(bad, []byte("not a key"), 0o644)
	cfg, _ = loadConfig([]string{"--auth-public-key", "app=" + bad}, env(nil), &bytes.Buffer{})
	if _, err := authConfig(cfg); err == nil || !strings.Contains(err.Error(), "bad.pem") {
		t.Errorf("a bad key file: %v", err)
	}
}
