// Streams: LocalStream (what this client publishes, one peer connection each) and RemoteStream
// (another participant's stream, received on the room's subscribe connection), and where they
// show on the page. Part of roomapi.js.
//
// A stream talks to its room only through the seams below: a LocalStream gets a StreamHost
// from the room and hands the room its LocalControl; a RemoteStream hands the room its
// RemoteControl. Neither reads the room's fields, nor the room theirs.

import {STREAM_STATUS} from './events.js';
import {RoomApiError, toError, Emitter, serial, failInfo, ICE_RESTART_MIN_INTERVAL_MS} from './util.js';
import {preferCodec, simulcastLayers, simulcastCodec, scalabilityModes, keepResolution} from './codecs.js';

// FIRST_FRAMES_MS is how long a camera published turned off sends (black) frames after its
// connection is up, so the server learns of its video before it goes quiet.
const FIRST_FRAMES_MS = 2000;

function attachMedia(el, ms) {
  if (el.srcObject !== ms) el.srcObject = ms;
  const p = el.play && el.play();
  if (p && p.catch) p.catch(() => {});
}

function isMediaElement(el) {
  return typeof HTMLMediaElement !== 'undefined' && el instanceof HTMLMediaElement;
}

// displayIn returns where a stream shows for a display the page gave: a <video> or <audio> itself,
// or a new <video> (autoplay, playsinline; muted for a local preview) appended to a container, as
// Flashphoner's SDK does with the <div> its pages pass. It takes the stream id as its id when no
// other element has it.
function displayIn(el, {muted = false, id} = {}) {
  if (isMediaElement(el)) return el;
  const v = document.createElement('video');
  v.autoplay = true;
  v.playsInline = true;
  v.setAttribute('playsinline', '');
  if (muted) { v.muted = true; v.setAttribute('muted', ''); }
  if (id && !document.getElementById(id)) v.id = id;
  v.style.width = '100%';
  v.style.height = '100%';
  el.appendChild(v);
  return v;
}

// releaseDisplay undoes displayIn: a <video> made in a container is removed; a media element the
// page gave stops showing ms.
function releaseDisplay(el, target, ms) {
  if (target !== el) { target.srcObject = null; target.remove(); return; }
  if (ms && el.srcObject === ms) el.srcObject = null;
}

/**
 * StreamHost is what a LocalStream needs of its room (room.js makes it):
 *   request(msg) → promise of the reply; notify(msg); connected() → whether the session is up;
 *   pcConfig() → an RTCConfiguration; ready() → the room's join promise; left() → whether the
 *   room is gone; applyMutes() re-applies a moderator's mutes to the local streams;
 *   syncPresence() tells the others the own microphone/camera state;
 *   bind(stream, control) takes the stream's LocalControl;
 *   published(id, stream) → the candidates that came for id before its answer;
 *   takePendingStatus(id) → the STREAM_STATUS events that came before it;
 *   ended(id, stream) and gone(stream, id) say the stream stopped.
 *
 * LocalControl is what the room may do with a LocalStream: start(), release(status, reason),
 * fail(err), serverStatus(status, reason), remoteCandidate(candidate), restartIce(force),
 * peerConnection().
 */

/** A stream this client publishes, on a peer connection of its own. */
export class LocalStream extends Emitter {
  constructor(host, options) {
    super();
    this._host = host;
    this._options = options;
    this._kind = options.kind === 'screen' ? 'screen' : 'camera';
    this._sid = null;
    this._pc = null;
    this._queue = serial();
    this._media = options.stream || null;
    this._ownsMedia = !options.stream;
    this._display = null; // where the local preview shows (options.display, or a <video> made in it)
    this._status = 'NEW';
    this._reason = '';
    this._info = {};
    this._stopped = false;
    this._stopPromise = null;
    this._candidates = []; // local candidates held until the stream id is known
    this._lastRestart = 0;
    this._unpublishSent = false;
    this._onEnded = () => { this.stop().catch(() => {}); };
    let resolve, reject;
    /** Resolves with the stream once the server answered the publish; rejects on failure. */
    this.ready = new Promise((res, rej) => { resolve = res; reject = rej; });
    this.ready.catch(() => {});
    this._ready = {resolve, reject};
    host.bind(this, {
      start: () => this._start(),
      release: (status, reason) => this._release(status, reason),
      fail: (err) => this._fail(err),
      serverStatus: (status, reason) => this._onServerStatus(status, reason),
      remoteCandidate: (c) => this._addRemoteCandidate(c),
      restartIce: (force) => this._restartIce(force),
      peerConnection: () => this._pc,
      layers: (layers) => this._setLayers(layers),
    });
  }

  // _setLayers applies PUBLISH_LAYERS: the camera's simulcast encodings nobody receives stop
  // (active false: the browser no longer encodes them) until the server wants them again.
  _setLayers(layers) {
    const sender = this._videoSender;
    if (!sender || !sender.getParameters || !sender.setParameters || !Array.isArray(layers)) return;
    const want = new Map(layers.filter((l) => l && typeof l.rid === 'string').map((l) => [l.rid, l.active !== false]));
    try {
      const params = sender.getParameters();
      let changed = false;
      for (const enc of params.encodings || []) {
        if (!enc.rid || !want.has(enc.rid) || enc.active === want.get(enc.rid)) continue;
        enc.active = want.get(enc.rid);
        changed = true;
      }
      if (changed) sender.setParameters(params).catch((err) => console.warn('roomapi: simulcast layers', err));
    } catch (err) {
      console.warn('roomapi: simulcast layers', err);
    }
  }

  /** The server's stream id (null until the publish was answered). */
  id() { return this._sid; }
  kind() { return this._kind; }
  /** NEW, PUBLISHING, UNPUBLISHED or FAILED. */
  status() { return this._status; }
  /** {code?, reason} with a FAILED status. */
  getInfo() { return {...this._info, status: this._status, reason: this._reason}; }
  getMediaStream() { return this._media; }
  getPeerConnection() { return this._pc; }

  muteAudio() { this._setEnabled('audio', false); }
  unmuteAudio() { this._setEnabled('audio', true); }
  /**
   * Turns the camera off: once the stream is PUBLISHING, its video sender sends nothing (no
   * black frames, no bytes) until unmuteVideo() puts the camera back, without a new offer.
   */
  muteVideo() { this._setEnabled('video', false); }
  unmuteVideo() { this._setEnabled('video', true); }
  isAudioMuted() { return this._isMuted('audio'); }
  isVideoMuted() { return this._isMuted('video'); }

  /**
   * Replaces the stream's audio or video track (track.kind) with track, e.g. another camera or
   * microphone, without a new offer: the server and the others keep the stream, its id and
   * codec, and see the new picture or sound. The new track takes the old one's muted state;
   * the old track is stopped if this stream captured it. Resolves when the sender uses track.
   */
  async replaceTrack(track) {
    const media = this._media;
    const pc = this._pc;
    if (!track || (track.kind !== 'audio' && track.kind !== 'video')) throw new RoomApiError('INVALID_TRACK', 'not an audio or video track');
    if (!media || !pc || this._stopped) throw new RoomApiError('NOT_PUBLISHING', 'the stream is not being published');
    const old = (track.kind === 'audio' ? media.getAudioTracks() : media.getVideoTracks())[0];
    if (!old) throw new RoomApiError('INVALID_TRACK', `the stream has no ${track.kind} track to replace`);
    if (old === track) return;
    // A camera turned off has no track on its sender (_sendVideo).
    const sender = pc.getSenders().find((s) => s.track === old) || (track.kind === 'video' ? this._videoSender : null);
    if (!sender) throw new RoomApiError('INVALID_TRACK', `no sender for the ${track.kind} track`);
    track.enabled = old.enabled;
    if (sender.track || track.enabled) await sender.replaceTrack(track);
    media.removeTrack(old);
    media.addTrack(track);
    old.removeEventListener('ended', this._onEnded);
    if (this._ownsMedia) old.stop();
  }

  /** Unpublishes: tells the server, closes the peer connection and releases captured devices. */
  stop() {
    if (this._stopPromise) return this._stopPromise;
    this._stopped = true;
    const req = this._sendUnpublish() || Promise.resolve();
    this._release(STREAM_STATUS.UNPUBLISHED, 'stopped');
    this._stopPromise = req.then(() => undefined, (err) => {
      if (['UNKNOWN_STREAM', 'NOT_JOINED', 'DISCONNECTED'].includes(err.code)) return;
      throw err;
    });
    return this._stopPromise;
  }

  // ---- internals

  _setEnabled(kind, on) {
    if (!this._media) return;
    for (const t of kind === 'audio' ? this._media.getAudioTracks() : this._media.getVideoTracks()) t.enabled = on;
    if (kind === 'video') this._sendVideo();
    this._host.syncPresence();
  }

  // _sendVideo takes the camera's track off its sender while the camera is off, so nothing is
  // sent (a disabled track would still send black frames), and puts it back when it is on;
  // replaceTrack, no new offer. It goes quiet only while the stream is PUBLISHING: the server has
  // had its first frames by then, and knows the stream has video.
  _sendVideo() {
    const sender = this._videoSender;
    const track = this._media && this._media.getVideoTracks()[0];
    if (!sender || !track || this._stopped) return;
    const want = track.enabled ? track : null;
    if (sender.track === want || (!want && this._status !== STREAM_STATUS.PUBLISHING)) return;
    sender.replaceTrack(want).catch((e) => console.warn('roomapi: camera sender', e));
  }

  _isMuted(kind) {
    const tracks = this._media ? (kind === 'audio' ? this._media.getAudioTracks() : this._media.getVideoTracks()) : [];
    return tracks.length > 0 && tracks.every((t) => !t.enabled);
  }

  async _capture() {
    const o = this._options;
    const md = navigator.mediaDevices;
    if (!md) throw new RoomApiError('MEDIA', 'media devices are not available (a secure origin is needed)');
    try {
      if (this._kind === 'screen') {
        if (!md.getDisplayMedia) throw new Error('screen sharing is not supported by this browser');
        return await md.getDisplayMedia(o.constraints || {video: true, audio: false});
      }
      // A camera as large as 1280x720 when it can: room for three simulcast layers.
      const c = o.constraints || {audio: true, video: true};
      return await md.getUserMedia(c.video === true ? {...c, video: {width: {ideal: 1280}, height: {ideal: 720}}} : c);
    } catch (e) {
      throw toError(e, 'MEDIA');
    }
  }

  async _start() {
    try {
      if (!this._media) this._media = await this._capture();
      if (this._stopped) { this._release(STREAM_STATUS.UNPUBLISHED, 'stopped'); return; }
      // Joined with the microphone or camera off: sent muted from the first packet.
      if (this._options.mute && this._options.mute.audio) this._setEnabled('audio', false);
      if (this._options.mute && this._options.mute.video) this._setEnabled('video', false);
      // The peer connection needs the ICE servers of the join's reply.
      await this._host.ready();
      if (this._stopped) { this._release(STREAM_STATUS.UNPUBLISHED, 'stopped'); return; }
      // A source a moderator muted stays off in a new stream too.
      this._host.applyMutes();
      if (this._options.display) {
        const d = this._options.display;
        this._display = displayIn(d, {muted: true});
        this._display.muted = true;
        attachMedia(this._display, this._media);
      }
      const pc = new RTCPeerConnection(this._host.pcConfig());
      this._pc = pc;
      pc.onicecandidate = (e) => {
        const c = e.candidate ? e.candidate.toJSON() : null;
        if (this._sid) this._sendCandidate(c); else this._candidates.push(c);
      };
      pc.oniceconnectionstatechange = () => {
        if (pc.iceConnectionState === 'failed' && this._pc === pc) this._restartIce(false);
      };
      for (const track of this._media.getTracks()) {
        const init = {direction: 'sendonly', streams: [this._media]};
        let modes = [];
        if (track.kind === 'video') {
          if (this._kind === 'screen') {
            // Text must stay sharp: one high-resolution layer, frame rate yields first.
            if ('contentHint' in track) track.contentHint = 'detail';
          } else if (this._options.simulcast !== false && simulcastCodec(this._options.codec)) {
            const layers = simulcastLayers(track);
            if (layers.length > 1) init.sendEncodings = layers;
          } else {
            modes = scalabilityModes(this._options.codec, track);
            if (modes.length) init.sendEncodings = [{scalabilityMode: modes.shift()}];
          }
        }
        let tr;
        for (;;) {
          try {
            tr = pc.addTransceiver(track, init);
            break;
          } catch (err) {
            if (!init.sendEncodings) throw err;
            // A browser without that scalability mode (or simulcast): the next mode, at last one
            // plain layer.
            console.warn('roomapi: the browser refused', JSON.stringify(init.sendEncodings), err);
            if (modes.length) init.sendEncodings = [{scalabilityMode: modes.shift()}];
            else delete init.sendEncodings;
          }
        }
        if (track.kind === 'video' && this._options.codec) preferCodec(tr, this._options.codec);
        if (this._kind === 'screen' && track.kind === 'video') {
          track.addEventListener('ended', this._onEnded);
          this._screenSender = tr.sender;
        }
        if (this._kind === 'camera' && track.kind === 'video') this._videoSender = tr.sender;
      }
      const msg = {type: 'publish', kind: this._kind};
      if (this._options.record) msg.record = true;
      await this._queue(async () => {
        const offer = await pc.createOffer();
        await pc.setLocalDescription(offer);
        const ans = await this._host.request({...msg, sdp: offer.sdp});
        if (!ans.stream) throw new RoomApiError('INTERNAL', 'answer without a stream id');
        this._sid = ans.stream;
        if (this._stopped) return;
        const early = this._host.published(ans.stream, this);
        for (const c of this._candidates.splice(0)) this._sendCandidate(c);
        for (const c of early) this._addRemoteCandidate(c);
        if (this._stopped || pc.signalingState === 'closed') return;
        await pc.setRemoteDescription({type: 'answer', sdp: ans.sdp});
        if (this._screenSender) keepResolution(this._screenSender);
      });
      if (this._stopped) {
        // stop() came while the publish was in flight: unpublish what the server set up.
        const p = this._sendUnpublish();
        if (p) p.catch(() => {});
        this._host.ended(this._sid, this);
        return;
      }
      this._ready.resolve(this);
      this._host.syncPresence();
      for (const ev of this._host.takePendingStatus(this._sid)) this._onServerStatus(ev.status, ev.reason);
    } catch (err) {
      this._fail(toError(err));
    }
  }

  // _sendUnpublish sends unpublish once, when the server knows the stream; returns its promise or null.
  _sendUnpublish() {
    if (this._unpublishSent || !this._sid || !this._host.connected() || this._host.left()) return null;
    this._unpublishSent = true;
    return this._host.request({type: 'unpublish', stream: this._sid});
  }

  _sendCandidate(c) {
    this._host.notify({type: 'candidate', target: 'publish', stream: this._sid, candidate: c});
  }

  _addRemoteCandidate(c) {
    const pc = this._pc;
    if (!pc) return;
    this._queue(() => (pc.signalingState === 'closed' ? undefined : pc.addIceCandidate(c)))
      .catch((err) => console.warn('roomapi: publish candidate', err));
  }

  _restartIce(force) {
    const pc = this._pc;
    if (!pc || !this._sid || this._stopped || !this._host.connected()) return;
    const now = Date.now();
    if (!force && now - this._lastRestart < ICE_RESTART_MIN_INTERVAL_MS) return;
    this._lastRestart = now;
    this._queue(async () => {
      const offer = await pc.createOffer({iceRestart: true});
      await pc.setLocalDescription(offer);
      const ans = await this._host.request({type: 'offer', stream: this._sid, sdp: offer.sdp});
      if (pc.signalingState === 'closed') return;
      await pc.setRemoteDescription({type: 'answer', sdp: ans.sdp});
    }).catch(async (err) => {
      console.warn('roomapi: ICE restart failed', err);
      // Back to stable so that a later restart can offer again.
      if (pc.signalingState === 'have-local-offer') { try { await pc.setLocalDescription({type: 'rollback'}); } catch { /* ignore */ } }
      if (err.code && err.code !== 'DISCONNECTED') this._fail(toError(err));
    });
  }

  _onServerStatus(status, reason) {
    if (this._stopped && status !== STREAM_STATUS.UNPUBLISHED) return;
    if (status === STREAM_STATUS.UNPUBLISHED) { this._release(STREAM_STATUS.UNPUBLISHED, reason); return; }
    // FAILED from the server (e.g. "ICE failed") is reported but not final: an ICE restart may
    // bring the stream back to PUBLISHING.
    this._setStatus(status, reason, {});
  }

  _setStatus(status, reason, info) {
    if (status === this._status && (reason || '') === this._reason) return;
    this._status = status;
    this._reason = reason || '';
    this._info = info || {};
    // A camera that joined turned off stops sending once its first frames are through.
    if (status === STREAM_STATUS.PUBLISHING) setTimeout(() => this._sendVideo(), FIRST_FRAMES_MS);
    this._emit(status, this, status === STREAM_STATUS.FAILED ? failInfo(this._reason, this._info.code) : {reason: this._reason});
  }

  _fail(err) {
    if (this._status === STREAM_STATUS.FAILED || this._status === STREAM_STATUS.UNPUBLISHED) return;
    this._cleanup();
    const p = this._sendUnpublish();
    if (p) p.catch(() => {});
    this._ready.reject(err);
    this._setStatus(STREAM_STATUS.FAILED, err.reason || err.message, {code: err.code});
  }

  // _release closes everything locally and reports status (UNPUBLISHED) once.
  _release(status, reason) {
    this._stopped = true;
    this._cleanup();
    this._ready.reject(new RoomApiError('UNPUBLISHED', reason || 'stopped'));
    if (this._status !== STREAM_STATUS.UNPUBLISHED) this._setStatus(status, reason, {});
  }

  _cleanup() {
    this._host.gone(this, this._sid);
    if (this._pc) { try { this._pc.close(); } catch { /* ignore */ } }
    // A preview <video> made in the page's container goes; a <video> the page gave keeps its picture.
    if (this._display && this._display !== this._options.display) this._display.remove();
    this._display = null;
    if (this._media) {
      for (const t of this._media.getVideoTracks()) t.removeEventListener('ended', this._onEnded);
      if (this._ownsMedia) for (const t of this._media.getTracks()) t.stop();
    }
  }
}

/**
 * A stream published by another participant, received on the subscribe connection.
 *
 * The room creates it with the MediaStream already received for it (or null) and the room's
 * TileWatcher; bind(control) gives the room its RemoteControl: update(info), status(status,
 * reason, video), setMedia(mediaStream), detachAll(), setQuality(kind, {lossPct, jitterMs, rttMs}).
 */
export class RemoteStream extends Emitter {
  constructor(participant, info, {media = null, tiles, bind = () => {}}) {
    super();
    this._tiles = tiles;
    this._participant = participant;
    this._id = info.id;
    this._info = info;
    this._status = info.status || STREAM_STATUS.PUBLISHING;
    this._reason = '';
    this._displays = new Map(); // element given to play -> the <video>/<audio> that shows the stream
    this._mediaStream = media;
    this._quality = {};
    bind({
      update: (i) => this._update(i),
      status: (status, reason, video) => this._onStatus(status, reason, video),
      setMedia: (ms) => this._setMedia(ms),
      detachAll: () => this._detachAll(),
      setQuality: (kind, q) => { this._quality[kind] = q; },
    });
  }
  id() { return this._id; }
  /**
   * How this client receives the stream, per kind, from its last receiver reports:
   * {audio: {lossPct, jitterMs, rttMs}, video: {...}} (a kind is absent until reported on).
   */
  quality() {
    const out = {};
    for (const [k, v] of Object.entries(this._quality)) out[k] = {...v};
    return out;
  }
  /** 'camera' or 'screen'. */
  kind() { return this._info.kind || 'camera'; }
  /** Its tracks as announced: [{kind: 'audio'|'video', codec}]. */
  tracks() { return (this._info.tracks || []).map((t) => ({...t})); }
  hasVideo() { return !this._info.tracks || this._info.tracks.some((t) => t.kind === 'video'); }
  /** PUBLISHING (announced), PLAYING, STOPPED, UNPUBLISHED or FAILED. */
  status() { return this._status; }
  /** The server's reason with the last status (why the stream or its video cannot play here), or ''. */
  reason() { return this._reason; }
  getInfo() { return {status: this._status, reason: this._reason}; }
  participant() { return this._participant; }
  /** The received MediaStream, or null until its tracks arrived. */
  getMediaStream() { return this._mediaStream; }
  /**
   * True while the server paused this stream's video for this client: its link cannot carry even
   * the lowest layer (reason() says so); audio goes on, and the video resumes by itself.
   */
  videoPaused() { return this._video === 'paused'; }
  /**
   * Shows the stream in element, now or as soon as its tracks arrive: a <video> or <audio> is used
   * as it is; another element (Flashphoner's display <div>) gets a <video> of its own inside,
   * removed when the stream stops. The room reports a <video>'s size and visibility to the server
   * (docs/protocol.md "tiles"), so the stream gets the layer its size needs, and none while it
   * cannot be seen.
   */
  play(element) {
    if (!element) return this;
    let target = this._displays.get(element);
    if (!target) {
      target = displayIn(element, {id: this._id});
      this._displays.set(element, target);
    }
    if (this._mediaStream) attachMedia(target, this._mediaStream);
    if (target.tagName === 'VIDEO') this._tiles.watch(this._id, target);
    return this;
  }
  /** Stops showing it in element (or in every element). */
  stop(element) {
    for (const el of element ? [element] : [...this._displays.keys()]) {
      const target = this._displays.get(el);
      if (!target) continue;
      this._displays.delete(el);
      this._tiles.unwatch(this._id, target);
      releaseDisplay(el, target, this._mediaStream);
    }
  }
  _update(info) { this._info = {...this._info, ...info}; }
  _setMedia(ms) {
    this._mediaStream = ms;
    for (const target of this._displays.values()) attachMedia(target, ms);
  }
  // The room is gone: the <video>s this stream made go too; given media elements keep their picture.
  _detachAll() {
    for (const [el, target] of this._displays) {
      this._tiles.unwatch(this._id, target);
      if (target !== el) target.remove();
    }
    this._displays.clear();
  }
  _onStatus(status, reason, video) {
    const v = video || this._video;
    if (status === this._status && (reason || '') === this._reason && v === this._video) return;
    this._status = status;
    this._reason = reason || '';
    this._video = v;
    if (status === STREAM_STATUS.STOPPED || status === STREAM_STATUS.UNPUBLISHED) this._detachAll();
    this._emit(status, this, {reason: this._reason, videoPaused: this.videoPaused()});
  }
}
