//! [`SqliteStore`]: the store in one SQLite file, one server its only writer.
//!
//! This module holds the store (opening, the shared row mappers and reads) and its
//! `Store` impl, which forwards each operation to the module of its concern: `ask` (the
//! ask transaction), `studies`, `trials` (reads, the lease holder's writes, the reaper),
//! `events` (the event log) and `export` (a study copied out and in).

use std::{collections::HashMap, path::Path, str::FromStr, time::Duration};

use async_trait::async_trait;
use sqlx::{
    Row, SqlitePool,
    migrate::Migrator,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
};
use tuner_core::{Direction, Params, StudyId, StudyState, TrialId, TrialState};

use crate::{
    AskTxn, EpochRecord, Finish, LeaseGrant, NewEpoch, NewStudy, ReapedTrial, Result, Store,
    StoreError, StudyDump, StudyRecord, TrialCounts, TrialEvent, TrialRecord, batch::Batcher,
    rules::refusal,
};

mod ask;
mod events;
mod export;
mod studies;
mod trials;

use ask::trials_from;

/// The SQLite schema, from the workspace's `migrations/sqlite/` folder, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// A [`Store`] in one SQLite file, in WAL mode. The server process is its only writer.
///
/// Writes go through a single connection, so concurrent requests queue in the pool
/// instead of racing for SQLite's write lock (whose busy handler sleeps); reads use
/// their own connections, which WAL lets run beside the writer. The hot writes (a trial
/// leased, a trial finished) are group-committed ([`crate::batch`]).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    pool: SqlitePool,
    batch: Batcher,
}

const TRIAL_COLUMNS: &str = "id, study_id, number, state, params, value, metrics, worker, \
     lease_token, lease_expires_at, attempts, last_epoch, failure_reason, created_at, \
     started_at, finished_at";

const STUDY_COLUMNS: &str =
    "id, name, spec, direction, max_retries, state, state_reason, created_at, updated_at";

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a commit survives the process being killed; only an OS
            // crash or power loss can drop the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let batch = Batcher::spawn(writer.clone());
        Ok(Self {
            writer,
            pool,
            batch,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }

    /// Explains why a lease-checked update touched no row.
    async fn lease_failure(&self, id: TrialId, token: &str, now: i64) -> StoreError {
        match trial_without_epochs(&self.pool, id).await {
            Ok(current) => refusal(&current, token, now),
            Err(e) => e,
        }
    }

    /// The study's trials by number, without epochs; with `changed_after`, only those
    /// with an event after that one. An unknown study is an error, not an empty list.
    async fn summaries(
        &self,
        study: StudyId,
        changed_after: Option<i64>,
    ) -> Result<Vec<TrialRecord>> {
        let exists = sqlx::query("SELECT 1 FROM studies WHERE id = ?")
            .bind(study.0)
            .fetch_optional(&self.pool)
            .await?;
        if exists.is_none() {
            return Err(StoreError::StudyNotFound(study));
        }
        let changed = if changed_after.is_some() {
            "AND id IN (SELECT trial_id FROM trial_events WHERE study_id = ?1 AND id > ?2)"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ?1 {changed} ORDER BY number"
        );
        let mut query = sqlx::query(&sql).bind(study.0);
        if let Some(after) = changed_after {
            query = query.bind(after);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(trial_from_row)
            .collect()
    }
}

/// Runs a write with `RETURNING` to its end and gives its first row.
///
/// Never `fetch_one`/`fetch_optional` for a write: they stop stepping after the first
/// row, and in autocommit SQLite commits when the statement finishes, which then happens
/// in sqlx's reset of the statement, whose error it drops. A commit that failed (a full
/// disk) would look like success, row and all.
async fn write_returning<'q, 'c, E>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    executor: E,
) -> Result<Option<SqliteRow>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    Ok(query.fetch_all(executor).await?.into_iter().next())
}

/// One trial without its epochs, read through `executor` (the read pool, or the writer
/// inside a batch, which sees the batch's uncommitted writes).
async fn trial_without_epochs<'e, E>(executor: E, id: TrialId) -> Result<TrialRecord>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let row = sqlx::query(&format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE id = ?"))
        .bind(id.0)
        .fetch_optional(executor)
        .await?
        .ok_or(StoreError::TrialNotFound(id))?;
    trial_from_row(&row)
}

fn study_from_row(row: &SqliteRow) -> Result<StudyRecord> {
    let spec: String = row.get("spec");
    let direction: String = row.get("direction");
    let state: String = row.get("state");
    Ok(StudyRecord {
        id: StudyId(row.get("id")),
        name: row.get("name"),
        spec: serde_json::from_str(&spec)
            .map_err(|e| StoreError::Corrupt(format!("study spec: {e}")))?,
        direction: match direction.as_str() {
            "minimize" => Direction::Minimize,
            _ => Direction::Maximize,
        },
        max_retries: row.get::<i64, _>("max_retries") as u32,
        state: StudyState::from_str(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        state_reason: row.get("state_reason"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    })
}

fn trial_from_row(row: &SqliteRow) -> Result<TrialRecord> {
    let state: String = row.get("state");
    let params: String = row.get("params");
    let metrics: Option<String> = row.get("metrics");
    Ok(TrialRecord {
        id: TrialId(row.get("id")),
        study_id: StudyId(row.get("study_id")),
        number: row.get::<i64, _>("number") as u64,
        state: TrialState::from_str(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        params: serde_json::from_str(&params)
            .map_err(|e| StoreError::Corrupt(format!("trial params: {e}")))?,
        value: row.get("value"),
        metrics: metrics
            .map(|m| serde_json::from_str(&m))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("trial metrics: {e}")))?,
        worker: row.get("worker"),
        lease_token: row.get("lease_token"),
        lease_expires_at: row.get("lease_expires_at"),
        attempts: row.get::<i64, _>("attempts") as u32,
        last_epoch: row.get::<Option<i64>, _>("last_epoch").map(|e| e as u32),
        failure_reason: row.get("failure_reason"),
        created_at: row.get("created_at"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        epochs: Vec::new(),
    })
}

fn to_json_text<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

async fn study_by_id<'e, E>(executor: E, id: StudyId) -> Result<StudyRecord>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let row = sqlx::query(&format!("SELECT {STUDY_COLUMNS} FROM studies WHERE id = ?"))
        .bind(id.0)
        .fetch_optional(executor)
        .await?
        .ok_or(StoreError::StudyNotFound(id))?;
    study_from_row(&row)
}

#[async_trait]
impl Store for SqliteStore {
    async fn begin_ask(&self, study: StudyId) -> Result<Box<dyn AskTxn>> {
        ask::begin_ask(self, study).await
    }

    async fn trials_from(
        &self,
        study: StudyId,
        next_number: u64,
        unfinished: &[(TrialId, TrialState)],
    ) -> Result<Vec<TrialRecord>> {
        trials_from(&self.pool, study, next_number, unfinished).await
    }

    async fn create_study(&self, new: NewStudy, now: i64) -> Result<StudyRecord> {
        studies::create_study(self, new, now).await
    }

    async fn get_study(&self, id: StudyId) -> Result<StudyRecord> {
        study_by_id(&self.pool, id).await
    }

    async fn list_studies(&self) -> Result<Vec<StudyRecord>> {
        studies::list_studies(self).await
    }

    async fn set_study_state(
        &self,
        id: StudyId,
        state: StudyState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<()> {
        studies::set_study_state(self, id, state, reason, now).await
    }

    async fn set_study_spec(
        &self,
        id: StudyId,
        spec: &serde_json::Value,
        state: StudyState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<()> {
        studies::set_study_spec(self, id, spec, state, reason, now).await
    }

    async fn delete_study(&self, id: StudyId) -> Result<()> {
        studies::delete_study(self, id).await
    }

    async fn trial_counts(&self, study: StudyId) -> Result<TrialCounts> {
        studies::trial_counts(self, study).await
    }

    async fn trials_created(&self, study: StudyId) -> Result<u64> {
        studies::trials_created(self, study).await
    }

    async fn best_trial(&self, study: StudyId) -> Result<Option<TrialRecord>> {
        studies::best_trial(self, study).await
    }

    async fn list_trials(&self, study: StudyId) -> Result<Vec<TrialRecord>> {
        trials::list_trials(self, study).await
    }

    async fn epoch_values(
        &self,
        study: StudyId,
        epoch: u32,
    ) -> Result<Vec<(TrialId, TrialState, Option<f64>)>> {
        trials::epoch_values(self, study, epoch).await
    }

    async fn epochs_of_trials(
        &self,
        trials: &[TrialId],
    ) -> Result<HashMap<TrialId, Vec<EpochRecord>>> {
        trials::epochs_of_trials(self, trials).await
    }

    async fn trial_summaries(&self, study: StudyId) -> Result<Vec<TrialRecord>> {
        self.summaries(study, None).await
    }

    async fn get_trial(&self, id: TrialId) -> Result<TrialRecord> {
        let mut trial = trial_without_epochs(&self.pool, id).await?;
        trial.epochs = self.epochs_of(id).await?;
        Ok(trial)
    }

    async fn study_of_trial(&self, id: TrialId) -> Result<StudyId> {
        trials::study_of_trial(self, id).await
    }

    async fn insert_leased_trial(
        &self,
        study: StudyId,
        params: &Params,
        lease: &LeaseGrant,
    ) -> Result<TrialRecord> {
        ask::insert_leased_trial(self, study, params, lease).await
    }

    async fn lease_pending_trial(
        &self,
        study: StudyId,
        lease: &LeaseGrant,
    ) -> Result<Option<TrialRecord>> {
        ask::lease_pending_trial(self, study, lease).await
    }

    async fn heartbeat(
        &self,
        trial: TrialId,
        token: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        trials::heartbeat(self, trial, token, now, expires_at).await
    }

    async fn report_epoch(
        &self,
        trial: TrialId,
        token: &str,
        now: i64,
        expires_at: i64,
        report: &NewEpoch,
    ) -> Result<TrialRecord> {
        trials::report_epoch(self, trial, token, now, expires_at, report).await
    }

    async fn finish_trial(
        &self,
        trial: TrialId,
        token: &str,
        now: i64,
        finish: Finish,
    ) -> Result<TrialRecord> {
        trials::finish_trial(self, trial, token, now, finish).await
    }

    async fn release_trial(&self, trial: TrialId, token: &str, now: i64) -> Result<TrialRecord> {
        trials::release_trial(self, trial, token, now).await
    }

    async fn finish_trial_unleased(
        &self,
        trial: TrialId,
        now: i64,
        finish: Finish,
    ) -> Result<TrialRecord> {
        trials::finish_trial_unleased(self, trial, now, finish).await
    }

    async fn earliest_lease_expiry(&self) -> Result<Option<i64>> {
        trials::earliest_lease_expiry(self).await
    }

    async fn reap_expired_leases(&self, now: i64) -> Result<Vec<ReapedTrial>> {
        trials::reap_expired_leases(self, now).await
    }

    async fn trials_changed_after(&self, study: StudyId, after: i64) -> Result<Vec<TrialRecord>> {
        self.summaries(study, Some(after)).await
    }

    async fn last_event_id(&self, study: StudyId) -> Result<i64> {
        events::last_event_id(self, study).await
    }

    async fn events_since(
        &self,
        study: StudyId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<TrialEvent>> {
        events::events_since(self, study, after, limit).await
    }

    async fn consecutive_failures(&self, study: StudyId, limit: u32, since: i64) -> Result<u32> {
        events::consecutive_failures(self, study, limit, since).await
    }

    async fn export_study(&self, id: StudyId) -> Result<StudyDump> {
        export::export_study(self, id).await
    }

    async fn import_study(&self, source: &StudyDump) -> Result<StudyRecord> {
        export::import_study(self, source).await
    }
}

impl SqliteStore {
    async fn epochs_of(&self, trial: TrialId) -> Result<Vec<EpochRecord>> {
        sqlx::query(
            "SELECT epoch, value, metrics, reported_at FROM trial_epochs WHERE trial_id = ? ORDER BY epoch",
        )
        .bind(trial.0)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(epoch_from_row)
        .collect()
    }
}

/// Epoch rows (with `trial_id`, in epoch order per trial) into each trial's list.
fn group_epochs(
    rows: &[SqliteRow],
    by_trial: &mut HashMap<TrialId, Vec<EpochRecord>>,
) -> Result<()> {
    for row in rows {
        by_trial
            .entry(TrialId(row.get("trial_id")))
            .or_default()
            .push(epoch_from_row(row)?);
    }
    Ok(())
}

fn event_from_row(row: &SqliteRow) -> TrialEvent {
    TrialEvent {
        id: row.get("id"),
        study_id: StudyId(row.get("study_id")),
        trial_id: TrialId(row.get("trial_id")),
        number: row.get::<i64, _>("number") as u64,
        kind: row.get("kind"),
        epoch: row.get::<Option<i64>, _>("epoch").map(|e| e as u32),
        value: row.get("value"),
        at: row.get("at"),
    }
}

fn epoch_from_row(row: &SqliteRow) -> Result<EpochRecord> {
    let metrics: String = row.get("metrics");
    Ok(EpochRecord {
        epoch: row.get::<i64, _>("epoch") as u32,
        value: row.get("value"),
        metrics: serde_json::from_str(&metrics)
            .map_err(|e| StoreError::Corrupt(format!("epoch metrics: {e}")))?,
        reported_at: row.get("reported_at"),
    })
}
