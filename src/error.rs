//! The one error type of the services. Adapters render it: the API as RFC 9457
//! `application/problem+json` ([`crate::http::problem`]), the CLI as one line.
//!
//! Messages never carry a value the caller sent, a body, a token or case content.

use crate::auth::TokenError;
use crate::domain::guard::Hit;
use crate::storage::StorageError;

pub use crate::domain::FieldError;

/// Everything a service (or an adapter's extractor) can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    /// None of the representations a resource has is acceptable (406).
    #[error("not acceptable: {0}")]
    NotAcceptable(&'static str),
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
    /// Past a rate limit; retry after the duration.
    #[error("too many requests")]
    TooManyRequests(std::time::Duration),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The database connection was lost during a commit: the change may or may not have been
    /// recorded (503; retrying with the same `Idempotency-Key` is safe).
    #[error("commit outcome unknown: {0}")]
    UnknownOutcome(String),
    /// An `Idempotency-Key` already used with another request (422).
    #[error("idempotency key reused with another request")]
    IdempotencyKeyReused,
    /// An `Idempotency-Key` whose first request is still being processed (409).
    #[error("idempotency key in use")]
    IdempotencyKeyInFlight,
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError::new(pointer, detail)])
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(cause) => Error::Unavailable(cause),
            StorageError::UnknownOutcome(cause) => Error::UnknownOutcome(cause),
            StorageError::Conflict(what) => Error::Conflict(what.to_owned()),
            StorageError::NotFound(what) => Error::NotFound(what),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<TokenError> for Error {
    fn from(e: TokenError) -> Self {
        Error::Unauthorized(e)
    }
}
