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
