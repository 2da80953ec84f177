// People: raised hands and microphone/camera marks on the tiles, the participant list with
// counts, and this client's Raise hand button. Reads everything from the room (roomapi.js):
// Participant.presence() (PRESENCE), Participant.mutedSources() (a moderator's MUTED).
//
//   const people = initPeople(els, {selfStream: () => state.camera, error: showError});
//   people.attach(room);   // at each join
//   people.render();       // after the page changed its own tiles or mute buttons

import {ROOM_EVENT} from '../roomapi.js';
import {markNameTile} from '../speakers.js';

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * initPeople wires the marks, the list and the hand button.
 * els: {grid, list, count, handCount, button, panel, hand, close};
 * hooks: {selfStream() → the camera LocalStream or null, error(err)}.
 */
export function initPeople(els, hooks) {
  let room = null;

  // The marks of one participant: {hand, micOff, camOff, muted: [sources a moderator muted]}.
  function marksOf(p) {
    if (!p) return {hand: false, micOff: false, camOff: false, muted: []};
    const pr = p.presence ? p.presence() : {};
    return {hand: !!pr.hand, micOff: !!pr.micOff, camOff: !!pr.camOff, muted: p.mutedSources()};
  }

  function selfMarks() {
    const s = hooks.selfStream();
    return {
      hand: !!room && room.isHandRaised(),
      micOff: !!s && s.isAudioMuted(),
      camOff: !!s && s.isVideoMuted(),
      muted: room ? room.mutedSources() : [],
    };
  }

  // markTile puts a hand and a muted-microphone mark on a camera tile; a remote camera turned
  // off (or muted by a moderator) shows the initial, not its last picture.
  function markTile(tile, m) {
    const micOff = m.micOff || m.muted.includes('microphone');
    const camOff = m.camOff || m.muted.includes('camera');
    tile.dataset.hand = String(m.hand);
    if (tile.dataset.name) {
      markNameTile(document.querySelector(`#speakerStrip .name-tile[data-name="${CSS.escape(tile.dataset.name)}"]`), m.hand);
    }
    tile.dataset.micOff = String(micOff);
    tile.dataset.camOff = String(camOff);
    if (tile.classList.contains('remote')) tile.classList.toggle('cam-off', camOff);
    let box = tile.querySelector(':scope > .marks');
    if (!box) {
      box = el('div', 'marks');
      tile.append(box);
    }
    const want = [];
    if (m.hand) want.push(['hand', 'Hand up', 'hand raised']);
    if (micOff) want.push(['mic-off', 'Mic off', 'microphone off']);
    const key = want.map((w) => w[0]).join(' ');
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    box.replaceChildren(...want.map(([cls, text, label]) => {
      const s = el('span', 'mark ' + cls, text);
      s.setAttribute('role', 'img');
      s.setAttribute('aria-label', label);
      s.title = label;
      return s;
    }));
  }

  function render() {
    const people = room && room.isJoined() ? room.getParticipants() : [];
    // Tiles: the others' camera tiles, and this client's own.
    for (const t of els.grid.querySelectorAll('.tile.remote[data-kind="camera"]')) {
      markTile(t, marksOf(room && room.getParticipant(t.dataset.name)));
    }
    const local = els.grid.querySelector('#local');
    if (local) markTile(local, room && room.isJoined() ? selfMarks() : {hand: false, micOff: false, camOff: false, muted: []});

    // The list: raised hands first, then by name; this client first among equals.
    const rows = people.map((p) => ({name: p.name(), self: false, ...marksOf(p)}));
    if (room && room.isJoined()) rows.push({name: room.selfName(), self: true, ...selfMarks()});
    rows.sort((a, b) => (b.hand - a.hand) || (b.self - a.self) || a.name.localeCompare(b.name));
    const hands = rows.filter((r) => r.hand).length;
    els.count.textContent = String(rows.length);
    els.handCount.replaceChildren();
    if (hands) {
      els.handCount.textContent = hands > 1 ? `${hands} hands` : '1 hand';
    }
    els.list.replaceChildren(...rows.map((r) => {
      const li = el('li', 'person');
      li.dataset.name = r.name;
      li.dataset.hand = String(r.hand);
      li.append(el('span', 'person-name', r.self ? `${r.name} (you)` : r.name));
      const state = el('span', 'person-state');
      const micOff = r.micOff || r.muted.includes('microphone');
      const camOff = r.camOff || r.muted.includes('camera');
      if (r.hand) state.append(el('span', 'mark hand', 'hand raised'));
      if (micOff) state.append(el('span', 'mark mic-off', r.muted.includes('microphone') ? 'mic muted by a moderator' : 'mic off'));
      if (camOff) state.append(el('span', 'mark cam-off', 'camera off'));
      li.append(state);
      return li;
    }));
    els.summary.textContent = rows.length
      ? `${rows.length} in the room` + (hands ? `, ${hands} with a raised hand` : '') +
        `, ${rows.filter((r) => r.micOff || r.muted.includes('microphone')).length} with the microphone off`
      : 'Not in a room';

    // Alone in the room: say so, with the invite link to send.
    const alone = !!room && room.isJoined() && people.length === 0;
    els.alone.hidden = !alone;
    if (alone) {
      const link = location.origin + '/?room=' + encodeURIComponent(room.name());
      if (els.aloneLink.textContent !== link) {
        els.aloneLink.textContent = link;
        els.aloneLink.href = link;
      }
    }

    const canHand = !!room && room.isJoined() && room.hasGrant('chat');
    els.hand.disabled = !canHand;
    const up = !!room && room.isHandRaised();
    els.hand.setAttribute('aria-pressed', String(up));
    els.hand.textContent = up ? 'Lower hand' : 'Raise hand';
  }

  els.hand.addEventListener('click', () => {
    if (!room) return;
    (room.isHandRaised() ? room.lowerHand() : room.raiseHand()).then(render, (err) => { hooks.error(err); render(); });
    render();
  });
  const setOpen = (open) => {
    els.panel.hidden = !open;
    els.button.setAttribute('aria-expanded', String(open));
    document.body.classList.toggle('people-open', open);
  };
  els.button.addEventListener('click', () => setOpen(els.panel.hidden));
  els.aloneCopy.addEventListener('click', async () => {
    const link = els.aloneLink.href;
    try {
      await navigator.clipboard.writeText(link);
      els.aloneCopy.textContent = 'Copied';
    } catch {
      // No clipboard (an insecure origin, a denied permission): select the link to copy by hand.
      const r = document.createRange();
      r.selectNodeContents(els.aloneLink);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(r);
      els.aloneCopy.textContent = 'Press Ctrl+C';
    }
    setTimeout(() => { els.aloneCopy.textContent = 'Copy link'; }, 2000);
  });
  els.close.addEventListener('click', () => { setOpen(false); els.button.focus(); });

  // Tiles come and go (app.js makes them): mark new ones.
  new MutationObserver(() => render()).observe(els.grid.querySelector('#tiles') || els.grid, {childList: true});

  return {
    attach(r) {
      room = r;
      const again = () => { if (room === r) render(); };
      for (const ev of [ROOM_EVENT.STATE, ROOM_EVENT.JOINED, ROOM_EVENT.LEFT, ROOM_EVENT.PRESENCE,
        ROOM_EVENT.MUTED, ROOM_EVENT.UNMUTED, ROOM_EVENT.PUBLISHED, ROOM_EVENT.FAILED]) r.on(ev, again);
      render();
    },
    render,
    open: setOpen,
  };
}
