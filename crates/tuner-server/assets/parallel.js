/*
 * The study page's parallel coordinates of every parameter against the objective,
 * with brushing filters.
 */

import { note } from './api.js';
import { extent, logExtent, scale, viridis } from './chart.js';
import { PC_MAX_LINES } from './constants.js';
import { fill, h, r1, s, stext, stitle, svgPoint, svgRoot } from './dom.js';
import { fmt, fmtInt, paramText, plural } from './format.js';

export const parallelChart = {
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
  },

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
        this.applyPcFilters(dims, top, bottom, true);
      };
      zone.addEventListener('pointerup', finish);
      zone.addEventListener('pointercancel', () => { start = null; });
    });

    this.pcDims = dims;
    fill(P.body, h('div', { class: 'chart-scroll' }, svg));
    this.pcInfo = { total: done.length, shown: shown.length, rest: rest.length, done, pathOf, rows, svg };
    this.applyPcFilters(dims, top, bottom);
  },

  clearPcFilters() {
    this.pcFilters.clear();
    this.renderParallel();
    this.sortCache = null;
    this.renderTable();
  },

  /**
   * Dims the lines outside the brushes and narrows the trial table to every
   * completed trial inside them (the grey ones beyond the best PC_MAX_LINES too).
   */
  applyPcFilters(dims, top, bottom, fromUser) {
    const P = this.panels.parallel;
    const active = dims.map((d, i) => [i, this.pcFilters.get(d.name)]).filter(([, f]) => f);
    const inside = (ys) => {
      for (const [i, f] of active) {
        const yy = ys[i];
        if (yy == null) return false;
        const frac = (yy - top) / (bottom - top);
        if (frac < f[0] || frac > f[1]) return false;
      }
      return true;
    };
    for (const line of this.pcLines) line.el.classList.toggle('dim', !inside(line.ys));
    const info = this.pcInfo;
    const old = info.svg.querySelector('.pc-rest-match');
    if (old) old.remove();
    if (active.length) {
      const ids = new Set();
      let dd = '';
      info.done.forEach((t, k) => {
        const ys = k < info.shown ? null : info.rows(t);
        if (inside(ys || this.pcLines[info.shown - 1 - k].ys)) {
          ids.add(t.id);
          if (ys) dd += info.pathOf(ys);
        }
      });
      if (dd) {
        const restMatch = s('path', { class: 'pc-rest-match', d: dd });
        info.svg.insertBefore(restMatch, info.svg.querySelector('.pc-lines'));
      }
      this.pcMatch = ids;
    } else {
      this.pcMatch = null;
    }
    this.pcMatchVersion = (this.pcMatchVersion || 0) + 1;
    if (fromUser) {
      this.tbl.page = 0;
      this.renderTable();
    }
    let text = info.rest
      ? `${fmtInt(info.total)} completed trials: the best ${fmtInt(info.shown)} drawn as coloured lines, the other ${fmtInt(info.rest)} as faint grey lines.`
      : `${plural(info.total, 'completed trial')}, one line each.`;
    text += ` Colour: ${this.metric} (yellow = best). Drag along an axis to filter (the trial table follows); click a line to show its curve.`;
    P.sub.textContent = text;
    if (active.length) {
      fill(P.tools, h('span', { class: 'filter-info' }, `${fmtInt(this.pcMatch.size)} of ${fmtInt(info.total)} trials match`),
        h('button', { type: 'button', class: 'small', onclick: () => this.clearPcFilters() }, 'Clear filters'));
    } else {
      fill(P.tools);
    }
  },
};
