//! The SQLite backend's reader for audit verification.
//!
//! Verification reads every entry of a chain. Through sqlx each SQLite row crosses from the
//! driver's worker thread to the async task on its own, some 5 µs per entry, more than ten times
//! the hashing. This reader instead steps the rows with `rusqlite` on a blocking thread and
//! encodes and hashes each one straight from the row's columns ([`Fields`] borrows them), about
//! 1 µs per entry; verification runs two at once (one per core of a modest server).
//!
//! The connections are opened on the database file read-write but with `query_only` set, so
//! they can never change a row (read-only opening can fail on a WAL database whose shared-memory
//! file another process created), kept for reuse (at most [`IDLE`]) and each page is one read
//! transaction. An in-memory database has no file to open: it keeps the default path.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::StorageError;
use crate::audit::{Fields, Link};

/// Idle connections kept for the next pages.
const IDLE: usize = 4;

pub(crate) struct ChainReader {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

fn failed(e: rusqlite::Error) -> StorageError {
    match e {
        rusqlite::Error::SqliteFailure(code, _)
            if matches!(
                code.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::CannotOpen
            ) =>
        {
            StorageError::Unavailable(format!("audit chain reader: {e}"))
        }
        _ => StorageError::Other(format!("audit chain reader: {e}")),
    }
}

/// A text column (`None` for NULL); any other type is a corrupt row (the tables are `STRICT`).
fn text<'r>(value: ValueRef<'r>, column: &str) -> Result<Option<&'r [u8]>, StorageError> {
    match value {
        ValueRef::Null => Ok(None),
        ValueRef::Text(t) => Ok(Some(t)),
        _ => Err(StorageError::Corrupt(format!(
            "audit entry column {column} is not text"
        ))),
    }
}

fn required<'r>(value: ValueRef<'r>, column: &str) -> Result<&'r [u8], StorageError> {
    text(value, column)?
        .ok_or_else(|| StorageError::Corrupt(format!("audit entry {column} is null")))
}

fn blob<'r>(value: ValueRef<'r>, column: &str) -> Result<&'r [u8], StorageError> {
    match value {
        ValueRef::Blob(b) => Ok(b),
        _ => Err(StorageError::Corrupt(format!(
            "audit entry column {column} is not a blob"
        ))),
    }
}

impl ChainReader {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration) -> Self {
        ChainReader {
            path,
            busy_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn connection(&self) -> Result<Connection, StorageError> {
        if let Some(conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(failed)?;
        conn.busy_timeout(self.busy_timeout).map_err(failed)?;
        conn.pragma_update(None, "query_only", true)
            .map_err(failed)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE
        {
            idle.push(conn);
        }
    }

    /// The links of the entries `after_seq < seq <= after_seq + limit`, in sequence order
    /// (blocking: call it from a blocking thread).
    pub(crate) fn links(
        &self,
        cellule: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Link>, StorageError> {
        let conn = self.connection()?;
        let links = read_links(&conn, cellule, after_seq, limit)?;
        self.give_back(conn);
        Ok(links)
    }
}

fn read_links(
    conn: &Connection,
    cellule: &str,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<Link>, StorageError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT seq, at_us, actor, actor_role, actor_org, action, case_id, case_ref, \
               target_kind, target_id, outcome, reason, request_id, cases, prev_hash, hash \
             FROM audit_entries WHERE cellule = ?1 AND seq > ?2 AND seq <= ?2 + ?3 ORDER BY seq",
        )
        .map_err(failed)?;
    let mut rows = statement
        .query(rusqlite::params![cellule, after_seq, limit])
        .map_err(failed)?;
    let mut links = Vec::with_capacity(usize::try_from(limit.clamp(0, 10_000)).unwrap_or(0));
    let mut canonical = Vec::with_capacity(512);
    while let Some(row) = rows.next().map_err(failed)? {
        let col = |i: usize| row.get_ref(i).map_err(failed);
        let fields = Fields {
            cellule: cellule.as_bytes(),
            seq: row.get(0).map_err(failed)?,
            at_us: row.get(1).map_err(failed)?,
            actor: required(col(2)?, "actor")?,
            actor_role: required(col(3)?, "actor_role")?,
            actor_org: text(col(4)?, "actor_org")?,
            action: required(col(5)?, "action")?,
            case_id: text(col(6)?, "case_id")?,
            case_ref: text(col(7)?, "case_ref")?,
            target_kind: text(col(8)?, "target_kind")?,
            target_id: text(col(9)?, "target_id")?,
            outcome: required(col(10)?, "outcome")?,
            reason: text(col(11)?, "reason")?,
            request_id: text(col(12)?, "request_id")?,
            cases: text(col(13)?, "cases")?,
        };
        links.push(Link::of(
            &fields,
            blob(col(14)?, "prev_hash")?,
            blob(col(15)?, "hash")?,
            &mut canonical,
        ));
    }
    Ok(links)
}
