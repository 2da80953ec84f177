// Chat panel: links in chat text made clickable safely, and an unread count on the Chat
// button while the panel is closed. Chat text stays text: only http(s) addresses become <a>
// elements, built with textContent and a fixed rel, never from HTML.

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
