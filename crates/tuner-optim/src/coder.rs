//! Maps a `SearchSpace` to the GP's inputs and back.
//!
//! A point of the search is `z`: one number in [0, 1] per parameter (document order),
//! exactly what `Domain::decode` takes. `canonicalize` snaps it to what the parameter
//! can really take (grid bucket centres, whole log-scaled integers) so a point is
//! scored where it will be evaluated. `features` turns it into kernel inputs:
//! numeric parameters keep their unit-cube value, categoricals become their choice
//! index, and conditional parameters whose conditions fail become `INACTIVE`.

use std::collections::HashMap;

use tuner_core::{Domain, ParamValue, Params, SearchSpace, space::ConditionTest};

use crate::gp::{DimKind, INACTIVE};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Coding {
    /// Continuous float: any value in [0, 1].
    Continuous,
    /// `n` equally spaced values (ints, stepped floats): bucket centres `(k + ½)/n`.
    Grid { n: u64 },
    /// A log-scaled integer; the grid is uneven in `z`.
    LogInt { min: i64, max: i64 },
    /// `n` choices, no order.
    Categorical { n: u64 },
}

impl Coding {
    pub fn is_discrete(self) -> bool {
        !matches!(self, Self::Continuous)
    }
}

#[derive(Debug, Clone)]
enum CondTest {
    /// For a categorical parent: whether each choice satisfies the condition.
    ByChoice(Vec<bool>),
    /// For a numeric parent: the condition on its decoded value.
    ByValue(ConditionTest),
}

#[derive(Debug, Clone)]
struct Cond {
    parent: usize,
    test: CondTest,
}

#[derive(Debug, Clone)]
pub(crate) struct ParamCoder {
    pub name: String,
    pub domain: Domain,
    pub coding: Coding,
    conds: Vec<Cond>,
}

#[derive(Debug, Clone)]
pub(crate) struct Coder {
    pub params: Vec<ParamCoder>,
    /// Parent-before-child order (indices into `params`).
    order: Vec<usize>,
    pub dims: Vec<DimKind>,
    index: HashMap<String, usize>,
}

impl Coder {
    pub fn new(space: &SearchSpace) -> Self {
        let index: HashMap<String, usize> = space
            .params()
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect();
        let params: Vec<ParamCoder> = space
            .params()
            .iter()
            .map(|p| {
                let coding = match &p.domain {
                    Domain::Float { step: None, .. } => Coding::Continuous,
                    Domain::Int {
                        log: true,
                        min,
                        max,
                        ..
                    } => Coding::LogInt {
                        min: *min,
                        max: *max,
                    },
                    Domain::Categorical { values } => Coding::Categorical {
                        n: values.len() as u64,
                    },
                    d => Coding::Grid {
                        n: d.grid_len().unwrap_or(1).max(1),
                    },
                };
                let conds = p
                    .when
                    .iter()
                    .filter_map(|c| {
                        let parent = *index.get(&c.parent)?;
                        let test = match &space.params()[parent].domain {
                            Domain::Categorical { values } => {
                                CondTest::ByChoice(values.iter().map(|v| c.test.holds(v)).collect())
                            }
                            _ => CondTest::ByValue(c.test.clone()),
                        };
                        Some(Cond { parent, test })
                    })
                    .collect();
                ParamCoder {
                    name: p.name.clone(),
                    domain: p.domain.clone(),
                    coding,
                    conds,
                }
            })
            .collect();
        let dims = params
            .iter()
            .map(|p| match p.coding {
                Coding::Categorical { .. } => DimKind::Categorical,
                _ => DimKind::Numeric {
                    conditional: !p.conds.is_empty(),
                },
            })
            .collect();
        let order = space
            .in_dependency_order()
            .map(|p| index[&p.name])
            .collect();
        Self {
            params,
            order,
            dims,
            index,
        }
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Snaps `u` to the nearest value parameter `j` can take.
    pub fn canonical(&self, j: usize, u: f64) -> f64 {
        let u = u.clamp(0.0, 1.0);
        match self.params[j].coding {
            Coding::Continuous => u,
            Coding::Grid { n } | Coding::Categorical { n } => {
                let k = ((u * n as f64) as u64).min(n - 1);
                (k as f64 + 0.5) / n as f64
            }
            Coding::LogInt { .. } => {
                let d = &self.params[j].domain;
                d.encode(&d.decode(u)).unwrap_or(u)
            }
        }
    }

    pub fn canonicalize(&self, z: &mut [f64]) {
        for (j, zj) in z.iter_mut().enumerate() {
            *zj = self.canonical(j, *zj);
        }
    }

    fn choice(&self, j: usize, u: f64) -> u64 {
        match self.params[j].coding {
            Coding::Grid { n } | Coding::Categorical { n } => ((u * n as f64) as u64).min(n - 1),
            _ => 0,
        }
    }

    /// Which parameters are active at `z`.
    pub fn activity(&self, z: &[f64], active: &mut Vec<bool>) {
        active.clear();
        active.resize(self.params.len(), false);
        for &j in &self.order {
            active[j] = self.params[j].conds.iter().all(|c| {
                active[c.parent]
                    && match &c.test {
                        CondTest::ByChoice(ok) => ok[self.choice(c.parent, z[c.parent]) as usize],
                        CondTest::ByValue(test) => {
                            test.holds(&self.params[c.parent].domain.decode(z[c.parent]))
                        }
                    }
            });
        }
    }

    /// Kernel inputs for a canonical `z`.
    pub fn features(&self, z: &[f64], active: &mut Vec<bool>, out: &mut Vec<f64>) {
        self.activity(z, active);
        out.clear();
        for (j, p) in self.params.iter().enumerate() {
            out.push(if !active[j] {
                INACTIVE
            } else if let Coding::Categorical { .. } = p.coding {
                self.choice(j, z[j]) as f64
            } else {
                z[j]
            });
        }
    }

    /// The canonical `z` of a stored configuration (inactive parameters get ½,
    /// which `features` masks anyway).
    pub fn encode(&self, params: &Params) -> Vec<f64> {
        self.params
            .iter()
            .map(|p| {
                params
                    .get(&p.name)
                    .and_then(|v| p.domain.encode(v))
                    .unwrap_or(0.5)
            })
            .collect()
    }

    pub fn decode(&self, z: &[f64], space: &SearchSpace) -> Params {
        space.decode_with(|p| self.index.get(&p.name).map_or(0.5, |&j| z[j]))
    }

    /// The values a local search tries for discrete parameter `j` from `u`: every
    /// value of a small domain, otherwise steps of growing size in both directions.
    pub fn neighbours(&self, j: usize, u: f64, exhaustive_limit: u64, out: &mut Vec<f64>) {
        out.clear();
        match self.params[j].coding {
            Coding::Continuous => {}
            Coding::Grid { n } | Coding::Categorical { n } => {
                let k = self.choice(j, u);
                if n <= exhaustive_limit
                    || matches!(self.params[j].coding, Coding::Categorical { .. })
                {
                    out.extend(
                        (0..n)
                            .filter(|&m| m != k)
                            .map(|m| (m as f64 + 0.5) / n as f64),
                    );
                } else {
                    let mut step = 1u64;
                    while step < n {
                        if k >= step {
                            out.push(((k - step) as f64 + 0.5) / n as f64);
                        }
                        if k + step < n {
                            out.push(((k + step) as f64 + 0.5) / n as f64);
                        }
                        step *= 2;
                    }
                }
            }
            Coding::LogInt { min, max } => {
                let domain = &self.params[j].domain;
                let x = domain.decode(u).as_f64().unwrap_or(min as f64) as i64;
                let mut push = |v: f64| {
                    let c = self.canonical(j, v);
                    if (c - u).abs() > 1e-12 && !out.iter().any(|o| (o - c).abs() < 1e-12) {
                        out.push(c);
                    }
                };
                if ((max - min) as u64) < exhaustive_limit {
                    for v in min..=max {
                        push(domain.encode(&ParamValue::Int(v)).unwrap_or(u));
                    }
                    return;
                }
                for v in [x - 1, x + 1] {
                    if (min..=max).contains(&v) {
                        push(domain.encode(&ParamValue::Int(v)).unwrap_or(u));
                    }
                }
                let mut delta = 0.5;
                while delta > 1e-2 {
                    push(u + delta);
                    push(u - delta);
                    delta /= 2.0;
                }
            }
        }
    }
}
