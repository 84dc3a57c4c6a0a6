//! Candle custom ops: im2col / col2im on channels-last (NHWC) tensors, and a fused
//! bias + activation.
//!
//! Why not `Tensor::conv2d`: Candle's CPU backward for conv2d goes through
//! `conv_transpose2d` (a direct loop) and a dilated conv for the kernel gradient, which
//! is what makes stock Candle slow here. With im2col the forward pass and both gradients
//! become plain matrix products (`gemm`), the bias gradient a sum over the rows of a
//! `[pixels, channels]` matrix, and the only custom work is two memory shuffles.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

/// Geometry of one convolution: input `[b, h, w, c]`, square kernel `k`, `stride`,
/// zero padding `pad` on every side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvGeometry {
    pub b: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeometry {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }

    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Columns of the im2col matrix: one per (ky, kx, channel), the order of a Keras
    /// kernel `[kh, kw, c_in, c_out]` flattened to `[kh * kw * c_in, c_out]`.
    pub fn cols(&self) -> usize {
        self.k * self.k * self.c
    }

    /// Rows of the im2col matrix: one per output pixel (b, oy, ox).
    pub fn rows(&self) -> usize {
        self.b * self.out_h() * self.out_w()
    }

    /// Calls `f(row, col_start, input_offset)` for every in-bounds kernel tap: the
    /// `c` channels at `input_offset` of the input belong at `col_start` of `row`.
    /// Out-of-bounds taps (the zero padding) are skipped.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (oh, ow) = (self.out_h(), self.out_w());
        let mut row = 0;
        for b in 0..self.b {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ky in 0..self.k {
                        let y = (oy * self.stride + ky) as isize - self.pad as isize;
                        if y < 0 || y >= self.h as isize {
                            continue;
                        }
                        for kx in 0..self.k {
                            let x = (ox * self.stride + kx) as isize - self.pad as isize;
                            if x < 0 || x >= self.w as isize {
                                continue;
                            }
                            let input = ((b * self.h + y as usize) * self.w + x as usize) * self.c;
                            f(row, (ky * self.k + kx) * self.c, input);
                        }
                    }
                    row += 1;
                }
            }
        }
    }
}

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

/// `[b, h, w, c]` -> `[b * oh * ow, k * k * c]`.
pub(crate) struct Im2Col(pub ConvGeometry);

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col-nhwc"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let input = contiguous_f32(storage, layout, self.name())?;
        let cols = g.cols();
        let mut out = vec![0f32; g.rows() * cols];
        g.for_each_tap(|row, col, src| {
            let dst = row * cols + col;
            out[dst..dst + g.c].copy_from_slice(&input[src..src + g.c]);
        });
        Ok((CpuStorage::F32(out), Shape::from((g.rows(), cols))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            grad_res.contiguous()?.apply_op1_no_bwd(&Col2Im(self.0))?,
        ))
    }
}

/// The adjoint of [`Im2Col`]: `[b * oh * ow, k * k * c]` -> `[b, h, w, c]`, summing the
/// overlapping taps.
pub(crate) struct Col2Im(pub ConvGeometry);

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im-nhwc"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let cols_data = contiguous_f32(storage, layout, self.name())?;
        let cols = g.cols();
        let mut out = vec![0f32; g.b * g.h * g.w * g.c];
        // Sequential accumulation in a fixed order: deterministic sums.
        g.for_each_tap(|row, col, dst| {
            let src = row * cols + col;
            for (o, v) in out[dst..dst + g.c]
                .iter_mut()
                .zip(&cols_data[src..src + g.c])
            {
                *o += v;
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((g.b, g.h, g.w, g.c))))
    }
}

/// An activation whose derivative can be computed from its output alone (so the
/// backward pass needs no saved input).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PointAct {
    Identity,
    Relu,
    Tanh,
    LeakyRelu(f32),
    /// alpha 1.
    Elu,
}

/// `e^u` for `u <= 0`, in `f64`, with straight-line arithmetic that vectorizes (libm's
/// `exp` is a call per element). Range reduction `u = k ln 2 + r`, `|r| <= ln 2 / 2`,
/// then Taylor to `r^11` (relative error below 1e-14) scaled by `2^k` built from bits.
/// Arguments below -700 are taken as -700 (about 1e-304, far below any `f32`).
#[inline(always)]
fn exp_nonpositive(u: f64) -> f64 {
    // Adding and subtracting 1.5 * 2^52 rounds to the nearest integer, and leaves that
    // integer in the low bits of the sum: no float-to-int conversion needed.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let u = u.max(-700.0);
    let shifted = u * std::f64::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let r = u - k * std::f64::consts::LN_2;
    let mut p = 1.0 / 39_916_800.0; // 1/11!
    for inv_factorial in [
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + inv_factorial;
    }
    // k is in [-1010, 0]: 2^k is a normal f64 with exponent field k + 1023.
    let k_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let two_k = f64::from_bits(k_bits.wrapping_add(1023) << 52);
    p * two_k
}

/// `tanh` of an `f32`, correct to about one ulp, several times faster than `f32::tanh`
/// in the training loops because it vectorizes: `(1 - t) / (1 + t)` with
/// `t = e^(-2|x|)` in `f64` (where `1 - t` loses nothing that matters for `f32`), and
/// the series near 0.
#[inline(always)]
pub(crate) fn tanh_f32(x: f32) -> f32 {
    let a = f64::from(x).abs().min(20.0); // tanh(20) rounds to 1 in f32
    let t = exp_nonpositive(-2.0 * a);
    let far = (1.0 - t) / (1.0 + t);
    let a2 = a * a;
    let near = a * (1.0 - a2 * (1.0 / 3.0 - a2 * (2.0 / 15.0)));
    let y = if a < 1e-3 { near } else { far };
    // NaN must stay NaN (`min` above would turn it into 1): a diverged trial is
    // detected by its loss.
    if x.is_nan() {
        x
    } else {
        (y as f32).copysign(x)
    }
}

/// `e^z - 1` for `z <= 0` (ELU's negative side), through the same `exp`.
#[inline(always)]
pub(crate) fn exp_m1_nonpositive_f32(z: f32) -> f32 {
    // Positive arguments would overflow the 2^k bit trick; callers pass z <= 0.
    let u = f64::from(z).min(0.0);
    let y = if u > -1e-5 {
        u * (1.0 + u * (0.5 + u / 6.0))
    } else {
        exp_nonpositive(u) - 1.0
    };
    if z.is_nan() { f32::NAN } else { y as f32 }
}

impl PointAct {
    #[inline(always)]
    pub(crate) fn apply(self, z: f32) -> f32 {
        match self {
            Self::Identity => z,
            Self::Relu => z.max(0.0),
            Self::Tanh => tanh_f32(z),
            Self::LeakyRelu(slope) => {
                if z > 0.0 {
                    z
                } else {
                    z * slope
                }
            }
            Self::Elu => {
                // Both sides computed, then picked: loops over it stay branch-free.
                // `z <= 0` is false for NaN, so NaN stays NaN.
                let negative = exp_m1_nonpositive_f32(z.min(0.0));
                if z <= 0.0 { negative } else { z }
            }
        }
    }

    /// `d act / d z` expressed through `y = act(z)`.
    #[inline(always)]
    pub(crate) fn derivative_from_output(self, y: f32) -> f32 {
        match self {
            Self::Identity => 1.0,
            Self::Relu => f32::from(u8::from(y > 0.0)),
            Self::Tanh => 1.0 - y * y,
            Self::LeakyRelu(slope) => {
                if y > 0.0 {
                    1.0
                } else {
                    slope
                }
            }
            Self::Elu => {
                if y > 0.0 {
                    1.0
                } else {
                    y + 1.0
                }
            }
        }
    }
}

/// `y = act(x + bias)` for `x: [n, c]`, `bias: [c]`, in one pass. Candle's
/// `broadcast_add` + activation costs five or six full passes and temporaries in the
/// backward pass, and its bias gradient (a strided sum over the rows of a tall
/// `[pixels, channels]` matrix) was the slowest single op of a training step.
pub(crate) struct BiasAct(pub PointAct);

impl CustomOp2 for BiasAct {
    fn name(&self) -> &'static str {
        "bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let bias = contiguous_f32(s2, l2, self.name())?;
        let (n, c) = l1.shape().dims2()?;
        if bias.len() != c {
            candle_core::bail!("bias-act: bias of {} for {c} channels", bias.len());
        }
        let act = self.0;
        let mut out = Vec::with_capacity(n * c);
        for row in x.chunks_exact(c) {
            out.extend(row.iter().zip(bias).map(|(&v, &b)| act.apply(v + b)));
        }
        Ok((CpuStorage::F32(out), Shape::from((n, c))))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _bias: &Tensor,
        y: &Tensor,
        grad_y: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_z = grad_y.contiguous()?.apply_op2_no_bwd(y, &ActGrad(self.0))?;
        let grad_bias = grad_z.apply_op1_no_bwd(&ColumnSum)?;
        Ok((Some(grad_z), Some(grad_bias)))
    }
}

/// `(grad_y, y) -> grad_y * act'(z)`.
struct ActGrad(PointAct);

impl CustomOp2 for ActGrad {
    fn name(&self) -> &'static str {
        "act-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let grad = contiguous_f32(s1, l1, self.name())?;
        let y = contiguous_f32(s2, l2, self.name())?;
        let act = self.0;
        let out = grad
            .iter()
            .zip(y)
            .map(|(&g, &y)| g * act.derivative_from_output(y))
            .collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `[n, c] -> [c]`: sums the rows, in order (deterministic).
struct ColumnSum;

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "column-sum"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, self.name())?;
        let (_, c) = layout.shape().dims2()?;
        let mut sums = vec![0f32; c];
        for row in x.chunks_exact(c) {
            for (s, v) in sums.iter_mut().zip(row) {
                *s += v;
            }
        }
        Ok((CpuStorage::F32(sums), Shape::from(c)))
    }
}

#[cfg(test)]
mod tests {
    /// Against `f64` libm over a dense sweep of `f32` inputs: within one `f32` epsilon,
    /// relative to the true value, everywhere.
    #[test]
    fn fast_tanh_and_expm1_match_libm() {
        let mut x = 1e-9f32;
        let mut worst = (0.0f64, 0.0f32);
        while x < 25.0 {
            for v in [x, -x] {
                let exact = f64::from(v).tanh();
                let got = f64::from(super::tanh_f32(v));
                let err = (got - exact).abs() / (exact.abs() * f64::from(f32::EPSILON));
                if err > worst.0 {
                    worst = (err, v);
                }
                let exact = f64::from(-v.abs()).exp_m1();
                let got = f64::from(super::exp_m1_nonpositive_f32(-v.abs()));
                let err = (got - exact).abs() / (exact.abs() * f64::from(f32::EPSILON));
                assert!(err <= 1.0, "expm1({}) = {got}, exact {exact}", -v.abs());
            }
            x *= 1.0001;
        }
        assert!(worst.0 <= 1.0, "tanh off by {} ulp at {}", worst.0, worst.1);
        assert_eq!(super::tanh_f32(0.0), 0.0);
        assert_eq!(super::tanh_f32(1e4), 1.0);
        assert_eq!(super::tanh_f32(-1e4), -1.0);
        assert_eq!(super::exp_m1_nonpositive_f32(-1e4), -1.0);
        assert!(super::tanh_f32(f32::NAN).is_nan());
        assert!(super::exp_m1_nonpositive_f32(f32::NAN).is_nan());
    }

    use super::*;
    use candle_core::{Device, Var};

    /// im2col + matmul equals Candle's own conv2d (NCHW), forward and backward.
    #[test]
    fn matches_candle_conv2d() -> Result<()> {
        let dev = Device::Cpu;
        for (stride, k) in [(1, 3), (2, 3), (2, 5), (3, 1)] {
            // Square images: Candle's own conv2d backward (the reference) assumes h == w.
            let (b, h, w, c, o) = (2, 7, 7, 3, 4);
            let pad = k / 2;
            let x_nchw = Var::from_tensor(&Tensor::randn(0f32, 1., (b, c, h, w), &dev)?)?;
            let k_oihw = Tensor::randn(0f32, 1., (o, c, k, k), &dev)?;
            let reference = x_nchw.conv2d(&k_oihw, pad, stride, 1, 1)?; // [b, o, oh, ow]
            let g = ConvGeometry {
                b,
                h,
                w,
                c,
                k,
                stride,
                pad,
            };
            let x_nhwc = x_nchw.permute((0, 2, 3, 1))?.contiguous()?;
            // [kh, kw, c, o] -> [kh*kw*c, o]
            let k2d = k_oihw.permute((2, 3, 1, 0))?.reshape((k * k * c, o))?;
            let ours = x_nhwc.apply_op1(Im2Col(g))?.matmul(&k2d)?; // [b*oh*ow, o]
            let ours_nchw = ours
                .reshape((b, g.out_h(), g.out_w(), o))?
                .permute((0, 3, 1, 2))?;
            let diff = (ours_nchw - &reference)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert!(
                diff < 1e-4,
                "stride {stride} k {k}: forward differs by {diff}"
            );

            // Same input gradient for the loss sum(out * r).
            let r = Tensor::randn(0f32, 1., reference.shape(), &dev)?;
            let g_ref = reference.mul(&r)?.sum_all()?.backward()?;
            let g_ours = x_nhwc
                .apply_op1(Im2Col(g))?
                .matmul(&k2d)?
                .reshape((b, g.out_h(), g.out_w(), o))?
                .permute((0, 3, 1, 2))?
                .mul(&r)?
                .sum_all()?
                .backward()?;
            let want = g_ref.get(&x_nchw).unwrap().permute((0, 2, 3, 1))?;
            // x_nhwc is derived from x_nchw, so its gradient flows back to the Var.
            let got = g_ours.get(&x_nchw).unwrap().permute((0, 2, 3, 1))?;
            let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(
                diff < 1e-4,
                "stride {stride} k {k}: gradient differs by {diff}"
            );
        }
        Ok(())
    }

    /// The fused op equals Candle's broadcast_add + activation, values and gradients.
    #[test]
    fn bias_act_matches_candle_ops() -> Result<()> {
        let dev = Device::Cpu;
        type Reference = fn(&Tensor) -> Result<Tensor>;
        let acts: [(PointAct, Reference); 5] = [
            (PointAct::Identity, |z| Ok(z.clone())),
            (PointAct::Relu, |z| z.relu()),
            (PointAct::Tanh, |z| z.tanh()),
            (PointAct::LeakyRelu(0.2), |z| z.maximum(&(z * 0.2)?)),
            (PointAct::Elu, |z| z.elu(1.0)),
        ];
        for (act, reference) in acts {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1., (5, 3), &dev)?)?;
            let b = Var::from_tensor(&Tensor::randn(0f32, 1., 3, &dev)?)?;
            let r = Tensor::randn(0f32, 1., (5, 3), &dev)?;
            let ours = x.apply_op2(b.as_tensor(), BiasAct(act))?;
            let want = reference(&x.broadcast_add(&b)?)?;
            let diff = (&ours - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-6, "{act:?}: {diff}");
            let g_ours = ours.mul(&r)?.sum_all()?.backward()?;
            let g_want = want.mul(&r)?.sum_all()?.backward()?;
            for v in [&x, &b] {
                let d = (g_ours.get(v).unwrap() - g_want.get(v).unwrap())?
                    .abs()?
                    .max_all()?
                    .to_scalar::<f32>()?;
                assert!(d < 1e-5, "{act:?}: gradient differs by {d}");
            }
        }
        Ok(())
    }
}
