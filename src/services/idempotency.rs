//! Idempotency keys of the POSTs that create something (draft-ietf-httpapi-idempotency-key-header;
//! docs/api.md "Idempotency"): the same key with the same request from the same subject in the
//! same cellule answers what the first answered, without doing it again.
//!
//! An attempt [`begin`]s by claiming the key (storage: `idempotency_keys`), does its work with
//! the [`Lease`] it got, and the use case hands [`Lease::answer`] to the storage write that
//! creates the record: the answer is committed **with** the record, in its transaction. So after
//! a commit whose outcome is unknown, a retry finds either the answer (the record exists: it is
//! replayed) or no answer (the record does not: it is created), never a second record. A failed
//! attempt gives the key back ([`Lease::release`]); an attempt that vanished (a timeout, the
//! process killed) holds it until its lease runs out, and meanwhile the key answers 409.
//!
//! What is kept: the key, the SHA-256 of the method, path and body (never the body), the status
//! and JSON body answered (ids, references, statuses, dates: never free text; a note's text is
//! read again on a replay), for 24 hours ([`purge`]).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AppState;
use super::access::CelluleMember;
use crate::error::Error;
use crate::storage::idempotency::{Claimed, IdempotencyAnswer, IdempotencyClaim, IdempotencyScope};

/// How long a key is kept (the draft's "expiry"); the periodic task purges older ones.
pub const KEPT: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The longest key accepted, in characters.
pub const MAX_KEY_LEN: usize = 255;

/// A valid `Idempotency-Key`: 1 to 255 printable ASCII characters (no space), given bare or as
/// the draft's structured-field string (in double quotes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses the header's value.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let key = raw
            .strip_prefix('"')
            .and_then(|k| k.strip_suffix('"'))
            .unwrap_or(raw);
        let printable = key
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if key.is_empty() || key.len() > MAX_KEY_LEN || !printable {
            return Err(Error::invalid(
                "/headers/Idempotency-Key",
                format!(
                    "an idempotency key is 1 to {MAX_KEY_LEN} printable ASCII characters, without spaces, quotes or backslashes"
                ),
            ));
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The SHA-256 (hex) of a request's method, path and body: what makes two requests "the same".
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    // Length-prefixed: no method, path and body can pass for another split of the same bytes.
    for part in [method.as_bytes(), path.as_bytes()] {
        ctx.update(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
        ctx.update(part);
    }
    ctx.update(body);
    hex::encode(ctx.finish().as_ref())
}

/// An attempt's hold on its key.
#[derive(Debug, Clone)]
pub struct Lease {
    scope: IdempotencyScope,
    owner: String,
    /// The status the adapter answers on success.
    status: u16,
}

/// What [`begin`] found.
#[derive(Debug)]
pub enum Begun {
    /// The key is this attempt's: do the work, with the lease.
    Fresh(Lease),
    /// The key was answered: answer this again.
    Replay(Replay),
}

/// A stored answer.
#[derive(Debug, Clone)]
pub struct Replay {
    pub status: u16,
    pub body: serde_json::Value,
}

/// Claims `key` for an attempt of the request `fingerprint` by `who`, which answers `status`
/// when it succeeds. Errors: 422 when the key was used with another request, 409 while the
/// first attempt is in flight.
pub async fn begin(
    state: &AppState,
    who: &CelluleMember,
    key: &IdempotencyKey,
    fingerprint: String,
    status: u16,
) -> Result<Begun, Error> {
    let now = state.clock.now();
    let scope = IdempotencyScope {
        subject: who.membership.subject.as_str().to_owned(),
        cellule: who.slug().to_owned(),
        key: key.as_str().to_owned(),
    };
    let owner = uuid::Uuid::new_v4().to_string();
    let claim = IdempotencyClaim {
        scope: scope.clone(),
        fingerprint: fingerprint.clone(),
        owner: owner.clone(),
        now_us: micros(now),
        lease_until_us: micros(now + lease(state)),
        expired_before_us: micros(now - KEPT),
    };
    match state.db.claim_idempotency(&claim).await? {
        Claimed::Owned => Ok(Begun::Fresh(Lease {
            scope,
            owner,
            status,
        })),
        Claimed::Taken(row) if row.fingerprint != fingerprint => Err(Error::IdempotencyKeyReused),
        Claimed::Taken(row) => match (row.status, row.response) {
            (Some(status), Some(body)) => Ok(Begun::Replay(Replay {
                status: u16::try_from(status)
                    .map_err(|_| Error::Internal("a stored answer's status".into()))?,
                body: serde_json::from_str(&body)
                    .map_err(|e| Error::Internal(format!("a stored answer: {e}")))?,
            })),
            _ => Err(Error::IdempotencyKeyInFlight),
        },
    }
}

/// How long an attempt holds its key: past the request timeout, after which its request has
/// been answered (503 `timeout`) and its work abandoned, with a margin for a commit under way.
fn lease(state: &AppState) -> chrono::TimeDelta {
    let timeout = chrono::TimeDelta::from_std(state.config.http.request_timeout)
        .unwrap_or(chrono::TimeDelta::seconds(30));
    (timeout * 2).max(chrono::TimeDelta::seconds(30))
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

impl Lease {
    /// The answer `view` of this attempt, to be written with the record it creates; `omit`
    /// names top-level members not kept (free text, read again on a replay); `case_id` is the
    /// case the answer is about (its erasure removes it).
    pub fn answer<T: Serialize>(
        &self,
        view: &T,
        omit: &[&str],
        case_id: Option<&str>,
    ) -> Result<IdempotencyAnswer, Error> {
        let mut response =
            serde_json::to_value(view).map_err(|e| Error::Internal(e.to_string()))?;
        if let Some(members) = response.as_object_mut() {
            for name in omit {
                members.remove(*name);
            }
        }
        Ok(IdempotencyAnswer {
            scope: self.scope.clone(),
            owner: self.owner.clone(),
            status: self.status,
            response,
            case_id: case_id.map(str::to_owned),
        })
    }

    /// Gives the key back after a failed attempt (nothing is removed if the attempt's answer
    /// was committed after all). A failure here leaves the lease to run out.
    pub async fn release(self, state: &AppState) {
        if let Err(e) = state.db.release_idempotency(&self.scope, &self.owner).await {
            tracing::warn!(error = %e, "idempotency key not released; it is held until its lease runs out");
        }
    }
}

/// Removes keys older than [`KEPT`] (periodic task).
pub async fn purge(state: &AppState) -> Result<u64, Error> {
    let before = micros(state.clock.now() - KEPT);
    Ok(state.db.purge_idempotency(before).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_printable_strings() {
        for ok in [
            "a",
            "8e03978e-40d5-43e8-bc93-6894a57f9324",
            "\"quoted\"",
            "k:1/2",
        ] {
            assert!(IdempotencyKey::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            IdempotencyKey::parse("\"abc\"")
                .map(|k| k.as_str().to_owned())
                .ok(),
            Some("abc".to_owned())
        );
        let long = "k".repeat(MAX_KEY_LEN + 1);
        for bad in [
            "",
            "\"\"",
            "a b",
            "é",
            "tab\there",
            "back\\slash",
            long.as_str(),
        ] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_KEY_LEN)).is_ok());
    }

    #[test]
    fn the_fingerprint_covers_method_path_and_body() {
        let base = fingerprint("POST", "/v1/a", b"{}");
        assert_eq!(base, fingerprint("POST", "/v1/a", b"{}"));
        assert_eq!(base.len(), 64);
        assert_ne!(base, fingerprint("PUT", "/v1/a", b"{}"));
        assert_ne!(base, fingerprint("POST", "/v1/b", b"{}"));
        assert_ne!(base, fingerprint("POST", "/v1/a", b"{ }"));
        // The lengths keep a path's end from passing for the body's start.
        assert_ne!(
            fingerprint("POST", "/v1/a\n{", b"}"),
            fingerprint("POST", "/v1/a", b"{\n}")
        );
    }
}
