//! The store of both backends: sqlx's pool of the backend the URL names, the macros that run one
//! body on either, transactions, connection settings and migrations.
//!
//! Queries are written once: sqlx binds `$1`, `$2`… on PostgreSQL and SQLite alike, and both
//! accept `RETURNING`, `ON CONFLICT`, `string_agg` and `IS NOT DISTINCT FROM`. A body run with
//! [`db_run!`] or [`tx_run!`] is expanded once per backend. Their per-backend form is kept for
//! the statements whose SQL really differs (JSON aggregates, PostgreSQL's arrays of a session's
//! deferrals, row locks), and [`Store::pick`] chooses between two texts of one statement that
//! differ only in a function's name (`instr`, `strpos`).

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

use std::sync::{Arc, RwLock};

use super::StorageError;
use crate::config::{Backend, DatabaseUrl, PoolConfig};
use crate::crypto::{AuditMac, AuditMacSource};

/// sqlx's pool of one backend.
#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The storage of the service, on either backend (see [`super::Database`]).
pub struct Store {
    pub(crate) pool: Pool,
    /// The keyring's audit MAC key in force: every appended entry carries its code
    /// ([`crate::crypto::audit_mac`]); appends are refused until it is set.
    pub(crate) audit_mac: AuditMacSlot,
    /// The last write probe: when it ran and the failure it met, if any.
    probe: tokio::sync::Mutex<Option<(std::time::Instant, Option<String>)>>,
}

/// Bytes the write probe writes: sixteen pages, more than a note or a referral needs, so that
/// the probe fails no later than the writes it stands for.
const PROBE_BYTES: usize = 64 * 1024;

/// How long a write probe's outcome answers readiness checks.
const PROBE_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a store finds the key that authenticates new audit entries (shared with its
/// transactions).
pub(crate) type AuditMacSlot = Arc<RwLock<Option<Arc<dyn AuditMacSource>>>>;

/// Runs `body` on the store's pool, bound to `$c` (`&SqlitePool` or `&PgPool`): one body
/// expanded for each backend. The second form names one body per backend, for SQL that differs.
macro_rules! db_run {
    ($store:expr, $c:ident => $body:expr) => {
        match &$store.pool {
            $crate::storage::sql::Pool::Sqlite($c) => $body,
            $crate::storage::sql::Pool::Postgres($c) => $body,
        }
    };
    ($store:expr, sqlite $s:ident => $sqlite:expr, postgres $p:ident => $postgres:expr $(,)?) => {
        match &$store.pool {
            $crate::storage::sql::Pool::Sqlite($s) => $sqlite,
            $crate::storage::sql::Pool::Postgres($p) => $postgres,
        }
    };
}
pub(crate) use db_run;

/// Runs `body` inside the transaction `$tx` (a `&mut Tx`), its connection bound to `$c`
/// (`&mut SqliteConnection` or `&mut PgConnection`), as [`db_run!`] does on the pool.
macro_rules! tx_run {
    ($tx:expr, $c:ident => $body:expr) => {
        match &mut ($tx).conn {
            $crate::storage::sql::TxConn::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::storage::sql::TxConn::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
    ($tx:expr, sqlite $s:ident => $sqlite:expr, postgres $p:ident => $postgres:expr $(,)?) => {
        match &mut ($tx).conn {
            $crate::storage::sql::TxConn::Sqlite(t) => {
                let $s = &mut **t;
                $sqlite
            }
            $crate::storage::sql::TxConn::Postgres(t) => {
                let $p = &mut **t;
                $postgres
            }
        }
    };
}
pub(crate) use tx_run;

/// A write transaction. On SQLite it starts with `BEGIN IMMEDIATE`: it takes the database's
/// write lock at once (waiting up to the busy timeout for another writer), so that no
/// transaction reads a snapshot it then cannot write on.
pub(crate) struct Tx {
    pub(crate) conn: TxConn,
    audit_mac: AuditMacSlot,
}

/// The transaction of one backend.
pub(crate) enum TxConn {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Store {
    pub(crate) fn new(pool: Pool) -> Self {
        Self {
            pool,
            audit_mac: Arc::new(RwLock::new(None)),
            probe: tokio::sync::Mutex::new(None),
        }
    }

    /// The write probe, run at most once per [`PROBE_FRESH`] (concurrent callers wait for the
    /// one running and share its outcome).
    pub(crate) async fn probe_write_cached(&self) -> Result<(), StorageError> {
        let mut last = self.probe.lock().await;
        if let Some((at, outcome)) = last.as_ref()
            && at.elapsed() < PROBE_FRESH
        {
            return match outcome {
                None => Ok(()),
                Some(cause) => Err(StorageError::Unavailable(cause.clone())),
            };
        }
        let outcome = self.probe_write_now().await;
        *last = Some((
            std::time::Instant::now(),
            outcome.as_ref().err().map(|e| e.to_string()),
        ));
        outcome
    }

    async fn probe_write_now(&self) -> Result<(), StorageError> {
        let id = uuid::Uuid::new_v4().to_string();
        let pad = vec![0u8; PROBE_BYTES];
        let mut tx = self.begin().await?;
        tx_run!(&mut tx, c => {
            sqlx::query("INSERT INTO write_probe (id, pad) VALUES ($1, $2)")
                .bind(&id)
                .bind(&pad)
                .execute(&mut *c)
                .await?;
            sqlx::query("DELETE FROM write_probe WHERE id = $1")
                .bind(&id)
                .execute(&mut *c)
                .await?;
        });
        tx.commit().await
    }

    /// Begins a write transaction.
    pub(crate) async fn begin(&self) -> Result<Tx, StorageError> {
        let conn = match &self.pool {
            Pool::Sqlite(p) => TxConn::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(p) => TxConn::Postgres(p.begin().await?),
        };
        Ok(Tx {
            conn,
            audit_mac: self.audit_mac.clone(),
        })
    }

    /// From now on, new audit entries carry codes by the key `source` holds.
    pub(crate) fn set_audit_mac(&self, source: Arc<dyn AuditMacSource>) {
        let mut slot = match self.audit_mac.write() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        *slot = Some(source);
    }

    /// This backend's text of a statement written twice from one template (a function's name,
    /// a JSON aggregate), its binds and decoding being written once.
    pub(crate) fn pick(&self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => sqlite,
            Pool::Postgres(_) => postgres,
        }
    }

    pub(crate) fn backend_of(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    pub(crate) async fn run_migrations(&self) -> Result<(), StorageError> {
        let done = match &self.pool {
            Pool::Sqlite(p) => sqlx::migrate!("migrations/sqlite").run(p).await,
            Pool::Postgres(p) => sqlx::migrate!("migrations/postgres").run(p).await,
        };
        done.map_err(|e| StorageError::Migration(e.to_string()))
    }

    /// Closes the pool; on SQLite, first moves everything the write-ahead log holds into the
    /// database file and empties the log (`wal_checkpoint(TRUNCATE)`), so that a copy of the
    /// database file alone is complete after a stop, even while another process (a backup
    /// tool, a `sqlite3` shell) keeps the file open and SQLite's own checkpoint at the last
    /// close does not run.
    pub(crate) async fn close_pool(&self) {
        if let Pool::Sqlite(p) = &self.pool {
            match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(p)
                .await
            {
                Ok((0, _, _)) => tracing::info!("write-ahead log checkpointed and truncated"),
                Ok((_, frames, done)) => tracing::warn!(
                    frames,
                    checkpointed = done,
                    "the write-ahead log could not be wholly checkpointed at stop (a reader held it)"
                ),
                Err(e) => tracing::warn!(error = %e, "write-ahead log checkpoint at stop failed"),
            }
        }
        db_run!(self, p => p.close().await)
    }
}

impl Tx {
    /// Commits; a connection lost during the `COMMIT` is [`StorageError::UnknownOutcome`].
    pub(crate) async fn commit(self) -> Result<(), StorageError> {
        match self.conn {
            TxConn::Sqlite(t) => t.commit().await,
            TxConn::Postgres(t) => t.commit().await,
        }
        .map_err(StorageError::from_commit)
    }

    pub(crate) async fn rollback(self) -> Result<(), StorageError> {
        match self.conn {
            TxConn::Sqlite(t) => t.rollback().await?,
            TxConn::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }

    /// The key that authenticates the entries this transaction appends.
    pub(crate) fn audit_mac(&self) -> Result<AuditMac, StorageError> {
        let slot = match self.audit_mac.read() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        slot.as_ref()
            .and_then(|source| source.current_audit_mac())
            .ok_or_else(|| {
                StorageError::Other(
                    "no audit MAC key: the keyring must be opened before the audit log is written"
                        .into(),
                )
            })
    }
}

/// `journal_size_limit` of SQLite connections, in bytes: a write-ahead log that a burst (an
/// agenda build, a long reader holding checkpoints back) made larger is cut back to this when
/// it starts over.
const WAL_SIZE_LIMIT: i64 = 32 * 1024 * 1024;

/// The page size of the databases the service creates (SQLite's default): `pool.sqlite_max_size`
/// is counted in these.
const SQLITE_PAGE_SIZE: u64 = 4096;

/// The settings of every SQLite connection (the journal mode, WAL, is the file's).
fn sqlite_pragmas(pool: &PoolConfig) -> Vec<(&'static str, String)> {
    let mut pragmas = vec![
        ("foreign_keys", "ON".into()),
        // FULL by default: the write-ahead log is synced at every commit, so an acknowledged
        // write survives a power loss, not only a crash of the process. Group commit
        // (`services::audit_log`) keeps it to one sync per batch.
        ("synchronous", pool.sqlite_synchronous.as_str().into()),
        ("secure_delete", "ON".into()),
        // Statement journals and transient tables in memory: a statement writing thousands of
        // rows (an agenda's deferrals) otherwise creates, writes and deletes a temporary file
        // outside the data folder for its statement journal.
        ("temp_store", "MEMORY".into()),
        ("journal_size_limit", WAL_SIZE_LIMIT.to_string()),
    ];
    if let Some(max) = pool.sqlite_max_size {
        // A per-connection setting: every connection of the pool gets it.
        pragmas.push((
            "max_page_count",
            (max / SQLITE_PAGE_SIZE).max(1).to_string(),
        ));
    }
    pragmas
}

/// The pool's check of a connection handed back: one still inside a transaction is closed, not
/// reused. sqlx counts a transaction as open until its `COMMIT` or `ROLLBACK` succeeds; when
/// SQLite has already rolled it back by itself (after "database or disk is full", an I/O
/// error), the `ROLLBACK` of the dropped transaction fails and the count stays at one. Reused,
/// such a connection refused every later `BEGIN IMMEDIATE` (writes failed until a restart), and
/// one whose transaction SQLite kept open held the write lock ("database is locked" for every
/// other connection). Closing it rolls back whatever SQLite still holds and frees the lock.
fn release_check<C: sqlx::Connection>(
    conn: &mut C,
) -> futures_util::future::BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        // The rollback of a transaction dropped unfinished is queued on the connection: a
        // round trip after it settles the count before it is read again.
        conn.ping().await?;
        if conn.is_in_transaction() {
            tracing::warn!("a database connection left inside a failed transaction was closed");
            return Ok(false);
        }
        Ok(true)
    })
}

impl Store {
    /// Opens the backend the URL names, waiting at most `pool.connect_timeout` for it.
    pub async fn connect(url: &DatabaseUrl, pool: &PoolConfig) -> Result<Self, StorageError> {
        let backend = url
            .backend()
            .map_err(|e| StorageError::Other(e.to_string()))?;
        let connecting = async {
            match backend {
                Backend::Sqlite => Self::connect_sqlite(url, pool).await,
                Backend::Postgres => Self::connect_postgres(url, pool).await,
            }
        };
        match tokio::time::timeout(pool.connect_timeout, connecting).await {
            Ok(done) => done,
            Err(_) => Err(StorageError::Unavailable(format!(
                "no answer within {}",
                humantime::format_duration(pool.connect_timeout)
            ))),
        }
    }

    async fn connect_sqlite(url: &DatabaseUrl, pool: &PoolConfig) -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::from_str(url.expose())
            .map_err(|e| StorageError::Other(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(pool.acquire_timeout)
            .statement_cache_capacity(pool.statement_cache_capacity);
        let options = sqlite_pragmas(pool)
            .into_iter()
            .fold(options, |o, (name, value)| o.pragma(name, value));
        prepare_file(options.get_filename())?;
        // No liveness ping before handing out a connection (sqlx's default): a SQLite connection
        // is a file handle of this process that no server can close.
        let pool = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .after_release(|conn, _| release_check(conn))
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .max_lifetime(pool.max_lifetime)
            .idle_timeout(pool.idle_timeout)
            .connect_with(options)
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        Ok(Store::new(Pool::Sqlite(pool)))
    }

    async fn connect_postgres(url: &DatabaseUrl, pool: &PoolConfig) -> Result<Self, StorageError> {
        let millis = |d: std::time::Duration| d.as_millis().to_string();
        let options = PgConnectOptions::from_str(url.expose())
            .map_err(|e| StorageError::Other(format!("invalid PostgreSQL URL: {e}")))?
            .application_name("cellule")
            .statement_cache_capacity(pool.statement_cache_capacity)
            // Server-side bounds: a statement stuck on a lock or a plan gone wrong is cancelled
            // (answered 503), and a session abandoned inside a transaction frees its locks.
            .options([
                ("statement_timeout", millis(pool.statement_timeout)),
                (
                    "idle_in_transaction_session_timeout",
                    millis(pool.statement_timeout * 3),
                ),
            ]);
        // sqlx tests a connection before handing it out: one the server ended (a restart,
        // `pg_terminate_backend`, `idle_session_timeout`) is replaced instead of failing a
        // request. The test runs within `acquire_timeout`, as does opening a new connection: a
        // server that accepts connections and never answers is a 503 after that long.
        let pool = PgPoolOptions::new()
            .after_release(|conn, _| release_check(conn))
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .max_lifetime(pool.max_lifetime)
            .idle_timeout(pool.idle_timeout)
            .connect_with(options)
            .await
            .map_err(|e| StorageError::Unavailable(crate::config::one_line(&e.to_string())))?;
        Ok(Store::new(Pool::Postgres(pool)))
    }
}

/// Creates the database's folder (0700) and file (0600) before SQLite does, so that neither is
/// ever readable by other local users.
fn prepare_file(path: &std::path::Path) -> Result<(), StorageError> {
    if path.as_os_str().is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every SQLite connection of the pool gets the settings of the one list, and the file is
    /// in WAL mode.
    #[tokio::test]
    async fn sqlite_connections_get_the_settings() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("settings.db");
        let store = Store::connect(
            &DatabaseUrl::new(format!("sqlite://{}", path.display())),
            &PoolConfig::default(),
        )
        .await
        .expect("database");
        let Pool::Sqlite(pool) = &store.pool else {
            panic!("a SQLite URL opens SQLite");
        };
        let expected = [
            ("foreign_keys", "1".to_owned()),
            // FULL: an acknowledged write survives a power loss.
            ("synchronous", "2".to_owned()),
            ("secure_delete", "1".to_owned()),
            ("temp_store", "2".to_owned()),
            ("journal_size_limit", WAL_SIZE_LIMIT.to_string()),
            ("journal_mode", "wal".to_owned()),
        ];
        // Two connections held at once: the second is a new one, set up like the first.
        let mut first = pool.acquire().await.expect("connection");
        let mut second = pool.acquire().await.expect("connection");
        for conn in [&mut first, &mut second] {
            for (name, value) in &expected {
                let v: String =
                    sqlx::query_scalar(&format!("SELECT CAST({name} AS TEXT) FROM pragma_{name}"))
                        .fetch_one(&mut **conn)
                        .await
                        .expect("pragma");
                assert_eq!((*name, &v), (*name, value));
            }
        }
        drop((first, second));
        store.close_pool().await;
    }
}
