package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/goleak"

	"github.com/parley/parley/pkg/notify/notifytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDeliveryRetriesAndSurvivesRestart: a message queued while the SMTP
// server is away is retried, kept across a restart of the queue, and
// delivered over STARTTLS with authentication once the server is there.
func TestDeliveryRetriesAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)         // nothing listens there yet
	roots := x509.NewCertPool() // nobody is there to trust yet
	cfg := Config{Dir: dir, RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		SMTP: SMTP{Addr: addr, Username: notifytest.User, Password: notifytest.Password, From: "Parley <noreply@parley.test>",
			TLSConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}}}
	q, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	q.Start(ctx)
	body := "Anna posted a clip in room Küche.\nListen: https://meet.example/api/rooms/K%C3%BCche/clips/c-1?expires=1&sig=abc\n"
	if err := q.Enqueue(Message{To: "Bob <bob@example.com>", Subject: "New clip in Küche", Body: body}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed attempt", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		for _, j := range q.jobs {
			return j.Attempts >= 2 && j.LastErr != ""
		}
		return false
	})
	cancel()
	q.Wait()
	if files, _ := os.ReadDir(dir); len(files) != 1 {
		t.Fatalf("queue holds %d files, want the message's", len(files))
	}

	// The SMTP server comes; a new queue (a restarted server) delivers.
	ms := notifytest.Start(t, addr)
	cfg.SMTP.TLSConfig = &tls.Config{RootCAs: ms.Roots, ServerName: "127.0.0.1"}
	q2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if q2.Pending() != 1 {
		t.Fatalf("restarted queue holds %d messages", q2.Pending())
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer func() { cancel2(); q2.Wait() }()
	q2.Start(ctx2)
	waitFor(t, "the mail", func() bool { return len(ms.Mails()) == 1 })
	m := ms.Mails()[0]
	if !m.TLS || m.User != "parley" || m.From != "noreply@parley.test" || m.To != "bob@example.com" {
		t.Errorf("delivered %+v", m)
	}
	msg, err := mail.ReadMessage(strings.NewReader(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	decoded, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if !strings.Contains(string(decoded), "https://meet.example/api/rooms/K%C3%BCche/clips/c-1?expires=1&sig=abc") {
		t.Errorf("body lacks the link: %q", decoded)
	}
	dec := new(mime.WordDecoder)
	if subj, _ := dec.DecodeHeader(msg.Header.Get("Subject")); subj != "New clip in Küche" {
		t.Errorf("subject %q", subj)
	}
	waitFor(t, "the queue to empty", func() bool { return q2.Pending() == 0 })
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Errorf("queue files left: %d", len(files))
	}
}

// TestPermanentRefusalEnds: a 5xx answer ends the message at once.
func TestPermanentRefusalEnds(t *testing.T) {
	ms := notifytest.Start(t, "127.0.0.1:0")
	ms.Reject = &smtp.SMTPError{Code: 550, Message: "no such user"}
	q, err := New(Config{Dir: t.TempDir(), RetryMin: 20 * time.Millisecond,
		SMTP: SMTP{Addr: ms.Addr, Username: notifytest.User, Password: notifytest.Password, From: "noreply@parley.test",
			TLSConfig: &tls.Config{RootCAs: ms.Roots, ServerName: "127.0.0.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); q.Wait() }()
	q.Start(ctx)
	if err := q.Enqueue(Message{To: "nobody@example.com", Subject: "x", Body: "y"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refusal", func() bool { _, failed := q.Counts(); return failed == 1 })
	if q.Pending() != 0 {
		t.Errorf("a refused message is still queued")
	}
}

func TestConfigChecks(t *testing.T) {
	for name, c := range map[string]Config{
		"no port":         {SMTP: SMTP{Addr: "mail.example.com", From: "a@b.c"}},
		"bad from":        {SMTP: SMTP{Addr: "mail.example.com:587", From: "nobody"}},
		"bad tls":         {SMTP: SMTP{Addr: "mail.example.com:587", From: "a@b.c", TLS: "maybe"}},
		"clear text auth": {SMTP: SMTP{Addr: "mail.example.com:25", From: "a@b.c", TLS: TLSNone, Username: "u"}},
	} {
		c.Dir = t.TempDir()
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
