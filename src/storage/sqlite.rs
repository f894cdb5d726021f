//! SQLite backend: the embedded default. One file under the data directory, WAL journal,
//! foreign keys on, created with 0600 permissions.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use super::lanes::{Lanes, on_lane};
use super::sqlite_batch::{BatchWriter, OwnedCase};
use super::sqlite_checkpoint::Checkpointer;
use super::sqlite_direct::DirectReader;
use super::{
    AUDIT_INSERT_ROWS, AgendaItemRecord, CASE_INSERT_ROWS, CaseFilter, CaseRead, CaseRecord,
    CaseWrite, CelluleAccess, CelluleAccessRow, CelluleRow, CharterRecord, Committed, Database,
    DecisionRecord, Deferrals, DeferredRecord, EligibleCase, MembershipRow,
    MembershipWithCelluleRow, NewAgendaItem, NoteRecord, RetentionSettings, Rewrapped,
    SessionRecord, StatsCase, StorageError, SubmitAccessRow, Tombstone, Transition, WrappedKey,
    collect, same_cases,
};
use crate::audit::{
    Checkpoint, CheckpointKind, Draft, Entry, Filter, GENESIS, Head, Link, Purged, Signer,
};
use crate::config::{Backend, DatabaseUrl, PoolConfig};
use crate::domain::{Cellule, CelluleSlug, Membership, MembershipSpec, NewCellule, Subject};

/// The columns of a session, in `SessionRecord` order.
macro_rules! session_columns {
    () => {
        "id, cellule, occurrence_key, starts_at, local_start, time_zone, duration_minutes, location, \
         holiday, status, agenda_built_at, published_at, created_at"
    };
}

/// The columns of an audit entry, in `Entry` order.
macro_rules! entry_columns {
    () => {
        "cellule, seq, at_us, actor, actor_role, actor_org, action, case_id, case_ref, target_kind, \
         target_id, outcome, reason, request_id, cases, prev_hash, hash"
    };
}

/// The read of one case with its history and possible duplicates ([`Database::case_access`]),
/// its parameters named by the arguments (cellule, case id, start of the agenda window).
macro_rules! case_read_query {
    ($cellule:literal, $id:literal, $since:literal) => {
        concat!(
            "SELECT ",
            case_columns!("group_concat", $since),
            ", \
               (SELECT json_group_array(json_array(e.id, e.from_status, e.to_status, \
                    CASE WHEN e.reason IS NULL THEN NULL ELSE hex(e.reason) END, e.actor, e.at)) \
                  FROM case_events e WHERE e.case_id = c.id) AS history, \
               (SELECT json_group_array(json_array(d.reference, d.submitted_at)) FROM cases d \
                  WHERE ",
            open_duplicates!("c.cellule", "c.linkage_key"),
            ") AS duplicates \
             FROM cases c JOIN data_keys k ON k.id = c.id WHERE c.cellule = ",
            $cellule,
            " AND c.id = ",
            $id
        )
    };
}

/// Runs one of the reads every request makes on a lane (`storage::lanes`), or on the pool for
/// an in-memory database; evaluates to the statement's result.
macro_rules! hot_read {
    ($self:ident, $query:expr, $fetch:ident) => {
        match &$self.lanes {
            Some(lanes) => on_lane!(lanes, $query, $fetch),
            None => $query.$fetch(&$self.pool).await,
        }
    };
}

pub struct SqliteDatabase {
    /// Reads (any number at once: WAL readers do not block each other or the writer).
    pool: SqlitePool,
    /// Reader connections for the statements every request makes, handed back without sqlx's
    /// release hop to the connection's thread (`storage::lanes`; none for an in-memory
    /// database, which exists once per connection: those reads take the pool).
    lanes: Option<Lanes<sqlx::SqliteConnection>>,
    /// Writes, one connection: writers of this process queue here, in order, instead of
    /// sleeping in SQLite's busy handler (several processes on one file still meet there).
    writer: SqlitePool,
    /// The direct reader of the database file for verification and the agenda build (none for
    /// an in-memory database).
    direct: Option<std::sync::Arc<DirectReader>>,
    /// The group commit's writer (`storage::sqlite_batch`; none for an in-memory database).
    batch: Option<std::sync::Arc<BatchWriter>>,
    /// The background WAL checkpoints (none for an in-memory database).
    checkpointer: Option<Checkpointer>,
}

/// The settings of every connection this backend opens: the sqlx pools, the group commit's
/// writer (`storage::sqlite_batch`) and the direct reader (`storage::sqlite_direct`). The
/// journal mode (WAL) is the file's, set once by the pools.
pub(crate) fn connection_pragmas() -> [(&'static str, String); 6] {
    [
        ("foreign_keys", "ON".into()),
        ("synchronous", "NORMAL".into()),
        ("secure_delete", "ON".into()),
        // Statement journals and transient tables in memory: a statement writing thousands of
        // rows (an agenda's deferrals) otherwise creates, writes and deletes a temporary file
        // outside the data folder for its statement journal.
        ("temp_store", "MEMORY".into()),
        // Checkpoints run in the background (`storage::sqlite_checkpoint`), not inside the
        // commit that happens to fill the WAL.
        ("wal_autocheckpoint", "0".into()),
        // When the WAL starts over after a burst (an agenda build, a long reader holding the
        // restart back), its file is cut back instead of keeping its size.
        (
            "journal_size_limit",
            super::sqlite_checkpoint::WAL_SIZE_LIMIT.to_string(),
        ),
    ]
}

/// [`connection_pragmas`] on a `rusqlite` connection.
pub(crate) fn apply_pragmas(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let sql: String = connection_pragmas()
        .iter()
        .map(|(name, value)| format!("PRAGMA {name} = {value};"))
        .collect();
    conn.execute_batch(&sql)
}

impl SqliteDatabase {
    pub async fn connect(url: &DatabaseUrl, pool: &PoolConfig) -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::from_str(url.expose())
            .map_err(|e| StorageError::Other(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(pool.acquire_timeout);
        let options = connection_pragmas()
            .into_iter()
            .fold(options, |o, (name, value)| o.pragma(name, value));
        prepare_file(options.get_filename())?;
        let in_memory = options.get_filename().to_str() == Some(":memory:");
        let direct = (!in_memory).then(|| {
            std::sync::Arc::new(DirectReader::new(
                options.get_filename().to_path_buf(),
                pool.acquire_timeout,
            ))
        });
        let batch = (!in_memory).then(|| {
            std::sync::Arc::new(BatchWriter::new(
                options.get_filename().to_path_buf(),
                pool.acquire_timeout,
            ))
        });
        // No liveness ping before handing out a connection (sqlx's default): a SQLite connection
        // is a file handle of this process that no server can close, and the ping is one more
        // hop to the connection's worker thread per query.
        let readers = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(options.clone())
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        // An in-memory database exists once per connection: it keeps one pool.
        let writer = if in_memory {
            readers.clone()
        } else {
            SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(1)
                .acquire_timeout(pool.acquire_timeout)
                .connect_with(options.clone())
                .await
                .map_err(|e| StorageError::Unavailable(e.to_string()))?
        };
        // Started once the pools have created the file and switched it to WAL.
        let checkpointer = if in_memory {
            None
        } else {
            Some(Checkpointer::start(
                options.get_filename().to_path_buf(),
                pool.acquire_timeout,
                writer.clone(),
            )?)
        };
        let lanes = (!in_memory)
            .then(|| Lanes::new(options.clone(), pool.max_connections, pool.acquire_timeout));
        Ok(Self {
            pool: readers,
            lanes,
            writer,
            direct,
            batch,
            checkpointer,
        })
    }

    /// The pool, for tests and benchmarks that need raw access.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Creates the database's folder (0700) and file (0600) before SQLite does, so that neither is
/// ever readable by other local users.
fn prepare_file(path: &std::path::Path) -> Result<(), StorageError> {
    if path.as_os_str().is_empty() || path.to_str() == Some(":memory:") {
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

#[async_trait]
impl Database for SqliteDatabase {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StorageError> {
        sqlx::migrate!("migrations/sqlite")
            .run(&self.pool)
            .await
            .map_err(|e| StorageError::Migration(e.to_string()))
    }

    async fn create_cellule(
        &self,
        new: &NewCellule,
        now: DateTime<Utc>,
    ) -> Result<Cellule, StorageError> {
        let conflict = |e| StorageError::from_sqlx(e, "a cellule with this slug or code exists");
        let mut tx = self.writer.begin().await?;
        let row: CelluleRow = sqlx::query_as(
            "INSERT INTO cellules (slug, name, code, created_at) VALUES (?1, ?2, ?3, ?4) \
             RETURNING slug, name, code, created_at",
        )
        .bind(new.slug.as_str())
        .bind(new.name.as_str())
        .bind(new.code.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict)?;
        sqlx::query(
            "INSERT INTO charters (cellule, version, text, created_at) VALUES (?1, 1, ?2, ?3)",
        )
        .bind(new.slug.as_str())
        .bind(&new.charter)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn get_cellule(&self, slug: &CelluleSlug) -> Result<Option<Cellule>, StorageError> {
        let row: Option<CelluleRow> =
            sqlx::query_as("SELECT slug, name, code, created_at FROM cellules WHERE slug = ?1")
                .bind(slug.as_str())
                .fetch_optional(&self.pool)
                .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn list_cellules(&self) -> Result<Vec<Cellule>, StorageError> {
        let rows: Vec<CelluleRow> =
            sqlx::query_as("SELECT slug, name, code, created_at FROM cellules ORDER BY slug")
                .fetch_all(&self.pool)
                .await?;
        collect(rows)
    }

    async fn put_membership(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
        spec: &MembershipSpec,
        now: DateTime<Utc>,
    ) -> Result<(Membership, bool), StorageError> {
        let row: MembershipRow = sqlx::query_as(
            "INSERT INTO memberships \
               (cellule, subject, role, sphere, organisation, guest, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
             ON CONFLICT (cellule, subject) DO UPDATE SET \
               role = excluded.role, sphere = excluded.sphere, \
               organisation = excluded.organisation, guest = excluded.guest, \
               updated_at = excluded.updated_at \
             RETURNING cellule, subject, role, sphere, organisation, guest, created_at, updated_at",
        )
        .bind(cellule.as_str())
        .bind(subject.as_str())
        .bind(spec.role.as_str())
        .bind(spec.sphere.map(|s| s.as_str()))
        .bind(spec.organisation.as_ref().map(|o| o.as_str()))
        .bind(spec.guest)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(super::not_found_on_fk)?;
        let created = row.created_at == now;
        Ok((row.try_into()?, created))
    }

    async fn delete_membership(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query("DELETE FROM memberships WHERE cellule = ?1 AND subject = ?2")
            .bind(cellule.as_str())
            .bind(subject.as_str())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn cellule_access(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
    ) -> Result<Option<CelluleAccess>, StorageError> {
        let row: Option<CelluleAccessRow> = hot_read!(
            self,
            sqlx::query_as(concat!(
                "SELECT ",
                access_columns!("?2"),
                " FROM ",
                access_join!("?2"),
                " WHERE c.slug = ?1"
            ))
            .bind(cellule.as_str())
            .bind(subject.as_str()),
            fetch_optional
        )?;
        row.map(TryInto::try_into).transpose()
    }

    async fn case_access(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
        id: &str,
        agenda_since: DateTime<Utc>,
    ) -> Result<Option<(CelluleAccess, Option<CaseRead>)>, StorageError> {
        let row = hot_read!(
            self,
            sqlx::query(concat!(
                "SELECT ",
                access_columns!("?2"),
                ", x.* FROM ",
                access_join!("?2"),
                " LEFT JOIN (",
                case_read_query!("?1", "?3", "?4"),
                ") x ON 1 WHERE c.slug = ?1"
            ))
            .bind(cellule.as_str())
            .bind(subject.as_str())
            .bind(id)
            .bind(agenda_since),
            fetch_optional
        )?;
        row.as_ref().map(super::case_access_row).transpose()
    }

    async fn submit_access(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
        linkage_key: &str,
    ) -> Result<Option<(CelluleAccess, Vec<String>)>, StorageError> {
        let row: Option<SubmitAccessRow> = hot_read!(
            self,
            sqlx::query_as(concat!(
                "SELECT ",
                access_columns!("?2"),
                ", (SELECT json_group_array(d.reference ORDER BY d.submitted_at) FROM cases d \
                    WHERE ",
                open_duplicates!("c.slug", "?3"),
                ") AS duplicates FROM ",
                access_join!("?2"),
                " WHERE c.slug = ?1"
            ))
            .bind(cellule.as_str())
            .bind(subject.as_str())
            .bind(linkage_key),
            fetch_optional
        )?;
        row.map(TryInto::try_into).transpose()
    }

    async fn list_members(&self, cellule: &CelluleSlug) -> Result<Vec<Membership>, StorageError> {
        let rows: Vec<MembershipRow> = sqlx::query_as(
            "SELECT cellule, subject, role, sphere, organisation, guest, created_at, updated_at \
             FROM memberships WHERE cellule = ?1 ORDER BY subject",
        )
        .bind(cellule.as_str())
        .fetch_all(&self.pool)
        .await?;
        collect(rows)
    }

    async fn memberships_of(
        &self,
        subject: &Subject,
    ) -> Result<Vec<(Cellule, Membership)>, StorageError> {
        let rows: Vec<MembershipWithCelluleRow> = sqlx::query_as(
            "SELECT m.cellule, m.subject, m.role, m.sphere, m.organisation, m.guest, \
                    m.created_at, m.updated_at, \
                    c.name AS cellule_name, c.code AS cellule_code, \
                    c.created_at AS cellule_created_at \
             FROM memberships m JOIN cellules c ON c.slug = m.cellule \
             WHERE m.subject = ?1 ORDER BY m.cellule",
        )
        .bind(subject.as_str())
        .fetch_all(&self.pool)
        .await?;
        collect(rows)
    }

    async fn kek_checks(&self) -> Result<Vec<(i64, Vec<u8>)>, StorageError> {
        Ok(
            sqlx::query_as("SELECT version, check_value FROM kek_checks ORDER BY version")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn insert_kek_check(
        &self,
        version: i64,
        check: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO kek_checks (version, check_value, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(version)
        .bind(check)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn wrapped_key_counts(&self) -> Result<Vec<(i64, i64)>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT kek_version, COUNT(*) FROM data_keys GROUP BY kek_version ORDER BY kek_version",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn keys_not_on(&self, version: i64, limit: i64) -> Result<Vec<WrappedKey>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT id, cellule, case_id, kek_version, wrapped FROM data_keys \
             WHERE kek_version <> ?1 ORDER BY id LIMIT ?2",
        )
        .bind(version)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn replace_wrapped_keys(&self, batch: &[Rewrapped]) -> Result<(), StorageError> {
        let mut tx = self.writer.begin().await?;
        for key in batch {
            let done = sqlx::query("UPDATE data_keys SET kek_version = ?1, wrapped = ?2 WHERE id = ?3 AND kek_version = ?4")
                .bind(key.new_version)
                .bind(&key.wrapped)
                .bind(&key.id)
                .bind(key.old_version)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() != 1 {
                tx.rollback().await?;
                return Err(StorageError::Conflict(
                    "a key changed while being re-wrapped",
                ));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_wrapped_key(&self, id: &str) -> Result<Option<WrappedKey>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT id, cellule, case_id, kek_version, wrapped FROM data_keys WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn insert_wrapped_key_if_absent(&self, key: &WrappedKey) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO data_keys (id, cellule, case_id, kek_version, wrapped) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&key.id)
        .bind(&key.cellule)
        .bind(&key.case_id)
        .bind(key.kek_version)
        .bind(&key.wrapped)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn commit_batch(
        &self,
        cases: &[CaseWrite<'_>],
        entries: &[(&str, &[Draft])],
    ) -> Result<Committed, StorageError> {
        if let Some(batch) = self.batch.clone() {
            let owned: Vec<OwnedCase> = cases
                .iter()
                .map(|w| OwnedCase {
                    case: w.case.clone(),
                    key: w.key.clone(),
                    audit: w.audit.clone(),
                })
                .collect();
            let entries: Vec<(String, Vec<Draft>)> = entries
                .iter()
                .map(|(c, d)| ((*c).to_owned(), d.to_vec()))
                .collect();
            // The process's one write slot is held while the batch is written elsewhere.
            let slot = self.writer.acquire().await?;
            let out = tokio::task::spawn_blocking(move || batch.commit(&owned, &entries))
                .await
                .map_err(|e| StorageError::Other(format!("batch writer task: {e}")))?;
            drop(slot);
            return out;
        }
        // An in-memory database (no file to open a second connection on): through sqlx.
        let mut tx = self.writer.begin().await?;
        // The counters first: the transaction takes the write lock at once.
        let mut references = vec![String::new(); cases.len()];
        for g in super::counter_groups(cases) {
            let n = i64::try_from(g.members.len()).unwrap_or(i64::MAX);
            let last: i64 = sqlx::query_scalar(super::sqlite_batch::COUNTER_BUMP)
                .bind(g.cellule)
                .bind(i64::from(g.year))
                .bind(n)
                .fetch_one(&mut *tx)
                .await
                .map_err(super::not_found_on_fk)?;
            super::assign_references(&g, last, &mut references);
        }
        let rows: Vec<(&CaseWrite<'_>, &String)> = cases.iter().zip(&references).collect();
        for chunk in rows.chunks(CASE_INSERT_ROWS) {
            for mut q in super::case_inserts::<sqlx::Sqlite>(chunk) {
                q.build().execute(&mut *tx).await?;
            }
        }
        let mut heads = Vec::new();
        for (cellule, drafts) in super::audit_groups(cases, &references, entries) {
            let head = append(&mut tx, &cellule, drafts).await?;
            heads.push((cellule, head));
        }
        tx.commit().await?;
        Ok(Committed { references, heads })
    }

    async fn open_cases_with_linkage(
        &self,
        cellule: &str,
        linkage_key: &str,
    ) -> Result<Vec<String>, StorageError> {
        Ok(hot_read!(
            self,
            sqlx::query_scalar(concat!(
                "SELECT d.reference FROM cases d WHERE ",
                open_duplicates!("?1", "?2"),
                " ORDER BY d.submitted_at"
            ))
            .bind(cellule)
            .bind(linkage_key),
            fetch_all
        )?)
    }

    async fn get_case(
        &self,
        cellule: &str,
        id: &str,
        agenda_since: DateTime<Utc>,
    ) -> Result<Option<CaseRecord>, StorageError> {
        Ok(hot_read!(
            self,
            sqlx::query_as(concat!(
                "SELECT ",
                case_columns!("group_concat", "?3"),
                " \
             FROM cases c JOIN data_keys k ON k.id = c.id WHERE c.cellule = ?1 AND c.id = ?2"
            ))
            .bind(cellule)
            .bind(id)
            .bind(agenda_since),
            fetch_optional
        )?)
    }

    async fn list_cases(
        &self,
        cellule: &str,
        f: &CaseFilter,
    ) -> Result<Vec<CaseRecord>, StorageError> {
        let (after_at, after_id) = match &f.after {
            Some((at, id)) => (Some(*at), Some(id.as_str())),
            None => (None, None),
        };
        Ok(sqlx::query_as(
            concat!(
                "SELECT ",
                case_columns!("group_concat", "?14"),
                " \
             FROM cases c JOIN data_keys k ON k.id = c.id \
             WHERE c.cellule = ?1 \
               AND (?2 IS NULL OR c.status = ?2) \
               AND (?3 IS NULL OR c.urgency = ?3) \
               AND (?4 IS NULL OR c.needs LIKE ?4) \
               AND (?5 IS NULL OR c.sector = ?5) \
               AND (?6 IS NULL OR c.commune = ?6) \
               AND (?7 IS NULL OR c.submitted_at >= ?7) \
               AND (?8 IS NULL OR c.submitted_at < ?8) \
               AND (?9 IS NULL OR c.routed_org = ?9 OR (?15 AND EXISTS (SELECT 1 FROM agenda_publications a \
                    WHERE a.case_id = c.id AND a.session_at >= ?14)) \
                  OR (?16 IS NOT NULL AND EXISTS (SELECT 1 FROM agenda_publications a \
                    WHERE a.case_id = c.id AND a.session_at >= ?14 AND instr(a.invited, ?16) > 0))) \
               AND (?10 IS NULL OR c.referrer = ?10) \
               AND (?11 IS NULL OR c.submitted_at < ?11 OR (c.submitted_at = ?11 AND c.id < ?12)) \
             ORDER BY c.submitted_at DESC, c.id DESC LIMIT ?13"
            ),
        )
        .bind(cellule)
        .bind(&f.status)
        .bind(&f.urgency)
        .bind(&f.need_pattern)
        .bind(&f.sector)
        .bind(&f.commune)
        .bind(f.submitted_from)
        .bind(f.submitted_before)
        .bind(&f.routed_org)
        .bind(&f.referrer)
        .bind(after_at)
        .bind(after_id)
        .bind(f.limit)
        .bind(f.agenda_since)
        .bind(f.or_on_agenda)
        .bind(f.invited.as_deref())
        .fetch_all(&self.pool)
        .await?)
    }

    async fn transition_case(
        &self,
        t: &Transition,
        audit: Draft,
    ) -> Result<Option<Head>, StorageError> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE cases SET status = ?1, updated_at = ?2, \
               decided_at = CASE WHEN ?1 IN ('accepted', 'declined') THEN ?2 ELSE decided_at END, \
               closed_at = CASE WHEN ?1 = 'closed' THEN ?2 ELSE closed_at END, \
               follow_up_date = COALESCE(?3, follow_up_date), \
               routed_org = COALESCE(?4, routed_org) \
             WHERE cellule = ?5 AND id = ?6 AND status = ?7",
        )
        .bind(&t.to)
        .bind(t.at)
        .bind(t.follow_up_date)
        .bind(&t.routed_org)
        .bind(&t.cellule)
        .bind(&t.case_id)
        .bind(&t.from)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO case_events (id, case_id, from_status, to_status, reason, actor, at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(&t.event_id)
        .bind(&t.case_id)
        .bind(&t.from)
        .bind(&t.to)
        .bind(&t.reason)
        .bind(&t.actor)
        .bind(t.at)
        .execute(&mut *tx)
        .await?;
        let head = append(&mut tx, &t.cellule, vec![audit]).await?;
        tx.commit().await?;
        Ok(Some(head))
    }

    async fn insert_note(
        &self,
        cellule: &str,
        n: &NoteRecord,
        audit: Draft,
    ) -> Result<Head, StorageError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO notes (id, case_id, author, author_role, author_sphere, author_organisation, audience, \
               corrects, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .bind(&n.id)
        .bind(&n.case_id)
        .bind(&n.author)
        .bind(&n.author_role)
        .bind(&n.author_sphere)
        .bind(&n.author_organisation)
        .bind(&n.audience)
        .bind(&n.corrects)
        .bind(&n.body)
        .bind(n.created_at)
        .execute(&mut *tx)
        .await?;
        let head = append(&mut tx, cellule, vec![audit]).await?;
        tx.commit().await?;
        Ok(head)
    }

    async fn list_notes(
        &self,
        case_id: &str,
        audiences: &[&str],
    ) -> Result<Vec<NoteRecord>, StorageError> {
        let pick = |i: usize| audiences.get(i).copied();
        Ok(hot_read!(self, sqlx::query_as(
            "SELECT id, case_id, author, author_role, author_sphere, author_organisation, audience, corrects, body, \
               created_at FROM notes WHERE case_id = ?1 AND audience IN (?2, ?3, ?4) ORDER BY created_at, id",
        )
        .bind(case_id)
        .bind(pick(0))
        .bind(pick(1))
        .bind(pick(2)), fetch_all)?)
    }

    async fn get_note(
        &self,
        case_id: &str,
        note_id: &str,
    ) -> Result<Option<NoteRecord>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT id, case_id, author, author_role, author_sphere, author_organisation, audience, corrects, body, \
               created_at FROM notes WHERE case_id = ?1 AND id = ?2",
        )
        .bind(case_id)
        .bind(note_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn erase_case(
        &self,
        cellule: &str,
        id: &str,
        tomb: &Tombstone,
        mut audit: Draft,
    ) -> Result<Option<(String, Head)>, StorageError> {
        let mut tx = self.writer.begin().await?;
        let reference: Option<String> = sqlx::query_scalar(
            "DELETE FROM cases WHERE cellule = ?1 AND id = ?2 RETURNING reference",
        )
        .bind(cellule)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(reference) = reference else {
            tx.rollback().await?;
            return Ok(None);
        };
        // The deferral tables hold no foreign keys (migration 0009): their rows go here.
        for table in ["case_deferrals", "agenda_deferrals"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE case_id = ?1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO erasures (id, cellule, case_id, reference, erased_by, reason, erased_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(&tomb.id)
        .bind(cellule)
        .bind(id)
        .bind(&reference)
        .bind(&tomb.erased_by)
        .bind(tomb.reason)
        .bind(tomb.erased_at)
        .execute(&mut *tx)
        .await?;
        audit.case_ref = Some(reference.clone());
        let head = append(&mut tx, cellule, vec![audit]).await?;
        tx.commit().await?;
        // Deleted pages are zeroed (secure_delete); fold the WAL back so that no frame of the
        // erased rows stays in the -wal file. Between the background checkpoint rounds
        // (`storage::sqlite_checkpoint`: SQLite makes a checkpoint give up while another holds
        // its lock) and on the write slot (no write in the way); the erasure is committed
        // either way, so a failure is only reported.
        let _between_rounds = match &self.checkpointer {
            Some(c) => Some(c.exclusive().await),
            None => None,
        };
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.writer)
            .await
        {
            Ok((0, _, _)) => {}
            Ok(_) => tracing::warn!(
                "WAL not truncated after an erasure: a reader, or another process's checkpoint, was in the way"
            ),
            Err(e) => tracing::warn!(error = %e, "WAL not truncated after an erasure"),
        }
        Ok(Some((reference, head)))
    }

    async fn erasures(
        &self,
        cellule: &str,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT reference, reason, erased_at FROM erasures WHERE cellule = ?1 ORDER BY erased_at, reference",
        )
        .bind(cellule)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn retention_settings(&self) -> Result<Vec<RetentionSettings>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT slug, retention_closed_months, retention_declined_months FROM cellules ORDER BY slug",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn set_retention(
        &self,
        cellule: &str,
        closed_months: i64,
        declined_months: i64,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE cellules SET retention_closed_months = ?1, retention_declined_months = ?2 WHERE slug = ?3",
        )
        .bind(closed_months)
        .bind(declined_months)
        .bind(cellule)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn expired_cases(
        &self,
        cellule: &str,
        closed_before: DateTime<Utc>,
        declined_before: DateTime<Utc>,
    ) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM cases WHERE cellule = ?1 AND \
               ((status = 'closed' AND closed_at < ?2) OR (status = 'declined' AND decided_at < ?3)) ORDER BY id",
        )
        .bind(cellule)
        .bind(closed_before)
        .bind(declined_before)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn current_charter(&self, cellule: &str) -> Result<Option<CharterRecord>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT version, text, created_at FROM charters WHERE cellule = ?1 ORDER BY version DESC LIMIT 1",
        )
        .bind(cellule)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn add_charter(
        &self,
        cellule: &str,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StorageError> {
        sqlx::query_scalar(
            "INSERT INTO charters (cellule, version, text, created_at) \
             VALUES (?1, (SELECT COALESCE(MAX(version), 0) + 1 FROM charters WHERE cellule = ?1), ?2, ?3) \
             RETURNING version",
        )
        .bind(cellule)
        .bind(text)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(super::not_found_on_fk)
    }

    async fn has_accepted_charter(
        &self,
        cellule: &str,
        subject: &str,
        version: i64,
    ) -> Result<bool, StorageError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM charter_acceptances WHERE cellule = ?1 AND subject = ?2 AND version = ?3",
        )
        .bind(cellule)
        .bind(subject)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn accept_charter(
        &self,
        cellule: &str,
        subject: &str,
        version: i64,
        now: DateTime<Utc>,
        audit: Draft,
    ) -> Result<Head, StorageError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO charter_acceptances (cellule, subject, version, accepted_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (cellule, subject, version) DO NOTHING",
        )
        .bind(cellule)
        .bind(subject)
        .bind(version)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let head = append(&mut tx, cellule, vec![audit]).await?;
        tx.commit().await?;
        Ok(head)
    }

    async fn get_schedule(&self, cellule: &str) -> Result<Option<String>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT document FROM schedules WHERE cellule = ?1")
                .bind(cellule)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn put_schedule(
        &self,
        cellule: &str,
        document: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO schedules (cellule, document, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (cellule) DO UPDATE SET document = ?2, updated_at = ?3",
        )
        .bind(cellule)
        .bind(document)
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(super::not_found_on_fk)?;
        Ok(())
    }

    async fn get_directory(&self, cellule: &str) -> Result<Option<String>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT document FROM routing_directories WHERE cellule = ?1")
                .bind(cellule)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn put_directory(
        &self,
        cellule: &str,
        document: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO routing_directories (cellule, document, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (cellule) DO UPDATE SET document = ?2, updated_at = ?3",
        )
        .bind(cellule)
        .bind(document)
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(super::not_found_on_fk)?;
        Ok(())
    }

    async fn insert_sessions(
        &self,
        sessions: &[SessionRecord],
    ) -> Result<Vec<SessionRecord>, StorageError> {
        let mut tx = self.writer.begin().await?;
        let mut inserted = Vec::new();
        for s in sessions {
            let row: Option<SessionRecord> = sqlx::query_as(concat!(
                "INSERT INTO sessions (id, cellule, occurrence_key, starts_at, local_start, time_zone, \
                   duration_minutes, location, holiday, status, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                 ON CONFLICT (cellule, occurrence_key) DO NOTHING RETURNING ",
                session_columns!()
            ))
            .bind(&s.id)
            .bind(&s.cellule)
            .bind(s.occurrence_key)
            .bind(s.starts_at)
            .bind(&s.local_start)
            .bind(&s.time_zone)
            .bind(s.duration_minutes)
            .bind(&s.location)
            .bind(&s.holiday)
            .bind(&s.status)
            .bind(s.created_at)
            .fetch_optional(&mut *tx)
            .await
            .map_err(super::not_found_on_fk)?;
            inserted.extend(row);
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn list_sessions(
        &self,
        cellule: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<SessionRecord>, StorageError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE cellule = ?1 AND (?2 IS NULL OR starts_at >= ?2) \
               AND (?3 IS NULL OR starts_at < ?3) ORDER BY starts_at, id"
        ))
        .bind(cellule)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn get_session(
        &self,
        cellule: &str,
        id: &str,
    ) -> Result<Option<SessionRecord>, StorageError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE cellule = ?1 AND id = ?2"
        ))
        .bind(cellule)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn cancel_session(
        &self,
        cellule: &str,
        id: &str,
        items: &[String],
        reverts: &[Transition],
        audit: Vec<Draft>,
    ) -> Result<Option<Head>, StorageError> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET status = 'cancelled' WHERE cellule = ?1 AND id = ?2 AND status = 'planned'",
        )
        .bind(cellule)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        let decided: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM decisions WHERE session_id = ?1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        if decided > 0 {
            tx.rollback().await?;
            return Err(StorageError::Conflict(
                "decisions are recorded for this session",
            ));
        }
        let current: Vec<String> =
            sqlx::query_scalar("SELECT case_id FROM agenda_items WHERE session_id = ?1")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        if !same_cases(&current, items) {
            tx.rollback().await?;
            return Err(StorageError::Conflict("the agenda changed meanwhile"));
        }
        // A published agenda's deferrals were counted: the count is undone with it.
        sqlx::query(
            "UPDATE case_deferrals SET times = times - 1 WHERE case_id IN \
             (SELECT case_id FROM agenda_deferrals WHERE session_id = ?1) \
             AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = ?1 AND s.published_at IS NOT NULL)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        for table in ["agenda_deferrals", "agenda_items", "agenda_publications"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE session_id = ?1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        for t in reverts {
            if !move_case(&mut tx, t).await? {
                tx.rollback().await?;
                return Err(StorageError::Conflict(
                    "a case of this agenda changed meanwhile",
                ));
            }
        }
        let head = append(&mut tx, cellule, audit).await?;
        tx.commit().await?;
        Ok(Some(head))
    }

    async fn eligible_cases(
        &self,
        cellule: &str,
        session_id: &str,
        due_by: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Vec<EligibleCase>, StorageError> {
        let Some(direct) = self.direct.clone() else {
            return Ok(sqlx::query_as(super::sqlite_direct::ELIGIBLE_CASES)
                .bind(cellule)
                .bind(session_id)
                .bind(due_by)
                .bind(now)
                .fetch_all(&self.pool)
                .await?);
        };
        let (cellule, session_id) = (cellule.to_owned(), session_id.to_owned());
        tokio::task::spawn_blocking(move || {
            direct.eligible_cases(&cellule, &session_id, due_by, now)
        })
        .await
        .map_err(|e| StorageError::Other(format!("eligible cases reader task: {e}")))?
    }

    async fn replace_agenda(
        &self,
        cellule: &str,
        session_id: &str,
        items: &[NewAgendaItem],
        deferred: Option<Deferrals<'_>>,
        now: DateTime<Utc>,
        audit: Vec<Draft>,
    ) -> Result<Head, StorageError> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET agenda_built_at = ?3 WHERE cellule = ?1 AND id = ?2 \
             AND status = 'planned' AND published_at IS NULL \
             AND (?4 = 0 OR agenda_built_at IS ?5)",
        )
        .bind(cellule)
        .bind(session_id)
        .bind(now)
        .bind(deferred.is_some())
        .bind(deferred.and_then(|d| d.read_at))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Err(StorageError::Conflict(super::AGENDA_MOVED));
        }
        // Every item's case in one statement.
        let ids: Vec<&str> = items.iter().map(|i| i.case_id.as_str()).collect();
        let ids_json = serde_json::to_string(&ids)
            .map_err(|e| StorageError::Other(format!("agenda ids: {e}")))?;
        let eligible: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM cases c WHERE c.cellule = ?1 \
               AND c.id IN (SELECT value FROM json_each(?2)) \
               AND c.status IN ('accepted', 'in_follow_up') \
               AND NOT EXISTS (SELECT 1 FROM agenda_items ai JOIN sessions s ON s.id = ai.session_id \
                 WHERE ai.case_id = c.id AND s.id <> ?3 AND s.status = 'planned' \
                   AND s.published_at IS NULL AND s.starts_at >= ?4)",
        )
        .bind(cellule)
        .bind(&ids_json)
        .bind(session_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        // A case listed twice counts once: refused too (the API refuses it before).
        if usize::try_from(eligible).ok() != Some(ids.len()) {
            tx.rollback().await?;
            return Err(StorageError::Conflict(super::ITEMS_MOVED));
        }
        if let Some(deferred) = deferred {
            let stored: i64 =
                sqlx::query_scalar("SELECT count(*) FROM agenda_deferrals WHERE session_id = ?1")
                    .bind(session_id)
                    .fetch_one(&mut *tx)
                    .await?;
            let json = |ids: &[&str]| {
                serde_json::to_string(ids)
                    .map_err(|e| StorageError::Other(format!("deferred ids: {e}")))
            };
            // Only the set changes: deferrals are counted when the agenda is published
            // (`publish_agenda`), not by a build the coordinator may still redo or edit.
            if usize::try_from(stored).ok() == Some(deferred.before.len()) {
                // The stored deferrals are `before`: only the difference is written.
                let (withdrawn, added) = deferred.difference();
                if !withdrawn.is_empty() {
                    with_ids(
                        &mut tx,
                        "DELETE FROM agenda_deferrals WHERE session_id = ?1 \
                         AND case_id IN (SELECT value FROM json_each(?2))",
                        session_id,
                        &json(&withdrawn)?,
                    )
                    .await?;
                }
                if !added.is_empty() {
                    with_ids(
                        &mut tx,
                        "INSERT INTO agenda_deferrals (session_id, case_id) \
                         SELECT ?1, value FROM json_each(?2)",
                        session_id,
                        &json(&added)?,
                    )
                    .await?;
                }
            } else {
                // The whole set compared in the database; one statement each, however many
                // cases are deferred.
                let mut all: Vec<&str> = deferred.all.iter().map(String::as_str).collect();
                all.sort_unstable(); // key order, as `difference` gives
                let ids = json(&all)?;
                for statement in [
                    "DELETE FROM agenda_deferrals WHERE session_id = ?1 \
                     AND case_id NOT IN (SELECT value FROM json_each(?2))",
                    "INSERT OR IGNORE INTO agenda_deferrals (session_id, case_id) \
                     SELECT ?1, value FROM json_each(?2)",
                ] {
                    with_ids(&mut tx, statement, session_id, &ids).await?;
                }
            }
        } else if !ids.is_empty() {
            // An edit that puts a deferred case back on the agenda withdraws its deferral.
            with_ids(
                &mut tx,
                "DELETE FROM agenda_deferrals WHERE session_id = ?1 \
                 AND case_id IN (SELECT value FROM json_each(?2))",
                session_id,
                &ids_json,
            )
            .await?;
        }
        sqlx::query("DELETE FROM agenda_items WHERE session_id = ?1")
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        if !items.is_empty() {
            // At most 600 items (a 600-minute session at one minute a case; edits: 200): 3,600
            // parameters, within SQLite's 32,766.
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO agenda_items (session_id, case_id, position, kind, minutes, proposal) ",
            );
            insert.push_values(items, |mut b, item| {
                b.push_bind(session_id)
                    .push_bind(&item.case_id)
                    .push_bind(item.position)
                    .push_bind(item.kind)
                    .push_bind(item.minutes)
                    .push_bind(&item.proposal);
            });
            insert.build().execute(&mut *tx).await?;
        }
        let head = append(&mut tx, cellule, audit).await?;
        tx.commit().await?;
        Ok(head)
    }

    async fn agenda(&self, session_id: &str) -> Result<Vec<AgendaItemRecord>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT ai.case_id, ai.position, ai.kind, ai.minutes, ai.proposal, c.reference, c.status, \
               c.urgency, c.needs, c.commune, c.sector, c.routed_org, c.follow_up_date, \
               COALESCE((SELECT f.times FROM case_deferrals f WHERE f.case_id = c.id), 0) AS times_deferred, \
               (SELECT d.outcome FROM decisions d WHERE d.session_id = ai.session_id AND d.case_id = ai.case_id) \
                 AS decision_outcome \
             FROM agenda_items ai JOIN cases c ON c.id = ai.case_id WHERE ai.session_id = ?1 \
             ORDER BY ai.position, ai.case_id",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn agenda_deferred(&self, session_id: &str) -> Result<Vec<DeferredRecord>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT d.case_id, c.reference, COALESCE(f.times, 0) AS times_deferred FROM agenda_deferrals d \
             JOIN cases c ON c.id = d.case_id LEFT JOIN case_deferrals f ON f.case_id = d.case_id \
             WHERE d.session_id = ?1 ORDER BY c.reference",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn other_agendas(
        &self,
        cellule: &str,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT ai.case_id, s.id FROM agenda_items ai JOIN sessions s ON s.id = ai.session_id \
             WHERE s.cellule = ?1 AND s.id <> ?2 AND s.status = 'planned' \
               AND s.published_at IS NULL AND s.starts_at >= ?3",
        )
        .bind(cellule)
        .bind(session_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn publish_agenda(
        &self,
        cellule: &str,
        session: &SessionRecord,
        invited: &[(String, String)],
        moves: &[Transition],
        now: DateTime<Utc>,
        audit: Vec<Draft>,
    ) -> Result<Head, StorageError> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET published_at = ?3 WHERE cellule = ?1 AND id = ?2 \
             AND status = 'planned' AND published_at IS NULL",
        )
        .bind(cellule)
        .bind(&session.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Err(StorageError::Conflict(
                "the session is cancelled or its agenda is published",
            ));
        }
        let current: Vec<String> =
            sqlx::query_scalar("SELECT case_id FROM agenda_items WHERE session_id = ?1")
                .bind(&session.id)
                .fetch_all(&mut *tx)
                .await?;
        let expected: Vec<String> = invited.iter().map(|(id, _)| id.clone()).collect();
        if !same_cases(&current, &expected) {
            tx.rollback().await?;
            return Err(StorageError::Conflict("the agenda changed meanwhile"));
        }
        for (case_id, orgs) in invited {
            sqlx::query(
                "INSERT INTO agenda_publications (case_id, session_id, session_at, published_at, invited) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(case_id)
            .bind(&session.id)
            .bind(session.starts_at)
            .bind(now)
            .bind(orgs)
            .execute(&mut *tx)
            .await?;
        }
        for t in moves {
            if !move_case(&mut tx, t).await? {
                tx.rollback().await?;
                return Err(StorageError::Conflict(
                    "a case of this agenda changed meanwhile",
                ));
            }
        }
        // Publication makes the build's deferrals real: each case of the session's set is
        // counted once, in one statement however many.
        sqlx::query(COUNT_DEFERRALS)
            .bind(&session.id)
            .execute(&mut *tx)
            .await?;
        let head = append(&mut tx, cellule, audit).await?;
        tx.commit().await?;
        Ok(head)
    }

    async fn record_decision(
        &self,
        d: &DecisionRecord,
        t: &Transition,
        audit: Draft,
    ) -> Result<Option<Head>, StorageError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO decisions (id, session_id, case_id, outcome, interlocutor, follow_up_date, \
               actions, text, decided_by, decided_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .bind(&d.id)
        .bind(&d.session_id)
        .bind(&d.case_id)
        .bind(&d.outcome)
        .bind(&d.interlocutor)
        .bind(d.follow_up_date)
        .bind(&d.actions)
        .bind(&d.text)
        .bind(&d.decided_by)
        .bind(d.decided_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "this item was already decided"))?;
        if !move_case(&mut tx, t).await? {
            tx.rollback().await?;
            return Ok(None);
        }
        if d.outcome == "deferred" {
            sqlx::query(
                "INSERT INTO case_deferrals (case_id, times) VALUES (?1, 1) \
                 ON CONFLICT (case_id) DO UPDATE SET times = times + 1",
            )
            .bind(&d.case_id)
            .execute(&mut *tx)
            .await?;
        }
        let head = append(&mut tx, &t.cellule, vec![audit]).await?;
        tx.commit().await?;
        Ok(Some(head))
    }

    async fn stats_cases(
        &self,
        cellule: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<StatsCase>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT c.submitted_at, c.needs, c.referring_org, \
               (SELECT MIN(d.decided_at) FROM decisions d WHERE d.case_id = c.id AND d.outcome <> 'deferred') AS first_review_at, \
               c.closed_at \
             FROM cases c WHERE c.cellule = ?1 AND c.submitted_at >= ?2 AND c.submitted_at < ?3",
        )
        .bind(cellule)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn stats_outcomes(
        &self,
        cellule: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT d.outcome FROM decisions d JOIN sessions s ON s.id = d.session_id \
             WHERE s.cellule = ?1 AND d.decided_at >= ?2 AND d.decided_at < ?3",
        )
        .bind(cellule)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn append_audit(&self, cellule: &str, drafts: Vec<Draft>) -> Result<Head, StorageError> {
        let mut tx = self.writer.begin().await?;
        let head = append(&mut tx, cellule, drafts).await?;
        tx.commit().await?;
        Ok(head)
    }

    async fn audit_head(&self, cellule: &str) -> Result<Option<Head>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT seq, hash, checkpoint_seq, purged_through FROM audit_heads WHERE cellule = ?1",
        )
        .bind(cellule)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn audit_entries(
        &self,
        cellule: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Entry>, StorageError> {
        // One row per page, built by SQLite: about 2 µs per entry instead of some 5 through the
        // driver's per-row path (see `storage::entries_from_json`).
        let page: Option<String> = sqlx::query_scalar(
            "SELECT json_group_array(json_array(seq, at_us, actor, actor_role, actor_org, action, case_id, \
               case_ref, target_kind, target_id, outcome, reason, request_id, cases, hex(prev_hash), hex(hash))) \
             FROM (SELECT * FROM audit_entries WHERE cellule = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3)",
        )
        .bind(cellule)
        .bind(after_seq)
        .bind(limit)
        .fetch_one(&self.pool)
        .await?;
        super::entries_from_json(cellule, page.as_deref())
    }

    async fn audit_links(
        &self,
        cellule: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Link>, StorageError> {
        let Some(direct) = self.direct.clone() else {
            let entries = self.audit_entries(cellule, after_seq, limit).await?;
            return super::hash_links(entries, after_seq.saturating_add(limit)).await;
        };
        let cellule = cellule.to_owned();
        tokio::task::spawn_blocking(move || direct.links(&cellule, after_seq, limit))
            .await
            .map_err(|e| StorageError::Other(format!("audit page reader task: {e}")))?
    }

    async fn search_audit(&self, cellule: &str, f: &Filter) -> Result<Vec<Entry>, StorageError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            entry_columns!(),
            " FROM audit_entries WHERE cellule = ?1 \
               AND (?2 IS NULL OR actor = ?2) \
               AND (?3 IS NULL OR case_ref = ?3 OR instr(cases, ?10) > 0) \
               AND (?4 IS NULL OR action = ?4) \
               AND (?5 IS NULL OR outcome = ?5) \
               AND (?6 IS NULL OR at_us >= ?6) \
               AND (?7 IS NULL OR at_us < ?7) \
               AND (?8 IS NULL OR seq < ?8) \
             ORDER BY seq DESC LIMIT ?9"
        ))
        .bind(cellule)
        .bind(&f.actor)
        .bind(&f.case_ref)
        .bind(&f.action)
        .bind(&f.outcome)
        .bind(f.from_us)
        .bind(f.to_us)
        .bind(f.before_seq)
        .bind(f.limit)
        .bind(f.case_ref.as_deref().map(crate::audit::case_ref_pattern))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn case_audit(
        &self,
        cellule: &str,
        case_id: &str,
        case_ref: &str,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            entry_columns!(),
            " FROM audit_entries WHERE cellule = ?1 AND case_id = ?2 \
             UNION SELECT ",
            entry_columns!(),
            " FROM audit_entries WHERE cellule = ?1 AND cases IS NOT NULL \
               AND (instr(cases, ?3) > 0 OR instr(cases, ?4) > 0) \
             ORDER BY seq"
        ))
        .bind(cellule)
        .bind(case_id)
        .bind(crate::audit::case_id_pattern(case_id))
        .bind(crate::audit::case_ref_pattern(case_ref))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn resolve_case(
        &self,
        cellule: &str,
        id_or_reference: &str,
    ) -> Result<Option<(String, String)>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT id, reference FROM cases WHERE cellule = ?1 AND (id = ?2 OR reference = ?2) \
             UNION ALL \
             SELECT case_id, reference FROM erasures WHERE cellule = ?1 AND (case_id = ?2 OR reference = ?2) \
             LIMIT 1",
        )
        .bind(cellule)
        .bind(id_or_reference)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn audit_checkpoints(&self, cellule: &str) -> Result<Vec<Checkpoint>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT cellule, seq, hash, signed_at_us, key_id, signature, kind FROM audit_checkpoints \
             WHERE cellule = ?1 ORDER BY seq, kind",
        )
        .bind(cellule)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn checkpoint_audit(
        &self,
        cellule: &str,
        signer: &Signer,
        kind: CheckpointKind,
        now: DateTime<Utc>,
    ) -> Result<Option<Checkpoint>, StorageError> {
        let mut tx = self.writer.begin().await?;
        // First statement writes: the transaction holds the write lock from here on.
        let head: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "UPDATE audit_heads SET checkpoint_seq = seq WHERE cellule = ?1 AND seq > 0 \
             RETURNING seq, hash",
        )
        .bind(cellule)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((seq, hash)) = head else {
            tx.rollback().await?;
            return Ok(None);
        };
        let checkpoint =
            insert_checkpoint(&mut tx, signer.sign(cellule, seq, &hash, now, kind)).await?;
        tx.commit().await?;
        Ok(Some(checkpoint))
    }

    async fn cellules_with_unsigned_audit(&self) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT cellule FROM audit_heads WHERE seq > checkpoint_seq ORDER BY cellule",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn purge_audit(
        &self,
        cellule: &str,
        before_us: i64,
        signer: &Signer,
        now: DateTime<Utc>,
    ) -> Result<Purged, StorageError> {
        let mut tx = self.writer.begin().await?;
        let head: Option<i64> = sqlx::query_scalar(
            "UPDATE audit_heads SET purged_through = purged_through WHERE cellule = ?1 \
             RETURNING purged_through",
        )
        .bind(cellule)
        .fetch_optional(&mut *tx)
        .await?;
        let purged_through = head.unwrap_or(0);
        let last: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, hash FROM audit_entries WHERE cellule = ?1 AND at_us < ?2 \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(cellule)
        .bind(before_us)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((seq, hash)) = last.filter(|(seq, _)| *seq > purged_through) else {
            tx.rollback().await?;
            return Ok(Purged {
                removed: 0,
                anchor: None,
            });
        };
        let anchor = insert_checkpoint(
            &mut tx,
            signer.sign(cellule, seq, &hash, now, CheckpointKind::Retention),
        )
        .await?;
        sqlx::query("UPDATE audit_heads SET purged_through = ?2 WHERE cellule = ?1")
            .bind(cellule)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        let removed = sqlx::query("DELETE FROM audit_entries WHERE cellule = ?1 AND seq <= ?2")
            .bind(cellule)
            .bind(seq)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let entry = crate::audit::purge_entry(now, seq);
        append(&mut tx, cellule, vec![entry]).await?;
        tx.commit().await?;
        Ok(Purged {
            removed: i64::try_from(removed).unwrap_or(i64::MAX),
            anchor: Some(anchor),
        })
    }

    async fn close(&self) {
        if let Some(c) = &self.checkpointer {
            c.stop();
        }
        if let Some(lanes) = &self.lanes {
            lanes.close().await;
        }
        self.pool.close().await;
    }
}

/// Appends `drafts` to the chain of `cellule` inside `tx`. The head update is the first
/// statement on the chain: it takes the write lock, so concurrent appends queue up and the
/// sequence stays gap-free and linear.
async fn append(
    tx: &mut sqlx::SqliteConnection,
    cellule: &str,
    drafts: Vec<Draft>,
) -> Result<Head, StorageError> {
    let n = i64::try_from(drafts.len()).unwrap_or(i64::MAX);
    let (seq, prev, checkpoint_seq, purged_through): (i64, Vec<u8>, i64, i64) =
        sqlx::query_as(super::sqlite_batch::HEAD_ADVANCE)
            .bind(cellule)
            .bind(n)
            .bind(GENESIS.as_slice())
            .fetch_one(&mut *tx)
            .await
            .map_err(super::not_found_on_fk)?;
    let (entries, hash) = super::chain_entries(cellule, seq - n, prev, drafts);
    // Many entries (an agenda build over thousands of cases) go in a few multi-row inserts.
    for chunk in entries.chunks(AUDIT_INSERT_ROWS) {
        super::entry_insert::<sqlx::Sqlite>(chunk)
            .build()
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(super::sqlite_batch::HEAD_SET_HASH)
        .bind(cellule)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
    Ok(Head {
        seq,
        hash,
        checkpoint_seq,
        purged_through,
    })
}

/// Counts one more deferral for each case session `?1` deferred (the `WHERE` keeps SQLite from
/// reading `ON CONFLICT` as a join constraint).
const COUNT_DEFERRALS: &str = "INSERT INTO case_deferrals (case_id, times) \
     SELECT case_id, 1 FROM agenda_deferrals WHERE session_id = ?1 AND true \
     ON CONFLICT (case_id) DO UPDATE SET times = times + 1";

/// Runs a deferral statement: `?1` is the session, `?2` a JSON array of case ids.
async fn with_ids(
    tx: &mut sqlx::SqliteConnection,
    statement: &str,
    session_id: &str,
    ids: &str,
) -> Result<(), StorageError> {
    sqlx::query(statement)
        .bind(session_id)
        .bind(ids)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Stores a checkpoint unless one of its kind exists at its sequence; returns the stored one.
async fn insert_checkpoint(
    tx: &mut sqlx::SqliteConnection,
    c: Checkpoint,
) -> Result<Checkpoint, StorageError> {
    let existing: Option<Checkpoint> = sqlx::query_as(
        "SELECT cellule, seq, hash, signed_at_us, key_id, signature, kind FROM audit_checkpoints \
         WHERE cellule = ?1 AND seq = ?2 AND kind = ?3",
    )
    .bind(&c.cellule)
    .bind(c.seq)
    .bind(&c.kind)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(existing) = existing {
        return Ok(existing);
    }
    sqlx::query(
        "INSERT INTO audit_checkpoints (cellule, seq, hash, signed_at_us, key_id, signature, kind) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind(&c.cellule)
    .bind(c.seq)
    .bind(&c.hash)
    .bind(c.signed_at_us)
    .bind(&c.key_id)
    .bind(&c.signature)
    .bind(&c.kind)
    .execute(&mut *tx)
    .await?;
    Ok(c)
}

/// Applies a status change (with its event) if the case is still in `t.from`; `false` if not.
async fn move_case(tx: &mut sqlx::SqliteConnection, t: &Transition) -> Result<bool, StorageError> {
    let done = sqlx::query(
        "UPDATE cases SET status = ?1, updated_at = ?2, \
           decided_at = CASE WHEN ?1 IN ('accepted', 'declined') AND decided_at IS NULL THEN ?2 ELSE decided_at END, \
           closed_at = CASE WHEN ?1 = 'closed' THEN ?2 ELSE closed_at END, \
           follow_up_date = COALESCE(?3, follow_up_date), \
           routed_org = COALESCE(?4, routed_org) \
         WHERE cellule = ?5 AND id = ?6 AND status = ?7",
    )
    .bind(&t.to)
    .bind(t.at)
    .bind(t.follow_up_date)
    .bind(&t.routed_org)
    .bind(&t.cellule)
    .bind(&t.case_id)
    .bind(&t.from)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO case_events (id, case_id, from_status, to_status, reason, actor, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind(&t.event_id)
    .bind(&t.case_id)
    .bind(&t.from)
    .bind(&t.to)
    .bind(&t.reason)
    .bind(&t.actor)
    .bind(t.at)
    .execute(&mut *tx)
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pragmas' values as SQLite reports them on a `rusqlite` connection.
    fn settings(
        conn: &rusqlite::Connection,
        names: &[(&'static str, i64)],
    ) -> Vec<(&'static str, i64)> {
        names
            .iter()
            .map(|(name, _)| {
                let v: i64 = conn
                    .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                    .expect("pragma");
                (*name, v)
            })
            .collect()
    }

    /// The service's sqlx connections and its `rusqlite` connections (batch writer, direct
    /// reader) get the same settings, from the one list.
    #[tokio::test]
    async fn every_connection_gets_the_same_settings() {
        let expected = vec![
            ("foreign_keys", 1),
            ("synchronous", 1),
            ("secure_delete", 1),
            ("temp_store", 2),
            ("wal_autocheckpoint", 0),
            ("journal_size_limit", 32 * 1024 * 1024),
        ];
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("settings.db");
        let db = SqliteDatabase::connect(
            &DatabaseUrl::new(format!("sqlite://{}", path.display())),
            &PoolConfig::default(),
        )
        .await
        .expect("database");
        let mut from_sqlx = Vec::new();
        for (name, _) in &expected {
            let v: i64 = sqlx::query_scalar(&format!("PRAGMA {name}"))
                .fetch_one(db.pool())
                .await
                .expect("pragma");
            from_sqlx.push((*name, v));
        }
        assert_eq!(from_sqlx, expected);
        let conn = rusqlite::Connection::open(&path).expect("connection");
        apply_pragmas(&conn).expect("settings");
        assert_eq!(settings(&conn, &expected), expected);
        db.close().await;
    }
}
