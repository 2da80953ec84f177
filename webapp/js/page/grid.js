// The video grid of the conference page: a tile per remote stream (its <video>, name, status,
// why it cannot play, the moderator's buttons), this client's own tile and screen-share tile, the
// layout that gives the largest pictures, and the autoplay hint when the browser holds the sound
// back until a click. Names go in with textContent only.
//
//   const grid = initGrid(els, {room: () => state.room, error: showError});
//   grid.add(participant, stream); grid.update(stream); grid.remove(streamId); grid.layout();

import {STREAM_STATUS} from '../roomapi.js';
import {el, initial} from './dom.js';
import {modBar, updateMuteMarks} from './moderation.js';

// GAP is the grid's gap between tiles (css/app.css), in CSS pixels.
const GAP = 8;

function statusText(s) { return s === 'NEW' ? '' : s; }

/**
 * initGrid wires the grid. els: {grid, tiles (the remote tiles' parent), local (the own tile),
 * autoplayHint}; hooks: {room() → the Room or null, error(err)}.
 */
export function initGrid(els, hooks) {
  function tileFor(streamId) {
    for (const t of els.tiles.children) if (t.dataset.stream === streamId) return t;
    return null;
  }

  function tryPlay(video) {
    const p = video.play();
    if (p && p.catch) {
      p.catch((err) => {
        if (err && err.name === 'NotAllowedError') els.autoplayHint.hidden = false;
      });
    }
  }

  els.autoplayHint.addEventListener('click', () => {
    els.autoplayHint.hidden = true;
    for (const v of els.tiles.querySelectorAll('video')) tryPlay(v);
  });

  function markMutes(name) { updateMuteMarks(els.tiles, hooks.room(), name); }

  function add(participant, stream) {
    let t = tileFor(stream.id());
    if (t) { update(stream); return t; }
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
    t.append(video, ph, el('div', 'reason'), meta, modBar(name, screen, hooks));
    els.tiles.append(t);
    stream.play(video);
    update(stream);
    markMutes(name);
    layout();
    return t;
  }

  // update shows a remote stream's status on its tile.
  function update(stream) {
    const t = tileFor(stream.id());
    if (!t) return;
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

  // showQuality puts how this page receives a stream (its receiver reports, as the server read
  // them) on the tile's info: the video's loss, jitter and round trip in the corner, both kinds in its title.
  function showQuality(stream, q) {
    const t = tileFor(stream.id());
    const span = t && t.querySelector('.quality');
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

  function removeOf(name) {
    for (const t of [...els.tiles.children]) if (t.dataset.name === name) removeTile(t);
  }

  // sync makes the remote tiles those of the room's streams.
  function sync(room) {
    const want = new Map();
    for (const p of room.getParticipants()) for (const s of p.getStreams()) want.set(s.id(), [p, s]);
    for (const t of [...els.tiles.children]) if (!want.has(t.dataset.stream)) removeTile(t);
    for (const [, [p, s]] of want) add(p, s);
  }

  function clear() {
    for (const t of [...els.tiles.children]) removeTile(t);
    removeLocalScreen();
  }

  // localScreen is the tile of this client's screen share (made once), with its status.
  function localScreen(stream) {
    let t = document.getElementById('localScreen');
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
      els.local.after(t);
      layout();
    }
    if (stream) t.querySelector('.status').textContent = statusText(stream.status());
    return t;
  }

  // showLocalScreen puts the shared screen's picture on its tile.
  function showLocalScreen(stream) {
    const v = localScreen(stream).querySelector('video');
    v.srcObject = stream.getMediaStream();
    tryPlay(v);
  }

  function removeLocalScreen() {
    const t = document.getElementById('localScreen');
    if (t) { const v = t.querySelector('video'); if (v) v.srcObject = null; t.remove(); layout(); }
  }

  // showLocal shows this client's name, initial and camera stream status (a LocalStream's
  // status() or words) on its own tile.
  function showLocal(name, status) {
    els.local.querySelector('.label').textContent = name ? `${name} (you)` : 'You';
    els.local.querySelector('.initial').textContent = initial(name);
    els.local.querySelector('.status').textContent = statusText(status || '');
  }

  // localVideo says whether the own tile shows a camera picture (else the initial).
  function localVideo(on) { els.local.classList.toggle('novideo', !on); }

  // layout picks the column count that gives the largest 16:9 tiles in the grid; a screen share
  // spans 2×2 cells when there are other tiles, and its size counts double.
  function layout() {
    const grid = els.grid;
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
  new ResizeObserver(() => layout()).observe(els.grid);

  return {
    add, update, showQuality, remove: (streamId) => removeTile(tileFor(streamId)), removeOf, sync, clear,
    localScreen, showLocalScreen, removeLocalScreen, showLocal, localVideo, markMutes, layout,
  };
}
