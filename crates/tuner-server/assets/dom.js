/*
 * DOM and SVG element helpers.
 */

import { SVG_NS } from './constants.js';

/** An HTML element: h('td', {class: 'num', title: 'x'}, 'text', child, ...). */
export function h(tag, props, ...kids) {
  const e = document.createElement(tag);
  if (props) {
    for (const k of Object.keys(props)) {
      const v = props[k];
      if (v == null || v === false || k === 'style') continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }
  add(e, kids);
  return e;
}

/** Replaces the children of el (null and false kids are skipped). */
export function fill(el, ...kids) {
  el.replaceChildren();
  return add(el, kids);
}

function add(parent, kids) {
  for (const k of kids) {
    if (k == null || k === false) continue;
    if (Array.isArray(k)) add(parent, k);
    else parent.appendChild(typeof k === 'object' ? k : document.createTextNode(String(k)));
  }
  return parent;
}

/** An SVG element with presentation attributes, appended to parent when given. */
export function s(tag, attrs, parent) {
  const e = document.createElementNS(SVG_NS, tag);
  if (attrs) {
    for (const k of Object.keys(attrs)) {
      const v = attrs[k];
      if (v != null && k !== 'style') e.setAttribute(k, String(v));
    }
  }
  if (parent) parent.appendChild(e);
  return e;
}

export function stext(parent, attrs, text) {
  const t = s('text', attrs, parent);
  t.textContent = text;
  return t;
}

export function stitle(parent, text) {
  const t = document.createElementNS(SVG_NS, 'title');
  t.textContent = text;
  parent.appendChild(t);
  return parent;
}

export function svgRoot(width, height, cls) {
  return s('svg', {
    class: 'chart ' + (cls || ''), width, height, viewBox: `0 0 ${width} ${height}`,
    role: 'img', preserveAspectRatio: 'xMinYMin meet',
  });
}

/** Pointer position in the SVG's user coordinates. */
export function svgPoint(svg, ev) {
  const m = svg.getScreenCTM();
  if (!m) return { x: 0, y: 0 };
  const p = new DOMPoint(ev.clientX, ev.clientY).matrixTransform(m.inverse());
  return { x: p.x, y: p.y };
}

export const r1 = (v) => Math.round(v * 10) / 10;
