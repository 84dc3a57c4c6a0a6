/*
 * tuner web dashboard.
 *
 * Hand-written for the tuner project; licence Apache-2.0 (the project's licence).
 * No third-party code, no build step, no external requests: plain modern JavaScript
 * reading the server's own JSON API, with charts drawn as SVG by hand.
 *
 * Routes (URL hash): `#/` lists the studies, `#/studies/{id}` shows one study.
 *
 * ES modules, each one concern: this one is the router and start-up; `list.js` and
 * `study.js` are the two pages, the study page's charts are mixins in `history.js`,
 * `parallel.js`, `curves.js`, `importance.js`, `confusion.js`, `contour.js`,
 * `slice.js`, `edf.js`, `timeline.js` and `table.js` (with `filter.js` and
 * `export.js`), its buttons in `controls.js`;
 * `api.js` (the API, token and error chrome), `sse.js` (live events), `pages.js` (the
 * page on screen), `dom.js`, `format.js`, `chart.js` (colours, scales, axes),
 * `stats.js` (fallback importance) and `constants.js` serve them.
 */

import { clearError, isAbort, report, setCrumbs, setToken, showError, updateSignout } from './api.js';
import { fill, h } from './dom.js';
import { ListPage } from './list.js';
import { closePage, showPage } from './pages.js';
import { StudyPage } from './study.js';

function route() {
  closePage();
  delete document.body.dataset.ready;
  clearError();
  document.getElementById('auth').hidden = true;
  const app = document.getElementById('app');
  fill(app);
  window.scrollTo(0, 0);
  const hash = location.hash || '#/';
  const m = hash.match(/^#\/studies\/(\d+)\/?$/);
  document.body.dataset.page = m ? 'study' : 'list';
  if (m) {
    showPage(new StudyPage(app, Number(m[1])));
  } else if (hash === '#/' || hash === '#' || hash === '') {
    showPage(new ListPage(app));
  } else {
    document.body.dataset.page = 'unknown';
    setCrumbs([]);
    showError(`No such page: ${hash}`);
    app.appendChild(h('p', null, h('a', { href: '#/' }, '← All studies')));
  }
}

function start() {
  const form = document.getElementById('auth');
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = document.getElementById('auth-token');
    const token = input.value.trim();
    if (!token) return;
    setToken(token);
    input.value = '';
    form.hidden = true;
    route();
  });
  document.getElementById('signout').addEventListener('click', () => {
    setToken('');
    route();
  });
  updateSignout();
  window.addEventListener('hashchange', route);
  window.addEventListener('error', (ev) => showError('Dashboard error: ' + (ev.message || 'unknown')));
  window.addEventListener('unhandledrejection', (ev) => {
    if (isAbort(ev.reason)) { ev.preventDefault(); return; }
    report(ev.reason);
    ev.preventDefault();
  });
  route();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
