package turnserver

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Timeouts of TCP/TLS client connections.
const (
	// firstReadTimeout bounds the wait for a new connection's first bytes
	// (and the whole TLS handshake): a TURN client speaks at once.
	firstReadTimeout = 10 * time.Second
	// writeTimeout bounds one write to a client; a client that does not read
	// its connection for that long is disconnected.
	writeTimeout = 5 * time.Second
	// idleMargin is added to the allocation lifetime to give the idle
	// timeout: a client with an allocation refreshes it within its lifetime.
	idleMargin = 30 * time.Second
)

// trackedListener is the TCP listener handed to pion. pion stops accepting
// for good on the first Accept error, so transient errors (out of file
// descriptors) are retried here and only closing returns an error. It keeps
// the count of open connections under MaxTCPConnections and can wrap each
// connection in TLS.
type trackedListener struct {
	net.Listener
	s      *Server
	tlsCfg *tls.Config // nil for plain TCP

	mu     sync.Mutex
	closed bool
	done   func() // called once when Accept gives up (closed)
}

func (l *trackedListener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				l.done()
				return nil, err
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		tc, ok := l.s.addConn(c)
		if !ok && l.s.isClosing() {
			_ = c.Close()
			continue // the next Accept fails: the listener is closed too
		}
		if !ok {
			l.s.metrics.tcpRefused.Inc()
			l.s.warnLimited("turn tcp connection refused: max-tcp-connections reached",
				slog.String("client", c.RemoteAddr().String()))
			_ = c.Close()
			continue
		}
		if l.tlsCfg != nil {
			return &tlsConn{Conn: tls.Server(tc, l.tlsCfg)}, nil
		}
		return tc, nil
	}
}

func (l *trackedListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return l.Listener.Close()
}

// trackedConn is one TCP client connection: counted, closed on shutdown,
// with a deadline on every read and write.
type trackedConn struct {
	net.Conn
	s         *Server
	idle      time.Duration
	mu        sync.Mutex
	reads     int
	closeOnce sync.Once
	doneOnce  sync.Once
}

func (c *trackedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	timeout := c.idle
	if c.reads == 0 {
		timeout = firstReadTimeout
	}
	c.reads++
	c.mu.Unlock()
	_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
	n, err := c.Conn.Read(p)
	if err != nil {
		// pion's read loop for this connection ends on any read error.
		c.doneOnce.Do(c.s.liveDone)
	}
	return n, err
}

func (c *trackedConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	n, err := c.Conn.Write(p)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		_ = c.Close() // the client does not read: let it go
	}
	return n, err
}

func (c *trackedConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		c.s.removeConn(c)
	})
	// After a close pion's read loop, if still running, fails at once.
	c.doneOnce.Do(c.s.liveDone)
	return err
}

// tlsConn is a server-side TLS connection whose handshake, done on first use,
// is bounded by firstReadTimeout. It deliberately is not a *tls.Conn: pion
// handshakes a *tls.Conn itself and, on failure, forgets to close it.
type tlsConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

func (c *tlsConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), firstReadTimeout)
		defer cancel()
		c.err = c.Conn.HandshakeContext(ctx)
	})
	return c.err
}

func (c *tlsConn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err // pion's read loop ends and closes the connection
	}
	return c.Conn.Read(p)
}

func (c *tlsConn) Write(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// servingPacketConn is the UDP listening socket handed to pion; it reports
// when pion's read loop has ended.
type servingPacketConn struct {
	net.PacketConn
	once sync.Once
	done func()
}

// ReadFrom retries transient errors: pion's read loop, and so the whole UDP
// listener, ends on the first error it sees.
func (c *servingPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	backoff := time.Millisecond
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err == nil {
			return n, addr, nil
		}
		if errors.Is(err, net.ErrClosed) {
			c.once.Do(c.done)
			return n, addr, err
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}
