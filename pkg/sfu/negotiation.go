package sfu

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/parley/parley/pkg/protocol"
	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Sizes of the subscribe connection's descriptions in big rooms.
//
// Every stream a subscriber receives adds a media section per track to the
// SFU's offer and to the client's answer, and a browser repeats its ICE
// credentials and DTLS fingerprint in each. Two things keep a room at its
// participant limit negotiable:
//
//   - each media section offers only the codecs of the track it carries
//     (narrowCodecs), not every codec the SFU forwards: a video section of a
//     Chromium answer shrinks from about 1.3 KB to about 0.5 KB;
//   - the signaling layer accepts an answer as large as the offer it answers
//     calls for (a budget per media section, signaling.AnswerBytesPerSection),
//     not just the size of an ordinary request.
//
// A refused answer (too large, rate limited, not fitting the offer) does not
// leave the connection waiting: the client gets the error and the offer again
// (answerRefused). pion cannot roll back or replace an offer it set (have-local-offer
// accepts only an answer), so "the next offer" is the outstanding one, sent
// again; changes made meanwhile follow once it is answered.

// maxAnswerRefusals is how many refused answers in a row make the subscriber
// give up on its outstanding offer: its new streams are reported FAILED with
// the reason, instead of the offer going out again.
const maxAnswerRefusals = 3

// narrowCodecs makes the subscribe offer list, for the transceiver of sender,
// only the codecs of the forwarded track's MIME type (all the SFU's variants
// of it, e.g. every H.264 profile, so that the client picks the one it
// decodes), instead of every codec the SFU forwards.
func narrowCodecs(pc *webrtc.PeerConnection, sender *webrtc.RTPSender, mime string) error {
	var t *webrtc.RTPTransceiver
	for _, tr := range pc.GetTransceivers() {
		if tr.Sender() == sender {
			t = tr
			break
		}
	}
	if t == nil {
		return fmt.Errorf("no transceiver for the track's sender")
	}
	var want []webrtc.RTPCodecParameters
	for _, c := range codecs {
		if strings.EqualFold(c.MimeType, mime) {
			want = append(want, c)
		}
	}
	if len(want) == 0 {
		return fmt.Errorf("codec %s is not forwarded", mime)
	}
	return t.SetCodecPreferences(want)
}

// AwaitingAnswer reports whether the peer's subscribe offer is out and not
// answered yet, and how many media sections it has (its answer has as many).
func (p *Peer) AwaitingAnswer() (sections int, waiting bool) {
	s := p.sub
	if s == nil {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.negotiating || s.closed || s.pc == nil {
		return 0, false
	}
	d := s.pc.PendingLocalDescription()
	if d == nil {
		return 0, false
	}
	return strings.Count(d.SDP, "\nm="), true
}

// AnswerRefused tells the peer that the client's answer to its subscribe
// offer was refused before it could be applied (too large, rate limited),
// with the error the client got. The subscriber sends its offer again.
func (p *Peer) AnswerRefused(reason string) {
	if p.sub != nil {
		p.sub.answerRefused(reason)
	}
}

// answerRefused is called when the client's answer to the outstanding offer
// was refused, by the signaling layer or because it did not fit the offer:
// the offer goes out again, so that a passing refusal (a rate limit, a
// client's retry) costs one round trip; after maxAnswerRefusals in a row the
// streams waiting for the offer are reported FAILED with the reason.
func (s *subscriber) answerRefused(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pc == nil || s.closed || !s.negotiating {
		return
	}
	s.refusals++
	if s.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		// pion took the answer in before refusing it (some of its checks
		// come after the state change; checkAnswer keeps the ones it can
		// out). The offer is spent and the connection's transports never
		// started: say so, rather than offer on a connection that cannot carry media.
		s.negotiating, s.pending = false, false
		s.log.Warn("subscribe answer refused after pion applied it; the subscribe connection is unusable", "reason", reason)
		for id, st := range s.streams {
			if st.tracks > 0 && st.status != protocol.StreamFailed {
				st.status = protocol.StreamFailed
				st.reason = "the subscribe connection failed on a refused answer (" + reason + "); join the room again"
				s.peer.signal().StreamStatus(st.publisher, id, st.status, st.reason)
			}
		}
		return
	}
	if s.refusals >= maxAnswerRefusals {
		s.log.Warn("subscribe answer refused; giving up on the offer", "refusals", s.refusals, "reason", reason)
		for id, st := range s.streams {
			if st.tracks == 0 || st.negotiated || st.status == protocol.StreamFailed {
				continue
			}
			st.status = protocol.StreamFailed
			st.reason = fmt.Sprintf("the subscribe connection could not be negotiated: the answer was refused %d times (%s)", s.refusals, reason)
			s.peer.signal().StreamStatus(st.publisher, id, st.status, st.reason)
		}
		return
	}
	s.log.Info("subscribe answer refused; offering again", "refusals", s.refusals, "reason", reason)
	if ld := s.pc.LocalDescription(); ld != nil {
		s.sigMu.Lock()
		s.peer.signal().SubscribeOffer(ld.SDP, s.streamMapLocked())
		s.sigMu.Unlock()
	}
}

// checkStreamTracks refuses a publish offer (or re-offer) with more than
// one audio or more than one video media section: a stream is a camera or a
// screen, at most one track of each kind (simulcast layers share one
// section). Without this bound one stream could carry hundreds of tracks, and
// every subscriber's connection a media section for each: the size the
// subscribe answer is allowed (signaling.AnswerBudget) counts two per stream.
// A description that does not parse is left to the caller's own check.
func checkStreamTracks(offer string) error {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return nil
	}
	n := map[string]int{}
	for _, m := range sd.MediaDescriptions {
		if kind := m.MediaName.Media; kind == "audio" || kind == "video" {
			n[kind]++
		}
	}
	if n["audio"] > 1 || n["video"] > 1 {
		return &protocol.Error{Code: protocol.CodeInvalidSDP, Reason: fmt.Sprintf(
			"the offer has %d audio and %d video sections; a stream has at most one of each: publish more as streams of their own",
			n["audio"], n["video"])}
	}
	return nil
}

// checkAnswer refuses an answer that pion would take in and then refuse
// (Peer.Answer calls it first). pion makes some of its checks only after it
// has changed its signaling state, and a connection whose answer failed them
// there can never start its transports; refused here, the offer stays out.
// These are those checks (pion v4's SetRemoteDescription for an answer:
// codecs, header extensions, ICE credentials and candidates, the DTLS
// fingerprint, and a codec for each track to send with), and that the answer
// answers the offer's media sections in order.
func (s *subscriber) checkAnswer(answer string) error {
	s.mu.Lock()
	var offer string
	if s.pc != nil && s.negotiating {
		if d := s.pc.PendingLocalDescription(); d != nil {
			offer = d.SDP
		}
	}
	s.mu.Unlock()
	if offer == "" {
		return nil // handleAnswer says no offer is waiting
	}
	bad := func(format string, a ...any) error {
		return &protocol.Error{Code: protocol.CodeInvalidSDP, Reason: "the answer does not fit the offer: " + fmt.Sprintf(format, a...)}
	}
	var off, ans sdp.SessionDescription
	if err := off.UnmarshalString(offer); err != nil {
		return fmt.Errorf("parse own subscribe offer: %w", err)
	}
	if err := ans.UnmarshalString(answer); err != nil {
		return bad("not SDP: %v", err)
	}
	if len(ans.MediaDescriptions) != len(off.MediaDescriptions) {
		return bad("it has %d media sections, the offer %d", len(ans.MediaDescriptions), len(off.MediaDescriptions))
	}
	for i, m := range ans.MediaDescriptions {
		o := off.MediaDescriptions[i]
		want, _ := o.Attribute("mid")
		if mid, _ := m.Attribute("mid"); mid != want || m.MediaName.Media != o.MediaName.Media {
			return bad("media section %d is %s mid %q, the offer's %s mid %q", i, m.MediaName.Media, mid, o.MediaName.Media, want)
		}
		answered := sectionCodecs(m)
		for _, f := range m.MediaName.Formats {
			pt, err := strconv.ParseUint(f, 10, 8)
			if err != nil {
				return bad("media section %d: payload type %q", i, f)
			}
			if _, ok := answered[uint8(pt)]; !ok && pt != 0 {
				return bad("media section %d: payload type %d has no rtpmap", i, pt)
			}
		}
		for _, a := range m.Attributes {
			if a.Key == "extmap" {
				var e sdp.ExtMap
				if err := e.Unmarshal("extmap:" + a.Value); err != nil {
					return bad("media section %d: %v", i, err)
				}
			}
		}
		// A section that carries a track needs one of its codecs: pion
		// starts the track's sender once it has taken the answer in.
		_, sendonly := o.Attribute("sendonly")
		_, sendrecv := o.Attribute("sendrecv")
		if !sendonly && !sendrecv {
			continue
		}
		offered := sectionCodecs(o)
		if !slices.ContainsFunc(m.MediaName.Formats, func(f string) bool {
			pt, _ := strconv.ParseUint(f, 10, 8)
			oc, ok1 := offered[uint8(pt)]
			ac, ok2 := answered[uint8(pt)]
			return ok1 && ok2 && strings.EqualFold(oc.Name, ac.Name) && oc.ClockRate == ac.ClockRate
		}) {
			return bad("media section %d (mid %q) takes none of the offered codecs", i, want)
		}
	}
	// ICE: the session's credentials, or the first bundled section's, whose
	// candidates must not all be malformed.
	ufrag, _ := ans.Attribute("ice-ufrag")
	pwd, _ := ans.Attribute("ice-pwd")
	if m := candidateSection(&ans); m != nil {
		if ufrag == "" {
			ufrag, _ = m.Attribute("ice-ufrag")
			pwd, _ = m.Attribute("ice-pwd")
		}
		valid, invalid := 0, 0
		for _, a := range m.Attributes {
			if !a.IsICECandidate() {
				continue
			}
			if _, err := ice.UnmarshalCandidate(a.Value); err == nil {
				valid++
			} else if !errors.Is(err, ice.ErrUnknownCandidateTyp) && !errors.Is(err, ice.ErrDetermineNetworkType) {
				invalid++
			}
		}
		if valid == 0 && invalid > 0 {
			return bad("no ICE candidate of the answer parses")
		}
	}
	if ufrag == "" || pwd == "" {
		return bad("no ICE credentials (ice-ufrag, ice-pwd)")
	}
	fingerprint, _ := ans.Attribute("fingerprint")
	if fingerprint == "" {
		if m := candidateSection(&ans); m != nil {
			fingerprint, _ = m.Attribute("fingerprint")
		}
		for _, m := range ans.MediaDescriptions {
			if v, ok := m.Attribute("fingerprint"); ok && fingerprint == "" {
				fingerprint = v
			}
		}
	}
	if len(strings.Split(fingerprint, " ")) != 2 {
		return bad("no DTLS fingerprint")
	}
	return nil
}

// sectionCodecs maps one media section's payload types to their codecs.
func sectionCodecs(m *sdp.MediaDescription) map[uint8]sdp.Codec {
	return (&sdp.SessionDescription{MediaDescriptions: []*sdp.MediaDescription{m}}).GetCodecMap()
}

// candidateSection is the media section whose ICE details count: the first
// of the BUNDLE group, or the first section when nothing is bundled.
func candidateSection(d *sdp.SessionDescription) *sdp.MediaDescription {
	group, _ := d.Attribute(sdp.AttrKeyGroup)
	ids := strings.Split(group, " ")
	if !strings.Contains(group, "BUNDLE") || len(ids) < 2 {
		if len(d.MediaDescriptions) == 0 {
			return nil
		}
		return d.MediaDescriptions[0]
	}
	for _, m := range d.MediaDescriptions {
		if mid, _ := m.Attribute("mid"); mid == ids[1] {
			return m
		}
	}
	return nil
}
