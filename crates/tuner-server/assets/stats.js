/*
 * Statistics for the fallback parameter importance (when the server has none).
 */

/** Ranks (1-based, ties averaged). */
function ranks(values) {
  const idx = values.map((_, i) => i).sort((a, b) => values[a] - values[b]);
  const out = new Array(values.length);
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && values[idx[j + 1]] === values[idx[i]]) j++;
    const r = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) out[idx[k]] = r;
    i = j + 1;
  }
  return out;
}

function pearson(a, b) {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) { ma += a[i]; mb += b[i]; }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const da = a[i] - ma;
    const db = b[i] - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : 0;
}

/** Correlation ratio: share of the (ranked) objective's spread explained by groups. */
function correlationRatio(groups, ys) {
  const n = ys.length;
  let mean = 0;
  for (const y of ys) mean += y;
  mean /= n;
  const sums = new Map();
  for (let i = 0; i < n; i++) {
    const e = sums.get(groups[i]) || { s: 0, n: 0 };
    e.s += ys[i];
    e.n += 1;
    sums.set(groups[i], e);
  }
  let between = 0;
  for (const e of sums.values()) between += e.n * Math.pow(e.s / e.n - mean, 2);
  let total = 0;
  for (const y of ys) total += (y - mean) * (y - mean);
  return total > 0 ? Math.sqrt(between / total) : 0;
}

/** Per parameter: |Spearman ρ| (numbers) or correlation ratio η (categoricals) with the objective. */
export function fallbackImportance(trials, params) {
  const out = [];
  for (const p of params) {
    const xs = [];
    const ys = [];
    for (const t of trials) {
      const v = t.params ? t.params[p.name] : undefined;
      if (v === undefined || v === null || !Number.isFinite(t.value)) continue;
      xs.push(v);
      ys.push(t.value);
    }
    if (xs.length < 3) continue;
    const yr = ranks(ys);
    let value;
    if (p.type === 'categorical' || xs.some((x) => typeof x !== 'number')) {
      value = correlationRatio(xs.map((x) => String(x)), yr);
    } else {
      value = Math.abs(pearson(ranks(xs), yr));
    }
    out.push({ name: p.name, value, n: xs.length });
  }
  return out.sort((a, b) => b.value - a.value);
}
