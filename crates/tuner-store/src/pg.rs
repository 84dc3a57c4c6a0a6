use std::{collections::HashMap, str::FromStr, time::Duration};

use async_trait::async_trait;
use sqlx::{
    Connection, PgConnection, PgPool, Row,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions, PgRow},
};
use tuner_core::{Direction, Params, StudyId, StudyState, TrialId, TrialState, config_key};

use crate::{
    AskTxn, EpochRecord, Finish, LeaseGrant, NewEpoch, NewStudy, ReapedTrial, Result, Store,
    StoreError, StudyDump, StudyRecord, TrialCounts, TrialEvent, TrialRecord, dump,
    rules::{refusal, repeated_epoch, repeated_finish},
};

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
        Ok(Self { pool })
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
    /// migration). Concurrent folds are safe: each deletes only rows it saw and puts
    /// back their sum; a row another fold deleted first is skipped.
    async fn fold_counts(&self, study: StudyId) -> Result<()> {
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
            "WITH gone AS (DELETE FROM trial_counts WHERE study_id = $1 RETURNING state, n) \
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

/// Creates the study's next trial, already leased. One statement: the number is taken
/// from the study's counter under its row lock (concurrent inserts of the study wait for
/// it), and if the insert fails (a duplicate config) the counter's increment is undone
/// with it, so numbers stay dense. An unknown study updates no row, so nothing is
/// inserted.
async fn insert_leased<'e, E>(
    executor: E,
    study: StudyId,
    params: &Params,
    lease: &LeaseGrant,
) -> Result<TrialRecord>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let sql = format!(
        "WITH taken AS ( \
             UPDATE studies SET next_number = next_number + 1 WHERE id = $1 \
             RETURNING next_number - 1 AS number) \
         INSERT INTO trials (study_id, number, state, params, config_key, worker, \
             lease_token, lease_expires_at, attempts, created_at, started_at) \
         SELECT $1, number, 'running', $2, $3, $4, $5, $6, 1, $7, $7 FROM taken \
         RETURNING {TRIAL_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(study.0)
        .bind(to_json_text(params)?)
        .bind(config_key(params))
        .bind(&lease.worker)
        .bind(&lease.token)
        .bind(lease.expires_at)
        .bind(lease.now)
        .fetch_optional(executor)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(ref d) if d.constraint() == Some("trials_distinct_configs") => {
                StoreError::DuplicateConfig(study)
            }
            other => other.into(),
        })?
        .ok_or(StoreError::StudyNotFound(study))?;
    trial_from_row(&row)
}

/// Leases the oldest pending (re-queued) trial of the study, if any. SKIP LOCKED: a
/// replica leasing at the same moment takes the next pending trial instead of waiting
/// for this one. The outer `state = 'pending'` is checked again on the locked row, so a
/// trial is never leased twice.
async fn lease_pending<'e, E>(
    executor: E,
    study: StudyId,
    lease: &LeaseGrant,
) -> Result<Option<TrialRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let sql = format!(
        "UPDATE trials SET state = 'running', worker = $1, lease_token = $2, \
             lease_expires_at = $3, attempts = attempts + 1, started_at = $4 \
         WHERE state = 'pending' AND id = ( \
             SELECT id FROM trials WHERE study_id = $5 AND state = 'pending' \
             ORDER BY number LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING {TRIAL_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(&lease.worker)
        .bind(&lease.token)
        .bind(lease.expires_at)
        .bind(lease.now)
        .bind(study.0)
        .fetch_optional(executor)
        .await?;
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
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let done = sqlx::query(
        "UPDATE studies SET state = $1, state_reason = $2, updated_at = $3 WHERE id = $4",
    )
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

/// Trials numbered `next_number` or more, and the `unfinished` ones, by number.
async fn trials_from<'e, E>(
    executor: E,
    study: StudyId,
    next_number: u64,
    unfinished: &[TrialId],
) -> Result<Vec<TrialRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let ids: Vec<i64> = unfinished.iter().map(|t| t.0).collect();
    let sql = format!(
        "SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = $1 \
         AND (number >= $2 OR id = ANY($3)) ORDER BY number"
    );
    sqlx::query(&sql)
        .bind(study.0)
        .bind(i64::try_from(next_number).unwrap_or(i64::MAX))
        .bind(ids)
        .fetch_all(executor)
        .await?
        .iter()
        .map(trial_from_row)
        .collect()
}

/// An ask of one study in one transaction, holding the study's row lock.
struct PgAskTxn {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    study: StudyRecord,
}

#[async_trait]
impl AskTxn for PgAskTxn {
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
        insert_leased(&mut *self.tx, self.study.id, params, lease).await
    }

    /// One statement for the whole batch, so the study's lock is held for one round
    /// trip however many asks it serves.
    async fn insert_leased_trials(
        &mut self,
        new: &[(Params, LeaseGrant)],
    ) -> Result<Vec<TrialRecord>> {
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let study = self.study.id;
        let mut columns: (Vec<String>, Vec<String>, Vec<Option<String>>, Vec<String>) =
            Default::default();
        let (mut expires, mut nows) = (Vec::new(), Vec::new());
        for (params, lease) in new {
            columns.0.push(to_json_text(params)?);
            columns.1.push(config_key(params));
            columns.2.push(lease.worker.clone());
            columns.3.push(lease.token.clone());
            expires.push(lease.expires_at);
            nows.push(lease.now);
        }
        let sql = format!(
            "WITH taken AS ( \
                 UPDATE studies SET next_number = next_number + $2 WHERE id = $1 \
                 RETURNING next_number - $2 AS first) \
             INSERT INTO trials (study_id, number, state, params, config_key, worker, \
                 lease_token, lease_expires_at, attempts, created_at, started_at) \
             SELECT $1, taken.first + u.ord - 1, 'running', u.params, u.key, u.worker, \
                 u.token, u.expires, 1, u.now, u.now \
             FROM taken, unnest($3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::bigint[], $8::bigint[]) \
                 WITH ORDINALITY AS u(params, key, worker, token, expires, now, ord) \
             RETURNING {TRIAL_COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(study.0)
            .bind(new.len() as i64)
            .bind(columns.0)
            .bind(columns.1)
            .bind(columns.2)
            .bind(columns.3)
            .bind(expires)
            .bind(nows)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(ref d)
                    if d.constraint() == Some("trials_distinct_configs") =>
                {
                    StoreError::DuplicateConfig(study)
                }
                other => other.into(),
            })?;
        if rows.is_empty() {
            return Err(StoreError::StudyNotFound(study));
        }
        let mut trials = rows
            .iter()
            .map(trial_from_row)
            .collect::<Result<Vec<_>>>()?;
        // RETURNING has no order: by number is the order of `new`.
        trials.sort_by_key(|t| t.number);
        Ok(trials)
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
        let mut tx = self.pool.begin().await?;
        // FOR NO KEY UPDATE: other asks of the study (from any replica) wait for it, but
        // not the foreign-key checks of event and count rows that reference the study,
        // so completions go on meanwhile.
        let row = sqlx::query(&format!(
            "SELECT {STUDY_COLUMNS} FROM studies WHERE id = $1 FOR NO KEY UPDATE"
        ))
        .bind(study.0)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::StudyNotFound(study))?;
        let study = study_from_row(&row)?;
        Ok(Box::new(PgAskTxn { tx, study }))
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
        let row = sqlx::query(&format!(
            "INSERT INTO studies (name, spec, direction, max_retries, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'running', $5, $5) RETURNING {STUDY_COLUMNS}"
        ))
        .bind(&new.name)
        .bind(to_json_text(&new.spec)?)
        .bind(new.direction.as_str())
        .bind(i64::from(new.max_retries))
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        study_from_row(&row)
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
        set_state(&self.pool, id, state, reason, now).await
    }

    async fn delete_study(&self, id: StudyId) -> Result<()> {
        // Lock order: every other write locks a trial row and then (through the
        // foreign keys of its event and count rows) the study row. Deleting the study
        // first and cascading to its trials would take them the other way round and
        // deadlock with a finish or the reaper; so the trials first.
        let mut tx = self.pool.begin().await?;
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

    async fn trial_counts(&self, study: StudyId) -> Result<TrialCounts> {
        let rows = sqlx::query(
            "SELECT state, SUM(n)::bigint AS n, COUNT(*) AS rows FROM trial_counts \
             WHERE study_id = $1 GROUP BY state",
        )
        .bind(study.0)
        .fetch_all(&self.pool)
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
            if let Err(e) = self.fold_counts(study).await {
                tracing::warn!(study = %study, error = %e, "could not fold trial counts");
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
            "SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = $1 AND state = 'completed' \
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
             JOIN trials t ON t.id = e.trial_id WHERE t.study_id = $1 \
             ORDER BY e.trial_id, e.epoch",
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
        let rows = sqlx::query(
            "SELECT t.id, t.state, e.value FROM trial_epochs e JOIN trials t ON t.id = e.trial_id \
             WHERE t.study_id = $1 AND e.epoch = $2 ORDER BY t.number",
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
        let ids: Vec<i64> = trials.iter().map(|t| t.0).collect();
        let rows = sqlx::query(
            "SELECT trial_id, epoch, value, metrics, reported_at FROM trial_epochs \
             WHERE trial_id = ANY($1) ORDER BY trial_id, epoch",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        let mut by_trial = HashMap::new();
        group_epochs(&rows, &mut by_trial)?;
        Ok(by_trial)
    }

    async fn study_of_trial(&self, id: TrialId) -> Result<StudyId> {
        let row = sqlx::query("SELECT study_id FROM trials WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::TrialNotFound(id))?;
        Ok(StudyId(row.try_get("study_id")?))
    }

    async fn insert_leased_trial(
        &self,
        study: StudyId,
        params: &Params,
        lease: &LeaseGrant,
    ) -> Result<TrialRecord> {
        insert_leased(&self.pool, study, params, lease).await
    }

    async fn lease_pending_trial(
        &self,
        study: StudyId,
        lease: &LeaseGrant,
    ) -> Result<Option<TrialRecord>> {
        lease_pending(&self.pool, study, lease).await
    }

    async fn heartbeat(
        &self,
        trial: TrialId,
        token: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE trials SET lease_expires_at = $1 \
             WHERE id = $2 AND state = 'running' AND lease_token = $3 AND lease_expires_at >= $4",
        )
        .bind(expires_at)
        .bind(trial.0)
        .bind(token)
        .bind(now)
        .execute(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        // The update locks the trial row to the commit, so the lease cannot end (a
        // finish, the reaper) between the check and the epoch's insert.
        let row = sqlx::query(&format!(
            "UPDATE trials SET lease_expires_at = $1, \
                 last_epoch = GREATEST(COALESCE(last_epoch, 0), $2) \
             WHERE id = $3 AND state = 'running' AND lease_token = $4 AND lease_expires_at >= $5 \
             RETURNING {TRIAL_COLUMNS}"
        ))
        .bind(expires_at)
        .bind(i64::from(report.epoch))
        .bind(trial.0)
        .bind(token)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            drop(tx);
            return Err(self.lease_failure(trial, token, now).await);
        };
        let inserted = sqlx::query(
            "INSERT INTO trial_epochs (trial_id, epoch, value, metrics, reported_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (trial_id, epoch) DO NOTHING",
        )
        .bind(trial.0)
        .bind(i64::from(report.epoch))
        .bind(real(report.value))
        .bind(to_json_text(&report.metrics)?)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            // Reported before in this attempt (epochs are cleared on re-queue).
            let earlier: Option<f64> = sqlx::query_scalar(
                "SELECT value FROM trial_epochs WHERE trial_id = $1 AND epoch = $2",
            )
            .bind(trial.0)
            .bind(i64::from(report.epoch))
            .fetch_one(&mut *tx)
            .await?;
            repeated_epoch(
                &trial_from_row(&row)?,
                report.epoch,
                earlier,
                real(report.value),
            )?;
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
        // One conditional update: of two replicas finishing the same trial, the second
        // waits for the first's row lock, then finds it no longer running.
        let row = sqlx::query(&format!(
            "UPDATE trials SET state = $1, value = $2, metrics = $3, failure_reason = $4, \
                 finished_at = $5, lease_expires_at = NULL \
             WHERE id = $6 AND state = 'running' AND lease_token = $7 AND lease_expires_at >= $5 \
             RETURNING {TRIAL_COLUMNS}"
        ))
        .bind(finish.state.as_str())
        .bind(real(finish.value))
        .bind(finish.metrics.as_ref().map(to_json_text).transpose()?)
        .bind(&finish.reason)
        .bind(now)
        .bind(trial.0)
        .bind(token)
        .fetch_optional(&self.pool)
        .await?;
        let mut record = match row {
            Some(row) => trial_from_row(&row)?,
            None => {
                // A retried request (its first answer lost, or sent to another replica)
                // finds the trial already finished the same way under the same lease:
                // same answer. The token is kept on finished trials for this.
                let current = self.trial_without_epochs(trial).await?;
                let finish = Finish {
                    value: real(finish.value),
                    ..finish
                };
                repeated_finish(current, &finish, token, now)?
            }
        };
        // No report, no epochs: skip the read (the common case under load).
        if record.last_epoch.is_some() {
            record.epochs = self.epochs_of(trial).await?;
        }
        Ok(record)
    }

    async fn release_trial(&self, trial: TrialId, token: &str, now: i64) -> Result<TrialRecord> {
        let row = sqlx::query(&format!(
            "UPDATE trials SET state = 'pending', lease_token = NULL, lease_expires_at = NULL, \
                 worker = NULL, started_at = NULL, last_epoch = NULL, \
                 attempts = GREATEST(attempts - 1, 0) \
             WHERE id = $1 AND state = 'running' AND lease_token = $2 AND lease_expires_at >= $3 \
             RETURNING {TRIAL_COLUMNS}"
        ))
        .bind(trial.0)
        .bind(token)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
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
        let row = sqlx::query(&format!(
            "UPDATE trials SET state = $1, value = COALESCE($2, value), \
                 metrics = COALESCE($3, metrics), failure_reason = $4, finished_at = $5, \
                 lease_token = NULL, lease_expires_at = NULL \
             WHERE id = $6 AND state IN ('pending', 'running') \
             RETURNING {TRIAL_COLUMNS}"
        ))
        .bind(finish.state.as_str())
        .bind(real(finish.value))
        .bind(finish.metrics.as_ref().map(to_json_text).transpose()?)
        .bind(&finish.reason)
        .bind(now)
        .bind(trial.0)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => {
                let mut record = trial_from_row(&row)?;
                record.epochs = self.epochs_of(trial).await?;
                Ok(record)
            }
            None => {
                let current = self.trial_without_epochs(trial).await?;
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
        // Every replica may reap. Each expired trial is locked by one reaper (the others
        // skip it, and rows a finish or heartbeat holds); the update checks the expiry
        // again on the locked row, so a trial is re-queued or failed exactly once.
        let rows = sqlx::query(
            "WITH expired AS ( \
                 SELECT id FROM trials WHERE state = 'running' AND lease_expires_at < $1 \
                 ORDER BY id FOR UPDATE SKIP LOCKED) \
             UPDATE trials t SET \
                 state = CASE WHEN t.attempts > s.max_retries THEN 'failed' ELSE 'pending' END, \
                 failure_reason = CASE WHEN t.attempts > s.max_retries \
                     THEN 'lease expired ' || t.attempts \
                          || ' time(s) without a result (worker lost?); out of retries' \
                     ELSE t.failure_reason END, \
                 finished_at = CASE WHEN t.attempts > s.max_retries THEN $1 ELSE NULL END, \
                 last_epoch = CASE WHEN t.attempts > s.max_retries THEN t.last_epoch ELSE NULL END, \
                 lease_token = CASE WHEN t.attempts > s.max_retries THEN NULL ELSE t.lease_token END, \
                 lease_expires_at = NULL, worker = NULL \
             FROM expired e, studies s \
             WHERE t.id = e.id AND s.id = t.study_id \
                 AND t.state = 'running' AND t.lease_expires_at < $1 \
             RETURNING t.id, t.study_id, t.state",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get("state")?;
                Ok(ReapedTrial {
                    id: TrialId(row.try_get("id")?),
                    study_id: StudyId(row.try_get("study_id")?),
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
        self.sequence_events().await?;
        Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MAX(pos) FROM trial_events WHERE study_id = $1",
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
        self.sequence_events().await?;
        let rows = sqlx::query(
            "SELECT pos, study_id, trial_id, number, kind, epoch, value, at FROM trial_events \
             WHERE study_id = $1 AND pos > $2 ORDER BY pos LIMIT $3",
        )
        .bind(study.0)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn consecutive_failures(&self, study: StudyId, limit: u32) -> Result<u32> {
        let rows = sqlx::query(
            "SELECT state FROM trials WHERE study_id = $1 AND finished_at IS NOT NULL \
             ORDER BY finished_at DESC, id DESC LIMIT $2",
        )
        .bind(study.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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

    async fn export_study(&self, id: StudyId) -> Result<StudyDump> {
        // Positions first (it writes, so not in the read-only snapshot below): then
        // every event committed until now has its public id.
        self.sequence_events().await?;
        // One snapshot for every read, so a study that is still running is read as it
        // was at one moment.
        let mut tx = self
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

    async fn import_study(&self, source: &StudyDump) -> Result<StudyRecord> {
        dump::check(source)?;
        // Dropped on any error: rolled back. Until it commits nobody sees the new study,
        // so nothing here contends with live traffic but the foreign-key checks.
        let mut tx = self.pool.begin().await?;
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
        if let Err(e) = self.sequence_events().await {
            tracing::warn!(study = %study.id, error = %e, "could not position the imported events yet");
        }
        Ok(study)
    }
}

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
