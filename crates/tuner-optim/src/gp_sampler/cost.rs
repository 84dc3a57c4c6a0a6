//! Cost-aware acquisition: a second GP on the log of each timed trial's cost (seconds
//! per epoch), and the penalty that turns log EI into log "EI per cost^α".
//!
//! The rule is EI-cool from Lee, Perrone, Archambeau & Seeger, "Cost-aware Bayesian
//! optimization" (CArBO, 2020), also BoTorch's cost-aware tutorial: maximize
//! `EI(x) / c(x)^α` with `c` the cost GP's mean on the log scale (a log-normal median:
//! cheap to evaluate and, per Guinet et al. 2020, as good a cost predictor as richer
//! models), and `α` cooling from 1 to 0 as the trial budget is spent, so the search
//! starts cheap and ends on plain EI. Two guards: no weighting until
//! [`MIN_TIMED_TRIALS`] trials have timings (identical to plain EI before), and the
//! predicted cost enters only within a factor [`MAX_COST_RATIO`] of the median trial's
//! cost either way, so a cheap region gains at most that factor (to the power α) over
//! a typical one: it wins only where its EI was already close, never where the model
//! expects nothing.

use tuner_core::stats::median;

use super::GpConfig;
use crate::{
    Observation, Outcome,
    coder::Coder,
    derive_seed,
    gp::{FitProblem, Posterior, Prior, Scratch},
};

/// Timed (completed or pruned) trials needed before costs weigh in.
pub const MIN_TIMED_TRIALS: usize = 5;
/// Most a predicted cost may differ from the median observed one, as a factor.
pub const MAX_COST_RATIO: f64 = 10.0;
/// Below this exponent the weighting is too small to matter: plain EI.
const MIN_ALPHA: f64 = 0.02;
const COST_FIT_STREAM: u64 = 0xC057;
/// Most (recent) timings in the cost model, and in its hyperparameter fit: the cost
/// surface is smooth and only its mean is used, so a small model keeps the extra
/// suggestion latency small.
const MAX_COST_POINTS: usize = 150;
const MAX_COST_FIT_POINTS: usize = 60;

/// Settings of cost-aware acquisition.
#[derive(Debug, Clone, PartialEq)]
pub struct CostAware {
    /// The study's trial budget: the cost exponent α falls linearly from 1 after the
    /// initial design to 0 at this many trials.
    pub budget_trials: u32,
}

/// The fitted cost model and the weight it gets at this point of the study.
pub(super) struct CostModel {
    post: Posterior,
    /// Log costs were standardized: `log c = mean + sd · y`.
    mean: f64,
    sd: f64,
    /// Median observed log cost: the clamp's centre.
    reference: f64,
    pub(super) alpha: f64,
}

/// The cost exponent after `trials` of a budget of `budget` trials, the first
/// `initial` being the initial design: 1 when the model takes over, 0 at the end.
pub fn cooled_alpha(trials: usize, initial: u32, budget: u32) -> f64 {
    let span = f64::from(budget.saturating_sub(initial).max(1));
    let left = f64::from(budget) - trials as f64;
    (left / span).clamp(0.0, 1.0)
}

impl CostModel {
    /// The cost model, or `None` when costs should not weigh in: too few timings, a
    /// spent budget, or costs that do not vary.
    pub(super) fn build(
        coder: &Coder,
        history: &[Observation],
        settings: &CostAware,
        config: &GpConfig,
        seed: u64,
    ) -> Option<Self> {
        let alpha = cooled_alpha(history.len(), config.initial_trials, settings.budget_trials);
        if alpha < MIN_ALPHA {
            return None;
        }
        let timed: Vec<(&Observation, f64)> = history
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Completed(_) | Outcome::Pruned(_)))
            .filter_map(|o| match o.cost {
                Some(c) if c > 0.0 && c.is_finite() => Some((o, c.ln())),
                _ => None,
            })
            .collect();
        if timed.len() < MIN_TIMED_TRIALS {
            return None;
        }
        // The most recent timings: costs drift with the machine's load.
        let timed = &timed[timed
            .len()
            .saturating_sub(MAX_COST_POINTS.min(config.max_points))..];
        let logs: Vec<f64> = timed.iter().map(|(_, l)| *l).collect();
        let n = logs.len() as f64;
        let mean = logs.iter().sum::<f64>() / n;
        let sd = (logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n).sqrt();
        if sd < 1e-6 {
            return None;
        }
        let y: Vec<f64> = logs.iter().map(|l| (l - mean) / sd).collect();
        let d = coder.len();
        let (mut active, mut feat) = (Vec::new(), Vec::new());
        let mut x = Vec::with_capacity(timed.len() * d);
        for (o, _) in timed {
            coder.features(&coder.encode(&o.params), &mut active, &mut feat);
            x.extend_from_slice(&feat);
        }
        let fit_from = y
            .len()
            .saturating_sub(MAX_COST_FIT_POINTS.min(config.max_fit_points));
        let discrete: Vec<bool> = coder
            .params
            .iter()
            .map(|p| p.coding.is_discrete())
            .collect();
        let problem = FitProblem::new(
            &x[fit_from * d..],
            &y[fit_from..],
            &coder.dims,
            Prior::for_space(&discrete),
        );
        // One short refinement: the cost surface is smooth and only its mean is used.
        let hyper = problem.fit(derive_seed(seed, COST_FIT_STREAM), 1, 20);
        let post = Posterior::new(x, &y, &coder.dims, &hyper)?;
        Some(Self {
            post,
            mean,
            sd,
            reference: median(&logs),
            alpha,
        })
    }

    /// Predicted log cost at features `feat`.
    pub(super) fn log_cost(&self, feat: &[f64], scratch: &mut Scratch) -> f64 {
        self.mean + self.sd * self.post.mean(feat, scratch)
    }

    /// What to subtract from log EI: `α · clamp(log c − log c_ref, ±log R)`.
    pub(super) fn penalty(&self, feat: &[f64], scratch: &mut Scratch) -> f64 {
        let bound = MAX_COST_RATIO.ln();
        self.alpha * (self.log_cost(feat, scratch) - self.reference).clamp(-bound, bound)
    }

    /// The penalty and its gradient along `dims` (zero where the clamp holds).
    pub(super) fn penalty_with_grad(
        &self,
        feat: &[f64],
        dims: &[usize],
        scratch: &mut Scratch,
        grad: &mut [f64],
    ) -> f64 {
        let m = self.post.mean_with_grad(feat, dims, scratch, grad);
        let bound = MAX_COST_RATIO.ln();
        let offset = self.mean + self.sd * m - self.reference;
        let scale = if offset.abs() < bound {
            self.alpha * self.sd
        } else {
            0.0
        };
        grad.iter_mut().for_each(|g| *g *= scale);
        self.alpha * offset.clamp(-bound, bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GpSampler, Sampler, SuggestContext, conformance};
    use tuner_core::{Direction, Params, SearchSpace};

    const ONE_D: &str = "version: 1\nname: t\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 30}\nparameters:\n  x: {type: float, min: 0, max: 1}\n  y: {type: float, min: 0, max: 1}\n";

    const BUDGET: u32 = 30;
    const INITIAL: u32 = 8;

    fn x_of(params: &Params) -> f64 {
        params["x"].as_f64().unwrap()
    }

    fn bump(x: f64, at: f64) -> f64 {
        (-((x - at) / 0.12).powi(2)).exp()
    }

    fn sampler(cost_aware: bool) -> GpSampler {
        GpSampler::new(GpConfig {
            initial_trials: INITIAL,
            cost_aware: cost_aware.then_some(CostAware {
                budget_trials: BUDGET,
            }),
            ..GpConfig::default()
        })
    }

    /// Runs a whole study; every trial gets its scripted value and cost.
    fn run(
        space: &SearchSpace,
        sampler: &GpSampler,
        seed: u64,
        value: impl Fn(&Params) -> f64,
        cost: impl Fn(&Params) -> f64,
    ) -> Vec<Observation> {
        let mut history: Vec<Observation> = Vec::new();
        for i in 0..BUDGET {
            let params = sampler
                .suggest(&SuggestContext {
                    space,
                    direction: Direction::Maximize,
                    seed,
                    trial_number: u64::from(i),
                    history: &history,
                    batch: &[],
                    seen: None,
                })
                .unwrap();
            let mut o = Observation::new(params.clone(), Outcome::Completed(value(&params)));
            o.cost = Some(cost(&params));
            history.push(o);
        }
        history
    }

    #[test]
    fn alpha_cools_from_one_to_zero_over_the_budget() {
        assert_eq!(cooled_alpha(10, 10, 30), 1.0);
        assert_eq!(cooled_alpha(20, 10, 30), 0.5);
        assert_eq!(cooled_alpha(30, 10, 30), 0.0);
        assert_eq!(cooled_alpha(40, 10, 30), 0.0);
        assert_eq!(cooled_alpha(3, 10, 10), 1.0, "budget = initial design");
    }

    #[test]
    fn too_few_timings_give_plain_ei() {
        let space = conformance::space(ONE_D);
        let value = |p: &Params| bump(x_of(p), 0.3);
        let mut history = run(&space, &sampler(false), 1, value, |_| 1.0);
        history.truncate(12);
        // Costs that vary wildly, but on only MIN_TIMED_TRIALS - 1 trials.
        for (i, o) in history.iter_mut().enumerate() {
            o.cost = (i < MIN_TIMED_TRIALS - 1).then_some(10f64.powi(i as i32));
        }
        fn ctx<'a>(space: &'a SearchSpace, history: &'a [Observation]) -> SuggestContext<'a> {
            SuggestContext {
                space,
                direction: Direction::Maximize,
                seed: 1,
                trial_number: 12,
                history,
                batch: &[],
                seen: None,
            }
        }
        let plain = sampler(false).suggest(&ctx(&space, &history)).unwrap();
        assert_eq!(
            sampler(true).suggest(&ctx(&space, &history)).unwrap(),
            plain
        );
        // One more timing and the costs weigh in.
        history[MIN_TIMED_TRIALS - 1].cost = Some(1e-3);
        assert_ne!(
            sampler(true).suggest(&ctx(&space, &history)).unwrap(),
            plain
        );
        // Equal costs change nothing either.
        history.iter_mut().for_each(|o| o.cost = Some(2.0));
        assert_eq!(
            sampler(true).suggest(&ctx(&space, &history)).unwrap(),
            plain
        );
    }

    /// Two equally good basins, the right one ten times as expensive: the cost-aware
    /// search puts more of its model-based trials in the cheap one, so a study costs
    /// less (0.85x in total over 6 seeds, more in 1 of them), while finding the same
    /// optimum.
    #[test]
    fn of_two_equal_basins_the_cheap_one_is_searched_more() {
        let space = conformance::space(ONE_D);
        let value = |p: &Params| bump(x_of(p), 0.2).max(bump(x_of(p), 0.8));
        let cost = |p: &Params| if x_of(p) < 0.5 { 1.0 } else { 10.0 };
        let (mut cheap, mut spent, mut cheaper_seeds) = ([0usize; 2], [0.0; 2], 0);
        for seed in 0..6 {
            let mut spent_here = [0.0; 2];
            for (k, aware) in [false, true].into_iter().enumerate() {
                let history = run(&space, &sampler(aware), seed, value, cost);
                let model_phase = &history[INITIAL as usize..];
                cheap[k] += model_phase.iter().filter(|o| x_of(&o.params) < 0.5).count();
                spent_here[k] = history.iter().map(|o| o.cost.unwrap()).sum::<f64>();
                let best = history.iter().map(|o| value(&o.params)).fold(0.0, f64::max);
                assert!(best > 0.99, "seed {seed}, cost-aware {aware}: best {best}");
            }
            cheaper_seeds += usize::from(spent_here[1] <= spent_here[0]);
            spent[0] += spent_here[0];
            spent[1] += spent_here[1];
        }
        assert!(cheap[1] > cheap[0], "cheap-basin trials: {cheap:?}");
        assert!(spent[1] < 0.95 * spent[0], "cost spent: {spent:?}");
        // Per seed the paths differ from the first model-based trial on, so one seed
        // may cost a little more; most must not.
        assert!(
            cheaper_seeds >= 4,
            "seeds where cost-aware spent no more: {cheaper_seeds} of 6"
        );
    }

    /// A cheap region with poor values (half the optimum, 1000x cheaper) must not pull
    /// the search away from the good basin: the bounded cost ratio keeps its pull at
    /// most 10^α, where EI per cost alone would give it 1000^α.
    #[test]
    fn a_cheap_region_of_poor_values_does_not_attract_the_search() {
        let space = conformance::space(ONE_D);
        let value = |p: &Params| 0.5 * bump(x_of(p), 0.15) + bump(x_of(p), 0.75);
        let cost = |p: &Params| if x_of(p) < 0.4 { 0.01 } else { 10.0 };
        for seed in 0..4 {
            let history = run(&space, &sampler(true), seed, value, cost);
            let best = history.iter().map(|o| value(&o.params)).fold(0.0, f64::max);
            assert!(best > 0.97, "seed {seed}: best {best}");
            let model_phase = &history[INITIAL as usize..];
            let cheap = model_phase.iter().filter(|o| x_of(&o.params) < 0.4).count();
            assert!(
                cheap * 3 <= model_phase.len(),
                "seed {seed}: {cheap} of {} model-based trials in the poor cheap region",
                model_phase.len()
            );
        }
    }

    #[test]
    fn the_penalty_gradient_matches_finite_differences() {
        let space = conformance::space(ONE_D);
        let value = |p: &Params| bump(x_of(p), 0.3);
        // Log cost linear in x: well inside the clamp in the middle of the range.
        let cost = |p: &Params| (1.5 * x_of(p) + p["y"].as_f64().unwrap()).exp();
        let history = run(&space, &sampler(false), 3, value, cost);
        let coder = Coder::new(&space);
        let settings = CostAware { budget_trials: 100 };
        let model = CostModel::build(&coder, &history, &settings, sampler(true).config(), 3)
            .expect("enough varied timings");
        let (mut active, mut feat) = (Vec::new(), Vec::new());
        let mut scratch = Scratch::default();
        let dims: Vec<usize> = (0..coder.len()).collect();
        let z = vec![0.45, 0.4];
        coder.features(&z, &mut active, &mut feat);
        let mut grad = vec![0.0; 2];
        let p0 = model.penalty_with_grad(&feat, &dims, &mut scratch, &mut grad);
        assert!((p0 - model.penalty(&feat, &mut scratch)).abs() < 1e-12);
        for j in 0..2 {
            let h = 1e-5;
            let mut zp = z.clone();
            zp[j] += h;
            coder.features(&zp, &mut active, &mut feat);
            let fd = (model.penalty(&feat, &mut scratch) - p0) / h;
            assert!(
                (fd - grad[j]).abs() < 1e-3 * (1.0 + fd.abs()),
                "dimension {j}: analytic {} vs finite difference {fd}",
                grad[j]
            );
        }
        assert!(grad[0] > 0.0, "dearer as x grows: {grad:?}");
    }
}
