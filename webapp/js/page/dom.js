// Small DOM helpers of the conference page's views. Text goes in with textContent, never as HTML.

/** el makes a tag with a class and a text (as text). */
export function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** initial is a name's first letter, upper case, for a tile without a picture. */
export function initial(name) {
  const ch = [...(name || '').trim()][0];
  return ch ? ch.toUpperCase() : '';
}

const pad = (n) => String(n).padStart(2, '0');

/** hhmm is a time stamp's local hours and minutes. */
export function hhmm(ts) {
  const d = new Date(ts || Date.now());
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
