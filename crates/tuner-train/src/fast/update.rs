//! The optimizer update in place on the parameters' own storage (SGD with momentum,
//! Adam, RMSprop), chunks in parallel.

use candle_core::{Result, Tensor, bail};

use super::Grads;
use super::cpu::{PAR_MIN, View, mutate};
use crate::optim::Rule;

/// An optimizer over [`parameters`], updating them in place.
pub(crate) struct FastOptimizer {
    rule: Rule,
    /// Per parameter: the rule's two state slots.
    slots: Vec<(Vec<f32>, Vec<f32>)>,
    steps: u64,
}

impl FastOptimizer {
    pub fn new(rule: Rule, params: &[Tensor]) -> FastOptimizer {
        let (one, two) = rule.slots();
        let slots = params
            .iter()
            .map(|p| {
                let n = p.elem_count();
                (
                    if one { vec![0.0; n] } else { Vec::new() },
                    if two { vec![0.0; n] } else { Vec::new() },
                )
            })
            .collect();
        FastOptimizer {
            rule,
            slots,
            steps: 0,
        }
    }

    pub fn step(&mut self, params: &[Tensor], grads: &Grads) -> Result<()> {
        if params.len() != grads.len() || params.len() != self.slots.len() {
            bail!("fast path: parameters and gradients differ in number");
        }
        self.steps += 1;
        for ((param, grad), (s1, s2)) in params.iter().zip(grads).zip(&mut self.slots) {
            let grad = View::new(grad)?;
            let grad = grad.get()?;
            if grad.len() != param.elem_count() {
                bail!(
                    "fast path: gradient of {} for {}",
                    grad.len(),
                    param.elem_count()
                );
            }
            let (rule, t) = (self.rule, self.steps);
            mutate(param, |w| update_par(rule, t, w, grad, s1, s2))?;
        }
        Ok(())
    }
}

/// [`Rule::update`] on halves of the parameter in parallel (each element's update is
/// independent of the others).
pub(super) fn update_par(
    rule: Rule,
    t: u64,
    w: &mut [f32],
    g: &[f32],
    s1: &mut [f32],
    s2: &mut [f32],
) {
    if w.len() < 2 * PAR_MIN {
        rule.update(t, w, g, s1, s2);
        return;
    }
    fn split(s: &mut [f32], mid: usize) -> (&mut [f32], &mut [f32]) {
        // Unused slots are empty.
        if s.is_empty() {
            (&mut [], &mut [])
        } else {
            s.split_at_mut(mid)
        }
    }
    let mid = w.len() / 2;
    let (w1, w2) = w.split_at_mut(mid);
    let (g1, g2) = g.split_at(mid);
    let (s1a, s1b) = split(s1, mid);
    let (s2a, s2b) = split(s2, mid);
    rayon::join(
        || update_par(rule, t, w1, g1, s1a, s2a),
        || update_par(rule, t, w2, g2, s1b, s2b),
    );
}
