//! Trials after the ask: read (with their epochs, epoch values across a study's
//! trials), changed by their lease holder (heartbeat, epoch report, finish, release,
//! the hot writes through the group commit) and taken back when their lease expires.

use std::{collections::HashMap, str::FromStr};

use sqlx::Row;
use tuner_core::{StudyId, TrialId, TrialState};

use super::{PgStore, TRIAL_COLUMNS, group_epochs, real, to_json_text, trial_from_row};
use crate::{
    EpochRecord, Finish, NewEpoch, ReapedTrial, Result, Store, StoreError, TrialRecord,
    rules::{repeated_epoch, repeated_finish},
};

pub(super) async fn list_trials(store: &PgStore, study: StudyId) -> Result<Vec<TrialRecord>> {
    let mut trials = store.trial_summaries(study).await?;
    let rows = sqlx::query(
        "SELECT e.trial_id, e.epoch, e.value, e.metrics, e.reported_at FROM trial_epochs e \
         JOIN trials t ON t.id = e.trial_id WHERE t.study_id = $1 \
         ORDER BY e.trial_id, e.epoch",
    )
    .bind(study.0)
    .fetch_all(&store.pool)
    .await?;
    let mut by_trial = HashMap::new();
    group_epochs(&rows, &mut by_trial)?;
    for trial in &mut trials {
        if let Some(epochs) = by_trial.remove(&trial.id) {
            trial.epochs = epochs;
        }
    }
    Ok(trials)
}

pub(super) async fn epoch_values(
    store: &PgStore,
    study: StudyId,
    epoch: u32,
) -> Result<Vec<(TrialId, TrialState, Option<f64>)>> {
    let rows = sqlx::query(
        "SELECT t.id, t.state, e.value FROM trial_epochs e JOIN trials t ON t.id = e.trial_id \
         WHERE t.study_id = $1 AND e.epoch = $2 ORDER BY t.number",
    )
    .bind(study.0)
    .bind(i64::from(epoch))
    .fetch_all(&store.pool)
    .await?;
    rows.iter()
        .map(|row| {
            let state: String = row.try_get("state")?;
            Ok((
                TrialId(row.try_get("id")?),
                TrialState::from_str(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                row.try_get("value")?,
            ))
        })
        .collect()
}

pub(super) async fn epochs_of_trials(
    store: &PgStore,
    trials: &[TrialId],
) -> Result<HashMap<TrialId, Vec<EpochRecord>>> {
    let ids: Vec<i64> = trials.iter().map(|t| t.0).collect();
    let rows = sqlx::query(
        "SELECT trial_id, epoch, value, metrics, reported_at FROM trial_epochs \
         WHERE trial_id = ANY($1) ORDER BY trial_id, epoch",
    )
    .bind(ids)
    .fetch_all(&store.pool)
    .await?;
    let mut by_trial = HashMap::new();
    group_epochs(&rows, &mut by_trial)?;
    Ok(by_trial)
}

pub(super) async fn study_of_trial(store: &PgStore, id: TrialId) -> Result<StudyId> {
    let row = sqlx::query("SELECT study_id FROM trials WHERE id = $1")
        .bind(id.0)
        .fetch_optional(&store.pool)
        .await?
        .ok_or(StoreError::TrialNotFound(id))?;
    Ok(StudyId(row.try_get("study_id")?))
}

pub(super) async fn heartbeat(
    store: &PgStore,
    trial: TrialId,
    token: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE trials SET lease_expires_at = $1 \
         WHERE id = $2 AND state = 'running' AND lease_token = $3 AND lease_expires_at >= $4",
    )
    .bind(expires_at)
    .bind(trial.0)
    .bind(token)
    .bind(now)
    .execute(&store.pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(store.lease_failure(trial, token, now).await);
    }
    Ok(())
}

pub(super) async fn report_epoch(
    store: &PgStore,
    trial: TrialId,
    token: &str,
    now: i64,
    expires_at: i64,
    report: &NewEpoch,
) -> Result<TrialRecord> {
    let mut tx = store.pool.begin().await?;
    // The update locks the trial row to the commit, so the lease cannot end (a
    // finish, the reaper) between the check and the epoch's insert.
    let row = sqlx::query(&format!(
        "UPDATE trials SET lease_expires_at = $1, \
             last_epoch = GREATEST(COALESCE(last_epoch, 0), $2) \
         WHERE id = $3 AND state = 'running' AND lease_token = $4 AND lease_expires_at >= $5 \
         RETURNING {TRIAL_COLUMNS}"
    ))
    .bind(expires_at)
    .bind(i64::from(report.epoch))
    .bind(trial.0)
    .bind(token)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        drop(tx);
        return Err(store.lease_failure(trial, token, now).await);
    };
    let inserted = sqlx::query(
        "INSERT INTO trial_epochs (trial_id, epoch, value, metrics, reported_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (trial_id, epoch) DO NOTHING",
    )
    .bind(trial.0)
    .bind(i64::from(report.epoch))
    .bind(real(report.value))
    .bind(to_json_text(&report.metrics)?)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        // Reported before in this attempt (epochs are cleared on re-queue).
        let earlier: Option<f64> =
            sqlx::query_scalar("SELECT value FROM trial_epochs WHERE trial_id = $1 AND epoch = $2")
                .bind(trial.0)
                .bind(i64::from(report.epoch))
                .fetch_one(&mut *tx)
                .await?;
        repeated_epoch(
            &trial_from_row(&row)?,
            report.epoch,
            earlier,
            real(report.value),
        )?;
    }
    tx.commit().await?;
    let mut record = trial_from_row(&row)?;
    record.epochs = store.epochs_of(trial).await?;
    Ok(record)
}

pub(super) async fn finish_trial(
    store: &PgStore,
    trial: TrialId,
    token: &str,
    now: i64,
    finish: Finish,
) -> Result<TrialRecord> {
    // One conditional update: of two replicas finishing the same trial, the second
    // waits for the first's row lock, then finds it no longer running.
    let row = sqlx::query(&format!(
        "UPDATE trials SET state = $1, value = $2, metrics = $3, failure_reason = $4, \
             finished_at = $5, lease_expires_at = NULL \
         WHERE id = $6 AND state = 'running' AND lease_token = $7 AND lease_expires_at >= $5 \
         RETURNING {TRIAL_COLUMNS}"
    ))
    .bind(finish.state.as_str())
    .bind(real(finish.value))
    .bind(finish.metrics.as_ref().map(to_json_text).transpose()?)
    .bind(&finish.reason)
    .bind(now)
    .bind(trial.0)
    .bind(token)
    .fetch_optional(&store.pool)
    .await?;
    let mut record = match row {
        Some(row) => trial_from_row(&row)?,
        None => {
            // A retried request (its first answer lost, or sent to another replica)
            // finds the trial already finished the same way under the same lease:
            // same answer. The token is kept on finished trials for this.
            let current = store.trial_without_epochs(trial).await?;
            let finish = Finish {
                value: real(finish.value),
                ..finish
            };
            repeated_finish(current, &finish, token, now)?
        }
    };
    // No report, no epochs: skip the read (the common case under load).
    if record.last_epoch.is_some() {
        record.epochs = store.epochs_of(trial).await?;
    }
    Ok(record)
}

pub(super) async fn release_trial(
    store: &PgStore,
    trial: TrialId,
    token: &str,
    now: i64,
) -> Result<TrialRecord> {
    let row = sqlx::query(&format!(
        "UPDATE trials SET state = 'pending', lease_token = NULL, lease_expires_at = NULL, \
             worker = NULL, started_at = NULL, last_epoch = NULL, \
             attempts = GREATEST(attempts - 1, 0) \
         WHERE id = $1 AND state = 'running' AND lease_token = $2 AND lease_expires_at >= $3 \
         RETURNING {TRIAL_COLUMNS}"
    ))
    .bind(trial.0)
    .bind(token)
    .bind(now)
    .fetch_optional(&store.pool)
    .await?;
    match row {
        Some(row) => trial_from_row(&row),
        None => Err(store.lease_failure(trial, token, now).await),
    }
}

pub(super) async fn finish_trial_unleased(
    store: &PgStore,
    trial: TrialId,
    now: i64,
    finish: Finish,
) -> Result<TrialRecord> {
    let row = sqlx::query(&format!(
        "UPDATE trials SET state = $1, value = COALESCE($2, value), \
             metrics = COALESCE($3, metrics), failure_reason = $4, finished_at = $5, \
             lease_token = NULL, lease_expires_at = NULL \
         WHERE id = $6 AND state IN ('pending', 'running') \
         RETURNING {TRIAL_COLUMNS}"
    ))
    .bind(finish.state.as_str())
    .bind(real(finish.value))
    .bind(finish.metrics.as_ref().map(to_json_text).transpose()?)
    .bind(&finish.reason)
    .bind(now)
    .bind(trial.0)
    .fetch_optional(&store.pool)
    .await?;
    match row {
        Some(row) => {
            let mut record = trial_from_row(&row)?;
            record.epochs = store.epochs_of(trial).await?;
            Ok(record)
        }
        None => {
            let current = store.trial_without_epochs(trial).await?;
            Err(StoreError::NotRunning {
                id: trial,
                state: current.state,
            })
        }
    }
}

pub(super) async fn earliest_lease_expiry(store: &PgStore) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT MIN(lease_expires_at) FROM trials WHERE state = 'running'")
            .fetch_one(&store.pool)
            .await?,
    )
}

pub(super) async fn reap_expired_leases(store: &PgStore, now: i64) -> Result<Vec<ReapedTrial>> {
    // Every replica may reap. Each expired trial is locked by one reaper (the others
    // skip it, and rows a finish or heartbeat holds); the update checks the expiry
    // again on the locked row, so a trial is re-queued or failed exactly once.
    let rows = sqlx::query(
        "WITH expired AS ( \
             SELECT id FROM trials WHERE state = 'running' AND lease_expires_at < $1 \
             ORDER BY id FOR UPDATE SKIP LOCKED) \
         UPDATE trials t SET \
             state = CASE WHEN t.attempts > s.max_retries THEN 'failed' ELSE 'pending' END, \
             failure_reason = CASE WHEN t.attempts > s.max_retries \
                 THEN 'lease expired ' || t.attempts \
                      || ' time(s) without a result (worker lost?); out of retries' \
                 ELSE t.failure_reason END, \
             finished_at = CASE WHEN t.attempts > s.max_retries THEN $1 ELSE NULL END, \
             last_epoch = CASE WHEN t.attempts > s.max_retries THEN t.last_epoch ELSE NULL END, \
             lease_token = CASE WHEN t.attempts > s.max_retries THEN NULL ELSE t.lease_token END, \
             lease_expires_at = NULL, worker = NULL \
         FROM expired e, studies s \
         WHERE t.id = e.id AND s.id = t.study_id \
             AND t.state = 'running' AND t.lease_expires_at < $1 \
         RETURNING t.id, t.study_id, t.state",
    )
    .bind(now)
    .fetch_all(&store.pool)
    .await?;
    rows.iter()
        .map(|row| {
            let state: String = row.try_get("state")?;
            Ok(ReapedTrial {
                id: TrialId(row.try_get("id")?),
                study_id: StudyId(row.try_get("study_id")?),
                state: TrialState::from_str(&state)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            })
        })
        .collect()
}
