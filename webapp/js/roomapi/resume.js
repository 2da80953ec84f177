// Resume tokens kept per tab (sessionStorage), so that a reload rejoins the same room as the same
// participant (docs/protocol.md "resume"). Part of roomapi.js, which re-exports storedResumeToken.

const RESUME_KEY = 'parley.resume:';

function storage() {
  try { return window.sessionStorage; } catch { return null; }
}

/** The resume token stored for room+name in this tab, or null. */
export function storedResumeToken(room, name) {
  try { return storage()?.getItem(RESUME_KEY + room + '/' + name) || null; } catch { return null; }
}

export function storeResumeToken(room, name, token) {
  try { if (token) storage()?.setItem(RESUME_KEY + room + '/' + name, token); } catch { /* storage full or off */ }
}

export function forgetResumeToken(room, name) {
  try { storage()?.removeItem(RESUME_KEY + room + '/' + name); } catch { /* ignore */ }
}

export function forgetResumeTokenValue(token) {
  const s = storage();
  if (!s || !token) return;
  try {
    for (let i = s.length - 1; i >= 0; i--) {
      const k = s.key(i);
      if (k && k.startsWith(RESUME_KEY) && s.getItem(k) === token) s.removeItem(k);
    }
  } catch { /* ignore */ }
}
