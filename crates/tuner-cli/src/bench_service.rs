//! `tuner-cli bench service`: ask + complete cycles per second through the real HTTP
//! stack, with many concurrent workers on one study, checking nothing is lost or
//! handed out twice. On PostgreSQL, `--replicas N` runs N servers on the database (in
//! this process, each with its own connection pool) and spreads the workers over them.

use std::{collections::HashSet, time::Instant};

use anyhow::{Context, Result, bail};
use tuner_api::{ApiClient, AskAnswer, AskRequest, CompleteRequest, DocFormat};
use tuner_core::{TrialState, config_key};
use tuner_server::ServerConfig;

use crate::db::{DbTarget, OpenStore};

/// One server of the benchmark, on a loopback port.
struct BenchServer {
    store: OpenStore,
    server: tuner_server::Server,
}

impl BenchServer {
    async fn start(target: &DbTarget) -> Result<Self> {
        let store = OpenStore::open(target).await?;
        let server = tuner_server::Server::start(
            store.shared(),
            ServerConfig::default(),
            (std::net::Ipv4Addr::LOCALHOST, 0).into(),
        )
        .await?;
        Ok(Self { store, server })
    }

    async fn stop(self) {
        // At once: the benchmark's requests are all answered by now.
        drop(self.server);
        self.store.close().await;
    }
}

/// `family/model` of the first processor, as in /proc/cpuinfo.
pub fn host_cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "{} (family {}, model {}), {} cores",
        field("model name"),
        field("cpu family"),
        field("model"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

pub async fn bench_service(
    workers: usize,
    trials: u32,
    replicas: usize,
    db: Option<&str>,
) -> Result<()> {
    if workers == 0 || trials == 0 || replicas == 0 {
        bail!("--workers, --trials and --replicas must be at least 1");
    }
    let dir = std::env::temp_dir().join(format!("tuner-bench-{}", std::process::id()));
    let target = match db {
        Some(db) => DbTarget::parse(db),
        None => {
            std::fs::create_dir_all(&dir)?;
            DbTarget::Sqlite(dir.join("bench.db"))
        }
    };
    if replicas > 1 && matches!(target, DbTarget::Sqlite(_)) {
        bail!("--replicas needs a PostgreSQL --db: a SQLite file has one server");
    }
    let mut servers = Vec::with_capacity(replicas);
    for _ in 0..replicas {
        servers.push(
            BenchServer::start(&target)
                .await
                .with_context(|| format!("cannot start a server on {}", target.describe()))?,
        );
    }
    println!(
        "host: {}; database: {}; {replicas} server(s)",
        host_cpu(),
        target.describe()
    );
    let clients: Vec<ApiClient> = servers
        .iter()
        .map(|s| ApiClient::new(s.server.url()))
        .collect();
    let client = clients[0].clone();
    let space = format!(
        "version: 1\nname: bench-service\nobjective: {{metric: score, direction: maximize}}\n\
         budget: {{max_trials: {trials}, parallelism: {workers}}}\noptimizer: {{kind: random, seed: 1}}\n\
         parameters:\n  x: {{type: float, min: 0.0, max: 1.0}}\n  \
         k: {{type: categorical, values: [a, b, c]}}\n  n: {{type: int, min: 1, max: 100}}\n"
    );
    let study = client.create_study(&space, DocFormat::Yaml).await?;
    let progress = crate::progress::bar("ask + complete", u64::from(trials));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(workers);
    for i in 0..workers {
        let client = clients[i % clients.len()].clone();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let req = AskRequest {
                worker: Some(format!("bench-{i}")),
            };
            let mut done = 0u32;
            loop {
                match client.ask(study.id, &req).await? {
                    AskAnswer::Done => return Ok::<u32, anyhow::Error>(done),
                    AskAnswer::Wait(_) => tokio::task::yield_now().await,
                    AskAnswer::Leased(a) => {
                        let x = a.trial.params["x"].as_f64().unwrap_or(0.0);
                        client
                            .complete(
                                a.trial.id,
                                &CompleteRequest {
                                    lease_token: Some(a.lease.token),
                                    value: Some(x),
                                    metrics: Default::default(),
                                },
                            )
                            .await?;
                        done += 1;
                        progress.inc(1);
                    }
                }
            }
        }));
    }
    let mut completed = 0;
    for t in tasks {
        completed += t.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.finish_and_clear();

    let list = client.list_trials(study.id).await?.trials;
    let numbers_dense = list.iter().enumerate().all(|(i, t)| t.number == i as u64);
    let distinct: HashSet<String> = list.iter().map(|t| config_key(&t.params)).collect();
    let all_completed = list.iter().all(|t| t.state == TrialState::Completed);
    println!(
        "service: {:.0} ask+complete cycles/s ({completed} trials, {workers} concurrent workers, {seconds:.2}s)",
        f64::from(completed) / seconds
    );
    println!(
        "check: {} trials stored (budget {trials}), numbers dense: {numbers_dense}, distinct configs: {}, all completed: {all_completed}",
        list.len(),
        distinct.len()
    );
    for server in servers {
        server.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    if list.len() != trials as usize
        || completed != trials
        || !numbers_dense
        || distinct.len() != list.len()
        || !all_completed
    {
        bail!("the service lost or duplicated trials");
    }
    Ok(())
}
