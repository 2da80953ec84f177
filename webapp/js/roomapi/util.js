// Small parts every module of the Room API shares: its error type, an event emitter, a job
// queue, and the info of FAILED events. Part of roomapi.js, which re-exports RoomApiError.

// ICE_RESTART_MIN_INTERVAL_MS is the least time between two ICE restarts of one peer connection
// that were not forced (a resumed session forces them).
export const ICE_RESTART_MIN_INTERVAL_MS = 10000;

/** An error refused by the server (code, reason from its `error`) or raised locally. */
export class RoomApiError extends Error {
  constructor(code, reason, request) {
    super(`${code}: ${reason}`);
    this.name = 'RoomApiError';
    this.code = code;
    this.reason = reason;
    if (request) this.request = request;
  }
}

export function toError(err, code = 'INTERNAL') {
  if (err instanceof RoomApiError) return err;
  const reason = err && err.message ? `${err.name && err.name !== 'Error' ? err.name + ': ' : ''}${err.message}` : String(err);
  return new RoomApiError(code, reason);
}

export class Emitter {
  constructor() { this._handlers = new Map(); }
  /** Registers cb for event ev; returns this so calls chain. */
  on(ev, cb) {
    if (typeof cb !== 'function') throw new TypeError('callback must be a function');
    if (!this._handlers.has(ev)) this._handlers.set(ev, []);
    this._handlers.get(ev).push(cb);
    return this;
  }
  off(ev, cb) {
    const list = this._handlers.get(ev);
    if (list) this._handlers.set(ev, list.filter((h) => h !== cb));
    return this;
  }
  _emit(ev, ...args) {
    for (const cb of [...(this._handlers.get(ev) || [])]) {
      try { cb(...args); } catch (e) { console.error(`roomapi: ${ev} handler failed`, e); }
    }
  }
}

// serial returns a function that runs async jobs one after the other (per peer connection:
// descriptions and candidates are applied in the order they arrived).
export function serial() {
  let tail = Promise.resolve();
  return (job) => {
    const p = tail.then(job);
    tail = p.catch(() => {});
    return p;
  };
}

export function textBytes(s) { return new TextEncoder().encode(s).length; }

// failInfo is the info passed with FAILED events: {code?, reason}, and "CODE: reason" as text.
export function failInfo(reason, code) {
  const info = {reason: reason || ''};
  if (code) info.code = code;
  Object.defineProperty(info, 'toString', {value: () => (code ? `${code}: ${info.reason}` : info.reason)});
  return info;
}

