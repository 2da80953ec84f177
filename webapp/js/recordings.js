// The recordings page. Two ways in, both private (docs/security.md):
//
//   /recordings.html?token=T   (or a token pasted in its form) lists the
//       sessions the token may read (GET /api/recordings with the token as a
//       bearer token); the token is kept in this tab's sessionStorage and
//       taken out of the address bar at once.
//   /recordings.html?session=ROOM/SESSION&expires=…&sig=…   is the signed link
//       each participant of a recorded meeting gets: it shows that session
//       (GET /api/recordings/ROOM/SESSION with the signature), "being mixed"
//       until the mix exists, then plays it.
//
// Files play through the signed URLs the server answers with, so a <video src>
// needs no header. Every value from the server is set as text.

const list = document.getElementById('recList');
const empty = document.getElementById('recEmpty');
const errorBox = document.getElementById('recError');
const title = document.getElementById('recTitle');
const tokenForm = document.getElementById('recTokenForm');
const tokenInput = document.getElementById('recToken');
const signOut = document.getElementById('recSignOut');

const TOKEN_KEY = 'parley.recordings.token';

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function duration(ms) {
  const s = Math.round((ms || 0) / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return (h ? h + ':' + String(m).padStart(2, '0') : m) + ':' + String(sec).padStart(2, '0');
}

// pathOf is a URL without its query: signed URLs change (their expiry) from
// one answer to the next while they name the same file.
function pathOf(url) { return (url || '').split('?')[0]; }

function video(url) {
  const v = el('video');
  v.controls = true;
  v.preload = 'metadata';
  v.src = url;
  return v;
}

const STOPPED = {
  QUOTA_DURATION: 'stopped early: the longest recording this server allows',
  QUOTA_BYTES: 'stopped early: the largest recording this server allows',
  DISK_LOW: 'stopped early: the server was low on disk space',
};

// Cards are kept by session and updated in place, so that a playing video
// is not interrupted by the refresh.
const cards = new Map();

function mixStatus(r) {
  if (r.state === 'recording') return 'The meeting is being recorded. Its recording will be here once it is over and mixed.';
  if (!r.mix) return 'No mix of this meeting (the files of each person are below).';
  switch (r.mix.status) {
    case 'pending': return 'Being mixed: waiting for its turn…';
    case 'running': return 'Being mixed… ' + Math.floor(r.mix.progress || 0) + '%';
    case 'failed': return 'The mix failed' + (r.mix.error ? ': ' + r.mix.error : '') + '.';
    default: return 'Mix: ' + r.mix.status;
  }
}

function card(r, single) {
  let c = cards.get(r.path);
  if (!c) {
    c = {root: el('section', 'rec-session'), title: el('h2'), meta: el('div', 'meta'), mix: el('div', 'rec-mix'),
      streams: el('div', 'rec-streams'), mixKey: null, streamKey: null};
    c.root.dataset.session = r.session;
    c.root.append(c.title, c.meta, c.mix, c.streams);
    cards.set(r.path, c);
  }
  c.title.replaceChildren(el('span', '', r.room), el('span', 'rec-state ' + r.state, r.state),
    el('span', 'meta', new Date(r.start).toLocaleString()));
  c.root.classList.toggle('broadcast', !!r.broadcast);
  if (r.broadcast) {
    // A webinar's recording: its replay at a stable URL (the presenter's file, or the mix).
    const tag = el('span', 'rec-broadcast', 'broadcast');
    const replay = el('a', 'rec-replay', 'Replay');
    replay.href = r.replay;
    c.title.append(tag, replay);
  }
  c.meta.textContent = (r.participants.length ? r.participants.join(', ') : 'nobody published') +
    ' · ' + duration(r.durationMs) + (r.recovered ? ' · recovered after a crash' : '') +
    (r.stopped ? ' · ' + (STOPPED[r.stopped] || 'stopped early: ' + r.stopped) : '');

  const mixURL = r.mix && r.mix.url ? r.mix.url : '';
  const mixKey = mixURL ? pathOf(mixURL) : mixStatus(r);
  if (mixKey !== c.mixKey) {
    c.mixKey = mixKey;
    const parts = [];
    if (mixURL) {
      if (single) parts.push(el('div', 'rec-ready', 'Your recording is ready.'));
      parts.push(video(mixURL));
      const a = el('a', '', 'Download the mix');
      a.href = mixURL;
      a.download = '';
      parts.push(a);
    } else {
      parts.push(el('div', 'rec-mix-status', mixStatus(r)));
      if (r.mix && (r.mix.status === 'running' || r.mix.status === 'pending')) {
        const p = el('progress', 'rec-progress');
        p.max = 100;
        p.value = r.mix.progress || 0;
        parts.push(p);
      }
    }
    c.mix.replaceChildren(...parts);
  }
  const streamKey = r.streams.map((s) => pathOf(s.url)).join(' ');
  if (streamKey !== c.streamKey) {
    c.streamKey = streamKey;
    c.streams.replaceChildren(...r.streams.map((s) => {
      const d = el('div', 'rec-stream');
      d.append(el('div', '', s.participant + ' (' + s.kind + ') from ' + duration(s.offsetMs) + ', ' + duration(s.durationMs)),
        video(s.url));
      return d;
    }));
  }
  return c.root;
}

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = !text;
}

async function answerText(res) {
  try { return (await res.text()).trim(); } catch { return ''; }
}

// ---- a participant's signed link: one session ----

const params = new URLSearchParams(location.search);
const sessionPath = params.get('session');

async function refreshSession() {
  const q = new URLSearchParams({expires: params.get('expires') || '', sig: params.get('sig') || ''});
  const path = sessionPath.split('/').map(encodeURIComponent).join('/');
  try {
    const res = await fetch('/api/recordings/' + path + '?' + q, {cache: 'no-store'});
    if (!res.ok) {
      const why = await answerText(res);
      showError(res.status === 403 ? 'This link does not open a recording any more: ' + why :
        'Cannot load the recording: ' + (why || 'the server answered ' + res.status));
      return res.status >= 500; // keep trying only when the server may recover
    }
    const r = await res.json();
    showError('');
    title.textContent = 'Recording of ' + r.room;
    list.replaceChildren(card(r, true));
    return !(r.mix && (r.mix.status === 'done' || r.mix.status === 'failed'));
  } catch (e) {
    showError('Cannot load the recording: ' + e.message);
    return true;
  }
}

async function pollSession() {
  if (await refreshSession()) setTimeout(pollSession, 2000);
}

// ---- a token: the list ----

function storedToken() { try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; } }
function storeToken(t) { try { if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY); } catch {} }

let timer = null;

function askToken(message) {
  clearTimeout(timer);
  storeToken('');
  list.replaceChildren();
  cards.clear();
  empty.hidden = true;
  signOut.hidden = true;
  tokenForm.hidden = false;
  showError(message || '');
  tokenInput.focus();
}

async function refreshList() {
  const token = storedToken();
  const headers = token ? {Authorization: 'Bearer ' + token} : {};
  try {
    const res = await fetch('/api/recordings', {cache: 'no-store', headers});
    if (res.status === 401) {
      askToken(token ? 'The server refused this token: ' + await answerText(res) : '');
      return;
    }
    if (res.status === 403) {
      askToken('This token may not read recordings: ' + await answerText(res));
      return;
    }
    if (!res.ok) throw new Error('the server answered ' + res.status);
    const sessions = await res.json();
    tokenForm.hidden = true;
    signOut.hidden = !token;
    showError('');
    empty.hidden = sessions.length > 0;
    list.replaceChildren(...sessions.map((r) => card(r, false)));
  } catch (e) {
    showError('Cannot load the recordings: ' + e.message);
  }
  timer = setTimeout(refreshList, 2000);
}

tokenForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const t = tokenInput.value.trim();
  tokenInput.value = '';
  if (!t) return;
  storeToken(t);
  tokenForm.hidden = true;
  clearTimeout(timer);
  refreshList();
});

signOut.addEventListener('click', () => askToken('The token is forgotten.'));

if (sessionPath) {
  pollSession();
} else {
  const t = params.get('token');
  if (t) {
    storeToken(t);
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + (rest ? '?' + rest : '') + location.hash);
  }
  refreshList();
}
