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
}
