//! The fitted model: which trials become training data (completed; pruned ones imputed
//! at the median; failed ones never), the targets' orientation, warping and
//! standardization, and the GP fitted to them.

use tuner_core::{Direction, stats::median};

use super::{FIT_STREAM, GpConfig, PendingStrategy};
use crate::{
    Observation, Outcome,
    coder::Coder,
    derive_seed,
    gp::{FitProblem, Posterior, Prior, Scratch},
};

/// The fitted GP with everything the acquisition needs.
pub(super) struct Model<'a> {
    pub(super) coder: &'a Coder,
    pub(super) post: Posterior,
    /// Incumbent for EI: the best posterior mean at an observed point (robust to noise).
    pub(super) best: f64,
    /// Canonical points of the best observations, best first (perturbation bases).
    pub(super) top: Vec<Vec<f64>>,
    pub(super) n_train: usize,
}

impl<'a> Model<'a> {
    /// Fits the model to the history; `None` with fewer than two distinct usable values.
    pub(super) fn build(
        coder: &'a Coder,
        direction: Direction,
        history: &[Observation],
        seed: u64,
        config: &GpConfig,
        with_pending: bool,
    ) -> Option<Self> {
        let orient = |v: f64| match direction {
            Direction::Maximize => v,
            Direction::Minimize => -v,
        };
        // Completed trials with finite values; everything else is handled below.
        let mut goodness: Vec<f64> = Vec::new();
        let mut zs: Vec<Vec<f64>> = Vec::new();
        for o in history {
            if let Outcome::Completed(v) = o.outcome
                && v.is_finite()
            {
                goodness.push(orient(v));
                zs.push(coder.encode(&o.params));
            }
        }
        if goodness.len() < 2 {
            return None;
        }
        // Pruned trials: the pruner judged them below the median of their peers at an
        // early epoch, and their intermediate value is not on the final scale, so they
        // enter as "no better than the median completed trial". That steers the search
        // away from their neighbourhood without inventing a score from a partial run.
        let median = median(&goodness);
        for o in history {
            if let Outcome::Pruned(_) = o.outcome {
                // A learning-curve pruner's prediction of the final value, where it
                // made one, is better information than the median.
                goodness.push(o.predicted.map_or(median, orient));
                zs.push(coder.encode(&o.params));
            }
        }
        let spread = goodness.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v))
            - goodness.iter().fold(f64::INFINITY, |m, &v| m.min(v));
        if spread <= 0.0 || !spread.is_finite() {
            return None;
        }

        // Keep the model small enough to be fast: the best half and the most recent.
        let mut keep: Vec<usize> = (0..goodness.len()).collect();
        if keep.len() > config.max_points {
            keep = subset(&goodness, config.max_points);
        }
        let y = transform_targets(
            &keep.iter().map(|&i| goodness[i]).collect::<Vec<_>>(),
            config.warp_targets,
        );
        let zs: Vec<Vec<f64>> = keep.iter().map(|&i| zs[i].clone()).collect();
        let d = coder.len();
        let mut active = Vec::new();
        let mut feat = Vec::new();
        let mut x = Vec::with_capacity(zs.len() * d);
        for z in &zs {
            coder.features(z, &mut active, &mut feat);
            x.extend_from_slice(&feat);
        }

        // Hyperparameters from a subset when there is a lot of data.
        let fit_idx = if y.len() > config.max_fit_points {
            subset(&y, config.max_fit_points)
        } else {
            (0..y.len()).collect()
        };
        let fit_x: Vec<f64> = fit_idx
            .iter()
            .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
            .collect();
        let fit_y: Vec<f64> = fit_idx.iter().map(|&i| y[i]).collect();
        let discrete: Vec<bool> = coder
            .params
            .iter()
            .map(|p| p.coding.is_discrete())
            .collect();
        let problem = FitProblem::new(&fit_x, &fit_y, &coder.dims, Prior::for_space(&discrete));
        // Small models: two refined starts; larger ones: one, fewer iterations (the
        // typical start is already close once there is this much data).
        let (starts, iters) = if fit_y.len() <= 40 { (2, 60) } else { (1, 25) };
        let hyper = problem.fit(derive_seed(seed, FIT_STREAM), starts, iters);

        let post = Posterior::new(x.clone(), &y, &coder.dims, &hyper)?;
        let best = post
            .train_means(&y)
            .into_iter()
            .fold(f64::NEG_INFINITY, f64::max);
        let mut order: Vec<usize> = (0..y.len()).collect();
        order.sort_by(|&a, &b| y[b].total_cmp(&y[a]));
        let top: Vec<Vec<f64>> = order.iter().take(5).map(|&i| zs[i].clone()).collect();

        let pending: Vec<&Observation> = history
            .iter()
            .filter(|o| o.outcome == Outcome::Pending)
            .collect();
        let post =
            if !with_pending || pending.is_empty() || config.pending == PendingStrategy::Ignore {
                post
            } else {
                let mut x_all = x;
                let mut y_all = y.clone();
                let mut s = Scratch::default();
                let mean_y = y.iter().sum::<f64>() / y.len() as f64;
                let worst = y.iter().fold(f64::INFINITY, |m, &v| m.min(v));
                for o in pending {
                    let z = coder.encode(&o.params);
                    coder.features(&z, &mut active, &mut feat);
                    let lie = match config.pending {
                        PendingStrategy::KrigingBeliever => post.mean(&feat, &mut s),
                        PendingStrategy::ConstantLiarMean => mean_y,
                        PendingStrategy::ConstantLiarWorst => worst,
                        PendingStrategy::Ignore => unreachable!("handled above"),
                    };
                    x_all.extend_from_slice(&feat);
                    y_all.push(lie);
                }
                Posterior::new(x_all, &y_all, &coder.dims, &hyper).unwrap_or(post)
            };
        Some(Self {
            coder,
            post,
            best,
            top,
            n_train: y.len(),
        })
    }
}

/// `k` indices: the best `k/2` by value, then the most recent of the rest.
fn subset(values: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let mut chosen: Vec<usize> = order[..k / 2].to_vec();
    let mut taken = vec![false; values.len()];
    chosen.iter().for_each(|&i| taken[i] = true);
    for i in (0..values.len()).rev() {
        if chosen.len() >= k {
            break;
        }
        if !taken[i] {
            chosen.push(i);
        }
    }
    chosen.sort_unstable();
    chosen
}

/// Standardizes "larger is better" values; with `warp`, first applies the Yeo–Johnson
/// transform whose λ (in [−1, 1] on the "cost" = −value scale) maximizes the normal
/// likelihood: λ < 1 compresses a long tail of bad values and stretches the good end.
pub(super) fn transform_targets(goodness: &[f64], warp: bool) -> Vec<f64> {
    let standardize = |v: &[f64]| -> Vec<f64> {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let sd = var.sqrt().max(1e-12);
        v.iter().map(|x| (x - mean) / sd).collect()
    };
    let cost: Vec<f64> = standardize(goodness).iter().map(|v| -v).collect();
    if !warp || cost.len() < 4 {
        return cost.iter().map(|v| -v).collect();
    }
    let yeo_johnson = |x: f64, l: f64| -> f64 {
        if x >= 0.0 {
            if l.abs() < 1e-9 {
                x.ln_1p()
            } else {
                ((x + 1.0).powf(l) - 1.0) / l
            }
        } else if (l - 2.0).abs() < 1e-9 {
            -(-x).ln_1p()
        } else {
            -((1.0 - x).powf(2.0 - l) - 1.0) / (2.0 - l)
        }
    };
    let n = cost.len() as f64;
    let log_jac: f64 = cost.iter().map(|x| x.signum() * x.abs().ln_1p()).sum();
    let loglik = |l: f64| -> f64 {
        let t: Vec<f64> = cost.iter().map(|&x| yeo_johnson(x, l)).collect();
        let mean = t.iter().sum::<f64>() / n;
        let var = t.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        -0.5 * n * var.max(1e-300).ln() + (l - 1.0) * log_jac
    };
    // Golden-section search on [−1, 1] (the profile likelihood is unimodal in practice).
    let (mut a, mut b) = (-1.0f64, 1.0f64);
    let g = 0.618_033_988_749_895;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (loglik(c), loglik(d));
    for _ in 0..40 {
        if fc > fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = loglik(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = loglik(d);
        }
    }
    let lambda = 0.5 * (a + b);
    let lambda = if loglik(lambda) > loglik(1.0) {
        lambda
    } else {
        1.0
    };
    let warped: Vec<f64> = cost.iter().map(|&x| -yeo_johnson(x, lambda)).collect();
    standardize(&warped)
}
