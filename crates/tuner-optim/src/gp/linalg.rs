//! Dense row-major linear algebra for the small SPD systems of a GP (n ≤ a few hundred):
//! Cholesky, triangular solves and the inverse, written so the inner loops are
//! contiguous dot products / axpys the compiler vectorizes.

/// Dot product with four accumulators (a plain fold is not vectorized for f64).
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 4];
    let chunks = n / 4;
    for c in 0..chunks {
        let i = c * 4;
        acc[0] += a[i] * b[i];
        acc[1] += a[i + 1] * b[i + 1];
        acc[2] += a[i + 2] * b[i + 2];
        acc[3] += a[i + 3] * b[i + 3];
    }
    let mut tail = 0.0;
    for i in chunks * 4..n {
        tail += a[i] * b[i];
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `y += alpha * x`.
#[inline]
pub fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// In-place Cholesky of the symmetric `n × n` matrix `a` (lower triangle read);
/// leaves `L` in the lower triangle and zeros above. `false` if not positive definite.
pub fn cholesky(a: &mut [f64], n: usize) -> bool {
    for i in 0..n {
        let (done, rest) = a.split_at_mut(i * n);
        let row_i = &mut rest[..n];
        for j in 0..i {
            let row_j = &done[j * n..j * n + j];
            let s = row_i[j] - dot(&row_i[..j], row_j);
            row_i[j] = s / done[j * n + j];
        }
        let s = row_i[i] - dot(&row_i[..i], &row_i[..i]);
        if s <= 0.0 || !s.is_finite() {
            return false;
        }
        row_i[i] = s.sqrt();
        for x in &mut row_i[i + 1..] {
            *x = 0.0;
        }
    }
    true
}

/// Solves `L x = b` in place (`L` lower, row-major).
pub fn forward_solve(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let s = b[i] - dot(&l[i * n..i * n + i], &b[..i]);
        b[i] = s / l[i * n + i];
    }
}

/// Solves `Lᵀ x = b` in place.
pub fn backward_solve(l: &[f64], n: usize, b: &mut [f64]) {
    for i in (0..n).rev() {
        let xi = b[i] / l[i * n + i];
        b[i] = xi;
        // Row i of L holds column i of Lᵀ: subtract its contribution from earlier rows.
        axpy(-xi, &l[i * n..i * n + i], &mut b[..i]);
    }
}

/// `(L Lᵀ)⁻¹` as a full symmetric matrix, from the Cholesky factor.
pub fn inverse_from_cholesky(l: &[f64], n: usize) -> Vec<f64> {
    // M = L⁻¹, lower, row by row: row_i = (e_i − Σ_{k<i} L_ik row_k) / L_ii.
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        let (done, rest) = m.split_at_mut(i * n);
        let row_i = &mut rest[..n];
        row_i[i] = 1.0;
        for k in 0..i {
            let lik = l[i * n + k];
            if lik != 0.0 {
                axpy(-lik, &done[k * n..k * n + k + 1], &mut row_i[..k + 1]);
            }
        }
        let inv = 1.0 / l[i * n + i];
        for x in &mut row_i[..=i] {
            *x *= inv;
        }
    }
    // K⁻¹ = Mᵀ M: accumulate rank-one updates row by row of M (lower triangle), then mirror.
    let mut out = vec![0.0; n * n];
    for k in 0..n {
        let row_k = &m[k * n..k * n + k + 1];
        for a in 0..=k {
            let mka = row_k[a];
            if mka != 0.0 {
                axpy(mka, &row_k[..=a], &mut out[a * n..a * n + a + 1]);
            }
        }
    }
    for a in 0..n {
        for b in 0..a {
            out[b * n + a] = out[a * n + b];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_and_inverts() {
        let a = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let mut l = a;
        assert!(cholesky(&mut l, 3));
        let mut x = [1.0, 2.0, 3.0];
        forward_solve(&l, 3, &mut x);
        backward_solve(&l, 3, &mut x);
        for i in 0..3 {
            let ax: f64 = (0..3).map(|j| a[i * 3 + j] * x[j]).sum();
            assert!((ax - [1.0, 2.0, 3.0][i]).abs() < 1e-12);
        }
        let inv = inverse_from_cholesky(&l, 3);
        for i in 0..3 {
            for j in 0..3 {
                let p: f64 = (0..3).map(|k| a[i * 3 + k] * inv[k * 3 + j]).sum();
                assert!((p - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
        let mut bad = [1.0, 2.0, 2.0, 1.0];
        assert!(!cholesky(&mut bad, 2));
    }
}
