//! The CPU fast path of a training step: forward pass, backward pass and optimizer
//! update written out by hand, without Candle's autograd.
//!
//! Candle's backprop allocates a zero-filled gradient for every node and adds every
//! contribution into it, computes gradients nobody needs (the first conv's input) and
//! runs each elementwise op as its own pass. Here a step is: per conv layer one im2col
//! and one matrix product forward, bias + activation in place on the product; backward
//! the activation gradient fused with the bias gradient (one pass), one product for the
//! kernel gradient and, except for the first layer, one product plus a col2im for the
//! input gradient; the update in place on the parameters' own storage. The matrix
//! products are Candle's `matmul` (the `gemm` crate), which reads transposed operands
//! through their strides without copying them.
//!
//! It covers the whole model family: pooling that folds into the conv stride
//! (`pool_size` 1, the student's model) and non-overlapping max-pooling after a
//! stride-1 conv. Candle's ops stay the reference (and the path of other devices): the
//! tests (`tests.rs`) check the forward pass and every gradient against Candle's
//! autograd on the same model.
//!
//! This module holds the step itself (forward, backward, what one keeps for the other);
//! its parts: `im2col` (the conv's data movement), `bias_act` (bias + activation and
//! their backward), `pool` (max-pooling), `update` (the optimizer step) and `cpu`
//! (storage access, reused buffers, parallel chunking).

use candle_core::{Result, Tensor, bail};
use tuner_core::cnn::CnnConfig;

use crate::{
    model::{Conv, Model},
    ops::{ConvGeometry, PointAct},
};

mod bias_act;
mod cpu;
mod im2col;
mod pool;
mod update;

use bias_act::{Act, Activated, bias_act, bias_act_backward};
use cpu::{View, mutate};
use im2col::{col2im, im2col};
use pool::{Pooled, max_pool, max_pool_backward};
pub(crate) use update::FastOptimizer;

/// Whether the fast path computes `config`'s model.
pub(crate) fn supports(config: &CnnConfig) -> bool {
    config.pool_size == 1 || config.pool_size == config.pool_stride
}

/// Buffers kept from one step to the next, so that the largest matrices of a step are
/// neither allocated nor page-faulted again each time.
#[derive(Default)]
pub(crate) struct Workspace {
    /// The im2col matrices of the two convs.
    cols: [Option<Tensor>; 2],
    /// The input gradient of the second conv.
    dx: Option<Tensor>,
}

/// What the backward pass needs of one conv layer.
struct ConvTrace {
    geometry: ConvGeometry,
    /// `[rows, k * k * c_in]`.
    cols: Tensor,
    out: Activated,
    /// Max-pooling after the activation, when the pooling does not fold into the stride.
    pool: Option<Pooled>,
}

/// What the backward pass needs of one dense layer.
struct DenseTrace {
    /// `[b, in]`.
    input: Tensor,
    out: Activated,
    /// Inverted-dropout factors applied to `out.y`, when dropout is on.
    mask: Option<Vec<f32>>,
}

/// Everything a training forward pass keeps for its backward pass.
pub(crate) struct Trace {
    conv: [ConvTrace; 2],
    /// Hidden layers, then the output layer.
    dense: Vec<DenseTrace>,
    /// `[b, classes]`.
    pub logits: Tensor,
}

/// Gradients in the order of [`parameters`].
pub(crate) type Grads = Vec<Tensor>;

/// The model's parameter tensors (the storage of its `Var`s, updated in place) in a
/// fixed order: conv1 kernel, bias, conv2 kernel, bias, each hidden layer's kernel and
/// bias, the output layer's kernel and bias.
pub(crate) fn parameters(model: &Model) -> Vec<Tensor> {
    let mut out = vec![
        model.conv1.kernel.clone(),
        model.conv1.bias.clone(),
        model.conv2.kernel.clone(),
        model.conv2.bias.clone(),
    ];
    for d in model.hidden.iter().chain([&model.output]) {
        out.push(d.kernel.clone());
        out.push(d.bias.clone());
    }
    out
}

fn conv_forward(
    model: &Model,
    x: &Tensor,
    conv: &Conv,
    buffer: &mut Option<Tensor>,
) -> Result<ConvTrace> {
    let (b, h, w, c) = x.dims4()?;
    let geometry = ConvGeometry {
        b,
        h,
        w,
        c,
        k: conv.k,
        // Subsampling (pool 1) folds into the stride; max-pooling follows a stride-1 conv.
        stride: if model.config.pool_size == 1 {
            model.config.pool_stride as usize
        } else {
            1
        },
        pad: conv.k / 2,
    };
    let cols = im2col(x, &geometry, buffer)?;
    let kernel = conv.kernel.reshape((geometry.cols(), conv.c_out))?;
    let z = cols.matmul(&kernel)?;
    let out = bias_act(z, &conv.bias, Act::of(Some(model.config.conv_activation)))?;
    let pool = match model.config.pool_size as usize {
        1 => None,
        p => Some(max_pool(
            &out.y
                .reshape((b, geometry.out_h(), geometry.out_w(), conv.c_out))?,
            p,
        )?),
    };
    Ok(ConvTrace {
        geometry,
        cols,
        out,
        pool,
    })
}

impl ConvTrace {
    /// The block's output `[b, h', w', c_out]`.
    fn output(&self, c_out: usize) -> Result<Tensor> {
        match &self.pool {
            Some(p) => Ok(p.y.clone()),
            None => {
                let g = &self.geometry;
                self.out.y.reshape((g.b, g.out_h(), g.out_w(), c_out))
            }
        }
    }
}

/// The forward pass of `model` on `x: [b, 28, 28, 1]`; `train` turns dropout on.
/// Computes what [`Model::forward`] computes, for configs that [`supports`] accepts.
pub(crate) fn forward(
    model: &Model,
    x: &Tensor,
    train: bool,
    workspace: &mut Workspace,
) -> Result<Trace> {
    let [cols1, cols2] = &mut workspace.cols;
    let conv1 = conv_forward(model, &x.contiguous()?, &model.conv1, cols1)?;
    let x2 = conv1.output(model.conv1.c_out)?;
    let conv2 = conv_forward(model, &x2, &model.conv2, cols2)?;
    let mut x = conv2
        .output(model.conv2.c_out)?
        .reshape((conv1.geometry.b, ()))?;
    let mut dense = Vec::with_capacity(model.hidden.len() + 1);
    let dense_act = Act::of(Some(model.config.dense_activation));
    for layer in &model.hidden {
        let out = bias_act(x.matmul(&layer.kernel)?, &layer.bias, dense_act)?;
        let mut mask = None;
        let mut next = out.y.clone();
        if train && model.config.dropout > 0.0 {
            let m = model.dropout_mask(next.elem_count());
            let dropped: Vec<f32> = View::new(&next)?
                .get()?
                .iter()
                .zip(&m)
                .map(|(y, m)| y * m)
                .collect();
            next = Tensor::from_vec(dropped, next.shape(), next.device())?;
            mask = Some(m);
        }
        dense.push(DenseTrace {
            input: x,
            out,
            mask,
        });
        x = next;
    }
    let out = bias_act(
        x.matmul(&model.output.kernel)?,
        &model.output.bias,
        Act::Point(PointAct::Identity),
    )?;
    let logits = out.y.clone();
    dense.push(DenseTrace {
        input: x,
        out,
        mask: None,
    });
    Ok(Trace {
        conv: [conv1, conv2],
        dense,
        logits,
    })
}

/// The gradients of the mean softmax cross-entropy of `trace.logits` against
/// `labels`, in the order of [`parameters`].
pub(crate) fn backward(
    model: &Model,
    trace: &Trace,
    labels: &[u32],
    workspace: &mut Workspace,
) -> Result<Grads> {
    let (b, classes) = trace.logits.dims2()?;
    if labels.len() != b {
        bail!("fast path: {} labels for {b} logits", labels.len());
    }
    // d loss / d logits = (softmax - one_hot) / b.
    let mut dlogits = Vec::with_capacity(b * classes);
    {
        let logits = View::new(&trace.logits)?;
        for (row, &label) in logits.get()?.chunks_exact(classes).zip(labels) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let start = dlogits.len();
            dlogits.extend(row.iter().map(|&v| (v - max).exp()));
            let sum: f32 = dlogits[start..].iter().sum();
            let scale = 1.0 / (sum * b as f32);
            for d in &mut dlogits[start..] {
                *d *= scale;
            }
            dlogits[start + label as usize] -= 1.0 / b as f32;
        }
    }
    let mut grad = Tensor::from_vec(dlogits, (b, classes), trace.logits.device())?;

    let dense_act = Act::of(Some(model.config.dense_activation));
    let layers: Vec<_> = model.hidden.iter().chain([&model.output]).collect();
    let mut dense_grads = Vec::with_capacity(2 * layers.len());
    for (i, (layer, t)) in layers.iter().zip(&trace.dense).enumerate().rev() {
        let is_output = i == layers.len() - 1;
        if let Some(mask) = &t.mask {
            mutate(&grad, |g| {
                for (g, m) in g.iter_mut().zip(mask) {
                    *g *= m;
                }
            })?;
        }
        let act = if is_output {
            Act::Point(PointAct::Identity)
        } else {
            dense_act
        };
        let units = layer.bias.elem_count();
        let db = bias_act_backward(&grad, &t.out, act, units)?;
        let dw = t.input.t()?.matmul(&grad)?;
        let dx = grad.matmul(&layer.kernel.t()?)?;
        dense_grads.push(Tensor::from_vec(db, units, grad.device())?);
        dense_grads.push(dw);
        grad = dx;
    }
    dense_grads.reverse(); // kernel, bias per layer, first layer first

    // conv2: grad is [b, flat] = [rows2, c2] row for row.
    let conv_act = Act::of(Some(model.config.conv_activation));
    let mut conv_grads = Vec::with_capacity(4);
    for (i, (conv, t)) in [&model.conv1, &model.conv2]
        .into_iter()
        .zip(&trace.conv)
        .enumerate()
        .rev()
    {
        if let Some(pooled) = &t.pool {
            grad = max_pool_backward(&grad, pooled, &t.out.y)?;
        }
        let g2d = grad.reshape((t.geometry.rows(), conv.c_out))?;
        let db = bias_act_backward(&g2d, &t.out, conv_act, conv.c_out)?;
        let dw = t.cols.t()?.matmul(&g2d)?;
        conv_grads.push(Tensor::from_vec(db, conv.c_out, g2d.device())?);
        conv_grads.push(dw);
        if i > 0 {
            // The first layer's input is the data: no gradient needed.
            let kernel = conv.kernel.reshape((t.geometry.cols(), conv.c_out))?;
            let dcols = g2d.matmul(&kernel.t()?)?;
            grad = col2im(&dcols, &t.geometry, &mut workspace.dx)?;
        }
    }
    conv_grads.reverse();
    conv_grads.extend(dense_grads);
    Ok(conv_grads)
}

#[cfg(test)]
mod tests;
