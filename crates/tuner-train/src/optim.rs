//! Optimizers with Keras 3's update rules and defaults.
//!
//! Written here rather than taken from candle-nn because candle-nn has no RMSprop and its
//! `AdamW` applies weight decay 0.01 by default and adds epsilon after the bias
//! correction; Keras' Adam has no decay and adds epsilon to `sqrt(v)` before it.
//! The updates run on plain `f32` slices (one pass per parameter, no temporaries), which
//! keeps them exact, deterministic and easy to check by hand.

use candle_core::{Result, Tensor, Var, backprop::GradStore};
use tuner_core::cnn::{CnnConfig, CnnOptimizer};

/// Keras' epsilon for Adam and RMSprop.
pub const EPSILON: f64 = 1e-7;
pub const ADAM_BETA_1: f64 = 0.9;
pub const ADAM_BETA_2: f64 = 0.999;
pub const RMSPROP_RHO: f64 = 0.9;

/// An update rule and its hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// `m = momentum * m - lr * g; w += m` (plain `w -= lr * g` when momentum is 0).
    Sgd { lr: f64, momentum: f64 },
    /// Keras Adam: `m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
    /// w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`.
    Adam {
        lr: f64,
        beta_1: f64,
        beta_2: f64,
        epsilon: f64,
    },
    /// Keras 3 RMSprop (not centered, no momentum): `v = rho v + (1 - rho) g^2;
    /// w -= lr * g / sqrt(v + eps)`.
    Rmsprop { lr: f64, rho: f64, epsilon: f64 },
}

impl Rule {
    /// The rule a config asks for, with Keras defaults for what it leaves out.
    pub fn from_config(cfg: &CnnConfig) -> Rule {
        let lr = cfg.effective_learning_rate();
        match cfg.optimizer {
            CnnOptimizer::Sgd => Rule::Sgd {
                lr,
                momentum: cfg.momentum,
            },
            CnnOptimizer::Adam => Rule::Adam {
                lr,
                beta_1: ADAM_BETA_1,
                beta_2: ADAM_BETA_2,
                epsilon: EPSILON,
            },
            CnnOptimizer::Rmsprop => Rule::Rmsprop {
                lr,
                rho: RMSPROP_RHO,
                epsilon: EPSILON,
            },
        }
    }

    /// Applies step `t` (1-based) to one parameter. `slot_1` / `slot_2` are the rule's
    /// state (momentum / first moment, second moment), zero at the start.
    pub fn update(
        &self,
        t: u64,
        weights: &mut [f32],
        grads: &[f32],
        slot_1: &mut [f32],
        slot_2: &mut [f32],
    ) {
        match *self {
            Rule::Sgd { lr, momentum } => {
                let lr = lr as f32;
                if momentum == 0.0 {
                    for (w, g) in weights.iter_mut().zip(grads) {
                        *w -= lr * g;
                    }
                } else {
                    let momentum = momentum as f32;
                    for ((w, g), m) in weights.iter_mut().zip(grads).zip(slot_1.iter_mut()) {
                        *m = momentum * *m - lr * g;
                        *w += *m;
                    }
                }
            }
            Rule::Adam {
                lr,
                beta_1,
                beta_2,
                epsilon,
            } => {
                let alpha = (lr * (1.0 - beta_2.powf(t as f64)).sqrt()
                    / (1.0 - beta_1.powf(t as f64))) as f32;
                let (one_b1, one_b2, eps) =
                    ((1.0 - beta_1) as f32, (1.0 - beta_2) as f32, epsilon as f32);
                for (((w, g), m), v) in weights
                    .iter_mut()
                    .zip(grads)
                    .zip(slot_1.iter_mut())
                    .zip(slot_2.iter_mut())
                {
                    *m += (g - *m) * one_b1;
                    *v += (g * g - *v) * one_b2;
                    *w -= alpha * *m / (v.sqrt() + eps);
                }
            }
            Rule::Rmsprop { lr, rho, epsilon } => {
                let (lr, rho, eps) = (lr as f32, rho as f32, epsilon as f32);
                for ((w, g), v) in weights.iter_mut().zip(grads).zip(slot_1.iter_mut()) {
                    *v = rho * *v + (1.0 - rho) * g * g;
                    *w -= lr * g / (*v + eps).sqrt();
                }
            }
        }
    }

    pub(crate) fn slots(&self) -> (bool, bool) {
        match self {
            Rule::Sgd { momentum, .. } => (*momentum != 0.0, false),
            Rule::Adam { .. } => (true, true),
            Rule::Rmsprop { .. } => (true, false),
        }
    }
}

struct Slot {
    var: Var,
    weights: Vec<f32>,
    slot_1: Vec<f32>,
    slot_2: Vec<f32>,
}

/// A rule applied to a set of variables.
pub struct Optimizer {
    rule: Rule,
    slots: Vec<Slot>,
    steps: u64,
}

impl Optimizer {
    /// `vars` in a fixed order (the order only matters for reproducibility of nothing:
    /// each variable's update is independent).
    pub fn new(rule: Rule, vars: Vec<Var>) -> Result<Optimizer> {
        let (one, two) = rule.slots();
        let slots = vars
            .into_iter()
            .map(|var| {
                let weights: Vec<f32> = var.as_tensor().flatten_all()?.to_vec1()?;
                let n = weights.len();
                Ok(Slot {
                    var,
                    weights,
                    slot_1: if one { vec![0.0; n] } else { Vec::new() },
                    slot_2: if two { vec![0.0; n] } else { Vec::new() },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Optimizer {
            rule,
            slots,
            steps: 0,
        })
    }

    pub fn rule(&self) -> Rule {
        self.rule
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One update of every variable that has a gradient in `grads`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.steps += 1;
        for slot in &mut self.slots {
            let Some(grad) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let grad: Vec<f32> = grad.flatten_all()?.to_vec1()?;
            self.rule.update(
                self.steps,
                &mut slot.weights,
                &grad,
                &mut slot.slot_1,
                &mut slot.slot_2,
            );
            let tensor = Tensor::from_slice(&slot.weights, slot.var.shape(), slot.var.device())?;
            slot.var.set(&tensor)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn run(rule: Rule, grads: &[[f32; 2]]) -> Vec<f32> {
        let mut w = vec![1.0f32, -2.0];
        let (mut s1, mut s2) = (vec![0.0; 2], vec![0.0; 2]);
        for (t, g) in grads.iter().enumerate() {
            rule.update(t as u64 + 1, &mut w, g, &mut s1, &mut s2);
        }
        w
    }

    fn close(a: &[f32], b: &[f64]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((*x as f64 - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn sgd_steps_by_hand() {
        let w = run(
            Rule::Sgd {
                lr: 0.1,
                momentum: 0.0,
            },
            &[[0.5, -1.0]],
        );
        close(&w, &[1.0 - 0.05, -2.0 + 0.1]);
        // Momentum 0.9: m1 = -0.1 g1; m2 = 0.9 m1 - 0.1 g2.
        let w = run(
            Rule::Sgd {
                lr: 0.1,
                momentum: 0.9,
            },
            &[[0.5, -1.0], [1.0, 2.0]],
        );
        let m1 = [-0.05, 0.1];
        let m2 = [0.9 * m1[0] - 0.1, 0.9 * m1[1] - 0.2];
        close(&w, &[1.0 + m1[0] + m2[0], -2.0 + m1[1] + m2[1]]);
    }

    #[test]
    fn adam_steps_by_hand() {
        let rule = Rule::Adam {
            lr: 1e-3,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        };
        // Step 1: m = 0.1 g, v = 0.001 g^2, alpha = lr * sqrt(0.001) / 0.1,
        // update = alpha * m / (sqrt(v) + eps) = lr * g/|g| (up to eps).
        let g = 0.5f64;
        let (m, v) = (0.1 * g, 0.001 * g * g);
        let alpha = 1e-3 * 0.001f64.sqrt() / 0.1;
        let w1 = 1.0 - alpha * m / (v.sqrt() + 1e-7);
        // Step 2 with g = 1.0 on the same weight.
        let g2 = 1.0f64;
        let (m2, v2) = (m + (g2 - m) * 0.1, v + (g2 * g2 - v) * 0.001);
        let alpha2 = 1e-3 * (1.0 - 0.999f64.powi(2)).sqrt() / (1.0 - 0.9f64.powi(2));
        let w2 = w1 - alpha2 * m2 / (v2.sqrt() + 1e-7);
        let w = run(rule, &[[0.5, 0.0], [1.0, 0.0]]);
        close(&w, &[w2, -2.0]);
        assert!((w1 - (1.0 - 1e-3)).abs() < 1e-7);
    }

    #[test]
    fn rmsprop_steps_by_hand() {
        let rule = Rule::Rmsprop {
            lr: 1e-3,
            rho: 0.9,
            epsilon: 1e-7,
        };
        let v1 = 0.1 * 0.25f64;
        let w1 = 1.0 - 1e-3 * 0.5 / (v1 + 1e-7).sqrt();
        let v2 = 0.9 * v1 + 0.1 * 4.0;
        let w2 = w1 - 1e-3 * -2.0 / (v2 + 1e-7).sqrt();
        let w = run(rule, &[[0.5, 0.0], [-2.0, 0.0]]);
        close(&w, &[w2, -2.0]);
    }

    #[test]
    fn keras_defaults_from_config() {
        let cfg = CnnConfig::default();
        assert_eq!(
            Rule::from_config(&cfg),
            Rule::Adam {
                lr: 1e-3,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-7
            }
        );
        let cfg = CnnConfig {
            optimizer: CnnOptimizer::Sgd,
            ..CnnConfig::default()
        };
        assert_eq!(
            Rule::from_config(&cfg),
            Rule::Sgd {
                lr: 1e-2,
                momentum: 0.0
            }
        );
    }

    #[test]
    fn optimizer_updates_vars_from_gradients() -> Result<()> {
        let var = Var::new(&[1.0f32, -2.0], &Device::Cpu)?;
        let mut opt = Optimizer::new(
            Rule::Sgd {
                lr: 0.5,
                momentum: 0.0,
            },
            vec![var.clone()],
        )?;
        // loss = sum(w^2) -> grad 2w -> w - 0.5 * 2w = 0.
        let grads = var.as_tensor().sqr()?.sum_all()?.backward()?;
        opt.step(&grads)?;
        assert_eq!(var.as_tensor().to_vec1::<f32>()?, vec![0.0, 0.0]);
        assert_eq!(opt.steps(), 1);
        Ok(())
    }
}
