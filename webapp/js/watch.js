// Parley viewer page (watch.html): a webinar's viewer watches the presenters, large, and chats.
// It never asks for the camera or the microphone. Every name and text from the network goes
// into the page with textContent, never innerHTML.

import RoomApi, {SESSION_STATUS, ROOM_EVENT, STREAM_STATUS} from './roomapi.js';
import {LivePlayer} from './liveplayer.js';

// WebRTC first; when its subscribe connection is not up this long after there is something to
// receive (ICE failed, through TURN too), the page plays over the WebSocket path instead.
const ICE_TIMEOUT_MS = 8000;

const $ = (sel) => document.querySelector(sel);
const ui = {
  roomName: $('#roomName'),
  nameForm: $('#nameForm'),
  name: $('#name'),
  passwordForm: $('#passwordForm'),
  password: $('#password'),
  live: $('#live'),
  viewers: $('#viewers'),
  path: $('#path'),
  status: $('#status'),
  presenterLink: $('#presenterLink'),
  error: $('#error'),
  autoplayHint: $('#autoplayHint'),
  presenters: $('#presenters'),
  waiting: $('#waiting'),
  ended: $('#ended'),
  replay: $('#replay'),
  replayVideo: $('#replayVideo'),
  chatLog: $('#chatLog'),
  chatForm: $('#chatForm'),
  chatText: $('#chatText'),
  chatSend: $('#chatSend'),
};

const params = new URLSearchParams(location.search);
const roomName = (params.get('room') || '').trim();

// An access token from an invite link, kept for this tab only (as the conference page does).
const TOKEN_KEY = 'parley.token:';
function tabStorage() { try { return window.sessionStorage; } catch { return null; } }
function storedAccessToken(room) {
  try { return (room && tabStorage()?.getItem(TOKEN_KEY + room)) || ''; } catch { return ''; }
}
if (params.has('token')) {
  try { if (roomName) tabStorage()?.setItem(TOKEN_KEY + roomName, params.get('token')); } catch { /* storage off */ }
  const q = new URLSearchParams(location.search);
  q.delete('token');
  try { history.replaceState(null, '', location.pathname + '?' + q.toString()); } catch { /* ignore */ }
}
function tokenName(token) {
  try {
    const part = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const c = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(part), (ch) => ch.charCodeAt(0))));
    return (typeof c.name === 'string' && c.name) || (typeof c.sub === 'string' && c.sub) || '';
  } catch { return ''; }
}

const state = {
  conn: null,
  room: null,
  name: '',
  password: '',
  livePassword: '', // the room's password, for the WebSocket path
  ended: false,
  path: '', // 'webrtc' or 'websocket'
  player: null, // LivePlayer on the WebSocket path
  watchdog: null,
};
const hasWebRTC = typeof window.RTCPeerConnection === 'function';
// For tests and the console.
window.parley = {state, RoomApi, hasWebRTC};

// ---------------------------------------------------------------- helpers

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function showError(errOrCode, reason) {
  let text;
  if (typeof errOrCode === 'string') text = reason ? `${errOrCode}: ${reason}` : errOrCode;
  else if (errOrCode && errOrCode.code) text = `${errOrCode.code}: ${errOrCode.reason ?? errOrCode.message}`;
  else text = String((errOrCode && errOrCode.message) || errOrCode);
  ui.error.textContent = text;
  ui.error.hidden = false;
}
ui.error.addEventListener('click', () => { ui.error.hidden = true; });

function setStatus(text) { ui.status.textContent = text || ''; }

function setPath(path) {
  ui.path.dataset.path = path;
  ui.path.textContent = path === 'webrtc' ? 'WebRTC'
    : path === 'websocket' ? 'Over WebSocket: WebRTC could not get through this network (a few seconds behind)' : '';
}

function setViewers(n) {
  ui.viewers.textContent = n === 1 ? '1 viewer' : `${n || 0} viewers`;
}

const pad = (n) => String(n).padStart(2, '0');
function chatLine(name, text, {ts, cls} = {}) {
  const log = ui.chatLog;
  const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 24;
  const d = new Date(ts || Date.now());
  const line = el('div', 'chat-line' + (cls ? ' ' + cls : ''));
  line.append(el('span', 'time', `${pad(d.getHours())}:${pad(d.getMinutes())}`), ' ', el('span', 'from', name), ' - ',
    el('span', 'text', text));
  log.append(line);
  if (stick) log.scrollTop = log.scrollHeight;
}

ui.chatForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const room = state.room;
  const text = ui.chatText.value;
  if (!room || !text.trim()) return;
  ui.chatText.value = '';
  room.sendMessage(text).then(({ts}) => chatLine(room.selfName(), text, {ts, cls: 'own'}), (err) => {
    showError(err);
    if (!ui.chatText.value) ui.chatText.value = text;
  });
});

function tryPlay(video) {
  const p = video.play();
  if (p && p.catch) p.catch((err) => { if (err && err.name === 'NotAllowedError') ui.autoplayHint.hidden = false; });
}
ui.autoplayHint.addEventListener('click', () => {
  ui.autoplayHint.hidden = true;
  for (const v of ui.presenters.querySelectorAll('video')) { v.muted = false; tryPlay(v); }
});

// ---------------------------------------------------------------- presenters (WebRTC)

function layout() {
  const n = ui.presenters.children.length;
  ui.presenters.style.setProperty('--cols', n <= 1 ? 1 : 2);
  ui.waiting.hidden = n > 0 || state.ended;
  ui.live.hidden = n === 0 || state.ended;
}

function tileFor(id) {
  for (const t of ui.presenters.children) if (t.dataset.stream === id) return t;
  return null;
}

function addTile(participant, stream) {
  if (state.path === 'websocket' || tileFor(stream.id())) return;
  const t = el('div', 'presenter');
  t.dataset.stream = stream.id();
  t.dataset.name = participant.name();
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.setAttribute('playsinline', '');
  video.addEventListener('loadedmetadata', () => tryPlay(video));
  t.append(video, el('span', 'label', stream.kind() === 'screen' ? `${participant.name()} (screen)` : participant.name()));
  ui.presenters.append(t);
  stream.play(video);
  layout();
}

function removeTile(id) {
  const t = tileFor(id);
  if (!t) return;
  const v = t.querySelector('video');
  if (v) v.srcObject = null;
  t.remove();
  layout();
}

function syncTiles(room) {
  const want = new Map();
  for (const p of room.getParticipants()) for (const s of p.getStreams()) want.set(s.id(), [p, s]);
  for (const t of [...ui.presenters.children]) if (!want.has(t.dataset.stream)) removeTile(t.dataset.stream);
  for (const [, [p, s]] of want) addTile(p, s);
}

function clearTiles() {
  for (const t of [...ui.presenters.children]) removeTile(t.dataset.stream);
}

// ---------------------------------------------------------------- the live's end

function showEnded(replay) {
  if (state.ended) return;
  state.ended = true;
  stopWatchdog();
  if (state.player) { state.player.stop(); state.player = null; }
  // Nothing stays open: the server releases a webinar's viewers, and the page lets go too.
  if (state.conn) state.conn.disconnect();
  clearTiles();
  ui.ended.hidden = false;
  ui.waiting.hidden = true;
  ui.live.hidden = true;
  ui.chatText.disabled = true;
  ui.chatSend.disabled = true;
  if (replay) {
    ui.replay.href = replay;
    ui.replay.hidden = false;
  }
  layout();
}

// ---------------------------------------------------------------- WebRTC or WebSocket

function stopWatchdog() {
  if (state.watchdog) clearInterval(state.watchdog);
  state.watchdog = null;
}

// watchWebRTC falls back to the WebSocket path when the subscribe connection does not come up.
function watchWebRTC(room) {
  if (state.watchdog || state.path !== 'webrtc') return;
  let since = 0;
  state.watchdog = setInterval(() => {
    if (state.room !== room || state.path !== 'webrtc' || state.ended) { stopWatchdog(); return; }
    const pcs = state.conn ? state.conn.peerConnections() : [];
    const pc = pcs[pcs.length - 1];
    if (!pc) return; // nothing to receive yet
    if (pc.connectionState === 'connected') { stopWatchdog(); return; }
    if (!since) since = Date.now();
    const failed = pc.connectionState === 'failed' || pc.iceConnectionState === 'failed';
    if (failed || Date.now() - since > ICE_TIMEOUT_MS) {
      stopWatchdog();
      useWebSocket('WebRTC could not connect');
    }
  }, 500);
}

// useWebSocket plays the presenter over the WebSocket path; the room stays joined (chat, count)
// without its media.
function useWebSocket(why) {
  if (state.path === 'websocket' || state.ended) return;
  console.info('watch: playing over WebSocket:', why);
  state.path = 'websocket';
  setPath('websocket');
  clearTiles();
  if (hasWebRTC && state.conn && state.room) joinRoom(state.conn, {subscribe: false}); // drops its WebRTC media
  const t = el('div', 'presenter');
  t.dataset.stream = 'live';
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.setAttribute('playsinline', '');
  const label = el('span', 'label', '');
  t.append(video, label);
  ui.presenters.append(t);
  layout();
  const player = new LivePlayer(video, {
    room: roomName, name: state.name, token: storedAccessToken(roomName) || undefined,
    password: state.livePassword || undefined,
    onStatus: (status, info) => {
      if (status === 'playing') {
        label.textContent = info.publisher || '';
        ui.waiting.hidden = true;
        ui.live.hidden = false;
      } else if (status === 'waiting') {
        ui.waiting.textContent = info.reason ? `Waiting: ${info.reason}` : 'Waiting for the presenter…';
        ui.waiting.hidden = false;
        ui.live.hidden = true;
      } else if (status === 'autoplay') {
        ui.autoplayHint.hidden = false;
      }
    },
    onEnded: (info) => showEnded(info.replay),
    onError: (code, reason) => { if (!state.ended) showError(code, reason); },
  });
  state.player = player;
  player.start();
}

// ---------------------------------------------------------------- session and room

function joinRoom(conn, {subscribe = hasWebRTC} = {}) {
  const password = state.password;
  state.password = '';
  if (password) state.livePassword = password;
  const room = conn.join({name: roomName, password: password || undefined, subscribe});
  state.room = room;
  const mine = (fn) => (...args) => { if (state.room === room) fn(...args); };
  room
    .on(ROOM_EVENT.STATE, mine(() => {
      ui.passwordForm.hidden = true;
      setStatus('');
      setViewers(room.viewers());
      const chat = room.hasGrant('chat');
      ui.chatText.disabled = !chat;
      ui.chatSend.disabled = !chat;
      ui.chatText.placeholder = chat ? 'Message' : 'You may read the chat, not write';
      // A participant who may publish belongs on the conference page.
      const presenter = room.hasGrant('publish:camera') || room.hasGrant('publish:microphone') || room.hasGrant('moderate');
      ui.presenterLink.hidden = !presenter;
      ui.presenterLink.href = '/?' + new URLSearchParams({room: roomName, name: room.selfName()}).toString();
      if (!state.path) state.path = hasWebRTC ? 'webrtc' : '';
      if (state.path === 'webrtc') {
        setPath('webrtc');
        syncTiles(room);
        watchWebRTC(room);
      } else {
        useWebSocket('this browser has no WebRTC');
      }
    }))
    .on(ROOM_EVENT.PUBLISHED, mine((p, s) => addTile(p, s)))
    .on(ROOM_EVENT.UNPUBLISHED, mine((p, s) => removeTile(s.id())))
    .on(ROOM_EVENT.LEFT, mine((p) => { for (const s of p.getStreams()) removeTile(s.id()); syncTiles(room); }))
    .on(ROOM_EVENT.STREAM_STATUS, mine((p, s) => { if (s.status() === STREAM_STATUS.FAILED) showError('FAILED', s.reason()); }))
    .on(ROOM_EVENT.VIEWERS, mine((r, info) => setViewers(info.viewers)))
    .on(ROOM_EVENT.MESSAGE, mine((m) => chatLine(m.from.name(), m.text, {ts: m.ts, cls: m.private ? 'private' : ''})))
    .on(ROOM_EVENT.LIVE_ENDED, mine((r, info) => showEnded(info.replay)))
    .on(ROOM_EVENT.ENDED, mine(() => showEnded('')))
    .on(ROOM_EVENT.FAILED, mine((r, info) => {
      clearTiles();
      if (info.code === 'PASSWORD_REQUIRED' || info.code === 'WRONG_PASSWORD') {
        ui.passwordForm.hidden = false;
        ui.password.focus();
      }
      if (!state.ended) showError(info.code || 'FAILED', info.reason);
    }));
}

function start(name) {
  state.name = name;
  ui.nameForm.hidden = true;
  setStatus('connecting…');
  const conn = RoomApi.connect({
    urlServer: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`,
    username: name,
    token: storedAccessToken(roomName) || undefined,
    // The conference page of this tab hands a participant taken off stage back here: resume it.
    resumeToken: RoomApi.storedResumeToken(roomName, name) || undefined,
  });
  state.conn = conn;
  conn
    .on(SESSION_STATUS.ESTABLISHED, () => { if (state.conn === conn && !state.room) joinRoom(conn); })
    .on(SESSION_STATUS.DISCONNECTED, (c, info) => {
      if (info.reconnecting) { setStatus('reconnecting…'); return; }
      setStatus(state.ended ? '' : 'disconnected');
      clearTiles();
    })
    .on(SESSION_STATUS.FAILED, (c, info) => {
      setStatus('');
      showError(info.code || 'FAILED', info.reason || 'connection failed');
    });
}

ui.nameForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = ui.name.value.trim();
  if (name) start(name);
});

ui.passwordForm.addEventListener('submit', (e) => {
  e.preventDefault();
  if (!ui.password.value) return;
  state.password = ui.password.value;
  ui.password.value = '';
  ui.passwordForm.hidden = true;
  if (state.conn) joinRoom(state.conn);
});

// ---------------------------------------------------------------- start

ui.roomName.textContent = roomName;
setViewers(0);
layout();
if (!roomName) {
  showError('INVALID_ROOM', 'this page needs ?room=ROOM');
} else {
  const name = (params.get('name') || '').trim() || tokenName(storedAccessToken(roomName));
  if (name) start(name);
  else { ui.nameForm.hidden = false; ui.name.focus(); }
}
