//! `tuner-cli bench optimizer`: samplers on standard test problems, driven through
//! the real HTTP ask/complete API (the in-process figures come from
//! `cargo run --release -p tuner-optim --example bbo`).
//!
//! `--json-out` keeps every run's best-so-far regret trace for `bench report`, which
//! puts them beside Optuna's from `bench/optuna_side_by_side.py`; that script reads the
//! problems from `--list-problems` and checks its objectives against `--eval-points`.

use std::{sync::Arc, time::Instant};

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tuner_api::{ApiClient, AskAnswer, AskRequest, CompleteRequest, DocFormat};
use tuner_optim::problems;

use crate::bench_report::quantile;
use tuner_server::ServerConfig;
use tuner_store::SqliteStore;

pub struct OptimizerBench {
    pub problems: Vec<String>,
    pub optimizers: Vec<String>,
    pub seeds: u32,
    pub budget: u32,
    pub json_out: Option<std::path::PathBuf>,
    /// Prefix of the sampler names in `json_out`.
    pub label: String,
}

/// One run of one sampler on one problem with one seed, as `bench report` reads it.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    pub problem: String,
    pub sampler: String,
    pub seed: u32,
    /// `regret[i]`: best value among the first `i + 1` trials minus the optimum.
    pub regret: Vec<f64>,
    /// Mean wall time of the sampler's suggestion, milliseconds.
    pub ask_ms: f64,
}

/// `{"runs": [...]}`: the file format shared with the Python side.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct RunFile {
    pub runs: Vec<RunRecord>,
}

/// `--list-problems`: every problem's name, optimum and search space.
pub fn list_problems() -> Result<()> {
    let list: Vec<serde_json::Value> = problems::all()
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p.name,
                "optimum": p.optimum,
                "parameters": p.space.params(),
            })
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&list)?);
    Ok(())
}

/// `--eval-points N`: `N` uniform configurations per problem (conditional parameters
/// present exactly when active) with their objective values.
pub fn eval_points(n: u32) -> Result<()> {
    let mut out = Vec::new();
    for problem in problems::all() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..n {
            let params = problem.space.decode_with(|_| rng.random());
            let value = (problem.f)(&params);
            out.push(
                serde_json::json!({"problem": problem.name, "params": params, "value": value}),
            );
        }
    }
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

pub async fn bench_optimizer(args: OptimizerBench) -> Result<()> {
    if args.seeds == 0 || args.budget == 0 {
        bail!("--seeds and --budget must be at least 1");
    }
    let all = problems::all();
    let mut args = args;
    if args.problems.iter().any(|n| n == "all") {
        args.problems = all.iter().map(|p| p.name.to_string()).collect();
    }
    let mut records = Vec::new();
    for name in &args.problems {
        if !all.iter().any(|p| p.name == name) {
            let names: Vec<&str> = all.iter().map(|p| p.name).collect();
            bail!(
                "unknown problem `{name}`; expected one of {}",
                names.join(", ")
            );
        }
    }
    let dir = std::env::temp_dir().join(format!("tuner-bbo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = SqliteStore::open(&dir.join("bbo.db")).await?;
    let server = tuner_server::Server::start(
        Arc::new(store.clone()),
        ServerConfig::default(),
        (std::net::Ipv4Addr::LOCALHOST, 0).into(),
    )
    .await?;
    let url = server.url();
    let client = ApiClient::new(&url);
    let checkpoints: Vec<u32> = [10, 25, 50, 100, 200]
        .into_iter()
        .filter(|c| *c <= args.budget)
        .collect();
    println!(
        "median simple regret [IQR] over {} seeds, through HTTP ask/complete",
        args.seeds
    );
    for problem in all
        .iter()
        .filter(|p| args.problems.iter().any(|n| n == p.name))
    {
        for optimizer in &args.optimizers {
            // regrets[c][seed]
            let mut regrets: Vec<Vec<f64>> = vec![Vec::new(); checkpoints.len()];
            let mut ask_seconds = 0.0;
            let mut asks = 0u32;
            let progress = crate::progress::bar(
                format!("{} {optimizer}", problem.name),
                u64::from(args.seeds * args.budget),
            );
            for seed in 0..args.seeds {
                let doc = problems::document(
                    &format!("bbo-{}-{optimizer}-{seed}", problem.name),
                    &problem.parameters,
                    args.budget,
                    &format!("{{kind: {optimizer}, seed: {seed}}}"),
                );
                let study = client.create_study(&doc, DocFormat::Yaml).await?;
                let mut best = f64::INFINITY;
                let mut trace = Vec::with_capacity(args.budget as usize);
                loop {
                    let started = Instant::now();
                    let answer = client.ask(study.id, &AskRequest::default()).await?;
                    match answer {
                        AskAnswer::Done => break,
                        AskAnswer::Wait(d) => tokio::time::sleep(d).await,
                        AskAnswer::Leased(a) => {
                            ask_seconds += started.elapsed().as_secs_f64();
                            asks += 1;
                            progress.set_position(u64::from(asks));
                            let y = (problem.f)(&a.trial.params);
                            best = best.min(y);
                            trace.push(best - problem.optimum);
                            client
                                .complete(
                                    a.trial.id,
                                    &CompleteRequest {
                                        lease_token: Some(a.lease.token),
                                        value: Some(y),
                                        metrics: Default::default(),
                                    },
                                )
                                .await?;
                        }
                    }
                }
                for (i, c) in checkpoints.iter().enumerate() {
                    regrets[i].push(trace[*c as usize - 1]);
                }
                records.push(RunRecord {
                    problem: problem.name.to_string(),
                    sampler: format!("{}-{optimizer}", args.label),
                    seed,
                    regret: trace,
                    ask_ms: 0.0,
                });
            }
            let cells: Vec<String> = checkpoints
                .iter()
                .zip(&mut regrets)
                .map(|(c, r)| {
                    r.sort_by(f64::total_cmp);
                    format!(
                        "@{c}: {:.3e} [{:.2e}, {:.2e}]",
                        quantile(r, 0.5),
                        quantile(r, 0.25),
                        quantile(r, 0.75)
                    )
                })
                .collect();
            progress.finish_and_clear();
            // One mean per problem and sampler (asks are timed across all seeds).
            let ask_ms = 1000.0 * ask_seconds / f64::from(asks.max(1));
            for r in records.iter_mut().rev().take(args.seeds as usize) {
                r.ask_ms = ask_ms;
            }
            println!(
                "{:<12} {:<7} {}  (ask {:.1} ms on average)",
                problem.name,
                optimizer,
                cells.join("  "),
                1000.0 * ask_seconds / f64::from(asks.max(1))
            );
        }
    }
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string(&RunFile { runs: records })?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    drop(server);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
