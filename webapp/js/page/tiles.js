// Tile tools: every tile in the grid gets Pin (this tile big for me, the others in a strip)
// and Full screen buttons. Tiles are made elsewhere (app.js); this module finds them as they
// appear, so it needs no hook in the code that makes them.
//
//   const tiles = initTileTools(document.getElementById('grid'), {onLayout: layout});
//   tiles.pin(tileElement); tiles.pinned(); tiles.unpin();

/** tileName is the name a tile shows, for the buttons' accessible names. */
function tileName(tile) {
  const label = tile.querySelector('.label');
  return (label && label.textContent.trim()) || 'this tile';
}

/**
 * initTileTools adds the tools to every .tile under grid, now and later. onLayout is called
 * after the pinned tile changed (the grid's own layout may want to recount).
 */
export function initTileTools(grid, {onLayout = () => {}} = {}) {
  let pinnedTile = null;

  function refreshPin() {
    const tiles = [...grid.querySelectorAll('.tile')];
    if (pinnedTile && !tiles.includes(pinnedTile)) pinnedTile = null;
    grid.classList.toggle('has-pin', !!pinnedTile && tiles.length > 1);
    // The strip has room for at least four: one other tile is a thumbnail, not a second stage.
    grid.style.setProperty('--others', String(Math.max(tiles.length - 1, 4)));
    for (const t of tiles) {
      const on = t === pinnedTile;
      t.classList.toggle('pinned', on);
      const b = t.querySelector('.tool-pin');
      if (b) {
        b.setAttribute('aria-pressed', String(on));
        b.textContent = on ? 'Unpin' : 'Pin';
        b.setAttribute('aria-label', (on ? 'Unpin ' : 'Pin ') + tileName(t));
      }
      const f = t.querySelector('.tool-full');
      if (f) {
        const full = document.fullscreenElement === t;
        f.textContent = full ? 'Exit full screen' : 'Full screen';
        f.setAttribute('aria-label', (full ? 'Exit full screen' : 'Show full screen: ') + (full ? '' : tileName(t)));
      }
    }
  }

  function pin(tile) {
    pinnedTile = tile && tile !== pinnedTile ? tile : null;
    refreshPin();
    onLayout();
  }

  function decorate(tile) {
    if (tile.querySelector(':scope > .tools')) return;
    const tools = document.createElement('div');
    tools.className = 'tools';
    const pinBtn = document.createElement('button');
    pinBtn.type = 'button';
    pinBtn.className = 'tool-pin';
    pinBtn.addEventListener('click', () => pin(tile));
    const full = document.createElement('button');
    full.type = 'button';
    full.className = 'tool-full';
    full.hidden = !document.fullscreenEnabled;
    full.addEventListener('click', () => {
      if (document.fullscreenElement === tile) document.exitFullscreen().catch(() => {});
      else tile.requestFullscreen().catch((e) => console.warn('fullscreen', e));
    });
    tools.append(pinBtn, full);
    tile.append(tools);
    // A tap on a touch screen shows the tools (no hover there); a double-click pins or unpins.
    tile.addEventListener('pointerup', (e) => {
      if (e.pointerType === 'touch' && !e.target.closest('button')) tile.classList.toggle('touched');
    });
    tile.addEventListener('dblclick', (e) => { if (!e.target.closest('button')) pin(tile); });
  }

  const scan = () => {
    for (const t of grid.querySelectorAll('.tile')) decorate(t);
    refreshPin();
  };
  new MutationObserver((records) => {
    if (records.some((r) => [...r.addedNodes, ...r.removedNodes].some((n) => n.nodeType === 1 && (n.classList.contains('tile') || n.querySelector?.('.tile'))))) {
      scan();
      onLayout();
    }
  }).observe(grid, {childList: true, subtree: true});
  document.addEventListener('fullscreenchange', refreshPin);
  scan();

  return {
    pin,
    unpin: () => pin(null),
    pinned: () => pinnedTile,
    refresh: refreshPin,
  };
}

/**
 * followBarHeight keeps the CSS variable --bar-h at the height of bar (the controls, a fixed
 * bar at the bottom on a phone), so the stage and the drawers end above it however many rows
 * of buttons it has.
 */
export function followBarHeight(bar) {
  const set = () => document.documentElement.style.setProperty('--bar-h', Math.ceil(bar.getBoundingClientRect().height) + 'px');
  new ResizeObserver(set).observe(bar);
  set();
}
