// The conference page's media messages: record a voice (or video) clip with the Record button
// or by holding the spacebar (push-to-talk), upload it at once or after a preview, list the
// room's clips, play them, play from one on, delete, and play new clips from others by
// themselves, one at a time, never over each other or over one's own recording.
// Every name from the network goes into the page with textContent, never innerHTML.

import {ROOM_EVENT} from './roomapi.js';

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function button(text, cls, title) {
  const b = el('button', cls, text);
  b.type = 'button';
  if (title) b.title = title;
  return b;
}

const pad = (n) => String(n).padStart(2, '0');
const clock = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}`;
const seconds = (ms) => (ms / 1000).toFixed(1) + ' s';
function size(b) {
  if (b >= 1e6) return (b / 1e6).toFixed(1) + ' MB';
  return Math.max(1, Math.round(b / 1e3)) + ' kB';
}

// recorderType picks what MediaRecorder writes: WebM (Chrome, Firefox) or MP4 (Safari).
function recorderType(video) {
  const list = video
    ? ['video/webm;codecs=vp8,opus', 'video/webm', 'video/mp4']
    : ['audio/webm;codecs=opus', 'audio/webm', 'audio/ogg;codecs=opus', 'audio/mp4'];
  if (typeof MediaRecorder === 'undefined') return null;
  return list.find((t) => MediaRecorder.isTypeSupported(t)) || '';
}

function typing(target) {
  const t = target && target.tagName;
  return t === 'INPUT' || t === 'TEXTAREA' || t === 'SELECT' || (target && target.isContentEditable);
}

/** The media-messages panel; one per page, attached to the room the page is in. */
export class ClipPanel {
  /** @param {HTMLElement} root the (empty) panel element */
  constructor(root, {onError} = {}) {
    this.root = root;
    this.onError = onError || ((e) => console.error(e));
    this.room = null;
    this.access = null;
    this.recording = null; // {recorder, stream, start, timer, byKey, segments}
    this._uploads = Promise.resolve(); // uploads go one after another, in recording order
    this.preview = null; // {blob, url}
    this.queue = []; // clips waiting to play
    this.current = null; // the clip playing
    this.previewing = false; // the preview plays in the player
    this.played = []; // ids of clips that played to their end (tests read it)
    this._build();
    document.addEventListener('keydown', (e) => this._key(e, true));
    document.addEventListener('keyup', (e) => this._key(e, false));
  }

  _build() {
    const r = this.root;
    r.replaceChildren();
    const bar = el('div', 'clips-bar');
    this.recordBtn = button('Record', 'clips-record', 'Record a message: click to start and stop, or hold the spacebar');
    this.recordBtn.addEventListener('click', () => (this.recording ? this.stop() : this.start(false)));
    this.timer = el('span', 'clips-timer', '');
    this.videoBox = el('input');
    this.videoBox.type = 'checkbox';
    this.videoBox.id = 'clipsVideo';
    const videoLabel = el('label', 'clips-opt');
    videoLabel.append(this.videoBox, ' video');
    this.videoLabel = videoLabel;
    this.autoBox = el('input');
    this.autoBox.type = 'checkbox';
    this.autoBox.id = 'clipsAuto';
    const autoLabel = el('label', 'clips-opt');
    autoLabel.title = 'Play new messages from others as they arrive';
    autoLabel.append(this.autoBox, ' auto-play');
    // "only from others" (on by default): with it off, one's own new clips play too (an echo
    // check of what the others hear), posted here or from another session of the same person.
    this.othersBox = el('input');
    this.othersBox.type = 'checkbox';
    this.othersBox.id = 'clipsOthers';
    this.othersBox.checked = true;
    const othersLabel = el('label', 'clips-opt');
    othersLabel.title = 'Auto-play only the messages of others, not your own';
    othersLabel.append(this.othersBox, ' only from others');
    this.autoBox.addEventListener('change', () => { this.othersBox.disabled = !this.autoBox.checked; });
    bar.append(this.recordBtn, this.timer, videoLabel, autoLabel, othersLabel);
    this.previewBox = el('div', 'clips-preview');
    this.previewBox.hidden = true;
    const play = button('Play', 'clips-preview-play');
    play.addEventListener('click', () => this._playPreview());
    const upload = button('Upload', 'clips-preview-upload primary');
    upload.addEventListener('click', () => this._uploadPreview());
    const discard = button('Discard', 'clips-preview-discard');
    discard.addEventListener('click', () => { this._discardPreview(); this._next(); });
    this.previewBox.append(el('span', 'clips-preview-label', 'Your message:'), play, upload, discard);
    this.hint = button('Click to play messages', 'clips-hint', 'The browser blocked playing sound before you clicked the page');
    this.hint.hidden = true;
    this.hint.addEventListener('click', () => { this.hint.hidden = true; this._next(); });
    this.status = el('div', 'clips-status');
    this.status.setAttribute('aria-live', 'polite');
    this.list = el('ol', 'clips-list');
    this.player = document.createElement('video');
    this.player.id = 'clipPlayer';
    this.player.className = 'clips-player';
    this.player.playsInline = true;
    this.player.hidden = true;
    r.append(bar, this.previewBox, this.hint, this.status, this.player, this.list);
  }

  /** Shows the panel for room (once its join is confirmed); null hides it. */
  async attach(room) {
    if (this.room === room) return;
    this.detach();
    const access = room && room.clipsAccess();
    if (!room || !access) return;
    this.room = room;
    this.access = access;
    const lim = access.limits;
    this.videoLabel.hidden = !lim.allowVideo;
    this.videoBox.checked = !!lim.videoOn;
    this.autoBox.checked = lim.autoPlay !== false;
    this.othersBox.disabled = !this.autoBox.checked;
    this.recordBtn.disabled = !access.post;
    this.root.hidden = false;
    this._limitText();
    const mine = (fn) => (...a) => { if (this.room === room) fn(...a); };
    this._off = [
      [ROOM_EVENT.CLIP_ADDED, mine((clip) => this._added(clip))],
      [ROOM_EVENT.CLIP_DELETED, mine((d) => this._deleted(d.id))],
    ];
    for (const [ev, fn] of this._off) room.on(ev, fn);
    try {
      const clips = await room.getClips();
      if (this.room !== room) return;
      for (const c of clips) this._row(c);
    } catch (err) {
      this.onError(err);
    }
  }

  detach() {
    if (this.room && this._off) for (const [ev, fn] of this._off) this.room.off(ev, fn);
    this._off = null;
    this._abortRecording();
    this._discardPreview();
    this.queue = [];
    this._stopPlayer();
    this.room = null;
    this.access = null;
    this.list.replaceChildren();
    this.root.hidden = true;
  }

  _limitText(elapsed) {
    const max = this.access ? this.access.limits.maxClipSizeSec : 0;
    this.timer.textContent = elapsed === undefined ? `up to ${max} s` : `${(elapsed / 1000).toFixed(1)} / ${max} s`;
  }

  // ------------------------------------------------------------ recording

  _key(e, down) {
    if (e.code !== 'Space' || !this.room || typing(e.target)) return;
    e.preventDefault(); // no button press, no scrolling
    if (down) {
      if (!e.repeat && !this.recording) this.start(true);
    } else if (this.recording && this.recording.byKey) {
      this.stop();
    }
  }

  /** Starts recording (byKey: push-to-talk, stopped by releasing the key). */
  async start(byKey) {
    if (!this.room || this.recording || !this.access.post) return;
    const lim = this.access.limits;
    const video = lim.allowVideo && this.videoBox.checked;
    const type = recorderType(video);
    if (type === null) { this.onError(new Error('this browser cannot record (no MediaRecorder)')); return; }
    this._discardPreview();
    // A room that uploads at once takes speech longer than its clip limit as consecutive
    // clips (mozchat's stream modes: the voice-stream preset's walkie-talkie); one that
    // previews stops at the limit.
    const chain = lim.onRecorded === 'upload';
    const rec = {byKey, start: 0, stopped: false, segments: 0};
    this.recording = rec;
    this._pausePlayer(); // never over one's own recording
    this.recordBtn.classList.add('on');
    this.recordBtn.textContent = 'Stop';
    try {
      rec.stream = await navigator.mediaDevices.getUserMedia({audio: true, video: video ? {width: 320, height: 240} : false});
    } catch (err) {
      this.recording = null;
      this._recordUi();
      this.onError(err);
      this._next();
      return;
    }
    if (rec.stopped) { for (const t of rec.stream.getTracks()) t.stop(); return; }
    this._segment(rec, type);
    rec.timer = setInterval(() => {
      const t = performance.now() - rec.start;
      this._limitText(t);
      if (t < lim.maxClipSizeSec * 1000) return;
      if (!chain) { this.stop(); return; }
      // The next clip starts on the same microphone before this one ends: no gap.
      const done = rec.recorder;
      this._segment(rec, type);
      done.stop();
    }, 50);
    this.status.textContent = byKey ? 'recording… release the spacebar to stop' : 'recording…';
  }

  // _segment starts a MediaRecorder on the recording's stream: one clip, a file of its own.
  _segment(rec, type) {
    const chunks = [];
    const recorder = new MediaRecorder(rec.stream, type ? {mimeType: type, audioBitsPerSecond: 32000} : {});
    recorder.ondataavailable = (e) => { if (e.data && e.data.size) chunks.push(e.data); };
    recorder.onstop = () => this._recorded(rec, recorder, chunks);
    recorder.start();
    rec.recorder = recorder;
    rec.start = performance.now();
    rec.segments++;
    if (rec.segments > 1) this.status.textContent = `recording… clip ${rec.segments}`;
  }

  /** Stops recording; the clip is uploaded or previewed, as the room says. */
  stop() {
    const rec = this.recording;
    if (!rec || rec.stopped) return;
    rec.stopped = true;
    clearInterval(rec.timer);
    if (rec.recorder && rec.recorder.state !== 'inactive') rec.recorder.stop();
    if (rec.stream) for (const t of rec.stream.getTracks()) t.stop();
    if (!rec.recorder) { this.recording = null; this._recordUi(); this._next(); }
  }

  _abortRecording() {
    const rec = this.recording;
    if (!rec) return;
    rec.aborted = true;
    this.stop();
  }

  _recordUi() {
    this.recordBtn.classList.remove('on');
    this.recordBtn.textContent = 'Record';
    this._limitText();
  }

  _recorded(rec, recorder, chunks) {
    // The recording is over with its last clip (an earlier clip of a chain ends while the
    // next one records).
    const last = rec.stopped && recorder === rec.recorder;
    if (last) {
      if (this.recording === rec) this.recording = null;
      this._recordUi();
      this.status.textContent = '';
    }
    if (rec.aborted || !this.room) return;
    const blob = new Blob(chunks, {type: (recorder.mimeType || '').split(';')[0] || 'audio/webm'});
    if (this.access.limits.onRecorded === 'upload') {
      this._upload(blob);
    } else {
      this.preview = {blob, url: URL.createObjectURL(blob)};
      this.previewBox.hidden = false;
    }
    if (last) this._next();
  }

  // _upload queues blob behind the uploads before it, so that a chain's clips arrive in order.
  _upload(blob) {
    const room = this.room;
    this._uploads = this._uploads.then(() => (this.room === room ? this._send(room, blob) : undefined));
    return this._uploads;
  }

  async _send(room, blob) {
    // While a chain records on, its status says so rather than the uploads'.
    const show = (text) => { if (this.room === room && !this.recording) this.status.textContent = text; };
    show(`sending ${size(blob.size)}…`);
    try {
      await room.postClip(blob, {onProgress: (f) => show(`sending… ${Math.round(f * 100)} %`)});
      show('');
    } catch (err) {
      show('');
      this.onError(err);
    }
  }

  // _playPreview plays the recording before it is posted; it holds the player like a clip
  // does (what arrives meanwhile waits for its end).
  _playPreview() {
    if (!this.preview || this.recording) return;
    this._pausePlayer();
    const url = this.preview.url;
    this.previewing = true;
    this.player.hidden = this.preview.blob.type.startsWith('audio');
    const done = (err) => {
      this.player.removeEventListener('ended', onEnded);
      this.player.removeEventListener('error', onFail);
      if (!this.previewing || this.player.src !== url) return;
      this.previewing = false;
      this.player.hidden = true;
      if (err) this.onError(err);
      this._next();
    };
    const onEnded = () => done();
    const onFail = () => done(new Error('your recording cannot be played here'));
    this.player.addEventListener('ended', onEnded);
    this.player.addEventListener('error', onFail);
    this.player.src = url;
    this.player.play().catch((err) => done(err));
  }

  _uploadPreview() {
    if (!this.preview) return;
    const {blob} = this.preview;
    this._discardPreview();
    this._upload(blob);
    this._next();
  }

  _discardPreview() {
    if (!this.preview) return;
    if (this.player.src === this.preview.url) this._stopPlayer();
    URL.revokeObjectURL(this.preview.url);
    this.preview = null;
    this.previewBox.hidden = true;
  }

  // ------------------------------------------------------------ the list

  _row(clip) {
    if (this.list.querySelector(`[data-clip="${clip.id()}"]`)) return;
    const li = el('li', 'clip');
    li.dataset.clip = clip.id();
    li.dataset.kind = clip.kind();
    if (clip.isOwn()) li.classList.add('own');
    const meta = el('span', 'clip-meta');
    meta.append(el('span', 'clip-author', clip.author()), ' ', el('span', 'clip-time', clock(clip.time())), ' ',
      el('span', 'clip-duration', seconds(clip.durationMs())), ' ', el('span', 'clip-size', size(clip.bytes())), ' ',
      el('span', 'clip-kind', clip.kind() === 'video' ? 'video' : 'voice'));
    const play = button('Play', 'clip-play', 'Play this message');
    play.addEventListener('click', () => this.playFrom(clip.id(), false));
    const from = button('From here', 'clip-from', 'Play this message and every later one');
    from.addEventListener('click', () => this.playFrom(clip.id(), true));
    li.append(meta, play, from);
    if (clip.canDelete()) {
      const del = button('Delete', 'clip-delete', clip.isOwn() ? 'Delete your message' : 'Delete this message (moderator)');
      del.addEventListener('click', () => clip.delete().catch((err) => this.onError(err)));
      li.append(del);
    }
    li._clip = clip;
    this.list.append(li);
  }

  _added(clip) {
    this._row(clip);
    if (this.autoBox.checked && (!clip.isOwn() || !this.othersBox.checked)) {
      this.queue.push(clip);
      this._next();
    }
  }

  _deleted(id) {
    const li = this.list.querySelector(`[data-clip="${id}"]`);
    if (li) li.remove();
    this.queue = this.queue.filter((c) => c.id() !== id);
    if (this.current && this.current.id() === id) { this._stopPlayer(); this._next(); }
  }

  /** Plays one clip, or (all) it and every later one, after what is playing is stopped. */
  playFrom(id, all) {
    const items = [...this.list.children].map((li) => li._clip);
    const i = items.findIndex((c) => c.id() === id);
    if (i < 0) return;
    this._stopPlayer();
    this.queue = all ? items.slice(i) : [items[i]];
    this._next();
  }

  // ------------------------------------------------------------ the player: one clip at a time

  _stopPlayer() {
    this.current = null;
    this.previewing = false;
    this.player._parleyClip = null;
    this.player.pause();
    this.player.removeAttribute('src');
    this.player.load();
    this.player.hidden = true;
    for (const li of this.list.querySelectorAll('.playing')) li.classList.remove('playing');
  }

  // _pausePlayer stops what plays and puts it back first in the queue (it plays again
  // from its start once the recording is over).
  _pausePlayer() {
    if (this.current) this.queue.unshift(this.current);
    this._stopPlayer();
  }

  _next() {
    if (this.current || this.previewing || this.recording || !this.room || this.queue.length === 0) return;
    const clip = this.queue.shift();
    this.current = clip;
    const li = this.list.querySelector(`[data-clip="${clip.id()}"]`);
    if (li) li.classList.add('playing');
    this.player.hidden = clip.kind() !== 'video';
    clip.play(this.player).then(() => {
      if (this.current !== clip) return;
      this.played.push(clip.id());
      this.current = null;
      if (li) li.classList.remove('playing');
      this.player.hidden = true;
      this._next();
    }, (err) => {
      if (this.current !== clip) return;
      this.current = null;
      if (li) li.classList.remove('playing');
      if (err && err.name === 'NotAllowedError') {
        // The autoplay policy: wait for a click.
        this.queue.unshift(clip);
        this.hint.hidden = false;
        return;
      }
      this.onError(err);
      this._next();
    });
  }
}
