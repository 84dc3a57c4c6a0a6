//! Studies: created, listed, their state (and, when extended, spec) changed, deleted, their trial counts and best
//! trial.

use sqlx::Row;
use tuner_core::{Direction, StudyId, StudyState};

use super::ask::set_state;
use super::{
    STUDY_COLUMNS, SqliteStore, TRIAL_COLUMNS, study_from_row, to_json_text, trial_from_row,
    write_returning,
};
use crate::{NewStudy, Result, Store, StoreError, StudyRecord, TrialCounts, TrialRecord};

pub(super) async fn create_study(
    store: &SqliteStore,
    new: NewStudy,
    now: i64,
) -> Result<StudyRecord> {
    let sql = format!(
        "INSERT INTO studies (name, spec, direction, max_retries, state, created_at, updated_at) \
         VALUES (?, ?, ?, ?, 'running', ?, ?) RETURNING {STUDY_COLUMNS}"
    );
    let query = sqlx::query(&sql)
        .bind(&new.name)
        .bind(to_json_text(&new.spec)?)
        .bind(new.direction.as_str())
        .bind(i64::from(new.max_retries))
        .bind(now)
        .bind(now);
    let row = write_returning(query, &store.writer)
        .await?
        .ok_or_else(|| StoreError::Corrupt("an insert returned no row".into()))?;
    study_from_row(&row)
}

pub(super) async fn list_studies(store: &SqliteStore) -> Result<Vec<StudyRecord>> {
    sqlx::query(&format!("SELECT {STUDY_COLUMNS} FROM studies ORDER BY id"))
        .fetch_all(&store.pool)
        .await?
        .iter()
        .map(study_from_row)
        .collect()
}

pub(super) async fn set_study_state(
    store: &SqliteStore,
    id: StudyId,
    state: StudyState,
    reason: Option<&str>,
    now: i64,
) -> Result<()> {
    set_state(&store.writer, id, state, reason, now).await
}

pub(super) async fn set_study_spec(
    store: &SqliteStore,
    id: StudyId,
    spec: &serde_json::Value,
    state: StudyState,
    reason: Option<&str>,
    now: i64,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE studies SET spec = ?, state = ?, state_reason = ?, updated_at = ? \
         WHERE id = ?",
    )
    .bind(to_json_text(spec)?)
    .bind(state.as_str())
    .bind(reason)
    .bind(now)
    .bind(id.0)
    .execute(&store.writer)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::StudyNotFound(id));
    }
    Ok(())
}

pub(super) async fn delete_study(store: &SqliteStore, id: StudyId) -> Result<()> {
    let done = sqlx::query("DELETE FROM studies WHERE id = ?")
        .bind(id.0)
        .execute(&store.writer)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::StudyNotFound(id));
    }
    Ok(())
}

pub(super) async fn trial_counts(store: &SqliteStore, study: StudyId) -> Result<TrialCounts> {
    let rows = sqlx::query("SELECT state, n FROM trial_counts WHERE study_id = ?")
        .bind(study.0)
        .fetch_all(&store.pool)
        .await?;
    let mut counts = TrialCounts::default();
    for row in rows {
        let n = row.get::<i64, _>("n") as u64;
        match row.get::<String, _>("state").as_str() {
            "pending" => counts.pending = n,
            "running" => counts.running = n,
            "completed" => counts.completed = n,
            "pruned" => counts.pruned = n,
            "failed" => counts.failed = n,
            other => return Err(StoreError::Corrupt(format!("trial state `{other}`"))),
        }
    }
    Ok(counts)
}

pub(super) async fn trials_created(store: &SqliteStore, study: StudyId) -> Result<u64> {
    let created: Option<i64> = sqlx::query_scalar(
        "SELECT (SELECT COALESCE(MAX(number) + 1, 0) FROM trials WHERE study_id = studies.id) \
         FROM studies WHERE id = ?",
    )
    .bind(study.0)
    .fetch_optional(&store.pool)
    .await?;
    let created = created.ok_or(StoreError::StudyNotFound(study))?;
    Ok(created as u64)
}

pub(super) async fn best_trial(store: &SqliteStore, study: StudyId) -> Result<Option<TrialRecord>> {
    let direction = store.get_study(study).await?.direction;
    let order = match direction {
        Direction::Maximize => "DESC",
        Direction::Minimize => "ASC",
    };
    let row = sqlx::query(&format!(
        "SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ? AND state = 'completed' \
         ORDER BY value {order}, number ASC LIMIT 1"
    ))
    .bind(study.0)
    .fetch_optional(&store.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut trial = trial_from_row(&row)?;
    trial.epochs = store.epochs_of(trial.id).await?;
    Ok(Some(trial))
}
