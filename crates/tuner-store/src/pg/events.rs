//! The trial event log: the last event id, events after a cursor, and the run of
//! consecutive failures at the end.

use sqlx::Row;
use tuner_core::StudyId;

use super::{PgStore, event_from_row};
use crate::{Result, TrialEvent};

pub(super) async fn last_event_id(store: &PgStore, study: StudyId) -> Result<i64> {
    store.sequence_events().await?;
    Ok(sqlx::query_scalar::<_, Option<i64>>(
        "SELECT MAX(pos) FROM trial_events WHERE study_id = $1",
    )
    .bind(study.0)
    .fetch_one(&store.pool)
    .await?
    .unwrap_or(0))
}

pub(super) async fn events_since(
    store: &PgStore,
    study: StudyId,
    after: i64,
    limit: u32,
) -> Result<Vec<TrialEvent>> {
    store.sequence_events().await?;
    let rows = sqlx::query(
        "SELECT pos, study_id, trial_id, number, kind, epoch, value, at FROM trial_events \
         WHERE study_id = $1 AND pos > $2 ORDER BY pos LIMIT $3",
    )
    .bind(study.0)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(&store.pool)
    .await?;
    rows.iter().map(event_from_row).collect()
}

pub(super) async fn consecutive_failures(
    store: &PgStore,
    study: StudyId,
    limit: u32,
    since: i64,
) -> Result<u32> {
    let rows = sqlx::query(
        "SELECT state FROM trials WHERE study_id = $1 AND finished_at > $2 \
         ORDER BY finished_at DESC, id DESC LIMIT $3",
    )
    .bind(study.0)
    .bind(since)
    .bind(i64::from(limit))
    .fetch_all(&store.pool)
    .await?;
    let mut failures = 0;
    for row in &rows {
        if row.try_get::<String, _>("state")? != "failed" {
            break;
        }
        failures += 1;
    }
    Ok(failures)
}
