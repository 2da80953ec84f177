// Plays a room's presenter over a WebSocket with Media Source Extensions: the path for viewers
// whom WebRTC cannot reach (docs/protocol.md, "Live over WebSocket"). The server sends a stream's
// description (text), its WebM header, then chunks of clusters that start at keyframes (binary).
// The player keeps the video near the live edge: it starts at what arrived, jumps the gaps a
// skip leaves (the server skips a viewer that fell behind to the next keyframe) and catches up
// when it is more than a few seconds behind.

const LIVE_EDGE_S = 3; // further behind than this, jump ahead
const KEEP_S = 20; // media kept behind the playhead

export class LivePlayer {
  /**
   * @param {HTMLVideoElement} video
   * @param {{room: string, name?: string, token?: string, password?: string,
   *          onStatus?: (status: string, info: object) => void, onEnded?: (info: object) => void,
   *          onError?: (code: string, reason: string) => void}} options
   */
  constructor(video, options) {
    this.video = video;
    this.options = options;
    this.ws = null;
    this.ms = null;
    this.sb = null;
    this.queue = [];
    this.timer = null;
    this.stopped = false;
    this.bytes = 0;
  }

  start() {
    const o = this.options;
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/live`;
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => {
      const req = {type: 'watch', room: o.room};
      if (o.name) req.name = o.name;
      if (o.token) req.token = o.token;
      if (o.password) req.password = o.password;
      ws.send(JSON.stringify(req));
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      if (typeof ev.data === 'string') this._onText(ev.data);
      else this._onData(ev.data);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws || this.stopped) return;
      this.ws = null;
      this._status('closed', {reason: ev.reason || `connection closed (${ev.code})`});
    };
    this.timer = setInterval(() => this._followLiveEdge(), 500);
  }

  /** Closes the WebSocket and lets the media go. */
  stop() {
    this.stopped = true;
    clearInterval(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) { ws.onmessage = ws.onclose = null; try { ws.close(1000); } catch { /* ignore */ } }
    this._dropMedia();
  }

  _status(status, info) { if (this.options.onStatus) this.options.onStatus(status, info || {}); }

  _onText(text) {
    let m;
    try { m = JSON.parse(text); } catch { return; }
    switch (m.type) {
      case 'stream': this._newStream(m); break;
      case 'waiting': this._dropMedia(); this._status('waiting', m); break;
      case 'ended':
        this.stop();
        if (this.options.onEnded) this.options.onEnded(m);
        break;
      case 'error':
        this.stop();
        if (this.options.onError) this.options.onError(m.code || 'ERROR', m.reason || '');
        break;
      default: break;
    }
  }

  _dropMedia() {
    this.queue = [];
    this.sb = null;
    if (this.ms) {
      const old = this.video.src;
      this.ms = null;
      this.video.removeAttribute('src');
      this.video.load();
      if (old) URL.revokeObjectURL(old);
    }
  }

  // A new stream (the first, or another presenter's): a MediaSource of its own.
  _newStream(m) {
    this._dropMedia();
    if (!window.MediaSource || !MediaSource.isTypeSupported(m.mime)) {
      this.stop();
      if (this.options.onError) this.options.onError('UNSUPPORTED', `this browser cannot play ${m.mime}`);
      return;
    }
    const ms = new MediaSource();
    this.ms = ms;
    ms.addEventListener('sourceopen', () => {
      if (this.ms !== ms) return;
      const sb = ms.addSourceBuffer(m.mime);
      sb.mode = 'segments';
      sb.addEventListener('updateend', () => this._pump());
      this.sb = sb;
      this._pump();
    }, {once: true});
    this.video.src = URL.createObjectURL(ms);
    this._status('playing', {publisher: m.publisher, stream: m.stream, mime: m.mime});
  }

  _onData(buf) {
    this.bytes += buf.byteLength;
    this.queue.push(buf);
    if (this.queue.length > 600) this.queue.splice(1, this.queue.length - 300); // a tab the browser held back
    this._pump();
  }

  _pump() {
    const sb = this.sb;
    if (!sb || sb.updating || !this.queue.length || !this.ms || this.ms.readyState !== 'open') return;
    try {
      sb.appendBuffer(this.queue[0]);
      this.queue.shift();
    } catch (e) {
      if (e.name === 'QuotaExceededError') this._trim(true);
      else console.warn('liveplayer: append', e);
    }
  }

  _trim(force) {
    const sb = this.sb;
    const v = this.video;
    if (!sb || sb.updating || !sb.buffered.length) return;
    const start = sb.buffered.start(0);
    const keepFrom = v.currentTime - (force ? 2 : KEEP_S);
    if (keepFrom - start > 1) { try { sb.remove(start, keepFrom); } catch { /* ignore */ } }
  }

  // Starts at what arrived, jumps gaps, and catches up when far behind the live edge.
  _followLiveEdge() {
    const v = this.video;
    const b = v.buffered;
    if (!b || !b.length) return;
    const end = b.end(b.length - 1);
    let inRange = false;
    for (let i = 0; i < b.length; i++) if (v.currentTime >= b.start(i) && v.currentTime <= b.end(i)) inRange = true;
    if (!inRange || end - v.currentTime > LIVE_EDGE_S) {
      // The newest range's start is a keyframe (a skip, or the first chunk); go there, or near the edge.
      const target = Math.max(b.start(b.length - 1), end - 1);
      if (Math.abs(v.currentTime - target) > 0.25) v.currentTime = target;
    }
    if (v.paused) {
      const p = v.play();
      if (p && p.catch) p.catch((err) => this._status('autoplay', {error: err}));
    }
    this._trim(false);
  }
}
