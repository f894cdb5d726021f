//! Group commit ([`super::CaseStore::commit_batch`]): new cases, their data keys and audit
//! entries of several requests in one transaction.
//!
//! The audit log (`services::audit_log`) queues every submission and every read's entry and
//! writes all those queued meanwhile in one batch. A batch is one transaction of a fixed number
//! of statements whatever its size: the reference counters of its cellules and years move in
//! one upsert, the cases and keys go in multi-row inserts, and the chains append as in every
//! transaction (`Tx::append_groups`: the heads move in one upsert, the entries go in multi-row
//! inserts, the heads take their hashes). A case, its key and the entry of its submission are
//! in the same transaction.
//!
//! On PostgreSQL, a batch that moves several counters (or heads) first locks their rows with
//! `SELECT … ORDER BY … FOR UPDATE`, in the order of their keys, as every transaction moving
//! more than one does: two batches with opposite mixes of cellules cannot deadlock. Counters
//! are always taken before heads. On SQLite the transaction holds the database's write lock
//! from its `BEGIN IMMEDIATE`.

use super::idempotency::IdempotencyAnswer;
use super::keys::key_columns;
use super::sql::{Store, Tx, tx_run};
use super::{NewCase, StorageError, WrappedKey, not_found_on_fk};
use crate::audit::{Draft, Head};

/// A new case for [`super::CaseStore::commit_batch`]: its row, its wrapped data key and the
/// audit entry of its submission (the reference is filled in by storage).
pub struct CaseWrite<'a> {
    pub case: &'a NewCase,
    pub key: &'a WrappedKey,
    pub audit: &'a Draft,
    /// The answer of the request's idempotency key, written in the same transaction (its
    /// reference filled in here).
    pub answer: Option<&'a IdempotencyAnswer>,
}

/// What a group commit wrote: each case's reference (in order), each cellule's new head.
#[derive(Debug)]
pub struct Committed {
    pub references: Vec<String>,
    pub heads: Vec<(String, Head)>,
}

/// New cases per multi-row insert (19 parameters each).
const CASE_INSERT_ROWS: usize = 100;

/// The columns a new case row is inserted with, in the order the insert binds them.
macro_rules! new_case_columns {
    () => {
        "id, cellule, reference, status, urgency, age_band, gender, commune, sector, needs, \
         consent_status, consent_justification, referring_org, referrer, linkage_key, situation, \
         expectations, submitted_at, updated_at"
    };
}

pub(crate) async fn commit(
    store: &Store,
    cases: &[CaseWrite<'_>],
    entries: &[(&str, &[Draft])],
) -> Result<Committed, StorageError> {
    let mut tx = store.begin().await?;
    let mut references = vec![String::new(); cases.len()];
    let groups = counter_groups(cases);
    if !groups.is_empty() {
        let lasts = tx.bump_counters(&groups).await?;
        for (g, last) in groups.iter().zip(lasts) {
            assign_references(g, last, &mut references);
        }
        let rows: Vec<(&CaseWrite<'_>, &String)> = cases.iter().zip(&references).collect();
        for chunk in rows.chunks(CASE_INSERT_ROWS) {
            tx.insert_cases(chunk).await?;
        }
        for (w, reference) in cases.iter().zip(&references) {
            if let Some(answer) = w.answer {
                tx.complete_idempotency(&answer.with_reference(reference))
                    .await?;
            }
        }
    }
    let heads = tx
        .append_groups(audit_groups(cases, &references, entries))
        .await?;
    tx.commit().await?;
    Ok(Committed { references, heads })
}

/// New cases of one cellule and year: their reference counter is bumped once for all of them.
struct CounterGroup<'a> {
    cellule: &'a str,
    code: &'a str,
    year: i32,
    /// Indexes into the batch, in order.
    members: Vec<usize>,
}

/// The counter groups of a batch, in the order of their keys (cellule, year).
fn counter_groups<'a>(cases: &[CaseWrite<'a>]) -> Vec<CounterGroup<'a>> {
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
    groups.sort_by(|a, b| (a.cellule, a.year).cmp(&(b.cellule, b.year)));
    groups
}

/// The references of a counter group whose counter now stands at `last`.
fn assign_references(g: &CounterGroup<'_>, last: i64, references: &mut [String]) {
    let first = last - i64::try_from(g.members.len()).unwrap_or(i64::MAX) + 1;
    for (k, &i) in g.members.iter().enumerate() {
        let seq = first + i64::try_from(k).unwrap_or(i64::MAX);
        references[i] = crate::domain::case::format_reference(g.code, g.year, seq);
    }
}

/// The entries of a group commit by cellule: each new case's submission entry (with its
/// reference), then the other entries in the order given.
fn audit_groups(
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

impl Tx {
    /// Moves each group's reference counter forward by its number of cases (creating it for a
    /// new year); returns each counter's new value, in the order of `groups`.
    async fn bump_counters(
        &mut self,
        groups: &[CounterGroup<'_>],
    ) -> Result<Vec<i64>, StorageError> {
        if groups.len() > 1 {
            let cellules: Vec<&str> = groups.iter().map(|g| g.cellule).collect();
            let years: Vec<i64> = groups.iter().map(|g| i64::from(g.year)).collect();
            tx_run!(self,
                sqlite _c => {},
                postgres c => {
                    // `ORDER BY` with `FOR UPDATE`: the rows are locked as the sort returns them.
                    sqlx::query(
                        "SELECT 1 FROM reference_counters r \
                         JOIN unnest($1::text[], $2::int8[]) AS k(cellule, year) \
                           ON r.cellule = k.cellule AND r.year = k.year \
                         ORDER BY r.cellule, r.year FOR UPDATE OF r",
                    )
                    .bind(&cellules)
                    .bind(&years)
                    .execute(&mut *c)
                    .await?;
                },
            );
        }
        let sizes: Vec<i64> = groups
            .iter()
            .map(|g| i64::try_from(g.members.len()).unwrap_or(i64::MAX))
            .collect();
        let moved: Vec<(String, i64, i64)> = tx_run!(self, c => {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO reference_counters (cellule, year, last_seq) ",
            );
            q.push_values(groups.iter().zip(&sizes), |mut b, (g, n)| {
                b.push_bind(g.cellule).push_bind(i64::from(g.year)).push_bind(*n);
            });
            q.push(
                " ON CONFLICT (cellule, year) DO UPDATE \
                   SET last_seq = reference_counters.last_seq + excluded.last_seq \
                 RETURNING cellule, year, last_seq",
            );
            q.build_query_as()
                .fetch_all(&mut *c)
                .await
                .map_err(not_found_on_fk)?
        });
        groups
            .iter()
            .map(|g| {
                moved
                    .iter()
                    .find(|m| m.0 == g.cellule && m.1 == i64::from(g.year))
                    .map(|m| m.2)
                    .ok_or_else(|| StorageError::Other("a reference counter did not move".into()))
            })
            .collect()
    }

    /// Inserts new cases (`submitted`, with their references) and their data keys.
    async fn insert_cases(
        &mut self,
        chunk: &[(&CaseWrite<'_>, &String)],
    ) -> Result<(), StorageError> {
        tx_run!(self, c => {
            let mut cases = sqlx::QueryBuilder::new(concat!(
                "INSERT INTO cases (",
                new_case_columns!(),
                ") "
            ));
            cases.push_values(chunk, |mut b, (w, reference)| {
                let c = w.case;
                b.push_bind(&c.id)
                    .push_bind(&c.cellule)
                    .push_bind(*reference)
                    .push("'submitted'")
                    .push_bind(c.urgency)
                    .push_bind(c.age_band)
                    .push_bind(c.gender)
                    .push_bind(&c.commune)
                    .push_bind(&c.sector)
                    .push_bind(&c.needs)
                    .push_bind(c.consent_status)
                    .push_bind(&c.consent_justification)
                    .push_bind(&c.referring_org)
                    .push_bind(&c.referrer)
                    .push_bind(&c.linkage_key)
                    .push_bind(&c.situation)
                    .push_bind(&c.expectations)
                    .push_bind(c.submitted_at)
                    .push_bind(c.submitted_at);
            });
            cases.build().execute(&mut *c).await?;
            let mut keys =
                sqlx::QueryBuilder::new(concat!("INSERT INTO data_keys (", key_columns!(), ") "));
            keys.push_values(chunk, |mut b, (w, _)| {
                b.push_bind(&w.key.id)
                    .push_bind(&w.key.cellule)
                    .push_bind(&w.key.case_id)
                    .push_bind(w.key.kek_version)
                    .push_bind(&w.key.wrapped);
            });
            keys.build().execute(&mut *c).await?;
        });
        Ok(())
    }
}
