/*
 * The JSON API: the token (typed in by the user), GET with errors, and the page
 * chrome that reports them (error box, token form, live pill, breadcrumbs).
 */

import { TOKEN_KEY } from './constants.js';
import { fill, h } from './dom.js';
import { closePage } from './pages.js';

let memoryToken = '';

function getToken() {
  try {
    return window.localStorage.getItem(TOKEN_KEY) || memoryToken;
  } catch (_) {
    return memoryToken;
  }
}

export function setToken(token) {
  memoryToken = token || '';
  try {
    if (token) window.localStorage.setItem(TOKEN_KEY, token);
    else window.localStorage.removeItem(TOKEN_KEY);
  } catch (_) { /* storage unavailable: keep it in memory only */ }
  updateSignout();
}

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details || [];
  }
}

export function authHeaders(extra) {
  const headers = Object.assign({}, extra);
  const token = getToken();
  if (token) headers.Authorization = 'Bearer ' + token;
  return headers;
}

export async function errorFrom(response) {
  let code = 'http_' + response.status;
  let message = `${response.status} ${response.statusText || 'error'}`.trim();
  let details = [];
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      details = Array.isArray(body.error.details) ? body.error.details : [];
    }
  } catch (_) { /* not JSON */ }
  return new ApiError(response.status, code, message, details);
}

/** GET a JSON document from the API. */
export async function api(path, signal) {
  let response;
  try {
    response = await fetch(path, {
      headers: authHeaders({ Accept: 'application/json' }),
      signal,
      cache: 'no-store',
    });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `Cannot reach the tuner server (${e && e.message ? e.message : e}).`);
  }
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return null;
  return response.json();
}

/** POST (or DELETE) to the API with the stored token; the JSON answer, or null. */
export async function apiSend(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: authHeaders(body === undefined ? { Accept: 'application/json' } : { Accept: 'application/json', 'Content-Type': 'application/json' }),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'network', `Cannot reach the tuner server (${e && e.message ? e.message : e}).`);
  }
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return null;
  return response.json();
}

export function errorText(err) {
  if (!err) return 'Unknown error';
  let text = err.message || String(err);
  if (err.details && err.details.length) {
    text += ' — ' + err.details.map((d) => (d.path ? `${d.path}: ${d.message}` : d.message)).join('; ');
  }
  return text;
}

export const isAbort = (e) => e && e.name === 'AbortError';
export const isAuth = (e) => e instanceof ApiError && e.status === 401;

export function showError(message) {
  const box = document.getElementById('error');
  if (!box) return;
  box.textContent = message;
  box.hidden = false;
}

export function clearError() {
  const box = document.getElementById('error');
  if (box && !box.hidden) {
    box.hidden = true;
    box.textContent = '';
  }
}

/** Whatever went wrong: the token form on 401, the error box otherwise. */
export function report(err) {
  if (isAbort(err)) return;
  if (isAuth(err)) {
    askForToken();
    return;
  }
  showError(errorText(err));
  // Unexpected program errors also go to the console for whoever debugs this page.
  if (!(err instanceof ApiError)) console.warn(err);
}

let defaultAuthMsg = null;

function askForToken() {
  closePage();
  setLive(null);
  clearError();
  const app = document.getElementById('app');
  fill(app);
  const form = document.getElementById('auth');
  const msg = document.getElementById('auth-msg');
  const input = document.getElementById('auth-token');
  if (!defaultAuthMsg) defaultAuthMsg = Array.from(msg.childNodes, (n) => n.cloneNode(true));
  if (getToken()) {
    msg.textContent = 'The server refused the stored token. Enter the current one (it is kept in this browser\'s local storage).';
  } else {
    fill(msg, defaultAuthMsg.map((n) => n.cloneNode(true)));
  }
  form.hidden = false;
  input.value = '';
  input.focus();
}

export function updateSignout() {
  const b = document.getElementById('signout');
  if (b) b.hidden = !getToken();
}

/** The little status pill in the top bar: 'live', 'connecting', 'reconnecting', 'ended' or null. */
export function setLive(state, text) {
  const el = document.getElementById('live');
  if (!el) return;
  if (!state) {
    el.hidden = true;
    el.className = 'live';
    return;
  }
  el.hidden = false;
  el.className = 'live live-' + state;
  el.textContent = text || ({ live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…', ended: 'finished' })[state] || state;
  el.title = state === 'live' ? 'Receiving trial events from the server' : '';
}

export function setCrumbs(items) {
  const nav = document.getElementById('crumbs');
  if (!nav) return;
  fill(nav);
  for (const it of items) {
    nav.appendChild(h('span', { class: 'crumb-sep', 'aria-hidden': 'true' }, '/'));
    nav.appendChild(it.href ? h('a', { href: it.href }, it.text) : h('span', { class: 'crumb' }, it.text));
  }
}

export function stateBadge(state, title) {
  return h('span', { class: 'badge state-' + state, title: title || null }, state);
}

export function note(text, cls) {
  return h('p', { class: 'note ' + (cls || '') }, text);
}
