//! An ask as one transaction, for servers that share their database.
//!
//! Several server replicas on one PostgreSQL must agree on budget, parallelism, trial
//! numbers and what the sampler sees. [`crate::Store::begin_ask`] takes the study's row
//! lock (`FOR NO KEY UPDATE` on PostgreSQL, so completions that reference the study
//! are not blocked) and every step of the ask runs under it, in one transaction:
//! re-reading the trials that may have changed, leasing a re-queued trial or inserting
//! a new one, completing the study. Dropping the transaction without committing rolls
//! it all back.

use async_trait::async_trait;
use tuner_core::{Params, StudyState, TrialId, TrialState};

use crate::{LeaseGrant, Result, StudyRecord, TrialRecord};

/// `unfinished` of [`AskTxn::trials_from`] split by the state the cache knows: the ids
/// it knows running, and those it knows pending (a catch-up returns each only if its
/// state is now another). Re-reading every unfinished trial on every ask instead cost a
/// replica ~60 rows per ask batch under 64 workers, most of them unchanged.
pub(crate) fn split_unfinished(unfinished: &[(TrialId, TrialState)]) -> (Vec<i64>, Vec<i64>) {
    let (mut running, mut pending) = (Vec::new(), Vec::new());
    for &(id, state) in unfinished {
        match state {
            TrialState::Running => running.push(id.0),
            TrialState::Pending => pending.push(id.0),
            // Finished trials never change: nothing to catch up on.
            TrialState::Completed | TrialState::Pruned | TrialState::Failed => {}
        }
    }
    (running, pending)
}

#[async_trait]
pub trait AskTxn: Send {
    /// The study as of the lock.
    fn study(&self) -> &StudyRecord;
    /// The study's trials numbered `next_number` or more, and those of `unfinished`
    /// (the cache's pending and running trials, with the state it knows) that are no
    /// longer in that state, by number, without epochs: what a cache that knows trials
    /// `0..next_number` needs to be exact (finished trials never change, and an
    /// unfinished one's params and value do not change while its state stays).
    async fn trials_from(
        &mut self,
        next_number: u64,
        unfinished: &[(TrialId, TrialState)],
    ) -> Result<Vec<TrialRecord>>;
    /// Leases the oldest pending (re-queued) trial of the study, if any.
    async fn lease_pending_trial(&mut self, lease: &LeaseGrant) -> Result<Option<TrialRecord>>;
    /// Creates the study's next trial, already leased.
    async fn insert_leased_trial(
        &mut self,
        params: &Params,
        lease: &LeaseGrant,
    ) -> Result<TrialRecord>;
    /// Creates the study's next trials, one per `(params, lease)`, numbered in that
    /// order; returned in the same order.
    async fn insert_leased_trials(
        &mut self,
        new: &[(Params, LeaseGrant)],
    ) -> Result<Vec<TrialRecord>> {
        let mut trials = Vec::with_capacity(new.len());
        for (params, lease) in new {
            trials.push(self.insert_leased_trial(params, lease).await?);
        }
        Ok(trials)
    }
    async fn set_study_state(
        &mut self,
        state: StudyState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<()>;
    /// Makes it all durable; only then may anything of it be answered.
    async fn commit(self: Box<Self>) -> Result<()>;
}
