// Pre-join screen: what an invite link (/?room=R) opens. A camera preview, a live microphone
// level, pickers for camera, microphone and speaker, the name (remembered), joining with the
// camera or microphone off, and device errors in words with what to do.
//
//   const choice = await prejoin(document.getElementById('prejoin'), {room, name});
//   // choice: {name, camera, mic, speaker, cameraOn, micOn}; camera/mic are device ids ('' = default)
//
// The preview's tracks are stopped before the promise resolves; the page captures again with
// the chosen devices when it publishes.

import {prefs, listDevices, fillSelect, describeMediaError, levelMeter, showLevel, canChooseSpeaker} from './devices.js';

/**
 * prejoin shows the screen in root (the #prejoin section of index.html) and resolves with the
 * user's choice when they press Join.
 */
export function prejoin(root, {room, name}) {
  const q = (sel) => root.querySelector(sel);
  const ui = {
    title: q('#prejoinRoom'),
    video: q('#prejoinVideo'),
    off: q('#prejoinOff'),
    meter: q('#micLevel'),
    camBtn: q('#prejoinCam'),
    micBtn: q('#prejoinMic'),
    errors: q('#prejoinErrors'),
    form: q('#prejoinForm'),
    name: q('#prejoinName'),
    cam: q('#camSelect'),
    mic: q('#micSelect'),
    speaker: q('#speakerSelect'),
    speakerField: q('#speakerField'),
    join: q('#prejoinJoin'),
  };
  const st = {
    stream: new MediaStream(),
    cameraOn: prefs.get('camOff') !== '1',
    micOn: prefs.get('micOff') !== '1',
    camera: prefs.get('camera'),
    mic: prefs.get('mic'),
    speaker: prefs.get('speaker'),
    errors: {video: null, audio: null},
    stopMeter: () => {},
    gen: {video: 0, audio: 0},
    done: false,
  };

  ui.title.textContent = room;
  ui.name.value = name || prefs.get('name');
  ui.speakerField.hidden = !canChooseSpeaker();
  root.hidden = false;

  const trackOf = (kind) => (kind === 'video' ? st.stream.getVideoTracks() : st.stream.getAudioTracks())[0] || null;

  function dropTrack(kind) {
    const t = trackOf(kind);
    if (t) { t.stop(); st.stream.removeTrack(t); }
    if (t && kind === 'video') ui.video.srcObject = null;
  }

  function render() {
    const camLive = st.cameraOn && !!trackOf('video');
    ui.off.hidden = camLive;
    ui.off.textContent = !st.cameraOn ? 'Camera is off' : (st.errors.video ? 'No camera picture' : 'Starting the camera…');
    ui.camBtn.setAttribute('aria-pressed', String(st.cameraOn));
    ui.camBtn.textContent = st.cameraOn ? 'Camera on' : 'Camera off';
    ui.micBtn.setAttribute('aria-pressed', String(st.micOn));
    ui.micBtn.textContent = st.micOn ? 'Microphone on' : 'Microphone off';
    ui.errors.replaceChildren();
    for (const kind of ['video', 'audio']) {
      const e = st.errors[kind];
      if (!e) continue;
      const box = document.createElement('div');
      box.className = 'prejoin-error';
      box.dataset.kind = e.kind;
      box.dataset.device = kind === 'video' ? 'camera' : 'microphone';
      const title = document.createElement('strong');
      title.textContent = e.title;
      const help = document.createElement('p');
      help.textContent = e.help;
      const retry = document.createElement('button');
      retry.type = 'button';
      retry.textContent = 'Try again';
      retry.addEventListener('click', () => { st.errors[kind] = null; capture(kind); });
      box.append(title, help, retry);
      ui.errors.append(box);
    }
    ui.errors.hidden = !ui.errors.childElementCount;
  }

  // capture (re)opens the camera ('video') or microphone ('audio') with the chosen device.
  // capture (exact: the user just picked this device; else the remembered one is a wish, so an
  // unplugged one falls back to another).
  async function capture(kind, exact = false) {
    const gen = ++st.gen[kind];
    const on = kind === 'video' ? st.cameraOn : st.micOn;
    dropTrack(kind);
    if (kind === 'audio') restartMeter();
    render();
    if (!on || st.done) return;
    const id = kind === 'video' ? st.camera : st.mic;
    let ms;
    try {
      if (!navigator.mediaDevices) throw new Error('no mediaDevices');
      ms = await navigator.mediaDevices.getUserMedia({[kind]: id ? {deviceId: exact ? {exact: id} : {ideal: id}} : true});
    } catch (err) {
      if (gen !== st.gen[kind] || st.done) return;
      st.errors[kind] = describeMediaError(err, kind === 'video' ? 'camera' : 'microphone');
      render();
      await refreshDevices();
      return;
    }
    const track = ms.getTracks()[0];
    if (gen !== st.gen[kind] || st.done || !track) { ms.getTracks().forEach((t) => t.stop()); return; }
    st.errors[kind] = null;
    st.stream.addTrack(track);
    const got = track.getSettings().deviceId;
    if (got) { if (kind === 'video') st.camera = got; else st.mic = got; }
    if (kind === 'audio') restartMeter();
    if (kind === 'video') {
      // A new MediaStream for the new track: a <video> may keep the last frame of a removed one.
      ui.video.srcObject = new MediaStream([track]);
      ui.video.play().catch(() => {});
    }
    render();
    await refreshDevices();
  }

  function restartMeter() {
    st.stopMeter();
    const t = trackOf('audio');
    st.stopMeter = t ? levelMeter(new MediaStream([t]), (l) => showLevel(ui.meter, l)) : () => {};
    if (!t) showLevel(ui.meter, 0);
  }

  async function refreshDevices() {
    const d = await listDevices();
    st.camera = fillSelect(ui.cam, d.cameras, st.camera, 'No camera found');
    st.mic = fillSelect(ui.mic, d.mics, st.mic, 'No microphone found');
    st.speaker = fillSelect(ui.speaker, d.speakers, st.speaker, 'Default speaker');
    if (!d.speakers.length) ui.speaker.disabled = true;
  }

  ui.cam.addEventListener('change', () => { st.camera = ui.cam.value; st.cameraOn = true; st.errors.video = null; capture('video', true); });
  ui.mic.addEventListener('change', () => { st.mic = ui.mic.value; st.micOn = true; st.errors.audio = null; capture('audio', true); });
  ui.speaker.addEventListener('change', () => { st.speaker = ui.speaker.value; });
  ui.camBtn.addEventListener('click', () => { st.cameraOn = !st.cameraOn; st.errors.video = null; capture('video'); });
  ui.micBtn.addEventListener('click', () => { st.micOn = !st.micOn; st.errors.audio = null; capture('audio'); });
  const onDeviceChange = () => refreshDevices();
  navigator.mediaDevices?.addEventListener?.('devicechange', onDeviceChange);

  render();
  refreshDevices();
  capture('video');
  capture('audio');
  if (!ui.name.value) ui.name.focus(); else ui.join.focus();

  return new Promise((resolve) => {
    ui.form.addEventListener('submit', (e) => {
      e.preventDefault();
      const n = ui.name.value.trim();
      if (!n) { ui.name.focus(); return; }
      st.done = true;
      st.stopMeter();
      navigator.mediaDevices?.removeEventListener?.('devicechange', onDeviceChange);
      for (const t of st.stream.getTracks()) t.stop();
      ui.video.srcObject = null;
      root.hidden = true;
      prefs.set('name', n);
      prefs.set('camera', st.camera);
      prefs.set('mic', st.mic);
      prefs.set('speaker', st.speaker);
      prefs.set('camOff', st.cameraOn ? '' : '1');
      prefs.set('micOff', st.micOn ? '' : '1');
      resolve({
        name: n,
        camera: st.camera,
        mic: st.mic,
        speaker: st.speaker,
        // A device that could not be opened is joined without (and said so on the screen).
        cameraOn: st.cameraOn,
        micOn: st.micOn,
        cameraUsable: !st.errors.video,
        micUsable: !st.errors.audio,
      });
    });
  });
}
