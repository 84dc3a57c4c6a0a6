//! Scrambled, seeded Sobol' points in the unit cube.
//!
//! Owns the direction numbers (Joe & Kuo, `new-joe-kuo-6.21201`, first 32 dimensions),
//! a linear-matrix scramble plus digital shift (as in Owen / SciPy's `scramble=True`),
//! and random access by index so a stateless sampler can ask for "point number i".
//! Dimensions beyond the table are filled with independent uniform draws: they keep
//! coverage, just not the low-discrepancy property.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BITS: usize = 32;

/// (degree s, polynomial coefficients a, initial direction numbers m) for dimensions 2..=32.
const JOE_KUO: &[(u32, u32, &[u32])] = &[
    (1, 0, &[1]),
    (2, 1, &[1, 3]),
    (3, 1, &[1, 3, 1]),
    (3, 2, &[1, 1, 1]),
    (4, 1, &[1, 1, 3, 3]),
    (4, 4, &[1, 3, 5, 13]),
    (5, 2, &[1, 1, 5, 5, 17]),
    (5, 4, &[1, 1, 5, 5, 5]),
    (5, 7, &[1, 1, 7, 11, 19]),
    (5, 11, &[1, 1, 5, 1, 1]),
    (5, 13, &[1, 1, 1, 3, 11]),
    (5, 14, &[1, 3, 5, 5, 31]),
    (6, 1, &[1, 3, 3, 9, 7, 49]),
    (6, 13, &[1, 1, 1, 15, 21, 21]),
    (6, 16, &[1, 3, 1, 13, 27, 49]),
    (6, 19, &[1, 1, 1, 15, 7, 5]),
    (6, 22, &[1, 3, 1, 15, 13, 25]),
    (6, 25, &[1, 1, 5, 5, 19, 61]),
    (7, 1, &[1, 3, 7, 11, 23, 15, 103]),
    (7, 4, &[1, 3, 7, 13, 13, 15, 69]),
    (7, 7, &[1, 1, 3, 13, 7, 35, 63]),
    (7, 8, &[1, 3, 5, 9, 1, 25, 53]),
    (7, 14, &[1, 3, 1, 13, 9, 35, 107]),
    (7, 19, &[1, 3, 1, 5, 27, 61, 31]),
    (7, 21, &[1, 1, 5, 11, 19, 41, 61]),
    (7, 28, &[1, 3, 5, 3, 3, 13, 69]),
    (7, 31, &[1, 1, 7, 13, 1, 19, 1]),
    (7, 32, &[1, 3, 7, 5, 13, 19, 59]),
    (7, 37, &[1, 1, 3, 9, 25, 29, 41]),
    (7, 41, &[1, 3, 5, 13, 23, 1, 55]),
    (7, 42, &[1, 3, 7, 3, 13, 59, 17]),
];

/// Dimensions with real Sobol' direction numbers.
pub const MAX_SOBOL_DIMS: usize = JOE_KUO.len() + 1;

/// A Sobol' sequence of fixed dimension; `point(i)` is the i-th point (Gray-code order).
#[derive(Debug, Clone)]
pub struct Sobol {
    /// Direction numbers per dimension, MSB-aligned, already scrambled.
    directions: Vec<[u32; BITS]>,
    /// Digital shift per dimension (0 when unscrambled).
    shifts: Vec<u32>,
    /// Seed for the uniform draws of dimensions beyond the table.
    overflow_seed: u64,
    dims: usize,
}

fn unscrambled_directions(dim: usize) -> [u32; BITS] {
    let mut v = [0u32; BITS];
    if dim == 0 {
        for (k, vk) in v.iter_mut().enumerate() {
            *vk = 1 << (31 - k);
        }
        return v;
    }
    let (s, a, m) = JOE_KUO[dim - 1];
    let s = s as usize;
    for k in 0..BITS {
        v[k] = if k < s {
            m[k] << (31 - k)
        } else {
            let mut x = v[k - s] ^ (v[k - s] >> s);
            for i in 1..s {
                if (a >> (s - 1 - i)) & 1 == 1 {
                    x ^= v[k - i];
                }
            }
            x
        };
    }
    v
}

impl Sobol {
    /// The plain sequence (first point is the origin); for tests against published points.
    #[cfg(test)]
    pub fn unscrambled(dims: usize) -> Self {
        Self {
            directions: (0..dims.min(MAX_SOBOL_DIMS))
                .map(unscrambled_directions)
                .collect(),
            shifts: vec![0; dims.min(MAX_SOBOL_DIMS)],
            overflow_seed: 0,
            dims,
        }
    }

    /// Linear-matrix scramble and digital shift drawn from `seed`: every seed gives a
    /// different, equally well spread sequence.
    pub fn scrambled(dims: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut directions = Vec::new();
        let mut shifts = Vec::new();
        for d in 0..dims.min(MAX_SOBOL_DIMS) {
            // Lower-triangular binary matrix with unit diagonal: output digit b is input
            // digit b xor a random subset of the more significant digits.
            let rows: Vec<u32> = (0..BITS)
                .map(|b| {
                    if b == 0 {
                        0
                    } else {
                        rng.random::<u32>() & (!0u32 << (32 - b))
                    }
                })
                .collect();
            let scramble = |x: u32| -> u32 {
                let mut out = 0u32;
                for (b, row) in rows.iter().enumerate() {
                    let bit = 31 - b;
                    let digit = ((x >> bit) & 1) ^ ((row & x).count_ones() & 1);
                    out |= digit << bit;
                }
                out
            };
            let raw = unscrambled_directions(d);
            let mut v = [0u32; BITS];
            for k in 0..BITS {
                v[k] = scramble(raw[k]);
            }
            directions.push(v);
            shifts.push(rng.random::<u32>());
        }
        Self {
            directions,
            shifts,
            overflow_seed: rng.random(),
            dims,
        }
    }

    /// The `index`-th point, each coordinate in [0, 1).
    pub fn point(&self, index: u64) -> Vec<f64> {
        let gray = index ^ (index >> 1);
        let mut out = Vec::with_capacity(self.dims);
        for (v, shift) in self.directions.iter().zip(&self.shifts) {
            let mut x = *shift;
            for (k, vk) in v.iter().enumerate() {
                if (gray >> k) & 1 == 1 {
                    x ^= vk;
                }
            }
            out.push(f64::from(x) / 4_294_967_296.0);
        }
        if self.dims > out.len() {
            let mut rng = ChaCha8Rng::seed_from_u64(crate::derive_seed(self.overflow_seed, index));
            while out.len() < self.dims {
                out.push(rng.random::<f64>());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unscrambled_matches_published_first_points() {
        // SciPy `qmc.Sobol(d=3, scramble=False)` / Joe & Kuo's reference generator.
        let expected = [
            [0.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.75, 0.25, 0.25],
            [0.25, 0.75, 0.75],
            [0.375, 0.375, 0.625],
            [0.875, 0.875, 0.125],
            [0.625, 0.125, 0.875],
            [0.125, 0.625, 0.375],
        ];
        let sobol = Sobol::unscrambled(3);
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(sobol.point(i as u64), want.to_vec(), "point {i}");
        }
    }

    #[test]
    fn scrambled_points_stratify_each_axis() {
        // Any 2^k consecutive points from index 0 put one point in each 1/2^k interval
        // of every axis, scrambled or not.
        let sobol = Sobol::scrambled(MAX_SOBOL_DIMS, 42);
        for d in 0..MAX_SOBOL_DIMS {
            let mut seen = [false; 16];
            for i in 0..16 {
                let u = sobol.point(i)[d];
                assert!((0.0..1.0).contains(&u));
                seen[(u * 16.0) as usize] = true;
            }
            assert!(seen.iter().all(|&s| s), "dimension {d}");
        }
        assert_ne!(
            sobol.point(0),
            Sobol::scrambled(MAX_SOBOL_DIMS, 43).point(0)
        );
    }
}
