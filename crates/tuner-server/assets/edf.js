/*
 * The study page's empirical distribution (EDF) of the objective: for each value, the
 * share of completed trials at or below it. A steep rise near the best end means
 * the search found many good trials, a long flat tail that few were.
 */

import { note } from './api.js';
import { axisBottom, axisLeft, objectiveScale, scale, withRange } from './chart.js';
import { fill, r1, s, stext, stitle, svgRoot } from './dom.js';
import { fmt, fmtPct, plural } from './format.js';

export const edfChart = {
  renderEdf() {
    const P = this.panels.edf;
    const values = this.completed.map((t) => t.value).sort((a, b) => a - b);
    const n = values.length;
    P.sub.textContent = `Share of the ${plural(n, 'completed trial')} whose ${this.metric} is at most x` +
      (this.direction === 'minimize' ? ' (lower is better: a curve high on the left is good).' : ' (higher is better: a curve low until the right is good).');
    if (n < 2) {
      fill(P.body, note('Not enough completed trials yet.'));
      return;
    }
    const W = this.widthOf('edf');
    const H = 300;
    const m = { l: 56, r: 16, t: 16, b: 44 };
    const x = objectiveScale(values, m.l, W - m.r);
    const y = withRange(scale(0, 1, H - m.b, m.t), H - m.b, m.t);
    const svg = svgRoot(W, H, 'edf-chart');
    const g = s('g', null, svg);
    axisLeft(g, y, m.l, W - m.r, 5, 'share of trials', (v) => fmtPct(v, 0));
    axisBottom(g, x, H - m.b, Math.max(3, Math.floor(W / 110)), this.metric + (x.log ? ' (log)' : ''));
    // A step per distinct value: right along the axis, then up by its share.
    let d = `M${r1(m.l)},${r1(y(0))}`;
    let steps = 0;
    for (let i = 0; i < n; i++) {
      if (i + 1 < n && values[i + 1] === values[i]) continue;
      d += `H${r1(x(values[i]))}V${r1(y((i + 1) / n))}`;
      steps++;
    }
    d += `H${r1(W - m.r)}`;
    const path = s('path', { class: 'edf-line', d, 'data-steps': steps }, g);
    stitle(path, `${plural(n, 'completed trial')}; median ${fmt(values[Math.floor((n - 1) / 2)])}`);
    const best = this.direction === 'minimize' ? values[0] : values[n - 1];
    s('line', { class: 'edf-best', x1: r1(x(best)), x2: r1(x(best)), y1: m.t, y2: H - m.b }, g);
    stext(g, { class: 'edf-best-label', x: r1(x(best)) + (this.direction === 'minimize' ? 4 : -4), y: m.t + 10, 'text-anchor': this.direction === 'minimize' ? 'start' : 'end' }, `best ${fmt(best)}`);
    fill(P.body, svg);
  },
};
