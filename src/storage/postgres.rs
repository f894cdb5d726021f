//! PostgreSQL backend: the production one. Several stateless API replicas share one database;
//! migrations are serialised by the migrator's advisory lock.

use std::collections::HashMap;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::lanes::{Lanes, on_lane};
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
            case_columns!("string_agg", $since),
            ", \
               (SELECT json_agg(json_build_array(e.id, e.from_status, e.to_status, encode(e.reason, 'hex'), e.actor, \
                    (extract(epoch FROM e.at) * 1000000)::int8))::text \
                  FROM case_events e WHERE e.case_id = c.id) AS history, \
               (SELECT json_agg(json_build_array(d.reference, (extract(epoch FROM d.submitted_at) * 1000000)::int8))::text \
                  FROM cases d WHERE ",
            open_duplicates!("c.cellule", "c.linkage_key"),
            ") AS duplicates \
             FROM cases c JOIN data_keys k ON k.id = c.id WHERE c.cellule = ",
            $cellule,
            " AND c.id = ",
            $id
        )
    };
}

pub struct PostgresDatabase {
    pool: PgPool,
    /// Connections for the statements every request makes, handed back without sqlx's release
    /// round trip (`storage::lanes`).
    lanes: Lanes<sqlx::PgConnection>,
    /// The chain head (sequence, hash) this process last committed, by cellule: a hint for
    /// [`PostgresDatabase::append_alone`], which checks it in the very statement that uses it.
    known_heads: std::sync::Mutex<HashMap<String, (i64, Vec<u8>)>>,
    /// The reference counter (`last_seq`) this process last committed, by cellule and year: the
    /// same kind of hint, for [`PostgresDatabase::batch_alone`].
    known_counters: std::sync::Mutex<HashMap<(String, i32), i64>>,
}

impl PostgresDatabase {
    pub async fn connect(url: &DatabaseUrl, pool: &PoolConfig) -> Result<Self, StorageError> {
        let options = PgConnectOptions::from_str(url.expose())
            .map_err(|e| StorageError::Other(format!("invalid PostgreSQL URL: {e}")))?
            .application_name("cellule");
        // No ping before handing out a connection (sqlx's default): one round trip to the server
        // per query saved. A connection the server closed meanwhile fails its query as
        // unavailable (503, the client retries) and is dropped from the pool.
        let lanes = Lanes::new(options.clone(), pool.max_connections, pool.acquire_timeout);
        let connecting = PgPoolOptions::new()
            .test_before_acquire(false)
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(options);
        match tokio::time::timeout(pool.connect_timeout, connecting).await {
            Ok(Ok(pool)) => Ok(Self {
                pool,
                lanes,
                known_heads: std::sync::Mutex::default(),
                known_counters: std::sync::Mutex::default(),
            }),
            Ok(Err(e)) => Err(StorageError::Unavailable(crate::config::one_line(
                &e.to_string(),
            ))),
            Err(_) => Err(StorageError::Unavailable(format!(
                "no answer within {}",
                humantime::format_duration(pool.connect_timeout)
            ))),
        }
    }

    fn known_heads(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, Vec<u8>)>> {
        // The map holds hints only: one left by a panicking thread is as good as any.
        self.known_heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn known_counters(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i32), i64>> {
        self.known_counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes a group commit holding new cases in a single statement, without a transaction
    /// of its own, when its cases are of one cellule and year, its entries all of that cellule,
    /// and this process knows both that cellule's chain head and its reference counter. The
    /// statement locks the counter and head rows if both are still the ones known (last
    /// sequence; head sequence and hash), and only then moves them and inserts the cases, their
    /// data keys and the entries: either all of it is written or nothing is. `None` (nothing
    /// written) when a hint is missing or stale: another process, or another kind of write (a
    /// note, a transition, an agenda build), moved the counter or the head; the caller then
    /// takes the transaction's path, which refreshes both hints. Saves a submission batch six
    /// round trips of seven (`BEGIN`, counter, cases, keys, head, entries, `COMMIT`).
    async fn batch_alone(
        &self,
        cases: &[CaseWrite<'_>],
        entries: &[(&str, &[Draft])],
    ) -> Result<Option<Committed>, StorageError> {
        let groups = super::counter_groups(cases);
        let [g] = groups.as_slice() else {
            return Ok(None);
        };
        if cases.len() > CASE_INSERT_ROWS
            || entries.iter().any(|(cellule, _)| *cellule != g.cellule)
        {
            return Ok(None);
        }
        let counter_key = (g.cellule.to_owned(), g.year);
        let Some(before) = self.known_counters().get(&counter_key).copied() else {
            return Ok(None);
        };
        let Some((seq, prev)) = self.known_heads().get(g.cellule).cloned() else {
            return Ok(None);
        };
        let last = before + i64::try_from(cases.len()).unwrap_or(i64::MAX);
        let mut references = vec![String::new(); cases.len()];
        super::assign_references(g, last, &mut references);
        let mut audit = super::audit_groups(cases, &references, entries);
        let (Some((_, drafts)), true) = (audit.pop(), audit.is_empty()) else {
            return Ok(None);
        };
        if drafts.len() > AUDIT_INSERT_ROWS {
            return Ok(None);
        }
        let next = seq + i64::try_from(drafts.len()).unwrap_or(i64::MAX);
        let (chained, hash) = super::chain_entries(g.cellule, seq, prev.clone(), drafts);
        let rows: Vec<(&CaseWrite<'_>, &String)> = cases.iter().zip(&references).collect();

        // Both rows are locked by one `FOR UPDATE` over the two tables. PostgreSQL's executor
        // locks a join's rows in the order of its `FROM` list (its range table; observed
        // behaviour, not a documented guarantee): the counter, then the head, the order of the
        // transaction's path (and of every writer that takes both), so that the two paths
        // cannot deadlock; the two-server test failed when this statement took the head first.
        // A row another transaction changed meanwhile is checked again in its committed version.
        // The head moves only if the counter did, and the rows go in only if the head did.
        let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "WITH known AS (SELECT 1 FROM reference_counters r, audit_heads h WHERE r.cellule = ",
        );
        q.push_bind(g.cellule)
            .push(" AND r.year = ")
            .push_bind(i64::from(g.year))
            .push(" AND r.last_seq = ")
            .push_bind(before)
            .push(" AND h.cellule = ")
            .push_bind(g.cellule)
            .push(" AND h.seq = ")
            .push_bind(seq)
            .push(" AND h.hash = ")
            .push_bind(&prev)
            .push(" FOR UPDATE), counter AS (UPDATE reference_counters SET last_seq = ")
            .push_bind(last)
            .push(" WHERE cellule = ")
            .push_bind(g.cellule)
            .push(" AND year = ")
            .push_bind(i64::from(g.year))
            .push(
                " AND EXISTS (SELECT 1 FROM known) RETURNING 1), \
                 head AS (UPDATE audit_heads SET seq = ",
            )
            .push_bind(next)
            .push(", hash = ")
            .push_bind(&hash)
            .push(" WHERE cellule = ")
            .push_bind(g.cellule)
            .push(" AND EXISTS (SELECT 1 FROM counter) RETURNING checkpoint_seq, purged_through)")
            .push(format_args!(
                ", new_cases AS (INSERT INTO cases ({}) SELECT * FROM (",
                super::CASE_COLUMNS
            ));
        super::push_case_values(&mut q, &rows);
        q.push(format_args!(
            ") AS v WHERE EXISTS (SELECT 1 FROM head)), new_keys AS (INSERT INTO data_keys ({}) \
             SELECT * FROM (",
            super::KEY_COLUMNS
        ));
        super::push_key_values(&mut q, &rows);
        q.push(format_args!(
            ") AS v WHERE EXISTS (SELECT 1 FROM head)), entries AS (INSERT INTO audit_entries ({}) \
             SELECT * FROM (",
            super::ENTRY_COLUMNS
        ));
        super::push_entry_values(&mut q, &chained);
        q.push(
            ") AS v WHERE EXISTS (SELECT 1 FROM head)) SELECT checkpoint_seq, purged_through FROM head",
        );
        let written: Result<Option<(i64, i64)>, sqlx::Error> =
            on_lane!(self.lanes, q.build_query_as(), fetch_optional);
        let cellule = g.cellule.to_owned();
        match written {
            Ok(Some((checkpoint_seq, purged_through))) => {
                self.known_counters().insert(counter_key, last);
                self.known_heads()
                    .insert(cellule.clone(), (next, hash.clone()));
                Ok(Some(Committed {
                    references,
                    heads: vec![(
                        cellule,
                        Head {
                            seq: next,
                            hash,
                            checkpoint_seq,
                            purged_through,
                        },
                    )],
                }))
            }
            Ok(None) => {
                self.known_counters().remove(&counter_key);
                self.known_heads().remove(&cellule);
                Ok(None)
            }
            Err(e) => {
                self.known_counters().remove(&counter_key);
                self.known_heads().remove(&cellule);
                Err(super::not_found_on_fk(e))
            }
        }
    }

    /// Appends the entries of one cellule in a single statement, without a transaction of its
    /// own, when this process knows the chain's head: the statement moves the head only if it
    /// is still the one known (sequence and hash), and inserts the entries only if it moved;
    /// the head row's lock orders it among concurrent appends as a transaction's would. `None`
    /// (nothing written) when the head is not known or moved meanwhile: another process or
    /// another kind of write appended (only the group commit refreshes the known head, so the
    /// first read batch after a note, a transition or an agenda build pays one statement for
    /// nothing). Saves an entries-only batch (the reads' and denials') the transaction's
    /// `BEGIN`, head upsert and `COMMIT`: three round trips of four.
    async fn append_alone(
        &self,
        cellule: &str,
        drafts: Vec<Draft>,
    ) -> Result<Option<Head>, StorageError> {
        let Some((seq, prev)) = self.known_heads().get(cellule).cloned() else {
            return Ok(None);
        };
        if drafts.is_empty() || drafts.len() > AUDIT_INSERT_ROWS {
            return Ok(None);
        }
        let next = seq + i64::try_from(drafts.len()).unwrap_or(i64::MAX);
        let (entries, hash) = super::chain_entries(cellule, seq, prev.clone(), drafts);
        let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "WITH head AS (UPDATE audit_heads SET seq = ",
        );
        q.push_bind(next)
            .push(", hash = ")
            .push_bind(&hash)
            .push(" WHERE cellule = ")
            .push_bind(cellule)
            .push(" AND seq = ")
            .push_bind(seq)
            .push(" AND hash = ")
            .push_bind(&prev)
            .push(" RETURNING checkpoint_seq, purged_through), entries AS (")
            .push(format_args!(
                "INSERT INTO audit_entries ({}) SELECT * FROM (",
                super::ENTRY_COLUMNS
            ));
        super::push_entry_values(&mut q, &entries);
        q.push(") AS v WHERE EXISTS (SELECT 1 FROM head)) SELECT checkpoint_seq, purged_through FROM head");
        let moved: Result<Option<(i64, i64)>, sqlx::Error> =
            on_lane!(self.lanes, q.build_query_as(), fetch_optional);
        let mut known = self.known_heads();
        match moved {
            Ok(Some((checkpoint_seq, purged_through))) => {
                known.insert(cellule.to_owned(), (next, hash.clone()));
                Ok(Some(Head {
                    seq: next,
                    hash,
                    checkpoint_seq,
                    purged_through,
                }))
            }
            Ok(None) => {
                known.remove(cellule);
                Ok(None)
            }
            Err(e) => {
                known.remove(cellule);
                Err(e.into())
            }
        }
    }

    /// The pool, for tests and benchmarks that need raw access.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Database for PostgresDatabase {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StorageError> {
        sqlx::migrate!("migrations/postgres")
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
        let mut tx = self.pool.begin().await?;
        let row: CelluleRow = sqlx::query_as(
            "INSERT INTO cellules (slug, name, code, created_at) VALUES ($1, $2, $3, $4) \
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
            "INSERT INTO charters (cellule, version, text, created_at) VALUES ($1, 1, $2, $3)",
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
            sqlx::query_as("SELECT slug, name, code, created_at FROM cellules WHERE slug = $1")
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
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
        let done = sqlx::query("DELETE FROM memberships WHERE cellule = $1 AND subject = $2")
            .bind(cellule.as_str())
            .bind(subject.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn cellule_access(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
    ) -> Result<Option<CelluleAccess>, StorageError> {
        let row = sqlx::query_as::<_, CelluleAccessRow>(concat!(
            "SELECT ",
            access_columns!("$2"),
            " FROM ",
            access_join!("$2"),
            " WHERE c.slug = $1"
        ))
        .bind(cellule.as_str())
        .bind(subject.as_str());
        let row = on_lane!(self.lanes, row, fetch_optional)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn case_access(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
        id: &str,
        agenda_since: DateTime<Utc>,
    ) -> Result<Option<(CelluleAccess, Option<CaseRead>)>, StorageError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            access_columns!("$2"),
            ", x.* FROM ",
            access_join!("$2"),
            " LEFT JOIN LATERAL (",
            case_read_query!("$1", "$3", "$4"),
            ") x ON true WHERE c.slug = $1"
        ))
        .bind(cellule.as_str())
        .bind(subject.as_str())
        .bind(id)
        .bind(agenda_since);
        let row = on_lane!(self.lanes, row, fetch_optional)?;
        row.as_ref().map(super::case_access_row).transpose()
    }

    async fn submit_access(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
        linkage_key: &str,
    ) -> Result<Option<(CelluleAccess, Vec<String>)>, StorageError> {
        let row = sqlx::query_as::<_, SubmitAccessRow>(concat!(
            "SELECT ",
            access_columns!("$2"),
            ", (SELECT json_agg(d.reference ORDER BY d.submitted_at)::text FROM cases d WHERE ",
            open_duplicates!("c.slug", "$3"),
            ") AS duplicates FROM ",
            access_join!("$2"),
            " WHERE c.slug = $1"
        ))
        .bind(cellule.as_str())
        .bind(subject.as_str())
        .bind(linkage_key);
        let row = on_lane!(self.lanes, row, fetch_optional)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn list_members(&self, cellule: &CelluleSlug) -> Result<Vec<Membership>, StorageError> {
        let rows: Vec<MembershipRow> = sqlx::query_as(
            "SELECT cellule, subject, role, sphere, organisation, guest, created_at, updated_at \
             FROM memberships WHERE cellule = $1 ORDER BY subject",
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
             WHERE m.subject = $1 ORDER BY m.cellule",
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
            "INSERT INTO kek_checks (version, check_value, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(version)
        .bind(check)
        .bind(now)
        .execute(&self.pool)
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
             WHERE kek_version <> $1 ORDER BY id LIMIT $2",
        )
        .bind(version)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn replace_wrapped_keys(&self, batch: &[Rewrapped]) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        for key in batch {
            let done = sqlx::query("UPDATE data_keys SET kek_version = $1, wrapped = $2 WHERE id = $3 AND kek_version = $4")
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
            "SELECT id, cellule, case_id, kek_version, wrapped FROM data_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn insert_wrapped_key_if_absent(&self, key: &WrappedKey) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO data_keys (id, cellule, case_id, kek_version, wrapped) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&key.id)
        .bind(&key.cellule)
        .bind(&key.case_id)
        .bind(key.kek_version)
        .bind(&key.wrapped)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn commit_batch(
        &self,
        cases: &[CaseWrite<'_>],
        entries: &[(&str, &[Draft])],
    ) -> Result<Committed, StorageError> {
        if cases.is_empty() {
            let mut groups = super::audit_groups(cases, &[], entries);
            if let (Some((cellule, drafts)), true) = (groups.pop(), groups.is_empty())
                && let Some(head) = self.append_alone(&cellule, drafts).await?
            {
                return Ok(Committed {
                    references: Vec::new(),
                    heads: vec![(cellule, head)],
                });
            }
        }
        if let Some(done) = self.batch_alone(cases, entries).await? {
            return Ok(done);
        }
        let mut tx = self.pool.begin().await?;
        // The counters first: their row locks serialise submissions of one cellule and year.
        let mut references = vec![String::new(); cases.len()];
        let mut counters = Vec::new();
        // Rows are locked in one order by every process (counters by cellule and year, then
        // heads by cellule), so that two batches with opposite mixes of cellules cannot
        // deadlock.
        let mut groups = super::counter_groups(cases);
        groups.sort_by(|a, b| (a.cellule, a.year).cmp(&(b.cellule, b.year)));
        for g in groups {
            let n = i64::try_from(g.members.len()).unwrap_or(i64::MAX);
            let last: i64 = sqlx::query_scalar(
                "INSERT INTO reference_counters (cellule, year, last_seq) VALUES ($1, $2, $3) \
                 ON CONFLICT (cellule, year) DO UPDATE SET last_seq = reference_counters.last_seq + $3 \
                 RETURNING last_seq",
            )
            .bind(g.cellule)
            .bind(i64::from(g.year))
            .bind(n)
            .fetch_one(&mut *tx)
            .await
            .map_err(super::not_found_on_fk)?;
            super::assign_references(&g, last, &mut references);
            counters.push(((g.cellule.to_owned(), g.year), last));
        }
        let rows: Vec<(&CaseWrite<'_>, &String)> = cases.iter().zip(&references).collect();
        for chunk in rows.chunks(CASE_INSERT_ROWS) {
            for mut q in super::case_inserts::<sqlx::Postgres>(chunk) {
                q.build().execute(&mut *tx).await?;
            }
        }
        let mut heads = Vec::new();
        let mut audit = super::audit_groups(cases, &references, entries);
        audit.sort_by(|a, b| a.0.cmp(&b.0));
        for (cellule, drafts) in audit {
            let head = append(&mut tx, &cellule, drafts).await?;
            heads.push((cellule, head));
        }
        tx.commit().await?;
        let mut known = self.known_heads();
        for (cellule, head) in &heads {
            known.insert(cellule.clone(), (head.seq, head.hash.clone()));
        }
        drop(known);
        self.known_counters().extend(counters);
        Ok(Committed { references, heads })
    }

    async fn open_cases_with_linkage(
        &self,
        cellule: &str,
        linkage_key: &str,
    ) -> Result<Vec<String>, StorageError> {
        let q = sqlx::query_scalar(concat!(
            "SELECT d.reference FROM cases d WHERE ",
            open_duplicates!("$1", "$2"),
            " ORDER BY d.submitted_at"
        ))
        .bind(cellule)
        .bind(linkage_key);
        Ok(on_lane!(self.lanes, q, fetch_all)?)
    }

    async fn get_case(
        &self,
        cellule: &str,
        id: &str,
        agenda_since: DateTime<Utc>,
    ) -> Result<Option<CaseRecord>, StorageError> {
        Ok(on_lane!(
            self.lanes,
            sqlx::query_as(concat!(
                "SELECT ",
                case_columns!("string_agg", "$3"),
                " \
             FROM cases c JOIN data_keys k ON k.id = c.id WHERE c.cellule = $1 AND c.id = $2"
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
                case_columns!("string_agg", "$14"),
                " \
             FROM cases c JOIN data_keys k ON k.id = c.id \
             WHERE c.cellule = $1 \
               AND ($2 IS NULL OR c.status = $2) \
               AND ($3 IS NULL OR c.urgency = $3) \
               AND ($4 IS NULL OR c.needs LIKE $4) \
               AND ($5 IS NULL OR c.sector = $5) \
               AND ($6 IS NULL OR c.commune = $6) \
               AND ($7 IS NULL OR c.submitted_at >= $7) \
               AND ($8 IS NULL OR c.submitted_at < $8) \
               AND ($9 IS NULL OR c.routed_org = $9 OR ($15 AND EXISTS (SELECT 1 FROM agenda_publications a \
                    WHERE a.case_id = c.id AND a.session_at >= $14)) \
                  OR ($16 IS NOT NULL AND EXISTS (SELECT 1 FROM agenda_publications a \
                    WHERE a.case_id = c.id AND a.session_at >= $14 AND strpos(a.invited, $16) > 0))) \
               AND ($10 IS NULL OR c.referrer = $10) \
               AND ($11 IS NULL OR c.submitted_at < $11 OR (c.submitted_at = $11 AND c.id < $12)) \
             ORDER BY c.submitted_at DESC, c.id DESC LIMIT $13"
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
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE cases SET status = $1, updated_at = $2, \
               decided_at = CASE WHEN $1 IN ('accepted', 'declined') THEN $2 ELSE decided_at END, \
               closed_at = CASE WHEN $1 = 'closed' THEN $2 ELSE closed_at END, \
               follow_up_date = COALESCE($3, follow_up_date), \
               routed_org = COALESCE($4, routed_org) \
             WHERE cellule = $5 AND id = $6 AND status = $7",
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
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO notes (id, case_id, author, author_role, author_sphere, author_organisation, audience, \
               corrects, body, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
        Ok(on_lane!(self.lanes, sqlx::query_as(
            "SELECT id, case_id, author, author_role, author_sphere, author_organisation, audience, corrects, body, \
               created_at FROM notes WHERE case_id = $1 AND audience IN ($2, $3, $4) ORDER BY created_at, id",
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
               created_at FROM notes WHERE case_id = $1 AND id = $2",
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
        let mut tx = self.pool.begin().await?;
        let reference: Option<String> = sqlx::query_scalar(
            "DELETE FROM cases WHERE cellule = $1 AND id = $2 RETURNING reference",
        )
        .bind(cellule)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(reference) = reference else {
            tx.rollback().await?;
            return Ok(None);
        };
        // The deferral tables hold no foreign keys (migrations 0009, 0013): the case goes from
        // them here. Every session's set is read for it (one row per session): erasure is rare.
        sqlx::query("DELETE FROM case_deferrals WHERE case_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE session_deferrals SET case_ids = array_remove(case_ids, $1) \
             WHERE case_ids @> ARRAY[$1]::text[]",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO erasures (id, cellule, case_id, reference, erased_by, reason, erased_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
        Ok(Some((reference, head)))
    }

    async fn erasures(
        &self,
        cellule: &str,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT reference, reason, erased_at FROM erasures WHERE cellule = $1 ORDER BY erased_at, reference",
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
            "UPDATE cellules SET retention_closed_months = $1, retention_declined_months = $2 WHERE slug = $3",
        )
        .bind(closed_months)
        .bind(declined_months)
        .bind(cellule)
        .execute(&self.pool)
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
            "SELECT id FROM cases WHERE cellule = $1 AND \
               ((status = 'closed' AND closed_at < $2) OR (status = 'declined' AND decided_at < $3)) ORDER BY id",
        )
        .bind(cellule)
        .bind(closed_before)
        .bind(declined_before)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn current_charter(&self, cellule: &str) -> Result<Option<CharterRecord>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT version, text, created_at FROM charters WHERE cellule = $1 ORDER BY version DESC LIMIT 1",
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
             VALUES ($1, (SELECT COALESCE(MAX(version), 0) + 1 FROM charters WHERE cellule = $1), $2, $3) \
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
            "SELECT version FROM charter_acceptances WHERE cellule = $1 AND subject = $2 AND version = $3",
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO charter_acceptances (cellule, subject, version, accepted_at) VALUES ($1, $2, $3, $4) \
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
            sqlx::query_scalar("SELECT document FROM schedules WHERE cellule = $1")
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
            "INSERT INTO schedules (cellule, document, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (cellule) DO UPDATE SET document = $2, updated_at = $3",
        )
        .bind(cellule)
        .bind(document)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(super::not_found_on_fk)?;
        Ok(())
    }

    async fn get_directory(&self, cellule: &str) -> Result<Option<String>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT document FROM routing_directories WHERE cellule = $1")
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
            "INSERT INTO routing_directories (cellule, document, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (cellule) DO UPDATE SET document = $2, updated_at = $3",
        )
        .bind(cellule)
        .bind(document)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(super::not_found_on_fk)?;
        Ok(())
    }

    async fn insert_sessions(
        &self,
        sessions: &[SessionRecord],
    ) -> Result<Vec<SessionRecord>, StorageError> {
        let mut tx = self.pool.begin().await?;
        let mut inserted = Vec::new();
        for s in sessions {
            let row: Option<SessionRecord> = sqlx::query_as(concat!(
                "INSERT INTO sessions (id, cellule, occurrence_key, starts_at, local_start, time_zone, \
                   duration_minutes, location, holiday, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
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
            " FROM sessions WHERE cellule = $1 AND ($2 IS NULL OR starts_at >= $2) \
               AND ($3 IS NULL OR starts_at < $3) ORDER BY starts_at, id"
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
            " FROM sessions WHERE cellule = $1 AND id = $2"
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
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET status = 'cancelled' WHERE cellule = $1 AND id = $2 AND status = 'planned'",
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
            sqlx::query_scalar("SELECT COUNT(*) FROM decisions WHERE session_id = $1")
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
            sqlx::query_scalar("SELECT case_id FROM agenda_items WHERE session_id = $1")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        if !same_cases(&current, items) {
            tx.rollback().await?;
            return Err(StorageError::Conflict("the agenda changed meanwhile"));
        }
        // A published agenda's deferrals were counted: the count is undone with it.
        sqlx::query(
            "UPDATE case_deferrals f SET times = f.times - 1 \
             FROM (SELECT unnest(case_ids) AS id FROM session_deferrals WHERE session_id = $1) d \
             WHERE f.case_id = d.id \
               AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = $1 AND s.published_at IS NOT NULL)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        for table in ["session_deferrals", "agenda_items", "agenda_publications"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE session_id = $1"))
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
        Ok(sqlx::query_as(
            "SELECT c.id, c.reference, c.status, c.urgency, c.needs, c.commune, c.sector, \
               c.follow_up_date, COALESCE(f.times, 0) AS times_deferred, c.routed_org, c.submitted_at, \
               c.decided_at, \
               c.id IN (SELECT unnest(case_ids) FROM session_deferrals WHERE session_id = $2) \
                 AS deferred_here \
             FROM cases c \
             LEFT JOIN case_deferrals f ON f.case_id = c.id \
             WHERE c.cellule = $1 AND c.status IN ('accepted', 'in_follow_up') \
               AND (c.status = 'accepted' OR c.follow_up_date <= $3) \
               AND c.id NOT IN (SELECT ai.case_id FROM agenda_items ai \
                    JOIN sessions s ON s.id = ai.session_id \
                    WHERE s.cellule = $1 AND s.id <> $2 AND s.status = 'planned' \
                      AND s.published_at IS NULL AND s.starts_at >= $4)",
        )
        .bind(cellule)
        .bind(session_id)
        .bind(due_by)
        .bind(now)
        .persistent(false)
        .fetch_all(&self.pool)
        .await?)
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
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET agenda_built_at = $3 WHERE cellule = $1 AND id = $2 \
             AND status = 'planned' AND published_at IS NULL \
             AND (NOT $4 OR agenda_built_at IS NOT DISTINCT FROM $5)",
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
        // Every item's case in one statement, not one round trip per item.
        let ids: Vec<&str> = items.iter().map(|i| i.case_id.as_str()).collect();
        let eligible: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM cases c WHERE c.cellule = $1 AND c.id = ANY($2::text[]) \
               AND c.status IN ('accepted', 'in_follow_up') \
               AND NOT EXISTS (SELECT 1 FROM agenda_items ai JOIN sessions s ON s.id = ai.session_id \
                 WHERE ai.case_id = c.id AND s.id <> $3 AND s.status = 'planned' \
                   AND s.published_at IS NULL AND s.starts_at >= $4)",
        )
        .bind(cellule)
        .bind(&ids)
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
            // The session's set as stored (the session row's lock above keeps it), compared
            // with the build's: the set is written whole, as one row (migration 0013), and
            // only when it changed. `before` is the stored set as the build read it,
            // less the cases that left the pool since; no build or edit came in between
            // (`read_at`), and an erasure only takes cases out, so a stored set of the same
            // size is `before` and need not be read (thousands of ids) again.
            let size: Option<i32> = sqlx::query_scalar(
                "SELECT cardinality(case_ids) FROM session_deferrals WHERE session_id = $1",
            )
            .bind(session_id)
            .fetch_optional(&mut *tx)
            .await?;
            let stored: Vec<String>;
            let before = if usize::try_from(size.unwrap_or(0)).ok() == Some(deferred.before.len()) {
                deferred.before
            } else {
                stored = sqlx::query_scalar(
                    "SELECT case_ids FROM session_deferrals WHERE session_id = $1",
                )
                .bind(session_id)
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or_default();
                &stored
            };
            // Only the set changes: deferrals are counted when the agenda is published
            // (`publish_agenda`), not by a build the coordinator may still redo or edit.
            let (withdrawn, added) = Deferrals { before, ..deferred }.difference();
            if !withdrawn.is_empty() || !added.is_empty() {
                let mut set: Vec<&str> = deferred.all.iter().map(String::as_str).collect();
                set.sort_unstable();
                set.dedup();
                sqlx::query(
                    "INSERT INTO session_deferrals (session_id, case_ids) VALUES ($1, $2) \
                     ON CONFLICT (session_id) DO UPDATE SET case_ids = EXCLUDED.case_ids",
                )
                .bind(session_id)
                .bind(&set)
                .execute(&mut *tx)
                .await?;
            }
        } else if !ids.is_empty() {
            // An edit that puts a deferred case back on the agenda withdraws its deferral.
            sqlx::query(
                "UPDATE session_deferrals \
                 SET case_ids = ARRAY(SELECT d FROM unnest(case_ids) AS d WHERE d <> ALL($2::text[])) \
                 WHERE session_id = $1 AND case_ids && $2::text[]",
            )
            .bind(session_id)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM agenda_items WHERE session_id = $1")
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        if !items.is_empty() {
            let positions: Vec<i64> = items.iter().map(|i| i.position).collect();
            let kinds: Vec<&str> = items.iter().map(|i| i.kind).collect();
            let minutes: Vec<i64> = items.iter().map(|i| i.minutes).collect();
            let proposals: Vec<&str> = items.iter().map(|i| i.proposal.as_str()).collect();
            sqlx::query(
                "INSERT INTO agenda_items (session_id, case_id, position, kind, minutes, proposal) \
                 SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[])",
            )
            .bind(session_id)
            .bind(&ids)
            .bind(&positions)
            .bind(&kinds)
            .bind(&minutes)
            .bind(&proposals)
            .execute(&mut *tx)
            .await?;
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
             FROM agenda_items ai JOIN cases c ON c.id = ai.case_id WHERE ai.session_id = $1 \
             ORDER BY ai.position, ai.case_id",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn agenda_deferred(&self, session_id: &str) -> Result<Vec<DeferredRecord>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT d.case_id, c.reference, COALESCE(f.times, 0) AS times_deferred \
             FROM session_deferrals s CROSS JOIN unnest(s.case_ids) AS d(case_id) \
             JOIN cases c ON c.id = d.case_id LEFT JOIN case_deferrals f ON f.case_id = d.case_id \
             WHERE s.session_id = $1 ORDER BY c.reference",
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
             WHERE s.cellule = $1 AND s.id <> $2 AND s.status = 'planned' \
               AND s.published_at IS NULL AND s.starts_at >= $3",
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
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET published_at = $3 WHERE cellule = $1 AND id = $2 \
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
            sqlx::query_scalar("SELECT case_id FROM agenda_items WHERE session_id = $1")
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
                 VALUES ($1, $2, $3, $4, $5)",
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
        // counted once (one statement, however many; an upsert, as a decision or another
        // publication may count the same case at the same moment).
        sqlx::query(
            "INSERT INTO case_deferrals (case_id, times) \
             SELECT unnest(case_ids), 1 FROM session_deferrals WHERE session_id = $1 \
             ON CONFLICT (case_id) DO UPDATE SET times = case_deferrals.times + 1",
        )
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO decisions (id, session_id, case_id, outcome, interlocutor, follow_up_date, \
               actions, text, decided_by, decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
                "INSERT INTO case_deferrals (case_id, times) VALUES ($1, 1) \
                 ON CONFLICT (case_id) DO UPDATE SET times = case_deferrals.times + 1",
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
             FROM cases c WHERE c.cellule = $1 AND c.submitted_at >= $2 AND c.submitted_at < $3",
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
             WHERE s.cellule = $1 AND d.decided_at >= $2 AND d.decided_at < $3",
        )
        .bind(cellule)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn append_audit(&self, cellule: &str, drafts: Vec<Draft>) -> Result<Head, StorageError> {
        let mut tx = self.pool.begin().await?;
        let head = append(&mut tx, cellule, drafts).await?;
        tx.commit().await?;
        Ok(head)
    }

    async fn audit_head(&self, cellule: &str) -> Result<Option<Head>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT seq, hash, checkpoint_seq, purged_through FROM audit_heads WHERE cellule = $1",
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
        // Plain rows: PostgreSQL's binary protocol hands them over faster than it builds JSON.
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            entry_columns!(),
            " FROM audit_entries WHERE cellule = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(cellule)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn audit_links(
        &self,
        cellule: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Link>, StorageError> {
        // A task of its own: a caller that stops waiting (verification found a break) must not
        // cut a COPY half read, which would leave the connection unusable for the pool.
        let (pool, cellule) = (self.pool.clone(), cellule.to_owned());
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut tx = pool.begin().await?;
            sqlx::query(super::postgres_chain::BIND_PAGE)
                .bind(&cellule)
                .bind(after_seq.to_string())
                .bind(limit.to_string())
                .execute(&mut *tx)
                .await?;
            // Each row is hashed as it arrives (some 0.3 µs, a fraction of a millisecond for
            // an entry naming thousands of cases) and the page keeps only its links. After a
            // bad row the rest of the stream is still read, so the connection goes back to the
            // pool out of its COPY.
            let mut page = super::postgres_chain::PageReader::new(
                &cellule,
                usize::try_from(limit).unwrap_or(0),
            );
            let mut failed = None;
            {
                let mut stream = tx.copy_out_raw(super::postgres_chain::COPY_PAGE).await?;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    if failed.is_none()
                        && let Err(e) = page.feed(&chunk)
                    {
                        failed = Some(e);
                    }
                }
            }
            tx.commit().await?;
            match failed {
                Some(e) => Err(e),
                None => page.finish(),
            }
        })
        .await
        .map_err(|e| StorageError::Other(format!("audit page task: {e}")))?
    }

    async fn search_audit(&self, cellule: &str, f: &Filter) -> Result<Vec<Entry>, StorageError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            entry_columns!(),
            " FROM audit_entries WHERE cellule = $1 \
               AND ($2 IS NULL OR actor = $2) \
               AND ($3 IS NULL OR case_ref = $3 OR strpos(cases, $10) > 0) \
               AND ($4 IS NULL OR action = $4) \
               AND ($5 IS NULL OR outcome = $5) \
               AND ($6 IS NULL OR at_us >= $6) \
               AND ($7 IS NULL OR at_us < $7) \
               AND ($8 IS NULL OR seq < $8) \
             ORDER BY seq DESC LIMIT $9"
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
            " FROM audit_entries WHERE cellule = $1 AND case_id = $2 \
             UNION SELECT ",
            entry_columns!(),
            " FROM audit_entries WHERE cellule = $1 AND cases IS NOT NULL \
               AND (strpos(cases, $3) > 0 OR strpos(cases, $4) > 0) \
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
            "SELECT id, reference FROM cases WHERE cellule = $1 AND (id = $2 OR reference = $2) \
             UNION ALL \
             SELECT case_id, reference FROM erasures WHERE cellule = $1 AND (case_id = $2 OR reference = $2) \
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
             WHERE cellule = $1 ORDER BY seq, kind",
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
        let mut tx = self.pool.begin().await?;
        // Locks the head row until commit.
        let head: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "UPDATE audit_heads SET checkpoint_seq = seq WHERE cellule = $1 AND seq > 0 \
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
        let mut tx = self.pool.begin().await?;
        let head: Option<i64> = sqlx::query_scalar(
            "UPDATE audit_heads SET purged_through = purged_through WHERE cellule = $1 \
             RETURNING purged_through",
        )
        .bind(cellule)
        .fetch_optional(&mut *tx)
        .await?;
        let purged_through = head.unwrap_or(0);
        let last: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, hash FROM audit_entries WHERE cellule = $1 AND at_us < $2 \
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
        sqlx::query("UPDATE audit_heads SET purged_through = $2 WHERE cellule = $1")
            .bind(cellule)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        let removed = sqlx::query("DELETE FROM audit_entries WHERE cellule = $1 AND seq <= $2")
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
        self.lanes.close().await;
        self.pool.close().await;
    }
}

/// Appends `drafts` to the chain of `cellule` inside `tx`. The head update is the first
/// statement on the chain: it locks the head row, so concurrent appends (from any process) queue up and the
/// sequence stays gap-free and linear.
async fn append(
    tx: &mut sqlx::PgConnection,
    cellule: &str,
    drafts: Vec<Draft>,
) -> Result<Head, StorageError> {
    let n = i64::try_from(drafts.len()).unwrap_or(i64::MAX);
    let (seq, prev, checkpoint_seq, purged_through): (i64, Vec<u8>, i64, i64) = sqlx::query_as(
        "INSERT INTO audit_heads (cellule, seq, hash) VALUES ($1, $2, $3) \
         ON CONFLICT (cellule) DO UPDATE SET seq = audit_heads.seq + $2 \
         RETURNING seq, hash, checkpoint_seq, purged_through",
    )
    .bind(cellule)
    .bind(n)
    .bind(GENESIS.as_slice())
    .fetch_one(&mut *tx)
    .await
    .map_err(super::not_found_on_fk)?;
    let (entries, hash) = super::chain_entries(cellule, seq - n, prev, drafts);
    // Many entries (an agenda build over thousands of cases) go in a few multi-row inserts;
    // the last one stores the new head hash too (one round trip fewer per append).
    let chunks = entries.chunks(AUDIT_INSERT_ROWS);
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.enumerate() {
        let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new("");
        if i == last {
            q.push("WITH head AS (UPDATE audit_heads SET hash = ")
                .push_bind(&hash)
                .push(" WHERE cellule = ")
                .push_bind(cellule)
                .push(") ");
        }
        q.push(format_args!(
            "INSERT INTO audit_entries ({}) ",
            super::ENTRY_COLUMNS
        ));
        super::push_entry_values(&mut q, chunk);
        q.build().execute(&mut *tx).await?;
    }
    Ok(Head {
        seq,
        hash,
        checkpoint_seq,
        purged_through,
    })
}

/// Stores a checkpoint unless one of its kind exists at its sequence; returns the stored one.
async fn insert_checkpoint(
    tx: &mut sqlx::PgConnection,
    c: Checkpoint,
) -> Result<Checkpoint, StorageError> {
    let existing: Option<Checkpoint> = sqlx::query_as(
        "SELECT cellule, seq, hash, signed_at_us, key_id, signature, kind FROM audit_checkpoints \
         WHERE cellule = $1 AND seq = $2 AND kind = $3",
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
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
async fn move_case(tx: &mut sqlx::PgConnection, t: &Transition) -> Result<bool, StorageError> {
    let done = sqlx::query(
        "UPDATE cases SET status = $1, updated_at = $2, \
           decided_at = CASE WHEN $1 IN ('accepted', 'declined') AND decided_at IS NULL THEN $2 ELSE decided_at END, \
           closed_at = CASE WHEN $1 = 'closed' THEN $2 ELSE closed_at END, \
           follow_up_date = COALESCE($3, follow_up_date), \
           routed_org = COALESCE($4, routed_org) \
         WHERE cellule = $5 AND id = $6 AND status = $7",
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
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
