package signaling

import (
	"bytes"
	"encoding/json"
	"io"

	"github.com/parley/parley/pkg/protocol"
)

// AnswerBytesPerSection is what a subscribe answer may take for each media
// section of the offer it answers, on top of an ordinary request's size: a
// Chromium answer takes about 0.5 KB for one (it repeats its ICE credentials
// and DTLS fingerprint in each; Firefox adds its SSRC and msid lines), so
// this leaves room to spare.
const AnswerBytesPerSection = 2 << 10

// AnswerBudget is the largest subscribe answer a participant of a room with
// these limits can need: two media sections (audio and video) per stream the
// others may publish, at AnswerBytesPerSection each, on top of base (the
// size of an ordinary request). With no limit on participants or streams
// there is no such bound, and it returns hard (the largest frame read at all).
func AnswerBudget(maxParticipants, maxStreams, base, hard int) int {
	if maxParticipants <= 0 || maxStreams <= 0 {
		return max(base, hard)
	}
	return base + max(maxParticipants-1, 1)*maxStreams*2*AnswerBytesPerSection
}

// readFrame reads a text frame's content, at most cfg.MaxFrameBytes, or,
// for the client's answer to a subscribe offer the server is waiting for, as
// much as that offer calls for: cfg.MaxFrameBytes plus AnswerBytesPerSection
// per media section, at most cfg.MaxAnswerBytes (a larger frame is read that
// far only while an offer is out, and refused unless it is that answer). It
// returns the limit that applies; a frame over it is returned cut one byte
// over the limit, with the rest left in r.
func (s *Session) readFrame(r io.Reader) (data []byte, limit int, err error) {
	cfg := s.hub.cfg
	limit = cfg.MaxFrameBytes
	data, err = io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil || len(data) <= limit {
		return data, limit, err
	}
	sections, waiting := s.awaitingAnswer()
	answerLimit := min(cfg.MaxAnswerBytes, cfg.MaxFrameBytes+sections*AnswerBytesPerSection)
	if !waiting || answerLimit <= limit {
		return data, limit, nil
	}
	more, err := io.ReadAll(io.LimitReader(r, int64(answerLimit-len(data))+1))
	if err != nil {
		return nil, limit, err
	}
	data = append(data, more...)
	if len(data) > answerLimit {
		return data, answerLimit, nil
	}
	// The larger limit is for the answer only (malformed JSON is reported as such).
	var env protocol.Envelope
	if json.Unmarshal(data, &env) == nil && env.Type != protocol.TypeAnswer {
		return data[:limit+1], limit, nil
	}
	return data, answerLimit, nil
}

// awaitingAnswer reports whether the session's participant has a subscribe
// offer out that its client has not answered, and its media sections.
func (s *Session) awaitingAnswer() (sections int, waiting bool) {
	if s.member == nil {
		return 0, false
	}
	if _, peer := s.member.joined(); peer != nil {
		return peer.AwaitingAnswer()
	}
	return 0, false
}

// refused is called when a request of type typ was refused with reason: a
// refused answer to the subscribe offer makes the server offer again, so the
// subscribe connection never waits for an answer that will not come.
func (s *Session) refused(typ, reason string) {
	if typ != protocol.TypeAnswer || s.member == nil {
		return
	}
	if _, peer := s.member.joined(); peer != nil {
		peer.AnswerRefused(reason)
	}
}

// frameHead is what a frame's first bytes tell: its type and request id,
// when the object starts with them (both clients of the protocol send them
// first, so that a frame refused unread is answered with its id).
type frameHead struct {
	Type string
	ID   *int64
}

// peekHead reads the leading "type" and "id" of a JSON object from the
// beginning of a frame, which may be cut anywhere. It stops at the first
// other key whose value does not fit in prefix.
func peekHead(prefix []byte) (h frameHead) {
	dec := json.NewDecoder(bytes.NewReader(prefix))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return h
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return h
		}
		key, _ := t.(string)
		switch {
		case key == "type" && h.Type == "":
			if dec.Decode(&h.Type) != nil {
				return h
			}
		case key == "id" && h.ID == nil:
			var id int64
			if dec.Decode(&id) != nil {
				return h
			}
			h.ID = &id
		default:
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return h
			}
		}
		if h.Type != "" && h.ID != nil {
			return h
		}
	}
	return h
}
