//! What can go wrong in storage, classified for the HTTP layer.

/// What can go wrong in storage, classified for the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database cannot be reached or is overloaded: answered 503, retried by clients.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The connection was lost while a transaction was being committed: it may or may not
    /// have been. Answered 503 with a problem saying so (a retry with the same idempotency key
    /// is safe).
    #[error("commit outcome unknown: {0}")]
    UnknownOutcome(String),
    /// A uniqueness rule was violated.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The referenced parent row does not exist.
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// A stored value no longer passes validation.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("database error: {0}")]
    Other(String),
}

impl StorageError {
    /// Classifies a driver error; a unique violation is the conflict `conflict`.
    pub(crate) fn from_sqlx(e: sqlx::Error, conflict: &'static str) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
            // A connection cut while it is being set up (e.g. during the TLS negotiation).
            | sqlx::Error::Protocol(_) => StorageError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => {
                if db.is_unique_violation() {
                    return StorageError::Conflict(conflict);
                }
                let code = db.code().unwrap_or_default();
                if is_transient(&code, db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some())
                {
                    StorageError::Unavailable(e.to_string())
                } else {
                    StorageError::Other(e.to_string())
                }
            }
            _ => StorageError::Other(e.to_string()),
        }
    }
}

impl StorageError {
    /// Classifies the failure of a `COMMIT`: when the connection itself failed (an I/O or
    /// protocol error, PostgreSQL's connection class 08 or an administrator's termination,
    /// 57P01-02), the server may have committed before the answer was lost, so the outcome is
    /// unknown. Any other failure (SQLite's, a serialisation failure) is a known rollback.
    pub(crate) fn from_commit(e: sqlx::Error) -> Self {
        let lost = match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                code.starts_with("08") || code == "57P01" || code == "57P02"
            }
            _ => false,
        };
        if lost {
            StorageError::UnknownOutcome(e.to_string())
        } else {
            StorageError::from(e)
        }
    }
}

/// Whether a database's error code says the database cannot serve now but may later: answered
/// 503 with `Retry-After`, never acknowledged.
///
/// PostgreSQL: class 08 (connection), 57P01-03 (shutdown / cannot connect now), 57014 (a
/// statement cancelled by `statement_timeout`), 53xxx (insufficient resources: disk full, out of
/// memory, too many connections), 58xxx (system errors such as I/O), 25006 (a read-only
/// transaction: a standby). SQLite, on the primary code of its extended code: 5 (BUSY), 6
/// (LOCKED), 13 (FULL: "database or disk is full"), 10 (IOERR), 8 (READONLY), 14 (CANTOPEN).
fn is_transient(code: &str, sqlite: bool) -> bool {
    if sqlite {
        let primary = code.parse::<i32>().map(|c| c & 0xff).unwrap_or(0);
        return matches!(primary, 5 | 6 | 8 | 10 | 13 | 14);
    }
    code.starts_with("08")
        || code.starts_with("57P")
        || code == "57014"
        || code.starts_with("53")
        || code.starts_with("58")
        || code == "25006"
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        StorageError::from_sqlx(e, "unique constraint")
    }
}

/// A foreign-key violation on insert means the parent cellule does not exist.
pub(crate) fn not_found_on_fk(e: sqlx::Error) -> StorageError {
    if let sqlx::Error::Database(db) = &e
        && db.is_foreign_key_violation()
    {
        return StorageError::NotFound("cellule");
    }
    StorageError::from(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection lost during `COMMIT` is an unknown outcome; other failures are not.
    #[test]
    fn commit_failures_are_classified() {
        let lost = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(matches!(
            StorageError::from_commit(lost),
            StorageError::UnknownOutcome(_)
        ));
        let protocol = sqlx::Error::Protocol("unexpected end of stream".into());
        assert!(matches!(
            StorageError::from_commit(protocol),
            StorageError::UnknownOutcome(_)
        ));
        assert!(matches!(
            StorageError::from_commit(sqlx::Error::PoolTimedOut),
            StorageError::Unavailable(_)
        ));
        assert!(matches!(
            StorageError::from_commit(sqlx::Error::RowNotFound),
            StorageError::Other(_)
        ));
    }

    #[test]
    fn disk_full_and_io_errors_are_transient_on_both_backends() {
        // SQLite reports extended codes: SQLITE_IOERR_WRITE (778), SQLITE_BUSY_SNAPSHOT (517).
        for code in ["13", "778", "10", "5", "517", "6", "8", "14"] {
            assert!(is_transient(code, true), "{code}");
        }
        for code in ["19", "2067", "787", "1"] {
            assert!(!is_transient(code, true), "{code}");
        }
        for code in ["53100", "08006", "57P01", "57014", "58030", "25006"] {
            assert!(is_transient(code, false), "{code}");
        }
        for code in ["23505", "23503", "42P01", "40001"] {
            assert!(!is_transient(code, false), "{code}");
        }
    }
}
