package turnserver

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST scheme (and coturn) is defined with HMAC-SHA1
	"encoding/base64"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// RESTCredentials returns coturn-compatible time-limited credentials for the
// TURN REST API scheme (coturn's use-auth-secret / static-auth-secret):
// username is "EXPIRY:user", where EXPIRY is the Unix time at which the
// credential stops being accepted (now+ttl), and password is
// base64(HMAC-SHA1(secret, username)).
//
// The SFU hands these out to browsers; turnd (or coturn configured with the
// same secret) accepts them until they expire. An empty user gives the bare
// "EXPIRY" form, which is also accepted.
func RESTCredentials(secret, user string, ttl time.Duration, now time.Time) (username, password string) {
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10)
	if user != "" {
		username += ":" + user
	}
	return username, restPassword(secret, username)
}

func restPassword(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username)) // hash.Hash.Write never fails
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Reasons for an authentication failure (the "reason" label of
// turnd_auth_failures_total and the reason field in the log).
const (
	authBadPassword  = "bad_password" // known user or well-formed REST username, wrong MESSAGE-INTEGRITY
	authUnknownUser  = "unknown_user" // not a static user, and not a REST username (or REST disabled)
	authExpired      = "expired"      // REST username whose expiry time has passed
	authWrongRealm   = "wrong_realm"  // the request names another realm
	authBadUsername  = "bad_username" // empty or over-long username
	maxUsernameBytes = 256            // longer usernames are refused without lookup
	maxLoggedBytes   = 64             // usernames are cut to this in logs
)

// authHandler returns the pion AuthHandler: static users first, then REST
// credentials when a secret is set. It returns the key
// MD5(username:realm:password) that pion checks the MESSAGE-INTEGRITY with; a
// wrong password therefore surfaces in the OnAuth event (verdict false), not
// here.
func (s *Server) authHandler() turn.AuthHandler {
	return func(ra *turn.RequestAttributes) (string, []byte, bool) {
		if ra == nil {
			return "", nil, false
		}
		name := ra.Username
		switch {
		case name == "" || len(name) > maxUsernameBytes:
			s.authFailed(ra, authBadUsername)
			return "", nil, false
		case ra.Realm != s.cfg.Realm:
			s.authFailed(ra, authWrongRealm)
			return "", nil, false
		}
		if key, ok := s.staticKeys[name]; ok {
			return name, key, true
		}
		if s.cfg.AuthSecret == "" {
			s.authFailed(ra, authUnknownUser)
			return "", nil, false
		}
		expiry, user, ok := parseRESTUsername(name)
		if !ok {
			s.authFailed(ra, authUnknownUser)
			return "", nil, false
		}
		if expiry < s.now().Unix() {
			// An expired credential makes no new allocation. An allocation
			// made with it while it was valid lives on: its client may
			// refresh it and add permissions and channels (browsers keep
			// the credentials an allocation was made with for its whole life).
			if ra.Method == stun.MethodAllocate || !s.holds(ra.SrcAddr, user) {
				s.authFailed(ra, authExpired)
				return "", nil, false
			}
		}
		return user, turn.GenerateAuthKey(name, ra.Realm, restPassword(s.cfg.AuthSecret, name)), true
	}
}

// parseRESTUsername splits "EXPIRY:user" (or a bare "EXPIRY"). The user id is
// what quotas count by; a bare or empty user part counts by the whole name.
func parseRESTUsername(name string) (expiry int64, user string, ok bool) {
	ts, rest, hasSep := strings.Cut(name, ":")
	if ts == "" || len(ts) > 19 {
		return 0, "", false
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return 0, "", false
		}
	}
	expiry, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return 0, "", false
	}
	if !hasSep || rest == "" {
		return expiry, name, true
	}
	return expiry, rest, true
}

// authFailed counts and (rate-limited) logs a refused credential. The
// password is never known here and never logged; the username is cut short.
func (s *Server) authFailed(ra *turn.RequestAttributes, reason string) {
	s.metrics.authFailures.WithLabelValues(reason).Inc()
	s.warnLimited("turn auth failed",
		slog.String("reason", reason),
		slog.String("username", clip(ra.Username)),
		slog.String("client", addrString(ra.SrcAddr)),
		slog.String("method", ra.Method.String()),
	)
}

// clip shortens attacker-supplied text for logging.
func clip(s string) string {
	if len(s) <= maxLoggedBytes {
		return s
	}
	return s[:maxLoggedBytes] + "…"
}
