use rand::{Rng, SeedableRng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;
use tuner_core::{Params, config_key};

use crate::{OptimError, Sampler, SuggestContext, derive_seed};

/// Independent uniform draws in the unit cube (log scales in log space), decoded
/// through the search space, re-drawn on collision with any earlier trial.
#[derive(Debug, Default, Clone)]
pub struct RandomSampler;

/// Draws before falling back to enumerating a finite space.
const DRAWS: u32 = 64;
/// Spaces with at most this many grid points are enumerated when draws keep colliding.
const ENUMERATE_LIMIT: u128 = 2_000_000;
/// Draws allowed for spaces too large to enumerate.
const MAX_DRAWS: u32 = 100_000;

impl Sampler for RandomSampler {
    fn name(&self) -> &'static str {
        "random"
    }

    fn suggest(&self, ctx: &SuggestContext<'_>) -> Result<Params, OptimError> {
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(ctx.seed, ctx.trial_number));
        let seen = ctx.seen_keys();
        let fresh = |p: &Params| !seen.contains(&config_key(p));
        for _ in 0..DRAWS {
            let params = ctx.space.decode_with(|_| rng.random::<f64>());
            if fresh(&params) {
                return Ok(params);
            }
        }
        // Draws keep colliding: the space is small or nearly used up.
        if let Some(all) = ctx.space.enumerate(ENUMERATE_LIMIT) {
            let unseen: Vec<&Params> = all.iter().filter(|p| fresh(p)).collect();
            return match unseen.choose(&mut rng) {
                Some(p) => Ok((*p).clone()),
                None => Err(OptimError::Exhausted {
                    distinct: all.len() as u64,
                }),
            };
        }
        for _ in DRAWS..MAX_DRAWS {
            let params = ctx.space.decode_with(|_| rng.random::<f64>());
            if fresh(&params) {
                return Ok(params);
            }
        }
        Err(OptimError::NoFreshConfig {
            attempts: MAX_DRAWS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_sampler_passes_conformance() {
        crate::conformance::run_all(&RandomSampler);
    }

    /// A batch's trials count as handed out: with the history and the batch covering
    /// all but one configuration of a finite space, that one is the only answer.
    #[test]
    fn trials_of_the_batch_are_never_proposed_again() {
        use crate::{Observation, Outcome};
        use tuner_core::Direction;
        let space = crate::conformance::space(
            "version: 1\nname: t\nobjective: {metric: m, direction: maximize}\nbudget: {max_trials: 4}\nparameters:\n  k: {type: categorical, values: [a, b, c, d]}\n",
        );
        let all = space.enumerate(10).unwrap();
        let pending = |p: &Params| Observation::new(p.clone(), Outcome::Pending);
        let history: Vec<Observation> = all[..1].iter().map(pending).collect();
        let batch: Vec<Observation> = all[1..3].iter().map(pending).collect();
        let seen: std::collections::HashSet<String> =
            history.iter().map(|o| config_key(&o.params)).collect();
        let ctx = SuggestContext {
            space: &space,
            direction: Direction::Maximize,
            seed: 1,
            trial_number: 3,
            history: &history,
            batch: &batch,
            seen: Some(&seen),
        };
        assert_eq!(ctx.trials(), 3);
        assert_eq!(ctx.observations().len(), 3);
        for seed in 0..20 {
            let params = RandomSampler
                .suggest(&SuggestContext { seed, ..ctx })
                .unwrap();
            assert_eq!(params, all[3]);
        }
    }
}
