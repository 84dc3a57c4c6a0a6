//! Standard black-box test problems (definitions and bounds as in the reference
//! harness `../shared/bench/bbo_harness.py`), a mixed "CNN tuning" problem and four
//! synthetic CNN-like spaces (`cnn_*`), for benchmarks that run a sampler in process
//! or through the HTTP API.
//!
//! `bench/optuna_side_by_side.py` re-implements every objective in Python and checks
//! them against these on sample points before each run (`tuner-cli bench optimizer
//! --eval-points`), so any change here must be mirrored there.

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

/// `x` as a number (ints, floats and numeric categoricals).
fn num(p: &Params, k: &str) -> f64 {
    p[k].as_f64()
        .unwrap_or_else(|| panic!("{k} is not numeric"))
}

/// The index of a string categorical among `choices`.
fn choice(p: &Params, k: &str, choices: &[&str]) -> usize {
    match &p[k] {
        ParamValue::Str(s) => choices.iter().position(|c| c == s).expect("known choice"),
        other => panic!("{k} = {other:?} is not a string choice"),
    }
}

/// Deterministic "seed noise" in [0, 1) from a few numbers of the configuration: the
/// same configuration always scores the same (so regrets stay comparable across
/// samplers), while neighbouring configurations differ in an unstructured way.
/// Mirrored exactly in Python (`frac(sin(h) * 43758.5453)`).
fn hash_noise(values: &[f64]) -> f64 {
    let h: f64 = values
        .iter()
        .enumerate()
        .map(|(i, v)| v * (12.9898 + 7.233 * i as f64))
        .sum();
    let s = h.sin() * 43_758.545_3;
    s - s.floor()
}

/// Optimizer x learning rate x batch size, with a divergence plateau: every optimizer
/// has its own best log10 learning rate (SGD far from the adaptive ones), larger
/// batches shift it up, tanh wants it lower; above the best by more than 1.2 decades
/// training diverges and the loss is a flat 3 (no gradient for a model to follow).
/// SGD is a wide runner-up basin that is easy to find; Adam's is narrow.
pub const CNN_OPTLR: &str = "  lr: {type: float, min: 1.0e-6, max: 1.0, log: true}
  optimizer: {type: categorical, values: [sgd, adam, rmsprop]}
  activation: {type: categorical, values: [relu, tanh, gelu]}
  batch_size: {type: int, min: 16, max: 256, step: 16}
  momentum: {type: float, min: 0.0, max: 0.99, when: {optimizer: sgd}}
  weight_decay: {type: float, min: 1.0e-6, max: 1.0e-2, log: true}
  dropout: {type: float, min: 0.0, max: 0.7}
";

pub fn cnn_optlr(p: &Params) -> f64 {
    let opt = choice(p, "optimizer", &["sgd", "adam", "rmsprop"]);
    let act = choice(p, "activation", &["relu", "tanh", "gelu"]);
    let (best_lr, offset, width) = [(-1.0, 0.12, 1.0), (-3.4, 0.0, 0.35), (-3.9, 0.05, 0.5)][opt];
    let batch_shift = 0.4 * (num(p, "batch_size") / 64.0).log2();
    let act_shift = [0.0, -0.5, -0.2][act];
    let d = num(p, "lr").log10() - (best_lr + batch_shift + act_shift);
    if d > 1.2 {
        return 3.0;
    }
    let mut f = offset + (d / width).powi(2) * 0.25;
    f += [0.0, 0.15, 0.03][act];
    if opt == 0 {
        // SGD without momentum is slow: a broad bowl around 0.9.
        f += 0.3 * (num(p, "momentum") - 0.9).powi(2);
    }
    f += 0.05 * (num(p, "weight_decay").log10() + 4.0).powi(2);
    f += 0.8 * (num(p, "dropout") - 0.3).powi(2);
    f
}

/// Kernel size x filter counts: three basins, one per kernel size. Kernel 3 with wide
/// layers is the broad, easy runner-up (0.1 above the optimum); kernel 7 with narrow
/// layers is the best and narrow; kernel 5 sits between. Filters on a 16/32/64 grid,
/// so only joint moves of kernel and filters reach the other basins.
pub const CNN_KERNEL: &str = "  kernel: {type: int, min: 3, max: 7, step: 2}
  filters1: {type: int, min: 16, max: 128, step: 16}
  filters2: {type: int, min: 32, max: 256, step: 32}
  filters3: {type: int, min: 64, max: 512, step: 64}
  activation: {type: categorical, values: [relu, tanh, gelu]}
  lr: {type: float, min: 1.0e-5, max: 1.0e-1, log: true}
  pool: {type: categorical, values: [max, avg, stride]}
";

pub fn cnn_kernel(p: &Params) -> f64 {
    let k = ((num(p, "kernel") - 3.0) / 2.0) as usize;
    let (f1, f2, f3) = (num(p, "filters1"), num(p, "filters2"), num(p, "filters3"));
    // (centre filters1, filters2, filters3, width, offset) per kernel size.
    let basins = [
        (96.0, 192.0, 384.0, 1.6, 0.1),
        (64.0, 128.0, 256.0, 1.0, 0.05),
        (32.0, 64.0, 128.0, 0.6, 0.0),
    ];
    let (c1, c2, c3, w, off) = basins[k];
    let mut f = off
        + (((f1 - c1) / 64.0).powi(2) + ((f2 - c2) / 128.0).powi(2) + ((f3 - c3) / 256.0).powi(2))
            / (w * w);
    let act = choice(p, "activation", &["relu", "tanh", "gelu"]);
    f += [0.0, 0.2, 0.02][act];
    // Strided convolutions instead of pooling only work with the big kernel.
    let pool = choice(p, "pool", &["max", "avg", "stride"]);
    f += match (pool, k) {
        (0, _) => 0.03,
        (1, _) => 0.06,
        (_, 2) => 0.0,
        _ => 0.25,
    };
    f += 0.1 * (num(p, "lr").log10() + 3.0).powi(2);
    f
}

/// Depth with conditional widths: `layers` dense layers, each extra layer's units
/// only present when it exists. One layer is a flat plateau (0.35, whatever the
/// widths); the best is three layers with a narrowing funnel; two layers a runner-up.
pub const CNN_DEPTH: &str = "  layers: {type: int, min: 1, max: 4}
  units1: {type: int, min: 16, max: 1024, log: true}
  units2: {type: int, min: 16, max: 1024, log: true, when: {layers: {min: 2}}}
  units3: {type: int, min: 16, max: 1024, log: true, when: {layers: {min: 3}}}
  units4: {type: int, min: 16, max: 1024, log: true, when: {layers: {min: 4}}}
  optimizer: {type: categorical, values: [sgd, adam, rmsprop]}
  lr: {type: float, min: 1.0e-5, max: 1.0, log: true}
  dropout: {type: float, min: 0.0, max: 0.7}
";

pub fn cnn_depth(p: &Params) -> f64 {
    let layers = num(p, "layers") as usize;
    let u = |name: &str| num(p, name).log2();
    let opt = choice(p, "optimizer", &["sgd", "adam", "rmsprop"]);
    let best_lr = [-1.5, -3.0, -3.3][opt];
    let mut f = [0.08, 0.0, 0.04][opt] + 0.15 * (num(p, "lr").log10() - best_lr).powi(2);
    f += match layers {
        1 => 0.35,
        2 => 0.12 + ((u("units1") - 8.0).powi(2) + (u("units2") - 6.0).powi(2)) / 12.0,
        3 => {
            ((u("units1") - 9.0).powi(2)
                + (u("units2") - 7.0).powi(2)
                + (u("units3") - 5.0).powi(2))
                / 6.0
        }
        _ => {
            0.08 + ((u("units1") - 9.0).powi(2)
                + (u("units2") - 8.0).powi(2)
                + (u("units3") - 7.0).powi(2)
                + (u("units4") - 6.0).powi(2))
                / 6.0
        }
    };
    // Deeper nets want more dropout.
    f += (num(p, "dropout") - 0.1 * layers as f64).powi(2);
    f
}

/// The whole CNN space at once (13 parameters, two conditionals) with the
/// interactions of the three above and deterministic seed noise of amplitude 0.02:
/// close to the optimum the noise dominates the differences, as with real trials.
pub const CNN_FULL: &str = "  lr: {type: float, min: 1.0e-6, max: 1.0, log: true}
  optimizer: {type: categorical, values: [sgd, adam, rmsprop]}
  activation: {type: categorical, values: [relu, tanh, gelu]}
  batch_size: {type: int, min: 16, max: 256, step: 16}
  kernel: {type: int, min: 3, max: 7, step: 2}
  filters1: {type: int, min: 16, max: 128, step: 16}
  filters2: {type: int, min: 32, max: 256, step: 32}
  layers: {type: int, min: 1, max: 3}
  units1: {type: int, min: 16, max: 1024, log: true}
  units2: {type: int, min: 16, max: 1024, log: true, when: {layers: {min: 2}}}
  units3: {type: int, min: 16, max: 1024, log: true, when: {layers: {min: 3}}}
  dropout: {type: float, min: 0.0, max: 0.7}
  batchnorm: {type: categorical, values: [true, false]}
";

pub fn cnn_full(p: &Params) -> f64 {
    let opt = choice(p, "optimizer", &["sgd", "adam", "rmsprop"]);
    let act = choice(p, "activation", &["relu", "tanh", "gelu"]);
    let (best_lr, offset, width) = [(-1.2, 0.1, 1.0), (-3.4, 0.0, 0.4), (-3.8, 0.04, 0.5)][opt];
    let batch = num(p, "batch_size");
    let d = num(p, "lr").log10() - (best_lr + 0.4 * (batch / 64.0).log2() + [0.0, -0.5, -0.2][act]);
    let mut f = if d > 1.2 {
        2.0
    } else {
        offset + 0.25 * (d / width).powi(2)
    };
    f += [0.0, 0.12, 0.02][act];
    let k = ((num(p, "kernel") - 3.0) / 2.0) as usize;
    let (c1, c2, w, off) = [
        (96.0, 192.0, 1.5, 0.08),
        (64.0, 128.0, 1.0, 0.04),
        (32.0, 64.0, 0.6, 0.0),
    ][k];
    f += off
        + (((num(p, "filters1") - c1) / 64.0).powi(2)
            + ((num(p, "filters2") - c2) / 128.0).powi(2))
            / (w * w);
    let layers = num(p, "layers") as usize;
    let u = |name: &str| num(p, name).log2();
    f += match layers {
        1 => 0.2,
        2 => 0.06 + ((u("units1") - 8.0).powi(2) + (u("units2") - 6.0).powi(2)) / 16.0,
        _ => {
            ((u("units1") - 9.0).powi(2)
                + (u("units2") - 7.0).powi(2)
                + (u("units3") - 5.0).powi(2))
                / 10.0
        }
    };
    f += (num(p, "dropout") - 0.1 * layers as f64).powi(2);
    let bn = p["batchnorm"] == ParamValue::Bool(true);
    if !bn {
        // Without batch norm large batches train worse.
        f += 0.05 + 0.1 * (batch / 256.0);
    }
    f + 0.02
        * hash_noise(&[
            num(p, "lr").log10(),
            batch,
            num(p, "filters1"),
            num(p, "filters2"),
            num(p, "dropout"),
            opt as f64,
            act as f64,
            k as f64,
        ])
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

/// Every problem: branin, hartmann6, levy5, rosenbrock4, mixed, and the CNN-like
/// cnn_optlr, cnn_kernel, cnn_depth, cnn_full (optimum 0 each; cnn_full's noise is
/// never negative, so its regret floor is the noise at the optimum, at most 0.02).
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
        Problem::new("cnn_optlr", CNN_OPTLR.into(), 0.0, cnn_optlr),
        Problem::new("cnn_kernel", CNN_KERNEL.into(), 0.0, cnn_kernel),
        Problem::new("cnn_depth", CNN_DEPTH.into(), 0.0, cnn_depth),
        Problem::new("cnn_full", CNN_FULL.into(), 0.0, cnn_full),
    ]
}
