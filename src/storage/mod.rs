//! Storage: one interface per aggregate, one implementation for both backends.
//!
//! - [`CelluleStore`]: cellules, memberships, charters, retention settings (`cellules`).
//! - [`CaseStore`]: cases, notes, events, erasure, the linkage lookups and the group commit of
//!   new cases (`cases`, `batch`).
//! - [`ReviewStore`]: schedule, routing directory, sessions, agendas, decisions, statistics
//!   (`review`, `agenda`).
//! - [`MeetingStore`]: a session's meeting steps, attendance, decision versions and what falls
//!   due (`meeting`).
//! - [`AuditStore`]: audit entries, chain heads, search, verification links, checkpoints,
//!   purge (`audit`).
//! - [`KeyStore`]: KEK check values and wrapped keys (`keys`).
//! - [`OutboxStore`]: the messages to send, claimed and marked by the outbox worker (`outbox`).
//!
//! [`Database`] is all of them with the connection's own operations; the service holds an
//! `Arc<dyn Database>`, and callers bring the traits into scope with
//! `use crate::storage::prelude::*`.
//!
//! [`Store`] implements them on SQLite (the embedded default: one file, WAL journal,
//! migrations in `migrations/sqlite`) or PostgreSQL (several stateless API replicas on one
//! database, migrations in `migrations/postgres`), each through sqlx's pool. Queries are written
//! once for both where they accept the same SQL (`sql`); all are bound with parameters and no SQL
//! is assembled from input. Both backends run the same integration suite (`tests/api`).

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{Backend, DatabaseUrl, PoolConfig};

mod agenda;
mod agenda_amend;
mod audit;
pub mod backup;
mod batch;
mod cases;
mod cellules;
mod error;
pub mod idempotency;
mod keys;
mod meeting;
pub mod notices;
pub mod outbox;
pub mod records;
mod review;
mod rows;
mod sql;
mod types;
pub mod web_sessions;

pub use audit::AuditStore;
pub use batch::{CaseWrite, Committed};
pub use cases::CaseStore;
pub use cellules::{CelluleStore, EntryFor, MembershipChange};
pub use error::StorageError;
pub(crate) use error::not_found_on_fk;
pub use keys::KeyStore;
pub use meeting::MeetingStore;
pub use outbox::OutboxStore;
pub use records::*;
pub use review::ReviewStore;
pub use sql::Store;

/// The storage traits, for callers of [`Database`]'s methods.
pub mod prelude {
    pub use super::idempotency::IdempotencyStore;
    pub use super::notices::NoticeStore;
    pub use super::web_sessions::WebSessionStore;
    pub use super::{
        AuditStore, CaseStore, CelluleStore, Database, KeyStore, MeetingStore, OutboxStore,
        ReviewStore,
    };
}

/// The storage of the service: every aggregate's store, and the connection itself.
#[async_trait]
pub trait Database:
    CelluleStore
    + CaseStore
    + ReviewStore
    + MeetingStore
    + notices::NoticeStore
    + AuditStore
    + KeyStore
    + OutboxStore
    + web_sessions::WebSessionStore
    + idempotency::IdempotencyStore
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> Backend;

    /// A round trip to the database (`/readyz`).
    async fn ping(&self) -> Result<(), StorageError>;

    /// Whether a write commits now (`/readyz`): a row needing fresh pages written and deleted
    /// in one committed transaction. Its outcome is kept for a second, so that readiness
    /// checks do not add a write each.
    async fn probe_write(&self) -> Result<(), StorageError>;

    /// Applies this backend's pending migrations.
    async fn migrate(&self) -> Result<(), StorageError>;

    /// Closes the pool (graceful shutdown).
    async fn close(&self);

    /// SQLite: a consistent copy into `dest`, taken while serving ([`backup`]).
    async fn backup_into(&self, dest: &std::path::Path) -> Result<(), StorageError>;

    /// SQLite: `PRAGMA integrity_check` (`["ok"]` when sound).
    async fn integrity_check(&self) -> Result<Vec<String>, StorageError>;

    /// Gives the store the key that authenticates new audit entries (the keyring in force);
    /// until then every append is refused.
    fn authenticate_audit(&self, source: Arc<dyn crate::crypto::AuditMacSource>);
}

#[async_trait]
impl Database for Store {
    fn backend(&self) -> Backend {
        self.backend_of()
    }

    async fn ping(&self) -> Result<(), StorageError> {
        sql::db_run!(self, c => {
            sqlx::query("SELECT 1").execute(c).await?;
        });
        Ok(())
    }

    async fn probe_write(&self) -> Result<(), StorageError> {
        self.probe_write_cached().await
    }

    async fn migrate(&self) -> Result<(), StorageError> {
        self.run_migrations().await
    }

    async fn close(&self) {
        self.close_pool().await;
    }

    async fn backup_into(&self, dest: &std::path::Path) -> Result<(), StorageError> {
        Store::backup_into(self, dest).await
    }

    async fn integrity_check(&self) -> Result<Vec<String>, StorageError> {
        Store::integrity_check(self).await
    }

    fn authenticate_audit(&self, source: Arc<dyn crate::crypto::AuditMacSource>) {
        self.set_audit_mac(source);
    }
}

/// Opens the backend the URL names, waiting at most `pool.connect_timeout` for it, and applies
/// migrations when `migrate` is set.
pub async fn connect(
    url: &DatabaseUrl,
    pool: &PoolConfig,
    migrate: bool,
) -> Result<Arc<dyn Database>, StorageError> {
    let db = Store::connect(url, pool).await?;
    if migrate {
        db.migrate().await?;
    }
    Ok(Arc::new(db))
}
