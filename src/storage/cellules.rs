//! Cellules, memberships, charters and retention settings.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::rows::{
    CelluleAccessRow, CelluleRow, MembershipRow, MembershipWithCelluleRow, access_columns,
    access_join, cellule_columns, collect, membership_columns,
};
use super::sql::{Store, db_run, tx_run};
use super::{CelluleAccess, CharterRecord, RetentionSettings, StorageError, not_found_on_fk};
use crate::audit::{Draft, Head};
use crate::domain::{Cellule, CelluleSlug, Membership, MembershipSpec, NewCellule, Subject};

/// Builds the audit entry of an administrative write from what the write found and did. Storage
/// calls it inside the write's transaction, after reading the state the write replaces, so the
/// entry's "before" is exactly what was replaced; the entry is appended in that transaction, and
/// the write does not happen when it cannot be.
pub type EntryFor<T> = Box<dyn FnOnce(T) -> Draft + Send>;

/// A membership write: the membership it replaced (`None`: created) and the one stored.
#[derive(Debug, Clone)]
pub struct MembershipChange {
    pub before: Option<Membership>,
    pub after: Membership,
}

impl super::sql::Tx {
    /// Serialises the administrative writes of one cellule that read the state they replace
    /// before writing it (memberships, retention, routing directory), so that an entry's
    /// "before" is exactly what its write replaced, even for a row a concurrent transaction is
    /// inserting. SQLite: nothing to do (`BEGIN IMMEDIATE` holds the write lock). PostgreSQL:
    /// the cellule's row, `FOR NO KEY UPDATE`, which other administrative writes wait for but
    /// the foreign-key checks of case writes (`FOR KEY SHARE`) do not.
    pub(crate) async fn lock_cellule(&mut self, cellule: &str) -> Result<(), StorageError> {
        tx_run!(self,
            sqlite _c => {},
            postgres c => {
                sqlx::query("SELECT 1 FROM cellules WHERE slug = $1 FOR NO KEY UPDATE")
                    .bind(cellule)
                    .execute(&mut *c)
                    .await?;
            },
        );
        Ok(())
    }
}

/// Cellules, memberships, charters and retention settings.
#[async_trait]
pub trait CelluleStore: Send + Sync {
    /// Creates a cellule with its first charter and the entry of its creation (the first of its
    /// chain), in one transaction.
    async fn create_cellule(
        &self,
        new: &NewCellule,
        now: DateTime<Utc>,
        audit: Draft,
    ) -> Result<(Cellule, Head), StorageError>;
    async fn get_cellule(&self, slug: &CelluleSlug) -> Result<Option<Cellule>, StorageError>;
    async fn list_cellules(&self) -> Result<Vec<Cellule>, StorageError>;

    /// Creates or replaces a membership with its audit entry, in one transaction; returns the
    /// change. `NotFound("cellule")` when the cellule does not exist.
    async fn put_membership(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
        spec: &MembershipSpec,
        now: DateTime<Utc>,
        audit: EntryFor<MembershipChange>,
    ) -> Result<(MembershipChange, Head), StorageError>;
    /// Removes a membership with its audit entry (given the removed membership), in one
    /// transaction; `None` when there was none (nothing is recorded).
    async fn delete_membership(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
        audit: EntryFor<Membership>,
    ) -> Result<Option<Head>, StorageError>;
    /// A cellule as one subject reaches it: the cellule, their membership if any, and whether
    /// they accepted its current charter, in one round trip (the `CelluleMember` extractor's
    /// question on every cellule route). `None` when the cellule does not exist.
    async fn cellule_access(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
    ) -> Result<Option<CelluleAccess>, StorageError>;
    async fn list_members(&self, cellule: &CelluleSlug) -> Result<Vec<Membership>, StorageError>;
    /// Every membership of one subject, with its cellule, ordered by cellule slug.
    async fn memberships_of(
        &self,
        subject: &Subject,
    ) -> Result<Vec<(Cellule, Membership)>, StorageError>;

    async fn retention_settings(&self) -> Result<Vec<RetentionSettings>, StorageError>;
    /// Sets a cellule's retention with its audit entry (given the settings replaced), in one
    /// transaction; `None` when the cellule does not exist.
    async fn set_retention(
        &self,
        cellule: &str,
        closed_months: i64,
        declined_months: i64,
        audit: EntryFor<RetentionSettings>,
    ) -> Result<Option<Head>, StorageError>;

    async fn current_charter(&self, cellule: &str) -> Result<Option<CharterRecord>, StorageError>;
    /// Adds a charter version with its audit entry (given the new version), in one
    /// transaction; returns the version.
    async fn add_charter(
        &self,
        cellule: &str,
        text: &str,
        now: DateTime<Utc>,
        audit: EntryFor<i64>,
    ) -> Result<(i64, Head), StorageError>;
    async fn has_accepted_charter(
        &self,
        cellule: &str,
        subject: &str,
        version: i64,
    ) -> Result<bool, StorageError>;
    /// Records an acceptance and its audit entry in one transaction.
    async fn accept_charter(
        &self,
        cellule: &str,
        subject: &str,
        version: i64,
        now: DateTime<Utc>,
        audit: Draft,
    ) -> Result<Head, StorageError>;
}

#[async_trait]
impl CelluleStore for Store {
    async fn create_cellule(
        &self,
        new: &NewCellule,
        now: DateTime<Utc>,
        audit: Draft,
    ) -> Result<(Cellule, Head), StorageError> {
        let conflict = |e| StorageError::from_sqlx(e, "a cellule with this slug or code exists");
        let mut tx = self.begin().await?;
        let row: CelluleRow = tx_run!(&mut tx, c => {
            let row = sqlx::query_as(concat!(
                "INSERT INTO cellules (slug, name, code, created_at) VALUES ($1, $2, $3, $4) \
                 RETURNING ",
                cellule_columns!()
            ))
            .bind(new.slug.as_str())
            .bind(new.name.as_str())
            .bind(new.code.as_str())
            .bind(now)
            .fetch_one(&mut *c)
            .await
            .map_err(conflict)?;
            sqlx::query(
                "INSERT INTO charters (cellule, version, text, created_at) VALUES ($1, 1, $2, $3)",
            )
            .bind(new.slug.as_str())
            .bind(&new.charter)
            .bind(now)
            .execute(&mut *c)
            .await?;
            row
        });
        let head = tx.append(new.slug.as_str(), vec![audit]).await?;
        tx.commit().await?;
        Ok((row.try_into()?, head))
    }

    async fn get_cellule(&self, slug: &CelluleSlug) -> Result<Option<Cellule>, StorageError> {
        let row: Option<CelluleRow> = db_run!(self, c => {
            sqlx::query_as(concat!("SELECT ", cellule_columns!(), " FROM cellules WHERE slug = $1"))
                .bind(slug.as_str())
                .fetch_optional(c)
                .await?
        });
        row.map(TryInto::try_into).transpose()
    }

    async fn list_cellules(&self) -> Result<Vec<Cellule>, StorageError> {
        let rows: Vec<CelluleRow> = db_run!(self, c => {
            sqlx::query_as(concat!("SELECT ", cellule_columns!(), " FROM cellules ORDER BY slug"))
                .fetch_all(c)
                .await?
        });
        collect(rows)
    }

    async fn put_membership(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
        spec: &MembershipSpec,
        now: DateTime<Utc>,
        audit: EntryFor<MembershipChange>,
    ) -> Result<(MembershipChange, Head), StorageError> {
        let mut tx = self.begin().await?;
        tx.lock_cellule(cellule.as_str()).await?;
        let (before, row): (Option<MembershipRow>, MembershipRow) = tx_run!(&mut tx, c => {
            let before = sqlx::query_as(concat!(
                "SELECT ",
                membership_columns!(),
                " FROM memberships WHERE cellule = $1 AND subject = $2"
            ))
            .bind(cellule.as_str())
            .bind(subject.as_str())
            .fetch_optional(&mut *c)
            .await?;
            let row = sqlx::query_as(concat!(
                "INSERT INTO memberships (",
                membership_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
                 ON CONFLICT (cellule, subject) DO UPDATE SET \
                   role = excluded.role, sphere = excluded.sphere, \
                   organisation = excluded.organisation, guest = excluded.guest, \
                   updated_at = excluded.updated_at \
                 RETURNING ",
                membership_columns!()
            ))
            .bind(cellule.as_str())
            .bind(subject.as_str())
            .bind(spec.role)
            .bind(spec.sphere)
            .bind(spec.organisation.as_ref().map(|o| o.as_str()))
            .bind(spec.guest)
            .bind(now)
            .fetch_one(&mut *c)
            .await
            .map_err(not_found_on_fk)?;
            (before, row)
        });
        let change = MembershipChange {
            before: before.map(TryInto::try_into).transpose()?,
            after: row.try_into()?,
        };
        let head = tx
            .append(cellule.as_str(), vec![audit(change.clone())])
            .await?;
        tx.commit().await?;
        Ok((change, head))
    }

    async fn delete_membership(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
        audit: EntryFor<Membership>,
    ) -> Result<Option<Head>, StorageError> {
        let mut tx = self.begin().await?;
        let removed: Option<MembershipRow> = tx_run!(&mut tx, c => {
            sqlx::query_as(concat!(
                "DELETE FROM memberships WHERE cellule = $1 AND subject = $2 RETURNING ",
                membership_columns!()
            ))
            .bind(cellule.as_str())
            .bind(subject.as_str())
            .fetch_optional(&mut *c)
            .await?
        });
        let Some(removed) = removed else {
            tx.rollback().await?;
            return Ok(None);
        };
        let head = tx
            .append(cellule.as_str(), vec![audit(removed.try_into()?)])
            .await?;
        tx.commit().await?;
        Ok(Some(head))
    }

    async fn cellule_access(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
    ) -> Result<Option<CelluleAccess>, StorageError> {
        let row: Option<CelluleAccessRow> = db_run!(self, c => {
            sqlx::query_as(concat!(
                "SELECT ",
                access_columns!(),
                " FROM ",
                access_join!(),
                " WHERE c.slug = $1"
            ))
            .bind(cellule.as_str())
            .bind(subject.as_str())
            .fetch_optional(c)
            .await?
        });
        row.map(TryInto::try_into).transpose()
    }

    async fn list_members(&self, cellule: &CelluleSlug) -> Result<Vec<Membership>, StorageError> {
        let rows: Vec<MembershipRow> = db_run!(self, c => {
            sqlx::query_as(concat!(
                "SELECT ",
                membership_columns!(),
                " FROM memberships WHERE cellule = $1 ORDER BY subject"
            ))
            .bind(cellule.as_str())
            .fetch_all(c)
            .await?
        });
        collect(rows)
    }

    async fn memberships_of(
        &self,
        subject: &Subject,
    ) -> Result<Vec<(Cellule, Membership)>, StorageError> {
        let rows: Vec<MembershipWithCelluleRow> = db_run!(self, c => {
            sqlx::query_as(
                "SELECT m.cellule, m.subject, m.role, m.sphere, m.organisation, m.guest, \
                        m.created_at, m.updated_at, \
                        c.name AS cellule_name, c.code AS cellule_code, \
                        c.created_at AS cellule_created_at \
                 FROM memberships m JOIN cellules c ON c.slug = m.cellule \
                 WHERE m.subject = $1 ORDER BY m.cellule",
            )
            .bind(subject.as_str())
            .fetch_all(c)
            .await?
        });
        collect(rows)
    }

    async fn retention_settings(&self) -> Result<Vec<RetentionSettings>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT slug, retention_closed_months, retention_declined_months FROM cellules \
                 ORDER BY slug",
            )
            .fetch_all(c)
            .await?
        }))
    }

    async fn set_retention(
        &self,
        cellule: &str,
        closed_months: i64,
        declined_months: i64,
        audit: EntryFor<RetentionSettings>,
    ) -> Result<Option<Head>, StorageError> {
        let mut tx = self.begin().await?;
        tx.lock_cellule(cellule).await?;
        let before: Option<RetentionSettings> = tx_run!(&mut tx, c => {
            let before = sqlx::query_as(
                "SELECT slug, retention_closed_months, retention_declined_months FROM cellules \
                 WHERE slug = $1",
            )
            .bind(cellule)
            .fetch_optional(&mut *c)
            .await?;
            if before.is_some() {
                sqlx::query(
                    "UPDATE cellules SET retention_closed_months = $1, \
                       retention_declined_months = $2 WHERE slug = $3",
                )
                .bind(closed_months)
                .bind(declined_months)
                .bind(cellule)
                .execute(&mut *c)
                .await?;
            }
            before
        });
        let Some(before) = before else {
            tx.rollback().await?;
            return Ok(None);
        };
        let head = tx.append(cellule, vec![audit(before)]).await?;
        tx.commit().await?;
        Ok(Some(head))
    }

    async fn current_charter(&self, cellule: &str) -> Result<Option<CharterRecord>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT version, text, created_at FROM charters WHERE cellule = $1 \
                 ORDER BY version DESC LIMIT 1",
            )
            .bind(cellule)
            .fetch_optional(c)
            .await?
        }))
    }

    async fn add_charter(
        &self,
        cellule: &str,
        text: &str,
        now: DateTime<Utc>,
        audit: EntryFor<i64>,
    ) -> Result<(i64, Head), StorageError> {
        let mut tx = self.begin().await?;
        let version: i64 = tx_run!(&mut tx, c => {
            sqlx::query_scalar(
                "INSERT INTO charters (cellule, version, text, created_at) \
                 VALUES ($1, (SELECT COALESCE(MAX(version), 0) + 1 FROM charters WHERE cellule = $1), \
                   $2, $3) \
                 RETURNING version",
            )
            .bind(cellule)
            .bind(text)
            .bind(now)
            .fetch_one(&mut *c)
            .await
            .map_err(not_found_on_fk)?
        });
        let head = tx.append(cellule, vec![audit(version)]).await?;
        tx.commit().await?;
        Ok((version, head))
    }

    async fn has_accepted_charter(
        &self,
        cellule: &str,
        subject: &str,
        version: i64,
    ) -> Result<bool, StorageError> {
        let found: Option<i64> = db_run!(self, c => {
            sqlx::query_scalar(
                "SELECT version FROM charter_acceptances \
                 WHERE cellule = $1 AND subject = $2 AND version = $3",
            )
            .bind(cellule)
            .bind(subject)
            .bind(version)
            .fetch_optional(c)
            .await?
        });
        Ok(found.is_some())
    }

    async fn accept_charter(
        &self,
        cellule: &str,
        subject: &str,
        version: i64,
        now: DateTime<Utc>,
        audit: Draft,
    ) -> Result<Head, StorageError> {
        let mut tx = self.begin().await?;
        tx_run!(&mut tx, c => {
            sqlx::query(
                "INSERT INTO charter_acceptances (cellule, subject, version, accepted_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (cellule, subject, version) DO NOTHING",
            )
            .bind(cellule)
            .bind(subject)
            .bind(version)
            .bind(now)
            .execute(&mut *c)
            .await?;
        });
        let head = tx.append(cellule, vec![audit]).await?;
        tx.commit().await?;
        Ok(head)
    }
}
