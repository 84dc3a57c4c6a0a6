/*
 * The study page's parameter importance bars.
 */

import { errorText, note } from './api.js';
import { fill, h, r1, s, stext, stitle, svgRoot } from './dom.js';
import { fmtPct, plural } from './format.js';
import { fallbackImportance } from './stats.js';

export const importanceChart = {
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
  },
};
