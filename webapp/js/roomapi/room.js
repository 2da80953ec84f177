// Rooms: Room (a joined room: its participants, streams, chat, moderation and presence) and
// Participant (another participant). Part of roomapi.js.
//
// The room talks to its connection only through a RoomLink (connection.js makes it) and hands
// the connection its RoomControl; to its streams through a StreamHost and their controls
// (streams.js). No class here reads another's fields.

import {STREAM_STATUS, ROOM_EVENT} from './events.js';
import {RoomApiError, toError, Emitter, serial, failInfo, textBytes, ICE_RESTART_MIN_INTERVAL_MS} from './util.js';
import {storeResumeToken, forgetResumeToken} from './resume.js';
import {decodableCodecs} from './codecs.js';
import {LocalStream, RemoteStream} from './streams.js';
import {TileWatcher} from './tiles.js';
import {ClipStore} from '../clipapi.js';

/**
 * RoomLink is what a Room needs of its connection (connection.js makes it): username(),
 * request(msg) → promise of the reply, notify(msg), connected(), pcConfig(), iceServers(),
 * limits(), resumeToken(), reportError(err) (CONNECTION_EVENT.ERROR), peerConnections(), and
 * released(room): the room is done with the connection (left, failed, removed).
 *
 * RoomControl is what the connection may do with its Room (bind(control) in the constructor):
 * join(), teardown(reason), failed(reason, code) (emits FAILED), onEvent(m), onOffer(m),
 * onCandidate(m), resumed() (the session resumed: restart ICE), setClipAccess(access),
 * peerConnections(), left().
 */

/** A room joined through connection.join. */
export class Room extends Emitter {
  constructor(link, options, bind) {
    super();
    this._link = link;
    this._name = String(options.name || '');
    this._record = !!options.record;
    this._password = options.password ? String(options.password) : '';
    this._subscribe = options.subscribe !== false;
    this._self = link.username();
    this._roomSession = null;
    this._recording = false;
    this._grants = [];
    this._locked = false;
    this._muted = new Set(); // this client's sources a moderator muted
    this._recordingInfo = null; // the last RECORDING event: {status, reason, url, expires}
    this._webinar = false; // a webinar room (STATE webinar)
    this._role = ''; // 'viewer' or 'presenter' in a webinar room
    this._viewers = 0; // viewers in a webinar room (STATE, VIEWERS)
    this._hand = false; // this client's raised hand
    this._sentPresence = null; // the presence the server has from this client (null: not known)
    this._activeSpeakers = {dominant: null, speakers: []}; // the last ACTIVE_SPEAKERS
    this._participants = new Map(); // name -> Participant
    this._remote = new Map(); // stream id -> RemoteStream
    this._media = new Map(); // stream id (msid) -> MediaStream from ontrack
    this._owners = new Map(); // stream id -> publisher name, from the server's offers
    this._local = new Set(); // LocalStream
    this._localById = new Map(); // stream id -> LocalStream
    this._pendingStatus = new Map(); // stream id -> STREAM_STATUS events that came before the stream was known
    this._tiles = new TileWatcher({
      canSend: () => this.isJoined() && link.connected(),
      send: (tiles) => link.request({type: 'tiles', tiles}),
    });
    this._localCtl = new WeakMap(); // LocalStream -> its LocalControl
    this._remoteCtl = new WeakMap(); // RemoteStream -> its RemoteControl
    this._peopleCtl = new WeakMap(); // Participant -> its ParticipantControl
    this._host = this._streamHost();
    this._orphanCandidates = new Map(); // stream id -> candidates for a publish connection not known yet
    this._endedIds = new Set(); // ids of this client's streams that were stopped
    this._sub = null; // {pc, queue, lastRestart}
    this._joined = false;
    this._left = false;
    this._clipStore = new ClipStore(this, (ev, arg) => this._emit(ev, arg));
    let resolve, reject;
    /** Resolves with the room once the server confirmed the join; rejects with its error. */
    this.ready = new Promise((res, rej) => { resolve = res; reject = rej; });
    this.ready.catch(() => {});
    this._ready = {resolve, reject};
    bind({
      join: () => this._join(),
      teardown: (reason) => this._teardown(reason),
      failed: (reason, code) => this._emit(ROOM_EVENT.FAILED, this, failInfo(reason, code)),
      onEvent: (m) => this._onEvent(m),
      onOffer: (m) => this._onOffer(m),
      onCandidate: (m) => this._onCandidate(m),
      resumed: () => this._restartIce(),
      setClipAccess: (a) => this._clipStore.setAccess(a),
      peerConnections: () => this._peerConnections(),
      left: () => this._left,
    });
  }

  /** The room's name. */
  name() { return this._name; }
  /** This client's participant name in the room. */
  selfName() { return this._self; }
  /** The server's id for this run of the room (STATE roomSession). */
  roomSession() { return this._roomSession; }
  /** Whether this room session is being recorded (STATE recording). */
  isRecording() { return this._recording; }
  /** What this client may do in the room (STATE grants): 'publish' or 'publish:camera', 'subscribe', 'chat', … */
  grants() { return this._grants.slice(); }
  /** Whether a moderator locked the room (only moderators join). */
  isLocked() { return this._locked; }
  /** This client's sources a moderator muted: 'microphone', 'camera', 'screen'. */
  mutedSources() { return [...this._muted]; }
  /** Whether the room is a webinar room: viewers watch, presenters publish. */
  isWebinar() { return this._webinar; }
  /** This client's role in a webinar room: 'viewer' or 'presenter' ('' elsewhere). */
  role() { return this._role; }
  /** The number of viewers of a webinar room, as the server last told. */
  viewers() { return this._viewers; }

  // ---- moderation (needs the 'moderate' grant; the server refuses with FORBIDDEN otherwise)

  /** Mutes a participant's source ('microphone', 'camera' or 'screen'): the server stops forwarding it. */
  muteParticipant(name, source) { return this._moderate({action: 'mute', name: String(name), source}); }
  /** Lifts a moderator's mute. */
  unmuteParticipant(name, source) { return this._moderate({action: 'unmute', name: String(name), source}); }
  /** Asks to lift a moderator's mute of this client's own source (allowed only if the room's preset says so). */
  unmute(source) { return this._moderate({action: 'unmute', source}); }
  /** Removes a participant; with {bar: true} it may not rejoin this room session. */
  removeParticipant(name, {bar = false} = {}) {
    const msg = {action: 'remove', name: String(name)};
    if (bar) msg.bar = true;
    return this._moderate(msg);
  }
  /** Locks the room: nobody but moderators joins until unlock(). */
  lock() { return this._moderate({action: 'lock'}); }
  unlock() { return this._moderate({action: 'unlock'}); }
  /** Ends the room for everyone. */
  end() { return this._moderate({action: 'end'}); }
  /** Brings a participant (a webinar's viewer) on stage: it may publish for the rest of its session. */
  stage(name) { return this._moderate({action: 'stage', name: String(name)}); }
  /** Takes a participant back off the stage: its streams end. */
  unstage(name) { return this._moderate({action: 'unstage', name: String(name)}); }
  /** Starts or stops the room's recording (moderate or record grant). */
  startRecording() { return this._moderate({action: 'start_recording'}); }
  stopRecording() { return this._moderate({action: 'stop_recording'}); }

  // ---- presence: a raised hand; the own microphone/camera off state follows the camera stream

  /** Raises this client's hand (needs the 'chat' grant); everyone sees it (PRESENCE). */
  raiseHand() { return this._setHand(true); }
  /** Lowers this client's hand. */
  lowerHand() { return this._setHand(false); }
  /** Whether this client's hand is raised. */
  isHandRaised() { return this._hand; }

  _setHand(on) {
    const before = this._hand;
    this._hand = !!on;
    return this._link.request({type: 'presence', hand: this._hand}).then(() => {
      if (this._sentPresence) this._sentPresence.hand = this._hand;
    }, (err) => { this._hand = before; throw err; });
  }

  // _syncPresence tells the server when this client's camera stream turned its microphone or
  // camera off or on (muteAudio, muteVideo, a moderator's mute), so the others can show it.
  _syncPresence() {
    if (this._left || !this._joined || !this._link.connected()) return;
    const cams = [...this._local].filter((s) => s.kind() === 'camera' && s.getMediaStream());
    const off = (kind) => cams.length > 0 && cams.every((s) => (kind === 'audio' ? s.isAudioMuted() : s.isVideoMuted()));
    const want = {micOff: off('audio'), camOff: off('video')};
    const sent = this._sentPresence || {};
    const msg = {type: 'presence'};
    if (sent.micOff !== want.micOff) msg.micOff = want.micOff;
    if (sent.camOff !== want.camOff) msg.camOff = want.camOff;
    if (this._hand && !sent.hand) msg.hand = true;
    if (Object.keys(msg).length === 1) return;
    this._sentPresence = {...sent, ...want, hand: this._hand};
    this._link.request(msg).catch((err) => {
      this._sentPresence = null;
      if (err.code !== 'DISCONNECTED' && err.code !== 'NOT_JOINED') console.warn('roomapi: presence', err);
    });
  }

  _moderate(msg) {
    return this._link.request({type: 'moderate', ...msg}).then(() => undefined);
  }

  // _applyMute keeps this client's local tracks of a muted source disabled, so what it shows
  // matches what the others get (nothing).
  _applyMute(source, muted) {
    if (muted) this._muted.add(source); else this._muted.delete(source);
    if (!muted) return;
    queueMicrotask(() => this._syncPresence());
    for (const s of this._local) {
      const ms = s.getMediaStream();
      if (!ms) continue;
      if (source === 'microphone' && s.kind() === 'camera') ms.getAudioTracks().forEach((t) => { t.enabled = false; });
      if (source === 'camera' && s.kind() === 'camera') ms.getVideoTracks().forEach((t) => { t.enabled = false; });
      if (source === 'screen' && s.kind() === 'screen') ms.getTracks().forEach((t) => { t.enabled = false; });
    }
  }

  /** Whether grants() include name; 'publish:camera' is included by 'publish'. */
  hasGrant(name) {
    name = String(name);
    return this._grants.includes(name) || (name.startsWith('publish:') && this._grants.includes('publish'));
  }
  /**
   * The room session's recording as the server last told (RECORDING), or null:
   * {status: 'STARTED'|'STOPPED', reason, url, expires}. url is a signed link
   * (relative to the server) to this session's recording page, valid until
   * expires (a Date), for everyone in the room while it records.
   */
  recording() { return this._recordingInfo; }
  /**
   * Who speaks, as the server last told (ACTIVE_SPEAKERS): {dominant, speakers}. dominant is the
   * dominant speaker or null; speakers everyone speaking now, the dominant one first; each is
   * {name, streamId, level (0 silence to 1), self (this client)}.
   */
  activeSpeakers() { return {dominant: this._activeSpeakers.dominant, speakers: [...this._activeSpeakers.speakers]}; }
  /** The other participants. */
  getParticipants() { return [...this._participants.values()]; }
  getParticipant(name) { return this._participants.get(name) || null; }
  /** This client's published streams. */
  getLocalStreams() { return [...this._local]; }
  isJoined() { return this._joined && !this._left; }

  /** Media messages (clipapi.js): this participant's access ({post, moderate, self, limits}) or null. */
  clipsAccess() { return this._clipStore.access(); }
  /** Posts a recorded clip (a Blob); resolves with the Clip. meta: {onProgress(fraction)}. */
  postClip(blob, meta) { return this._clipStore.post(blob, meta); }
  /** Fetches the room's clips, oldest first. */
  getClips() { return this._clipStore.list(); }

  /**
   * Sends chat text to everyone, or only to `to` (a participant name). Resolves with {ts}.
   */
  sendMessage(text, to) {
    text = String(text ?? '');
    const max = this._link.limits().maxTextBytes;
    if (max && textBytes(text) > max) {
      return Promise.reject(new RoomApiError('TOO_LARGE', `message is ${textBytes(text)} bytes, the limit is ${max}`, 'message'));
    }
    const msg = {type: 'message', text};
    if (to) msg.to = String(to);
    return this._link.request(msg).then((r) => ({ts: r.ts || Date.now()}));
  }

  /**
   * Publishes a camera (getUserMedia), a screen (getDisplayMedia) or a given MediaStream.
   * mute: {audio, video} starts the captured tracks muted (joining with the microphone or camera off).
   * @param {{display?: HTMLElement, constraints?: MediaStreamConstraints, record?: boolean,
   *          kind?: 'camera'|'screen', stream?: MediaStream, codec?: 'VP8'|'VP9'|'H264'|'AV1',
   *          mute?: {audio?: boolean, video?: boolean}}} options
   * @returns {LocalStream}
   */
  publish(options = {}) {
    // Flashphoner's older form: room.publish(displayElement).
    if (typeof HTMLElement !== 'undefined' && options instanceof HTMLElement) options = {display: options};
    const s = new LocalStream(this._host, options || {});
    const ctl = this._localCtl.get(s);
    if (this._left) {
      queueMicrotask(() => ctl.fail(new RoomApiError('NOT_JOINED', 'not in a room')));
      return s;
    }
    this._local.add(s);
    ctl.start();
    return s;
  }

  /** Leaves the room (the session stays connected). Resolves when the server confirmed. */
  async leave() {
    if (this._left) return;
    const link = this._link;
    // Sent even while the join is in flight: the server handles requests in order.
    const p = link.connected() ? link.request({type: 'leave'}) : Promise.resolve();
    forgetResumeToken(this._name, this._self);
    this._teardown('left');
    link.released(this);
    try {
      await p;
    } catch (err) {
      if (err.code !== 'NOT_JOINED' && err.code !== 'DISCONNECTED') throw err;
    }
  }

  // ---- internals

  // _streamHost is the StreamHost (streams.js) this room gives its LocalStreams.
  _streamHost() {
    const link = this._link;
    const ended = (id, stream) => {
      this._endedIds.add(id);
      if (this._localById.get(id) === stream) this._localById.delete(id);
    };
    return {
      request: (msg) => link.request(msg),
      notify: (msg) => link.notify(msg),
      connected: () => link.connected(),
      pcConfig: () => link.pcConfig(),
      ready: () => this.ready,
      left: () => this._left,
      applyMutes: () => { for (const src of [...this._muted]) this._applyMute(src, true); },
      syncPresence: () => this._syncPresence(),
      bind: (stream, control) => { this._localCtl.set(stream, control); },
      published: (id, stream) => {
        this._localById.set(id, stream);
        const early = this._orphanCandidates.get(id) || [];
        this._orphanCandidates.delete(id);
        return early;
      },
      takePendingStatus: (id) => this._takePendingStatus(id),
      ended,
      gone: (stream, id) => {
        this._local.delete(stream);
        if (id) ended(id, stream);
      },
    };
  }

  // _peerConnections is every open RTCPeerConnection of the room: publish ones, then the subscribe one.
  _peerConnections() {
    const out = [];
    for (const s of this._local) {
      const pc = this._localCtl.get(s).peerConnection();
      if (pc && pc.signalingState !== 'closed') out.push(pc);
    }
    if (this._sub && this._sub.pc.signalingState !== 'closed') out.push(this._sub.pc);
    return out;
  }

  async _join() {
    const link = this._link;
    const msg = {type: 'join', room: this._name, codecs: decodableCodecs()};
    if (!this._subscribe) msg.subscribe = false;
    if (this._record) msg.record = true;
    if (this._password) msg.password = this._password;
    try {
      const reply = await link.request(msg);
      if (this._left) return;
      if (reply && reply.clips) this._clipStore.setAccess(reply.clips);
      this._joined = true;
      storeResumeToken(this._name, this._self, link.resumeToken());
      this._ready.resolve(this);
      this._sentPresence = null;
      this._syncPresence();
    } catch (err) {
      link.released(this);
      this._left = true;
      this._ready.reject(err);
      this._emit(ROOM_EVENT.FAILED, this, failInfo(err.reason || err.message, err.code));
    }
  }

  _teardown(reason) {
    if (this._left) return;
    this._left = true;
    for (const s of [...this._local]) this._localCtl.get(s).release(STREAM_STATUS.UNPUBLISHED, reason);
    this._local.clear();
    this._localById.clear();
    if (this._sub) { try { this._sub.pc.close(); } catch { /* ignore */ } this._sub = null; }
    for (const r of this._remote.values()) this._remoteCtl.get(r).detachAll();
    this._tiles.close();
    this._remote.clear();
    this._participants.clear();
    this._media.clear();
    this._ready.reject(new RoomApiError('NOT_JOINED', reason || 'left'));
  }

  _participant(name, create = true) {
    let p = this._participants.get(name);
    if (!p && create) {
      let ctl = null;
      p = new Participant(this, name, (c) => { ctl = c; });
      this._peopleCtl.set(p, ctl);
      this._participants.set(name, p);
    }
    return p || null;
  }

  _addRemote(participant, info) {
    let s = this._remote.get(info.id);
    if (s) {
      this._remoteCtl.get(s).update(info);
    } else {
      let ctl = null;
      s = new RemoteStream(participant, info, {media: this._media.get(info.id) || null, tiles: this._tiles, bind: (c) => { ctl = c; }});
      this._remoteCtl.set(s, ctl);
      this._remote.set(info.id, s);
      const queued = this._pendingStatus.get(info.id);
      if (queued) { this._pendingStatus.delete(info.id); for (const ev of queued) ctl.status(ev.status, ev.reason, ev.video); }
    }
    const pctl = this._peopleCtl.get(participant);
    pctl.addStream(s);
    pctl.autoplay(s);
    return s;
  }

  _removeRemote(id, status = STREAM_STATUS.STOPPED) {
    const s = this._remote.get(id);
    if (!s) return null;
    this._remote.delete(id);
    this._peopleCtl.get(s.participant())?.removeStream(id);
    this._remoteCtl.get(s).status(status);
    return s;
  }

  _onEvent(m) {
    if (this._left || (m.room && m.room !== this._name)) return;
    switch (m.event) {
      case 'STATE': this._applyState(m); return;
      case 'JOINED': {
        if (m.name === this._self) return;
        const p = this._participant(m.name);
        if (m.role) this._peopleCtl.get(p).setRole(m.role);
        this._emit(ROOM_EVENT.JOINED, p, m);
        return;
      }
      case 'LEFT': {
        const p = this._participant(m.name, false) || new Participant(this, m.name);
        for (const s of p.getStreams()) this._removeRemote(s.id(), STREAM_STATUS.UNPUBLISHED);
        this._participants.delete(m.name);
        this._emit(ROOM_EVENT.LEFT, p, {reason: m.reason || 'left'});
        return;
      }
      case 'PUBLISHED': {
        if (!m.stream || !m.stream.id) return;
        const p = this._participant(m.name);
        const s = this._addRemote(p, m.stream);
        this._emit(ROOM_EVENT.PUBLISHED, p, s);
        return;
      }
      case 'UNPUBLISHED': {
        const s = this._removeRemote(m.streamId, STREAM_STATUS.UNPUBLISHED);
        const p = s ? s.participant() : this._participant(m.name, false);
        if (s) this._emit(ROOM_EVENT.UNPUBLISHED, p, s);
        return;
      }
      case 'MESSAGE': {
        // As in Flashphoner, message.from is the sender (a Participant: from.name()).
        const from = this._participant(m.from, false) || new Participant(this, m.from);
        this._emit(ROOM_EVENT.MESSAGE, {
          from, to: m.to || null, text: m.text ?? '', ts: m.ts || Date.now(), private: !!m.private,
        });
        return;
      }
      case 'FAILED': {
        forgetResumeToken(this._name, this._self);
        this._teardown(m.reason);
        this._link.released(this);
        this._emit(ROOM_EVENT.FAILED, this, failInfo(m.reason || 'room failed'));
        return;
      }
      case 'STREAM_STATUS': this._onStreamStatus(m); return;
      case 'PUBLISH_LAYERS': {
        const local = this._localById.get(m.streamId);
        if (local) this._localCtl.get(local).layers(m.layers);
        return;
      }
      case 'PRESENCE': {
        if (m.name === this._self) return;
        const p = this._participant(m.name);
        this._peopleCtl.get(p).setPresence(m);
        this._emit(ROOM_EVENT.PRESENCE, p, p.presence());
        return;
      }
      case 'QUALITY': {
        const changed = new Set();
        for (const q of m.quality || []) {
          const remote = this._remote.get(q.streamId);
          if (!remote || (q.kind !== 'audio' && q.kind !== 'video')) continue;
          this._remoteCtl.get(remote).setQuality(q.kind, {lossPct: +q.lossPct || 0, jitterMs: +q.jitterMs || 0, rttMs: +q.rttMs || 0});
          changed.add(remote);
        }
        for (const remote of changed) this._emit(ROOM_EVENT.QUALITY, remote.participant(), remote, remote.quality());
        return;
      }
      case 'MUTED':
      case 'UNMUTED': {
        const muted = m.event === 'MUTED';
        const info = {source: m.source, by: m.by || '', self: m.name === this._self};
        if (info.self) {
          this._applyMute(m.source, muted);
          this._emit(m.event, null, info);
          return;
        }
        const p = this._participant(m.name);
        this._peopleCtl.get(p).mute(m.source, muted);
        this._emit(m.event, p, info);
        return;
      }
      case 'REMOVED': {
        const info = {by: m.by || '', barred: !!m.barred, self: m.name === this._self};
        if (!info.self) {
          this._emit(ROOM_EVENT.REMOVED, this._participant(m.name, false) || new Participant(this, m.name), info);
          return;
        }
        forgetResumeToken(this._name, this._self);
        this._teardown('removed');
        this._link.released(this);
        this._emit(ROOM_EVENT.REMOVED, null, info);
        this._emit(ROOM_EVENT.FAILED, this, failInfo(`removed from the room by ${info.by}`, 'REMOVED'));
        return;
      }
      case 'LOCKED':
      case 'UNLOCKED':
        this._locked = m.event === 'LOCKED';
        this._emit(m.event, this, {by: m.by || ''});
        return;
      case 'ENDED':
        this._emit(ROOM_EVENT.ENDED, this, {by: m.by || ''}); // FAILED follows
        return;
      case 'RECORDING': {
        // STARTED/STOPPED by the recorder (first media, a limit) or by a moderator (info.by).
        const info = {status: m.status || '', reason: m.reason || '', url: m.recordingUrl || '',
          expires: m.recordingExpires ? new Date(m.recordingExpires) : null, by: m.by || ''};
        if (info.status === 'STOPPED') this._recording = false;
        if (info.status === 'STARTED') this._recording = true;
        if (!info.url && this._recordingInfo) info.url = this._recordingInfo.url, info.expires = this._recordingInfo.expires;
        this._recordingInfo = info;
        this._emit(ROOM_EVENT.RECORDING, this, info);
        return;
      }
      case 'VIEWERS':
        this._viewers = m.viewers || 0;
        this._emit(ROOM_EVENT.VIEWERS, this, {viewers: this._viewers});
        return;
      case 'STAGED':
      case 'UNSTAGED': {
        // The participant itself gets a new STATE instead; viewers get JOINED or LEFT.
        const p = this._participant(m.name);
        if (m.role) this._peopleCtl.get(p).setRole(m.role);
        this._emit(m.event, p, {by: m.by || '', role: m.role || ''});
        return;
      }
      case 'LIVE_ENDED':
        this._emit(ROOM_EVENT.LIVE_ENDED, this, {replay: m.replay || '', reason: m.reason || ''});
        return;
      case 'CLIP_ADDED':
      case 'CLIP_DELETED': this._clipStore.onEvent(m); return;
      case 'ACTIVE_SPEAKERS': {
        const one = (v) => (v && typeof v.name === 'string' ? {name: v.name, streamId: String(v.streamId || ''),
          level: Math.min(1, Math.max(0, Number(v.level) || 0)), self: v.name === this._self} : null);
        const info = {dominant: one(m.dominant), speakers: (Array.isArray(m.speakers) ? m.speakers : []).map(one).filter(Boolean)};
        this._activeSpeakers = info;
        this._emit(ROOM_EVENT.ACTIVE_SPEAKERS, this, {dominant: info.dominant, speakers: [...info.speakers]});
        return;
      }
      default: console.warn('roomapi: unknown event', m.event);
    }
  }

  _applyState(m) {
    if (m.self) this._self = m.self;
    if (m.roomSession) this._roomSession = m.roomSession;
    this._recording = !!m.recording;
    if (Array.isArray(m.grants)) this._grants = m.grants.map(String);
    this._locked = !!m.locked;
    this._muted = new Set(Array.isArray(m.muted) ? m.muted : []);
    for (const src of this._muted) this._applyMute(src, true);
    this._webinar = !!m.webinar;
    this._role = m.role || '';
    this._viewers = m.viewers || 0;
    const names = new Set();
    const ids = new Set();
    for (const info of m.participants || []) {
      if (!info || !info.name || info.name === this._self) continue;
      names.add(info.name);
      const p = this._participant(info.name);
      const pctl = this._peopleCtl.get(p);
      pctl.setMuted(Array.isArray(info.muted) ? info.muted : []);
      pctl.setRole(info.role || '');
      pctl.setPresence(info);
      for (const si of info.streams || []) {
        if (!si || !si.id) continue;
        ids.add(si.id);
        this._addRemote(p, si);
      }
    }
    for (const id of [...this._remote.keys()]) if (!ids.has(id)) this._removeRemote(id, STREAM_STATUS.UNPUBLISHED);
    for (const name of [...this._participants.keys()]) if (!names.has(name)) this._participants.delete(name);
    this._emit(ROOM_EVENT.STATE, this);
  }

  _onStreamStatus(m) {
    const local = this._localById.get(m.streamId);
    if (local) { this._localCtl.get(local).serverStatus(m.status, m.reason); return; }
    if (this._endedIds.has(m.streamId)) return;
    const remote = this._remote.get(m.streamId);
    if (remote) {
      this._remoteCtl.get(remote).status(m.status, m.reason, m.video);
      this._emit(ROOM_EVENT.STREAM_STATUS, remote.participant(), remote, m.status, m.reason || '');
      return;
    }
    // Not known yet: a publish answer or a PUBLISHED still on its way.
    if (!this._pendingStatus.has(m.streamId)) this._pendingStatus.set(m.streamId, []);
    const q = this._pendingStatus.get(m.streamId);
    q.push({status: m.status, reason: m.reason, name: m.name, video: m.video});
    if (q.length > 8) q.shift();
  }

  _takePendingStatus(id) {
    const q = this._pendingStatus.get(id) || [];
    this._pendingStatus.delete(id);
    return q;
  }

  _subscribeConnection() {
    if (this._sub) return this._sub;
    const pc = new RTCPeerConnection(this._link.pcConfig());
    const sub = {pc, queue: serial(), lastRestart: 0};
    this._sub = sub;
    pc.onicecandidate = (e) => {
      this._link.notify({type: 'candidate', target: 'subscribe', candidate: e.candidate ? e.candidate.toJSON() : null});
    };
    pc.ontrack = (e) => this._onTrack(e);
    pc.oniceconnectionstatechange = () => {
      if (pc.iceConnectionState === 'failed' && this._sub === sub) this._restartSubscribeIce(false);
    };
    return sub;
  }

  _onOffer(m) {
    if (this._left || typeof m.sdp !== 'string') return;
    for (const [id, name] of Object.entries(m.streams || {})) this._owners.set(id, name);
    const sub = this._subscribeConnection();
    const pc = sub.pc;
    sub.queue(async () => {
      await pc.setRemoteDescription({type: 'offer', sdp: m.sdp});
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      // Not awaited inside the queue: candidates for the new description may be applied meanwhile.
      this._link.request({type: 'answer', sdp: answer.sdp}).catch((err) => {
        if (err.code !== 'DISCONNECTED') this._link.reportError(err);
      });
    }).catch((err) => {
      console.error('roomapi: cannot answer the subscribe offer', err);
      this._link.reportError(toError(err, 'INVALID_SDP'));
    });
  }

  _onTrack(e) {
    const ms = e.streams && e.streams[0];
    if (!ms) { console.warn('roomapi: remote track without a stream id', e.track); return; }
    this._media.set(ms.id, ms);
    const s = this._remote.get(ms.id);
    if (s) this._remoteCtl.get(s).setMedia(ms);
  }

  _onCandidate(m) {
    if (this._left) return;
    const c = m.candidate || undefined;
    if (m.target === 'subscribe') {
      const sub = this._sub;
      if (!sub) return;
      sub.queue(() => sub.pc.addIceCandidate(c)).catch((err) => console.warn('roomapi: subscribe candidate', err));
      return;
    }
    if (m.target === 'publish') {
      const s = this._localById.get(m.stream);
      if (s) { this._localCtl.get(s).remoteCandidate(c); return; }
      if (!m.stream) return;
      if (!this._orphanCandidates.has(m.stream)) this._orphanCandidates.set(m.stream, []);
      const q = this._orphanCandidates.get(m.stream);
      if (q.length < 64) q.push(c);
    }
  }

  _restartSubscribeIce(force) {
    const sub = this._sub;
    if (!sub || !this._link.connected()) return;
    const now = Date.now();
    if (!force && now - sub.lastRestart < ICE_RESTART_MIN_INTERVAL_MS) return;
    sub.lastRestart = now;
    this._link.request({type: 'restartIce'}).catch((err) => {
      if (err.code !== 'DISCONNECTED') this._link.reportError(err);
    });
  }

  _restartIce() {
    if (this._left) return;
    // The resumed session's fresh ICE servers, for the gathering the restarts start.
    for (const pc of this._link.peerConnections()) {
      try {
        const cfg = pc.getConfiguration();
        cfg.iceServers = this._link.iceServers();
        pc.setConfiguration(cfg);
      } catch (e) {
        console.warn('roomapi: cannot update ICE servers', e);
      }
    }
    for (const s of this._local) this._localCtl.get(s).restartIce(true);
    this._restartSubscribeIce(true);
  }
}

/**
 * A participant of the room other than this client. bind(control) gives the room its
 * ParticipantControl: setRole(role), setPresence({hand, micOff, camOff}), setMuted(sources),
 * mute(source, on), addStream(remoteStream), removeStream(id), autoplay(remoteStream).
 */
export class Participant {
  constructor(room, name, bind = () => {}) {
    this._room = room;
    this._name = name;
    this._streams = new Map(); // id -> RemoteStream
    this._playEl = null;
    this._muted = new Set(); // sources a moderator muted
    this._role = ''; // in a webinar room: 'viewer' or 'presenter'
    this._presence = {hand: false, micOff: false, camOff: false};
    bind({
      setRole: (role) => { this._role = role; },
      setPresence: (p) => { this._presence = {hand: !!p.hand, micOff: !!p.micOff, camOff: !!p.camOff}; },
      setMuted: (sources) => { this._muted = new Set(sources); },
      mute: (source, on) => { if (on) this._muted.add(source); else this._muted.delete(source); },
      addStream: (st) => { this._streams.set(st.id(), st); },
      removeStream: (id) => { this._streams.delete(id); },
      autoplay: (st) => this._maybeAutoplay(st),
    });
  }
  name() { return this._name; }
  /** In a webinar room: 'viewer' or 'presenter' ('' elsewhere). */
  role() { return this._role; }
  /** Whether the participant's hand is raised. */
  isHandRaised() { return this._presence.hand; }
  /** {hand, micOff, camOff}: its raised hand, its own microphone or camera turned off (PRESENCE). */
  presence() { return {...this._presence}; }
  /** Whether a moderator muted the participant's source ('microphone', 'camera', 'screen'). */
  isMuted(source) { return this._muted.has(source); }
  mutedSources() { return [...this._muted]; }
  /** The participant's published streams (RemoteStream objects). */
  getStreams() { return [...this._streams.values()]; }
  /** Sends a private chat message to this participant. Resolves with {ts}. */
  sendMessage(text) { return this._room.sendMessage(text, this._name); }
  /**
   * Plays the participant's camera stream (or its only stream) in element; if it publishes
   * nothing yet, its next camera stream plays there. Returns the stream played, or null.
   */
  play(element) {
    this._playEl = element;
    const s = this._mainStream();
    if (s) s.play(element);
    return s;
  }
  _mainStream() {
    const all = this.getStreams();
    return all.find((s) => s.kind() === 'camera') || all[0] || null;
  }
  _maybeAutoplay(s) {
    if (this._playEl && s.kind() === 'camera' && this._mainStream() === s) s.play(this._playEl);
  }
}

