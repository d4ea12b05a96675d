use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sleeptime_core::{EngineError, EngineErrorKind};
use sleeptime_model::ModelErrorKind;
use sleeptime_store::StoreError;

/// An API error, rendered as `{"error":{"message","type","code"}}` (OpenAI's shape).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Broad class: `invalid_request_error`, `authentication_error`, `not_found_error`, …
    pub kind: &'static str,
    /// Stable, specific code to branch on.
    pub code: &'static str,
    pub message: String,
}

/// Store results as API results: a handler turns a store error into the API error for the
/// resource it was looking up (`what` `id`), e.g. a missing context is a 404 naming it.
pub(crate) trait MapStoreErr<T> {
    fn map_store_err(self, what: &str, id: &str) -> Result<T, ApiError>;
}

impl<T> MapStoreErr<T> for Result<T, StoreError> {
    fn map_store_err(self, what: &str, id: &str) -> Result<T, ApiError> {
        self.map_err(|e| ApiError::store(e, what, id))
    }
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
        )
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            code,
            message,
        )
    }
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "not_found",
            format!("no {what} with id {id:?}"),
        )
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            message,
        )
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            message,
        )
    }

    /// A store error about `what` (`context`, `job`, …) with id `id`.
    pub fn store(err: StoreError, what: &str, id: &str) -> Self {
        match err {
            StoreError::NotFound => Self::not_found(what, id),
            StoreError::VersionConflict { .. } => Self::new(
                StatusCode::CONFLICT,
                "conflict_error",
                "version_conflict",
                err.to_string(),
            ),
            StoreError::LeaseLost | StoreError::Superseded => Self::new(
                StatusCode::CONFLICT,
                "conflict_error",
                "superseded",
                err.to_string(),
            ),
            StoreError::Invalid(message) => Self::bad_request("invalid_value", message),
            other => {
                tracing::error!(error = %other, "store error");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "store_unavailable",
                    "the database is unavailable; try again",
                )
            }
        }
    }

    /// An engine (model) error while answering a query.
    pub fn engine(err: &EngineError) -> Self {
        match err.kind() {
            EngineErrorKind::EmptyQuestion
            | EngineErrorKind::InvalidConfig
            | EngineErrorKind::EmptyContext => Self::bad_request("invalid_value", err.to_string()),
            EngineErrorKind::ContextTooLong => {
                Self::bad_request("context_length_exceeded", err.to_string())
            }
            _ => match err.model_error().map(|m| m.kind()) {
                Some(ModelErrorKind::Timeout) => Self::timeout(err.to_string()),
                _ => Self::new(
                    StatusCode::BAD_GATEWAY,
                    "server_error",
                    "backend_error",
                    err.to_string(),
                ),
            },
        }
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "server_error",
            "timeout",
            message,
        )
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"message": self.message, "type": self.kind, "code": self.code, "param": null}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}
