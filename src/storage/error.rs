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
                // PostgreSQL: class 08 (connection), 57P01-03 (shutdown / cannot connect now),
                // 53xxx (insufficient resources). SQLite: 5 (BUSY), 6 (LOCKED).
                if code.starts_with("08")
                    || code.starts_with("57P")
                    || code.starts_with("53")
                    || code == "5"
                    || code == "6"
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
}
