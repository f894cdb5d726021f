//! SQLite backend: the embedded default. One file under the data directory, WAL journal,
//! foreign keys on, created with 0600 permissions.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{CelluleRow, Database, MembershipRow, MembershipWithCelluleRow, StorageError, collect};
use crate::config::{Backend, DatabaseUrl, PoolConfig};
use crate::domain::{Cellule, CelluleSlug, Membership, MembershipSpec, NewCellule, Subject};

pub struct SqliteDatabase {
    pool: SqlitePool,
}

impl SqliteDatabase {
    pub async fn connect(url: &DatabaseUrl, pool: &PoolConfig) -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::from_str(url.expose())
            .map_err(|e| StorageError::Other(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(pool.acquire_timeout);
        prepare_file(options.get_filename())?;
        let pool = SqlitePoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        Ok(Self { pool })
    }

    /// The pool, for tests and benchmarks that need raw access.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Creates the database's folder (0700) and file (0600) before SQLite does, so that neither is
/// ever readable by other local users.
fn prepare_file(path: &std::path::Path) -> Result<(), StorageError> {
    if path.as_os_str().is_empty() || path.to_str() == Some(":memory:") {
        return Ok(());
    }
    let io = |e: std::io::Error| StorageError::Unavailable(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsutil::create_private_dir(dir).map_err(io)?;
    }
    if !path.exists() {
        crate::fsutil::create_private_file(path, b"").map_err(io)?;
    }
    Ok(())
}

#[async_trait]
impl Database for SqliteDatabase {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StorageError> {
        sqlx::migrate!("migrations/sqlite")
            .run(&self.pool)
            .await
            .map_err(|e| StorageError::Migration(e.to_string()))
    }

    async fn create_cellule(
        &self,
        new: &NewCellule,
        now: DateTime<Utc>,
    ) -> Result<Cellule, StorageError> {
        let row: CelluleRow = sqlx::query_as(
            "INSERT INTO cellules (slug, name, code, created_at) VALUES (?1, ?2, ?3, ?4) \
             RETURNING slug, name, code, created_at",
        )
        .bind(new.slug.as_str())
        .bind(new.name.as_str())
        .bind(new.code.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "a cellule with this slug or code exists"))?;
        row.try_into()
    }

    async fn get_cellule(&self, slug: &CelluleSlug) -> Result<Option<Cellule>, StorageError> {
        let row: Option<CelluleRow> =
            sqlx::query_as("SELECT slug, name, code, created_at FROM cellules WHERE slug = ?1")
                .bind(slug.as_str())
                .fetch_optional(&self.pool)
                .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn list_cellules(&self) -> Result<Vec<Cellule>, StorageError> {
        let rows: Vec<CelluleRow> =
            sqlx::query_as("SELECT slug, name, code, created_at FROM cellules ORDER BY slug")
                .fetch_all(&self.pool)
                .await?;
        collect(rows)
    }

    async fn put_membership(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
        spec: &MembershipSpec,
        now: DateTime<Utc>,
    ) -> Result<(Membership, bool), StorageError> {
        let row: MembershipRow = sqlx::query_as(
            "INSERT INTO memberships \
               (cellule, subject, role, sphere, organisation, guest, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
             ON CONFLICT (cellule, subject) DO UPDATE SET \
               role = excluded.role, sphere = excluded.sphere, \
               organisation = excluded.organisation, guest = excluded.guest, \
               updated_at = excluded.updated_at \
             RETURNING cellule, subject, role, sphere, organisation, guest, created_at, updated_at",
        )
        .bind(cellule.as_str())
        .bind(subject.as_str())
        .bind(spec.role.as_str())
        .bind(spec.sphere.map(|s| s.as_str()))
        .bind(spec.organisation.as_ref().map(|o| o.as_str()))
        .bind(spec.guest)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(super::not_found_on_fk)?;
        let created = row.created_at == now;
        Ok((row.try_into()?, created))
    }

    async fn delete_membership(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query("DELETE FROM memberships WHERE cellule = ?1 AND subject = ?2")
            .bind(cellule.as_str())
            .bind(subject.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn get_membership(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
    ) -> Result<Option<Membership>, StorageError> {
        let row: Option<MembershipRow> = sqlx::query_as(
            "SELECT cellule, subject, role, sphere, organisation, guest, created_at, updated_at \
             FROM memberships WHERE cellule = ?1 AND subject = ?2",
        )
        .bind(cellule.as_str())
        .bind(subject.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn list_members(&self, cellule: &CelluleSlug) -> Result<Vec<Membership>, StorageError> {
        let rows: Vec<MembershipRow> = sqlx::query_as(
            "SELECT cellule, subject, role, sphere, organisation, guest, created_at, updated_at \
             FROM memberships WHERE cellule = ?1 ORDER BY subject",
        )
        .bind(cellule.as_str())
        .fetch_all(&self.pool)
        .await?;
        collect(rows)
    }

    async fn memberships_of(
        &self,
        subject: &Subject,
    ) -> Result<Vec<(Cellule, Membership)>, StorageError> {
        let rows: Vec<MembershipWithCelluleRow> = sqlx::query_as(
            "SELECT m.cellule, m.subject, m.role, m.sphere, m.organisation, m.guest, \
                    m.created_at, m.updated_at, \
                    c.name AS cellule_name, c.code AS cellule_code, \
                    c.created_at AS cellule_created_at \
             FROM memberships m JOIN cellules c ON c.slug = m.cellule \
             WHERE m.subject = ?1 ORDER BY m.cellule",
        )
        .bind(subject.as_str())
        .fetch_all(&self.pool)
        .await?;
        collect(rows)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
