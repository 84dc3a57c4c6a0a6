/*
 * The study page's confusion matrix of the best trial.
 */

import { errorText, note } from './api.js';
import { blues } from './chart.js';
import { fill, s, stext, stitle, svgRoot } from './dom.js';
import { fmt, fmtInt, fmtPct } from './format.js';

export const confusionChart = {
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
  },
};
