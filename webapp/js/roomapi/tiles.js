// The tile watcher: how the page shows each remote stream's video, told to the server so it
// sends each the layer its size needs (docs/protocol.md "tiles"). Part of roomapi.js.

// TILES_DEBOUNCE_MS is how long the size of a tile must settle before the server is told.
const TILES_DEBOUNCE_MS = 300;

/**
 * TileWatcher tells the server how the page shows each remote stream's video: the size of its
 * <video> in device pixels, and whether it can be seen at all (in the viewport, on a visible page,
 * not hidden), debounced, one message for all the tiles that changed (docs/protocol.md "tiles").
 */
export class TileWatcher {
  /**
   * link: {canSend() → whether the room is joined and connected, send(tiles) → a promise of the
   * server's reply to a tiles request}.
   */
  constructor(link) {
    this._link = link;
    this._els = new Map(); // element -> stream id
    this._visible = new Map(); // element -> in the viewport
    this._sent = new Map(); // stream id -> last sent JSON
    this._timer = null;
    this._resize = typeof ResizeObserver !== 'undefined' ? new ResizeObserver(() => this._schedule()) : null;
    this._inter = typeof IntersectionObserver !== 'undefined' ? new IntersectionObserver((entries) => {
      for (const e of entries) this._visible.set(e.target, e.isIntersecting);
      this._schedule();
    }) : null;
    this._onVisibility = () => this._schedule();
    if (typeof document !== 'undefined') document.addEventListener('visibilitychange', this._onVisibility);
  }
  /** watch reports el (a <video>) as showing stream id. */
  watch(id, el) {
    if (this._els.get(el) === id) return;
    this._els.set(el, id);
    this._resize?.observe(el);
    this._inter?.observe(el);
    this._schedule();
  }
  /** unwatch stops reporting el for stream id. */
  unwatch(id, el) {
    if (this._els.get(el) !== id) return;
    this._els.delete(el);
    this._visible.delete(el);
    this._resize?.unobserve(el);
    this._inter?.unobserve(el);
  }
  /** close stops watching everything (the room is gone). */
  close() {
    clearTimeout(this._timer);
    this._resize?.disconnect();
    this._inter?.disconnect();
    if (typeof document !== 'undefined') document.removeEventListener('visibilitychange', this._onVisibility);
    this._els.clear();
  }
  _schedule() {
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._send(), TILES_DEBOUNCE_MS);
  }
  _send() {
    if (!this._link.canSend()) return;
    const dpr = (typeof window !== 'undefined' && window.devicePixelRatio) || 1;
    const pageVisible = typeof document === 'undefined' || document.visibilityState !== 'hidden';
    const byStream = new Map();
    for (const [el, id] of this._els) {
      const w = Math.round(el.clientWidth * dpr);
      const h = Math.round(el.clientHeight * dpr);
      const visible = pageVisible && el.isConnected && w > 0 && h > 0 && this._visible.get(el) !== false;
      const cur = byStream.get(id);
      // A stream shown in several elements: the largest visible one counts.
      if (!cur || (visible && (!cur.visible || w * h > cur.width * cur.height))) {
        byStream.set(id, {stream: id, width: visible ? w : 0, height: visible ? h : 0, visible});
      }
    }
    const changed = [];
    for (const [id, t] of byStream) {
      const j = JSON.stringify(t);
      if (this._sent.get(id) !== j) { this._sent.set(id, j); changed.push(t); }
    }
    for (const id of [...this._sent.keys()]) if (!byStream.has(id)) this._sent.delete(id);
    if (!changed.length) return;
    this._link.send(changed).catch((err) => {
      for (const t of changed) this._sent.delete(t.stream); // try again with the next change
      if (err.code !== 'NOT_JOINED' && err.code !== 'DISCONNECTED') console.warn('roomapi: tiles', err);
    });
  }
}
