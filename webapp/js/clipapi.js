// Media messages in the Room API: voice and video clips posted to a room over HTTP
// (docs/roomapi.md "Media messages"). roomapi.js makes one ClipStore per Room; pages use
//   room.clipsAccess(), room.postClip(blob, meta), room.getClips(),
//   ROOM_EVENT.CLIP_ADDED (clip) / CLIP_DELETED ({id, reason, clip}), clip.play(element), clip.delete().
// The join's reply carries a pass for these requests (valid while the participant is in the room).

/** An error the clips API answered ({code, reason}), or a network failure. */
export class ClipError extends Error {
  constructor(code, reason, status) {
    super(`${code}: ${reason}`);
    this.name = 'ClipError';
    this.code = code;
    this.reason = reason;
    this.status = status || 0;
  }
}

async function answer(resp) {
  if (resp.ok) return resp.status === 204 ? null : resp.json();
  let body = {};
  try { body = await resp.json(); } catch { /* not JSON */ }
  throw new ClipError(body.code || `HTTP_${resp.status}`, body.reason || resp.statusText, resp.status);
}

/**
 * One media message. Its store keeps it current through bind(update): update(info) takes the
 * server's newer description of it.
 */
export class Clip {
  constructor(store, info, bind = () => {}) {
    this._store = store;
    this._info = info;
    bind((i) => { this._info = i; });
  }
  id() { return this._info.id; }
  /** The author's name in the room. */
  author() { return this._info.author; }
  /** When it was posted (a Date). */
  time() { return new Date(this._info.ts); }
  /** When the server removes it (a Date), or null. */
  expires() { return this._info.expires ? new Date(this._info.expires) : null; }
  durationMs() { return this._info.durationMs; }
  bytes() { return this._info.bytes; }
  /** 'audio' or 'video'. */
  kind() { return this._info.kind; }
  mime() { return this._info.mime; }
  /** Whether this client posted it (as the same identity). */
  isOwn() { const a = this._store.access(); return !!a && this._info.owner === a.self; }
  /** Whether this client may delete it: its own, or any for a moderator. */
  canDelete() { const a = this._store.access(); return this.isOwn() || !!(a && a.moderate); }
  /** A URL that plays it here (it carries this participant's pass). */
  src() { return this._store.playURL(this._info.url); }
  /**
   * Plays it in element (an <audio> or <video>); resolves when it ended, rejects when it
   * cannot play (the browser's autoplay policy: NotAllowedError) or another clip took the element.
   */
  play(element) {
    return new Promise((resolve, reject) => {
      const token = {};
      element._parleyClip = token;
      const done = (fn, v) => {
        element.removeEventListener('ended', onEnded);
        element.removeEventListener('error', onError);
        element.removeEventListener('emptied', onEmptied);
        fn(v);
      };
      const onEnded = () => done(resolve, this);
      const onError = () => done(reject, new ClipError('PLAYBACK', 'the clip cannot be played here'));
      const onEmptied = () => { if (element._parleyClip !== token) done(reject, new ClipError('REPLACED', 'another clip plays here')); };
      element.addEventListener('ended', onEnded);
      element.addEventListener('error', onError);
      element.src = this.src();
      element.addEventListener('emptied', onEmptied);
      const p = element.play();
      if (p && p.catch) p.catch((err) => { if (element._parleyClip === token) done(reject, err); });
    });
  }
  /** Deletes it (its author, or a moderator). */
  delete() { return this._store.remove(this.id(), this._info.url); }
  toJSON() { return {...this._info}; }
}

/** The clips of one room as this client knows them. */
export class ClipStore {
  constructor(room, emit) {
    this._room = room;
    this._emit = emit;
    this._access = null;
    this._clips = new Map(); // id -> Clip, oldest first
    this._updates = new WeakMap(); // Clip -> its update(info)
  }

  /** setAccess takes the clips pass of a join's reply or a resumed session ({url, pass, post, …}). */
  setAccess(a) {
    if (a && a.pass && a.url) this._access = a;
  }

  /** {url, post, moderate, self, limits: {maxBlobBytes, maxClipSizeSec, …}} or null when the room has no clips. */
  access() {
    const a = this._access;
    return a ? {post: a.post, moderate: !!a.moderate, self: a.self, limits: {...a.limits}, passExpires: new Date(a.passExpires)} : null;
  }

  _need() {
    if (!this._access) throw new ClipError('CLIPS_DISABLED', 'this room has no media messages (or the room was not joined)');
    return this._access;
  }

  _headers(extra = {}) { return {...extra, Authorization: 'Bearer ' + this._access.pass}; }

  /** playURL is url (a clip's) with this participant's pass, for a media element. */
  playURL(url) {
    const a = this._access;
    return url + (a ? '?access_token=' + encodeURIComponent(a.pass) : '');
  }

  _clip(info) {
    let c = this._clips.get(info.id);
    if (c) {
      this._updates.get(c)(info);
    } else {
      let update = null;
      c = new Clip(this, info, (u) => { update = u; });
      this._updates.set(c, update);
      this._clips.set(info.id, c);
    }
    return c;
  }

  /** Fetches the room's clips (oldest first) and their limits. */
  async list() {
    const a = this._need();
    const r = await answer(await fetch(a.url, {headers: this._headers(), cache: 'no-store'}));
    if (r.limits) a.limits = r.limits;
    const ids = new Set(r.clips.map((i) => i.id));
    for (const id of [...this._clips.keys()]) if (!ids.has(id)) this._clips.delete(id);
    return r.clips.map((i) => this._clip(i));
  }

  /** The clips known here, oldest first. */
  known() { return [...this._clips.values()]; }

  /** Posts blob (a recording); resolves with the Clip. meta.onProgress(fraction) reports the upload. */
  async post(blob, meta = {}) {
    const a = this._need();
    if (!(blob instanceof Blob)) throw new ClipError('BAD_REQUEST', 'postClip needs a Blob');
    if (!a.post) throw new ClipError('FORBIDDEN', 'you may not post clips in this room');
    const max = a.limits && a.limits.maxBlobBytes;
    if (max && blob.size > max) throw new ClipError('TOO_LARGE', `the clip is ${blob.size} bytes; this room takes at most ${max}`);
    const info = await new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', a.url);
      for (const [k, v] of Object.entries(this._headers({'Content-Type': blob.type || 'application/octet-stream'}))) xhr.setRequestHeader(k, v);
      if (meta.onProgress) xhr.upload.onprogress = (e) => { if (e.lengthComputable) meta.onProgress(e.loaded / e.total); };
      xhr.onload = () => {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        if (xhr.status === 201) resolve(body);
        else reject(new ClipError(body.code || `HTTP_${xhr.status}`, body.reason || xhr.statusText, xhr.status));
      };
      xhr.onerror = () => reject(new ClipError('NETWORK', 'the upload failed; check the connection and try again'));
      xhr.send(blob);
    });
    return this._clip(info);
  }

  /** remove deletes the clip id at url (its author, or a moderator). */
  async remove(id, url) {
    this._need();
    await answer(await fetch(url, {method: 'DELETE', headers: this._headers()}));
    this._clips.delete(id);
  }

  /** Handles CLIP_ADDED and CLIP_DELETED; returns true when it was one of them. */
  onEvent(m) {
    if (m.event === 'CLIP_ADDED' && m.clip && m.clip.id) {
      this._emit('CLIP_ADDED', this._clip(m.clip));
      return true;
    }
    if (m.event === 'CLIP_DELETED' && m.clipId) {
      const clip = this._clips.get(m.clipId) || null;
      this._clips.delete(m.clipId);
      this._emit('CLIP_DELETED', {id: m.clipId, reason: m.reason || 'deleted', clip});
      return true;
    }
    return false;
  }
}
