//! What both ask paths (this module's callers `ask` and `shared_ask`) share: the
//! lease a worker is granted, the answer built around it, and the sampler run that
//! suggests a new trial.

use std::sync::Arc;

use rand::Rng;
use tuner_api::{AskResponse, Lease, LeasedTrial, Timestamp};
use tuner_core::{OptimizerKind, Params, StudySpec};
use tuner_optim::{
    CostAware, GpConfig, GpSampler, OptimError, RandomSampler, Sampler, SuggestContext,
};
use tuner_store::{LeaseGrant, StudyRecord, TrialRecord};

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

/// The sampler a study's `optimizer` section asks for.
pub fn sampler_for(spec: &StudySpec) -> Box<dyn Sampler> {
    match spec.optimizer.kind {
        OptimizerKind::Random => Box::new(RandomSampler),
        OptimizerKind::Gp => Box::new(GpSampler::new(GpConfig {
            initial_trials: spec.optimizer.initial_trials,
            cost_aware: spec.optimizer.cost_aware.then_some(CostAware {
                budget_trials: spec.budget.max_trials,
            }),
            ..GpConfig::default()
        })),
    }
}

/// A fresh random lease token (128 bits, hex).
fn new_token() -> String {
    let bits: u128 = rand::rng().random();
    format!("{bits:032x}")
}

pub(crate) fn leased(
    state: &AppState,
    record: &StudyRecord,
    spec: &StudySpec,
    trial: TrialRecord,
) -> AskOutcome {
    let lease = Lease {
        token: trial.lease_token.clone().unwrap_or_default(),
        expires_at: Timestamp::from_unix_ms(trial.lease_expires_at.unwrap_or_default()),
        ttl_seconds: state.config().lease.as_secs_f64(),
    };
    AskOutcome::Leased(Box::new(AskResponse {
        trial: LeasedTrial {
            id: trial.id,
            study_id: trial.study_id,
            number: trial.number,
            config: spec.config(&trial.params),
            params: trial.params,
            attempt: trial.attempts,
            objective: views::objective(spec),
            trainer: record.spec.get("trainer").cloned().unwrap_or_default(),
        },
        lease,
    }))
}

pub(crate) fn new_grant(state: &AppState, worker: Option<String>) -> LeaseGrant {
    let now = state.now_ms();
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
            trial_number: history.trials() as u64,
            history: &history.observations,
            batch: &history.batch,
            seen: Some(&history.keys),
        })
    })
    .await
    .map_err(|e| ApiError::Internal(format!("sampler task panicked: {e}")))
}
