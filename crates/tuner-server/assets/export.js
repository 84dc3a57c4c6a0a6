/*
 * Export of the trial table as CSV or JSON: every trial the table holds under its
 * current filters and sort (all pages), downloaded by the browser.
 */

function csvCell(v) {
  if (v == null) return '';
  const text = typeof v === 'object' ? JSON.stringify(v) : String(v);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

const FIELDS = ['number', 'id', 'state', 'value', 'last_epoch', 'duration_seconds', 'worker', 'attempts', 'failure_reason', 'started_at', 'finished_at'];

/** CSV text: the trial fields, then one column per parameter. */
export function trialsCsv(rows, params, metric) {
  const head = FIELDS.map((f) => (f === 'value' ? metric : f)).concat(params.map((p) => p.name));
  const lines = [head.map(csvCell).join(',')];
  for (const t of rows) {
    lines.push(FIELDS.map((f) => csvCell(t[f])).concat(params.map((p) => csvCell(t.params ? t.params[p.name] : null))).join(','));
  }
  return lines.join('\n') + '\n';
}

/** JSON text: an array of the trials as the API gave them. */
export function trialsJson(rows) {
  return JSON.stringify(rows.map((t) => {
    const out = {};
    for (const f of FIELDS) out[f] = t[f] === undefined ? null : t[f];
    out.params = t.params || {};
    return out;
  }), null, 2) + '\n';
}

/** Lets the browser save `text` as a file named `name`. */
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
