//! The scheduling rules: which trial a worker gets, when a study is done, when a
//! trial is pruned, and what happens to lost leases.

use std::sync::{Arc, atomic::Ordering};

use rand::Rng;
use tuner_api::{AskResponse, Lease, LeasedTrial, ReportAction};
use tuner_core::{
    OptimizerKind, Params, PrunerSpec, StudyId, StudySpec, StudyState, TrainerKind, TrialId,
    TrialState, parse_spec_value,
};
use tuner_optim::{GpConfig, GpSampler, OptimError, RandomSampler, Sampler, SuggestContext};
use tuner_store::{Finish, LeaseGrant, StudyRecord, TrialRecord};

use crate::{ApiError, AppState, views};

/// What `ask` found.
pub enum AskOutcome {
    Leased(Box<AskResponse>),
    /// Nothing to hand out now, but trials are in flight (one may be re-queued) or
    /// the study is paused: ask again later.
    Wait,
    /// The study will hand out nothing more.
    Done,
}

/// The parsed spec of a study, from the cache or the stored document.
pub async fn spec_of(state: &AppState, record: &StudyRecord) -> Result<Arc<StudySpec>, ApiError> {
    if let Some(spec) = state
        .inner
        .specs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&record.id)
    {
        return Ok(spec.clone());
    }
    let spec = parse_spec_value(&record.spec).map_err(|e| {
        ApiError::Internal(format!(
            "stored spec of study {} no longer parses: {e}",
            record.id
        ))
    })?;
    let spec = Arc::new(spec);
    state
        .inner
        .specs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(record.id, spec.clone());
    Ok(spec)
}

/// The sampler a study's `optimizer` section asks for.
pub fn sampler_for(spec: &StudySpec) -> Box<dyn Sampler> {
    match spec.optimizer.kind {
        OptimizerKind::Random => Box::new(RandomSampler),
        OptimizerKind::Gp => Box::new(GpSampler::new(GpConfig {
            initial_trials: spec.optimizer.initial_trials,
            ..GpConfig::default()
        })),
    }
}

/// A fresh random lease token (128 bits, hex).
fn new_token() -> String {
    let bits: u128 = rand::rng().random();
    format!("{bits:032x}")
}

fn merged_config(params: &Params, spec: &StudySpec) -> Params {
    let mut config = spec.fixed.clone();
    config.extend(params.iter().map(|(k, v)| (k.clone(), v.clone())));
    config
}

pub(crate) fn leased(
    state: &AppState,
    record: &StudyRecord,
    spec: &StudySpec,
    trial: TrialRecord,
) -> AskOutcome {
    let lease = Lease {
        token: trial.lease_token.clone().unwrap_or_default(),
        expires_at: views::time_text(trial.lease_expires_at.unwrap_or_default()),
        ttl_seconds: state.config().lease.as_secs_f64(),
    };
    AskOutcome::Leased(Box::new(AskResponse {
        trial: LeasedTrial {
            id: trial.id,
            study_id: trial.study_id,
            number: trial.number,
            config: merged_config(&trial.params, spec),
            params: trial.params,
            attempt: trial.attempts,
            objective: views::objective(spec),
            trainer: record.spec.get("trainer").cloned().unwrap_or_default(),
        },
        lease,
    }))
}

/// Leases the next trial of a study: a re-queued one first, else a new suggestion,
/// within the study's budget and parallelism.
pub async fn ask(
    state: &AppState,
    id: StudyId,
    worker: Option<String>,
) -> Result<AskOutcome, ApiError> {
    if state.is_shared() {
        return crate::shared_ask::ask(state, id, worker).await;
    }
    let lock = state.ask_lock(id);
    let _serialized = lock.lock().await;

    if state.lease_may_have_expired(views::now_ms()) {
        reap_once(state).await?;
    }
    let _no_reap_meanwhile = state.inner.reaping.read().await;
    let record = state.study(id).await?;
    match record.state {
        StudyState::Running => {}
        StudyState::Paused => return Ok(AskOutcome::Wait),
        _ => return Ok(AskOutcome::Done),
    }
    let spec = spec_of(state, &record).await?;
    let history = state.histories().snapshot(state.store(), id).await?;
    let counts = history.counts;
    if counts.running >= u64::from(spec.budget.parallelism) {
        return Ok(AskOutcome::Wait);
    }
    let grant = new_grant(state, worker);
    let now = grant.now;
    if counts.pending > 0
        && let Some(trial) = state.store().lease_pending_trial(id, &grant).await?
    {
        state.note_lease(grant.expires_at);
        state.histories().record(&trial).await;
        return Ok(leased(state, &record, &spec, trial));
    }
    if counts.spent() >= u64::from(spec.budget.max_trials) {
        return Ok(if counts.in_flight() > 0 {
            AskOutcome::Wait
        } else {
            settle(state, id, false).await?;
            AskOutcome::Done
        });
    }

    match suggest(&spec, history).await? {
        Ok(params) => {
            let trial = state
                .store()
                .insert_leased_trial(id, &params, &grant)
                .await?;
            state.note_lease(grant.expires_at);
            state.histories().record(&trial).await;
            tracing::info!(study = %id, trial = %trial.id, number = trial.number, "trial started");
            Ok(leased(state, &record, &spec, trial))
        }
        Err(e @ (OptimError::Exhausted { .. } | OptimError::NoFreshConfig { .. })) => {
            if counts.in_flight() > 0 {
                return Ok(AskOutcome::Wait);
            }
            tracing::info!(study = %id, reason = %e, "study completed");
            state
                .set_study_state(id, StudyState::Completed, Some(&e.to_string()), now)
                .await?;
            Ok(AskOutcome::Done)
        }
    }
}

pub(crate) fn new_grant(state: &AppState, worker: Option<String>) -> LeaseGrant {
    let now = views::now_ms();
    LeaseGrant {
        token: new_token(),
        worker,
        now,
        expires_at: now + state.config().lease.as_millis() as i64,
    }
}

/// Runs the study's sampler on a blocking thread.
pub(crate) async fn suggest(
    spec: &Arc<StudySpec>,
    history: crate::history::Snapshot,
) -> Result<Result<Params, OptimError>, ApiError> {
    let spec = spec.clone();
    tokio::task::spawn_blocking(move || {
        sampler_for(&spec).suggest(&SuggestContext {
            space: &spec.parameters,
            direction: spec.objective.direction,
            seed: spec.optimizer.seed,
            trial_number: history.observations.len() as u64,
            history: &history.observations,
            seen: Some(&history.keys),
        })
    })
    .await
    .map_err(|e| ApiError::Internal(format!("sampler task panicked: {e}")))
}

/// Leases a trial from the oldest running study (of `trainer` kind, if given) that
/// has one to hand out. Never `Done`: a worker pool outlives any one study.
pub async fn ask_any(
    state: &AppState,
    trainer: Option<TrainerKind>,
    worker: Option<String>,
) -> Result<AskOutcome, ApiError> {
    for record in state.store().list_studies().await? {
        if record.state != StudyState::Running {
            continue;
        }
        let spec = spec_of(state, &record).await?;
        if trainer.is_some_and(|kind| spec.trainer.kind != kind) {
            continue;
        }
        match ask(state, record.id, worker.clone()).await {
            Ok(AskOutcome::Leased(answer)) => return Ok(AskOutcome::Leased(answer)),
            Ok(_) => {}
            // Deleted between listing and asking.
            Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(AskOutcome::Wait)
}

/// Moves a running study to its end state once nothing more will happen in it:
/// failed after too many failures in a row, completed once its budget is spent and
/// nothing is in flight.
/// `after_failure`: a trial just failed, so the failure streak may have grown.
pub async fn settle(state: &AppState, id: StudyId, after_failure: bool) -> Result<(), ApiError> {
    // With a shared database every look is a query: while trials are in flight and none
    // just failed, nothing can end the study, so look no further.
    if state.is_shared() && !after_failure {
        match state.store().trial_counts(id).await {
            Ok(counts) if counts.in_flight() > 0 => return Ok(()),
            Err(tuner_store::StoreError::StudyNotFound(_)) => return Ok(()),
            _ => {}
        }
    }
    let record = match state.study(id).await {
        Ok(r) => r,
        // Deleted meanwhile: nothing to settle.
        Err(tuner_store::StoreError::StudyNotFound(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if record.state != StudyState::Running {
        return Ok(());
    }
    let spec = spec_of(state, &record).await?;
    let now = views::now_ms();
    let limit = spec.budget.max_consecutive_failures;
    let failures = if after_failure {
        state.store().consecutive_failures(id, limit).await?
    } else {
        0
    };
    if failures >= limit {
        let reason = format!(
            "{failures} trials in a row failed (budget.max_consecutive_failures = {limit}); \
             see the trials' failure_reason"
        );
        tracing::warn!(study = %id, %reason, "study failed");
        state
            .set_study_state(id, StudyState::Failed, Some(&reason), now)
            .await?;
        return Ok(());
    }
    // Counted from the in-memory history (kept current by every change, and already
    // updated by the caller), not by a query on every completion; servers that share
    // the database count in it (the others' changes are not in this one's memory).
    let counts = if state.is_shared() {
        state.store().trial_counts(id).await?
    } else {
        state.histories().snapshot(state.store(), id).await?.counts
    };
    if counts.spent() >= u64::from(spec.budget.max_trials) && counts.in_flight() == 0 {
        let reason = format!("budget of {} trials spent", spec.budget.max_trials);
        state
            .set_study_state(id, StudyState::Completed, Some(&reason), now)
            .await?;
    }
    Ok(())
}

/// What follows a trial's end, whoever ended it: the sampler's history learns the
/// outcome and the study may be over.
pub async fn after_finish(state: &AppState, trial: &TrialRecord) -> Result<(), ApiError> {
    state.histories().record(trial).await;
    settle(state, trial.study_id, trial.state == TrialState::Failed).await
}

/// Takes back expired leases and settles the studies they belong to; waits for asks in
/// progress to finish first.
pub async fn reap_once(state: &AppState) -> Result<(), ApiError> {
    let _reaping = state.inner.reaping.write().await;
    let next_expiry = &state.inner.next_expiry;
    // Raised before looking, so a lease committed after the look still lowers it.
    next_expiry.store(i64::MAX, Ordering::SeqCst);
    let reaped = async {
        let reaped = state.store().reap_expired_leases(views::now_ms()).await?;
        let earliest = state.store().earliest_lease_expiry().await?;
        Ok::<_, tuner_store::StoreError>((reaped, earliest))
    }
    .await;
    let reaped = match reaped {
        Ok((reaped, earliest)) => {
            state.note_lease(earliest.unwrap_or(i64::MAX));
            reaped
        }
        Err(e) => {
            // Unknown: look again next time.
            next_expiry.store(i64::MIN, Ordering::SeqCst);
            return Err(e.into());
        }
    };
    state.histories().record_reaped(&reaped).await;
    for r in &reaped {
        tracing::warn!(trial = %r.id, study = %r.study_id, state = %r.state, "lease expired");
    }
    let mut studies: Vec<StudyId> = reaped.iter().map(|r| r.study_id).collect();
    studies.sort();
    studies.dedup();
    for id in studies {
        let failed = reaped
            .iter()
            .any(|r| r.study_id == id && r.state == TrialState::Failed);
        settle(state, id, failed).await?;
    }
    Ok(())
}

/// Whether the study's pruner stops `trial` at `epoch` with `value`.
pub async fn should_prune(
    state: &AppState,
    spec: &StudySpec,
    trial: &TrialRecord,
    epoch: u32,
    value: f64,
) -> Result<bool, ApiError> {
    let better = |a: f64, b: f64| spec.objective.direction.better(a, b);
    match spec.pruner {
        None | Some(PrunerSpec::None) => Ok(false),
        Some(PrunerSpec::Median {
            warmup_epochs,
            min_trials,
        }) => {
            if epoch <= warmup_epochs {
                return Ok(false);
            }
            let trials = state.store().list_trials(trial.study_id).await?;
            let peers: Vec<f64> = trials
                .iter()
                .filter(|t| {
                    t.id != trial.id
                        && matches!(t.state, TrialState::Completed | TrialState::Pruned)
                })
                .filter_map(|t| value_at(t, epoch))
                .collect();
            if peers.len() < min_trials as usize {
                return Ok(false);
            }
            Ok(better(median(peers), value))
        }
        Some(PrunerSpec::Asha {
            min_resource,
            reduction_factor,
        }) => {
            if !is_rung(epoch, min_resource, reduction_factor) {
                return Ok(false);
            }
            // Every trial that reached this rung competes, running ones included
            // (asynchronous: nobody waits for a rung to fill).
            let trials = state.store().list_trials(trial.study_id).await?;
            let mut rung: Vec<f64> = trials
                .iter()
                .filter(|t| t.id != trial.id)
                .filter_map(|t| value_at(t, epoch))
                .collect();
            rung.push(value);
            rung.sort_by(|a, b| {
                if better(*a, *b) {
                    std::cmp::Ordering::Less
                } else if better(*b, *a) {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            });
            // The top 1/η go on (at least the best one).
            let promoted = (rung.len() / reduction_factor as usize).max(1);
            Ok(better(rung[promoted - 1], value))
        }
    }
}

/// Epochs `min_resource · factor^k`, k ≥ 0.
fn is_rung(epoch: u32, min_resource: u32, factor: u32) -> bool {
    let mut rung = u64::from(min_resource);
    while rung < u64::from(epoch) {
        rung *= u64::from(factor);
    }
    rung == u64::from(epoch)
}

fn value_at(t: &TrialRecord, epoch: u32) -> Option<f64> {
    t.epochs.iter().find(|e| e.epoch == epoch)?.value
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The answer to an epoch report: stop if the study no longer runs or the pruner
/// says so (the trial is then PRUNED with its last value), else continue.
pub async fn after_report(
    state: &AppState,
    trial: &TrialRecord,
    epoch: u32,
    value: Option<f64>,
) -> Result<(ReportAction, Option<String>), ApiError> {
    let record = state.study(trial.study_id).await?;
    if matches!(record.state, StudyState::Stopped | StudyState::Failed) {
        return Ok((
            ReportAction::Stop,
            Some(format!("the study is {}", record.state)),
        ));
    }
    let spec = spec_of(state, &record).await?;
    if let Some(value) = value
        && should_prune(state, &spec, trial, epoch, value).await?
    {
        let rule = match spec.pruner {
            Some(PrunerSpec::Asha {
                reduction_factor, ..
            }) => format!("not in the best 1/{reduction_factor} of the trials at that rung (ASHA)"),
            _ => "worse than the median of finished trials at that epoch".to_owned(),
        };
        let reason = format!("pruned at epoch {epoch}: {value} is {rule}");
        let pruned = state
            .store()
            .finish_trial_unleased(
                trial.id,
                views::now_ms(),
                Finish {
                    state: TrialState::Pruned,
                    value: Some(value),
                    metrics: None,
                    reason: Some(reason.clone()),
                },
            )
            .await?;
        after_finish(state, &pruned).await?;
        return Ok((ReportAction::Stop, Some(reason)));
    }
    Ok((ReportAction::Continue, None))
}

/// The spec of the study a trial belongs to (what report and complete need to find
/// the objective's metric).
pub async fn spec_of_trial(state: &AppState, id: TrialId) -> Result<Arc<StudySpec>, ApiError> {
    let study = match state.histories().study_of(id) {
        Some(study) => study,
        None => state.store().study_of_trial(id).await?,
    };
    // Specs never change: no need to read the study again once one is cached.
    let cached = state
        .inner
        .specs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&study)
        .cloned();
    if let Some(spec) = cached {
        return Ok(spec);
    }
    let record = state.study(study).await?;
    spec_of(state, &record).await
}

/// Identifies what an importance answer depends on: which trials have finished, and
/// how (finished trials never change, so this only moves when one finishes).
fn finished_fingerprint(history: &[tuner_optim::Observation]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (i, o) in history.iter().enumerate() {
        let (kind, value) = match o.outcome {
            tuner_optim::Outcome::Completed(v) => (1u8, Some(v)),
            tuner_optim::Outcome::Pruned(v) => (2, v),
            tuner_optim::Outcome::Failed => (3, None),
            tuner_optim::Outcome::Pending => continue,
        };
        (i, kind, value.map(f64::to_bits)).hash(&mut hasher);
    }
    hasher.finish()
}

/// Parameter importance from a GP fitted to the study's completed trials; computed
/// again only when a trial has finished since the last answer.
pub async fn importance(
    state: &AppState,
    id: StudyId,
) -> Result<Arc<tuner_api::Importance>, ApiError> {
    let record = state.study(id).await?;
    let spec = spec_of(state, &record).await?;
    let store = state.store();
    let history = if state.is_shared() {
        // Other servers' trials too.
        state
            .histories()
            .catch_up(store, id, |next, unfinished| async move {
                store.trials_from(id, next, &unfinished).await
            })
            .await?
    } else {
        state.histories().snapshot(store, id).await?
    }
    .observations;
    let fingerprint = finished_fingerprint(&history);
    let cached = state
        .inner
        .importance
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .filter(|(f, _)| *f == fingerprint)
        .map(|(_, answer)| answer.clone());
    if let Some(answer) = cached {
        return Ok(answer);
    }
    let completed = history
        .iter()
        .filter(|o| matches!(o.outcome, tuner_optim::Outcome::Completed(_)))
        .count() as u64;
    let fitted = tokio::task::spawn_blocking(move || {
        tuner_optim::parameter_importance(
            &spec.parameters,
            spec.objective.direction,
            &history,
            spec.optimizer.seed,
        )
    })
    .await
    .map_err(|e| ApiError::Internal(format!("importance task panicked: {e}")))?;
    let (parameters, note) = match fitted {
        Some(list) => (
            list.into_iter()
                .map(|(name, importance)| tuner_api::ParamImportance { name, importance })
                .collect(),
            None,
        ),
        None => (
            Vec::new(),
            Some("needs at least 5 completed trials with different values".to_owned()),
        ),
    };
    let answer = Arc::new(tuner_api::Importance {
        study_id: id,
        method: "total-effect Sobol' indices of a Gaussian-process posterior mean".into(),
        parameters,
        completed_trials: completed,
        note,
    });
    state
        .inner
        .importance
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, (fingerprint, answer.clone()));
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::{body::Body, http::Request};
    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tower::ServiceExt;
    use tuner_store::SqliteStore;

    use crate::{AppState, ServerConfig, app};

    async fn call(state: &AppState, uri: &str, body: Value) -> Value {
        let req = Request::post(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = app(state.clone()).oneshot(req).await.unwrap();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    async fn run_trial(state: &AppState, study: i64, k: u32) {
        let a = call(state, &format!("/studies/{study}/ask"), json!({})).await;
        let x = a["trial"]["params"]["x"].as_f64().unwrap();
        let id = a["trial"]["id"].as_i64().unwrap();
        let token = a["lease"]["token"].as_str().unwrap();
        let value = x * x + f64::from(k) * 1e-3;
        call(
            state,
            &format!("/trials/{id}/complete"),
            json!({"lease_token": token, "value": value}),
        )
        .await;
    }

    /// The GP behind `importance` is fitted again only after a trial finishes.
    #[tokio::test]
    async fn importance_is_computed_once_per_set_of_finished_trials() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("i.db")).await.unwrap();
        let state = AppState::new(Arc::new(store), ServerConfig::default());
        let spec = json!({
            "version": 1, "name": "imp",
            "objective": {"metric": "v", "direction": "minimize"},
            "budget": {"max_trials": 20, "parallelism": 1},
            "optimizer": {"kind": "random", "seed": 3},
            "parameters": {
                "x": {"type": "float", "min": -1.0, "max": 1.0},
                "y": {"type": "float", "min": 0.0, "max": 1.0}
            }
        });
        let study = call(&state, "/studies", spec).await["id"].as_i64().unwrap();
        for k in 0..6 {
            run_trial(&state, study, k).await;
        }
        let id = tuner_core::StudyId(study);
        let first = super::importance(&state, id).await.unwrap();
        assert_eq!(first.completed_trials, 6);
        assert!(!first.parameters.is_empty());
        let again = super::importance(&state, id).await.unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "computed again with nothing new"
        );
        run_trial(&state, study, 6).await;
        let after = super::importance(&state, id).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &after));
        assert_eq!(after.completed_trials, 7);
    }
}
