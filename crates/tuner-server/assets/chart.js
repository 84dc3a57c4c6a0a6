/*
 * Colour maps, scales and axes for the hand-drawn SVG charts.
 */

import { VIRIDIS } from './constants.js';
import { r1, s, stext } from './dom.js';
import { fmt } from './format.js';

/** Viridis at t in [0, 1] (0 dark purple, 1 yellow). */
export function viridis(t) {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const a = VIRIDIS[i];
  const b = VIRIDIS[i + 1];
  const c = (k) => Math.round(a[k] + (b[k] - a[k]) * f);
  return `rgb(${c(0)},${c(1)},${c(2)})`;
}

/** White to deep blue, for the confusion matrix. */
export function blues(t) {
  const x = Math.min(1, Math.max(0, t));
  const from = [247, 251, 255];
  const to = [8, 48, 107];
  const g = Math.pow(x, 0.7);
  const c = (k) => Math.round(from[k] + (to[k] - from[k]) * g);
  return `rgb(${c(0)},${c(1)},${c(2)})`;
}

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  const step = norm >= 7.5 ? 10 : norm >= 3.5 ? 5 : norm >= 1.5 ? 2 : 1;
  return step * mag;
}

function linearTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const step = niceStep(hi - lo, count);
  const out = [];
  const start = Math.ceil(lo / step - 1e-9);
  for (let i = start; i * step <= hi + step * 1e-9; i++) {
    const v = i * step;
    out.push(Math.abs(v) < step * 1e-9 ? 0 : parseFloat(v.toPrecision(12)));
    if (out.length > 50) break;
  }
  return out;
}

function logTicks(lo, hi, count) {
  const a = Math.floor(Math.log10(lo));
  const b = Math.ceil(Math.log10(hi));
  let mults = [1];
  if (b - a <= 1) mults = [1, 2, 3, 5];
  else if (b - a <= 3) mults = [1, 2, 5];
  const out = [];
  for (let e = a; e <= b; e++) {
    for (const m of mults) {
      const v = parseFloat((m * Math.pow(10, e)).toPrecision(12));
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(v);
    }
  }
  if (out.length > count * 2) return out.filter((v) => Math.abs(Math.log10(v) % 1) < 1e-9);
  if (out.length < 2) return [lo, hi];
  return out;
}

/** A scale from domain [d0, d1] onto range [r0, r1]; log when asked and possible. */
export function scale(d0, d1, r0, r1, log) {
  let lo = d0;
  let hi = d1;
  const isLog = !!log && lo > 0 && hi > 0;
  if (!(hi > lo)) {
    const pad = isLog ? lo * 0.5 : Math.abs(lo) * 0.05 || 1;
    lo -= pad;
    hi += isLog ? pad * 2 : pad;
  }
  const t = isLog ? Math.log10 : (v) => v;
  const tl = t(lo);
  const th = t(hi);
  const f = (v) => r0 + ((t(v) - tl) / (th - tl)) * (r1 - r0);
  f.domain = [lo, hi];
  f.log = isLog;
  f.ticks = (n) => (isLog ? logTicks(lo, hi, n) : linearTicks(lo, hi, n));
  return f;
}

/** Extent of finite numbers, padded by a fraction of the span. */
export function extent(values, padFrac = 0) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v == null || !Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo === Infinity) return null;
  const pad = (hi - lo) * padFrac;
  return [lo - pad, hi + pad];
}

export function logExtent(values, padFrac) {
  const ext = extent(values);
  if (!ext || ext[0] <= 0) return ext;
  const l0 = Math.log10(ext[0]);
  const l1 = Math.log10(ext[1]);
  const pad = (l1 - l0) * padFrac;
  return [Math.pow(10, l0 - pad), Math.pow(10, l1 + pad)];
}

/** Left axis with grid lines across [x0, x1]. */
export function axisLeft(g, y, x0, x1, n, label, fmtTick = fmt) {
  const ax = s('g', { class: 'axis axis-y' }, g);
  for (const v of y.ticks(n)) {
    const yy = r1(y(v));
    s('line', { class: 'grid', x1: x0, x2: x1, y1: yy, y2: yy }, ax);
    stext(ax, { x: x0 - 6, y: yy, dy: '0.32em', 'text-anchor': 'end' }, fmtTick(v));
  }
  if (label) {
    const ym = (y.range0 + y.range1) / 2;
    stext(ax, { class: 'axis-label', transform: `translate(${x0 - 46},${ym}) rotate(-90)`, 'text-anchor': 'middle' }, label);
  }
  return ax;
}

export function axisBottom(g, x, y0, n, label, fmtTick = fmt, ints = false) {
  const ax = s('g', { class: 'axis axis-x' }, g);
  s('line', { class: 'domain', x1: x.range0, x2: x.range1, y1: y0, y2: y0 }, ax);
  let ticks = x.ticks(n);
  if (ints) ticks = ticks.filter((v) => Number.isInteger(v));
  for (const v of ticks) {
    const xx = r1(x(v));
    s('line', { class: 'tick', x1: xx, x2: xx, y1: y0, y2: y0 + 4 }, ax);
    stext(ax, { x: xx, y: y0 + 16, 'text-anchor': 'middle' }, fmtTick(v));
  }
  if (label) stext(ax, { class: 'axis-label', x: (x.range0 + x.range1) / 2, y: y0 + 32, 'text-anchor': 'middle' }, label);
  return ax;
}

export function withRange(f, r0, r1v) {
  f.range0 = r0;
  f.range1 = r1v;
  return f;
}

/** Whether parameter p is drawn as categories (bands) rather than on a number line. */
export function isCategorical(p) {
  return p.type === 'categorical' || (p.values && p.values.length && p.type !== 'float' && p.type !== 'int');
}

/**
 * A parameter's axis onto [r0, r1]: numbers on a (log) scale over the search range
 * and the values seen; categories as equal bands. `at(v)` is null for a missing value.
 */
export function paramScale(p, trials, r0, r1v) {
  const get = (t) => (t.params ? t.params[p.name] : undefined);
  if (isCategorical(p) || trials.some((t) => { const v = get(t); return v != null && typeof v !== 'number'; })) {
    const values = p.values && p.values.length ? p.values.slice() : [];
    const index = new Map(values.map((v, i) => [String(v), i]));
    for (const t of trials) {
      const v = get(t);
      if (v != null && !index.has(String(v))) { index.set(String(v), values.length); values.push(v); }
    }
    const n = Math.max(1, values.length);
    const band = (r1v - r0) / n;
    const at = (v) => (v == null || !index.has(String(v)) ? null : r0 + band * (index.get(String(v)) + 0.5));
    return {
      kind: 'categorical', values, band, at, index: (v) => (v == null ? null : index.get(String(v))),
      ticks: values.map((v, i) => ({ pos: r0 + band * (i + 0.5), label: fmt(v) })),
    };
  }
  const vals = [];
  for (const t of trials) { const v = get(t); if (typeof v === 'number' && Number.isFinite(v)) vals.push(v); }
  let lo = Number.isFinite(p.min) ? p.min : Infinity;
  let hi = Number.isFinite(p.max) ? p.max : -Infinity;
  const ext = extent(vals);
  if (ext) { lo = Math.min(lo, ext[0]); hi = Math.max(hi, ext[1]); }
  if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  const sc = scale(lo, hi, r0, r1v, p.log);
  let tv = sc.ticks(4);
  if (p.type === 'int') tv = tv.filter((v) => Number.isInteger(v));
  return {
    kind: sc.log ? 'log' : 'linear', scale: sc,
    at: (v) => (typeof v === 'number' && Number.isFinite(v) ? sc(v) : null),
    ticks: tv.map((v) => ({ pos: sc(v), label: fmt(v) })),
  };
}

/** An objective axis: logarithmic for positive values spanning two decades or more. */
export function objectiveScale(values, r0, r1v, log) {
  const raw = extent(values);
  const positive = raw && raw[0] > 0;
  const useLog = log == null ? positive && raw[1] / raw[0] >= 100 : !!log && positive;
  const ext = useLog ? logExtent(values, 0.04) : extent(values, 0.05);
  return withRange(scale(ext[0], ext[1], r0, r1v, useLog), r0, r1v);
}
