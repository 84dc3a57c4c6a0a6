/*
 * The study page's trial table: sorting, paging, selection.
 */

import { stateBadge } from './api.js';
import { PAGE_SIZE, TRIAL_STATES } from './constants.js';
import { fill, h } from './dom.js';
import { fmt, fmtDuration, fmtInt, fmtTime } from './format.js';

export const trialTable = {
  sortedTrials() {
    const key = this.tbl.sort;
    const dir = this.tbl.order === 'desc' ? -1 : 1;
    const sig = `${this.version}|${key}|${dir}|${this.tbl.state}`;
    if (this.sortCache && this.sortCache.sig === sig) return this.sortCache.rows;
    const st = this.tbl.state;
    const list = st ? this.trials.filter((t) => t.state === st) : this.trials;
    let get;
    if (key === 'number') get = (t) => t.number;
    else if (key === 'state') get = (t) => TRIAL_STATES.indexOf(t.state);
    else if (key === 'value') get = (t) => (Number.isFinite(t.value) ? t.value : null);
    else if (key === 'epoch') get = (t) => (t.last_epoch == null ? null : t.last_epoch);
    else if (key === 'duration') get = (t) => (Number.isFinite(t.duration_seconds) ? t.duration_seconds : null);
    else {
      const name = key.slice(2);
      get = (t) => (t.params && t.params[name] != null ? t.params[name] : null);
    }
    const dec = list.map((t) => [get(t), t]);
    dec.sort((a, b) => {
      const x = a[0];
      const y = b[0];
      if (x == null || y == null) {
        if (x == null && y == null) return a[1].number - b[1].number;
        return x == null ? 1 : -1; // missing keys last either way
      }
      let c;
      if (typeof x === 'number' && typeof y === 'number') c = x - y;
      else if (typeof x === 'number') c = -1;
      else if (typeof y === 'number') c = 1;
      else c = String(x) < String(y) ? -1 : String(x) > String(y) ? 1 : 0;
      return c ? c * dir : a[1].number - b[1].number;
    });
    const rows = dec.map((d) => d[1]);
    this.sortCache = { sig, rows };
    return rows;
  },

  renderTable() {
    const P = this.panels.trials;
    const rows = this.sortedTrials();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    if (this.tbl.page >= pages) this.tbl.page = pages - 1;
    if (this.tbl.page < 0) this.tbl.page = 0;
    const start = this.tbl.page * PAGE_SIZE;
    const pageRows = rows.slice(start, start + PAGE_SIZE);
    const counts = this.study.counts || {};

    const cols = [
      { key: 'number', label: '#', cls: 'num' },
      { key: 'state', label: 'State', cls: '' },
      { key: 'value', label: this.metric, cls: 'num', title: 'objective value' },
      { key: 'epoch', label: 'Epoch', cls: 'num' },
      { key: 'duration', label: 'Duration', cls: 'num' },
    ].concat(this.params.map((p) => ({ key: 'p:' + p.name, label: p.name, cls: p.type === 'categorical' ? 'param' : 'num param', title: `${p.type}${p.log ? ' (log)' : ''}` })));

    const thead = h('thead', null, h('tr', null, cols.map((c) => {
      const active = this.tbl.sort === c.key;
      const th = h('th', {
        class: c.cls + ' sortable' + (active ? ' sorted' : ''), scope: 'col', tabindex: '0',
        'aria-sort': active ? (this.tbl.order === 'asc' ? 'ascending' : 'descending') : 'none',
        title: `Sort by ${c.label}` + (c.title ? ` (${c.title})` : ''),
      }, c.label, h('span', { class: 'sort-mark', 'aria-hidden': 'true' }, active ? (this.tbl.order === 'asc' ? '▲' : '▼') : ''));
      const go = () => {
        if (this.tbl.sort === c.key) this.tbl.order = this.tbl.order === 'asc' ? 'desc' : 'asc';
        else {
          this.tbl.sort = c.key;
          // Values: best first by default.
          this.tbl.order = c.key === 'value' ? (this.direction === 'minimize' ? 'asc' : 'desc') : 'asc';
        }
        this.tbl.page = 0;
        this.renderTable();
      };
      th.addEventListener('click', go);
      th.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); go(); } });
      return th;
    })));

    const bestId = this.study.best ? this.study.best.trial_id : null;
    const tbody = h('tbody');
    for (const t of pageRows) {
      const isBest = t.id === bestId;
      const tr = h('tr', {
        class: (this.selected.has(t.id) ? 'selected ' : '') + (isBest ? 'best-row' : ''), 'data-tid': t.id, tabindex: '0',
        title: this.selected.has(t.id) ? 'Click to remove its learning curve' : 'Click to show its learning curve',
      },
      h('td', { class: 'num' }, isBest ? h('span', { class: 'star', title: 'best trial' }, '★ ') : null, String(t.number)),
      h('td', null, stateBadge(t.state, t.failure_reason || (t.attempts > 1 ? `${t.attempts} attempts` : null))),
      h('td', { class: 'num value' + (t.state === 'pruned' ? ' muted' : ''), title: t.value == null ? null : String(t.value) + (t.state === 'pruned' ? ' (at pruning)' : '') }, fmt(t.value)),
      h('td', { class: 'num' }, t.last_epoch == null ? '—' : String(t.last_epoch)),
      h('td', { class: 'num', title: t.started_at ? `started ${fmtTime(t.started_at)}` + (t.finished_at ? `, finished ${fmtTime(t.finished_at)}` : '') : null }, fmtDuration(t.duration_seconds)),
      this.params.map((p) => {
        const v = t.params ? t.params[p.name] : undefined;
        return h('td', { class: p.type === 'categorical' ? 'param' : 'num param', title: v === undefined ? 'inactive' : String(v) }, v === undefined ? '—' : fmt(v));
      }));
      tbody.appendChild(tr);
    }
    tbody.addEventListener('click', (ev) => {
      const tr = ev.target.closest('tr');
      if (tr && tr.dataset.tid) this.toggleTrial(Number(tr.dataset.tid));
    });
    tbody.addEventListener('keydown', (ev) => {
      const tr = ev.target.closest('tr');
      if (ev.key === 'Enter' && tr && tr.dataset.tid) this.toggleTrial(Number(tr.dataset.tid));
    });
    const table = h('table', { class: 'data clickable trials-table' }, thead, tbody);

    const select = h('select', { 'aria-label': 'Filter by state' },
      h('option', { value: '' }, `all states (${fmtInt(this.trials.length)})`),
      TRIAL_STATES.map((k) => h('option', { value: k, selected: this.tbl.state === k || null }, `${k} (${fmtInt(counts[k] || 0)})`)));
    select.addEventListener('change', () => { this.tbl.state = select.value; this.tbl.page = 0; this.renderTable(); });
    const pager = (where) => h('div', { class: 'pager pager-' + where },
      h('button', { type: 'button', class: 'small', disabled: this.tbl.page === 0 || null, onclick: () => { this.tbl.page = 0; this.renderTable(); }, title: 'First page' }, '«'),
      h('button', { type: 'button', class: 'small prev', disabled: this.tbl.page === 0 || null, onclick: () => { this.tbl.page--; this.renderTable(); } }, '‹ Prev'),
      h('span', { class: 'page-indicator' }, `Page ${fmtInt(this.tbl.page + 1)} of ${fmtInt(pages)}`),
      h('button', { type: 'button', class: 'small next', disabled: this.tbl.page >= pages - 1 || null, onclick: () => { this.tbl.page++; this.renderTable(); } }, 'Next ›'),
      h('button', { type: 'button', class: 'small', disabled: this.tbl.page >= pages - 1 || null, onclick: () => { this.tbl.page = pages - 1; this.renderTable(); }, title: 'Last page' }, '»'));
    fill(P.tools, select);
    P.sub.textContent = rows.length
      ? `Trials ${fmtInt(start + 1)}–${fmtInt(start + pageRows.length)} of ${fmtInt(rows.length)}. Click a header to sort, a row to show its learning curve.`
      : this.trials.length ? 'No trials in this state.' : 'No trials yet.';
    table.hidden = rows.length === 0;
    const wrap = h('div', { class: 'table-wrap' }, table);
    // Keep the horizontal scroll position across refreshes (tracked, never read: no layout).
    wrap.addEventListener('scroll', () => { this.tableScroll = wrap.scrollLeft; }, { passive: true });
    fill(P.body, wrap, pager('bottom'));
    if (this.tableScroll) wrap.scrollLeft = this.tableScroll;
  },
};
