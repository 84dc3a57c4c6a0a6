//! tuner-store: durable storage of studies and trials.
//!
//! Owns the [`Store`] trait (the operations the scheduler needs, phrased without
//! SQL) and its two implementations: [`SqliteStore`] (one server, the embedded
//! default; schema [`MIGRATOR`] from `migrations/sqlite/`) and [`PgStore`] (any number
//! of server replicas on one PostgreSQL; schema [`PG_MIGRATOR`] from
//! `migrations/postgres/`). Lifecycle rules live here and hold for both, across
//! replicas too: trial numbers are dense per study, a study never has two trials with
//! the same configuration, only the current lease holder may change a running trial,
//! finished trials are immutable (also enforced by triggers in the schema), and event
//! ids are a cursor that never skips an event. One conformance suite
//! (`tests/conformance.rs`) runs against both backends. Each backend is a folder
//! (`sqlite/`, `pg/`) whose `Store` impl forwards each operation to the module of its
//! concern: `ask`, `studies`, `trials`, `events`, `export`.
//!
//! Must not depend on the optimizer, the trainer, HTTP or wire types.

mod ask;
mod batch;
mod dump;
mod error;
mod pg;
mod records;
mod rules;
mod sqlite;

pub use ask::AskTxn;
pub use error::StoreError;
pub use pg::{PG_MIGRATOR, PgStore};
pub use records::{
    EpochRecord, Finish, LeaseGrant, NewEpoch, NewStudy, ReapedTrial, StudyDump, StudyRecord,
    TrialCounts, TrialEvent, TrialRecord,
};
pub use sqlite::{MIGRATOR, SqliteStore};

use async_trait::async_trait;
use tuner_core::{Params, StudyId, StudyState, TrialId, TrialState};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything the server persists. Times are Unix milliseconds supplied by the
/// caller, so lease expiry is testable without sleeping.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether other server processes may write to this database at the same time
    /// (PostgreSQL replicas): then a server must take its decisions in the database
    /// ([`Store::begin_ask`]), not from what it alone has seen.
    fn is_shared(&self) -> bool {
        false
    }
    /// Starts an ask of the study: holds it against the asks of every server until
    /// the transaction is committed or dropped (see [`AskTxn`]).
    async fn begin_ask(&self, study: StudyId) -> Result<Box<dyn AskTxn>>;
    /// What [`AskTxn::trials_from`] reads, outside an ask (a cache catching up).
    async fn trials_from(
        &self,
        study: StudyId,
        next_number: u64,
        unfinished: &[(TrialId, TrialState)],
    ) -> Result<Vec<TrialRecord>>;

    async fn create_study(&self, new: NewStudy, now: i64) -> Result<StudyRecord>;
    async fn get_study(&self, id: StudyId) -> Result<StudyRecord>;
    async fn list_studies(&self) -> Result<Vec<StudyRecord>>;
    async fn set_study_state(
        &self,
        id: StudyId,
        state: StudyState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<()>;
    /// Replaces a study's spec (a larger `budget.max_trials`) and its state in one
    /// write; `updated_at` becomes `now`.
    async fn set_study_spec(
        &self,
        id: StudyId,
        spec: &serde_json::Value,
        state: StudyState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<()>;
    /// Deletes a study with all its trials.
    async fn delete_study(&self, id: StudyId) -> Result<()>;

    async fn trial_counts(&self, study: StudyId) -> Result<TrialCounts>;
    /// How many trials the study has been given so far (the next trial's number),
    /// whatever became of them: no budget can be spent before this reaches it. A
    /// primary-key read, much cheaper than the counts on a shared database.
    async fn trials_created(&self, study: StudyId) -> Result<u64>;
    /// The best completed trial (highest or lowest value by the study's direction;
    /// ties go to the earlier trial).
    async fn best_trial(&self, study: StudyId) -> Result<Option<TrialRecord>>;
    /// All trials of a study by number, with their per-epoch history.
    async fn list_trials(&self, study: StudyId) -> Result<Vec<TrialRecord>>;
    /// What each trial of the study reported at `epoch` (the value, `None` if it
    /// reported none), with the trial's state, by number; trials that did not reach
    /// the epoch are absent. What a pruner compares, without loading every epoch.
    async fn epoch_values(
        &self,
        study: StudyId,
        epoch: u32,
    ) -> Result<Vec<(TrialId, TrialState, Option<f64>)>>;
    /// All trials of a study without epochs (what a sampler needs).
    async fn trial_summaries(&self, study: StudyId) -> Result<Vec<TrialRecord>>;
    async fn get_trial(&self, id: TrialId) -> Result<TrialRecord>;
    /// The per-epoch history of each of these trials, in epoch order (a trial with no
    /// reports is absent from the map).
    async fn epochs_of_trials(
        &self,
        trials: &[TrialId],
    ) -> Result<std::collections::HashMap<TrialId, Vec<EpochRecord>>>;
    /// The study a trial belongs to.
    async fn study_of_trial(&self, id: TrialId) -> Result<StudyId>;

    /// Creates the study's next trial (numbers are dense from 0), already leased. A
    /// configuration the study already has is refused ([`StoreError::DuplicateConfig`]).
    async fn insert_leased_trial(
        &self,
        study: StudyId,
        params: &Params,
        lease: &LeaseGrant,
    ) -> Result<TrialRecord>;
    /// Leases the oldest pending (re-queued) trial of the study, if any.
    async fn lease_pending_trial(
        &self,
        study: StudyId,
        lease: &LeaseGrant,
    ) -> Result<Option<TrialRecord>>;
    /// Extends a valid lease to `expires_at`.
    async fn heartbeat(&self, trial: TrialId, token: &str, now: i64, expires_at: i64)
    -> Result<()>;
    /// Records one epoch's metrics (idempotent per epoch) and extends the lease.
    async fn report_epoch(
        &self,
        trial: TrialId,
        token: &str,
        now: i64,
        expires_at: i64,
        report: &NewEpoch,
    ) -> Result<TrialRecord>;
    /// Finishes a running trial for its lease holder. Repeating the same finish with
    /// the same token answers the finished trial again (idempotent retries).
    async fn finish_trial(
        &self,
        trial: TrialId,
        token: &str,
        now: i64,
        finish: Finish,
    ) -> Result<TrialRecord>;
    /// Gives a running trial back to the queue for its lease holder (a worker shutting
    /// down); the attempt does not count against the retries.
    async fn release_trial(&self, trial: TrialId, token: &str, now: i64) -> Result<TrialRecord>;
    /// Finishes a running trial on the server's own authority (e.g. the pruner).
    async fn finish_trial_unleased(
        &self,
        trial: TrialId,
        now: i64,
        finish: Finish,
    ) -> Result<TrialRecord>;
    /// When the first lease of a running trial runs out, if any is held.
    async fn earliest_lease_expiry(&self) -> Result<Option<i64>>;
    /// Takes back every lease that expired before `now`: the trial goes back to
    /// pending, or is failed once it has used up its study's retries.
    async fn reap_expired_leases(&self, now: i64) -> Result<Vec<ReapedTrial>>;
    /// The study's trials with an event after event `after`, by number, without epochs.
    async fn trials_changed_after(&self, study: StudyId, after: i64) -> Result<Vec<TrialRecord>>;
    /// The id of the study's latest trial event (0 when there is none). Event ids only
    /// grow, and an event never appears later with an id at or below one already
    /// answered, so ids are safe to resume from.
    async fn last_event_id(&self, study: StudyId) -> Result<i64>;
    /// The study's trial events after event `after` (0: from the start), oldest first.
    async fn events_since(&self, study: StudyId, after: i64, limit: u32)
    -> Result<Vec<TrialEvent>>;
    /// How many of the study's most recently finished trials failed, in a row, counting
    /// only trials finished after `since` (a resumed study starts a new streak).
    async fn consecutive_failures(&self, study: StudyId, limit: u32, since: i64) -> Result<u32>;

    /// The whole study as of one moment (one read snapshot): the study, every trial with
    /// its epochs, and its event log in order.
    async fn export_study(&self, id: StudyId) -> Result<StudyDump>;
    /// Writes a study read by [`Store::export_study`] (of this store or another) as a new
    /// study, in one transaction: all of it or nothing. The new study and its trials get
    /// this store's ids; numbers, params, states, values, metrics, lease fields, epochs,
    /// times and the events (order and content) are the dump's, and the events come
    /// after every event already in this store. The counts follow the trials. A dump
    /// whose numbers are not dense from 0, or with an event about a trial it does not
    /// have, is refused ([`StoreError::Corrupt`]) before anything is written.
    async fn import_study(&self, dump: &StudyDump) -> Result<StudyRecord>;
}
