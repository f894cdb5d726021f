//! The SQLite backend's direct reader, for the two reads that take thousands of rows at once.
//!
//! Through sqlx each SQLite row crosses from the driver's worker thread to the async task on its
//! own and is decoded column by column into owned values: some 4-5 µs per row. Two reads take
//! thousands of rows: audit verification (every entry of a chain) and the agenda build (every
//! eligible case of the cellule, 10,000 in a large département). This reader steps their rows
//! with `rusqlite` on a blocking thread instead:
//! - verification encodes and hashes each entry straight from the row's columns ([`Fields`]
//!   borrows them), about 1 µs per entry; it reads four pages at once (two cores of a modest
//!   server, each page hashed while the next ones are read);
//! - the agenda build gets its [`EligibleCase`]s built from the row's columns, about 1.5 µs each
//!   (45 ms less for 10,000 cases, measured by `cargo bench --bench load`).
//!
//! The connections are opened on the database file read-write but with `query_only` set, so
//! they can never change a row (read-only opening can fail on a WAL database whose shared-memory
//! file another process created), kept for reuse (at most [`IDLE`]) and each page is one read
//! transaction. An in-memory database has no file to open: it keeps the default path.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::StorageError;
use crate::audit::{Fields, Link};
use crate::storage::EligibleCase;

/// Idle connections kept for the next pages.
const IDLE: usize = 4;

pub(crate) struct DirectReader {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

/// A `rusqlite` error of `who`: busy, locked or unopenable is unavailable (503), anything else
/// an internal error.
pub(crate) fn rusqlite_error(who: &str, e: rusqlite::Error) -> StorageError {
    match e {
        rusqlite::Error::SqliteFailure(code, _)
            if matches!(
                code.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::CannotOpen
            ) =>
        {
            StorageError::Unavailable(format!("{who}: {e}"))
        }
        _ => StorageError::Other(format!("{who}: {e}")),
    }
}

fn failed(e: rusqlite::Error) -> StorageError {
    rusqlite_error("SQLite direct reader", e)
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

impl DirectReader {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration) -> Self {
        DirectReader {
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
        super::sqlite::apply_pragmas(&conn).map_err(failed)?;
        conn.pragma_update(None, "query_only", true)
            .map_err(failed)?;
        Ok(conn)
    }

    /// Runs one read on a pooled connection, given back afterwards (dropped after an error).
    fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let conn = self.connection()?;
        let out = read(&conn)?;
        self.give_back(conn);
        Ok(out)
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
        self.read(|conn| read_links(conn, cellule, after_seq, limit))
    }
}

/// The eligible cases of an agenda build (see `Database::eligible_cases`); `?3` is the due date
/// and `?4` the current time, as sqlx writes them (`%F`, RFC 3339). Served by the covering index
/// of eligible cases (migrations 0008, 0009); the deferral counts and this session's deferrals
/// are joined, the (few) cases on other open agendas read once.
pub(crate) const ELIGIBLE_CASES: &str = "SELECT c.id, c.reference, c.status, c.urgency, c.needs, \
       c.commune, c.sector, c.follow_up_date, COALESCE(f.times, 0) AS times_deferred, c.routed_org, \
       c.submitted_at, c.decided_at, d.case_id IS NOT NULL AS deferred_here \
     FROM cases c INDEXED BY cases_eligible \
     LEFT JOIN case_deferrals f ON f.case_id = c.id \
     LEFT JOIN agenda_deferrals d ON d.session_id = ?2 AND d.case_id = c.id \
     WHERE c.cellule = ?1 AND c.status IN ('accepted', 'in_follow_up') \
       AND (c.status = 'accepted' OR c.follow_up_date <= ?3) \
       AND c.id NOT IN (SELECT ai.case_id FROM agenda_items ai \
            JOIN sessions s ON s.id = ai.session_id \
            WHERE s.cellule = ?1 AND s.id <> ?2 AND s.status = 'planned' \
              AND s.published_at IS NULL AND s.starts_at >= ?4)";

fn time(value: Option<String>, column: &str) -> Result<Option<DateTime<Utc>>, StorageError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(&v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| StorageError::Corrupt(format!("case column {column}: {e}")))
        })
        .transpose()
}

impl DirectReader {
    /// [`ELIGIBLE_CASES`] (blocking: call it from a blocking thread).
    pub(crate) fn eligible_cases(
        &self,
        cellule: &str,
        session_id: &str,
        due_by: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Vec<EligibleCase>, StorageError> {
        self.read(|conn| read_eligible(conn, cellule, session_id, due_by, now))
    }
}

fn read_eligible(
    conn: &Connection,
    cellule: &str,
    session_id: &str,
    due_by: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Vec<EligibleCase>, StorageError> {
    let mut statement = conn.prepare_cached(ELIGIBLE_CASES).map_err(failed)?;
    // The text forms sqlx stores (see sqlx-sqlite's chrono types): comparisons are on text.
    let due_by = due_by.format("%F").to_string();
    let now = now.to_rfc3339_opts(SecondsFormat::AutoSi, false);
    let mut rows = statement
        .query(rusqlite::params![cellule, session_id, due_by, now])
        .map_err(failed)?;
    let mut cases = Vec::new();
    while let Some(row) = rows.next().map_err(failed)? {
        let follow_up_date: Option<String> = row.get(7).map_err(failed)?;
        let follow_up_date = follow_up_date
            .map(|d| {
                NaiveDate::parse_from_str(&d, "%F")
                    .map_err(|e| StorageError::Corrupt(format!("case column follow_up_date: {e}")))
            })
            .transpose()?;
        cases.push(EligibleCase {
            id: row.get(0).map_err(failed)?,
            reference: row.get(1).map_err(failed)?,
            status: row.get(2).map_err(failed)?,
            urgency: row.get(3).map_err(failed)?,
            needs: row.get(4).map_err(failed)?,
            commune: row.get(5).map_err(failed)?,
            sector: row.get(6).map_err(failed)?,
            follow_up_date,
            times_deferred: row.get(8).map_err(failed)?,
            routed_org: row.get(9).map_err(failed)?,
            submitted_at: time(row.get(10).map_err(failed)?, "submitted_at")?
                .ok_or_else(|| StorageError::Corrupt("case without submitted_at".into()))?,
            decided_at: time(row.get(11).map_err(failed)?, "decided_at")?,
            deferred_here: row.get(12).map_err(failed)?,
        });
    }
    Ok(cases)
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
    let mut links = Vec::with_capacity(
        usize::try_from(limit.clamp(0, crate::audit::verify::PAGE)).unwrap_or(0),
    );
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
