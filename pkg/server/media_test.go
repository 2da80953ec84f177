package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
	"github.com/parley/parley/pkg/server"
	"github.com/parley/parley/pkg/testmedia"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestForwardVP8AndOpus(t *testing.T) {
	checkForwarding(t, vp8Source(t), opusSource(t), "video/VP8", "audio/opus")
}

func TestForwardH264AndOpus(t *testing.T) {
	checkForwarding(t, h264Source(t), opusSource(t), "video/H264", "audio/opus")
}

func TestForwardVP9AndPCMU(t *testing.T) {
	checkForwarding(t, ivfSource(t, testmedia.VP9IVF), client.NewToneSource(webrtc.MimeTypePCMU, 440), "video/VP9", "audio/PCMU")
}

func TestForwardAV1AndPCMA(t *testing.T) {
	checkForwarding(t, ivfSource(t, testmedia.AV1IVF), client.NewToneSource(webrtc.MimeTypePCMA, 440), "video/AV1", "audio/PCMA")
}

// checkForwarding: A publishes video and Opus; B and C join later and must
// receive A's packets unchanged (payload hashes match what A sent, RTP
// timestamps never go back, nothing missing on loopback), and each late
// subscriber's first video packet starts a keyframe that the server asked A
// for: at the latest the second keyframe A sent once the subscriber's
// connection was up (A's own keyframes come only once a second).
func checkForwarding(t *testing.T, video, audio client.Source, wantVideo, wantAudio string) {
	srv := testServer(t, nil)
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "media", "a")
	pub, err := a.Publish(ctxT(t, 10*time.Second), client.PublishOptions{Video: video, Audio: audio})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitStatus(ctxT(t, 10*time.Second), protocol.StreamPublishing); err != nil {
		t.Fatalf("publisher status: %v (now %s)", err, pub.Status())
	}
	// Join mid-GOP, so that a keyframe has to be asked for.
	time.Sleep(1300 * time.Millisecond)
	asked := pub.KeyframeRequests("video")

	subs := []*client.Client{dial(t, srv, client.Options{Username: "b"}), dial(t, srv, client.Options{Username: "c"})}
	for i, s := range subs {
		st := join(t, s, "media", []string{"b", "c"}[i])
		if len(st.Participants) == 0 || st.Participants[0].Name != "a" || len(st.Participants[0].Streams) != 1 {
			t.Fatalf("STATE for a late joiner: %+v, want a with one stream", st.Participants)
		}
	}
	for _, s := range subs {
		if _, err := s.WaitRemoteTracks(ctxT(t, 10*time.Second), 2); err != nil {
			t.Fatalf("remote tracks: %v", err)
		}
	}
	time.Sleep(3 * time.Second)

	// The server's counters (exported on /metrics) agree with what arrived.
	var received int64
	for _, s := range subs {
		for _, tr := range s.RemoteTracks() {
			received += tr.Packets()
		}
	}
	if st := srv.Media().Stats(); int64(st.Forwarded) < received || st.Received == 0 || st.Dropped != 0 {
		t.Errorf("media stats %+v, want forwarded >= %d received by the subscribers and nothing dropped", st, received)
	} else if st.UDP.Packets < st.Forwarded || st.UDP.Calls*5/4 > st.UDP.Packets || st.UDP.Errors != 0 {
		// Frames go out batched: far fewer send calls than datagrams.
		t.Errorf("media sockets sent %+v for %d forwarded packets, want them batched and no errors", st.UDP, st.Forwarded)
	} else {
		t.Logf("media sockets: %+v for %d forwarded packets", st.UDP, st.Forwarded)
	}
	// Both subscribers' RTP went the direct way (encrypted by the SFU with
	// keys of their own handshakes: pion's clients decrypted every packet).
	if st := srv.Media().Stats(); st.DirectSubscribers != len(subs) || st.PionSubscribers != 0 {
		t.Errorf("subscribe connections: %d direct, %d through pion; want %d direct", st.DirectSubscribers, st.PionSubscribers, len(subs))
	}
	// The forwarding delay histogram saw the bursts, with plausible values
	// (loopback, two subscribers: well under 100 ms on average).
	if n, sum := forwardDelay(t, srv); n < 50 || sum/float64(n) > 0.1 || sum <= 0 {
		t.Errorf("parley_forward_delay_seconds: %d observations, %.4f s in all", n, sum)
	}

	for i, s := range subs {
		for _, tr := range s.RemoteTracks() {
			who := []string{"b", "c"}[i] + "/" + tr.Kind()
			if tr.Publisher() != "a" || tr.StreamID() != pub.ID() {
				t.Errorf("%s: track of %q stream %q, want a's %q", who, tr.Publisher(), tr.StreamID(), pub.ID())
			}
			want := wantAudio
			if tr.Kind() == "video" {
				want = wantVideo
			}
			if !strings.EqualFold(tr.Codec(), want) {
				t.Errorf("%s: codec %s, want %s", who, tr.Codec(), want)
			}
			checkPackets(t, who, pub, tr)
			if tr.Kind() != "video" {
				continue
			}
			if !tr.FirstPacketKeyframe() {
				recv := tr.ReceivedPackets()
				t.Errorf("%s: the first video packet does not start a keyframe; first packets: %+v", who, recv[:min(4, len(recv))])
			}
			checkFirstKeyframe(t, who, pub, tr)
		}
	}
	if n := pub.KeyframeRequests("video"); n <= asked {
		t.Errorf("the publisher got %d keyframe requests before the late joiners and %d after", asked, n)
	}
}

// checkFirstKeyframe checks that a late subscriber's first keyframe was no
// later than the second keyframe the publisher sent after the subscriber's
// connection was up: the first may have gone out before the SFU's side of
// the connection was ready; the SFU asks for one when it is.
func checkFirstKeyframe(t *testing.T, who string, pub *client.Publication, tr *client.RemoteTrack) {
	t.Helper()
	up := tr.ConnectedAt()
	recv := tr.ReceivedPackets()
	if up.IsZero() || len(recv) == 0 || !recv[0].Keyframe {
		t.Errorf("%s: connected at %v, %d packets received", who, up, len(recv))
		return
	}
	var after []client.PacketRecord // keyframe starts sent once the connection was up
	gotAt := -1                     // where the first keyframe received is among them
	for _, p := range pub.SentPackets("video") {
		// The SFU numbers the subscriber's packets itself: the payload
		// tells which keyframe arrived.
		if !p.Keyframe || p.SentAt.Before(up) {
			if p.Keyframe && p.PayloadHash == recv[0].PayloadHash {
				return // sent before the connection was up and still received
			}
			continue
		}
		if p.PayloadHash == recv[0].PayloadHash {
			gotAt = len(after)
		}
		after = append(after, p)
	}
	if gotAt < 0 || gotAt > 1 {
		t.Errorf("%s: the first keyframe received (seq %d) is keyframe %d of those sent once the connection was up (%d of them, seq %v)",
			who, recv[0].Seq, gotAt+1, len(after), seqs(after))
	}
}

func seqs(ps []client.PacketRecord) []uint16 {
	out := make([]uint16, len(ps))
	for i, p := range ps {
		out[i] = p.Seq
	}
	return out
}

// checkPackets compares what a subscriber received with what the publisher
// sent: the SFU numbers each subscriber's packets itself (leaving out what it
// does not send, padding among them, without a gap), so the received packets
// must be the publisher's media packets in order, contiguously numbered,
// their payloads unchanged and their timestamps moved by one constant
// offset; at most 1 % of them missing (loopback).
func checkPackets(t *testing.T, who string, pub *client.Publication, tr *client.RemoteTrack) {
	t.Helper()
	// What was received first, then what was sent: every packet received was
	// sent before the second snapshot.
	recv := tr.ReceivedPackets()
	m := matchPackets(t, who, pub.SentPackets(tr.Kind()), recv)
	if n := tr.TimestampRegressions(); n != 0 {
		t.Errorf("%s: %d RTP timestamps went backwards", who, n)
	}
	if m.missing*100 > m.expected {
		t.Errorf("%s: %d of %d packets missing", who, m.missing, m.expected)
	}
	t.Logf("%s: %d packets received, %d of %d missing", who, len(recv), m.missing, m.expected)
}

// matched is how a subscriber's packets map onto the publisher's.
type matched struct {
	// media are the publisher's packets that carry a payload, in order;
	// first and last are the indexes of the first and last received.
	media       []client.PacketRecord
	first, last int
	// seqOff and tsOff take the first received packet's numbers as sent
	// to the received ones; drift is the sequence number offset at the last
	// (packets left out in between make it differ).
	seqOff, drift uint16
	tsOff         uint32
	expected      int // media packets from first to last
	missing       int // of them, not received
}

// matchPackets maps recv onto the media packets of sent (padding-only ones
// left out): received sequence numbers must follow the sent media packets
// one for one, so a received packet is found at its sequence number's
// distance from the first one; each must carry the payload sent there, and
// timestamps one offset from the sent ones. Errors are the test's.
func matchPackets(t *testing.T, who string, sent, recv []client.PacketRecord) matched {
	t.Helper()
	var m matched
	for _, p := range sent {
		if !p.Padding {
			m.media = append(m.media, p)
		}
	}
	if len(recv) < 50 {
		t.Fatalf("%s: received %d packets, want a steady flow", who, len(recv))
	}
	// Where the first received packet is: the sent one with its payload
	// from which the next received packets line up by sequence number; the
	// last one sent before it arrived, since looping sources send the same
	// payloads again.
	m.first = -1
	for i := len(m.media) - 1; i >= 0; i-- {
		if p := m.media[i]; p.PayloadHash != recv[0].PayloadHash || p.SentAt.After(recv[0].ReceivedAt) {
			continue
		}
		ok := true
		for _, r := range recv[1:min(len(recv), 40)] {
			j := i + int(int16(r.Seq-recv[0].Seq))
			if j >= 0 && j < len(m.media) && m.media[j].PayloadHash != r.PayloadHash {
				ok = false
				break
			}
		}
		if ok {
			m.first = i
			break
		}
	}
	if m.first < 0 {
		t.Fatalf("%s: the packets received do not follow the publisher's media packets one for one", who)
	}
	m.seqOff = recv[0].Seq - m.media[m.first].Seq
	m.tsOff = recv[0].Timestamp - m.media[m.first].Timestamp
	seen := make(map[int]bool, len(recv))
	newest, newestSeq := int64(0), recv[0].Seq // received sequence numbers unwrapped, from the first
	bad := 0
	for _, r := range recv {
		e := newest + int64(int16(r.Seq-newestSeq))
		if e > newest {
			newest, newestSeq = e, r.Seq
		}
		j := int64(m.first) + e
		if r.Padding {
			t.Errorf("%s: a padding-only packet (seq %d) arrived", who, r.Seq)
			continue
		}
		if j < 0 || j >= int64(len(m.media)) {
			t.Errorf("%s: received seq %d, which is no media packet sent", who, r.Seq)
			continue
		}
		s := m.media[j]
		if s.PayloadHash != r.PayloadHash || r.Timestamp-s.Timestamp != m.tsOff {
			if bad++; bad <= 5 {
				t.Errorf("%s: received seq %d ts %d is not the media packet sent there (seq %d ts %d, timestamp offset %d)",
					who, r.Seq, r.Timestamp, s.Seq, s.Timestamp, m.tsOff)
			}
			continue
		}
		seen[int(j)] = true
	}
	m.last = m.first + int(newest)
	if m.last < len(m.media) {
		m.drift = newestSeq - m.media[m.last].Seq
	}
	for j := m.first; j <= m.last && j < len(m.media); j++ {
		m.expected++
		if !seen[j] {
			m.missing++
		}
	}
	return m
}

// forwardDelay reads the count and sum of parley_forward_delay_seconds.
func forwardDelay(t *testing.T, srv *server.Server) (uint64, float64) {
	t.Helper()
	resp, err := http.Get(srv.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	f := fams["parley_forward_delay_seconds"]
	if f == nil || len(f.GetMetric()) == 0 || f.GetMetric()[0].GetHistogram() == nil {
		t.Fatal("/metrics has no parley_forward_delay_seconds histogram")
	}
	h := f.GetMetric()[0].GetHistogram()
	return h.GetSampleCount(), h.GetSampleSum()
}

// TestServerAsDTLSClientSendsThroughPion: a subscriber's stack answers as
// the DTLS server, so the SFU cannot read the SRTP keys of its handshake:
// its RTP goes through pion's SRTP session instead, and it receives every
// packet just as a subscriber on the direct path beside it does.
func TestServerAsDTLSClientSendsThroughPion(t *testing.T) {
	srv := testServer(t, nil)
	a := dial(t, srv, client.Options{Username: "a"})
	join(t, a, "dtls", "a")
	pub := publishCamera(t, a)
	direct := dial(t, srv, client.Options{Username: "direct"})
	join(t, direct, "dtls", "direct")
	viaPion := dial(t, srv, client.Options{Username: "pion", SubscribeDTLSServer: true})
	join(t, viaPion, "dtls", "pion")
	for _, c := range []*client.Client{direct, viaPion} {
		if _, err := c.WaitRemoteTracks(ctxT(t, 10*time.Second), 2); err != nil {
			t.Fatalf("remote tracks: %v", err)
		}
	}
	time.Sleep(3 * time.Second)
	st := srv.Media().Stats()
	if st.DirectSubscribers != 1 || st.PionSubscribers != 1 {
		t.Errorf("subscribe connections: %d direct, %d through pion; want 1 and 1", st.DirectSubscribers, st.PionSubscribers)
	}
	for who, c := range map[string]*client.Client{"direct": direct, "pion": viaPion} {
		for _, tr := range c.RemoteTracks() {
			checkPackets(t, who+"/"+tr.Kind(), pub, tr)
		}
	}
}
