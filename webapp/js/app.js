// Parley conference page: the Flashphoner Conference example's flow on roomapi.js.
// Every name and text from the network goes into the page with textContent, never innerHTML.
//
// This file holds the page's state and flow: the session, joining, the room's events, and
// publishing the camera and the screen. The views are modules in page/: the grid and its tiles
// (grid.js, tiles.js, quality.js, people.js), the chat (chat.js), devices (prejoin.js,
// devices.js, devicemenu.js), moderation (moderation.js), the recording (recording.js),
// invites (invite.js) and the keyboard (keys.js).

import RoomApi, {SESSION_STATUS, ROOM_EVENT, STREAM_STATUS, CONNECTION_EVENT} from './roomapi.js';
import {toViewerPage, updateWebinarPanel, markStaged} from './webinar.js';
import {prejoin} from './page/prejoin.js';
import {deviceConstraints} from './page/devices.js';
import {initDeviceMenu} from './page/devicemenu.js';
import {initTileTools, followBarHeight} from './page/tiles.js';
import {initPeople} from './page/people.js';
import {initChatPanel, initChatLog} from './page/chat.js';
import {initGrid} from './page/grid.js';
import {initModControls} from './page/moderation.js';
import {showRecording, hideRecordingLink} from './page/recording.js';
import {storedAccessToken, takeAccessToken, tokenName, updateInvite, updateAddress, initCopyInvite} from './page/invite.js';
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

takeAccessToken(params);

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

// ---------------------------------------------------------------- views (page/)

const roomOf = () => state.room;
const chat = initChatLog({log: ui.chatLog, form: ui.chatForm, to: ui.chatTo, text: ui.chatText}, {room: roomOf, error: (err) => showError(err)});
const chatLine = chat.line;
const updateChatTo = chat.updateTo;
const grid = initGrid({grid: ui.grid, tiles: ui.tiles, local: ui.local, autoplayHint: ui.autoplayHint},
  {room: roomOf, error: (err) => showError(err)});
const layout = grid.layout;
const modControls = initModControls({controls: ui.modControls, lock: ui.modLock, record: ui.modRecord, end: ui.modEnd},
  {room: roomOf, error: (err) => showError(err)});
initCopyInvite(ui.copyInvite, ui.invite);

// ---------------------------------------------------------------- controls

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
  grid.localVideo(!!hasVideo);
  people.render();
}

function updateLocalTile(status) {
  const name = state.room ? state.room.selfName() : (ui.name.value.trim() || state.name);
  grid.showLocal(name, status || (state.camera ? state.camera.status() : ''));
}

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
      updateLocalTile(STREAM_STATUS.FAILED);
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
    grid.removeLocalScreen();
    updateCameraButtons();
  };
  s.on(STREAM_STATUS.PUBLISHING, () => { if (state.screen === s) grid.localScreen(s); })
    .on(STREAM_STATUS.UNPUBLISHED, done)
    .on(STREAM_STATUS.FAILED, (stream, info) => {
      if (!info.code) { if (state.screen === s) grid.localScreen(s); return; }
      done();
      // Cancelling the browser's picker is no error worth showing.
      if (!(info.code === 'MEDIA' && /NotAllowedError|AbortError/.test(info.reason || ''))) showError(info.code, info.reason);
    });
  s.ready.then(() => {
    if (state.screen === s) grid.showLocalScreen(s);
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
  grid.clear();
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
      grid.sync(room);
      updateChatTo();
      updateLocalTile();
      updateInvite(ui.invite, room.name());
      updateAddress(room.name(), room.selfName());
      const rec = document.getElementById('rec');
      if (rec) rec.hidden = !room.isRecording();
      applyGrants(room);
      modControls.update();
      for (const p of room.getParticipants()) grid.markMutes(p.name());
      const constraints = cameraConstraints(room);
      if (state.wantCamera && !state.camera && constraints !== null) publishCamera(constraints);
      room.ready.then(() => { if (state.room === room) clipPanel.attach(room); }, () => {});
    }))
    .on(ROOM_EVENT.VIEWERS, mine(() => updateWebinarPanel(room, showError)))
    .on(ROOM_EVENT.STAGED, mine((p, info) => {
      markStaged(room, p.name(), true);
      chatLine(p.name(), `brought on stage by ${info.by}`, {cls: 'system'});
      updateWebinarPanel(room, showError);
    }))
    .on(ROOM_EVENT.UNSTAGED, mine((p, info) => {
      markStaged(room, p.name(), false);
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
      grid.removeOf(p.name());
      updateChatTo();
      updateWebinarPanel(room, showError);
    }))
    .on(ROOM_EVENT.PUBLISHED, mine((p, s) => grid.add(p, s)))
    .on(ROOM_EVENT.UNPUBLISHED, mine((p, s) => grid.remove(s.id())))
    .on(ROOM_EVENT.STREAM_STATUS, mine((p, s) => grid.update(s)))
    .on(ROOM_EVENT.QUALITY, mine((p, s, q) => grid.showQuality(s, q)))
    .on(ROOM_EVENT.MESSAGE, mine((m) => {
      chatLine(m.from.name(), m.text, {ts: m.ts, cls: m.private ? 'private' : ''});
    }))
    .on(ROOM_EVENT.MUTED, mine((p, info) => onMuteEvent(room, p, info, true)))
    .on(ROOM_EVENT.UNMUTED, mine((p, info) => onMuteEvent(room, p, info, false)))
    .on(ROOM_EVENT.REMOVED, mine((p, info) => {
      if (info.self) return; // FAILED follows, with the reason
      chatLine(p.name(), `removed by ${info.by}`, {cls: 'system'});
    }))
    .on(ROOM_EVENT.LOCKED, mine((r, info) => { chatLine('chat', `room locked by ${info.by}`, {cls: 'system'}); modControls.update(); }))
    .on(ROOM_EVENT.UNLOCKED, mine((r, info) => { chatLine('chat', `room unlocked by ${info.by}`, {cls: 'system'}); modControls.update(); }))
    .on(ROOM_EVENT.ENDED, mine((r, info) => chatLine('chat', `the meeting was ended by ${info.by}`, {cls: 'system'})))
    .on(ROOM_EVENT.RECORDING, mine((r, info) => {
      showRecording(info, (text) => chatLine('recording', text, {cls: 'system'}));
      modControls.update();
    }))
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
  grid.markMutes(p.name());
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
  updateInvite(ui.invite, roomName);
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
ui.room.addEventListener('input', () => { if (!state.room) updateInvite(ui.invite, ui.room.value.trim()); });
ui.name.addEventListener('input', () => { if (!state.room) updateLocalTile(); });

// ---------------------------------------------------------------- media messages

const clipPanel = new ClipPanel(document.getElementById('clips'), {onError: (err) => showError(err)});
window.parley.clips = clipPanel;

// ---------------------------------------------------------------- start

setControls(false);
updateLocalTile();
{
  const room = params.get('room') || '';
  const token = storedAccessToken(room);
  const name = params.get('name') || (token ? tokenName(token) : '');
  ui.room.value = room;
  ui.name.value = name;
  updateInvite(ui.invite, room);
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
