// Keyboard shortcuts: a letter presses a control's button (M: microphone, V: camera), unless
// the user is typing in a field or holds a modifier. The buttons carry aria-keyshortcuts.

/** initKeyboard maps keys (one letter, upper case) to buttons. */
export function initKeyboard(map) {
  document.addEventListener('keydown', (e) => {
    if (e.defaultPrevented || e.repeat || e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    const b = map[(e.key || '').toUpperCase()];
    if (!b || b.disabled || b.hidden || b.offsetParent === null) return;
    e.preventDefault();
    b.click();
  });
}
