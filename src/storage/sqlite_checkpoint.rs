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
//! A round copies the WAL back beside the writers, and once the WAL is long finishes on the
//! process's write slot so that the WAL starts over (see [`Checkpointer::start`]). `PASSIVE`
//! never waits for a SQLite lock and never blocks a reader; what it cannot copy yet (pages a
//! reader's snapshot still needs) is copied on a later round, as SQLite's own automatic
//! checkpoints would do. When the database is closed, SQLite checkpoints the WAL as the last
//! connection closes; an erasure truncates the WAL itself at once (so that no frame of the
//! erased rows stays behind), between rounds ([`Checkpointer::exclusive`]: SQLite refuses a
//! checkpoint while another runs) and on the write slot.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StorageError;

/// How often the WAL is checkpointed. A round without the write slot blocks no writer and no
/// reader; it copies what the writers appended since the last one.
pub(crate) const EVERY: Duration = Duration::from_millis(50);

/// From this many frames in the WAL (16 MiB of 4 KiB pages), a round finishes on the write
/// slot so that the next write starts the WAL over (see [`Checkpointer::start`]).
pub(crate) const RESTART_FRAMES: i64 = 4096;

/// `journal_size_limit` of every connection, in bytes: a WAL file that a burst made larger is
/// cut back to this when the WAL starts over (twice [`RESTART_FRAMES`] pages of 4 KiB: 32 MiB).
pub(crate) const WAL_SIZE_LIMIT: i64 = 2 * RESTART_FRAMES * 4096;

/// The checkpointing task of one database file; stopped when dropped.
pub(crate) struct Checkpointer {
    task: tokio::task::JoinHandle<()>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// What a `PASSIVE` checkpoint reports: frames in the WAL, frames copied back.
#[derive(Debug, Clone, Copy)]
struct Round {
    log: i64,
    copied: i64,
}

impl Checkpointer {
    /// Starts checkpointing `path` (which must exist: the pools opened it first).
    ///
    /// Each round copies the WAL back without holding the process's write slot
    /// (`write_slot`'s one connection): writes go on meanwhile and append after what the round
    /// copies. Such a round cannot start the WAL over (a write always arrived after it), so
    /// under continuous writes the WAL would grow for as long as they keep coming (a first
    /// version without the slot left the load bench's process about 50 MiB larger after
    /// seeding 100,000 cases). Once the WAL holds [`RESTART_FRAMES`] frames, the round runs a
    /// second `PASSIVE` checkpoint holding the write slot: it copies only what was appended
    /// during the first one, and the next write starts the WAL over, unless a reader still
    /// reads a snapshot from before (its pages cannot be copied yet): then a later round takes
    /// the slot again. When the WAL starts over, its file is cut back to
    /// `journal_size_limit` (`storage::sqlite`) if a burst made it larger. Holding the slot for
    /// every whole round (copy and two `fsync`s: 6–14 ms every 50 ms at the load bench's
    /// peak of submissions) made each group-commit batch wait 0.6–0.8 ms on average for it.
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
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        let my_turn = turn.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let _turn = my_turn.lock().await;
                let first = match blocking(&conn).await {
                    Ok(round) => round,
                    Err(e) => {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                        continue;
                    }
                };
                if first.log < RESTART_FRAMES {
                    continue;
                }
                let slot = match write_slot.acquire().await {
                    Ok(slot) => slot,
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "WAL checkpoint: no write slot");
                        continue;
                    }
                };
                let last = blocking(&conn).await;
                drop(slot);
                match last {
                    Ok(r) if r.copied < r.log => tracing::debug!(
                        frames = r.log,
                        copied = r.copied,
                        "WAL not fully copied back: a reader's snapshot still needs frames"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
                }
            }
        });
        Ok(Checkpointer { task, turn })
    }

    /// Waits until no round is running and keeps rounds from starting while the guard lives:
    /// for a checkpoint of another kind (SQLite refuses a second checkpoint while one runs).
    pub(crate) async fn exclusive(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.turn.lock().await
    }

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

/// One `PASSIVE` checkpoint on a blocking thread.
async fn blocking(conn: &Arc<Mutex<Connection>>) -> Result<Round, String> {
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || checkpoint(&conn))
        .await
        .map_err(|e| e.to_string())?
}

/// One `PASSIVE` checkpoint (blocking).
fn checkpoint(conn: &Mutex<Connection>) -> Result<Round, String> {
    let conn = conn
        .lock()
        .map_err(|_| "checkpoint connection poisoned".to_owned())?;
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok(Round {
            log: r.get(1)?,
            copied: r.get(2)?,
        })
    })
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

    use super::*;

    /// Under writes that never pause, the WAL still starts over: its file stays well under a
    /// third of the pages written (twelve times [`RESTART_FRAMES`]). (Rounds that never hold
    /// the write slot let it grow with every write.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_under_continuous_writes() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("wal.db");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .expect("URL")
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", "0");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .expect("database");
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .execute(&writer)
            .await
            .expect("table");
        let checkpointer =
            Checkpointer::start(path.clone(), Duration::from_secs(5), writer.clone())
                .expect("checkpointer");
        let wal_pages =
            || std::fs::metadata(path.with_file_name("wal.db-wal")).map_or(0, |m| m.len() / 4096);
        // Each row takes an overflow page and part of a leaf, and the file's first page changes
        // as the file grows: at least 3 frames per commit.
        let body = vec![7u8; 6000];
        let rows = 12 * RESTART_FRAMES / 3;
        let mut largest = 0;
        for i in 0..rows {
            sqlx::query("INSERT INTO t (id, body) VALUES (?1, ?2)")
                .bind(i)
                .bind(&body)
                .execute(&writer)
                .await
                .expect("insert");
            if i % 64 == 0 {
                largest = largest.max(wal_pages());
            }
        }
        checkpointer.stop();
        let written = 3 * rows;
        // Started over, the WAL holds RESTART_FRAMES plus what comes during a round and up to
        // the next tick; never started over, it holds everything written.
        assert!(
            largest < u64::try_from(written / 3).expect("positive"),
            "the WAL grew to {largest} pages while at least {written} were written: it never started over"
        );
    }
}
