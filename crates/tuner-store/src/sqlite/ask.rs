//! The ask transaction on SQLite (`BEGIN IMMEDIATE`): the study's trials from a
//! number on, a pending trial leased, a new trial inserted already leased, the study's
//! state set.

use async_trait::async_trait;
use tuner_core::{Params, StudyId, StudyState, TrialId, TrialState, config_key};

use super::{
    SqliteStore, TRIAL_COLUMNS, study_by_id, to_json_text, trial_from_row, write_returning,
};
use crate::{
    AskTxn, LeaseGrant, Result, StoreError, StudyRecord, TrialRecord, ask::split_unfinished,
};

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

pub(super) async fn set_state<'e, E>(
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

/// Trials numbered `next_number` or more, and the `unfinished` ones, by number.
pub(super) async fn trials_from<'e, E>(
    executor: E,
    study: StudyId,
    next_number: u64,
    unfinished: &[(TrialId, TrialState)],
) -> Result<Vec<TrialRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let (running, pending) = split_unfinished(unfinished);
    let sql = format!(
        "SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ? \
         AND (number >= ? \
              OR (id IN (SELECT value FROM json_each(?)) AND state <> 'running') \
              OR (id IN (SELECT value FROM json_each(?)) AND state <> 'pending')) \
         ORDER BY number"
    );
    sqlx::query(&sql)
        .bind(study.0)
        .bind(i64::try_from(next_number).unwrap_or(i64::MAX))
        .bind(serde_json::to_string(&running).expect("ids serialize"))
        .bind(serde_json::to_string(&pending).expect("ids serialize"))
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
        unfinished: &[(TrialId, TrialState)],
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

pub(super) async fn begin_ask(store: &SqliteStore, study: StudyId) -> Result<Box<dyn AskTxn>> {
    let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await?;
    let study = study_by_id(&mut *tx, study).await?;
    Ok(Box::new(SqliteAskTxn { tx, study }))
}

pub(super) async fn insert_leased_trial(
    store: &SqliteStore,
    study: StudyId,
    params: &Params,
    lease: &LeaseGrant,
) -> Result<TrialRecord> {
    let (params, lease) = (params.clone(), lease.clone());
    store
        .batch
        .write(Box::new(move |conn| {
            Box::pin(async move { insert_leased(conn, study, &params, &lease).await })
        }))
        .await
}

pub(super) async fn lease_pending_trial(
    store: &SqliteStore,
    study: StudyId,
    lease: &LeaseGrant,
) -> Result<Option<TrialRecord>> {
    lease_pending(&store.writer, study, lease).await
}
