//! [`PgStore`]: the store on PostgreSQL, shared by any number of server replicas.
//!
//! This module holds the store (connecting, session settings, the shared row mappers
//! and reads) and its `Store` impl, which forwards each operation to the module of its
//! concern: `ask` (the ask transaction), `studies`, `trials` (reads, the lease holder's
//! writes, the reaper), `events` (the event log) and `export` (a study copied out and
//! in).

use std::{
    collections::HashMap,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use sqlx::{
    Connection, PgConnection, PgPool, Row,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions, PgRow},
};
use tuner_core::{Direction, Params, StudyId, StudyState, TrialId, TrialState};

use crate::{
    AskTxn, EpochRecord, Finish, LeaseGrant, NewEpoch, NewStudy, ReapedTrial, Result, Store,
    StoreError, StudyDump, StudyRecord, TrialCounts, TrialEvent, TrialRecord, rules::refusal,
};

mod ask;
mod events;
mod export;
mod studies;
mod trials;

use ask::trials_from;

/// The PostgreSQL schema, from the workspace's `migrations/postgres/` folder, embedded at
/// build time.
pub static PG_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Session settings of every pooled connection. A replica that dies or hangs must not
/// keep its locks (a study row, a trial) for longer than these: the server closes an
/// idle transaction, cancels a statement, gives up waiting for a lock, and its TCP
/// keepalives notice a peer that vanished without closing the connection (sqlx has no
/// client-side keepalive setting; the server side's is what frees the locks).
const SESSION_SETTINGS: [(&str, &str); 7] = [
    ("lock_timeout", "10s"),
    ("statement_timeout", "30s"),
    ("idle_in_transaction_session_timeout", "30s"),
    ("tcp_keepalives_idle", "15"),
    ("tcp_keepalives_interval", "5"),
    ("tcp_keepalives_count", "3"),
    // The event sequencer relies on a fresh snapshot per statement. (A space in a
    // startup option is escaped with a backslash.)
    ("default_transaction_isolation", "read\\ committed"),
];

/// How many delta rows a study's counts may pile up before a read folds them.
const COUNT_ROWS_BEFORE_FOLD: i64 = 32;

/// A [`Store`] in PostgreSQL. Any number of handles (server replicas) may share one
/// database: every rule holds across them (DESIGN.md §7). Trial numbers come from a
/// per-study counter taken under the study row's lock; a duplicate configuration is
/// refused by a unique constraint; lease changes are single conditional updates; the
/// reaper skips rows another replica holds; event ids are positions handed out after
/// commit (see `sequence_trial_events` in the migration), so a cursor never skips.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Set while this handle folds counts: its other readers skip folding meanwhile
    /// (one fold takes every row there is; a second would find nothing to take).
    folding: Arc<AtomicBool>,
}

const TRIAL_COLUMNS: &str = "id, study_id, number, state, params, value, metrics, worker, \
     lease_token, lease_expires_at, attempts, last_epoch, failure_reason, created_at, \
     started_at, finished_at";

const STUDY_COLUMNS: &str =
    "id, name, spec, direction, max_retries, state, state_reason, created_at, updated_at";

impl PgStore {
    /// Connects to `url` (`postgres://...`) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url.parse()?, 16).await
    }

    /// Connects with these options and at most `max_connections` pooled connections.
    pub async fn connect_with(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        // Migrations on a connection of their own, without the timeouts: replicas starting
        // together wait for each other's migration (sqlx takes an advisory lock), which
        // may take longer than a lock_timeout meant for trial traffic.
        let mut conn = PgConnection::connect_with(&options).await?;
        PG_MIGRATOR.run(&mut conn).await?;
        conn.close().await?;
        let options = options.application_name("tuner").options(SESSION_SETTINGS);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            folding: Arc::default(),
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Gives every committed event its position (its public id). Readers call this
    /// first, so they see every event committed before they asked.
    async fn sequence_events(&self) -> Result<()> {
        sqlx::query("SELECT sequence_trial_events()")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Explains why a lease-checked update touched no row.
    async fn lease_failure(&self, id: TrialId, token: &str, now: i64) -> StoreError {
        match self.trial_without_epochs(id).await {
            Ok(current) => refusal(&current, token, now),
            Err(e) => e,
        }
    }

    async fn trial_without_epochs(&self, id: TrialId) -> Result<TrialRecord> {
        let row = sqlx::query(&format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::TrialNotFound(id))?;
        trial_from_row(&row)
    }

    async fn epochs_of(&self, trial: TrialId) -> Result<Vec<EpochRecord>> {
        sqlx::query(
            "SELECT epoch, value, metrics, reported_at FROM trial_epochs WHERE trial_id = $1 \
             ORDER BY epoch",
        )
        .bind(trial.0)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(epoch_from_row)
        .collect()
    }

    /// The study's trials by number, without epochs; with `changed_after`, only those
    /// with an event after that one. An unknown study is an error, not an empty list.
    async fn summaries(
        &self,
        study: StudyId,
        changed_after: Option<i64>,
    ) -> Result<Vec<TrialRecord>> {
        let exists = sqlx::query("SELECT 1 FROM studies WHERE id = $1")
            .bind(study.0)
            .fetch_optional(&self.pool)
            .await?;
        if exists.is_none() {
            return Err(StoreError::StudyNotFound(study));
        }
        let changed = if changed_after.is_some() {
            self.sequence_events().await?;
            "AND id IN (SELECT trial_id FROM trial_events WHERE study_id = $1 AND pos > $2)"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = $1 {changed} ORDER BY number"
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

    /// Folds a study's count deltas into one row per state (see `trial_counts` in the
    /// migration), unless this handle is already folding. Concurrent folds (other
    /// replicas) neither wait for nor double-count each other: each takes only the rows
    /// no other fold has locked (`SKIP LOCKED`), deletes them and puts back their sum.
    /// (A plain `DELETE` made every reader that saw too many rows queue behind the first
    /// fold's row locks: 44 ms a fold, 3,500 folds for 5,000 completions, under 64
    /// workers on 3 replicas.)
    async fn fold_counts(&self, study: StudyId) -> Result<()> {
        if self.folding.swap(true, Ordering::Acquire) {
            return Ok(());
        }
        let folded = self.fold_counts_now(study).await;
        self.folding.store(false, Ordering::Release);
        folded
    }

    async fn fold_counts_now(&self, study: StudyId) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // The study row before the count rows (the order a study's deletion takes them
        // in, through its cascade), so the two cannot deadlock.
        let study_row = sqlx::query("SELECT id FROM studies WHERE id = $1 FOR KEY SHARE")
            .bind(study.0)
            .fetch_optional(&mut *tx)
            .await?;
        if study_row.is_none() {
            return Ok(());
        }
        sqlx::query(
            "WITH gone AS (DELETE FROM trial_counts WHERE ctid = ANY(ARRAY( \
                 SELECT ctid FROM trial_counts WHERE study_id = $1 FOR UPDATE SKIP LOCKED)) \
                 RETURNING state, n) \
             INSERT INTO trial_counts (study_id, state, n) \
             SELECT $1, state, SUM(n)::bigint FROM gone GROUP BY state HAVING SUM(n) <> 0",
        )
        .bind(study.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// SQLite stores NaN as NULL; so does this store, so both answer alike.
fn real(value: Option<f64>) -> Option<f64> {
    value.filter(|v| !v.is_nan())
}

fn to_json_text<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn study_from_row(row: &PgRow) -> Result<StudyRecord> {
    let spec: String = row.try_get("spec")?;
    let direction: String = row.try_get("direction")?;
    let state: String = row.try_get("state")?;
    Ok(StudyRecord {
        id: StudyId(row.try_get("id")?),
        name: row.try_get("name")?,
        spec: serde_json::from_str(&spec)
            .map_err(|e| StoreError::Corrupt(format!("study spec: {e}")))?,
        direction: match direction.as_str() {
            "minimize" => Direction::Minimize,
            _ => Direction::Maximize,
        },
        max_retries: row.try_get::<i64, _>("max_retries")? as u32,
        state: StudyState::from_str(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        state_reason: row.try_get("state_reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn trial_from_row(row: &PgRow) -> Result<TrialRecord> {
    let state: String = row.try_get("state")?;
    let params: String = row.try_get("params")?;
    let metrics: Option<String> = row.try_get("metrics")?;
    Ok(TrialRecord {
        id: TrialId(row.try_get("id")?),
        study_id: StudyId(row.try_get("study_id")?),
        number: row.try_get::<i64, _>("number")? as u64,
        state: TrialState::from_str(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        params: serde_json::from_str(&params)
            .map_err(|e| StoreError::Corrupt(format!("trial params: {e}")))?,
        value: row.try_get("value")?,
        metrics: metrics
            .map(|m| serde_json::from_str(&m))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("trial metrics: {e}")))?,
        worker: row.try_get("worker")?,
        lease_token: row.try_get("lease_token")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        last_epoch: row
            .try_get::<Option<i64>, _>("last_epoch")?
            .map(|e| e as u32),
        failure_reason: row.try_get("failure_reason")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        epochs: Vec::new(),
    })
}

/// An event row whose public id is selected as `pos`.
fn event_from_row(row: &PgRow) -> Result<TrialEvent> {
    Ok(TrialEvent {
        id: row.try_get("pos")?,
        study_id: StudyId(row.try_get("study_id")?),
        trial_id: TrialId(row.try_get("trial_id")?),
        number: row.try_get::<i64, _>("number")? as u64,
        kind: row.try_get("kind")?,
        epoch: row.try_get::<Option<i64>, _>("epoch")?.map(|e| e as u32),
        value: row.try_get("value")?,
        at: row.try_get("at")?,
    })
}

fn epoch_from_row(row: &PgRow) -> Result<EpochRecord> {
    let metrics: String = row.try_get("metrics")?;
    Ok(EpochRecord {
        epoch: row.try_get::<i64, _>("epoch")? as u32,
        value: row.try_get("value")?,
        metrics: serde_json::from_str(&metrics)
            .map_err(|e| StoreError::Corrupt(format!("epoch metrics: {e}")))?,
        reported_at: row.try_get("reported_at")?,
    })
}

/// Epoch rows (with `trial_id`, in epoch order per trial) into each trial's list.
fn group_epochs(rows: &[PgRow], by_trial: &mut HashMap<TrialId, Vec<EpochRecord>>) -> Result<()> {
    for row in rows {
        by_trial
            .entry(TrialId(row.try_get("trial_id")?))
            .or_default()
            .push(epoch_from_row(row)?);
    }
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    fn is_shared(&self) -> bool {
        true
    }

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
        let row = sqlx::query(&format!(
            "SELECT {STUDY_COLUMNS} FROM studies WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::StudyNotFound(id))?;
        study_from_row(&row)
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

    async fn trial_summaries(&self, study: StudyId) -> Result<Vec<TrialRecord>> {
        self.summaries(study, None).await
    }

    async fn get_trial(&self, id: TrialId) -> Result<TrialRecord> {
        let mut trial = self.trial_without_epochs(id).await?;
        trial.epochs = self.epochs_of(id).await?;
        Ok(trial)
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
