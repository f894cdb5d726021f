//! Key check values of the KEKs and the wrapped data keys (SPEC §8).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::sql::{Store, db_run, tx_run};
use super::{Rewrapped, StorageError, WrappedKey};

/// The columns of a wrapped key, in `WrappedKey` order (and the order inserts bind them).
macro_rules! key_columns {
    () => {
        "id, cellule, case_id, kek_version, wrapped"
    };
}
pub(crate) use key_columns;

/// KEK check values and wrapped keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Key check values per KEK version.
    async fn kek_checks(&self) -> Result<Vec<(i64, Vec<u8>)>, StorageError>;
    async fn insert_kek_check(
        &self,
        version: i64,
        check: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), StorageError>;
    /// How many wrapped keys each KEK version wraps.
    async fn wrapped_key_counts(&self) -> Result<Vec<(i64, i64)>, StorageError>;
    /// Up to `limit` wrapped keys not on `version`, by id.
    async fn keys_not_on(&self, version: i64, limit: i64) -> Result<Vec<WrappedKey>, StorageError>;
    /// Stores re-wrapped keys in one transaction; if any key no longer has its old version,
    /// nothing is stored (`Conflict`).
    async fn replace_wrapped_keys(&self, batch: &[Rewrapped]) -> Result<(), StorageError>;
    async fn get_wrapped_key(&self, id: &str) -> Result<Option<WrappedKey>, StorageError>;
    /// Inserts a key unless one with this id exists (first writer wins).
    async fn insert_wrapped_key_if_absent(&self, key: &WrappedKey) -> Result<(), StorageError>;
}

#[async_trait]
impl KeyStore for Store {
    async fn kek_checks(&self) -> Result<Vec<(i64, Vec<u8>)>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as("SELECT version, check_value FROM kek_checks ORDER BY version")
                .fetch_all(c)
                .await?
        }))
    }

    async fn insert_kek_check(
        &self,
        version: i64,
        check: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        db_run!(self, c => {
            sqlx::query(
                "INSERT INTO kek_checks (version, check_value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (version) DO NOTHING",
            )
            .bind(version)
            .bind(check)
            .bind(now)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    async fn wrapped_key_counts(&self) -> Result<Vec<(i64, i64)>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT kek_version, COUNT(*) FROM data_keys GROUP BY kek_version \
                 ORDER BY kek_version",
            )
            .fetch_all(c)
            .await?
        }))
    }

    async fn keys_not_on(&self, version: i64, limit: i64) -> Result<Vec<WrappedKey>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(concat!(
                "SELECT ",
                key_columns!(),
                " FROM data_keys WHERE kek_version <> $1 ORDER BY id LIMIT $2"
            ))
            .bind(version)
            .bind(limit)
            .fetch_all(c)
            .await?
        }))
    }

    async fn replace_wrapped_keys(&self, batch: &[Rewrapped]) -> Result<(), StorageError> {
        let mut tx = self.begin().await?;
        for key in batch {
            let done = tx_run!(&mut tx, c => {
                sqlx::query(
                    "UPDATE data_keys SET kek_version = $1, wrapped = $2 \
                     WHERE id = $3 AND kek_version = $4",
                )
                .bind(key.new_version)
                .bind(&key.wrapped)
                .bind(&key.id)
                .bind(key.old_version)
                .execute(&mut *c)
                .await?
                .rows_affected()
            });
            if done != 1 {
                tx.rollback().await?;
                return Err(StorageError::Conflict(
                    "a key changed while being re-wrapped",
                ));
            }
        }
        tx.commit().await
    }

    async fn get_wrapped_key(&self, id: &str) -> Result<Option<WrappedKey>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(concat!("SELECT ", key_columns!(), " FROM data_keys WHERE id = $1"))
                .bind(id)
                .fetch_optional(c)
                .await?
        }))
    }

    async fn insert_wrapped_key_if_absent(&self, key: &WrappedKey) -> Result<(), StorageError> {
        db_run!(self, c => {
            sqlx::query(concat!(
                "INSERT INTO data_keys (",
                key_columns!(),
                ") VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING"
            ))
            .bind(&key.id)
            .bind(&key.cellule)
            .bind(&key.case_id)
            .bind(key.kek_version)
            .bind(&key.wrapped)
            .execute(c)
            .await?;
        });
        Ok(())
    }
}
