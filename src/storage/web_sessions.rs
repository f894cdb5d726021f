//! The web application's sessions and sign-ins in progress. Rows are keyed by the SHA-256 of a
//! random secret that only the browser holds (the secret itself is never stored); times are
//! Unix seconds. The rules (timeouts, renewal, CSRF) are `services::web_sessions`'.
//!
//! Each query is written once for both backends.

use async_trait::async_trait;

use super::StorageError;
use super::sql::{Store, db_run};

/// A signed-in browser.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebSessionRow {
    pub id_hash: Vec<u8>,
    pub subject: String,
    pub issuer: String,
    /// The ID token of an OpenID sign-in, kept for the `id_token_hint` of the sign-out.
    pub id_token: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// Shows no secret (its tokens and PKCE verifier stay out of logs and panics).
impl std::fmt::Debug for WebSessionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSessionRow")
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .finish_non_exhaustive()
    }
}

/// A sign-in between the redirect to the issuer and its answer.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SignInRow {
    pub id_hash: Vec<u8>,
    pub issuer: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// The page to open once signed in (a path of this site).
    pub return_to: String,
    pub created_at: i64,
}

/// Shows no secret (its tokens and PKCE verifier stay out of logs and panics).
impl std::fmt::Debug for SignInRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInRow")
            .field("issuer", &self.issuer)
            .field("return_to", &self.return_to)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Storage of web sessions and sign-ins in progress.
#[async_trait]
pub trait WebSessionStore: Send + Sync + 'static {
    async fn insert_session(&self, row: &WebSessionRow) -> Result<(), StorageError>;
    async fn session(&self, id_hash: &[u8]) -> Result<Option<WebSessionRow>, StorageError>;
    async fn touch_session(&self, id_hash: &[u8], at: i64) -> Result<(), StorageError>;
    /// Removes a session and answers it (`None` when there was none).
    async fn take_session(&self, id_hash: &[u8]) -> Result<Option<WebSessionRow>, StorageError>;
    async fn insert_sign_in(&self, row: &SignInRow) -> Result<(), StorageError>;
    /// Removes a sign-in and answers it: each can be finished once.
    async fn take_sign_in(&self, id_hash: &[u8]) -> Result<Option<SignInRow>, StorageError>;
    /// Removes sessions idle since `idle_before` or opened before `created_before`, and sign-ins
    /// started before `sign_ins_before`; answers how many rows went.
    async fn purge(
        &self,
        idle_before: i64,
        created_before: i64,
        sign_ins_before: i64,
    ) -> Result<u64, StorageError>;
}

const SESSION_COLUMNS: &str = "id_hash, subject, issuer, id_token, created_at, last_seen_at";
const SIGN_IN_COLUMNS: &str = "id_hash, issuer, state, nonce, pkce_verifier, return_to, created_at";

fn err(e: sqlx::Error) -> StorageError {
    StorageError::from_sqlx(e, "a web session with this id exists")
}

#[async_trait]
impl WebSessionStore for Store {
    async fn insert_session(&self, row: &WebSessionRow) -> Result<(), StorageError> {
        let sql =
            format!("INSERT INTO web_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)");
        let q = sql.as_str();
        db_run!(self, pool => {
            sqlx::query(q)
                .bind(&row.id_hash)
                .bind(&row.subject)
                .bind(&row.issuer)
                .bind(&row.id_token)
                .bind(row.created_at)
                .bind(row.last_seen_at)
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(err)
        })
    }

    async fn session(&self, id_hash: &[u8]) -> Result<Option<WebSessionRow>, StorageError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM web_sessions WHERE id_hash = $1");
        let q = sql.as_str();
        db_run!(self, pool => {
            sqlx::query_as(q)
                .bind(id_hash)
                .fetch_optional(pool)
                .await
                .map_err(err)
        })
    }

    async fn touch_session(&self, id_hash: &[u8], at: i64) -> Result<(), StorageError> {
        db_run!(self, pool => {
            let q = "UPDATE web_sessions SET last_seen_at = $2 WHERE id_hash = $1 AND last_seen_at < $2";
                sqlx::query(q)
                    .bind(id_hash)
                    .bind(at)
                    .execute(pool)
                    .await
                    .map(|_| ())
                    .map_err(err)
        })
    }

    async fn take_session(&self, id_hash: &[u8]) -> Result<Option<WebSessionRow>, StorageError> {
        let sql =
            format!("DELETE FROM web_sessions WHERE id_hash = $1 RETURNING {SESSION_COLUMNS}");
        let q = sql.as_str();
        db_run!(self, pool => {
            sqlx::query_as(q)
                .bind(id_hash)
                .fetch_optional(pool)
                .await
                .map_err(err)
        })
    }

    async fn insert_sign_in(&self, row: &SignInRow) -> Result<(), StorageError> {
        let sql = format!(
            "INSERT INTO web_sign_ins ({SIGN_IN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        );
        let q = sql.as_str();
        db_run!(self, pool => {
            sqlx::query(q)
                .bind(&row.id_hash)
                .bind(&row.issuer)
                .bind(&row.state)
                .bind(&row.nonce)
                .bind(&row.pkce_verifier)
                .bind(&row.return_to)
                .bind(row.created_at)
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(err)
        })
    }

    async fn take_sign_in(&self, id_hash: &[u8]) -> Result<Option<SignInRow>, StorageError> {
        let sql =
            format!("DELETE FROM web_sign_ins WHERE id_hash = $1 RETURNING {SIGN_IN_COLUMNS}");
        let q = sql.as_str();
        db_run!(self, pool => {
            sqlx::query_as(q)
                .bind(id_hash)
                .fetch_optional(pool)
                .await
                .map_err(err)
        })
    }

    async fn purge(
        &self,
        idle_before: i64,
        created_before: i64,
        sign_ins_before: i64,
    ) -> Result<u64, StorageError> {
        let sessions = db_run!(self, pool => {
            let q = "DELETE FROM web_sessions WHERE last_seen_at < $1 OR created_at < $2";
                sqlx::query(q)
                    .bind(idle_before)
                    .bind(created_before)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(err)
        })?;
        let sign_ins = db_run!(self, pool => {
            let q = "DELETE FROM web_sign_ins WHERE created_at < $1";
                sqlx::query(q)
                    .bind(sign_ins_before)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(err)
        })?;
        Ok(sessions + sign_ins)
    }
}
