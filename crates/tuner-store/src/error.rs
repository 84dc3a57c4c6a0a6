use tuner_core::{TrialId, TrialState};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("study {0} not found")]
    StudyNotFound(tuner_core::StudyId),
    #[error("trial {0} not found")]
    TrialNotFound(TrialId),
    #[error("the lease token does not match the current lease of trial {0}")]
    LeaseMismatch(TrialId),
    #[error("the lease on trial {0} has expired; the trial will be re-queued")]
    LeaseExpired(TrialId),
    /// The study already has a trial with this configuration (e.g. two replicas
    /// suggested it at once); nothing was stored.
    #[error("study {0} already has a trial with this configuration")]
    DuplicateConfig(tuner_core::StudyId),
    #[error("trial {id} is {state}, not running")]
    NotRunning { id: TrialId, state: TrialState },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Batch(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}
