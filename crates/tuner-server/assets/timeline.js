/*
 * The study page's timeline: a row per worker, a bar per trial from its start to its
 * end (running ones to now), coloured by state: where the time went, where workers
 * idled, which trials failed or were pruned early.
 */

import { note } from './api.js';
import { scale, withRange } from './chart.js';
import { fill, h, r1, s, stext, stitle, svgRoot } from './dom.js';
import { fmt, fmtDuration, fmtTime, plural } from './format.js';

const STATES = ['completed', 'pruned', 'failed', 'running'];

/** Seconds as a short axis label (relative to the first start). */
function fmtOffset(sec) {
  if (sec < 120) return `${fmt(sec)}s`;
  if (sec < 7200) return `${fmt(Math.round(sec / 6) / 10)}m`;
  return `${fmt(Math.round(sec / 360) / 10)}h`;
}

export const timelineChart = {
  renderTimeline() {
    const P = this.panels.timeline;
    const now = Date.now();
    const items = [];
    for (const t of this.trials) {
      if (!t.started_at) continue;
      const a = Date.parse(t.started_at);
      const b = t.finished_at ? Date.parse(t.finished_at) : t.state === 'running' ? now : null;
      if (!Number.isFinite(a) || b == null || !Number.isFinite(b)) continue;
      items.push({ t, a, b: Math.max(a, b), worker: t.worker || '(unknown worker)' });
    }
    if (!items.length) {
      P.sub.textContent = 'Each trial as a bar from its start to its end, one row per worker.';
      fill(P.body, note('No trial has started yet.'));
      return;
    }
    // Rows: a worker's trials, in lanes when one worker ran several at once.
    const byWorker = new Map();
    for (const it of items.sort((p, q) => p.a - q.a || p.t.number - q.t.number)) {
      if (!byWorker.has(it.worker)) byWorker.set(it.worker, []);
      const lanes = byWorker.get(it.worker);
      let lane = lanes.findIndex((end) => end <= it.a);
      if (lane < 0) { lane = lanes.length; lanes.push(0); }
      lanes[lane] = it.b;
      it.lane = lane;
    }
    const workers = [...byWorker.keys()].sort((p, q) => p.localeCompare(q, undefined, { numeric: true }));
    let row = 0;
    const rowOf = new Map();
    for (const w of workers) { rowOf.set(w, row); row += byWorker.get(w).length; }
    const rows = row;
    const t0 = Math.min(...items.map((it) => it.a));
    const t1 = Math.max(...items.map((it) => it.b));
    const W = this.widthOf('timeline', 1000);
    const longest = Math.max(...workers.map((w) => w.length));
    const m = { l: Math.min(180, Math.max(60, longest * 7 + 16)), r: 16, t: 10, b: 36 };
    const laneH = Math.max(4, Math.min(22, Math.floor(520 / rows)));
    const H = m.t + rows * laneH + m.b;
    const x = withRange(scale(0, Math.max((t1 - t0) / 1000, 0.001), m.l, W - m.r), m.l, W - m.r);
    const svg = svgRoot(W, H, 'timeline-chart');
    const ax = s('g', { class: 'axis axis-x' }, svg);
    s('line', { class: 'domain', x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }, ax);
    for (const v of x.ticks(Math.max(3, Math.floor(W / 110)))) {
      s('line', { class: 'grid', x1: r1(x(v)), x2: r1(x(v)), y1: m.t, y2: H - m.b }, ax);
      stext(ax, { x: r1(x(v)), y: H - m.b + 15, 'text-anchor': 'middle' }, fmtOffset(v));
    }
    stext(ax, { class: 'axis-label', x: (m.l + W - m.r) / 2, y: H - 4, 'text-anchor': 'middle' }, `time since the first start (${fmtTime(new Date(t0).toISOString())})`);
    const labels = s('g', { class: 'tl-workers' }, svg);
    for (const w of workers) {
      const y0 = m.t + rowOf.get(w) * laneH;
      const hgt = byWorker.get(w).length * laneH;
      s('line', { class: 'tl-sep', x1: m.l, x2: W - m.r, y1: y0, y2: y0 }, labels);
      if (laneH * byWorker.get(w).length >= 9) {
        stext(labels, { class: 'tl-worker', x: m.l - 6, y: r1(y0 + hgt / 2), dy: '0.32em', 'text-anchor': 'end' }, w);
      }
    }
    const bars = s('g', { class: 'tl-bars' }, svg);
    const busy = new Map(STATES.map((k) => [k, 0]));
    for (const it of items) {
      const xa = x((it.a - t0) / 1000);
      const xb = x((it.b - t0) / 1000);
      const y0 = m.t + (rowOf.get(it.worker) + it.lane) * laneH;
      const state = STATES.includes(it.t.state) ? it.t.state : 'other';
      busy.set(state, (busy.get(state) || 0) + (it.b - it.a) / 1000);
      const bar = s('rect', {
        class: 'tl-bar tl-' + state + (this.selected.has(it.t.id) ? ' sel' : ''), 'data-tid': it.t.id,
        x: r1(xa), y: r1(y0 + 1), width: r1(Math.max(1, xb - xa)), height: Math.max(2, laneH - 2),
      }, bars);
      stitle(bar, `#${it.t.number} · ${it.t.state} · ${fmtDuration((it.b - it.a) / 1000)}\nworker ${it.worker}` +
        (it.t.failure_reason ? `\n${it.t.failure_reason}` : ''));
    }
    bars.addEventListener('click', (ev) => {
      const id = ev.target.getAttribute && ev.target.getAttribute('data-tid');
      if (id) this.toggleTrial(Number(id));
    });
    const spent = STATES.filter((k) => busy.get(k) > 0).map((k) => `${fmtDuration(busy.get(k))} ${k}`).join(', ');
    P.sub.textContent = `${plural(items.length, 'trial')} on ${plural(workers.length, 'worker')} over ${fmtDuration((t1 - t0) / 1000)}` +
      (spent ? ` · trial time: ${spent}` : '') + '.';
    fill(P.tools, h('span', { class: 'tl-key' }, STATES.filter((k) => busy.get(k) > 0).map((k) => h('span', { class: 'tl-key-item' }, h('span', { class: 'tl-swatch tl-' + k }), k))));
    fill(P.body, h('div', { class: 'chart-scroll' }, svg));
  },
};
