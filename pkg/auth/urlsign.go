package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// URLSigner issues and checks signed URLs: a path valid until an expiry,
// without a token, so that a <video src> or a shared link can fetch one file.
// The signature is HMAC-SHA256 over the path and the expiry.
type URLSigner struct {
	secret []byte
	now    func() time.Time
}

// NewURLSigner returns a signer with secret; an empty secret gets a random
// one (signed URLs then end with the process, which is safe by default).
func NewURLSigner(secret []byte) *URLSigner {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
	}
	return &URLSigner{secret: secret, now: time.Now}
}

// Errors of a signed URL's check.
var (
	ErrURLUnsigned = errors.New("URL not signed")
	ErrURLExpired  = errors.New("signed URL expired")
	ErrURLInvalid  = errors.New("signed URL invalid")
)

func (s *URLSigner) mac(p string, exp int64) string {
	h := hmac.New(sha256.New, s.secret)
	fmt.Fprintf(h, "%d\n%s", exp, p)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// Sign returns the query ("expires=…&sig=…") that makes the path p readable
// until exp.
func (s *URLSigner) Sign(p string, exp time.Time) string {
	e := exp.Unix()
	v := url.Values{"expires": {strconv.FormatInt(e, 10)}, "sig": {s.mac(p, e)}}
	return v.Encode()
}

// Verify checks that q signs the path p and has not expired.
func (s *URLSigner) Verify(p string, q url.Values) error {
	sig, es := q.Get("sig"), q.Get("expires")
	if sig == "" && es == "" {
		return ErrURLUnsigned
	}
	e, err := strconv.ParseInt(es, 10, 64)
	if err != nil || sig == "" || len(sig) > 64 {
		return ErrURLInvalid
	}
	if !hmac.Equal([]byte(sig), []byte(s.mac(p, e))) {
		return ErrURLInvalid
	}
	if s.now().Unix() > e {
		return ErrURLExpired
	}
	return nil
}
