//! Black-box optimization benchmark: GP vs random on branin, hartmann6, levy5,
//! rosenbrock4 (definitions and bounds as in `../shared/bench/bbo_harness.py`), the
//! 10-parameter mixed categorical / int / log / conditional space, plus suggestion
//! latency versus the number of completed trials.
//!
//! cargo run --release -p tuner-optim --example bbo -- [--seeds 10] [--budget 100]
//!     [--problems branin,hartmann6,levy5,rosenbrock4,mixed] [--samplers gp,random]
//!     [--workers 1] [--pending kb|cl-mean|cl-worst|ignore] [--initial 10]
//!     [--latency] [--no-regret] [--threads 1] [--first-seed 0]
//!     [--json-out FILE] [--label tuner]
//!
//! `--json-out` writes every run as `tuner-cli bench report` reads them (`{"runs": [..]}`,
//! sampler `LABEL-NAME`): the in-process sampler suggests exactly what the HTTP path
//! does, so this is the quick way to compare variants with the report's statistics.
//!
//! Samplers: gp, gp-nowarp, gp-cost (cost-aware, synthetic costs), random; `--latency`
//! times gp and gp-cost on the same histories.

use std::time::Instant;

use tuner_core::Direction;
use tuner_optim::{
    CostAware, GpConfig, GpSampler, Observation, Outcome, PendingStrategy, RandomSampler, Sampler,
    SuggestContext,
    problems::{self, Problem},
};

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
    first_seed: u64,
    json_out: Option<String>,
    label: String,
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
        first_seed: 0,
        json_out: None,
        label: "tuner".into(),
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
            "--first-seed" => a.first_seed = val().parse().expect("--first-seed N"),
            "--json-out" => a.json_out = Some(val()),
            "--label" => a.label = val(),
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
        // Cost-aware with the whole budget ahead (α = 1): what latency it adds.
        "gp-cost" => Box::new(GpSampler::new(GpConfig {
            initial_trials: args.initial,
            pending: args.pending,
            cost_aware: Some(CostAware {
                budget_trials: 1_000_000,
            }),
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
                    batch: &[],
                    seen: None,
                })
                .expect("suggestion");
            history.push(Observation::new(params, Outcome::Pending));
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
    let mut records: Vec<String> = Vec::new();
    for problem in problems::all()
        .iter()
        .filter(|p| args.problems.iter().any(|n| n == p.name))
    {
        for name in &args.samplers {
            let sampler = make_sampler(name, args);
            let started = Instant::now();
            let seeds: Vec<u64> = (args.first_seed..args.first_seed + args.seeds).collect();
            let curves: Vec<(u64, Vec<f64>)> = std::thread::scope(|scope| {
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
                all
            });
            // Threads share the wall time, so the mean ask is per thread.
            let ask_ms = 1e3 * started.elapsed().as_secs_f64() * args.threads as f64
                / (args.seeds as usize * args.budget) as f64;
            for (seed, curve) in &curves {
                let regret: Vec<String> = curve.iter().map(|r| format!("{r:?}")).collect();
                records.push(format!(
                    "{{\"problem\":\"{}\",\"sampler\":\"{}-{name}\",\"seed\":{seed},\"regret\":[{}],\"ask_ms\":{ask_ms:?}}}",
                    problem.name,
                    args.label,
                    regret.join(",")
                ));
            }
            let curves: Vec<Vec<f64>> = curves.into_iter().map(|(_, c)| c).collect();
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
    if let Some(path) = &args.json_out {
        let text = format!("{{\"runs\":[{}]}}\n", records.join(",\n"));
        std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }
}

/// Median suggestion time with `n` completed (random) trials in the history.
fn latency(args: &Args) {
    println!("suggestion latency (GpSampler, median of 5), ms");
    let all = problems::all();
    for name in ["mixed", "cnn_full", "hartmann6"] {
        let problem = all.iter().find(|p| p.name == name).unwrap();
        for sampler_name in ["gp", "gp-cost"] {
            let sampler = make_sampler(sampler_name, args);
            let mut line = format!(
                "{:<12} {:<8} ({} params)",
                name,
                sampler_name,
                problem.space.len()
            );
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
                            batch: &[],
                            seen: None,
                        })
                        .unwrap();
                    let value = (problem.f)(&params);
                    let mut observation = Observation::new(params, Outcome::Completed(value));
                    // A cost that varies over the space (ignored by plain gp).
                    observation.cost = Some(1.0 + value.abs().fract() * 9.0);
                    history.push(observation);
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
                                batch: &[],
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
