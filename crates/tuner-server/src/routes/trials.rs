use axum::{
    Json,
    extract::{FromRequest, FromRequestParts, Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tuner_api::{
    AskAnyRequest, AskRequest, AskResponse, CompleteRequest, ErrorBody, FailRequest,
    HeartbeatRequest, HeartbeatResponse, LEASE_TOKEN_HEADER, ReleaseRequest, ReportRequest,
    ReportResponse, Timestamp, Trial,
};
use tuner_core::{Problem, StudyId, TrainerKind, TrialId, TrialState};
use tuner_store::{Finish, NewEpoch};

use super::{JsonBody, LeaseRefusals, PathId};
use crate::{
    ApiError, AppState,
    ask::{self, AskOutcome},
    pruning, settle, views,
};

/// Longest failure reason kept; longer ones are cut.
const MAX_REASON_CHARS: usize = 4_000;
/// Seconds a worker told to wait should wait before asking again.
const RETRY_AFTER_SECONDS: &str = "1";

/// The lease token from the body, or else from the `X-Lease-Token` header.
fn lease_token(header: Option<String>, body_token: Option<String>) -> Result<String, ApiError> {
    body_token
        .or(header)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "a lease token is required",
                vec![Problem::new(
                    "lease_token",
                    "give the token from the ask answer in the body or the X-Lease-Token header",
                )],
            )
        })
}

/// A request body that may carry the lease token.
pub(crate) trait CarriesLeaseToken {
    fn take_lease_token(&mut self) -> Option<String>;
}

macro_rules! carries_lease_token {
    ($($t:ty),*) => {$(
        impl CarriesLeaseToken for $t {
            fn take_lease_token(&mut self) -> Option<String> {
                self.lease_token.take()
            }
        }
    )*};
}

carries_lease_token!(
    HeartbeatRequest,
    ReportRequest,
    CompleteRequest,
    FailRequest,
    ReleaseRequest
);

/// What every lease holder's request (`/trials/{id}/heartbeat`, `report`, `complete`,
/// `fail`, `release`) starts with: the trial id from the path, the parsed body, and the
/// lease token from the body or the `X-Lease-Token` header — checked in that order.
pub(crate) struct LeaseCall<T> {
    id: TrialId,
    token: String,
    body: T,
}

impl<T> FromRequest<AppState> for LeaseCall<T>
where
    T: DeserializeOwned + CarriesLeaseToken + Send,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let PathId(id) = PathId::<TrialId>::from_request_parts(&mut parts, state).await?;
        let header_token = parts
            .headers
            .get(LEASE_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let JsonBody(mut body) =
            JsonBody::<T>::from_request(Request::from_parts(parts, body), state).await?;
        let token = lease_token(header_token, body.take_lease_token())?;
        Ok(Self { id, token, body })
    }
}

fn lease_expiry(state: &AppState, now: i64) -> i64 {
    now + state.config().lease.as_millis() as i64
}

#[utoipa::path(
    post,
    path = "/studies/{id}/ask",
    tag = "workers",
    summary = "Lease the study's next trial",
    params(("id" = i64, Path, description = "The study id")),
    request_body = AskRequest,
    responses(
        (status = 200, description = "A trial and its lease", body = AskResponse),
        (status = 204, description = "Nothing now: with `Retry-After`, ask again then; without it, the study is over"),
        (status = 401, description = "The server has a token and the request did not send it", body = ErrorBody),
        (status = 404, description = "No such study", body = ErrorBody),
        (status = 422, description = "Malformed request; `details` names each problem", body = ErrorBody)
    )
)]
pub async fn ask_trial(
    State(state): State<AppState>,
    PathId(id): PathId<StudyId>,
    JsonBody(req): JsonBody<AskRequest>,
) -> Result<Response, ApiError> {
    let worker = req.worker.map(|w| w.chars().take(200).collect::<String>());
    Ok(ask_response(ask::ask(&state, id, worker).await?))
}

/// `POST /ask`: a trial from any running study, for pools of built-in workers.
#[utoipa::path(
    post,
    path = "/ask",
    tag = "workers",
    summary = "Lease a trial from any running study (worker pools)",
    request_body = AskAnyRequest,
    responses(
        (status = 200, description = "A trial and its lease", body = AskResponse),
        (status = 204, description = "Nothing now; ask again after `Retry-After` seconds"),
        (status = 401, description = "The server has a token and the request did not send it", body = ErrorBody),
        (status = 422, description = "Malformed request; `details` names each problem", body = ErrorBody)
    )
)]
pub async fn ask_any_trial(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<AskAnyRequest>,
) -> Result<Response, ApiError> {
    let trainer = req
        .trainer
        .map(|t| {
            serde_json::from_value::<TrainerKind>(Value::String(t.clone())).map_err(|_| {
                ApiError::invalid(
                    "unknown trainer",
                    vec![Problem::new(
                        "trainer",
                        format!(
                            "unknown trainer kind `{t}`; expected fashion-mnist-cnn or external"
                        ),
                    )],
                )
            })
        })
        .transpose()?;
    let worker = req.worker.map(|w| w.chars().take(200).collect::<String>());
    Ok(ask_response(ask::ask_any(&state, trainer, worker).await?))
}

fn ask_response(outcome: AskOutcome) -> Response {
    match outcome {
        AskOutcome::Leased(answer) => Json(*answer).into_response(),
        AskOutcome::Wait => {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
            resp
        }
        AskOutcome::Done => StatusCode::NO_CONTENT.into_response(),
    }
}

#[utoipa::path(
    get,
    path = "/trials/{id}",
    tag = "trials",
    summary = "One trial with its metrics and per-epoch history",
    params(("id" = i64, Path, description = "The trial id")),
    responses(
        (status = 200, body = Trial),
        (status = 401, description = "The server has a token and the request did not send it", body = ErrorBody),
        (status = 404, description = "No such trial", body = ErrorBody)
    )
)]
pub async fn get_trial(
    State(state): State<AppState>,
    PathId(id): PathId<TrialId>,
) -> Result<Json<Trial>, ApiError> {
    let trial = state.store().get_trial(id).await?;
    Ok(Json(views::trial(&trial)))
}

#[utoipa::path(
    post,
    path = "/trials/{id}/heartbeat",
    tag = "workers",
    summary = "Extend a lease",
    params(("id" = i64, Path, description = "The trial id"), ("X-Lease-Token" = Option<String>, Header, description = "The lease token, instead of `lease_token` in the body")),
    request_body = HeartbeatRequest,
    responses(
        (status = 200, body = HeartbeatResponse),
        LeaseRefusals
    )
)]
pub async fn heartbeat(
    State(state): State<AppState>,
    LeaseCall { id, token, .. }: LeaseCall<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let now = state.now_ms();
    let expires_at = lease_expiry(&state, now);
    state.store().heartbeat(id, &token, now, expires_at).await?;
    Ok(Json(HeartbeatResponse {
        expires_at: Timestamp::from_unix_ms(expires_at),
    }))
}

/// The objective value: given directly, or found in the metrics under the
/// objective's metric name.
fn objective_value(
    explicit: Option<f64>,
    metrics: &Map<String, Value>,
    metric: &str,
) -> Result<Option<f64>, ApiError> {
    if let Some(v) = explicit {
        return Ok(Some(v));
    }
    match metrics.get(metric) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid(
                    "the objective metric is not a number",
                    vec![Problem::new(
                        format!("metrics.{metric}"),
                        format!("expected a finite number, found {v}"),
                    )],
                )
            }),
    }
}

/// The largest epoch a study without a declared `trainer.epochs` may report.
const MAX_EPOCH: u32 = 100_000;

/// Epochs count from 1 up to the study's `trainer.epochs` (or [`MAX_EPOCH`]).
fn check_epoch(epoch: u32, declared: Option<u32>) -> Result<(), ApiError> {
    let (last, why) = match declared {
        Some(n) => (n, format!("the study's trainer.epochs is {n}")),
        None => (MAX_EPOCH, format!("at most {MAX_EPOCH}")),
    };
    if (1..=last).contains(&epoch) {
        return Ok(());
    }
    Err(ApiError::invalid(
        "the epoch is out of range",
        vec![Problem::new(
            "epoch",
            format!("epochs count from 1; {why}; got {epoch}"),
        )],
    ))
}

#[utoipa::path(
    post,
    path = "/trials/{id}/report",
    tag = "workers",
    summary = "Report an epoch's metrics; the answer says continue or stop (pruned or study stopped)",
    params(("id" = i64, Path, description = "The trial id"), ("X-Lease-Token" = Option<String>, Header, description = "The lease token, instead of `lease_token` in the body")),
    request_body = ReportRequest,
    responses(
        (status = 200, body = ReportResponse),
        LeaseRefusals
    )
)]
pub async fn report(
    State(state): State<AppState>,
    LeaseCall {
        id,
        token,
        body: req,
    }: LeaseCall<ReportRequest>,
) -> Result<Json<ReportResponse>, ApiError> {
    let spec = state.spec_of_trial(id).await?;
    check_epoch(req.epoch, spec.trainer.epochs)?;
    let value = objective_value(req.value, &req.metrics, &spec.objective.metric)?;
    let now = state.now_ms();
    let expires_at = lease_expiry(&state, now);
    let trial = state
        .store()
        .report_epoch(
            id,
            &token,
            now,
            expires_at,
            &NewEpoch {
                epoch: req.epoch,
                value,
                metrics: Value::Object(req.metrics),
            },
        )
        .await?;
    let (action, reason) = pruning::after_report(&state, &trial, req.epoch, value).await?;
    Ok(Json(ReportResponse {
        action,
        reason,
        expires_at: Timestamp::from_unix_ms(expires_at),
    }))
}

#[utoipa::path(
    post,
    path = "/trials/{id}/complete",
    tag = "workers",
    summary = "Complete a trial with its objective value and final metrics",
    params(("id" = i64, Path, description = "The trial id"), ("X-Lease-Token" = Option<String>, Header, description = "The lease token, instead of `lease_token` in the body")),
    request_body = CompleteRequest,
    responses(
        (status = 200, description = "The finished trial (a retry by the same lease holder gets the same answer)", body = Trial),
        LeaseRefusals
    )
)]
pub async fn complete_trial(
    State(state): State<AppState>,
    LeaseCall {
        id,
        token,
        body: req,
    }: LeaseCall<CompleteRequest>,
) -> Result<Json<Trial>, ApiError> {
    let spec = state.spec_of_trial(id).await?;
    let metric = &spec.objective.metric;
    let value = objective_value(req.value, &req.metrics, metric)?.ok_or_else(|| {
        ApiError::invalid(
            "a completed trial needs its objective value",
            vec![Problem::new(
                "value",
                format!(
                    "give `value` or `metrics.{metric}`; a run that produced no value should call /fail"
                ),
            )],
        )
    })?;
    finish(
        &state,
        id,
        &token,
        Finish {
            state: TrialState::Completed,
            value: Some(value),
            metrics: Some(Value::Object(req.metrics)),
            reason: None,
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/trials/{id}/fail",
    tag = "workers",
    summary = "Fail a trial with a reason",
    params(("id" = i64, Path, description = "The trial id"), ("X-Lease-Token" = Option<String>, Header, description = "The lease token, instead of `lease_token` in the body")),
    request_body = FailRequest,
    responses(
        (status = 200, body = Trial),
        LeaseRefusals
    )
)]
pub async fn fail_trial(
    State(state): State<AppState>,
    LeaseCall {
        id,
        token,
        body: req,
    }: LeaseCall<FailRequest>,
) -> Result<Json<Trial>, ApiError> {
    let reason = req.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::invalid(
            "a failure needs a reason",
            vec![Problem::new("reason", "must not be empty")],
        ));
    }
    let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
    finish(
        &state,
        id,
        &token,
        Finish {
            state: TrialState::Failed,
            value: None,
            metrics: None,
            reason: Some(reason),
        },
    )
    .await
}

/// Ends a trial for its lease holder, then what follows any trial's end.
async fn finish(
    state: &AppState,
    id: TrialId,
    token: &str,
    how: Finish,
) -> Result<Json<Trial>, ApiError> {
    let trial = state
        .store()
        .finish_trial(id, token, state.now_ms(), how)
        .await?;
    // `value` and `reason` only where the trial has one, not as `Some(..)`.
    match (&trial.value, &trial.failure_reason) {
        (Some(value), _) => {
            tracing::info!(trial = %id, state = %trial.state, value, "trial finished")
        }
        (None, Some(reason)) => {
            tracing::info!(trial = %id, state = %trial.state, reason = %reason, "trial finished")
        }
        (None, None) => tracing::info!(trial = %id, state = %trial.state, "trial finished"),
    }
    settle::after_finish(state, &trial).await?;
    Ok(Json(views::trial(&trial)))
}

#[utoipa::path(
    post,
    path = "/trials/{id}/release",
    tag = "workers",
    summary = "Give a leased trial back to the queue unfinished (worker shutting down)",
    params(("id" = i64, Path, description = "The trial id"), ("X-Lease-Token" = Option<String>, Header, description = "The lease token, instead of `lease_token` in the body")),
    request_body = ReleaseRequest,
    responses(
        (status = 200, body = Trial),
        LeaseRefusals
    )
)]
pub async fn release_trial(
    State(state): State<AppState>,
    LeaseCall { id, token, .. }: LeaseCall<ReleaseRequest>,
) -> Result<Json<Trial>, ApiError> {
    let trial = state
        .store()
        .release_trial(id, &token, state.now_ms())
        .await?;
    state.histories().record(&trial).await;
    tracing::info!(trial = %id, "trial released back to the queue");
    Ok(Json(views::trial(&trial)))
}
