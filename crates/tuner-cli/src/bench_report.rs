//! `tuner-cli bench report`: one side-by-side table from the run files of
//! `bench optimizer --json-out` and `bench/optuna_side_by_side.py`.
//!
//! Per problem and sampler: the median simple regret at each checkpoint with a 95%
//! percentile-bootstrap interval; per problem, each sampler against the reference
//! (paired by seed): how many seeds the reference is better on and the two-sided
//! p-value of the Wilcoxon signed-rank test (normal approximation with tie and
//! continuity corrections). The statistics live here so every table comes from one
//! implementation, whichever side produced the runs.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use statrs::distribution::{ContinuousCDF, Normal};

use crate::bench_optimizer::{RunFile, RunRecord};

/// Bootstrap resamples per interval.
const RESAMPLES: usize = 2000;

pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

/// 95% percentile-bootstrap interval of the median.
fn bootstrap_median(values: &[f64], rng: &mut ChaCha8Rng) -> (f64, f64) {
    let n = values.len();
    let mut medians: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let sample: Vec<f64> = (0..n).map(|_| values[rng.random_range(0..n)]).collect();
            median(&sample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    (quantile(&medians, 0.025), quantile(&medians, 0.975))
}

/// Paired comparison of `reference` with `other` (same seeds, smaller is better).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    /// Seeds where the reference is strictly better / strictly worse.
    pub reference_better: usize,
    pub reference_worse: usize,
    /// Two-sided Wilcoxon signed-rank p-value (1 when every pair ties).
    pub p_value: f64,
}

/// Wilcoxon signed-rank test on `other - reference`; zero differences are dropped,
/// tied magnitudes get average ranks (with the variance correction for them).
pub fn wilcoxon(reference: &[f64], other: &[f64]) -> Paired {
    let diffs: Vec<f64> = reference
        .iter()
        .zip(other)
        .map(|(r, o)| o - r)
        .filter(|d| *d != 0.0)
        .collect();
    let reference_better = diffs.iter().filter(|d| **d > 0.0).count();
    let reference_worse = diffs.len() - reference_better;
    let n = diffs.len();
    if n == 0 {
        return Paired {
            reference_better,
            reference_worse,
            p_value: 1.0,
        };
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| diffs[a].abs().total_cmp(&diffs[b].abs()));
    let mut ranks = vec![0.0; n];
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && diffs[order[j + 1]].abs() == diffs[order[i]].abs() {
            j += 1;
        }
        let average = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = average;
        }
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let w_plus: f64 = (0..n).filter(|&k| diffs[k] > 0.0).map(|k| ranks[k]).sum();
    let nf = n as f64;
    let mean = nf * (nf + 1.0) / 4.0;
    let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term / 48.0;
    let p_value = if var <= 0.0 {
        1.0
    } else {
        let z = ((w_plus - mean).abs() - 0.5).max(0.0) / var.sqrt();
        let normal = Normal::standard();
        (2.0 * (1.0 - normal.cdf(z))).min(1.0)
    };
    Paired {
        reference_better,
        reference_worse,
        p_value,
    }
}

fn fmt_regret(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if (1e-3..1e4).contains(&v.abs()) {
        let digits = (3 - v.abs().log10().floor() as i32 - 1).clamp(0, 4) as usize;
        format!("{v:.digits$}")
    } else {
        format!("{v:.2e}")
    }
}

pub fn report(files: &[PathBuf], checkpoints: &[u32], reference: Option<&str>) -> Result<()> {
    let mut runs: Vec<RunRecord> = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let parsed: RunFile =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        runs.extend(parsed.runs);
    }
    if runs.is_empty() {
        bail!("no runs in {} file(s)", files.len());
    }
    // problem -> sampler -> seed -> run, in first-seen order of samplers.
    let mut samplers: Vec<String> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut by: BTreeMap<(String, String), BTreeMap<u32, &RunRecord>> = BTreeMap::new();
    for r in &runs {
        if !samplers.contains(&r.sampler) {
            samplers.push(r.sampler.clone());
        }
        if !problems.contains(&r.problem) {
            problems.push(r.problem.clone());
        }
        by.entry((r.problem.clone(), r.sampler.clone()))
            .or_default()
            .insert(r.seed, r);
    }
    let reference = match reference {
        Some(r) if samplers.iter().any(|s| s == r) => r.to_string(),
        Some(r) => bail!("reference `{r}` not among {}", samplers.join(", ")),
        None => samplers[0].clone(),
    };
    let budget = runs.iter().map(|r| r.regret.len()).min().unwrap_or(0);
    let checkpoints: Vec<u32> = checkpoints
        .iter()
        .copied()
        .filter(|c| *c >= 1 && *c as usize <= budget)
        .collect();

    println!(
        "Median simple regret [95% bootstrap interval] over seeds; ask = mean suggestion time"
    );
    println!();
    let header: Vec<String> = checkpoints.iter().map(|c| format!("{c} trials")).collect();
    println!(
        "| problem | sampler | seeds | {} | ask ms |",
        header.join(" | ")
    );
    println!("|---|---|---|{}---|", "---|".repeat(checkpoints.len()));
    for problem in &problems {
        for sampler in &samplers {
            let Some(seeds) = by.get(&(problem.clone(), sampler.clone())) else {
                continue;
            };
            let cells: Vec<String> = checkpoints
                .iter()
                .map(|&c| {
                    let values: Vec<f64> =
                        seeds.values().map(|r| r.regret[c as usize - 1]).collect();
                    // A fixed stream per cell: the same regrets get the same interval.
                    let mut rng = ChaCha8Rng::seed_from_u64(13);
                    let (lo, hi) = bootstrap_median(&values, &mut rng);
                    format!(
                        "{} [{}, {}]",
                        fmt_regret(median(&values)),
                        fmt_regret(lo),
                        fmt_regret(hi)
                    )
                })
                .collect();
            let ask_ms = seeds.values().map(|r| r.ask_ms).sum::<f64>() / seeds.len() as f64;
            println!(
                "| {problem} | {sampler} | {} | {} | {ask_ms:.1} |",
                seeds.len(),
                cells.join(" | ")
            );
        }
    }
    println!();
    println!(
        "Paired by seed, {reference} against each other sampler: seeds where {reference} is \
         better / worse, two-sided Wilcoxon signed-rank p"
    );
    println!();
    println!("| problem | versus | {} |", header.join(" | "));
    println!("|---|---|{}", "---|".repeat(checkpoints.len()));
    for problem in &problems {
        let Some(ours) = by.get(&(problem.clone(), reference.clone())) else {
            continue;
        };
        for sampler in samplers.iter().filter(|s| **s != reference) {
            let Some(theirs) = by.get(&(problem.clone(), sampler.clone())) else {
                continue;
            };
            let shared: Vec<u32> = ours
                .keys()
                .filter(|s| theirs.contains_key(s))
                .copied()
                .collect();
            if shared.is_empty() {
                continue;
            }
            let cells: Vec<String> = checkpoints
                .iter()
                .map(|&c| {
                    let at = |m: &BTreeMap<u32, &RunRecord>| -> Vec<f64> {
                        shared.iter().map(|s| m[s].regret[c as usize - 1]).collect()
                    };
                    let t = wilcoxon(&at(ours), &at(theirs));
                    format!(
                        "{}/{} p={:.3}",
                        t.reference_better, t.reference_worse, t.p_value
                    )
                })
                .collect();
            println!("| {problem} | {sampler} | {} |", cells.join(" | "));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilcoxon_matches_the_textbook_example() {
        // Differences 1..=10, all positive: W+ = 55, z = (55 - 27.5 - 0.5) / sqrt(96.25).
        let reference = vec![0.0; 10];
        let other: Vec<f64> = (1..=10).map(f64::from).collect();
        let t = wilcoxon(&reference, &other);
        assert_eq!((t.reference_better, t.reference_worse), (10, 0));
        let z: f64 = 27.0 / 96.25f64.sqrt();
        let expected = 2.0 * (1.0 - Normal::standard().cdf(z));
        assert!((t.p_value - expected).abs() < 1e-12, "{t:?}");
        assert!(t.p_value < 0.01);
    }

    #[test]
    fn wilcoxon_of_identical_samples_is_one() {
        let a = [0.1, 0.2, 0.3];
        assert_eq!(wilcoxon(&a, &a).p_value, 1.0);
    }

    #[test]
    fn balanced_differences_are_not_significant() {
        let reference = [0.0; 6];
        let other = [1.0, -1.0, 2.0, -2.0, 3.0, -3.0];
        let t = wilcoxon(&reference, &other);
        assert_eq!((t.reference_better, t.reference_worse), (3, 3));
        assert!(t.p_value > 0.9, "{t:?}");
    }
}
