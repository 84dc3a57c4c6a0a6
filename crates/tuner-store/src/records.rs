use tuner_core::{Direction, Params, StudyId, StudyState, TrialId, TrialState};

/// A study as stored. `spec` is the validated document as JSON; the store does
/// not interpret it beyond the columns it needs (direction, retries).
#[derive(Debug, Clone, PartialEq)]
pub struct StudyRecord {
    pub id: StudyId,
    pub name: String,
    pub spec: serde_json::Value,
    pub direction: Direction,
    pub max_retries: u32,
    pub state: StudyState,
    pub state_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewStudy {
    pub name: String,
    pub spec: serde_json::Value,
    pub direction: Direction,
    pub max_retries: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrialRecord {
    pub id: TrialId,
    pub study_id: StudyId,
    pub number: u64,
    pub state: TrialState,
    pub params: Params,
    pub value: Option<f64>,
    pub metrics: Option<serde_json::Value>,
    pub worker: Option<String>,
    pub lease_token: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub attempts: u32,
    pub last_epoch: Option<u32>,
    pub failure_reason: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Per-epoch reports, by epoch; empty where the query does not load them.
    pub epochs: Vec<EpochRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    pub epoch: u32,
    pub value: Option<f64>,
    pub metrics: serde_json::Value,
    pub reported_at: i64,
}

/// One epoch's report from a worker.
#[derive(Debug, Clone)]
pub struct NewEpoch {
    pub epoch: u32,
    /// The objective at this epoch, if the report had it.
    pub value: Option<f64>,
    pub metrics: serde_json::Value,
}

/// A lease to hand out.
#[derive(Debug, Clone)]
pub struct LeaseGrant {
    pub token: String,
    pub worker: Option<String>,
    pub now: i64,
    pub expires_at: i64,
}

/// How a trial ends.
#[derive(Debug, Clone)]
pub struct Finish {
    /// `Completed`, `Pruned` or `Failed`.
    pub state: TrialState,
    pub value: Option<f64>,
    pub metrics: Option<serde_json::Value>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TrialCounts {
    pub pending: u64,
    pub running: u64,
    pub completed: u64,
    pub pruned: u64,
    pub failed: u64,
}

impl TrialCounts {
    pub fn total(&self) -> u64 {
        self.pending + self.running + self.completed + self.pruned + self.failed
    }

    /// Trials that count against `max_trials`: all but the failed ones.
    pub fn spent(&self) -> u64 {
        self.pending + self.running + self.completed + self.pruned
    }

    pub fn in_flight(&self) -> u64 {
        self.pending + self.running
    }
}

/// A trial whose lease expired, and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReapedTrial {
    pub id: TrialId,
    pub study_id: StudyId,
    /// `Pending` (re-queued) or `Failed` (out of retries).
    pub state: TrialState,
}

/// One entry of a study's event log.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialEvent {
    /// Increasing across the store; resumes a watch (`Last-Event-ID`).
    pub id: i64,
    pub study_id: StudyId,
    pub trial_id: TrialId,
    pub number: u64,
    /// `created`, `started`, `epoch`, `completed`, `pruned`, `failed`, `stale` or `released`.
    pub kind: String,
    pub epoch: Option<u32>,
    pub value: Option<f64>,
    pub at: i64,
}

/// A whole study as one store holds it, to copy into another ([`crate::Store::export_study`],
/// [`crate::Store::import_study`]): what the API, the dashboard and `best` read of it.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyDump {
    pub study: StudyRecord,
    /// Every trial, by number, with every column (lease fields too) and its epochs.
    pub trials: Vec<TrialRecord>,
    /// The study's event log, oldest first, with the source's ids. On PostgreSQL an event
    /// committed after the export asked for positions but before it read has none yet:
    /// its id is 0, and it comes last, where the sequencer will put it.
    pub events: Vec<TrialEvent>,
}

impl StudyDump {
    /// Per-epoch reports over all trials.
    pub fn epoch_count(&self) -> usize {
        self.trials.iter().map(|t| t.epochs.len()).sum()
    }

    /// Trials that were running (held a lease) when the study was read.
    pub fn running_count(&self) -> usize {
        self.trials
            .iter()
            .filter(|t| t.state == TrialState::Running)
            .count()
    }
}
