// In-call device menu: switch camera, microphone and speaker while publishing, with
// RTCRtpSender.replaceTrack (LocalStream.replaceTrack): no new offer, the others keep the
// stream and see the new picture. Follows unplugged devices: a camera or microphone track that
// ends while publishing is replaced by the default device, with a note.

import {prefs, listDevices, fillSelect, describeMediaError, canChooseSpeaker, followSpeaker} from './devices.js';

/**
 * initDeviceMenu wires the menu. els: {button, panel, cam, mic, speaker, speakerField};
 * hooks: {stream() → the camera LocalStream or null, note(text), error(text)}.
 * Returns {speaker() → the chosen output id, close()}.
 */
export function initDeviceMenu(els, hooks) {
  const st = {speaker: prefs.get('speaker'), busy: {audio: false, video: false}};
  els.speakerField.hidden = !canChooseSpeaker();
  const speakers = followSpeaker(els.speakerRoot || document.body, () => st.speaker);

  const liveTrack = (kind) => {
    const s = hooks.stream();
    const ms = s && s.getMediaStream();
    const t = ms && (kind === 'video' ? ms.getVideoTracks() : ms.getAudioTracks())[0];
    return t || null;
  };

  async function refresh() {
    const d = await listDevices();
    const cam = liveTrack('video');
    const mic = liveTrack('audio');
    fillSelect(els.cam, d.cameras, cam ? cam.getSettings().deviceId : '', 'No camera found');
    fillSelect(els.mic, d.mics, mic ? mic.getSettings().deviceId : '', 'No microphone found');
    st.speaker = fillSelect(els.speaker, d.speakers, st.speaker, 'Default speaker');
    els.cam.disabled = !cam || !d.cameras.length;
    els.mic.disabled = !mic || !d.mics.length;
    return d;
  }

  // use puts the device id (or the default device, id '') of kind into the published stream.
  async function use(kind, id) {
    const s = hooks.stream();
    if (!s || !liveTrack(kind) || st.busy[kind]) return false;
    st.busy[kind] = true;
    try {
      const c = id ? {deviceId: {exact: id}} : true;
      const ms = await navigator.mediaDevices.getUserMedia({[kind]: c});
      const track = ms.getTracks()[0];
      try {
        await s.replaceTrack(track);
      } catch (err) {
        track.stop();
        throw err;
      }
      prefs.set(kind === 'video' ? 'camera' : 'mic', track.getSettings().deviceId || id);
      return track;
    } catch (err) {
      const e = describeMediaError(err, kind === 'video' ? 'camera' : 'microphone');
      hooks.error(`${e.title}. ${e.help}`);
      return false;
    } finally {
      st.busy[kind] = false;
      refresh();
    }
  }

  els.cam.addEventListener('change', () => use('video', els.cam.value));
  els.mic.addEventListener('change', () => use('audio', els.mic.value));
  els.speaker.addEventListener('change', () => {
    st.speaker = els.speaker.value;
    prefs.set('speaker', st.speaker);
    speakers.scan && speakers.scan();
  });

  const close = () => {
    els.panel.hidden = true;
    els.button.setAttribute('aria-expanded', 'false');
  };
  els.button.addEventListener('click', () => {
    const open = els.panel.hidden;
    els.panel.hidden = !open;
    els.button.setAttribute('aria-expanded', String(open));
    if (open) refresh().then(() => (els.cam.disabled ? els.mic : els.cam).focus());
  });
  els.panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') { close(); els.button.focus(); } });

  // A device unplugged (its track ended) while publishing: the default device of its kind
  // takes over, and the page says so.
  async function fallback() {
    const s = hooks.stream();
    if (!s || s.status() !== 'PUBLISHING') return;
    for (const kind of ['video', 'audio']) {
      const t = liveTrack(kind);
      if (!t || t.readyState !== 'ended' || st.busy[kind]) continue;
      const what = kind === 'video' ? 'camera' : 'microphone';
      const lost = t.label || `your ${what}`;
      const track = await use(kind, '');
      if (track) hooks.note(`${lost} was disconnected; now using ${track.label || 'the default ' + what}.`);
    }
  }
  const timer = setInterval(fallback, 1000);
  navigator.mediaDevices?.addEventListener?.('devicechange', () => { refresh(); fallback(); });

  return {
    speaker: () => st.speaker,
    /** setSpeaker plays the call on output device id (the pre-join screen's choice). */
    setSpeaker(id) { st.speaker = id || ''; speakers.scan && speakers.scan(); },
    close,
    stop() { clearInterval(timer); speakers(); },
  };
}
