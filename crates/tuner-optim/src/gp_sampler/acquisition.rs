//! The acquisition search over a mixed space: log expected improvement (less the cost
//! penalty when the search is cost-aware) maximized by local search, with continuous
//! (L-BFGS) and discrete (one-coordinate) steps.

use super::cost::CostModel;
use super::model::Model;
use super::{EXHAUSTIVE_LIMIT, JOINT_MOVES};
use crate::{
    coder::Coding,
    gp::{self, Scratch},
};

/// Log EI (per cost^α with a cost model) over canonical points, with the local search.
pub(super) struct Acquisition<'m, 'a> {
    model: &'m Model<'a>,
    cost: Option<&'m CostModel>,
    scratch: Scratch,
    cost_scratch: Scratch,
    active: Vec<bool>,
    feat: Vec<f64>,
    neighbours: Vec<f64>,
}

impl<'m, 'a> Acquisition<'m, 'a> {
    pub(super) fn new(model: &'m Model<'a>, cost: Option<&'m CostModel>) -> Self {
        Self {
            model,
            cost,
            scratch: Scratch::default(),
            cost_scratch: Scratch::default(),
            active: Vec::new(),
            feat: Vec::new(),
            neighbours: Vec::new(),
        }
    }

    pub(super) fn value(&mut self, z: &[f64]) -> f64 {
        self.model
            .coder
            .features(z, &mut self.active, &mut self.feat);
        let (mean, var) = self.model.post.predict(&self.feat, &mut self.scratch);
        let penalty = self
            .cost
            .map_or(0.0, |c| c.penalty(&self.feat, &mut self.cost_scratch));
        gp::log_ei(mean, var.sqrt(), self.model.best).0 - penalty
    }

    /// Coordinate search on discrete parameters interleaved with L-BFGS on the
    /// continuous ones, until neither improves.
    pub(super) fn local_search(&mut self, mut z: Vec<f64>) -> (f64, Vec<f64>) {
        let coder = self.model.coder;
        let mut value = self.value(&z);
        let has_discrete = coder.params.iter().any(|p| p.coding.is_discrete());
        for _ in 0..3 {
            let mut improved = false;
            let (zc, vc) = self.continuous_step(&z);
            if vc > value + 1e-9 {
                z = zc;
                value = vc;
                improved = true;
            }
            if has_discrete {
                let (zd, vd) = self.discrete_step(&z, value);
                if vd > value + 1e-9 {
                    z = zd;
                    value = vd;
                    improved = true;
                }
            }
            if !improved || !has_discrete {
                break;
            }
        }
        (value, z)
    }

    /// L-BFGS on the active continuous coordinates, discrete ones held fixed.
    fn continuous_step(&mut self, z: &[f64]) -> (Vec<f64>, f64) {
        let coder = self.model.coder;
        coder.activity(z, &mut self.active);
        let dims: Vec<usize> = (0..coder.len())
            .filter(|&j| self.active[j] && coder.params[j].coding == Coding::Continuous)
            .collect();
        if dims.is_empty() {
            return (z.to_vec(), f64::NEG_INFINITY);
        }
        let x0: Vec<f64> = dims.iter().map(|&j| z[j]).collect();
        let lower = vec![0.0; dims.len()];
        let upper = vec![1.0; dims.len()];
        let mut point = z.to_vec();
        let mut d_mean = vec![0.0; dims.len()];
        let mut d_var = vec![0.0; dims.len()];
        // Stays zero without a cost model.
        let mut d_cost = vec![0.0; dims.len()];
        let (model, cost) = (self.model, self.cost);
        let (scratch, active, feat) = (&mut self.scratch, &mut self.active, &mut self.feat);
        let cost_scratch = &mut self.cost_scratch;
        let (x, neg) = gp::minimize(
            |x, g| {
                for (k, &j) in dims.iter().enumerate() {
                    point[j] = x[k];
                }
                model.coder.features(&point, active, feat);
                let (mean, var) =
                    model
                        .post
                        .predict_with_grad(feat, &dims, scratch, &mut d_mean, &mut d_var);
                let sd = var.sqrt();
                let (v, dm, ds) = gp::log_ei(mean, sd, model.best);
                let penalty = cost.map_or(0.0, |c| {
                    c.penalty_with_grad(feat, &dims, cost_scratch, &mut d_cost)
                });
                for k in 0..dims.len() {
                    g[k] = -(dm * d_mean[k] + ds * d_var[k] / (2.0 * sd) - d_cost[k]);
                }
                penalty - v
            },
            &x0,
            &gp::Bounds {
                lower: &lower,
                upper: &upper,
            },
            &gp::Options {
                max_iters: 40,
                memory: 6,
                grad_tol: 1e-6,
            },
        );
        let mut out = z.to_vec();
        for (k, &j) in dims.iter().enumerate() {
            out[j] = x[k];
        }
        (out, -neg)
    }

    /// Every single-parameter move (exhaustive for small domains), then the best
    /// moves combined in pairs and the top three at once, so parameters that only pay
    /// off together (kernel size with both filter counts) can move in one step.
    fn discrete_step(&mut self, z: &[f64], value: f64) -> (Vec<f64>, f64) {
        let coder = self.model.coder;
        coder.activity(z, &mut self.active);
        let active = self.active.clone();
        // Best move per parameter: (value, parameter, new coordinate).
        let mut best_moves: Vec<(f64, usize, f64)> = Vec::new();
        let mut best = (value, z.to_vec());
        let mut trial = z.to_vec();
        for j in 0..coder.len() {
            if !active[j] || !coder.params[j].coding.is_discrete() {
                continue;
            }
            let mut neighbours = std::mem::take(&mut self.neighbours);
            coder.neighbours(j, z[j], EXHAUSTIVE_LIMIT, &mut neighbours);
            let mut best_here: Option<(f64, f64)> = None;
            for &u in &neighbours {
                trial[j] = u;
                let v = self.value(&trial);
                if best_here.is_none_or(|(bv, _)| v > bv) {
                    best_here = Some((v, u));
                }
            }
            trial[j] = z[j];
            self.neighbours = neighbours;
            if let Some((v, u)) = best_here {
                best_moves.push((v, j, u));
                if v > best.0 {
                    best = (v, trial.clone());
                    best.1[j] = u;
                }
            }
        }
        best_moves.sort_by(|a, b| b.0.total_cmp(&a.0));
        best_moves.truncate(JOINT_MOVES);
        let mut combos: Vec<Vec<usize>> = Vec::new();
        for a in 0..best_moves.len() {
            for b in a + 1..best_moves.len() {
                combos.push(vec![a, b]);
            }
        }
        if best_moves.len() >= 3 {
            combos.push(vec![0, 1, 2]);
        }
        for combo in combos {
            let mut t = z.to_vec();
            for &m in &combo {
                t[best_moves[m].1] = best_moves[m].2;
            }
            let v = self.value(&t);
            if v > best.0 {
                best = (v, t);
            }
        }
        (best.1, best.0)
    }
}
