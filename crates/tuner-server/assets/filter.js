/*
 * The trial table's filter: clauses such as `act=relu lr<0.01 n>=8`, all of which a
 * trial must meet. Names are parameters, `value` (or the objective's metric),
 * `state`, `worker` and `epoch`; `=` and `!=` compare text, `<`, `<=`, `>`, `>=`
 * numbers.
 */

const CLAUSE = /^([A-Za-z_][\w.\-]*)\s*(!=|<=|>=|=|<|>)\s*(.+)$/;

/** Splits on commas or spaces that are not around an operator. */
function clauses(text) {
  return text.replace(/\s*(!=|<=|>=|=|<|>)\s*/g, '$1').split(/[\s,]+/).filter(Boolean);
}

/** A predicate for `text`, or `{ error }` naming the clause it could not read. */
export function parseFilter(text, params, metric) {
  const names = new Set(params.map((p) => p.name));
  const tests = [];
  for (const c of clauses(text || '')) {
    const m = c.match(CLAUSE);
    if (!m) return { error: `cannot read “${c}”: write name=value, name<number, …` };
    const [, name, op, raw] = m;
    let get;
    if (names.has(name)) get = (t) => (t.params ? t.params[name] : undefined);
    else if (name === 'value' || name === metric) get = (t) => t.value;
    else if (name === 'state') get = (t) => t.state;
    else if (name === 'worker') get = (t) => t.worker;
    else if (name === 'epoch') get = (t) => t.last_epoch;
    else return { error: `no parameter “${name}”` };
    if (op === '=' || op === '!=') {
      const want = raw.toLowerCase();
      const num = Number(raw);
      const eq = (v) => v != null && (String(v).toLowerCase() === want || (typeof v === 'number' && Number.isFinite(num) && v === num));
      tests.push(op === '=' ? (t) => eq(get(t)) : (t) => get(t) != null && !eq(get(t)));
    } else {
      const num = Number(raw);
      if (!Number.isFinite(num)) return { error: `“${raw}” is not a number (in “${c}”)` };
      const cmp = { '<': (v) => v < num, '<=': (v) => v <= num, '>': (v) => v > num, '>=': (v) => v >= num }[op];
      tests.push((t) => { const v = get(t); return typeof v === 'number' && cmp(v); });
    }
  }
  return { test: (t) => tests.every((f) => f(t)), active: tests.length > 0 };
}
