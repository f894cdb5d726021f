//! Backups of a SQLite database (the rules and the commands are `services::backup`'s and
//! `cellule backup`'s; PostgreSQL is backed up with `pg_dump`, docs/operations.md).
//!
//! - [`Store::backup_into`]: `VACUUM INTO` a new file, which reads the whole database in **one**
//!   read transaction: a consistent snapshot of every committed transaction up to its start,
//!   taken while the service keeps writing (WAL readers do not block writers), without the WAL
//!   file to copy alongside, compacted, and with `secure_delete`'s zeroed pages left out.
//! - A backup file may carry the keyring only when asked (`--with-keyring`), in a table of its
//!   own ([`embed_keyring`], [`embedded_keyring`], [`strip_keyring`]).
//! - [`Store::integrity_check`]: SQLite's `PRAGMA integrity_check`.

use std::path::Path;
use std::str::FromStr;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use super::StorageError;
use super::sql::{Pool, Store};

/// The table of a backup file that holds the keyring (never in a serving database).
const KEYRING_TABLE: &str = "backup_keyring";

impl Store {
    /// Writes a consistent copy of the SQLite database into `dest`, which must be absent or
    /// empty (created 0600 by the caller). Refused on PostgreSQL.
    pub async fn backup_into(&self, dest: &Path) -> Result<(), StorageError> {
        let Pool::Sqlite(pool) = &self.pool else {
            return Err(StorageError::Other(
                "a PostgreSQL database is backed up with pg_dump (docs/operations.md)".into(),
            ));
        };
        let dest = dest
            .to_str()
            .ok_or_else(|| StorageError::Other("the backup's path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO $1")
            .bind(dest)
            .execute(pool)
            .await?;
        Ok(())
    }

    /// SQLite's `PRAGMA integrity_check`: `["ok"]`, or the problems found. Refused on
    /// PostgreSQL.
    pub async fn integrity_check(&self) -> Result<Vec<String>, StorageError> {
        let Pool::Sqlite(pool) = &self.pool else {
            return Err(StorageError::Other(
                "integrity_check is SQLite's; on PostgreSQL use pg_amcheck".into(),
            ));
        };
        Ok(sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(pool)
            .await?)
    }
}

async fn open(path: &Path) -> Result<SqliteConnection, StorageError> {
    let options = SqliteConnectOptions::from_str("sqlite://")
        .map_err(|e| StorageError::Other(e.to_string()))?
        .filename(path)
        .create_if_missing(false);
    SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| StorageError::Unavailable(format!("{}: {e}", path.display())))
}

/// SQLite's `PRAGMA integrity_check` of the file `path` (a backup): `["ok"]` when sound.
pub async fn integrity_check_file(path: &Path) -> Result<Vec<String>, StorageError> {
    let mut c = open(path).await?;
    let found: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut c)
        .await?;
    c.close().await?;
    Ok(found)
}

/// Adds the keyring (its JSON) to the backup file `path`.
pub async fn embed_keyring(path: &Path, keyring_json: &str) -> Result<(), StorageError> {
    let mut c = open(path).await?;
    sqlx::query(&format!(
        "CREATE TABLE {KEYRING_TABLE} (keyring TEXT NOT NULL)"
    ))
    .execute(&mut c)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {KEYRING_TABLE} (keyring) VALUES ($1)"
    ))
    .bind(keyring_json)
    .execute(&mut c)
    .await?;
    c.close().await?;
    Ok(())
}

/// The keyring a backup file carries, if any.
pub async fn embedded_keyring(path: &Path) -> Result<Option<String>, StorageError> {
    let mut c = open(path).await?;
    let exists: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1")
            .bind(KEYRING_TABLE)
            .fetch_one(&mut c)
            .await?;
    let keyring = if exists > 0 {
        sqlx::query_scalar(&format!("SELECT keyring FROM {KEYRING_TABLE} LIMIT 1"))
            .fetch_optional(&mut c)
            .await?
    } else {
        None
    };
    c.close().await?;
    Ok(keyring)
}

/// Removes the keyring from a restored copy of a backup, then compacts it (`secure_delete`
/// is off on a plain connection: `VACUUM` rewrites the file without the freed pages).
pub async fn strip_keyring(path: &Path) -> Result<(), StorageError> {
    let mut c = open(path).await?;
    sqlx::query(&format!("DROP TABLE IF EXISTS {KEYRING_TABLE}"))
        .execute(&mut c)
        .await?;
    sqlx::query("VACUUM").execute(&mut c).await?;
    c.close().await?;
    Ok(())
}
