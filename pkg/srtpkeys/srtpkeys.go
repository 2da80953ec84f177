// Package srtpkeys recovers the SRTP keys of a pion/webrtc connection on which
// this side is the DTLS server, so that its RTP can be encrypted with an
// srtp.Context of one's own and written straight to the socket, below pion's
// SRTP session, mux and ICE layers (docs/architecture.md, "The direct send
// path").
//
// pion/webrtc exports no DTLS keying material. It does pass two hooks to
// pion/dtls: the ServerHello it sends (server random, cipher suite, the
// chosen SRTP protection profile) and the NSS key log line it writes once the
// master secret is known (client random, master secret). From these a Capture
// computes the RFC 5705 exporter that RFC 5764 keys SRTP with, exactly as
// dtls.State.ExportKeyingMaterial does. Nothing is written anywhere: the key
// log goes to the Capture, and the master secret is cleared once the keys are
// made.
package srtpkeys

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sync"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// maxKeyLogLine bounds what the key log writer keeps of a line.
const maxKeyLogLine = 512

// ErrIncomplete says the handshake has not given what the keys need (yet):
// this side was not the DTLS server, or the handshake has not finished.
var ErrIncomplete = errors.New("srtpkeys: DTLS handshake secrets not captured")

// Capture collects one DTLS handshake's secrets through pion's hooks. Install
// it on the SettingEngine of one connection only: a second handshake on the
// same Capture would overwrite the first's secrets.
type Capture struct {
	mu           sync.Mutex
	serverRandom [handshake.RandomLength]byte
	clientRandom [handshake.RandomLength]byte
	master       []byte
	suite        dtls.CipherSuiteID
	profile      dtls.SRTPProtectionProfile
	haveHello    bool
	line         []byte // a key log line being written
}

// Install sets the Capture's hooks on s: the ServerHello hook and the DTLS key
// log writer. s should be a copy that only one connection uses.
func (c *Capture) Install(s *webrtc.SettingEngine) {
	s.SetDTLSServerHelloMessageHook(c.ServerHello)
	s.SetDTLSKeyLogWriter(c)
}

// ServerHello records the server random, the cipher suite and the SRTP
// protection profile of the ServerHello about to be sent, and returns it
// unchanged (a dtls ServerHelloMessageHook).
func (c *Capture) ServerHello(m handshake.MessageServerHello) handshake.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.serverRandom = m.Random.MarshalFixed()
	c.suite = 0
	if m.CipherSuiteID != nil {
		c.suite = dtls.CipherSuiteID(*m.CipherSuiteID)
	}
	c.profile = 0
	for _, e := range m.Extensions {
		if u, ok := e.(*extension.UseSRTP); ok && len(u.ProtectionProfiles) == 1 {
			c.profile = u.ProtectionProfiles[0]
		}
	}
	c.haveHello = true
	return &m
}

// Write takes the DTLS key log: lines of "CLIENT_RANDOM <hex> <hex>". It keeps
// the last such line's secrets and ignores anything else.
func (c *Capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(c.line)+len(p) <= maxKeyLogLine {
				c.line = append(c.line, p...)
			}
			break
		}
		if len(c.line)+i <= maxKeyLogLine {
			c.line = append(c.line, p[:i]...)
			c.parseLine(c.line)
		}
		clear(c.line) // it held the master secret in hex
		c.line = c.line[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (c *Capture) parseLine(line []byte) {
	fields := bytes.Fields(line)
	if len(fields) != 3 || string(fields[0]) != "CLIENT_RANDOM" {
		return
	}
	random, err := hex.DecodeString(string(fields[1]))
	if err != nil || len(random) != handshake.RandomLength {
		return
	}
	master, err := hex.DecodeString(string(fields[2]))
	if err != nil || len(master) == 0 {
		return
	}
	copy(c.clientRandom[:], random)
	clear(c.master)
	c.master = master
}

// Keys is what a connection's DTLS-SRTP handshake gave this side (the
// server) to encrypt with.
type Keys struct {
	Profile    srtp.ProtectionProfile
	MasterKey  []byte
	MasterSalt []byte
}

// LocalKeys computes the server's SRTP write keys (RFC 5764 section 4.2) and
// clears the captured master secret, whatever the outcome: it is called
// once, when the connection is up. It returns ErrIncomplete before the
// handshake has finished, or when this side was the DTLS client (there is no
// ServerHello of ours to read then), and an error for a cipher suite or
// protection profile it does not know.
func (c *Capture) LocalKeys() (Keys, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() {
		clear(c.master)
		c.master = nil
	}()
	if !c.haveHello || len(c.master) == 0 {
		return Keys{}, ErrIncomplete
	}
	h, err := prfHash(c.suite)
	if err != nil {
		return Keys{}, err
	}
	profile := srtp.ProtectionProfile(c.profile)
	cfg := srtp.Config{Profile: profile}
	if err := cfg.ExtractSessionKeysFromDTLS(exporter{c: c, hash: h}, false); err != nil {
		return Keys{}, fmt.Errorf("srtpkeys: SRTP profile %#04x: %w", uint16(c.profile), err)
	}
	return Keys{Profile: profile, MasterKey: cfg.Keys.LocalMasterKey, MasterSalt: cfg.Keys.LocalMasterSalt}, nil
}

// LocalContext returns an SRTP context that encrypts this side's RTP with the
// keys LocalKeys computes.
func (c *Capture) LocalContext() (*srtp.Context, error) {
	k, err := c.LocalKeys()
	if err != nil {
		return nil, err
	}
	ctx, err := srtp.CreateContext(k.MasterKey, k.MasterSalt, k.Profile)
	if err != nil {
		return nil, fmt.Errorf("srtpkeys: SRTP context: %w", err)
	}
	return ctx, nil
}

// prfHash is the TLS 1.2 PRF hash of a cipher suite: SHA-384 for the
// *_SHA384 suites, SHA-256 for the others pion/dtls offers.
func prfHash(id dtls.CipherSuiteID) (prf.HashFunc, error) {
	switch id {
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return sha512.New384, nil
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, dtls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
		dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, dtls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
		return sha256.New, nil
	}
	return nil, fmt.Errorf("srtpkeys: cipher suite %#04x is not one this package knows the PRF of", uint16(id))
}

// exporter is RFC 5705's exporter for the captured handshake, as this side
// (the server) computes it: PRF(master secret, label, client random ||
// server random).
type exporter struct {
	c    *Capture // its mu is held
	hash func() hash.Hash
}

func (e exporter) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	if len(context) != 0 {
		return nil, errors.New("srtpkeys: an exporter context is not supported")
	}
	seed := make([]byte, 0, len(label)+2*handshake.RandomLength)
	seed = append(seed, label...)
	seed = append(seed, e.c.clientRandom[:]...)
	seed = append(seed, e.c.serverRandom[:]...)
	return prf.PHash(e.c.master, seed, length, e.hash)
}

var _ srtp.KeyingMaterialExporter = exporter{}
