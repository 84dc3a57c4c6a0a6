/*
 * The study page's contour: two chosen parameters against the objective. The plane
 * is shaded by the objective interpolated from the completed trials (inverse-distance
 * weights, on the axes as drawn: log axes in log space, categories as bands), and
 * each trial is a dot on it.
 */

import { note } from './api.js';
import { objectiveScale, paramScale, viridis } from './chart.js';
import { fill, h, r1, s, stext, stitle, svgRoot } from './dom.js';
import { fmt, plural } from './format.js';

/** Cells along a numeric axis. */
const STEPS = 24;
/** Trials the shading is interpolated from (the best ones when there are more). */
const MAX_SOURCES = 2000;

export const contourChart = {
  /** The two parameters shown: the user's choice, else the two most important. */
  contourPair() {
    const names = this.params.map((p) => p.name);
    let [a, b] = this.contourAxes || [];
    if (!names.includes(a) || !names.includes(b) || a === b) {
      const ranked = (this.importance && Array.isArray(this.importance.parameters) ? this.importance.parameters : [])
        .map((p) => p.name).filter((n) => names.includes(n));
      const order = ranked.concat(names.filter((n) => !ranked.includes(n)));
      [a, b] = order;
    }
    return [a, b];
  },

  renderContour() {
    const P = this.panels.contour;
    const done = this.rankedCompleted || [];
    P.sub.textContent = `Two parameters against ${this.metric}: the shade interpolates the completed trials (yellow = best); each dot is a trial.`;
    if (this.params.length < 2) {
      fill(P.tools);
      fill(P.body, note('A contour needs two parameters; this study has ' + plural(this.params.length, 'parameter') + '.'));
      return;
    }
    const [xn, yn] = this.contourPair();
    const pick = (which, current, other) => {
      const sel = h('select', { class: 'contour-' + which, 'aria-label': `Contour ${which} axis` },
        this.params.map((p) => h('option', { value: p.name, selected: p.name === current || null }, p.name)));
      sel.addEventListener('change', () => {
        // Picking the other axis's parameter swaps the two.
        const v = sel.value;
        this.contourAxes = which === 'x' ? [v, v === other ? current : other] : [v === other ? current : other, v];
        this.renderContour();
      });
      return sel;
    };
    fill(P.tools, h('label', null, 'x ', pick('x', xn, yn)), h('label', null, 'y ', pick('y', yn, xn)));
    const px = this.params.find((p) => p.name === xn);
    const py = this.params.find((p) => p.name === yn);
    const pts = done.filter((t) => t.params && t.params[xn] != null && t.params[yn] != null);
    if (pts.length < 3) {
      fill(P.body, note(`Not enough completed trials with both ${xn} and ${yn} yet (${pts.length} of 3).`));
      return;
    }

    const W = this.widthOf('contour');
    const H = 360;
    const m = { l: 70, r: 70, t: 12, b: 44 };
    const x = paramScale(px, pts, m.l, W - m.r);
    const y = paramScale(py, pts, H - m.b, m.t);
    const svg = svgRoot(W, H, 'contour-chart');

    // Cells: a band per category, STEPS slices of a numeric axis.
    const cellsOf = (ax, r0, r1v) => {
      if (ax.kind === 'categorical') return ax.values.map((v) => ({ lo: ax.at(v) - ax.band / 2, hi: ax.at(v) + ax.band / 2, c: ax.at(v) }));
      const out = [];
      for (let i = 0; i < STEPS; i++) {
        const lo = r0 + ((r1v - r0) * i) / STEPS;
        const hi = r0 + ((r1v - r0) * (i + 1)) / STEPS;
        out.push({ lo, hi, c: (lo + hi) / 2 });
      }
      return out;
    };
    const xc = cellsOf(x, m.l, W - m.r);
    const yc = cellsOf(y, H - m.b, m.t);

    // Interpolation in screen space normalised to the unit square; a category only
    // lends its trials to its own band.
    const sources = pts.slice(0, MAX_SOURCES).map((t) => ({ t, x: x.at(t.params[xn]), y: y.at(t.params[yn]) }));
    const sx = W - m.l - m.r;
    const sy = H - m.t - m.b;
    const dist = (ax, a, b, span, band) => (ax.kind === 'categorical' ? (Math.abs(a - b) < band / 2 ? 0 : 4) : (a - b) / span);
    const estimate = (cx, cy) => {
      let num = 0;
      let den = 0;
      for (const sc of sources) {
        const dx = dist(x, cx, sc.x, sx, x.band);
        const dy = dist(y, cy, sc.y, -sy, -y.band);
        const d2 = dx * dx + dy * dy;
        const w = 1 / Math.pow(d2 + 1e-4, 2);
        num += w * sc.t.value;
        den += w;
      }
      return num / den;
    };
    const values = pts.map((t) => t.value);
    const o = objectiveScale(values, 0, 1);
    const up = this.direction !== 'minimize';
    const quality = (v) => (up ? o(v) : 1 - o(v));
    const cells = s('g', { class: 'ct-cells' }, svg);
    for (const cx of xc) {
      for (const cy of yc) {
        const v = estimate(cx.c, cy.c);
        const rect = s('rect', {
          class: 'ct-cell', x: r1(Math.min(cx.lo, cx.hi)), y: r1(Math.min(cy.lo, cy.hi)),
          width: r1(Math.abs(cx.hi - cx.lo) + 0.5), height: r1(Math.abs(cy.hi - cy.lo) + 0.5), fill: viridis(quality(v)),
        }, cells);
        stitle(rect, `≈ ${fmt(v)}`);
      }
    }
    // Axes.
    const ax = s('g', { class: 'axis' }, svg);
    s('line', { class: 'domain', x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }, ax);
    s('line', { class: 'domain', x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }, ax);
    for (const tk of x.ticks) stext(ax, { x: r1(tk.pos), y: H - m.b + 16, 'text-anchor': 'middle' }, tk.label);
    for (const tk of y.ticks) stext(ax, { x: m.l - 6, y: r1(tk.pos), dy: '0.32em', 'text-anchor': 'end' }, tk.label);
    stext(ax, { class: 'axis-label', x: (m.l + W - m.r) / 2, y: H - 8, 'text-anchor': 'middle' }, xn + (x.kind === 'log' ? ' (log)' : ''));
    stext(ax, { class: 'axis-label', transform: `translate(14,${(m.t + H - m.b) / 2}) rotate(-90)`, 'text-anchor': 'middle' }, yn + (y.kind === 'log' ? ' (log)' : ''));
    // Trials, with a deterministic jitter inside category bands.
    const jit = (t, band) => (band ? ((((t.number + 7) * 2654435761) >>> 0) % 1000 / 1000 - 0.5) * band * 0.6 : 0);
    const dots = s('g', { class: 'ct-points' }, svg);
    for (const sc of sources.slice().reverse()) {
      const c = s('circle', {
        class: 'ct-point' + (this.selected.has(sc.t.id) ? ' sel' : ''), r: 3.2, 'data-tid': sc.t.id,
        cx: r1(sc.x + jit(sc.t, x.band)), cy: r1(sc.y + jit(sc.t, y.band)),
      }, dots);
      stitle(c, `#${sc.t.number} · ${this.metric} = ${fmt(sc.t.value)}\n${xn} = ${fmt(sc.t.params[xn])}\n${yn} = ${fmt(sc.t.params[yn])}`);
    }
    dots.addEventListener('click', (ev) => {
      const id = ev.target.getAttribute && ev.target.getAttribute('data-tid');
      if (id) this.toggleTrial(Number(id));
    });
    // Colour bar: the objective's range, best at the top.
    const bar = s('g', { class: 'ct-legend', transform: `translate(${W - m.r + 16},${m.t})` }, svg);
    const steps = 20;
    for (let i = 0; i < steps; i++) {
      s('rect', { x: 0, y: r1((i * sy) / steps), width: 10, height: r1(sy / steps + 0.5), fill: viridis(1 - i / steps) }, bar);
    }
    const [lo, hi] = o.domain;
    stext(bar, { x: 14, y: 4, dy: '0.32em', class: 'ct-legend-text' }, fmt(up ? hi : lo));
    stext(bar, { x: 14, y: sy - 4, dy: '0.32em', class: 'ct-legend-text' }, fmt(up ? lo : hi));
    fill(P.body, svg);
  },
};
