package loadtest

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/parley/parley/pkg/protocol"
)

// Report is what a load run measured. Packet figures cover the measuring
// window: packets whose send time falls in it.
type Report struct {
	// Shape echoes the configuration.
	Shape Shape `json:"shape"`
	// Sessions counts the load clients.
	Sessions SessionReport `json:"sessions"`
	// Join is the time from dialing to the join reply, per session.
	Join Quantiles `json:"join"`
	// FirstFrame is the time from the join (or from the offer that added the
	// track, if later) to the first keyframe start of each received video
	// track (the first packet of audio tracks in rooms without video).
	FirstFrame Quantiles `json:"first_frame"`
	// WindowSeconds is the measuring window's length.
	WindowSeconds float64 `json:"window_seconds"`
	// Streams has one entry per published track.
	Streams []StreamReport `json:"streams"`
	// Groups compare the shaped subscribers with the others (with
	// Config.Shaped): what layers, loss and audio loss each group got.
	Groups []GroupReport `json:"groups,omitempty"`
	// Totals adds the streams up.
	Totals Totals `json:"totals"`
	// Latency is the forwarding latency of every packet received in the
	// window: from just before the publisher's write to the packet's arrival
	// at the receiver's socket (the kernel's receive timestamp; both in this
	// process: client send path + server + loopback). It leaves out the
	// receivers' own path in this process, which queues behind every other
	// receiver of the tool (ReaderLatency has it).
	Latency Quantiles `json:"latency"`
	// ReaderLatency is the same up to the receiver's reader getting the
	// packet: Latency plus the client's receive path (ICE, SRTP, pion's
	// buffers), run for every receiver on this machine's cores.
	ReaderLatency Quantiles `json:"reader_latency"`
	// Server is the server's CPU and memory from its /metrics.
	Server ServerReport `json:"server"`
	// Self is this process's CPU in the window.
	Self SelfReport `json:"self"`
	// HostUDP counts the host's UDP errors from the window's start to the end
	// of the drain (Linux): all on loopback, where datagrams dropped at a full
	// socket receive buffer, the server's or a receiver's, show.
	HostUDP *UDPErrors `json:"host_udp,omitempty"`
	// LoadAverage is the machine's 1-minute load average when the window
	// opened and closed.
	LoadAverage [2]float64 `json:"load_average"`
	// Notes explain figures that need it.
	Notes []string `json:"notes,omitempty"`
}

// Shape is the run's configuration as reported.
type Shape struct {
	URL                 string  `json:"url"`
	Rooms               int     `json:"rooms"`
	VideoPublishers     int     `json:"video_publishers"`
	AudioPublishers     int     `json:"audio_publishers"`
	Subscribers         int     `json:"subscribers"`
	PublishersSubscribe bool    `json:"publishers_subscribe"`
	Video               string  `json:"video"`
	Shaped              string  `json:"shaped,omitempty"`
	RampRate            float64 `json:"ramp_per_second"`
	NACK                bool    `json:"nack_negotiated"`
	SocketStamps        bool    `json:"socket_stamps"`
	SameProcess         bool    `json:"same_process"`
}

// SessionReport counts sessions.
type SessionReport struct {
	Planned int `json:"planned"`
	// Connected sessions were ready (every track flowing) when the window opened.
	Connected int `json:"connected"`
	// Failed sessions never got ready, or dropped during the window.
	Failed int `json:"failed"`
	// FailedBy counts failures by stage: dial, join, publish, publishing,
	// tracks, media, session, dropped.
	FailedBy map[string]int `json:"failed_by,omitempty"`
	// Viewers counts connected sessions the server admitted as viewers of
	// a webinar room (protocol.RoleViewer): receive only, not listed to
	// each other.
	Viewers int `json:"viewers,omitempty"`
	// MediaLost counts connected sessions (WebSocket alive) with a peer
	// connection no longer connected when the window closed (ICE
	// disconnected or failed): their packets show as loss.
	MediaLost int `json:"media_lost,omitempty"`
	// FirstErrors are a few failure messages.
	FirstErrors []string `json:"first_errors,omitempty"`
}

// StreamReport is one published track.
type StreamReport struct {
	Room      string `json:"room"`
	Publisher string `json:"publisher"`
	StreamID  string `json:"stream_id"`
	Kind      string `json:"kind"`
	// Sent is the packets the publisher sent in the window; Kbps their payload rate.
	Sent int64   `json:"sent"`
	Kbps float64 `json:"kbps"`
	// Receivers is how many connected sessions receive the track.
	Receivers int `json:"receivers"`
	// Expected is what the server sent the receivers of the track in the
	// window, by their own sequence numbers (the server numbers each
	// receiver's packets, leaving out what it does not send: Sent ×
	// Receivers when it leaves nothing out); Received what they got of it.
	Expected int64   `json:"expected"`
	Received int64   `json:"received"`
	LossPct  float64 `json:"loss_pct"`
	// Layers is, for a simulcast track, the share of the media packets its
	// receivers got from each layer (q, h, f).
	Layers map[string]float64 `json:"layers,omitempty"`
	// NACKs (packets asked again) and PLIs (keyframe requests, PLI and FIR)
	// the publisher got from the server during the window.
	NACKs int64 `json:"nacks"`
	PLIs  int64 `json:"plis"`
	// JitterMS is the receivers' RFC 3550 interarrival jitter at the end of
	// the window: mean and maximum over receivers.
	JitterMeanMS float64   `json:"jitter_mean_ms"`
	JitterMaxMS  float64   `json:"jitter_max_ms"`
	Latency      Quantiles `json:"latency"`
}

// GroupReport is what one group of receivers got (shaped or not).
type GroupReport struct {
	Name      string `json:"name"`
	Receivers int    `json:"receivers"`
	// VideoLossPct and AudioLossPct are the group's loss (as LossPct).
	VideoLossPct float64 `json:"video_loss_pct"`
	AudioLossPct float64 `json:"audio_loss_pct"`
	// VideoKbps is the video payload each receiver got of what was sent in
	// the window, on average.
	VideoKbps float64 `json:"video_kbps"`
	// Layers is the share of the group's video packets from each simulcast layer.
	Layers map[string]float64 `json:"layers,omitempty"`
	// Latency is the group's forwarding latency (to the sockets).
	Latency Quantiles `json:"latency"`
	// RelayDropped counts the packets the shaped links dropped at their
	// queues (shaped group only).
	RelayDropped int64 `json:"relay_dropped,omitempty"`
}

// Totals add up the streams.
type Totals struct {
	Sent     int64   `json:"sent"`
	Expected int64   `json:"expected"`
	Received int64   `json:"received"`
	LossPct  float64 `json:"loss_pct"`
	// Unmatched packets were received but their send time was unknown (a
	// server that rewrote sequence numbers would show here).
	Unmatched int64 `json:"unmatched"`
	// Unstamped packets had no socket arrival time: Latency counts them at
	// the reader (an upper bound).
	Unstamped int64 `json:"unstamped"`
	NACKs     int64 `json:"nacks"`
	PLIs      int64 `json:"plis"`
	// ReceivedPerSecond is Received over the window.
	ReceivedPerSecond float64 `json:"received_per_second"`
}

// ServerReport is the server's CPU and memory.
type ServerReport struct {
	// Available is false when the server's metrics could not be read.
	Available bool   `json:"available"`
	Error     string `json:"error,omitempty"`
	// Baseline, Start and End are the samples before the ramp-up and at both
	// ends of the window.
	Baseline ServerSample `json:"baseline"`
	Start    ServerSample `json:"start"`
	End      ServerSample `json:"end"`
	// CPUCores is CPU seconds per second in the window.
	CPUCores float64 `json:"cpu_cores"`
	// Forwarded and Dropped are the server's own counts over the window
	// (packets written to subscribers, and dropped at a full subscriber
	// queue), when it exports them.
	Forwarded int64 `json:"forwarded,omitempty"`
	Dropped   int64 `json:"dropped,omitempty"`
	// MicrosPerPacket is the window's CPU over the packets forwarded: the
	// server's Forwarded count when it has one, else Totals.Received.
	MicrosPerPacket float64 `json:"us_per_forwarded_packet"`
	// RSSMB is the resident memory at the window's end; MBPerParticipant is
	// its growth since the baseline over the connected sessions.
	RSSMB            float64 `json:"rss_mb"`
	MBPerParticipant float64 `json:"mb_per_participant"`
	// DelayP50MS and DelayP99MS are quantiles of the server's own forwarding
	// delay over the window (parley_forward_delay_seconds: from reading a
	// publisher's packet to sending it, one observation per subscriber
	// burst); DelayObservations is how many there were (0: not exported).
	DelayP50MS        float64 `json:"forward_delay_p50_ms,omitempty"`
	DelayP99MS        float64 `json:"forward_delay_p99_ms,omitempty"`
	DelayObservations uint64  `json:"forward_delay_observations,omitempty"`
}

// UDPErrors are deltas of the host's UDP counters (/proc/net/snmp).
type UDPErrors struct {
	InErrors     int64 `json:"in_errors"`
	RcvbufErrors int64 `json:"rcvbuf_errors"`
	SndbufErrors int64 `json:"sndbuf_errors"`
}

// SelfReport is the load tool's own CPU.
type SelfReport struct {
	CPUCores float64 `json:"cpu_cores"`
	// MicrosPerPacket is the window's CPU over the packets received.
	MicrosPerPacket float64 `json:"us_per_received_packet"`
}

// collect fills the report from the sessions and the window's counters.
func (e *engine) collect(rep *Report, before, after counters) {
	c := e.cfg
	rep.Shape = Shape{URL: c.URL, Rooms: c.Rooms, VideoPublishers: c.VideoPublishers, AudioPublishers: c.AudioPublishers,
		Subscribers: c.Subscribers, PublishersSubscribe: c.PublishersSubscribe, RampRate: c.RampRate, SameProcess: c.SameProcess, NACK: !c.NoNACK, SocketStamps: !c.NoSocketStamps,
		Video: fmt.Sprintf("VP8 %dx%d %d fps %d kbit/s", c.Width, c.Height, c.FPS, c.VideoBitrate/1000)}
	if c.Simulcast {
		rep.Shape.Video += " in three simulcast layers (1/4, 1/2, 1)"
	}
	if c.Shaped > 0 {
		rep.Shape.Shaped = fmt.Sprintf("%d subscriber(s) per room at %d kbit/s, %v queue", c.Shaped, c.ShapedRate/1000, c.ShapedQueue)
	}
	win := time.Duration(e.win.end.Load() - e.win.start.Load())
	rep.WindowSeconds = win.Seconds()
	rep.LoadAverage = [2]float64{before.load, after.load}

	sr := &rep.Sessions
	sr.Planned = len(e.sessions)
	sr.FailedBy = map[string]int{}
	var joins, firsts []time.Duration
	roomVideo := c.VideoPublishers > 0
	type agg struct {
		receivers          int
		received, expected int64
		bytes              int64
		layers             map[string]int64
		lat                histogram
		jitters            []float64
	}
	add := func(a *agg, sn recvSnapshot) {
		a.receivers++
		a.received += sn.got
		a.expected += sn.expected
		a.lat.merge(&sn.lat)
		a.jitters = append(a.jitters, sn.jitterMS)
		for rid, n := range sn.layers {
			if a.layers == nil {
				a.layers = map[string]int64{}
			}
			a.layers[rid] += n
		}
	}
	byKey := map[streamKey]*agg{}
	groups := map[bool]map[string]*agg{false: {}, true: {}} // shaped → kind → agg
	var relayDropped int64
	var all, allRead histogram
	for _, s := range e.sessions {
		if s.joinTime > 0 {
			joins = append(joins, s.joinTime)
		}
		if s.state.Load() != stateReady {
			sr.Failed++
			sr.FailedBy[s.failStage]++
			if len(sr.FirstErrors) < 5 && s.failErr != nil {
				sr.FirstErrors = append(sr.FirstErrors, fmt.Sprintf("%s/%s %s: %v", s.room, s.name, s.failStage, s.failErr))
			}
			continue
		}
		select {
		case <-s.c.Done():
			sr.Failed++
			sr.FailedBy["dropped"]++
			if len(sr.FirstErrors) < 5 {
				sr.FirstErrors = append(sr.FirstErrors, fmt.Sprintf("%s/%s dropped: %v", s.room, s.name, s.c.Err()))
			}
		default:
			sr.Connected++
			if s.role == protocol.RoleViewer {
				sr.Viewers++
			}
			// The session is alive, but is its media? ICE gives up on a peer
			// that answers no consent checks for long (a starved machine).
			if st := s.mediaState(); st != "" {
				sr.MediaLost++
				if len(sr.FirstErrors) < 5 {
					sr.FirstErrors = append(sr.FirstErrors, fmt.Sprintf("%s/%s media: %s", s.room, s.name, st))
				}
			}
		}
		if s.sh != nil {
			_, d := s.sh.stats()
			relayDropped += d
		}
		for _, r := range s.trackList() {
			if (r.key.kind == "video") == roomVideo {
				from := s.joinedAt
				if at := r.rt.SubscribedAt(); at.After(from) {
					from = at
				}
				if first := r.firstMedia(); !first.IsZero() {
					firsts = append(firsts, first.Sub(from))
				}
			}
			if !r.measured.Load() {
				continue
			}
			a := byKey[r.key]
			if a == nil {
				a = &agg{}
				byKey[r.key] = a
			}
			sn := r.snapshot()
			add(a, sn)
			g := groups[r.shaped][r.key.kind]
			if g == nil {
				g = &agg{}
				groups[r.shaped][r.key.kind] = g
			}
			add(g, sn)
			g.bytes += sn.bytes
			all.merge(&sn.lat)
			allRead.merge(&sn.read)
			rep.Totals.Unmatched += r.unmatched.Load()
			rep.Totals.Unstamped += sn.unstamped
		}
	}
	if len(sr.FailedBy) == 0 {
		sr.FailedBy = nil
	}
	rep.Join = exactQuantiles(joins)
	rep.FirstFrame = exactQuantiles(firsts)
	rep.Latency = all.summary()
	rep.ReaderLatency = allRead.summary()

	for _, s := range e.sessions {
		rows := map[string]*StreamReport{}
		for _, st := range s.sent {
			if st.streamID == "" {
				continue
			}
			row := rows[st.kind]
			if row == nil {
				// One row per published track, its layers added up.
				a := byKey[streamKey{st.streamID, st.kind}]
				if a == nil {
					a = &agg{}
				}
				row = &StreamReport{Room: st.room, Publisher: st.publisher, StreamID: st.streamID, Kind: st.kind,
					Receivers: a.receivers, Expected: a.expected, Received: a.received, Latency: a.lat.summary(),
					Layers: shares(a.layers)}
				row.LossPct = lossPct(row.Expected, row.Received)
				for _, j := range a.jitters {
					row.JitterMeanMS += j / float64(len(a.jitters))
					row.JitterMaxMS = max(row.JitterMaxMS, j)
				}
				rows[st.kind] = row
			}
			row.Sent += st.winPackets.Load()
			row.NACKs += after.nacks[st] - before.nacks[st]
			row.PLIs += after.plis[st] - before.plis[st]
			if win > 0 {
				row.Kbps += float64(st.winBytes.Load()) * 8 / win.Seconds() / 1000
			}
		}
		for _, kind := range []string{"audio", "video"} {
			row := rows[kind]
			if row == nil {
				continue
			}
			rep.Streams = append(rep.Streams, *row)
			t := &rep.Totals
			t.Sent += row.Sent
			t.Expected += row.Expected
			t.Received += row.Received
			t.NACKs += row.NACKs
			t.PLIs += row.PLIs
		}
	}
	rep.Totals.LossPct = lossPct(rep.Totals.Expected, rep.Totals.Received)
	if c.Shaped > 0 {
		for _, shaped := range []bool{false, true} {
			g := GroupReport{Name: "unshaped"}
			if shaped {
				g.Name = fmt.Sprintf("shaped %d kbit/s", c.ShapedRate/1000)
				g.RelayDropped = relayDropped
			}
			var lat histogram
			if v := groups[shaped]["video"]; v != nil {
				g.Receivers = v.receivers
				g.VideoLossPct = lossPct(v.expected, v.received)
				g.Layers = shares(v.layers)
				lat.merge(&v.lat)
				if win > 0 && v.receivers > 0 {
					g.VideoKbps = float64(v.bytes) * 8 / float64(v.receivers) / 1000 / win.Seconds()
				}
			}
			if a := groups[shaped]["audio"]; a != nil {
				g.Receivers = max(g.Receivers, a.receivers)
				g.AudioLossPct = lossPct(a.expected, a.received)
				lat.merge(&a.lat)
			}
			g.Latency = lat.summary()
			rep.Groups = append(rep.Groups, g)
		}
	}
	if win > 0 {
		rep.Totals.ReceivedPerSecond = float64(rep.Totals.Received) / win.Seconds()
	}

	// The load tool's CPU over the real time between the two snapshots.
	span := after.at.Sub(before.at).Seconds()
	if span > 0 {
		self := (after.self - before.self).Seconds()
		rep.Self.CPUCores = self / span
		if rep.Totals.Received > 0 {
			rep.Self.MicrosPerPacket = self * 1e6 / float64(rep.Totals.Received)
		}
	}
	srv := &rep.Server
	switch {
	case e.metrics == nil:
		srv.Error = "no metrics URL"
	case before.serverErr != nil:
		srv.Error = before.serverErr.Error()
	case after.serverErr != nil:
		srv.Error = after.serverErr.Error()
	default:
		srv.Available = true
		srv.Start, srv.End = before.server, after.server
	}
}

// finish derives the server figures once the baseline is known.
func (rep *Report) finish(c Config) {
	srv := &rep.Server
	if srv.Available {
		cpu := srv.End.CPUSeconds - srv.Start.CPUSeconds
		if span := srv.End.At.Sub(srv.Start.At).Seconds(); span > 0 {
			srv.CPUCores = cpu / span
		}
		forwarded := float64(rep.Totals.Received)
		if srv.Start.Packets && srv.End.Packets {
			srv.Forwarded = int64(srv.End.Forwarded - srv.Start.Forwarded)
			srv.Dropped = int64(srv.End.Dropped - srv.Start.Dropped)
			forwarded = float64(srv.Forwarded)
		}
		if forwarded > 0 {
			srv.MicrosPerPacket = cpu * 1e6 / forwarded
		}
		if p50, p99, n, ok := delayQuantiles(srv.Start.Delay, srv.End.Delay); ok {
			srv.DelayP50MS, srv.DelayP99MS, srv.DelayObservations = p50, p99, n
		}
		srv.RSSMB = srv.End.RSSBytes / 1e6
		if rep.Sessions.Connected > 0 {
			srv.MBPerParticipant = (srv.End.RSSBytes - srv.Baseline.RSSBytes) / 1e6 / float64(rep.Sessions.Connected)
		}
	}
	if c.SameProcess {
		rep.Notes = append(rep.Notes, "the server runs in the load tool's process: its CPU and memory include the load tool's")
	}
	switch {
	case c.NoSocketStamps:
		rep.Notes = append(rep.Notes, "--no-socket-stamps: latency is measured to the receivers' readers")
	case rep.Totals.Unstamped > 0:
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d packets received had no socket arrival time; latency counts them at the reader", rep.Totals.Unstamped))
	}
	if rep.Totals.Unmatched > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d packets received could not be matched to a sent packet", rep.Totals.Unmatched))
	}
}

// shares turns per-layer counts into shares of the total.
func shares(n map[string]int64) map[string]float64 {
	var total int64
	for _, v := range n {
		total += v
	}
	if total == 0 {
		return nil
	}
	out := map[string]float64{}
	for k, v := range n {
		out[k] = float64(v) / float64(total)
	}
	return out
}

func lossPct(expected, received int64) float64 {
	if expected <= 0 {
		return 0
	}
	return 100 * float64(expected-received) / float64(expected)
}

// Check returns what breaks the thresholds: loss above maxLossPct percent
// (over all streams, and per stream), more than maxFailures failed sessions,
// or nothing received at all.
func (rep *Report) Check(maxLossPct float64, maxFailures int) []string {
	var out []string
	if rep.Sessions.Failed > maxFailures {
		out = append(out, fmt.Sprintf("%d sessions failed (at most %d allowed)", rep.Sessions.Failed, maxFailures))
	}
	if rep.Totals.Expected == 0 {
		out = append(out, "no packets were expected: nothing was measured")
	}
	if rep.Totals.LossPct > maxLossPct {
		out = append(out, fmt.Sprintf("loss %.3f%% (at most %.3g%% allowed)", rep.Totals.LossPct, maxLossPct))
	}
	for _, s := range rep.Streams {
		if s.LossPct > maxLossPct && rep.Totals.LossPct <= maxLossPct {
			out = append(out, fmt.Sprintf("stream %s/%s %s: loss %.3f%% (at most %.3g%% allowed)", s.Room, s.Publisher, s.Kind, s.LossPct, maxLossPct))
		}
	}
	return out
}

// WriteTable writes the report for people.
func (rep *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	sh := rep.Shape
	p("shape\t%d room(s): %d video + %d audio publishers, %d subscribers per room%s; %s; receivers %s\n", sh.Rooms,
		sh.VideoPublishers, sh.AudioPublishers, sh.Subscribers, map[bool]string{true: ", publishers subscribe"}[sh.PublishersSubscribe], sh.Video,
		map[bool]string{true: "negotiate NACK", false: "negotiate no NACK"}[sh.NACK])
	viewers := ""
	if rep.Sessions.Viewers > 0 {
		viewers = fmt.Sprintf(" (%d as webinar viewers)", rep.Sessions.Viewers)
	}
	p("sessions\t%d planned, %d connected%s, %d failed%s; %d connected with their media disconnected\n", rep.Sessions.Planned,
		rep.Sessions.Connected, viewers, rep.Sessions.Failed, failedBy(rep.Sessions.FailedBy), rep.Sessions.MediaLost)
	for _, e := range rep.Sessions.FirstErrors {
		p("\t  %s\n", e)
	}
	p("join\tp50 %.0f ms, p95 %.0f ms, max %.0f ms (n=%d)\n", rep.Join.P50, rep.Join.P95, rep.Join.Max, rep.Join.N)
	p("first frame\tp50 %.0f ms, p95 %.0f ms, max %.0f ms (n=%d)\n", rep.FirstFrame.P50, rep.FirstFrame.P95, rep.FirstFrame.Max, rep.FirstFrame.N)
	p("window\t%.1f s, load average %.2f → %.2f\n", rep.WindowSeconds, rep.LoadAverage[0], rep.LoadAverage[1])
	t := rep.Totals
	p("packets\t%d sent, %d expected, %d received (%.0f/s), loss %.3f%%, unmatched %d\n", t.Sent, t.Expected, t.Received, t.ReceivedPerSecond, t.LossPct, t.Unmatched)
	if u := rep.HostUDP; u != nil {
		p("host UDP errors\t%d receive-buffer overflows, %d send-buffer errors, %d input errors (whole host, window and drain)\n",
			u.RcvbufErrors, u.SndbufErrors, u.InErrors)
	}
	p("publisher RTCP\t%d NACKed packets, %d keyframe requests\n", t.NACKs, t.PLIs)
	if sh.Shaped != "" {
		p("shaped\t%s\n", sh.Shaped)
	}
	for _, g := range rep.Groups {
		p("%s\t%d receivers: video loss %.2f%%, audio loss %.2f%%, %.0f kbit/s of video each, layers %s, latency p50 %.1f ms p99 %.1f ms",
			g.Name, g.Receivers, g.VideoLossPct, g.AudioLossPct, g.VideoKbps, layerShares(g.Layers), g.Latency.P50, g.Latency.P99)
		if g.RelayDropped > 0 {
			p(", %d packets dropped at the links' queues", g.RelayDropped)
		}
		p("\n")
	}
	p("latency\tp50 %.2f ms, p99 %.2f ms, max %.2f ms, publisher's write to the receivers' sockets\n",
		rep.Latency.P50, rep.Latency.P99, rep.Latency.Max)
	p("\tp50 %.2f ms, p99 %.2f ms, max %.2f ms to the receivers' readers (adds this tool's receive path)\n",
		rep.ReaderLatency.P50, rep.ReaderLatency.P99, rep.ReaderLatency.Max)
	if s := rep.Server; s.Available {
		p("server\t%.3f cores, %.2f µs CPU per forwarded packet, RSS %.1f MB (%.1f before the run), %.3f MB per participant\n",
			s.CPUCores, s.MicrosPerPacket, s.RSSMB, s.Baseline.RSSBytes/1e6, s.MBPerParticipant)
		if s.Start.Packets {
			p("server packets\t%d forwarded, %d dropped at full subscriber queues (its own counters, same window)\n", s.Forwarded, s.Dropped)
		}
		if s.DelayObservations > 0 {
			p("server delay\tp50 %.2f ms, p99 %.2f ms in the server, read to send (its histogram, %d bursts)\n",
				s.DelayP50MS, s.DelayP99MS, s.DelayObservations)
		}
	} else {
		p("server\tno figures: %s\n", rep.Server.Error)
	}
	p("load tool\t%.3f cores, %.2f µs CPU per received packet\n", rep.Self.CPUCores, rep.Self.MicrosPerPacket)
	for _, n := range rep.Notes {
		p("note\t%s\n", n)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "room\tpublisher\tkind\tkbit/s\tsent\treceivers\texpected\treceived\tloss %\tNACK\tPLI\tjitter ms (mean/max)\tlatency ms (p50/p99)\tlayers\t")
	for _, s := range rep.Streams {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%d\t%d\t%d\t%d\t%.3f\t%d\t%d\t%.2f/%.2f\t%.2f/%.2f\t%s\t\n", s.Room, s.Publisher, s.Kind,
			s.Kbps, s.Sent, s.Receivers, s.Expected, s.Received, s.LossPct, s.NACKs, s.PLIs, s.JitterMeanMS, s.JitterMaxMS,
			s.Latency.P50, s.Latency.P99, layerShares(s.Layers))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// layerShares writes layer shares as "q 10% h 0% f 90%".
func layerShares(m map[string]float64) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, rid := range layerRIDs {
		if v, ok := m[rid]; ok {
			parts = append(parts, fmt.Sprintf("%s %.0f%%", rid, 100*v))
		}
	}
	return strings.Join(parts, " ")
}

func failedBy(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
