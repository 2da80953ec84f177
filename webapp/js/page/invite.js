// Invites: the access token an invite link carries (kept for this tab, out of the address bar),
// the invite link shown in the header with its Copy button, and the room and name kept in the
// address so that a reload rejoins.

import {el} from './dom.js';

const TOKEN_KEY = 'parley.token:';

function tabStorage() { try { return window.sessionStorage; } catch { return null; } }

/** storedAccessToken is the access token this tab keeps for room, or ''. */
export function storedAccessToken(room) {
  try { return (room && tabStorage()?.getItem(TOKEN_KEY + room)) || ''; } catch { return ''; }
}

function storeAccessToken(room, token) {
  try { if (room && token) tabStorage()?.setItem(TOKEN_KEY + room, token); } catch { /* storage off */ }
}

/**
 * takeAccessToken keeps the token of an invite link (/?room=R&token=…) for this tab (so a reload
 * rejoins) and takes it out of the address bar at once, so it is not bookmarked, shared or sent
 * on as a referrer.
 */
export function takeAccessToken(params) {
  if (!params.has('token')) return;
  storeAccessToken(params.get('room') || '', params.get('token'));
  const q = new URLSearchParams(location.search);
  q.delete('token');
  const rest = q.toString();
  try { history.replaceState(null, '', location.pathname + (rest ? '?' + rest : '')); } catch { /* ignore */ }
}

/** tokenName is the name a token's payload gives (for display only: the server verifies it), or ''. */
export function tokenName(token) {
  let c = {};
  try {
    const part = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(part), (ch) => ch.charCodeAt(0));
    c = JSON.parse(new TextDecoder().decode(bytes)) || {};
  } catch { return ''; }
  if (typeof c.name === 'string' && c.name) return c.name;
  return typeof c.sub === 'string' ? c.sub : '';
}

/** updateInvite shows room's invite link in link (an <a>). */
export function updateInvite(link, room) {
  const path = room ? '/?room=' + encodeURIComponent(room) : '/';
  link.setAttribute('href', path);
  link.textContent = location.origin + path;
}

/** updateAddress keeps room and name in the address so that a reload rejoins (and resumes) the same room. */
export function updateAddress(room, name) {
  const q = new URLSearchParams(location.search);
  if (room) q.set('room', room); else q.delete('room');
  if (name) q.set('name', name); else q.delete('name');
  const s = q.toString();
  try { history.replaceState(null, '', location.pathname + (s ? '?' + s : '')); } catch { /* ignore */ }
}

/** initCopyInvite makes button copy link's address, and say so for a moment. */
export function initCopyInvite(button, link) {
  button.addEventListener('click', async () => {
    const url = link.href;
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
    const old = button.textContent;
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = old; }, 1500);
  });
}
