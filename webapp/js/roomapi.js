// Parley Room API: the browser side of docs/protocol.md, shaped like Flashphoner's Room API.
//
//   import RoomApi, {SESSION_STATUS, ROOM_EVENT, STREAM_STATUS} from './roomapi.js';
//   const connection = RoomApi.connect({urlServer: 'wss://host/ws', username: 'alice', token})
//     .on(SESSION_STATUS.ESTABLISHED, () => {
//       const room = connection.join({name: 'standup'})
//         .on(ROOM_EVENT.STATE, room => room.publish({}))
//         .on(ROOM_EVENT.PUBLISHED, (participant, stream) => stream.play(videoElement));
//     });
//
// docs/roomapi.md is the reference. Plain ES module, no dependencies.

import {ClipStore, ClipError, Clip} from './clipapi.js';

export {ClipError, Clip};

export const SESSION_STATUS = Object.freeze({
  ESTABLISHED: 'ESTABLISHED',
  FAILED: 'FAILED',
  DISCONNECTED: 'DISCONNECTED',
});

export const ROOM_EVENT = Object.freeze({
  STATE: 'STATE',
  JOINED: 'JOINED',
  LEFT: 'LEFT',
  PUBLISHED: 'PUBLISHED',
  UNPUBLISHED: 'UNPUBLISHED',
  MESSAGE: 'MESSAGE',
  FAILED: 'FAILED',
  // Parley extension: a remote stream's status for this client changed (PLAYING, STOPPED, FAILED).
  STREAM_STATUS: 'STREAM_STATUS',
  // Parley extensions, moderation (docs/protocol.md): everyone gets each, with info.by the moderator.
  MUTED: 'MUTED',
  UNMUTED: 'UNMUTED',
  REMOVED: 'REMOVED',
  LOCKED: 'LOCKED',
  UNLOCKED: 'UNLOCKED',
  ENDED: 'ENDED',
  // Parley extension: the room session's recording started (with a link to it) or a limit stopped it.
  RECORDING: 'RECORDING',
  // Parley extensions, webinar rooms: the number of viewers (at most once a second); a moderator
  // brought a participant on stage or back; the live ended (with its replay, then the session ends).
  VIEWERS: 'VIEWERS',
  STAGED: 'STAGED',
  UNSTAGED: 'UNSTAGED',
  LIVE_ENDED: 'LIVE_ENDED',
  // Parley extension: a participant raised or lowered its hand or turned its own microphone or
  // camera off or on: (participant, {hand, micOff, camOff}).
  PRESENCE: 'PRESENCE',
  // Parley extension: media messages (clipapi.js): a clip posted to the room, one deleted or expired.
  CLIP_ADDED: 'CLIP_ADDED',
  CLIP_DELETED: 'CLIP_DELETED',
  // Parley extension: how this client receives a remote stream, from its own receiver reports
  // (every few seconds): handler(participant, stream, stream.quality()).
  QUALITY: 'QUALITY',
  // Parley extension: who speaks changed: info.dominant (the dominant speaker, or null) and
  // info.speakers (everyone speaking now, dominant first), each {name, streamId, level, self}.
  ACTIVE_SPEAKERS: 'ACTIVE_SPEAKERS',
});

export const STREAM_STATUS = Object.freeze({
  PUBLISHING: 'PUBLISHING',
  UNPUBLISHED: 'UNPUBLISHED',
  PLAYING: 'PLAYING',
  STOPPED: 'STOPPED',
  FAILED: 'FAILED',
});

// Connection event for server errors (with or without a request id), besides the SESSION_STATUS ones.
export const CONNECTION_EVENT = Object.freeze({ERROR: 'ERROR'});

const RESUME_KEY = 'parley.resume:';
const RECONNECT_FOR_MS = 30000;
const ATTEMPT_TIMEOUT_MS = 5000;
const ICE_RESTART_MIN_INTERVAL_MS = 10000;

/** An error refused by the server (code, reason from its `error`) or raised locally. */
export class RoomApiError extends Error {
  constructor(code, reason, request) {
    super(`${code}: ${reason}`);
    this.name = 'RoomApiError';
    this.code = code;
    this.reason = reason;
    if (request) this.request = request;
  }
}

function toError(err, code = 'INTERNAL') {
  if (err instanceof RoomApiError) return err;
  const reason = err && err.message ? `${err.name && err.name !== 'Error' ? err.name + ': ' : ''}${err.message}` : String(err);
  return new RoomApiError(code, reason);
}

class Emitter {
  constructor() { this._handlers = new Map(); }
  /** Registers cb for event ev; returns this so calls chain. */
  on(ev, cb) {
    if (typeof cb !== 'function') throw new TypeError('callback must be a function');
    if (!this._handlers.has(ev)) this._handlers.set(ev, []);
    this._handlers.get(ev).push(cb);
    return this;
  }
  off(ev, cb) {
    const list = this._handlers.get(ev);
    if (list) this._handlers.set(ev, list.filter((h) => h !== cb));
    return this;
  }
  _emit(ev, ...args) {
    for (const cb of [...(this._handlers.get(ev) || [])]) {
      try { cb(...args); } catch (e) { console.error(`roomapi: ${ev} handler failed`, e); }
    }
  }
}

// serial returns a function that runs async jobs one after the other (per peer connection:
// descriptions and candidates are applied in the order they arrived).
function serial() {
  let tail = Promise.resolve();
  return (job) => {
    const p = tail.then(job);
    tail = p.catch(() => {});
    return p;
  };
}

function storage() {
  try { return window.sessionStorage; } catch { return null; }
}

/** The resume token stored for room+name in this tab, or null. */
export function storedResumeToken(room, name) {
  try { return storage()?.getItem(RESUME_KEY + room + '/' + name) || null; } catch { return null; }
}

function storeResumeToken(room, name, token) {
  try { if (token) storage()?.setItem(RESUME_KEY + room + '/' + name, token); } catch { /* storage full or off */ }
}

function forgetResumeToken(room, name) {
  try { storage()?.removeItem(RESUME_KEY + room + '/' + name); } catch { /* ignore */ }
}

function forgetResumeTokenValue(token) {
  const s = storage();
  if (!s || !token) return;
  try {
    for (let i = s.length - 1; i >= 0; i--) {
      const k = s.key(i);
      if (k && k.startsWith(RESUME_KEY) && s.getItem(k) === token) s.removeItem(k);
    }
  } catch { /* ignore */ }
}

/**
 * The MIME types this page can decode, as sent in join.codecs; H.264 also once per profile it
 * decodes ("video/H264;profile-level-id=42e01f;packetization-mode=1"), so the server never sends
 * it a profile it cannot decode.
 */
export function decodableCodecs() {
  const out = [];
  if (typeof RTCRtpReceiver === 'undefined' || !RTCRtpReceiver.getCapabilities) return out;
  let h264 = 0;
  for (const kind of ['audio', 'video']) {
    const caps = RTCRtpReceiver.getCapabilities(kind);
    for (const c of (caps && caps.codecs) || []) {
      const sub = c.mimeType.split('/')[1]?.toLowerCase() || '';
      if (sub === 'rtx' || sub === 'red' || sub === 'ulpfec' || sub.startsWith('flexfec')) continue;
      if (!out.some((m) => m.toLowerCase() === c.mimeType.toLowerCase())) out.push(c.mimeType);
      const fmtp = c.sdpFmtpLine || '';
      const plid = /profile-level-id=([0-9a-fA-F]{6})/.exec(fmtp);
      if (sub === 'h264' && plid && h264 < 16) {
        const mode = /packetization-mode=(\d)/.exec(fmtp);
        const entry = `${c.mimeType};profile-level-id=${plid[1].toLowerCase()};packetization-mode=${mode ? mode[1] : 0}`;
        if (!out.includes(entry)) { out.push(entry); h264++; }
      }
    }
  }
  return out;
}

// preferCodec puts codec (VP8, VP9, H264, AV1) first in the transceiver's codec list.
function preferCodec(transceiver, codec) {
  if (!codec || !transceiver.setCodecPreferences) return false;
  const mime = 'video/' + String(codec).toLowerCase();
  const sources = [
    () => RTCRtpSender.getCapabilities && RTCRtpSender.getCapabilities('video'),
    () => RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities('video'),
  ];
  for (const src of sources) {
    const caps = src();
    if (!caps || !caps.codecs) continue;
    const first = caps.codecs.filter((c) => c.mimeType.toLowerCase() === mime);
    if (!first.length) continue;
    try {
      transceiver.setCodecPreferences([...first, ...caps.codecs.filter((c) => c.mimeType.toLowerCase() !== mime)]);
      return true;
    } catch (e) { /* try the other capability list */ }
  }
  console.warn(`roomapi: codec ${codec} not available for sending here`);
  return false;
}

function wsUrl(urlServer) {
  const base = typeof location !== 'undefined' ? location.href : 'http://127.0.0.1/';
  const u = new URL(urlServer || '/ws', base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.pathname === '' || u.pathname === '/') u.pathname = '/ws';
  return u.toString();
}

function textBytes(s) { return new TextEncoder().encode(s).length; }

// failInfo is the info passed with FAILED events: {code?, reason}, and "CODE: reason" as text.
function failInfo(reason, code) {
  const info = {reason: reason || ''};
  if (code) info.code = code;
  Object.defineProperty(info, 'toString', {value: () => (code ? `${code}: ${info.reason}` : info.reason)});
  return info;
}

/**
 * RoomApi.connect opens a session (one WebSocket) to a Parley server.
 * token is an access token (a JWT from the organizer: docs/security.md); without one the server's
 * mode and the room's preset decide what the session may do.
 * @param {{urlServer?: string, username: string, token?: string, resumeToken?: string, iceTransportPolicy?: 'all'|'relay'}} options
 * @returns {Connection}
 */
export function connect(options = {}) {
  return new Connection(options);
}

/** A session with the server. Emits SESSION_STATUS events and CONNECTION_EVENT.ERROR. */
class Connection extends Emitter {
  constructor(options) {
    super();
    this._url = wsUrl(options.urlServer);
    this._username = options.username || '';
    this._token = options.resumeToken || null;
    this._accessToken = options.token ? String(options.token) : null;
    this._iceTransportPolicy = options.iceTransportPolicy || undefined;
    this._nextId = 1;
    this._pending = new Map();
    this._ws = null;
    this._status = null;
    this._established = false;
    this._closing = false;
    this._serverEnded = false;
    this._room = null;
    this._iceServers = [];
    this._limits = {};
    this._sessionId = null;
    this._reconnect = null;
    this._open('initial');
  }

  // ---- public API

  /** The last session status (ESTABLISHED, DISCONNECTED, FAILED) or null before the first one. */
  status() { return this._status; }
  /** The server's session id. */
  id() { return this._sessionId; }
  username() { return this._username; }
  /** The server's limits from the session message ({maxTextBytes, maxStreams, …}). */
  limits() { return {...this._limits}; }
  /** The ICE servers (TURN credentials) of the last join's reply or resumed session; none before a join. */
  iceServers() { return this._iceServers.slice(); }
  resumeToken() { return this._token; }
  /** Rooms this connection is in (at most one). */
  getRooms() { return this._room && !this._room._left ? [this._room] : []; }

  /**
   * Joins a room (leaving the current one first). Events come on the returned Room.
   * A room with a password fails with code PASSWORD_REQUIRED or WRONG_PASSWORD: join again with it.
   * @param {{name: string, record?: boolean, subscribe?: boolean, password?: string}} options name is the room name
   */
  join(options = {}) {
    if (this._room) {
      forgetResumeToken(this._room._name, this._room._self);
      this._room._teardown('joined another room');
    }
    const room = new Room(this, options);
    this._room = room;
    room._join();
    return room;
  }

  /** Ends the session: leaves the room, closes every peer connection and the WebSocket. */
  disconnect() {
    if (this._closing) return;
    this._closing = true;
    this._stopReconnect();
    const room = this._room;
    if (room) {
      forgetResumeToken(room._name, room._self || this._username);
      room._teardown('disconnected');
      this._room = null;
    }
    this._rejectPending(new RoomApiError('DISCONNECTED', 'disconnected by the client'));
    const ws = this._ws;
    this._ws = null;
    this._established = false;
    if (ws) { detach(ws); try { ws.close(1000, 'bye'); } catch { /* ignore */ } }
    this._setStatus(SESSION_STATUS.DISCONNECTED, {reason: 'disconnected by the client'});
  }

  /** Every current RTCPeerConnection (publish connections, then the subscribe connection). */
  peerConnections() {
    const r = this._room;
    if (!r) return [];
    const out = [];
    for (const s of r._local) if (s._pc && s._pc.signalingState !== 'closed') out.push(s._pc);
    if (r._sub && r._sub.pc.signalingState !== 'closed') out.push(r._sub.pc);
    return out;
  }

  // ---- internals

  _pcConfig() {
    const cfg = {iceServers: this._iceServers};
    if (this._iceTransportPolicy) cfg.iceTransportPolicy = this._iceTransportPolicy;
    return cfg;
  }

  _setStatus(status, info = {}) {
    this._status = status;
    this._emit(status, this, info);
  }

  _open(mode) {
    let ws;
    try {
      ws = new WebSocket(this._url);
    } catch (e) {
      // Reported on a later task so that handlers attached after connect() see it.
      setTimeout(() => this._onSocketGone(null, mode, toError(e).reason), 0);
      return;
    }
    this._ws = ws;
    let timer = null;
    if (mode === 'reconnect') {
      timer = setTimeout(() => { if (this._ws === ws && !this._established) try { ws.close(); } catch { /* ignore */ } }, ATTEMPT_TIMEOUT_MS);
    }
    ws.onopen = () => { if (this._ws === ws) this._handshake(ws, mode); };
    ws.onmessage = (ev) => { if (this._ws === ws) this._onMessage(ev.data); };
    ws.onerror = () => { /* onclose follows */ };
    ws.onclose = (ev) => {
      clearTimeout(timer);
      if (this._ws !== ws) return;
      this._onSocketGone(ws, mode, ev.reason || `connection closed (${ev.code})`);
    };
  }

  async _handshake(ws, mode) {
    const resume = !!this._token && mode !== 'fresh';
    let s;
    try {
      // A resumed session keeps the grants of the access token it first connected with.
      const msg = resume ? {type: 'connect', resume: this._token} : {type: 'connect', username: this._username};
      if (!resume && this._accessToken) msg.token = this._accessToken;
      s = await this._request(msg, {ws});
    } catch (err) {
      s = {status: SESSION_STATUS.FAILED, reason: err.reason || err.message, code: err.code};
    }
    if (this._ws !== ws) return;
    if (s.status !== SESSION_STATUS.ESTABLISHED || (mode === 'reconnect' && !this._resumeMatches(s))) {
      const reason = s.reason || (s.status === SESSION_STATUS.ESTABLISHED ? 'the room was lost while reconnecting' : 'connect refused');
      if (resume) forgetResumeTokenValue(this._token);
      if (resume && mode === 'initial') {
        // A stale token from an earlier page: start a fresh session instead.
        this._token = null;
        detach(ws);
        try { ws.close(1000); } catch { /* ignore */ }
        this._open('fresh');
        return;
      }
      this._ws = null;
      detach(ws);
      try { ws.close(1000); } catch { /* ignore */ }
      this._giveUp(reason, s.code);
      return;
    }
    this._established = true;
    this._sessionId = s.sessionId || null;
    if (s.resumeToken) this._token = s.resumeToken;
    // A resumed session brings fresh TURN credentials for the ICE restarts below.
    if (Array.isArray(s.iceServers)) this._iceServers = s.iceServers;
    if (s.limits) this._limits = s.limits;
    if (s.clips && this._room) this._room._clipStore._setAccess(s.clips);
    if (mode === 'reconnect') {
      this._stopReconnect();
      const room = this._room;
      if (room) storeResumeToken(room._name, room._self || this._username, this._token);
      this._setStatus(SESSION_STATUS.ESTABLISHED, {resumed: true, session: s});
      if (room) room._restartIce('resumed');
    } else {
      this._setStatus(SESSION_STATUS.ESTABLISHED, {resumed: !!s.resumed, session: s});
    }
  }

  _resumeMatches(s) {
    const room = this._room;
    if (!room) return true;
    return !!s.resumed && (!s.room || s.room === room._name);
  }

  _onSocketGone(ws, mode, reason) {
    if (ws) detach(ws);
    this._ws = null;
    const wasEstablished = this._established;
    this._established = false;
    this._rejectPending(new RoomApiError('DISCONNECTED', 'connection to the server lost'));
    if (this._closing) return;
    if (this._reconnect) { this._scheduleReconnect(); return; }
    const room = this._room;
    if (!this._serverEnded && wasEstablished && room && room._joined && !room._left && this._token) {
      this._reconnect = {start: Date.now(), attempt: 0, timer: null};
      this._setStatus(SESSION_STATUS.DISCONNECTED, {reason: 'connection lost, reconnecting', reconnecting: true});
      this._scheduleReconnect();
      return;
    }
    if (this._serverEnded) return; // DISCONNECTED already reported with the server's reason
    if (!wasEstablished && (mode === 'initial' || mode === 'fresh')) {
      this._giveUp(reason || 'cannot connect to the server');
      return;
    }
    if (room) { room._teardown(reason); this._room = null; }
    this._setStatus(SESSION_STATUS.DISCONNECTED, {reason});
  }

  _scheduleReconnect() {
    const r = this._reconnect;
    if (!r) return;
    if (Date.now() - r.start >= RECONNECT_FOR_MS) { this._giveUp('could not reconnect to the server'); return; }
    const delay = Math.min(500 * 2 ** r.attempt, 5000);
    r.attempt++;
    r.timer = setTimeout(() => { r.timer = null; if (this._reconnect === r) this._open('reconnect'); }, delay);
  }

  _stopReconnect() {
    if (this._reconnect && this._reconnect.timer) clearTimeout(this._reconnect.timer);
    this._reconnect = null;
  }

  _giveUp(reason, code) {
    this._stopReconnect();
    const ws = this._ws;
    this._ws = null;
    this._established = false;
    if (ws) { detach(ws); try { ws.close(1000); } catch { /* ignore */ } }
    const room = this._room;
    if (room) {
      forgetResumeToken(room._name, room._self || this._username);
      room._teardown(reason);
      this._room = null;
      room._emit(ROOM_EVENT.FAILED, room, failInfo(reason, code));
    }
    this._closing = true;
    this._setStatus(SESSION_STATUS.FAILED, failInfo(reason, code));
  }

  _rejectPending(err) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) p.reject(err);
  }

  /** Sends msg with a fresh id; resolves with the reply/answer/session, rejects with a RoomApiError. */
  _request(msg, {ws} = {}) {
    const sock = ws || this._ws;
    if (!sock || sock.readyState !== WebSocket.OPEN || (!ws && !this._established)) {
      return Promise.reject(new RoomApiError('DISCONNECTED', 'not connected to the server'));
    }
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      this._pending.set(id, {resolve, reject, type: msg.type});
      try {
        // type and id first: a frame the server refuses unread is answered with its id.
        const {type, ...rest} = msg;
        sock.send(JSON.stringify({type, id, ...rest}));
      } catch (e) {
        this._pending.delete(id);
        reject(toError(e, 'DISCONNECTED'));
      }
    });
  }

  /** Sends msg without an id (candidates); dropped when not connected. */
  _notify(msg) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !this._established) return false;
    try { ws.send(JSON.stringify(msg)); return true; } catch { return false; }
  }

  _onMessage(data) {
    let m;
    try { m = JSON.parse(data); } catch { console.warn('roomapi: not JSON', data); return; }
    if (!m || typeof m !== 'object') return;
    const pending = typeof m.id === 'number' ? this._pending.get(m.id) : undefined;
    switch (m.type) {
      case 'reply':
      case 'answer':
        // A join's reply carries the participant's ICE servers (TURN
        // credentials); taken here, before the next message (the subscribe
        // offer) makes a peer connection.
        if (m.type === 'reply' && Array.isArray(m.iceServers)) this._iceServers = m.iceServers;
        if (pending) { this._pending.delete(m.id); pending.resolve(m); }
        return;
      case 'session':
        if (pending) { this._pending.delete(m.id); pending.resolve(m); return; }
        this._onServerSession(m);
        return;
      case 'error': {
        const err = new RoomApiError(m.code || 'INTERNAL', m.reason || '', m.request);
        // A request's error rejects its promise (and so surfaces as a FAILED event or a
        // rejection); errors of requests sent without an id come here.
        if (pending) { this._pending.delete(m.id); pending.reject(err); return; }
        this._emit(CONNECTION_EVENT.ERROR, err);
        return;
      }
      case 'event':
        if (this._room) this._room._onEvent(m);
        return;
      case 'offer':
        if (this._room) this._room._onOffer(m);
        return;
      case 'candidate':
        if (this._room) this._room._onCandidate(m);
        return;
      default:
        console.warn('roomapi: unknown message', m.type);
    }
  }

  _onServerSession(m) {
    if (m.status === SESSION_STATUS.DISCONNECTED || m.status === SESSION_STATUS.FAILED) {
      this._serverEnded = true;
      this._stopReconnect();
      const room = this._room;
      if (room) { room._teardown(m.reason || 'session ended'); this._room = null; }
      // A session refused at once (TOO_MANY_SESSIONS, RATE_LIMITED) comes with its code.
      this._setStatus(m.status, m.code ? {reason: m.reason || '', code: m.code} : {reason: m.reason || ''});
    }
  }
}

function detach(ws) {
  ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
}

/** A room joined through connection.join. */
class Room extends Emitter {
  constructor(conn, options) {
    super();
    this._conn = conn;
    this._name = String(options.name || '');
    this._record = !!options.record;
    this._password = options.password ? String(options.password) : '';
    this._subscribe = options.subscribe !== false;
    this._self = conn._username;
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
    this._tiles = new TileWatcher(this);
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
    return this._conn._request({type: 'presence', hand: this._hand}).then(() => {
      if (this._sentPresence) this._sentPresence.hand = this._hand;
    }, (err) => { this._hand = before; throw err; });
  }

  // _syncPresence tells the server when this client's camera stream turned its microphone or
  // camera off or on (muteAudio, muteVideo, a moderator's mute), so the others can show it.
  _syncPresence() {
    if (this._left || !this._joined || !this._conn._established) return;
    const cams = [...this._local].filter((s) => s.kind() === 'camera' && s.getMediaStream());
    const off = (kind) => cams.length > 0 && cams.every((s) => s._isMuted(kind));
    const want = {micOff: off('audio'), camOff: off('video')};
    const sent = this._sentPresence || {};
    const msg = {type: 'presence'};
    if (sent.micOff !== want.micOff) msg.micOff = want.micOff;
    if (sent.camOff !== want.camOff) msg.camOff = want.camOff;
    if (this._hand && !sent.hand) msg.hand = true;
    if (Object.keys(msg).length === 1) return;
    this._sentPresence = {...sent, ...want, hand: this._hand};
    this._conn._request(msg).catch((err) => {
      this._sentPresence = null;
      if (err.code !== 'DISCONNECTED' && err.code !== 'NOT_JOINED') console.warn('roomapi: presence', err);
    });
  }

  _moderate(msg) {
    return this._conn._request({type: 'moderate', ...msg}).then(() => undefined);
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
    const max = this._conn._limits.maxTextBytes;
    if (max && textBytes(text) > max) {
      return Promise.reject(new RoomApiError('TOO_LARGE', `message is ${textBytes(text)} bytes, the limit is ${max}`, 'message'));
    }
    const msg = {type: 'message', text};
    if (to) msg.to = String(to);
    return this._conn._request(msg).then((r) => ({ts: r.ts || Date.now()}));
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
    const s = new LocalStream(this, options || {});
    if (this._left) {
      queueMicrotask(() => s._fail(new RoomApiError('NOT_JOINED', 'not in a room')));
      return s;
    }
    this._local.add(s);
    s._start();
    return s;
  }

  /** Leaves the room (the session stays connected). Resolves when the server confirmed. */
  async leave() {
    if (this._left) return;
    const conn = this._conn;
    // Sent even while the join is in flight: the server handles requests in order.
    const p = conn._established ? conn._request({type: 'leave'}) : Promise.resolve();
    forgetResumeToken(this._name, this._self);
    this._teardown('left');
    if (conn._room === this) conn._room = null;
    try {
      await p;
    } catch (err) {
      if (err.code !== 'NOT_JOINED' && err.code !== 'DISCONNECTED') throw err;
    }
  }

  // ---- internals

  async _join() {
    const conn = this._conn;
    const msg = {type: 'join', room: this._name, codecs: decodableCodecs()};
    if (!this._subscribe) msg.subscribe = false;
    if (this._record) msg.record = true;
    if (this._password) msg.password = this._password;
    try {
      const reply = await conn._request(msg);
      if (this._left) return;
      if (reply && reply.clips) this._clipStore._setAccess(reply.clips);
      this._joined = true;
      storeResumeToken(this._name, this._self, conn._token);
      this._ready.resolve(this);
      this._sentPresence = null;
      this._syncPresence();
    } catch (err) {
      if (conn._room === this) conn._room = null;
      this._left = true;
      this._ready.reject(err);
      this._emit(ROOM_EVENT.FAILED, this, failInfo(err.reason || err.message, err.code));
    }
  }

  _teardown(reason) {
    if (this._left) return;
    this._left = true;
    for (const s of [...this._local]) s._release(STREAM_STATUS.UNPUBLISHED, reason);
    this._local.clear();
    this._localById.clear();
    if (this._sub) { try { this._sub.pc.close(); } catch { /* ignore */ } this._sub = null; }
    for (const r of this._remote.values()) r._detachAll();
    this._tiles.close();
    this._remote.clear();
    this._participants.clear();
    this._media.clear();
    this._ready.reject(new RoomApiError('NOT_JOINED', reason || 'left'));
  }

  _participant(name, create = true) {
    let p = this._participants.get(name);
    if (!p && create) { p = new Participant(this, name); this._participants.set(name, p); }
    return p || null;
  }

  _addRemote(participant, info) {
    let s = this._remote.get(info.id);
    if (s) {
      s._update(info);
    } else {
      s = new RemoteStream(this, participant, info);
      this._remote.set(info.id, s);
      const queued = this._pendingStatus.get(info.id);
      if (queued) { this._pendingStatus.delete(info.id); for (const ev of queued) s._onStatus(ev.status, ev.reason, ev.video); }
    }
    participant._streams.set(info.id, s);
    participant._maybeAutoplay(s);
    return s;
  }

  _removeRemote(id, status = STREAM_STATUS.STOPPED) {
    const s = this._remote.get(id);
    if (!s) return null;
    this._remote.delete(id);
    s._participant._streams.delete(id);
    s._onStatus(status);
    return s;
  }

  _onEvent(m) {
    if (this._left || (m.room && m.room !== this._name)) return;
    switch (m.event) {
      case 'STATE': this._applyState(m); return;
      case 'JOINED': {
        if (m.name === this._self) return;
        const p = this._participant(m.name);
        if (m.role) p._role = m.role;
        this._emit(ROOM_EVENT.JOINED, p, m);
        return;
      }
      case 'LEFT': {
        const p = this._participant(m.name, false) || new Participant(this, m.name);
        for (const id of [...p._streams.keys()]) this._removeRemote(id, STREAM_STATUS.UNPUBLISHED);
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
        const p = s ? s._participant : this._participant(m.name, false);
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
        const conn = this._conn;
        forgetResumeToken(this._name, this._self);
        this._teardown(m.reason);
        if (conn._room === this) conn._room = null;
        this._emit(ROOM_EVENT.FAILED, this, failInfo(m.reason || 'room failed'));
        return;
      }
      case 'STREAM_STATUS': this._onStreamStatus(m); return;
      case 'PRESENCE': {
        if (m.name === this._self) return;
        const p = this._participant(m.name);
        p._presence = {hand: !!m.hand, micOff: !!m.micOff, camOff: !!m.camOff};
        this._emit(ROOM_EVENT.PRESENCE, p, {...p._presence});
        return;
      }
      case 'QUALITY': {
        const changed = new Set();
        for (const q of m.quality || []) {
          const remote = this._remote.get(q.streamId);
          if (!remote || (q.kind !== 'audio' && q.kind !== 'video')) continue;
          remote._quality[q.kind] = {lossPct: +q.lossPct || 0, jitterMs: +q.jitterMs || 0, rttMs: +q.rttMs || 0};
          changed.add(remote);
        }
        for (const remote of changed) this._emit(ROOM_EVENT.QUALITY, remote._participant, remote, remote.quality());
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
        if (muted) p._muted.add(m.source); else p._muted.delete(m.source);
        this._emit(m.event, p, info);
        return;
      }
      case 'REMOVED': {
        const info = {by: m.by || '', barred: !!m.barred, self: m.name === this._self};
        if (!info.self) {
          this._emit(ROOM_EVENT.REMOVED, this._participant(m.name, false) || new Participant(this, m.name), info);
          return;
        }
        const conn = this._conn;
        forgetResumeToken(this._name, this._self);
        this._teardown('removed');
        if (conn._room === this) conn._room = null;
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
        if (m.role) p._role = m.role;
        this._emit(m.event, p, {by: m.by || '', role: m.role || ''});
        return;
      }
      case 'LIVE_ENDED':
        this._emit(ROOM_EVENT.LIVE_ENDED, this, {replay: m.replay || '', reason: m.reason || ''});
        return;
      case 'CLIP_ADDED':
      case 'CLIP_DELETED': this._clipStore._onEvent(m); return;
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
      p._muted = new Set(Array.isArray(info.muted) ? info.muted : []);
      p._role = info.role || '';
      p._presence = {hand: !!info.hand, micOff: !!info.micOff, camOff: !!info.camOff};
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
    if (local) { local._onServerStatus(m.status, m.reason); return; }
    if (this._endedIds.has(m.streamId)) return;
    const remote = this._remote.get(m.streamId);
    if (remote) {
      remote._onStatus(m.status, m.reason, m.video);
      this._emit(ROOM_EVENT.STREAM_STATUS, remote._participant, remote, m.status, m.reason || '');
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
    const pc = new RTCPeerConnection(this._conn._pcConfig());
    const sub = {pc, queue: serial(), lastRestart: 0};
    this._sub = sub;
    pc.onicecandidate = (e) => {
      this._conn._notify({type: 'candidate', target: 'subscribe', candidate: e.candidate ? e.candidate.toJSON() : null});
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
      this._conn._request({type: 'answer', sdp: answer.sdp}).catch((err) => {
        if (err.code !== 'DISCONNECTED') this._conn._emit(CONNECTION_EVENT.ERROR, err);
      });
    }).catch((err) => {
      console.error('roomapi: cannot answer the subscribe offer', err);
      this._conn._emit(CONNECTION_EVENT.ERROR, toError(err, 'INVALID_SDP'));
    });
  }

  _onTrack(e) {
    const ms = e.streams && e.streams[0];
    if (!ms) { console.warn('roomapi: remote track without a stream id', e.track); return; }
    this._media.set(ms.id, ms);
    const s = this._remote.get(ms.id);
    if (s) s._setMedia(ms);
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
      if (s) { s._addRemoteCandidate(c); return; }
      if (!m.stream) return;
      if (!this._orphanCandidates.has(m.stream)) this._orphanCandidates.set(m.stream, []);
      const q = this._orphanCandidates.get(m.stream);
      if (q.length < 64) q.push(c);
    }
  }

  _restartSubscribeIce(force) {
    const sub = this._sub;
    if (!sub || !this._conn._established) return;
    const now = Date.now();
    if (!force && now - sub.lastRestart < ICE_RESTART_MIN_INTERVAL_MS) return;
    sub.lastRestart = now;
    this._conn._request({type: 'restartIce'}).catch((err) => {
      if (err.code !== 'DISCONNECTED') this._conn._emit(CONNECTION_EVENT.ERROR, err);
    });
  }

  _restartIce() {
    if (this._left) return;
    // The resumed session's fresh ICE servers, for the gathering the restarts start.
    for (const pc of this._conn.peerConnections()) {
      try {
        const cfg = pc.getConfiguration();
        cfg.iceServers = this._conn._iceServers;
        pc.setConfiguration(cfg);
      } catch (e) {
        console.warn('roomapi: cannot update ICE servers', e);
      }
    }
    for (const s of this._local) s._restartIce(true);
    this._restartSubscribeIce(true);
  }
}

/** A participant of the room other than this client. */
class Participant {
  constructor(room, name) {
    this._room = room;
    this._name = name;
    this._streams = new Map(); // id -> RemoteStream
    this._playEl = null;
    this._muted = new Set(); // sources a moderator muted
    this._role = ''; // in a webinar room: 'viewer' or 'presenter'
    this._presence = {hand: false, micOff: false, camOff: false};
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

/** A stream published by another participant, received on the subscribe connection. */
class RemoteStream extends Emitter {
  constructor(room, participant, info) {
    super();
    this._room = room;
    this._participant = participant;
    this._id = info.id;
    this._info = info;
    this._status = info.status || STREAM_STATUS.PUBLISHING;
    this._reason = '';
    this._displays = new Map(); // element given to play -> the <video>/<audio> that shows the stream
    this._mediaStream = room._media.get(info.id) || null;
    this._quality = {};
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
    if (target.tagName === 'VIDEO') this._room._tiles.watch(this._id, target);
    return this;
  }
  /** Stops showing it in element (or in every element). */
  stop(element) {
    for (const el of element ? [element] : [...this._displays.keys()]) {
      const target = this._displays.get(el);
      if (!target) continue;
      this._displays.delete(el);
      this._room._tiles.unwatch(this._id, target);
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
      this._room._tiles.unwatch(this._id, target);
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

// TILES_DEBOUNCE_MS is how long the size of a tile must settle before the server is told.
const TILES_DEBOUNCE_MS = 300;

/**
 * TileWatcher tells the server how the page shows each remote stream's video: the size of its
 * <video> in device pixels, and whether it can be seen at all (in the viewport, on a visible page,
 * not hidden), debounced, one message for all the tiles that changed (docs/protocol.md "tiles").
 */
class TileWatcher {
  constructor(room) {
    this._room = room;
    this._els = new Map(); // element -> stream id
    this._visible = new Map(); // element -> in the viewport
    this._sent = new Map(); // stream id -> last sent JSON
    this._timer = null;
    this._resize = typeof ResizeObserver !== 'undefined' ? new ResizeObserver(() => this._schedule()) : null;
    this._inter = typeof IntersectionObserver !== 'undefined' ? new IntersectionObserver((entries) => {
      for (const e of entries) this._visible.set(e.target, e.isIntersecting);
      this._schedule();
    }) : null;
    this._onVisibility = () => this._schedule();
    if (typeof document !== 'undefined') document.addEventListener('visibilitychange', this._onVisibility);
  }
  watch(id, el) {
    if (this._els.get(el) === id) return;
    this._els.set(el, id);
    this._resize?.observe(el);
    this._inter?.observe(el);
    this._schedule();
  }
  unwatch(id, el) {
    if (this._els.get(el) !== id) return;
    this._els.delete(el);
    this._visible.delete(el);
    this._resize?.unobserve(el);
    this._inter?.unobserve(el);
  }
  close() {
    clearTimeout(this._timer);
    this._resize?.disconnect();
    this._inter?.disconnect();
    if (typeof document !== 'undefined') document.removeEventListener('visibilitychange', this._onVisibility);
    this._els.clear();
  }
  _schedule() {
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._send(), TILES_DEBOUNCE_MS);
  }
  _send() {
    const room = this._room;
    if (!room.isJoined() || !room._conn._established) return;
    const dpr = (typeof window !== 'undefined' && window.devicePixelRatio) || 1;
    const pageVisible = typeof document === 'undefined' || document.visibilityState !== 'hidden';
    const byStream = new Map();
    for (const [el, id] of this._els) {
      const w = Math.round(el.clientWidth * dpr);
      const h = Math.round(el.clientHeight * dpr);
      const visible = pageVisible && el.isConnected && w > 0 && h > 0 && this._visible.get(el) !== false;
      const cur = byStream.get(id);
      // A stream shown in several elements: the largest visible one counts.
      if (!cur || (visible && (!cur.visible || w * h > cur.width * cur.height))) {
        byStream.set(id, {stream: id, width: visible ? w : 0, height: visible ? h : 0, visible});
      }
    }
    const changed = [];
    for (const [id, t] of byStream) {
      const j = JSON.stringify(t);
      if (this._sent.get(id) !== j) { this._sent.set(id, j); changed.push(t); }
    }
    for (const id of [...this._sent.keys()]) if (!byStream.has(id)) this._sent.delete(id);
    if (!changed.length) return;
    room._conn._request({type: 'tiles', tiles: changed}).catch((err) => {
      for (const t of changed) this._sent.delete(t.stream); // try again with the next change
      if (err.code !== 'NOT_JOINED' && err.code !== 'DISCONNECTED') console.warn('roomapi: tiles', err);
    });
  }
}

// SIMULCAST_LAYERS are a camera's layers, lowest first (named as the server expects: q, h, f):
// a quarter, half and the whole of the capture. Browsers leave out the layers a small capture has
// no room for (Chromium sends three from 960x540 up, two from 480x270).
const SIMULCAST_LAYERS = [
  {rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 100_000},
  {rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000},
  {rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000},
];

// simulcastLayers are the layers a camera track is offered with: as many as the browser will send
// for its capture (three from 960x540 up, two from 480x270, one below), so that the top layer
// offered, the one the server records and taps, is the one that arrives; two layers are the half
// and the whole of the capture. One layer means no simulcast at all.
function simulcastLayers(track) {
  const st = (track.getSettings && track.getSettings()) || {};
  const pixels = (st.width || 0) * (st.height || 0);
  if (pixels >= 960 * 540) return SIMULCAST_LAYERS.map((l) => ({...l}));
  if (pixels >= 480 * 270) return SIMULCAST_LAYERS.slice(1).map((l) => ({...l}));
  return [];
}

// simulcastCodec says whether a camera in codec is published as simulcast: VP8 and H.264 (the
// browser's default choice is one of them); VP9 and AV1 go as one layer.
function simulcastCodec(codec) {
  return !codec || ['vp8', 'h264'].includes(String(codec).toLowerCase());
}

// keepResolution makes a screen share's sender lower its frame rate, not its resolution, when the
// link or the CPU is short.
function keepResolution(sender) {
  if (!sender || !sender.getParameters || !sender.setParameters) return;
  try {
    const params = sender.getParameters();
    params.degradationPreference = 'maintain-resolution';
    sender.setParameters(params).catch(() => {});
  } catch { /* not supported: the default */ }
}

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

/** A stream this client publishes, on a peer connection of its own. */
class LocalStream extends Emitter {
  constructor(room, options) {
    super();
    this._room = room;
    this._conn = room._conn;
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
    const sender = pc.getSenders().find((s) => s.track === old);
    if (!sender) throw new RoomApiError('INVALID_TRACK', `no sender for the ${track.kind} track`);
    track.enabled = old.enabled;
    await sender.replaceTrack(track);
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
    this._room._syncPresence();
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
      await this._room.ready;
      if (this._stopped) { this._release(STREAM_STATUS.UNPUBLISHED, 'stopped'); return; }
      // A source a moderator muted stays off in a new stream too.
      for (const src of [...this._room._muted]) this._room._applyMute(src, true);
      if (this._options.display) {
        const d = this._options.display;
        this._display = displayIn(d, {muted: true});
        this._display.muted = true;
        attachMedia(this._display, this._media);
      }
      const pc = new RTCPeerConnection(this._conn._pcConfig());
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
        if (track.kind === 'video') {
          if (this._kind === 'screen') {
            // Text must stay sharp: one high-resolution layer, frame rate yields first.
            if ('contentHint' in track) track.contentHint = 'detail';
          } else if (this._options.simulcast !== false && simulcastCodec(this._options.codec)) {
            const layers = simulcastLayers(track);
            if (layers.length > 1) init.sendEncodings = layers;
          }
        }
        const tr = pc.addTransceiver(track, init);
        if (track.kind === 'video' && this._options.codec) preferCodec(tr, this._options.codec);
        if (this._kind === 'screen' && track.kind === 'video') {
          track.addEventListener('ended', this._onEnded);
          this._screenSender = tr.sender;
        }
      }
      const msg = {type: 'publish', kind: this._kind};
      if (this._options.record) msg.record = true;
      await this._queue(async () => {
        const offer = await pc.createOffer();
        await pc.setLocalDescription(offer);
        const ans = await this._conn._request({...msg, sdp: offer.sdp});
        if (!ans.stream) throw new RoomApiError('INTERNAL', 'answer without a stream id');
        this._sid = ans.stream;
        if (this._stopped) return;
        this._room._localById.set(ans.stream, this);
        for (const c of this._candidates.splice(0)) this._sendCandidate(c);
        for (const c of this._room._orphanCandidates.get(ans.stream) || []) this._addRemoteCandidate(c);
        this._room._orphanCandidates.delete(ans.stream);
        if (this._stopped || pc.signalingState === 'closed') return;
        await pc.setRemoteDescription({type: 'answer', sdp: ans.sdp});
        if (this._screenSender) keepResolution(this._screenSender);
      });
      if (this._stopped) {
        // stop() came while the publish was in flight: unpublish what the server set up.
        const p = this._sendUnpublish();
        if (p) p.catch(() => {});
        this._room._endedIds.add(this._sid);
        return;
      }
      this._ready.resolve(this);
      this._room._syncPresence();
      for (const ev of this._room._takePendingStatus(this._sid)) this._onServerStatus(ev.status, ev.reason);
    } catch (err) {
      this._fail(toError(err));
    }
  }

  // _sendUnpublish sends unpublish once, when the server knows the stream; returns its promise or null.
  _sendUnpublish() {
    if (this._unpublishSent || !this._sid || !this._conn._established || this._room._left) return null;
    this._unpublishSent = true;
    return this._conn._request({type: 'unpublish', stream: this._sid});
  }

  _sendCandidate(c) {
    this._conn._notify({type: 'candidate', target: 'publish', stream: this._sid, candidate: c});
  }

  _addRemoteCandidate(c) {
    const pc = this._pc;
    if (!pc) return;
    this._queue(() => (pc.signalingState === 'closed' ? undefined : pc.addIceCandidate(c)))
      .catch((err) => console.warn('roomapi: publish candidate', err));
  }

  _restartIce(force) {
    const pc = this._pc;
    if (!pc || !this._sid || this._stopped || !this._conn._established) return;
    const now = Date.now();
    if (!force && now - this._lastRestart < ICE_RESTART_MIN_INTERVAL_MS) return;
    this._lastRestart = now;
    this._queue(async () => {
      const offer = await pc.createOffer({iceRestart: true});
      await pc.setLocalDescription(offer);
      const ans = await this._conn._request({type: 'offer', stream: this._sid, sdp: offer.sdp});
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
    const room = this._room;
    room._local.delete(this);
    if (this._sid) {
      room._endedIds.add(this._sid);
      if (room._localById.get(this._sid) === this) room._localById.delete(this._sid);
    }
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

export const RoomApi = {
  connect,
  SESSION_STATUS,
  ROOM_EVENT,
  STREAM_STATUS,
  CONNECTION_EVENT,
  RoomApiError,
  ClipError,
  decodableCodecs,
  storedResumeToken,
  // Flashphoner's name for ROOM_EVENT (Flashphoner.roomApi.events, RoomApi.events).
  events: ROOM_EVENT,
};

/**
 * Flashphoner is the part of Flashphoner's Web SDK global that room pages use, so that a page
 * written for Flashphoner runs with its script tag replaced by
 * `import {Flashphoner} from '/js/roomapi.js';`: `Flashphoner.init()` (nothing to do here),
 * `Flashphoner.constants.SESSION_STATUS` / `STREAM_STATUS`, and `Flashphoner.roomApi` (this API,
 * also reachable as `RoomApi.sdk`, as in Flashphoner's flashphoner-room-api.js).
 */
export const Flashphoner = Object.freeze({
  init() {},
  constants: Object.freeze({SESSION_STATUS, STREAM_STATUS}),
  roomApi: RoomApi,
});
RoomApi.sdk = Flashphoner;
Object.freeze(RoomApi);

export default RoomApi;
