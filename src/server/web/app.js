// app.js: the tickgate dashboard's script (GET /app.js, loaded by index.html). A watchlist of
// live quotes, a canvas chart, a depth ladder and a time-and-sales tape of the selected
// symbol, connection/feed state and latency.
//
// Smooth at any rate: an update only stores the newest value of its symbol and marks the row
// dirty; a book only replaces the ladder's pending book; a trade is only queued for the tape;
// rows, flashes, the ladder, the tape and the chart are rendered at most once per animation
// frame. Per-second figures (updates/s, trades/s, books/s, latency percentiles) are refreshed
// on timers, never per message.
//
// Trades and books: only the selected symbol is subscribed with trades: true (every trade,
// never conflated) and depth: BOOK_DEPTH (its order book), to keep the traffic low; a symbol
// that is no longer selected is re-subscribed without them. The tape shows its last
// TAPE_ROWS trades, newest first, and a line wherever the gateway had to drop trades for this
// page (a gap) or the connection was replaced. The ladder shows the newest book: asks above,
// bids below, the spread between them, greyed out with a badge while the gateway says the
// book is stale.
//
// Where WebSockets do not get through to the gateway (a proxy), tickgate.js falls back to
// Server-Sent Events by itself: the same events, shown as "Connected · Server-Sent Events";
// the gateway's symbol list is then not available (it needs a WebSocket), so the picker is
// empty and the gateway refuses unknown symbols as they are added.
//
// Paced to what a person can read: each row asks the gateway for at most ROW_RATE updates/s
// (the "Display rate" control), the charted symbol for CHART_RATE; the gateway's conflation
// still delivers every symbol's latest value. On top of that tickgate.js throttles itself
// when the page falls behind (adaptive throttling), which the "Behind"/"Paced" badge shows.

import { connect, effectiveRate, formatDecimal, formatFixed, FORMATS, parseFixed, SlidingWindow } from '/tickgate.js';

/** The first visit's watchlist, kept to the symbols the gateway has (see initialWatchlist). */
const DEFAULT_WATCHLIST = ['SPY', 'QQQ', 'AAPL', 'MSFT', 'NVDA', 'AMZN', 'GOOGL', 'META', 'TSLA'];
/**
 * Updates/s each watchlist row asks for, unless the "Display rate" control says otherwise: a
 * cell that changes 20 times a second already looks continuous, and 20 × 9 rows is light work
 * for any page. 0 ("all") asks for every update.
 */
const ROW_RATE = 20;
/** Updates/s of the selected (charted) symbol: more detail where the eye is (or 0 when rows get all). */
const CHART_RATE = 60;
/** Rate changes (a selection moving with the arrow keys) are sent together after this pause, ms. */
const RATE_SETTLE_MS = 150;
const STORAGE_KEY = 'tickgate.dashboard.v2';
/** The previous version's preferences; its `format` was saved even when it was only the default. */
const LEGACY_STORAGE_KEY = 'tickgate.dashboard.v1';
const FORMAT_NAMES = { 'json-batch': 'batched JSON', json: 'JSON', binary: 'binary' };
const CHART_SPAN_MS = 5 * 60_000; // the chart shows up to the last 5 minutes
const CHART_MIN_SPAN_MS = 30_000; // and at least 30 s, while the history is younger
const CHART_BUCKET_MS = 250; // one chart point per symbol per 250 ms (1,200 per 5 minutes)
const CHART_EVERY_MS = 100; // redraw the chart at most 10 times a second: it moves slowly
const FLASH_MS = 350; // how long a changed cell stays highlighted
const TAPE_ROWS = 50; // trades (and gap lines) the tape keeps
/**
 * Order-book levels a side the selected symbol asks for (`depth`) and the ladder shows: the
 * ladder's height, fixed so it does not jump; 10 a side fits beside the chart and the tape.
 */
const BOOK_DEPTH = 10;
const MIN_BAR = 0.004; // the shortest bar of a level, as a fraction of the longest (~1 px)

const $ = (id) => document.getElementById(id);
const el = {
  conn: $('conn'), feed: $('feed'), lag: $('lag'), message: $('message'), rowRate: $('row-rate'),
  p50: $('lat-p50'), p99: $('lat-p99'), rtt: $('rtt'), msgRate: $('msg-rate'),
  form: $('add-form'), input: $('symbol-input'), datalist: $('symbol-list'),
  rows: $('rows'), table: $('watchlist'), empty: $('empty'), template: $('row-template'),
  chart: $('chart'), chartSymbol: $('chart-symbol'), chartQuote: $('chart-quote'), maxRate: $('max-rate'),
  tape: $('tape'), tapeRows: $('tape-rows'), tapeSymbol: $('tape-symbol'), tapeRate: $('tape-rate'),
  tapeEmpty: $('tape-empty'),
  bookPanel: $('book-panel'), book: $('book'), bookAsks: $('book-asks'), bookBids: $('book-bids'),
  bookSpread: $('book-spread'), bookSymbol: $('book-symbol'), bookHint: $('book-hint'), bookStale: $('book-stale'),
  bookRate: $('book-rate'),
};

// --- preferences (localStorage; every access may throw in locked-down browsers)

function loadPrefs() {
  const read = (key) => {
    const p = JSON.parse(localStorage.getItem(key));
    return p && typeof p === 'object' ? p : null;
  };
  try {
    const p = read(STORAGE_KEY);
    if (p) return p;
    // From v1 keep everything but a format of 'json': it was saved as the default, and the
    // default is now batched JSON.
    const legacy = read(LEGACY_STORAGE_KEY) ?? {};
    if (legacy.format === 'json') delete legacy.format;
    return legacy;
  } catch {
    return {};
  }
}

const prefs = loadPrefs();
prefs.maxRates ??= {}; // per-symbol rates chosen in the chart panel (else the pacing below)
if (![...el.rowRate.options].some((o) => Number(o.value) === prefs.rowRate)) prefs.rowRate = ROW_RATE;

function savePrefs() {
  if (!ready) return; // nothing to save before the first watchlist is built
  prefs.watchlist = [...rows.keys()];
  prefs.selected = selected;
  prefs.format = client.format;
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(prefs));
  } catch { /* storage full or disabled: the page still works */ }
}

/**
 * The watchlist to start with: the saved one (kept to symbols the gateway has; an empty saved
 * list stays empty), else the defaults the gateway has, else the gateway's first 8 symbols
 * (a crypto replay feed has none of the equity defaults).
 */
function initialWatchlist(universe, saved) {
  const known = new Set(universe);
  if (Array.isArray(saved)) {
    const kept = saved.filter((s) => known.has(s));
    if (kept.length > 0 || saved.length === 0) return kept;
  }
  const defaults = DEFAULT_WATCHLIST.filter((s) => known.has(s));
  return defaults.length > 0 ? defaults : universe.slice(0, 8);
}

// --- metrics

// End-to-end latency of live updates over the last 10 s (at most 4,096 samples): each update's
// age when this page handled it (u.age: the gateway's clock, as tickgate.js estimates it from
// pings, minus ts_gateway).
const latency = new SlidingWindow({ span: 10_000, capacity: 4096 });

// --- the watchlist

/** One watchlist row: its cells, the newest update not yet rendered, and its history. */
class Row {
  constructor(symbol) {
    this.symbol = symbol;
    this.tr = el.template.content.firstElementChild.cloneNode(true);
    this.tr.dataset.symbol = symbol;
    const cell = (c) => this.tr.querySelector(`.${c}`);
    this.cells = {
      bid: cell('c-bid'), ask: cell('c-ask'), last: cell('c-last'), chg: cell('c-chg'),
      vol: cell('c-vol'), rate: cell('c-rate'), cap: cell('c-cap'),
    };
    cell('c-sym').textContent = symbol;
    const del = this.tr.querySelector('.del');
    del.setAttribute('aria-label', `Remove ${symbol}`);
    del.title = `Remove ${symbol}`;
    this.latest = null; // the newest update, rendered on the next frame
    this.shown = {}; // text currently in each cell, to skip writes that change nothing
    this.prev = {}; // numbers last rendered, for the flash direction
    this.base = NaN; // the session's first price, for Chg %
    this.decimals = 2; // most fraction digits seen, for chart labels
    this.count = 0; // updates since the last rate sample
    this.rate = 0;
    this.series = new Series();
    this.showCap();
  }

  /** The rate the gateway is asked for: the pacing's, lowered while tickgate.js throttles. */
  showCap() {
    const asked = askedRate(this.symbol);
    const rate = effectiveRate(asked, client.rate);
    const throttled = rate !== asked;
    if (this.setText('cap', formatRate(rate))) {
      this.cells.cap.classList.toggle('throttled', throttled);
      this.cells.cap.title = throttled ? `lowered from ${formatRate(asked)}: this page fell behind` : '';
    }
  }

  setText(key, text) {
    if (this.shown[key] === text) return false;
    this.shown[key] = text;
    this.cells[key].textContent = text;
    return true;
  }
}

/** A symbol's price history: one point per CHART_BUCKET_MS, the last CHART_SPAN_MS of them. */
class Series {
  t = [];
  v = [];
  head = 0; // points before head are older than the span

  add(t, v) {
    const n = this.t.length;
    if (n > this.head && t - this.t[n - 1] < CHART_BUCKET_MS) {
      this.v[n - 1] = v; // same bucket: the newest value wins
      return;
    }
    this.t.push(t);
    this.v.push(v);
    while (this.t[this.head] < t - CHART_SPAN_MS) this.head++;
    if (this.head > 1024) { // compact now and then instead of shifting every time
      this.t.splice(0, this.head);
      this.v.splice(0, this.head);
      this.head = 0;
    }
  }
}

const rows = new Map(); // symbol -> Row, in display order
const dirty = new Set(); // rows with something to render
const flashing = new Map(); // cell -> time its flash ends
let universe = [];
let selected = null;
let ready = false; // the first watchlist is built
let chartDirty = true;
let chartForced = true; // redraw on the next frame, whatever CHART_EVERY_MS says
let chartDrawnAt = -Infinity;
let frameQueued = false;

/** The price a chart and Chg % follow: the last trade, or the mid before the first trade. */
function chartPrice(u) {
  return u.num.last !== 0 ? u.num.last : (u.num.bid + u.num.ask) / 2;
}

function addRow(symbol) {
  const row = new Row(symbol);
  rows.set(symbol, row);
  el.rows.append(row.tr);
  el.empty.hidden = true;
  return row;
}

/** Removes a row and unsubscribes; `refused`: the gateway refused the symbol (nothing to undo). */
function removeRow(symbol, { refused = false } = {}) {
  const row = rows.get(symbol);
  if (!row) return;
  const next = row.tr.nextElementSibling ?? row.tr.previousElementSibling;
  const hadFocus = row.tr.contains(document.activeElement);
  row.tr.remove();
  rows.delete(symbol);
  dirty.delete(row);
  delete prefs.maxRates[symbol];
  asked.delete(symbol);
  if (!refused) client.unsubscribe([symbol]).catch(() => {}); // the 'error' listener reports
  if (selected === symbol) select(next?.dataset.symbol ?? null);
  if (hadFocus) (next ?? el.input).focus();
  el.empty.hidden = rows.size > 0;
  if (!refused) say(`Removed ${symbol}.`); // else the error message stays
  savePrefs();
}

async function addSymbol(text) {
  const symbol = text.trim().toUpperCase();
  if (!symbol) return;
  if (rows.has(symbol)) {
    select(symbol);
    return say(`${symbol} is already in the watchlist.`);
  }
  if (universe.length > 0 && !universe.includes(symbol)) {
    return say(`Unknown symbol ${symbol}: not in the gateway's list.`);
  }
  const row = addRow(symbol);
  select(symbol);
  el.input.value = '';
  say(`Added ${symbol}.`);
  savePrefs();
  const maxRate = askedRate(symbol);
  const trades = symbol === selected; // it is, unless another was selected since
  const depth = trades ? BOOK_DEPTH : 0;
  asked.set(symbol, askedKey(maxRate, trades, depth));
  row.showCap();
  try {
    await client.subscribe([symbol], { maxRate, trades, depth });
  } catch (e) {
    if (e.kind === 'reply') removeRow(symbol, { refused: true }); // unknown, too many, rate limited
  }
}

// --- pacing: the max_rate each symbol asks for

/**
 * The rate `symbol` asks for: its own (the chart panel's control), else the display rate of
 * rows, more for the selected symbol.
 */
function askedRate(symbol) {
  const own = prefs.maxRates[symbol];
  if (own !== undefined) return own;
  if (symbol !== selected) return prefs.rowRate;
  return prefs.rowRate === 0 ? 0 : Math.max(prefs.rowRate, CHART_RATE);
}

/** '20/s', '1/2 s' or 'all'. */
function formatRate(rate) {
  if (rate === 0 || rate === Infinity) return 'all';
  if (rate < 1) return `1/${Number((1 / rate).toPrecision(2))} s`;
  return `${Number(rate.toPrecision(3))}/s`;
}

const asked = new Map(); // symbol -> askedKey(rate, trades, depth) last asked of the client
let ratesTimer = null;

/** What a symbol asks the client for: its rate, trades and depth (only the selected symbol's). */
const askedKey = (rate, trades, depth) => `${rate}${trades ? '+trades' : ''}${depth > 0 ? `+depth${depth}` : ''}`;

/**
 * Asks the client for every row's rate, trades and depth where they changed: one subscribe
 * per distinct combination. The selected symbol takes trades and its order book; the one
 * selected before is re-subscribed without them (depth 0).
 */
function syncRates() {
  clearTimeout(ratesTimer);
  ratesTimer = null;
  const byKey = new Map();
  for (const symbol of rows.keys()) {
    const maxRate = askedRate(symbol);
    const trades = symbol === selected;
    const depth = trades ? BOOK_DEPTH : 0;
    const key = askedKey(maxRate, trades, depth);
    if (asked.get(symbol) === key) continue;
    asked.set(symbol, key);
    if (!byKey.has(key)) byKey.set(key, { maxRate, trades, depth, symbols: [] });
    byKey.get(key).symbols.push(symbol);
  }
  // A held symbol only changes its rate, trades and depth (no new quote snapshot; a new
  // depth brings a fresh book); refusals reach the 'error' listener.
  for (const { maxRate, trades, depth, symbols } of byKey.values()) {
    client.subscribe(symbols, { maxRate, trades, depth }).catch(() => {});
  }
  for (const row of rows.values()) row.showCap();
}

/** syncRates after RATE_SETTLE_MS: a run of changes goes out as one request per rate. */
function queueRates() {
  ratesTimer ??= setTimeout(syncRates, RATE_SETTLE_MS);
}

/** Selects a row: it becomes the keyboard stop of the table and the chart's symbol. */
function select(symbol) {
  for (const row of rows.values()) {
    const on = row.symbol === symbol;
    row.tr.setAttribute('aria-selected', String(on));
    row.tr.tabIndex = on ? 0 : -1;
  }
  if (symbol === null && rows.size > 0) rows.values().next().value.tr.tabIndex = 0;
  selected = symbol;
  el.chartSymbol.textContent = symbol ?? '–';
  el.maxRate.disabled = symbol === null;
  el.maxRate.value = symbol === null ? '' : String(prefs.maxRates[symbol] ?? '');
  el.maxRate.setAttribute('aria-label', symbol ? `Max rate for ${symbol}` : 'Max rate');
  chartDirty = chartForced = true;
  describeChart();
  if (tapeSymbol !== symbol) resetTape(symbol);
  if (ladder.symbol !== symbol) resetLadder(symbol);
  queueFrame();
  queueRates(); // the chart's rate, the trades and the book move with the selection
  savePrefs();
}

// --- rendering, once per animation frame

function queueFrame() {
  if (!frameQueued) {
    frameQueued = true;
    requestAnimationFrame(frame);
  }
}

function frame(now) {
  frameQueued = false;
  for (const row of dirty) renderRow(row, now);
  dirty.clear();
  if (ladder.latest !== null) renderLadder();
  if (tapeQueue.length > 0) renderTape();
  for (const [cell, until] of flashing) {
    if (until <= now) {
      cell.classList.remove('up', 'down');
      flashing.delete(cell);
    }
  }
  if (chartDirty && (chartForced || now - chartDrawnAt >= CHART_EVERY_MS)) {
    chartDirty = chartForced = false;
    chartDrawnAt = now;
    drawChart();
  }
  if (flashing.size > 0 || chartDirty) queueFrame();
}

function renderRow(row, now) {
  row.setText('rate', row.rate.toFixed(row.rate < 10 ? 1 : 0));
  const u = row.latest;
  if (!u) return;
  row.latest = null;
  for (const key of ['bid', 'ask', 'last']) {
    if (row.setText(key, formatDecimal(u[key]))) {
      const before = row.prev[key];
      row.prev[key] = u.num[key];
      if (before !== undefined && before !== u.num[key]) flash(row.cells[key], u.num[key] > before, now);
    }
    const frac = u[key].split('.')[1]?.length ?? 0;
    if (frac > row.decimals) row.decimals = frac;
  }
  row.setText('vol', formatDecimal(u.volume, { minFraction: 0 }));
  const price = chartPrice(u);
  const chg = row.base ? ((price - row.base) / Math.abs(row.base)) * 100 : NaN;
  const text = formatChange(chg);
  if (row.setText('chg', text)) {
    row.cells.chg.classList.toggle('pos', text.startsWith('+'));
    row.cells.chg.classList.toggle('neg', text.startsWith('-'));
  }
}

/** A change in percent with two decimals and its sign: '+0.12%', '-3.40%', '0.00%', '–'. */
function formatChange(pct) {
  if (!Number.isFinite(pct)) return '–';
  const text = Math.abs(pct).toFixed(2);
  if (Number(text) === 0) return '0.00%';
  return `${pct > 0 ? '+' : '-'}${text}%`;
}

function flash(cell, up, now) {
  cell.classList.remove(up ? 'down' : 'up');
  cell.classList.add(up ? 'up' : 'down');
  flashing.set(cell, now + FLASH_MS);
}

// --- the depth ladder

// The selected symbol's order book, BOOK_DEPTH levels a side: asks above (the best, lowest,
// at the bottom, nearest the middle), the spread, bids below (the best, highest, on top).
// Each book replaces the previous one whole; only the newest of a frame is rendered, into
// rows built once: a frame writes only the cells whose text changed and the bars' scales.

/** One ladder row: price, size, and a bar as long as the size relative to the largest shown. */
class LadderRow {
  constructor() {
    this.tr = document.createElement('tr');
    this.tr.className = 'l-empty';
    this.price = this.tr.insertCell();
    this.price.className = 'num l-price';
    this.size = this.tr.insertCell();
    this.size.className = 'num l-size';
    const cell = this.tr.insertCell();
    cell.className = 'l-bar';
    this.bar = document.createElement('span');
    cell.append(this.bar);
    this.shown = { empty: true, price: '', size: '', scale: 0 }; // what is on screen
  }

  /**
   * Shows `level` ({price, size}; undefined: none) padded to `decimals` ({price, size}), its
   * bar scaled to its size over `largest`.
   */
  show(level, decimals, largest) {
    const empty = level === undefined;
    const price = empty ? '' : formatDecimal(level.price, { minFraction: decimals.price });
    const size = empty ? '' : formatDecimal(level.size, { minFraction: decimals.size });
    // Three digits are more than a bar has pixels; they spare a style write when nothing moved.
    // A level, however small next to the largest, keeps a sliver of a bar.
    const ratio = empty || !(largest > 0) ? 0 : Number(level.size) / largest;
    const scale = ratio > 0 ? Math.max(MIN_BAR, Math.round(ratio * 1000) / 1000) : 0;
    const s = this.shown;
    if (s.empty !== empty) this.tr.classList.toggle('l-empty', (s.empty = empty));
    if (s.price !== price) this.price.textContent = s.price = price;
    if (s.size !== size) this.size.textContent = s.size = size;
    if (s.scale !== scale) this.bar.style.transform = `scaleX(${(s.scale = scale)})`;
  }
}

const ladder = {
  symbol: null, // the symbol the ladder shows
  latest: null, // its newest book, not rendered yet
  count: 0, // its books since the last rate sample
  decimals: { price: 2, size: 0 }, // the most fraction digits seen: aligned columns that do not jitter
  asks: [], // the row of the i-th best ask (shown bottom up, the best nearest the middle)
  bids: [], // the row of the i-th best bid (shown top down)
};

/** Builds the ladder's rows, once. */
function buildLadder() {
  for (let i = 0; i < BOOK_DEPTH; i++) {
    ladder.asks.push(new LadderRow());
    ladder.bids.push(new LadderRow());
  }
  el.bookAsks.append(...ladder.asks.map((r) => r.tr).reverse());
  el.bookBids.append(...ladder.bids.map((r) => r.tr));
  el.bookHint.textContent = `top ${BOOK_DEPTH} levels a side`;
}

/** Empties the ladder for `symbol` (null: none selected). */
function resetLadder(symbol) {
  ladder.symbol = symbol;
  ladder.count = 0;
  ladder.decimals = { price: 2, size: 0 };
  for (const row of [...ladder.asks, ...ladder.bids]) row.show(undefined, ladder.decimals, 0);
  el.bookSymbol.textContent = symbol ?? '–';
  el.bookRate.textContent = '–';
  setSpread(symbol ? 'Waiting for the order book…' : 'Select a symbol to see its order book.', 'note');
  showBookStale(false);
  delete el.book.dataset.seq;
  // Selected again before its books were turned off: the client still has its newest.
  ladder.latest = (symbol && client.book(symbol)) || null;
}

/** The line between asks and bids, and its class: '' (a spread), 'note' or 'crossed'. */
function setSpread(text, kind) {
  if (el.bookSpread.textContent !== text) el.bookSpread.textContent = text;
  if (el.bookSpread.className !== kind) el.bookSpread.className = kind;
}

function showBookStale(stale) {
  const value = String(stale);
  if (el.bookPanel.dataset.stale === value) return;
  el.bookPanel.dataset.stale = value;
  el.bookStale.hidden = !stale;
}

/** The fraction digits of a decimal string: '0.617' -> 3, '100' -> 0. */
const fractionDigits = (text) => {
  const dot = text.indexOf('.');
  return dot < 0 ? 0 : text.length - dot - 1;
};

/** Renders the newest book into the ladder's rows. */
function renderLadder() {
  const b = ladder.latest;
  ladder.latest = null;
  const d = ladder.decimals;
  let largest = 0;
  for (const side of [b.bids, b.asks]) {
    for (let i = 0; i < side.length && i < BOOK_DEPTH; i++) {
      const { price, size } = side[i];
      d.price = Math.max(d.price, fractionDigits(price));
      d.size = Math.max(d.size, fractionDigits(size));
      largest = Math.max(largest, Number(size));
    }
  }
  for (let i = 0; i < BOOK_DEPTH; i++) {
    ladder.bids[i].show(b.bids[i], d, largest);
    ladder.asks[i].show(b.asks[i], d, largest);
  }
  setSpread(...spreadOf(b, d.price));
  showBookStale(b.stale);
  el.book.dataset.seq = String(b.seq);
}

/**
 * The line between asks and bids, [text, class]: the spread (exact) and in basis points of
 * the mid; a crossed, locked or one-sided book says so.
 */
function spreadOf(b, decimals) {
  const [bid, ask] = [b.bids[0], b.asks[0]];
  if (!bid || !ask) return [bid ? 'No asks' : ask ? 'No bids' : 'Empty book', 'note'];
  let spread;
  try {
    spread = parseFixed(ask.price) - parseFixed(bid.price);
  } catch {
    return ['–', 'note']; // more than 8 decimals: not a price the gateway sends
  }
  const text = (v) => formatDecimal(formatFixed(v), { minFraction: decimals });
  if (spread < 0n) return [`Crossed by ${text(-spread)}`, 'crossed'];
  if (spread === 0n) return ['Locked: bid = ask', 'crossed'];
  const mid = (Number(bid.price) + Number(ask.price)) / 2;
  const bps = (Number(formatFixed(spread)) / mid) * 1e4;
  // Basis points of the mid, to two significant digits at least (a cent on 61,837: 0.0016).
  const shown = bps.toFixed(bps >= 10 ? 1 : Math.min(20, Math.max(2, 1 - Math.floor(Math.log10(bps)))));
  return [`Spread ${text(spread)}${mid > 0 ? ` · ${shown} bps` : ''}`, ''];
}

// --- the time-and-sales tape

// The selected symbol's trades, gap lines ({missed}) and notes ({note}) not rendered yet,
// oldest first. Only the newest TAPE_ROWS can ever be seen: older ones are dropped from the
// queue before they cost a DOM node.
const tapeQueue = [];
let tapeSymbol = null; // the symbol the tape shows
let tapeCount = 0; // its trades since the last rate sample
let tapeRows = 0; // lines in the tape

/** Empties the tape for `symbol` (null: none selected). */
function resetTape(symbol) {
  tapeSymbol = symbol;
  tapeQueue.length = 0;
  tapeCount = 0;
  tapeRows = 0;
  el.tapeRows.replaceChildren();
  el.tapeSymbol.textContent = symbol ?? '–';
  el.tapeRate.textContent = '–';
  el.tapeEmpty.textContent = symbol ? 'Waiting for trades…' : 'Select a symbol to see its trades.';
  el.tapeEmpty.hidden = false;
}

function queueTape(entry) {
  tapeQueue.push(entry);
  if (tapeQueue.length > 2 * TAPE_ROWS) tapeQueue.splice(0, tapeQueue.length - TAPE_ROWS);
  queueFrame();
}

/** Puts the queued lines on top of the tape, newest first, in one insertion; trims the bottom. */
function renderTape() {
  const entries = tapeQueue.splice(0).slice(-TAPE_ROWS);
  const fragment = document.createDocumentFragment();
  for (let i = entries.length - 1; i >= 0; i--) fragment.append(tapeLine(entries[i]));
  el.tapeRows.prepend(fragment);
  tapeRows += entries.length;
  for (; tapeRows > TAPE_ROWS; tapeRows--) el.tapeRows.lastElementChild.remove();
  el.tapeEmpty.hidden = true;
}

const SIDE_TEXT = { buy: 'Buy', sell: 'Sell' };

/** One line of the tape: a trade, a gap or a note. */
function tapeLine(e) {
  const tr = document.createElement('tr');
  if (e.missed !== undefined || e.note !== undefined) {
    tr.className = e.note !== undefined ? 'note' : 'gap';
    const td = tr.insertCell();
    td.colSpan = 4;
    td.textContent = e.note ?? `${e.missed.toLocaleString('en-US')} ${e.missed === 1 ? 'trade' : 'trades'} missed`;
    if (e.missed !== undefined) td.title = 'the gateway dropped these trades for this page (it fell too far behind); they will not come';
    return tr;
  }
  if (e.side) tr.className = e.side;
  tr.dataset.seq = String(e.seq);
  const cell = (className, text) => {
    const td = tr.insertCell();
    td.className = className;
    td.textContent = text;
  };
  cell('t-time', formatTime(e.tsEvent));
  cell('num t-price', formatDecimal(e.price));
  cell('num t-size', formatDecimal(e.size, { minFraction: 0 }));
  cell('t-side', SIDE_TEXT[e.side] ?? '–');
  return tr;
}

const pad = (n, width = 2) => String(n).padStart(width, '0');

/** An event time (ns since the epoch, BigInt) as local HH:MM:SS.mmm. */
function formatTime(ns) {
  const d = new Date(Number(ns / 1_000_000n));
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

// --- the chart

const chartColors = {};
function readChartColors() {
  const css = getComputedStyle(document.documentElement);
  for (const name of ['line', 'fill', 'grid', 'text', 'dot', 'label']) {
    chartColors[name] = css.getPropertyValue(`--chart-${name}`).trim();
  }
  chartDirty = chartForced = true;
  queueFrame();
}
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', readChartColors);

function drawChart() {
  const canvas = el.chart;
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (w === 0 || h === 0) return;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = chartColors.text;

  const row = rows.get(selected);
  const s = row?.series;
  const now = performance.now();
  if (!s || s.t.length - s.head === 0) {
    ctx.textAlign = 'center';
    ctx.fillText(row ? 'waiting for data…' : 'select a symbol', w / 2, h / 2);
    return;
  }
  // Up to 5 minutes; a younger history fills the width (at least 30 s) rather than a sliver.
  const span = Math.min(CHART_SPAN_MS, Math.max(CHART_MIN_SPAN_MS, now - s.t[s.head]));
  const from = now - span;
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = s.head; i < s.t.length; i++) {
    if (s.t[i] < from && i + 1 < s.t.length) continue;
    lo = Math.min(lo, s.v[i]);
    hi = Math.max(hi, s.v[i]);
  }
  if (hi - lo < Math.abs(hi) * 1e-4 || hi === lo) { // flat: show a band around it
    const pad = Math.max(Math.abs(hi) * 5e-4, 10 ** -row.decimals);
    lo -= pad;
    hi += pad;
  }
  const padTop = 10, padBottom = 20, padLeft = 6, padRight = 64;
  const plotW = w - padLeft - padRight;
  const plotH = h - padTop - padBottom;
  const x = (t) => padLeft + ((t - from) / span) * plotW;
  const y = (v) => padTop + ((hi - v) / (hi - lo)) * plotH;

  const lastV = s.v[s.v.length - 1];

  // Grid: round price levels (at most 5) labelled on the right, except where the newest
  // price's label goes; a line every 5 s .. 1 min (at most 6) with its age below.
  ctx.strokeStyle = chartColors.grid;
  ctx.lineWidth = 1;
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  const priceStep = niceStep((hi - lo) / 4, 10 ** -row.decimals);
  for (let v = Math.ceil(lo / priceStep) * priceStep; v <= hi; v += priceStep) {
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(padLeft, yy);
    ctx.lineTo(padLeft + plotW, yy);
    ctx.stroke();
    if (Math.abs(yy - y(lastV)) > 14) ctx.fillText(v.toFixed(row.decimals), padLeft + plotW + 6, yy);
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'alphabetic';
  const step = [5_000, 10_000, 15_000, 30_000, 60_000].find((ms) => span / ms <= 6) ?? 60_000;
  for (let age = 0; age <= span; age += step) {
    const xx = Math.round(x(now - age)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(xx, padTop);
    ctx.lineTo(xx, padTop + plotH);
    ctx.stroke();
    const label = age === 0 ? 'now' : age % 60_000 === 0 ? `−${age / 60_000}m` : `−${age / 1000}s`;
    ctx.fillText(label, Math.max(padLeft + 12, Math.min(xx, padLeft + plotW - 10)), h - 5);
  }

  // The price line, held flat up to now, with the area under it.
  ctx.save();
  ctx.beginPath();
  ctx.rect(padLeft, padTop, plotW, plotH);
  ctx.clip();
  ctx.beginPath();
  let first = true;
  for (let i = s.head; i < s.t.length; i++) {
    const px = x(Math.max(s.t[i], from));
    const py = y(s.v[i]);
    if (first) ctx.moveTo(px, py);
    else ctx.lineTo(px, py);
    first = false;
  }
  ctx.lineTo(x(now), y(lastV));
  ctx.strokeStyle = chartColors.line;
  ctx.lineWidth = 1.5;
  ctx.lineJoin = 'round';
  ctx.stroke();
  ctx.lineTo(x(now), padTop + plotH);
  ctx.lineTo(x(Math.max(s.t[s.head], from)), padTop + plotH);
  ctx.closePath();
  ctx.fillStyle = chartColors.fill;
  ctx.fill();
  ctx.restore();

  // The newest price, marked on the right edge.
  ctx.fillStyle = chartColors.dot;
  ctx.beginPath();
  ctx.arc(x(now), y(lastV), 3, 0, 2 * Math.PI);
  ctx.fill();
  const label = lastV.toFixed(row.decimals);
  ctx.font = 'bold 11px system-ui, sans-serif';
  const lw = ctx.measureText(label).width + 8;
  const ly = Math.min(Math.max(y(lastV), padTop + 7), padTop + plotH - 7);
  ctx.fillRect(padLeft + plotW + 2, ly - 8, lw, 16);
  ctx.fillStyle = chartColors.label;
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  ctx.fillText(label, padLeft + plotW + 6, ly);
}

/** The smallest of 1, 2 or 5 times a power of ten that is at least `raw` (and `min`). */
function niceStep(raw, min) {
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((st) => st >= raw);
  return Math.max(step, min);
}

/** The chart's text alternative and the quote line under it, refreshed every few seconds. */
function describeChart() {
  const row = rows.get(selected);
  if (!row) {
    el.chart.setAttribute('aria-label', 'Price chart: no symbol selected');
    el.chartQuote.textContent = '';
    return;
  }
  const s = row.series;
  const vals = s.v.slice(s.head);
  if (vals.length === 0) {
    el.chart.setAttribute('aria-label', `${row.symbol} price chart: waiting for data`);
    return;
  }
  const d = row.decimals;
  const [lo, hi, now] = [Math.min(...vals), Math.max(...vals), vals[vals.length - 1]];
  el.chart.setAttribute('aria-label',
    `${row.symbol} price, last 5 minutes: now ${now.toFixed(d)}, low ${lo.toFixed(d)}, high ${hi.toFixed(d)}`);
  el.chartQuote.textContent = `low ${lo.toFixed(d)} · high ${hi.toFixed(d)}`;
}

// --- connection and status

/** A short message in the polite live region under the controls. */
function say(text) {
  el.message.textContent = text;
}

let everOpen = false;
let connectReason; // why the client last opened a connection itself: 'format change', 'resync'
let feedState = 'unknown';

/** Quotes and trades on screen are marked stale while disconnected or the feed is down. */
function markStale() {
  const stale = client.state !== 'open' || feedState === 'down';
  el.table.classList.toggle('stale', stale);
  el.tape.classList.toggle('stale', stale);
  el.book.classList.toggle('stale', stale);
}

function showConnection(ev) {
  const { state, format } = ev;
  el.conn.dataset.state = state;
  el.conn.dataset.format = format;
  el.conn.dataset.transport = ev.transport;
  markStale();
  // The live region's text changes only on real transitions, not on every retry.
  const text = {
    connecting: ev.reason === 'resync' ? 'Resyncing…' : everOpen ? 'Reconnecting…' : 'Connecting…',
    open: `Connected · ${ev.transport === 'sse' ? 'Server-Sent Events' : FORMAT_NAMES[format]}`,
    reconnecting: 'Disconnected · reconnecting…',
    idle: 'Idle · add a symbol to connect',
    closed: 'Closed',
  }[state];
  if (el.conn.textContent !== text) el.conn.textContent = text;
  if (state === 'reconnecting') {
    el.conn.title = `attempt ${ev.attempt}, next in ${(ev.delay / 1000).toFixed(1)} s; last close: ${ev.code} ${ev.meaning}`;
  } else {
    el.conn.removeAttribute('title');
  }
}

function showFeed(state) {
  feedState = state;
  el.feed.dataset.feed = state;
  el.feed.textContent = { unknown: 'Feed: unknown', up: 'Feed: live', down: 'Feed: DOWN · prices stale' }[state] ?? `Feed: ${state}`;
  markStale();
}

// A gateway with token auth needs a JWT: open the page as /#token=<JWT> (a fragment never
// reaches a server or its logs) or /?token=<JWT>.
const token = new URLSearchParams(location.hash.slice(1)).get('token') ??
  new URLSearchParams(location.search).get('token') ?? undefined;
// Pings every 2 s: the RTT on display stays current (and the clock estimate fresh).
const client = connect('/ws', { format: FORMATS.includes(prefs.format) ? prefs.format : FORMATS[0], token, pingInterval: 2000 });
for (const input of document.querySelectorAll('input[name=format]')) input.checked = input.value === client.format;

client.on('state', (ev) => {
  showConnection(ev);
  if (ev.state === 'connecting') connectReason = ev.reason;
  if (ev.state !== 'open') {
    if (feedState !== 'unknown') showFeed('unknown'); // no news of the feed while away
    return;
  }
  if (connectReason === 'resync') say('This page fell behind: it skipped the backlog and started again from the latest quotes.');
  else if (connectReason === 'fallback') say('WebSockets do not get through to the gateway: streaming over Server-Sent Events.');
  else if (connectReason === 'transport change') say('WebSockets get through again: back on a WebSocket.');
  else if (everOpen && connectReason !== 'format change') say('Reconnected.');
  // Trades sent while the connection was being replaced are gone: say so in the tape.
  if (everOpen && tapeSymbol !== null && (tapeRows > 0 || tapeQueue.length > 0)) {
    queueTape({ note: connectReason === 'format change' ? 'Format changed · trades in between not shown' : 'Reconnected · trades in between not shown' });
  }
  everOpen = true;
  showFeed(client.feed); // 'up' until the gateway says otherwise
  latency.clear(); // a new connection: old samples describe another path
  // (Over Server-Sent Events there is no list: the watchlist is built without it.)
  client.list().then(onUniverse, (e) => { if (e.kind === 'unsupported') onUniverse(null); });
});

client.on('status', ({ feed }) => showFeed(feed));

client.on('update', (u) => {
  const row = rows.get(u.symbol);
  if (!row) return;
  row.latest = u;
  row.count++;
  const now = performance.now();
  const price = chartPrice(u);
  if (Number.isNaN(row.base) && price !== 0) row.base = price;
  row.series.add(now, price);
  if (!u.snapshot) latency.add(u.age, now);
  dirty.add(row);
  if (row.symbol === selected) chartDirty = true;
  queueFrame();
});

// Trades of the selected symbol (the only one subscribed with trades) go to the tape's queue;
// the next animation frame renders them.
client.on('trade', (t) => {
  if (t.symbol !== tapeSymbol) return; // selected before, its trades not turned off yet
  tapeCount++;
  queueTape(t);
});

client.on('gap', (g) => {
  if (g.symbol === tapeSymbol) queueTape({ missed: g.missed });
});

// Books of the selected symbol (the only one subscribed with a depth) replace the ladder's
// pending book; the next animation frame renders the newest.
client.on('book', (b) => {
  if (b.symbol !== ladder.symbol) return; // selected before, its books not turned off yet
  ladder.latest = b;
  ladder.count++;
  queueFrame();
});

client.on('error', (e) => {
  if (e.kind === 'reply' && (e.code === 'unknown_symbol' || e.code === 'not_entitled')) {
    // Refused symbols are not held: drop their rows.
    const symbols = e.symbols ?? [];
    for (const s of symbols) removeRow(s, { refused: true });
    say(`${e.code === 'unknown_symbol' ? 'Unknown' : 'Not entitled to'}: ${symbols.join(', ')}.`);
  } else if (e.kind === 'reply') {
    say(`Gateway: ${e.message}`);
  } else if (e.kind === 'close') {
    say(e.message + '.');
  } else {
    console.warn('tickgate:', e);
  }
});

client.on('pong', ({ rtt }) => {
  el.rtt.textContent = `${rtt.toFixed(1)} ms`;
});

// Adaptive throttling (tickgate.js): a badge while this page is behind or paced below what
// it asked for; the rows' Max rate cells show the lowered rates.
let shownRate = Infinity;
client.on('lag', ({ lagMs, behind, rate, resync }) => {
  const paced = rate !== Infinity;
  const level = resync ? 'resync' : behind ? 'behind' : paced ? 'paced' : 'ok';
  // Text changes only with the state (a live region); the figures go in the tooltip.
  const text = {
    resync: 'Behind · dropping the backlog',
    behind: paced ? `Behind · paced to ${formatRate(rate)}` : 'Behind',
    paced: `Paced to ${formatRate(rate)}`,
    ok: '',
  }[level];
  el.lag.hidden = level === 'ok';
  el.lag.dataset.level = level;
  if (el.lag.textContent !== text) el.lag.textContent = text;
  el.lag.title = `this page handles updates ${formatMs(lagMs)} after the gateway got them (p90, last second)` +
    (paced ? `; throttled to ${formatRate(rate)} per symbol until it keeps up` : '');
  if (rate !== shownRate) {
    shownRate = rate;
    for (const row of rows.values()) row.showCap();
  }
});

/**
 * The `list` reply: fill the picker; on the first one, build and subscribe the watchlist.
 * `null`: no list (Server-Sent Events): the saved watchlist or the defaults, unchecked.
 */
function onUniverse(symbols) {
  if (symbols === null) {
    if (!ready) symbols = Array.isArray(prefs.watchlist) ? prefs.watchlist : DEFAULT_WATCHLIST;
    else return;
  } else if (symbols.join() !== universe.join()) {
    universe = symbols;
    el.datalist.replaceChildren(...symbols.map((s) => new Option(s)));
  }
  if (ready) return;
  ready = true;
  const watch = initialWatchlist(symbols, prefs.watchlist);
  for (const s of watch) addRow(s);
  el.empty.hidden = rows.size > 0;
  select(rows.has(prefs.selected) ? prefs.selected : (watch[0] ?? null));
  syncRates(); // subscribes the watchlist: one request per distinct rate
}

// Per-second figures: updates/s per row and overall; latency percentiles; the chart's scroll.
let lastTick = performance.now();
let lastMessages = 0;
setInterval(() => {
  const now = performance.now();
  const secs = (now - lastTick) / 1000;
  lastTick = now;
  for (const row of rows.values()) {
    row.rate = row.count / secs;
    row.count = 0;
    dirty.add(row);
  }
  const msgs = client.stats.updates;
  el.msgRate.textContent = Math.round((msgs - lastMessages) / secs).toLocaleString('en-US');
  lastMessages = msgs;
  if (tapeSymbol !== null) {
    const tps = tapeCount / secs;
    el.tapeRate.textContent = `${tps.toFixed(tps < 10 ? 1 : 0)} trades/s`;
  }
  tapeCount = 0;
  if (ladder.symbol !== null) {
    const bps = ladder.count / secs;
    el.bookRate.textContent = `${bps.toFixed(bps < 10 ? 1 : 0)} books/s`;
  }
  ladder.count = 0;
  const [p50, p99] = latency.percentiles(now, [50, 99]);
  el.p50.textContent = formatMs(p50);
  el.p99.textContent = formatMs(p99);
  chartDirty = true;
  queueFrame();
}, 1000);
setInterval(describeChart, 5000);

function formatMs(ms) {
  if (!Number.isFinite(ms)) return '–';
  return `${ms.toFixed(ms < 10 ? 2 : ms < 100 ? 1 : 0)} ms`;
}

// --- input

el.form.addEventListener('submit', (e) => {
  e.preventDefault();
  addSymbol(el.input.value);
});

for (const input of document.querySelectorAll('input[name=format]')) {
  input.addEventListener('change', () => {
    if (!input.checked) return;
    client.setFormat(input.value);
    savePrefs();
  });
}

el.rowRate.value = String(prefs.rowRate);
el.rowRate.addEventListener('change', () => {
  prefs.rowRate = Number(el.rowRate.value);
  savePrefs();
  syncRates();
});

el.maxRate.addEventListener('change', () => {
  if (!selected) return;
  const v = el.maxRate.value;
  if (v === '') delete prefs.maxRates[selected]; // auto: the display rate's
  else prefs.maxRates[selected] = Number(v);
  savePrefs();
  syncRates();
});

el.rows.addEventListener('click', (e) => {
  const tr = e.target.closest('tr');
  if (!tr) return;
  if (e.target.closest('.del')) return removeRow(tr.dataset.symbol);
  select(tr.dataset.symbol);
  tr.focus();
});

// Keyboard: the selected row is the table's tab stop; arrows, Home and End move the selection;
// Delete or Backspace removes the row (its × button does the same).
el.rows.addEventListener('keydown', (e) => {
  const tr = e.target;
  if (!(tr instanceof HTMLTableRowElement)) return;
  const list = [...el.rows.rows];
  const i = list.indexOf(tr);
  const to = {
    ArrowDown: list[i + 1], ArrowUp: list[i - 1], Home: list[0], End: list[list.length - 1],
  }[e.key];
  if (to) {
    e.preventDefault();
    select(to.dataset.symbol);
    to.focus();
  } else if (e.key === 'Delete' || e.key === 'Backspace') {
    e.preventDefault();
    removeRow(tr.dataset.symbol);
  } else if (e.key === 'Enter' || e.key === ' ') {
    e.preventDefault();
    select(tr.dataset.symbol);
  }
});

new ResizeObserver(() => {
  chartDirty = chartForced = true;
  queueFrame();
}).observe(el.chart);

buildLadder();
resetTape(null);
resetLadder(null);
readChartColors();
