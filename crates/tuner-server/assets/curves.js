/*
 * The study page's learning curves (value per epoch) of the best and running trials
 * (and, when asked, the latest pruned ones). The value axis can be logarithmic, and
 * it spans the bulk of the values: a few outliers (a diverged first epoch) are drawn
 * at its edge with a mark instead of flattening every other curve.
 */

import { note, report } from './api.js';
import { axisBottom, axisLeft, extent, scale, withRange } from './chart.js';
import { PRUNED_CURVES, TOP_CURVES } from './constants.js';
import { fill, h, r1, s, stext, stitle, svgRoot } from './dom.js';
import { fmt, fmtInt, paramText } from './format.js';

export const curvesChart = {
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
        top: this.topIds.includes(id), sel: this.selected.has(id), running: t.state === 'running', pruned: t.state === 'pruned',
      });
    }
    const toggle = (cls, on, label, title, set) => h('label', { class: 'toggle ' + cls, title },
      h('input', { type: 'checkbox', checked: on || null, onchange: (e) => set(e.target.checked) }), ' ' + label);
    const nPruned = (this.study.counts && this.study.counts.pruned) || 0;
    fill(P.tools,
      toggle('curves-log', this.curvesLog, 'log scale', 'Logarithmic value axis (positive values only)', (on) => { this.curvesLog = on; this.renderCurves(); }),
      nPruned ? toggle('curves-pruned', this.curvesPruned, 'pruned', `Also draw the latest ${PRUNED_CURVES} pruned trials`, (on) => {
        this.curvesPruned = on;
        this.loadCurves().then(() => { if (this.alive) this.renderCurves(); }, report);
        this.renderCurves();
      }) : null,
      this.selected.size
        ? h('button', { type: 'button', class: 'small', onclick: () => { this.selected.clear(); this.markSelection(); this.renderTable(); this.renderCurves(); } }, 'Clear selection')
        : null);
    const nTop = Math.min(TOP_CURVES, this.topIds.length);
    P.sub.textContent = `Per-epoch metrics of the ${nTop === 1 ? 'best trial' : nTop ? fmtInt(nTop) + ' best trials' : 'best trials'}` +
      (this.live && this.runningIds.length ? ', the latest running trials' : '') +
      (this.curvesPruned ? ', the latest pruned trials (thin, ending in ×)' : '') +
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
    // A second chart for the losses, unless the first already shows them (a loss objective).
    const shown = new Set(charts[0].lines.map((l) => l.key));
    const lossLines = [];
    if (!shown.has('val_loss') && has.has('val_loss')) lossLines.push({ key: 'val_loss', dashed: false, get: (r) => num(r.metrics.val_loss) });
    if (!shown.has('loss') && has.has('loss')) lossLines.push({ key: 'loss', dashed: true, get: (r) => num(r.metrics.loss) });
    if (lossLines.length) charts.push({ title: 'loss', lines: lossLines });

    if (charts.some((ch) => ch.lines.some((l) => l.dashed))) P.sub.textContent += ' Solid: validation, dashed: training.';
    const wrap = h('div', { class: 'curves-wrap' });
    const svgs = [];
    let clipped = 0;
    for (const ch of charts) {
      const svg = this.lineChart(W, charts.length > 1 ? 230 : 300, ch, items);
      clipped += Number(svg.dataset.clipped || 0);
      svgs.push(svg);
      wrap.appendChild(svg);
    }
    if (clipped) P.sub.textContent += ` ${fmtInt(clipped)} outlying ${clipped === 1 ? 'value is' : 'values are'} drawn at the axis edge (▲▼) so the rest stay readable.`;
    // Legend (HTML): trial chips; hovering one highlights its curves.
    const legend = h('div', { class: 'legend-chips' });
    for (const it of items) {
      const chip = h('span', {
        class: 'chip legend-chip' + (it.sel ? ' sel' : '') + (it.running ? ' running' : '') + (it.pruned ? ' pruned' : ''),
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
  },

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
    const useLog = !!this.curvesLog && ys.every((v) => v > 0);
    const [lo, hi] = robustRange(useLog ? ys.map(Math.log10) : ys);
    const back = (v) => (useLog ? Math.pow(10, v) : v);
    const y0 = withRange(scale(back(lo), back(hi), H - m.b, m.t, useLog), H - m.b, m.t);
    // Values beyond the range sit on its edge.
    const [dlo, dhi] = y0.domain;
    let clipped = 0;
    const y = withRange(Object.assign((v) => y0(Math.min(dhi, Math.max(dlo, v))), y0), H - m.b, m.t);
    const g = s('g', null, svg);
    axisLeft(g, y, m.l, W - m.r, 5, chart.title);
    axisBottom(g, x, H - m.b, Math.min(10, Math.max(2, maxEpoch - 1)), 'epoch', fmt, true);
    stext(svg, { class: 'chart-title', x: m.l, y: 14 }, chart.lines.map((l) => l.key + (l.dashed ? ' (dashed)' : '')).join(' · '));
    const dots = maxEpoch <= 30;
    // Emphasised (selected) series last, on top.
    series.sort((a, b) => (a.it.sel === b.it.sel ? 0 : a.it.sel ? 1 : -1));
    for (const sr of series) {
      const d = sr.pts.map((p, i) => (i ? 'L' : 'M') + r1(x(p[0])) + ',' + r1(y(p[1]))).join('');
      for (const p of sr.pts) {
        if (p[1] >= dlo && p[1] <= dhi) continue;
        clipped++;
        const xx = x(p[0]);
        const yy = y(p[1]);
        const d2 = p[1] > dhi ? `M${r1(xx)},${r1(yy - 2)}l-5,8h10z` : `M${r1(xx)},${r1(yy + 2)}l-5,-8h10z`;
        stitle(s('path', { class: 'clip-mark', d: d2, 'data-tid': sr.it.id }, g), `#${sr.it.t.number} · epoch ${p[0]} · ${sr.line.key} = ${fmt(p[1])} (off the axis)`);
      }
      if (sr.it.pruned) {
        const last = sr.pts[sr.pts.length - 1];
        stext(g, { class: 'prune-mark', x: r1(x(last[0])), y: r1(y(last[1])), dy: '0.35em', 'text-anchor': 'middle', fill: sr.it.color }, '×');
      }
      const path = s('path', {
        class: 'curve' + (sr.line.dashed ? ' dashed' : '') + (sr.it.sel ? ' emph' : '') + (sr.it.running ? ' running' : '') + (sr.it.pruned ? ' pruned' : ''),
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
    svg.dataset.clipped = clipped;
    if (useLog) svg.classList.add('log');
    return svg;
  },
};

/**
 * The value range to draw: all of it, unless a few values lie far outside the bulk
 * (beyond 1.5 spans of the 5–95 % quantiles), which are then left off the axis.
 */
export function robustRange(values) {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  const full = extent(v, 0.06);
  if (v.length < 8) return full;
  const q = (f) => v[Math.min(v.length - 1, Math.max(0, Math.round(f * (v.length - 1))))];
  const q05 = q(0.05);
  const q95 = q(0.95);
  const span = q95 - q05 || Math.abs(q95) * 0.1 || 1;
  const lo = Math.max(v[0], q05 - 1.5 * span);
  const hi = Math.min(v[v.length - 1], q95 + 1.5 * span);
  const pad = (hi - lo) * 0.06 || span * 0.06;
  return [lo - pad, hi + pad];
}

function num(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}
