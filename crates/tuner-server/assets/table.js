/*
 * The study page's trial table: sorting, paging, selection, a filter on parameter
 * values (and the parallel coordinates' brushes), export of what it shows.
 */

import { stateBadge } from './api.js';
import { download, trialsCsv, trialsJson } from './export.js';
import { parseFilter } from './filter.js';
import { PAGE_SIZE, TRIAL_STATES } from './constants.js';
import { fill, h } from './dom.js';
import { fmt, fmtDuration, fmtInt, fmtTime } from './format.js';

export const trialTable = {
  sortedTrials() {
    const key = this.tbl.sort;
    const dir = this.tbl.order === 'desc' ? -1 : 1;
    const sig = `${this.version}|${key}|${dir}|${this.tbl.state}|${this.tbl.filter}|${this.pcMatchVersion || 0}`;
    if (this.sortCache && this.sortCache.sig === sig) return this.sortCache.rows;
    const st = this.tbl.state;
    const parsed = parseFilter(this.tbl.filter, this.params, this.metric);
    this.tbl.filterError = parsed.error || null;
    const match = this.pcMatch;
    const list = this.trials.filter((t) => (!st || t.state === st) && (!parsed.test || parsed.test(t)) && (!match || match.has(t.id)));
    let get;
    if (key === 'number') get = (t) => t.number;
    else if (key === 'state') get = (t) => TRIAL_STATES.indexOf(t.state);
    else if (key === 'value') get = (t) => (Number.isFinite(t.value) ? t.value : null);
    else if (key === 'epoch') get = (t) => (t.last_epoch == null ? null : t.last_epoch);
    else if (key === 'reason') get = (t) => t.failure_reason || null;
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

  hasReasons() {
    if (this.reasonsVersion !== this.version) {
      this.reasonsVersion = this.version;
      this.reasons = this.trials.some((t) => t.failure_reason);
    }
    return this.reasons;
  },

  /** The table's tools, built once so that typing in the filter keeps its focus. */
  updateTableTools(shown) {
    const P = this.panels.trials;
    if (!this.tableTools) {
      const input = h('input', {
        type: 'search', class: 'trial-filter', placeholder: 'filter: act=relu lr<0.01', spellcheck: 'false',
        'aria-label': 'Filter trials by parameter values', title: 'Clauses name=value, name!=value, name<number (also <=, >, >=), separated by spaces; names are parameters, value, state, worker, epoch',
      });
      let timer = 0;
      input.addEventListener('input', () => {
        clearTimeout(timer);
        timer = setTimeout(() => { this.tbl.filter = input.value.trim(); this.tbl.page = 0; this.renderTable(); }, 150);
      });
      const select = h('select', { class: 'state-filter', 'aria-label': 'Filter by state' });
      select.addEventListener('change', () => { this.tbl.state = select.value; this.tbl.page = 0; this.renderTable(); });
      const status = h('span', { class: 'filter-status' });
      const save = (kind) => {
        const rows = this.sortedTrials();
        const name = `study-${this.id}-trials.${kind}`;
        if (kind === 'csv') download(name, trialsCsv(rows, this.params, this.metric), 'text/csv');
        else download(name, trialsJson(rows), 'application/json');
      };
      const exports = h('span', { class: 'export' },
        h('button', { type: 'button', class: 'small export-csv', title: 'Download the trials the table holds (all pages) as CSV', onclick: () => save('csv') }, 'CSV'),
        h('button', { type: 'button', class: 'small export-json', title: 'Download the trials the table holds (all pages) as JSON', onclick: () => save('json') }, 'JSON'));
      this.tableTools = { root: h('div', { class: 'table-tools' }, status, input, select, exports), input, select, status };
    }
    const T = this.tableTools;
    if (P.tools.firstChild !== T.root) fill(P.tools, T.root);
    const counts = this.study.counts || {};
    fill(T.select,
      h('option', { value: '' }, `all states (${fmtInt(this.trials.length)})`),
      TRIAL_STATES.map((k) => h('option', { value: k, selected: this.tbl.state === k || null }, `${k} (${fmtInt(counts[k] || 0)})`)));
    T.input.classList.toggle('invalid', !!this.tbl.filterError);
    fill(T.status,
      this.tbl.filterError ? h('span', { class: 'bad' }, this.tbl.filterError) : null,
      this.pcMatch ? h('span', { class: 'filter-info', title: 'Only the completed trials inside the brushes of the parallel coordinates' }, 'brushed ',
        h('button', { type: 'button', class: 'link-button clear-brush', onclick: () => this.clearPcFilters() }, '(clear)')) : null,
      shown != null && (this.tbl.filter || this.pcMatch || this.tbl.state) ? h('span', { class: 'match-count' }, `${fmtInt(shown)} shown`) : null);
  },

  renderTable() {
    const P = this.panels.trials;
    const rows = this.sortedTrials();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    if (this.tbl.page >= pages) this.tbl.page = pages - 1;
    if (this.tbl.page < 0) this.tbl.page = 0;
    const start = this.tbl.page * PAGE_SIZE;
    const pageRows = rows.slice(start, start + PAGE_SIZE);
    const cols = [
      { key: 'number', label: '#', cls: 'num' },
      { key: 'state', label: 'State', cls: '' },
      { key: 'value', label: this.metric, cls: 'num', title: 'objective value' },
      { key: 'epoch', label: 'Epoch', cls: 'num' },
      { key: 'duration', label: 'Duration', cls: 'num' },
    ].concat(this.hasReasons() ? [{ key: 'reason', label: 'Failure reason', cls: 'reason-col' }] : [], this.params.map((p) => ({ key: 'p:' + p.name, label: p.name, cls: p.type === 'categorical' ? 'param' : 'num param', title: `${p.type}${p.log ? ' (log)' : ''}` })));

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
    const reasons = this.hasReasons();
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
      reasons ? h('td', { class: 'reason-cell', title: t.failure_reason || null }, t.failure_reason || '') : null,
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

    const pager = (where) => h('div', { class: 'pager pager-' + where },
      h('button', { type: 'button', class: 'small', disabled: this.tbl.page === 0 || null, onclick: () => { this.tbl.page = 0; this.renderTable(); }, title: 'First page' }, '«'),
      h('button', { type: 'button', class: 'small prev', disabled: this.tbl.page === 0 || null, onclick: () => { this.tbl.page--; this.renderTable(); } }, '‹ Prev'),
      h('span', { class: 'page-indicator' }, `Page ${fmtInt(this.tbl.page + 1)} of ${fmtInt(pages)}`),
      h('button', { type: 'button', class: 'small next', disabled: this.tbl.page >= pages - 1 || null, onclick: () => { this.tbl.page++; this.renderTable(); } }, 'Next ›'),
      h('button', { type: 'button', class: 'small', disabled: this.tbl.page >= pages - 1 || null, onclick: () => { this.tbl.page = pages - 1; this.renderTable(); }, title: 'Last page' }, '»'));
    this.updateTableTools(rows.length);
    const narrowed = this.tbl.state || this.pcMatch || (this.tbl.filter && !this.tbl.filterError);
    P.sub.textContent = rows.length
      ? `Trials ${fmtInt(start + 1)}–${fmtInt(start + pageRows.length)} of ${fmtInt(rows.length)}` +
        (narrowed ? ` (of ${fmtInt(this.trials.length)}, filtered)` : '') + '. Click a header to sort, a row to show its learning curve.'
      : this.trials.length ? 'No trials match the filters.' : 'No trials yet.';
    table.hidden = rows.length === 0;
    const wrap = h('div', { class: 'table-wrap' }, table);
    // Keep the horizontal scroll position across refreshes (tracked, never read: no layout).
    wrap.addEventListener('scroll', () => { this.tableScroll = wrap.scrollLeft; }, { passive: true });
    fill(P.body, wrap, pager('bottom'));
    if (this.tableScroll) wrap.scrollLeft = this.tableScroll;
  },
};
