// Quality at a glance: every two seconds the receiving connection's getStats gives, per remote
// tile, a connection-quality mark (from packet loss, round-trip time and the received picture)
// with its details on hover or tap. (Who speaks is speakers.js's, from the server.)

const PERIOD_MS = 2000;

/**
 * rate judges one interval of a received stream: 'good', 'fair' or 'poor', with words.
 * loss is the fraction of packets lost, rtt in seconds (or null), fps and height of the picture.
 */
export function rate({loss, rtt, fps, height, video}) {
  const parts = [];
  parts.push(`loss ${(loss * 100).toFixed(1)} %`);
  if (rtt != null) parts.push(`round trip ${Math.round(rtt * 1000)} ms`);
  if (video) parts.push(height ? `${height}p at ${Math.round(fps || 0)} fps` : 'no picture yet');
  let level = 'good';
  if (loss > 0.02 || (rtt != null && rtt > 0.3) || (video && height && fps < 10)) level = 'fair';
  if (loss > 0.08 || (rtt != null && rtt > 0.6) || (video && height && fps < 4)) level = 'poor';
  return {level, text: parts.join(', ')};
}

/**
 * initQuality watches the tiles under grid. pcs() returns the page's peer connections (the
 * subscribe connection among them); tiles carry a <video> whose srcObject holds the tracks.
 */
export function initQuality(grid, pcs) {
  const last = new Map(); // track id -> {lost, received, frames, ts}

  function markFor(tile) {
    let b = tile.querySelector(':scope > .conn-quality');
    if (!b) {
      b = document.createElement('button');
      b.type = 'button';
      b.className = 'conn-quality';
      b.dataset.level = 'good';
      const bars = document.createElement('span');
      bars.className = 'bars';
      bars.setAttribute('aria-hidden', 'true');
      bars.append(document.createElement('i'), document.createElement('i'), document.createElement('i'));
      const details = document.createElement('span');
      details.className = 'quality-details';
      b.append(bars, details);
      // A tap (no hover on a phone) shows or hides the details.
      b.addEventListener('click', () => b.classList.toggle('open'));
      tile.append(b);
    }
    return b;
  }

  async function tick() {
    const tiles = [...grid.querySelectorAll('.tile.remote')];
    if (!tiles.length) return;
    const inbound = new Map();
    let rtt = null;
    for (const pc of pcs()) {
      if (!pc || pc.connectionState === 'closed') continue;
      let report;
      try { report = await pc.getStats(); } catch { continue; }
      const receiving = [];
      report.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.trackIdentifier) { inbound.set(s.trackIdentifier, s); receiving.push(s); }
      });
      if (!receiving.length) continue;
      report.forEach((s) => {
        if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && s.currentRoundTripTime != null) rtt = s.currentRoundTripTime;
      });
    }
    for (const tile of tiles) {
      const v = tile.querySelector('video');
      const ms = v && v.srcObject;
      if (!ms) continue;
      let video = null;
      let audio = null;
      for (const tr of ms.getTracks()) {
        const s = inbound.get(tr.id);
        if (!s) continue;
        if (tr.kind === 'video') video = {s, id: tr.id}; else audio = {s, id: tr.id};
      }
      const main = video || audio;
      if (!main) continue;
      const prev = last.get(main.id);
      const now = {lost: main.s.packetsLost || 0, received: main.s.packetsReceived || 0, frames: main.s.framesDecoded || 0, ts: main.s.timestamp};
      last.set(main.id, now);
      if (!prev) continue;
      const dLost = Math.max(0, now.lost - prev.lost);
      const dRecv = Math.max(0, now.received - prev.received);
      const dt = Math.max(0.001, (now.ts - prev.ts) / 1000);
      const r = rate({
        loss: dLost + dRecv ? dLost / (dLost + dRecv) : 0,
        rtt,
        video: !!video,
        fps: video ? (now.frames - prev.frames) / dt : 0,
        height: video ? video.s.frameHeight || 0 : 0,
      });
      const b = markFor(tile);
      b.dataset.level = r.level;
      const label = `Connection ${r.level}: ${r.text}`;
      b.setAttribute('aria-label', label);
      b.title = label;
      b.querySelector('.quality-details').textContent = r.text;
    }
    for (const id of [...last.keys()]) if (![...inbound.keys()].includes(id)) last.delete(id);
  }

  let running = false;
  setInterval(() => {
    if (running) return;
    running = true;
    tick().finally(() => { running = false; });
  }, PERIOD_MS);
}
