//! Connections for the hot single statements, handed back without a round trip.
//!
//! sqlx's pool tests every connection as it goes back (`PoolConnection`'s release sends a
//! `Sync` and waits for the server's `ReadyForQuery` on PostgreSQL, or makes one more hop to a
//! SQLite connection's worker thread): one more round trip per query, after the answer, paid by
//! every request. The statements every request makes (the token check's membership lookup, the
//! case read, the duplicate check, the group commit's one-statement batches) take their
//! connection here instead. A connection goes back to the idle list only when its statement
//! finished ([`Lease::finish`]): with its answer read, or refused by the database itself (a
//! constraint), the connection is in a known state. A lease dropped before that (the request's
//! future was cancelled mid-statement) or finished with any other error (input/output, protocol,
//! a closed socket) closes its connection instead: nothing is left for the next request to
//! drain. Transactions keep sqlx's pool, whose release test also rolls back what a cancelled
//! one left open.
//!
//! At most `max` connections are open or leased at once (the `[pool]` settings: the same limit
//! as sqlx's pool beside it, so a process opens at most twice `max_connections`); waiting for
//! one is bounded by the acquire timeout (503 when it passes, as for the pool). A connection the
//! server closed while idle fails its next statement as unavailable (503, the client retries) and
//! is closed, as with the pool, which does not test connections before handing them out either.

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
use std::time::Duration;

use sqlx::{ConnectOptions, Connection};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::StorageError;

/// A bounded set of connections of one database, each used by one statement at a time.
pub struct Lanes<C: Connection> {
    options: <C as Connection>::Options,
    idle: Mutex<Vec<C>>,
    permits: Semaphore,
    acquire_timeout: Duration,
}

/// One connection, leased for one statement (or a few, awaited one after the other).
pub struct Lease<'a, C: Connection> {
    conn: Option<C>,
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
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<C>> {
        // The list holds whole connections, pushed and popped: one left by a panicking thread
        // is as good as any.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An idle connection, or a new one while fewer than `max` are open.
    pub async fn acquire(&self) -> Result<Lease<'_, C>, StorageError> {
        let waited = tokio::time::timeout(self.acquire_timeout, self.permits.acquire()).await;
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
        let idle = self.idle().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let connecting = self.options.connect();
                match tokio::time::timeout(self.acquire_timeout, connecting).await {
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
                }
            }
        };
        Ok(Lease {
            conn: Some(conn),
            lanes: self,
            _permit: permit,
        })
    }

    /// Closes every idle connection and refuses new leases; leased ones close when dropped.
    pub async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle());
        for conn in idle {
            let _ = conn.close().await;
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
    /// the statement ran to its end (an answer, or an error of the database itself); it is
    /// closed otherwise. Returns the result unchanged.
    pub fn finish<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        let clean = match &result {
            Ok(_) => true,
            Err(e) => matches!(e, sqlx::Error::Database(_) | sqlx::Error::RowNotFound),
        };
        if clean && let Some(conn) = self.conn.take() {
            self.lanes.idle().push(conn);
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

    /// Whether the connection leased is the one that created the temporary table `mark`
    /// (temporary tables live and die with their connection).
    async fn marked(lanes: &Lanes<SqliteConnection>) -> Result<bool, StorageError> {
        let q = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM sqlite_temp_master WHERE name = 'mark'",
        );
        Ok(on_lane!(lanes, q, fetch_one)? == 1)
    }

    async fn mark(lease: &mut Lease<'_, SqliteConnection>) -> Result<(), StorageError> {
        sqlx::query("CREATE TEMP TABLE mark (x)")
            .execute(lease.conn()?)
            .await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_finished_lease_hands_its_connection_back() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Other(e.to_string()))?;
        let lanes = lanes(&dir, 1);
        let mut lease = lanes.acquire().await?;
        mark(&mut lease).await?;
        lease.finish(Ok(()))?;
        assert!(marked(&lanes).await?, "the same connection is leased again");
        // A refusal by the database itself leaves the connection as it was: it goes back too.
        let mut lease = lanes.acquire().await?;
        let refused = sqlx::query("SELECT * FROM no_such_table")
            .execute(lease.conn()?)
            .await;
        assert!(matches!(
            lease.finish(refused),
            Err(sqlx::Error::Database(_))
        ));
        assert!(marked(&lanes).await?, "kept after a database error");
        Ok(())
    }

    #[tokio::test]
    async fn an_unfinished_lease_closes_its_connection() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Other(e.to_string()))?;
        let lanes = lanes(&dir, 1);
        let mut lease = lanes.acquire().await?;
        mark(&mut lease).await?;
        drop(lease);
        assert!(
            !marked(&lanes).await?,
            "a new connection, not the one dropped"
        );
        // Any error other than the database's own closes the connection as well.
        let mut lease = lanes.acquire().await?;
        mark(&mut lease).await?;
        let broken: Result<(), sqlx::Error> = Err(sqlx::Error::Io(std::io::Error::other("cut")));
        assert!(lease.finish(broken).is_err());
        assert!(!marked(&lanes).await?, "closed after an input/output error");
        Ok(())
    }

    #[tokio::test]
    async fn leases_are_bounded_and_waiting_is_bounded() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Other(e.to_string()))?;
        let lanes = lanes(&dir, 1);
        let held = lanes.acquire().await?;
        match lanes.acquire().await {
            Err(StorageError::Unavailable(m)) => assert!(m.contains("no database connection free")),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("a second lease beyond the limit"),
        }
        drop(held);
        let lease = lanes.acquire().await?;
        drop(lease);
        lanes.close().await;
        assert!(matches!(
            lanes.acquire().await,
            Err(StorageError::Unavailable(m)) if m.contains("closed")
        ));
        Ok(())
    }
}
