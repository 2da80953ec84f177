package srtpkeys

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// runHandshake runs a real DTLS-SRTP handshake between a pion/dtls server that
// a Capture watches and a client, over loopback UDP, and returns both ends.
func runHandshake(t *testing.T, c *Capture, cert tls.Certificate, suites []dtls.CipherSuiteID,
	profiles []dtls.SRTPProtectionProfile) (server, client *dtls.Conn) {
	t.Helper()
	sconn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cconn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sconn.Close(); _ = cconn.Close() })
	ccert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	server, err = dtls.Server(sconn, cconn.LocalAddr(), &dtls.Config{
		Certificates:           []tls.Certificate{cert},
		CipherSuites:           suites,
		SRTPProtectionProfiles: profiles,
		ExtendedMasterSecret:   dtls.RequireExtendedMasterSecret,
		ClientAuth:             dtls.RequireAnyClientCert,
		InsecureSkipVerify:     true,
		ServerHelloMessageHook: c.ServerHello,
		KeyLogWriter:           c,
	})
	if err != nil {
		t.Fatal(err)
	}
	client, err = dtls.Client(cconn, sconn.LocalAddr(), &dtls.Config{
		Certificates:           []tls.Certificate{ccert},
		CipherSuites:           suites,
		SRTPProtectionProfiles: profiles,
		ExtendedMasterSecret:   dtls.RequireExtendedMasterSecret,
		InsecureSkipVerify:     true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close(); _ = client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- server.HandshakeContext(ctx) }()
	if err := client.HandshakeContext(ctx); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	return server, client
}

// The keys the Capture computes are the ones pion/dtls's own exporter gives
// the server, for each cipher suite's PRF and each SRTP profile; and the
// client's SRTP context decrypts what the Capture's context encrypted.
func TestKeysMatchTheHandshake(t *testing.T) {
	ecCert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaCert, err := selfsign.SelfSign(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		cert    tls.Certificate
		suite   dtls.CipherSuiteID
		profile dtls.SRTPProtectionProfile
	}{
		{"ecdsa-aes128-gcm-sha256/aead-aes128-gcm", ecCert, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.SRTP_AEAD_AES_128_GCM},
		{"ecdsa-aes256-gcm-sha384/aead-aes256-gcm", ecCert, dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.SRTP_AEAD_AES_256_GCM},
		{"ecdsa-aes256-cbc-sha/aes128-cm-sha1-80", ecCert, dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, dtls.SRTP_AES128_CM_HMAC_SHA1_80},
		{"rsa-aes128-gcm-sha256/aes128-cm-sha1-80", rsaCert, dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, dtls.SRTP_AES128_CM_HMAC_SHA1_80},
		{"rsa-aes256-gcm-sha384/aead-aes128-gcm", rsaCert, dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, dtls.SRTP_AEAD_AES_128_GCM},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &Capture{}
			if _, err := c.LocalKeys(); !errors.Is(err, ErrIncomplete) {
				t.Fatalf("keys before any handshake: %v, want ErrIncomplete", err)
			}
			server, client := runHandshake(t, c, tc.cert, []dtls.CipherSuiteID{tc.suite}, []dtls.SRTPProtectionProfile{tc.profile})
			keys, err := c.LocalKeys()
			if err != nil {
				t.Fatal(err)
			}
			if keys.Profile != srtp.ProtectionProfile(tc.profile) {
				t.Fatalf("profile %v, want %v", keys.Profile, tc.profile)
			}

			// What pion/dtls's own exporter gives the server.
			st, ok := server.ConnectionState()
			if !ok {
				t.Fatal("no server connection state")
			}
			want := srtp.Config{Profile: keys.Profile}
			if err := want.ExtractSessionKeysFromDTLS(&st, false); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(keys.MasterKey, want.Keys.LocalMasterKey) || !bytes.Equal(keys.MasterSalt, want.Keys.LocalMasterSalt) {
				t.Fatalf("keys differ from the handshake's exporter:\n got %x %x\nwant %x %x",
					keys.MasterKey, keys.MasterSalt, want.Keys.LocalMasterKey, want.Keys.LocalMasterSalt)
			}
			if c.master != nil {
				t.Error("the master secret is kept after the keys were made")
			}

			// The client decrypts with its side's keys what the server's
			// context encrypted.
			cst, ok := client.ConnectionState()
			if !ok {
				t.Fatal("no client connection state")
			}
			ccfg := srtp.Config{Profile: keys.Profile}
			if err := ccfg.ExtractSessionKeysFromDTLS(&cst, true); err != nil {
				t.Fatal(err)
			}
			dec, err := srtp.CreateContext(ccfg.Keys.RemoteMasterKey, ccfg.Keys.RemoteMasterSalt, keys.Profile)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := srtp.CreateContext(keys.MasterKey, keys.MasterSalt, keys.Profile)
			if err != nil {
				t.Fatal(err)
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 65530, Timestamp: 9, SSRC: 77},
				Payload: []byte("a frame of video")}
			for range 10 { // across a sequence number wrap
				plain, err := pkt.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				sealed, err := enc.EncryptRTP(nil, plain, nil)
				if err != nil {
					t.Fatal(err)
				}
				opened, err := dec.DecryptRTP(nil, sealed, nil)
				if err != nil {
					t.Fatalf("seq %d: the client cannot decrypt: %v", pkt.SequenceNumber, err)
				}
				if !bytes.Equal(opened, plain) {
					t.Fatalf("seq %d: decrypted packet differs", pkt.SequenceNumber)
				}
				pkt.SequenceNumber++
			}
		})
	}
}

// As the DTLS client, this side sends no ServerHello: the Capture says it
// has nothing rather than making wrong keys.
func TestClientSideIsIncomplete(t *testing.T) {
	c := &Capture{}
	_, _ = c.Write([]byte("CLIENT_RANDOM " + string(bytes.Repeat([]byte("ab"), 32)) + " " + string(bytes.Repeat([]byte("cd"), 48)) + "\n"))
	if _, err := c.LocalKeys(); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("keys without a ServerHello: %v, want ErrIncomplete", err)
	}
	if c.master != nil {
		t.Error("the master secret is kept after LocalKeys")
	}
	for _, b := range c.line[:cap(c.line)] {
		if b != 0 {
			t.Fatal("the key log line is kept in memory")
		}
	}
}

// The key log writer takes lines split across writes, ignores malformed and
// foreign lines, and bounds what it buffers.
func TestKeyLogParsing(t *testing.T) {
	random := bytes.Repeat([]byte("0a"), 32)
	master := bytes.Repeat([]byte("1b"), 48)
	c := &Capture{}
	line := "CLIENT_RANDOM " + string(random) + " " + string(master) + "\n"
	for _, part := range []string{"junk line\n", "CLIENT_RANDOM zz 11\n", line[:10], line[10:40], line[40:]} {
		if n, err := c.Write([]byte(part)); err != nil || n != len(part) {
			t.Fatalf("Write(%q) = %d, %v", part, n, err)
		}
	}
	if c.clientRandom[0] != 0x0a || len(c.master) != 48 || c.master[0] != 0x1b {
		t.Fatalf("parsed random %x master %x", c.clientRandom, c.master)
	}
	_, _ = c.Write(bytes.Repeat([]byte("x"), 10*maxKeyLogLine))
	if len(c.line) > maxKeyLogLine {
		t.Fatalf("buffered %d bytes of an endless line", len(c.line))
	}
	_, _ = c.Write([]byte("\n"))
	if len(c.master) != 48 {
		t.Fatal("an overlong line replaced the secrets")
	}
}
