// Package testlog holds what tests use to read a server's logs.
package testlog

import (
	"bytes"
	"sync"
)

// Buffer is a log sink safe for the many goroutines of a server: tests hand
// it to a slog handler and read what was logged with String.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
