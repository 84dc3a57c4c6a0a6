//! A study copied out ([`StudyDump`], read at one moment) and in (one transaction,
//! new ids; rows inserted in chunks with `unnest`).

use std::collections::HashMap;

use sqlx::Row;
use tuner_core::{StudyId, config_key};

use super::{
    PgStore, STUDY_COLUMNS, TRIAL_COLUMNS, event_from_row, group_epochs, real, study_from_row,
    to_json_text, trial_from_row,
};
use crate::{EpochRecord, Result, StoreError, StudyDump, StudyRecord, TrialRecord, dump};

/// Rows per statement of an import (each statement is bounded by `statement_timeout`).
const IMPORT_CHUNK: usize = 5_000;

/// Trials as columns, to insert with `unnest`.
#[derive(Default)]
struct TrialColumns {
    number: Vec<i64>,
    state: Vec<&'static str>,
    params: Vec<String>,
    config_key: Vec<String>,
    value: Vec<Option<f64>>,
    metrics: Vec<Option<String>>,
    worker: Vec<Option<String>>,
    lease_token: Vec<Option<String>>,
    lease_expires_at: Vec<Option<i64>>,
    attempts: Vec<i64>,
    last_epoch: Vec<Option<i64>>,
    failure_reason: Vec<Option<String>>,
    created_at: Vec<i64>,
    started_at: Vec<Option<i64>>,
    finished_at: Vec<Option<i64>>,
}

impl TrialColumns {
    fn push(&mut self, t: &TrialRecord) -> Result<()> {
        self.number.push(t.number as i64);
        self.state.push(dump::insert_state(t).as_str());
        self.params.push(to_json_text(&t.params)?);
        self.config_key.push(config_key(&t.params));
        self.value.push(real(t.value));
        self.metrics
            .push(t.metrics.as_ref().map(to_json_text).transpose()?);
        self.worker.push(t.worker.clone());
        self.lease_token.push(t.lease_token.clone());
        self.lease_expires_at.push(t.lease_expires_at);
        self.attempts.push(i64::from(t.attempts));
        self.last_epoch.push(t.last_epoch.map(i64::from));
        self.failure_reason.push(t.failure_reason.clone());
        self.created_at.push(t.created_at);
        self.started_at.push(t.started_at);
        self.finished_at.push(t.finished_at);
        Ok(())
    }
}

pub(super) async fn export_study(store: &PgStore, id: StudyId) -> Result<StudyDump> {
    // Positions first (it writes, so not in the read-only snapshot below): then
    // every event committed until now has its public id.
    store.sequence_events().await?;
    // One snapshot for every read, so a study that is still running is read as it
    // was at one moment.
    let mut tx = store
        .pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let row = sqlx::query(&format!(
        "SELECT {STUDY_COLUMNS} FROM studies WHERE id = $1"
    ))
    .bind(id.0)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(StoreError::StudyNotFound(id))?;
    let study = study_from_row(&row)?;
    let mut trials = sqlx::query(&format!(
        "SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = $1 ORDER BY number"
    ))
    .bind(id.0)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(trial_from_row)
    .collect::<Result<Vec<_>>>()?;
    let rows = sqlx::query(
        "SELECT e.trial_id, e.epoch, e.value, e.metrics, e.reported_at FROM trial_epochs e \
         JOIN trials t ON t.id = e.trial_id WHERE t.study_id = $1 \
         ORDER BY e.trial_id, e.epoch",
    )
    .bind(id.0)
    .fetch_all(&mut *tx)
    .await?;
    let mut by_trial = HashMap::new();
    group_epochs(&rows, &mut by_trial)?;
    for trial in &mut trials {
        trial.epochs = by_trial.remove(&trial.id).unwrap_or_default();
    }
    // Events committed since the sequencer ran have no position yet: last, in the
    // order it will give them.
    let events = sqlx::query(
        "SELECT COALESCE(pos, 0) AS pos, study_id, trial_id, number, kind, epoch, value, at \
         FROM trial_events WHERE study_id = $1 \
         ORDER BY trial_events.pos IS NULL, trial_events.pos, id",
    )
    .bind(id.0)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(event_from_row)
    .collect::<Result<Vec<_>>>()?;
    tx.commit().await?;
    Ok(StudyDump {
        study,
        trials,
        events,
    })
}

pub(super) async fn import_study(store: &PgStore, source: &StudyDump) -> Result<StudyRecord> {
    dump::check(source)?;
    // Dropped on any error: rolled back. Until it commits nobody sees the new study,
    // so nothing here contends with live traffic but the foreign-key checks.
    let mut tx = store.pool.begin().await?;
    let s = &source.study;
    // next_number: the next ask numbers after the copied trials (dense from 0).
    let row = sqlx::query(&format!(
        "INSERT INTO studies (name, spec, direction, max_retries, state, state_reason, \
             created_at, updated_at, next_number) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {STUDY_COLUMNS}"
    ))
    .bind(&s.name)
    .bind(to_json_text(&s.spec)?)
    .bind(s.direction.as_str())
    .bind(i64::from(s.max_retries))
    .bind(s.state.as_str())
    .bind(&s.state_reason)
    .bind(s.created_at)
    .bind(s.updated_at)
    .bind(source.trials.len() as i64)
    .fetch_one(&mut *tx)
    .await?;
    let study = study_from_row(&row)?;

    // Rows go in as arrays, a chunk per statement, not a statement per row.
    let mut ids = vec![0_i64; source.trials.len()];
    for chunk in source.trials.chunks(IMPORT_CHUNK) {
        let mut c = TrialColumns::default();
        for t in chunk {
            c.push(t)?;
        }
        let rows = sqlx::query(
            "INSERT INTO trials (study_id, number, state, params, config_key, value, \
                 metrics, worker, lease_token, lease_expires_at, attempts, last_epoch, \
                 failure_reason, created_at, started_at, finished_at) \
             SELECT $1::bigint, u.* FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], \
                 $6::float8[], $7::text[], $8::text[], $9::text[], $10::bigint[], \
                 $11::bigint[], $12::bigint[], $13::text[], $14::bigint[], $15::bigint[], \
                 $16::bigint[]) AS u \
             RETURNING id, number",
        )
        .bind(study.id.0)
        .bind(c.number)
        .bind(c.state)
        .bind(c.params)
        .bind(c.config_key)
        .bind(c.value)
        .bind(c.metrics)
        .bind(c.worker)
        .bind(c.lease_token)
        .bind(c.lease_expires_at)
        .bind(c.attempts)
        .bind(c.last_epoch)
        .bind(c.failure_reason)
        .bind(c.created_at)
        .bind(c.started_at)
        .bind(c.finished_at)
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let number: i64 = row.try_get("number")?;
            ids[number as usize] = row.try_get("id")?;
        }
    }
    let epochs: Vec<(i64, &EpochRecord)> = source
        .trials
        .iter()
        .zip(&ids)
        .flat_map(|(t, &id)| t.epochs.iter().map(move |e| (id, e)))
        .collect();
    for chunk in epochs.chunks(IMPORT_CHUNK) {
        let metrics = chunk
            .iter()
            .map(|(_, e)| to_json_text(&e.metrics))
            .collect::<Result<Vec<_>>>()?;
        sqlx::query(
            "INSERT INTO trial_epochs (trial_id, epoch, value, metrics, reported_at) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::float8[], $4::text[], \
                 $5::bigint[])",
        )
        .bind(chunk.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|(_, e)| i64::from(e.epoch))
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|(_, e)| real(e.value)).collect::<Vec<_>>())
        .bind(metrics)
        .bind(chunk.iter().map(|(_, e)| e.reported_at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    let (finished_ids, finished_states): (Vec<i64>, Vec<&str>) = source
        .trials
        .iter()
        .zip(&ids)
        .filter(|(t, _)| dump::insert_state(t) != t.state)
        .map(|(t, &id)| (id, t.state.as_str()))
        .unzip();
    sqlx::query(
        "UPDATE trials t SET state = u.state FROM unnest($1::bigint[], $2::text[]) AS u(id, state) \
         WHERE t.id = u.id",
    )
    .bind(finished_ids)
    .bind(finished_states)
    .execute(&mut *tx)
    .await?;
    // The triggers logged and counted the inserts and updates above, which are not
    // what happened: the dump's log replaces theirs, and the counts are the rows'.
    sqlx::query("DELETE FROM trial_events WHERE study_id = $1")
        .bind(study.id.0)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM trial_counts WHERE study_id = $1")
        .bind(study.id.0)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO trial_counts (study_id, state, n) \
         SELECT study_id, state, COUNT(*) FROM trials WHERE study_id = $1 GROUP BY study_id, state",
    )
    .bind(study.id.0)
    .execute(&mut *tx)
    .await?;
    // Without positions, in order: the sequencer positions them after commit, in `id`
    // order, after every event already positioned (as for any transaction's events).
    for chunk in source.events.chunks(IMPORT_CHUNK) {
        sqlx::query(
            "INSERT INTO trial_events (study_id, trial_id, number, kind, epoch, value, at) \
             SELECT $1::bigint, u.trial_id, u.number, u.kind, u.epoch, u.value, u.at \
             FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bigint[], \
                 $6::float8[], $7::bigint[]) WITH ORDINALITY \
                 AS u(trial_id, number, kind, epoch, value, at, k) \
             ORDER BY u.k",
        )
        .bind(study.id.0)
        .bind(
            chunk
                .iter()
                .map(|e| ids[e.number as usize])
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|e| e.number as i64).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|e| e.epoch.map(i64::from))
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|e| real(e.value)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| e.at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    // Committed; positions now save the first reader the work. Best effort: every
    // reader sequences before it reads.
    if let Err(e) = store.sequence_events().await {
        tracing::warn!(study = %study.id, error = %e, "could not position the imported events yet");
    }
    Ok(study)
}
