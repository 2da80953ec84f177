// Package notify sends e-mail notifications through an SMTP server from a
// queue on disk: each message is a file until the server accepted it, so
// a message survives a restart; a temporary failure (the server away, a 4xx
// answer) is retried with a growing delay, a permanent one (5xx) ends it.
// The SMTP client (github.com/emersion/go-smtp) uses STARTTLS and
// authenticates (PLAIN, or LOGIN when the server offers only that).
package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TLS modes of the connection to the SMTP server.
const (
	// TLSStartTLS (the default) requires STARTTLS on a plain connection
	// (port 587); a server that does not offer it is not used.
	TLSStartTLS = "starttls"
	// TLSImplicit speaks TLS from the start (port 465).
	TLSImplicit = "tls"
	// TLSNone sends in the clear: only for a relay on the same machine.
	TLSNone = "none"
)

// SMTP is the server notifications go through.
type SMTP struct {
	// Addr is host:port.
	Addr string
	// TLS is TLSStartTLS (default), TLSImplicit or TLSNone.
	TLS string
	// Username and Password authenticate (none when Username is empty).
	Username, Password string
	// From is the sender ("Parley <noreply@example.com>").
	From string
	// TLSConfig, when set, replaces the default (the system's roots, the
	// host of Addr as the server name); tests give their own roots.
	TLSConfig *tls.Config
	// Timeout bounds one delivery (default 30 s).
	Timeout time.Duration
}

// Config configures a Queue.
type Config struct {
	// Dir keeps the queued messages (made if missing).
	Dir  string
	SMTP SMTP
	// RetryMin and RetryMax bound the delay between attempts (defaults 30 s
	// and 30 min; it doubles each time); MaxAge is how long a message is
	// tried (default 48 h).
	RetryMin, RetryMax, MaxAge time.Duration
	Logger                     *slog.Logger
}

// Message is one e-mail.
type Message struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
	Body    string `json:"body"`
}

// job is a queued message as its file holds it.
type job struct {
	ID       string    `json:"id"`
	Message  Message   `json:"message"`
	Queued   time.Time `json:"queued"`
	Next     time.Time `json:"next"`
	Attempts int       `json:"attempts"`
	LastErr  string    `json:"lastError,omitempty"`
}

// Queue delivers messages in the background.
type Queue struct {
	cfg  Config
	log  *slog.Logger
	from *mail.Address
	wake chan struct{}

	mu   sync.Mutex
	jobs map[string]*job

	sent, failed int64
	wg           sync.WaitGroup
}

// New checks the configuration and reads the messages a previous run left.
func New(cfg Config) (*Queue, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 30 * time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 30 * time.Minute
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 48 * time.Hour
	}
	if cfg.SMTP.Timeout <= 0 {
		cfg.SMTP.Timeout = 30 * time.Second
	}
	switch cfg.SMTP.TLS {
	case "":
		cfg.SMTP.TLS = TLSStartTLS
	case TLSStartTLS, TLSImplicit, TLSNone:
	default:
		return nil, fmt.Errorf("smtp tls %q: use %s, %s or %s", cfg.SMTP.TLS, TLSStartTLS, TLSImplicit, TLSNone)
	}
	if _, _, err := net.SplitHostPort(cfg.SMTP.Addr); err != nil {
		return nil, fmt.Errorf("smtp address %q: give host:port (587 for STARTTLS, 465 for TLS)", cfg.SMTP.Addr)
	}
	from, err := mail.ParseAddress(cfg.SMTP.From)
	if err != nil {
		return nil, fmt.Errorf("smtp from %q: %w", cfg.SMTP.From, err)
	}
	if cfg.SMTP.Username != "" && cfg.SMTP.TLS == TLSNone {
		host, _, _ := net.SplitHostPort(cfg.SMTP.Addr)
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, errors.New("smtp: a password is never sent in the clear to another machine; use tls starttls or tls")
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("notification queue: %w", err)
	}
	q := &Queue{cfg: cfg, log: cfg.Logger, from: from, wake: make(chan struct{}, 1), jobs: map[string]*job{}}
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("notification queue: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			if strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".tmp") {
				_ = os.Remove(filepath.Join(cfg.Dir, name))
			}
			continue
		}
		b, err := os.ReadFile(filepath.Join(cfg.Dir, name))
		var j job
		if err == nil {
			err = json.Unmarshal(b, &j)
		}
		if err != nil || j.ID+".json" != name {
			q.log.Error("notification queue: an unreadable message is left aside", "file", name, "err", err)
			continue
		}
		q.jobs[j.ID] = &j
	}
	if len(q.jobs) > 0 {
		q.log.Info("notification queue: messages from the previous run", "count", len(q.jobs))
	}
	return q, nil
}

// Enqueue queues a message; it is on disk when Enqueue returns.
func (q *Queue) Enqueue(m Message) error {
	if _, err := mail.ParseAddress(m.To); err != nil {
		return fmt.Errorf("notification to %q: %w", m.To, err)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	now := time.Now()
	j := &job{ID: now.UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b), Message: m, Queued: now, Next: now}
	if err := q.save(j); err != nil {
		return err
	}
	q.mu.Lock()
	q.jobs[j.ID] = j
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// save writes a job's file atomically.
func (q *Queue) save(j *job) error {
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	tmp := filepath.Join(q.cfg.Dir, "."+j.ID+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("queue notification: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(q.cfg.Dir, j.ID+".json"))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("queue notification: %w", err)
	}
	return nil
}

// Pending returns how many messages wait.
func (q *Queue) Pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.jobs)
}

// Counts returns how many messages were delivered and given up.
func (q *Queue) Counts() (sent, failed int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.sent, q.failed
}

// Start delivers queued messages until ctx ends; Wait waits for that.
func (q *Queue) Start(ctx context.Context) {
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		t := time.NewTimer(time.Hour)
		defer t.Stop()
		for {
			next := q.runDue(ctx)
			t.Stop()
			var timer <-chan time.Time
			if !next.IsZero() {
				t.Reset(max(time.Until(next), 10*time.Millisecond))
				timer = t.C
			}
			select {
			case <-ctx.Done():
				return
			case <-q.wake:
			case <-timer:
			}
		}
	}()
}

// Wait returns when the delivery goroutine has ended.
func (q *Queue) Wait() { q.wg.Wait() }

// runDue delivers every message that is due, oldest first, and returns
// when the next one is (zero: none waits).
func (q *Queue) runDue(ctx context.Context) time.Time {
	now := time.Now()
	q.mu.Lock()
	var due []*job
	for _, j := range q.jobs {
		if !j.Next.After(now) {
			due = append(due, j)
		}
	}
	q.mu.Unlock()
	slices.SortFunc(due, func(a, b *job) int { return a.Queued.Compare(b.Queued) })
	for _, j := range due {
		if ctx.Err() != nil {
			return time.Time{}
		}
		q.attempt(ctx, j)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	var next time.Time
	for _, j := range q.jobs {
		if next.IsZero() || j.Next.Before(next) {
			next = j.Next
		}
	}
	return next
}

// attempt delivers one message and records the outcome.
func (q *Queue) attempt(ctx context.Context, j *job) {
	err := q.deliver(ctx, j)
	j.Attempts++
	done := err == nil
	permanent := false
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 500 {
		permanent = true
	}
	switch {
	case done:
		q.log.Info("notification sent", "to", j.Message.To, "attempts", j.Attempts)
	case permanent, time.Since(j.Queued) > q.cfg.MaxAge:
		q.log.Error("notification given up", "to", j.Message.To, "attempts", j.Attempts, "err", err)
	default:
		delay := q.cfg.RetryMin << min(j.Attempts-1, 16)
		delay = min(delay, q.cfg.RetryMax)
		j.Next = time.Now().Add(delay)
		j.LastErr = err.Error()
		q.log.Warn("notification not sent; will retry", "to", j.Message.To, "attempts", j.Attempts, "retry_in", delay, "err", err)
		if serr := q.save(j); serr != nil {
			q.log.Error("notification queue", "err", serr)
		}
		return
	}
	_ = os.Remove(filepath.Join(q.cfg.Dir, j.ID+".json"))
	q.mu.Lock()
	delete(q.jobs, j.ID)
	if done {
		q.sent++
	} else {
		q.failed++
	}
	q.mu.Unlock()
}

// deliver sends one message over a new SMTP connection.
func (q *Queue) deliver(ctx context.Context, j *job) error {
	c := q.cfg.SMTP
	host, _, _ := net.SplitHostPort(c.Addr)
	tc := c.TLSConfig
	if tc == nil {
		tc = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", c.Addr, err)
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	var cl *smtp.Client
	switch c.TLS {
	case TLSImplicit:
		cl = smtp.NewClient(tls.Client(conn, tc))
	case TLSStartTLS:
		if cl, err = smtp.NewClientStartTLS(conn, tc); err != nil {
			_ = conn.Close()
			return fmt.Errorf("STARTTLS with %s (set smtp tls to tls for port 465, or none for a relay on this machine): %w", c.Addr, err)
		}
	default:
		cl = smtp.NewClient(conn)
	}
	defer cl.Close()
	if c.Username != "" {
		var a sasl.Client
		switch {
		case cl.SupportsAuth(sasl.Plain):
			a = sasl.NewPlainClient("", c.Username, c.Password)
		case cl.SupportsAuth(sasl.Login):
			a = sasl.NewLoginClient(c.Username, c.Password)
		default:
			return fmt.Errorf("%s offers neither PLAIN nor LOGIN authentication", c.Addr)
		}
		if err := cl.Auth(a); err != nil {
			return fmt.Errorf("authenticate as %s: %w", c.Username, err)
		}
	}
	to, err := mail.ParseAddress(j.Message.To)
	if err != nil {
		return &smtp.SMTPError{Code: 553, Message: "bad recipient: " + err.Error()}
	}
	if err := cl.Mail(q.from.Address, nil); err != nil {
		return err
	}
	if err := cl.Rcpt(to.Address, nil); err != nil {
		return err
	}
	w, err := cl.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(q.compose(j, to)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return cl.Quit()
}

// compose writes the message: plain UTF-8 text, quoted-printable.
func (q *Queue) compose(j *job, to *mail.Address) []byte {
	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", q.from.String())
	h("To", to.String())
	h("Subject", mime.QEncoding.Encode("utf-8", j.Message.Subject))
	h("Date", j.Queued.Format(time.RFC1123Z))
	_, domain, _ := strings.Cut(q.from.Address, "@")
	h("Message-ID", "<"+j.ID+"."+strconv.Itoa(j.Attempts)+"@"+domain+">")
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "quoted-printable")
	h("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	w := quotedprintable.NewWriter(&b)
	_, _ = w.Write([]byte(strings.ReplaceAll(j.Message.Body, "\n", "\r\n")))
	_ = w.Close()
	return b.Bytes()
}
