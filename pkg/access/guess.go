package access

import (
	"fmt"
	"math"
	"net"
	"sync"
	"time"

	"github.com/parley/parley/pkg/protocol"
	"golang.org/x/time/rate"
)

// Wrong room passwords are limited per client address and room: a burst of
// guessBurst, then one more every guessEvery. A limited client gets
// RATE_LIMITED without its password being checked at all.
const (
	guessBurst   = 5
	guessEvery   = 12 * time.Second
	guessEntries = 4096 // addresses × rooms remembered; beyond, the fully recovered ones are forgotten
)

// guessLimiter counts wrong password guesses.
type guessLimiter struct {
	mu      sync.Mutex
	byKey   map[string]*rate.Limiter
	nowFunc func() time.Time
}

func (g *guessLimiter) now() time.Time {
	if g.nowFunc != nil {
		return g.nowFunc()
	}
	return time.Now()
}

func guessKey(remote, room string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		remote = host
	}
	return remote + "\x00" + room
}

// limiter returns the limiter of key, making it (and making room for it).
func (g *guessLimiter) limiter(key string) *rate.Limiter {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byKey == nil {
		g.byKey = make(map[string]*rate.Limiter)
	}
	if l := g.byKey[key]; l != nil {
		return l
	}
	if len(g.byKey) >= guessEntries {
		now := g.now()
		for k, l := range g.byKey {
			if l.TokensAt(now) >= guessBurst {
				delete(g.byKey, k)
			}
		}
		if len(g.byKey) >= guessEntries {
			// Every entry is limiting someone: forget one at random
			// rather than grow without bound.
			for k := range g.byKey {
				delete(g.byKey, k)
				break
			}
		}
	}
	l := rate.NewLimiter(rate.Every(guessEvery), guessBurst)
	g.byKey[key] = l
	return l
}

// check asks for the preset's password: PASSWORD_REQUIRED without one,
// WRONG_PASSWORD for a wrong one, RATE_LIMITED after too many wrong ones.
func (g *guessLimiter) check(preset *Preset, req JoinRequest) error {
	if req.Password == "" {
		return &protocol.Error{Code: protocol.CodePasswordRequired,
			Reason: fmt.Sprintf("room %q needs a password", req.Room)}
	}
	l := g.limiter(guessKey(req.Remote, req.Room))
	now := g.now()
	if l.TokensAt(now) < 1 {
		wait := int(math.Ceil((1 - l.TokensAt(now)) * guessEvery.Seconds()))
		return &protocol.Error{Code: protocol.CodeRateLimited,
			Reason: fmt.Sprintf("too many wrong passwords for room %q; try again in %d s", req.Room, max(wait, 1))}
	}
	if preset.CheckPassword(req.Password) {
		return nil
	}
	l.AllowN(now, 1)
	return &protocol.Error{Code: protocol.CodeWrongPassword,
		Reason: fmt.Sprintf("wrong password for room %q", req.Room)}
}
