// Devices: the cameras, microphones and speakers of this browser, the choice the user made
// (remembered in localStorage), a microphone level meter, and errors told in words.
// No DOM of the page is assumed except the elements passed in.

const PREF = 'parley.pref.';

/** prefs reads and writes the remembered choices: name, camera, mic, speaker (device ids), camOff, micOff. */
export const prefs = {
  get(key) {
    try { return window.localStorage.getItem(PREF + key) || ''; } catch { return ''; }
  },
  set(key, value) {
    try {
      if (value) window.localStorage.setItem(PREF + key, String(value));
      else window.localStorage.removeItem(PREF + key);
    } catch { /* storage off: nothing remembered */ }
  },
};

/** Whether media elements can play to a chosen output device (HTMLMediaElement.setSinkId). */
export function canChooseSpeaker() {
  return typeof HTMLMediaElement !== 'undefined' && 'setSinkId' in HTMLMediaElement.prototype;
}

/**
 * listDevices returns {cameras, mics, speakers}: arrays of {id, label}. Labels are empty until
 * the page was allowed a device once; they then read "Camera 1", … instead.
 */
export async function listDevices() {
  const out = {cameras: [], mics: [], speakers: []};
  const md = navigator.mediaDevices;
  if (!md || !md.enumerateDevices) return out;
  let all = [];
  try { all = await md.enumerateDevices(); } catch { return out; }
  const put = (list, d, what) => {
    if (!d.deviceId || list.some((x) => x.id === d.deviceId)) return;
    list.push({id: d.deviceId, label: d.label || `${what} ${list.length + 1}`});
  };
  for (const d of all) {
    if (d.kind === 'videoinput') put(out.cameras, d, 'Camera');
    else if (d.kind === 'audioinput') put(out.mics, d, 'Microphone');
    else if (d.kind === 'audiooutput') put(out.speakers, d, 'Speaker');
  }
  return out;
}

/**
 * fillSelect puts devices into a <select>, keeping selected (an id) when present; an empty
 * list leaves one disabled option that says so. Returns the value now selected.
 */
export function fillSelect(select, devices, selected, none) {
  while (select.options.length) select.remove(0);
  for (const d of devices) {
    const o = document.createElement('option');
    o.value = d.id;
    o.textContent = d.label;
    select.append(o);
  }
  if (!devices.length) {
    const o = document.createElement('option');
    o.value = '';
    o.textContent = none;
    select.append(o);
  }
  select.disabled = !devices.length;
  if (selected && devices.some((d) => d.id === selected)) select.value = selected;
  return select.value;
}

/** trackConstraint is what getUserMedia gets for one kind: a device id when chosen, else true. */
export function trackConstraint(deviceId) {
  return deviceId ? {deviceId: {exact: deviceId}} : true;
}

/**
 * describeMediaError turns a getUserMedia error into words and what to do: {title, help}.
 * what is 'camera', 'microphone' or 'camera and microphone'.
 */
export function describeMediaError(err, what = 'camera and microphone') {
  const name = (err && (err.name || err.code)) || '';
  const reason = String((err && (err.reason || err.message)) || '');
  const cap = what.charAt(0).toUpperCase() + what.slice(1);
  const test = (re) => re.test(name) || re.test(reason);
  if (test(/NotAllowedError|SecurityError|Permission/i)) {
    return {
      kind: 'blocked',
      title: `${cap}: access is blocked`,
      help: 'Allow it in the browser: click the camera or lock icon at the left of the address bar, ' +
        'choose Allow, then press Try again. You can also join without it.',
    };
  }
  if (test(/NotFoundError|OverconstrainedError|DevicesNotFound|Requested device not found/i)) {
    return {
      kind: 'notfound',
      title: `${cap}: none found`,
      help: 'Connect one (or pick another in the list) and press Try again, or join without it.',
    };
  }
  if (test(/NotReadableError|TrackStartError|AbortError|Could not start|in use/i)) {
    return {
      kind: 'inuse',
      title: `${cap}: in use by another program`,
      help: 'Close the other program or browser tab that uses it (a video call, a camera app), ' +
        'then press Try again, or join without it.',
    };
  }
  if (!navigator.mediaDevices) {
    return {
      kind: 'insecure',
      title: 'This page cannot use a camera or microphone',
      help: 'Open it over https (or on localhost). You can still join to watch and chat.',
    };
  }
  return {kind: 'other', title: `${cap}: cannot be used`, help: `${reason || name || 'unknown error'}. Try again, or join without it.`};
}

/**
 * levelMeter measures the loudness of stream's first audio track about 15 times a second and
 * calls onLevel(0..1). Returns a function that stops it. Uses one AudioContext, resumed on the
 * next click or key if the browser started it suspended.
 */
export function levelMeter(stream, onLevel) {
  const track = stream && stream.getAudioTracks()[0];
  const AC = window.AudioContext || window.webkitAudioContext;
  if (!track || !AC) { onLevel(0); return () => {}; }
  const ctx = new AC();
  const src = ctx.createMediaStreamSource(new MediaStream([track]));
  const an = ctx.createAnalyser();
  an.fftSize = 1024;
  src.connect(an);
  const buf = new Float32Array(an.fftSize);
  const resume = () => { if (ctx.state === 'suspended') ctx.resume().catch(() => {}); };
  resume();
  window.addEventListener('pointerdown', resume, true);
  window.addEventListener('keydown', resume, true);
  let peak = 0;
  const timer = setInterval(() => {
    an.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    const rms = Math.sqrt(sum / buf.length);
    // About -60 dBFS .. 0 dBFS onto 0..1, falling slowly like a VU meter.
    const db = 20 * Math.log10(rms || 1e-9);
    const level = Math.max(0, Math.min(1, (db + 60) / 60));
    peak = Math.max(level, peak * 0.85);
    onLevel(track.enabled ? peak : 0);
  }, 66);
  return () => {
    clearInterval(timer);
    window.removeEventListener('pointerdown', resume, true);
    window.removeEventListener('keydown', resume, true);
    try { src.disconnect(); } catch { /* ignore */ }
    ctx.close().catch(() => {});
  };
}

/** showLevel draws level (0..1) on a meter element (role="meter", a bar inside styled by width). */
export function showLevel(meterEl, level) {
  const pct = Math.round(level * 100);
  meterEl.style.setProperty('--level', pct + '%');
  meterEl.setAttribute('aria-valuenow', String(pct));
  meterEl.dataset.level = String(pct);
}

/**
 * setSpeaker plays every <video>/<audio> under root, now and later, on the output device id
 * ('' = the default). Returns a function that stops following new elements.
 */
export function followSpeaker(root, getId) {
  if (!canChooseSpeaker()) return () => {};
  const apply = (el) => {
    const id = getId();
    if ((el.sinkId || '') === id) return;
    el.setSinkId(id).catch((e) => console.warn('setSinkId', e));
  };
  const scan = () => root.querySelectorAll('video, audio').forEach(apply);
  const mo = new MutationObserver(scan);
  mo.observe(root, {childList: true, subtree: true});
  scan();
  return Object.assign(() => mo.disconnect(), {scan});
}

/**
 * deviceConstraints turns a pre-join choice ({camera, mic, cameraOn, micOn, cameraUsable,
 * micUsable}) into getUserMedia constraints, within what the room allows ({video, audio}
 * booleans from the grants). A device that could not be opened before joining is left out,
 * so the join goes on without it; one merely switched off is captured and sent muted.
 * null: nothing to capture.
 */
export function deviceConstraints(choice, allowed) {
  const video = allowed.video && choice.cameraUsable !== false;
  const audio = allowed.audio && choice.micUsable !== false;
  if (!video && !audio) return null;
  return {
    // exact: the device the user saw working a moment ago (an "ideal" one may lose to another,
    // e.g. a depth camera to a colour one).
    video: video ? (choice.camera ? {deviceId: {exact: choice.camera}} : true) : false,
    audio: audio ? (choice.mic ? {deviceId: {exact: choice.mic}} : true) : false,
  };
}
