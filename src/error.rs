//! The one error type of the HTTP API, rendered as RFC 9457 `application/problem+json`.
//!
//! 5xx answers carry no internal detail: the cause is logged (with the request id, never with
//! bodies or tokens) and the client gets a generic text.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::TokenError;
pub use crate::domain::FieldError;
use crate::domain::guard::Hit;
use crate::storage::StorageError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the problem type (see the README's list of problem types).
    #[serde(rename = "type")]
    #[schema(example = "/problems/not-found")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Field-level errors: a JSON pointer and a message, or, for the identifier guard, the
    /// field, the kind of identifier and its character offsets (never the text).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemItem>,
}

/// One entry of a problem's `errors`.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum ProblemItem {
    Field(FieldError),
    Identifier(Hit),
}

/// Everything a handler or extractor can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized: {0}")]
    Unauthorized(TokenError),
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// Missing, or not visible to the caller: both answer the same.
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("payload too large")]
    PayloadTooLarge(usize),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("direct identifiers in free text")]
    Identifiers(Vec<Hit>),
    #[error("transition refused: {0}")]
    InvalidTransition(String),
    #[error("charter not accepted")]
    CharterNotAccepted,
    #[error("integrity failure: {0}")]
    Integrity(String),
    #[error("request timed out")]
    Timeout,
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(pointer, detail)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) | ApiError::Identifiers(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InvalidTransition(_) => StatusCode::CONFLICT,
            ApiError::CharterNotAccepted => StatusCode::FORBIDDEN,
            ApiError::Integrity(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Timeout | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "invalid-token",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed => "method-not-allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::UnsupportedMediaType => "unsupported-media-type",
            ApiError::MalformedJson(_) => "malformed-json",
            ApiError::Validation(_) => "validation",
            ApiError::Identifiers(_) => "identifier-detected",
            ApiError::InvalidTransition(_) => "invalid-transition",
            ApiError::CharterNotAccepted => "charter-not-accepted",
            ApiError::Integrity(_) => "internal",
            ApiError::Timeout => "timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "Missing or invalid bearer token",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound(_) => "Not found",
            ApiError::MethodNotAllowed => "Method not allowed",
            ApiError::Conflict(_) => "Conflict",
            ApiError::PayloadTooLarge(_) => "Request body too large",
            ApiError::UnsupportedMediaType => "Unsupported media type",
            ApiError::MalformedJson(_) => "Malformed JSON body",
            ApiError::Validation(_) => "Invalid request",
            ApiError::Identifiers(_) => "Direct identifiers in free text",
            ApiError::InvalidTransition(_) => "Transition not allowed",
            ApiError::CharterNotAccepted => "Charter not accepted",
            ApiError::Integrity(_) => "Internal error",
            ApiError::Timeout => "Request timed out",
            ApiError::Unavailable(_) => "Service temporarily unavailable",
            ApiError::Internal(_) => "Internal error",
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            // Only the broad class of a token problem is told; the precise reason is logged.
            ApiError::Unauthorized(TokenError::Missing) => {
                Some("An Authorization: Bearer token is required.".into())
            }
            ApiError::Unauthorized(TokenError::Expired) => Some("The token has expired.".into()),
            ApiError::Unauthorized(_) => Some("The token was rejected.".into()),
            ApiError::Forbidden(what) => Some((*what).to_owned()),
            // The same text for "does not exist" and "not yours to see".
            ApiError::NotFound(what) => Some(format!("No such {what}.")),
            ApiError::MethodNotAllowed => None,
            ApiError::Conflict(detail) => Some(detail.clone()),
            ApiError::PayloadTooLarge(limit) => {
                Some(format!("The body exceeds the limit of {limit} bytes."))
            }
            ApiError::UnsupportedMediaType => Some("Send the body as application/json.".into()),
            ApiError::MalformedJson(detail) => Some(detail.clone()),
            ApiError::Validation(_) => Some("One or more fields are invalid.".into()),
            ApiError::Identifiers(_) => Some(
                "Referrals and notes are pseudonymised: remove the identifiers listed in errors and send again.".into(),
            ),
            ApiError::InvalidTransition(detail) => Some(detail.clone()),
            ApiError::CharterNotAccepted => Some(
                "Accept the cellule's current charter (POST /v1/cellules/{cellule}/charter/accept) before reading or writing case content.".into(),
            ),
            ApiError::Integrity(_) => Some("An internal error occurred.".into()),
            ApiError::Timeout => Some("The request took too long; retry later.".into()),
            ApiError::Unavailable(_) => {
                Some("The service cannot reach its database; retry later.".into())
            }
            ApiError::Internal(_) => Some("An internal error occurred.".into()),
        }
    }

    pub fn problem(&self) -> Problem {
        Problem {
            problem_type: format!("/problems/{}", self.slug()),
            title: self.title().to_owned(),
            status: self.status().as_u16(),
            detail: self.detail(),
            errors: match self {
                ApiError::Validation(errors) => {
                    errors.iter().cloned().map(ProblemItem::Field).collect()
                }
                ApiError::Identifiers(hits) => {
                    hits.iter().cloned().map(ProblemItem::Identifier).collect()
                }
                _ => Vec::new(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Unauthorized(reason) => tracing::info!(reason = %reason, "token rejected"),
            ApiError::Internal(cause) => tracing::error!(cause = %cause, "internal error"),
            ApiError::Integrity(what) => {
                tracing::error!(target_ids = %what, "integrity failure: a ciphertext did not open")
            }
            ApiError::Unavailable(cause) => tracing::warn!(cause = %cause, "database unavailable"),
            ApiError::Timeout => tracing::warn!("request timed out"),
            _ => {}
        }
        let status = self.status();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match self {
            ApiError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            ApiError::Timeout | ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(cause) => ApiError::Unavailable(cause),
            StorageError::Conflict(what) => ApiError::Conflict(what.to_owned()),
            StorageError::NotFound(what) => ApiError::NotFound(what),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        ApiError::Unauthorized(e)
    }
}
