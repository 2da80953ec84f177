package udpbatch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// receiver is a UDP socket on loopback that checks what arrives: packets
// carry (receiver, index) and a length, and must arrive whole and in order.
type receiver struct {
	t    *testing.T
	id   int
	conn *net.UDPConn
	got  atomic.Int64
	errs chan error
	done chan struct{}
}

func newReceiver(t *testing.T, id int) *receiver {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 20)
	r := &receiver{t: t, id: id, conn: c, errs: make(chan error, 1), done: make(chan struct{})}
	go r.read()
	t.Cleanup(func() { _ = c.Close(); <-r.done })
	return r
}

// newReceivers starts n receivers, with ids 0 to n-1.
func newReceivers(t *testing.T, n int) []*receiver {
	t.Helper()
	rs := make([]*receiver, n)
	for i := range rs {
		rs[i] = newReceiver(t, i)
	}
	return rs
}

func (r *receiver) addr() netip.AddrPort { return r.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (r *receiver) read() {
	defer close(r.done)
	buf := make([]byte, 4096)
	for {
		n, err := r.conn.Read(buf)
		if err != nil {
			return
		}
		want := packetFor(r.id, int(r.got.Load()), n)
		if !bytes.Equal(buf[:n], want) {
			select {
			case r.errs <- fmt.Errorf("receiver %d packet %d: got %d bytes %x…, want %x…", r.id, r.got.Load(), n, buf[:min(n, 12)], want[:min(n, 12)]):
			default:
			}
			return
		}
		r.got.Add(1)
	}
}

// packetFor is the content of receiver id's packet i of size n.
func packetFor(id, i, n int) []byte {
	b := make([]byte, n)
	binary.BigEndian.PutUint32(b, uint32(id))
	binary.BigEndian.PutUint32(b[4:], uint32(i))
	for k := 8; k < n; k++ {
		b[k] = byte(id*31 + i*7 + k)
	}
	return b
}

// waitFor waits until every receiver has want[i] packets, or fails.
func waitFor(t *testing.T, rs []*receiver, want []int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := true
		for i, r := range rs {
			select {
			case err := <-r.errs:
				t.Fatal(err)
			default:
			}
			if int(r.got.Load()) < want[i] {
				ok = false
			}
		}
		if ok {
			for i, r := range rs {
				if g := int(r.got.Load()); g != want[i] {
					t.Fatalf("receiver %d got %d packets, sent %d", i, g, want[i])
				}
			}
			return
		}
		if time.Now().After(deadline) {
			got := make([]int64, len(rs))
			for i, r := range rs {
				got[i] = r.got.Load()
			}
			t.Fatalf("receivers got %v packets, sent %v", got, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func newConn(t *testing.T) *Conn {
	t.Helper()
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = uc.SetWriteBuffer(4 << 20)
	c, err := New(uc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestFramesToManyReceivers writes video-like frames (equal-size packets and
// a shorter last one) to several receivers, interleaved, with flushes at
// random points: every receiver gets its packets whole and in order, with
// fewer system calls than packets and GSO messages carrying several.
func TestFramesToManyReceivers(t *testing.T) {
	c := newConn(t)
	const nrecv = 6
	rs := newReceivers(t, nrecv)
	rng := rand.New(rand.NewPCG(1, 2))
	sent := make([]int, nrecv)
	for frame := 0; frame < 60; frame++ {
		// One frame to every receiver, in a shuffled order, packets of a
		// frame sometimes interleaved between two receivers.
		order := rng.Perm(nrecv)
		for _, id := range order {
			packets := 1 + rng.IntN(7)
			size := 200 + rng.IntN(1000)
			for p := 0; p < packets; p++ {
				n := size
				if p == packets-1 {
					n = 50 + rng.IntN(size-49)
				}
				if _, err := c.WriteToAddrPort(packetFor(id, sent[id], n), rs[id].addr()); err != nil {
					t.Fatal(err)
				}
				sent[id]++
				if rng.IntN(10) == 0 {
					other := order[rng.IntN(nrecv)]
					if _, err := c.WriteToUDP(packetFor(other, sent[other], 300), net.UDPAddrFromAddrPort(rs[other].addr())); err != nil {
						t.Fatal(err)
					}
					sent[other]++
				}
			}
		}
		c.Flush()
		waitFor(t, rs, sent) // receivers keep up: no loss at their sockets
	}
	st := c.Stats()
	total := 0
	for _, n := range sent {
		total += n
	}
	if st.Packets != uint64(total) || st.Errors != 0 {
		t.Fatalf("stats %+v, sent %d packets", st, total)
	}
	if !c.GSO() {
		t.Fatal("UDP GSO was turned off on loopback (it needs Linux 4.18 or later)")
	}
	if st.Calls >= st.Packets/4 || st.Messages >= st.Packets*2/3 {
		t.Fatalf("writes were not batched: %+v", st)
	}
	t.Logf("%d packets in %d messages and %d system calls", st.Packets, st.Messages, st.Calls)
}

// TestUnflushedWritesGoOut: a packet nobody flushes leaves after FlushDelay.
func TestUnflushedWritesGoOut(t *testing.T) {
	c := newConn(t)
	r := newReceiver(t, 0)
	for i := range 3 {
		if _, err := c.WriteTo(packetFor(0, i, 100), net.UDPAddrFromAddrPort(r.addr())); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, []*receiver{r}, []int{3})
}

// TestFullQueueIsSentNotDropped writes three queues' worth without a flush.
func TestFullQueueIsSentNotDropped(t *testing.T) {
	c := newConn(t)
	const nrecv = 8
	rs := newReceivers(t, nrecv)
	sent := make([]int, nrecv)
	for i := 0; i < 3*QueueLen; i++ {
		id := i % nrecv
		if _, err := c.WriteToAddrPort(packetFor(id, sent[id], 64), rs[id].addr()); err != nil {
			t.Fatal(err)
		}
		sent[id]++
	}
	waitFor(t, rs, sent)
}

// TestConcurrentWriters: goroutines writing and flushing at once lose nothing
// and keep each destination's order.
func TestConcurrentWriters(t *testing.T) {
	c := newConn(t)
	const writers = 8
	const perWriter = 600
	rs := newReceivers(t, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				if _, err := c.WriteToAddrPort(packetFor(w, i, 1100), rs[w].addr()); err != nil {
					t.Error(err)
					return
				}
				if i%4 == 3 {
					c.Flush()
					// Stay within what a receiver's socket buffer holds.
					for int(rs[w].got.Load()) < i-64 {
						time.Sleep(100 * time.Microsecond)
					}
				}
			}
			c.Flush()
		})
	}
	wg.Wait()
	want := make([]int, writers)
	for i := range want {
		want[i] = perWriter
	}
	waitFor(t, rs, want)
}

// TestLargeDatagramAndClose: a datagram above MaxPacket goes out after the
// queued ones; writes after Close fail with net.ErrClosed.
func TestLargeDatagramAndClose(t *testing.T) {
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(uc, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := newReceiver(t, 0)
	if _, err := c.WriteToAddrPort(packetFor(0, 0, 500), r.addr()); err != nil {
		t.Fatal(err)
	}
	if n, err := c.WriteToAddrPort(packetFor(0, 1, 3000), r.addr()); err != nil || n != 3000 {
		t.Fatalf("large write: %d, %v", n, err)
	}
	if _, err := c.WriteToAddrPort(packetFor(0, 2, 500), r.addr()); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, []*receiver{r}, []int{3}) // Close sent the last one
	if _, err := c.WriteToAddrPort(packetFor(0, 3, 500), r.addr()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
	if _, err := c.WriteTo([]byte("x"), &net.TCPAddr{}); err == nil {
		t.Fatal("a TCP address was accepted")
	}
}

// grouped tells packets already grouped by destination (the sort is then
// skipped) from interleaved ones, and gives up past groupedRuns runs.
func TestGrouped(t *testing.T) {
	addr := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port) }
	slots := func(ports ...uint16) []slot {
		s := make([]slot, len(ports))
		for i, p := range ports {
			s[i].addr = addr(p)
		}
		return s
	}
	many := make([]uint16, groupedRuns+1)
	for i := range many {
		many[i] = uint16(1000 + i)
	}
	for _, tc := range []struct {
		name string
		s    []slot
		want bool
	}{
		{"empty", nil, true},
		{"runs", slots(1, 1, 2, 2, 2, 3), true},
		{"one back", slots(1, 2, 1), false},
		{"late repeat", slots(1, 1, 2, 3, 3, 2), false},
		{"all distinct, at the limit", slots(many[:groupedRuns]...), true},
		{"past the limit", slots(many...), false},
	} {
		if got := grouped(tc.s); got != tc.want {
			t.Errorf("%s: grouped %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A flush that empties the queue disarms the fallback timer, so it does not
// fire (and start a goroutine) for nothing.
func TestFlushDisarmsTimer(t *testing.T) {
	c := newConn(t)
	r := newReceiver(t, 0)
	if _, err := c.WriteToAddrPort(packetFor(0, 0, 100), r.addr()); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	armed := c.armed
	c.mu.Unlock()
	if !armed {
		t.Fatal("a queued packet did not arm the timer")
	}
	c.Flush()
	c.mu.Lock()
	armed = c.armed
	c.mu.Unlock()
	if armed {
		t.Fatal("the timer is still armed after a flush emptied the queue")
	}
	waitFor(t, []*receiver{r}, []int{1})
}

// ReadFromAddrPort (pion's UDP mux reads with it) returns each datagram
// whole with its sender's address, on IPv4 and IPv6 sockets, waits in the
// poller for data, honours the read deadline and ends with net.ErrClosed;
// a read allocates nothing.
func TestReadFromAddrPort(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			ip := net.IPv4(127, 0, 0, 1)
			if network == "udp6" {
				ip = net.IPv6loopback
			}
			uc, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			c, err := New(uc, nil)
			if err != nil {
				t.Fatal(err)
			}
			peer, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			to := c.LocalAddr().(*net.UDPAddr)
			from := peer.LocalAddr().(*net.UDPAddr).AddrPort()

			// A read that waits: the datagram is sent after it started.
			got := make(chan error, 1)
			buf := make([]byte, 2000)
			go func() {
				n, addr, err := c.ReadFromAddrPort(buf)
				if err == nil && (n != 1200 || addr != from || !bytes.Equal(buf[:n], packetFor(7, 0, 1200))) {
					err = fmt.Errorf("read %d bytes from %v, want 1200 from %v", n, addr, from)
				}
				got <- err
			}()
			time.Sleep(20 * time.Millisecond)
			if _, err := peer.WriteToUDP(packetFor(7, 0, 1200), to); err != nil {
				t.Fatal(err)
			}
			if err := <-got; err != nil {
				t.Fatal(err)
			}

			for i := range 50 {
				if _, err := peer.WriteToUDP(packetFor(7, i+1, 100+i), to); err != nil {
					t.Fatal(err)
				}
			}
			// AllocsPerRun runs the function once more than it counts.
			type read struct {
				n, index int
				addr     netip.AddrPort
				err      error
			}
			reads := make([]read, 0, 50)
			allocs := testing.AllocsPerRun(49, func() {
				n, addr, err := c.ReadFromAddrPort(buf)
				reads = append(reads, read{n: n, index: int(binary.BigEndian.Uint32(buf[4:8])), addr: addr, err: err})
			})
			for i, r := range reads {
				if r.err != nil || r.addr != from || r.n != 100+i || r.index != i+1 {
					t.Fatalf("datagram %d: %d bytes, index %d, from %v, %v", i, r.n, r.index, r.addr, r.err)
				}
			}
			if allocs != 0 {
				t.Errorf("%.1f allocations per read, want 0", allocs)
			}

			_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, _, err := c.ReadFromAddrPort(buf); !os.IsTimeout(err) {
				t.Fatalf("read past the deadline: %v, want a timeout", err)
			}
			_ = c.SetReadDeadline(time.Time{})
			go func() { time.Sleep(20 * time.Millisecond); _ = c.Close() }()
			if _, _, err := c.ReadFromAddrPort(buf); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read of a closed socket: %v, want net.ErrClosed", err)
			}
		})
	}
}
