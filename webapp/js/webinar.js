// The conference page's part of webinar rooms (a room preset's webinar: true): viewers belong on
// the viewer page (watch.html); presenters and moderators see how many watch and who, and a
// moderator brings a viewer on stage and back. Names go in with textContent only.

const $ = (sel) => document.querySelector(sel);

/** Whether the page should hand this participant to the viewer page; then it goes there. */
export function toViewerPage(room) {
  if (!room.isWebinar() || room.role() !== 'viewer') return false;
  const q = new URLSearchParams({room: room.name(), name: room.selfName()});
  location.replace('/watch.html?' + q.toString());
  return true;
}

// staged holds, per room, the names a moderator brought on stage from the viewers (so the
// moderator can take them off again).
const staged = new WeakMap();

/** markStaged notes that name was brought on stage (on) or taken off (not on) in room. */
export function markStaged(room, name, on) {
  if (!staged.has(room)) staged.set(room, new Set());
  if (on) staged.get(room).add(name); else staged.get(room).delete(name);
}

/** Shows the viewer count and list of a webinar room (hidden elsewhere); onError shows a refusal. */
export function updateWebinarPanel(room, onError) {
  const panel = $('#webinarPanel');
  if (!panel) return;
  if (!room || !room.isWebinar()) { panel.hidden = true; return; }
  panel.hidden = false;
  const n = room.viewers();
  $('#viewerCount').textContent = n === 1 ? '1 viewer' : `${n} viewers`;
  const list = $('#viewerList');
  const mod = room.hasGrant('moderate');
  const people = room.getParticipants().sort((a, b) => a.name().localeCompare(b.name()));
  list.replaceChildren();
  for (const p of people) {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = p.name();
    li.append(name);
    li.dataset.role = p.role();
    if (mod && (p.role() === 'viewer' || staged.get(room)?.has(p.name()))) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'stage-button';
      b.textContent = p.role() === 'viewer' ? 'On stage' : 'Off stage';
      b.addEventListener('click', () => {
        const req = p.role() === 'viewer' ? room.stage(p.name()) : room.unstage(p.name());
        req.catch(onError);
      });
      li.append(b);
    }
    list.append(li);
  }
}
