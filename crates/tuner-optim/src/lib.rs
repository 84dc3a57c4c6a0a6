//! tuner-optim: samplers that propose the next configuration of a study.
//!
//! Owns the [`Sampler`] trait, [`RandomSampler`], [`GpSampler`] (Gaussian-process
//! Bayesian optimization, with [`parameter_importance`]); with the `bench` feature,
//! the `conformance` suite every sampler must pass and the standard test `problems`.
//! A sampler is stateless: it is rebuilt from the study's trials on every request
//! (completed, pruned, failed and in-flight), so it never sees the store, the HTTP
//! layer, or a clock.
//!
//! Must not depend on other tuner crates than `tuner-core`, nor on async or I/O.

mod coder;
#[cfg(feature = "bench")]
pub mod conformance;
mod gp;
mod gp_sampler;
#[cfg(feature = "bench")]
pub mod problems;
mod random;
mod sobol;

pub use gp_sampler::{CostAware, GpConfig, GpSampler, PendingStrategy, parameter_importance};
pub use random::RandomSampler;

use std::{borrow::Cow, collections::HashSet};

use tuner_core::{Direction, Params, SearchSpace, config_key};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OptimError {
    /// Every distinct configuration of a finite space has been handed out.
    #[error("search space exhausted: all {distinct} distinct configurations have been tried")]
    Exhausted { distinct: u64 },
    #[error("no unseen configuration found after {attempts} attempts")]
    NoFreshConfig { attempts: u32 },
}

/// What a trial has become, as far as a sampler cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Finished with this objective value.
    Completed(f64),
    /// Stopped early; the last intermediate value, if any. Not a final value.
    Pruned(Option<f64>),
    /// Failed (crash, NaN, bad config): never a value, but not to be proposed again.
    Failed,
    /// Handed out or queued, not finished yet.
    Pending,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub params: Params,
    pub outcome: Outcome,
    /// What one unit of the trial's work took, in seconds (for built-in trials: wall
    /// seconds per epoch it ran), where known: completed and pruned trials with stored
    /// timings. A cost-aware sampler models it; others ignore it.
    pub cost: Option<f64>,
    /// For a pruned trial: the final value its pruner predicted from its learning
    /// curve, a better stand-in for the value it never reached than none.
    pub predicted: Option<f64>,
}

impl Observation {
    /// An observation without cost or prediction.
    pub fn new(params: Params, outcome: Outcome) -> Self {
        Self {
            params,
            outcome,
            cost: None,
            predicted: None,
        }
    }
}

/// Everything a sampler may look at to propose trial number `trial_number`.
#[derive(Debug, Clone, Copy)]
pub struct SuggestContext<'a> {
    pub space: &'a SearchSpace,
    pub direction: Direction,
    /// The study's seed: the same seed and history give the same suggestion.
    pub seed: u64,
    /// The dense per-study number the new trial will get.
    pub trial_number: u64,
    pub history: &'a [Observation],
    /// Trials handed out after `history` and not in it yet (the earlier asks of the
    /// same batch), all pending, in number order. Kept apart so that a server answering
    /// a batch of asks does not copy the whole history for each one.
    pub batch: &'a [Observation],
    /// `config_key` of every configuration in `history`, if the caller keeps them
    /// (the server does, so a suggestion does not rebuild them all every time).
    pub seen: Option<&'a HashSet<String>>,
}

impl<'a> SuggestContext<'a> {
    /// How many trials there are, the batch's included.
    pub fn trials(&self) -> usize {
        self.history.len() + self.batch.len()
    }

    /// Every trial, the batch's included, in number order (a copy only when there is a
    /// batch).
    pub fn observations(&self) -> Cow<'a, [Observation]> {
        if self.batch.is_empty() {
            Cow::Borrowed(self.history)
        } else {
            Cow::Owned([self.history, self.batch].concat())
        }
    }

    /// Keys of every configuration already handed out, whatever became of it.
    pub fn seen_keys(&self) -> SeenKeys<'a> {
        let keys = |list: &[Observation]| list.iter().map(|o| config_key(&o.params)).collect();
        SeenKeys {
            history: match self.seen {
                Some(seen) => Cow::Borrowed(seen),
                None => Cow::Owned(keys(self.history)),
            },
            batch: keys(self.batch),
        }
    }
}

/// The configurations already handed out: the history's keys and the batch's.
pub struct SeenKeys<'a> {
    history: Cow<'a, HashSet<String>>,
    batch: HashSet<String>,
}

impl SeenKeys<'_> {
    pub fn contains(&self, key: &str) -> bool {
        self.history.contains(key) || self.batch.contains(key)
    }
}

/// Proposes configurations. Implementations must return params that pass
/// `space.check_params`, never repeat a configuration in the history, and answer
/// [`OptimError::Exhausted`] once a finite space has no unseen configuration left.
pub trait Sampler: Send + Sync {
    fn name(&self) -> &'static str;
    fn suggest(&self, ctx: &SuggestContext<'_>) -> Result<Params, OptimError>;
}

/// Mixes a seed and a trial number into one well-spread 64-bit seed (SplitMix64), so
/// that trial `n`'s randomness does not depend on how many draws earlier trials made.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
