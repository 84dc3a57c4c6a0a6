//! When a study is over (settle) and what happens to lost leases (reap): both run
//! after a trial ends, whoever ended it.

use tuner_core::{StudyId, StudyState, TrialState};
use tuner_store::TrialRecord;

use crate::{ApiError, AppState};

/// Moves a running study to its end state once nothing more will happen in it:
/// failed after too many failures in a row, completed once its budget is spent and
/// nothing is in flight.
/// `after_failure`: a trial just failed, so the failure streak may have grown.
pub async fn settle(state: &AppState, id: StudyId, after_failure: bool) -> Result<(), ApiError> {
    // With a shared database the counts are a query (the others' changes are not in
    // this server's memory), read once: while trials are in flight and none just
    // failed, nothing can end the study, so look no further. Counts read here stay
    // good for the budget check below: once nothing is in flight with the budget
    // spent, nothing more can be handed out.
    if state.is_shared() && !after_failure && !budget_handed_out(state, id).await? {
        return Ok(());
    }
    let shared_counts = if state.is_shared() {
        match state.store().trial_counts(id).await {
            Ok(counts) if counts.in_flight() > 0 && !after_failure => return Ok(()),
            Ok(counts) => Some(counts),
            Err(tuner_store::StoreError::StudyNotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let record = match state.study(id).await {
        Ok(r) => r,
        // Deleted meanwhile: nothing to settle.
        Err(tuner_store::StoreError::StudyNotFound(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if record.state != StudyState::Running {
        return Ok(());
    }
    let spec = state.spec_of(&record)?;
    let now = state.now_ms();
    let limit = spec.budget.max_consecutive_failures;
    // Failures before the last state change (a resume, an extend) do not count: a
    // resumed failed study gets a fresh streak.
    let failures = if after_failure {
        state
            .store()
            .consecutive_failures(id, limit, record.updated_at)
            .await?
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
    // Alone on its database, counted from the in-memory history (kept current by every
    // change, and already updated by the caller), not by a query on every completion.
    let counts = match shared_counts {
        Some(counts) => counts,
        None => state.histories().snapshot(state.store(), id).await?.counts,
    };
    if counts.spent() >= u64::from(spec.budget.max_trials) && counts.in_flight() == 0 {
        let reason = format!("budget of {} trials spent", spec.budget.max_trials);
        state
            .set_study_state(id, StudyState::Completed, Some(&reason), now)
            .await?;
    }
    Ok(())
}

/// Whether every trial of the study's budget has been handed out. Until then no
/// completion can end the study (the trials that count against the budget are a subset
/// of those created), so settling on a shared database reads one row instead of the
/// counts, which cost a scan of the delta rows. Read after the caller's commit: the
/// completion that ends a study comes after every trial's creation, so it sees them all.
/// A cached spec is good enough here: `max_trials` never shrinks.
async fn budget_handed_out(state: &AppState, id: StudyId) -> Result<bool, ApiError> {
    let created = match state.store().trials_created(id).await {
        Ok(created) => created,
        Err(tuner_store::StoreError::StudyNotFound(_)) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let spec = match state.cached_spec(id) {
        Some(spec) => spec,
        None => match state.study(id).await {
            Ok(record) => state.spec_of(&record)?,
            Err(tuner_store::StoreError::StudyNotFound(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        },
    };
    Ok(created >= u64::from(spec.budget.max_trials))
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
    let _reaping = state.begin_reap().await;
    let reaped = async {
        let reaped = state.store().reap_expired_leases(state.now_ms()).await?;
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
            state.forget_expiry_bound();
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
