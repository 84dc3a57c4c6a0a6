//! [`GpSampler`]: Bayesian optimization with a Gaussian process, and
//! [`parameter_importance`] from the same model.
//!
//! Owns the search-space side of the GP: which trials become training data (completed
//! ones; pruned ones imputed; failed ones never), target orientation / warping /
//! standardization, pending trials, the mixed-space acquisition search and
//! de-duplication. The GP math lives in the private `gp` module.
//!
//! This module holds the sampler and its search loop; `model` builds the training data
//! and fits the GP, `acquisition` searches the space for the next point, `importance`
//! computes parameter importance from a fitted model.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tuner_core::{Params, config_key};

use crate::{
    OptimError, RandomSampler, Sampler, SeenKeys, SuggestContext, coder::Coder, derive_seed, gp,
    sobol::Sobol,
};

mod acquisition;
mod cost;
mod importance;
mod model;

use acquisition::Acquisition;
pub use cost::CostAware;
pub use importance::parameter_importance;
use model::Model;

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
    /// Weigh EI against predicted trial cost (see `cost`); `None`: plain EI.
    pub cost_aware: Option<CostAware>,
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
            cost_aware: None,
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
        let use_model = ctx.trials() >= self.config.initial_trials as usize;
        if use_model {
            let seed = derive_seed(ctx.seed, ctx.trial_number);
            let history = ctx.observations();
            let model = Model::build(&coder, ctx.direction, &history, seed, &self.config, true);
            let cost = model
                .as_ref()
                .and(self.config.cost_aware.as_ref())
                .and_then(|c| cost::CostModel::build(&coder, &history, c, &self.config, seed));
            if let Some(params) =
                model.and_then(|m| self.search(&m, cost.as_ref(), ctx, seed, &seen))
            {
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
        seen: &SeenKeys<'_>,
    ) -> Result<Params, OptimError> {
        let sobol = Sobol::scrambled(coder.len(), derive_seed(ctx.seed, SOBOL_DESIGN_STREAM));
        let start = ctx.trials() as u64;
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
        cost: Option<&cost::CostModel>,
        ctx: &SuggestContext<'_>,
        seed: u64,
        seen: &SeenKeys<'_>,
    ) -> Option<Params> {
        let coder = model.coder;
        let p = coder.len();
        let n = model.n_train;
        let mut acq = Acquisition::new(model, cost);

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

#[cfg(test)]
mod tests {
    use super::model::transform_targets;
    use super::*;
    use crate::{Observation, Outcome, conformance};
    use tuner_core::{Direction, ParamValue, SearchSpace};

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
                    batch: &[],
                    seen: None,
                })
                .unwrap();
            let value = quad(&params);
            history.push(Observation::new(params, Outcome::Completed(value)));
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
                    batch: &[],
                    seen: None,
                })
                .unwrap();
            let value = quad(&params);
            history.push(Observation::new(params, Outcome::Completed(value)));
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
