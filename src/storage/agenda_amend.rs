//! Changes of a published agenda ([`super::ReviewStore::amend_agenda`]): an item added or
//! withdrawn, or the items reordered, each in one transaction with its audit entry.
//!
//! An agenda's draft is written whole (`agenda::replace_agenda`); once published, its items and
//! their publication rows (which open member access, docs/design.md §7) change one at a time
//! here, so that the rows of the other items, and the access they give, are left as they are.

use super::agenda::items_still_eligible;
use super::cases::Decided;
use super::idempotency::IdempotencyAnswer;
use super::rows::same_cases;
use super::sql::{Store, Tx, tx_run};
use super::{AgendaAmendment, AgendaChange, StorageError};
use crate::audit::{Draft, Head};

pub(crate) async fn amend_agenda(
    store: &Store,
    a: &AgendaAmendment<'_>,
    audit: Vec<Draft>,
    answer: Option<&IdempotencyAnswer>,
) -> Result<Head, StorageError> {
    let mut tx = store.begin().await?;
    // Published and not cancelled, checked on the session's row: the no-op update holds that
    // row (PostgreSQL), so that a cancellation or another change of this agenda waits for this
    // one and then sees it.
    let (open, current) = tx_run!(&mut tx, c => {
        let open = sqlx::query(
            "UPDATE sessions SET published_at = published_at WHERE cellule = $1 AND id = $2 \
             AND status <> 'cancelled' AND published_at IS NOT NULL \
             AND minutes_approved_at IS NULL",
        )
        .bind(a.cellule)
        .bind(&a.session.id)
        .execute(&mut *c)
        .await?
        .rows_affected();
        let current: Vec<String> =
            sqlx::query_scalar("SELECT case_id FROM agenda_items WHERE session_id = $1")
                .bind(&a.session.id)
                .fetch_all(&mut *c)
                .await?;
        (open, current)
    });
    if open != 1 {
        tx.rollback().await?;
        return Err(StorageError::Conflict(
            "the session was cancelled meanwhile, or its agenda is not published",
        ));
    }
    if !same_cases(&current, a.read) {
        tx.rollback().await?;
        return Err(StorageError::Conflict(
            "the agenda changed meanwhile: reload it",
        ));
    }
    let done = match a.change {
        AgendaChange::Add {
            item,
            invited,
            scheduled,
        } => tx.add_item(a, item, invited, scheduled).await,
        AgendaChange::Withdraw { case_id, revert } => tx.withdraw_item(a, case_id, revert).await,
        AgendaChange::Reorder => Ok(()),
    };
    if let Err(e) = done {
        tx.rollback().await?;
        return Err(e);
    }
    tx_run!(&mut tx, c => {
        // An agenda holds tens of items (at most a few hundred): one statement each.
        for (case_id, position) in a.positions {
            sqlx::query(
                "UPDATE agenda_items SET position = $3 WHERE session_id = $1 AND case_id = $2",
            )
            .bind(&a.session.id)
            .bind(case_id)
            .bind(position)
            .execute(&mut *c)
            .await?;
        }
    });
    if let Some(answer) = answer {
        tx.complete_idempotency(answer).await?;
    }
    let head = tx.append(a.cellule, audit).await?;
    tx.commit().await?;
    Ok(head)
}

impl Tx {
    /// Adds an item to a published agenda (see [`AgendaChange::Add`]).
    async fn add_item(
        &mut self,
        a: &AgendaAmendment<'_>,
        item: &super::NewAgendaItem,
        invited: &str,
        scheduled: &super::Transition,
    ) -> Result<(), StorageError> {
        let eligible: i64 = tx_run!(self, c => {
            sqlx::query_scalar(concat!(
                "SELECT count(*) FROM cases c WHERE c.cellule = $1 AND c.id = $2 ",
                items_still_eligible!()
            ))
            .bind(a.cellule)
            .bind(&item.case_id)
            .bind(&a.session.id)
            .bind(a.now)
            .fetch_one(&mut *c)
            .await?
        });
        if eligible != 1 {
            return Err(StorageError::Conflict(
                "the case changed meanwhile or went on another session's agenda: reload it",
            ));
        }
        tx_run!(self, c => {
            sqlx::query(
                "INSERT INTO agenda_items (session_id, case_id, position, kind, minutes, proposal) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&a.session.id)
            .bind(&item.case_id)
            .bind(item.position)
            .bind(item.kind)
            .bind(item.minutes)
            .bind(&item.proposal)
            .execute(&mut *c)
            .await
            .map_err(|e| StorageError::from_sqlx(e, "this case is already on this agenda"))?;
            sqlx::query(
                "INSERT INTO agenda_publications \
                   (case_id, session_id, session_at, published_at, invited) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&item.case_id)
            .bind(&a.session.id)
            .bind(a.session.starts_at)
            .bind(a.now)
            .bind(invited)
            .execute(&mut *c)
            .await
            .map_err(|e| StorageError::from_sqlx(e, "this case is already on this agenda"))?;
        });
        if !self.move_case(scheduled, Decided::KeepFirst).await? {
            return Err(StorageError::Conflict(
                "the case changed meanwhile: reload it",
            ));
        }
        // A case this session deferred is reviewed by it after all: the deferral, counted at
        // publication, is withdrawn and its count undone.
        let withdrawn = tx_run!(self,
            sqlite c => {
                sqlx::query("DELETE FROM agenda_deferrals WHERE session_id = $1 AND case_id = $2")
                    .bind(&a.session.id)
                    .bind(&item.case_id)
                    .execute(&mut *c)
                    .await?
                    .rows_affected()
            },
            postgres c => {
                sqlx::query(
                    "UPDATE session_deferrals SET case_ids = array_remove(case_ids, $2) \
                     WHERE session_id = $1 AND $2 = ANY(case_ids)",
                )
                .bind(&a.session.id)
                .bind(&item.case_id)
                .execute(&mut *c)
                .await?
                .rows_affected()
            },
        );
        if withdrawn > 0 {
            tx_run!(self, c => {
                sqlx::query(
                    "UPDATE case_deferrals SET times = times - 1 WHERE case_id = $1 AND times > 0",
                )
                .bind(&item.case_id)
                .execute(&mut *c)
                .await?;
            });
        }
        Ok(())
    }

    /// Withdraws an undecided item from a published agenda (see [`AgendaChange::Withdraw`]).
    async fn withdraw_item(
        &mut self,
        a: &AgendaAmendment<'_>,
        case_id: &str,
        revert: Option<&super::Transition>,
    ) -> Result<(), StorageError> {
        let (decided, removed) = tx_run!(self, c => {
            let decided: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM decisions WHERE session_id = $1 AND case_id = $2",
            )
            .bind(&a.session.id)
            .bind(case_id)
            .fetch_one(&mut *c)
            .await?;
            let removed = sqlx::query(
                "DELETE FROM agenda_items WHERE session_id = $1 AND case_id = $2",
            )
            .bind(&a.session.id)
            .bind(case_id)
            .execute(&mut *c)
            .await?
            .rows_affected();
            // Member and guest access through this agenda ends with its publication row.
            sqlx::query("DELETE FROM agenda_publications WHERE session_id = $1 AND case_id = $2")
                .bind(&a.session.id)
                .bind(case_id)
                .execute(&mut *c)
                .await?;
            (decided, removed)
        });
        if decided > 0 {
            return Err(StorageError::Conflict("this item has a decision"));
        }
        if removed != 1 {
            return Err(StorageError::Conflict(
                "the agenda changed meanwhile: reload it",
            ));
        }
        if let Some(t) = revert
            && !self.move_case(t, Decided::KeepFirst).await?
        {
            return Err(StorageError::Conflict(
                "the case changed meanwhile: reload it",
            ));
        }
        Ok(())
    }
}
