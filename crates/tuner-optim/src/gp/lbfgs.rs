//! A box-constrained L-BFGS (projected directions, Armijo backtracking) for the two
//! smooth problems of the sampler: the hyperparameter MAP fit and the continuous part
//! of the acquisition search. Minimizes.

use super::linalg::dot;

pub struct Bounds<'a> {
    pub lower: &'a [f64],
    pub upper: &'a [f64],
}

pub struct Options {
    pub max_iters: usize,
    pub memory: usize,
    /// Stop when the projected gradient's largest component falls below this.
    pub grad_tol: f64,
}

/// Minimizes `f` (returning value and gradient) from `x` inside the box; returns the
/// best point and value. Non-finite values are treated as +inf (the step is shrunk).
pub fn minimize(
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
    x0: &[f64],
    bounds: &Bounds<'_>,
    opts: &Options,
) -> (Vec<f64>, f64) {
    let n = x0.len();
    let clamp = |x: &mut [f64]| {
        for i in 0..n {
            x[i] = x[i].clamp(bounds.lower[i], bounds.upper[i]);
        }
    };
    let mut x = x0.to_vec();
    clamp(&mut x);
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    if !fx.is_finite() {
        return (x, f64::INFINITY);
    }
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut d = vec![0.0; n];
    let mut x_new = vec![0.0; n];
    let mut g_new = vec![0.0; n];
    // Components pinned at a bound with the gradient pushing outward do not move.
    let free = |x: &[f64], g: &[f64], i: usize| {
        !((x[i] <= bounds.lower[i] && g[i] > 0.0) || (x[i] >= bounds.upper[i] && g[i] < 0.0))
    };
    for _ in 0..opts.max_iters {
        let pg = (0..n)
            .filter(|&i| free(&x, &g, i))
            .map(|i| g[i].abs())
            .fold(0.0, f64::max);
        if pg < opts.grad_tol {
            break;
        }
        // Two-loop recursion on the free components.
        for i in 0..n {
            d[i] = if free(&x, &g, i) { -g[i] } else { 0.0 };
        }
        let k = s_hist.len();
        let mut alphas = vec![0.0; k];
        for j in (0..k).rev() {
            let rho = 1.0 / dot(&y_hist[j], &s_hist[j]);
            alphas[j] = rho * dot(&s_hist[j], &d);
            for i in 0..n {
                d[i] -= alphas[j] * y_hist[j][i];
            }
        }
        if k > 0 {
            let gamma = dot(&s_hist[k - 1], &y_hist[k - 1]) / dot(&y_hist[k - 1], &y_hist[k - 1]);
            for di in d.iter_mut() {
                *di *= gamma;
            }
        } else {
            // First step: move at most ~0.1 in the largest coordinate.
            let gmax = d.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            if gmax > 0.0 {
                let scale = (0.1 / gmax).min(1.0);
                for di in d.iter_mut() {
                    *di *= scale;
                }
            }
        }
        for j in 0..k {
            let rho = 1.0 / dot(&y_hist[j], &s_hist[j]);
            let beta = rho * dot(&y_hist[j], &d);
            for i in 0..n {
                d[i] += s_hist[j][i] * (alphas[j] - beta);
            }
        }
        for i in 0..n {
            if !free(&x, &g, i) {
                d[i] = 0.0;
            }
        }
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction after projection: fall back to steepest descent.
            s_hist.clear();
            y_hist.clear();
            for i in 0..n {
                d[i] = if free(&x, &g, i) { -g[i] } else { 0.0 };
            }
            slope = dot(&g, &d);
            if slope >= 0.0 {
                break;
            }
        }
        let mut t = 1.0;
        let mut accepted = false;
        let mut f_new = f64::INFINITY;
        for _ in 0..20 {
            for i in 0..n {
                x_new[i] = x[i] + t * d[i];
            }
            clamp(&mut x_new);
            f_new = f(&x_new, &mut g_new);
            let actual: f64 = (0..n).map(|i| g[i] * (x_new[i] - x[i])).sum();
            if f_new.is_finite() && f_new <= fx + 1e-4 * actual.min(0.0) {
                accepted = true;
                break;
            }
            t *= 0.3;
        }
        if !accepted {
            break;
        }
        let s: Vec<f64> = (0..n).map(|i| x_new[i] - x[i]).collect();
        let y: Vec<f64> = (0..n).map(|i| g_new[i] - g[i]).collect();
        let improvement = fx - f_new;
        x.copy_from_slice(&x_new);
        g.copy_from_slice(&g_new);
        fx = f_new;
        if dot(&s, &y) > 1e-12 {
            if s_hist.len() == opts.memory {
                s_hist.remove(0);
                y_hist.remove(0);
            }
            s_hist.push(s);
            y_hist.push(y);
        }
        if improvement.abs() <= 1e-10 * (1.0 + fx.abs()) {
            break;
        }
    }
    (x, fx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimizes_a_bounded_quadratic() {
        let f = |x: &[f64], g: &mut [f64]| {
            g[0] = 2.0 * (x[0] - 3.0);
            g[1] = 20.0 * (x[1] + 0.5);
            (x[0] - 3.0).powi(2) + 10.0 * (x[1] + 0.5).powi(2)
        };
        let (x, _) = minimize(
            f,
            &[0.0, 0.0],
            &Bounds {
                lower: &[-1.0, -1.0],
                upper: &[2.0, 1.0],
            },
            &Options {
                max_iters: 100,
                memory: 6,
                grad_tol: 1e-9,
            },
        );
        assert!(
            (x[0] - 2.0).abs() < 1e-9 && (x[1] + 0.5).abs() < 1e-6,
            "{x:?}"
        );
    }
}
