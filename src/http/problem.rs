//! Rendering of [`Error`] as RFC 9457 `application/problem+json`.
//!
//! 5xx answers carry no internal detail: the cause is logged (with the request id, never with
//! bodies or tokens) and the client gets a generic text.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::TokenError;
use crate::domain::FieldError;
use crate::domain::guard::Hit;
use crate::error::Error;
use crate::services::throttle::retry_after_seconds;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the problem type (listed in docs/api.md).
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

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Error::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Error::Validation(_) | Error::Identifiers(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::InvalidTransition(_) => StatusCode::CONFLICT,
            Error::CharterNotAccepted => StatusCode::FORBIDDEN,
            Error::Integrity(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Timeout | Error::Unavailable(_) | Error::UnknownOutcome(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Error::IdempotencyKeyInFlight => StatusCode::CONFLICT,
            Error::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            Error::Unauthorized(_) => "invalid-token",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not-found",
            Error::MethodNotAllowed => "method-not-allowed",
            Error::Conflict(_) => "conflict",
            Error::PayloadTooLarge(_) => "payload-too-large",
            Error::UnsupportedMediaType => "unsupported-media-type",
            Error::NotAcceptable(_) => "not-acceptable",
            Error::MalformedJson(_) => "malformed-json",
            Error::Validation(_) => "validation",
            Error::Identifiers(_) => "identifier-detected",
            Error::InvalidTransition(_) => "invalid-transition",
            Error::CharterNotAccepted => "charter-not-accepted",
            Error::Integrity(_) => "internal",
            Error::Timeout => "timeout",
            Error::TooManyRequests(_) => "rate-limited",
            Error::Unavailable(_) => "unavailable",
            Error::UnknownOutcome(_) => "outcome-unknown",
            Error::IdempotencyKeyReused => "idempotency-key-reused",
            Error::IdempotencyKeyInFlight => "idempotency-key-in-use",
            Error::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Error::Unauthorized(_) => "Missing or invalid bearer token",
            Error::Forbidden(_) => "Forbidden",
            Error::NotFound(_) => "Not found",
            Error::MethodNotAllowed => "Method not allowed",
            Error::Conflict(_) => "Conflict",
            Error::PayloadTooLarge(_) => "Request body too large",
            Error::UnsupportedMediaType => "Unsupported media type",
            Error::NotAcceptable(_) => "Not acceptable",
            Error::MalformedJson(_) => "Malformed JSON body",
            Error::Validation(_) => "Invalid request",
            Error::Identifiers(_) => "Direct identifiers in free text",
            Error::InvalidTransition(_) => "Transition not allowed",
            Error::CharterNotAccepted => "Charter not accepted",
            Error::Integrity(_) => "Internal error",
            Error::Timeout => "Request timed out",
            Error::TooManyRequests(_) => "Too many requests",
            Error::Unavailable(_) => "Service temporarily unavailable",
            Error::UnknownOutcome(_) => "Outcome unknown",
            Error::IdempotencyKeyReused => "Idempotency key reused",
            Error::IdempotencyKeyInFlight => "Idempotency key in use",
            Error::Internal(_) => "Internal error",
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            // Only the broad class of a token problem is told; the precise reason is logged.
            Error::Unauthorized(TokenError::Missing) => {
                Some("An Authorization: Bearer token is required.".into())
            }
            Error::Unauthorized(TokenError::Expired) => Some("The token has expired.".into()),
            Error::Unauthorized(_) => Some("The token was rejected.".into()),
            Error::Forbidden(what) => Some((*what).to_owned()),
            // The same text for "does not exist" and "not yours to see".
            Error::NotFound(what) => Some(format!("No such {what}.")),
            Error::MethodNotAllowed => None,
            Error::Conflict(detail) => Some(detail.clone()),
            Error::PayloadTooLarge(limit) => {
                Some(format!("The body exceeds the limit of {limit} bytes."))
            }
            Error::UnsupportedMediaType => Some("Send the body as application/json.".into()),
            Error::NotAcceptable(what) => Some((*what).to_owned()),
            Error::MalformedJson(detail) => Some(detail.clone()),
            Error::Validation(_) => Some("One or more fields are invalid.".into()),
            Error::Identifiers(_) => Some(
                "Referrals and notes are pseudonymised: remove the identifiers listed in errors and send again.".into(),
            ),
            Error::InvalidTransition(detail) => Some(detail.clone()),
            Error::CharterNotAccepted => Some(
                "Accept the cellule's current charter (POST /v1/cellules/{cellule}/charter/accept) before reading or writing case content.".into(),
            ),
            Error::Integrity(_) => Some("An internal error occurred.".into()),
            Error::Timeout => Some("The request took too long; retry later.".into()),
            Error::TooManyRequests(wait) => Some(format!(
                "Too many requests; retry in {} seconds.",
                retry_after_seconds(*wait)
            )),
            Error::Unavailable(_) => {
                Some("The service cannot reach its database; retry later.".into())
            }
            Error::UnknownOutcome(_) => Some(
                "The connection to the database was lost while the change was being committed: it may or may not have been recorded. Retrying with the same Idempotency-Key is safe and answers what was recorded; without a key, check before sending again.".into(),
            ),
            Error::IdempotencyKeyReused => Some(
                "This Idempotency-Key was already used with a different request (method, path or body); use a new key for a new request.".into(),
            ),
            Error::IdempotencyKeyInFlight => Some(
                "A request with this Idempotency-Key is still being processed; retry later with the same key.".into(),
            ),
            Error::Internal(_) => Some("An internal error occurred.".into()),
        }
    }

    pub fn problem(&self) -> Problem {
        Problem {
            problem_type: format!("/problems/{}", self.slug()),
            title: self.title().to_owned(),
            status: self.status().as_u16(),
            detail: self.detail(),
            errors: match self {
                Error::Validation(errors) => {
                    errors.iter().cloned().map(ProblemItem::Field).collect()
                }
                Error::Identifiers(hits) => {
                    hits.iter().cloned().map(ProblemItem::Identifier).collect()
                }
                _ => Vec::new(),
            },
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            Error::Unauthorized(reason) => tracing::info!(reason = %reason, "token rejected"),
            Error::Internal(cause) => tracing::error!(cause = %cause, "internal error"),
            Error::Integrity(what) => {
                tracing::error!(target_ids = %what, "integrity failure: a ciphertext did not open")
            }
            Error::Unavailable(cause) => tracing::warn!(cause = %cause, "database unavailable"),
            Error::UnknownOutcome(cause) => {
                tracing::warn!(cause = %cause, "connection lost during a commit: outcome unknown")
            }
            Error::Timeout => tracing::warn!("request timed out"),
            _ => {}
        }
        let status = self.status();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match self {
            Error::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            Error::Timeout | Error::Unavailable(_) | Error::UnknownOutcome(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Error::IdempotencyKeyInFlight => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Error::TooManyRequests(wait) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_seconds(wait)),
                );
            }
            _ => {}
        }
        response
    }
}
