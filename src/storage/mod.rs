//! Storage: one interface ([`Database`]), one implementation per backend.
//!
//! - [`sqlite::SqliteDatabase`]: the embedded default (one file, WAL journal), migrations in
//!   `migrations/sqlite`.
//! - [`postgres::PostgresDatabase`]: the production backend (several stateless API replicas on
//!   one PostgreSQL), migrations in `migrations/postgres`.
//!
//! All queries are written out in full and bound with parameters; no SQL is assembled from input.
//! Both implementations run the same integration suite (`tests/api`).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::audit::{Checkpoint, CheckpointKind, Draft, Entry, Filter, Head, Link, Purged, Signer};
use crate::config::{Backend, DatabaseUrl, PoolConfig};
use crate::domain::{
    Cellule, CelluleCode, CelluleName, CelluleSlug, Membership, MembershipSpec, NewCellule,
    Organisation, Role, Sphere, Subject,
};

/// The columns of a case row, in `CaseRecord` order, for both backends: `$agg` is the
/// backend's string aggregate (`group_concat`, `string_agg`), `$since` the placeholder of the
/// agenda window's start (`on_agenda`, `agenda_invited`). The case is `c`, its data key `k`.
macro_rules! case_columns {
    ($agg:literal, $since:literal) => {
        concat!(
            "c.id, c.cellule, c.reference, c.status, c.urgency, c.age_band, c.gender, c.commune, c.sector, \
             c.needs, c.consent_status, c.consent_justification, c.referring_org, c.referrer, c.linkage_key, \
             c.routed_org, c.follow_up_date, c.situation, c.expectations, c.submitted_at, \
             c.decided_at, c.closed_at, c.updated_at, k.wrapped AS key_wrapped, \
             COALESCE((SELECT f.times FROM case_deferrals f WHERE f.case_id = c.id), 0) AS times_deferred, \
             EXISTS (SELECT 1 FROM agenda_publications a WHERE a.case_id = c.id AND a.session_at >= ",
            $since,
            ") AS on_agenda, COALESCE((SELECT ",
            $agg,
            "(a.invited, '') FROM agenda_publications a \
               WHERE a.case_id = c.id AND a.session_at >= ",
            $since,
            "), '') AS agenda_invited"
        )
    };
}

/// The possible duplicates `d` of a referral of cellule `$cellule` whose person has the linkage
/// key `$key`: the open cases (neither declined nor closed) of that cellule sharing the key.
/// One condition for the duplicate check of a submission and for the duplicates shown with a
/// case.
macro_rules! open_duplicates {
    ($cellule:literal, $key:literal) => {
        concat!(
            "d.cellule = ",
            $cellule,
            " AND d.linkage_key = ",
            $key,
            " AND d.status NOT IN ('declined', 'closed')"
        )
    };
}

/// The columns of [`Database::cellule_access`]'s answer, the subject bound at `$subject`; the
/// cellule is `c`, the membership `m` (see [`access_join!`]).
macro_rules! access_columns {
    ($subject:literal) => {
        concat!(
            "c.slug, c.name, c.code, c.created_at, \
             m.subject, m.role, m.sphere, m.organisation, m.guest, \
             m.created_at AS member_since, m.updated_at AS member_updated_at, \
             EXISTS (SELECT 1 FROM charter_acceptances a \
                     WHERE a.cellule = c.slug AND a.subject = ",
            $subject,
            " AND a.version = (SELECT MAX(v.version) FROM charters v \
                                WHERE v.cellule = c.slug)) AS charter_accepted"
        )
    };
}

/// The cellule `c` and the subject's membership `m` in it, for [`access_columns!`].
macro_rules! access_join {
    ($subject:literal) => {
        concat!(
            "cellules c LEFT JOIN memberships m ON m.cellule = c.slug AND m.subject = ",
            $subject
        )
    };
}

mod lanes;
pub mod postgres;
mod postgres_chain;
pub mod records;
pub mod sqlite;
mod sqlite_batch;
mod sqlite_checkpoint;
mod sqlite_direct;

pub use records::*;

/// What can go wrong in storage, classified for the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database cannot be reached or is overloaded: answered 503, retried by clients.
    #[error("database unavailable: {0}")]
    Unavailable(String),
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

/// A new case for [`Database::commit_batch`]: its row, its wrapped data key and the audit entry
/// of its submission (the reference is filled in by storage).
pub struct CaseWrite<'a> {
    pub case: &'a NewCase,
    pub key: &'a WrappedKey,
    pub audit: &'a Draft,
}

/// What a group commit wrote: each case's reference (in order), each cellule's new head.
#[derive(Debug)]
pub struct Committed {
    pub references: Vec<String>,
    pub heads: Vec<(String, Head)>,
}

/// New cases of one cellule and year: their reference counter is bumped once for all of them.
pub(crate) struct CounterGroup<'a> {
    pub cellule: &'a str,
    pub code: &'a str,
    pub year: i32,
    /// Indexes into the batch, in order.
    pub members: Vec<usize>,
}

pub(crate) fn counter_groups<'a>(cases: &[CaseWrite<'a>]) -> Vec<CounterGroup<'a>> {
    let mut groups: Vec<CounterGroup<'a>> = Vec::new();
    for (i, w) in cases.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|g| g.cellule == w.case.cellule && g.year == w.case.year)
        {
            Some(g) => g.members.push(i),
            None => groups.push(CounterGroup {
                cellule: &w.case.cellule,
                code: &w.case.code,
                year: w.case.year,
                members: vec![i],
            }),
        }
    }
    groups
}

/// The references of a counter group whose counter now stands at `last`.
pub(crate) fn assign_references(g: &CounterGroup<'_>, last: i64, references: &mut [String]) {
    let first = last - i64::try_from(g.members.len()).unwrap_or(i64::MAX) + 1;
    for (k, &i) in g.members.iter().enumerate() {
        let seq = first + i64::try_from(k).unwrap_or(i64::MAX);
        references[i] = crate::domain::case::format_reference(g.code, g.year, seq);
    }
}

/// The entries of a group commit by cellule, in order of first appearance: each new case's
/// submission entry (with its reference), then the other entries in the order given.
pub(crate) fn audit_groups(
    cases: &[CaseWrite<'_>],
    references: &[String],
    entries: &[(&str, &[Draft])],
) -> Vec<(String, Vec<Draft>)> {
    let mut groups: Vec<(String, Vec<Draft>)> = Vec::new();
    let mut push = |cellule: &str, draft: Draft| match groups.iter_mut().find(|g| g.0 == cellule) {
        Some(g) => g.1.push(draft),
        None => groups.push((cellule.to_owned(), vec![draft])),
    };
    for (w, reference) in cases.iter().zip(references) {
        let mut d = w.audit.clone();
        d.case_ref = Some(reference.clone());
        push(&w.case.cellule, d);
    }
    for (cellule, drafts) in entries {
        for d in drafts.iter() {
            push(cellule, d.clone());
        }
    }
    groups
}

/// The columns a new case row is inserted with, in the order every insert binds them (the sqlx
/// builders below, SQLite's batch writer).
pub(crate) const CASE_COLUMNS: &str = "id, cellule, reference, status, urgency, age_band, gender, \
     commune, sector, needs, consent_status, consent_justification, referring_org, referrer, \
     linkage_key, situation, expectations, submitted_at, updated_at";

/// The columns of a new data key row, in bind order.
pub(crate) const KEY_COLUMNS: &str = "id, cellule, case_id, kek_version, wrapped";

/// The columns of a new audit entry, in bind order.
pub(crate) const ENTRY_COLUMNS: &str = "cellule, seq, at_us, actor, actor_role, actor_org, action, \
     case_id, case_ref, target_kind, target_id, outcome, reason, request_id, cases, prev_hash, hash";

/// The multi-row `INSERT`s of a chunk of new cases (with their references) and of their data
/// keys, the same for both backends (the builder writes each one's placeholders).
pub(crate) fn case_inserts<'a, DB>(
    chunk: &'a [(&'a CaseWrite<'a>, &'a String)],
) -> [sqlx::QueryBuilder<'a, DB>; 2]
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Vec<u8>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<Vec<u8>>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut cases = sqlx::QueryBuilder::<DB>::new(format!("INSERT INTO cases ({CASE_COLUMNS}) "));
    push_case_values(&mut cases, chunk);
    let mut keys = sqlx::QueryBuilder::<DB>::new(format!("INSERT INTO data_keys ({KEY_COLUMNS}) "));
    push_key_values(&mut keys, chunk);
    [cases, keys]
}

/// `VALUES (…), (…)` of new case rows, in [`CASE_COLUMNS`] order (a new case is `submitted`).
pub(crate) fn push_case_values<'a, DB>(
    q: &mut sqlx::QueryBuilder<'a, DB>,
    chunk: &'a [(&'a CaseWrite<'a>, &'a String)],
) where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Vec<u8>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<Vec<u8>>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push_values(chunk, |mut b, (w, reference)| {
        let c = w.case;
        b.push_bind(&c.id)
            .push_bind(&c.cellule)
            .push_bind(*reference)
            .push("'submitted'")
            .push_bind(&c.urgency)
            .push_bind(&c.age_band)
            .push_bind(&c.gender)
            .push_bind(&c.commune)
            .push_bind(&c.sector)
            .push_bind(&c.needs)
            .push_bind(&c.consent_status)
            .push_bind(&c.consent_justification)
            .push_bind(&c.referring_org)
            .push_bind(&c.referrer)
            .push_bind(&c.linkage_key)
            .push_bind(&c.situation)
            .push_bind(&c.expectations)
            .push_bind(c.submitted_at)
            .push_bind(c.submitted_at);
    });
}

/// `VALUES (…), (…)` of the new cases' data key rows, in [`KEY_COLUMNS`] order.
pub(crate) fn push_key_values<'a, DB>(
    q: &mut sqlx::QueryBuilder<'a, DB>,
    chunk: &'a [(&'a CaseWrite<'a>, &'a String)],
) where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Vec<u8>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push_values(chunk, |mut b, (w, _)| {
        b.push_bind(&w.key.id)
            .push_bind(&w.key.cellule)
            .push_bind(&w.key.case_id)
            .push_bind(w.key.kek_version)
            .push_bind(&w.key.wrapped);
    });
}

/// The entries `drafts` become after the chain's entry `after` whose hash is `prev`, and the
/// new head hash (`prev` when there are none).
pub(crate) fn chain_entries(
    cellule: &str,
    after: i64,
    prev: Vec<u8>,
    drafts: Vec<Draft>,
) -> (Vec<Entry>, Vec<u8>) {
    let mut hash = prev;
    let mut entries = Vec::with_capacity(drafts.len());
    for (seq, draft) in (after + 1..).zip(drafts) {
        let e = draft.into_entry(cellule, seq, &hash);
        hash.clone_from(&e.hash);
        entries.push(e);
    }
    (entries, hash)
}

/// The multi-row `INSERT` of a chunk of audit entries, the same for both backends.
pub(crate) fn entry_insert<'a, DB>(chunk: &'a [Entry]) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Vec<u8>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut q =
        sqlx::QueryBuilder::<DB>::new(format!("INSERT INTO audit_entries ({ENTRY_COLUMNS}) "));
    push_entry_values(&mut q, chunk);
    q
}

/// Pushes `VALUES (…), (…)` of a chunk of audit entries onto `q`, in [`ENTRY_COLUMNS`] order.
pub(crate) fn push_entry_values<'a, DB>(q: &mut sqlx::QueryBuilder<'a, DB>, chunk: &'a [Entry])
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Vec<u8>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push_values(chunk, |mut b, e| {
        b.push_bind(&e.cellule)
            .push_bind(e.seq)
            .push_bind(e.at_us)
            .push_bind(&e.actor)
            .push_bind(&e.actor_role)
            .push_bind(&e.actor_org)
            .push_bind(&e.action)
            .push_bind(&e.case_id)
            .push_bind(&e.case_ref)
            .push_bind(&e.target_kind)
            .push_bind(&e.target_id)
            .push_bind(&e.outcome)
            .push_bind(&e.reason)
            .push_bind(&e.request_id)
            .push_bind(&e.cases)
            .push_bind(&e.prev_hash)
            .push_bind(&e.hash);
    });
}

/// The agenda a build or edit was about to replace is no longer the one it read.
pub(crate) const AGENDA_MOVED: &str =
    "the session was cancelled, or its agenda published or rebuilt meanwhile: reload it";

/// An item of an agenda write is no longer eligible (or is listed twice).
pub(crate) const ITEMS_MOVED: &str =
    "a case changed meanwhile or went on another session's agenda: rebuild or edit again";

/// A foreign-key violation on insert means the parent cellule does not exist.
pub(crate) fn not_found_on_fk(e: sqlx::Error) -> StorageError {
    if let sqlx::Error::Database(db) = &e
        && db.is_foreign_key_violation()
    {
        return StorageError::NotFound("cellule");
    }
    StorageError::from(e)
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        StorageError::from_sqlx(e, "unique constraint")
    }
}

/// The storage interface every backend implements.
#[async_trait]
pub trait Database: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// A round trip to the database (`/readyz`).
    async fn ping(&self) -> Result<(), StorageError>;

    /// Applies this backend's pending migrations.
    async fn migrate(&self) -> Result<(), StorageError>;

    async fn create_cellule(
        &self,
        new: &NewCellule,
        now: DateTime<Utc>,
    ) -> Result<Cellule, StorageError>;
    async fn get_cellule(&self, slug: &CelluleSlug) -> Result<Option<Cellule>, StorageError>;
    async fn list_cellules(&self) -> Result<Vec<Cellule>, StorageError>;

    /// Creates or replaces a membership; the flag tells whether it was created.
    /// `NotFound("cellule")` when the cellule does not exist.
    async fn put_membership(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
        spec: &MembershipSpec,
        now: DateTime<Utc>,
    ) -> Result<(Membership, bool), StorageError>;
    /// Removes a membership; `false` when there was none.
    async fn delete_membership(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
    ) -> Result<bool, StorageError>;
    /// A cellule as one subject reaches it: the cellule, their membership if any, and whether
    /// they accepted its current charter, in one round trip (the `CelluleMember` extractor's
    /// question on every cellule route). `None` when the cellule does not exist.
    async fn cellule_access(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
    ) -> Result<Option<CelluleAccess>, StorageError>;
    /// [`Database::cellule_access`] and, in the same round trip, case `id` of that cellule with
    /// its view's extras: the status history and the open cases of the cellule sharing its
    /// linkage key (the question of the `CaseReader` extractor, for the read of one case). The
    /// case comes whatever the membership; the caller decides what to show.
    async fn case_access(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
        id: &str,
        agenda_since: DateTime<Utc>,
    ) -> Result<Option<(CelluleAccess, Option<CaseRead>)>, StorageError>;
    /// [`Database::cellule_access`] and, in the same round trip, the references of the open
    /// cases of that cellule sharing `linkage_key`, in submission order (the question of the
    /// `Submitter` extractor: the duplicate check of a referral with an identity). The
    /// references come whatever the membership; the caller decides what to show.
    async fn submit_access(
        &self,
        cellule: &CelluleSlug,
        subject: &Subject,
        linkage_key: &str,
    ) -> Result<Option<(CelluleAccess, Vec<String>)>, StorageError>;
    async fn list_members(&self, cellule: &CelluleSlug) -> Result<Vec<Membership>, StorageError>;
    /// Every membership of one subject, with its cellule, ordered by cellule slug.
    async fn memberships_of(
        &self,
        subject: &Subject,
    ) -> Result<Vec<(Cellule, Membership)>, StorageError>;

    // --- keys (SPEC §8) ---

    /// Key check values per KEK version.
    async fn kek_checks(&self) -> Result<Vec<(i64, Vec<u8>)>, StorageError>;
    async fn insert_kek_check(
        &self,
        version: i64,
        check: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), StorageError>;
    /// How many wrapped keys each KEK version wraps.
    async fn wrapped_key_counts(&self) -> Result<Vec<(i64, i64)>, StorageError>;
    /// Up to `limit` wrapped keys not on `version`, by id.
    async fn keys_not_on(&self, version: i64, limit: i64) -> Result<Vec<WrappedKey>, StorageError>;
    /// Stores re-wrapped keys in one transaction; if any key no longer has its old version,
    /// nothing is stored (`Conflict`).
    async fn replace_wrapped_keys(&self, batch: &[Rewrapped]) -> Result<(), StorageError>;
    async fn get_wrapped_key(&self, id: &str) -> Result<Option<WrappedKey>, StorageError>;
    /// Inserts a key unless one with this id exists (first writer wins).
    async fn insert_wrapped_key_if_absent(&self, key: &WrappedKey) -> Result<(), StorageError>;

    // --- cases (SPEC §3-§7) ---

    /// Inserts a case, its wrapped key and its audit entry in one transaction, allocating the
    /// next reference of the cellule and year (also written into the entry); returns the
    /// reference and the new audit head.
    async fn insert_case(
        &self,
        case: &NewCase,
        key: &WrappedKey,
        audit: Draft,
    ) -> Result<(String, Head), StorageError> {
        let write = CaseWrite {
            case,
            key,
            audit: &audit,
        };
        let done = self.commit_batch(std::slice::from_ref(&write), &[]).await?;
        let reference = done.references.into_iter().next();
        let head = done.heads.into_iter().next().map(|(_, h)| h);
        match (reference, head) {
            (Some(r), Some(h)) => Ok((r, h)),
            _ => Err(StorageError::Other(
                "a case insert returned no reference".into(),
            )),
        }
    }
    /// Group commit: inserts new cases (each with its wrapped key and the entry of its
    /// submission, references allocated here in the order of `cases`) and appends other entries,
    /// all in **one** transaction. See [`crate::audit::appender`].
    async fn commit_batch(
        &self,
        cases: &[CaseWrite<'_>],
        entries: &[(&str, &[Draft])],
    ) -> Result<Committed, StorageError>;
    /// References of open cases of the cellule with this linkage key.
    async fn open_cases_with_linkage(
        &self,
        cellule: &str,
        linkage_key: &str,
    ) -> Result<Vec<String>, StorageError>;
    /// A case; `on_agenda` counts sessions from `agenda_since` on.
    async fn get_case(
        &self,
        cellule: &str,
        id: &str,
        agenda_since: DateTime<Utc>,
    ) -> Result<Option<CaseRecord>, StorageError>;
    async fn list_cases(
        &self,
        cellule: &str,
        filter: &CaseFilter,
    ) -> Result<Vec<CaseRecord>, StorageError>;
    /// Applies a transition and appends its audit entry if the case is still in `from`; `None`
    /// (and no entry) when it was not.
    async fn transition_case(
        &self,
        t: &Transition,
        audit: Draft,
    ) -> Result<Option<Head>, StorageError>;
    /// Inserts a note and its audit entry in one transaction.
    async fn insert_note(
        &self,
        cellule: &str,
        note: &NoteRecord,
        audit: Draft,
    ) -> Result<Head, StorageError>;
    /// Notes of a case whose audience is in `audiences`, oldest first.
    async fn list_notes(
        &self,
        case_id: &str,
        audiences: &[&str],
    ) -> Result<Vec<NoteRecord>, StorageError>;
    async fn get_note(
        &self,
        case_id: &str,
        note_id: &str,
    ) -> Result<Option<NoteRecord>, StorageError>;
    /// Deletes the case (its key, notes and events go with it), leaves a tombstone and appends
    /// the audit entry (its reference filled in), in one transaction. Returns the erased
    /// reference, `None` if there was no such case.
    async fn erase_case(
        &self,
        cellule: &str,
        id: &str,
        tombstone: &Tombstone,
        audit: Draft,
    ) -> Result<Option<(String, Head)>, StorageError>;
    /// Erasure tombstones of a cellule: (reference, reason, erased_at).
    async fn erasures(
        &self,
        cellule: &str,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>, StorageError>;
    async fn retention_settings(&self) -> Result<Vec<RetentionSettings>, StorageError>;
    async fn set_retention(
        &self,
        cellule: &str,
        closed_months: i64,
        declined_months: i64,
    ) -> Result<bool, StorageError>;
    /// Ids of the cellule's cases closed before `closed_before` or declined before `declined_before`.
    async fn expired_cases(
        &self,
        cellule: &str,
        closed_before: DateTime<Utc>,
        declined_before: DateTime<Utc>,
    ) -> Result<Vec<String>, StorageError>;

    // --- charters ---

    async fn current_charter(&self, cellule: &str) -> Result<Option<CharterRecord>, StorageError>;
    /// Adds a charter version; returns it.
    async fn add_charter(
        &self,
        cellule: &str,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StorageError>;
    async fn has_accepted_charter(
        &self,
        cellule: &str,
        subject: &str,
        version: i64,
    ) -> Result<bool, StorageError>;
    /// Records an acceptance and its audit entry in one transaction.
    async fn accept_charter(
        &self,
        cellule: &str,
        subject: &str,
        version: i64,
        now: DateTime<Utc>,
        audit: Draft,
    ) -> Result<Head, StorageError>;

    // --- sessions, agenda, decisions, routing (SPEC §10) ---

    /// The cellule's schedule document (JSON).
    async fn get_schedule(&self, cellule: &str) -> Result<Option<String>, StorageError>;
    async fn put_schedule(
        &self,
        cellule: &str,
        document: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StorageError>;
    /// The cellule's routing directory document (JSON).
    async fn get_directory(&self, cellule: &str) -> Result<Option<String>, StorageError>;
    async fn put_directory(
        &self,
        cellule: &str,
        document: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StorageError>;
    /// Inserts sessions, skipping planned ones whose occurrence already exists; returns the
    /// inserted ones.
    async fn insert_sessions(
        &self,
        sessions: &[SessionRecord],
    ) -> Result<Vec<SessionRecord>, StorageError>;
    /// Sessions starting in [from, to), by start.
    async fn list_sessions(
        &self,
        cellule: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<SessionRecord>, StorageError>;
    async fn get_session(
        &self,
        cellule: &str,
        id: &str,
    ) -> Result<Option<SessionRecord>, StorageError>;
    /// Cancels a planned session: its agenda, deferrals (their counts undone if the agenda was
    /// published) and publications go, the listed cases return to their previous status, and
    /// the audit entries are appended, in one transaction. `None` when the session was not
    /// planned; `Conflict` when decisions are recorded for it, when its agenda is no longer
    /// exactly `items`, or when a revert finds its case moved.
    async fn cancel_session(
        &self,
        cellule: &str,
        id: &str,
        items: &[String],
        reverts: &[Transition],
        audit: Vec<Draft>,
    ) -> Result<Option<Head>, StorageError>;
    /// Cases eligible for the agenda of `session_id`: accepted ones, and followed-up ones due by
    /// `due_by`, that are not on the agenda of another open session (planned, not published,
    /// starting at or after `now`: an agenda left unpublished in the past holds nothing). Each
    /// says whether this session already deferred it (`deferred_here`). In no particular order
    /// (the build sorts them). Read through an index of the eligible cases only: the cellule's
    /// other cases are not visited.
    async fn eligible_cases(
        &self,
        cellule: &str,
        session_id: &str,
        due_by: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Vec<EligibleCase>, StorageError>;
    /// Replaces a session's agenda; with `deferred` (a build), also replaces its set of
    /// deferrals; without (an edit), withdraws the deferral of any case put back on the agenda.
    /// Nothing is counted here: an agenda's deferrals are counted when it is published
    /// (`publish_agenda`). Every item must still be accepted or followed up and on no other open
    /// agenda (`Conflict` otherwise). Audit entries go in the same transaction.
    ///
    /// A build's deferrals are written as a difference when the session's stored deferrals are
    /// exactly `before` (the agenda unchanged since `read_at`, and as many stored deferrals as
    /// `before` holds: none left by a case no longer eligible): nothing at all is written on a
    /// rebuild that defers the same cases. Otherwise the whole set is compared in the database.
    async fn replace_agenda(
        &self,
        cellule: &str,
        session_id: &str,
        items: &[NewAgendaItem],
        deferred: Option<Deferrals<'_>>,
        now: DateTime<Utc>,
        audit: Vec<Draft>,
    ) -> Result<Head, StorageError>;
    async fn agenda(&self, session_id: &str) -> Result<Vec<AgendaItemRecord>, StorageError>;
    async fn agenda_deferred(&self, session_id: &str) -> Result<Vec<DeferredRecord>, StorageError>;
    /// Cases on the agenda of another open session (planned, unpublished, starting at or after
    /// `now`), with that session's id.
    async fn other_agendas(
        &self,
        cellule: &str,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, StorageError>;
    /// Publishes a session's agenda: publication rows (with invited organisations), the moves of
    /// its cases to `scheduled`, one more deferral counted for each case of the session's set of
    /// deferrals, and the audit entries, in one transaction. `Conflict` when the agenda is no
    /// longer exactly the cases of `invited` or a move finds its case moved.
    async fn publish_agenda(
        &self,
        cellule: &str,
        session: &SessionRecord,
        invited: &[(String, String)],
        moves: &[Transition],
        now: DateTime<Utc>,
        audit: Vec<Draft>,
    ) -> Result<Head, StorageError>;
    /// Records a decision with its case transition (and a deferral count for `deferred`) and the
    /// audit entry; `None` when the case was no longer in `t.from`; `Conflict` when the item was
    /// already decided.
    async fn record_decision(
        &self,
        decision: &DecisionRecord,
        t: &Transition,
        audit: Draft,
    ) -> Result<Option<Head>, StorageError>;
    /// Facts of the cases submitted in [from, to).
    async fn stats_cases(
        &self,
        cellule: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<StatsCase>, StorageError>;
    /// Outcomes of the decisions taken in [from, to).
    async fn stats_outcomes(
        &self,
        cellule: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<String>, StorageError>;

    // --- audit (SPEC §9) ---

    /// Appends entries to the cellule's chain in one transaction; returns the new head.
    async fn append_audit(&self, cellule: &str, drafts: Vec<Draft>) -> Result<Head, StorageError>;
    async fn audit_head(&self, cellule: &str) -> Result<Option<Head>, StorageError>;
    /// Up to `limit` entries with a sequence above `after_seq`, in sequence order.
    async fn audit_entries(
        &self,
        cellule: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Entry>, StorageError>;
    /// The [`Link`]s of the entries `after_seq < seq <= after_seq + limit`, in sequence order
    /// (fewer where entries are missing): what verification checks, each hash recomputed from
    /// the stored columns. Both backends read and hash the rows directly (`sqlite_direct`,
    /// `postgres_chain`) instead of building an [`Entry`] per row.
    async fn audit_links(
        &self,
        cellule: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Link>, StorageError>;
    /// Entries matching the filter, newest first.
    async fn search_audit(
        &self,
        cellule: &str,
        filter: &Filter,
    ) -> Result<Vec<Entry>, StorageError>;
    /// Entries about one case, oldest first: those naming its id (an entry that names a case's
    /// reference always names its id too) and those naming it in a set of cases (by id or by
    /// reference).
    async fn case_audit(
        &self,
        cellule: &str,
        case_id: &str,
        case_ref: &str,
    ) -> Result<Vec<Entry>, StorageError>;
    /// (id, reference) of a case, or of an erased case, given its id or its reference.
    async fn resolve_case(
        &self,
        cellule: &str,
        id_or_reference: &str,
    ) -> Result<Option<(String, String)>, StorageError>;
    /// Checkpoints of the cellule, by sequence.
    async fn audit_checkpoints(&self, cellule: &str) -> Result<Vec<Checkpoint>, StorageError>;
    /// Signs and stores a checkpoint at the current head (or returns the one already there);
    /// `None` when the chain is empty.
    async fn checkpoint_audit(
        &self,
        cellule: &str,
        signer: &Signer,
        kind: CheckpointKind,
        now: DateTime<Utc>,
    ) -> Result<Option<Checkpoint>, StorageError>;
    /// Cellules whose head moved since their last checkpoint.
    async fn cellules_with_unsigned_audit(&self) -> Result<Vec<String>, StorageError>;
    /// Audit retention: signs a `retention` checkpoint at the last entry older than
    /// `before_us`, moves the purge mark there, deletes the entries up to it and records the
    /// purge, in one transaction.
    async fn purge_audit(
        &self,
        cellule: &str,
        before_us: i64,
        signer: &Signer,
        now: DateTime<Utc>,
    ) -> Result<Purged, StorageError>;

    /// Closes the pool (graceful shutdown).
    async fn close(&self);
}

/// Opens the backend the URL names, waiting at most `pool.connect_timeout` for it, and applies
/// migrations when `migrate` is set.
pub async fn connect(
    url: &DatabaseUrl,
    pool: &PoolConfig,
    migrate: bool,
) -> Result<Arc<dyn Database>, StorageError> {
    let db: Arc<dyn Database> = match url.backend() {
        Ok(Backend::Sqlite) => Arc::new(sqlite::SqliteDatabase::connect(url, pool).await?),
        Ok(Backend::Postgres) => Arc::new(postgres::PostgresDatabase::connect(url, pool).await?),
        Err(e) => return Err(StorageError::Other(e.to_string())),
    };
    if migrate {
        db.migrate().await?;
    }
    Ok(db)
}

/// A cellule row as both backends return it.
#[derive(sqlx::FromRow)]
pub(crate) struct CelluleRow {
    pub slug: String,
    pub name: String,
    pub code: String,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<CelluleRow> for Cellule {
    type Error = StorageError;
    fn try_from(r: CelluleRow) -> Result<Self, StorageError> {
        let corrupt = |e: crate::domain::Invalid| StorageError::Corrupt(format!("cellule: {e}"));
        Ok(Cellule {
            slug: CelluleSlug::parse(&r.slug).map_err(corrupt)?,
            name: CelluleName::parse(&r.name).map_err(corrupt)?,
            code: CelluleCode::parse(&r.code).map_err(corrupt)?,
            created_at: r.created_at,
        })
    }
}

/// A membership row as both backends return it.
#[derive(sqlx::FromRow)]
pub(crate) struct MembershipRow {
    pub cellule: String,
    pub subject: String,
    pub role: String,
    pub sphere: Option<String>,
    pub organisation: Option<String>,
    pub guest: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<MembershipRow> for Membership {
    type Error = StorageError;
    fn try_from(r: MembershipRow) -> Result<Self, StorageError> {
        let corrupt = |e: crate::domain::Invalid| StorageError::Corrupt(format!("membership: {e}"));
        let spec = MembershipSpec::new(
            Role::parse(&r.role).map_err(corrupt)?,
            r.sphere
                .as_deref()
                .map(Sphere::parse)
                .transpose()
                .map_err(corrupt)?,
            r.organisation
                .as_deref()
                .map(Organisation::parse)
                .transpose()
                .map_err(corrupt)?,
            r.guest,
        )
        .map_err(|(_, e)| corrupt(e))?;
        Ok(Membership {
            cellule: CelluleSlug::parse(&r.cellule).map_err(corrupt)?,
            subject: Subject::parse(&r.subject).map_err(corrupt)?,
            spec,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// A cellule as one subject reaches it ([`Database::cellule_access`]).
#[derive(Debug, Clone)]
pub struct CelluleAccess {
    pub cellule: Cellule,
    pub membership: Option<Membership>,
    /// The subject accepted the cellule's current charter (false when there is none).
    pub charter_accepted: bool,
}

/// A cellule with the subject's membership columns (all null without one) and charter flag.
#[derive(sqlx::FromRow)]
pub(crate) struct CelluleAccessRow {
    #[sqlx(flatten)]
    pub cellule: CelluleRow,
    pub subject: Option<String>,
    pub role: Option<String>,
    pub sphere: Option<String>,
    pub organisation: Option<String>,
    pub guest: Option<bool>,
    pub member_since: Option<DateTime<Utc>>,
    pub member_updated_at: Option<DateTime<Utc>>,
    pub charter_accepted: bool,
}

/// [`CelluleAccessRow`] with the references of [`Database::submit_access`], as a JSON array
/// (`None`: no open case shares the key).
#[derive(sqlx::FromRow)]
pub(crate) struct SubmitAccessRow {
    #[sqlx(flatten)]
    pub access: CelluleAccessRow,
    pub duplicates: Option<String>,
}

impl TryFrom<SubmitAccessRow> for (CelluleAccess, Vec<String>) {
    type Error = StorageError;
    fn try_from(r: SubmitAccessRow) -> Result<Self, StorageError> {
        let duplicates = match r.duplicates.as_deref() {
            Some(j) => serde_json::from_str(j)
                .map_err(|e| StorageError::Corrupt(format!("possible duplicates: {e}")))?,
            None => Vec::new(),
        };
        Ok((CelluleAccess::try_from(r.access)?, duplicates))
    }
}

impl TryFrom<CelluleAccessRow> for CelluleAccess {
    type Error = StorageError;
    fn try_from(r: CelluleAccessRow) -> Result<Self, StorageError> {
        let membership = match (
            r.subject,
            r.role,
            r.guest,
            r.member_since,
            r.member_updated_at,
        ) {
            (Some(subject), Some(role), Some(guest), Some(created_at), Some(updated_at)) => {
                Some(Membership::try_from(MembershipRow {
                    cellule: r.cellule.slug.clone(),
                    subject,
                    role,
                    sphere: r.sphere,
                    organisation: r.organisation,
                    guest,
                    created_at,
                    updated_at,
                })?)
            }
            _ => None,
        };
        Ok(CelluleAccess {
            cellule: Cellule::try_from(r.cellule)?,
            charter_accepted: membership.is_some() && r.charter_accepted,
            membership,
        })
    }
}

/// A row joining a membership with its cellule.
#[derive(sqlx::FromRow)]
pub(crate) struct MembershipWithCelluleRow {
    #[sqlx(flatten)]
    pub membership: MembershipRow,
    pub cellule_name: String,
    pub cellule_code: String,
    pub cellule_created_at: DateTime<Utc>,
}

impl TryFrom<MembershipWithCelluleRow> for (Cellule, Membership) {
    type Error = StorageError;
    fn try_from(r: MembershipWithCelluleRow) -> Result<Self, StorageError> {
        let cellule = Cellule::try_from(CelluleRow {
            slug: r.membership.cellule.clone(),
            name: r.cellule_name,
            code: r.cellule_code,
            created_at: r.cellule_created_at,
        })?;
        Ok((cellule, Membership::try_from(r.membership)?))
    }
}

pub(crate) fn collect<R, T>(rows: Vec<R>) -> Result<Vec<T>, StorageError>
where
    T: TryFrom<R, Error = StorageError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// Whether two lists name the same cases (order aside).
pub(crate) fn same_cases(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut b: Vec<&str> = b.iter().map(String::as_str).collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

/// Audit entries per multi-row insert (17 parameters each: well under both backends' limits).
pub(crate) const AUDIT_INSERT_ROWS: usize = 500;
/// New cases per multi-row insert of a group commit (19 parameters each).
pub(crate) const CASE_INSERT_ROWS: usize = 100;

/// One audit entry as the page queries build it: the columns in table order, hashes in hex.
type EntryJson = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
);

/// A time the database put into a JSON aggregate: RFC 3339 text (as `sqlx` stores it in SQLite)
/// or UTC microseconds (PostgreSQL).
fn json_time(v: &serde_json::Value) -> Result<DateTime<Utc>, StorageError> {
    let bad = || StorageError::Corrupt(format!("time in an aggregate: {v}"));
    match v {
        serde_json::Value::Number(n) => n
            .as_i64()
            .and_then(DateTime::<Utc>::from_timestamp_micros)
            .ok_or_else(bad),
        serde_json::Value::String(s) => DateTime::parse_from_rfc3339(s)
            .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z"))
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// One event as [`Database::case_access`] aggregates it: id, from, to, reason (hex or null),
/// actor, time.
type EventJson = (
    String,
    String,
    String,
    Option<String>,
    String,
    serde_json::Value,
);

/// Decodes a row of [`Database::case_access`]: the access columns, and the case columns, all
/// null when the case is not found.
pub(crate) fn case_access_row<'r, R>(
    row: &'r R,
) -> Result<(CelluleAccess, Option<CaseRead>), StorageError>
where
    R: sqlx::Row,
    CelluleAccessRow: sqlx::FromRow<'r, R>,
    CaseReadRow: sqlx::FromRow<'r, R>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'static str: sqlx::ColumnIndex<R>,
{
    use sqlx::{Column, FromRow};
    // Columns are decoded by name: a case column named like an access column would shadow it.
    debug_assert!(
        {
            let mut names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
            names.sort_unstable();
            names.windows(2).all(|w| w[0] != w[1])
        },
        "a case column has the name of an access column"
    );
    let access = CelluleAccess::try_from(CelluleAccessRow::from_row(row)?)?;
    let found: Option<String> = row.try_get("id")?;
    let case = match found {
        Some(_) => Some(case_read(CaseReadRow::from_row(row)?)?),
        None => None,
    };
    Ok((access, case))
}

/// Decodes the two aggregates of [`Database::case_access`]'s case columns (`None`: empty).
fn case_read(row: CaseReadRow) -> Result<CaseRead, StorageError> {
    let (history, duplicates) =
        history_from_json(row.history.as_deref(), row.duplicates.as_deref())?;
    Ok(CaseRead {
        case: row.case,
        history,
        duplicates,
    })
}

fn history_from_json(
    events: Option<&str>,
    duplicates: Option<&str>,
) -> Result<(Vec<EventRecord>, Vec<String>), StorageError> {
    let corrupt = |e: serde_json::Error| StorageError::Corrupt(format!("case history: {e}"));
    let rows: Vec<EventJson> = match events {
        Some(j) => serde_json::from_str(j).map_err(corrupt)?,
        None => Vec::new(),
    };
    let mut events = rows
        .into_iter()
        .map(|(id, from_status, to_status, reason, actor, at)| {
            Ok(EventRecord {
                id,
                from_status,
                to_status,
                reason: reason
                    .map(hex::decode)
                    .transpose()
                    .map_err(|e| StorageError::Corrupt(format!("event reason: {e}")))?,
                actor,
                at: json_time(&at)?,
            })
        })
        .collect::<Result<Vec<_>, StorageError>>()?;
    events.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
    let rows: Vec<(String, serde_json::Value)> = match duplicates {
        Some(j) => serde_json::from_str(j).map_err(corrupt)?,
        None => Vec::new(),
    };
    let mut dups = rows
        .into_iter()
        .map(|(reference, at)| Ok((json_time(&at)?, reference)))
        .collect::<Result<Vec<_>, StorageError>>()?;
    dups.sort();
    Ok((events, dups.into_iter().map(|(_, r)| r).collect()))
}

/// The links of `entries` up to sequence `upto`, hashed on a blocking thread (a page is some
/// milliseconds of hashing): an in-memory SQLite database, which has no file for the direct
/// reader.
pub(crate) async fn hash_links(entries: Vec<Entry>, upto: i64) -> Result<Vec<Link>, StorageError> {
    tokio::task::spawn_blocking(move || {
        entries
            .iter()
            .filter(|e| e.seq <= upto)
            .map(Link::from)
            .collect()
    })
    .await
    .map_err(|e| StorageError::Other(format!("audit hashing task: {e}")))
}

/// The entries of a page the database aggregated into one JSON array (`None` or `[]`: none), in
/// sequence order.
pub(crate) fn entries_from_json(
    cellule: &str,
    page: Option<&str>,
) -> Result<Vec<Entry>, StorageError> {
    let Some(page) = page else {
        return Ok(Vec::new());
    };
    let rows: Vec<EntryJson> = serde_json::from_str(page)
        .map_err(|e| StorageError::Corrupt(format!("audit page: {e}")))?;
    let hash =
        |h: &str| hex::decode(h).map_err(|e| StorageError::Corrupt(format!("audit hash: {e}")));
    let mut entries = rows
        .into_iter()
        .map(|r| {
            Ok(Entry {
                cellule: cellule.to_owned(),
                seq: r.0,
                at_us: r.1,
                actor: r.2,
                actor_role: r.3,
                actor_org: r.4,
                action: r.5,
                case_id: r.6,
                case_ref: r.7,
                target_kind: r.8,
                target_id: r.9,
                outcome: r.10,
                reason: r.11,
                request_id: r.12,
                cases: r.13,
                prev_hash: hash(&r.14)?,
                hash: hash(&r.15)?,
            })
        })
        .collect::<Result<Vec<_>, StorageError>>()?;
    entries.sort_by_key(|e| e.seq);
    Ok(entries)
}
