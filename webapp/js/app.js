// Parley conference page: the Flashphoner Conference example's flow on roomapi.js.
// Every name and text from the network goes into the page with textContent, never innerHTML.

import RoomApi, {SESSION_STATUS, ROOM_EVENT, STREAM_STATUS, CONNECTION_EVENT} from './roomapi.js';
import {toViewerPage, updateWebinarPanel} from './webinar.js';
import {prejoin} from './page/prejoin.js';
import {deviceConstraints} from './page/devices.js';
import {initDeviceMenu} from './page/devicemenu.js';
import {initTileTools, followBarHeight} from './page/tiles.js';
import {initPeople} from './page/people.js';
import {linkify, initChatPanel} from './page/chat.js';
import {initKeyboard} from './page/keys.js';
import {initQuality} from './page/quality.js';
import {ClipPanel} from './clips.js';
import {Speakers} from './speakers.js';

const $ = (sel) => document.querySelector(sel);

const ui = {
  form: $('#joinForm'),
  name: $('#name'),
  room: $('#room'),
  join: $('#join'),
  leave: $('#leave'),
  status: $('#status'),
  statusNote: $('#statusNote'),
  invite: $('#invite'),
  copyInvite: $('#copyInvite'),
  error: $('#error'),
  autoplayHint: $('#autoplayHint'),
  grid: $('#grid'),
  local: $('#local'),
  localVideo: $('#local video'),
  tiles: $('#tiles'),
  muteAudio: $('#muteAudio'),
  muteVideo: $('#muteVideo'),
  publishToggle: $('#publishToggle'),
  shareScreen: $('#shareScreen'),
  chatLog: $('#chatLog'),
  chatForm: $('#chatForm'),
  chatTo: $('#chatTo'),
  chatText: $('#chatText'),
  chatSend: $('#chatSend'),
  passwordForm: $('#passwordForm'),
  password: $('#password'),
  modControls: $('#modControls'),
  modLock: $('#modLock'),
  modRecord: $('#modRecord'),
  modEnd: $('#modEnd'),
};

const params = new URLSearchParams(location.search);
const CODECS = ['VP8', 'VP9', 'H264', 'AV1'];
const options = {
  codec: CODECS.includes((params.get('codec') || '').toUpperCase()) ? params.get('codec').toUpperCase() : undefined,
  relay: params.get('relay') === '1',
  record: params.get('record') === '1',  // also the Record checkbox
  publish: params.get('publish') !== '0', // 0: join without publishing the camera (messages only)
  gallery: params.get('view') === 'all', // every camera's video on the stage, however many
};

// An access token from an invite link (/?room=R&token=…): kept for this tab (so a reload
// rejoins) and taken out of the address bar at once, so it is not bookmarked, shared or
// sent on as a referrer.
const TOKEN_KEY = 'parley.token:';
function tabStorage() { try { return window.sessionStorage; } catch { return null; } }
function storedAccessToken(room) {
  try { return (room && tabStorage()?.getItem(TOKEN_KEY + room)) || ''; } catch { return ''; }
}
function storeAccessToken(room, token) {
  try { if (room && token) tabStorage()?.setItem(TOKEN_KEY + room, token); } catch { /* storage off */ }
}
// tokenClaims reads a token's payload for display only (the server verifies it): {name, sub, room}.
function tokenClaims(token) {
  try {
    const part = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    const c = JSON.parse(new TextDecoder().decode(bytes));
    return c && typeof c === 'object' ? c : {};
  } catch { return {}; }
}
if (params.has('token')) {
  storeAccessToken(params.get('room') || '', params.get('token'));
  const q = new URLSearchParams(location.search);
  q.delete('token');
  const rest = q.toString();
  try { history.replaceState(null, '', location.pathname + (rest ? '?' + rest : '')); } catch { /* ignore */ }
}

const state = {
  connection: null,
  room: null,
  name: '',
  roomName: '',
  camera: null, // LocalStream of the camera
  screen: null, // LocalStream of the screen share
  wantCamera: true, // publish the camera when in a room (false after #publishToggle stopped it)
  audioOnlyTried: false,
  password: '', // a room password to send with the next join (then forgotten)
  devices: null, // the pre-join screen's choice (page/prejoin.js), null when joined at once
};

window.parley = {connection: null, room: null, RoomApi, clips: null};
function expose() {
  window.parley.connection = state.connection;
  window.parley.room = state.room;
}

// ---------------------------------------------------------------- helpers

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

const pad = (n) => String(n).padStart(2, '0');
function hhmm(ts) {
  const d = new Date(ts || Date.now());
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function initial(name) {
  const ch = [...(name || '').trim()][0];
  return ch ? ch.toUpperCase() : '';
}

function showError(errOrCode, reason) {
  let text;
  if (typeof errOrCode === 'string') text = reason ? `${errOrCode}: ${reason}` : errOrCode;
  else if (errOrCode && errOrCode.code) text = `${errOrCode.code}: ${errOrCode.reason ?? errOrCode.message}`;
  else text = String((errOrCode && errOrCode.message) || errOrCode);
  ui.error.textContent = text;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.textContent = '';
  ui.error.hidden = true;
}

function setStatus(status, note = '') {
  ui.status.textContent = status || '';
  ui.status.dataset.status = status || '';
  ui.statusNote.textContent = note;
}

function updateInvite(room) {
  const path = room ? '/?room=' + encodeURIComponent(room) : '/';
  ui.invite.setAttribute('href', path);
  ui.invite.textContent = location.origin + path;
}

// Keeps room and name in the address so that a reload rejoins (and resumes) the same room.
function updateAddress(room, name) {
  const q = new URLSearchParams(location.search);
  if (room) q.set('room', room); else q.delete('room');
  if (name) q.set('name', name); else q.delete('name');
  const s = q.toString();
  try { history.replaceState(null, '', location.pathname + (s ? '?' + s : '')); } catch { /* ignore */ }
}

// ---------------------------------------------------------------- chat

function chatLine(name, text, {ts, cls, to} = {}) {
  const log = ui.chatLog;
  const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 24;
  const line = el('div', 'chat-line' + (cls ? ' ' + cls : ''));
  const from = el('span', 'from', name);
  if (to) from.dataset.to = to;
  const body = el('span', 'text');
  body.append(linkify(text));
  line.append(el('span', 'time', hhmm(ts)), ' ', from, ' - ', body);
  log.append(line);
  if (stick) log.scrollTop = log.scrollHeight;
}

function updateChatTo() {
  const sel = ui.chatTo;
  const current = sel.value;
  const names = state.room ? state.room.getParticipants().map((p) => p.name()).sort((a, b) => a.localeCompare(b)) : [];
  const have = [...sel.options].slice(1).map((o) => o.value);
  if (have.length !== names.length || have.some((n, i) => n !== names[i])) {
    while (sel.options.length > 1) sel.remove(1);
    for (const n of names) {
      const o = el('option', '', n);
      o.value = n;
      sel.append(o);
    }
  }
  sel.value = names.includes(current) ? current : '';
}

ui.chatForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const room = state.room;
  const text = ui.chatText.value;
  if (!room || !text.trim()) return;
  const to = ui.chatTo.value;
  const p = to ? room.getParticipant(to) : null;
  const sending = p ? p.sendMessage(text) : room.sendMessage(text, to || undefined);
  ui.chatText.value = '';
  sending.then(({ts}) => {
    chatLine(room.selfName(), text, {ts, cls: to ? 'own private' : 'own', to: to || undefined});
  }, (err) => {
    showError(err);
    if (!ui.chatText.value) ui.chatText.value = text;
  });
});

// ---------------------------------------------------------------- tiles and layout

function setControls(joined) {
  for (const b of [ui.publishToggle, ui.shareScreen, ui.chatText, ui.chatSend, $('#devicesButton')]) b.disabled = !joined;
  if (!joined) deviceMenu.close();
  if (!joined) {
    for (const b of [ui.publishToggle, ui.muteAudio, ui.muteVideo, ui.shareScreen]) b.hidden = false;
    ui.chatText.placeholder = 'Message';
  }
  ui.leave.disabled = !joined;
  document.body.classList.toggle('joined', joined);
  ui.join.disabled = joined;
  ui.name.disabled = joined;
  ui.room.disabled = joined;
  updateCameraButtons();
}

function updateCameraButtons() {
  const cam = state.camera;
  const live = !!cam && cam.status() !== STREAM_STATUS.FAILED;
  ui.muteAudio.disabled = !live || !cam.getMediaStream() || cam.getMediaStream().getAudioTracks().length === 0;
  ui.muteVideo.disabled = !live || !cam.getMediaStream() || cam.getMediaStream().getVideoTracks().length === 0;
  ui.muteAudio.textContent = live && cam.isAudioMuted() ? 'Unmute mic' : 'Mute mic';
  ui.muteVideo.textContent = live && cam.isVideoMuted() ? 'Start camera' : 'Stop camera';
  ui.publishToggle.textContent = cam ? 'Unpublish' : 'Publish';
  ui.shareScreen.textContent = state.screen ? 'Stop sharing' : 'Share screen';
  const hasVideo = live && cam.getMediaStream() && cam.getMediaStream().getVideoTracks().length > 0 && !cam.isVideoMuted();
  ui.local.classList.toggle('novideo', !hasVideo);
  people.render();
}

function updateLocalTile() {
  const name = state.room ? state.room.selfName() : (ui.name.value.trim() || state.name);
  ui.local.querySelector('.label').textContent = name ? `${name} (you)` : 'You';
  ui.local.querySelector('.initial').textContent = initial(name);
  ui.local.querySelector('.status').textContent = state.camera ? statusText(state.camera.status()) : '';
}

function statusText(s) { return s === 'NEW' ? '' : s; }

function tileFor(streamId) {
  for (const t of ui.tiles.children) if (t.dataset.stream === streamId) return t;
  return null;
}

function tryPlay(video) {
  const p = video.play();
  if (p && p.catch) {
    p.catch((err) => {
      if (err && err.name === 'NotAllowedError') ui.autoplayHint.hidden = false;
    });
  }
}

ui.autoplayHint.addEventListener('click', () => {
  ui.autoplayHint.hidden = true;
  for (const v of ui.tiles.querySelectorAll('video')) tryPlay(v);
});

// ---------------------------------------------------------------- moderation

const SOURCE_LABEL = {microphone: 'mic', camera: 'cam', screen: 'screen'};

function isModerator() { return !!state.room && state.room.hasGrant('moderate'); }

// modBar is the row of moderator buttons on a remote tile (shown to moderators only, by CSS).
function modBar(name, screen) {
  const bar = el('div', 'mod');
  const sources = screen ? ['screen'] : ['microphone', 'camera'];
  for (const src of sources) {
    const b = el('button', 'mod-mute', '');
    b.type = 'button';
    b.dataset.source = src;
    b.addEventListener('click', () => {
      const room = state.room;
      const p = room && room.getParticipant(name);
      if (!p) return;
      const req = p.isMuted(src) ? room.unmuteParticipant(name, src) : room.muteParticipant(name, src);
      req.catch(showError);
    });
    bar.append(b);
  }
  const rm = el('button', 'mod-remove danger', 'Remove');
  rm.type = 'button';
  rm.title = 'Remove from the room (and keep out until the room ends)';
  rm.addEventListener('click', () => {
    const room = state.room;
    if (room) room.removeParticipant(name, {bar: true}).catch(showError);
  });
  bar.append(rm);
  return bar;
}

// updateMuteMarks shows, on every tile of name, which sources a moderator muted.
function updateMuteMarks(name) {
  const p = state.room && state.room.getParticipant(name);
  const muted = p ? p.mutedSources() : [];
  for (const t of ui.tiles.children) {
    if (t.dataset.name !== name) continue;
    t.dataset.muted = muted.join(' ');
    const mark = t.querySelector('.muted-mark');
    if (mark) mark.textContent = muted.length ? muted.map((s) => SOURCE_LABEL[s] + ' muted').join(', ') : '';
    for (const b of t.querySelectorAll('.mod-mute')) {
      const src = b.dataset.source;
      b.textContent = (muted.includes(src) ? 'Unmute ' : 'Mute ') + SOURCE_LABEL[src];
    }
  }
}

function updateModControls() {
  const room = state.room;
  const mod = isModerator();
  document.body.classList.toggle('moderator', mod);
  ui.modControls.hidden = !mod;
  if (!room) return;
  ui.modLock.textContent = room.isLocked() ? 'Unlock room' : 'Lock room';
  ui.modRecord.textContent = room.isRecording() ? 'Stop recording' : 'Start recording';
  const rec = document.getElementById('rec');
  if (rec) rec.hidden = !room.isRecording();
}

ui.modLock.addEventListener('click', () => {
  const room = state.room;
  if (room) (room.isLocked() ? room.unlock() : room.lock()).catch(showError);
});
ui.modRecord.addEventListener('click', () => {
  const room = state.room;
  if (room) (room.isRecording() ? room.stopRecording() : room.startRecording()).catch(showError);
});
ui.modEnd.addEventListener('click', () => {
  const room = state.room;
  if (room && window.confirm('End the meeting for everyone?')) room.end().catch(showError);
});

function addTile(participant, stream) {
  let t = tileFor(stream.id());
  if (t) { updateTile(t, stream); return t; }
  const name = participant.name();
  const screen = stream.kind() === 'screen';
  t = el('div', 'tile remote');
  t.dataset.stream = stream.id();
  t.dataset.name = name;
  t.dataset.kind = screen ? 'screen' : 'camera';
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.setAttribute('playsinline', '');
  video.addEventListener('loadedmetadata', () => tryPlay(video));
  const ph = el('div', 'placeholder');
  ph.append(el('span', 'initial', initial(name)));
  const meta = el('div', 'meta');
  meta.append(el('span', 'label', screen ? `${name} (screen)` : name), el('span', 'muted-mark', ''), el('span', 'status', ''),
    el('span', 'quality', ''));
  t.append(video, ph, el('div', 'reason'), meta, modBar(name, screen));
  ui.tiles.append(t);
  stream.play(video);
  updateTile(t, stream);
  updateMuteMarks(name);
  layout();
  return t;
}

function updateTile(t, stream) {
  const status = stream.status();
  const reason = stream.reason();
  t.dataset.status = status;
  t.querySelector('.status').textContent = status;
  const failed = status === STREAM_STATUS.FAILED;
  // The server paused the video (this link cannot carry it): the name and why, not a frozen
  // picture; it comes back by itself.
  const paused = status === STREAM_STATUS.PLAYING && stream.videoPaused();
  const noVideo = failed || (status === STREAM_STATUS.PLAYING && !!reason) || paused;
  t.classList.toggle('undecodable', noVideo && !paused);
  t.classList.toggle('paused', paused);
  t.classList.toggle('novideo', !stream.hasVideo() || paused);
  t.querySelector('.reason').textContent = noVideo ? (reason || (paused ? 'video paused: the connection is too slow'
    : 'this stream cannot be played here')) : '';
}

// showQuality puts how this page receives a stream (its receiver reports, as the server read them)
// on the tile's info: the video's loss, jitter and round trip in the corner, both kinds in its title.
function showQuality(t, q) {
  const span = t.querySelector('.quality');
  if (!span) return;
  const main = q.video || q.audio;
  if (!main) return;
  const fmt = (x) => `loss ${x.lossPct.toFixed(1)}% · jitter ${Math.round(x.jitterMs)} ms` +
    (x.rttMs > 0 ? ` · rtt ${Math.round(x.rttMs)} ms` : '');
  span.textContent = fmt(main);
  span.title = Object.entries(q).map(([kind, x]) => `${kind}: ${fmt(x)}`).join('\n');
  span.dataset.level = main.lossPct >= 5 || main.rttMs >= 300 ? 'bad' : main.lossPct >= 1 || main.rttMs >= 150 ? 'fair' : 'good';
}

function removeTile(t) {
  if (!t) return;
  const v = t.querySelector('video');
  if (v) v.srcObject = null;
  t.remove();
  layout();
}

function removeTilesOf(name) {
  for (const t of [...ui.tiles.children]) if (t.dataset.name === name) removeTile(t);
}

function syncTiles(room) {
  const want = new Map();
  for (const p of room.getParticipants()) for (const s of p.getStreams()) want.set(s.id(), [p, s]);
  for (const t of [...ui.tiles.children]) if (!want.has(t.dataset.stream)) removeTile(t);
  for (const [, [p, s]] of want) addTile(p, s);
}

function clearTiles() {
  for (const t of [...ui.tiles.children]) removeTile(t);
  removeLocalScreenTile();
}

function localScreenTile(stream) {
  let t = $('#localScreen');
  if (!t) {
    t = el('div', 'tile local');
    t.id = 'localScreen';
    t.dataset.kind = 'screen';
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    video.setAttribute('playsinline', '');
    const meta = el('div', 'meta');
    meta.append(el('span', 'label', 'Your screen'), el('span', 'status', ''));
    t.append(video, el('div', 'reason'), meta);
    ui.local.after(t);
    layout();
  }
  if (stream) t.querySelector('.status').textContent = statusText(stream.status());
  return t;
}

function removeLocalScreenTile() {
  const t = $('#localScreen');
  if (t) { const v = t.querySelector('video'); if (v) v.srcObject = null; t.remove(); layout(); }
}

// layout picks the column count that gives the largest 16:9 tiles in the grid; a screen share
// spans 2×2 cells when there are other tiles, and its size counts double.
const GAP = 8;
function layout() {
  const grid = ui.grid;
  const tiles = [...grid.querySelectorAll('.tile')].filter((t) => !t.hidden);
  const n = Math.max(tiles.length, 1);
  // The dominant speaker's tile (speakers.js) is big like a screen share, when there is none.
  const screens = tiles.filter((t) => t.dataset.kind === 'screen' || t.classList.contains('big')).length;
  const W = grid.clientWidth;
  const H = grid.clientHeight;
  if (!W || !H) return;
  let best = null;
  for (let cols = 1; cols <= n + 3 * screens; cols++) {
    const span = screens && n > 1 && cols >= 2 ? 2 : 1;
    const cells = n - screens + screens * span * span;
    const rows = Math.max(Math.ceil(cells / cols), span);
    const w = (W - GAP * (cols - 1)) / cols;
    const h = (H - GAP * (rows - 1)) / rows;
    // Width of the largest 16:9 picture that fits a cell (and the screen share's cells).
    const cam = Math.min(w, (h * 16) / 9);
    const shared = Math.min(w * span + GAP * (span - 1), ((h * span + GAP * (span - 1)) * 16) / 9);
    const size = screens ? 2 * shared + cam : cam;
    if (!best || size > best.size + 0.5) best = {cols, rows, span, size};
    if (cols >= cells) break;
  }
  grid.style.setProperty('--cols', best.cols);
  grid.style.setProperty('--rows', best.rows);
  grid.style.setProperty('--span', best.span);
}
new ResizeObserver(() => layout()).observe(ui.grid);
initTileTools(ui.grid, {onLayout: () => layout()});
followBarHeight(document.querySelector('.controls'));
initQuality(ui.grid, () => (state.connection ? state.connection.peerConnections() : []));

const people = initPeople({
  grid: ui.grid, list: $('#peopleList'), count: $('#peopleCount'), handCount: $('#handCount'),
  button: $('#peopleButton'), panel: $('#peoplePanel'), hand: $('#handButton'), close: $('#peopleClose'),
  summary: $('#peopleSummary'),
  alone: $('#alone'), aloneLink: $('#aloneLink'), aloneCopy: $('#aloneCopy'),
}, {selfStream: () => state.camera, error: (err) => showError(err)});

initChatPanel({button: $('#chatButton'), badge: $('#chatUnread'), panel: $('#chatPanel'), log: ui.chatLog, input: ui.chatText},
  {narrow: window.matchMedia('(max-width: 760px)')});
initKeyboard({M: ui.muteAudio, V: ui.muteVideo});

const deviceMenu = initDeviceMenu({
  button: $('#devicesButton'), panel: $('#devicePanel'), cam: $('#callCam'), mic: $('#callMic'),
  speaker: $('#callSpeaker'), speakerField: $('#callSpeakerField'), speakerRoot: ui.tiles,
}, {
  stream: () => state.camera,
  note: (text) => { $('#callNote').textContent = text; setTimeout(() => { if ($('#callNote').textContent === text) $('#callNote').textContent = ''; }, 8000); },
  error: (text) => showError(text),
});

// Who speaks: highlights, the dominant speaker's big tile, the stage of recent speakers.
const speakers = new Speakers({grid: ui.grid, tiles: ui.tiles, local: ui.local, relayout: () => layout(),
  gallery: options.gallery});
window.parley.speakers = speakers;

// ---------------------------------------------------------------- publishing

// cameraConstraints returns what the camera stream may capture under the room's grants
// (null: nothing), so the page never offers a track the server would refuse.
function cameraConstraints(room) {
  const video = room.hasGrant('publish:camera');
  const audio = room.hasGrant('publish:microphone');
  if (!video && !audio) return null;
  if (state.devices) return deviceConstraints(state.devices, {video, audio});
  return video && audio ? undefined : {video, audio};
}

// applyGrants enables only the controls the participant's grants allow.
function applyGrants(room) {
  const canPublish = room.hasGrant('publish:camera') || room.hasGrant('publish:microphone');
  ui.publishToggle.hidden = !canPublish;
  ui.muteAudio.hidden = !room.hasGrant('publish:microphone');
  ui.muteVideo.hidden = !room.hasGrant('publish:camera');
  ui.shareScreen.hidden = !room.hasGrant('publish:screen');
  const chat = room.hasGrant('chat');
  ui.chatText.disabled = !chat;
  ui.chatSend.disabled = !chat;
  ui.chatText.placeholder = chat ? 'Message' : 'You may read the chat, not write';
}

function publishCamera(constraints) {
  const room = state.room;
  if (!room || state.camera) return;
  const video = ui.localVideo;
  const d = state.devices;
  const mute = d ? {audio: !d.micOn, video: !d.cameraOn} : undefined;
  const s = room.publish({kind: 'camera', display: video, codec: options.codec, constraints, mute});
  state.camera = s;
  const refresh = () => { if (state.camera === s) { updateLocalTile(); updateCameraButtons(); } };
  s.on(STREAM_STATUS.PUBLISHING, refresh)
    .on(STREAM_STATUS.UNPUBLISHED, () => {
      if (state.camera !== s) return;
      state.camera = null;
      video.srcObject = null;
      refresh();
      updateLocalTile();
      updateCameraButtons();
    })
    .on(STREAM_STATUS.FAILED, (stream, info) => {
      if (state.camera !== s) return;
      if (!info.code) { refresh(); return; } // reported by the server, may recover (ICE restart)
      state.camera = null;
      video.srcObject = null;
      updateLocalTile();
      ui.local.querySelector('.status').textContent = STREAM_STATUS.FAILED;
      updateCameraButtons();
      const wantedVideo = !constraints || constraints.video !== false;
      if (info.code === 'MEDIA' && wantedVideo && !state.audioOnlyTried && state.room === room &&
          room.hasGrant('publish:microphone')) {
        // No camera (or not allowed): try the microphone alone.
        state.audioOnlyTried = true;
        publishCamera({audio: true, video: false});
        return;
      }
      showError(info.code, info.reason);
    });
  s.ready.then(refresh, () => {});
  updateLocalTile();
  updateCameraButtons();
}

function startScreenShare() {
  const room = state.room;
  if (!room || state.screen) return;
  const s = room.publish({kind: 'screen', codec: options.codec, display: null});
  state.screen = s;
  const done = () => {
    if (state.screen !== s) return;
    state.screen = null;
    removeLocalScreenTile();
    updateCameraButtons();
  };
  s.on(STREAM_STATUS.PUBLISHING, () => { if (state.screen === s) localScreenTile(s); })
    .on(STREAM_STATUS.UNPUBLISHED, done)
    .on(STREAM_STATUS.FAILED, (stream, info) => {
      if (!info.code) { if (state.screen === s) localScreenTile(s); return; }
      done();
      // Cancelling the browser's picker is no error worth showing.
      if (!(info.code === 'MEDIA' && /NotAllowedError|AbortError/.test(info.reason || ''))) showError(info.code, info.reason);
    });
  s.ready.then(() => {
    if (state.screen !== s) return;
    const t = localScreenTile(s);
    const v = t.querySelector('video');
    v.srcObject = s.getMediaStream();
    tryPlay(v);
  }, () => {});
  updateCameraButtons();
}

// unmuteLocal turns a source back on; if a moderator muted it, the server must agree first.
function unmuteLocal(source, turnOn) {
  const room = state.room;
  if (room && room.mutedSources().includes(source)) {
    room.unmute(source).then(() => { turnOn(); updateCameraButtons(); }, showError);
    return;
  }
  turnOn();
}

ui.muteAudio.addEventListener('click', () => {
  const cam = state.camera;
  if (!cam) return;
  if (cam.isAudioMuted()) unmuteLocal('microphone', () => cam.unmuteAudio()); else cam.muteAudio();
  updateCameraButtons();
});

ui.muteVideo.addEventListener('click', () => {
  const cam = state.camera;
  if (!cam) return;
  if (cam.isVideoMuted()) unmuteLocal('camera', () => cam.unmuteVideo()); else cam.muteVideo();
  updateCameraButtons();
});

ui.publishToggle.addEventListener('click', () => {
  if (!state.room) return;
  if (state.camera) {
    state.wantCamera = false;
    const cam = state.camera;
    cam.stop().catch(showError);
  } else {
    state.wantCamera = true;
    state.audioOnlyTried = false;
    clearError();
    const c = cameraConstraints(state.room);
    if (c !== null) publishCamera(c);
  }
  updateCameraButtons();
});

ui.shareScreen.addEventListener('click', () => {
  if (state.screen) state.screen.stop().catch(showError);
  else { clearError(); startScreenShare(); }
  updateCameraButtons();
});

// ---------------------------------------------------------------- session and room

function resetRoomUi() {
  clipPanel.detach();
  speakers.reset();
  document.body.classList.remove('moderator');
  ui.modControls.hidden = true;
  clearTiles();
  state.camera = null;
  state.screen = null;
  ui.localVideo.srcObject = null;
  state.room = null;
  expose();
  updateChatTo();
  setControls(false);
  updateLocalTile();
  layout();
}

// Why a recording stopped, for people (RECORDING STOPPED reasons).
const RECORDING_STOPPED = {
  QUOTA_DURATION: 'the meeting reached the longest recording this server allows',
  QUOTA_BYTES: 'the meeting reached the largest recording this server allows',
  DISK_LOW: 'the server is low on disk space',
};

// showRecording shows the link to this meeting's recording (the server signs
// one for everyone present while it records) and why a recording stopped.
function showRecording(info) {
  const rec = document.getElementById('rec');
  if (rec && info.status === 'STOPPED') rec.hidden = true;
  const link = document.getElementById('recordingLink');
  if (link && info.url) {
    link.href = info.url;
    link.hidden = false;
    link.title = 'This meeting\'s recording: it can be watched there once the meeting is over and mixed' +
      (info.expires ? ' (link valid until ' + info.expires.toLocaleString() + ')' : '');
  }
  if (info.status === 'STARTED' && info.by) {
    if (rec) rec.hidden = false;
    chatLine('recording', `recording started by ${info.by}`, {cls: 'system'});
  } else if (info.status === 'STARTED') {
    chatLine('recording', 'this meeting is recorded; the link "Your recording" opens it once the meeting is over', {cls: 'system'});
  } else if (info.status === 'STOPPED' && info.by) {
    chatLine('recording', `recording stopped by ${info.by}`, {cls: 'system'});
  } else if (info.status === 'STOPPED') {
    chatLine('recording', 'recording stopped: ' + (RECORDING_STOPPED[info.reason] || info.reason || 'stopped') +
      (info.url ? '; what was recorded stays available through "Your recording"' : ''), {cls: 'system'});
  }
}

function hideRecordingLink() {
  const link = document.getElementById('recordingLink');
  if (link) link.hidden = true;
}

function joinRoom() {
  hideRecordingLink();
  const conn = state.connection;
  const recordBox = document.getElementById('record');
  const record = options.record || (recordBox && recordBox.checked);
  const password = state.password;
  state.password = '';
  const room = conn.join({name: state.roomName, record: record || undefined, password: password || undefined});
  state.room = room;
  state.audioOnlyTried = false;
  expose();
  people.attach(room);
  const mine = (fn) => (...args) => { if (state.room === room) fn(...args); };
  room
    .on(ROOM_EVENT.STATE, mine(() => {
      if (toViewerPage(room)) return; // a webinar's viewer watches on watch.html
      updateWebinarPanel(room, showError);
      ui.passwordForm.hidden = true;
      const names = room.getParticipants().map((p) => p.name());
      chatLine('chat', names.length ? 'participants: ' + names.join(', ') : 'room is empty', {cls: 'system'});
      setControls(true);
      syncTiles(room);
      updateChatTo();
      updateLocalTile();
      updateInvite(room.name());
      updateAddress(room.name(), room.selfName());
      const rec = document.getElementById('rec');
      if (rec) rec.hidden = !room.isRecording();
      applyGrants(room);
      updateModControls();
      for (const p of room.getParticipants()) updateMuteMarks(p.name());
      const constraints = cameraConstraints(room);
      if (state.wantCamera && !state.camera && constraints !== null) publishCamera(constraints);
      room.ready.then(() => { if (state.room === room) clipPanel.attach(room); }, () => {});
    }))
    .on(ROOM_EVENT.VIEWERS, mine(() => updateWebinarPanel(room, showError)))
    .on(ROOM_EVENT.STAGED, mine((p, info) => {
      p._staged = true;
      chatLine(p.name(), `brought on stage by ${info.by}`, {cls: 'system'});
      updateWebinarPanel(room, showError);
    }))
    .on(ROOM_EVENT.UNSTAGED, mine((p, info) => {
      p._staged = false;
      chatLine(p.name(), `taken off stage by ${info.by}`, {cls: 'system'});
      updateWebinarPanel(room, showError);
    }))
    .on(ROOM_EVENT.JOINED, mine((p) => {
      updateWebinarPanel(room, showError);
      chatLine(p.name(), 'joined', {cls: 'system'});
      updateChatTo();
    }))
    .on(ROOM_EVENT.LEFT, mine((p, info) => {
      chatLine(p.name(), 'left', {cls: 'system'});
      const last = ui.chatLog.lastElementChild;
      if (last && info && info.reason) last.title = info.reason;
      removeTilesOf(p.name());
      updateChatTo();
      updateWebinarPanel(room, showError);
    }))
    .on(ROOM_EVENT.PUBLISHED, mine((p, s) => addTile(p, s)))
    .on(ROOM_EVENT.UNPUBLISHED, mine((p, s) => removeTile(tileFor(s.id()))))
    .on(ROOM_EVENT.STREAM_STATUS, mine((p, s) => {
      const t = tileFor(s.id());
      if (t) updateTile(t, s);
    }))
    .on(ROOM_EVENT.QUALITY, mine((p, s, q) => {
      const t = tileFor(s.id());
      if (t) showQuality(t, q);
    }))
    .on(ROOM_EVENT.MESSAGE, mine((m) => {
      chatLine(m.from.name(), m.text, {ts: m.ts, cls: m.private ? 'private' : ''});
    }))
    .on(ROOM_EVENT.MUTED, mine((p, info) => onMuteEvent(room, p, info, true)))
    .on(ROOM_EVENT.UNMUTED, mine((p, info) => onMuteEvent(room, p, info, false)))
    .on(ROOM_EVENT.REMOVED, mine((p, info) => {
      if (info.self) return; // FAILED follows, with the reason
      chatLine(p.name(), `removed by ${info.by}`, {cls: 'system'});
    }))
    .on(ROOM_EVENT.LOCKED, mine((r, info) => { chatLine('chat', `room locked by ${info.by}`, {cls: 'system'}); updateModControls(); }))
    .on(ROOM_EVENT.UNLOCKED, mine((r, info) => { chatLine('chat', `room unlocked by ${info.by}`, {cls: 'system'}); updateModControls(); }))
    .on(ROOM_EVENT.ENDED, mine((r, info) => chatLine('chat', `the meeting was ended by ${info.by}`, {cls: 'system'})))
    .on(ROOM_EVENT.RECORDING, mine((r, info) => { showRecording(info); updateModControls(); }))
    .on(ROOM_EVENT.ACTIVE_SPEAKERS, mine((r, info) => speakers.update(info)))
    .on(ROOM_EVENT.FAILED, mine((r, info) => {
      showError(info.code || 'FAILED', info.reason);
      resetRoomUi();
      if (info.code === 'PASSWORD_REQUIRED' || info.code === 'WRONG_PASSWORD') askPassword();
    }));
}

function onMuteEvent(room, p, info, muted) {
  const what = `${info.source} ${muted ? 'muted' : 'unmuted'} by ${info.by}`;
  if (info.self) {
    chatLine(room.selfName(), 'your ' + what, {cls: 'system'});
    updateCameraButtons();
    return;
  }
  chatLine(p.name(), what, {cls: 'system'});
  updateMuteMarks(p.name());
}

function onEstablished(conn) {
  if (conn !== state.connection) return;
  $('#reconnecting').hidden = true;
  setStatus(SESSION_STATUS.ESTABLISHED);
  const max = conn.limits().maxTextBytes;
  if (max) ui.chatText.maxLength = max;
  if (!state.room) joinRoom();
}

function join(name, roomName) {
  name = (name || '').trim();
  roomName = (roomName || '').trim();
  if (!name || !roomName) {
    showError('INVALID_NAME', !name ? 'enter your name' : 'enter a room name');
    return;
  }
  clearError();
  state.name = name;
  state.roomName = roomName;
  state.wantCamera = options.publish;
  ui.name.value = name;
  ui.room.value = roomName;
  updateInvite(roomName);
  updateLocalTile();
  ui.join.disabled = true;
  const old = state.connection;
  if (old && old.status() === SESSION_STATUS.ESTABLISHED && old.username() === name) {
    joinRoom();
    return;
  }
  state.connection = null;
  if (old) old.disconnect();
  const conn = RoomApi.connect({
    urlServer: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`,
    username: name,
    token: storedAccessToken(roomName) || undefined,
    resumeToken: RoomApi.storedResumeToken(roomName, name) || undefined,
    iceTransportPolicy: options.relay ? 'relay' : undefined,
  });
  state.connection = conn;
  state.room = null;
  expose();
  const mine = (fn) => (...args) => { if (state.connection === conn) fn(...args); };
  conn
    .on(SESSION_STATUS.ESTABLISHED, () => onEstablished(conn))
    .on(SESSION_STATUS.DISCONNECTED, mine((c, info) => {
      if (info.reconnecting) {
        setStatus(SESSION_STATUS.DISCONNECTED, 'reconnecting…');
        $('#reconnecting').hidden = false;
        return;
      }
      $('#reconnecting').hidden = true;
      setStatus(SESSION_STATUS.DISCONNECTED, info.reason || '');
      resetRoomUi();
      if (info.reason && info.reason !== 'disconnected by the client') showError(SESSION_STATUS.DISCONNECTED, info.reason);
    }))
    .on(SESSION_STATUS.FAILED, mine((c, info) => {
      $('#reconnecting').hidden = true;
      setStatus(SESSION_STATUS.FAILED);
      resetRoomUi();
      showError(info.code || SESSION_STATUS.FAILED, info.reason || 'connection failed');
    }))
    .on(CONNECTION_EVENT.ERROR, mine((err) => showError(err)));
}

// askPassword shows the room password box; its submit joins again with the password
// (the server limits wrong guesses per address: RATE_LIMITED says how long to wait).
function askPassword() {
  ui.passwordForm.hidden = false;
  ui.password.value = '';
  ui.password.focus();
}

ui.passwordForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const pw = ui.password.value;
  if (!pw) return;
  ui.password.value = '';
  ui.passwordForm.hidden = true;
  state.password = pw;
  join(state.name || ui.name.value, state.roomName || ui.room.value);
});

ui.form.addEventListener('submit', (e) => {
  e.preventDefault();
  join(ui.name.value, ui.room.value);
});

ui.leave.addEventListener('click', () => {
  const room = state.room;
  if (!room) return;
  state.wantCamera = false;
  resetRoomUi();
  chatLine('chat', 'you left the room', {cls: 'system'});
  updateAddress(room.name(), '');
  room.leave().catch(showError);
  state.wantCamera = true;
});

ui.error.addEventListener('click', clearError);
ui.room.addEventListener('input', () => { if (!state.room) updateInvite(ui.room.value.trim()); });
ui.name.addEventListener('input', () => { if (!state.room) updateLocalTile(); });

ui.copyInvite.addEventListener('click', async () => {
  const url = ui.invite.href;
  try {
    await navigator.clipboard.writeText(url);
  } catch {
    const ta = el('textarea');
    ta.value = url;
    document.body.append(ta);
    ta.select();
    try { document.execCommand('copy'); } catch { /* ignore */ }
    ta.remove();
  }
  const old = ui.copyInvite.textContent;
  ui.copyInvite.textContent = 'Copied';
  setTimeout(() => { ui.copyInvite.textContent = old; }, 1500);
});

// ---------------------------------------------------------------- media messages

const clipPanel = new ClipPanel(document.getElementById('clips'), {onError: (err) => showError(err)});
window.parley.clips = clipPanel;

// ---------------------------------------------------------------- start

setControls(false);
updateLocalTile();
{
  const room = params.get('room') || '';
  const token = storedAccessToken(room);
  const claims = token ? tokenClaims(token) : {};
  const tokenName = typeof claims.name === 'string' && claims.name ? claims.name : (typeof claims.sub === 'string' ? claims.sub : '');
  const name = params.get('name') || tokenName;
  ui.room.value = room;
  ui.name.value = name;
  updateInvite(room);
  updateLocalTile();
  layout();
  if (room && name) join(name, room);
  else if (room) {
    // An invite link: check camera and microphone first (page/prejoin.js), then join.
    document.body.classList.add('prejoining');
    prejoin(document.getElementById('prejoin'), {room, name: ''}).then((choice) => {
      document.body.classList.remove('prejoining');
      state.devices = choice;
      deviceMenu.setSpeaker(choice.speaker);
      join(choice.name, room);
      layout();
    });
  }
  else ui.name.focus();
}
