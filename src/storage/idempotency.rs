//! Idempotency keys (`Idempotency-Key`, docs/api.md): the table `idempotency_keys`, one row per
//! subject, cellule and key. The rules (who may use a key, what a replay answers) are
//! `services::idempotency`'.
//!
//! A key is **claimed** in its own statement ([`IdempotencyStore::claim_idempotency`]) by an
//! attempt that becomes its owner until `lease_until`. The attempt's answer is written by
//! [`Tx::complete_idempotency`] in the **same transaction** as the record it creates, and only
//! while the attempt still owns the key: a committed answer means a committed record, and a key
//! without an answer means nothing was created. A retry after a commit whose outcome is unknown
//! therefore either finds the answer (and replays it) or finds none (and creates the record),
//! never both. An attempt that failed gives its key back ([`IdempotencyStore::release_idempotency`]);
//! one that could not (the database went away) leaves a lease that expires.
//!
//! Each query is written once for both backends.

use async_trait::async_trait;

use super::StorageError;
use super::sql::{Store, Tx, db_run, tx_run};

/// The status stored for the answers about an erased case.
pub const ERASED: u16 = 404;

/// Which key: the subject and cellule that used it, and the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyScope {
    pub subject: String,
    pub cellule: String,
    pub key: String,
}

/// A claim on a key by one attempt.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub scope: IdempotencyScope,
    /// SHA-256 (hex) of the request's method, path and body.
    pub fingerprint: String,
    /// A random token of the attempt.
    pub owner: String,
    /// Unix microseconds.
    pub now_us: i64,
    /// Until when the attempt holds the key (Unix microseconds).
    pub lease_until_us: i64,
    /// A row created before this (Unix microseconds) has expired and is claimed anew.
    pub expired_before_us: i64,
}

/// The answer of an attempt, written with the record it created.
#[derive(Debug, Clone)]
pub struct IdempotencyAnswer {
    pub scope: IdempotencyScope,
    pub owner: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The JSON body answered (ids, references, statuses; never free text).
    pub response: serde_json::Value,
    /// The case the answer is about: its erasure removes the answer.
    pub case_id: Option<String>,
}

impl IdempotencyAnswer {
    /// The answer to a new case, whose reference only the transaction creating it knows.
    pub(crate) fn with_reference(&self, reference: &str) -> Self {
        let mut answer = self.clone();
        if let Some(body) = answer.response.as_object_mut() {
            body.insert("reference".into(), reference.into());
        }
        answer
    }
}

/// A key already in use.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IdempotencyRow {
    pub fingerprint: String,
    /// The attempt in flight; `None` once answered.
    pub owner: Option<String>,
    pub lease_until: i64,
    /// The answer, once there is one.
    pub status: Option<i64>,
    pub response: Option<String>,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The attempt owns the key: it may create the record.
    Owned,
    /// The key was in use: its row as found.
    Taken(IdempotencyRow),
}

/// Storage of idempotency keys.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims a key for an attempt: a new key, an expired one, or one whose previous attempt
    /// (same request) left without an answer and whose lease ran out. Otherwise answers the row
    /// found.
    async fn claim_idempotency(&self, claim: &IdempotencyClaim) -> Result<Claimed, StorageError>;
    /// Gives back a key the attempt `owner` holds and did not answer (it failed).
    async fn release_idempotency(
        &self,
        scope: &IdempotencyScope,
        owner: &str,
    ) -> Result<(), StorageError>;
    /// Removes keys created before `before_us` (Unix microseconds); answers how many went.
    async fn purge_idempotency(&self, before_us: i64) -> Result<u64, StorageError>;
}

#[async_trait]
impl IdempotencyStore for Store {
    async fn claim_idempotency(&self, c: &IdempotencyClaim) -> Result<Claimed, StorageError> {
        let s = &c.scope;
        // A conflicting row is taken over only when it expired, or when its attempt (of the
        // same request) left without an answer and its lease ran out. On PostgreSQL the upsert
        // waits for a transaction writing the row's answer, then sees that answer.
        let claimed = db_run!(self, p => {
            sqlx::query(
                "INSERT INTO idempotency_keys \
                   (subject, cellule, idem_key, fingerprint, owner, lease_until, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (subject, cellule, idem_key) DO UPDATE SET \
                   fingerprint = excluded.fingerprint, owner = excluded.owner, \
                   lease_until = excluded.lease_until, created_at = excluded.created_at, \
                   status = NULL, response = NULL, case_id = NULL \
                 WHERE idempotency_keys.created_at < $8 \
                    OR (idempotency_keys.status IS NULL \
                        AND idempotency_keys.lease_until < $7 \
                        AND idempotency_keys.fingerprint = excluded.fingerprint)",
            )
            .bind(&s.subject)
            .bind(&s.cellule)
            .bind(&s.key)
            .bind(&c.fingerprint)
            .bind(&c.owner)
            .bind(c.lease_until_us)
            .bind(c.now_us)
            .bind(c.expired_before_us)
            .execute(p)
            .await?
            .rows_affected()
        });
        if claimed == 1 {
            return Ok(Claimed::Owned);
        }
        let row: Option<IdempotencyRow> = db_run!(self, p => {
            sqlx::query_as(
                "SELECT fingerprint, owner, lease_until, status, response \
                 FROM idempotency_keys WHERE subject = $1 AND cellule = $2 AND idem_key = $3",
            )
            .bind(&s.subject)
            .bind(&s.cellule)
            .bind(&s.key)
            .fetch_optional(p)
            .await?
        });
        // Gone between the two statements (purged): the caller is told to retry.
        row.map(Claimed::Taken).ok_or(StorageError::Conflict(
            "the idempotency key changed meanwhile; retry",
        ))
    }

    async fn release_idempotency(
        &self,
        s: &IdempotencyScope,
        owner: &str,
    ) -> Result<(), StorageError> {
        db_run!(self, p => {
            sqlx::query(
                "DELETE FROM idempotency_keys \
                 WHERE subject = $1 AND cellule = $2 AND idem_key = $3 AND owner = $4 \
                   AND status IS NULL",
            )
            .bind(&s.subject)
            .bind(&s.cellule)
            .bind(&s.key)
            .bind(owner)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    async fn purge_idempotency(&self, before_us: i64) -> Result<u64, StorageError> {
        Ok(db_run!(self, p => {
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                .bind(before_us)
                .execute(p)
                .await?
                .rows_affected()
        }))
    }
}

impl Tx {
    /// Writes an attempt's answer in the transaction creating its record; refused (and the
    /// transaction with it) when the attempt no longer owns the key.
    pub(crate) async fn complete_idempotency(
        &mut self,
        a: &IdempotencyAnswer,
    ) -> Result<(), StorageError> {
        let response = a.response.to_string();
        let done = tx_run!(self, c => {
            sqlx::query(
                "UPDATE idempotency_keys SET owner = NULL, status = $5, response = $6, \
                   case_id = $7 \
                 WHERE subject = $1 AND cellule = $2 AND idem_key = $3 AND owner = $4 \
                   AND status IS NULL",
            )
            .bind(&a.scope.subject)
            .bind(&a.scope.cellule)
            .bind(&a.scope.key)
            .bind(&a.owner)
            .bind(i64::from(a.status))
            .bind(&response)
            .bind(&a.case_id)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        if done == 1 {
            Ok(())
        } else {
            Err(StorageError::Conflict(
                "another attempt with this idempotency key took it over; retry with the key",
            ))
        }
    }

    /// Turns the answers about an erased case into "not found" (status 404, no body): a retry
    /// with their keys neither gets the case's data back nor creates the record again.
    pub(crate) async fn forget_idempotency_of_case(
        &mut self,
        case_id: &str,
    ) -> Result<(), StorageError> {
        tx_run!(self, c => {
            sqlx::query(
                "UPDATE idempotency_keys SET status = $2, response = 'null', case_id = NULL \
                 WHERE case_id = $1",
            )
            .bind(case_id)
            .bind(i64::from(ERASED))
            .execute(&mut *c)
            .await?;
        });
        Ok(())
    }
}
