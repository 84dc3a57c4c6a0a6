//! tuner-api: the JSON shapes of the tuner HTTP API, shared by the server, the
//! built-in workers and the CLI; `sse`, a parser of the live event streams
//! (Server-Sent Events); and (feature `client`) a small typed client.
//!
//! Must not depend on the server, store, optimizer or trainer: any program that
//! speaks the protocol can use these types.

#[cfg(feature = "client")]
mod client;
pub mod sse;

#[cfg(feature = "client")]
pub use client::{ApiClient, AskAnswer, ClientError, DocFormat};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tuner_core::{Direction, Params, StudyId, StudyState, TrialId, TrialState};

/// Header that may carry a lease token instead of the body's `lease_token`.
pub const LEASE_TOKEN_HEADER: &str = "x-lease-token";

/// Every error answer: `{"error": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorInfo {
    /// Stable, machine-readable: `not_found`, `invalid_search_space`, `lease_mismatch`, ...
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Dotted path of the offending field, e.g. `parameters.lr.min`.
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrialCounts {
    pub pending: u64,
    pub running: u64,
    pub completed: u64,
    pub pruned: u64,
    pub failed: u64,
    pub total: u64,
}

/// A study. `GET /studies` leaves out `spec`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Study {
    pub id: StudyId,
    pub name: String,
    pub state: StudyState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    pub objective: Objective,
    pub optimizer: String,
    pub max_trials: u32,
    pub counts: TrialCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<BestSummary>,
    pub created_at: String,
    pub updated_at: String,
    /// The validated search-space document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Objective {
    pub metric: String,
    pub direction: Direction,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BestSummary {
    pub trial_id: TrialId,
    pub number: u64,
    pub value: f64,
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::HashMap<String, tuner_core::ParamValue>))]
    pub params: Params,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StudyList {
    pub studies: Vec<Study>,
}

/// A trial with everything known about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Trial {
    pub id: TrialId,
    pub study_id: StudyId,
    pub number: u64,
    pub state: TrialState,
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::HashMap<String, tuner_core::ParamValue>))]
    pub params: Params,
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Value>,
    /// Per-epoch reports, in epoch order.
    #[serde(default)]
    pub intermediate: Vec<EpochReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_epoch: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Leases handed out for this trial so far (more than 1 after a lost worker).
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EpochReport {
    pub epoch: u32,
    pub value: Option<f64>,
    pub metrics: Value,
    pub reported_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrialList {
    pub trials: Vec<Trial>,
    /// How many trials matched the filter, before `limit`/`offset` cut a page out.
    #[serde(default)]
    pub total: u64,
    /// The study's latest trial event when the list was read: pass it back as
    /// `changed_after` to get only the trials that changed since.
    #[serde(default)]
    pub last_event_id: i64,
}

/// The query of `GET /studies/{id}/trials`; every field is optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrialQuery {
    /// Only trials in this state.
    pub state: Option<tuner_core::TrialState>,
    /// `number` (default), `value`, `duration`, `epoch` or `state`.
    pub sort: Option<String>,
    pub descending: bool,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
    /// Leave out metrics and per-epoch history.
    pub summary: bool,
    /// Only trials with an event after this one (see [`TrialList::last_event_id`]).
    pub changed_after: Option<i64>,
}

impl TrialQuery {
    /// `?key=value&...`, or "" when nothing is set. Values are plain words and numbers.
    pub fn query_string(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = self.state {
            parts.push(format!("state={}", s.as_str()));
        }
        if let Some(s) = &self.sort {
            parts.push(format!("sort={s}"));
        }
        if self.descending {
            parts.push("order=desc".to_owned());
        }
        if let Some(l) = self.limit {
            parts.push(format!("limit={l}"));
        }
        if let Some(o) = self.offset {
            parts.push(format!("offset={o}"));
        }
        if self.summary {
            parts.push("view=summary".to_owned());
        }
        if let Some(e) = self.changed_after {
            parts.push(format!("changed_after={e}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// One event of `GET /studies/{id}/trials` with `Accept: text/event-stream`. The SSE
/// event name is `kind` and its id resumes the stream (`Last-Event-ID`). The stream ends
/// with an `end` event whose data is the finished [`Study`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrialEvent {
    pub id: i64,
    pub trial_id: TrialId,
    pub number: u64,
    /// `created`, `started`, `epoch`, `completed`, `pruned`, `failed`, `stale` (lease
    /// expired, back in the queue) or `released` (given back by its worker).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub at: String,
}

/// `GET /studies/{id}/best`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Best {
    pub study_id: StudyId,
    pub trial: Trial,
    /// The tuned params merged with the study's fixed values: a config to train from.
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::HashMap<String, tuner_core::ParamValue>))]
    pub config: Params,
}

/// `GET /studies/{id}/importance`: how much each parameter matters to the objective.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Importance {
    pub study_id: StudyId,
    /// How the figures were computed.
    pub method: String,
    /// Largest first; the importances sum to 1. Empty until enough trials completed.
    pub parameters: Vec<ParamImportance>,
    pub completed_trials: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParamImportance {
    pub name: String,
    pub importance: f64,
}

/// `POST /studies/{id}/ask` body (optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    /// A name for the worker, shown in trial listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

/// `POST /ask` body: lease a trial from any running study (built-in worker pools).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AskAnyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Only studies with this trainer kind (e.g. `fashion-mnist-cnn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainer: Option<String>,
}

/// `POST /studies/{id}/ask` answer: a trial and the lease on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AskResponse {
    pub trial: LeasedTrial,
    pub lease: Lease,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeasedTrial {
    pub id: TrialId,
    pub study_id: StudyId,
    pub number: u64,
    /// The tuned parameters (active ones only).
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::HashMap<String, tuner_core::ParamValue>))]
    pub params: Params,
    /// `params` merged with the study's `fixed` values.
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::HashMap<String, tuner_core::ParamValue>))]
    pub config: Params,
    /// 1 on the first lease, more when re-run after a lost lease.
    pub attempt: u32,
    pub objective: Objective,
    /// The study's `trainer` section, as written.
    pub trainer: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lease {
    pub token: String,
    pub expires_at: String,
    /// Seconds a lease lasts; heartbeat well within this.
    pub ttl_seconds: f64,
}

/// Body of `POST /trials/{id}/heartbeat`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatResponse {
    pub expires_at: String,
}

/// Body of `POST /trials/{id}/report`: one epoch's metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<String>,
    pub epoch: u32,
    /// The objective at this epoch; taken from `metrics[objective.metric]` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default)]
    pub metrics: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReportAction {
    Continue,
    Stop,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportResponse {
    pub action: ReportAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub expires_at: String,
}

/// Body of `POST /trials/{id}/complete`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<String>,
    /// The final objective value; taken from `metrics[objective.metric]` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default)]
    pub metrics: Map<String, Value>,
}

/// Body of `POST /trials/{id}/release`: give the trial back to the queue.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<String>,
}

/// Body of `POST /trials/{id}/fail`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<String>,
    pub reason: String,
}
