/*
 * Strata web console: plain ES2020, no framework, no build step, nothing loaded from
 * elsewhere (the page is embedded in the binary and must work offline, under the server's
 * Content-Security-Policy: no inline scripts, same-origin fetches only).
 *
 * What it talks to (all JSON, errors as {"error": message, "code": "INVALID_ARGUMENT"}):
 *   POST /v1/sql {sql, max_rows}  -> {columns, rows, row_count, truncated, elapsed_ms, cost}
 *        (a long statement answers 200 at once, then whitespace, then the answer or an error
 *        object: so a 200 body can hold {"error": …} too)
 *   GET  /v1/tables               -> {tables: [{name, time_column, shard_key, shards, rows, …, columns}]}
 *   GET  /v1/tail/{table}?from_offset=N|end&offsets=0:12,.. -> NDJSON stream of every shard: {"from_offsets"}
 *        first, then {"shard","offset","row"} per record, {"heartbeat":true} now and then,
 *        possibly a final {"error","code"}
 *   GET  /v1/status               -> {role, tables, nodes?: {compute, ingest}, ingest?}
 *
 * Auth: a token typed once is kept in sessionStorage and sent as `Authorization: Bearer …`.
 * Everything the server sends is put into the DOM with textContent, never as HTML.
 * Sections: helpers · API · tables sidebar · result table · SQL · histogram · tail · cluster.
 */
'use strict';

// ---------------------------------------------------------------- helpers

const $ = (id) => document.getElementById(id);
const SVG_NS = 'http://www.w3.org/2000/svg';
const TOKEN_KEY = 'strata.token';     // sessionStorage
const HISTORY_KEY = 'strata.history'; // localStorage
const PAGE_SIZE = 100;
const MAX_ROWS = 10000;
const TAIL_DOM_ROWS = 1000;

/** Make an element: el('td', {className: 'num'}, 'text' | Node, …). Text goes in as text. */
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k in e) e[k] = v;
      else e.setAttribute(k, v);
    }
  }
  for (const c of children) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

/** A SQL identifier in double quotes. */
const qi = (name) => '"' + String(name).replace(/"/g, '""') + '"';

/** Milliseconds since the epoch as an ISO string for SQL: 2025-01-01T00:00:00.000Z. */
const isoMs = (ms) => new Date(ms).toISOString();

/**
 * A timestamp from the server (RFC 3339, fraction of any length, `Z`, an offset, or no zone
 * for zone-less columns, which are read as UTC) as epoch milliseconds; NaN if not a time.
 */
function parseTs(s) {
  const m = /^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d(?::\d\d)?)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?$/i.exec(String(s).trim());
  if (!m) return NaN;
  const frac = ((m[3] || '') + '000').slice(0, 3);
  let zone = (m[4] || 'Z').toUpperCase();
  if (/^[+-]\d{4}$/.test(zone)) zone = zone.slice(0, 3) + ':' + zone.slice(3);
  const time = m[2].length === 5 ? m[2] + ':00' : m[2];
  return Date.parse(`${m[1]}T${time}.${frac}${zone}`);
}

/** A datetime-local input's value, read as UTC, as epoch ms (NaN when empty). */
const inputMs = (input) => (input.value ? parseTs(input.value) : NaN);
/** Epoch ms as a datetime-local value (UTC, millisecond precision). */
const toInput = (ms) => isoMs(ms).slice(0, 23);

function fmtBytes(n) {
  if (typeof n !== 'number') return n === undefined || n === null ? '' : String(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + ' ' + units[i];
}

function fmtDuration(ms) {
  const steps = [[86400000, 'd'], [3600000, 'h'], [60000, 'min'], [1000, 's']];
  for (const [size, unit] of steps) if (ms >= size && ms % size === 0) return ms / size + ' ' + unit;
  return ms >= 1000 ? (ms / 1000).toFixed(3) + ' s' : ms + ' ms';
}

/** Human-readable UTC time for labels: 2025-01-01 00:00:00.000. */
const fmtTime = (ms) => isoMs(ms).replace('T', ' ').replace('Z', '');

/** A table cell for one JSON value from the server. */
function cell(v) {
  if (v === null || v === undefined) return el('td', { className: 'null' }, 'NULL');
  if (typeof v === 'number') return el('td', { className: 'num' }, String(v));
  if (typeof v === 'object') return el('td', null, JSON.stringify(v));
  return el('td', null, String(v));
}

function showError(box, err) {
  if (!err) { box.hidden = true; box.textContent = ''; return; }
  const parts = [];
  if (err.status === 401) parts.push('A token is needed: ');
  parts.push(err.message || String(err));
  const tags = [err.code, err.status ? 'HTTP ' + err.status : null].filter(Boolean);
  if (tags.length) parts.push(' [' + tags.join(', ') + ']');
  box.textContent = parts.join('');
  box.hidden = false;
}

function setStatus(text, bad) {
  const s = $('status-line');
  s.textContent = text;
  s.classList.toggle('bad', !!bad);
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(message, code, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

let token = sessionStorage.getItem(TOKEN_KEY) || '';

/** A 401: say so, and put the cursor in the token field. */
function needToken() {
  setStatus(token ? 'the token was refused: a token is needed' : 'a token is needed', true);
  const t = $('token');
  t.classList.add('wanted');
  t.focus();
}

/**
 * Call the API. opts: {method, json, signal, stream}. Resolves to the parsed JSON answer, or
 * with stream: true to the Response; rejects with an ApiError carrying message, code, status.
 */
async function api(path, opts = {}) {
  const headers = {};
  if (token) headers.Authorization = 'Bearer ' + token;
  let body;
  if (opts.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.json);
  }
  let resp;
  try {
    resp = await fetch(path, { method: opts.method || (body ? 'POST' : 'GET'), headers, body, signal: opts.signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError('cannot reach the server: ' + e.message, 'NETWORK', 0);
  }
  if (!resp.ok) {
    let j = {};
    try { j = await resp.json(); } catch (_) { /* not JSON */ }
    if (resp.status === 401) needToken();
    throw new ApiError(j.error || resp.statusText || 'request failed', j.code, resp.status);
  }
  if (opts.stream) return resp;
  const j = await resp.json();
  // A long statement commits to 200 before it knows the outcome: its error comes in the body.
  if (j && typeof j.error === 'string' && !('columns' in j)) {
    if (j.code === 'UNAUTHENTICATED') needToken();
    throw new ApiError(j.error, j.code, j.code === 'UNAUTHENTICATED' ? 401 : 0);
  }
  return j;
}

const sql = (statement, maxRows = MAX_ROWS) => api('/v1/sql', { json: { sql: statement, max_rows: maxRows } });

// ---------------------------------------------------------------- tables sidebar

let tables = [];            // from GET /v1/tables
let selectedTable = null;   // name shown in the detail panel

const tableInfo = (name) => tables.find((t) => t.name === name);

async function loadTables() {
  try {
    const j = await api('/v1/tables');
    tables = (j.tables || []).slice().sort((a, b) => a.name.localeCompare(b.name));
    setStatus(`${tables.length} table${tables.length === 1 ? '' : 's'} · ${token ? 'token set' : 'no token'}`);
    $('token').classList.remove('wanted');
  } catch (e) {
    tables = [];
    if (e.status !== 401) setStatus('tables: ' + e.message, true);
  }
  renderTables();
}

function renderTables() {
  const list = $('tables');
  list.textContent = '';
  if (!tables.length) list.append(el('li', { className: 'meta' }, 'no tables'));
  for (const t of tables) {
    const li = el('li', { dataset: { table: t.name }, title: 'show columns' },
      el('span', null, t.name), el('span', { className: 'n' }, t.rows ?? ''));
    li.classList.toggle('selected', t.name === selectedTable);
    li.addEventListener('click', () => showTable(t.name));
    list.append(li);
  }
  fillSelect($('hist-table'), tables.filter((t) => t.time_column));
  fillSelect($('tail-table'), tables);
  if (selectedTable && tableInfo(selectedTable)) showTable(selectedTable);
  else $('table-detail').hidden = true;
}

/** Refill a <select> with table names, keeping the choice when it still exists. */
function fillSelect(select, list) {
  const keep = select.value;
  select.textContent = '';
  for (const t of list) select.append(el('option', { value: t.name }, t.name));
  if (list.some((t) => t.name === keep)) select.value = keep;
}

function showTable(name) {
  const t = tableInfo(name);
  if (!t) return;
  selectedTable = name;
  for (const li of $('tables').children) li.classList.toggle('selected', li.dataset.table === name);
  const box = $('table-detail');
  box.textContent = '';
  const facts = [
    `time column: ${t.time_column || '—'}`, `shards: ${t.shards}`, `shard key: ${t.shard_key || '—'}`,
    `rows in segments: ${t.rows}`, `segments: ${t.segments}`, `size: ${fmtBytes(t.bytes)}`,
  ];
  const q = el('button', { type: 'button' }, 'Query');
  q.addEventListener('click', () => {
    const order = t.time_column ? ` ORDER BY ${qi(t.time_column)} DESC` : '';
    $('sql-editor').value = `SELECT * FROM ${qi(name)}${order} LIMIT 100`;
    switchTab('sql');
    runSql();
  });
  const h = el('button', { type: 'button', disabled: !t.time_column }, 'Histogram');
  h.addEventListener('click', () => {
    $('hist-table').value = name;
    clearRange();
    switchTab('histogram');
    runHistogram();
  });
  const tl = el('button', { type: 'button' }, 'Tail');
  tl.addEventListener('click', () => {
    $('tail-table').value = name;
    switchTab('tail');
    tailStart();
  });
  const cols = el('tbody');
  for (const c of t.columns || []) {
    cols.append(el('tr', { dataset: { column: c.name } },
      el('td', { className: 'col-name' }, c.name, c.name === t.time_column ? el('span', { className: 'badge' }, 'time') : null),
      el('td', { className: 'col-type' }, c.type + (c.nullable ? '' : ' not null'))));
  }
  box.append(el('strong', null, name), el('div', { className: 'facts' }, facts.join(' · ')),
    el('div', { className: 'actions' }, q, h, tl), el('table', null, cols));
  box.hidden = false;
}

// ---------------------------------------------------------------- result table with paging

/**
 * Show a /v1/sql answer in `box`: summary line, pager (ids `${prefix}-pager-prev|next|info`)
 * and a table.result of PAGE_SIZE rows per page.
 */
function renderResult(box, data, prefix) {
  box.textContent = '';
  const rows = data.rows || [];
  const cols = data.columns || [];
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
  let page = 0;

  const prev = el('button', { type: 'button', id: `${prefix}-pager-prev` }, '‹ Prev');
  const next = el('button', { type: 'button', id: `${prefix}-pager-next` }, 'Next ›');
  const info = el('span', { id: `${prefix}-pager-info`, className: 'meta' });
  const thead = el('thead', null, el('tr', null,
    ...cols.map((c) => el('th', null, c.name, el('span', { className: 'type' }, c.type)))));
  const tbody = el('tbody');

  function draw() {
    const start = page * PAGE_SIZE;
    const end = Math.min(rows.length, start + PAGE_SIZE);
    tbody.textContent = '';
    for (let i = start; i < end; i++) tbody.append(el('tr', null, ...rows[i].map(cell)));
    info.textContent = (rows.length ? `rows ${start + 1}–${end} of ${rows.length}` : 'no rows') +
      (data.truncated ? ` (truncated at max_rows = ${rows.length})` : '');
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  }
  prev.addEventListener('click', () => { if (page > 0) { page--; draw(); } });
  next.addEventListener('click', () => { if (page < pages - 1) { page++; draw(); } });
  box.append(el('div', { className: 'pager' }, prev, next, info),
    el('table', { className: 'result' }, thead, tbody));
  draw();
}

/** The cost object's top-level numbers, non-zero ones, as `key=value …`. */
function costLine(cost) {
  if (!cost || typeof cost !== 'object') return '';
  const nums = Object.entries(cost).filter(([, v]) => typeof v === 'number');
  const shown = nums.filter(([, v]) => v !== 0).map(([k, v]) => `${k}=${v}`);
  return shown.length ? shown.join(' ') : nums.length ? 'all zero' : '';
}

// ---------------------------------------------------------------- SQL tab

let sqlHistory = [];
try { sqlHistory = JSON.parse(localStorage.getItem(HISTORY_KEY) || '[]'); } catch (_) { sqlHistory = []; }
let historyPos = -1; // Alt+Up/Down position; -1 = not walking

function remember(statement) {
  sqlHistory = [statement, ...sqlHistory.filter((h) => h !== statement)].slice(0, 50);
  try { localStorage.setItem(HISTORY_KEY, JSON.stringify(sqlHistory)); } catch (_) { /* full or disabled */ }
  renderHistory();
}

function renderHistory() {
  const list = $('sql-history');
  list.textContent = '';
  for (const h of sqlHistory) {
    const li = el('li', { title: h }, h.replace(/\s+/g, ' '));
    li.addEventListener('click', () => { $('sql-editor').value = h; $('sql-editor').focus(); });
    list.append(li);
  }
}

let sqlSeq = 0; // the answer of the latest run wins

async function runSql() {
  const statement = $('sql-editor').value.trim();
  if (!statement) return;
  const seq = ++sqlSeq;
  historyPos = -1;
  remember(statement);
  const meta = $('sql-meta');
  meta.textContent = 'running…';
  $('sql-run').disabled = true;
  const t0 = performance.now();
  try {
    const data = await sql(statement);
    if (seq !== sqlSeq) return;
    showError($('sql-error'), null);
    renderResult($('sql-result'), data, 'sql');
    const round = Math.round(performance.now() - t0);
    meta.textContent = `${data.row_count} row${data.row_count === 1 ? '' : 's'} · ${data.elapsed_ms} ms on the server (${round} ms round trip)`;
    const cost = costLine(data.cost);
    if (cost) meta.append(el('div', { className: 'cost', title: JSON.stringify(data.cost) }, 'cost: ' + cost));
  } catch (e) {
    if (seq !== sqlSeq) return;
    meta.textContent = '';
    showError($('sql-error'), e);
    $('sql-result').textContent = '';
  } finally {
    if (seq === sqlSeq) $('sql-run').disabled = false;
  }
}

function onEditorKey(e) {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    runSql();
  } else if (e.altKey && (e.key === 'ArrowUp' || e.key === 'ArrowDown') && sqlHistory.length) {
    e.preventDefault();
    historyPos = e.key === 'ArrowUp' ? Math.min(sqlHistory.length - 1, historyPos + 1) : Math.max(-1, historyPos - 1);
    e.target.value = historyPos < 0 ? '' : sqlHistory[historyPos];
  }
}

// ---------------------------------------------------------------- histogram tab

const HIST = { buckets: 60, height: 240, left: 48, right: 12, top: 14, bottom: 34 };
let histSeq = 0;
let histView = null; // {from, to, width, buckets: [[startMs, n]]} of the drawn chart
let histVersion = 0; // bumped on every draw, as data-version (tests wait on it)

function clearRange() { $('hist-from').value = ''; $('hist-to').value = ''; }

/** Run the histogram and the rows below for the chosen table and range (full range if empty). */
async function runHistogram() {
  const name = $('hist-table').value;
  const t = tableInfo(name);
  const box = $('hist-error');
  const seq = ++histSeq;
  const chart = $('hist-svg');
  if (!t || !t.time_column) { showError(box, { message: 'choose a table with a time column' }); return; }
  const tc = qi(t.time_column);
  const tq = qi(name);
  chart.dataset.busy = '1';
  $('hist-info').textContent = 'running…';
  try {
    let from = inputMs($('hist-from'));
    let to = inputMs($('hist-to'));
    if (isNaN(from) || isNaN(to)) {
      const r = await sql(`SELECT min(${tc}), max(${tc}) FROM ${tq}`);
      const [lo, hi] = (r.rows && r.rows[0]) || [];
      if (lo === null || lo === undefined) throw new ApiError(`${name} has no rows`, null, 0);
      from = isNaN(from) ? parseTs(lo) : from;
      to = isNaN(to) ? parseTs(hi) + 1 : to; // `to` is exclusive; +1 ms keeps the newest row
      if (isNaN(from) || isNaN(to)) throw new ApiError(`cannot read the time range: ${lo} … ${hi}`, null, 0);
      if (seq !== histSeq) return;
      $('hist-from').value = toInput(from);
      $('hist-to').value = toInput(to);
    }
    if (!(from < to)) throw new ApiError('"from" must be before "to"', 'INVALID_ARGUMENT', 0);
    const width = Math.max(1, Math.ceil((to - from) / HIST.buckets));
    const where = `${tc} >= TIMESTAMP '${isoMs(from)}' AND ${tc} < TIMESTAMP '${isoMs(to)}'`;
    const [counts, rows] = await Promise.all([
      sql(`SELECT date_bin(INTERVAL '${width} milliseconds', ${tc}, TIMESTAMP '1970-01-01T00:00:00Z') AS bucket, ` +
          `count(*) AS n FROM ${tq} WHERE ${where} GROUP BY 1 ORDER BY 1`),
      sql(`SELECT * FROM ${tq} WHERE ${where} ORDER BY ${tc} DESC LIMIT 100`),
    ]);
    if (seq !== histSeq) return;
    showError(box, null);
    const buckets = counts.rows.map(([b, n]) => [parseTs(b), Number(n)]).filter(([b]) => !isNaN(b));
    histView = { from, to, width, buckets };
    drawHistogram();
    const total = buckets.reduce((s, [, n]) => s + n, 0);
    $('hist-info').textContent = `${total} rows · ${buckets.length} buckets of ${fmtDuration(width)} · ${counts.elapsed_ms} ms`;
    renderResult($('hist-rows'), rows, 'hist');
  } catch (e) {
    if (seq !== histSeq) return;
    showError(box, e);
    $('hist-info').textContent = '';
  } finally {
    if (seq === histSeq) delete chart.dataset.busy;
  }
}

/** Plot geometry for the current chart: x pixel <-> time. */
function histGeom() {
  const chart = $('hist-svg');
  const w = Math.max(200, chart.clientWidth || 800);
  const plotW = w - HIST.left - HIST.right;
  const { from, to } = histView;
  return {
    w, plotW,
    x: (ms) => HIST.left + ((ms - from) / (to - from)) * plotW,
    t: (px) => from + ((Math.min(Math.max(px, HIST.left), HIST.left + plotW) - HIST.left) / plotW) * (to - from),
  };
}

function drawHistogram() {
  const chart = $('hist-svg');
  chart.textContent = '';
  if (!histView) return;
  const g = histGeom();
  const { from, to, width, buckets } = histView;
  const plotH = HIST.height - HIST.top - HIST.bottom;
  const base = HIST.top + plotH;
  chart.setAttribute('viewBox', `0 0 ${g.w} ${HIST.height}`);
  const maxN = buckets.reduce((m, [, n]) => Math.max(m, n), 0);
  chart.append(svg('line', { x1: HIST.left, y1: base, x2: g.w - HIST.right, y2: base }),
    svg('line', { x1: HIST.left, y1: HIST.top, x2: HIST.left, y2: base }));
  for (const [b, n] of buckets) {
    if (!n) continue;
    const x0 = g.x(Math.max(b, from));
    const x1 = g.x(Math.min(b + width, to));
    const h = Math.max(1, (n / maxN) * plotH);
    const r = svg('rect', { class: 'bar', x: x0.toFixed(2), y: (base - h).toFixed(2),
      width: Math.max(1, x1 - x0 - 1).toFixed(2), height: h.toFixed(2), 'data-n': n, 'data-bucket': isoMs(b) });
    const title = svg('title');
    title.textContent = `${fmtTime(b)}: ${n}`;
    r.append(title);
    chart.append(r);
  }
  const label = (x, y, text, anchor) => {
    const e = svg('text', { x, y, 'text-anchor': anchor || 'start' });
    e.textContent = text;
    chart.append(e);
  };
  label(HIST.left - 4, HIST.top + 4, String(maxN), 'end');
  label(HIST.left - 4, base, '0', 'end');
  label(HIST.left, base + 16, fmtTime(from));
  label(g.w - HIST.right, base + 16, fmtTime(to), 'end');
  label(g.w / 2, base + 28, `bucket ${fmtDuration(width)} · UTC`, 'middle');
  if (!maxN) label(g.w / 2, HIST.top + plotH / 2, 'no rows in this range', 'middle');
  chart.dataset.version = String(++histVersion);
}

/** Click-drag on the chart draws a selection; releasing zooms to it. */
function setupHistogramDrag() {
  const chart = $('hist-svg');
  let start = null;
  let sel = null;
  const px = (e) => {
    const r = chart.getBoundingClientRect();
    return ((e.clientX - r.left) / r.width) * histGeom().w;
  };
  chart.addEventListener('mousedown', (e) => {
    if (!histView || e.button !== 0) return;
    e.preventDefault();
    start = px(e);
    sel = svg('rect', { class: 'sel', x: start, y: HIST.top, width: 0, height: HIST.height - HIST.top - HIST.bottom });
    chart.append(sel);
  });
  window.addEventListener('mousemove', (e) => {
    if (start === null) return;
    const x = px(e);
    sel.setAttribute('x', Math.min(start, x));
    sel.setAttribute('width', Math.abs(x - start));
  });
  window.addEventListener('mouseup', (e) => {
    if (start === null) return;
    const x = px(e);
    const a = Math.min(start, x);
    const b = Math.max(start, x);
    start = null;
    sel.remove();
    if (b - a < 4) return; // a click, not a drag
    const g = histGeom();
    const from = Math.floor(g.t(a));
    const to = Math.ceil(g.t(b));
    if (to - from < 1) return;
    $('hist-from').value = toInput(from);
    $('hist-to').value = toInput(to);
    runHistogram();
  });
  window.addEventListener('resize', () => { if (histView) drawHistogram(); });
}

// ---------------------------------------------------------------- tail tab

/**
 * One fetch for every shard of the table (the server merges them). `shards[i].next` is the
 * offset to ask for on resume (the resolved start offset, then last record + 1). Pause aborts
 * the fetch and keeps the offsets.
 */
const tail = { table: null, columns: [], shards: [], start: 'end', ctrl: null, gen: 0, state: 'stopped', received: 0 };

function setTailState(state, detail) {
  tail.state = state;
  const s = $('tail-state');
  s.textContent = detail ? `${state}: ${detail}` : state;
  s.className = 'state ' + state.split(' ')[0];
  $('tail-pause').disabled = state === 'stopped';
  $('tail-pause').textContent = state === 'paused' ? 'Resume' : 'Pause';
}

function renderTailOffsets() {
  $('tail-offsets').textContent = tail.shards.length
    ? 'next offset per shard: ' + tail.shards.map((s, i) => `${i}: ${s.next ?? '…'}${s.error ? ' (' + s.error + ')' : ''}`).join(' · ')
    : '';
  $('tail-count').textContent = tail.received ? `${tail.received} rows received` : '';
}

function tailStart() {
  const name = $('tail-table').value;
  const t = tableInfo(name);
  if (!t) { showError($('tail-error'), { message: 'choose a table' }); return; }
  const from = $('tail-from').value.trim() || 'end';
  if (from !== 'end' && !/^\d+$/.test(from)) {
    showError($('tail-error'), { message: 'start from "end" or an offset (a whole number)' });
    return;
  }
  tailStop();
  tail.table = name;
  tail.start = from;
  tail.columns = (t.columns || []).map((c) => c.name);
  tail.shards = Array.from({ length: Math.max(1, t.shards || 1) }, () => ({ next: null, error: null }));
  tail.received = 0;
  const head = $('tail-rows').tHead;
  head.textContent = '';
  head.append(el('tr', null, el('th', null, 'shard'), el('th', null, 'offset'), ...tail.columns.map((c) => el('th', null, c))));
  $('tail-rows').tBodies[0].textContent = '';
  showError($('tail-error'), null);
  tailResume();
}

/** Open the stream from every shard's next offset (or the start choice the first time). */
function tailResume() {
  const gen = ++tail.gen;
  setTailState('connecting');
  openTail(gen);
  renderTailOffsets();
}

/** Abort the stream, keeping each shard's next offset. */
function tailStop() {
  tail.gen++;
  if (tail.ctrl) tail.ctrl.abort();
  tail.ctrl = null;
}

function tailPauseToggle() {
  if (tail.state === 'paused') { tailResume(); return; }
  tailStop();
  setTailState('paused');
  renderTailOffsets();
}

async function openTail(gen) {
  const ctrl = new AbortController();
  tail.ctrl = ctrl;
  const known = tail.shards.map((s, i) => (s.next === null ? null : `${i}:${s.next}`)).filter((x) => x);
  const path = `/v1/tail/${encodeURIComponent(tail.table)}?from_offset=${encodeURIComponent(tail.start)}` +
    (known.length ? `&offsets=${known.join(',')}` : '');
  let retry = true;
  try {
    const resp = await api(path, { stream: true, signal: ctrl.signal });
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done || gen !== tail.gen) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) tailLine(gen, JSON.parse(line));
      }
    }
  } catch (e) {
    if (e.name === 'AbortError' || gen !== tail.gen) return;
    // A refusal (unknown table, no permission, too many tails) will not fix itself.
    if (e.status && e.status !== 503 && e.status !== 504) retry = false;
    showError($('tail-error'), e);
  }
  if (gen !== tail.gen) return;
  renderTailOffsets();
  if (!retry) { tailStop(); setTailState('error'); return; }
  setTailState('connecting', 'the stream ended, reconnecting');
  setTimeout(() => { if (gen === tail.gen) openTail(gen); }, 3000); // again from the next offsets
}

function tailLine(gen, msg) {
  if (gen !== tail.gen || !msg || msg.heartbeat) return;
  if (msg.from_offsets) { // the first line: where each shard starts
    for (const [shard, offset] of Object.entries(msg.from_offsets)) {
      const s = tail.shards[Number(shard)];
      if (s) { s.next = Number(offset); s.error = null; }
    }
    setTailState('following');
  } else if (typeof msg.error === 'string') { // that shard's tail failed on the server
    const s = tail.shards[Number(msg.shard)];
    if (s) s.error = msg.error;
    showError($('tail-error'), { message: `shard ${msg.shard}: ${msg.error}`, code: msg.code });
  } else if ('offset' in msg) {
    const s = tail.shards[Number(msg.shard)];
    if (s) s.next = Number(msg.offset) + 1;
    tail.received++;
    addTailRow(msg);
  }
  renderTailOffsets();
}

function addTailRow(msg) {
  const row = msg.row || {};
  for (const k of Object.keys(row)) { // a column added since the tail started
    if (!tail.columns.includes(k)) {
      tail.columns.push(k);
      $('tail-rows').tHead.rows[0].append(el('th', null, k));
    }
  }
  const tr = el('tr', null, cell(msg.shard), cell(msg.offset), ...tail.columns.map((c) => cell(row[c])));
  const body = $('tail-rows').tBodies[0];
  body.insertBefore(tr, body.firstChild);
  while (body.rows.length > TAIL_DOM_ROWS) body.lastChild.remove();
}

// ---------------------------------------------------------------- cluster tab

function simpleTable(headers, rows) {
  return el('table', { className: 'result' },
    el('thead', null, el('tr', null, ...headers.map((h) => el('th', null, h)))),
    el('tbody', null, ...rows.map((r) => el('tr', null, ...r.map((v) => (v instanceof Node ? v : cell(v)))))));
}

async function refreshCluster() {
  try {
    const st = await api('/v1/status');
    showError($('cluster-error'), null);
    $('cluster-role').textContent = 'role: ' + st.role;
    $('cluster-updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    const nodesBox = $('cluster-nodes');
    nodesBox.textContent = '';
    const nodes = st.nodes ? [...(st.nodes.compute || []), ...(st.nodes.ingest || [])] : null;
    if (!nodes) {
      nodesBox.append(el('div', { className: 'meta' }, 'all roles run in this process'));
    } else {
      nodesBox.append(simpleTable(['role', 'node', 'healthy', 'breaker', 'in flight', 'failures', 'last error'],
        nodes.map((n) => [n.role, n.node,
          el('td', { className: n.healthy ? 'ok' : 'bad' }, n.healthy ? 'yes' : 'no'),
          el('td', { className: n.breaker === 'closed' ? '' : 'bad' }, n.breaker),
          n.in_flight, n.consecutive_failures, n.last_error ?? '—'])));
    }
    const tablesBox = $('cluster-tables');
    tablesBox.textContent = '';
    const ts = st.tables || [];
    const owners = ts.some((t) => Array.isArray(t.shard_owners));
    tablesBox.append(ts.length ? simpleTable(
      ['tenant', 'table', 'shards', 'segments', 'rows', 'size', ...(owners ? ['shard owners'] : [])],
      ts.map((t) => [t.tenant, t.table, t.shards, t.segments, t.rows, fmtBytes(t.bytes),
        ...(owners ? [(t.shard_owners || []).map((o, i) => `${i}→${o}`).join(' ')] : [])]))
      : el('div', { className: 'meta' }, token ? 'no tables' : 'no tables visible (no token)'));
    const ing = st.ingest;
    $('cluster-ingest').textContent = ing ? `ingest buffer: ${fmtBytes(ing.buffered_bytes)} of ${fmtBytes(ing.limit_bytes)}` : '';
  } catch (e) {
    showError($('cluster-error'), e);
  }
}

// ---------------------------------------------------------------- tabs and start-up

const TABS = ['sql', 'histogram', 'tail', 'cluster'];
let currentTab = 'sql';

function switchTab(name) {
  if (!TABS.includes(name)) name = 'sql';
  currentTab = name;
  for (const t of TABS) {
    $('panel-' + t).hidden = t !== name;
    $('tab-' + t).classList.toggle('active', t === name);
    $('tab-' + t).setAttribute('aria-selected', String(t === name));
  }
  if (location.hash !== '#' + name) replaceHash('#' + name);
  if (name === 'cluster') refreshCluster();
  if (name === 'histogram' && histView) drawHistogram(); // width may have changed while hidden
}

function replaceHash(hash) {
  try { window.history.replaceState(null, '', hash); } catch (_) { /* file:// or sandboxed */ }
}

function init() {
  $('token').value = token;
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('token').value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    setStatus(token ? 'token set' : 'token cleared');
    loadTables();
    if (currentTab === 'cluster') refreshCluster();
  });
  $('tables-refresh').addEventListener('click', loadTables);
  for (const t of TABS) $('tab-' + t).addEventListener('click', () => switchTab(t));

  $('sql-run').addEventListener('click', runSql);
  $('sql-editor').addEventListener('keydown', onEditorKey);
  renderHistory();

  $('hist-run').addEventListener('click', runHistogram);
  for (const id of ['hist-from', 'hist-to']) $(id).addEventListener('keydown', (e) => { if (e.key === 'Enter') runHistogram(); });
  $('hist-reset').addEventListener('click', () => { clearRange(); runHistogram(); });
  $('hist-table').addEventListener('change', () => { clearRange(); histView = null; drawHistogram(); });
  setupHistogramDrag();

  $('tail-start').addEventListener('click', tailStart);
  $('tail-pause').addEventListener('click', tailPauseToggle);
  $('tail-clear').addEventListener('click', () => { $('tail-rows').tBodies[0].textContent = ''; tail.received = 0; renderTailOffsets(); });

  $('cluster-refresh').addEventListener('click', refreshCluster);
  setInterval(() => { if (currentTab === 'cluster' && !document.hidden) refreshCluster(); }, 5000);

  switchTab(location.hash.slice(1) || 'sql');
  loadTables();
}

init();
