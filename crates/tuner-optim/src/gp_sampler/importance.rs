//! Parameter importance from the same model: total-effect Sobol' indices of the
//! posterior mean.

use tuner_core::{Direction, SearchSpace};

use super::GpConfig;
use super::model::Model;
use crate::{Observation, Outcome, coder::Coder, derive_seed, gp::Scratch, sobol::Sobol};

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
