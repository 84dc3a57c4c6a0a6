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
    /// A finish by the lease holder that contradicts how the trial already finished
    /// (e.g. a second `complete` with another value).
    #[error("{}", already_finished(*.id, *.state, *.value))]
    AlreadyFinished {
        id: TrialId,
        state: TrialState,
        value: Option<f64>,
    },
    /// A report for an epoch already reported with another value.
    #[error(
        "epoch {epoch} of trial {id} was already reported with value {}; an epoch's value \
         cannot change (a retry must send the same value)",
        fmt_value(*.value)
    )]
    EpochConflict {
        id: TrialId,
        epoch: u32,
        value: Option<f64>,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Batch(String),
    /// The database could not store a change for a reason outside the request (a full
    /// disk, an I/O error, a file that became read-only, a lock held elsewhere): nothing
    /// was changed, and the same request may succeed later.
    #[error("the database could not store the change ({0}); nothing was changed")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// SQLite's primary result codes for failures of the storage under the database rather
/// than of the statement: BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN.
const SQLITE_STORAGE_CODES: [i32; 6] = [5, 6, 8, 10, 13, 14];

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(d) = &e
            && d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
        {
            let code = d.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
            if SQLITE_STORAGE_CODES.contains(&(code & 0xff)) {
                return Self::Unavailable(d.message().to_owned());
            }
        }
        if matches!(e, sqlx::Error::Io(_)) {
            return Self::Unavailable(e.to_string());
        }
        Self::Database(e)
    }
}

fn fmt_value(value: Option<f64>) -> String {
    value.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

fn already_finished(id: TrialId, state: TrialState, value: Option<f64>) -> String {
    match value {
        Some(v) => format!(
            "trial {id} is already {state} with value {v}; a retry must send the same value"
        ),
        None => format!("trial {id} is already {state}"),
    }
}
