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
//! tests below check the forward pass and every gradient against Candle's autograd on
//! the same model.

use std::{cell::RefCell, ops::Range};

use rayon::prelude::*;

use candle_core::{
    CpuStorage, InplaceOp1, Layout, Result, Storage, StorageRef, Tensor, bail, cpu::erf::erf_f32,
};
use tuner_core::cnn::{Activation, CnnConfig};

use crate::{
    model::{Conv, Model, point_act},
    ops::{ConvGeometry, PointAct},
    optim::Rule,
};

/// Whether the fast path computes `config`'s model.
pub(crate) fn supports(config: &CnnConfig) -> bool {
    config.pool_size == 1 || config.pool_size == config.pool_stride
}

/// Read access to the `f32` data of a contiguous CPU tensor.
struct View<'a> {
    guard: StorageRef<'a>,
    range: Range<usize>,
}

impl View<'_> {
    fn new(t: &Tensor) -> Result<View<'_>> {
        let (guard, layout) = t.storage_and_layout();
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("fast path: tensor must be contiguous");
        };
        Ok(View {
            guard,
            range: start..end,
        })
    }

    fn get(&self) -> Result<&[f32]> {
        match &*self.guard {
            Storage::Cpu(CpuStorage::F32(v)) => Ok(&v[self.range.clone()]),
            _ => bail!("fast path: expected an f32 CPU tensor"),
        }
    }
}

/// Runs a closure on the data of a contiguous `f32` CPU tensor, in place.
struct Mutate<F>(RefCell<F>);

impl<F: FnMut(&mut [f32])> InplaceOp1 for Mutate<F> {
    fn name(&self) -> &'static str {
        "fast-path-in-place"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("fast path: tensor must be contiguous");
        };
        match storage {
            CpuStorage::F32(v) => {
                (self.0.borrow_mut())(&mut v[start..end]);
                Ok(())
            }
            _ => bail!("fast path: expected an f32 CPU tensor"),
        }
    }
}

fn mutate(t: &Tensor, f: impl FnMut(&mut [f32])) -> Result<()> {
    t.inplace_op1(&Mutate(RefCell::new(f)))
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(View::new(t)?.get()?.to_vec())
}

/// An activation of the fast path.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    Point(PointAct),
    /// Exact (erf) gelu, as Candle's `gelu_erf`.
    Gelu,
}

impl Act {
    fn of(activation: Option<Activation>) -> Act {
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
struct Activated {
    /// `[rows, channels]`, `act(z + bias)`.
    y: Tensor,
    /// `z + bias`, kept for gelu only (the other derivatives follow from `y`).
    pre: Option<Tensor>,
}

/// `act(z + bias)` for `z: [rows, c]`, in place on `z` (gelu: into a new tensor).
fn bias_act(z: Tensor, bias: &Tensor, act: Act) -> Result<Activated> {
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
fn bias_act_backward(grad: &Tensor, out: &Activated, act: Act, c: usize) -> Result<Vec<f32>> {
    fn rows(g: &mut [f32], y: &[f32], db: &mut [f32], f: impl Fn(f32) -> f32) {
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

/// Walks the im2col matrix of `g` row by row, each row left to right: calls
/// `run(row, col, input_offset, len)` for each run of taps inside the image (in NHWC,
/// horizontally adjacent taps are adjacent in memory) and `pad(row, col, len)` for
/// each run of zero padding.
fn for_each_run(
    g: &ConvGeometry,
    mut run: impl FnMut(usize, usize, usize, usize),
    mut pad: impl FnMut(usize, usize, usize),
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (k, c) = (g.k, g.c);
    let mut row = 0;
    for b in 0..g.b {
        for oy in 0..oh {
            for ox in 0..ow {
                for ky in 0..k {
                    let y = (oy * g.stride + ky) as isize - g.pad as isize;
                    let col = ky * k * c;
                    if y < 0 || y >= g.h as isize {
                        pad(row, col, k * c);
                        continue;
                    }
                    let x0 = (ox * g.stride) as isize - g.pad as isize;
                    // Kernel columns kx with 0 <= x0 + kx < w.
                    let lo = (-x0).clamp(0, k as isize) as usize;
                    let hi = (g.w as isize - x0).clamp(0, k as isize) as usize;
                    if lo > 0 {
                        pad(row, col, lo * c);
                    }
                    if hi > lo {
                        let input =
                            ((b * g.h + y as usize) * g.w + (x0 + lo as isize) as usize) * c;
                        run(row, col + lo * c, input, (hi - lo) * c);
                    }
                    if hi < k {
                        pad(row, col + hi.max(lo) * c, (k - hi.max(lo)) * c);
                    }
                }
                row += 1;
            }
        }
    }
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

/// `buffer` when it has `dims` (and will be overwritten), else a new zero tensor.
fn reuse(buffer: &mut Option<Tensor>, dims: &[usize], like: &Tensor) -> Result<Tensor> {
    if let Some(t) = buffer.as_ref().filter(|t| t.dims() == dims) {
        return Ok(t.clone());
    }
    let t = Tensor::zeros(dims, like.dtype(), like.device())?;
    *buffer = Some(t.clone());
    Ok(t)
}

/// Work items below this many floats run on the calling thread.
const PAR_MIN: usize = 1 << 15;

/// Images per parallel chunk of a batch of `b`: a function of the shapes only, so
/// that results do not depend on the thread count.
fn images_per_chunk(b: usize, floats_per_image: usize) -> usize {
    if b * floats_per_image < PAR_MIN {
        b.max(1)
    } else {
        b.div_ceil(8).max(1)
    }
}

/// `[b, h, w, c]` -> `[b * oh * ow, k * k * c]`, every element written (padding
/// included), into `buffer` where it fits; images in parallel.
fn im2col(x: &Tensor, g: &ConvGeometry, buffer: &mut Option<Tensor>) -> Result<Tensor> {
    let input = View::new(x)?;
    let input = input.get()?;
    let out = reuse(buffer, &[g.rows(), g.cols()], x)?;
    let width = g.cols();
    let rows_per_image = g.out_h() * g.out_w();
    let in_per_image = g.h * g.w * g.c;
    let per_chunk = images_per_chunk(g.b, rows_per_image * width);
    mutate(&out, |out| {
        out.par_chunks_mut(per_chunk * rows_per_image * width)
            .zip(input.par_chunks(per_chunk * in_per_image))
            .for_each(|(out, input)| {
                let sub = ConvGeometry {
                    b: input.len() / in_per_image,
                    ..*g
                };
                let out = RefCell::new(out);
                for_each_run(
                    &sub,
                    |row, col, src, len| {
                        let dst = row * width + col;
                        out.borrow_mut()[dst..dst + len].copy_from_slice(&input[src..src + len]);
                    },
                    |row, col, len| {
                        let dst = row * width + col;
                        out.borrow_mut()[dst..dst + len].fill(0.0);
                    },
                );
            });
    })?;
    Ok(out)
}

/// The adjoint of [`im2col`]: sums the taps of `[b * oh * ow, k * k * c]` into
/// `[b, h, w, c]`, in a fixed order, into `buffer` where it fits; images in parallel.
fn col2im(cols: &Tensor, g: &ConvGeometry, buffer: &mut Option<Tensor>) -> Result<Tensor> {
    let data = View::new(cols)?;
    let data = data.get()?;
    let width = g.cols();
    let out = reuse(buffer, &[g.b, g.h, g.w, g.c], cols)?;
    let rows_per_image = g.out_h() * g.out_w();
    let out_per_image = g.h * g.w * g.c;
    let per_chunk = images_per_chunk(g.b, rows_per_image * width);
    mutate(&out, |out| {
        out.par_chunks_mut(per_chunk * out_per_image)
            .zip(data.par_chunks(per_chunk * rows_per_image * width))
            .for_each(|(out, data)| {
                out.fill(0.0);
                let sub = ConvGeometry {
                    b: out.len() / out_per_image,
                    ..*g
                };
                for_each_run(
                    &sub,
                    |row, col, dst, len| {
                        let src = row * width + col;
                        for (o, v) in out[dst..dst + len].iter_mut().zip(&data[src..src + len]) {
                            *o += v;
                        }
                    },
                    |_, _, _| {},
                );
            });
    })?;
    Ok(out)
}

/// Rows per parallel chunk of a `[rows, c]` matrix (a function of the shape only).
fn rows_per_chunk(rows: usize, c: usize) -> usize {
    if rows * c < PAR_MIN {
        rows.max(1)
    } else {
        rows.div_ceil(8).max(1)
    }
}

/// `f(row chunk)` over the rows of `z: [rows, c]` in parallel.
fn par_rows(z: &mut [f32], c: usize, f: impl Fn(&mut [f32]) + Sync + Send) {
    let rows = z.len() / c.max(1);
    z.par_chunks_mut(rows_per_chunk(rows, c) * c.max(1))
        .for_each(f);
}

/// `f(grad chunk, other chunk, bias-gradient partial)` over the rows of `grad` and
/// `other` (both `[rows, c]`) in parallel; returns the partials summed in chunk order.
fn par_rows_sum(
    grad: &mut [f32],
    other: &[f32],
    c: usize,
    f: impl Fn(&mut [f32], &[f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    let rows = grad.len() / c.max(1);
    let chunk = rows_per_chunk(rows, c) * c.max(1);
    let partials: Vec<Vec<f32>> = grad
        .par_chunks_mut(chunk)
        .zip(other.par_chunks(chunk))
        .map(|(g, o)| {
            let mut db = vec![0f32; c];
            f(g, o, &mut db);
            db
        })
        .collect();
    let mut db = vec![0f32; c];
    for p in partials {
        for (d, v) in db.iter_mut().zip(p) {
            *d += v;
        }
    }
    db
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

/// The output of a non-overlapping max-pool and where each maximum came from.
struct Pooled {
    /// `[b, oh / p, ow / p, c]`.
    y: Tensor,
    /// Per pooled element, the index of its maximum within its image of the pooled
    /// tensor (the first maximum of its window in scan order, as TensorFlow and
    /// PyTorch route it).
    argmax: Vec<u32>,
}

/// Non-overlapping `p x p` max-pooling of `y: [b, h, w, c]` (windows that do not fit
/// are dropped, as Candle and Keras' 'valid' pooling do).
fn max_pool(y: &Tensor, p: usize) -> Result<Pooled> {
    let (b, h, w, c) = y.dims4()?;
    let (ph, pw) = (h / p, w / p);
    let data = View::new(y)?;
    let data = data.get()?;
    let per_image = ph * pw * c;
    let mut out = vec![0f32; b * per_image];
    let mut argmax = vec![0u32; b * per_image];
    out.par_chunks_mut(per_image.max(1))
        .zip(argmax.par_chunks_mut(per_image.max(1)))
        .enumerate()
        .for_each(|(img, (out, arg))| {
            let image = &data[img * h * w * c..(img + 1) * h * w * c];
            for py in 0..ph {
                for px in 0..pw {
                    let o = (py * pw + px) * c;
                    for dy in 0..p {
                        for dx in 0..p {
                            let src = ((py * p + dy) * w + px * p + dx) * c;
                            let first = dy == 0 && dx == 0;
                            for ch in 0..c {
                                let v = image[src + ch];
                                if first || v > out[o + ch] {
                                    out[o + ch] = v;
                                    arg[o + ch] = (src + ch) as u32;
                                }
                            }
                        }
                    }
                }
            }
        });
    Ok(Pooled {
        y: Tensor::from_vec(out, (b, ph, pw, c), y.device())?,
        argmax,
    })
}

/// The gradient of the pooled tensor's input `[rows, c]` from that of its output.
fn max_pool_backward(grad: &Tensor, pooled: &Pooled, input: &Tensor) -> Result<Tensor> {
    let mut out = vec![0f32; input.elem_count()];
    let images = pooled.y.dim(0)?.max(1);
    let (in_per_image, out_per_image) = (out.len() / images, pooled.argmax.len() / images);
    let grad = View::new(grad)?;
    let grad = grad.get()?;
    out.par_chunks_mut(in_per_image.max(1))
        .zip(grad.par_chunks(out_per_image.max(1)))
        .zip(pooled.argmax.par_chunks(out_per_image.max(1)))
        .for_each(|((out, grad), argmax)| {
            for (g, &i) in grad.iter().zip(argmax) {
                out[i as usize] += g;
            }
        });
    Tensor::from_vec(out, input.shape(), input.device())
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
fn update_par(rule: Rule, t: u64, w: &mut [f32], g: &[f32], s1: &mut [f32], s2: &mut [f32]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DTYPE;
    use candle_core::{Device, Var};
    use candle_nn::VarBuilder;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let a = a.flatten_all().unwrap();
        let b = b.flatten_all().unwrap();
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    fn max_abs(a: &Tensor) -> f32 {
        a.flatten_all()
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// The fast forward pass and gradients equal Candle's ops and autograd on the same
    /// model, for the folded configs the fast path takes.
    #[test]
    fn matches_candle_autograd() -> Result<()> {
        let dev = Device::Cpu;
        let small = CnnConfig {
            conv1_filters: 6,
            conv2_filters: 8,
            dense_units: vec![12],
            ..CnnConfig::default()
        };
        let cfgs = [
            small.clone(),
            CnnConfig {
                kernel_size: 5,
                ..small.clone()
            },
            CnnConfig {
                kernel_size: 1,
                pool_stride: 3,
                conv_activation: Activation::Elu,
                dense_activation: Activation::Relu,
                ..small.clone()
            },
            CnnConfig {
                conv_activation: Activation::Gelu,
                dense_activation: Activation::LeakyRelu,
                dense_units: vec![12, 9],
                dropout: 0.4,
                ..small.clone()
            },
            CnnConfig {
                pool_size: 2,
                pool_stride: 2,
                conv_activation: Activation::Tanh,
                ..small.clone()
            },
            CnnConfig {
                kernel_size: 5,
                pool_size: 3,
                pool_stride: 3,
                dropout: 0.2,
                ..small.clone()
            },
            CnnConfig {
                kernel_size: 7,
                pool_stride: 1,
                conv_activation: Activation::Tanh,
                dense_activation: Activation::Gelu,
                ..small.clone()
            },
        ];
        for (i, cfg) in cfgs.into_iter().enumerate() {
            assert!(supports(&cfg));
            let vm = Model::init_varmap(&cfg, 11, &dev)?;
            let model = Model::new(&cfg, VarBuilder::from_varmap(&vm, DTYPE, &dev))?;
            // One batch large enough for the parallel chunking, small ones otherwise.
            let b = if i == 0 { 32 } else { 3 };
            let x = Tensor::randn(0f32, 1., (b, 28, 28, 1), &dev)?;
            let labels: Vec<u32> = (0..b as u32).map(|j| (7 * j + 3) % 10).collect();
            let mut ws = Workspace::default();
            for train in [false, true, true] {
                model.set_dropout_seed(5);
                let want = model.forward(&x, train)?;
                model.set_dropout_seed(5);
                let trace = forward(&model, &x, train, &mut ws)?;
                let d = max_diff(&trace.logits, &want);
                assert!(
                    d < 1e-4 * max_abs(&want).max(1.0),
                    "{cfg:?}: logits differ by {d}"
                );
                if !train {
                    continue;
                }
                let targets = Tensor::new(labels.as_slice(), &dev)?;
                let grads = candle_nn::loss::cross_entropy(&want, &targets)?.backward()?;
                let ours = backward(&model, &trace, &labels, &mut ws)?;
                let params = parameters(&model);
                assert_eq!(ours.len(), params.len());
                for (i, (p, g)) in params.iter().zip(&ours).enumerate() {
                    let reference = grads.get(p).expect("candle gradient");
                    let scale = max_abs(reference).max(1e-3);
                    let d = max_diff(g, reference);
                    assert!(
                        d < 1e-3 * scale,
                        "{cfg:?}: gradient {i} differs by {d} (max {scale})"
                    );
                }
            }
        }
        Ok(())
    }

    /// Col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() -> Result<()> {
        let dev = Device::Cpu;
        for (k, stride, h, w, c) in [(3, 2, 7, 6, 2), (5, 1, 5, 5, 1), (1, 3, 8, 8, 3)] {
            let g = ConvGeometry {
                b: 2,
                h,
                w,
                c,
                k,
                stride,
                pad: k / 2,
            };
            let x = Tensor::randn(0f32, 1., (2, h, w, c), &dev)?;
            // Twice: into fresh buffers, then into the reused ones.
            let (mut b1, mut b2) = (None, None);
            for _ in 0..2 {
                let cols = im2col(&x, &g, &mut b1)?;
                let r = Tensor::randn(0f32, 1., cols.shape(), &dev)?;
                let lhs = (&cols * &r)?.sum_all()?.to_scalar::<f32>()?;
                let rhs = (&x * col2im(&r, &g, &mut b2)?)?
                    .sum_all()?
                    .to_scalar::<f32>()?;
                assert!((lhs - rhs).abs() < 1e-3, "{lhs} vs {rhs}");
            }
            let cols = im2col(&x, &g, &mut None)?;
            // And im2col equals the reference op.
            let reference = x.apply_op1(crate::ops::Im2Col(g))?;
            assert_eq!(max_diff(&cols, &reference), 0.0);
        }
        Ok(())
    }

    /// The parallel update equals the sequential one, with and without slots.
    #[test]
    fn parallel_update_equals_sequential() {
        let n = 5 * PAR_MIN + 7;
        let w0: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let g: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
        for cfg in [
            CnnConfig::default(),
            CnnConfig {
                optimizer: tuner_core::cnn::CnnOptimizer::Sgd,
                ..CnnConfig::default()
            },
            CnnConfig {
                optimizer: tuner_core::cnn::CnnOptimizer::Rmsprop,
                ..CnnConfig::default()
            },
        ] {
            let rule = Rule::from_config(&cfg);
            let (one, two) = rule.slots();
            let slot = |on: bool| if on { vec![0.0; n] } else { Vec::new() };
            let (mut w1, mut a1, mut b1) = (w0.clone(), slot(one), slot(two));
            let (mut w2, mut a2, mut b2) = (w0.clone(), slot(one), slot(two));
            for t in 1..=3 {
                rule.update(t, &mut w1, &g, &mut a1, &mut b1);
                update_par(rule, t, &mut w2, &g, &mut a2, &mut b2);
            }
            assert_eq!(w1, w2, "{rule:?}");
            assert_ne!(w1, w0);
        }
    }

    /// One fast optimizer step changes the model's own variables.
    #[test]
    fn optimizer_updates_the_model_in_place() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = CnnConfig {
            conv1_filters: 2,
            conv2_filters: 3,
            dense_units: vec![4],
            ..CnnConfig::default()
        };
        let vm = Model::init_varmap(&cfg, 1, &dev)?;
        let model = Model::new(&cfg, VarBuilder::from_varmap(&vm, DTYPE, &dev))?;
        let var: Var = vm.data().lock().unwrap()["dense1.kernel"].clone();
        let before = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let params = parameters(&model);
        let mut opt = FastOptimizer::new(Rule::from_config(&cfg), &params);
        let x = Tensor::randn(0f32, 1., (2, 28, 28, 1), &dev)?;
        let mut ws = Workspace::default();
        let trace = forward(&model, &x, true, &mut ws)?;
        let grads = backward(&model, &trace, &[1, 2], &mut ws)?;
        opt.step(&params, &grads)?;
        let after = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        assert_ne!(before, after);
        Ok(())
    }
}
