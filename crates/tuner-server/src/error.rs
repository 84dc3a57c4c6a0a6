use axum::{
    Json,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use tuner_api::{ErrorBody, ErrorDetail, ErrorInfo};
use tuner_core::{CoreError, Problem};
use tuner_store::StoreError;

/// Why a request conflicts with the state it found (409): the envelope's stable `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictCode {
    /// The lease ran out (the trial may be re-queued or already leased again).
    LeaseExpired,
    /// The study already has a trial with this configuration.
    DuplicateConfig,
    /// The trial is not running (queued, or finished another way).
    TrialNotRunning,
    /// The trial already finished the same way with another value.
    TrialAlreadyFinished,
    /// The epoch was already reported with another value.
    EpochAlreadyReported,
    /// The study's state does not allow the change (e.g. resume a completed study).
    InvalidStudyState,
}

impl ConflictCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LeaseExpired => "lease_expired",
            Self::DuplicateConfig => "duplicate_config",
            Self::TrialNotRunning => "trial_not_running",
            Self::TrialAlreadyFinished => "trial_already_finished",
            Self::EpochAlreadyReported => "epoch_already_reported",
            Self::InvalidStudyState => "invalid_study_state",
        }
    }
}

/// Every way a request can fail, each with its status and stable code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("the search space is invalid ({} problem(s))", .0.len())]
    InvalidSpec(Vec<Problem>),
    #[error("{message}")]
    Invalid {
        message: String,
        details: Vec<Problem>,
    },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    LeaseMismatch(String),
    #[error("{message}")]
    Conflict { code: ConflictCode, message: String },
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The database could not store a change (full disk, I/O error, read-only file):
    /// nothing was changed; the client may retry later.
    #[error("{0}")]
    StorageUnavailable(String),
    /// Never shown to the client: logged, answered with a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, details: Vec<Problem>) -> Self {
        Self::Invalid {
            message: message.into(),
            details,
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::InvalidSpec(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_search_space"),
            Self::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::LeaseMismatch(_) => (StatusCode::FORBIDDEN, "lease_mismatch"),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code.as_str()),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::StorageUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl ApiError {
    /// The same refusal for another request (a batch of asks that failed together).
    pub(crate) fn replicate(&self) -> Self {
        match self {
            Self::NotFound(m) => Self::NotFound(m.clone()),
            Self::StorageUnavailable(m) => Self::StorageUnavailable(m.clone()),
            Self::Conflict { code, message } => Self::Conflict {
                code: *code,
                message: message.clone(),
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal server error; see the server log".to_owned()
            }
            other => other.to_string(),
        };
        let details = match self {
            Self::InvalidSpec(problems)
            | Self::Invalid {
                details: problems, ..
            } => problems
                .into_iter()
                .map(|p| ErrorDetail {
                    path: p.path,
                    message: p.message,
                })
                .collect(),
            _ => Vec::new(),
        };
        let body = ErrorBody {
            error: ErrorInfo {
                code: code.to_owned(),
                message,
                details,
            },
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(message = %body.error.message, "a change could not be stored");
            return (status, [(header::RETRY_AFTER, "1")], Json(body)).into_response();
        }
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::StudyNotFound(_) | StoreError::TrialNotFound(_) => {
                Self::NotFound(e.to_string())
            }
            StoreError::LeaseMismatch(_) => Self::LeaseMismatch(e.to_string()),
            StoreError::LeaseExpired(_) => Self::Conflict {
                code: ConflictCode::LeaseExpired,
                message: e.to_string(),
            },
            // Another replica suggested the same configuration at the same moment.
            StoreError::DuplicateConfig(_) => Self::Conflict {
                code: ConflictCode::DuplicateConfig,
                message: e.to_string(),
            },
            StoreError::NotRunning { .. } => Self::Conflict {
                code: ConflictCode::TrialNotRunning,
                message: e.to_string(),
            },
            StoreError::AlreadyFinished { .. } => Self::Conflict {
                code: ConflictCode::TrialAlreadyFinished,
                message: e.to_string(),
            },
            StoreError::EpochConflict { .. } => Self::Conflict {
                code: ConflictCode::EpochAlreadyReported,
                message: e.to_string(),
            },
            StoreError::Unavailable(_) | StoreError::Batch(_) => {
                Self::StorageUnavailable(e.to_string())
            }
            StoreError::Corrupt(_) | StoreError::Database(_) | StoreError::Migrate(_) => {
                Self::Internal(e.to_string())
            }
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::InvalidSpec(problems) => Self::InvalidSpec(problems),
            CoreError::InvalidParams(problems) => Self::invalid("invalid params", problems),
            other => Self::invalid(other.to_string(), Vec::new()),
        }
    }
}
