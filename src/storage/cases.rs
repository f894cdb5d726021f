//! Cases: submission (through the group commit, `batch`), reads, transitions, notes, erasure
//! and the linkage lookups of the duplicate check.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::batch::{CaseWrite, Committed};
use super::idempotency::IdempotencyAnswer;
use super::sql::{Store, Tx, db_run, tx_run};
use super::{
    CaseFilter, CaseRecord, EventRecord, NewCase, NoteRecord, ReferrerDecline, StorageError,
    Tombstone, Transition, WrappedKey,
};
use crate::audit::{Draft, Head};
use crate::domain::case::Needs;

/// The columns of a case row, in `CaseRecord` order: the case is `c`, its data key `k`, and
/// `$since` the placeholder of the agenda window's start (`on_agenda`, `agenda_invited`).
macro_rules! case_columns {
    ($since:literal) => {
        concat!(
            "c.id, c.cellule, c.reference, c.status, c.urgency, c.age_band, c.gender, c.commune, \
             c.sector, c.needs, c.consent_status, c.consent_justification, c.referring_org, \
             c.referrer, c.linkage_key, c.routed_org, c.follow_up_date, c.situation, \
             c.expectations, c.submitted_at, c.decided_at, c.closed_at, c.updated_at, \
             k.wrapped AS key_wrapped, \
             COALESCE((SELECT f.times FROM case_deferrals f WHERE f.case_id = c.id), 0) \
               AS times_deferred, \
             EXISTS (SELECT 1 FROM agenda_publications a WHERE a.case_id = c.id \
               AND a.session_at >= ",
            $since,
            ") AS on_agenda, \
             COALESCE((SELECT string_agg(a.invited, '') FROM agenda_publications a \
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

/// [`CaseStore::list_cases`]; `$instr` is the backend's substring search.
macro_rules! list_cases_sql {
    ($instr:literal) => {
        concat!(
            "SELECT ",
            case_columns!("$14"),
            " FROM cases c JOIN data_keys k ON k.id = c.id \
             WHERE c.cellule = $1 \
               AND ($2 IS NULL OR c.status = $2) \
               AND ($3 IS NULL OR c.urgency = $3) \
               AND ($4 IS NULL OR c.needs LIKE $4) \
               AND ($5 IS NULL OR c.sector = $5) \
               AND ($6 IS NULL OR c.commune = $6) \
               AND ($7 IS NULL OR c.submitted_at >= $7) \
               AND ($8 IS NULL OR c.submitted_at < $8) \
               AND ($9 IS NULL OR c.routed_org = $9 \
                  OR ($15 AND EXISTS (SELECT 1 FROM agenda_publications a \
                    WHERE a.case_id = c.id AND a.session_at >= $14)) \
                  OR ($16 IS NOT NULL AND EXISTS (SELECT 1 FROM agenda_publications a \
                    WHERE a.case_id = c.id AND a.session_at >= $14 AND ",
            $instr,
            "(a.invited, $16) > 0))) \
               AND ($10 IS NULL OR c.referrer = $10) \
               AND ($11 IS NULL OR c.submitted_at < $11 OR (c.submitted_at = $11 AND c.id < $12)) \
             ORDER BY c.submitted_at DESC, c.id DESC LIMIT $13"
        )
    };
}

/// The columns of a note, in `NoteRecord` order (and the order its insert binds them).
macro_rules! note_columns {
    () => {
        "id, case_id, author, author_role, author_sphere, author_organisation, audience, \
         corrects, body, created_at"
    };
}

/// Cases, notes, events, erasure and the linkage lookups.
#[async_trait]
pub trait CaseStore: Send + Sync {
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
            answer: None,
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
    /// all in **one** transaction. See [`crate::services::audit_log`].
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
    /// A case, named by its id or its reference; `on_agenda` counts sessions from
    /// `agenda_since` on.
    async fn get_case(
        &self,
        cellule: &str,
        id: &str,
        agenda_since: DateTime<Utc>,
    ) -> Result<Option<CaseRecord>, StorageError>;
    /// A case's status changes, in order.
    async fn case_events(&self, case_id: &str) -> Result<Vec<EventRecord>, StorageError>;
    /// The declines with a message for the referrer of the declined cases `referrer` referred in
    /// `cellule`, oldest first (the referrer's status view).
    async fn referrer_declines(
        &self,
        cellule: &str,
        referrer: &str,
    ) -> Result<Vec<ReferrerDecline>, StorageError>;
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
    ) -> Result<Option<Head>, StorageError> {
        self.transition_case_answered(t, audit, None).await
    }
    /// [`Self::transition_case`], writing `answer` (an idempotency key's) in its transaction.
    async fn transition_case_answered(
        &self,
        t: &Transition,
        audit: Draft,
        answer: Option<&IdempotencyAnswer>,
    ) -> Result<Option<Head>, StorageError>;
    /// Inserts a note and its audit entry in one transaction.
    async fn insert_note(
        &self,
        cellule: &str,
        note: &NoteRecord,
        audit: Draft,
    ) -> Result<Head, StorageError> {
        self.insert_note_answered(cellule, note, audit, None).await
    }
    /// [`Self::insert_note`], writing `answer` (an idempotency key's) in its transaction.
    async fn insert_note_answered(
        &self,
        cellule: &str,
        note: &NoteRecord,
        audit: Draft,
        answer: Option<&IdempotencyAnswer>,
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
    /// (id, status) of the cellule's cases closed before `closed_before` or declined before
    /// `declined_before` (the status tells which rule applies).
    async fn expired_cases(
        &self,
        cellule: &str,
        closed_before: DateTime<Utc>,
        declined_before: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, StorageError>;
}

#[async_trait]
impl CaseStore for Store {
    async fn commit_batch(
        &self,
        cases: &[CaseWrite<'_>],
        entries: &[(&str, &[Draft])],
    ) -> Result<Committed, StorageError> {
        super::batch::commit(self, cases, entries).await
    }

    async fn open_cases_with_linkage(
        &self,
        cellule: &str,
        linkage_key: &str,
    ) -> Result<Vec<String>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_scalar(concat!(
                "SELECT d.reference FROM cases d WHERE ",
                open_duplicates!("$1", "$2"),
                " ORDER BY d.submitted_at"
            ))
            .bind(cellule)
            .bind(linkage_key)
            .fetch_all(c)
            .await?
        }))
    }

    async fn get_case(
        &self,
        cellule: &str,
        id: &str,
        agenda_since: DateTime<Utc>,
    ) -> Result<Option<CaseRecord>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(concat!(
                "SELECT ",
                case_columns!("$3"),
                " FROM cases c JOIN data_keys k ON k.id = c.id \
                 WHERE c.cellule = $1 AND (c.id = $2 OR c.reference = $2)"
            ))
            .bind(cellule)
            .bind(id)
            .bind(agenda_since)
            .fetch_optional(c)
            .await?
        }))
    }

    async fn case_events(&self, case_id: &str) -> Result<Vec<EventRecord>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT id, from_status, to_status, reason, referrer_message, actor, at \
                 FROM case_events \
                 WHERE case_id = $1 ORDER BY at, id",
            )
            .bind(case_id)
            .fetch_all(c)
            .await?
        }))
    }

    async fn referrer_declines(
        &self,
        cellule: &str,
        referrer: &str,
    ) -> Result<Vec<ReferrerDecline>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT e.case_id, e.id AS event_id, e.referrer_message \
                 FROM case_events e JOIN cases c ON c.id = e.case_id \
                 WHERE c.cellule = $1 AND c.referrer = $2 AND c.status = 'declined' \
                   AND e.to_status = 'declined' AND e.referrer_message IS NOT NULL \
                 ORDER BY e.at, e.id",
            )
            .bind(cellule)
            .bind(referrer)
            .fetch_all(c)
            .await?
        }))
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
        let sql = self.pick(list_cases_sql!("instr"), list_cases_sql!("strpos"));
        Ok(db_run!(self, c => {
            sqlx::query_as(sql)
                .bind(cellule)
                .bind(f.status)
                .bind(f.urgency)
                .bind(f.need.map(Needs::pattern))
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
                .fetch_all(c)
                .await?
        }))
    }

    async fn transition_case_answered(
        &self,
        t: &Transition,
        audit: Draft,
        answer: Option<&IdempotencyAnswer>,
    ) -> Result<Option<Head>, StorageError> {
        let mut tx = self.begin().await?;
        if !tx.move_case(t, Decided::Now).await? {
            tx.rollback().await?;
            return Ok(None);
        }
        if let Some(answer) = answer {
            tx.complete_idempotency(answer).await?;
        }
        let head = tx.append(&t.cellule, vec![audit]).await?;
        tx.commit().await?;
        Ok(Some(head))
    }

    async fn insert_note_answered(
        &self,
        cellule: &str,
        n: &NoteRecord,
        audit: Draft,
        answer: Option<&IdempotencyAnswer>,
    ) -> Result<Head, StorageError> {
        let mut tx = self.begin().await?;
        if let Some(answer) = answer {
            tx.complete_idempotency(answer).await?;
        }
        tx_run!(&mut tx, c => {
            sqlx::query(concat!(
                "INSERT INTO notes (",
                note_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ))
            .bind(&n.id)
            .bind(&n.case_id)
            .bind(&n.author)
            .bind(n.author_role)
            .bind(n.author_sphere)
            .bind(&n.author_organisation)
            .bind(n.audience)
            .bind(&n.corrects)
            .bind(&n.body)
            .bind(n.created_at)
            .execute(&mut *c)
            .await?;
        });
        let head = tx.append(cellule, vec![audit]).await?;
        tx.commit().await?;
        Ok(head)
    }

    async fn list_notes(
        &self,
        case_id: &str,
        audiences: &[&str],
    ) -> Result<Vec<NoteRecord>, StorageError> {
        let pick = |i: usize| audiences.get(i).copied();
        Ok(db_run!(self, c => {
            sqlx::query_as(concat!(
                "SELECT ",
                note_columns!(),
                " FROM notes WHERE case_id = $1 AND audience IN ($2, $3, $4) \
                 ORDER BY created_at, id"
            ))
            .bind(case_id)
            .bind(pick(0))
            .bind(pick(1))
            .bind(pick(2))
            .fetch_all(c)
            .await?
        }))
    }

    async fn get_note(
        &self,
        case_id: &str,
        note_id: &str,
    ) -> Result<Option<NoteRecord>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(concat!(
                "SELECT ",
                note_columns!(),
                " FROM notes WHERE case_id = $1 AND id = $2"
            ))
            .bind(case_id)
            .bind(note_id)
            .fetch_optional(c)
            .await?
        }))
    }

    async fn erase_case(
        &self,
        cellule: &str,
        id: &str,
        tomb: &Tombstone,
        mut audit: Draft,
    ) -> Result<Option<(String, Head)>, StorageError> {
        let mut tx = self.begin().await?;
        let reference: Option<String> = tx_run!(&mut tx, c => {
            sqlx::query_scalar(
                "DELETE FROM cases WHERE cellule = $1 AND id = $2 RETURNING reference",
            )
            .bind(cellule)
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
        });
        let Some(reference) = reference else {
            tx.rollback().await?;
            return Ok(None);
        };
        // The deferral tables hold no foreign keys (SQLite 0009; PostgreSQL 0009, 0013): the
        // case goes from them here.
        tx_run!(&mut tx, c => {
            sqlx::query("DELETE FROM case_deferrals WHERE case_id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?;
        });
        tx_run!(&mut tx,
            sqlite c => {
                sqlx::query("DELETE FROM agenda_deferrals WHERE case_id = $1")
                    .bind(id)
                    .execute(&mut *c)
                    .await?;
            },
            // Every session's set is read for it (one row per session): erasure is rare.
            postgres c => {
                sqlx::query(
                    "UPDATE session_deferrals SET case_ids = array_remove(case_ids, $1) \
                     WHERE case_ids @> ARRAY[$1]::text[]",
                )
                .bind(id)
                .execute(&mut *c)
                .await?;
            },
        );
        tx_run!(&mut tx, c => {
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
            .execute(&mut *c)
            .await?;
        });
        // The idempotent answers about the case go with it (a replay answers 404).
        tx.forget_idempotency_of_case(id).await?;
        audit.case_ref = Some(reference.clone());
        let head = tx.append(cellule, vec![audit]).await?;
        tx.commit().await?;
        // SQLite: deleted pages are zeroed (`secure_delete`); the write-ahead log is folded back
        // and emptied so that no frame of the erased rows stays in the `-wal` file. The erasure
        // is committed either way, so a failure is only reported.
        db_run!(self,
            sqlite p => {
                match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
                    .fetch_one(p)
                    .await
                {
                    Ok((0, _, _)) => {}
                    Ok(_) => tracing::warn!(
                        "WAL not truncated after an erasure: a reader or another writer was in the way"
                    ),
                    Err(e) => tracing::warn!(error = %e, "WAL not truncated after an erasure"),
                }
            },
            postgres _p => {},
        );
        Ok(Some((reference, head)))
    }

    async fn erasures(
        &self,
        cellule: &str,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT reference, reason, erased_at FROM erasures WHERE cellule = $1 \
                 ORDER BY erased_at, reference",
            )
            .bind(cellule)
            .fetch_all(c)
            .await?
        }))
    }

    async fn expired_cases(
        &self,
        cellule: &str,
        closed_before: DateTime<Utc>,
        declined_before: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT id, status FROM cases WHERE cellule = $1 AND \
                   ((status = 'closed' AND closed_at < $2) \
                    OR (status = 'declined' AND decided_at < $3)) \
                 ORDER BY id",
            )
            .bind(cellule)
            .bind(closed_before)
            .bind(declined_before)
            .fetch_all(c)
            .await?
        }))
    }
}

/// What a move to `accepted` or `declined` does with the case's decision time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decided {
    /// Set to the move's time (a transition asked for).
    Now,
    /// Set only if there is none (a case put back by a cancelled session keeps its own).
    KeepFirst,
}

impl Tx {
    /// Applies a status change (with its event) if the case is still in `t.from`; `false` if not.
    pub(crate) async fn move_case(
        &mut self,
        t: &Transition,
        decided: Decided,
    ) -> Result<bool, StorageError> {
        tx_run!(self, c => {
            let done = sqlx::query(
                "UPDATE cases SET status = $1, updated_at = $2, \
                   decided_at = CASE WHEN $1 IN ('accepted', 'declined') \
                     AND ($8 OR decided_at IS NULL) THEN $2 ELSE decided_at END, \
                   closed_at = CASE WHEN $1 = 'closed' THEN $2 ELSE closed_at END, \
                   follow_up_date = COALESCE($3, follow_up_date), \
                   routed_org = COALESCE($4, routed_org) \
                 WHERE cellule = $5 AND id = $6 AND status = $7",
            )
            .bind(t.to)
            .bind(t.at)
            .bind(t.follow_up_date)
            .bind(&t.routed_org)
            .bind(&t.cellule)
            .bind(&t.case_id)
            .bind(t.from)
            .bind(decided == Decided::Now)
            .execute(&mut *c)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
        });
        self.case_event(t).await?;
        Ok(true)
    }

    /// The case history's line for a status change.
    pub(crate) async fn case_event(&mut self, t: &Transition) -> Result<(), StorageError> {
        tx_run!(self, c => {
            sqlx::query(
                "INSERT INTO case_events \
                   (id, case_id, from_status, to_status, reason, referrer_message, actor, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&t.event_id)
            .bind(&t.case_id)
            .bind(t.from)
            .bind(t.to)
            .bind(&t.reason)
            .bind(&t.referrer_message)
            .bind(&t.actor)
            .bind(t.at)
            .execute(&mut *c)
            .await?;
        });
        Ok(())
    }
}
