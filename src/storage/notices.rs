//! Where notices go (docs/notifications.md): the professional addresses of members and the
//! optional notices each person turned off.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::StorageError;
use super::sql::{Store, db_run, tx_run};
use crate::audit::{Draft, Head};

/// Members' addresses and notice preferences, and the once-only marks of scheduled notices.
#[async_trait]
pub trait NoticeStore {
    /// (subject, address) of the members of `cellule` who have one.
    async fn member_addresses(&self, cellule: &str) -> Result<Vec<(String, String)>, StorageError>;

    /// Sets (or, with `None`, removes) a member's address; `source` is `admin` or `oidc`. An
    /// address an administrator set is not replaced by a sign-in's. `false` when `subject` is not
    /// a member of `cellule`.
    async fn set_member_address(
        &self,
        cellule: &str,
        subject: &str,
        email: Option<&str>,
        source: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StorageError>;

    /// (subject, kind) of the notices turned off in `cellule`.
    async fn opt_outs(&self, cellule: &str) -> Result<Vec<(String, String)>, StorageError>;

    /// Marks the session reminded and appends `audit` (which carries the reminders) if no one
    /// did; `None` when it was already reminded (by another replica).
    async fn mark_reminded(
        &self,
        cellule: &str,
        session_id: &str,
        at: DateTime<Utc>,
        audit: Draft,
    ) -> Result<Option<Head>, StorageError>;

    /// Marks `organisation`'s digest of `day` sent and appends `audit` (which carries it) if no
    /// one did; `None` when it was.
    async fn mark_due_notice(
        &self,
        cellule: &str,
        organisation: &str,
        day: NaiveDate,
        audit: Draft,
    ) -> Result<Option<Head>, StorageError>;

    /// Replaces the notices `subject` turned off.
    async fn set_opt_outs(
        &self,
        cellule: &str,
        subject: &str,
        kinds: &[String],
    ) -> Result<(), StorageError>;
}

#[async_trait]
impl NoticeStore for Store {
    async fn member_addresses(&self, cellule: &str) -> Result<Vec<(String, String)>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT subject, email FROM member_addresses WHERE cellule = $1 ORDER BY subject",
            )
            .bind(cellule)
            .fetch_all(c)
            .await?
        }))
    }

    async fn set_member_address(
        &self,
        cellule: &str,
        subject: &str,
        email: Option<&str>,
        source: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        let members: i64 = db_run!(self, c => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM memberships WHERE cellule = $1 AND subject = $2",
            )
            .bind(cellule)
            .bind(subject)
            .fetch_one(c)
            .await?
        });
        if members == 0 {
            return Ok(false);
        }
        match email {
            None => db_run!(self, c => {
                sqlx::query("DELETE FROM member_addresses WHERE cellule = $1 AND subject = $2")
                    .bind(cellule)
                    .bind(subject)
                    .execute(c)
                    .await?;
            }),
            Some(email) => db_run!(self, c => {
                sqlx::query(
                    "INSERT INTO member_addresses (cellule, subject, email, source, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (cellule, subject) DO UPDATE SET email = $3, source = $4, \
                       updated_at = $5 \
                     WHERE member_addresses.source = 'oidc' OR $4 = 'admin'",
                )
                .bind(cellule)
                .bind(subject)
                .bind(email)
                .bind(source)
                .bind(at)
                .execute(c)
                .await?;
            }),
        }
        Ok(true)
    }

    async fn mark_reminded(
        &self,
        cellule: &str,
        session_id: &str,
        at: DateTime<Utc>,
        audit: Draft,
    ) -> Result<Option<Head>, StorageError> {
        mark_once(self, cellule, Mark::Reminded { session_id, at }, audit).await
    }

    async fn mark_due_notice(
        &self,
        cellule: &str,
        organisation: &str,
        day: NaiveDate,
        audit: Draft,
    ) -> Result<Option<Head>, StorageError> {
        mark_once(self, cellule, Mark::Due { organisation, day }, audit).await
    }

    async fn opt_outs(&self, cellule: &str) -> Result<Vec<(String, String)>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT subject, kind FROM notification_opt_outs WHERE cellule = $1 \
                 ORDER BY subject, kind",
            )
            .bind(cellule)
            .fetch_all(c)
            .await?
        }))
    }

    async fn set_opt_outs(
        &self,
        cellule: &str,
        subject: &str,
        kinds: &[String],
    ) -> Result<(), StorageError> {
        let mut tx = self.begin().await?;
        tx_run!(&mut tx, c => {
            sqlx::query("DELETE FROM notification_opt_outs WHERE cellule = $1 AND subject = $2")
                .bind(cellule)
                .bind(subject)
                .execute(&mut *c)
                .await?;
            for kind in kinds {
                sqlx::query(
                    "INSERT INTO notification_opt_outs (cellule, subject, kind) VALUES ($1, $2, $3)",
                )
                .bind(cellule)
                .bind(subject)
                .bind(kind)
                .execute(&mut *c)
                .await?;
            }
        });
        tx.commit().await?;
        Ok(())
    }
}

/// A scheduled notice's once-only mark.
enum Mark<'a> {
    Reminded {
        session_id: &'a str,
        at: DateTime<Utc>,
    },
    Due {
        organisation: &'a str,
        day: NaiveDate,
    },
}

/// Sets `mark` if it is not set yet and then appends `audit` (which carries the notices) in the
/// same transaction; `None` when it was set already (another replica sent them).
async fn mark_once(
    store: &Store,
    cellule: &str,
    mark: Mark<'_>,
    audit: Draft,
) -> Result<Option<Head>, StorageError> {
    let mut tx = store.begin().await?;
    let marked = tx_run!(&mut tx, c => {
        match &mark {
            Mark::Reminded { session_id, at } => sqlx::query(
                "UPDATE sessions SET reminded_at = $3 WHERE cellule = $1 AND id = $2 \
                   AND reminded_at IS NULL AND status = 'planned'",
            )
            .bind(cellule)
            .bind(*session_id)
            .bind(*at),
            Mark::Due { organisation, day } => sqlx::query(
                "INSERT INTO due_notices (cellule, organisation, day) VALUES ($1, $2, $3) \
                 ON CONFLICT (cellule, organisation, day) DO NOTHING",
            )
            .bind(cellule)
            .bind(*organisation)
            .bind(*day),
        }
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if marked != 1 {
        tx.rollback().await?;
        return Ok(None);
    }
    let head = tx.append(cellule, vec![audit]).await?;
    tx.commit().await?;
    Ok(Some(head))
}
