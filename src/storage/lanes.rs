//! Connections for the hot single statements, handed back without a round trip.
//!
//! sqlx's pool tests every connection as it goes back (`PoolConnection`'s release sends a
//! `Sync` and waits for the server's `ReadyForQuery` on PostgreSQL, or makes one more hop to a
//! SQLite connection's worker thread): one more round trip per query, after the answer, paid by
//! every request. The statements every request makes (the token check's membership lookup, the
//! case read, the duplicate check, the group commit's one-statement batches) take their
//! connection here instead. A connection goes back to the idle list only when its statement
//! finished ([`Lease::finish`]): with its answer read, or refused by a constraint (a unique,
//! foreign key, not-null or check violation), the connection is in a known state. A lease
//! dropped before that (the request's future was cancelled mid-statement) or finished with any
//! other error (input/output, protocol, any other error of the database, such as the `FATAL`
//! notice of a server shutting down or ending an idle session) closes its connection instead:
//! nothing is left for the next request to drain. Transactions keep sqlx's pool, whose release
//! test also rolls back what a cancelled one left open.
//!
//! At most `max` connections are open or leased at once (the `[pool]` settings: the same limit
//! as sqlx's pool beside it); waiting for one, connecting included, is bounded by the acquire
//! timeout (503 when it passes, as for the pool). Like sqlx's pool by default, a connection idle
//! for 10 minutes or open for 30 is closed instead of being handed out (a firewall or the
//! server's `idle_session_timeout` may have dropped it meanwhile). A connection the server
//! closed while idle without a word fails its next statement as unavailable (503, the client
//! retries) and is closed, as with the pool, which does not test connections before handing
//! them out either. Once the set is closed, connections are closed as their leases end.

/// Runs one statement (`query.fetch(connection)`) on a leased connection of `lanes`, inside an
/// async function returning `Result<_, StorageError>`; evaluates to the statement's result.
macro_rules! on_lane {
    ($lanes:expr, $query:expr, $fetch:ident) => {{
        let mut lease = $lanes.acquire().await?;
        let result = $query.$fetch(lease.conn()?).await;
        lease.finish(result)
    }};
}
pub(crate) use on_lane;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::{ConnectOptions, Connection};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::StorageError;

/// sqlx's pool defaults: an idle connection older than this is closed, not handed out.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// A connection opened longer ago than this is closed, not handed out.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// A bounded set of connections of one database, each used by one statement at a time.
pub struct Lanes<C: Connection> {
    options: <C as Connection>::Options,
    idle: Mutex<Vec<Idle<C>>>,
    permits: Semaphore,
    acquire_timeout: Duration,
    idle_timeout: Duration,
    max_lifetime: Duration,
}

struct Idle<C> {
    conn: C,
    opened: Instant,
    since: Instant,
}

/// One connection, leased for one statement (or a few, awaited one after the other).
pub struct Lease<'a, C: Connection> {
    conn: Option<C>,
    opened: Instant,
    lanes: &'a Lanes<C>,
    _permit: SemaphorePermit<'a>,
}

impl<C: Connection> Lanes<C> {
    pub fn new(options: <C as Connection>::Options, max: u32, acquire_timeout: Duration) -> Self {
        let max = usize::try_from(max.max(1)).unwrap_or(1);
        Self {
            options,
            idle: Mutex::new(Vec::with_capacity(max)),
            permits: Semaphore::new(max),
            acquire_timeout,
            idle_timeout: IDLE_TIMEOUT,
            max_lifetime: MAX_LIFETIME,
        }
    }

    /// The same with other retirement ages (for tests).
    #[cfg(test)]
    fn with_ages(mut self, idle_timeout: Duration, max_lifetime: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self.max_lifetime = max_lifetime;
        self
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle<C>>> {
        // The list holds whole connections, pushed and popped: one left by a panicking thread
        // is as good as any.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An idle connection, or a new one while fewer than `max` are open.
    pub async fn acquire(&self) -> Result<Lease<'_, C>, StorageError> {
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        let waited = tokio::time::timeout_at(deadline, self.permits.acquire()).await;
        let permit = match waited {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(StorageError::Unavailable("the database is closed".into())),
            Err(_) => {
                return Err(StorageError::Unavailable(format!(
                    "no database connection free within {}",
                    humantime::format_duration(self.acquire_timeout)
                )));
            }
        };
        loop {
            let idle = self.idle().pop();
            let Some(idle) = idle else { break };
            if idle.since.elapsed() < self.idle_timeout && idle.opened.elapsed() < self.max_lifetime
            {
                return Ok(Lease {
                    conn: Some(idle.conn),
                    opened: idle.opened,
                    lanes: self,
                    _permit: permit,
                });
            }
            // Too old: closed (dropping a connection closes its socket or its thread).
            drop(idle);
        }
        let connecting = self.options.connect();
        let conn = match tokio::time::timeout_at(deadline, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(StorageError::Unavailable(crate::config::one_line(
                    &e.to_string(),
                )));
            }
            Err(_) => {
                return Err(StorageError::Unavailable(format!(
                    "no connection to the database within {}",
                    humantime::format_duration(self.acquire_timeout)
                )));
            }
        };
        Ok(Lease {
            conn: Some(conn),
            opened: Instant::now(),
            lanes: self,
            _permit: permit,
        })
    }

    /// Closes every idle connection and refuses new leases; leased ones close when dropped.
    pub async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle());
        for idle in idle {
            let _ = idle.conn.close().await;
        }
    }
}

impl<C: Connection> Lease<'_, C> {
    /// The connection, to run statements on.
    pub fn conn(&mut self) -> Result<&mut C, StorageError> {
        self.conn
            .as_mut()
            .ok_or_else(|| StorageError::Other("a finished lease was used".into()))
    }

    /// Ends the lease after a statement's result: the connection goes back to the idle list if
    /// the statement ran to its end (an answer, or a constraint's refusal) and the set is not
    /// closed; it is closed otherwise. Returns the result unchanged.
    pub fn finish<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        let clean = match &result {
            Ok(_) | Err(sqlx::Error::RowNotFound) => true,
            Err(sqlx::Error::Database(e)) => !matches!(e.kind(), sqlx::error::ErrorKind::Other),
            Err(_) => false,
        };
        if clean
            && !self.lanes.permits.is_closed()
            && let Some(conn) = self.conn.take()
        {
            self.lanes.idle().push(Idle {
                conn,
                opened: self.opened,
                since: Instant::now(),
            });
        }
        result
    }
}

impl<C: Connection> Drop for Lease<'_, C> {
    fn drop(&mut self) {
        // Not finished: the statement may be half sent or half read. The connection is closed
        // by dropping it (PostgreSQL ends the session when the socket closes; a SQLite
        // connection's worker thread stops).
        drop(self.conn.take());
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::SqliteConnection;
    use sqlx::sqlite::SqliteConnectOptions;

    use super::*;

    fn lanes(dir: &tempfile::TempDir, max: u32) -> Lanes<SqliteConnection> {
        let url = format!("sqlite://{}", dir.path().join("lanes.db").display());
        let options = SqliteConnectOptions::from_str(&url)
            .map(|o| o.create_if_missing(true))
            .unwrap_or_else(|e| panic!("options: {e}"));
        Lanes::new(options, max, Duration::from_millis(100))
    }

    fn tempdir() -> Result<tempfile::TempDir, StorageError> {
        tempfile::tempdir().map_err(|e| StorageError::Other(e.to_string()))
    }

    /// Whether the connection leased is the one that created the temporary table `mark`
    /// (temporary tables live and die with their connection).
    async fn marked(lanes: &Lanes<SqliteConnection>) -> Result<bool, StorageError> {
        let q = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM sqlite_temp_master WHERE name = 'mark'",
        );
        Ok(on_lane!(lanes, q, fetch_one)? == 1)
    }

    /// Leases a connection, marks it and hands it back.
    async fn mark(lanes: &Lanes<SqliteConnection>) -> Result<(), StorageError> {
        let mut lease = lanes.acquire().await?;
        let q = sqlx::query("CREATE TEMP TABLE mark (x UNIQUE)");
        let done = q.execute(lease.conn()?).await;
        lease.finish(done)?;
        Ok(())
    }

    #[tokio::test]
    async fn a_finished_lease_hands_its_connection_back() -> Result<(), StorageError> {
        let dir = tempdir()?;
        let lanes = lanes(&dir, 1);
        mark(&lanes).await?;
        assert!(marked(&lanes).await?, "the same connection is leased again");
        // A constraint's refusal leaves the connection as it was: it goes back too.
        for _ in 0..2 {
            let mut lease = lanes.acquire().await?;
            let q = sqlx::query("INSERT INTO mark (x) VALUES (1)");
            let done = q.execute(lease.conn()?).await;
            let _ = lease.finish(done);
        }
        assert!(marked(&lanes).await?, "kept after a unique violation");
        Ok(())
    }

    #[tokio::test]
    async fn an_unfinished_or_failed_lease_closes_its_connection() -> Result<(), StorageError> {
        let dir = tempdir()?;
        let lanes = lanes(&dir, 1);
        mark(&lanes).await?;
        let lease = lanes.acquire().await?;
        drop(lease);
        assert!(
            !marked(&lanes).await?,
            "a new connection, not the one dropped"
        );
        // An input/output error closes it.
        mark(&lanes).await?;
        let lease = lanes.acquire().await?;
        let broken: Result<(), sqlx::Error> = Err(sqlx::Error::Io(std::io::Error::other("cut")));
        assert!(lease.finish(broken).is_err());
        assert!(!marked(&lanes).await?, "closed after an input/output error");
        // So does an error of the database other than a constraint's (a server's FATAL notice
        // comes this way).
        mark(&lanes).await?;
        let mut lease = lanes.acquire().await?;
        let q = sqlx::query("SELECT * FROM no_such_table");
        let refused = q.execute(lease.conn()?).await;
        assert!(matches!(
            lease.finish(refused),
            Err(sqlx::Error::Database(_))
        ));
        assert!(
            !marked(&lanes).await?,
            "closed after another database error"
        );
        Ok(())
    }

    #[tokio::test]
    async fn old_connections_are_retired() -> Result<(), StorageError> {
        let dir = tempdir()?;
        let short = Duration::from_millis(50);
        let long = Duration::from_secs(3600);
        let idle = lanes(&dir, 1).with_ages(short, long);
        mark(&idle).await?;
        assert!(marked(&idle).await?, "reused while young");
        tokio::time::sleep(2 * short).await;
        assert!(!marked(&idle).await?, "closed after idling too long");
        let aged = lanes(&dir, 1).with_ages(long, short);
        mark(&aged).await?;
        tokio::time::sleep(2 * short).await;
        assert!(!marked(&aged).await?, "closed after living too long");
        Ok(())
    }

    #[tokio::test]
    async fn leases_and_waits_are_bounded_and_closing_ends_them() -> Result<(), StorageError> {
        let dir = tempdir()?;
        let lanes = lanes(&dir, 1);
        let held = lanes.acquire().await?;
        match lanes.acquire().await {
            Err(StorageError::Unavailable(m)) => assert!(m.contains("no database connection free")),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("a second lease beyond the limit"),
        }
        drop(held);
        let lease = lanes.acquire().await?;
        lanes.close().await;
        // A lease that ends after the close does not put its connection back.
        lease.finish(Ok(()))?;
        assert!(lanes.idle().is_empty(), "a connection kept after the close");
        assert!(matches!(
            lanes.acquire().await,
            Err(StorageError::Unavailable(m)) if m.contains("closed")
        ));
        Ok(())
    }
}
