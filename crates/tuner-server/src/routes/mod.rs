pub(crate) mod studies;
mod trials;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{
        DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State,
        rejection::BytesRejection,
    },
    http::{StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;
use tuner_core::{Problem, StudyId, TrialId};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{ApiError, AppState};

/// What a lease holder's request (heartbeat, report, complete, fail, release) may get
/// instead of its answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Describes responses; never built.
pub(crate) enum LeaseRefusals {
    /// The server has a token and the request did not send it
    #[response(status = 401)]
    Unauthorized(tuner_api::ErrorBody),
    /// No such trial
    #[response(status = 404)]
    NotFound(tuner_api::ErrorBody),
    /// Not the lease holder, the lease expired, or the trial is finished
    #[response(status = 409)]
    Conflict(tuner_api::ErrorBody),
    /// Malformed request; `details` names each problem
    #[response(status = 422)]
    Invalid(tuner_api::ErrorBody),
    /// The database could not store the change (e.g. a full disk); nothing changed:
    /// retry after `Retry-After` seconds
    #[response(status = 503)]
    StorageUnavailable(tuner_api::ErrorBody),
}

/// What a request about one study may get when the study is missing or the request is
/// not authorized.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Describes responses; never built.
pub(crate) enum StudyRefusals {
    /// The server has a token and the request did not send it
    #[response(status = 401)]
    Unauthorized(tuner_api::ErrorBody),
    /// No such study
    #[response(status = 404)]
    NotFound(tuner_api::ErrorBody),
}

/// The API description: the paths come from the handlers' `#[utoipa::path]`
/// annotations as [`router`] registers them, so the document cannot list a route the
/// server lacks or miss one it has.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tuner",
        description = "Hyperparameter search as a service: studies, trials, leases for workers. \
                       Errors are one JSON envelope, `{\"error\": {code, message, details}}`. \
                       When the server has a token, every route but `/health`, `/openapi.json` \
                       and the dashboard needs `Authorization: Bearer <token>`."
    ),
    tags(
        (name = "studies", description = "Create, watch and steer studies"),
        (name = "trials", description = "Read trials and their events"),
        (name = "workers", description = "The lease protocol workers speak: ask, heartbeat, report, complete, fail, release"),
        (name = "service", description = "Health, this document and the dashboard"),
    ),
    modifiers(&BearerToken)
)]
struct ApiDoc;

struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new(
            "token",
            Vec::<String>::new(),
        )]);
    }
}

/// The router and the OpenAPI document that describes it, built together.
fn documented_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(openapi_document))
        .routes(routes!(crate::dashboard::index))
        .routes(routes!(crate::dashboard::asset))
        .routes(routes!(studies::create_study, studies::list_studies))
        .routes(routes!(studies::get_study, studies::delete_study))
        .routes(routes!(studies::list_trials))
        .routes(routes!(studies::best_trial))
        .routes(routes!(studies::parameter_importance))
        .routes(routes!(trials::ask_any_trial))
        .routes(routes!(trials::ask_trial))
        .routes(routes!(studies::stop_study))
        .routes(routes!(studies::pause_study))
        .routes(routes!(studies::resume_study))
        .routes(routes!(studies::extend_study))
        .routes(routes!(trials::get_trial))
        .routes(routes!(trials::heartbeat))
        .routes(routes!(trials::report))
        .routes(routes!(trials::complete_trial))
        .routes(routes!(trials::fail_trial))
        .routes(routes!(trials::release_trial))
        .split_for_parts()
}

/// The OpenAPI document of this server's routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().1
}

pub fn router(state: AppState) -> Router {
    let limit = state.config().max_body_bytes;
    let (routes, _) = documented_routes();
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(run_to_completion))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Runs the handler in its own task, so a client that goes away mid-request does not
/// cancel it: a change committed to the database is always followed by the in-memory
/// bookkeeping that goes with it (trial histories and counts, the lease-expiry bound,
/// cached study records). Streams still end with their connection: hyper drops the body.
async fn run_to_completion(req: Request, next: Next) -> Response {
    match tokio::spawn(next.run(req)).await {
        Ok(response) => response,
        Err(e) => ApiError::Internal(format!("request handler failed: {e}")).into_response(),
    }
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
        && req.uri().path() != "/openapi.json"
        && !crate::dashboard::is_public(req.uri().path())
    {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // An empty secret never matches, even an empty one: a server configured with a
        // blank token fails closed instead of open. Compared in constant time (subtle),
        // so timing reveals nothing about how much of a guess was right.
        let matches: bool = given.as_bytes().ct_eq(expected.as_bytes()).into();
        if given.trim().is_empty() || !matches {
            return Err(ApiError::Unauthorized(
                "this server needs a token: send `Authorization: Bearer <token>` (tuner-cli: --token or TUNER_TOKEN)".into(),
            ));
        }
    }
    Ok(next.run(req).await)
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "service",
    summary = "Liveness: `{\"status\": \"ok\"}`; never needs the token",
    security(()),
    responses((status = 200, body = serde_json::Value, example = json!({"status": "ok"})))
)]
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Built once: the document does not change while the server runs.
static OPENAPI_JSON: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
});

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    summary = "This document (OpenAPI 3.1); never needs the token",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = serde_json::Value))
)]
async fn openapi_document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON.as_str(),
    )
        .into_response()
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
    serde_path_to_error::deserialize(de).map_err(|e| invalid_at("the request body is not valid", e))
}

/// A deserialization error as a 422 naming the field (or query parameter) at fault.
fn invalid_at(message: &str, e: serde_path_to_error::Error<impl std::fmt::Display>) -> ApiError {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    ApiError::invalid(
        message,
        vec![Problem::new(path, e.into_inner().to_string())],
    )
}

/// A JSON request body as `T`: 413 over the size limit, 422 naming the bad field; an
/// empty body reads as `{}`.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await;
        parse_json(&body_bytes(state, bytes)?).map(Self)
    }
}

/// The query string as `T`, in serde's URL-encoded form (what the client's
/// `reqwest::RequestBuilder::query` writes), or 422 naming the bad parameter.
pub(crate) struct UrlQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for UrlQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Self)
            .map_err(|e| invalid_at("bad query string", e))
    }
}

/// An id from the path of `/studies/{id}/...` or `/trials/{id}/...`: plain decimal
/// digits only, so one resource has one URL (`+1`, `01` or ` 1` name nothing: 404).
pub(crate) struct PathId<T>(pub T);

/// A kind of id a path may hold.
pub(crate) trait IdInPath: Sized {
    /// What the id names, for the 404 message.
    const KIND: &'static str;
    fn from_number(id: i64) -> Self;
}

impl IdInPath for StudyId {
    const KIND: &'static str = "study";
    fn from_number(id: i64) -> Self {
        StudyId(id)
    }
}

impl IdInPath for TrialId {
    const KIND: &'static str = "trial";
    fn from_number(id: i64) -> Self {
        TrialId(id)
    }
}

impl<T: IdInPath, S: Send + Sync> FromRequestParts<S> for PathId<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::NotFound(e.body_text()))?;
        let canonical = !raw.is_empty()
            && raw.bytes().all(|b| b.is_ascii_digit())
            && (raw == "0" || !raw.starts_with('0'));
        canonical
            .then(|| raw.parse::<i64>().ok())
            .flatten()
            .map(|id| Self(T::from_number(id)))
            .ok_or_else(|| ApiError::NotFound(format!("{} `{raw}` not found", T::KIND)))
    }
}
