//! The SQLite backend's group commit ([`Database::commit_batch`](super::Database::commit_batch))
//! in one blocking step.
//!
//! The audit appender (`audit::appender`) writes every read's entry and every submission
//! through one batch at a time, so the time a batch takes bounds those requests' throughput.
//! Through sqlx each statement of the batch (begin, counter, cases, keys, chain head, entries,
//! head update, commit) is a round trip to the connection's worker thread: about 0.9 ms for a
//! batch of four reads' entries on a busy two-core machine, measured by `cargo bench --bench
//! load`. Here the whole transaction runs with `rusqlite` on one blocking thread, with cached
//! prepared statements.
//!
//! The single-writer rule of the backend holds: the caller keeps the sqlx writer connection
//! (the one write slot of this process) for the whole step, so no other write of this process
//! runs meanwhile; other processes on the same file meet in SQLite's busy handler
//! (`BEGIN IMMEDIATE`), as the sqlx writer does. Values are stored as sqlx stores them (text
//! timestamps in the form of sqlx-sqlite's chrono encoder), the column lists and the chain's
//! statements are shared with the sqlx path: the rows are the same whichever path wrote them.

use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use super::{
    CASE_COLUMNS, CaseWrite, Committed, ENTRY_COLUMNS, KEY_COLUMNS, NewCase, StorageError,
    WrappedKey, assign_references, audit_groups, counter_groups,
};
use crate::audit::{Draft, GENESIS, Head};

/// Bumps a cellule's reference counter for a year by `?3` new cases; returns the last number.
/// Shared with the sqlx path (`storage::sqlite`).
pub(crate) const COUNTER_BUMP: &str = "INSERT INTO reference_counters (cellule, year, last_seq) VALUES (?1, ?2, ?3) \
     ON CONFLICT (cellule, year) DO UPDATE SET last_seq = reference_counters.last_seq + ?3 \
     RETURNING last_seq";

/// Reserves `?2` sequence numbers on a cellule's chain (`?3`: the genesis hash of a new chain);
/// returns the new last number, the previous hash and the checkpoint and purge marks.
pub(crate) const HEAD_ADVANCE: &str = "INSERT INTO audit_heads (cellule, seq, hash) VALUES (?1, ?2, ?3) \
     ON CONFLICT (cellule) DO UPDATE SET seq = audit_heads.seq + ?2 \
     RETURNING seq, hash, checkpoint_seq, purged_through";

/// Sets the chain head's hash once the reserved entries are written.
pub(crate) const HEAD_SET_HASH: &str = "UPDATE audit_heads SET hash = ?2 WHERE cellule = ?1";

/// `INSERT INTO table (columns) VALUES (?1, …, ?n)`: one placeholder per shared column, so the
/// rows bind the columns in the order of [`CASE_COLUMNS`], [`KEY_COLUMNS`], [`ENTRY_COLUMNS`].
fn insert(table: &str, columns: &str) -> String {
    let n = columns.split(',').count();
    let placeholders: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {table} ({columns}) VALUES ({})",
        placeholders.join(", ")
    )
}

static INSERT_CASE: LazyLock<String> = LazyLock::new(|| insert("cases", CASE_COLUMNS));
static INSERT_KEY: LazyLock<String> = LazyLock::new(|| insert("data_keys", KEY_COLUMNS));
static INSERT_ENTRY: LazyLock<String> = LazyLock::new(|| insert("audit_entries", ENTRY_COLUMNS));

/// A new case of a batch, owned (the step runs on another thread).
pub(crate) struct OwnedCase {
    pub case: NewCase,
    pub key: WrappedKey,
    pub audit: Draft,
}

/// The batch writer's connection, opened on first use and kept.
pub(crate) struct BatchWriter {
    path: PathBuf,
    busy_timeout: Duration,
    conn: Mutex<Option<Connection>>,
}

/// As the sqlx path maps them: a foreign-key violation is a missing cellule, a unique one a
/// conflict; busy and locked are unavailable.
fn failed(e: rusqlite::Error) -> StorageError {
    if let rusqlite::Error::SqliteFailure(code, _) = &e {
        match code.extended_code {
            rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                return StorageError::NotFound("cellule");
            }
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                return StorageError::Conflict("unique constraint");
            }
            _ => {}
        }
    }
    super::sqlite_direct::rusqlite_error("SQLite batch writer", e)
}

/// A timestamp as sqlx-sqlite stores a `DateTime<Utc>` (its chrono encoder's format).
pub(crate) fn sqlx_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

impl BatchWriter {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration) -> Self {
        BatchWriter {
            path,
            busy_timeout,
            conn: Mutex::new(None),
        }
    }

    fn open(&self) -> Result<Connection, StorageError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(failed)?;
        conn.busy_timeout(self.busy_timeout).map_err(failed)?;
        super::sqlite::apply_pragmas(&conn).map_err(failed)?;
        Ok(conn)
    }

    /// Writes the batch in one transaction (blocking: call it from a blocking thread, holding
    /// the process's write slot). A connection that failed is closed, not kept.
    pub(crate) fn commit(
        &self,
        cases: &[OwnedCase],
        entries: &[(String, Vec<Draft>)],
    ) -> Result<Committed, StorageError> {
        let mut slot = self
            .conn
            .lock()
            .map_err(|_| StorageError::Other("SQLite batch writer lock poisoned".into()))?;
        let mut conn = match slot.take() {
            Some(conn) => conn,
            None => self.open()?,
        };
        let out = write(&mut conn, cases, entries)?;
        *slot = Some(conn);
        Ok(out)
    }
}

fn write(
    conn: &mut Connection,
    cases: &[OwnedCase],
    entries: &[(String, Vec<Draft>)],
) -> Result<Committed, StorageError> {
    let writes: Vec<CaseWrite<'_>> = cases
        .iter()
        .map(|c| CaseWrite {
            case: &c.case,
            key: &c.key,
            audit: &c.audit,
        })
        .collect();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(failed)?;
    let mut references = vec![String::new(); writes.len()];
    for g in counter_groups(&writes) {
        let n = i64::try_from(g.members.len()).unwrap_or(i64::MAX);
        let last: i64 = tx
            .prepare_cached(COUNTER_BUMP)
            .and_then(|mut s| s.query_row(params![g.cellule, g.year, n], |r| r.get(0)))
            .map_err(failed)?;
        assign_references(&g, last, &mut references);
    }
    for (w, reference) in writes.iter().zip(&references) {
        let c = w.case;
        let submitted_at = sqlx_time(c.submitted_at);
        tx.prepare_cached(&INSERT_CASE)
            .and_then(|mut s| {
                s.execute(params![
                    c.id,
                    c.cellule,
                    reference,
                    "submitted",
                    c.urgency,
                    c.age_band,
                    c.gender,
                    c.commune,
                    c.sector,
                    c.needs,
                    c.consent_status,
                    c.consent_justification,
                    c.referring_org,
                    c.referrer,
                    c.linkage_key,
                    c.situation,
                    c.expectations,
                    submitted_at,
                    submitted_at,
                ])
            })
            .map_err(failed)?;
        let k = w.key;
        tx.prepare_cached(&INSERT_KEY)
            .and_then(|mut s| {
                s.execute(params![
                    k.id,
                    k.cellule,
                    k.case_id,
                    k.kek_version,
                    k.wrapped
                ])
            })
            .map_err(failed)?;
    }
    let borrowed: Vec<(&str, &[Draft])> = entries
        .iter()
        .map(|(c, d)| (c.as_str(), d.as_slice()))
        .collect();
    let mut heads = Vec::new();
    for (cellule, drafts) in audit_groups(&writes, &references, &borrowed) {
        let head = append(&tx, &cellule, drafts)?;
        heads.push((cellule, head));
    }
    tx.commit().map_err(failed)?;
    Ok(Committed { references, heads })
}

/// Appends to the cellule's chain (the statements of the sqlx path's `append`).
fn append(tx: &Connection, cellule: &str, drafts: Vec<Draft>) -> Result<Head, StorageError> {
    let n = i64::try_from(drafts.len()).unwrap_or(i64::MAX);
    let (seq, prev, checkpoint_seq, purged_through): (i64, Vec<u8>, i64, i64) = tx
        .prepare_cached(HEAD_ADVANCE)
        .and_then(|mut s| {
            s.query_row(params![cellule, n, GENESIS.as_slice()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
        })
        .map_err(failed)?;
    let mut hash = prev;
    let mut next = seq - n;
    let mut insert = tx.prepare_cached(&INSERT_ENTRY).map_err(failed)?;
    for draft in drafts {
        next += 1;
        let e = draft.into_entry(cellule, next, &hash);
        insert
            .execute(params![
                e.cellule,
                e.seq,
                e.at_us,
                e.actor,
                e.actor_role,
                e.actor_org,
                e.action,
                e.case_id,
                e.case_ref,
                e.target_kind,
                e.target_id,
                e.outcome,
                e.reason,
                e.request_id,
                e.cases,
                e.prev_hash,
                e.hash,
            ])
            .map_err(failed)?;
        hash = e.hash;
    }
    tx.prepare_cached(HEAD_SET_HASH)
        .and_then(|mut s| s.execute(params![cellule, hash]))
        .map_err(failed)?;
    Ok(Head {
        seq,
        hash,
        checkpoint_seq,
        purged_through,
    })
}
