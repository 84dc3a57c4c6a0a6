//! [`GpSampler`]: Bayesian optimization with a Gaussian process, and
//! [`parameter_importance`] from the same model.
//!
//! Owns the search-space side of the GP: which trials become training data (completed
//! ones; pruned ones imputed; failed ones never), target orientation / warping /
//! standardization, pending trials, the mixed-space acquisition search and
//! de-duplication. The GP math lives in the private `gp` module.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tuner_core::{Direction, Params, SearchSpace, config_key};

use crate::{
    Observation, OptimError, Outcome, RandomSampler, Sampler, SuggestContext,
    coder::{Coder, Coding},
    derive_seed,
    gp::{self, FitProblem, Posterior, Prior, Scratch},
    sobol::Sobol,
};

/// How trials that are still running shape the next suggestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingStrategy {
    /// Pretend each pending trial returned the model's current mean there: the mean is
    /// unchanged, the uncertainty around pending points collapses, so the next
    /// suggestion goes elsewhere unless the region is clearly best.
    KrigingBeliever,
    /// Pretend each pending trial returned the mean of the observed values.
    ConstantLiarMean,
    /// Pretend each pending trial returned the worst observed value (most repulsive).
    ConstantLiarWorst,
    /// Pending trials only block exact duplicates.
    Ignore,
}

/// Settings of a [`GpSampler`].
#[derive(Debug, Clone)]
pub struct GpConfig {
    /// Trials drawn from the scrambled Sobol' initial design before the model is used
    /// (the study's `optimizer.initial_trials`).
    pub initial_trials: u32,
    pub pending: PendingStrategy,
    /// Yeo–Johnson warp of the targets (fitted by maximum likelihood) before
    /// standardization, so a few disastrous trials do not flatten the model.
    pub warp_targets: bool,
    /// Most Sobol' candidates scored per suggestion (fewer when the model is large).
    pub max_candidates: usize,
    /// Most observations in the GP; beyond it the best half and the most recent
    /// others are kept.
    pub max_points: usize,
    /// Most observations used to fit the kernel hyperparameters.
    pub max_fit_points: usize,
}

impl Default for GpConfig {
    fn default() -> Self {
        Self {
            initial_trials: 10,
            pending: PendingStrategy::KrigingBeliever,
            warp_targets: true,
            max_candidates: 2048,
            max_points: 500,
            max_fit_points: 120,
        }
    }
}

/// Gaussian-process Bayesian optimization with log expected improvement.
#[derive(Debug, Clone, Default)]
pub struct GpSampler {
    config: GpConfig,
}

impl GpSampler {
    pub fn new(config: GpConfig) -> Self {
        Self { config }
    }

    pub fn config(&self) -> &GpConfig {
        &self.config
    }
}

/// Stream ids mixed into the seed so independent decisions use independent randomness.
const SOBOL_DESIGN_STREAM: u64 = 0x5_0B01;
const FIT_STREAM: u64 = 1;
const CANDIDATE_STREAM: u64 = 2;
const PERTURB_STREAM: u64 = 3;

/// Discrete domains up to this size are searched exhaustively one parameter at a time.
const EXHAUSTIVE_LIMIT: u64 = 16;
/// Best single-parameter moves combined pairwise (and the top three together).
const JOINT_MOVES: usize = 5;
/// Scoring work per suggestion, in units of "one posterior variance at n = 1":
/// bounds the candidates when the model is large.
const CANDIDATE_WORK: f64 = 5e6;

impl Sampler for GpSampler {
    fn name(&self) -> &'static str {
        "gp"
    }

    fn suggest(&self, ctx: &SuggestContext<'_>) -> Result<Params, OptimError> {
        if ctx.space.is_empty() {
            return RandomSampler.suggest(ctx);
        }
        let seen = ctx.seen_keys();
        let coder = Coder::new(ctx.space);
        let use_model = ctx.history.len() >= self.config.initial_trials as usize;
        if use_model {
            let seed = derive_seed(ctx.seed, ctx.trial_number);
            let model = Model::build(&coder, ctx.direction, ctx.history, seed, &self.config, true);
            if let Some(params) = model.and_then(|m| self.search(&m, ctx, seed, &seen)) {
                return Ok(params);
            }
        }
        self.initial_design(&coder, ctx, &seen)
    }
}

impl GpSampler {
    /// Point `history.len()` of the study's scrambled Sobol' sequence (skipping points
    /// already tried); random draws / enumeration once those keep colliding.
    fn initial_design(
        &self,
        coder: &Coder,
        ctx: &SuggestContext<'_>,
        seen: &HashSet<String>,
    ) -> Result<Params, OptimError> {
        let sobol = Sobol::scrambled(coder.len(), derive_seed(ctx.seed, SOBOL_DESIGN_STREAM));
        let start = ctx.history.len() as u64;
        for index in start..start + 64 {
            let mut z = sobol.point(index);
            coder.canonicalize(&mut z);
            let params = coder.decode(&z, ctx.space);
            if !seen.contains(&config_key(&params)) {
                return Ok(params);
            }
        }
        RandomSampler.suggest(ctx)
    }

    fn search(
        &self,
        model: &Model,
        ctx: &SuggestContext<'_>,
        seed: u64,
        seen: &HashSet<String>,
    ) -> Option<Params> {
        let coder = model.coder;
        let p = coder.len();
        let n = model.n_train;
        let mut acq = Acquisition::new(model);

        // 1. Screening: scrambled Sobol' points plus perturbations of the best trials
        //    (where refinements usually are), as many as the work budget allows.
        let per_point = (n * n) as f64 / 2.0 + (n * p) as f64;
        let n_cand = ((CANDIDATE_WORK / per_point) as usize).clamp(128, self.config.max_candidates);
        let mut candidates: Vec<Vec<f64>> = Vec::with_capacity(n_cand + 64);
        let sobol = Sobol::scrambled(p, derive_seed(seed, CANDIDATE_STREAM));
        for i in 0..n_cand as u64 {
            let mut z = sobol.point(i);
            coder.canonicalize(&mut z);
            candidates.push(z);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, PERTURB_STREAM));
        let flip = (2.0 / p as f64).min(1.0);
        let n_local = (n_cand / 4).max(32);
        for i in 0..n_local {
            let base = &model.top[i % model.top.len()];
            let scale = [0.2, 0.05, 0.01][i % 3];
            let mut z = base.clone();
            for (j, zj) in z.iter_mut().enumerate() {
                *zj = if coder.params[j].coding.is_discrete() {
                    if rng.random::<f64>() < flip {
                        rng.random()
                    } else {
                        *zj
                    }
                } else {
                    *zj + scale * gp::gaussian(&mut rng)
                };
            }
            coder.canonicalize(&mut z);
            candidates.push(z);
        }
        let mut scored: Vec<(f64, Vec<f64>)> =
            candidates.into_iter().map(|z| (acq.value(&z), z)).collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));

        // 2. Local search from the best few distinct candidates and the incumbent.
        let n_starts = if n <= 100 {
            3
        } else if n <= 300 {
            4
        } else {
            2
        };
        let mut starts: Vec<Vec<f64>> = vec![model.top[0].clone()];
        for (_, z) in &scored {
            if starts.len() > n_starts {
                break;
            }
            if !starts.iter().any(|s| s == z) {
                starts.push(z.clone());
            }
        }
        let mut finals: Vec<(f64, Vec<f64>)> =
            starts.into_iter().map(|z| acq.local_search(z)).collect();
        finals.sort_by(|a, b| b.0.total_cmp(&a.0));

        // 3. The best configuration nobody has tried (completed, pending or failed).
        let mut tried = HashSet::new();
        for (_, z) in finals.iter().chain(scored.iter()) {
            let params = coder.decode(z, ctx.space);
            let key = config_key(&params);
            if !seen.contains(&key) && tried.insert(key) {
                return Some(params);
            }
            if tried.len() > 4096 {
                break;
            }
        }
        None
    }
}

/// The fitted GP with everything the acquisition needs.
struct Model<'a> {
    coder: &'a Coder,
    post: Posterior,
    /// Incumbent for EI: the best posterior mean at an observed point (robust to noise).
    best: f64,
    /// Canonical points of the best observations, best first (perturbation bases).
    top: Vec<Vec<f64>>,
    n_train: usize,
}

impl<'a> Model<'a> {
    /// Fits the model to the history; `None` with fewer than two distinct usable values.
    fn build(
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
                goodness.push(median);
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
        let problem = FitProblem::new(&fit_x, &fit_y, &coder.dims, Prior::for_dims(d));
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

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
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
fn transform_targets(goodness: &[f64], warp: bool) -> Vec<f64> {
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

/// Log EI over canonical points, with the local search.
struct Acquisition<'m, 'a> {
    model: &'m Model<'a>,
    scratch: Scratch,
    active: Vec<bool>,
    feat: Vec<f64>,
    neighbours: Vec<f64>,
}

impl<'m, 'a> Acquisition<'m, 'a> {
    fn new(model: &'m Model<'a>) -> Self {
        Self {
            model,
            scratch: Scratch::default(),
            active: Vec::new(),
            feat: Vec::new(),
            neighbours: Vec::new(),
        }
    }

    fn value(&mut self, z: &[f64]) -> f64 {
        self.model
            .coder
            .features(z, &mut self.active, &mut self.feat);
        let (mean, var) = self.model.post.predict(&self.feat, &mut self.scratch);
        gp::log_ei(mean, var.sqrt(), self.model.best).0
    }

    /// Coordinate search on discrete parameters interleaved with L-BFGS on the
    /// continuous ones, until neither improves.
    fn local_search(&mut self, mut z: Vec<f64>) -> (f64, Vec<f64>) {
        let coder = self.model.coder;
        let mut value = self.value(&z);
        let has_discrete = coder.params.iter().any(|p| p.coding.is_discrete());
        for _ in 0..3 {
            let mut improved = false;
            let (zc, vc) = self.continuous_step(&z);
            if vc > value + 1e-9 {
                z = zc;
                value = vc;
                improved = true;
            }
            if has_discrete {
                let (zd, vd) = self.discrete_step(&z, value);
                if vd > value + 1e-9 {
                    z = zd;
                    value = vd;
                    improved = true;
                }
            }
            if !improved || !has_discrete {
                break;
            }
        }
        (value, z)
    }

    /// L-BFGS on the active continuous coordinates, discrete ones held fixed.
    fn continuous_step(&mut self, z: &[f64]) -> (Vec<f64>, f64) {
        let coder = self.model.coder;
        coder.activity(z, &mut self.active);
        let dims: Vec<usize> = (0..coder.len())
            .filter(|&j| self.active[j] && coder.params[j].coding == Coding::Continuous)
            .collect();
        if dims.is_empty() {
            return (z.to_vec(), f64::NEG_INFINITY);
        }
        let x0: Vec<f64> = dims.iter().map(|&j| z[j]).collect();
        let lower = vec![0.0; dims.len()];
        let upper = vec![1.0; dims.len()];
        let mut point = z.to_vec();
        let mut d_mean = vec![0.0; dims.len()];
        let mut d_var = vec![0.0; dims.len()];
        let model = self.model;
        let (scratch, active, feat) = (&mut self.scratch, &mut self.active, &mut self.feat);
        let (x, neg) = gp::minimize(
            |x, g| {
                for (k, &j) in dims.iter().enumerate() {
                    point[j] = x[k];
                }
                model.coder.features(&point, active, feat);
                let (mean, var) =
                    model
                        .post
                        .predict_with_grad(feat, &dims, scratch, &mut d_mean, &mut d_var);
                let sd = var.sqrt();
                let (v, dm, ds) = gp::log_ei(mean, sd, model.best);
                for k in 0..dims.len() {
                    g[k] = -(dm * d_mean[k] + ds * d_var[k] / (2.0 * sd));
                }
                -v
            },
            &x0,
            &gp::Bounds {
                lower: &lower,
                upper: &upper,
            },
            &gp::Options {
                max_iters: 40,
                memory: 6,
                grad_tol: 1e-6,
            },
        );
        let mut out = z.to_vec();
        for (k, &j) in dims.iter().enumerate() {
            out[j] = x[k];
        }
        (out, -neg)
    }

    /// Every single-parameter move (exhaustive for small domains), then the best
    /// moves combined in pairs and the top three at once, so parameters that only pay
    /// off together (kernel size with both filter counts) can move in one step.
    fn discrete_step(&mut self, z: &[f64], value: f64) -> (Vec<f64>, f64) {
        let coder = self.model.coder;
        coder.activity(z, &mut self.active);
        let active = self.active.clone();
        // Best move per parameter: (value, parameter, new coordinate).
        let mut best_moves: Vec<(f64, usize, f64)> = Vec::new();
        let mut best = (value, z.to_vec());
        let mut trial = z.to_vec();
        for j in 0..coder.len() {
            if !active[j] || !coder.params[j].coding.is_discrete() {
                continue;
            }
            let mut neighbours = std::mem::take(&mut self.neighbours);
            coder.neighbours(j, z[j], EXHAUSTIVE_LIMIT, &mut neighbours);
            let mut best_here: Option<(f64, f64)> = None;
            for &u in &neighbours {
                trial[j] = u;
                let v = self.value(&trial);
                if best_here.is_none_or(|(bv, _)| v > bv) {
                    best_here = Some((v, u));
                }
            }
            trial[j] = z[j];
            self.neighbours = neighbours;
            if let Some((v, u)) = best_here {
                best_moves.push((v, j, u));
                if v > best.0 {
                    best = (v, trial.clone());
                    best.1[j] = u;
                }
            }
        }
        best_moves.sort_by(|a, b| b.0.total_cmp(&a.0));
        best_moves.truncate(JOINT_MOVES);
        let mut combos: Vec<Vec<usize>> = Vec::new();
        for a in 0..best_moves.len() {
            for b in a + 1..best_moves.len() {
                combos.push(vec![a, b]);
            }
        }
        if best_moves.len() >= 3 {
            combos.push(vec![0, 1, 2]);
        }
        for combo in combos {
            let mut t = z.to_vec();
            for &m in &combo {
                t[best_moves[m].1] = best_moves[m].2;
            }
            let v = self.value(&t);
            if v > best.0 {
                best = (v, t);
            }
        }
        (best.1, best.0)
    }
}

/// How much each parameter matters, from a GP fitted to the completed trials: the
/// total-effect Sobol' index of each parameter for the posterior mean over the search
/// space (Jansen's estimator on 256 quasi-random base points), normalized to sum to 1,
/// largest first. Interactions count towards every parameter involved, and a parent
/// gets credit for what switching its children on and off does. `None` with fewer
/// than 5 usable trials or no spread in their values.
pub fn parameter_importance(
    space: &SearchSpace,
    direction: Direction,
    history: &[Observation],
    seed: u64,
) -> Option<Vec<(String, f64)>> {
    let usable = history
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Completed(v) if v.is_finite()))
        .count();
    if space.is_empty() || usable < 5 {
        return None;
    }
    let coder = Coder::new(space);
    let model = Model::build(
        &coder,
        direction,
        history,
        derive_seed(seed, 0x1A9),
        &GpConfig::default(),
        false,
    )?;
    let p = coder.len();
    let base = Sobol::scrambled(2 * p, derive_seed(seed, 0x1AA));
    let mut s = Scratch::default();
    let mut active = Vec::new();
    let mut feat = Vec::new();
    let mut mean_at = |z: &[f64]| {
        coder.features(z, &mut active, &mut feat);
        model.post.mean(&feat, &mut s)
    };
    const N: u64 = 256;
    let mut totals = vec![0.0; p];
    for i in 0..N {
        let point = base.point(i);
        let mut a = point[..p].to_vec();
        let mut b = point[p..].to_vec();
        coder.canonicalize(&mut a);
        coder.canonicalize(&mut b);
        let fa = mean_at(&a);
        for (j, total) in totals.iter_mut().enumerate() {
            let mut ab = a.clone();
            ab[j] = b[j];
            let diff = fa - mean_at(&ab);
            *total += diff * diff;
        }
    }
    let sum: f64 = totals.iter().sum();
    let mut out: Vec<(String, f64)> = coder
        .params
        .iter()
        .zip(&totals)
        .map(|(param, t)| {
            let share = if sum > 0.0 { t / sum } else { 1.0 / p as f64 };
            (param.name.clone(), share)
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;
    use tuner_core::ParamValue;

    #[test]
    fn gp_sampler_passes_conformance() {
        conformance::run_all(&GpSampler::new(GpConfig {
            initial_trials: 5,
            ..GpConfig::default()
        }));
    }

    #[test]
    fn warp_keeps_order_and_standardizes() {
        let g = [-1e6, -3.0, -2.0, -1.0, -0.5, -0.1];
        let t = transform_targets(&g, true);
        for w in t.windows(2) {
            assert!(w[0] < w[1]);
        }
        let mean = t.iter().sum::<f64>() / t.len() as f64;
        assert!(mean.abs() < 1e-9);
    }

    /// `(x - 0.3)^2`, plus 0.5 unless `c` is `b`; `noise` does not matter.
    fn quad(params: &Params) -> f64 {
        let x = params["x"].as_f64().unwrap();
        let c = if params["c"] == ParamValue::Str("b".into()) {
            0.0
        } else {
            0.5
        };
        (x - 0.3).powi(2) + c
    }

    fn quad_history(space: &SearchSpace, n: usize) -> Vec<Observation> {
        let sampler = GpSampler::new(GpConfig {
            initial_trials: 100,
            ..GpConfig::default()
        });
        let mut history = Vec::new();
        for i in 0..n {
            let params = sampler
                .suggest(&SuggestContext {
                    space,
                    direction: Direction::Minimize,
                    seed: 4,
                    trial_number: i as u64,
                    history: &history,
                    seen: None,
                })
                .unwrap();
            let value = quad(&params);
            history.push(Observation {
                params,
                outcome: Outcome::Completed(value),
            });
        }
        history
    }

    const TWO_PARAM: &str = "version: 1\nname: t\nobjective: {metric: m, direction: minimize}\nbudget: {max_trials: 50}\nparameters:\n  x: {type: float, min: 0, max: 1}\n  c: {type: categorical, values: [a, b, c]}\n  noise: {type: float, min: 0, max: 1}\n";

    #[test]
    fn importance_ranks_the_parameters_that_matter() {
        let space = conformance::space(TWO_PARAM);
        let history = quad_history(&space, 16);
        let imp = parameter_importance(&space, Direction::Minimize, &history, 1).unwrap();
        let sum: f64 = imp.iter().map(|(_, v)| v).sum();
        assert!((sum - 1.0).abs() < 1e-9);
        assert_eq!(imp.last().unwrap().0, "noise", "{imp:?}");
        assert!(parameter_importance(&space, Direction::Minimize, &history[..3], 1).is_none());
    }

    #[test]
    fn model_suggestions_improve_on_the_initial_design() {
        let space = conformance::space(TWO_PARAM);
        let mut history = quad_history(&space, 8);
        let sampler = GpSampler::new(GpConfig {
            initial_trials: 8,
            ..GpConfig::default()
        });
        for i in 8..16 {
            let params = sampler
                .suggest(&SuggestContext {
                    space: &space,
                    direction: Direction::Minimize,
                    seed: 4,
                    trial_number: i,
                    history: &history,
                    seen: None,
                })
                .unwrap();
            let value = quad(&params);
            history.push(Observation {
                params,
                outcome: Outcome::Completed(value),
            });
        }
        let best = |h: &[Observation]| {
            h.iter()
                .filter_map(|o| match o.outcome {
                    Outcome::Completed(v) => Some(v),
                    _ => None,
                })
                .fold(f64::INFINITY, f64::min)
        };
        assert!(best(&history) < 1e-3, "best {}", best(&history));
        assert!(best(&history) < best(&history[..8]));
    }
}
