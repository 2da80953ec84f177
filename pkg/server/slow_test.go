package server_test

import (
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// stallProxy relays TCP to the server's ICE-TCP port and can stop reading
// from the server, like a subscriber whose network stalls: the server's
// writes to it back up.
type stallProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	frozen chan struct{} // nil: flowing; open channel: stalled until closed
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp4", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); _, _ = io.Copy(s, c); _ = s.Close() }()
		go func() { defer p.wg.Done(); p.copyFromServer(c, s); _ = c.Close() }()
	}
}

func (p *stallProxy) copyFromServer(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		p.mu.Lock()
		gate := p.frozen
		p.mu.Unlock()
		if gate != nil {
			<-gate
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *stallProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen == nil {
		p.frozen = make(chan struct{})
	}
}

func (p *stallProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen != nil {
		close(p.frozen)
		p.frozen = nil
	}
}

func (p *stallProxy) close() {
	p.resume()
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestSlowSubscriberDoesNotReduceOthers: one subscriber's connection stops
// being read (its ICE-TCP path stalls); the other subscribers keep receiving
// every packet the publisher sends.
func TestSlowSubscriberDoesNotReduceOthers(t *testing.T) {
	srv := testServer(t, nil)
	tcpAddr := srv.Media().TCPAddr().String()
	proxy := newStallProxy(t, tcpAddr)
	_, serverPort, _ := net.SplitHostPort(tcpAddr)
	proxyPort := strconv.Itoa(proxy.ln.Addr().(*net.TCPAddr).Port)

	pubC := dial(t, srv, client.Options{Username: "pub"})
	join(t, pubC, "slow", "pub")
	pub, err := pubC.Publish(ctxT(t, 60*time.Second), client.PublishOptions{Video: vp8Source(t), Audio: opusSource(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatal(err)
	}

	slow := dial(t, srv, client.Options{Username: "slow", ICE: client.ICEOptions{TCPOnly: true,
		RewriteRemoteCandidate: func(c string) string {
			if !strings.Contains(c, " tcp ") || !strings.Contains(c, " "+serverPort+" ") {
				return "" // only the proxied ICE-TCP path
			}
			return strings.Replace(c, " "+serverPort+" ", " "+proxyPort+" ", 1)
		}}})
	join(t, slow, "slow", "slow")
	fast := []*client.Client{dial(t, srv, client.Options{Username: "f1"}), dial(t, srv, client.Options{Username: "f2"})}
	for i, f := range fast {
		join(t, f, "slow", []string{"f1", "f2"}[i])
	}
	videoOf := func(c *client.Client) *client.RemoteTrack {
		tracks, err := c.WaitRemoteTracks(ctxT(t, 15*time.Second), 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range tracks {
			if tr.Kind() == "video" {
				return tr
			}
		}
		t.Fatal("no video track")
		return nil
	}
	slowVideo := videoOf(slow)
	fastVideo := []*client.RemoteTrack{videoOf(fast[0]), videoOf(fast[1])}
	time.Sleep(time.Second)
	if slowVideo.Packets() == 0 {
		t.Fatal("the slow subscriber never received media through the proxy")
	}

	proxy.stall()
	time.Sleep(300 * time.Millisecond)
	sent0 := pub.PacketsSent("video")
	slow0 := slowVideo.Packets()
	fast0 := []int64{fastVideo[0].Packets(), fastVideo[1].Packets()}
	time.Sleep(4 * time.Second)
	sent := pub.PacketsSent("video") - sent0
	slowGot := slowVideo.Packets() - slow0
	for i, tr := range fastVideo {
		got := tr.Packets() - fast0[i]
		t.Logf("stalled 4 s: publisher sent %d video packets, fast subscriber %d got %d, slow got %d", sent, i+1, got, slowGot)
		if got*100 < sent*98 {
			t.Errorf("fast subscriber %d got %d of %d packets while another subscriber stalled", i+1, got, sent)
		}
	}
	if slowGot*2 > sent {
		t.Errorf("the stalled subscriber still got %d of %d packets: the stall did not take", slowGot, sent)
	}
	proxy.resume()
}
