// Chat panel: links in chat text made clickable safely, and an unread count on the Chat
// button while the panel is closed. Chat text stays text: only http(s) addresses become <a>
// elements, built with textContent and a fixed rel, never from HTML. The chat log and its form.

import {el, hhmm} from './dom.js';

const URL_RE = /\bhttps?:\/\/[^\s<>"']+/gi;
const TRAILING = /[.,;:!?)\]}'"]+$/;

/**
 * linkify returns a DocumentFragment of text with every http(s) address made a link that
 * opens in a new tab without a referrer or a handle on this page.
 */
export function linkify(text) {
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const m of String(text).matchAll(URL_RE)) {
    let href = m[0];
    // Punctuation after an address ("see https://x.org.") is not part of it.
    const tail = href.match(TRAILING);
    if (tail) href = href.slice(0, -tail[0].length);
    let url;
    try { url = new URL(href); } catch { continue; }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') continue;
    if (m.index > last) frag.append(document.createTextNode(text.slice(last, m.index)));
    const a = document.createElement('a');
    a.href = url.href;
    a.textContent = href;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    frag.append(a);
    last = m.index + href.length;
  }
  if (last < text.length) frag.append(document.createTextNode(text.slice(last)));
  return frag;
}

/**
 * initChatPanel wires the Chat button: it opens and closes the panel (body class chat-closed)
 * and counts lines from others that arrive while it is closed.
 * els: {button, badge, panel, log, input}; narrow: a MediaQueryList of the phone layout, where
 * the panel is a drawer over the video: closed at first and whenever the window becomes narrow.
 */
export function initChatPanel(els, {narrow = null} = {}) {
  let unread = 0;
  const show = () => {
    els.badge.textContent = unread ? String(unread) : '';
    if (unread) {
      const label = document.createElement('span');
      label.className = 'sr-only';
      label.textContent = ' unread';
      els.badge.append(label);
    }
  };
  const setOpen = (open) => {
    document.body.classList.toggle('chat-closed', !open);
    els.button.setAttribute('aria-expanded', String(open));
    if (open) {
      unread = 0;
      els.log.scrollTop = els.log.scrollHeight;
    }
    show();
  };
  const isOpen = () => !document.body.classList.contains('chat-closed');
  els.button.addEventListener('click', () => {
    const open = !isOpen();
    setOpen(open);
    if (open && !els.input.disabled) els.input.focus();
  });
  new MutationObserver((records) => {
    if (isOpen()) return;
    for (const r of records) {
      for (const n of r.addedNodes) {
        if (n.nodeType === 1 && n.classList.contains('chat-line') && !n.classList.contains('own') && !n.classList.contains('system')) unread++;
      }
    }
    show();
  }).observe(els.log, {childList: true});
  setOpen(!(narrow && narrow.matches));
  if (narrow) narrow.addEventListener('change', (e) => setOpen(!e.matches));
  return {open: () => setOpen(true), close: () => setOpen(false), unread: () => unread};
}

/**
 * initChatLog wires the chat log and its form. els: {log, form, to, text}; hooks: {room() → the
 * joined Room or null, error(err)}. Returns {line(name, text, {ts, cls, to}), updateTo()}:
 * line appends a line (cls 'system', 'own', 'private'; to: the receiver of an own private
 * line), updateTo refills the "Send to" list from the room's participants.
 *
 * A private line says so in words: "(private)" after the sender on the receiver's page,
 * "→ name" on the sender's.
 */
export function initChatLog(els, hooks) {
  function line(name, text, {ts, cls, to} = {}) {
    const log = els.log;
    const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 24;
    const row = el('div', 'chat-line' + (cls ? ' ' + cls : ''));
    const from = el('span', 'from', name);
    if (to) from.dataset.to = to;
    const parts = [el('span', 'time', hhmm(ts)), ' ', from];
    if (/\bprivate\b/.test(cls || '')) parts.push(el('span', 'private-mark', to ? ` \u2192 ${to}` : ' (private)'));
    const body = el('span', 'text');
    body.append(linkify(text));
    row.append(...parts, ' - ', body);
    log.append(row);
    if (stick) log.scrollTop = log.scrollHeight;
  }

  function updateTo() {
    const sel = els.to;
    const room = hooks.room();
    const current = sel.value;
    const names = room ? room.getParticipants().map((p) => p.name()).sort((a, b) => a.localeCompare(b)) : [];
    const have = [...sel.options].slice(1).map((o) => o.value);
    if (have.length !== names.length || have.some((n, i) => n !== names[i])) {
      while (sel.options.length > 1) sel.remove(1);
      for (const n of names) {
        const o = el('option', '', n);
        o.value = n;
        sel.append(o);
      }
    }
    sel.value = names.includes(current) ? current : '';
  }

  els.form.addEventListener('submit', (e) => {
    e.preventDefault();
    const room = hooks.room();
    const text = els.text.value;
    if (!room || !text.trim()) return;
    const to = els.to.value;
    const p = to ? room.getParticipant(to) : null;
    const sending = p ? p.sendMessage(text) : room.sendMessage(text, to || undefined);
    els.text.value = '';
    sending.then(({ts}) => {
      line(room.selfName(), text, {ts, cls: to ? 'own private' : 'own', to: to || undefined});
    }, (err) => {
      hooks.error(err);
      if (!els.text.value) els.text.value = text;
    });
  });

  return {line, updateTo};
}
