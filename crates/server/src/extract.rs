//! Request extractors whose failures are API errors with clear messages: JSON bodies, query
//! strings, and the caller's tenant.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use sleeptime_store::Tenant;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body: 413 over the size limit, 415 for a non-JSON content type, 400 for invalid
/// UTF-8 or malformed JSON, 422 for wrong types or missing fields.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
            if !ct.starts_with("application/json") && !ct.contains("+json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "invalid_request_error",
                    "unsupported_media_type",
                    format!("the body must be JSON (Content-Type: application/json), not {ct:?}"),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request_error",
                    "payload_too_large",
                    "the request body is larger than this server accepts",
                )
            } else {
                ApiError::bad_request(
                    "invalid_body",
                    format!("cannot read the request body: {rejection}"),
                )
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parse a JSON body with the error classes [`ApiJson`] documents.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(ApiError::bad_request(
            "invalid_utf8",
            format!(
                "the request body is not valid UTF-8 (bad byte at offset {})",
                e.valid_up_to()
            ),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the request body is empty; expected a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::unprocessable(
            "invalid_request",
            format!("the JSON does not fit this endpoint: {e}"),
        ),
        _ => ApiError::bad_request(
            "invalid_json",
            format!("the request body is not valid JSON: {e}"),
        ),
    })
}

/// A query string: 400 with the reason when it does not parse.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("bad query string: {}", e.body_text()),
                )
            })
    }
}

/// The calling tenant, from `Authorization: Bearer <key>`.
#[derive(Debug, Clone)]
pub struct Caller(pub Tenant);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION);
        let Some(header) = header else {
            if state.config.auth.require_keys {
                return Err(ApiError::unauthorized(
                    "missing API key: send it as the header Authorization: Bearer <key>",
                ));
            }
            return Ok(Caller(state.default_tenant.clone()));
        };
        let value = header.to_str().unwrap_or_default().trim();
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be: Bearer <key>")
            })?;
        match state.store.tenant_for_key(key).await {
            Ok(Some(tenant)) => Ok(Caller(tenant)),
            Ok(None) => Err(ApiError::unauthorized("invalid API key")),
            Err(e) => Err(ApiError::store(e, "key", "")),
        }
    }
}
