//! Black-box optimization benchmark: GP vs random on branin, hartmann6, levy5,
//! rosenbrock4 (definitions and bounds as in `../shared/bench/bbo_harness.py`) and a
//! 10-parameter mixed categorical / int / log / conditional space, plus suggestion
//! latency versus the number of completed trials.
//!
//! cargo run --release -p tuner-optim --example bbo -- [--seeds 10] [--budget 100]
//!     [--problems branin,hartmann6,levy5,rosenbrock4,mixed] [--samplers gp,random]
//!     [--workers 1] [--pending kb|cl-mean|cl-worst|ignore] [--initial 10]
//!     [--latency] [--no-regret] [--threads 1]

use std::time::Instant;

use tuner_core::{Direction, ParamValue, Params, SearchSpace, SpecFormat, parse_spec};
use tuner_optim::{
    GpConfig, GpSampler, Observation, Outcome, PendingStrategy, RandomSampler, Sampler,
    SuggestContext,
};

struct Problem {
    name: &'static str,
    space: SearchSpace,
    optimum: f64,
    f: fn(&Params) -> f64,
}

fn space(params: &str) -> SearchSpace {
    let doc = format!(
        "version: 1\nname: bbo\nobjective: {{metric: y, direction: minimize}}\nbudget: {{max_trials: 1000}}\nparameters:\n{params}"
    );
    parse_spec(&doc, SpecFormat::Yaml)
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

fn branin(p: &Params) -> f64 {
    let (x1, x2) = (p["x1"].as_f64().unwrap(), p["x2"].as_f64().unwrap());
    let pi = std::f64::consts::PI;
    let (b, c, t) = (5.1 / (4.0 * pi * pi), 5.0 / pi, 1.0 / (8.0 * pi));
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

fn hartmann6(p: &Params) -> f64 {
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

fn levy5(p: &Params) -> f64 {
    let pi = std::f64::consts::PI;
    let w: Vec<f64> = xs(p, 5).iter().map(|x| 1.0 + (x - 1.0) / 4.0).collect();
    let d = w.len();
    let mut s = (pi * w[0]).sin().powi(2);
    for wi in &w[..d - 1] {
        s += (wi - 1.0).powi(2) * (1.0 + 10.0 * (pi * wi + 1.0).sin().powi(2));
    }
    s + (w[d - 1] - 1.0).powi(2) * (1.0 + (2.0 * pi * w[d - 1]).sin().powi(2))
}

fn rosenbrock4(p: &Params) -> f64 {
    let x = xs(p, 4);
    (0..3)
        .map(|i| 100.0 * (x[i + 1] - x[i] * x[i]).powi(2) + (1.0 - x[i]).powi(2))
        .sum()
}

/// A synthetic "CNN tuning" objective (minimize, optimum 0) with every parameter kind:
/// the learning rate's best value depends on the optimizer; kernel size only pays off
/// when both filter counts change with it (a runner-up region at kernel 3); a
/// conditional width that matters only with two or more dense layers.
const MIXED: &str = "  lr: {type: float, min: 1.0e-5, max: 1.0, log: true}
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

fn mixed(p: &Params) -> f64 {
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

fn problems() -> Vec<Problem> {
    vec![
        Problem {
            name: "branin",
            space: space(
                "  x1: {type: float, min: -5.0, max: 10.0}\n  x2: {type: float, min: 0.0, max: 15.0}\n",
            ),
            optimum: 0.397_887_357_729_739,
            f: branin,
        },
        Problem {
            name: "hartmann6",
            space: space(&floats(6, 0.0, 1.0)),
            optimum: -3.322_368_011_415_51,
            f: hartmann6,
        },
        Problem {
            name: "levy5",
            space: space(&floats(5, -10.0, 10.0)),
            optimum: 0.0,
            f: levy5,
        },
        Problem {
            name: "rosenbrock4",
            space: space(&floats(4, -5.0, 10.0)),
            optimum: 0.0,
            f: rosenbrock4,
        },
        Problem {
            name: "mixed",
            space: space(MIXED),
            optimum: 0.0,
            f: mixed,
        },
    ]
}

struct Args {
    seeds: u64,
    budget: usize,
    problems: Vec<String>,
    samplers: Vec<String>,
    workers: usize,
    pending: PendingStrategy,
    initial: u32,
    latency: bool,
    regret: bool,
    threads: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        seeds: 10,
        budget: 100,
        problems: "branin,hartmann6,levy5,rosenbrock4,mixed"
            .split(',')
            .map(String::from)
            .collect(),
        samplers: vec!["gp".into(), "random".into()],
        workers: 1,
        pending: PendingStrategy::KrigingBeliever,
        initial: GpConfig::default().initial_trials,
        latency: false,
        regret: true,
        threads: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let val = || args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--seeds" => a.seeds = val().parse().expect("--seeds N"),
            "--budget" => a.budget = val().parse().expect("--budget N"),
            "--problems" => a.problems = val().split(',').map(String::from).collect(),
            "--samplers" => a.samplers = val().split(',').map(String::from).collect(),
            "--workers" => a.workers = val().parse().expect("--workers N"),
            "--initial" => a.initial = val().parse().expect("--initial N"),
            "--threads" => a.threads = val().parse().expect("--threads N"),
            "--pending" => {
                a.pending = match val().as_str() {
                    "kb" => PendingStrategy::KrigingBeliever,
                    "cl-mean" => PendingStrategy::ConstantLiarMean,
                    "cl-worst" => PendingStrategy::ConstantLiarWorst,
                    "ignore" => PendingStrategy::Ignore,
                    other => panic!("unknown --pending {other}"),
                }
            }
            "--latency" => {
                a.latency = true;
                i += 1;
                continue;
            }
            "--no-regret" => {
                a.regret = false;
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

fn make_sampler(name: &str, args: &Args) -> Box<dyn Sampler> {
    match name {
        "gp" => Box::new(GpSampler::new(GpConfig {
            initial_trials: args.initial,
            pending: args.pending,
            ..GpConfig::default()
        })),
        "gp-nowarp" => Box::new(GpSampler::new(GpConfig {
            initial_trials: args.initial,
            pending: args.pending,
            warp_targets: false,
            ..GpConfig::default()
        })),
        "random" => Box::new(RandomSampler),
        other => panic!("unknown sampler {other}"),
    }
}

/// One run: `workers` trials in flight, the oldest finishing first; returns best-so-far
/// after each completed trial.
fn run(
    problem: &Problem,
    sampler: &dyn Sampler,
    seed: u64,
    budget: usize,
    workers: usize,
) -> Vec<f64> {
    let mut history: Vec<Observation> = Vec::new();
    let mut in_flight: Vec<usize> = Vec::new();
    let mut best = f64::INFINITY;
    let mut curve = Vec::with_capacity(budget);
    let mut asked = 0;
    while curve.len() < budget {
        while asked < budget && in_flight.len() < workers {
            let params = sampler
                .suggest(&SuggestContext {
                    space: &problem.space,
                    direction: Direction::Minimize,
                    seed,
                    trial_number: asked as u64,
                    history: &history,
                    seen: None,
                })
                .expect("suggestion");
            history.push(Observation {
                params,
                outcome: Outcome::Pending,
            });
            in_flight.push(asked);
            asked += 1;
        }
        let done = in_flight.remove(0);
        let value = (problem.f)(&history[done].params);
        history[done].outcome = Outcome::Completed(value);
        best = best.min(value);
        curve.push(best - problem.optimum);
    }
    curve
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn regret_table(args: &Args) {
    let checkpoints: Vec<usize> = [10, 25, 50, 100, 200]
        .into_iter()
        .filter(|&c| c <= args.budget)
        .collect();
    println!(
        "simple regret (best − optimum), median [IQR] over {} seeds, {} worker(s)",
        args.seeds, args.workers
    );
    for problem in problems()
        .iter()
        .filter(|p| args.problems.iter().any(|n| n == p.name))
    {
        for name in &args.samplers {
            let sampler = make_sampler(name, args);
            let started = Instant::now();
            let seeds: Vec<u64> = (0..args.seeds).collect();
            let curves: Vec<Vec<f64>> = std::thread::scope(|scope| {
                let chunks: Vec<Vec<u64>> = (0..args.threads)
                    .map(|t| {
                        seeds
                            .iter()
                            .copied()
                            .skip(t)
                            .step_by(args.threads)
                            .collect()
                    })
                    .collect();
                let handles: Vec<_> = chunks
                    .into_iter()
                    .map(|chunk| {
                        let sampler = &sampler;
                        scope.spawn(move || {
                            chunk
                                .into_iter()
                                .map(|s| {
                                    (
                                        s,
                                        run(
                                            problem,
                                            sampler.as_ref(),
                                            s,
                                            args.budget,
                                            args.workers,
                                        ),
                                    )
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                let mut all: Vec<(u64, Vec<f64>)> = handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap())
                    .collect();
                all.sort_by_key(|(s, _)| *s);
                all.into_iter().map(|(_, c)| c).collect()
            });
            let mut line = format!("{:<12} {:<10}", problem.name, name);
            for &c in &checkpoints {
                let mut v: Vec<f64> = curves.iter().map(|curve| curve[c - 1]).collect();
                v.sort_by(f64::total_cmp);
                line.push_str(&format!(
                    "  @{c}: {:.3e} [{:.2e}, {:.2e}]",
                    quantile(&v, 0.5),
                    quantile(&v, 0.25),
                    quantile(&v, 0.75)
                ));
            }
            line.push_str(&format!("  ({:.1} s)", started.elapsed().as_secs_f64()));
            println!("{line}");
        }
    }
}

/// Median suggestion time with `n` completed (random) trials in the history.
fn latency(args: &Args) {
    println!("suggestion latency (GpSampler, median of 5), ms");
    let all = problems();
    for name in ["mixed", "hartmann6"] {
        let problem = all.iter().find(|p| p.name == name).unwrap();
        let sampler = make_sampler("gp", args);
        let mut line = format!("{:<12} ({} params)", name, problem.space.len());
        for n in [10usize, 50, 100, 200, 500, 1000] {
            let mut history = Vec::new();
            for i in 0..n {
                let params = RandomSampler
                    .suggest(&SuggestContext {
                        space: &problem.space,
                        direction: Direction::Minimize,
                        seed: 1,
                        trial_number: i as u64,
                        history: &history,
                        seen: None,
                    })
                    .unwrap();
                let value = (problem.f)(&params);
                history.push(Observation {
                    params,
                    outcome: Outcome::Completed(value),
                });
            }
            let mut times: Vec<f64> = (0..5)
                .map(|k| {
                    let t = Instant::now();
                    sampler
                        .suggest(&SuggestContext {
                            space: &problem.space,
                            direction: Direction::Minimize,
                            seed: 7 + k,
                            trial_number: n as u64,
                            history: &history,
                            seen: None,
                        })
                        .unwrap();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            times.sort_by(f64::total_cmp);
            line.push_str(&format!("  n={n}: {:.1}", times[2]));
        }
        println!("{line}");
    }
}

fn main() {
    let args = parse_args();
    if args.regret {
        regret_table(&args);
    }
    if args.latency {
        latency(&args);
    }
}
