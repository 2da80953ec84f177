package sfu

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/parley/parley/pkg/protocol"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// publication is one published stream on a publish connection of its own.
type publication struct {
	id   string
	kind string
	peer *Peer
	log  *slog.Logger

	mu sync.Mutex
	// pc is the publish connection, set by start under mu: a close that
	// comes while start runs (shutdown, a resumed session replacing the
	// old one) either finds it and closes it, or start finds the
	// publication closed and closes it itself. Read it with conn.
	pc         *webrtc.PeerConnection
	tracksWant int      // tracks the answer accepted
	codecs     []string // their codecs (MIME types), from the answer
	forwarders []*forwarder
	// rids are the simulcast layers offered per media section (mid), in
	// the offer's order; groups the first layer of each that arrived,
	// which stands for the published track.
	rids   map[string][]string
	groups map[string]*forwarder
	closed bool
	wg     sync.WaitGroup

	rec      StreamRecorder
	recKinds []string     // track kinds in recorder order
	recorded []*forwarder // the tracks recorded that are not simulcast
	// followers record the simulcast tracks, each its best arriving layer
	// (follow.go), by track id.
	followers map[string]*layerFollower

	sigMu     sync.Mutex
	trickling bool
	early     []webrtc.ICECandidateInit
}

// checkOffer validates a client's offer before any connection is made: it
// must parse, and offer at least one codec the SFU forwards.
func checkOffer(offer string) (map[string][]string, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return nil, &protocol.Error{Code: protocol.CodeInvalidSDP, Reason: "the offer is not valid SDP: " + err.Error()}
	}
	var offered []string
	byMid := make(map[string][]string)
	usable := 0
	for _, m := range sd.MediaDescriptions {
		kind := m.MediaName.Media
		if kind != "audio" && kind != "video" {
			continue
		}
		var best string
		for _, a := range m.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			_, enc, ok := strings.Cut(a.Value, " ")
			if !ok {
				continue
			}
			name, _, _ := strings.Cut(enc, "/")
			mime := kind + "/" + name
			if mid, ok := m.Attribute("mid"); ok && !slices.Contains(byMid[mid], mime) {
				byMid[mid] = append(byMid[mid], mime)
			}
			if !slices.Contains(offered, mime) {
				offered = append(offered, mime)
			}
			if best == "" && supportedMime(mime) {
				best = mime
			}
		}
		if best != "" {
			usable++
		}
	}
	if usable == 0 {
		if len(offered) == 0 {
			return nil, &protocol.Error{Code: protocol.CodeInvalidSDP, Reason: "the offer has no audio or video"}
		}
		return nil, &protocol.Error{Code: protocol.CodeUnsupportedCodec,
			Reason: "none of the offered codecs (" + strings.Join(offered, ", ") + ") can be forwarded; use Opus, PCMU, PCMA, VP8, VP9, H264 or AV1"}
	}
	return byMid, nil
}

// offeredRIDs lists the RTP stream ids (simulcast layers) each media
// section of an offer sends, in order.
func offeredRIDs(offer string) map[string][]string {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return nil
	}
	out := map[string][]string{}
	for _, m := range sd.MediaDescriptions {
		mid, _ := m.Attribute("mid")
		for _, a := range m.Attributes {
			if a.Key != "rid" {
				continue
			}
			if id, dir, ok := strings.Cut(a.Value, " "); ok && strings.HasPrefix(dir, "send") && len(out[mid]) < 4 {
				out[mid] = append(out[mid], id)
			}
		}
	}
	return out
}

// layerIndex is a simulcast layer's place, 0 the lowest: the conventional
// names q, h and f (quarter, half, full) say it; others go by the offer's
// order, which browsers keep from sendEncodings (lowest first, as Parley's
// page sends them).
func layerIndex(rid string, offered []string) int {
	switch rid {
	case "q":
		return 0
	case "h":
		return 1
	case "f":
		return 2
	}
	if i := slices.Index(offered, rid); i >= 0 {
		return i
	}
	return 0
}

// answerTracks lists the tracks an answer accepts, each with the codec the
// publisher will send (the first one of its media section).
func answerTracks(answer string) []protocol.Track {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil {
		return nil
	}
	var tracks []protocol.Track
	for _, m := range sd.MediaDescriptions {
		kind := m.MediaName.Media
		if (kind != "audio" && kind != "video") || m.MediaName.Port.Value == 0 || len(m.MediaName.Formats) == 0 {
			continue
		}
		if _, inactive := m.Attribute("inactive"); inactive {
			continue
		}
		t := protocol.Track{Kind: kind}
		for _, a := range m.Attributes {
			pt, enc, ok := strings.Cut(a.Value, " ")
			if a.Key == "rtpmap" && ok && pt == m.MediaName.Formats[0] {
				name, _, _ := strings.Cut(enc, "/")
				t.Codec = kind + "/" + name
			}
		}
		tracks = append(tracks, t)
	}
	return tracks
}

func newPublication(peer *Peer, id, kind string) *publication {
	return &publication{id: id, kind: kind, peer: peer, log: peer.log.With("stream", id)}
}

// start creates the publish connection and answers the client's offer.
func (pub *publication) start(offer string) (string, error) {
	if _, err := checkOffer(offer); err != nil {
		return "", err
	}
	e := pub.peer.router.engine
	pc, err := e.pubAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", fmt.Errorf("new publish connection: %w", err)
	}
	if hook := e.hooks.publishConnMade; hook != nil {
		hook(pub, pc)
	}
	pub.mu.Lock()
	if pub.closed {
		pub.mu.Unlock()
		if err := pc.Close(); err != nil {
			pub.log.Debug("close publish connection", "err", err)
		}
		return "", errPublicationClosed
	}
	pub.pc = pc
	pub.mu.Unlock()
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		pub.sigMu.Lock()
		defer pub.sigMu.Unlock()
		init := c.ToJSON()
		if !pub.trickling {
			pub.early = append(pub.early, init)
			return
		}
		pub.peer.signal().Candidate(protocol.TargetPublish, pub.id, init)
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		pub.log.Debug("publish connection", "state", st.String())
		switch st {
		case webrtc.PeerConnectionStateConnected:
			pub.peer.signal().PublishStatus(pub.id, protocol.StreamPublishing, "")
		case webrtc.PeerConnectionStateFailed:
			pub.peer.signal().PublishStatus(pub.id, protocol.StreamFailed, "the media connection failed (ICE or DTLS); check the network or use TURN")
		}
	})
	pc.OnTrack(pub.onTrack)

	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", &protocol.Error{Code: protocol.CodeInvalidSDP, Reason: "the offer was refused: " + err.Error()}
	}
	pub.peer.router.preferCodecs(pc, pub.peer, offer)
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", &protocol.Error{Code: protocol.CodeUnsupportedCodec, Reason: "cannot answer the offer: " + err.Error()}
	}
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("set publish answer: %w", err)
	}
	pub.mu.Lock()
	for _, t := range answerTracks(answer.SDP) {
		pub.codecs = append(pub.codecs, t.Codec)
	}
	pub.tracksWant = len(pub.codecs)
	pub.rids = offeredRIDs(offer)
	pub.mu.Unlock()
	return answer.SDP, nil
}

// startTrickle sends the candidates gathered so far, once the answer has
// been sent, and every later one as it comes.
func (pub *publication) startTrickle() {
	pub.sigMu.Lock()
	defer pub.sigMu.Unlock()
	if pub.trickling {
		return
	}
	pub.trickling = true
	for _, c := range pub.early {
		pub.peer.signal().Candidate(protocol.TargetPublish, pub.id, c)
	}
	pub.early = nil
}

// errPublicationClosed is start's error when the publication was closed
// while it made the connection.
var errPublicationClosed = &protocol.Error{Code: protocol.CodeUnknownStream, Reason: "the stream was closed while it was set up"}

// conn returns the publish connection, or an error while it is not made
// yet or after the publication closed.
func (pub *publication) conn() (*webrtc.PeerConnection, error) {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if pub.closed {
		return nil, errPublicationClosed
	}
	if pub.pc == nil {
		return nil, &protocol.Error{Code: protocol.CodeInvalidSDP, Reason: "the stream's connection is being set up; wait for its answer"}
	}
	return pub.pc, nil
}

// reoffer answers a client's new offer on this connection (an ICE restart).
// The candidates pion gathers for the restart are held until the caller has
// sent the answer and calls startTrickle: trickled ahead of the answer, they
// would carry credentials the client does not know yet (a browser refuses
// them).
func (pub *publication) reoffer(offer string) (string, error) {
	pc, err := pub.conn()
	if err != nil {
		return "", err
	}
	pub.sigMu.Lock()
	pub.trickling = false
	pub.sigMu.Unlock()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", &protocol.Error{Code: protocol.CodeInvalidSDP, Reason: "the offer was refused: " + err.Error()}
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", &protocol.Error{Code: protocol.CodeInvalidSDP, Reason: "cannot answer the offer: " + err.Error()}
	}
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("set publish answer: %w", err)
	}
	return answer.SDP, nil
}

func (pub *publication) onTrack(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	e := pub.peer.router.engine
	pub.mu.Lock()
	ssrcPC := pub.pc // set before the connection could fire OnTrack
	pub.mu.Unlock()
	f := newForwarder(pub.id, track, e.pool, e.writers, pub.log, func(ssrc uint32) {
		if err := ssrcPC.WriteRTCP(pliPacket(ssrc)); err != nil {
			pub.log.Debug("send PLI", "err", err)
		}
	})
	f.streamKind = pub.kind
	levelExt := uint8(0)
	if f.kind == webrtc.RTPCodecTypeAudio {
		levelExt = levelExtension(recv)
	} else {
		f.describeDD(ddExtension(recv))
	}
	mid := ""
	for _, t := range ssrcPC.GetTransceivers() {
		if t.Receiver() == recv {
			mid = t.Mid()
		}
	}
	pub.mu.Lock()
	if pub.closed {
		pub.mu.Unlock()
		return
	}
	if levelExt != 0 {
		// Under pub.mu, so that a close that lists the forwarder sees it
		// metered and stops the meter.
		f.levelExt = levelExt
		f.level = pub.peer.router.speakers.add(pub.id, pub.peer.name)
	}
	var primary *forwarder
	if rid := track.RID(); rid != "" {
		f.rid, f.layer = rid, layerIndex(rid, pub.rids[mid])
		if pub.groups == nil {
			pub.groups = map[string]*forwarder{}
		}
		key := f.kind.String() + "/" + mid
		if primary = pub.groups[key]; primary != nil {
			// Another layer of a published track: it joins the layers,
			// subscribers keep their downTrack.
			f.id, f.layers = primary.id, primary.layers
			primary.layers.add(f)
		} else {
			pub.groups[key] = f
		}
	}
	f.primary = primary == nil
	f.siblings = max(pub.tracksWant, 1)
	f.siblingCodecs = pub.codecs
	pub.forwarders = append(pub.forwarders, f)
	pub.attachRecorderLocked(f)
	pub.wg.Add(2)
	pub.mu.Unlock()
	f.muted.Store(pub.peer.mutes.get(pub.kind, f.kind.String()))
	pub.log.Info("track published", "track", f.id, "codec", f.codec.MimeType, "ssrc", uint32(track.SSRC()), "rid", f.rid)

	go func() {
		defer pub.wg.Done()
		f.run()
	}()
	go func() {
		// Read the publisher's RTCP so the interceptors see it; sender
		// reports also map the track's RTP clock to wall-clock time for the
		// recorder (lip sync).
		defer pub.wg.Done()
		buf := make([]byte, maxPacket)
		for {
			var n int
			var err error
			if f.rid != "" {
				n, _, err = recv.ReadSimulcast(buf, f.rid)
			} else {
				n, _, err = recv.Read(buf)
			}
			if err != nil {
				return
			}
			f.onRTCP(buf[:n])
		}
	}()
	if primary != nil {
		pub.peer.router.layersChanged(primary)
		return
	}
	pub.peer.router.trackAdded(pub, f)
}

// setRecorder starts recording: tracks that arrive later are fed to rec.
func (pub *publication) setRecorder(rec StreamRecorder, tracks []protocol.Track) {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	pub.rec = rec
	for _, t := range tracks {
		pub.recKinds = append(pub.recKinds, t.Kind)
	}
	for _, f := range pub.forwarders {
		pub.attachRecorderLocked(f)
	}
}

// attachRecorderLocked feeds f to the recorder: a track as it is, a
// simulcast layer through its track's follower.
func (pub *publication) attachRecorderLocked(f *forwarder) {
	if pub.rec == nil {
		return
	}
	i := slices.Index(pub.recKinds, f.kind.String())
	if i < 0 {
		return
	}
	if f.rid == "" {
		pub.recorded = append(pub.recorded, f)
		f.setRecorder(pub.rec, i)
		return
	}
	lf := pub.followers[f.id]
	if lf == nil {
		if pub.followers == nil {
			pub.followers = map[string]*layerFollower{}
		}
		lf = newLayerFollower(pub.rec, i, f)
		pub.followers[f.id] = lf
	}
	f.setRecorder(lf.layer(f), i)
}

// requestKeyframe asks the publisher for a keyframe of every video track
// the recorder records (of a simulcast track, the layer recorded).
func (pub *publication) requestKeyframe() {
	pub.mu.Lock()
	fwds := slices.Clone(pub.recorded)
	followers := make([]*layerFollower, 0, len(pub.followers))
	for _, lf := range pub.followers {
		followers = append(followers, lf)
	}
	pub.mu.Unlock()
	for _, f := range fwds {
		f.requestKeyframe()
	}
	for _, lf := range followers {
		lf.requestKeyframe()
	}
}

// tracks returns the stream's published tracks: one forwarder each (the
// first layer of a simulcast track stands for it).
func (pub *publication) tracks() []*forwarder {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	var out []*forwarder
	for _, f := range pub.forwarders {
		if f.primary {
			out = append(out, f)
		}
	}
	return out
}

// allForwarders returns every forwarder, every simulcast layer included.
func (pub *publication) allForwarders() []*forwarder {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	return slices.Clone(pub.forwarders)
}

// close ends the publish connection; subscribers stop receiving its tracks.
func (pub *publication) close() {
	pub.mu.Lock()
	if pub.closed {
		pub.mu.Unlock()
		return
	}
	pub.closed = true
	fwds := slices.Clone(pub.forwarders)
	rec := pub.rec
	pc := pub.pc
	pub.mu.Unlock()
	if rec != nil {
		// After the readers are gone (wg), so that no packet races the close.
		defer func() {
			if err := rec.Close(); err != nil {
				pub.log.Error("close recording", "err", err)
			}
		}()
	}
	for _, f := range fwds {
		f.close()
		pub.peer.router.trackRemoved(f)
	}
	defer func() {
		for _, f := range fwds {
			pub.peer.router.engine.retire(Stats{Received: f.received.Load()})
		}
	}()
	if pc != nil {
		if err := pc.Close(); err != nil {
			pub.log.Debug("close publish connection", "err", err)
		}
	}
	pub.wg.Wait()
	for _, f := range fwds {
		f.releaseHistory()
	}
	pub.log.Info("stream closed")
}
