//! The ask transaction on PostgreSQL (one transaction holding the study's row lock):
//! the study's trials from a number on, pending trials leased, new trials inserted
//! already leased (one or a batch), the study's state set.

use async_trait::async_trait;

use tuner_core::{Params, StudyId, StudyState, TrialId, TrialState, config_key};

use super::{PgStore, STUDY_COLUMNS, TRIAL_COLUMNS, study_from_row, to_json_text, trial_from_row};
use crate::{
    AskTxn, LeaseGrant, Result, StoreError, StudyRecord, TrialRecord, ask::split_unfinished,
};

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

pub(super) async fn set_state<'e, E>(
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
pub(super) async fn trials_from<'e, E>(
    executor: E,
    study: StudyId,
    next_number: u64,
    unfinished: &[(TrialId, TrialState)],
) -> Result<Vec<TrialRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let (running, pending) = split_unfinished(unfinished);
    let sql = format!(
        "SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = $1 \
         AND (number >= $2 \
              OR (id = ANY($3) AND state <> 'running') \
              OR (id = ANY($4) AND state <> 'pending')) \
         ORDER BY number"
    );
    sqlx::query(&sql)
        .bind(study.0)
        .bind(i64::try_from(next_number).unwrap_or(i64::MAX))
        .bind(running)
        .bind(pending)
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

pub(super) async fn begin_ask(store: &PgStore, study: StudyId) -> Result<Box<dyn AskTxn>> {
    let mut tx = store.pool.begin().await?;
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

pub(super) async fn insert_leased_trial(
    store: &PgStore,
    study: StudyId,
    params: &Params,
    lease: &LeaseGrant,
) -> Result<TrialRecord> {
    insert_leased(&store.pool, study, params, lease).await
}

pub(super) async fn lease_pending_trial(
    store: &PgStore,
    study: StudyId,
    lease: &LeaseGrant,
) -> Result<Option<TrialRecord>> {
    lease_pending(&store.pool, study, lease).await
}
