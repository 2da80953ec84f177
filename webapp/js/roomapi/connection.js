// Connection: one session (one WebSocket) with a Parley server: the handshake, requests and their
// replies, reconnecting and resuming, and handing the server's room messages to the Room.
// Part of roomapi.js, which re-exports connect.

import {SESSION_STATUS, CONNECTION_EVENT} from './events.js';
import {RoomApiError, toError, Emitter, failInfo} from './util.js';
import {storeResumeToken, forgetResumeToken, forgetResumeTokenValue} from './resume.js';
import {Room} from './room.js';

const RECONNECT_FOR_MS = 30000;
const ATTEMPT_TIMEOUT_MS = 5000;

function wsUrl(urlServer) {
  const base = typeof location !== 'undefined' ? location.href : 'http://127.0.0.1/';
  const u = new URL(urlServer || '/ws', base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.pathname === '' || u.pathname === '/') u.pathname = '/ws';
  return u.toString();
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
export class Connection extends Emitter {
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
    this._room = null; // the Room, and its RoomControl (room.js) in _roomCtl
    this._roomCtl = null;
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
  getRooms() { return this._room && !this._roomCtl.left() ? [this._room] : []; }

  /**
   * Joins a room (leaving the current one first). Events come on the returned Room.
   * A room with a password fails with code PASSWORD_REQUIRED or WRONG_PASSWORD: join again with it.
   * @param {{name: string, record?: boolean, subscribe?: boolean, password?: string}} options name is the room name
   */
  join(options = {}) {
    if (this._room) {
      forgetResumeToken(this._room.name(), this._room.selfName());
      this._roomCtl.teardown('joined another room');
    }
    let ctl = null;
    const room = new Room(this._roomLink(), options, (c) => { ctl = c; });
    this._room = room;
    this._roomCtl = ctl;
    ctl.join();
    return room;
  }

  /** Ends the session: leaves the room, closes every peer connection and the WebSocket. */
  disconnect() {
    if (this._closing) return;
    this._closing = true;
    this._stopReconnect();
    const room = this._room;
    if (room) {
      forgetResumeToken(room.name(), room.selfName() || this._username);
      this._roomCtl.teardown('disconnected');
      this._dropRoom();
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
    return this._roomCtl ? this._roomCtl.peerConnections() : [];
  }

  // ---- internals

  // _roomLink is the RoomLink (room.js) a new Room gets: what it may use of this session.
  _roomLink() {
    return {
      username: () => this._username,
      request: (msg) => this._request(msg),
      notify: (msg) => this._notify(msg),
      connected: () => this._established,
      pcConfig: () => this._pcConfig(),
      iceServers: () => this._iceServers,
      limits: () => this._limits,
      resumeToken: () => this._token,
      reportError: (err) => this._emit(CONNECTION_EVENT.ERROR, err),
      peerConnections: () => this.peerConnections(),
      released: (room) => { if (this._room === room) this._dropRoom(); },
    };
  }

  _dropRoom() {
    this._room = null;
    this._roomCtl = null;
  }

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
    if (s.clips && this._roomCtl) this._roomCtl.setClipAccess(s.clips);
    if (mode === 'reconnect') {
      this._stopReconnect();
      const room = this._room;
      const ctl = this._roomCtl;
      if (room) storeResumeToken(room.name(), room.selfName() || this._username, this._token);
      this._setStatus(SESSION_STATUS.ESTABLISHED, {resumed: true, session: s});
      if (ctl) ctl.resumed();
    } else {
      this._setStatus(SESSION_STATUS.ESTABLISHED, {resumed: !!s.resumed, session: s});
    }
  }

  _resumeMatches(s) {
    const room = this._room;
    if (!room) return true;
    return !!s.resumed && (!s.room || s.room === room.name());
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
    if (!this._serverEnded && wasEstablished && room && room.isJoined() && this._token) {
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
    if (room) { this._roomCtl.teardown(reason); this._dropRoom(); }
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
    const ctl = this._roomCtl;
    if (room) {
      forgetResumeToken(room.name(), room.selfName() || this._username);
      ctl.teardown(reason);
      this._dropRoom();
      ctl.failed(reason, code);
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
        if (this._roomCtl) this._roomCtl.onEvent(m);
        return;
      case 'offer':
        if (this._roomCtl) this._roomCtl.onOffer(m);
        return;
      case 'candidate':
        if (this._roomCtl) this._roomCtl.onCandidate(m);
        return;
      default:
        console.warn('roomapi: unknown message', m.type);
    }
  }

  _onServerSession(m) {
    if (m.status === SESSION_STATUS.DISCONNECTED || m.status === SESSION_STATUS.FAILED) {
      this._serverEnded = true;
      this._stopReconnect();
      if (this._roomCtl) { this._roomCtl.teardown(m.reason || 'session ended'); this._dropRoom(); }
      // A session refused at once (TOO_MANY_SESSIONS, RATE_LIMITED) comes with its code.
      this._setStatus(m.status, m.code ? {reason: m.reason || '', code: m.code} : {reason: m.reason || ''});
    }
  }
}

function detach(ws) {
  ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
}

