/*
 * The study page (`#/studies/{id}`): its data, live updates, selection and
 * head; each chart is a mixin of its own module.
 */

import { ApiError, api, clearError, isAbort, isAuth, note, report, setCrumbs, setLive, stateBadge } from './api.js';
import { confusionChart } from './confusion.js';
import { contourChart } from './contour.js';
import { studyControls } from './controls.js';
import { IMPORTANCE_EVERY_MS, PALETTE, PRUNED_CURVES, RUNNING_CURVES, TOP_CURVES, TRIAL_STATES } from './constants.js';
import { curvesChart } from './curves.js';
import { fill, h } from './dom.js';
import { edfChart } from './edf.js';
import { fmt, fmtAgo, fmtInt, fmtTime } from './format.js';
import { historyChart } from './history.js';
import { importanceChart } from './importance.js';
import { budgetUsed, segmentBar } from './list.js';
import { parallelChart } from './parallel.js';
import { sliceChart } from './slice.js';
import { followEvents } from './sse.js';
import { trialTable } from './table.js';
import { timelineChart } from './timeline.js';

function studyIsLive(st) {
  if (!st) return false;
  const c = st.counts || {};
  return st.state === 'running' || st.state === 'paused' || (c.running || 0) > 0;
}

/** The parameter list of a study, from its spec (falling back to what trials carry). */
function paramsOf(study, trials) {
  const spec = study && study.spec;
  const out = [];
  if (spec && spec.parameters && typeof spec.parameters === 'object') {
    for (const [name, p] of Object.entries(spec.parameters)) {
      out.push({
        name,
        type: p.type || 'float',
        min: p.min,
        max: p.max,
        log: !!p.log,
        step: p.step,
        values: Array.isArray(p.values) ? p.values : null,
        conditional: !!p.when,
      });
    }
  }
  const known = new Set(out.map((p) => p.name));
  for (const t of trials || []) {
    for (const k of Object.keys(t.params || {})) {
      if (known.has(k)) continue;
      known.add(k);
      const v = t.params[k];
      out.push({ name: k, type: typeof v === 'number' ? 'float' : 'categorical', values: null, log: false });
    }
    if (out.length && trials.length > 200) break; // spec-less studies: the first trials are enough
  }
  return out;
}

export class StudyPage {
  constructor(root, id) {
    this.id = id;
    this.alive = true;
    this.ctrl = new AbortController();
    this.study = null;
    this.params = [];
    this.trials = [];
    this.byId = new Map();
    this.completed = [];
    this.version = 0;
    this.best = null;
    this.importance = null;
    this.importanceError = null;
    this.importanceAt = 0;
    this.importanceCompleted = -1;
    this.full = new Map(); // trial id -> full trial (with intermediate)
    this.topIds = [];
    this.runningIds = [];
    this.selected = new Set();
    this.colors = new Map();
    this.nextColor = 0;
    this.tbl = { sort: 'number', order: 'asc', page: 0, state: '', filter: '' };
    this.sortCache = null;
    this.pcFilters = new Map();
    this.historyLog = null; // null: automatic
    this.refreshTimer = 0;
    this.refreshing = false;
    this.refreshPending = false;
    this.lastRefreshAt = 0;
    this.lastRefreshMs = 0;
    this.live = false;
    this.ended = false;
    this.widths = new Map();

    setCrumbs([{ text: 'Studies', href: '#/' }, { text: 'Study ' + id }]);
    setLive(null);
    this.head = h('section', { id: 'summary', class: 'panel wide study-head' }, h('p', { class: 'loading' }, 'Loading study…'));
    this.panels = {};
    const grid = h('div', { class: 'grid' },
      this.panel('history', 'Optimization history'),
      this.panel('curves', 'Learning curves'),
      this.panel('parallel', 'Parallel coordinates', true),
      this.panel('contour', 'Contour'),
      this.panel('importance', 'Parameter importance'),
      this.panel('slice', 'Slices', true),
      this.panel('edf', 'Distribution of values (EDF)'),
      this.panel('confusion', 'Confusion matrix of the best trial'),
      this.panel('timeline', 'Timeline by worker', true),
      this.panel('trials', 'Trials', true));
    root.append(this.head, grid);
    this.grid = grid;
    if (window.ResizeObserver) {
      this.resizeObs = new ResizeObserver(() => this.onResize());
      this.resizeObs.observe(grid);
    }
    this.init();
  }

  panel(id, title, wide) {
    const body = h('div', { class: 'panel-body' }, h('p', { class: 'loading' }, 'Loading…'));
    const sub = h('p', { class: 'sub' });
    const tools = h('div', { class: 'tools' });
    const sec = h('section', { id, class: 'panel' + (wide ? ' wide' : '') },
      h('div', { class: 'panel-head' }, h('h2', null, title), tools), sub, body);
    this.panels[id] = { sec, body, sub, tools };
    return sec;
  }

  destroy() {
    this.alive = false;
    this.ctrl.abort();
    clearTimeout(this.refreshTimer);
    clearTimeout(this.resizeTimer);
    if (this.resizeObs) this.resizeObs.disconnect();
    for (const d of document.querySelectorAll('dialog.confirm')) d.close(); // asked on this page
    setLive(null);
  }

  get direction() {
    return (this.study && this.study.objective && this.study.objective.direction) === 'minimize' ? 'minimize' : 'maximize';
  }

  get metric() {
    return (this.study && this.study.objective && this.study.objective.metric) || 'value';
  }

  /** a is better than b under the study's direction. */
  better(a, b) {
    return this.direction === 'minimize' ? a < b : a > b;
  }

  async init() {
    const signal = this.ctrl.signal;
    try {
      this.study = await api(`/studies/${this.id}`, signal);
    } catch (e) {
      if (!this.alive || isAbort(e)) return;
      report(e);
      if (!isAuth(e)) {
        fill(this.head, h('h1', null, 'Study ' + this.id),
          note(e instanceof ApiError && e.status === 404 ? 'This study does not exist (any more).' : 'The study could not be loaded.'),
          h('p', null, h('a', { href: '#/' }, '← All studies')));
        this.grid.hidden = true;
      }
      return;
    }
    if (!this.alive) return;
    document.title = `${this.study.name} · tuner`;
    setCrumbs([{ text: 'Studies', href: '#/' }, { text: this.study.name }]);
    this.renderHead();
    this.live = studyIsLive(this.study);
    try {
      await this.refresh(true);
    } catch (e) {
      if (!this.alive || isAbort(e)) return;
      report(e);
      return;
    }
    if (!this.alive) return;
    document.body.dataset.ready = 'study';
    if (studyIsLive(this.study)) this.follow();
  }

  // --------------------------------------------------------------------- data

  setTrials(trials) {
    this.trials = trials;
    this.byId = new Map(trials.map((t) => [t.id, t]));
    this.completed = trials.filter((t) => t.state === 'completed' && Number.isFinite(t.value));
    this.params = paramsOf(this.study, trials);
    this.version++;
    this.sortCache = null;
    const dir = this.direction === 'minimize' ? 1 : -1;
    const ranked = this.completed.slice().sort((a, b) => dir * (a.value - b.value) || a.number - b.number);
    this.topIds = ranked.slice(0, TOP_CURVES).map((t) => t.id);
    this.rankedCompleted = ranked;
    this.prunedIds = trials.filter((t) => t.state === 'pruned' && t.last_epoch)
      .sort((a, b) => b.number - a.number).slice(0, PRUNED_CURVES).map((t) => t.id);
    this.runningIds = this.live
      ? trials.filter((t) => t.state === 'running' && t.last_epoch).sort((a, b) => b.number - a.number).slice(0, RUNNING_CURVES).map((t) => t.id)
      : [];
  }

  async refresh(first) {
    const t0 = performance.now();
    const signal = this.ctrl.signal;
    // After the first load only what changed since the last answer comes back
    // (`changed_after`): a refresh of a 10,000-trial study moves a few trials, not all.
    const since = first || this.lastEventId == null ? null : this.lastEventId;
    const [study, list] = await Promise.all([
      first ? Promise.resolve(this.study) : api(`/studies/${this.id}`, signal),
      api(`/studies/${this.id}/trials?view=summary` + (since == null ? '' : `&changed_after=${since}`), signal),
    ]);
    if (!this.alive) return;
    const spec = this.study && this.study.spec;
    this.study = Object.assign({}, study, { spec: study.spec || spec });
    const fetched = (list && list.trials) || [];
    if (since == null) {
      this.setTrials(fetched);
    } else if (fetched.length) {
      const merged = new Map(this.trials.map((t) => [t.id, t]));
      for (const t of fetched) merged.set(t.id, t);
      this.setTrials([...merged.values()].sort((a, b) => a.number - b.number));
    }
    if (list && Number.isFinite(list.last_event_id)) this.lastEventId = list.last_event_id;

    const jobs = [];
    const bestId = this.study.best ? this.study.best.trial_id : null;
    if (bestId == null) {
      this.best = null;
    } else if (!this.best || this.best.trial.id !== bestId) {
      jobs.push(api(`/studies/${this.id}/best`, signal).then((b) => { this.best = b; this.bestError = null; },
        (e) => { if (isAbort(e) || isAuth(e)) throw e; this.best = null; this.bestError = e; }));
    }
    const nDone = this.study.counts ? this.study.counts.completed : this.completed.length;
    const importanceDue = first || (nDone !== this.importanceCompleted &&
      (Date.now() - this.importanceAt > IMPORTANCE_EVERY_MS || !studyIsLive(this.study)));
    if (importanceDue) {
      this.importanceAt = Date.now();
      this.importanceCompleted = nDone;
      jobs.push(api(`/studies/${this.id}/importance`, signal).then((imp) => { this.importance = imp; this.importanceError = null; },
        (e) => { if (isAbort(e) || isAuth(e)) throw e; this.importanceError = e; }));
    }
    jobs.push(this.loadCurves());
    await Promise.all(jobs);
    if (!this.alive) return;
    this.renderAll();
    this.lastRefreshMs = performance.now() - t0;
    this.lastRefreshAt = Date.now();
  }

  /** Trials whose curves are shown, in legend order. */
  curveIds() {
    const out = [];
    const seen = new Set();
    const push = (id) => { if (!seen.has(id) && this.byId.has(id)) { seen.add(id); out.push(id); } };
    this.topIds.forEach(push);
    this.selected.forEach(push);
    this.runningIds.forEach(push);
    if (this.curvesPruned) this.prunedIds.forEach(push);
    return out;
  }

  /** Fetches the full trials (with per-epoch history) that the curves need. */
  async loadCurves() {
    const signal = this.ctrl.signal;
    const need = this.curveIds().filter((id) => {
      const cached = this.full.get(id);
      const sum = this.byId.get(id);
      return !cached || cached.state !== sum.state || cached.last_epoch !== sum.last_epoch;
    });
    if (!need.length) return;
    const jobs = [];
    const topMissing = need.filter((id) => this.topIds.includes(id));
    let rest = need;
    if (topMissing.length > 2) {
      const order = this.direction === 'minimize' ? 'asc' : 'desc';
      jobs.push(api(`/studies/${this.id}/trials?state=completed&sort=value&order=${order}&limit=${TOP_CURVES}`, signal)
        .then((r) => { for (const t of (r && r.trials) || []) this.full.set(t.id, t); }));
      rest = need.filter((id) => !this.topIds.includes(id));
    }
    for (const id of rest) {
      jobs.push(api(`/trials/${id}`, signal).then((t) => { this.full.set(t.id, t); }, (e) => {
        if (isAbort(e) || isAuth(e)) throw e;
        if (e.status === 404) this.selected.delete(id);
      }));
    }
    await Promise.all(jobs);
  }

  // ------------------------------------------------------------------ live

  async follow() {
    this.live = true;
    // From the event the loaded trial list is current to (or from now): replaying a
    // long study's whole log would be wasted, and nothing in between is missed.
    // Reconnects resume with Last-Event-ID, which the server prefers over `after`.
    const url = `/studies/${this.id}/trials?after=${this.lastEventId == null ? 'now' : this.lastEventId}`;
    let lost = false;
    this.following = true;
    try {
      await followEvents(url, this.ctrl.signal, (name, data) => this.onEvent(name, data), (st) => {
        if (!this.alive) return;
        setLive(st);
        if (st === 'reconnecting') lost = true;
        if (st === 'live' && lost) {
          // Back after an outage: resynchronise (and clear the error) even if no event comes.
          lost = false;
          this.requestRefresh();
        }
      });
    } catch (e) {
      if (!this.alive || isAbort(e)) return;
      report(e);
      setLive(null);
    } finally {
      this.following = false;
    }
  }

  /** Takes the study an `end` or `study` event carries (its data) into the header. */
  applyStudyEvent(data) {
    try {
      const st = JSON.parse(data);
      if (st && st.id != null && this.study) {
        this.study = Object.assign({}, this.study, st, { spec: this.study.spec });
        this.renderHead();
      }
    } catch (_) { /* not a study */ }
  }

  onEvent(name, data) {
    if (!this.alive) return;
    if (name === 'end') {
      this.ended = true;
      this.live = false;
      this.applyStudyEvent(data);
      this.requestRefresh();
      return;
    }
    if (name === 'error') return;
    if (name === 'study') {
      // Stop, pause or resume: the study itself changed, its trials did not.
      this.applyStudyEvent(data);
      return;
    }
    this.requestRefresh();
  }

  /** Debounced and throttled refresh: at most one at a time, spaced by its own cost. */
  requestRefresh() {
    if (!this.alive) return;
    if (this.refreshTimer || this.refreshing) {
      this.refreshPending = true;
      return;
    }
    const gap = Math.max(1000, 3 * this.lastRefreshMs);
    const wait = Math.max(150, this.lastRefreshAt + gap - Date.now());
    this.refreshTimer = setTimeout(async () => {
      this.refreshTimer = 0;
      this.refreshing = true;
      this.refreshPending = false;
      try {
        await this.refresh(false);
        clearError();
      } catch (e) {
        if (this.alive) report(e);
      } finally {
        this.refreshing = false;
        this.lastRefreshAt = Date.now();
        if (this.refreshPending && this.alive) {
          this.refreshPending = false;
          this.requestRefresh();
        }
      }
    }, wait);
  }

  // ------------------------------------------------------------ selection

  toggleTrial(id) {
    if (!this.byId.has(id)) return;
    if (this.selected.has(id)) this.selected.delete(id);
    else this.selected.add(id);
    this.markSelection();
    this.renderTable();
    this.loadCurves().then(() => { if (this.alive) this.renderCurves(); }, report);
    this.renderCurves();
  }

  colorOf(id) {
    let c = this.colors.get(id);
    if (!c) {
      c = PALETTE[this.nextColor++ % PALETTE.length];
      this.colors.set(id, c);
    }
    return c;
  }

  /** Highlights selected trials in the history and parallel-coordinate charts. */
  markSelection() {
    for (const [id, el] of this.historyEls || []) el.classList.toggle('sel', this.selected.has(id));
    for (const line of this.pcLines || []) {
      const on = this.selected.has(line.id);
      line.el.classList.toggle('sel', on);
      if (on) line.el.parentNode.appendChild(line.el);
    }
  }

  // ------------------------------------------------------------ rendering

  renderAll() {
    this.measure();
    this.renderHead();
    // Finished trials never change, so counts tell whether the big charts need redrawing.
    const c = this.study.counts || {};
    const bestId = this.study.best ? this.study.best.trial_id : '';
    const histSig = `${this.completed.length}|${c.pruned}|${bestId}|${this.widths.get('history')}`;
    if (histSig !== this.histSig) {
      this.histSig = histSig;
      this.renderHistory();
    }
    const pcSig = `${this.completed.length}|${this.params.length}|${this.widths.get('parallel')}`;
    if (pcSig !== this.pcSig) {
      this.pcSig = pcSig;
      this.renderParallel();
    }
    const viewSig = `${this.version}|${this.importanceCompleted}|${[...this.widths.values()].join(',')}`;
    if (viewSig !== this.viewSig) {
      this.viewSig = viewSig;
      this.renderViews();
    }
    this.hideEmptyPanels();
    this.renderCurves();
    this.renderImportance();
    this.renderConfusion();
    this.renderTable();
  }

  /**
   * An external study whose trials report no epochs has no learning curves, and one
   * whose best trial reports no confusion matrix has none to show: those panels go
   * rather than stand empty. (A built-in study keeps them while they fill.)
   */
  hideEmptyPanels() {
    const external = !(this.study.spec && this.study.spec.trainer);
    const finished = this.trials.some((t) => t.state === 'completed' || t.state === 'pruned' || t.state === 'failed');
    const epochs = this.trials.some((t) => t.last_epoch != null);
    this.panels.curves.sec.hidden = !epochs && (external || finished);
    const metrics = this.best && this.best.trial && this.best.trial.metrics;
    const cm = metrics && Array.isArray(metrics.confusion_matrix) && metrics.confusion_matrix.length;
    this.panels.confusion.sec.hidden = !cm && !this.bestError && (external || !!this.best);
  }

  /** The contour, slices, EDF and timeline: redrawn when the trials change. */
  renderViews() {
    this.renderContour();
    this.renderSlice();
    this.renderEdf();
    this.renderTimeline();
  }

  onResize() {
    clearTimeout(this.resizeTimer);
    this.resizeTimer = setTimeout(() => {
      if (!this.alive || !this.study || !this.trials) return;
      let changed = false;
      for (const [id, p] of Object.entries(this.panels)) {
        const w = p.body.clientWidth;
        if (Math.abs((this.widths.get(id) || 0) - w) > 8) changed = true;
      }
      if (!changed) return;
      this.measure();
      this.renderHistory();
      this.renderParallel();
      this.renderViews();
      this.renderCurves();
      this.renderImportance();
      this.renderConfusion();
    }, 150);
  }

  /** Reads every panel's width in one go (before any DOM change, so one layout). */
  measure() {
    for (const [id, p] of Object.entries(this.panels)) this.widths.set(id, p.body.clientWidth);
  }

  widthOf(id, fallback = 640) {
    if (!this.widths.get(id)) this.widths.set(id, this.panels[id].body.clientWidth);
    return Math.max(280, this.widths.get(id) || fallback);
  }

  renderHead() {
    const st = this.study;
    if (!st) return;
    const c = st.counts || {};
    const spec = st.spec || {};
    const max = st.max_trials || 0;

    const segs = segmentBar(c, max);
    const countList = h('ul', { class: 'counts' },
      TRIAL_STATES.map((k) => h('li', { class: 'count count-' + k }, h('span', { class: 'dot' }), h('strong', null, fmtInt(c[k] || 0)), ' ' + k)),
      h('li', { class: 'count count-total' }, h('strong', null, fmtInt(budgetUsed(c))), ` of ${fmtInt(max)} trials` +
        (c.failed ? ` (+${fmtInt(c.failed)} failed)` : '')));

    let bestBox;
    if (st.best) {
      const b = st.best;
      const names = this.params.length ? this.params.map((p) => p.name) : Object.keys(b.params || {});
      const chips = names.filter((k) => b.params && k in b.params).map((k) =>
        h('span', { class: 'chip', title: `${k} = ${b.params[k]}` }, h('span', { class: 'chip-k' }, k), h('span', { class: 'chip-v' }, fmt(b.params[k]))));
      bestBox = h('div', { class: 'best' },
        h('div', { class: 'best-value' },
          h('span', { class: 'label' }, 'Best ' + this.metric),
          h('strong', { title: String(b.value) }, fmt(b.value)),
          h('button', { type: 'button', class: 'link-button', title: 'Highlight this trial and show its learning curve', onclick: () => this.toggleTrial(b.trial_id) }, `trial #${b.number}`)),
        h('div', { class: 'chips' }, chips));
    } else {
      bestBox = h('div', { class: 'best' }, h('span', { class: 'muted' }, 'No completed trial yet.'));
    }

    const trainer = spec.trainer && spec.trainer.kind;
    fill(this.head, 
      h('div', { class: 'head-row' },
        h('h1', null, st.name),
        stateBadge(st.state),
        st.state_reason ? h('span', { class: 'reason' }, st.state_reason) : null,
        h('span', { class: 'spacer' }),
        this.controlsEl = h('div', { class: 'controls-slot' }, this.controls())),
      spec.description ? h('p', { class: 'desc' }, spec.description) : null,
      h('dl', { class: 'facts' },
        h('div', null, h('dt', null, 'Objective'), h('dd', null, `${this.direction} `, h('code', null, this.metric))),
        h('div', null, h('dt', null, 'Optimizer'), h('dd', null, st.optimizer)),
        trainer ? h('div', null, h('dt', null, 'Trainer'), h('dd', null, trainer)) : null,
        h('div', null, h('dt', null, 'Study id'), h('dd', null, String(st.id))),
        h('div', null, h('dt', null, 'Created'), h('dd', { title: st.created_at }, fmtTime(st.created_at))),
        h('div', null, h('dt', null, 'Updated'), h('dd', { title: st.updated_at }, fmtAgo(st.updated_at) || fmtTime(st.updated_at)))),
      h('div', { class: 'progress-block' }, segs, countList),
      bestBox);
  }

}

// Each chart's methods live in a module of their own and share the page's state
// through `this`.
Object.assign(
  StudyPage.prototype,
  historyChart,
  parallelChart,
  curvesChart,
  importanceChart,
  confusionChart,
  contourChart,
  sliceChart,
  edfChart,
  timelineChart,
  studyControls,
  trialTable,
);
