/*
 * tuner web dashboard.
 *
 * Hand-written for the tuner project; licence Apache-2.0 (the project's licence).
 * No third-party code, no build step, no external requests: plain modern JavaScript
 * reading the server's own JSON API, with charts drawn as SVG by hand.
 *
 * Routes (URL hash): `#/` lists the studies, `#/studies/{id}` shows one study.
 */
'use strict';

(() => {
  // ---------------------------------------------------------------------------------
  // Constants
  // ---------------------------------------------------------------------------------

  const SVG_NS = 'http://www.w3.org/2000/svg';
  const TOKEN_KEY = 'tuner.token';
  const LIST_REFRESH_MS = 3000;
  const PAGE_SIZE = 50;
  /** Learning curves drawn for the best trials. */
  const TOP_CURVES = 10;
  /** Running trials whose curves are drawn while a study is live. */
  const RUNNING_CURVES = 3;
  /** Parallel coordinates: best trials drawn as individual coloured lines. */
  const PC_MAX_LINES = 1000;
  /** Refetch the importance at most this often while a study runs. */
  const IMPORTANCE_EVERY_MS = 10000;
  const FINAL_STATES = new Set(['completed', 'pruned', 'failed']);
  const TRIAL_STATES = ['pending', 'running', 'completed', 'pruned', 'failed'];
  const PALETTE = [
    '#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b',
    '#e377c2', '#17becf', '#bcbd22', '#7f7f7f', '#393b79', '#ad494a',
    '#637939', '#843c39', '#3182bd', '#e6550d',
  ];
  // Viridis, sampled at 9 points (the colour map is public domain, CC0).
  const VIRIDIS = [
    [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
  ];

  // ---------------------------------------------------------------------------------
  // DOM helpers
  // ---------------------------------------------------------------------------------

  /** An HTML element: h('td', {class: 'num', title: 'x'}, 'text', child, ...). */
  function h(tag, props, ...kids) {
    const e = document.createElement(tag);
    if (props) {
      for (const k of Object.keys(props)) {
        const v = props[k];
        if (v == null || v === false || k === 'style') continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? '' : String(v));
      }
    }
    add(e, kids);
    return e;
  }

  /** Replaces the children of el (null and false kids are skipped). */
  function fill(el, ...kids) {
    el.replaceChildren();
    return add(el, kids);
  }

  function add(parent, kids) {
    for (const k of kids) {
      if (k == null || k === false) continue;
      if (Array.isArray(k)) add(parent, k);
      else parent.appendChild(typeof k === 'object' ? k : document.createTextNode(String(k)));
    }
    return parent;
  }

  /** An SVG element with presentation attributes, appended to parent when given. */
  function s(tag, attrs, parent) {
    const e = document.createElementNS(SVG_NS, tag);
    if (attrs) {
      for (const k of Object.keys(attrs)) {
        const v = attrs[k];
        if (v != null && k !== 'style') e.setAttribute(k, String(v));
      }
    }
    if (parent) parent.appendChild(e);
    return e;
  }

  function stext(parent, attrs, text) {
    const t = s('text', attrs, parent);
    t.textContent = text;
    return t;
  }

  function stitle(parent, text) {
    const t = document.createElementNS(SVG_NS, 'title');
    t.textContent = text;
    parent.appendChild(t);
    return parent;
  }

  function svgRoot(width, height, cls) {
    return s('svg', {
      class: 'chart ' + (cls || ''), width, height, viewBox: `0 0 ${width} ${height}`,
      role: 'img', preserveAspectRatio: 'xMinYMin meet',
    });
  }

  /** Pointer position in the SVG's user coordinates. */
  function svgPoint(svg, ev) {
    const m = svg.getScreenCTM();
    if (!m) return { x: 0, y: 0 };
    const p = new DOMPoint(ev.clientX, ev.clientY).matrixTransform(m.inverse());
    return { x: p.x, y: p.y };
  }

  const r1 = (v) => Math.round(v * 10) / 10;

  // ---------------------------------------------------------------------------------
  // Formatting
  // ---------------------------------------------------------------------------------

  const intFormat = new Intl.NumberFormat('en-US');
  const fmtInt = (n) => (n == null ? '—' : intFormat.format(n));

  /** A number with 4 significant digits (exponent form when very small or large). */
  function fmt(v) {
    if (v == null || v === '') return '—';
    if (typeof v === 'boolean') return String(v);
    if (typeof v !== 'number') return String(v);
    if (!Number.isFinite(v)) return String(v);
    const a = Math.abs(v);
    if (Number.isInteger(v) && a < 1e6) return String(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) {
      return v.toExponential(3).replace(/\.?0+e/, 'e').replace('e+', 'e');
    }
    return String(parseFloat(v.toPrecision(4)));
  }

  const fmtPct = (x, digits = 1) => (x == null || !Number.isFinite(x) ? '—' : (x * 100).toFixed(digits) + '%');

  function fmtDuration(sec) {
    if (sec == null || !Number.isFinite(sec)) return '—';
    if (sec < 1) return Math.round(sec * 1000) + ' ms';
    if (sec < 60) return sec.toFixed(sec < 10 ? 1 : 0) + ' s';
    const m = Math.floor(sec / 60);
    const rest = Math.round(sec - m * 60);
    if (m < 60) return `${m}m ${String(rest).padStart(2, '0')}s`;
    return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
  }

  function fmtTime(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  function fmtAgo(iso) {
    const t = new Date(iso).getTime();
    if (!Number.isFinite(t)) return '';
    const sec = Math.max(0, (Date.now() - t) / 1000);
    if (sec < 60) return 'just now';
    if (sec < 3600) return Math.floor(sec / 60) + ' min ago';
    if (sec < 86400) return Math.floor(sec / 3600) + ' h ago';
    return Math.floor(sec / 86400) + ' d ago';
  }

  function paramText(params, names) {
    if (!params) return '';
    const keys = names || Object.keys(params);
    return keys.filter((k) => k in params).map((k) => `${k} = ${fmt(params[k])}`).join('\n');
  }

  function plural(n, word) {
    return `${fmtInt(n)} ${word}${n === 1 ? '' : 's'}`;
  }

  // ---------------------------------------------------------------------------------
  // Colour
  // ---------------------------------------------------------------------------------

  /** Viridis at t in [0, 1] (0 dark purple, 1 yellow). */
  function viridis(t) {
    const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
    const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
    const f = x - i;
    const a = VIRIDIS[i];
    const b = VIRIDIS[i + 1];
    const c = (k) => Math.round(a[k] + (b[k] - a[k]) * f);
    return `rgb(${c(0)},${c(1)},${c(2)})`;
  }

  /** White to deep blue, for the confusion matrix. */
  function blues(t) {
    const x = Math.min(1, Math.max(0, t));
    const from = [247, 251, 255];
    const to = [8, 48, 107];
    const g = Math.pow(x, 0.7);
    const c = (k) => Math.round(from[k] + (to[k] - from[k]) * g);
    return `rgb(${c(0)},${c(1)},${c(2)})`;
  }

  // ---------------------------------------------------------------------------------
  // Scales and axes
  // ---------------------------------------------------------------------------------

  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const norm = raw / mag;
    const step = norm >= 7.5 ? 10 : norm >= 3.5 ? 5 : norm >= 1.5 ? 2 : 1;
    return step * mag;
  }

  function linearTicks(lo, hi, count) {
    if (!(hi > lo)) return [lo];
    const step = niceStep(hi - lo, count);
    const out = [];
    const start = Math.ceil(lo / step - 1e-9);
    for (let i = start; i * step <= hi + step * 1e-9; i++) {
      const v = i * step;
      out.push(Math.abs(v) < step * 1e-9 ? 0 : parseFloat(v.toPrecision(12)));
      if (out.length > 50) break;
    }
    return out;
  }

  function logTicks(lo, hi, count) {
    const a = Math.floor(Math.log10(lo));
    const b = Math.ceil(Math.log10(hi));
    let mults = [1];
    if (b - a <= 1) mults = [1, 2, 3, 5];
    else if (b - a <= 3) mults = [1, 2, 5];
    const out = [];
    for (let e = a; e <= b; e++) {
      for (const m of mults) {
        const v = parseFloat((m * Math.pow(10, e)).toPrecision(12));
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(v);
      }
    }
    if (out.length > count * 2) return out.filter((v) => Math.abs(Math.log10(v) % 1) < 1e-9);
    if (out.length < 2) return [lo, hi];
    return out;
  }

  /** A scale from domain [d0, d1] onto range [r0, r1]; log when asked and possible. */
  function scale(d0, d1, r0, r1, log) {
    let lo = d0;
    let hi = d1;
    const isLog = !!log && lo > 0 && hi > 0;
    if (!(hi > lo)) {
      const pad = isLog ? lo * 0.5 : Math.abs(lo) * 0.05 || 1;
      lo -= pad;
      hi += isLog ? pad * 2 : pad;
    }
    const t = isLog ? Math.log10 : (v) => v;
    const tl = t(lo);
    const th = t(hi);
    const f = (v) => r0 + ((t(v) - tl) / (th - tl)) * (r1 - r0);
    f.domain = [lo, hi];
    f.log = isLog;
    f.ticks = (n) => (isLog ? logTicks(lo, hi, n) : linearTicks(lo, hi, n));
    return f;
  }

  /** Extent of finite numbers, padded by a fraction of the span. */
  function extent(values, padFrac = 0) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of values) {
      if (v == null || !Number.isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (lo === Infinity) return null;
    const pad = (hi - lo) * padFrac;
    return [lo - pad, hi + pad];
  }

  function logExtent(values, padFrac) {
    const ext = extent(values);
    if (!ext || ext[0] <= 0) return ext;
    const l0 = Math.log10(ext[0]);
    const l1 = Math.log10(ext[1]);
    const pad = (l1 - l0) * padFrac;
    return [Math.pow(10, l0 - pad), Math.pow(10, l1 + pad)];
  }

  /** Left axis with grid lines across [x0, x1]. */
  function axisLeft(g, y, x0, x1, n, label, fmtTick = fmt) {
    const ax = s('g', { class: 'axis axis-y' }, g);
    for (const v of y.ticks(n)) {
      const yy = r1(y(v));
      s('line', { class: 'grid', x1: x0, x2: x1, y1: yy, y2: yy }, ax);
      stext(ax, { x: x0 - 6, y: yy, dy: '0.32em', 'text-anchor': 'end' }, fmtTick(v));
    }
    if (label) {
      const ym = (y.range0 + y.range1) / 2;
      stext(ax, { class: 'axis-label', transform: `translate(${x0 - 46},${ym}) rotate(-90)`, 'text-anchor': 'middle' }, label);
    }
    return ax;
  }

  function axisBottom(g, x, y0, n, label, fmtTick = fmt, ints = false) {
    const ax = s('g', { class: 'axis axis-x' }, g);
    s('line', { class: 'domain', x1: x.range0, x2: x.range1, y1: y0, y2: y0 }, ax);
    let ticks = x.ticks(n);
    if (ints) ticks = ticks.filter((v) => Number.isInteger(v));
    for (const v of ticks) {
      const xx = r1(x(v));
      s('line', { class: 'tick', x1: xx, x2: xx, y1: y0, y2: y0 + 4 }, ax);
      stext(ax, { x: xx, y: y0 + 16, 'text-anchor': 'middle' }, fmtTick(v));
    }
    if (label) stext(ax, { class: 'axis-label', x: (x.range0 + x.range1) / 2, y: y0 + 32, 'text-anchor': 'middle' }, label);
    return ax;
  }

  function withRange(f, r0, r1v) {
    f.range0 = r0;
    f.range1 = r1v;
    return f;
  }

  // ---------------------------------------------------------------------------------
  // Statistics (fallback parameter importance)
  // ---------------------------------------------------------------------------------

  /** Ranks (1-based, ties averaged). */
  function ranks(values) {
    const idx = values.map((_, i) => i).sort((a, b) => values[a] - values[b]);
    const out = new Array(values.length);
    for (let i = 0; i < idx.length;) {
      let j = i;
      while (j + 1 < idx.length && values[idx[j + 1]] === values[idx[i]]) j++;
      const r = (i + j) / 2 + 1;
      for (let k = i; k <= j; k++) out[idx[k]] = r;
      i = j + 1;
    }
    return out;
  }

  function pearson(a, b) {
    const n = a.length;
    let ma = 0;
    let mb = 0;
    for (let i = 0; i < n; i++) { ma += a[i]; mb += b[i]; }
    ma /= n;
    mb /= n;
    let sab = 0;
    let saa = 0;
    let sbb = 0;
    for (let i = 0; i < n; i++) {
      const da = a[i] - ma;
      const db = b[i] - mb;
      sab += da * db;
      saa += da * da;
      sbb += db * db;
    }
    return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : 0;
  }

  /** Correlation ratio: share of the (ranked) objective's spread explained by groups. */
  function correlationRatio(groups, ys) {
    const n = ys.length;
    let mean = 0;
    for (const y of ys) mean += y;
    mean /= n;
    const sums = new Map();
    for (let i = 0; i < n; i++) {
      const e = sums.get(groups[i]) || { s: 0, n: 0 };
      e.s += ys[i];
      e.n += 1;
      sums.set(groups[i], e);
    }
    let between = 0;
    for (const e of sums.values()) between += e.n * Math.pow(e.s / e.n - mean, 2);
    let total = 0;
    for (const y of ys) total += (y - mean) * (y - mean);
    return total > 0 ? Math.sqrt(between / total) : 0;
  }

  /** Per parameter: |Spearman ρ| (numbers) or correlation ratio η (categoricals) with the objective. */
  function fallbackImportance(trials, params) {
    const out = [];
    for (const p of params) {
      const xs = [];
      const ys = [];
      for (const t of trials) {
        const v = t.params ? t.params[p.name] : undefined;
        if (v === undefined || v === null || !Number.isFinite(t.value)) continue;
        xs.push(v);
        ys.push(t.value);
      }
      if (xs.length < 3) continue;
      const yr = ranks(ys);
      let value;
      if (p.type === 'categorical' || xs.some((x) => typeof x !== 'number')) {
        value = correlationRatio(xs.map((x) => String(x)), yr);
      } else {
        value = Math.abs(pearson(ranks(xs), yr));
      }
      out.push({ name: p.name, value, n: xs.length });
    }
    return out.sort((a, b) => b.value - a.value);
  }

  // ---------------------------------------------------------------------------------
  // API access, token and errors
  // ---------------------------------------------------------------------------------

  let memoryToken = '';

  function getToken() {
    try {
      return window.localStorage.getItem(TOKEN_KEY) || memoryToken;
    } catch (_) {
      return memoryToken;
    }
  }

  function setToken(token) {
    memoryToken = token || '';
    try {
      if (token) window.localStorage.setItem(TOKEN_KEY, token);
      else window.localStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage unavailable: keep it in memory only */ }
    updateSignout();
  }

  class ApiError extends Error {
    constructor(status, code, message, details) {
      super(message);
      this.name = 'ApiError';
      this.status = status;
      this.code = code;
      this.details = details || [];
    }
  }

  function authHeaders(extra) {
    const headers = Object.assign({}, extra);
    const token = getToken();
    if (token) headers.Authorization = 'Bearer ' + token;
    return headers;
  }

  async function errorFrom(response) {
    let code = 'http_' + response.status;
    let message = `${response.status} ${response.statusText || 'error'}`.trim();
    let details = [];
    try {
      const body = await response.json();
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
        details = Array.isArray(body.error.details) ? body.error.details : [];
      }
    } catch (_) { /* not JSON */ }
    return new ApiError(response.status, code, message, details);
  }

  /** GET a JSON document from the API. */
  async function api(path, signal) {
    let response;
    try {
      response = await fetch(path, {
        headers: authHeaders({ Accept: 'application/json' }),
        signal,
        cache: 'no-store',
      });
    } catch (e) {
      if (e && e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network', `Cannot reach the tuner server (${e && e.message ? e.message : e}).`);
    }
    if (!response.ok) throw await errorFrom(response);
    if (response.status === 204) return null;
    return response.json();
  }

  function errorText(err) {
    if (!err) return 'Unknown error';
    let text = err.message || String(err);
    if (err.details && err.details.length) {
      text += ' — ' + err.details.map((d) => (d.path ? `${d.path}: ${d.message}` : d.message)).join('; ');
    }
    return text;
  }

  const isAbort = (e) => e && e.name === 'AbortError';
  const isAuth = (e) => e instanceof ApiError && e.status === 401;

  function showError(message) {
    const box = document.getElementById('error');
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
  }

  function clearError() {
    const box = document.getElementById('error');
    if (box && !box.hidden) {
      box.hidden = true;
      box.textContent = '';
    }
  }

  /** Whatever went wrong: the token form on 401, the error box otherwise. */
  function report(err) {
    if (isAbort(err)) return;
    if (isAuth(err)) {
      askForToken();
      return;
    }
    showError(errorText(err));
    // Unexpected program errors also go to the console for whoever debugs this page.
    if (!(err instanceof ApiError)) console.warn(err);
  }

  let defaultAuthMsg = null;

  function askForToken() {
    if (currentPage) {
      currentPage.destroy();
      currentPage = null;
    }
    setLive(null);
    clearError();
    const app = document.getElementById('app');
    fill(app);
    const form = document.getElementById('auth');
    const msg = document.getElementById('auth-msg');
    const input = document.getElementById('auth-token');
    if (!defaultAuthMsg) defaultAuthMsg = Array.from(msg.childNodes, (n) => n.cloneNode(true));
    if (getToken()) {
      msg.textContent = 'The server refused the stored token. Enter the current one (it is kept in this browser\'s local storage).';
    } else {
      fill(msg, defaultAuthMsg.map((n) => n.cloneNode(true)));
    }
    form.hidden = false;
    input.value = '';
    input.focus();
  }

  function updateSignout() {
    const b = document.getElementById('signout');
    if (b) b.hidden = !getToken();
  }

  /** The little status pill in the top bar: 'live', 'connecting', 'reconnecting', 'ended' or null. */
  function setLive(state, text) {
    const el = document.getElementById('live');
    if (!el) return;
    if (!state) {
      el.hidden = true;
      el.className = 'live';
      return;
    }
    el.hidden = false;
    el.className = 'live live-' + state;
    el.textContent = text || ({ live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…', ended: 'finished' })[state] || state;
    el.title = state === 'live' ? 'Receiving trial events from the server' : '';
  }

  function setCrumbs(items) {
    const nav = document.getElementById('crumbs');
    if (!nav) return;
    fill(nav);
    for (const it of items) {
      nav.appendChild(h('span', { class: 'crumb-sep', 'aria-hidden': 'true' }, '/'));
      nav.appendChild(it.href ? h('a', { href: it.href }, it.text) : h('span', { class: 'crumb' }, it.text));
    }
  }

  function stateBadge(state, title) {
    return h('span', { class: 'badge state-' + state, title: title || null }, state);
  }

  function note(text, cls) {
    return h('p', { class: 'note ' + (cls || '') }, text);
  }

  // ---------------------------------------------------------------------------------
  // Server-Sent Events over fetch (EventSource cannot send an Authorization header)
  // ---------------------------------------------------------------------------------

  /**
   * Reads `url` as an SSE stream and calls onEvent(name, data, id) per event. Reconnects
   * with Last-Event-ID after errors until `end` arrives or the signal aborts.
   */
  async function followEvents(url, signal, onEvent, onStatus) {
    let lastId = null;
    let backoff = 1000;
    let ended = false;
    while (!signal.aborted && !ended) {
      onStatus(lastId == null ? 'connecting' : 'reconnecting');
      try {
        const headers = authHeaders({ Accept: 'text/event-stream' });
        if (lastId != null) headers['Last-Event-ID'] = lastId;
        const response = await fetch(url, { headers, signal, cache: 'no-store' });
        if (!response.ok) {
          const err = await errorFrom(response);
          if (err.status === 401 || err.status === 404) throw err;
          throw err;
        }
        if (!response.body) throw new Error('this browser cannot stream responses');
        onStatus('live');
        backoff = 1000;
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        let name = '';
        let data = [];
        let eventId = null;
        const lineEnd = /\r\n|\r|\n/g;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let pos = 0;
          lineEnd.lastIndex = 0;
          let m;
          while ((m = lineEnd.exec(buffer)) !== null) {
            // A lone CR at the very end may be the first half of CRLF: wait for more.
            if (m[0] === '\r' && m.index === buffer.length - 1) break;
            const line = buffer.slice(pos, m.index);
            pos = lineEnd.lastIndex;
            if (line === '') {
              if (eventId != null) lastId = eventId;
              if (data.length) {
                const evName = name || 'message';
                const text = data.join('\n');
                name = '';
                data = [];
                if (evName === 'end') ended = true;
                onEvent(evName, text, lastId);
              } else {
                name = '';
              }
              eventId = null;
              continue;
            }
            if (line.charCodeAt(0) === 58) continue; // ':' comment / keep-alive
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            let val = colon < 0 ? '' : line.slice(colon + 1);
            if (val.charCodeAt(0) === 32) val = val.slice(1);
            if (field === 'data') data.push(val);
            else if (field === 'event') name = val;
            else if (field === 'id') { if (!val.includes('\0')) eventId = val; }
            else if (field === 'retry') { const n = parseInt(val, 10); if (n >= 0) backoff = Math.max(250, n); }
          }
          buffer = buffer.slice(pos);
          if (ended) break;
        }
        if (ended) {
          try { reader.cancel(); } catch (_) { /* already closed */ }
        }
      } catch (e) {
        if (isAbort(e) || signal.aborted) return;
        if (isAuth(e)) throw e;
        if (e instanceof ApiError && e.status === 404) throw e;
      }
      if (ended || signal.aborted) break;
      onStatus('reconnecting');
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 15000);
    }
    if (ended) onStatus('ended');
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  // ---------------------------------------------------------------------------------
  // Study list page
  // ---------------------------------------------------------------------------------

  class ListPage {
    constructor(root) {
      this.alive = true;
      this.ctrl = new AbortController();
      this.timer = 0;
      this.first = true;
      setCrumbs([{ text: 'Studies' }]);
      setLive(null);
      document.title = 'Studies · tuner';
      this.tbody = h('tbody');
      this.count = h('span', { class: 'sub-inline' });
      this.empty = h('div', { class: 'empty', hidden: true },
        h('p', null, 'No studies yet.'),
        h('p', null, 'Create one with ', h('code', null, 'tuner-cli tune space.yaml'), ' or ',
          h('code', null, 'tuner-cli create space.yaml'), ', or POST a search space to ', h('code', null, '/studies'), '.'));
      const cols = [
        ['#', 'num'], ['Name', ''], ['State', ''], ['Objective', ''], ['Optimizer', ''],
        ['Progress', 'progress-col'], ['Running', 'num'], ['Pruned', 'num'], ['Failed', 'num'],
        ['Best value', 'num'], ['Created', 'time'],
      ];
      this.table = h('table', { id: 'studies', class: 'data clickable' },
        h('thead', null, h('tr', null, cols.map(([label, cls]) => h('th', { class: cls, scope: 'col' }, label)))),
        this.tbody);
      root.appendChild(h('section', { id: 'study-list', class: 'panel wide' },
        h('div', { class: 'panel-head' }, h('h2', null, 'Studies'), this.count),
        h('div', { class: 'table-wrap' }, this.table),
        this.empty));
      this.load();
    }

    destroy() {
      this.alive = false;
      this.ctrl.abort();
      clearTimeout(this.timer);
    }

    async load() {
      try {
        const data = await api('/studies', this.ctrl.signal);
        if (!this.alive) return;
        clearError();
        this.render((data && data.studies) || []);
        if (this.first) {
          this.first = false;
          document.body.dataset.ready = 'list';
        }
      } catch (e) {
        if (!this.alive || isAbort(e)) return;
        report(e);
        if (isAuth(e)) return;
      }
      if (this.alive) {
        this.timer = setTimeout(() => this.load(), document.hidden ? LIST_REFRESH_MS * 4 : LIST_REFRESH_MS);
      }
    }

    render(studies) {
      this.count.textContent = studies.length === 1 ? '1 study' : studies.length ? `${fmtInt(studies.length)} studies` : '';
      this.empty.hidden = studies.length > 0;
      this.table.hidden = studies.length === 0;
      const rows = studies.map((st) => {
        const c = st.counts || {};
        const finished = (c.completed || 0) + (c.pruned || 0) + (c.failed || 0);
        const max = st.max_trials || 0;
        const bar = segmentBar(c, max);
        const obj = st.objective || {};
        const href = '#/studies/' + st.id;
        const tr = h('tr', { 'data-id': st.id, tabindex: '0' },
          h('td', { class: 'num muted' }, st.id),
          h('td', { class: 'name' }, h('a', { href }, st.name)),
          h('td', null, stateBadge(st.state, st.state_reason)),
          h('td', null, objectiveText(obj)),
          h('td', null, st.optimizer),
          h('td', { class: 'progress-col' }, h('div', { class: 'progress' }, bar,
            h('span', { class: 'progress-text' }, `${fmtInt(finished)} / ${fmtInt(max)}`))),
          h('td', { class: 'num' }, fmtInt(c.running)),
          h('td', { class: 'num' }, fmtInt(c.pruned)),
          h('td', { class: 'num' + (c.failed ? ' bad' : '') }, fmtInt(c.failed)),
          h('td', { class: 'num strong', title: st.best ? `trial #${st.best.number}: ${st.best.value}` : null },
            st.best ? fmt(st.best.value) : '—'),
          h('td', { class: 'time', title: st.created_at }, fmtTime(st.created_at)));
        tr.addEventListener('click', (ev) => {
          if (ev.target.closest('a')) return;
          location.hash = href;
        });
        tr.addEventListener('keydown', (ev) => {
          if (ev.key === 'Enter') location.hash = href;
        });
        return tr;
      });
      fill(this.tbody, ...rows);
    }
  }

  /** A bar of the trial budget: completed, pruned, failed and running shares. */
  function segmentBar(c, max) {
    const finished = (c.completed || 0) + (c.pruned || 0) + (c.failed || 0);
    const bar = h('div', {
      class: 'seg-bar',
      title: `${fmtInt(finished)} of ${fmtInt(max)} trials finished: ` +
        ['completed', 'pruned', 'failed', 'running'].map((k) => `${fmtInt(c[k] || 0)} ${k}`).join(', '),
    });
    let used = 0;
    for (const k of ['completed', 'pruned', 'failed', 'running']) {
      const n = c[k] || 0;
      if (!n || !max) continue;
      const pct = Math.min(100 - used, (100 * n) / max);
      if (pct <= 0) continue;
      used += pct;
      const seg = h('div', { class: 'seg seg-' + k });
      seg.style.width = pct.toFixed(2) + '%';
      bar.appendChild(seg);
    }
    return bar;
  }

  function objectiveText(obj) {
    if (!obj || !obj.metric) return '—';
    const up = obj.direction === 'maximize';
    return h('span', { class: 'objective', title: `${obj.direction} ${obj.metric}` },
      h('span', { class: 'dir', 'aria-hidden': 'true' }, up ? '↑' : '↓'), ' ', obj.metric);
  }

  // ---------------------------------------------------------------------------------
  // Study page
  // ---------------------------------------------------------------------------------

  function studyIsLive(st) {
    if (!st) return false;
    const c = st.counts || {};
    return st.state === 'running' || st.state === 'paused' || (c.running || 0) > 0;
  }

  /** The parameter list of a study, from its spec (falling back to what trials carry). */
  function paramsOf(study, trials) {
    const spec = study && study.spec;
    const out = [];
    if (spec && spec.parameters && typeof spec.parameters === 'object') {
      for (const [name, p] of Object.entries(spec.parameters)) {
        out.push({
          name,
          type: p.type || 'float',
          min: p.min,
          max: p.max,
          log: !!p.log,
          step: p.step,
          values: Array.isArray(p.values) ? p.values : null,
          conditional: !!p.when,
        });
      }
    }
    const known = new Set(out.map((p) => p.name));
    for (const t of trials || []) {
      for (const k of Object.keys(t.params || {})) {
        if (known.has(k)) continue;
        known.add(k);
        const v = t.params[k];
        out.push({ name: k, type: typeof v === 'number' ? 'float' : 'categorical', values: null, log: false });
      }
      if (out.length && trials.length > 200) break; // spec-less studies: the first trials are enough
    }
    return out;
  }

  class StudyPage {
    constructor(root, id) {
      this.id = id;
      this.alive = true;
      this.ctrl = new AbortController();
      this.study = null;
      this.params = [];
      this.trials = [];
      this.byId = new Map();
      this.completed = [];
      this.version = 0;
      this.best = null;
      this.importance = null;
      this.importanceError = null;
      this.importanceAt = 0;
      this.importanceCompleted = -1;
      this.full = new Map(); // trial id -> full trial (with intermediate)
      this.topIds = [];
      this.runningIds = [];
      this.selected = new Set();
      this.colors = new Map();
      this.nextColor = 0;
      this.tbl = { sort: 'number', order: 'asc', page: 0, state: '' };
      this.sortCache = null;
      this.pcFilters = new Map();
      this.historyLog = null; // null: automatic
      this.refreshTimer = 0;
      this.refreshing = false;
      this.refreshPending = false;
      this.lastRefreshAt = 0;
      this.lastRefreshMs = 0;
      this.live = false;
      this.ended = false;
      this.widths = new Map();

      setCrumbs([{ text: 'Studies', href: '#/' }, { text: 'Study ' + id }]);
      setLive(null);
      this.head = h('section', { id: 'summary', class: 'panel wide study-head' }, h('p', { class: 'loading' }, 'Loading study…'));
      this.panels = {};
      const grid = h('div', { class: 'grid' },
        this.panel('history', 'Optimization history'),
        this.panel('curves', 'Learning curves'),
        this.panel('parallel', 'Parallel coordinates', true),
        this.panel('importance', 'Parameter importance'),
        this.panel('confusion', 'Confusion matrix of the best trial'),
        this.panel('trials', 'Trials', true));
      root.append(this.head, grid);
      this.grid = grid;
      if (window.ResizeObserver) {
        this.resizeObs = new ResizeObserver(() => this.onResize());
        this.resizeObs.observe(grid);
      }
      this.init();
    }

    panel(id, title, wide) {
      const body = h('div', { class: 'panel-body' }, h('p', { class: 'loading' }, 'Loading…'));
      const sub = h('p', { class: 'sub' });
      const tools = h('div', { class: 'tools' });
      const sec = h('section', { id, class: 'panel' + (wide ? ' wide' : '') },
        h('div', { class: 'panel-head' }, h('h2', null, title), tools), sub, body);
      this.panels[id] = { sec, body, sub, tools };
      return sec;
    }

    destroy() {
      this.alive = false;
      this.ctrl.abort();
      clearTimeout(this.refreshTimer);
      clearTimeout(this.resizeTimer);
      if (this.resizeObs) this.resizeObs.disconnect();
      setLive(null);
    }

    get direction() {
      return (this.study && this.study.objective && this.study.objective.direction) === 'minimize' ? 'minimize' : 'maximize';
    }

    get metric() {
      return (this.study && this.study.objective && this.study.objective.metric) || 'value';
    }

    /** a is better than b under the study's direction. */
    better(a, b) {
      return this.direction === 'minimize' ? a < b : a > b;
    }

    async init() {
      const signal = this.ctrl.signal;
      try {
        this.study = await api(`/studies/${this.id}`, signal);
      } catch (e) {
        if (!this.alive || isAbort(e)) return;
        report(e);
        if (!isAuth(e)) {
          fill(this.head, h('h1', null, 'Study ' + this.id),
            note(e instanceof ApiError && e.status === 404 ? 'This study does not exist (any more).' : 'The study could not be loaded.'),
            h('p', null, h('a', { href: '#/' }, '← All studies')));
          this.grid.hidden = true;
        }
        return;
      }
      if (!this.alive) return;
      document.title = `${this.study.name} · tuner`;
      setCrumbs([{ text: 'Studies', href: '#/' }, { text: this.study.name }]);
      this.renderHead();
      this.live = studyIsLive(this.study);
      try {
        await this.refresh(true);
      } catch (e) {
        if (!this.alive || isAbort(e)) return;
        report(e);
        return;
      }
      if (!this.alive) return;
      document.body.dataset.ready = 'study';
      if (studyIsLive(this.study)) this.follow();
    }

    // --------------------------------------------------------------------- data

    setTrials(trials) {
      this.trials = trials;
      this.byId = new Map(trials.map((t) => [t.id, t]));
      this.completed = trials.filter((t) => t.state === 'completed' && Number.isFinite(t.value));
      this.params = paramsOf(this.study, trials);
      this.version++;
      this.sortCache = null;
      const dir = this.direction === 'minimize' ? 1 : -1;
      const ranked = this.completed.slice().sort((a, b) => dir * (a.value - b.value) || a.number - b.number);
      this.topIds = ranked.slice(0, TOP_CURVES).map((t) => t.id);
      this.rankedCompleted = ranked;
      this.runningIds = this.live
        ? trials.filter((t) => t.state === 'running' && t.last_epoch).sort((a, b) => b.number - a.number).slice(0, RUNNING_CURVES).map((t) => t.id)
        : [];
    }

    async refresh(first) {
      const t0 = performance.now();
      const signal = this.ctrl.signal;
      // After the first load only what changed since the last answer comes back
      // (`changed_after`): a refresh of a 10,000-trial study moves a few trials, not all.
      const since = first || this.lastEventId == null ? null : this.lastEventId;
      const [study, list] = await Promise.all([
        first ? Promise.resolve(this.study) : api(`/studies/${this.id}`, signal),
        api(`/studies/${this.id}/trials?view=summary` + (since == null ? '' : `&changed_after=${since}`), signal),
      ]);
      if (!this.alive) return;
      const spec = this.study && this.study.spec;
      this.study = Object.assign({}, study, { spec: study.spec || spec });
      const fetched = (list && list.trials) || [];
      if (since == null) {
        this.setTrials(fetched);
      } else if (fetched.length) {
        const merged = new Map(this.trials.map((t) => [t.id, t]));
        for (const t of fetched) merged.set(t.id, t);
        this.setTrials([...merged.values()].sort((a, b) => a.number - b.number));
      }
      if (list && Number.isFinite(list.last_event_id)) this.lastEventId = list.last_event_id;

      const jobs = [];
      const bestId = this.study.best ? this.study.best.trial_id : null;
      if (bestId == null) {
        this.best = null;
      } else if (!this.best || this.best.trial.id !== bestId) {
        jobs.push(api(`/studies/${this.id}/best`, signal).then((b) => { this.best = b; this.bestError = null; },
          (e) => { if (isAbort(e) || isAuth(e)) throw e; this.best = null; this.bestError = e; }));
      }
      const nDone = this.study.counts ? this.study.counts.completed : this.completed.length;
      const importanceDue = first || (nDone !== this.importanceCompleted &&
        (Date.now() - this.importanceAt > IMPORTANCE_EVERY_MS || !studyIsLive(this.study)));
      if (importanceDue) {
        this.importanceAt = Date.now();
        this.importanceCompleted = nDone;
        jobs.push(api(`/studies/${this.id}/importance`, signal).then((imp) => { this.importance = imp; this.importanceError = null; },
          (e) => { if (isAbort(e) || isAuth(e)) throw e; this.importanceError = e; }));
      }
      jobs.push(this.loadCurves());
      await Promise.all(jobs);
      if (!this.alive) return;
      this.renderAll();
      this.lastRefreshMs = performance.now() - t0;
      this.lastRefreshAt = Date.now();
    }

    /** Trials whose curves are shown, in legend order. */
    curveIds() {
      const out = [];
      const seen = new Set();
      const push = (id) => { if (!seen.has(id) && this.byId.has(id)) { seen.add(id); out.push(id); } };
      this.topIds.forEach(push);
      this.selected.forEach(push);
      this.runningIds.forEach(push);
      return out;
    }

    /** Fetches the full trials (with per-epoch history) that the curves need. */
    async loadCurves() {
      const signal = this.ctrl.signal;
      const need = this.curveIds().filter((id) => {
        const cached = this.full.get(id);
        const sum = this.byId.get(id);
        return !cached || cached.state !== sum.state || cached.last_epoch !== sum.last_epoch;
      });
      if (!need.length) return;
      const jobs = [];
      const topMissing = need.filter((id) => this.topIds.includes(id));
      let rest = need;
      if (topMissing.length > 2) {
        const order = this.direction === 'minimize' ? 'asc' : 'desc';
        jobs.push(api(`/studies/${this.id}/trials?state=completed&sort=value&order=${order}&limit=${TOP_CURVES}`, signal)
          .then((r) => { for (const t of (r && r.trials) || []) this.full.set(t.id, t); }));
        rest = need.filter((id) => !this.topIds.includes(id));
      }
      for (const id of rest) {
        jobs.push(api(`/trials/${id}`, signal).then((t) => { this.full.set(t.id, t); }, (e) => {
          if (isAbort(e) || isAuth(e)) throw e;
          if (e.status === 404) this.selected.delete(id);
        }));
      }
      await Promise.all(jobs);
    }

    // ------------------------------------------------------------------ live

    async follow() {
      this.live = true;
      // From the event the loaded trial list is current to (or from now): replaying a
      // long study's whole log would be wasted, and nothing in between is missed.
      // Reconnects resume with Last-Event-ID, which the server prefers over `after`.
      const url = `/studies/${this.id}/trials?after=${this.lastEventId == null ? 'now' : this.lastEventId}`;
      let lost = false;
      try {
        await followEvents(url, this.ctrl.signal, (name, data) => this.onEvent(name, data), (st) => {
          if (!this.alive) return;
          setLive(st);
          if (st === 'reconnecting') lost = true;
          if (st === 'live' && lost) {
            // Back after an outage: resynchronise (and clear the error) even if no event comes.
            lost = false;
            this.requestRefresh();
          }
        });
      } catch (e) {
        if (!this.alive || isAbort(e)) return;
        report(e);
        setLive(null);
      }
    }

    /** Takes the study an `end` or `study` event carries (its data) into the header. */
    applyStudyEvent(data) {
      try {
        const st = JSON.parse(data);
        if (st && st.id != null && this.study) {
          this.study = Object.assign({}, this.study, st, { spec: this.study.spec });
          this.renderHead();
        }
      } catch (_) { /* not a study */ }
    }

    onEvent(name, data) {
      if (!this.alive) return;
      if (name === 'end') {
        this.ended = true;
        this.live = false;
        this.applyStudyEvent(data);
        this.requestRefresh();
        return;
      }
      if (name === 'error') return;
      if (name === 'study') {
        // Stop, pause or resume: the study itself changed, its trials did not.
        this.applyStudyEvent(data);
        return;
      }
      this.requestRefresh();
    }

    /** Debounced and throttled refresh: at most one at a time, spaced by its own cost. */
    requestRefresh() {
      if (!this.alive) return;
      if (this.refreshTimer || this.refreshing) {
        this.refreshPending = true;
        return;
      }
      const gap = Math.max(1000, 3 * this.lastRefreshMs);
      const wait = Math.max(150, this.lastRefreshAt + gap - Date.now());
      this.refreshTimer = setTimeout(async () => {
        this.refreshTimer = 0;
        this.refreshing = true;
        this.refreshPending = false;
        try {
          await this.refresh(false);
          clearError();
        } catch (e) {
          if (this.alive) report(e);
        } finally {
          this.refreshing = false;
          this.lastRefreshAt = Date.now();
          if (this.refreshPending && this.alive) {
            this.refreshPending = false;
            this.requestRefresh();
          }
        }
      }, wait);
    }

    // ------------------------------------------------------------ selection

    toggleTrial(id) {
      if (!this.byId.has(id)) return;
      if (this.selected.has(id)) this.selected.delete(id);
      else this.selected.add(id);
      this.markSelection();
      this.renderTable();
      this.loadCurves().then(() => { if (this.alive) this.renderCurves(); }, report);
      this.renderCurves();
    }

    colorOf(id) {
      let c = this.colors.get(id);
      if (!c) {
        c = PALETTE[this.nextColor++ % PALETTE.length];
        this.colors.set(id, c);
      }
      return c;
    }

    /** Highlights selected trials in the history and parallel-coordinate charts. */
    markSelection() {
      for (const [id, el] of this.historyEls || []) el.classList.toggle('sel', this.selected.has(id));
      for (const line of this.pcLines || []) {
        const on = this.selected.has(line.id);
        line.el.classList.toggle('sel', on);
        if (on) line.el.parentNode.appendChild(line.el);
      }
    }

    // ------------------------------------------------------------ rendering

    renderAll() {
      this.measure();
      this.renderHead();
      // Finished trials never change, so counts tell whether the big charts need redrawing.
      const c = this.study.counts || {};
      const bestId = this.study.best ? this.study.best.trial_id : '';
      const histSig = `${this.completed.length}|${c.pruned}|${bestId}|${this.widths.get('history')}`;
      if (histSig !== this.histSig) {
        this.histSig = histSig;
        this.renderHistory();
      }
      const pcSig = `${this.completed.length}|${this.params.length}|${this.widths.get('parallel')}`;
      if (pcSig !== this.pcSig) {
        this.pcSig = pcSig;
        this.renderParallel();
      }
      this.renderCurves();
      this.renderImportance();
      this.renderConfusion();
      this.renderTable();
    }

    onResize() {
      clearTimeout(this.resizeTimer);
      this.resizeTimer = setTimeout(() => {
        if (!this.alive || !this.study || !this.trials) return;
        let changed = false;
        for (const [id, p] of Object.entries(this.panels)) {
          const w = p.body.clientWidth;
          if (Math.abs((this.widths.get(id) || 0) - w) > 8) changed = true;
        }
        if (!changed) return;
        this.measure();
        this.renderHistory();
        this.renderParallel();
        this.renderCurves();
        this.renderImportance();
        this.renderConfusion();
      }, 150);
    }

    /** Reads every panel's width in one go (before any DOM change, so one layout). */
    measure() {
      for (const [id, p] of Object.entries(this.panels)) this.widths.set(id, p.body.clientWidth);
    }

    widthOf(id, fallback = 640) {
      if (!this.widths.get(id)) this.widths.set(id, this.panels[id].body.clientWidth);
      return Math.max(280, this.widths.get(id) || fallback);
    }

    renderHead() {
      const st = this.study;
      if (!st) return;
      const c = st.counts || {};
      const spec = st.spec || {};
      const max = st.max_trials || 0;

      const segs = segmentBar(c, max);
      const countList = h('ul', { class: 'counts' },
        TRIAL_STATES.map((k) => h('li', { class: 'count count-' + k }, h('span', { class: 'dot' }), h('strong', null, fmtInt(c[k] || 0)), ' ' + k)),
        h('li', { class: 'count count-total' }, h('strong', null, fmtInt(c.total || 0)), ` of ${fmtInt(max)} trials`));

      let bestBox;
      if (st.best) {
        const b = st.best;
        const names = this.params.length ? this.params.map((p) => p.name) : Object.keys(b.params || {});
        const chips = names.filter((k) => b.params && k in b.params).map((k) =>
          h('span', { class: 'chip', title: `${k} = ${b.params[k]}` }, h('span', { class: 'chip-k' }, k), h('span', { class: 'chip-v' }, fmt(b.params[k]))));
        bestBox = h('div', { class: 'best' },
          h('div', { class: 'best-value' },
            h('span', { class: 'label' }, 'Best ' + this.metric),
            h('strong', { title: String(b.value) }, fmt(b.value)),
            h('button', { type: 'button', class: 'link-button', title: 'Highlight this trial and show its learning curve', onclick: () => this.toggleTrial(b.trial_id) }, `trial #${b.number}`)),
          h('div', { class: 'chips' }, chips));
      } else {
        bestBox = h('div', { class: 'best' }, h('span', { class: 'muted' }, 'No completed trial yet.'));
      }

      const trainer = spec.trainer && spec.trainer.kind;
      fill(this.head, 
        h('div', { class: 'head-row' },
          h('h1', null, st.name),
          stateBadge(st.state),
          st.state_reason ? h('span', { class: 'reason' }, st.state_reason) : null),
        spec.description ? h('p', { class: 'desc' }, spec.description) : null,
        h('dl', { class: 'facts' },
          h('div', null, h('dt', null, 'Objective'), h('dd', null, `${this.direction} `, h('code', null, this.metric))),
          h('div', null, h('dt', null, 'Optimizer'), h('dd', null, st.optimizer)),
          trainer ? h('div', null, h('dt', null, 'Trainer'), h('dd', null, trainer)) : null,
          h('div', null, h('dt', null, 'Study id'), h('dd', null, String(st.id))),
          h('div', null, h('dt', null, 'Created'), h('dd', { title: st.created_at }, fmtTime(st.created_at))),
          h('div', null, h('dt', null, 'Updated'), h('dd', { title: st.updated_at }, fmtAgo(st.updated_at) || fmtTime(st.updated_at)))),
        h('div', { class: 'progress-block' }, segs, countList),
        bestBox);
    }

    // ---- optimization history

    renderHistory() {
      const P = this.panels.history;
      const W = this.widthOf('history');
      const H = 340;
      const pts = this.trials.filter((t) => (t.state === 'completed' || t.state === 'pruned') && Number.isFinite(t.value));
      const nPruned = pts.length - this.completed.length;
      this.historyEls = new Map();
      if (!pts.length) {
        P.sub.textContent = 'Objective value of each finished trial, with the best so far.';
        fill(P.tools);
        fill(P.body, note('No finished trials yet.'));
        return;
      }
      const values = pts.map((t) => t.value);
      const allPositive = values.every((v) => v > 0);
      const ext0 = extent(values);
      const autoLog = allPositive && ext0[1] / ext0[0] >= 100;
      const useLog = allPositive && (this.historyLog == null ? autoLog : this.historyLog);
      fill(P.tools, allPositive
        ? h('label', { class: 'toggle', title: 'Logarithmic value axis' },
          h('input', { type: 'checkbox', checked: useLog || null, onchange: (e) => { this.historyLog = e.target.checked; this.renderHistory(); } }), ' log scale')
        : null);

      const m = { l: 62, r: 16, t: 28, b: 44 };
      const svg = svgRoot(W, H, 'history-chart');
      const maxNum = pts.reduce((mx, t) => Math.max(mx, t.number), 1);
      const x = withRange(scale(0, maxNum, m.l, W - m.r), m.l, W - m.r);
      const yExt = useLog ? logExtent(values, 0.04) : extent(values, 0.05);
      const y = withRange(scale(yExt[0], yExt[1], H - m.b, m.t, useLog), H - m.b, m.t);
      const g = s('g', null, svg);
      axisLeft(g, y, m.l, W - m.r, 6, this.metric);
      axisBottom(g, x, H - m.b, Math.max(3, Math.floor(W / 90)), 'trial number', fmt, true);

      // Best so far: a step line through completed trials in trial order.
      const done = this.completed.slice().sort((a, b) => a.number - b.number);
      let bestVal = null;
      let d = '';
      for (const t of done) {
        if (bestVal === null || this.better(t.value, bestVal)) {
          const xx = r1(x(t.number));
          const yy = r1(y(t.value));
          d += bestVal === null ? `M${xx},${yy}` : `H${xx}V${yy}`;
          bestVal = t.value;
        }
      }
      if (d) {
        d += `H${r1(x(maxNum))}`;
        stitle(s('path', { class: 'best-line', d }, g), `best so far: ${fmt(bestVal)}`);
      }

      const big = pts.length > 2000;
      const radius = big ? 2.2 : pts.length > 300 ? 3 : 4;
      const layer = s('g', { class: 'points' + (big ? ' dense' : '') }, g);
      const names = this.params.map((p) => p.name);
      const bestId = this.study.best ? this.study.best.trial_id : null;
      // Pruned first so completed points sit on top.
      const ordered = pts.slice().sort((a, b) => (a.state === b.state ? 0 : a.state === 'pruned' ? -1 : 1));
      // Thousands of points: clone one prototype circle (with its <title>) rather than
      // building each from scratch.
      const proto = s('circle', { r: radius });
      proto.appendChild(document.createElementNS(SVG_NS, 'title'));
      const metric = this.metric;
      for (const t of ordered) {
        const c = proto.cloneNode(true);
        const isBest = t.id === bestId;
        c.setAttribute('class', 'point ' + t.state + (isBest ? ' best' : '') + (this.selected.has(t.id) ? ' sel' : ''));
        c.setAttribute('cx', r1(x(t.number)));
        c.setAttribute('cy', r1(y(t.value)));
        c.setAttribute('data-tid', t.id);
        if (isBest) c.setAttribute('r', radius + 2);
        c.firstChild.textContent = `#${t.number} · ${t.state}${isBest ? ' · best' : ''}\n${metric} = ${fmt(t.value)}` +
          `${t.state === 'pruned' ? ` (at epoch ${t.last_epoch ?? '?'})` : ''}\n${paramText(t.params, names)}`;
        layer.appendChild(c);
        this.historyEls.set(t.id, c);
      }
      svg.addEventListener('click', (ev) => {
        const id = ev.target && ev.target.getAttribute && ev.target.getAttribute('data-tid');
        if (id) this.toggleTrial(Number(id));
      });

      // Legend
      const lg = s('g', { class: 'legend', transform: `translate(${m.l + 4},8)` }, svg);
      let lx = 0;
      const item = (draw, label) => {
        draw(lx);
        stext(lg, { x: lx + 12, y: 4, dy: '0.32em' }, label);
        lx += 22 + label.length * 6.4;
      };
      item((xx) => s('circle', { class: 'point-legend completed', cx: xx + 4, cy: 4, r: 4 }, lg), 'completed');
      if (nPruned) item((xx) => s('circle', { class: 'point-legend pruned', cx: xx + 4, cy: 4, r: 4 }, lg), 'pruned');
      item((xx) => s('line', { class: 'best-line', x1: xx - 2, x2: xx + 10, y1: 4, y2: 4 }, lg), 'best so far');

      P.sub.textContent = `${plural(this.completed.length, 'completed trial')}` +
        (nPruned ? `, ${fmtInt(nPruned)} pruned (value at pruning)` : '') +
        ` · ${this.direction} ${this.metric}` +
        (bestVal != null ? ` · best ${fmt(bestVal)}` : '') + ' · click a point to show its curve';
      fill(P.body, svg);
    }

    // ---- parallel coordinates

    dimensionFor(p, trials, top, bottom) {
      const name = p.name;
      const get = (t) => (t.params ? t.params[name] : undefined);
      if (p.type === 'categorical' || (p.values && p.values.length && p.type !== 'float' && p.type !== 'int')) {
        const values = (p.values && p.values.length ? p.values.slice() : []);
        const index = new Map(values.map((v, i) => [String(v), i]));
        for (const t of trials) {
          const v = get(t);
          if (v !== undefined && v !== null && !index.has(String(v))) {
            index.set(String(v), values.length);
            values.push(v);
          }
        }
        const n = Math.max(1, values.length);
        const band = (bottom - top) / n;
        const pos = (i) => top + band * (i + 0.5);
        return {
          name, kind: 'categorical', values, band,
          y: (t) => {
            const v = get(t);
            if (v === undefined || v === null) return null;
            const i = index.get(String(v));
            // Deterministic jitter inside the category band separates the lines.
            const j = ((((t.number + 1) * 2654435761) >>> 0) % 1000) / 1000 - 0.5;
            return pos(i) + j * band * 0.5;
          },
          ticks: values.map((v, i) => ({ y: pos(i), label: fmt(v) })),
        };
      }
      const vals = [];
      for (const t of trials) {
        const v = get(t);
        if (typeof v === 'number' && Number.isFinite(v)) vals.push(v);
      }
      let lo = Number.isFinite(p.min) ? p.min : Infinity;
      let hi = Number.isFinite(p.max) ? p.max : -Infinity;
      const ext = extent(vals);
      if (ext) {
        lo = Math.min(lo, ext[0]);
        hi = Math.max(hi, ext[1]);
      }
      if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
      const sc = scale(lo, hi, bottom, top, p.log);
      let tv;
      const step = Number.isFinite(p.step) && p.step > 0 ? p.step : 1;
      if (p.type === 'int' && !sc.log && (hi - lo) / step <= 10) {
        tv = [];
        for (let v = lo; v <= hi + 1e-9; v += step) tv.push(v); // every value of a short integer grid
      } else {
        tv = sc.ticks(5);
        if (p.type === 'int') tv = tv.filter((v) => Number.isInteger(v));
        // Label the ends of the range too, unless a tick is already close by.
        const near = (v) => tv.some((u) => Math.abs(sc(u) - sc(v)) < (bottom - top) * 0.07);
        if (!near(sc.domain[0])) tv.unshift(sc.domain[0]);
        if (!near(sc.domain[1])) tv.push(sc.domain[1]);
      }
      const ticks = tv.map((v) => ({ y: sc(v), label: fmt(v) }));
      return {
        name, kind: sc.log ? 'log' : 'linear',
        y: (t) => {
          const v = get(t);
          return typeof v === 'number' && Number.isFinite(v) ? sc(v) : null;
        },
        ticks,
      };
    }

    renderParallel() {
      const P = this.panels.parallel;
      const done = this.rankedCompleted || [];
      // Each axis needs room for its labels: narrow screens scroll sideways instead.
      const W = Math.max(this.widthOf('parallel', 1000), 170 + (this.params.length + 1) * 96);
      this.pcLines = [];
      if (!done.length) {
        P.sub.textContent = 'Each line is a completed trial: its parameters, then its objective value.';
        fill(P.tools);
        fill(P.body, note('No completed trials yet.'));
        return;
      }
      const H = 400;
      const m = { l: 64, r: 92, t: 40, b: 42 };
      const top = m.t;
      const bottom = H - m.b;
      const naY = bottom + 22;
      const shown = done.slice(0, PC_MAX_LINES); // best first
      const rest = done.slice(PC_MAX_LINES);

      const dims = this.params.map((p) => this.dimensionFor(p, done, top, bottom));
      // The objective axis goes logarithmic for skewed positive values (as the history does).
      const objVals = done.map((t) => t.value);
      const raw = extent(objVals);
      const objLog = raw[0] > 0 && raw[1] / raw[0] >= 100;
      const oext = objLog ? logExtent(objVals, 0.02) : extent(objVals, 0.02);
      const osc = scale(oext[0], oext[1], bottom, top, objLog);
      dims.push({
        name: this.metric, kind: 'objective', log: objLog,
        y: (t) => osc(t.value),
        ticks: osc.ticks(6).map((v) => ({ y: osc(v), label: fmt(v) })),
      });
      const n = dims.length;
      const xs = dims.map((_, i) => (n === 1 ? (m.l + W - m.r) / 2 : m.l + (i * (W - m.l - m.r)) / (n - 1)));

      // Colour by position on the objective axis (so the colour bar is its legend), best = yellow.
      const up = this.direction !== 'minimize';
      const quality = (v) => {
        const f = (bottom - osc(v)) / (bottom - top);
        return up ? f : 1 - f;
      };

      const svg = svgRoot(W, H, 'pc-chart');
      const defs = s('defs', null, svg);
      const grad = s('linearGradient', { id: 'pc-grad', x1: 0, y1: 0, x2: 0, y2: 1 }, defs);
      for (let i = 0; i <= 10; i++) {
        const f = i / 10; // 0 = top of the objective axis (largest value)
        s('stop', { offset: f, 'stop-color': viridis(up ? 1 - f : f) }, grad);
      }

      const rows = (t) => dims.map((d) => d.y(t));
      const pathOf = (ys) => {
        let dd = '';
        for (let i = 0; i < n; i++) {
          const yy = ys[i] == null ? naY : ys[i];
          dd += (i ? 'L' : 'M') + r1(xs[i]) + ',' + r1(yy);
        }
        return dd;
      };

      // The trials beyond the best PC_MAX_LINES: one grey path.
      if (rest.length) {
        let dd = '';
        for (const t of rest) dd += pathOf(rows(t));
        s('path', { class: 'pc-rest', d: dd }, svg);
      }
      const lines = s('g', { class: 'pc-lines' + (shown.length > 300 ? ' dense' : '') }, svg);
      const names = this.params.map((p) => p.name);
      // Worst first so the best end up on top.
      for (let i = shown.length - 1; i >= 0; i--) {
        const t = shown[i];
        const ys = rows(t);
        const el = s('path', {
          class: 'pc-line' + (this.selected.has(t.id) ? ' sel' : ''), d: pathOf(ys),
          stroke: viridis(quality(t.value)), 'data-tid': t.id,
        }, lines);
        stitle(el, `#${t.number} · ${this.metric} = ${fmt(t.value)} (rank ${i + 1})\n${paramText(t.params, names)}`);
        this.pcLines.push({ id: t.id, el, ys });
      }
      for (const line of this.pcLines) if (line.el.classList.contains('sel')) lines.appendChild(line.el);
      lines.addEventListener('click', (ev) => {
        const id = ev.target.getAttribute && ev.target.getAttribute('data-tid');
        if (id) this.toggleTrial(Number(id));
      });

      // Axes on top of the lines.
      const axes = s('g', { class: 'pc-axes' }, svg);
      dims.forEach((d, i) => {
        const ax = s('g', { class: 'pc-axis', transform: `translate(${r1(xs[i])},0)` }, axes);
        s('line', { class: 'pc-domain', x1: 0, x2: 0, y1: top, y2: bottom }, ax);
        if (d.kind === 'objective') {
          s('rect', { class: 'pc-colorbar', x: 6, y: top, width: 8, height: bottom - top, fill: 'url(#pc-grad)' }, ax);
        }
        for (const tk of d.ticks) {
          s('line', { class: 'tick', x1: -4, x2: 0, y1: r1(tk.y), y2: r1(tk.y) }, ax);
          stext(ax, { x: -7, y: r1(tk.y), dy: '0.32em', 'text-anchor': 'end', class: d.kind === 'categorical' ? 'cat' : null }, tk.label);
        }
        const label = stext(ax, { class: 'pc-label' + (d.kind === 'objective' ? ' objective' : ''), x: 0, y: top - 16, 'text-anchor': 'middle' }, d.name);
        const p = this.params[i];
        stitle(label, d.kind === 'objective' ? `objective: ${this.direction} ${d.name}`
          : `${d.name}: ${p.type}${p.log ? ', log scale' : ''}${p.conditional ? ', conditional' : ''}`);
        if (d.kind === 'log' || d.log) {
          const k = s('tspan', { class: 'pc-kind', dx: 4 }, label);
          k.textContent = 'log';
        }
        if (shown.some((t) => d.y(t) == null)) stext(ax, { class: 'pc-na', x: 0, y: naY, dy: '0.32em', 'text-anchor': 'middle' }, 'n/a');
        // Brushing: drag along an axis to keep only the lines through that range.
        const zone = s('rect', { class: 'brush-zone', x: -12, y: top - 2, width: 24, height: bottom - top + 4 }, ax);
        stitle(zone, 'Drag to filter by this axis; click to clear');
        const brush = s('rect', { class: 'brush', x: -7, width: 14, y: 0, height: 0, visibility: 'hidden' }, ax);
        const f = this.pcFilters.get(d.name);
        if (f) {
          brush.setAttribute('y', top + f[0] * (bottom - top));
          brush.setAttribute('height', (f[1] - f[0]) * (bottom - top));
          brush.setAttribute('visibility', 'visible');
        }
        let start = null;
        zone.addEventListener('pointerdown', (ev) => {
          ev.preventDefault();
          zone.setPointerCapture(ev.pointerId);
          start = Math.min(bottom, Math.max(top, svgPoint(svg, ev).y));
        });
        zone.addEventListener('pointermove', (ev) => {
          if (start == null) return;
          const yy = Math.min(bottom, Math.max(top, svgPoint(svg, ev).y));
          brush.setAttribute('y', Math.min(start, yy));
          brush.setAttribute('height', Math.abs(yy - start));
          brush.setAttribute('visibility', 'visible');
        });
        const finish = (ev) => {
          if (start == null) return;
          const yy = Math.min(bottom, Math.max(top, svgPoint(svg, ev).y));
          if (Math.abs(yy - start) < 3) {
            this.pcFilters.delete(d.name);
            brush.setAttribute('visibility', 'hidden');
          } else {
            const a = (Math.min(start, yy) - top) / (bottom - top);
            const b = (Math.max(start, yy) - top) / (bottom - top);
            this.pcFilters.set(d.name, [a, b]);
          }
          start = null;
          this.applyPcFilters(dims, top, bottom);
        };
        zone.addEventListener('pointerup', finish);
        zone.addEventListener('pointercancel', () => { start = null; });
      });

      this.pcDims = dims;
      fill(P.body, h('div', { class: 'chart-scroll' }, svg));
      this.pcInfo = { total: done.length, shown: shown.length, rest: rest.length };
      this.applyPcFilters(dims, top, bottom);
    }

    applyPcFilters(dims, top, bottom) {
      const P = this.panels.parallel;
      const active = dims.map((d, i) => [i, this.pcFilters.get(d.name)]).filter(([, f]) => f);
      let matching = 0;
      for (const line of this.pcLines) {
        let ok = true;
        for (const [i, f] of active) {
          const yy = line.ys[i];
          if (yy == null) { ok = false; break; }
          const frac = (yy - top) / (bottom - top);
          if (frac < f[0] || frac > f[1]) { ok = false; break; }
        }
        if (ok) matching++;
        line.el.classList.toggle('dim', !ok);
      }
      const info = this.pcInfo;
      let text = info.rest
        ? `${fmtInt(info.total)} completed trials: the best ${fmtInt(info.shown)} drawn as coloured lines, the other ${fmtInt(info.rest)} as faint grey lines.`
        : `${plural(info.total, 'completed trial')}, one line each.`;
      text += ` Colour: ${this.metric} (yellow = best). Drag along an axis to filter; click a line to show its curve.`;
      P.sub.textContent = text;
      if (active.length) {
        fill(P.tools, h('span', { class: 'filter-info' }, `${fmtInt(matching)} of ${fmtInt(this.pcLines.length)} lines match`),
          h('button', { type: 'button', class: 'small', onclick: () => { this.pcFilters.clear(); this.renderParallel(); } }, 'Clear filters'));
      } else {
        fill(P.tools);
      }
    }

    // ---- learning curves

    renderCurves() {
      const P = this.panels.curves;
      const W = this.widthOf('curves');
      const ids = this.curveIds();
      const metric = this.metric;
      const items = [];
      for (const id of ids) {
        const t = this.full.get(id);
        if (!t || !Array.isArray(t.intermediate) || !t.intermediate.length) continue;
        items.push({
          t, id, color: this.colorOf(id),
          top: this.topIds.includes(id), sel: this.selected.has(id), running: t.state === 'running',
        });
      }
      fill(P.tools, this.selected.size
        ? h('button', { type: 'button', class: 'small', onclick: () => { this.selected.clear(); this.markSelection(); this.renderTable(); this.renderCurves(); } }, 'Clear selection')
        : null);
      const nTop = Math.min(TOP_CURVES, this.topIds.length);
      P.sub.textContent = `Per-epoch metrics of the ${nTop === 1 ? 'best trial' : nTop ? fmtInt(nTop) + ' best trials' : 'best trials'}` +
        (this.live && this.runningIds.length ? ', the latest running trials' : '') +
        ' and the trials you pick (click a row, point or line).';
      if (!items.length) {
        fill(P.body, note(ids.length ? 'These trials have no per-epoch reports.' : 'No trials with per-epoch reports yet.'));
        return;
      }
      // Which metrics exist in the reports.
      const has = new Set();
      for (const it of items) for (const r of it.t.intermediate) for (const k of Object.keys(r.metrics || {})) has.add(k);
      const train = metric.startsWith('val_') ? metric.slice(4) : null;
      const charts = [{
        title: metric,
        lines: [{ key: metric, dashed: false, get: (r) => (Number.isFinite(r.value) ? r.value : num(r.metrics && r.metrics[metric])) }]
          .concat(train && has.has(train) ? [{ key: train, dashed: true, get: (r) => num(r.metrics && r.metrics[train]) }] : []),
      }];
      const lossLines = [];
      if (metric !== 'val_loss' && has.has('val_loss')) lossLines.push({ key: 'val_loss', dashed: false, get: (r) => num(r.metrics.val_loss) });
      if (metric !== 'loss' && has.has('loss')) lossLines.push({ key: 'loss', dashed: true, get: (r) => num(r.metrics.loss) });
      if (lossLines.length) charts.push({ title: 'loss', lines: lossLines });

      if (charts.some((ch) => ch.lines.some((l) => l.dashed))) P.sub.textContent += ' Solid: validation, dashed: training.';
      const wrap = h('div', { class: 'curves-wrap' });
      const svgs = [];
      for (const ch of charts) {
        const svg = this.lineChart(W, charts.length > 1 ? 230 : 300, ch, items);
        svgs.push(svg);
        wrap.appendChild(svg);
      }
      // Legend (HTML): trial chips; hovering one highlights its curves.
      const legend = h('div', { class: 'legend-chips' });
      for (const it of items) {
        const chip = h('span', {
          class: 'chip legend-chip' + (it.sel ? ' sel' : '') + (it.running ? ' running' : ''),
          title: `#${it.t.number} · ${it.t.state} · ${metric} = ${fmt(it.t.value)}\n${paramText(it.t.params)}`,
        }, h('span', { class: 'swatch' }), `#${it.t.number}`,
        h('span', { class: 'chip-v' }, it.running ? `epoch ${it.t.last_epoch ?? '?'}` : fmt(it.t.value)));
        chip.querySelector('.swatch').style.background = it.color;
        if (it.sel) {
          chip.appendChild(h('button', {
            type: 'button', class: 'chip-x', title: 'Remove', 'aria-label': `Remove trial ${it.t.number}`,
            onclick: (ev) => { ev.stopPropagation(); this.toggleTrial(it.id); },
          }, '×'));
        }
        const focus = (on) => {
          for (const svg of svgs) {
            svg.classList.toggle('focus', on);
            for (const p of svg.querySelectorAll(`[data-tid="${it.id}"]`)) p.classList.toggle('hl', on);
          }
        };
        chip.addEventListener('mouseenter', () => focus(true));
        chip.addEventListener('mouseleave', () => focus(false));
        legend.appendChild(chip);
      }
      fill(P.body, wrap, legend);
    }

    lineChart(W, H, chart, items) {
      const m = { l: 62, r: 16, t: 24, b: 40 };
      const svg = svgRoot(W, H, 'curve-chart');
      const series = [];
      let maxEpoch = 1;
      let minEpoch = Infinity;
      const ys = [];
      for (const it of items) {
        for (const line of chart.lines) {
          const pts = [];
          for (const r of it.t.intermediate) {
            const v = line.get(r);
            if (v == null || !Number.isFinite(v) || !Number.isFinite(r.epoch)) continue;
            pts.push([r.epoch, v]);
            ys.push(v);
            if (r.epoch > maxEpoch) maxEpoch = r.epoch;
            if (r.epoch < minEpoch) minEpoch = r.epoch;
          }
          if (pts.length) series.push({ it, line, pts });
        }
      }
      if (!series.length) {
        stext(svg, { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty-text' }, `no ${chart.title} reported`);
        return svg;
      }
      if (!Number.isFinite(minEpoch)) minEpoch = 1;
      const x = withRange(scale(Math.min(minEpoch, 1), Math.max(maxEpoch, minEpoch + 1), m.l, W - m.r), m.l, W - m.r);
      const e = extent(ys, 0.06);
      const y = withRange(scale(e[0], e[1], H - m.b, m.t), H - m.b, m.t);
      const g = s('g', null, svg);
      axisLeft(g, y, m.l, W - m.r, 5, chart.title);
      axisBottom(g, x, H - m.b, Math.min(10, Math.max(2, maxEpoch - 1)), 'epoch', fmt, true);
      stext(svg, { class: 'chart-title', x: m.l, y: 14 }, chart.lines.map((l) => l.key + (l.dashed ? ' (dashed)' : '')).join(' · '));
      const dots = maxEpoch <= 30;
      // Emphasised (selected) series last, on top.
      series.sort((a, b) => (a.it.sel === b.it.sel ? 0 : a.it.sel ? 1 : -1));
      for (const sr of series) {
        const d = sr.pts.map((p, i) => (i ? 'L' : 'M') + r1(x(p[0])) + ',' + r1(y(p[1]))).join('');
        const path = s('path', {
          class: 'curve' + (sr.line.dashed ? ' dashed' : '') + (sr.it.sel ? ' emph' : '') + (sr.it.running ? ' running' : ''),
          d, stroke: sr.it.color, 'data-tid': sr.it.id,
        }, g);
        stitle(path, `#${sr.it.t.number} · ${sr.line.key}` + (sr.it.running ? ' (running)' : ''));
        if (dots) {
          for (const p of sr.pts) {
            const c = s('circle', { class: 'curve-dot' + (sr.line.dashed ? ' hollow' : ''), cx: r1(x(p[0])), cy: r1(y(p[1])), r: sr.it.sel ? 3.2 : 2.4, fill: sr.line.dashed ? '#fff' : sr.it.color, stroke: sr.it.color, 'data-tid': sr.it.id }, g);
            stitle(c, `#${sr.it.t.number} · epoch ${p[0]} · ${sr.line.key} = ${fmt(p[1])}`);
          }
        }
      }
      svg.addEventListener('click', (ev) => {
        const id = ev.target.getAttribute && ev.target.getAttribute('data-tid');
        if (id) this.toggleTrial(Number(id));
      });
      return svg;
    }

    // ---- parameter importance

    renderImportance() {
      const P = this.panels.importance;
      const W = this.widthOf('importance');
      const imp = this.importance;
      let items = [];
      let fallback = false;
      const nDone = this.completed.length;
      if (imp && Array.isArray(imp.parameters) && imp.parameters.length) {
        items = imp.parameters.map((p) => ({ name: p.name, value: p.importance }));
        P.sub.textContent = `${imp.method} · ${plural(imp.completed_trials, 'completed trial')}` + (imp.note ? ` · ${imp.note}` : '');
      } else {
        fallback = true;
        items = nDone >= 3 ? fallbackImportance(this.completed, this.params) : [];
        const why = this.importanceError ? `The server's figures are unavailable (${errorText(this.importanceError)}).`
          : imp && imp.note ? `Server: ${imp.note}` : 'The server has no figures yet.';
        P.sub.textContent = items.length
          ? `Fallback computed in the browser: |Spearman ρ| (numeric parameters) or correlation ratio η (categorical) between each parameter and ${this.metric} over ${plural(nDone, 'completed trial')}. ${why}`
          : why;
      }
      fill(P.tools, fallback && items.length ? h('span', { class: 'badge', title: 'Computed in the browser, not by the server' }, 'fallback') : null);
      if (!items.length) {
        fill(P.body, note(nDone < 3 ? 'Not enough completed trials yet.' : 'No parameters to rank.'));
        return;
      }
      items.sort((a, b) => b.value - a.value);
      const longest = Math.max(...items.map((it) => it.name.length));
      const labelW = Math.min(200, Math.max(70, longest * 7.2 + 14));
      const rowH = 28;
      const H = items.length * rowH + 12;
      const valueW = 62;
      const barMax = Math.max(40, W - labelW - valueW - 8);
      const max = Math.max(...items.map((it) => it.value), 1e-12);
      const svg = svgRoot(W, H, 'importance-chart' + (fallback ? ' fallback' : ''));
      items.forEach((it, i) => {
        const y0 = 6 + i * rowH;
        const g = s('g', { class: 'bar-row' }, svg);
        stext(g, { class: 'bar-label', x: labelW - 8, y: y0 + rowH / 2 - 2, dy: '0.32em', 'text-anchor': 'end' }, it.name);
        s('rect', { class: 'bar-bg', x: labelW, y: y0 + 3, width: barMax, height: rowH - 10, rx: 3 }, g);
        const w = Math.max(1, (it.value / max) * barMax);
        const bar = s('rect', { class: 'bar', x: labelW, y: y0 + 3, width: r1(w), height: rowH - 10, rx: 3 }, g);
        const label = fallback ? it.value.toFixed(3) : fmtPct(it.value);
        stitle(bar, fallback ? `${it.name}: ${label} (fallback, ${it.n} trials)` : `${it.name}: ${label} of the explained variance`);
        stext(g, { class: 'bar-value', x: labelW + r1(w) + 6, y: y0 + rowH / 2 - 2, dy: '0.32em' }, label);
      });
      fill(P.body, svg);
    }

    // ---- confusion matrix

    renderConfusion() {
      const P = this.panels.confusion;
      const b = this.best;
      const metrics = b && b.trial && b.trial.metrics;
      const cm = metrics && metrics.confusion_matrix;
      if (!Array.isArray(cm) || !cm.length || !cm.every((r) => Array.isArray(r))) {
        P.sec.classList.add('absent');
        P.sub.textContent = '';
        fill(P.body, note(!this.study.best ? 'No completed trial yet.'
          : this.bestError ? `The best trial could not be loaded: ${errorText(this.bestError)}`
            : 'The best trial reported no confusion matrix (external trainers usually do not), so this panel is empty.'));
        return;
      }
      P.sec.classList.remove('absent');
      const n = cm.length;
      const names = Array.isArray(metrics.class_names) && metrics.class_names.length === n ? metrics.class_names.map(String) : cm.map((_, i) => String(i));
      const W = this.widthOf('confusion');
      const longest = Math.max(...names.map((x) => x.length));
      const labelW = Math.min(120, longest * 6.6 + 26);
      const recallW = 52;
      const cell = Math.max(18, Math.min(46, Math.floor((W - labelW - recallW - 10) / n)));
      const topH = Math.min(110, longest * 5 + 30);
      const H = topH + n * cell + 10;
      const svg = svgRoot(labelW + n * cell + recallW + 10, H, 'confusion-chart');
      let total = 0;
      let diag = 0;
      const rowSums = cm.map((row) => row.reduce((a, v) => a + (Number(v) || 0), 0));
      cm.forEach((row, i) => { total += rowSums[i]; diag += Number(row[i]) || 0; });
      const g = s('g', { transform: `translate(${labelW},${topH})` }, svg);
      stext(svg, { class: 'axis-label', x: labelW + (n * cell) / 2, y: 12, 'text-anchor': 'middle' }, 'predicted class');
      stext(svg, { class: 'axis-label', transform: `translate(12,${topH + (n * cell) / 2}) rotate(-90)`, 'text-anchor': 'middle' }, 'true class');
      names.forEach((name, j) => {
        const xx = labelW + j * cell + cell / 2;
        stext(svg, { class: 'cm-label', transform: `translate(${xx},${topH - 6}) rotate(-45)`, 'text-anchor': 'start' }, name);
      });
      stext(svg, { class: 'cm-label strong', x: labelW + n * cell + 8 + recallW / 2, y: topH - 6, 'text-anchor': 'middle' }, 'recall');
      const fontSize = cell < 30 ? 9 : 11;
      for (let i = 0; i < n; i++) {
        stext(svg, { class: 'cm-label', x: labelW - 6, y: topH + i * cell + cell / 2, dy: '0.32em', 'text-anchor': 'end' }, names[i]);
        for (let j = 0; j < n; j++) {
          const v = Number(cm[i][j]) || 0;
          const frac = rowSums[i] ? v / rowSums[i] : 0;
          const rect = s('rect', {
            class: 'cell' + (i === j ? ' diag' : ''), x: j * cell, y: i * cell, width: cell - 1, height: cell - 1,
            fill: blues(frac),
          }, g);
          stitle(rect, `true ${names[i]}, predicted ${names[j]}: ${fmtInt(v)} (${fmtPct(frac)} of true ${names[i]})`);
          if (v) {
            stext(g, {
              class: 'cell-text' + (frac > 0.45 ? ' light' : ''), x: j * cell + (cell - 1) / 2, y: i * cell + (cell - 1) / 2,
              dy: '0.35em', 'text-anchor': 'middle', 'font-size': fontSize,
            }, v >= 10000 ? fmt(v) : String(v));
          }
        }
        const rec = rowSums[i] ? (Number(cm[i][i]) || 0) / rowSums[i] : null;
        stext(g, { class: 'cm-recall', x: n * cell + 8 + recallW / 2, y: i * cell + cell / 2, dy: '0.32em', 'text-anchor': 'middle' }, fmtPct(rec));
      }
      const imgs = metrics.val_images || total;
      P.sub.textContent = `Trial #${b.trial.number} on the validation set (${fmtInt(imgs)} images): accuracy ${fmtPct(total ? diag / total : null, 2)}. Rows: true class; columns: predicted; shade: share of the row.`;
      fill(P.body, svg);
    }

    // ---- trial table

    sortedTrials() {
      const key = this.tbl.sort;
      const dir = this.tbl.order === 'desc' ? -1 : 1;
      const sig = `${this.version}|${key}|${dir}|${this.tbl.state}`;
      if (this.sortCache && this.sortCache.sig === sig) return this.sortCache.rows;
      const st = this.tbl.state;
      const list = st ? this.trials.filter((t) => t.state === st) : this.trials;
      let get;
      if (key === 'number') get = (t) => t.number;
      else if (key === 'state') get = (t) => TRIAL_STATES.indexOf(t.state);
      else if (key === 'value') get = (t) => (Number.isFinite(t.value) ? t.value : null);
      else if (key === 'epoch') get = (t) => (t.last_epoch == null ? null : t.last_epoch);
      else if (key === 'duration') get = (t) => (Number.isFinite(t.duration_seconds) ? t.duration_seconds : null);
      else {
        const name = key.slice(2);
        get = (t) => (t.params && t.params[name] != null ? t.params[name] : null);
      }
      const dec = list.map((t) => [get(t), t]);
      dec.sort((a, b) => {
        const x = a[0];
        const y = b[0];
        if (x == null || y == null) {
          if (x == null && y == null) return a[1].number - b[1].number;
          return x == null ? 1 : -1; // missing keys last either way
        }
        let c;
        if (typeof x === 'number' && typeof y === 'number') c = x - y;
        else if (typeof x === 'number') c = -1;
        else if (typeof y === 'number') c = 1;
        else c = String(x) < String(y) ? -1 : String(x) > String(y) ? 1 : 0;
        return c ? c * dir : a[1].number - b[1].number;
      });
      const rows = dec.map((d) => d[1]);
      this.sortCache = { sig, rows };
      return rows;
    }

    renderTable() {
      const P = this.panels.trials;
      const rows = this.sortedTrials();
      const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
      if (this.tbl.page >= pages) this.tbl.page = pages - 1;
      if (this.tbl.page < 0) this.tbl.page = 0;
      const start = this.tbl.page * PAGE_SIZE;
      const pageRows = rows.slice(start, start + PAGE_SIZE);
      const counts = this.study.counts || {};

      const cols = [
        { key: 'number', label: '#', cls: 'num' },
        { key: 'state', label: 'State', cls: '' },
        { key: 'value', label: this.metric, cls: 'num', title: 'objective value' },
        { key: 'epoch', label: 'Epoch', cls: 'num' },
        { key: 'duration', label: 'Duration', cls: 'num' },
      ].concat(this.params.map((p) => ({ key: 'p:' + p.name, label: p.name, cls: p.type === 'categorical' ? 'param' : 'num param', title: `${p.type}${p.log ? ' (log)' : ''}` })));

      const thead = h('thead', null, h('tr', null, cols.map((c) => {
        const active = this.tbl.sort === c.key;
        const th = h('th', {
          class: c.cls + ' sortable' + (active ? ' sorted' : ''), scope: 'col', tabindex: '0',
          'aria-sort': active ? (this.tbl.order === 'asc' ? 'ascending' : 'descending') : 'none',
          title: `Sort by ${c.label}` + (c.title ? ` (${c.title})` : ''),
        }, c.label, h('span', { class: 'sort-mark', 'aria-hidden': 'true' }, active ? (this.tbl.order === 'asc' ? '▲' : '▼') : ''));
        const go = () => {
          if (this.tbl.sort === c.key) this.tbl.order = this.tbl.order === 'asc' ? 'desc' : 'asc';
          else {
            this.tbl.sort = c.key;
            // Values: best first by default.
            this.tbl.order = c.key === 'value' ? (this.direction === 'minimize' ? 'asc' : 'desc') : 'asc';
          }
          this.tbl.page = 0;
          this.renderTable();
        };
        th.addEventListener('click', go);
        th.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); go(); } });
        return th;
      })));

      const bestId = this.study.best ? this.study.best.trial_id : null;
      const tbody = h('tbody');
      for (const t of pageRows) {
        const isBest = t.id === bestId;
        const tr = h('tr', {
          class: (this.selected.has(t.id) ? 'selected ' : '') + (isBest ? 'best-row' : ''), 'data-tid': t.id, tabindex: '0',
          title: this.selected.has(t.id) ? 'Click to remove its learning curve' : 'Click to show its learning curve',
        },
        h('td', { class: 'num' }, isBest ? h('span', { class: 'star', title: 'best trial' }, '★ ') : null, String(t.number)),
        h('td', null, stateBadge(t.state, t.failure_reason || (t.attempts > 1 ? `${t.attempts} attempts` : null))),
        h('td', { class: 'num value' + (t.state === 'pruned' ? ' muted' : ''), title: t.value == null ? null : String(t.value) + (t.state === 'pruned' ? ' (at pruning)' : '') }, fmt(t.value)),
        h('td', { class: 'num' }, t.last_epoch == null ? '—' : String(t.last_epoch)),
        h('td', { class: 'num', title: t.started_at ? `started ${fmtTime(t.started_at)}` + (t.finished_at ? `, finished ${fmtTime(t.finished_at)}` : '') : null }, fmtDuration(t.duration_seconds)),
        this.params.map((p) => {
          const v = t.params ? t.params[p.name] : undefined;
          return h('td', { class: p.type === 'categorical' ? 'param' : 'num param', title: v === undefined ? 'inactive' : String(v) }, v === undefined ? '—' : fmt(v));
        }));
        tbody.appendChild(tr);
      }
      tbody.addEventListener('click', (ev) => {
        const tr = ev.target.closest('tr');
        if (tr && tr.dataset.tid) this.toggleTrial(Number(tr.dataset.tid));
      });
      tbody.addEventListener('keydown', (ev) => {
        const tr = ev.target.closest('tr');
        if (ev.key === 'Enter' && tr && tr.dataset.tid) this.toggleTrial(Number(tr.dataset.tid));
      });
      const table = h('table', { class: 'data clickable trials-table' }, thead, tbody);

      const select = h('select', { 'aria-label': 'Filter by state' },
        h('option', { value: '' }, `all states (${fmtInt(this.trials.length)})`),
        TRIAL_STATES.map((k) => h('option', { value: k, selected: this.tbl.state === k || null }, `${k} (${fmtInt(counts[k] || 0)})`)));
      select.addEventListener('change', () => { this.tbl.state = select.value; this.tbl.page = 0; this.renderTable(); });
      const pager = (where) => h('div', { class: 'pager pager-' + where },
        h('button', { type: 'button', class: 'small', disabled: this.tbl.page === 0 || null, onclick: () => { this.tbl.page = 0; this.renderTable(); }, title: 'First page' }, '«'),
        h('button', { type: 'button', class: 'small prev', disabled: this.tbl.page === 0 || null, onclick: () => { this.tbl.page--; this.renderTable(); } }, '‹ Prev'),
        h('span', { class: 'page-indicator' }, `Page ${fmtInt(this.tbl.page + 1)} of ${fmtInt(pages)}`),
        h('button', { type: 'button', class: 'small next', disabled: this.tbl.page >= pages - 1 || null, onclick: () => { this.tbl.page++; this.renderTable(); } }, 'Next ›'),
        h('button', { type: 'button', class: 'small', disabled: this.tbl.page >= pages - 1 || null, onclick: () => { this.tbl.page = pages - 1; this.renderTable(); }, title: 'Last page' }, '»'));
      fill(P.tools, select);
      P.sub.textContent = rows.length
        ? `Trials ${fmtInt(start + 1)}–${fmtInt(start + pageRows.length)} of ${fmtInt(rows.length)}. Click a header to sort, a row to show its learning curve.`
        : this.trials.length ? 'No trials in this state.' : 'No trials yet.';
      table.hidden = rows.length === 0;
      const wrap = h('div', { class: 'table-wrap' }, table);
      // Keep the horizontal scroll position across refreshes (tracked, never read: no layout).
      wrap.addEventListener('scroll', () => { this.tableScroll = wrap.scrollLeft; }, { passive: true });
      fill(P.body, wrap, pager('bottom'));
      if (this.tableScroll) wrap.scrollLeft = this.tableScroll;
    }
  }

  function num(v) {
    return typeof v === 'number' && Number.isFinite(v) ? v : null;
  }

  // ---------------------------------------------------------------------------------
  // Router
  // ---------------------------------------------------------------------------------

  let currentPage = null;

  function route() {
    if (currentPage) {
      currentPage.destroy();
      currentPage = null;
    }
    delete document.body.dataset.ready;
    clearError();
    document.getElementById('auth').hidden = true;
    const app = document.getElementById('app');
    fill(app);
    window.scrollTo(0, 0);
    const hash = location.hash || '#/';
    const m = hash.match(/^#\/studies\/(\d+)\/?$/);
    document.body.dataset.page = m ? 'study' : 'list';
    if (m) {
      currentPage = new StudyPage(app, Number(m[1]));
    } else if (hash === '#/' || hash === '#' || hash === '') {
      currentPage = new ListPage(app);
    } else {
      document.body.dataset.page = 'unknown';
      setCrumbs([]);
      showError(`No such page: ${hash}`);
      app.appendChild(h('p', null, h('a', { href: '#/' }, '← All studies')));
    }
  }

  function start() {
    const form = document.getElementById('auth');
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const input = document.getElementById('auth-token');
      const token = input.value.trim();
      if (!token) return;
      setToken(token);
      input.value = '';
      form.hidden = true;
      route();
    });
    document.getElementById('signout').addEventListener('click', () => {
      setToken('');
      route();
    });
    updateSignout();
    window.addEventListener('hashchange', route);
    window.addEventListener('error', (ev) => showError('Dashboard error: ' + (ev.message || 'unknown')));
    window.addEventListener('unhandledrejection', (ev) => {
      if (isAbort(ev.reason)) { ev.preventDefault(); return; }
      report(ev.reason);
      ev.preventDefault();
    });
    route();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
