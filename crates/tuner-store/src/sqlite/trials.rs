//! Trials after the ask: read (with their epochs, epoch values across a study's
//! trials), changed by their lease holder (heartbeat, epoch report, finish, release,
//! the hot writes through the group commit) and taken back when their lease expires.

use std::{collections::HashMap, str::FromStr};

use sqlx::Row;
use tuner_core::{StudyId, TrialId, TrialState};

use super::{
    SqliteStore, TRIAL_COLUMNS, group_epochs, to_json_text, trial_from_row, trial_without_epochs,
    write_returning,
};
use crate::{
    EpochRecord, Finish, NewEpoch, ReapedTrial, Result, Store, StoreError, TrialRecord,
    rules::{repeated_epoch, repeated_finish},
};

pub(super) async fn list_trials(store: &SqliteStore, study: StudyId) -> Result<Vec<TrialRecord>> {
    let mut trials = store.trial_summaries(study).await?;
    let rows = sqlx::query(
        "SELECT e.trial_id, e.epoch, e.value, e.metrics, e.reported_at FROM trial_epochs e \
         JOIN trials t ON t.id = e.trial_id WHERE t.study_id = ? ORDER BY e.trial_id, e.epoch",
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
    store: &SqliteStore,
    study: StudyId,
    epoch: u32,
) -> Result<Vec<(TrialId, TrialState, Option<f64>)>> {
    let rows = sqlx::query(
        "SELECT t.id, t.state, e.value FROM trial_epochs e JOIN trials t ON t.id = e.trial_id \
         WHERE t.study_id = ? AND e.epoch = ? ORDER BY t.number",
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
    store: &SqliteStore,
    trials: &[TrialId],
) -> Result<HashMap<TrialId, Vec<EpochRecord>>> {
    let mut by_trial = HashMap::new();
    // Bounded IN lists: SQLite caps bound parameters per statement.
    for chunk in trials.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT trial_id, epoch, value, metrics, reported_at FROM trial_epochs \
             WHERE trial_id IN ({marks}) ORDER BY trial_id, epoch"
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.0);
        }
        group_epochs(&query.fetch_all(&store.pool).await?, &mut by_trial)?;
    }
    Ok(by_trial)
}

pub(super) async fn study_of_trial(store: &SqliteStore, id: TrialId) -> Result<StudyId> {
    let row = sqlx::query("SELECT study_id FROM trials WHERE id = ?")
        .bind(id.0)
        .fetch_optional(&store.pool)
        .await?
        .ok_or(StoreError::TrialNotFound(id))?;
    Ok(StudyId(row.get("study_id")))
}

pub(super) async fn heartbeat(
    store: &SqliteStore,
    trial: TrialId,
    token: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE trials SET lease_expires_at = ? \
         WHERE id = ? AND state = 'running' AND lease_token = ? AND lease_expires_at >= ?",
    )
    .bind(expires_at)
    .bind(trial.0)
    .bind(token)
    .bind(now)
    .execute(&store.writer)
    .await?;
    if done.rows_affected() == 0 {
        return Err(store.lease_failure(trial, token, now).await);
    }
    Ok(())
}

pub(super) async fn report_epoch(
    store: &SqliteStore,
    trial: TrialId,
    token: &str,
    now: i64,
    expires_at: i64,
    report: &NewEpoch,
) -> Result<TrialRecord> {
    let mut tx = store.writer.begin().await?;
    // The first statement writes, so the transaction takes the write lock at once
    // (no read-then-upgrade, which SQLite cannot retry).
    let sql = format!(
        "UPDATE trials SET lease_expires_at = ?, last_epoch = MAX(COALESCE(last_epoch, 0), ?) \
         WHERE id = ? AND state = 'running' AND lease_token = ? AND lease_expires_at >= ? \
         RETURNING {TRIAL_COLUMNS}"
    );
    let query = sqlx::query(&sql)
        .bind(expires_at)
        .bind(i64::from(report.epoch))
        .bind(trial.0)
        .bind(token)
        .bind(now);
    let row = write_returning(query, &mut *tx).await?;
    let Some(row) = row else {
        drop(tx);
        return Err(store.lease_failure(trial, token, now).await);
    };
    let inserted = sqlx::query(
        "INSERT INTO trial_epochs (trial_id, epoch, value, metrics, reported_at) \
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (trial_id, epoch) DO NOTHING",
    )
    .bind(trial.0)
    .bind(i64::from(report.epoch))
    .bind(report.value)
    .bind(to_json_text(&report.metrics)?)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        // Reported before in this attempt (epochs are cleared on re-queue): the same
        // value is a retry and keeps the first report; another value is refused.
        let earlier: Option<f64> =
            sqlx::query_scalar("SELECT value FROM trial_epochs WHERE trial_id = ? AND epoch = ?")
                .bind(trial.0)
                .bind(i64::from(report.epoch))
                .fetch_one(&mut *tx)
                .await?;
        repeated_epoch(&trial_from_row(&row)?, report.epoch, earlier, report.value)?;
    }
    tx.commit().await?;
    let mut record = trial_from_row(&row)?;
    record.epochs = store.epochs_of(trial).await?;
    Ok(record)
}

pub(super) async fn finish_trial(
    store: &SqliteStore,
    trial: TrialId,
    token: &str,
    now: i64,
    finish: Finish,
) -> Result<TrialRecord> {
    let sql = format!(
        "UPDATE trials SET state = ?, value = ?, metrics = ?, failure_reason = ?, \
             finished_at = ?, lease_expires_at = NULL \
         WHERE id = ? AND state = 'running' AND lease_token = ? AND lease_expires_at >= ? \
         RETURNING {TRIAL_COLUMNS}"
    );
    let metrics = finish.metrics.as_ref().map(to_json_text).transpose()?;
    let token = token.to_owned();
    let mut record = store
        .batch
        .write(Box::new(move |conn| {
            Box::pin(async move {
                let query = sqlx::query(&sql)
                    .bind(finish.state.as_str())
                    .bind(finish.value)
                    .bind(metrics)
                    .bind(&finish.reason)
                    .bind(now)
                    .bind(trial.0)
                    .bind(&token)
                    .bind(now);
                let row = write_returning(query, &mut *conn).await?;
                if let Some(row) = row {
                    return trial_from_row(&row);
                }
                // Read on this connection: it sees writes of this batch not yet
                // committed (e.g. the first attempt of a retried request).
                let current = trial_without_epochs(&mut *conn, trial).await?;
                // A retried request (its first answer lost, e.g. to a server
                // restart) finds the trial already finished the same way under the
                // same lease: same answer. The token is kept on finished trials for
                // this.
                repeated_finish(current, &finish, &token, now)
            })
        }))
        .await?;
    // No report, no epochs: skip the read (the common case under load).
    if record.last_epoch.is_some() {
        record.epochs = store.epochs_of(trial).await?;
    }
    Ok(record)
}

pub(super) async fn release_trial(
    store: &SqliteStore,
    trial: TrialId,
    token: &str,
    now: i64,
) -> Result<TrialRecord> {
    let sql = format!(
        "UPDATE trials SET state = 'pending', lease_token = NULL, lease_expires_at = NULL, \
             worker = NULL, started_at = NULL, last_epoch = NULL, \
             attempts = MAX(attempts - 1, 0) \
         WHERE id = ? AND state = 'running' AND lease_token = ? AND lease_expires_at >= ? \
         RETURNING {TRIAL_COLUMNS}"
    );
    let query = sqlx::query(&sql).bind(trial.0).bind(token).bind(now);
    let row = write_returning(query, &store.writer).await?;
    match row {
        Some(row) => trial_from_row(&row),
        None => Err(store.lease_failure(trial, token, now).await),
    }
}

pub(super) async fn finish_trial_unleased(
    store: &SqliteStore,
    trial: TrialId,
    now: i64,
    finish: Finish,
) -> Result<TrialRecord> {
    let sql = format!(
        "UPDATE trials SET state = ?, value = COALESCE(?, value), metrics = COALESCE(?, metrics), \
             failure_reason = ?, finished_at = ?, lease_token = NULL, lease_expires_at = NULL \
         WHERE id = ? AND state IN ('pending', 'running') \
         RETURNING {TRIAL_COLUMNS}"
    );
    let query = sqlx::query(&sql)
        .bind(finish.state.as_str())
        .bind(finish.value)
        .bind(finish.metrics.as_ref().map(to_json_text).transpose()?)
        .bind(&finish.reason)
        .bind(now)
        .bind(trial.0);
    let row = write_returning(query, &store.writer).await?;
    match row {
        Some(row) => {
            let mut record = trial_from_row(&row)?;
            record.epochs = store.epochs_of(trial).await?;
            Ok(record)
        }
        None => {
            let current = store.get_trial(trial).await?;
            Err(StoreError::NotRunning {
                id: trial,
                state: current.state,
            })
        }
    }
}

pub(super) async fn earliest_lease_expiry(store: &SqliteStore) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT MIN(lease_expires_at) FROM trials WHERE state = 'running'")
            .fetch_one(&store.pool)
            .await?,
    )
}

pub(super) async fn reap_expired_leases(store: &SqliteStore, now: i64) -> Result<Vec<ReapedTrial>> {
    // Called on every ask: look before taking the write lock.
    let any = sqlx::query(
        "SELECT 1 FROM trials WHERE state = 'running' AND lease_expires_at < ? LIMIT 1",
    )
    .bind(now)
    .fetch_optional(&store.pool)
    .await?;
    if any.is_none() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "UPDATE trials SET \
             state = CASE WHEN attempts > (SELECT max_retries FROM studies s WHERE s.id = study_id) \
                          THEN 'failed' ELSE 'pending' END, \
             failure_reason = CASE WHEN attempts > (SELECT max_retries FROM studies s WHERE s.id = study_id) \
                          THEN 'lease expired ' || attempts || ' time(s) without a result (worker lost?); out of retries' \
                          ELSE failure_reason END, \
             finished_at = CASE WHEN attempts > (SELECT max_retries FROM studies s WHERE s.id = study_id) \
                          THEN ?1 ELSE NULL END, \
             last_epoch = CASE WHEN attempts > (SELECT max_retries FROM studies s WHERE s.id = study_id) \
                          THEN last_epoch ELSE NULL END, \
             lease_token = CASE WHEN attempts > (SELECT max_retries FROM studies s WHERE s.id = study_id) \
                          THEN NULL ELSE lease_token END, \
             lease_expires_at = NULL, worker = NULL \
         WHERE state = 'running' AND lease_expires_at < ?1 \
         RETURNING id, study_id, state",
    )
    .bind(now)
    .fetch_all(&store.writer)
    .await?;
    rows.iter()
        .map(|row| {
            let state: String = row.get("state");
            Ok(ReapedTrial {
                id: TrialId(row.get("id")),
                study_id: StudyId(row.get("study_id")),
                state: TrialState::from_str(&state)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            })
        })
        .collect()
}
