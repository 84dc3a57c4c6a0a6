//! Studies: created, listed, their state (and, when extended, spec) changed, deleted, their trial counts and best
//! trial.

use sqlx::Row;
use tuner_core::{Direction, StudyId, StudyState};

use super::ask::set_state;
use super::{
    COUNT_ROWS_BEFORE_FOLD, PgStore, STUDY_COLUMNS, TRIAL_COLUMNS, study_from_row, to_json_text,
    trial_from_row,
};
use crate::{NewStudy, Result, Store, StoreError, StudyRecord, TrialCounts, TrialRecord};

pub(super) async fn create_study(store: &PgStore, new: NewStudy, now: i64) -> Result<StudyRecord> {
    let row = sqlx::query(&format!(
        "INSERT INTO studies (name, spec, direction, max_retries, state, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'running', $5, $5) RETURNING {STUDY_COLUMNS}"
    ))
    .bind(&new.name)
    .bind(to_json_text(&new.spec)?)
    .bind(new.direction.as_str())
    .bind(i64::from(new.max_retries))
    .bind(now)
    .fetch_one(&store.pool)
    .await?;
    study_from_row(&row)
}

pub(super) async fn list_studies(store: &PgStore) -> Result<Vec<StudyRecord>> {
    sqlx::query(&format!("SELECT {STUDY_COLUMNS} FROM studies ORDER BY id"))
        .fetch_all(&store.pool)
        .await?
        .iter()
        .map(study_from_row)
        .collect()
}

pub(super) async fn set_study_state(
    store: &PgStore,
    id: StudyId,
    state: StudyState,
    reason: Option<&str>,
    now: i64,
) -> Result<()> {
    set_state(&store.pool, id, state, reason, now).await
}

pub(super) async fn set_study_spec(
    store: &PgStore,
    id: StudyId,
    spec: &serde_json::Value,
    state: StudyState,
    reason: Option<&str>,
    now: i64,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE studies SET spec = $1, state = $2, state_reason = $3, updated_at = $4 \
         WHERE id = $5",
    )
    .bind(to_json_text(spec)?)
    .bind(state.as_str())
    .bind(reason)
    .bind(now)
    .bind(id.0)
    .execute(&store.pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::StudyNotFound(id));
    }
    Ok(())
}

pub(super) async fn delete_study(store: &PgStore, id: StudyId) -> Result<()> {
    // Lock order: every other write locks a trial row and then (through the
    // foreign keys of its event and count rows) the study row. Deleting the study
    // first and cascading to its trials would take them the other way round and
    // deadlock with a finish or the reaper; so the trials first.
    let mut tx = store.pool.begin().await?;
    sqlx::query("SELECT id FROM trials WHERE study_id = $1 ORDER BY id FOR UPDATE")
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM studies WHERE id = $1")
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::StudyNotFound(id));
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn trials_created(store: &PgStore, study: StudyId) -> Result<u64> {
    let created: Option<i64> = sqlx::query_scalar("SELECT next_number FROM studies WHERE id = $1")
        .bind(study.0)
        .fetch_optional(&store.pool)
        .await?;
    let created = created.ok_or(StoreError::StudyNotFound(study))?;
    u64::try_from(created).map_err(|_| StoreError::Corrupt(format!("next trial number {created}")))
}

pub(super) async fn trial_counts(store: &PgStore, study: StudyId) -> Result<TrialCounts> {
    let rows = sqlx::query(
        "SELECT state, SUM(n)::bigint AS n, COUNT(*) AS rows FROM trial_counts \
         WHERE study_id = $1 GROUP BY state",
    )
    .bind(study.0)
    .fetch_all(&store.pool)
    .await?;
    let mut counts = TrialCounts::default();
    let mut stored_rows = 0;
    for row in rows {
        stored_rows += row.try_get::<i64, _>("rows")?;
        let n = row.try_get::<i64, _>("n")?;
        let n = u64::try_from(n)
            .map_err(|_| StoreError::Corrupt(format!("negative trial count {n}")))?;
        match row.try_get::<String, _>("state")?.as_str() {
            "pending" => counts.pending = n,
            "running" => counts.running = n,
            "completed" => counts.completed = n,
            "pruned" => counts.pruned = n,
            "failed" => counts.failed = n,
            other => return Err(StoreError::Corrupt(format!("trial state `{other}`"))),
        }
    }
    if stored_rows > COUNT_ROWS_BEFORE_FOLD {
        // Best effort: the counts above are right either way.
        if let Err(e) = store.fold_counts(study).await {
            tracing::warn!(study = %study, error = %e, "could not fold trial counts");
        }
    }
    Ok(counts)
}

pub(super) async fn best_trial(store: &PgStore, study: StudyId) -> Result<Option<TrialRecord>> {
    let direction = store.get_study(study).await?.direction;
    let order = match direction {
        Direction::Maximize => "DESC",
        Direction::Minimize => "ASC",
    };
    let row = sqlx::query(&format!(
        "SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = $1 AND state = 'completed' \
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
