/*
 * Formatting numbers, times and parameter values for display.
 */

const intFormat = new Intl.NumberFormat('en-US');
export const fmtInt = (n) => (n == null ? '—' : intFormat.format(n));

/** A number with 4 significant digits (exponent form when very small or large). */
export function fmt(v) {
  if (v == null || v === '') return '—';
  if (typeof v === 'boolean') return String(v);
  if (typeof v !== 'number') return String(v);
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e6) return String(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) {
    return v.toExponential(3).replace(/\.?0+e/, 'e').replace('e+', 'e');
  }
  return String(parseFloat(v.toPrecision(4)));
}

export const fmtPct = (x, digits = 1) => (x == null || !Number.isFinite(x) ? '—' : (x * 100).toFixed(digits) + '%');

export function fmtDuration(sec) {
  if (sec == null || !Number.isFinite(sec)) return '—';
  if (sec < 1) return Math.round(sec * 1000) + ' ms';
  if (sec < 60) return sec.toFixed(sec < 10 ? 1 : 0) + ' s';
  const m = Math.floor(sec / 60);
  const rest = Math.round(sec - m * 60);
  if (m < 60) return `${m}m ${String(rest).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fmtAgo(iso) {
  const t = new Date(iso).getTime();
  if (!Number.isFinite(t)) return '';
  const sec = Math.max(0, (Date.now() - t) / 1000);
  if (sec < 60) return 'just now';
  if (sec < 3600) return Math.floor(sec / 60) + ' min ago';
  if (sec < 86400) return Math.floor(sec / 3600) + ' h ago';
  return Math.floor(sec / 86400) + ' d ago';
}

export function paramText(params, names) {
  if (!params) return '';
  const keys = names || Object.keys(params);
  return keys.filter((k) => k in params).map((k) => `${k} = ${fmt(params[k])}`).join('\n');
}

export function plural(n, word) {
  return `${fmtInt(n)} ${word}${n === 1 ? '' : 's'}`;
}
