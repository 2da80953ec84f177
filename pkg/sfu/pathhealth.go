package sfu

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// How the direct send path notices failure (direct.go has the path itself).
//
//   - ICE fails (the peer stopped answering consent checks for the failed
//     timeout, RFC 7675): the connection stops sending (out is nil) and
//     resumes on the next selected pair (an ICE restart).
//   - The selected pair is on no socket of the SFU (several interfaces,
//     policy routing, an announced address the kernel does not route from):
//     the connection's RTP goes through pion's SRTP session instead, which
//     writes on the ICE agent's own socket.
//   - The receiver's reports show no progress for noProgressWindow while the
//     SFU sends (wrong keys: a pion upgrade that changed how they are made):
//     the same fallback, counted in FallbacksNoProgress.
//
// A fallback must never make pion encrypt with an index the direct path
// used: the keys are the same (unless they were wrong), and an SRTP or
// SRTCP index used twice reuses the keystream (and, with AES-GCM, gives away
// the authentication key). pion's context starts each SSRC at rollover
// counter 0 and continues from the first sequence number it sees, which is
// after the last one the direct path sent: fresh as long as no SSRC of the
// direct path has rolled over, which fallbackLocked checks (else the
// connection stops, and says so). Its SRTCP index starts at 1 per SSRC,
// which the direct path's sender reports used: after a fallback a sender
// report of such an SSRC goes in a compound led by an empty receiver report
// of a fresh SSRC, which the SRTCP index is counted for (rtcpSSRC).
//
// And nothing else may encrypt RTP or RTCP with pion's session while the
// path is direct: pionGuard, the first interceptor of every subscribe
// connection (it wraps pion's own writers, so every interceptor added after
// it writes through it), refuses it.

// noProgressWindow is how long a subscriber's receiver may send no sign of
// receiving (a report block that moved, transport-wide CC feedback, a NACK)
// while the direct path sends it at least noProgressPackets and the
// connection stays connected, before the connection falls back to pion's
// path. The window is at least progressMargin longer than ICE's
// disconnected timeout: a link that went away disconnects the connection
// (which holds the check off) before it can look like wrong keys.
const (
	noProgressWindow  = 4 * time.Second
	noProgressPackets = 50
	progressMargin    = 2 * time.Second
)

// progressWindow is noProgressWindow for an engine's ICE timeouts.
func (e *Engine) progressWindow() time.Duration {
	d := e.cfg.ICE.Disconnected
	if d <= 0 {
		d = 5 * time.Second // pion's
	}
	return max(noProgressWindow, d+progressMargin)
}

// errGuarded says a write on pion's path was refused: the connection's RTP
// goes on the direct path, with the same keys.
var errGuarded = errors.New("sfu: pion's SRTP session may not write on a connection whose RTP goes on the direct path (same keys)")

// pionGuard is the interceptor that lets RTP and RTCP through pion's SRTP
// session only while the subscriber's path is pion's.
type pionGuard struct {
	interceptor.NoOp
	out     *atomic.Pointer[sendPath] // the subscriber's path
	refused *atomic.Uint64            // counts what it refused
}

// NewInterceptor implements interceptor.Factory: the guard is per
// connection.
func (g *pionGuard) NewInterceptor(string) (interceptor.Interceptor, error) { return g, nil }

func (g *pionGuard) allowed() bool {
	if out := g.out.Load(); out != nil && out.viaPion {
		return true
	}
	g.refused.Add(1)
	return false
}

// BindLocalStream implements interceptor.Interceptor.
func (g *pionGuard) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if !g.allowed() {
			return 0, errGuarded
		}
		return w.Write(h, payload, a)
	})
}

// BindRTCPWriter implements interceptor.Interceptor.
func (g *pionGuard) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, a interceptor.Attributes) (int, error) {
		if !g.allowed() {
			return 0, errGuarded
		}
		return w.Write(pkts, a)
	})
}

// Close implements interceptor.Interceptor.
func (g *pionGuard) Close() error { return nil }

// pathHealth is the writer's view of whether the direct path gets through.
type pathHealth struct {
	checked time.Time // the last check
	path    *sendPath // the path the window is about
	since   time.Time // the window's start
	sent    uint64    // s.sent at the window's start
}

// markProgress records a sign that the receiver gets what is sent (RTCP
// readers call it).
func (s *subscriber) markProgress(now time.Time) { s.progressAt.Store(now.UnixNano()) }

// checkProgress falls back to pion's path when the direct path has sent for
// noProgressWindow and the receiver showed no sign of receiving any of it.
// Only the writer calls it, about once a second.
func (s *subscriber) checkProgress(out *sendPath, now time.Time) {
	h := &s.health
	h.checked = now
	sent := s.sent.Load()
	if out != h.path || out.viaPion || (out.udp == nil && out.tcp == nil) || !s.consented.Load() ||
		s.progressAt.Load() >= h.since.UnixNano() {
		h.path, h.since, h.sent = out, now, sent
		return
	}
	if now.Sub(h.since) < s.peer.router.engine.progressWindow() || sent-h.sent < noProgressPackets {
		return
	}
	s.log.Warn("subscribe connection: its receiver reports show nothing of what the direct path sent; sending through pion's SRTP session",
		"sent", sent-h.sent, "for", now.Sub(h.since).Round(time.Millisecond))
	if s.fallback(&s.peer.router.engine.fallbacksNoProgress, out) {
		s.refreshVideo()
	}
	h.path = nil
}

// fallback moves the connection's RTP from path from to pion's path for
// the rest of its life, if that reuses no index of the direct path's
// keystream, and counts it in counter; else it stops the connection's
// sending. It does nothing when the connection's path is not from anymore.
// It reports whether RTP goes through pion now. The caller holds writeMu.
func (s *subscriber) fallback(counter interface{ Add(uint64) uint64 }, from *sendPath) bool {
	ssrcs := s.boundSSRCs()
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	if s.pathClosed || s.pionOnly || s.out.Load() != from {
		return false
	}
	ok := s.fallbackLocked(ssrcs)
	if ok {
		counter.Add(1)
	}
	return ok
}

func (s *subscriber) fallbackLocked(ssrcs []uint32) bool {
	e := s.peer.router.engine
	p := &sendPath{viaPion: true}
	if ctx := s.srtp; ctx != nil {
		for _, ssrc := range ssrcs {
			if roc, ok := ctx.ROC(ssrc); ok && roc != 0 {
				s.log.Error("subscribe connection stops sending: pion's SRTP session would reuse the direct path's keystream (its sequence numbers rolled over); the client must reconnect",
					"ssrc", ssrc, "roc", roc)
				e.fallbacksRefused.Add(1)
				s.out.Swap(nil).close()
				return false
			}
		}
		p.spent, p.rtcpSSRC = ctx, freshSSRC(ctx, ssrcs)
	}
	s.pionOnly, s.pionPath = true, p
	s.out.Swap(p).close()
	return true
}

// freshSSRC picks an SSRC that neither the connection's tracks nor ctx ever
// used.
func freshSSRC(ctx *srtp.Context, used []uint32) uint32 {
	var b [4]byte
	for {
		_, _ = rand.Read(b[:])
		x := binary.BigEndian.Uint32(b[:])
		if x == 0 {
			continue
		}
		clash := false
		for _, u := range used {
			clash = clash || u == x
		}
		if _, ok := ctx.Index(x); ok || clash {
			continue
		}
		if _, ok := ctx.ROC(x); ok {
			continue
		}
		return x
	}
}

// boundSSRCs lists the SSRCs of the connection's tracks.
func (s *subscriber) boundSSRCs() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uint32
	for _, d := range s.tracks {
		if d == nil {
			continue
		}
		if b := d.bound.Load(); b != nil {
			out = append(out, b.ssrc)
		}
	}
	return out
}

// stopSending stops the connection's RTP: ICE failed (consent expired).
// The next selected pair, or the connection being up again, resumes it
// (reroute).
func (s *subscriber) stopSending() {
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	if s.pathClosed || s.out.Load() == nil {
		return
	}
	s.log.Info("subscribe connection stops sending: ICE failed (no consent from the client); it resumes on a new candidate pair")
	s.peer.router.engine.pathStops.Add(1)
	s.out.Swap(nil).close()
}

// senderReportPackets is what goes in a sender report's SRTCP packet on
// pion's path: the report, led by an empty receiver report of the path's
// fresh SSRC when the direct path spent the report's SRTCP indexes.
func (o *sendPath) senderReportPackets(sr *rtcp.SenderReport) []rtcp.Packet {
	if o.spent != nil {
		if _, used := o.spent.Index(sr.SSRC); used {
			return []rtcp.Packet{&rtcp.ReceiverReport{SSRC: o.rtcpSSRC}, sr}
		}
	}
	return []rtcp.Packet{sr}
}
