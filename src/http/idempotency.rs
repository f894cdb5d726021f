//! The `Idempotency-Key` header of the POSTs that create something (docs/api.md
//! "Idempotency"): read here, claimed and answered by [`crate::services::idempotency`].
//!
//! A handler parses its body, then runs its use case through [`run`]: without a key, as before;
//! with one, the key is claimed first, a stored answer is [`replay`]ed with
//! `Idempotent-Replayed: true`, and a failed attempt gives the key back.

use std::future::Future;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::error::Error;
use crate::services::access::CelluleMember;
use crate::services::idempotency::{self, Begun, IdempotencyKey, Lease, Replay};
use crate::storage::idempotency::ERASED;

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The header of a replayed answer.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The request's `Idempotency-Key` (checked only once the caller entered the cellule, so that a
/// refusal comes first), with the method and path its fingerprint covers.
#[derive(Debug)]
pub struct KeyHeader {
    key: Result<Option<IdempotencyKey>, Error>,
    method: String,
    path: String,
}

impl FromRequestParts<AppState> for KeyHeader {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Error> {
        let mut values = parts.headers.get_all(IDEMPOTENCY_KEY).iter();
        let key = match (values.next(), values.next()) {
            (None, _) => Ok(None),
            // A value that is not visible ASCII is refused as an empty one.
            (Some(v), None) => IdempotencyKey::parse(v.to_str().unwrap_or("")).map(Some),
            (Some(_), Some(_)) => Err(Error::invalid(
                "/headers/Idempotency-Key",
                "give one Idempotency-Key header",
            )),
        };
        Ok(KeyHeader {
            key,
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
        })
    }
}

/// What [`run`] did.
#[derive(Debug)]
pub enum Ran<T> {
    /// The use case ran: its answer.
    Fresh(T),
    /// The key was answered before: the stored answer.
    Replayed(Replay),
}

/// Runs `work` under the request's idempotency key, if any: `work` gets the lease to hand to the
/// storage write, `status` is what the handler answers on success.
pub async fn run<T, F, Fut>(
    state: &AppState,
    member: &CelluleMember,
    header: KeyHeader,
    body: &[u8],
    status: StatusCode,
    work: F,
) -> Result<Ran<T>, Error>
where
    F: FnOnce(Option<Lease>) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let Some(key) = header.key? else {
        return work(None).await.map(Ran::Fresh);
    };
    let fingerprint = idempotency::fingerprint(&header.method, &header.path, body);
    match idempotency::begin(state, member, &key, fingerprint, status.as_u16()).await? {
        Begun::Replay(stored) => Ok(Ran::Replayed(stored)),
        Begun::Fresh(lease) => match work(Some(lease.clone())).await {
            Ok(done) => Ok(Ran::Fresh(done)),
            Err(e) => {
                lease.release(state).await;
                Err(e)
            }
        },
    }
}

/// A stored answer sent again: its status and body, `Idempotent-Replayed: true`, and `headers`.
/// The answer about a case erased since is the case's 404 problem.
pub fn replay(stored: Replay, mut headers: HeaderMap) -> Response {
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    if stored.status == ERASED {
        let mut response = Error::NotFound("case").into_response();
        response.headers_mut().extend(headers);
        return response;
    }
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    (status, headers, Json(stored.body)).into_response()
}

/// Whether a stored answer is about a case erased since.
pub fn erased(stored: &Replay) -> bool {
    stored.status == ERASED
}

/// The `Location` of a case, when it makes a valid header.
pub fn case_location(cellule: &str, id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/cellules/{cellule}/cases/{id}")) {
        headers.insert(header::LOCATION, location);
    }
    headers
}
