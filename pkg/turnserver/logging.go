package turnserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/pion/logging"
)

// Log lines that a remote party can provoke at will (auth failures, denied
// peers, pion's own warnings about malformed traffic) go through a shared
// token bucket so that a flood cannot fill the disk: at most logBurst lines at
// once and logRate lines per second on average. Lines dropped meanwhile are
// reported as "suppressed" on the next line that gets through.
const (
	logRate  = 20
	logBurst = 50
)

type logLimiter struct {
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int64
}

// allow takes a token; it returns whether to log and how many lines were
// suppressed since the last line logged.
func (l *logLimiter) allow(now time.Time) (bool, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens = logBurst
	} else if d := now.Sub(l.last).Seconds(); d > 0 {
		l.tokens = min(logBurst, l.tokens+d*logRate)
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	n := l.suppressed
	l.suppressed = 0
	return true, n
}

// warnLimited logs at Warn level through the flood limiter.
func (s *Server) warnLimited(msg string, attrs ...slog.Attr) {
	s.logLimited(slog.LevelWarn, msg, attrs...)
}

func (s *Server) logLimited(level slog.Level, msg string, attrs ...slog.Attr) {
	if !s.log.Enabled(context.Background(), level) {
		return
	}
	ok, suppressed := s.limiter.allow(time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int64("suppressed", suppressed))
	}
	s.log.LogAttrs(context.Background(), level, msg, attrs...)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// pionLoggerFactory routes pion's own logging into slog. pion logs at Info
// and above about things remote parties control (bad packets, denied peers,
// failed TLS handshakes), so its Trace/Debug/Info lines become slog Debug and
// its Warn/Error lines become rate-limited slog Warn.
type pionLoggerFactory struct{ s *Server }

func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return &pionLogger{s: f.s, scope: scope}
}

type pionLogger struct {
	s     *Server
	scope string
}

func (l *pionLogger) debug(msg string) {
	l.s.log.LogAttrs(context.Background(), slog.LevelDebug, msg, slog.String("component", "pion/"+l.scope))
}

func (l *pionLogger) debugEnabled() bool {
	return l.s.log.Enabled(context.Background(), slog.LevelDebug)
}

func (l *pionLogger) warn(msg string) {
	l.s.logLimited(slog.LevelWarn, msg, slog.String("component", "pion/"+l.scope))
}

func (l *pionLogger) Trace(msg string) {
	if l.debugEnabled() {
		l.debug(msg)
	}
}

func (l *pionLogger) Tracef(format string, args ...any) {
	if l.debugEnabled() {
		l.debug(fmt.Sprintf(format, args...))
	}
}
func (l *pionLogger) Debug(msg string) { l.Trace(msg) }
func (l *pionLogger) Debugf(format string, args ...any) {
	l.Tracef(format, args...)
}
func (l *pionLogger) Info(msg string) { l.Trace(msg) }
func (l *pionLogger) Infof(format string, args ...any) {
	l.Tracef(format, args...)
}
func (l *pionLogger) Warn(msg string) { l.warn(msg) }
func (l *pionLogger) Warnf(format string, args ...any) {
	if l.s.log.Enabled(context.Background(), slog.LevelWarn) {
		l.warn(fmt.Sprintf(format, args...))
	}
}
func (l *pionLogger) Error(msg string) { l.warn(msg) }
func (l *pionLogger) Errorf(format string, args ...any) {
	if l.s.log.Enabled(context.Background(), slog.LevelWarn) {
		l.warn(fmt.Sprintf(format, args...))
	}
}
