//! Extractors: the authenticated caller, and body, path and query extractors that fail with
//! the API's problem documents. They authenticate only: membership and access are the
//! services' questions ([`crate::services::access`]).

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Path, Request};
use axum::http::header::{ACCEPT_LANGUAGE, AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};
use serde::de::DeserializeOwned;

use super::AppState;
use super::middleware::RequestId;
use crate::auth::TokenError;
use crate::domain::guard::Lang;
use crate::error::{Error, FieldError};
use crate::services::access::Caller;

/// A token refused by the edge ([`super::limits`]): the extractor answers it without verifying
/// the token again.
#[derive(Debug, Clone)]
pub struct TokenRejected(pub TokenError);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    /// A valid bearer token (verified once per request), with the request's id and route.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let caller = authenticate(&parts.headers, &parts.extensions, state).await?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// The caller of a request: the one already verified, or the bearer token verified now.
pub async fn authenticate(
    headers: &HeaderMap,
    extensions: &Extensions,
    state: &AppState,
) -> Result<Caller, Error> {
    if let Some(caller) = extensions.get::<Caller>() {
        return Ok(caller.clone());
    }
    if let Some(TokenRejected(reason)) = extensions.get::<TokenRejected>() {
        return Err(Error::Unauthorized(reason.clone()));
    }
    let header = match headers.get(AUTHORIZATION) {
        Some(value) => Some(value.to_str().map_err(|_| TokenError::Malformed)?),
        None => None,
    };
    let token = crate::auth::bearer(header)?;
    let verified = state.verifier.verify(token).await?;
    Ok(Caller {
        subject: verified.subject,
        issuer: verified.issuer,
        request_id: extensions.get::<RequestId>().map(|r| r.0.clone()),
        route: extensions
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned()),
        lang: headers
            .get(ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map(Lang::from_accept_language)
            .unwrap_or_default(),
    })
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

    /// The body as `T` and its bytes (for an idempotency key's fingerprint).
    pub fn parse_with_bytes(self) -> Result<(T, Bytes), Error> {
        let bytes = self.bytes?;
        Ok((parse_json(&bytes)?, bytes))
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
    let value = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => Ok(value),
        Err(e) => {
            // JSON has one number type: `3.0` is the integer 3 (RFC 8259 §6, JSON Schema's
            // `integer`), but serde reads it as a float only. A shape error is retried once
            // with every integral float written as an integer; `from_slice` has then read the
            // whole body, trailing characters included.
            if e.inner().is_data()
                && let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(bytes)
                && integral_floats_as_integers(&mut body)
                && let Ok(value) = serde_json::from_value::<T>(body)
            {
                return Ok(value);
            }
            Err(e)
        }
    };
    let value = value.map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            Error::MalformedJson(format!(
                "Invalid JSON at line {} column {}.",
                inner.line(),
                inner.column()
            ))
        } else {
            let message = clean_message(inner);
            let mut pointer = pointer(e.path());
            if message.starts_with("unknown field") {
                // The path ends with the unknown member's name, which the caller chose. A name
                // shaped like a field name (`colour`, `owner_id`) is pointed at; any other text
                // (an address typed as a key…) is not repeated: the pointer names the object
                // that holds it.
                let at = pointer.rfind('/').unwrap_or(0);
                let name = &pointer[at + 1..];
                let field_like = (1..=64).contains(&name.len())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !field_like {
                    pointer.truncate(at);
                }
            }
            let sent = serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .and_then(|body| body.pointer(&pointer).cloned());
            let detail = safe_detail(&message, sent.as_ref());
            Error::Validation(vec![FieldError::new(pointer, detail)])
        }
    })?;
    de.end()
        .map_err(|_| Error::MalformedJson("Trailing characters after the JSON value.".into()))?;
    Ok(value)
}

/// Rewrites every float of `value` with no fractional part that fits an `i64` as an integer;
/// true when one was rewritten.
fn integral_floats_as_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let Some(f) = n.as_f64() else { return false };
            // The bounds are exactly representable; `f < 2^63` keeps the cast exact.
            if f.fract() == 0.0
                && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)
            {
                *value = Value::from(f as i64);
                true
            } else {
                false
            }
        }
        Value::Array(items) => {
            let mut changed = false;
            for v in items {
                changed |= integral_floats_as_integers(v);
            }
            changed
        }
        Value::Object(map) => {
            let mut changed = false;
            for v in map.values_mut() {
                changed |= integral_floats_as_integers(v);
            }
            changed
        }
        _ => false,
    }
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

/// A deserialisation message that repeats nothing the caller sent. serde's own messages name
/// the rejected value (``unknown variant `jean.dupont@…` ``, `invalid type: string "…"`,
/// ``unknown field `…` ``): they are told by their kind and what was expected, which comes
/// from the target type. Other messages (the domain's, which never echo their input, or a
/// library's) are kept only when they contain no quoted text and not the value sent at that
/// place (`sent`); otherwise a generic text replaces them.
pub fn safe_detail(message: &str, sent: Option<&serde_json::Value>) -> String {
    // What was expected follows the value in serde's messages: the last ", expected " is ours.
    let expected = message
        .rfind(", expected ")
        .map(|at| &message[at + 2..])
        .filter(|e| !e.is_empty());
    let with_expected = |kind: &str| match expected {
        Some(expected) => format!("{kind}: {expected}"),
        None => kind.to_owned(),
    };
    for (prefix, kind) in [
        ("unknown variant", "unknown value"),
        ("unknown field", "unknown field"),
        ("invalid type", "invalid type"),
        ("invalid value", "invalid value"),
        ("invalid length", "invalid length"),
    ] {
        if message.starts_with(prefix) {
            return with_expected(kind);
        }
    }
    // `missing field `x`` and `duplicate field `x`` name a field of the target type.
    if message.starts_with("missing field `") || message.starts_with("duplicate field `") {
        return message.to_owned();
    }
    let quoted = message.contains(['`', '"', '\'']);
    let repeats = match sent {
        Some(serde_json::Value::String(s)) => {
            let s = s.trim();
            !s.is_empty() && message.contains(s)
        }
        Some(serde_json::Value::Number(n)) => message.contains(&n.to_string()),
        _ => false,
    };
    if quoted || repeats {
        "invalid value".to_owned()
    } else {
        message.to_owned()
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

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Error> {
        Ok(ApiQuery(parse_query(parts.uri.query().unwrap_or_default())))
    }
}

/// Parses a query string; an error names the parameter and what was expected, never the value.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, Error> {
    let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let message = e.inner().to_string();
        let name = if message.starts_with("unknown field") {
            String::new()
        } else {
            e.path().to_string()
        };
        let sent = url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| *key == name)
            .map(|(_, value)| serde_json::Value::String(value.into_owned()));
        let detail = safe_detail(&message, sent.as_ref());
        let pointer = if name.is_empty() || name == "." || name.contains('?') {
            "/query".to_owned()
        } else {
            format!("/query/{}", name.replace('~', "~0").replace('/', "~1"))
        };
        Error::Validation(vec![FieldError::new(pointer, detail)])
    })
}
