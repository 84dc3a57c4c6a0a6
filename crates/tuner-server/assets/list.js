/*
 * The study list page (`#/`).
 */

import { api, clearError, isAbort, isAuth, report, setCrumbs, setLive, stateBadge } from './api.js';
import { LIST_REFRESH_MS } from './constants.js';
import { fill, h } from './dom.js';
import { fmt, fmtInt, fmtTime } from './format.js';

export class ListPage {
  constructor(root) {
    this.alive = true;
    this.ctrl = new AbortController();
    this.timer = 0;
    this.first = true;
    setCrumbs([{ text: 'Studies' }]);
    setLive(null);
    document.title = 'Studies · tuner';
    this.tbody = h('tbody');
    this.count = h('span', { class: 'sub-inline' });
    this.empty = h('div', { class: 'empty', hidden: true },
      h('p', null, 'No studies yet.'),
      h('p', null, 'Create one with ', h('code', null, 'tuner-cli tune space.yaml'), ' or ',
        h('code', null, 'tuner-cli create space.yaml'), ', or POST a search space to ', h('code', null, '/studies'), '.'));
    const cols = [
      ['#', 'num'], ['Name', ''], ['State', ''], ['Objective', ''], ['Optimizer', ''],
      ['Progress', 'progress-col'], ['Running', 'num'], ['Pruned', 'num'], ['Failed', 'num'],
      ['Best value', 'num'], ['Created', 'time'],
    ];
    this.table = h('table', { id: 'studies', class: 'data clickable' },
      h('thead', null, h('tr', null, cols.map(([label, cls]) => h('th', { class: cls, scope: 'col' }, label)))),
      this.tbody);
    root.appendChild(h('section', { id: 'study-list', class: 'panel wide' },
      h('div', { class: 'panel-head' }, h('h2', null, 'Studies'), this.count),
      h('div', { class: 'table-wrap' }, this.table),
      this.empty));
    this.load();
  }

  destroy() {
    this.alive = false;
    this.ctrl.abort();
    clearTimeout(this.timer);
  }

  async load() {
    try {
      const data = await api('/studies', this.ctrl.signal);
      if (!this.alive) return;
      clearError();
      this.render((data && data.studies) || []);
      if (this.first) {
        this.first = false;
        document.body.dataset.ready = 'list';
      }
    } catch (e) {
      if (!this.alive || isAbort(e)) return;
      report(e);
      if (isAuth(e)) return;
    }
    if (this.alive) {
      this.timer = setTimeout(() => this.load(), document.hidden ? LIST_REFRESH_MS * 4 : LIST_REFRESH_MS);
    }
  }

  render(studies) {
    this.count.textContent = studies.length === 1 ? '1 study' : studies.length ? `${fmtInt(studies.length)} studies` : '';
    this.empty.hidden = studies.length > 0;
    this.table.hidden = studies.length === 0;
    const rows = studies.map((st) => {
      const c = st.counts || {};
      const finished = (c.completed || 0) + (c.pruned || 0) + (c.failed || 0);
      const max = st.max_trials || 0;
      const bar = segmentBar(c, max);
      const obj = st.objective || {};
      const href = '#/studies/' + st.id;
      const tr = h('tr', { 'data-id': st.id, tabindex: '0' },
        h('td', { class: 'num muted' }, st.id),
        h('td', { class: 'name' }, h('a', { href }, st.name)),
        h('td', null, stateBadge(st.state, st.state_reason)),
        h('td', null, objectiveText(obj)),
        h('td', null, st.optimizer),
        h('td', { class: 'progress-col' }, h('div', { class: 'progress' }, bar,
          h('span', { class: 'progress-text' }, `${fmtInt(finished)} / ${fmtInt(max)}`))),
        h('td', { class: 'num' }, fmtInt(c.running)),
        h('td', { class: 'num' }, fmtInt(c.pruned)),
        h('td', { class: 'num' + (c.failed ? ' bad' : '') }, fmtInt(c.failed)),
        h('td', { class: 'num strong', title: st.best ? `trial #${st.best.number}: ${st.best.value}` : null },
          st.best ? fmt(st.best.value) : '—'),
        h('td', { class: 'time', title: st.created_at }, fmtTime(st.created_at)));
      tr.addEventListener('click', (ev) => {
        if (ev.target.closest('a')) return;
        location.hash = href;
      });
      tr.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter') location.hash = href;
      });
      return tr;
    });
    fill(this.tbody, ...rows);
  }
}

/** Trials that count against `max_trials`: failed ones do not (they are replaced), so
 *  "35 of 30" never shows for a study with 5 failures. */
export function budgetUsed(c) {
  return (c.pending || 0) + (c.running || 0) + (c.completed || 0) + (c.pruned || 0);
}

/** A bar of the trial budget: completed, pruned, failed and running shares. */
export function segmentBar(c, max) {
  const bar = h('div', {
    class: 'seg-bar',
    title: `${fmtInt(budgetUsed(c))} of ${fmtInt(max)} trials used` +
      (c.failed ? ` (+${fmtInt(c.failed)} failed)` : '') + ': ' +
      ['completed', 'pruned', 'failed', 'running'].map((k) => `${fmtInt(c[k] || 0)} ${k}`).join(', '),
  });
  let used = 0;
  for (const k of ['completed', 'pruned', 'failed', 'running']) {
    const n = c[k] || 0;
    if (!n || !max) continue;
    const pct = Math.min(100 - used, (100 * n) / max);
    if (pct <= 0) continue;
    used += pct;
    const seg = h('div', { class: 'seg seg-' + k });
    seg.style.width = pct.toFixed(2) + '%';
    bar.appendChild(seg);
  }
  return bar;
}

function objectiveText(obj) {
  if (!obj || !obj.metric) return '—';
  const up = obj.direction === 'maximize';
  return h('span', { class: 'objective', title: `${obj.direction} ${obj.metric}` },
    h('span', { class: 'dir', 'aria-hidden': 'true' }, up ? '↑' : '↓'), ' ', obj.metric);
}
