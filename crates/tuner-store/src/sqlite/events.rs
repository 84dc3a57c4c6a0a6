//! The trial event log: the last event id, events after a cursor, and the run of
//! consecutive failures at the end.

use sqlx::Row;
use tuner_core::StudyId;

use super::{SqliteStore, event_from_row};
use crate::{Result, TrialEvent};

pub(super) async fn last_event_id(store: &SqliteStore, study: StudyId) -> Result<i64> {
    Ok(
        sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM trial_events WHERE study_id = ?")
            .bind(study.0)
            .fetch_one(&store.pool)
            .await?
            .unwrap_or(0),
    )
}

pub(super) async fn events_since(
    store: &SqliteStore,
    study: StudyId,
    after: i64,
    limit: u32,
) -> Result<Vec<TrialEvent>> {
    let rows = sqlx::query(
        "SELECT id, study_id, trial_id, number, kind, epoch, value, at FROM trial_events \
         WHERE study_id = ? AND id > ? ORDER BY id LIMIT ?",
    )
    .bind(study.0)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(&store.pool)
    .await?;
    Ok(rows.iter().map(event_from_row).collect())
}

pub(super) async fn consecutive_failures(
    store: &SqliteStore,
    study: StudyId,
    limit: u32,
    since: i64,
) -> Result<u32> {
    let rows = sqlx::query(
        "SELECT state FROM trials WHERE study_id = ? AND finished_at > ? \
         ORDER BY finished_at DESC, id DESC LIMIT ?",
    )
    .bind(study.0)
    .bind(since)
    .bind(i64::from(limit))
    .fetch_all(&store.pool)
    .await?;
    Ok(rows
        .iter()
        .take_while(|r| r.get::<String, _>("state") == "failed")
        .count() as u32)
}
