package sfu

import (
	"sync"

	"github.com/pion/webrtc/v4"
)

// Moderation's part of the media plane: a muted track's packets are dropped
// as they are read, before the retransmission history, the recorder and the
// subscribers see them, so nothing of it leaves the SFU; and the recording of
// a room session's streams starts or stops while they are published.

// muteState is which of a peer's tracks a moderator muted, by the kind of
// stream (camera, screen) and the kind of track (audio, video).
type muteState struct {
	mu    sync.Mutex
	muted map[[2]string]bool
}

func (m *muteState) get(streamKind, trackKind string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.muted[[2]string{streamKind, trackKind}]
}

// SetMuted stops (or resumes) forwarding the peer's tracks of trackKind
// ("audio" or "video"; empty: both) in its streams of streamKind (camera or
// screen), those published now and later. Resumed video starts at a keyframe.
func (p *Peer) SetMuted(streamKind, trackKind string, muted bool) {
	p.mutes.mu.Lock()
	if p.mutes.muted == nil {
		p.mutes.muted = map[[2]string]bool{}
	}
	for _, tk := range []string{"audio", "video"} {
		if trackKind == "" || trackKind == tk {
			p.mutes.muted[[2]string{streamKind, tk}] = muted
		}
	}
	p.mutes.mu.Unlock()
	for _, pub := range p.publications() {
		if pub.kind != streamKind {
			continue
		}
		for _, f := range pub.allForwarders() { // every simulcast layer
			if trackKind != "" && f.kind.String() != trackKind {
				continue
			}
			if f.muted.Swap(muted) && !muted && f.kind == webrtc.RTPCodecTypeVideo {
				f.requestKeyframe()
			}
		}
	}
	p.log.Info("forwarding", "stream_kind", streamKind, "track_kind", trackKind, "muted", muted)
}

// CanRecord reports whether the router has a recorder (the server records).
func (r *Router) CanRecord() bool { return r.recorderFunc() != nil }

// SetRecording starts (or stops) recording every stream published in the
// room session now; streams published later follow their publish request.
func (r *Router) SetRecording(on bool) {
	fn := r.recorderFunc()
	for _, p := range r.peerList() {
		for _, pub := range p.publications() {
			if on {
				pub.startRecording(fn)
			} else {
				pub.stopRecording()
			}
		}
	}
}

// startRecording records a stream that is not recorded yet.
func (pub *publication) startRecording(fn RecorderFunc) {
	pub.mu.Lock()
	busy := pub.rec != nil || pub.closed || fn == nil || pub.pc == nil
	pc := pub.pc
	pub.mu.Unlock()
	if busy {
		return
	}
	local := pc.LocalDescription()
	if local == nil {
		return
	}
	tracks := answerTracks(local.SDP)
	rec, err := fn(RecordStream{Participant: pub.peer.name, StreamID: pub.id, Kind: pub.kind, Tracks: recordTracks(tracks),
		RequestKeyframe: pub.requestKeyframe})
	if err != nil {
		pub.log.Error("cannot record stream", "err", err)
		return
	}
	pub.mu.Lock()
	if pub.closed || pub.rec != nil {
		pub.mu.Unlock()
		_ = rec.Close()
		return
	}
	pub.mu.Unlock()
	pub.setRecorder(rec, tracks)
	pub.requestKeyframe()
}

// stopRecording ends a stream's recording; the stream goes on.
func (pub *publication) stopRecording() {
	pub.mu.Lock()
	rec := pub.rec
	if pub.closed || rec == nil {
		pub.mu.Unlock()
		return
	}
	pub.rec, pub.recKinds = nil, nil
	fwds := append([]*forwarder(nil), pub.forwarders...)
	pub.mu.Unlock()
	for _, f := range fwds {
		f.rec.Store(nil)
	}
	// A packet read just before the recorder was taken away may still be
	// written after this; the recorder drops what comes after its Close.
	if err := rec.Close(); err != nil {
		pub.log.Error("close recording", "err", err)
	}
}
