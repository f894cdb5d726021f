//! A session's agenda: the eligible cases it is built from, its writes (build or edit,
//! publication, cancellation of the session) and its deferrals ([`super::ReviewStore`]). The
//! changes of a published agenda are in `agenda_amend`.
//!
//! A session's set of deferred cases is stored differently by the backends: one row per case in
//! SQLite's `agenda_deferrals`, one row per session holding an array in PostgreSQL's
//! `session_deferrals` (PostgreSQL migration 0013). The statements on that set are the
//! per-backend parts of this module.

use chrono::{DateTime, NaiveDate, Utc};

use super::cases::Decided;
use super::rows::same_cases;
use super::sql::{Store, Tx, db_run, tx_run};
use super::{
    Deferrals, DeferredRecord, EligibleCase, NewAgendaItem, SessionRecord, StorageError, Transition,
};
use crate::audit::{Draft, Head};

/// The agenda a build or edit was about to replace is no longer the one it read.
const AGENDA_MOVED: &str =
    "the session was cancelled, or its agenda published or rebuilt meanwhile: reload it";

/// An item of an agenda write is no longer eligible (or is listed twice).
const ITEMS_MOVED: &str =
    "a case changed meanwhile or went on another session's agenda: rebuild or edit again";

/// The eligible cases' columns, in `EligibleCase` order but the last (`deferred_here`): the case
/// is `c`, its deferral count `f`.
macro_rules! eligible_columns {
    () => {
        "c.id, c.reference, c.status, c.urgency, c.needs, c.commune, c.sector, c.follow_up_date, \
         COALESCE(f.times, 0) AS times_deferred, c.routed_org, c.submitted_at, c.decided_at"
    };
}

/// The conditions of an eligible case `c` of cellule `$1` for session `$2`: accepted, or
/// followed up and due by `$3`, and on no other open agenda (`$4`: now).
macro_rules! eligible_where {
    () => {
        "WHERE c.cellule = $1 AND c.status IN ('accepted', 'in_follow_up') \
           AND (c.status = 'accepted' OR c.follow_up_date <= $3) \
           AND c.id NOT IN (SELECT ai.case_id FROM agenda_items ai \
                JOIN sessions s ON s.id = ai.session_id \
                WHERE s.cellule = $1 AND s.id <> $2 AND s.status = 'planned' \
                  AND s.published_at IS NULL AND s.starts_at >= $4)"
    };
}

/// The conditions under which the cases `c` of an agenda write may go on session `$3`'s agenda
/// (`$4`: now): accepted or followed up, and on no other open agenda.
macro_rules! items_still_eligible {
    () => {
        "AND c.status IN ('accepted', 'in_follow_up') \
         AND NOT EXISTS (SELECT 1 FROM agenda_items ai JOIN sessions s ON s.id = ai.session_id \
           WHERE ai.case_id = c.id AND s.id <> $3 AND s.status = 'planned' \
             AND s.published_at IS NULL AND s.starts_at >= $4)"
    };
}
pub(super) use items_still_eligible;

pub(crate) async fn eligible_cases(
    store: &Store,
    cellule: &str,
    session_id: &str,
    due_by: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Vec<EligibleCase>, StorageError> {
    Ok(db_run!(store,
        // Served by the covering index of eligible cases (SQLite migrations 0008, 0009).
        sqlite c => {
            sqlx::query_as(concat!(
                "SELECT ",
                eligible_columns!(),
                ", d.case_id IS NOT NULL AS deferred_here \
                 FROM cases c INDEXED BY cases_eligible \
                 LEFT JOIN case_deferrals f ON f.case_id = c.id \
                 LEFT JOIN agenda_deferrals d ON d.session_id = $2 AND d.case_id = c.id ",
                eligible_where!()
            ))
            .bind(cellule)
            .bind(session_id)
            .bind(due_by)
            .bind(now)
            .fetch_all(c)
            .await?
        },
        // Served by the index of the pool (PostgreSQL migration 0014). Not prepared: a plan
        // chosen for a cellule of a few cases would serve one of thousands.
        postgres c => {
            sqlx::query_as(concat!(
                "SELECT ",
                eligible_columns!(),
                ", c.id IN (SELECT unnest(case_ids) FROM session_deferrals \
                     WHERE session_id = $2) AS deferred_here \
                 FROM cases c LEFT JOIN case_deferrals f ON f.case_id = c.id ",
                eligible_where!()
            ))
            .bind(cellule)
            .bind(session_id)
            .bind(due_by)
            .bind(now)
            .persistent(false)
            .fetch_all(c)
            .await?
        },
    ))
}

pub(crate) async fn agenda_deferred(
    store: &Store,
    session_id: &str,
    limit: i64,
) -> Result<Vec<DeferredRecord>, StorageError> {
    Ok(db_run!(store,
        sqlite c => {
            sqlx::query_as(
                "SELECT d.case_id, c.reference, COALESCE(f.times, 0) AS times_deferred \
                 FROM agenda_deferrals d JOIN cases c ON c.id = d.case_id \
                 LEFT JOIN case_deferrals f ON f.case_id = d.case_id \
                 WHERE d.session_id = $1 ORDER BY c.reference LIMIT $2",
            )
            .bind(session_id)
            .bind(limit)
            .fetch_all(c)
            .await?
        },
        postgres c => {
            sqlx::query_as(
                "SELECT d.case_id, c.reference, COALESCE(f.times, 0) AS times_deferred \
                 FROM session_deferrals s CROSS JOIN unnest(s.case_ids) AS d(case_id) \
                 JOIN cases c ON c.id = d.case_id LEFT JOIN case_deferrals f ON f.case_id = d.case_id \
                 WHERE s.session_id = $1 ORDER BY c.reference LIMIT $2",
            )
            .bind(session_id)
            .bind(limit)
            .fetch_all(c)
            .await?
        },
    ))
}

pub(crate) async fn agenda_deferred_count(
    store: &Store,
    session_id: &str,
) -> Result<i64, StorageError> {
    Ok(db_run!(store,
        sqlite c => {
            sqlx::query_scalar("SELECT count(*) FROM agenda_deferrals WHERE session_id = $1")
                .bind(session_id)
                .fetch_one(c)
                .await?
        },
        postgres c => {
            sqlx::query_scalar(
                "SELECT COALESCE(SUM(cardinality(case_ids)), 0)::bigint FROM session_deferrals \
                 WHERE session_id = $1",
            )
            .bind(session_id)
            .fetch_one(c)
            .await?
        },
    ))
}

pub(crate) async fn cancel_session(
    store: &Store,
    cellule: &str,
    id: &str,
    items: &[String],
    reverts: &[Transition],
    audit: Vec<Draft>,
) -> Result<Option<Head>, StorageError> {
    let mut tx = store.begin().await?;
    let (cancelled, decided, current) = tx_run!(&mut tx, c => {
        let cancelled = sqlx::query(
            "UPDATE sessions SET status = 'cancelled' \
             WHERE cellule = $1 AND id = $2 AND status = 'planned' AND opened_at IS NULL",
        )
        .bind(cellule)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected();
        let decided: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM decisions WHERE session_id = $1")
            .bind(id)
            .fetch_one(&mut *c)
            .await?;
        let current: Vec<String> =
            sqlx::query_scalar("SELECT case_id FROM agenda_items WHERE session_id = $1")
                .bind(id)
                .fetch_all(&mut *c)
                .await?;
        (cancelled, decided, current)
    });
    if cancelled != 1 {
        tx.rollback().await?;
        return Ok(None);
    }
    if decided > 0 {
        tx.rollback().await?;
        return Err(StorageError::Conflict(
            "decisions are recorded for this session",
        ));
    }
    if !same_cases(&current, items) {
        tx.rollback().await?;
        return Err(StorageError::Conflict("the agenda changed meanwhile"));
    }
    // A published agenda's deferrals were counted: the count is undone with it.
    tx_run!(&mut tx,
        sqlite c => {
            sqlx::query(
                "UPDATE case_deferrals SET times = times - 1 WHERE case_id IN \
                 (SELECT case_id FROM agenda_deferrals WHERE session_id = $1) \
                 AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = $1 AND s.published_at IS NOT NULL)",
            )
            .bind(id)
            .execute(&mut *c)
            .await?;
            sqlx::query("DELETE FROM agenda_deferrals WHERE session_id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?;
        },
        postgres c => {
            sqlx::query(
                "UPDATE case_deferrals f SET times = f.times - 1 \
                 FROM (SELECT unnest(case_ids) AS id FROM session_deferrals WHERE session_id = $1) d \
                 WHERE f.case_id = d.id \
                   AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = $1 AND s.published_at IS NOT NULL)",
            )
            .bind(id)
            .execute(&mut *c)
            .await?;
            sqlx::query("DELETE FROM session_deferrals WHERE session_id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?;
        },
    );
    tx_run!(&mut tx, c => {
        for table in ["agenda_items", "agenda_publications"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE session_id = $1"))
                .bind(id)
                .execute(&mut *c)
                .await?;
        }
    });
    for t in reverts {
        if !tx.move_case(t, Decided::KeepFirst).await? {
            tx.rollback().await?;
            return Err(StorageError::Conflict(
                "a case of this agenda changed meanwhile",
            ));
        }
    }
    let head = tx.append(cellule, audit).await?;
    tx.commit().await?;
    Ok(Some(head))
}

pub(crate) async fn replace_agenda(
    store: &Store,
    cellule: &str,
    session_id: &str,
    items: &[NewAgendaItem],
    deferred: Option<Deferrals<'_>>,
    now: DateTime<Utc>,
    audit: Vec<Draft>,
) -> Result<Head, StorageError> {
    let mut tx = store.begin().await?;
    let moved = tx_run!(&mut tx, c => {
        sqlx::query(
            "UPDATE sessions SET agenda_built_at = $3 WHERE cellule = $1 AND id = $2 \
             AND status = 'planned' AND published_at IS NULL \
             AND (NOT $4 OR agenda_built_at IS NOT DISTINCT FROM $5)",
        )
        .bind(cellule)
        .bind(session_id)
        .bind(now)
        .bind(deferred.is_some())
        .bind(deferred.and_then(|d| d.read_at))
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if moved != 1 {
        tx.rollback().await?;
        return Err(StorageError::Conflict(AGENDA_MOVED));
    }
    // Every item's case in one statement.
    let ids: Vec<&str> = items.iter().map(|i| i.case_id.as_str()).collect();
    let eligible: i64 = tx_run!(&mut tx,
        sqlite c => {
            sqlx::query_scalar(concat!(
                "SELECT count(*) FROM cases c WHERE c.cellule = $1 \
                   AND c.id IN (SELECT value FROM json_each($2)) ",
                items_still_eligible!()
            ))
            .bind(cellule)
            .bind(json(&ids)?)
            .bind(session_id)
            .bind(now)
            .fetch_one(&mut *c)
            .await?
        },
        postgres c => {
            sqlx::query_scalar(concat!(
                "SELECT count(*) FROM cases c WHERE c.cellule = $1 AND c.id = ANY($2::text[]) ",
                items_still_eligible!()
            ))
            .bind(cellule)
            .bind(&ids)
            .bind(session_id)
            .bind(now)
            .fetch_one(&mut *c)
            .await?
        },
    );
    // A case listed twice counts once: refused too (the API refuses it before).
    if usize::try_from(eligible).ok() != Some(ids.len()) {
        tx.rollback().await?;
        return Err(StorageError::Conflict(ITEMS_MOVED));
    }
    match deferred {
        // Only the set changes: deferrals are counted when the agenda is published
        // (`publish_agenda`), not by a build the coordinator may still redo or edit.
        Some(deferred) => tx.replace_deferrals(session_id, deferred).await?,
        // An edit that puts a deferred case back on the agenda withdraws its deferral.
        None if !ids.is_empty() => tx.withdraw_deferrals(session_id, &ids).await?,
        None => {}
    }
    tx_run!(&mut tx, c => {
        sqlx::query("DELETE FROM agenda_items WHERE session_id = $1")
            .bind(session_id)
            .execute(&mut *c)
            .await?;
        if !items.is_empty() {
            // At most 600 items (a 600-minute session at one minute a case; edits: 200): 3,600
            // parameters, within both backends' limits.
            let mut insert = sqlx::QueryBuilder::new(
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
            insert.build().persistent(false).execute(&mut *c).await?;
        }
    });
    let head = tx.append(cellule, audit).await?;
    tx.commit().await?;
    Ok(head)
}

/// Case ids as a JSON array (SQLite reads it with `json_each`).
fn json(ids: &[&str]) -> Result<String, StorageError> {
    serde_json::to_string(ids).map_err(|e| StorageError::Other(format!("case ids: {e}")))
}

impl Tx {
    /// Replaces a session's set of deferrals with a build's (see
    /// [`super::ReviewStore::replace_agenda`]).
    async fn replace_deferrals(
        &mut self,
        session_id: &str,
        deferred: Deferrals<'_>,
    ) -> Result<(), StorageError> {
        tx_run!(self,
            sqlite c => {
                let stored: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM agenda_deferrals WHERE session_id = $1")
                        .bind(session_id)
                        .fetch_one(&mut *c)
                        .await?;
                if usize::try_from(stored).ok() == Some(deferred.before.len()) {
                    // The stored deferrals are `before`: only the difference is written.
                    let (withdrawn, added) = deferred.difference();
                    if !withdrawn.is_empty() {
                        sqlx::query(
                            "DELETE FROM agenda_deferrals WHERE session_id = $1 \
                             AND case_id IN (SELECT value FROM json_each($2))",
                        )
                        .bind(session_id)
                        .bind(json(&withdrawn)?)
                        .execute(&mut *c)
                        .await?;
                    }
                    if !added.is_empty() {
                        sqlx::query(
                            "INSERT INTO agenda_deferrals (session_id, case_id) \
                             SELECT $1, value FROM json_each($2)",
                        )
                        .bind(session_id)
                        .bind(json(&added)?)
                        .execute(&mut *c)
                        .await?;
                    }
                } else {
                    // The whole set compared in the database; one statement each, however many
                    // cases are deferred.
                    let mut all: Vec<&str> = deferred.all.iter().map(String::as_str).collect();
                    all.sort_unstable(); // key order, as `difference` gives
                    let all = json(&all)?;
                    sqlx::query(
                        "DELETE FROM agenda_deferrals WHERE session_id = $1 \
                         AND case_id NOT IN (SELECT value FROM json_each($2))",
                    )
                    .bind(session_id)
                    .bind(&all)
                    .execute(&mut *c)
                    .await?;
                    sqlx::query(
                        "INSERT OR IGNORE INTO agenda_deferrals (session_id, case_id) \
                         SELECT $1, value FROM json_each($2)",
                    )
                    .bind(session_id)
                    .bind(&all)
                    .execute(&mut *c)
                    .await?;
                }
            },
            postgres c => {
                // The session's set as stored (the session row's lock keeps it), compared with
                // the build's: the set is written whole, as one row, and only when it changed.
                // `before` is the stored set as the build read it, less the cases that left the
                // pool since; no build or edit came in between (`read_at`), and an erasure only
                // takes cases out, so a stored set of the same size is `before` and need not be
                // read (thousands of ids) again.
                let size: Option<i32> = sqlx::query_scalar(
                    "SELECT cardinality(case_ids) FROM session_deferrals WHERE session_id = $1",
                )
                .bind(session_id)
                .fetch_optional(&mut *c)
                .await?;
                let stored: Vec<String>;
                let before = if usize::try_from(size.unwrap_or(0)).ok() == Some(deferred.before.len()) {
                    deferred.before
                } else {
                    stored = sqlx::query_scalar(
                        "SELECT case_ids FROM session_deferrals WHERE session_id = $1",
                    )
                    .bind(session_id)
                    .fetch_optional(&mut *c)
                    .await?
                    .unwrap_or_default();
                    &stored
                };
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
                    .execute(&mut *c)
                    .await?;
                }
            },
        );
        Ok(())
    }

    /// Withdraws the deferrals of `ids` from a session's set.
    async fn withdraw_deferrals(
        &mut self,
        session_id: &str,
        ids: &[&str],
    ) -> Result<(), StorageError> {
        tx_run!(self,
            sqlite c => {
                sqlx::query(
                    "DELETE FROM agenda_deferrals WHERE session_id = $1 \
                     AND case_id IN (SELECT value FROM json_each($2))",
                )
                .bind(session_id)
                .bind(json(ids)?)
                .execute(&mut *c)
                .await?;
            },
            postgres c => {
                sqlx::query(
                    "UPDATE session_deferrals \
                     SET case_ids = ARRAY(SELECT d FROM unnest(case_ids) AS d WHERE d <> ALL($2::text[])) \
                     WHERE session_id = $1 AND case_ids && $2::text[]",
                )
                .bind(session_id)
                .bind(ids)
                .execute(&mut *c)
                .await?;
            },
        );
        Ok(())
    }
}

pub(crate) async fn publish_agenda(
    store: &Store,
    cellule: &str,
    session: &SessionRecord,
    invited: &[(String, String)],
    moves: &[Transition],
    now: DateTime<Utc>,
    audit: Vec<Draft>,
) -> Result<Head, StorageError> {
    let mut tx = store.begin().await?;
    let (published, current) = tx_run!(&mut tx, c => {
        let published = sqlx::query(
            "UPDATE sessions SET published_at = $3 WHERE cellule = $1 AND id = $2 \
             AND status = 'planned' AND published_at IS NULL",
        )
        .bind(cellule)
        .bind(&session.id)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected();
        let current: Vec<String> =
            sqlx::query_scalar("SELECT case_id FROM agenda_items WHERE session_id = $1")
                .bind(&session.id)
                .fetch_all(&mut *c)
                .await?;
        (published, current)
    });
    if published != 1 {
        tx.rollback().await?;
        return Err(StorageError::Conflict(
            "the session is cancelled or its agenda is published",
        ));
    }
    let expected: Vec<String> = invited.iter().map(|(id, _)| id.clone()).collect();
    if !same_cases(&current, &expected) {
        tx.rollback().await?;
        return Err(StorageError::Conflict("the agenda changed meanwhile"));
    }
    if !invited.is_empty() {
        tx_run!(&mut tx, c => {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO agenda_publications \
                   (case_id, session_id, session_at, published_at, invited) ",
            );
            insert.push_values(invited, |mut b, (case_id, orgs)| {
                b.push_bind(case_id)
                    .push_bind(&session.id)
                    .push_bind(session.starts_at)
                    .push_bind(now)
                    .push_bind(orgs);
            });
            insert.build().persistent(false).execute(&mut *c).await?;
        });
    }
    for t in moves {
        if !tx.move_case(t, Decided::KeepFirst).await? {
            tx.rollback().await?;
            return Err(StorageError::Conflict(
                "a case of this agenda changed meanwhile",
            ));
        }
    }
    // Publication makes the build's deferrals real: each case of the session's set is counted
    // once, in one statement however many (an upsert, as a decision or another publication may
    // count the same case at the same moment).
    tx_run!(&mut tx,
        // The `WHERE` keeps SQLite from reading `ON CONFLICT` as a join constraint.
        sqlite c => {
            sqlx::query(
                "INSERT INTO case_deferrals (case_id, times) \
                 SELECT case_id, 1 FROM agenda_deferrals WHERE session_id = $1 AND true \
                 ON CONFLICT (case_id) DO UPDATE SET times = case_deferrals.times + 1",
            )
            .bind(&session.id)
            .execute(&mut *c)
            .await?;
        },
        postgres c => {
            sqlx::query(
                "INSERT INTO case_deferrals (case_id, times) \
                 SELECT unnest(case_ids), 1 FROM session_deferrals WHERE session_id = $1 \
                 ON CONFLICT (case_id) DO UPDATE SET times = case_deferrals.times + 1",
            )
            .bind(&session.id)
            .execute(&mut *c)
            .await?;
        },
    );
    let head = tx.append(cellule, audit).await?;
    tx.commit().await?;
    Ok(head)
}
