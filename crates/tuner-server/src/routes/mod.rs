pub(crate) mod studies;
mod trials;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Request, State, rejection::BytesRejection},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
};
use serde::de::DeserializeOwned;
use tuner_core::Problem;

use crate::{ApiError, AppState};

pub fn router(state: AppState) -> Router {
    let limit = state.config().max_body_bytes;
    Router::new()
        .route("/", get(crate::dashboard::index))
        .route("/assets/{name}", get(crate::dashboard::asset))
        .route("/health", get(health))
        .route(
            "/studies",
            post(studies::create_study).get(studies::list_studies),
        )
        .route(
            "/studies/{id}",
            get(studies::get_study).delete(studies::delete_study),
        )
        .route("/studies/{id}/trials", get(studies::list_trials))
        .route("/studies/{id}/best", get(studies::best_trial))
        .route(
            "/studies/{id}/importance",
            get(studies::parameter_importance),
        )
        .route("/ask", post(trials::ask_any_trial))
        .route("/studies/{id}/ask", post(trials::ask_trial))
        .route("/studies/{id}/stop", post(studies::stop_study))
        .route("/studies/{id}/pause", post(studies::pause_study))
        .route("/studies/{id}/resume", post(studies::resume_study))
        .route("/trials/{id}", get(trials::get_trial))
        .route("/trials/{id}/heartbeat", post(trials::heartbeat))
        .route("/trials/{id}/report", post(trials::report))
        .route("/trials/{id}/complete", post(trials::complete_trial))
        .route("/trials/{id}/fail", post(trials::fail_trial))
        .route("/trials/{id}/release", post(trials::release_trial))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Refuses requests without the server's token, when it has one. `/health` stays
/// open so load balancers and `tune` can probe it.
async fn require_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(expected) = &state.config().token
        && req.uri().path() != "/health"
        && !crate::dashboard::is_public(req.uri().path())
    {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return Err(ApiError::Unauthorized(
                "this server needs a token: send `Authorization: Bearer <token>` (tuner-cli: --token or TUNER_TOKEN)".into(),
            ));
        }
    }
    Ok(next.run(req).await)
}

/// Compares without stopping at the first difference, so timing reveals nothing
/// about how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ x);
    }
    diff == 0
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; see the API reference in the README".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("this route does not accept that method".into())
}

/// The request body, or 413 in the envelope when it is over the limit.
pub(crate) fn body_bytes(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(state.config().max_body_bytes)
        } else {
            ApiError::invalid(
                format!("could not read the request body: {rejection}"),
                Vec::new(),
            )
        }
    })
}

/// Parses a JSON body into `T`, reporting the path of the first bad field. An empty
/// body parses as `{}`.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ApiError::invalid(
            "the request body is not valid",
            vec![Problem::new(path, e.into_inner().to_string())],
        )
    })
}

/// Parses a numeric id from the path; anything else names no resource.
pub(crate) fn parse_id(kind: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::NotFound(format!("{kind} `{raw}` not found")))
}
