/*
 * The study page's parameter importance bars.
 */

import { errorText, note } from './api.js';
import { fill, h, r1, s, stext, stitle, svgRoot } from './dom.js';
import { fmtPct, plural } from './format.js';
import { fallbackImportance } from './stats.js';

/** Completed trials below which the browser's fallback ranks nothing. */
const FALLBACK_MIN = 10;

export const importanceChart = {
  renderImportance() {
    const P = this.panels.importance;
    const W = this.widthOf('importance');
    const imp = this.importance;
    let items = [];
    let fallback = false;
    const nDone = this.completed.length;
    const tooFew = (why) => {
      P.sub.textContent = why;
      fill(P.tools);
      fill(P.body, note(`Not enough trials to rank the parameters: ${plural(nDone, 'completed trial')} so far.`, 'not-enough'));
    };
    if (imp && Array.isArray(imp.parameters) && imp.parameters.length) {
      items = imp.parameters.map((p) => ({ name: p.name, value: p.importance }));
      P.sub.textContent = `${imp.method} · ${plural(imp.completed_trials, 'completed trial')}` + (imp.note ? ` · ${imp.note}` : '');
    } else if (!this.importanceError) {
      // The server answers with a note and no figures below its minimum; a handful of
      // trials would give noise, not a ranking, so none is made up here either.
      tooFew(imp && imp.note ? `The server's model ${imp.note}.` : 'The server has no figures yet.');
      return;
    } else if (nDone < FALLBACK_MIN) {
      tooFew(`The server's figures are unavailable (${errorText(this.importanceError)}).`);
      return;
    } else {
      fallback = true;
      items = fallbackImportance(this.completed, this.params);
      P.sub.textContent = `Fallback computed in the browser: |Spearman ρ| (numeric parameters) or correlation ratio η (categorical) between each parameter and ${this.metric} over ${plural(nDone, 'completed trial')}. The server's figures are unavailable (${errorText(this.importanceError)}).`;
    }
    fill(P.tools, fallback && items.length ? h('span', { class: 'badge', title: 'Computed in the browser, not by the server' }, 'fallback') : null);
    if (!items.length) {
      fill(P.body, note('No parameters to rank.'));
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
  },
};
