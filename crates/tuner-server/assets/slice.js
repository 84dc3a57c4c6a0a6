/*
 * The study page's slice plots: the objective against each parameter on its own,
 * one small chart per parameter, dots coloured by trial number (later = darker).
 */

import { note } from './api.js';
import { axisLeft, objectiveScale, paramScale } from './chart.js';
import { fill, h, r1, s, stext, stitle, svgRoot } from './dom.js';
import { fmt, plural } from './format.js';

/** Dots with a tooltip each up to this many trials (beyond, the page would slow down). */
const TITLED = 1500;

export const sliceChart = {
  renderSlice() {
    const P = this.panels.slice;
    const done = this.completed;
    P.sub.textContent = `${this.metric} against each parameter on its own: where the good values lie, and where the optimizer looked (later trials darker).`;
    if (!done.length || !this.params.length) {
      fill(P.body, note(done.length ? 'This study has no parameters.' : 'No completed trials yet.'));
      return;
    }
    const total = this.widthOf('slice', 1000);
    const perRow = Math.max(1, Math.min(this.params.length, Math.floor(total / 300)));
    const W = Math.floor(total / perRow) - 8;
    const H = 230;
    const m = { l: 58, r: 10, t: 22, b: 36 };
    const y = objectiveScale(done.map((t) => t.value), H - m.b, m.t);
    const maxNum = done.reduce((mx, t) => Math.max(mx, t.number), 1);
    const shade = (t) => `hsl(217, 80%, ${r1(78 - 50 * (t.number / maxNum))}%)`;
    const wrap = h('div', { class: 'slice-grid' });
    for (const p of this.params) {
      const svg = svgRoot(W, H, 'slice-chart');
      svg.dataset.param = p.name;
      const pts = done.filter((t) => t.params && t.params[p.name] != null);
      const x = paramScale(p, pts, m.l, W - m.r);
      const g = s('g', null, svg);
      axisLeft(g, y, m.l, W - m.r, 4, null);
      const ax = s('g', { class: 'axis axis-x' }, g);
      s('line', { class: 'domain', x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }, ax);
      for (const tk of x.ticks) stext(ax, { x: r1(tk.pos), y: H - m.b + 15, 'text-anchor': 'middle' }, tk.label);
      stext(svg, { class: 'chart-title', x: m.l, y: 14 }, p.name + (x.kind === 'log' ? ' (log)' : '') + (pts.length < done.length ? ` · active in ${plural(pts.length, 'trial')}` : ''));
      const layer = s('g', { class: 'sl-points' }, g);
      // Thousands of dots: clones of one circle, and tooltips only while they are few.
      const proto = s('circle', { class: 'sl-point', r: pts.length > 1000 ? 2.2 : 3 });
      for (const t of pts) {
        const jitter = x.band ? ((((t.number + 3) * 2654435761) >>> 0) % 1000 / 1000 - 0.5) * x.band * 0.5 : 0;
        const c = proto.cloneNode(false);
        if (this.selected.has(t.id)) c.classList.add('sel');
        c.setAttribute('data-tid', t.id);
        c.setAttribute('cx', r1(x.at(t.params[p.name]) + jitter));
        c.setAttribute('cy', r1(y(t.value)));
        c.setAttribute('fill', shade(t));
        if (pts.length <= TITLED) stitle(c, `#${t.number} · ${p.name} = ${fmt(t.params[p.name])}\n${this.metric} = ${fmt(t.value)}`);
        layer.appendChild(c);
      }
      layer.addEventListener('click', (ev) => {
        const id = ev.target.getAttribute && ev.target.getAttribute('data-tid');
        if (id) this.toggleTrial(Number(id));
      });
      wrap.appendChild(svg);
    }
    fill(P.body, wrap);
  },
};
