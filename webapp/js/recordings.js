// The recordings page: lists recorded room sessions from GET /api/recordings,
// with who took part, the duration, the mix's status and progress, and plays
// the mix and each stream. Every value from the server is set as text.

const list = document.getElementById('recList');
const empty = document.getElementById('recEmpty');
const errorBox = document.getElementById('recError');

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

function video(url) {
  const v = el('video');
  v.controls = true;
  v.preload = 'metadata';
  v.src = url;
  return v;
}

// Cards are kept by session and updated in place, so that a playing video
// is not interrupted by the refresh.
const cards = new Map();

function card(r) {
  let c = cards.get(r.session);
  if (!c) {
    c = {root: el('section', 'rec-session'), title: el('h2'), meta: el('div', 'meta'), mix: el('div', 'rec-mix'),
      streams: el('div', 'rec-streams'), mixURL: '', streamURLs: ''};
    c.root.dataset.session = r.session;
    c.root.append(c.title, c.meta, c.mix, c.streams);
    cards.set(r.session, c);
  }
  c.title.replaceChildren(el('span', '', r.room), el('span', 'rec-state ' + r.state, r.state),
    el('span', 'meta', new Date(r.start).toLocaleString()));
  c.meta.textContent = (r.participants.length ? r.participants.join(', ') : 'nobody published') +
    ' · ' + duration(r.durationMs) + (r.recovered ? ' · recovered after a crash' : '');

  const mixURL = r.mix && r.mix.url ? r.mix.url : '';
  if (mixURL !== c.mixURL || !mixURL) {
    c.mixURL = mixURL;
    const parts = [];
    if (mixURL) {
      parts.push(video(mixURL));
      const a = el('a', '', 'Download the mix');
      a.href = mixURL;
      a.download = '';
      parts.push(a);
    } else if (r.mix) {
      const status = el('div', 'rec-mix-status', 'Mix: ' + r.mix.status +
        (r.mix.status === 'running' ? ' ' + Math.floor(r.mix.progress) + '%' : '') + (r.mix.error ? ' — ' + r.mix.error : ''));
      parts.push(status);
      if (r.mix.status === 'running' || r.mix.status === 'pending') {
        const p = el('progress', 'rec-progress');
        p.max = 100;
        p.value = r.mix.progress || 0;
        parts.push(p);
      }
    } else {
      parts.push(el('div', 'rec-mix-status', r.state === 'recording' ? 'Recording…' : 'No mix'));
    }
    c.mix.replaceChildren(...parts);
  }
  const urls = r.streams.map((s) => s.url).join(' ');
  if (urls !== c.streamURLs) {
    c.streamURLs = urls;
    c.streams.replaceChildren(...r.streams.map((s) => {
      const d = el('div', 'rec-stream');
      d.append(el('div', '', s.participant + ' (' + s.kind + ') from ' + duration(s.offsetMs) + ', ' + duration(s.durationMs)),
        video(s.url));
      return d;
    }));
  }
  return c.root;
}

async function refresh() {
  try {
    const res = await fetch('/api/recordings', {cache: 'no-store'});
    if (!res.ok) throw new Error('the server answered ' + res.status);
    const sessions = await res.json();
    errorBox.hidden = true;
    empty.hidden = sessions.length > 0;
    list.replaceChildren(...sessions.map(card));
  } catch (e) {
    errorBox.textContent = 'Cannot load the recordings: ' + e.message;
    errorBox.hidden = false;
  }
}

refresh();
setInterval(refresh, 2000);
