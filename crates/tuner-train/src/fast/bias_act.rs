//! Bias + activation applied in place on a layer's product, and its backward pass
//! fused with the bias gradient (one pass over the rows).

use candle_core::{Result, Tensor, bail, cpu::erf::erf_f32};
use tuner_core::cnn::Activation;

use super::cpu::{View, mutate, par_rows, par_rows_sum, to_vec};
use crate::{model::point_act, ops::PointAct};

/// An activation of the fast path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Act {
    Point(PointAct),
    /// Exact (erf) gelu, as Candle's `gelu_erf`.
    Gelu,
}

impl Act {
    pub(super) fn of(activation: Option<Activation>) -> Act {
        point_act(activation).map_or(Act::Gelu, Act::Point)
    }
}

fn gelu(u: f32) -> f32 {
    (erf_f32(u * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * u
}

/// `d gelu / d u`, the formula of Candle's backprop.
fn gelu_grad(u: f32) -> f32 {
    0.5 + 0.398942 * (-0.5 * u * u).exp() * u + 0.5 * erf_f32(u * std::f32::consts::FRAC_1_SQRT_2)
}

/// An activated layer output, and what its gradient needs.
pub(super) struct Activated {
    /// `[rows, channels]`, `act(z + bias)`.
    pub(super) y: Tensor,
    /// `z + bias`, kept for gelu only (the other derivatives follow from `y`).
    pub(super) pre: Option<Tensor>,
}

/// `act(z + bias)` for `z: [rows, c]`, in place on `z` (gelu: into a new tensor).
pub(super) fn bias_act(z: Tensor, bias: &Tensor, act: Act) -> Result<Activated> {
    let bias = to_vec(bias)?;
    let c = bias.len();
    match act {
        Act::Point(p) => {
            // One monomorphic loop per activation, so that each one vectorizes.
            fn rows(z: &mut [f32], bias: &[f32], f: impl Fn(f32) -> f32) {
                for row in z.chunks_exact_mut(bias.len()) {
                    for (v, b) in row.iter_mut().zip(bias) {
                        *v = f(*v + b);
                    }
                }
            }
            mutate(&z, |z| {
                // One arm per activation with the variant spelled out, so each loop is
                // monomorphic and vectorizes; the formulas live in `PointAct`.
                par_rows(z, c, |z| match p {
                    PointAct::Identity => rows(z, &bias, |v| PointAct::Identity.apply(v)),
                    PointAct::Relu => rows(z, &bias, |v| PointAct::Relu.apply(v)),
                    PointAct::Tanh => rows(z, &bias, |v| PointAct::Tanh.apply(v)),
                    PointAct::Elu => rows(z, &bias, |v| PointAct::Elu.apply(v)),
                    PointAct::LeakyRelu(slope) => {
                        rows(z, &bias, |v| PointAct::LeakyRelu(slope).apply(v))
                    }
                })
            })?;
            Ok(Activated { y: z, pre: None })
        }
        Act::Gelu => {
            mutate(&z, |z| {
                for row in z.chunks_exact_mut(c) {
                    for (v, b) in row.iter_mut().zip(&bias) {
                        *v += b;
                    }
                }
            })?;
            let y: Vec<f32> = View::new(&z)?.get()?.iter().map(|&u| gelu(u)).collect();
            let y = Tensor::from_vec(y, z.shape(), z.device())?;
            Ok(Activated { y, pre: Some(z) })
        }
    }
}

/// In place on `grad` (`[rows, c]`, the gradient of `y`): the gradient of `z + bias`.
/// Returns the bias gradient (the column sums), computed in the same pass.
pub(super) fn bias_act_backward(
    grad: &Tensor,
    out: &Activated,
    act: Act,
    c: usize,
) -> Result<Vec<f32>> {
    pub(super) fn rows(g: &mut [f32], y: &[f32], db: &mut [f32], f: impl Fn(f32) -> f32) {
        let c = db.len();
        for (grow, yrow) in g.chunks_exact_mut(c).zip(y.chunks_exact(c)) {
            for ((g, y), d) in grow.iter_mut().zip(yrow).zip(db.iter_mut()) {
                *g *= f(*y);
                *d += *g;
            }
        }
    }
    let mut db = Vec::new();
    match (act, &out.pre) {
        (Act::Point(PointAct::Identity), _) => {
            db = vec![0f32; c];
            for row in View::new(grad)?.get()?.chunks_exact(c) {
                for (d, g) in db.iter_mut().zip(row) {
                    *d += g;
                }
            }
        }
        (Act::Point(p), _) => {
            let y = View::new(&out.y)?;
            let y = y.get()?;
            mutate(grad, |g| {
                db = par_rows_sum(g, y, c, |g, y, db| match p {
                    PointAct::Identity => {
                        rows(g, y, db, |y| PointAct::Identity.derivative_from_output(y))
                    }
                    PointAct::Relu => rows(g, y, db, |y| PointAct::Relu.derivative_from_output(y)),
                    PointAct::Tanh => rows(g, y, db, |y| PointAct::Tanh.derivative_from_output(y)),
                    PointAct::Elu => rows(g, y, db, |y| PointAct::Elu.derivative_from_output(y)),
                    PointAct::LeakyRelu(slope) => rows(g, y, db, |y| {
                        PointAct::LeakyRelu(slope).derivative_from_output(y)
                    }),
                });
            })?;
        }
        (Act::Gelu, Some(pre)) => {
            let u = View::new(pre)?;
            let u = u.get()?;
            mutate(grad, |g| {
                db = par_rows_sum(g, u, c, |g, u, db| rows(g, u, db, gelu_grad));
            })?;
        }
        (Act::Gelu, None) => bail!("fast path: gelu output without its input"),
    }
    Ok(db)
}
