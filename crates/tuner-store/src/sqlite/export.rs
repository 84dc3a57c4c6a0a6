//! A study copied out ([`StudyDump`], read at one moment) and in (one transaction,
//! new ids).

use std::collections::HashMap;

use sqlx::Row;
use tuner_core::{StudyId, config_key};

use super::{
    STUDY_COLUMNS, SqliteStore, TRIAL_COLUMNS, event_from_row, group_epochs, study_from_row,
    to_json_text, trial_from_row, write_returning,
};
use crate::{Result, StoreError, StudyDump, StudyRecord, dump};

pub(super) async fn export_study(store: &SqliteStore, id: StudyId) -> Result<StudyDump> {
    // One read transaction: in WAL mode its reads see one snapshot, so a study that
    // is still running is read as it was at one moment.
    let mut tx = store.pool.begin().await?;
    let row = sqlx::query(&format!("SELECT {STUDY_COLUMNS} FROM studies WHERE id = ?"))
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::StudyNotFound(id))?;
    let study = study_from_row(&row)?;
    let mut trials = sqlx::query(&format!(
        "SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ? ORDER BY number"
    ))
    .bind(id.0)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(trial_from_row)
    .collect::<Result<Vec<_>>>()?;
    let rows = sqlx::query(
        "SELECT e.trial_id, e.epoch, e.value, e.metrics, e.reported_at FROM trial_epochs e \
         JOIN trials t ON t.id = e.trial_id WHERE t.study_id = ? ORDER BY e.trial_id, e.epoch",
    )
    .bind(id.0)
    .fetch_all(&mut *tx)
    .await?;
    let mut by_trial = HashMap::new();
    group_epochs(&rows, &mut by_trial)?;
    for trial in &mut trials {
        trial.epochs = by_trial.remove(&trial.id).unwrap_or_default();
    }
    let events = sqlx::query(
        "SELECT id, study_id, trial_id, number, kind, epoch, value, at FROM trial_events \
         WHERE study_id = ? ORDER BY id",
    )
    .bind(id.0)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(event_from_row)
    .collect();
    Ok(StudyDump {
        study,
        trials,
        events,
    })
}

pub(super) async fn import_study(store: &SqliteStore, source: &StudyDump) -> Result<StudyRecord> {
    dump::check(source)?;
    // The writer connection, so the import queues with every other write; IMMEDIATE
    // takes the write lock at once. Dropped on any error: rolled back.
    let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await?;
    let s = &source.study;
    let sql = format!(
        "INSERT INTO studies (name, spec, direction, max_retries, state, state_reason, \
             created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {STUDY_COLUMNS}"
    );
    let query = sqlx::query(&sql)
        .bind(&s.name)
        .bind(to_json_text(&s.spec)?)
        .bind(s.direction.as_str())
        .bind(i64::from(s.max_retries))
        .bind(s.state.as_str())
        .bind(&s.state_reason)
        .bind(s.created_at)
        .bind(s.updated_at);
    let row = write_returning(query, &mut *tx)
        .await?
        .ok_or_else(|| StoreError::Corrupt("an insert returned no row".into()))?;
    let study = study_from_row(&row)?;

    // New trial ids, by number (the dump's numbers are 0..n).
    let mut ids = Vec::with_capacity(source.trials.len());
    for t in &source.trials {
        let query = sqlx::query(
            "INSERT INTO trials (study_id, number, state, params, config_key, value, metrics, \
                 worker, lease_token, lease_expires_at, attempts, last_epoch, failure_reason, \
                 created_at, started_at, finished_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(study.id.0)
        .bind(t.number as i64)
        .bind(dump::insert_state(t).as_str())
        .bind(to_json_text(&t.params)?)
        .bind(config_key(&t.params))
        .bind(t.value)
        .bind(t.metrics.as_ref().map(to_json_text).transpose()?)
        .bind(&t.worker)
        .bind(&t.lease_token)
        .bind(t.lease_expires_at)
        .bind(i64::from(t.attempts))
        .bind(t.last_epoch.map(i64::from))
        .bind(&t.failure_reason)
        .bind(t.created_at)
        .bind(t.started_at)
        .bind(t.finished_at);
        let row = write_returning(query, &mut *tx)
            .await?
            .ok_or_else(|| StoreError::Corrupt("an insert returned no row".into()))?;
        let id: i64 = row.get("id");
        ids.push(id);
        for e in &t.epochs {
            sqlx::query(
                "INSERT INTO trial_epochs (trial_id, epoch, value, metrics, reported_at) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(i64::from(e.epoch))
            .bind(e.value)
            .bind(to_json_text(&e.metrics)?)
            .bind(e.reported_at)
            .execute(&mut *tx)
            .await?;
        }
    }
    for (t, id) in source.trials.iter().zip(&ids) {
        if dump::insert_state(t) != t.state {
            sqlx::query("UPDATE trials SET state = ? WHERE id = ?")
                .bind(t.state.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
    }
    // The triggers logged and counted the inserts and updates above, which are not
    // what happened: the dump's log replaces theirs, and the counts are the rows'.
    sqlx::query("DELETE FROM trial_events WHERE study_id = ?")
        .bind(study.id.0)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM trial_counts WHERE study_id = ?")
        .bind(study.id.0)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO trial_counts (study_id, state, n) \
         SELECT study_id, state, COUNT(*) FROM trials WHERE study_id = ? GROUP BY state",
    )
    .bind(study.id.0)
    .execute(&mut *tx)
    .await?;
    // In order: AUTOINCREMENT ids follow every event this file ever had.
    for e in &source.events {
        sqlx::query(
            "INSERT INTO trial_events (study_id, trial_id, number, kind, epoch, value, at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(study.id.0)
        .bind(ids[e.number as usize])
        .bind(e.number as i64)
        .bind(&e.kind)
        .bind(e.epoch.map(i64::from))
        .bind(e.value)
        .bind(e.at)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(study)
}
