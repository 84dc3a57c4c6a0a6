//! `ask`: which trial a worker gets. A server that is its database's only writer
//! decides from its memory under the study's ask lock; replicas on a shared database
//! decide in the database (`shared_ask`).

use tuner_core::{StudyId, StudyState, TrainerKind};
use tuner_optim::OptimError;

pub(crate) use crate::lease::AskOutcome;
use crate::{
    ApiError, AppState,
    lease::{leased, new_grant, suggest},
    settle::{reap_once, settle},
};

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

    if state.lease_may_have_expired(state.now_ms()) {
        reap_once(state).await?;
    }
    let _no_reap_meanwhile = state.hold_off_reaping().await;
    let record = state.study(id).await?;
    match record.state {
        StudyState::Running => {}
        StudyState::Paused => return Ok(AskOutcome::Wait),
        _ => return Ok(AskOutcome::Done),
    }
    let spec = state.spec_of(&record)?;
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
        let spec = state.spec_of(&record)?;
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
