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

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tuner_core::{Direction, Params, StudyId, StudyState, TrialId, TrialState};

/// Header that may carry a lease token instead of the body's `lease_token`.
pub const LEASE_TOKEN_HEADER: &str = "x-lease-token";

/// A moment, to the millisecond. On the wire: RFC 3339 in UTC with milliseconds
/// (`2026-01-01T12:00:00.000Z`); any RFC 3339 time is read (to the millisecond).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The moment `ms` milliseconds after the Unix epoch (the epoch itself when out of
    /// chrono's range, some 262,000 years either way).
    pub fn from_unix_ms(ms: i64) -> Self {
        Self(DateTime::from_timestamp_millis(ms).unwrap_or_default())
    }

    pub fn unix_ms(&self) -> i64 {
        self.0.timestamp_millis()
    }

    pub fn to_datetime(&self) -> DateTime<Utc> {
        self.0
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_text(deserializer, |text| {
            DateTime::parse_from_rfc3339(text)
                .map(|time| Self::from_unix_ms(time.timestamp_millis()))
                .map_err(|e| format!("`{text}` is not an RFC 3339 time: {e}"))
        })
    }
}

/// Reads a string and parses it with `parse`, whose error is the message.
fn parse_text<'de, D: serde::Deserializer<'de>, T>(
    deserializer: D,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    parse(&text).map_err(serde::de::Error::custom)
}

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
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
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
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EpochReport {
    pub epoch: u32,
    pub value: Option<f64>,
    pub metrics: Value,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub reported_at: Timestamp,
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

/// The query of `GET /studies/{id}/trials`: which trials, in which order, how many,
/// and how much of each; every field is optional. One type on both sides, in serde's
/// URL-encoded form: the client writes it with reqwest's `query`, the server reads it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct TrialQuery {
    /// Only trials in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TrialState>,
    /// `full` (default): metrics and per-epoch history; `summary`: neither, for
    /// tables and charts over thousands of trials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub view: Option<TrialView>,
    /// `number` (default), `value`, `duration`, `state` or `epoch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub sort: Option<SortKey>,
    /// `asc` (default) or `desc`. Trials without the sort key come last either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub order: Option<SortOrder>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<usize>,
    /// Event stream only: start after this event id, or `now` to skip the events so
    /// far. A `Last-Event-ID` header (a reconnect) takes precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
    pub after: Option<StreamStart>,
    /// Only trials with an event after this event id: pass the `last_event_id` of the
    /// previous answer to get what changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_after: Option<i64>,
}

/// How much of each trial a list carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TrialView {
    /// Metrics and per-epoch history.
    #[default]
    Full,
    /// Neither.
    Summary,
}

/// What a trial list is ordered by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    #[default]
    Number,
    Value,
    Duration,
    State,
    Epoch,
}

impl SortKey {
    pub const ALL: [SortKey; 5] = [
        Self::Number,
        Self::Value,
        Self::Duration,
        Self::State,
        Self::Epoch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Number => "number",
            Self::Value => "value",
            Self::Duration => "duration",
            Self::State => "state",
            Self::Epoch => "epoch",
        }
    }
}

impl std::str::FromStr for SortKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown sort key `{s}`; expected number, value, duration, state or epoch")
            })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

/// Where a live event stream starts: after an event id, or after the last event now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    After(i64),
    Now,
}

impl std::fmt::Display for StreamStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::After(id) => write!(f, "{id}"),
            Self::Now => f.write_str("now"),
        }
    }
}

impl Serialize for StreamStart {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StreamStart {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_text(deserializer, |text| match text {
            "now" => Ok(Self::Now),
            n => n
                .parse()
                .map(Self::After)
                .map_err(|_| format!("`{n}` is neither an event id nor `now`")),
        })
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
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
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
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
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
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
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
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
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

/// Body of `POST /studies/{id}/extend`: the study's new budget.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// The new total of trials (not an increment): above the current `max_trials`.
    pub max_trials: u32,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds_on_the_wire() {
        let t = Timestamp::from_unix_ms(1_767_225_600_123);
        assert_eq!(serde_json::to_value(t).unwrap(), "2026-01-01T00:00:00.123Z");
        assert_eq!(
            serde_json::to_value(Timestamp::from_unix_ms(1_767_225_600_000)).unwrap(),
            "2026-01-01T00:00:00.000Z",
            "milliseconds always written"
        );
        let read = |text: &str| serde_json::from_value::<Timestamp>(text.into());
        assert_eq!(read("2026-01-01T00:00:00.123Z").unwrap(), t);
        assert_eq!(read("2026-01-01T02:00:00.123+02:00").unwrap(), t);
        assert_eq!(read("2026-01-01T00:00:00.1239Z").unwrap(), t, "to the ms");
        assert_eq!(
            read("2026-01-01T00:00:00Z").unwrap().unix_ms(),
            1_767_225_600_000
        );
        let err = read("yesterday").unwrap_err().to_string();
        assert!(err.contains("`yesterday` is not an RFC 3339 time"), "{err}");
    }
}
