// Moderation on the conference page: the moderator's buttons on each remote tile (mute a source,
// remove), the marks of what a moderator muted, and the room's Lock / Record / End buttons.
// Shown to moderators only (body class "moderator", set here).

import {el} from './dom.js';

const SOURCE_LABEL = {microphone: 'mic', camera: 'cam', screen: 'screen'};

/**
 * modBar is the row of moderator buttons on the tile of name's camera (or screen share).
 * hooks: {room() → the Room or null, error(err)}.
 */
export function modBar(name, screen, hooks) {
  const bar = el('div', 'mod');
  const sources = screen ? ['screen'] : ['microphone', 'camera'];
  for (const src of sources) {
    const b = el('button', 'mod-mute', '');
    b.type = 'button';
    b.dataset.source = src;
    b.addEventListener('click', () => {
      const room = hooks.room();
      const p = room && room.getParticipant(name);
      if (!p) return;
      const req = p.isMuted(src) ? room.unmuteParticipant(name, src) : room.muteParticipant(name, src);
      req.catch(hooks.error);
    });
    bar.append(b);
  }
  const rm = el('button', 'mod-remove danger', 'Remove');
  rm.type = 'button';
  rm.title = 'Remove from the room (and keep out until the room ends)';
  rm.addEventListener('click', () => {
    const room = hooks.room();
    if (room) room.removeParticipant(name, {bar: true}).catch(hooks.error);
  });
  bar.append(rm);
  return bar;
}

/** updateMuteMarks shows, on every tile of name under tiles, which sources a moderator muted. */
export function updateMuteMarks(tiles, room, name) {
  const p = room && room.getParticipant(name);
  const muted = p ? p.mutedSources() : [];
  for (const t of tiles.children) {
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

/**
 * initModControls wires the room's moderator buttons. els: {controls, lock, record, end};
 * hooks: {room(), error(err)}. Returns {update()}: shows them (or not) as the room says.
 */
export function initModControls(els, hooks) {
  els.lock.addEventListener('click', () => {
    const room = hooks.room();
    if (room) (room.isLocked() ? room.unlock() : room.lock()).catch(hooks.error);
  });
  els.record.addEventListener('click', () => {
    const room = hooks.room();
    if (room) (room.isRecording() ? room.stopRecording() : room.startRecording()).catch(hooks.error);
  });
  els.end.addEventListener('click', () => {
    const room = hooks.room();
    if (room && window.confirm('End the meeting for everyone?')) room.end().catch(hooks.error);
  });
  return {
    update() {
      const room = hooks.room();
      const mod = !!room && room.hasGrant('moderate');
      document.body.classList.toggle('moderator', mod);
      els.controls.hidden = !mod;
      if (!room) return;
      els.lock.textContent = room.isLocked() ? 'Unlock room' : 'Lock room';
      els.record.textContent = room.isRecording() ? 'Stop recording' : 'Start recording';
      const rec = document.getElementById('rec');
      if (rec) rec.hidden = !room.isRecording();
    },
  };
}
