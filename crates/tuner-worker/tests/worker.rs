//! The worker loop against a real server on loopback, with scripted trainers.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Map, Value, json};
use tuner_api::{ApiClient, DocFormat, LeasedTrial};
use tuner_core::{StudyState, TrialState};
use tuner_server::{Server, ServerConfig, StartError};
use tuner_store::SqliteStore;
use tuner_worker::{EpochControl, RunOutcome, TrialRunner, Worker, WorkerError, WorkerOptions};

/// A server on `db` as `serve` starts one ([`Server::start`]); dropping it stops it at
/// once, as a crash would.
async fn serve(db: &Path, addr: SocketAddr, lease: Duration) -> (String, Server) {
    let store: Arc<SqliteStore> = Arc::new(SqliteStore::open(db).await.unwrap());
    let config = ServerConfig {
        lease,
        ..ServerConfig::default()
    };
    // A server restarted on the same port may find it held a moment longer by the
    // previous one's listener, dropped by its aborted task.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Server::start(store.clone(), config.clone(), addr).await {
            Ok(server) => return (server.url(), server),
            Err(StartError::Bind { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("server did not start: {e}"),
        }
    }
}

/// Reports `epochs` epochs of a made-up learning curve, sleeping `epoch_time` each.
struct ScriptedRunner {
    epochs: u32,
    epoch_time: Duration,
    runs: AtomicU32,
    /// Epochs trained so far, over all runs: counted before each is reported.
    epochs_trained: AtomicU32,
}

impl ScriptedRunner {
    fn new(epochs: u32, epoch_time: Duration) -> Arc<Self> {
        Arc::new(Self {
            epochs,
            epoch_time,
            runs: AtomicU32::new(0),
            epochs_trained: AtomicU32::new(0),
        })
    }
}

/// Checks `ready` every few milliseconds until it holds; fails the test after 20 s.
async fn wait_until(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ready().await {
        assert!(
            std::time::Instant::now() < deadline,
            "waited 20 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether some trial of the study has reported an epoch: work is in flight.
async fn an_epoch_reported(client: &ApiClient, study: tuner_core::StudyId) -> bool {
    let trials = client.list_trials(study).await.unwrap().trials;
    trials.iter().any(|t| !t.intermediate.is_empty())
}

impl TrialRunner for ScriptedRunner {
    fn trainer_kind(&self) -> &'static str {
        "external"
    }

    fn run(
        &self,
        trial: &LeasedTrial,
        on_epoch: &mut dyn FnMut(u32, &Map<String, Value>) -> EpochControl,
        cancel: &AtomicBool,
    ) -> RunOutcome {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let x = trial.params["x"].as_f64().unwrap();
        if x > 0.9 {
            return RunOutcome::Failed("loss became NaN at epoch 1".into());
        }
        let mut last = Map::new();
        for epoch in 1..=self.epochs {
            std::thread::sleep(self.epoch_time);
            if cancel.load(Ordering::SeqCst) {
                return RunOutcome::Failed("cancelled".into());
            }
            self.epochs_trained.fetch_add(1, Ordering::SeqCst);
            last = json!({"val_accuracy": x * f64::from(epoch) / f64::from(self.epochs)})
                .as_object()
                .unwrap()
                .clone();
            if on_epoch(epoch, &last) == EpochControl::Stop {
                break;
            }
        }
        RunOutcome::Completed(last)
    }
}

fn space(max_trials: u32, parallelism: u32, x_max: f64, extra: &str) -> String {
    format!(
        "version: 1\nname: worker-test\nobjective: {{metric: val_accuracy, direction: maximize}}\n\
         budget: {{max_trials: {max_trials}, parallelism: {parallelism}, max_consecutive_failures: 50}}\n\
         optimizer: {{kind: gp, seed: 0}}\n{extra}\
         parameters:\n  x: {{type: float, min: 0.0, max: {x_max}}}\n"
    )
}

fn worker(
    url: &str,
    runner: Arc<dyn TrialRunner>,
    study: Option<tuner_core::StudyId>,
) -> (Worker, Arc<AtomicBool>) {
    let shutdown = Arc::new(AtomicBool::new(false));
    let w = Worker::new(
        ApiClient::new(url),
        runner,
        WorkerOptions {
            name: "test-worker".into(),
            study,
            max_trials: None,
            patience: Duration::from_secs(20),
        },
        shutdown.clone(),
    );
    (w, shutdown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_run_a_study_to_the_end_reporting_every_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _server) = serve(
        &dir.path().join("w.db"),
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    let client = ApiClient::new(&url);
    // x up to 1.2: trials with x > 0.9 fail in the trainer.
    let study = client
        .create_study(&space(8, 2, 1.2, ""), DocFormat::Yaml)
        .await
        .unwrap();
    let runner = ScriptedRunner::new(3, Duration::from_millis(5));
    let (a, _) = worker(&url, runner.clone(), Some(study.id));
    let (b, _) = worker(&url, runner.clone(), Some(study.id));
    let (sa, sb) = tokio::join!(a.run(), b.run());
    let (sa, sb) = (sa.unwrap(), sb.unwrap());

    let trials = client.list_trials(study.id).await.unwrap().trials;
    let completed: Vec<_> = trials
        .iter()
        .filter(|t| t.state == TrialState::Completed)
        .collect();
    let failed: Vec<_> = trials
        .iter()
        .filter(|t| t.state == TrialState::Failed)
        .collect();
    assert_eq!(completed.len(), 8, "failed trials do not use up the budget");
    assert_eq!(sa.completed + sb.completed, 8);
    assert_eq!((sa.failed + sb.failed) as usize, failed.len());
    for t in &completed {
        assert_eq!(t.intermediate.len(), 3);
        assert_eq!(t.value, t.intermediate[2].value);
    }
    for t in &failed {
        assert_eq!(t.value, None, "a failed run never gets a score");
        assert!(t.failure_reason.as_deref().unwrap().contains("NaN"));
    }
    assert_eq!(
        client.get_study(study.id).await.unwrap().state,
        StudyState::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pruned_trial_stops_and_a_stopped_study_fails_its_unfinished_trial() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _server) = serve(
        &dir.path().join("p.db"),
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    let client = ApiClient::new(&url);
    let study = client
        .create_study(
            &space(
                12,
                1,
                0.9,
                "pruner: {kind: median, warmup_epochs: 1, min_trials: 2}\n",
            ),
            DocFormat::Yaml,
        )
        .await
        .unwrap();
    let (w, _) = worker(&url, ScriptedRunner::new(4, Duration::ZERO), Some(study.id));
    w.run().await.unwrap();
    let trials = client.list_trials(study.id).await.unwrap().trials;
    let pruned: Vec<_> = trials
        .iter()
        .filter(|t| t.state == TrialState::Pruned)
        .collect();
    assert!(
        !pruned.is_empty(),
        "with 12 random trials some fall below the median"
    );
    for t in &pruned {
        assert!(t.intermediate.len() >= 2, "warm-up epoch 1 is never pruned");
        assert!(t.failure_reason.as_deref().unwrap().contains("median"));
        assert_eq!(t.value, t.intermediate.last().unwrap().value);
    }
    assert!(
        pruned.iter().any(|t| t.intermediate.len() < 4),
        "some pruned trials stop before their last epoch"
    );

    let slow = client
        .create_study(&space(5, 1, 0.9, ""), DocFormat::Yaml)
        .await
        .unwrap();
    // Far more epochs than the stop needs to land in: the run ends at the stop.
    let (w, _) = worker(
        &url,
        ScriptedRunner::new(2_000, Duration::from_millis(5)),
        Some(slow.id),
    );
    let run = tokio::spawn(async move { w.run().await.unwrap() });
    wait_until("an epoch of the slow trial", async || {
        an_epoch_reported(&client, slow.id).await
    })
    .await;
    client.control(slow.id, "stop").await.unwrap();
    let summary = run.await.unwrap();
    assert_eq!(summary.stopped, 1);
    let t = &client.list_trials(slow.id).await.unwrap().trials[0];
    assert_eq!(t.state, TrialState::Failed);
    assert!(
        t.failure_reason.as_deref().unwrap().contains("stopped"),
        "{t:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_releases_the_running_trial() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _server) = serve(
        &dir.path().join("s.db"),
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    let client = ApiClient::new(&url);
    let study = client
        .create_study(&space(3, 1, 0.9, ""), DocFormat::Yaml)
        .await
        .unwrap();
    let (w, shutdown) = worker(
        &url,
        ScriptedRunner::new(2_000, Duration::from_millis(5)),
        Some(study.id),
    );
    let run = tokio::spawn(async move { w.run().await.unwrap() });
    wait_until("an epoch reported", async || {
        an_epoch_reported(&client, study.id).await
    })
    .await;
    shutdown.store(true, Ordering::SeqCst);
    let summary = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.released, 1);
    let t = &client.list_trials(study.id).await.unwrap().trials[0];
    assert_eq!(
        t.state,
        TrialState::Pending,
        "back in the queue for another worker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_rides_out_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let (url, server) = serve(&db, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(30)).await;
    let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let client = ApiClient::new(&url);
    let study = client
        .create_study(&space(2, 1, 0.9, ""), DocFormat::Yaml)
        .await
        .unwrap();
    let runner = ScriptedRunner::new(8, Duration::from_millis(100));
    let (w, _) = worker(&url, runner.clone(), Some(study.id));
    let run = tokio::spawn(async move { w.run().await.unwrap() });

    wait_until("an epoch reported", async || {
        an_epoch_reported(&client, study.id).await
    })
    .await;
    drop(server);
    // Back up only once the worker has had an epoch to report to the dead server.
    let trained = runner.epochs_trained.load(Ordering::SeqCst);
    wait_until("an epoch trained while the server is down", async || {
        runner.epochs_trained.load(Ordering::SeqCst) > trained
    })
    .await;
    let (_url, _server) = serve(&db, addr, Duration::from_secs(30)).await;

    let summary = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.completed, 2, "{summary:?}");
    let trials = client.list_trials(study.id).await.unwrap().trials;
    assert_eq!(trials.len(), 2);
    assert!(
        trials
            .iter()
            .all(|t| t.state == TrialState::Completed && t.attempts == 1)
    );
}

/// A real built-in-trainer study on a slice of the real Fashion-MNIST (CI installs
/// `dataset-fashion-mnist`).
const CNN_SPACE: &str = "version: 1\nname: cnn-worker\nobjective: {metric: val_accuracy, direction: maximize}\n\
    trainer: {kind: fashion-mnist-cnn, epochs: 1, train_limit: 1200, val_limit: 600}\n\
    budget: {max_trials: 2, parallelism: 1, max_consecutive_failures: 2}\n\
    parameters:\n  conv1_filters: {type: int, min: 8, max: 16, step: 8}\n  \
    learning_rate: {type: float, min: 1.0e-3, max: 3.0e-3, log: true}\n\
    fixed: {conv2_filters: 16, dense_units: 32, batch_size: 64}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cnn_worker_trains_a_small_study_on_fashion_mnist() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _server) = serve(
        &dir.path().join("cnn.db"),
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    let client = ApiClient::new(&url);
    let study = client
        .create_study(CNN_SPACE, DocFormat::Yaml)
        .await
        .unwrap();
    let runner = Arc::new(tuner_worker::CnnRunner::new(None));
    let (w, _) = worker(&url, runner, Some(study.id));
    let summary = w.run().await.unwrap();
    assert_eq!(summary.completed, 2, "{summary:?}");

    let trials = client.list_trials(study.id).await.unwrap().trials;
    for t in &trials {
        assert_eq!(t.state, TrialState::Completed, "{t:?}");
        let acc = t.value.unwrap();
        assert!(
            acc > 0.5,
            "learning happens: val_accuracy {acc} (chance is 0.1)"
        );
        assert_eq!(t.intermediate.len(), 1);
        let m = t.metrics.as_ref().unwrap();
        for key in [
            "loss",
            "accuracy",
            "val_loss",
            "val_precision",
            "val_recall",
            "val_auc",
        ] {
            assert!(m[key].is_number(), "missing {key} in {m}");
        }
        assert_eq!(m["val_images"], 600);
        let cm = m["confusion_matrix"].as_array().unwrap();
        assert_eq!(cm.len(), 10);
        let total: u64 = cm
            .iter()
            .flat_map(|row| row.as_array().unwrap())
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(
            total, 600,
            "the confusion matrix covers the validation images"
        );
    }
    assert_eq!(
        client.get_study(study.id).await.unwrap().state,
        StudyState::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_data_leases_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _server) = serve(
        &dir.path().join("nodata.db"),
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    let client = ApiClient::new(&url);
    let study = client
        .create_study(CNN_SPACE, DocFormat::Yaml)
        .await
        .unwrap();
    let empty = dir.path().join("no-data-here");
    std::fs::create_dir_all(&empty).unwrap();
    let runner = Arc::new(tuner_worker::CnnRunner::new(Some(empty.clone())));
    let (w, _) = worker(&url, runner, Some(study.id));
    let reason = match w.run().await {
        Err(WorkerError::Environment { reason }) => reason,
        other => panic!("expected an environment error, got {other:?}"),
    };
    assert!(reason.contains("Fashion-MNIST not found"), "{reason}");
    assert!(
        reason.contains(&empty.display().to_string()),
        "names where it looked: {reason}"
    );
    // Nothing was leased: the study runs on, with no trial.
    let study = client.get_study(study.id).await.unwrap();
    assert_eq!(study.state, StudyState::Running);
    assert_eq!(study.counts.total, 0);
}

/// Fails every trial as the worker's fault (its data went missing mid-study).
struct BrokenMachine;

impl TrialRunner for BrokenMachine {
    fn trainer_kind(&self) -> &'static str {
        "external"
    }

    fn run(
        &self,
        _: &LeasedTrial,
        _: &mut dyn FnMut(u32, &Map<String, Value>) -> EpochControl,
        _: &AtomicBool,
    ) -> RunOutcome {
        RunOutcome::WorkerFault("out of memory".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_of_the_worker_releases_the_trial_and_leaves_the_study_running() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _server) = serve(
        &dir.path().join("broken.db"),
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    let client = ApiClient::new(&url);
    // One failure in a row would fail the study, were the fault counted.
    let study = client
        .create_study(
            &space(3, 1, 0.5, "").replace(
                "max_consecutive_failures: 50",
                "max_consecutive_failures: 1",
            ),
            DocFormat::Yaml,
        )
        .await
        .unwrap();
    for _ in 0..3 {
        let (w, _) = worker(&url, Arc::new(BrokenMachine), Some(study.id));
        match w.run().await {
            Err(WorkerError::Environment { reason }) => assert_eq!(reason, "out of memory"),
            other => panic!("expected an environment error, got {other:?}"),
        }
    }
    let trials = client.list_trials(study.id).await.unwrap().trials;
    assert_eq!(
        trials.len(),
        1,
        "the same trial, handed out again each time"
    );
    assert_eq!(trials[0].state, TrialState::Pending);
    assert_eq!(trials[0].failure_reason, None);
    let study = client.get_study(study.id).await.unwrap();
    assert_eq!(study.state, StudyState::Running);
    assert_eq!(study.counts.failed, 0);
}

/// A TCP forwarder to `target`, standing in for another replica of the same service
/// (replicas share the database, so any one honours a lease taken from another).
/// Aborting the handle makes it die as a crashed server does: its listener closes
/// and every open connection drops.
async fn replica_of(target: &str) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let target = target.trim_start_matches("http://").to_owned();
    let handle = tokio::spawn(async move {
        // Dropped with this task, which aborts every forwarded connection.
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (url, handle)
}

fn worker_of(servers: &[&str], runner: Arc<dyn TrialRunner>, study: tuner_core::StudyId) -> Worker {
    Worker::new(
        ApiClient::with_servers(servers).unwrap(),
        runner,
        WorkerOptions {
            name: "failover-worker".into(),
            study: Some(study),
            max_trials: None,
            patience: Duration::from_secs(20),
        },
        Arc::new(AtomicBool::new(false)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_whose_first_server_is_dead_works_through_the_second() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _server) = serve(
        &dir.path().join("dead-first.db"),
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    let client = ApiClient::new(&url);
    let study = client
        .create_study(&space(3, 1, 0.9, ""), DocFormat::Yaml)
        .await
        .unwrap();
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let w = worker_of(
        &[&dead, &url],
        ScriptedRunner::new(2, Duration::from_millis(5)),
        study.id,
    );
    let summary = tokio::time::timeout(Duration::from_secs(10), w.run())
        .await
        .expect("no backoff on the dead server: the second answers at once")
        .unwrap();
    assert_eq!(summary.completed, 3, "{summary:?}");
    assert_eq!(
        client.get_study(study.id).await.unwrap().state,
        StudyState::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_whose_server_dies_mid_trial_finishes_through_the_next_keeping_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    // A short lease: were the worker to wait for the dead server, its lease would run out.
    let (url, _server) = serve(
        &dir.path().join("dies.db"),
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(2),
    )
    .await;
    let (doomed_url, doomed) = replica_of(&url).await;
    let (other_url, _other) = replica_of(&url).await;
    let client = ApiClient::new(&url);
    let study = client
        .create_study(&space(2, 1, 0.9, ""), DocFormat::Yaml)
        .await
        .unwrap();
    let w = worker_of(
        &[&doomed_url, &other_url],
        ScriptedRunner::new(10, Duration::from_millis(100)),
        study.id,
    );
    let run = tokio::spawn(async move { w.run().await.unwrap() });

    // Kill the first replica once the first trial has reported an epoch through it.
    wait_until("an epoch reported", async || {
        an_epoch_reported(&client, study.id).await
    })
    .await;
    doomed.abort();
    let _ = doomed.await;

    let summary = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.completed, 2, "{summary:?}");
    assert_eq!(summary.lost, 0, "{summary:?}");
    let trials = client.list_trials(study.id).await.unwrap().trials;
    assert_eq!(trials.len(), 2);
    for t in &trials {
        assert_eq!(t.state, TrialState::Completed, "{t:?}");
        assert_eq!(t.attempts, 1, "the lease survived the failover: {t:?}");
        assert_eq!(t.intermediate.len(), 10, "no epoch lost: {t:?}");
    }
}
