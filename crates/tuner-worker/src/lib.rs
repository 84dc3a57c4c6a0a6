//! tuner-worker: the lease → train → report loop, over HTTP.
//!
//! Owns [`Worker`], which asks the server for trials, runs each through a
//! [`TrialRunner`] on a blocking thread, heartbeats while it runs, reports every
//! epoch (stopping when the server says so), and completes, fails or releases the
//! trial. It rides out server restarts by retrying with backoff; given several
//! replicas, its client sends each call on to the next one when a server is gone, and
//! the lease, which lives in the shared database, stays valid there.
//!
//! Talks to the server only through `tuner-api`'s HTTP client: it must not depend on
//! the server, the store or the optimizer, so workers can run on other machines.

mod cnn;
mod runner;

pub use cnn::{CnnRunner, DEFAULT_EPOCHS, options_for};

pub use runner::{EpochControl, RunOutcome, TrialRunner};

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Map, Value};
use tuner_api::{
    ApiClient, AskAnswer, AskAnyRequest, AskRequest, ClientError, CompleteRequest, FailRequest,
    HeartbeatRequest, LeasedTrial, ReleaseRequest, ReportAction, ReportRequest,
};
use tuner_core::{StudyId, TrialState};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// This worker cannot train (its data is missing, its trainer does not run, it ran
    /// out of memory): found before leasing, or mid-trial, whose trial was then released.
    #[error("this worker cannot train: {reason}")]
    Environment { reason: String },
    /// The server answered in a way retrying cannot fix (e.g. the study is unknown).
    #[error("the server refused: {0}")]
    Refused(#[source] ClientError),
    /// The server stayed unreachable for longer than the worker is willing to wait.
    #[error("gave up after {waited:?} without reaching the server: {source}")]
    Unreachable {
        waited: Duration,
        #[source]
        source: ClientError,
    },
}

/// Where a worker gets its trials and how long it goes on.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Shown in trial listings.
    pub name: String,
    /// Work on this study only, and exit once it is done; otherwise serve every
    /// running study of the runner's trainer kind until stopped.
    pub study: Option<StudyId>,
    /// Stop after this many trials.
    pub max_trials: Option<u32>,
    /// How long to keep retrying an unreachable server before giving up.
    pub patience: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            name: format!("worker-{}", std::process::id()),
            study: None,
            max_trials: None,
            patience: Duration::from_secs(300),
        }
    }
}

/// What a worker did, for its exit message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkerSummary {
    pub completed: u32,
    pub failed: u32,
    pub stopped: u32,
    pub released: u32,
    pub lost: u32,
}

impl WorkerSummary {
    pub fn trials(&self) -> u32 {
        self.completed + self.failed + self.stopped + self.released + self.lost
    }
}

pub struct Worker {
    client: ApiClient,
    runner: Arc<dyn TrialRunner>,
    options: WorkerOptions,
    /// Set from outside (Ctrl-C) to finish gracefully: the current trial is released.
    shutdown: Arc<AtomicBool>,
}

/// How one trial ended, from the worker's side.
enum TrialEnd {
    Completed,
    Failed,
    Stopped,
    Released,
    Lost,
}

impl Worker {
    pub fn new(
        client: ApiClient,
        runner: Arc<dyn TrialRunner>,
        options: WorkerOptions,
        shutdown: Arc<AtomicBool>,
    ) -> Self {
        Self {
            client,
            runner,
            options,
            shutdown,
        }
    }

    fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Sleeps, waking early on shutdown.
    async fn pause(&self, total: Duration) {
        let deadline = Instant::now() + total;
        while !self.stopping() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50).min(total)).await;
        }
    }

    /// Calls the server, retrying with backoff while it is unreachable or answers
    /// 5xx (e.g. restarting), up to the worker's patience.
    async fn retrying<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, WorkerError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(250);
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) => {
                    if started.elapsed() > self.options.patience {
                        return Err(WorkerError::Unreachable {
                            waited: started.elapsed(),
                            source: e,
                        });
                    }
                    tracing::warn!(error = %e, "{what}: server unavailable; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(8));
                }
                Err(e) => return Err(WorkerError::Refused(e)),
            }
        }
    }

    async fn ask(&self) -> Result<AskAnswer, WorkerError> {
        let name = Some(self.options.name.clone());
        match self.options.study {
            Some(study) => {
                let req = AskRequest { worker: name };
                self.retrying("ask", || self.client.ask(study, &req)).await
            }
            None => {
                let req = AskAnyRequest {
                    worker: name,
                    trainer: Some(self.runner.trainer_kind().to_owned()),
                };
                self.retrying("ask", || self.client.ask_any(&req)).await
            }
        }
    }

    /// Runs trials until the study is done, `max_trials` is reached or shutdown. Checks
    /// first that the runner can train, and leases nothing if it cannot.
    pub async fn run(&self) -> Result<WorkerSummary, WorkerError> {
        let runner = self.runner.clone();
        tokio::task::spawn_blocking(move || runner.check_environment())
            .await
            .unwrap_or_else(|e| Err(format!("the environment check crashed: {e}")))
            .map_err(|reason| WorkerError::Environment { reason })?;
        let mut summary = WorkerSummary::default();
        while !self.stopping() {
            if self
                .options
                .max_trials
                .is_some_and(|max| summary.trials() >= max)
            {
                break;
            }
            match self.ask().await? {
                AskAnswer::Done => break,
                AskAnswer::Wait(d) => self.pause(d).await,
                AskAnswer::Leased(answer) => {
                    let trial = answer.trial;
                    let token = answer.lease.token;
                    let ttl = Duration::from_secs_f64(answer.lease.ttl_seconds.max(0.1));
                    tracing::info!(study = %trial.study_id, trial = %trial.id, number = trial.number, "trial leased");
                    match self.run_trial(trial, token, ttl).await? {
                        TrialEnd::Completed => summary.completed += 1,
                        TrialEnd::Failed => summary.failed += 1,
                        TrialEnd::Stopped => summary.stopped += 1,
                        TrialEnd::Released => summary.released += 1,
                        TrialEnd::Lost => summary.lost += 1,
                    }
                }
            }
        }
        Ok(summary)
    }

    async fn run_trial(
        &self,
        trial: LeasedTrial,
        token: String,
        ttl: Duration,
    ) -> Result<TrialEnd, WorkerError> {
        let cancel = Arc::new(AtomicBool::new(false));
        let lease_lost = Arc::new(AtomicBool::new(false));

        // Heartbeats keep the lease while an epoch is longer than the lease.
        let heartbeat = {
            let client = self.client.clone();
            let (cancel, lost) = (cancel.clone(), lease_lost.clone());
            let req = HeartbeatRequest {
                lease_token: Some(token.clone()),
            };
            let id = trial.id;
            tokio::spawn(async move {
                let period = (ttl / 3).max(Duration::from_millis(50));
                loop {
                    tokio::time::sleep(period).await;
                    match client.heartbeat(id, &req).await {
                        Ok(_) => {}
                        Err(e) if is_transient(&e) => {
                            tracing::warn!(error = %e, "heartbeat failed; will retry");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "lease lost; abandoning the trial");
                            lost.store(true, Ordering::SeqCst);
                            cancel.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            })
        };

        // Forward Ctrl-C to the running trial.
        let watcher = {
            let (cancel, shutdown) = (cancel.clone(), self.shutdown.clone());
            tokio::spawn(async move {
                while !shutdown.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                cancel.store(true, Ordering::SeqCst);
            })
        };

        let runner = self.runner.clone();
        let client = self.client.clone();
        let handle = tokio::runtime::Handle::current();
        let patience = self.options.patience;
        let (run_trial, run_token, run_cancel, run_lost) = (
            trial.clone(),
            token.clone(),
            cancel.clone(),
            lease_lost.clone(),
        );
        let outcome = tokio::task::spawn_blocking(move || {
            let mut stop_reason: Option<String> = None;
            let mut on_epoch = |epoch: u32, metrics: &Map<String, Value>| -> EpochControl {
                let req = ReportRequest {
                    lease_token: Some(run_token.clone()),
                    epoch,
                    value: None,
                    metrics: metrics.clone(),
                };
                let started = Instant::now();
                loop {
                    match handle.block_on(client.report(run_trial.id, &req)) {
                        Ok(answer) if answer.action == ReportAction::Stop => {
                            stop_reason = Some(
                                answer
                                    .reason
                                    .unwrap_or_else(|| "stopped by the server".into()),
                            );
                            return EpochControl::Stop;
                        }
                        Ok(_) => return EpochControl::Continue,
                        Err(e) if is_transient(&e) && started.elapsed() < patience => {
                            tracing::warn!(error = %e, "report failed; retrying");
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "report refused; abandoning the trial");
                            run_lost.store(true, Ordering::SeqCst);
                            return EpochControl::Stop;
                        }
                    }
                }
            };
            let outcome = runner.run(&run_trial, &mut on_epoch, &run_cancel);
            (outcome, stop_reason)
        })
        .await;
        heartbeat.abort();
        watcher.abort();

        let (outcome, stop_reason) = match outcome {
            Ok(v) => v,
            Err(e) => (
                RunOutcome::Failed(format!("the trainer crashed: {e}")),
                None,
            ),
        };
        if lease_lost.load(Ordering::SeqCst) {
            return Ok(TrialEnd::Lost);
        }
        if self.stopping() {
            self.release(&trial, token).await;
            return Ok(TrialEnd::Released);
        }
        // Ok(metrics) or Err(why the configuration failed).
        let outcome = match outcome {
            RunOutcome::Completed(metrics) => Ok(metrics),
            RunOutcome::Failed(reason) => Err(reason),
            RunOutcome::WorkerFault(reason) => {
                // Not the configuration's fault: another worker may well train it.
                tracing::error!(trial = %trial.id, %reason, "this worker cannot train; releasing the trial");
                self.release(&trial, token).await;
                return Err(WorkerError::Environment { reason });
            }
        };
        if let Some(reason) = stop_reason {
            // Pruned trials are already finished on the server; a stopped study's
            // unfinished trial is failed so that no partial value stands as a result.
            let current = self
                .retrying("get trial", || self.client.get_trial(trial.id))
                .await?;
            if current.state == TrialState::Running {
                self.fail(&trial, &token, format!("stopped before the end: {reason}"))
                    .await?;
            }
            return Ok(TrialEnd::Stopped);
        }
        match outcome {
            Ok(metrics) => {
                let req = CompleteRequest {
                    lease_token: Some(token.clone()),
                    value: None,
                    metrics,
                };
                match self
                    .retrying("complete", || self.client.complete(trial.id, &req))
                    .await
                {
                    Ok(t) => {
                        tracing::info!(trial = %trial.id, value = ?t.value, "trial completed");
                        Ok(TrialEnd::Completed)
                    }
                    // E.g. the trainer's metrics lack the objective: fail with the server's words.
                    Err(WorkerError::Refused(e @ ClientError::Api { status: 422, .. })) => {
                        self.fail(&trial, &token, format!("could not complete: {e}"))
                            .await?;
                        Ok(TrialEnd::Failed)
                    }
                    Err(WorkerError::Refused(e)) => {
                        tracing::warn!(error = %e, "completion refused (lease lost?)");
                        Ok(TrialEnd::Lost)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(reason) => {
                self.fail(&trial, &token, reason).await?;
                Ok(TrialEnd::Failed)
            }
        }
    }

    /// Gives the trial back to the queue without using a retry. Best effort: if this
    /// fails, the lease simply expires and the trial is re-queued.
    async fn release(&self, trial: &LeasedTrial, token: String) {
        let req = ReleaseRequest {
            lease_token: Some(token),
        };
        if let Err(e) = self.client.release(trial.id, &req).await {
            tracing::warn!(error = %e, "could not release the trial; it will be re-queued when its lease expires");
        }
    }

    async fn fail(
        &self,
        trial: &LeasedTrial,
        token: &str,
        reason: String,
    ) -> Result<(), WorkerError> {
        tracing::warn!(trial = %trial.id, %reason, "trial failed");
        let req = FailRequest {
            lease_token: Some(token.to_owned()),
            reason,
        };
        match self
            .retrying("fail", || self.client.fail(trial.id, &req))
            .await
        {
            Ok(_) => Ok(()),
            Err(WorkerError::Refused(e)) => {
                tracing::warn!(error = %e, "failure report refused (lease lost?)");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Errors worth retrying: no connection, or the server failing (5xx).
fn is_transient(e: &ClientError) -> bool {
    match e {
        ClientError::Connect { .. } => true,
        other => other.status().is_some_and(|s| s >= 500),
    }
}
