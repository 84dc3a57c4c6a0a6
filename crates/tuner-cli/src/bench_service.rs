//! `tuner-cli bench service`: ask + complete cycles per second through the real HTTP
//! stack, with many concurrent workers on one study, checking nothing is lost or
//! handed out twice.

use std::{collections::HashSet, sync::Arc, time::Instant};

use anyhow::{Result, bail};
use tuner_api::{ApiClient, AskAnswer, AskRequest, CompleteRequest, DocFormat};
use tuner_core::{TrialState, config_key};
use tuner_server::{AppState, ServerConfig};
use tuner_store::SqliteStore;

pub async fn bench_service(workers: usize, trials: u32) -> Result<()> {
    if workers == 0 || trials == 0 {
        bail!("--workers and --trials must be at least 1");
    }
    let dir = std::env::temp_dir().join(format!("tuner-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("bench.db");
    let store = SqliteStore::open(&db).await?;
    let state = AppState::new(Arc::new(store.clone()), ServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, tuner_server::app(state)).await });
    let client = ApiClient::new(&url);
    let space = format!(
        "version: 1\nname: bench-service\nobjective: {{metric: score, direction: maximize}}\n\
         budget: {{max_trials: {trials}, parallelism: {workers}}}\noptimizer: {{kind: random, seed: 1}}\n\
         parameters:\n  x: {{type: float, min: 0.0, max: 1.0}}\n  \
         k: {{type: categorical, values: [a, b, c]}}\n  n: {{type: int, min: 1, max: 100}}\n"
    );
    let study = client.create_study(&space, DocFormat::Yaml).await?;
    let completed_so_far = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let progress = {
        let done = completed_so_far.clone();
        tokio::spawn(async move {
            let mut bar = crate::output::Progress::new("ask + complete", u64::from(trials));
            loop {
                bar.set(done.load(std::sync::atomic::Ordering::Relaxed));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(workers);
    for i in 0..workers {
        let client = client.clone();
        let completed_so_far = completed_so_far.clone();
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
                        completed_so_far.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    // Dropping the bar's task clears its line.
    progress.abort();
    let _ = progress.await;

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
    server.abort();
    store.close().await;
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
