//! Extractors: the authenticated caller, and body, path and query extractors that fail with
//! the API's problem documents. They authenticate only: membership and access are the
//! services' questions ([`crate::services::access`]).

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Path, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::middleware::RequestId;
use crate::auth::TokenError;
use crate::error::{Error, FieldError};
use crate::services::access::Caller;

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    /// A valid bearer token (verified once per request), with the request's id and route.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let header = match parts.headers.get(AUTHORIZATION) {
            Some(value) => Some(value.to_str().map_err(|_| TokenError::Malformed)?),
            None => None,
        };
        let token = crate::auth::bearer(header)?;
        let verified = state.verifier.verify(token).await?;
        let caller = Caller {
            subject: verified.subject,
            issuer: verified.issuer,
            request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
            route: parts
                .extensions
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_owned()),
        };
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// A JSON body, read by the extractor and parsed by the handler ([`ApiJson::parse`]) once the
/// caller has entered the cellule, so that a refusal (not a member) comes before any error of
/// the body. `application/json` only, within the body limit, unknown fields refused (by the
/// target type's `deny_unknown_fields`), every error pointing at the offending member. A body
/// that does not arrive within half the request timeout is given up (then answered 503
/// `timeout`), so that a refusal is still answered and recorded before the request itself
/// times out.
pub struct ApiJson<T> {
    bytes: Result<Bytes, Error>,
    target: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ApiJson<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiJson").finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> ApiJson<T> {
    /// The body as `T`, or the problem with it.
    pub fn parse(self) -> Result<T, Error> {
        parse_json(&self.bytes?)
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        let reading = read_json(req, state);
        let bytes = match tokio::time::timeout(state.config.http.request_timeout / 2, reading).await
        {
            Ok(read) => read,
            Err(_) => Err(Error::Timeout),
        };
        Ok(ApiJson {
            bytes,
            target: PhantomData,
        })
    }
}

/// The bytes of a JSON body, or why they are refused.
async fn read_json(req: Request, state: &AppState) -> Result<Bytes, Error> {
    let is_json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json")
        });
    if !is_json {
        return Err(Error::UnsupportedMediaType);
    }
    let limit = state.config.http.body_limit_bytes;
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge(limit)
        } else {
            Error::MalformedJson("The body could not be read.".into())
        }
    })
}

/// Parses JSON, telling syntax errors (400) from shape errors (422 with a JSON pointer).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            Error::MalformedJson(format!(
                "Invalid JSON at line {} column {}.",
                inner.line(),
                inner.column()
            ))
        } else {
            Error::Validation(vec![FieldError::new(
                pointer(e.path()),
                clean_message(inner),
            )])
        }
    })?;
    de.end()
        .map_err(|_| Error::MalformedJson("Trailing characters after the JSON value.".into()))?;
    Ok(value)
}

/// Converts serde's path into an RFC 6901 JSON pointer.
fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        out.push('/');
        match segment {
            Segment::Seq { index } => out.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out.push_str(&key.replace('~', "~0").replace('/', "~1"))
            }
            Segment::Unknown => out.push('?'),
        }
    }
    out
}

/// serde's message without the "at line … column …" suffix.
fn clean_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Path parameters; anything that does not parse is reported as not found.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T> FromRequestParts<AppState> for ApiPath<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|_| Error::NotFound("resource"))
    }
}

/// Query parameters, parsed by the extractor and told by the handler ([`ApiQuery::parse`])
/// once the caller has entered the cellule; unknown or invalid ones answer 422.
#[derive(Debug)]
pub struct ApiQuery<T>(Result<T, Error>);

impl<T> ApiQuery<T> {
    /// The parameters, or the problem with them.
    pub fn parse(self) -> Result<T, Error> {
        self.0
    }
}

impl<T> FromRequestParts<AppState> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        Ok(ApiQuery(
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map(|axum::extract::Query(v)| v)
                .map_err(|rejection| {
                    let text = rejection.body_text();
                    let detail = text
                        .strip_prefix("Failed to deserialize query string: ")
                        .unwrap_or(&text);
                    Error::Validation(vec![FieldError::new("/query", detail.to_owned())])
                }),
        ))
    }
}
