// Package pionlog sends Pion's logs to log/slog.
package pionlog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// Factory returns a pion LoggerFactory that sends pion's logs to log, with
// the pion scope ("ice", "pc", "dtls"…) as an attribute. Pion's trace level
// maps to slog's debug level minus 4.
func Factory(log *slog.Logger) logging.LoggerFactory { return pionLoggerFactory{log: log} }

// Quiet is Factory with pion's levels lowered by one step (warnings become
// info, errors warnings): a server sees pion's routine teardown warnings
// every time a participant leaves.
func Quiet(log *slog.Logger) logging.LoggerFactory {
	return pionLoggerFactory{log: log, shift: slog.LevelInfo - slog.LevelWarn}
}

type pionLoggerFactory struct {
	log   *slog.Logger
	shift slog.Level
}

// NewLogger implements logging.LoggerFactory.
func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("pion", scope), shift: f.shift}
}

type pionLogger struct {
	log   *slog.Logger
	shift slog.Level
}

func (l pionLogger) emit(level slog.Level, msg string) {
	l.log.Log(context.Background(), level+l.shift, msg)
}

func (l pionLogger) emitf(level slog.Level, format string, args ...any) {
	if l.log.Enabled(context.Background(), level+l.shift) {
		l.log.Log(context.Background(), level+l.shift, fmt.Sprintf(format, args...))
	}
}

func (l pionLogger) Trace(msg string)                  { l.emit(slog.LevelDebug-4, msg) }
func (l pionLogger) Tracef(format string, args ...any) { l.emitf(slog.LevelDebug-4, format, args...) }
func (l pionLogger) Debug(msg string)                  { l.emit(slog.LevelDebug, msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.emitf(slog.LevelDebug, format, args...) }
func (l pionLogger) Info(msg string)                   { l.emit(slog.LevelInfo, msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.emitf(slog.LevelInfo, format, args...) }
func (l pionLogger) Warn(msg string)                   { l.emit(slog.LevelWarn, msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.emitf(slog.LevelWarn, format, args...) }
func (l pionLogger) Error(msg string)                  { l.emit(slog.LevelError, msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.emitf(slog.LevelError, format, args...) }
