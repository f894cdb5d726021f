//! The database pool's and connections' settings.

use std::time::Duration;

use serde::Deserialize;

/// Database pool and connection settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    pub max_connections: u32,
    /// How long a request waits for a connection before answering 503. It bounds a connection
    /// being opened and the liveness check of an idle PostgreSQL connection, so a database that
    /// accepts connections but never answers is a 503 after this long. Also SQLite's busy timeout.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// How long start-up waits for the database before giving up.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// PostgreSQL: the server cancels a statement running longer than this
    /// (`statement_timeout`), and ends a session left idle inside a transaction for longer
    /// (`idle_in_transaction_session_timeout`). Also the deadline of `/readyz`'s write probe.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Prepared statements each connection keeps (sqlx's per-connection cache; on PostgreSQL
    /// each also holds memory in the server's backend).
    pub statement_cache_capacity: usize,
    /// A connection is closed and replaced after this long, releasing the buffers it grew.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// An idle connection above the pool's minimum is closed after this long.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// SQLite's `synchronous` setting: `full` (default) syncs the write-ahead log at every
    /// commit, so an acknowledged write survives a power loss; `normal` survives a crash of the
    /// process only.
    pub sqlite_synchronous: SqliteSynchronous,
    /// SQLite: the largest size of the database file in bytes (`max_page_count`); past it a
    /// write fails cleanly ("database or disk is full", answered 503) while the disk still has
    /// room for the write-ahead log, the logs and the keyring. Unset: the disk is the limit.
    pub sqlite_max_size: Option<u64>,
}

/// SQLite's `synchronous` levels the service accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    Normal,
    Full,
    Extra,
}

impl SqliteSynchronous {
    /// The pragma's value.
    pub fn as_str(self) -> &'static str {
        match self {
            SqliteSynchronous::Normal => "NORMAL",
            SqliteSynchronous::Full => "FULL",
            SqliteSynchronous::Extra => "EXTRA",
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(10),
            statement_cache_capacity: 64,
            max_lifetime: Duration::from_secs(30 * 60),
            idle_timeout: Duration::from_secs(5 * 60),
            sqlite_synchronous: SqliteSynchronous::Full,
            sqlite_max_size: None,
        }
    }
}
