//! Standard black-box test problems (definitions and bounds as in the reference
//! harness `../shared/bench/bbo_harness.py`) and a mixed "CNN tuning" problem, for
//! benchmarks that run a sampler in process or through the HTTP API.

use tuner_core::{ParamValue, Params, SearchSpace, SpecFormat, parse_spec};

/// A problem to minimize.
pub struct Problem {
    pub name: &'static str,
    /// The `parameters:` block of a search-space document.
    pub parameters: String,
    pub space: SearchSpace,
    /// The minimum of `f` (simple regret = best found - optimum).
    pub optimum: f64,
    pub f: fn(&Params) -> f64,
}

/// A whole version-1 search-space document for a `parameters:` block.
pub fn document(name: &str, parameters: &str, max_trials: u32, optimizer: &str) -> String {
    format!(
        "version: 1\nname: {name}\nobjective: {{metric: y, direction: minimize}}\n\
         budget: {{max_trials: {max_trials}}}\noptimizer: {optimizer}\nparameters:\n{parameters}"
    )
}

fn space(params: &str) -> SearchSpace {
    parse_spec(
        &document("bbo", params, 1000, "{kind: random}"),
        SpecFormat::Yaml,
    )
    .expect("benchmark space")
    .parameters
}

fn floats(n: usize, lo: f64, hi: f64) -> String {
    (0..n)
        .map(|i| format!("  x{i}: {{type: float, min: {lo}, max: {hi}}}\n"))
        .collect()
}

fn xs(p: &Params, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| p[&format!("x{i}")].as_f64().unwrap())
        .collect()
}

pub fn branin(p: &Params) -> f64 {
    let (x1, x2) = (p["x1"].as_f64().unwrap(), p["x2"].as_f64().unwrap());
    let pi = std::f64::consts::PI;
    let (b, c, t) = (5.1 / (4.0 * pi * pi), 5.0 / pi, 1.0 / (8.0 * pi));
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

pub fn hartmann6(p: &Params) -> f64 {
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [1312.0, 1696.0, 5569.0, 124.0, 8283.0, 5886.0],
        [2329.0, 4135.0, 8307.0, 3736.0, 1004.0, 9991.0],
        [2348.0, 1451.0, 3522.0, 2883.0, 3047.0, 6650.0],
        [4047.0, 8828.0, 8732.0, 5743.0, 1091.0, 381.0],
    ];
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    let x = xs(p, 6);
    -(0..4)
        .map(|i| {
            let s: f64 = (0..6)
                .map(|j| A[i][j] * (x[j] - 1e-4 * P[i][j]).powi(2))
                .sum();
            ALPHA[i] * (-s).exp()
        })
        .sum::<f64>()
}

pub fn levy5(p: &Params) -> f64 {
    let pi = std::f64::consts::PI;
    let w: Vec<f64> = xs(p, 5).iter().map(|x| 1.0 + (x - 1.0) / 4.0).collect();
    let d = w.len();
    let mut s = (pi * w[0]).sin().powi(2);
    for wi in &w[..d - 1] {
        s += (wi - 1.0).powi(2) * (1.0 + 10.0 * (pi * wi + 1.0).sin().powi(2));
    }
    s + (w[d - 1] - 1.0).powi(2) * (1.0 + (2.0 * pi * w[d - 1]).sin().powi(2))
}

pub fn rosenbrock4(p: &Params) -> f64 {
    let x = xs(p, 4);
    (0..3)
        .map(|i| 100.0 * (x[i + 1] - x[i] * x[i]).powi(2) + (1.0 - x[i]).powi(2))
        .sum()
}

/// A synthetic "CNN tuning" objective (minimize, optimum 0) with every parameter kind:
/// the learning rate's best value depends on the optimizer; kernel size only pays off
/// when both filter counts change with it (a runner-up region at kernel 3); a
/// conditional width that matters only with two or more dense layers.
pub const MIXED: &str = "  lr: {type: float, min: 1.0e-5, max: 1.0, log: true}
  optimizer: {type: categorical, values: [sgd, adam, rmsprop]}
  kernel: {type: categorical, values: [3, 5]}
  filters1: {type: int, min: 16, max: 128, step: 16}
  filters2: {type: int, min: 32, max: 256, step: 32}
  units: {type: int, min: 16, max: 1024, log: true}
  layers: {type: int, min: 1, max: 3}
  units_2: {type: int, min: 16, max: 512, log: true, when: {layers: {min: 2}}}
  dropout: {type: float, min: 0.0, max: 0.6}
  batchnorm: {type: categorical, values: [true, false]}
";

pub fn mixed(p: &Params) -> f64 {
    let num = |k: &str| p[k].as_f64().unwrap();
    let opt = match &p["optimizer"] {
        ParamValue::Str(s) => s.as_str(),
        _ => "",
    };
    let (best_lr, offset) = match opt {
        "sgd" => (-1.5, 0.3),
        "adam" => (-3.0, 0.0),
        _ => (-3.3, 0.1),
    };
    let mut f = offset + 0.5 * (num("lr").log10() - best_lr).powi(2);
    let (f1, f2) = (num("filters1"), num("filters2"));
    f += if num("kernel") == 5.0 {
        ((f1 - 96.0) / 48.0).powi(2) + ((f2 - 192.0) / 96.0).powi(2)
    } else {
        0.15 + ((f1 - 32.0) / 48.0).powi(2) + ((f2 - 64.0) / 96.0).powi(2)
    };
    f += (num("units").log2() - 8.0).powi(2) / 16.0;
    f += match num("layers") as i64 {
        1 => 0.25,
        2 => (num("units_2").log2() - 7.0).powi(2) / 16.0,
        _ => 0.05 + (num("units_2").log2() - 7.0).powi(2) / 16.0,
    };
    f += 2.0 * (num("dropout") - 0.25).powi(2);
    if p["batchnorm"] != ParamValue::Bool(true) {
        f += 0.1;
    }
    f
}

impl Problem {
    fn new(name: &'static str, parameters: String, optimum: f64, f: fn(&Params) -> f64) -> Self {
        let space = space(&parameters);
        Self {
            name,
            parameters,
            space,
            optimum,
            f,
        }
    }
}

/// Every problem: branin, hartmann6, levy5, rosenbrock4, mixed.
pub fn all() -> Vec<Problem> {
    let branin_space =
        "  x1: {type: float, min: -5.0, max: 10.0}\n  x2: {type: float, min: 0.0, max: 15.0}\n";
    vec![
        Problem::new("branin", branin_space.into(), 0.397_887_357_729_739, branin),
        Problem::new(
            "hartmann6",
            floats(6, 0.0, 1.0),
            -3.322_368_011_415_51,
            hartmann6,
        ),
        Problem::new("levy5", floats(5, -10.0, 10.0), 0.0, levy5),
        Problem::new("rosenbrock4", floats(4, -5.0, 10.0), 0.0, rosenbrock4),
        Problem::new("mixed", MIXED.into(), 0.0, mixed),
    ]
}
