// Who speaks, on the conference page (ROOM_EVENT.ACTIVE_SPEAKERS, docs/roomapi.md):
//  - every tile of someone speaking is highlighted (.speaking), the local one included;
//  - when no one shares a screen, the dominant speaker's camera is the big tile (.big: the page's
//    layout gives it the place a screen share has); speaking yourself keeps the last remote one;
//  - with more cameras than fit (more than 9 tiles on a laptop, 4 on a phone, yours included),
//    the stage shows the most recent speakers' video and the others are name tiles in a paged strip
//    below it: their tiles are hidden (hidden, .offstage), their audio plays on, and the page's tile
//    reports tell the server to send no video for them. ?view=all shows every camera instead.
// It only reads and marks the page's tiles (#tiles > .tile with data-name, data-kind, data-stream);
// the page calls update() with each ACTIVE_SPEAKERS, reset() when it leaves the room, and gives
// a relayout function. Names go in with textContent only.

const PHONE = '(max-width: 760px)';

/** Tiles on the stage (your own included) for a laptop and a phone. */
export const STAGE_TILES = Object.freeze({laptop: 9, phone: 4});

export class Speakers {
  /**
   * @param {{grid: HTMLElement, tiles: HTMLElement, local: HTMLElement, relayout: () => void, gallery?: boolean}} ui
   * gallery puts every camera on the stage, however many (the page's ?view=all).
   */
  constructor({grid, tiles, local, relayout, gallery}) {
    this._gallery = !!gallery;
    this._grid = grid;
    this._tiles = tiles;
    this._local = local;
    this._relayout = relayout || (() => {});
    this._phone = window.matchMedia ? window.matchMedia(PHONE) : null;
    this._page = 0;
    this._strip = this._makeStrip();
    grid.after(this._strip);
    this.reset();
    // Tiles come and go (and a screen share with them): arrange again.
    const mo = new MutationObserver(() => this._arrange());
    mo.observe(grid, {childList: true});
    mo.observe(tiles, {childList: true});
    if (this._phone && this._phone.addEventListener) this._phone.addEventListener('change', () => this._arrange());
  }

  /** Forget the room's speakers (the page left it). */
  reset() {
    this._self = '';
    this._speaking = new Set();
    this._dominant = ''; // the last dominant speaker other than this client
    this._recent = []; // names, most recent speaker first
    this._page = 0;
    this._arrange();
  }

  /** Apply an ACTIVE_SPEAKERS: info {dominant, speakers}, each {name, streamId, level, self}. */
  update(info) {
    const speakers = (info && info.speakers) || [];
    this._speaking = new Set(speakers.map((s) => s.name));
    for (const s of [...speakers].reverse()) this._touch(s.name, s.self);
    const d = info && info.dominant;
    if (d && d.self) this._self = d.name;
    if (d && !d.self) {
      this._dominant = d.name;
      this._touch(d.name, false);
    }
    for (const s of speakers) if (s.self) this._self = s.name;
    this._arrange();
  }

  /** The name of the remote participant on the big tile ('' when none is). */
  bigName() {
    const t = this._tiles.querySelector('.tile.big');
    return t ? t.dataset.name : '';
  }

  _touch(name, self) {
    if (self) return;
    this._recent = [name, ...this._recent.filter((n) => n !== name)].slice(0, 1000);
  }

  _arrange() {
    const all = [...this._tiles.children].filter((t) => t.classList.contains('tile'));
    const cams = all.filter((t) => t.dataset.kind !== 'screen');
    const screen = all.some((t) => t.dataset.kind === 'screen') || !!document.getElementById('localScreen');
    const limit = this._gallery ? Infinity : this._phone && this._phone.matches ? STAGE_TILES.phone : STAGE_TILES.laptop;
    // Yours and screen shares are always on the stage; cameras fill what is left, most recent speakers first.
    const slots = Math.max(1, limit - 1 - all.filter((t) => t.dataset.kind === 'screen').length);
    const rank = (t) => {
      const i = this._recent.indexOf(t.dataset.name);
      return i < 0 ? this._recent.length + cams.indexOf(t) : i;
    };
    const onStage = new Set(cams.length > slots ? [...cams].sort((a, b) => rank(a) - rank(b)).slice(0, slots) : cams);
    let changed = false;
    const set = (t, cls, on) => {
      if (t.classList.contains(cls) !== on) { t.classList.toggle(cls, on); changed = true; }
    };
    const offstage = [];
    for (const t of cams) {
      const off = !onStage.has(t);
      set(t, 'offstage', off);
      if (t.hidden !== off) { t.hidden = off; changed = true; }
      if (off) offstage.push(t);
    }
    const visible = all.filter((t) => !t.hidden).length + 1; // and your own tile
    let big = null;
    if (!screen && visible > 1) big = cams.find((t) => !t.hidden && t.dataset.name === this._dominant) || null;
    for (const t of all) {
      set(t, 'big', t === big);
      t.classList.toggle('speaking', t.dataset.kind !== 'screen' && this._speaking.has(t.dataset.name));
    }
    if (this._local) this._local.classList.toggle('speaking', !!this._self && this._speaking.has(this._self));
    this._fillStrip(offstage);
    if (changed) this._relayout();
  }

  _makeStrip() {
    const strip = document.createElement('div');
    strip.className = 'speaker-strip';
    strip.id = 'speakerStrip';
    strip.hidden = true;
    strip.setAttribute('aria-label', 'Other participants');
    const prev = document.createElement('button');
    prev.type = 'button';
    prev.className = 'strip-prev';
    prev.textContent = '‹';
    prev.title = 'Previous page';
    const names = document.createElement('div');
    names.className = 'strip-names';
    const pageNo = document.createElement('span');
    pageNo.className = 'strip-page';
    const next = document.createElement('button');
    next.type = 'button';
    next.className = 'strip-next';
    next.textContent = '›';
    next.title = 'Next page';
    prev.addEventListener('click', () => { this._page--; this._arrange(); });
    next.addEventListener('click', () => { this._page++; this._arrange(); });
    strip.append(prev, names, pageNo, next);
    return strip;
  }

  _fillStrip(offstage) {
    const strip = this._strip;
    strip.hidden = offstage.length === 0;
    const per = this._phone && this._phone.matches ? 4 : 8;
    const pages = Math.max(1, Math.ceil(offstage.length / per));
    this._page = Math.min(Math.max(this._page, 0), pages - 1);
    const names = strip.querySelector('.strip-names');
    const shown = offstage.slice(this._page * per, (this._page + 1) * per);
    const want = shown.map((t) => t.dataset.name).join('\n');
    if (names.dataset.names !== want) {
      names.dataset.names = want;
      names.replaceChildren(...shown.map((t) => {
        const n = document.createElement('div');
        n.className = 'name-tile';
        n.dataset.name = t.dataset.name;
        const i = document.createElement('span');
        i.className = 'initial';
        i.textContent = [...(t.dataset.name || '?').trim()][0] || '?';
        const l = document.createElement('span');
        l.className = 'label';
        l.textContent = t.dataset.name;
        n.append(i, l);
        return n;
      }));
    }
    for (const n of names.children) n.classList.toggle('speaking', this._speaking.has(n.dataset.name));
    // A raised hand shows on the name tile as on the camera tile it stands for.
    for (let i = 0; i < shown.length; i++) markNameTile(names.children[i], shown[i].dataset.hand === 'true');
    strip.querySelector('.strip-page').textContent = pages > 1 ? `${this._page + 1}/${pages}` : '';
    strip.querySelector('.strip-prev').disabled = this._page === 0;
    strip.querySelector('.strip-next').disabled = this._page >= pages - 1;
    strip.querySelector('.strip-prev').hidden = pages === 1;
    strip.querySelector('.strip-next').hidden = pages === 1;
  }
}

/**
 * markNameTile shows (or takes off) the raised-hand mark of a name tile on the
 * speaker strip (people.js calls it too when a hand goes up or down).
 */
export function markNameTile(n, hand) {
  if (!n || n.dataset.hand === String(hand)) return;
  n.dataset.hand = String(hand);
  let m = n.querySelector(':scope > .mark.hand');
  if (hand && !m) {
    m = document.createElement('span');
    m.className = 'mark hand';
    m.textContent = 'Hand up';
    m.setAttribute('role', 'img');
    m.setAttribute('aria-label', 'hand raised');
    m.title = 'hand raised';
    n.append(m);
  } else if (!hand && m) {
    m.remove();
  }
}
