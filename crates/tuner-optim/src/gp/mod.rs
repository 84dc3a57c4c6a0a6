//! Gaussian-process regression for the sampler: the mixed-space Matérn-5/2 ARD kernel,
//! the MAP fit of its hyperparameters, and the posterior with input gradients.
//!
//! Inputs are one coordinate per search-space parameter: numeric parameters in the unit
//! cube (log scales already in log space), categoricals as their choice index, and
//! [`INACTIVE`] for a conditional parameter that is switched off. Targets are expected
//! standardized (mean 0, variance ≈ 1) and oriented so that larger is better. Nothing
//! here knows about `SearchSpace`; `gp_sampler` does the plumbing.

// Index loops over several parallel arrays read closer to the maths than zipped iterators.
#![allow(clippy::needless_range_loop)]

mod lbfgs;
mod linalg;
mod logei;

pub(crate) use lbfgs::{Bounds, Options, minimize};
pub(crate) use logei::log_ei;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The coordinate of a conditional parameter that is inactive in this configuration.
pub(crate) const INACTIVE: f64 = -1.0;

/// Added to the kernel diagonal on top of the learned noise, for conditioning only.
const JITTER: f64 = 1e-9;
const SQRT5: f64 = 2.236_067_977_499_79;
const LN_2PI: f64 = 1.837_877_066_409_345_5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DimKind {
    /// A number in [0, 1]; `conditional` when it may be [`INACTIVE`].
    Numeric { conditional: bool },
    /// A choice index; distance 1 between different choices (Hamming), with
    /// "inactive" as one more choice.
    Categorical,
}

/// Squared distance along one dimension, before its length-scale.
///
/// A conditional numeric coordinate is embedded as `(x, 0)` when active and
/// `(0.5, 0.5)` when inactive: two inactive points coincide, an active and an
/// inactive point are between 0.5 and √0.5 apart. This keeps the distance Euclidean
/// (so the kernel stays positive definite) without inventing a value for the
/// inactive parameter.
#[inline]
pub(crate) fn dim_dist2(kind: DimKind, a: f64, b: f64) -> f64 {
    match kind {
        DimKind::Categorical => f64::from(u8::from(a != b)),
        DimKind::Numeric { conditional: false } => (a - b) * (a - b),
        DimKind::Numeric { conditional: true } => match (a < 0.0, b < 0.0) {
            (false, false) => (a - b) * (a - b),
            (true, true) => 0.0,
            _ => {
                let x = a.max(b) - 0.5;
                x * x + 0.25
            }
        },
    }
}

/// `∂ dim_dist2(a, b) / ∂a` for an active numeric `a`.
#[inline]
fn dim_dist2_grad(kind: DimKind, a: f64, b: f64) -> f64 {
    match kind {
        DimKind::Categorical => 0.0,
        DimKind::Numeric { .. } if b < 0.0 => 2.0 * (a - 0.5),
        DimKind::Numeric { .. } => 2.0 * (a - b),
    }
}

/// Matérn-5/2 as a function of the squared scaled distance: `(k, dk/d(r²))`.
#[inline]
pub(crate) fn matern52(r2: f64) -> (f64, f64) {
    let r = r2.max(0.0).sqrt();
    let e = (-SQRT5 * r).exp();
    let k = (1.0 + SQRT5 * r + 5.0 / 3.0 * r2) * e;
    let dk = -5.0 / 6.0 * (1.0 + SQRT5 * r) * e;
    (k, dk)
}

/// Kernel hyperparameters, all on the log scale: inverse squared length-scales,
/// signal variance, noise variance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Hyper {
    pub log_inv_sq_ls: Vec<f64>,
    pub log_signal: f64,
    pub log_noise: f64,
}

impl Hyper {
    fn to_theta(&self) -> Vec<f64> {
        let mut t = self.log_inv_sq_ls.clone();
        t.push(self.log_signal);
        t.push(self.log_noise);
        t
    }

    fn from_theta(t: &[f64]) -> Self {
        let d = t.len() - 2;
        Self {
            log_inv_sq_ls: t[..d].to_vec(),
            log_signal: t[d],
            log_noise: t[d + 1],
        }
    }

    /// Length-scales in unit-cube units.
    #[cfg(test)]
    pub fn length_scales(&self) -> Vec<f64> {
        self.log_inv_sq_ls
            .iter()
            .map(|t| (-0.5 * t).exp())
            .collect()
    }
}

/// Priors for the MAP fit, and where the fit starts.
///
/// Length-scales of numeric dimensions (continuous, integer, stepped): `−log p(w) =
/// r (1/w + w)` on the inverse squared length-scale `w = ℓ⁻²`, `r` =
/// [`INV_SQ_LS_RATE`] (the shape Optuna's GPSampler uses). It is nearly flat for ℓ
/// between about 0.3 and 3 and rises steeply outside, so within the range a 10–100-trial
/// model can resolve, the data decide. It replaced `log ℓ ~ N(½ log D, 3)` (continuous)
/// and `N(0, 3)` (discrete numeric), which pulled length-scales towards √D ≈ 2.5–3.5:
/// too smooth to follow hartmann6's or rosenbrock's valleys in the first 25–50 trials.
/// Categoricals keep `log ℓ ~ N(0, 3)`: ℓ = 1 is one Hamming step.
///
/// Signal: `log σ² ~ N(0, 1)` (targets are standardized). Noise: `log σn² ~ N(log 1e-4,
/// 2.5²)`: centred well below the old 2.5e-3, which let the fit explain small but real
/// differences between good trials as noise (hartmann6's last digits); 1e-6
/// (deterministic objectives) and 0.1 (noisy validation metrics) are both within three
/// standard deviations.
///
/// Measured with the `bbo` example on all nine problems, 20 seeds, paired with the old
/// priors (bench/results/s5): median regret at 25 trials lower on 8 of 9 problems
/// (rosenbrock4 775 → 176, hartmann6 1.07 → 0.41, mixed 0.73 → 0.45; cnn_depth level),
/// at 50 lower on 7 (cnn_kernel level, cnn_depth 0.16 → 0.18).
#[derive(Debug, Clone)]
pub(crate) struct Prior {
    /// Centre of the fit's starting log ℓ, per dimension: √D-scaled for continuous and
    /// 1 for discrete dimensions (the starts the measurements above used).
    pub start_log_ls: Vec<f64>,
    /// Spread of the random starting log ℓ around `start_log_ls`.
    pub start_log_ls_sd: f64,
    pub log_signal_mean: f64,
    pub log_signal_sd: f64,
    pub log_noise_mean: f64,
    pub log_noise_sd: f64,
}

/// `r` of the numeric length-scale prior `−log p(w) = r (1/w + w)`.
const INV_SQ_LS_RATE: f64 = 0.1;

/// Prior of a categorical's log ℓ: `N(0, 3)`.
const CATEGORICAL_LOG_LS_MEAN: f64 = 0.0;
const CATEGORICAL_LOG_LS_VAR: f64 = 3.0;

/// Starting log ℓ of a discrete dimension: ℓ = 1, a categorical's Hamming distance or a
/// grid's whole range.
const DISCRETE_START_LOG_LS: f64 = 0.0;

impl Prior {
    /// Every dimension started as continuous (√D).
    #[cfg(test)]
    pub fn for_dims(d: usize) -> Self {
        Self::for_space(&vec![false; d])
    }

    /// `discrete[j]`: whether dimension `j` takes few values. The fit starts those at
    /// ℓ = 1 and continuous ones at √D (the Hvarfner, Hellsten & Nardi 2024 scaling):
    /// from √D a categorical sits where switching the choice barely changes the
    /// prediction, and a local fit does not always leave it.
    pub fn for_space(discrete: &[bool]) -> Self {
        let d = discrete.len().max(1) as f64;
        Self {
            start_log_ls: discrete
                .iter()
                .map(|&disc| {
                    if disc {
                        DISCRETE_START_LOG_LS
                    } else {
                        0.5 * d.ln()
                    }
                })
                .collect(),
            start_log_ls_sd: 3f64.sqrt(),
            log_signal_mean: 0.0,
            log_signal_sd: 1.0,
            log_noise_mean: 1e-4f64.ln(),
            log_noise_sd: 2.5,
        }
    }

    fn typical(&self) -> Hyper {
        Hyper {
            log_inv_sq_ls: self.start_log_ls.iter().map(|m| -2.0 * m).collect(),
            log_signal: self.log_signal_mean,
            log_noise: self.log_noise_mean,
        }
    }
}

/// Box for the hyperparameters (log scale): ℓ in [0.005, 100], σ² in [0.01, 100],
/// σn² in [1e-6, 2].
fn theta_bounds(d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut lo = vec![-2.0 * 100f64.ln(); d];
    let mut hi = vec![-2.0 * 0.005f64.ln(); d];
    lo.push(0.01f64.ln());
    hi.push(100f64.ln());
    lo.push(1e-6f64.ln());
    hi.push(2f64.ln());
    (lo, hi)
}

/// Training inputs (`n × d`, row-major) and their per-pair, per-dimension squared
/// distances, which do not depend on the hyperparameters.
pub(crate) struct FitProblem<'a> {
    pub y: &'a [f64],
    pub dims: &'a [DimKind],
    pair_d2: Vec<f64>,
    prior: Prior,
}

impl<'a> FitProblem<'a> {
    pub fn new(x: &'a [f64], y: &'a [f64], dims: &'a [DimKind], prior: Prior) -> Self {
        let d = dims.len();
        let n = y.len();
        let mut pair_d2 = Vec::with_capacity(n * (n.saturating_sub(1)) / 2 * d);
        for a in 0..n {
            for b in 0..a {
                for (j, &kind) in dims.iter().enumerate() {
                    pair_d2.push(dim_dist2(kind, x[a * d + j], x[b * d + j]));
                }
            }
        }
        Self {
            y,
            dims,
            pair_d2,
            prior,
        }
    }

    /// Negative log posterior of `theta` (log marginal likelihood + log prior), and its
    /// gradient.
    pub fn neg_log_posterior(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let d = self.dims.len();
        let n = self.y.len();
        let w: Vec<f64> = theta[..d].iter().map(|t| t.exp()).collect();
        let signal = theta[d].exp();
        let noise = theta[d + 1].exp();
        let pairs = n * n.saturating_sub(1) / 2;
        let mut k_pair = vec![0.0; pairs];
        let mut dk_pair = vec![0.0; pairs];
        let mut chol = vec![0.0; n * n];
        let mut p = 0;
        for a in 0..n {
            for b in 0..a {
                let r2 = linalg::dot(&w, &self.pair_d2[p * d..p * d + d]);
                let (k, dk) = matern52(r2);
                k_pair[p] = signal * k;
                dk_pair[p] = signal * dk;
                chol[a * n + b] = signal * k;
                p += 1;
            }
            chol[a * n + a] = signal + noise + JITTER;
        }
        if !linalg::cholesky(&mut chol, n) {
            return f64::INFINITY;
        }
        let mut alpha = self.y.to_vec();
        linalg::forward_solve(&chol, n, &mut alpha);
        let quad = linalg::dot(&alpha, &alpha);
        linalg::backward_solve(&chol, n, &mut alpha);
        let log_det: f64 = (0..n).map(|i| chol[i * n + i].ln()).sum::<f64>() * 2.0;
        let mut nlp = 0.5 * quad + 0.5 * log_det + 0.5 * n as f64 * LN_2PI;

        // d(−LML)/dθ = −½ tr((ααᵀ − K⁻¹) ∂K/∂θ).
        let k_inv = linalg::inverse_from_cholesky(&chol, n);
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut g_signal = 0.0;
        let mut g_noise = 0.0;
        let mut p = 0;
        for a in 0..n {
            for b in 0..a {
                let wab = alpha[a] * alpha[b] - k_inv[a * n + b];
                // Each off-diagonal pair appears twice in the trace: the ½ cancels.
                let c = wab * dk_pair[p];
                linalg::axpy(c, &self.pair_d2[p * d..p * d + d], &mut grad[..d]);
                g_signal += wab * k_pair[p];
                p += 1;
            }
            let waa = alpha[a] * alpha[a] - k_inv[a * n + a];
            g_signal += 0.5 * waa * signal;
            g_noise += 0.5 * waa * noise;
        }
        for j in 0..d {
            grad[j] *= -w[j];
        }
        grad[d] = -g_signal;
        grad[d + 1] = -g_noise;

        let pr = &self.prior;
        for j in 0..d {
            if self.dims[j] == DimKind::Categorical {
                // log ℓ = −θ/2.
                let u = -0.5 * theta[j] - CATEGORICAL_LOG_LS_MEAN;
                nlp += 0.5 * u * u / CATEGORICAL_LOG_LS_VAR;
                grad[j] += -0.5 * u / CATEGORICAL_LOG_LS_VAR;
            } else {
                // θ = log w, so d(r/w + r·w)/dθ = r·w − r/w.
                nlp += INV_SQ_LS_RATE * (1.0 / w[j] + w[j]);
                grad[j] += INV_SQ_LS_RATE * (w[j] - 1.0 / w[j]);
            }
        }
        let u = theta[d] - pr.log_signal_mean;
        nlp += 0.5 * u * u / (pr.log_signal_sd * pr.log_signal_sd);
        grad[d] += u / (pr.log_signal_sd * pr.log_signal_sd);
        let u = theta[d + 1] - pr.log_noise_mean;
        nlp += 0.5 * u * u / (pr.log_noise_sd * pr.log_noise_sd);
        grad[d + 1] += u / (pr.log_noise_sd * pr.log_noise_sd);
        nlp
    }

    /// MAP hyperparameters: a few starts (the prior's typical point, shorter
    /// length-scales, draws from the prior), the best ones refined by L-BFGS.
    pub fn fit(&self, seed: u64, refine_starts: usize, max_iters: usize) -> Hyper {
        let d = self.dims.len();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let typical = self.prior.typical().to_theta();
        let mut starts = vec![typical.clone()];
        let mut short = typical.clone();
        short[..d].iter_mut().for_each(|t| *t = -2.0 * 0.3f64.ln());
        starts.push(short);
        for _ in 0..2 {
            let mut t = typical.clone();
            for (tj, mean) in t[..d].iter_mut().zip(&self.prior.start_log_ls) {
                let z = gaussian(&mut rng);
                *tj = -2.0 * (mean + self.prior.start_log_ls_sd * z);
            }
            t[d + 1] = self.prior.log_noise_mean + gaussian(&mut rng);
            starts.push(t);
        }
        let (lo, hi) = theta_bounds(d);
        for t in &mut starts {
            for i in 0..t.len() {
                t[i] = t[i].clamp(lo[i], hi[i]);
            }
        }
        let mut grad = vec![0.0; d + 2];
        let mut scored: Vec<(f64, Vec<f64>)> = starts
            .into_iter()
            .map(|t| (self.neg_log_posterior(&t, &mut grad), t))
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut best = (scored[0].0, scored[0].1.clone());
        for (_, t0) in scored.iter().take(refine_starts.max(1)) {
            let (t, v) = minimize(
                |t, g| self.neg_log_posterior(t, g),
                t0,
                &Bounds {
                    lower: &lo,
                    upper: &hi,
                },
                &Options {
                    max_iters,
                    memory: 8,
                    grad_tol: 1e-4,
                },
            );
            if v < best.0 {
                best = (v, t);
            }
        }
        Hyper::from_theta(&best.1)
    }
}

/// A standard normal draw (Box–Muller), so the crate needs no distribution library.
pub(crate) fn gaussian(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The GP posterior given data and hyperparameters.
#[derive(Debug, Clone)]
pub(crate) struct Posterior {
    n: usize,
    d: usize,
    x: Vec<f64>,
    dims: Vec<DimKind>,
    inv_sq_ls: Vec<f64>,
    signal: f64,
    noise: f64,
    chol: Vec<f64>,
    alpha: Vec<f64>,
}

/// Reusable buffers for predictions (one allocation per search, not per point).
#[derive(Default)]
pub(crate) struct Scratch {
    k: Vec<f64>,
    dk: Vec<f64>,
    v: Vec<f64>,
}

impl Posterior {
    pub fn new(x: Vec<f64>, y: &[f64], dims: &[DimKind], hyper: &Hyper) -> Option<Self> {
        let d = dims.len();
        let n = y.len();
        let inv_sq_ls: Vec<f64> = hyper.log_inv_sq_ls.iter().map(|t| t.exp()).collect();
        let signal = hyper.log_signal.exp();
        let noise = hyper.log_noise.exp();
        let mut chol = vec![0.0; n * n];
        for a in 0..n {
            for b in 0..a {
                let r2 = scaled_dist2(dims, &inv_sq_ls, &x[a * d..a * d + d], &x[b * d..b * d + d]);
                chol[a * n + b] = signal * matern52(r2).0;
            }
            chol[a * n + a] = signal + noise + JITTER;
        }
        if !linalg::cholesky(&mut chol, n) {
            return None;
        }
        let mut alpha = y.to_vec();
        linalg::forward_solve(&chol, n, &mut alpha);
        linalg::backward_solve(&chol, n, &mut alpha);
        Some(Self {
            n,
            d,
            x,
            dims: dims.to_vec(),
            inv_sq_ls,
            signal,
            noise,
            chol,
            alpha,
        })
    }

    /// Posterior mean of the latent function at the training inputs: `y − σn² α`.
    pub fn train_means(&self, y: &[f64]) -> Vec<f64> {
        y.iter()
            .zip(&self.alpha)
            .map(|(yi, ai)| yi - (self.noise + JITTER) * ai)
            .collect()
    }

    fn fill_k(&self, q: &[f64], s: &mut Scratch, with_grad: bool) {
        s.k.resize(self.n, 0.0);
        if with_grad {
            s.dk.resize(self.n, 0.0);
        }
        for i in 0..self.n {
            let xi = &self.x[i * self.d..(i + 1) * self.d];
            let r2 = scaled_dist2(&self.dims, &self.inv_sq_ls, q, xi);
            let (k, dk) = matern52(r2);
            s.k[i] = self.signal * k;
            if with_grad {
                s.dk[i] = self.signal * dk;
            }
        }
    }

    pub fn mean(&self, q: &[f64], s: &mut Scratch) -> f64 {
        self.fill_k(q, s, false);
        linalg::dot(&s.k, &self.alpha)
    }

    /// Mean and variance of the latent function at `q`.
    pub fn predict(&self, q: &[f64], s: &mut Scratch) -> (f64, f64) {
        self.fill_k(q, s, false);
        let mean = linalg::dot(&s.k, &self.alpha);
        s.v.clear();
        s.v.extend_from_slice(&s.k);
        linalg::forward_solve(&self.chol, self.n, &mut s.v);
        let var = (self.signal - linalg::dot(&s.v, &s.v)).max(1e-12 * self.signal);
        (mean, var)
    }

    /// The mean and its gradient along `grad_dims`, written into `d_mean`: what a
    /// model used only for its mean needs, without the variance's two solves.
    pub fn mean_with_grad(
        &self,
        q: &[f64],
        grad_dims: &[usize],
        s: &mut Scratch,
        d_mean: &mut [f64],
    ) -> f64 {
        self.fill_k(q, s, true);
        let mean = linalg::dot(&s.k, &self.alpha);
        d_mean.iter_mut().for_each(|g| *g = 0.0);
        for i in 0..self.n {
            let xi = &self.x[i * self.d..(i + 1) * self.d];
            let a = self.alpha[i] * s.dk[i];
            for (g, &j) in grad_dims.iter().enumerate() {
                let dd = self.inv_sq_ls[j] * dim_dist2_grad(self.dims[j], q[j], xi[j]);
                d_mean[g] += a * dd;
            }
        }
        mean
    }

    /// Mean and variance with their gradients along the coordinates `grad_dims`
    /// (active numeric ones), written into `d_mean` / `d_var`.
    pub fn predict_with_grad(
        &self,
        q: &[f64],
        grad_dims: &[usize],
        s: &mut Scratch,
        d_mean: &mut [f64],
        d_var: &mut [f64],
    ) -> (f64, f64) {
        self.fill_k(q, s, true);
        let mean = linalg::dot(&s.k, &self.alpha);
        s.v.clear();
        s.v.extend_from_slice(&s.k);
        linalg::forward_solve(&self.chol, self.n, &mut s.v);
        let raw_var = self.signal - linalg::dot(&s.v, &s.v);
        let var = raw_var.max(1e-12 * self.signal);
        // β = K⁻¹ k; ∂var/∂q = −2 βᵀ ∂k/∂q.
        linalg::backward_solve(&self.chol, self.n, &mut s.v);
        d_mean.iter_mut().for_each(|g| *g = 0.0);
        d_var.iter_mut().for_each(|g| *g = 0.0);
        for i in 0..self.n {
            let xi = &self.x[i * self.d..(i + 1) * self.d];
            let (a, b) = (self.alpha[i] * s.dk[i], -2.0 * s.v[i] * s.dk[i]);
            for (g, &j) in grad_dims.iter().enumerate() {
                let dd = self.inv_sq_ls[j] * dim_dist2_grad(self.dims[j], q[j], xi[j]);
                d_mean[g] += a * dd;
                d_var[g] += b * dd;
            }
        }
        if raw_var < 1e-12 * self.signal {
            d_var.iter_mut().for_each(|g| *g = 0.0);
        }
        (mean, var)
    }
}

#[inline]
fn scaled_dist2(dims: &[DimKind], inv_sq_ls: &[f64], a: &[f64], b: &[f64]) -> f64 {
    let mut r2 = 0.0;
    for j in 0..dims.len() {
        r2 += inv_sq_ls[j] * dim_dist2(dims[j], a[j], b[j]);
    }
    r2
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: [DimKind; 3] = [
        DimKind::Numeric { conditional: false },
        DimKind::Numeric { conditional: true },
        DimKind::Categorical,
    ];

    fn toy_data() -> (Vec<f64>, Vec<f64>) {
        let x = vec![
            0.1, 0.2, 0.0, //
            0.4, INACTIVE, 1.0, //
            0.7, 0.9, 2.0, //
            0.9, 0.5, 0.0, //
            0.3, INACTIVE, 1.0, //
            0.55, 0.1, 2.0,
        ];
        let y = vec![0.3, -1.0, 1.2, 0.1, -0.5, 0.4];
        (x, y)
    }

    #[test]
    fn matern_derivative_matches_finite_differences() {
        for r2 in [0.0, 1e-4, 0.3, 1.0, 4.0] {
            let eps = 1e-7;
            let fd = (matern52(r2 + eps).0 - matern52((r2 - eps).max(0.0)).0)
                / (r2 + eps - (r2 - eps).max(0.0));
            assert!((matern52(r2).1 - fd).abs() < 1e-5, "r2={r2}");
        }
        assert_eq!(matern52(0.0).0, 1.0);
    }

    #[test]
    fn marginal_likelihood_gradient_matches_finite_differences() {
        let (x, y) = toy_data();
        let fit = FitProblem::new(&x, &y, &MIXED, Prior::for_dims(3));
        let theta = [0.5, -0.3, 1.1, 0.2, -3.0];
        let mut grad = [0.0; 5];
        fit.neg_log_posterior(&theta, &mut grad);
        let mut scratch = [0.0; 5];
        for i in 0..theta.len() {
            let eps = 1e-6;
            let (mut up, mut down) = (theta, theta);
            up[i] += eps;
            down[i] -= eps;
            let fd = (fit.neg_log_posterior(&up, &mut scratch)
                - fit.neg_log_posterior(&down, &mut scratch))
                / (2.0 * eps);
            assert!(
                (grad[i] - fd).abs() < 1e-6 * fd.abs().max(1.0),
                "θ[{i}]: analytic {} vs finite difference {fd}",
                grad[i]
            );
        }
    }

    #[test]
    fn posterior_gradient_matches_finite_differences() {
        let (x, y) = toy_data();
        let hyper = Hyper {
            log_inv_sq_ls: vec![1.0, 0.5, 0.2],
            log_signal: 0.3,
            log_noise: -4.0,
        };
        let post = Posterior::new(x, &y, &MIXED, &hyper).unwrap();
        let mut s = Scratch::default();
        for q in [[0.35, 0.6, 1.0], [0.8, 0.05, 0.0], [0.4, 0.3, 2.0]] {
            let (mut dm, mut dv) = ([0.0; 2], [0.0; 2]);
            let (mean, _) = post.predict_with_grad(&q, &[0, 1], &mut s, &mut dm, &mut dv);
            // The mean-only path gives the same mean and gradient.
            let mut dm_only = [0.0; 2];
            assert_eq!(post.mean_with_grad(&q, &[0, 1], &mut s, &mut dm_only), mean);
            assert_eq!(dm_only, dm);
            for (g, j) in [0usize, 1].into_iter().enumerate() {
                let eps = 1e-6;
                let (mut up, mut down) = (q, q);
                up[j] += eps;
                down[j] -= eps;
                let (mu, vu) = post.predict(&up, &mut s);
                let (md, vd) = post.predict(&down, &mut s);
                assert!(
                    (dm[g] - (mu - md) / (2.0 * eps)).abs() < 1e-6,
                    "mean dim {j}"
                );
                assert!(
                    (dv[g] - (vu - vd) / (2.0 * eps)).abs() < 1e-6,
                    "var dim {j}"
                );
            }
        }
    }

    /// Three points on a line, solved by hand with the 3 × 3 adjugate inverse.
    #[test]
    fn posterior_matches_hand_solved_three_point_case() {
        let xs = [0.0, 0.5, 1.0];
        let y = [1.0, -1.0, 0.5];
        let (ls, signal, noise) = (0.7f64, 1.5f64, 0.01f64);
        let k = |a: f64, b: f64| {
            let r = (a - b).abs() / ls;
            signal * (1.0 + SQRT5 * r + 5.0 * r * r / 3.0) * (-SQRT5 * r).exp()
        };
        let mut m = [[0.0; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] = k(xs[i], xs[j]) + if i == j { noise } else { 0.0 };
            }
        }
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
        let mut inv = [[0.0; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                let (r0, r1) = ((j + 1) % 3, (j + 2) % 3);
                let (c0, c1) = ((i + 1) % 3, (i + 2) % 3);
                inv[i][j] = (m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]) / det;
            }
        }
        let q = 0.3;
        let kq: Vec<f64> = xs.iter().map(|&x| k(q, x)).collect();
        let mut want_mean = 0.0;
        let mut want_var = signal;
        for i in 0..3 {
            for j in 0..3 {
                want_mean += kq[i] * inv[i][j] * y[j];
                want_var -= kq[i] * inv[i][j] * kq[j];
            }
        }
        let dims = [DimKind::Numeric { conditional: false }];
        let hyper = Hyper {
            log_inv_sq_ls: vec![-2.0 * ls.ln()],
            log_signal: signal.ln(),
            log_noise: noise.ln(),
        };
        let post = Posterior::new(xs.to_vec(), &y, &dims, &hyper).unwrap();
        let (mean, var) = post.predict(&[q], &mut Scratch::default());
        assert!((mean - want_mean).abs() < 1e-7, "{mean} vs {want_mean}");
        assert!((var - want_var).abs() < 1e-7, "{var} vs {want_var}");
    }

    #[test]
    fn fit_recovers_a_short_length_scale_on_the_relevant_dimension() {
        // y depends on dimension 0 only.
        let n = 24;
        let dims = [
            DimKind::Numeric { conditional: false },
            DimKind::Numeric { conditional: false },
        ];
        let mut x = Vec::new();
        let mut y = Vec::new();
        let sobol = crate::sobol::Sobol::scrambled(2, 5);
        for i in 0..n {
            let p = sobol.point(i);
            y.push((6.0 * p[0]).sin());
            x.extend(p);
        }
        let fit = FitProblem::new(&x, &y, &dims, Prior::for_dims(2));
        let hyper = fit.fit(1, 2, 60);
        let ls = hyper.length_scales();
        assert!(ls[0] < ls[1] / 3.0, "{ls:?}");
    }

    #[test]
    fn discrete_dimensions_start_at_a_unit_length_scale_in_many_dimensions() {
        let prior = Prior::for_space(&[false, true, false, true]);
        assert_eq!(prior.start_log_ls[1], DISCRETE_START_LOG_LS);
        assert_eq!(prior.start_log_ls[3], DISCRETE_START_LOG_LS);
        assert!((prior.start_log_ls[0] - 0.5 * 4f64.ln()).abs() < 1e-12);
        assert_eq!(prior.typical().log_inv_sq_ls[1], 0.0);
    }
}
