//! WAL checkpoints off the request path.
//!
//! In WAL mode a commit appends pages to the `-wal` file; a *checkpoint* copies them back into
//! the database file. By default the connection whose commit takes the WAL past 1,000 pages
//! runs that checkpoint itself, before its commit returns: whichever request happened to commit
//! then (a group-commit batch of submissions, an agenda build writing 10,000 deferrals) waits
//! for thousands of pages to be copied and the file synced. This service's connections turn
//! that off (`wal_autocheckpoint = 0`, see `storage::sqlite`), and one task per database runs a
//! `PASSIVE` checkpoint every [`EVERY`] on a connection of its own, on a blocking thread:
//! the same work, done between requests instead of inside one.
//!
//! A round holds the process's write slot (see [`Checkpointer::start`]): a checkpoint that runs
//! while a writer keeps appending never catches up, and the WAL, never started over, grows for as
//! long as writes keep coming (a first version without the slot left the load bench's process
//! about 50 MiB larger after seeding 100,000 cases, and its agenda rebuilds slower). `PASSIVE`
//! never waits for a SQLite lock and never blocks a reader; what it cannot copy yet (pages a
//! reader's snapshot still needs) is copied on a later round, as SQLite's own automatic
//! checkpoints would do. When the database is closed, SQLite checkpoints the WAL as the last
//! connection closes; an erasure truncates the WAL itself at once (so that no frame of the
//! erased rows stays behind), on the write slot, so that no round of this task is in its way.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StorageError;

/// How often the WAL is checkpointed. At the group commit's peak (some 3,000 submissions a
/// second, a few pages each) a round copies a few hundred pages while it holds the write slot;
/// rounds every 250 ms held it four times as long and took the submissions' p99 from about 20
/// to 40–70 ms in the load bench. An idle round costs a wake-up, the free write slot and a look
/// at the WAL's header.
pub(crate) const EVERY: Duration = Duration::from_millis(50);

/// The checkpointing task of one database file; stopped when dropped.
pub(crate) struct Checkpointer {
    task: tokio::task::JoinHandle<()>,
}

impl Checkpointer {
    /// Starts checkpointing `path` (which must exist: the pools opened it first).
    /// Each round holds `write_slot`'s one connection (the process's write slot), so that no
    /// write of this process appends to the WAL while it is copied: the round completes, and the
    /// next write starts the WAL over instead of growing it.
    pub(crate) fn start(
        path: PathBuf,
        busy_timeout: Duration,
        write_slot: sqlx::SqlitePool,
    ) -> Result<Self, StorageError> {
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        conn.busy_timeout(busy_timeout)
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        let conn = Arc::new(Mutex::new(conn));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let slot = match write_slot.acquire().await {
                    Ok(slot) => slot,
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "WAL checkpoint: no write slot");
                        continue;
                    }
                };
                let conn = conn.clone();
                let done = tokio::task::spawn_blocking(move || checkpoint(&conn)).await;
                drop(slot);
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "WAL checkpoint failed"),
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint task failed"),
                }
            }
        });
        Ok(Checkpointer { task })
    }
}

impl Checkpointer {
    /// Stops the task (the database is closing).
    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One `PASSIVE` checkpoint (blocking).
fn checkpoint(conn: &Mutex<Connection>) -> Result<(), String> {
    let conn = conn
        .lock()
        .map_err(|_| "checkpoint connection poisoned".to_owned())?;
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .map_err(|e| e.to_string())
}
