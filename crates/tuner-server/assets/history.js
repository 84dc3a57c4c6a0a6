/*
 * The study page's optimization history: value per trial, best so far.
 */

import { note } from './api.js';
import { axisBottom, axisLeft, extent, logExtent, scale, withRange } from './chart.js';
import { SVG_NS } from './constants.js';
import { fill, h, r1, s, stext, stitle, svgRoot } from './dom.js';
import { fmt, fmtInt, paramText, plural } from './format.js';

export const historyChart = {
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
  },
};
