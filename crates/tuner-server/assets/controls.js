/*
 * The study page's controls: pause, resume, stop, extend (a larger trial budget) and
 * delete, sent with the token like every other request. Delete and extend ask first,
 * in a dialog of the page.
 */

import { apiSend, report } from './api.js';
import { fill, h } from './dom.js';
import { fmtInt } from './format.js';

/** A modal dialog; resolves with the value of the button that closed it ('' on Escape). */
function ask(title, body, confirmLabel, danger) {
  return new Promise((resolve) => {
    const dlg = h('dialog', { class: 'confirm' },
      h('form', { method: 'dialog' },
        h('h2', null, title), body,
        h('div', { class: 'dialog-buttons' },
          h('button', { type: 'submit', value: 'cancel', class: 'dialog-cancel' }, 'Cancel'),
          h('button', { type: 'submit', value: 'ok', class: 'dialog-ok' + (danger ? ' danger' : '') }, confirmLabel))));
    dlg.addEventListener('close', () => { resolve(dlg.returnValue === 'ok'); dlg.remove(); });
    document.body.appendChild(dlg);
    dlg.showModal();
  });
}

export const studyControls = {
  /**
   * The buttons for the study's state: the same elements until that changes, so a
   * refresh of the head never swaps a button from under the pointer.
   */
  controls() {
    const sig = `${this.study.state}|${!!this.busy}`;
    if (sig !== this.controlsSig) {
      this.controlsSig = sig;
      this.controlsNode = this.controlsBar();
    }
    return this.controlsNode;
  },

  controlsBar() {
    const st = this.study;
    const can = {
      pause: st.state === 'running',
      resume: st.state === 'paused' || st.state === 'stopped',
      stop: st.state === 'running' || st.state === 'paused',
    };
    const button = (kind, label, title) => h('button', {
      type: 'button', class: 'small control control-' + kind, title, disabled: this.busy || null,
      onclick: () => this.control(kind),
    }, label);
    return h('div', { class: 'controls', role: 'group', 'aria-label': 'Study controls' },
      can.pause ? button('pause', 'Pause', 'No new trials until resumed; running trials finish') : null,
      can.resume ? button('resume', 'Resume', 'Hand out trials again') : null,
      can.stop ? button('stop', 'Stop', 'No new trials; running trials are told to stop') : null,
      button('extend', 'Extend…', 'Raise the trial budget'),
      button('delete', 'Delete…', 'Delete the study and all its trials'));
  },

  async control(kind) {
    const st = this.study;
    const path = `/studies/${this.id}`;
    let answer;
    try {
      if (kind === 'delete') {
        const total = (st.counts && st.counts.total) || 0;
        const ok = await ask(`Delete study “${st.name}”?`,
          h('p', null, `Its ${fmtInt(total)} trials go with it. This cannot be undone.`), 'Delete', true);
        if (!ok) return;
        this.setBusy(true);
        await apiSend('DELETE', path);
        location.hash = '#/';
        return;
      }
      let body;
      if (kind === 'extend') {
        const current = st.max_trials || 0;
        const input = h('input', { type: 'number', name: 'max_trials', min: current + 1, step: 1, value: current + Math.max(10, Math.round(current / 2)), required: true });
        const ok = await ask('Extend the trial budget', h('p', null, h('label', null, `New budget (now ${fmtInt(current)} trials): `, input)), 'Extend');
        if (!ok) return;
        const n = Number(input.value);
        if (!Number.isInteger(n) || n <= current) {
          report(new Error(`The new budget must be a whole number above ${current}.`));
          return;
        }
        body = { max_trials: n };
      }
      this.setBusy(true);
      answer = await apiSend('POST', `${path}/${kind}`, body);
    } catch (e) {
      this.setBusy(false);
      if (this.alive) report(e);
      return;
    }
    this.setBusy(false);
    if (!this.alive) return;
    if (answer && answer.id != null) this.study = Object.assign({}, this.study, answer, { spec: this.study.spec });
    this.renderHead();
    this.requestRefresh();
    if (!this.following && (this.study.state === 'running' || this.study.state === 'paused')) this.follow();
  },

  setBusy(on) {
    this.busy = on;
    if (this.controlsEl) fill(this.controlsEl, this.controls());
  },
};
