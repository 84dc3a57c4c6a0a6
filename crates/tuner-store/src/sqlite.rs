use std::{collections::HashMap, path::Path, str::FromStr, time::Duration};

use async_trait::async_trait;
use sqlx::{
    Row, SqlitePool,
    migrate::Migrator,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
};
use tuner_core::{Direction, Params, StudyId, StudyState, TrialId, TrialState, config_key};

use crate::{
    AskTxn, EpochRecord, Finish, LeaseGrant, NewEpoch, NewStudy, ReapedTrial, Result, Store,
    StoreError, StudyDump, StudyRecord, TrialCounts, TrialEvent, TrialRecord,
    batch::Batcher,
    dump,
    rules::{refusal, repeated_epoch, repeated_finish},
};

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

/// Creates the study's next trial, already leased: one statement, so the number is
/// computed and taken atomically.
async fn insert_leased(
    conn: &mut sqlx::SqliteConnection,
    study: StudyId,
    params: &Params,
    lease: &LeaseGrant,
) -> Result<TrialRecord> {
    let sql = format!(
        "INSERT INTO trials (study_id, number, state, params, config_key, worker, lease_token, \
             lease_expires_at, attempts, created_at, started_at) \
         SELECT ?1, COALESCE(MAX(number) + 1, 0), 'running', ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7 \
         FROM trials WHERE study_id = ?1 \
         RETURNING {TRIAL_COLUMNS}"
    );
    let query = sqlx::query(&sql)
        .bind(study.0)
        .bind(to_json_text(params)?)
        .bind(config_key(params))
        .bind(&lease.worker)
        .bind(&lease.token)
        .bind(lease.expires_at)
        .bind(lease.now);
    let row = write_returning(query, conn)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(ref d) if d.is_foreign_key_violation() => {
                StoreError::StudyNotFound(study)
            }
            // The config (numbers cannot collide: one writer).
            sqlx::Error::Database(ref d) if d.is_unique_violation() => {
                StoreError::DuplicateConfig(study)
            }
            other => other.into(),
        })?
        .ok_or_else(|| StoreError::Corrupt("an insert returned no row".into()))?;
    trial_from_row(&row)
}

/// Leases the oldest pending (re-queued) trial of the study, if any.
async fn lease_pending<'e, E>(
    executor: E,
    study: StudyId,
    lease: &LeaseGrant,
) -> Result<Option<TrialRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let sql = format!(
        "UPDATE trials SET state = 'running', worker = ?, lease_token = ?, lease_expires_at = ?, \
             attempts = attempts + 1, started_at = ? \
         WHERE id = (SELECT id FROM trials WHERE study_id = ? AND state = 'pending' \
                     ORDER BY number LIMIT 1) \
         RETURNING {TRIAL_COLUMNS}"
    );
    let query = sqlx::query(&sql)
        .bind(&lease.worker)
        .bind(&lease.token)
        .bind(lease.expires_at)
        .bind(lease.now)
        .bind(study.0);
    let row = write_returning(query, executor).await?;
    row.as_ref().map(trial_from_row).transpose()
}

async fn set_state<'e, E>(
    executor: E,
    id: StudyId,
    state: StudyState,
    reason: Option<&str>,
    now: i64,
) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let done =
        sqlx::query("UPDATE studies SET state = ?, state_reason = ?, updated_at = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(reason)
            .bind(now)
            .bind(id.0)
            .execute(executor)
            .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::StudyNotFound(id));
    }
    Ok(())
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

/// Trials numbered `next_number` or more, and the `unfinished` ones, by number.
async fn trials_from<'e, E>(
    executor: E,
    study: StudyId,
    next_number: u64,
    unfinished: &[TrialId],
) -> Result<Vec<TrialRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let ids: Vec<i64> = unfinished.iter().map(|t| t.0).collect();
    let sql = format!(
        "SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ? \
         AND (number >= ? OR id IN (SELECT value FROM json_each(?))) ORDER BY number"
    );
    sqlx::query(&sql)
        .bind(study.0)
        .bind(i64::try_from(next_number).unwrap_or(i64::MAX))
        .bind(serde_json::to_string(&ids).expect("ids serialize"))
        .fetch_all(executor)
        .await?
        .iter()
        .map(trial_from_row)
        .collect()
}

/// An ask on SQLite: the transaction holds the database's one write lock (`BEGIN
/// IMMEDIATE`), which is stronger than the study lock it stands for. The server does
/// not use it on SQLite (it is the database's only writer and decides from memory);
/// it exists so that one conformance suite covers both stores.
struct SqliteAskTxn {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    study: StudyRecord,
}

#[async_trait]
impl AskTxn for SqliteAskTxn {
    fn study(&self) -> &StudyRecord {
        &self.study
    }

    async fn trials_from(
        &mut self,
        next_number: u64,
        unfinished: &[TrialId],
    ) -> Result<Vec<TrialRecord>> {
        trials_from(&mut *self.tx, self.study.id, next_number, unfinished).await
    }

    async fn lease_pending_trial(&mut self, lease: &LeaseGrant) -> Result<Option<TrialRecord>> {
        lease_pending(&mut *self.tx, self.study.id, lease).await
    }

    async fn insert_leased_trial(
        &mut self,
        params: &Params,
        lease: &LeaseGrant,
    ) -> Result<TrialRecord> {
        insert_leased(&mut self.tx, self.study.id, params, lease).await
    }

    async fn set_study_state(
        &mut self,
        state: StudyState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<()> {
        set_state(&mut *self.tx, self.study.id, state, reason, now).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        Ok(self.tx.commit().await?)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn begin_ask(&self, study: StudyId) -> Result<Box<dyn AskTxn>> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let study = study_by_id(&mut *tx, study).await?;
        Ok(Box::new(SqliteAskTxn { tx, study }))
    }

    async fn trials_from(
        &self,
        study: StudyId,
        next_number: u64,
        unfinished: &[TrialId],
    ) -> Result<Vec<TrialRecord>> {
        trials_from(&self.pool, study, next_number, unfinished).await
    }

    async fn create_study(&self, new: NewStudy, now: i64) -> Result<StudyRecord> {
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
        let row = write_returning(query, &self.writer)
            .await?
            .ok_or_else(|| StoreError::Corrupt("an insert returned no row".into()))?;
        study_from_row(&row)
    }

    async fn get_study(&self, id: StudyId) -> Result<StudyRecord> {
        study_by_id(&self.pool, id).await
    }

    async fn list_studies(&self) -> Result<Vec<StudyRecord>> {
        sqlx::query(&format!("SELECT {STUDY_COLUMNS} FROM studies ORDER BY id"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(study_from_row)
            .collect()
    }

    async fn set_study_state(
        &self,
        id: StudyId,
        state: StudyState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<()> {
        set_state(&self.writer, id, state, reason, now).await
    }

    async fn delete_study(&self, id: StudyId) -> Result<()> {
        let done = sqlx::query("DELETE FROM studies WHERE id = ?")
            .bind(id.0)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::StudyNotFound(id));
        }
        Ok(())
    }

    async fn trial_counts(&self, study: StudyId) -> Result<TrialCounts> {
        let rows = sqlx::query("SELECT state, n FROM trial_counts WHERE study_id = ?")
            .bind(study.0)
            .fetch_all(&self.pool)
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

    async fn best_trial(&self, study: StudyId) -> Result<Option<TrialRecord>> {
        let direction = self.get_study(study).await?.direction;
        let order = match direction {
            Direction::Maximize => "DESC",
            Direction::Minimize => "ASC",
        };
        let row = sqlx::query(&format!(
            "SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ? AND state = 'completed' \
             ORDER BY value {order}, number ASC LIMIT 1"
        ))
        .bind(study.0)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut trial = trial_from_row(&row)?;
        trial.epochs = self.epochs_of(trial.id).await?;
        Ok(Some(trial))
    }

    async fn list_trials(&self, study: StudyId) -> Result<Vec<TrialRecord>> {
        let mut trials = self.trial_summaries(study).await?;
        let rows = sqlx::query(
            "SELECT e.trial_id, e.epoch, e.value, e.metrics, e.reported_at FROM trial_epochs e \
             JOIN trials t ON t.id = e.trial_id WHERE t.study_id = ? ORDER BY e.trial_id, e.epoch",
        )
        .bind(study.0)
        .fetch_all(&self.pool)
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

    async fn epoch_values(
        &self,
        study: StudyId,
        epoch: u32,
    ) -> Result<Vec<(TrialId, TrialState, Option<f64>)>> {
        let rows = sqlx::query(
            "SELECT t.id, t.state, e.value FROM trial_epochs e JOIN trials t ON t.id = e.trial_id \
             WHERE t.study_id = ? AND e.epoch = ? ORDER BY t.number",
        )
        .bind(study.0)
        .bind(i64::from(epoch))
        .fetch_all(&self.pool)
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

    async fn epochs_of_trials(
        &self,
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
            group_epochs(&query.fetch_all(&self.pool).await?, &mut by_trial)?;
        }
        Ok(by_trial)
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
        let row = sqlx::query("SELECT study_id FROM trials WHERE id = ?")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::TrialNotFound(id))?;
        Ok(StudyId(row.get("study_id")))
    }

    async fn insert_leased_trial(
        &self,
        study: StudyId,
        params: &Params,
        lease: &LeaseGrant,
    ) -> Result<TrialRecord> {
        let (params, lease) = (params.clone(), lease.clone());
        self.batch
            .write(Box::new(move |conn| {
                Box::pin(async move { insert_leased(conn, study, &params, &lease).await })
            }))
            .await
    }

    async fn lease_pending_trial(
        &self,
        study: StudyId,
        lease: &LeaseGrant,
    ) -> Result<Option<TrialRecord>> {
        lease_pending(&self.writer, study, lease).await
    }

    async fn heartbeat(
        &self,
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
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(self.lease_failure(trial, token, now).await);
        }
        Ok(())
    }

    async fn report_epoch(
        &self,
        trial: TrialId,
        token: &str,
        now: i64,
        expires_at: i64,
        report: &NewEpoch,
    ) -> Result<TrialRecord> {
        let mut tx = self.writer.begin().await?;
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
            return Err(self.lease_failure(trial, token, now).await);
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
            let earlier: Option<f64> = sqlx::query_scalar(
                "SELECT value FROM trial_epochs WHERE trial_id = ? AND epoch = ?",
            )
            .bind(trial.0)
            .bind(i64::from(report.epoch))
            .fetch_one(&mut *tx)
            .await?;
            repeated_epoch(&trial_from_row(&row)?, report.epoch, earlier, report.value)?;
        }
        tx.commit().await?;
        let mut record = trial_from_row(&row)?;
        record.epochs = self.epochs_of(trial).await?;
        Ok(record)
    }

    async fn finish_trial(
        &self,
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
        let mut record = self
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
            record.epochs = self.epochs_of(trial).await?;
        }
        Ok(record)
    }

    async fn release_trial(&self, trial: TrialId, token: &str, now: i64) -> Result<TrialRecord> {
        let sql = format!(
            "UPDATE trials SET state = 'pending', lease_token = NULL, lease_expires_at = NULL, \
                 worker = NULL, started_at = NULL, last_epoch = NULL, \
                 attempts = MAX(attempts - 1, 0) \
             WHERE id = ? AND state = 'running' AND lease_token = ? AND lease_expires_at >= ? \
             RETURNING {TRIAL_COLUMNS}"
        );
        let query = sqlx::query(&sql).bind(trial.0).bind(token).bind(now);
        let row = write_returning(query, &self.writer).await?;
        match row {
            Some(row) => trial_from_row(&row),
            None => Err(self.lease_failure(trial, token, now).await),
        }
    }

    async fn finish_trial_unleased(
        &self,
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
        let row = write_returning(query, &self.writer).await?;
        match row {
            Some(row) => {
                let mut record = trial_from_row(&row)?;
                record.epochs = self.epochs_of(trial).await?;
                Ok(record)
            }
            None => {
                let current = self.get_trial(trial).await?;
                Err(StoreError::NotRunning {
                    id: trial,
                    state: current.state,
                })
            }
        }
    }

    async fn earliest_lease_expiry(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(lease_expires_at) FROM trials WHERE state = 'running'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn reap_expired_leases(&self, now: i64) -> Result<Vec<ReapedTrial>> {
        // Called on every ask: look before taking the write lock.
        let any = sqlx::query(
            "SELECT 1 FROM trials WHERE state = 'running' AND lease_expires_at < ? LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.pool)
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
        .fetch_all(&self.writer)
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

    async fn trials_changed_after(&self, study: StudyId, after: i64) -> Result<Vec<TrialRecord>> {
        self.summaries(study, Some(after)).await
    }

    async fn last_event_id(&self, study: StudyId) -> Result<i64> {
        Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MAX(id) FROM trial_events WHERE study_id = ?",
        )
        .bind(study.0)
        .fetch_one(&self.pool)
        .await?
        .unwrap_or(0))
    }

    async fn events_since(
        &self,
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
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(event_from_row).collect())
    }

    async fn consecutive_failures(&self, study: StudyId, limit: u32) -> Result<u32> {
        let rows = sqlx::query(
            "SELECT state FROM trials WHERE study_id = ? AND finished_at IS NOT NULL \
             ORDER BY finished_at DESC, id DESC LIMIT ?",
        )
        .bind(study.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .take_while(|r| r.get::<String, _>("state") == "failed")
            .count() as u32)
    }

    async fn export_study(&self, id: StudyId) -> Result<StudyDump> {
        // One read transaction: in WAL mode its reads see one snapshot, so a study that
        // is still running is read as it was at one moment.
        let mut tx = self.pool.begin().await?;
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

    async fn import_study(&self, source: &StudyDump) -> Result<StudyRecord> {
        dump::check(source)?;
        // The writer connection, so the import queues with every other write; IMMEDIATE
        // takes the write lock at once. Dropped on any error: rolled back.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
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
