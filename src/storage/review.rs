//! Review: the schedule and routing directory documents, sessions, decisions and statistics.
//! The agenda's reads and writes are in `agenda`.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::cases::Decided;
use super::idempotency::IdempotencyAnswer;
use super::sql::{Store, db_run, tx_run};
use super::{
    AgendaAmendment, AgendaItemRecord, DecisionRecord, Deferrals, DeferredRecord, EligibleCase,
    NewAgendaItem, ReferrerDecision, SessionRecord, StatsCase, StorageError, Transition,
    not_found_on_fk,
};
use crate::audit::{Draft, Head};
use crate::domain::session::Outcome;

/// The columns of a session, in `SessionRecord` order.
macro_rules! session_columns {
    () => {
        "id, cellule, occurrence_key, starts_at, local_start, time_zone, duration_minutes, \
         location, holiday, status, agenda_built_at, published_at, created_at, opened_at, \
         closed_at, minutes_approved_at, minutes_approved_by, reminded_at"
    };
}

/// Sessions, agendas, decisions and statistics (SPEC §10).
#[async_trait]
pub trait ReviewStore: Send + Sync {
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
    /// Replaces a cellule's routing directory with its audit entry (given the document
    /// replaced, `None` when there was none), in one transaction.
    async fn put_directory(
        &self,
        cellule: &str,
        document: &str,
        now: DateTime<Utc>,
        audit: super::EntryFor<Option<String>>,
    ) -> Result<crate::audit::Head, StorageError>;
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
    async fn agenda_deferred(&self, session_id: &str) -> Result<Vec<DeferredRecord>, StorageError> {
        self.agenda_deferred_first(session_id, i64::MAX).await
    }
    /// The first `limit` of them (by reference), for a page that names a few and counts the rest.
    async fn agenda_deferred_first(
        &self,
        session_id: &str,
        limit: i64,
    ) -> Result<Vec<DeferredRecord>, StorageError>;
    /// How many cases the session's set of deferrals holds.
    async fn agenda_deferred_count(&self, session_id: &str) -> Result<i64, StorageError>;
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
    /// Changes a published agenda (of a session not cancelled): adds an item (its case still
    /// accepted or followed up and on no other open agenda), withdraws an undecided one, or
    /// only moves the items to `a.positions`; with the case's move, the item's publication row
    /// (added or removed: member access opens or closes at once), the audit entries and `answer`
    /// (an idempotency key's), in one transaction. `Conflict` when the session was cancelled or
    /// is not published, when its items are no longer `a.read`, when the item to withdraw has a
    /// decision, or when a case moved meanwhile.
    async fn amend_agenda(
        &self,
        a: &AgendaAmendment<'_>,
        audit: Vec<Draft>,
        answer: Option<&IdempotencyAnswer>,
    ) -> Result<Head, StorageError>;
    /// The decisions on the cases `referrer` referred in `cellule`, oldest first, with their
    /// sessions' start (the referrer's status view).
    async fn referrer_decisions(
        &self,
        cellule: &str,
        referrer: &str,
    ) -> Result<Vec<ReferrerDecision>, StorageError>;
    /// Records a decision with its case transition (and a deferral count for `deferred`) and the
    /// audit entry; `None` when the case was no longer in `t.from`; `Conflict` when the item was
    /// already decided.
    async fn record_decision(
        &self,
        decision: &DecisionRecord,
        t: &Transition,
        audit: Draft,
    ) -> Result<Option<Head>, StorageError> {
        self.record_decision_answered(decision, t, audit, None)
            .await
    }
    /// [`Self::record_decision`], writing `answer` (an idempotency key's) in its transaction.
    async fn record_decision_answered(
        &self,
        decision: &DecisionRecord,
        t: &Transition,
        audit: Draft,
        answer: Option<&IdempotencyAnswer>,
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
}

#[async_trait]
impl ReviewStore for Store {
    async fn get_schedule(&self, cellule: &str) -> Result<Option<String>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_scalar("SELECT document FROM schedules WHERE cellule = $1")
                .bind(cellule)
                .fetch_optional(c)
                .await?
        }))
    }

    async fn put_schedule(
        &self,
        cellule: &str,
        document: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        db_run!(self, c => {
            sqlx::query(
                "INSERT INTO schedules (cellule, document, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (cellule) DO UPDATE SET document = $2, updated_at = $3",
            )
            .bind(cellule)
            .bind(document)
            .bind(now)
            .execute(c)
            .await
            .map_err(not_found_on_fk)?;
        });
        Ok(())
    }

    async fn get_directory(&self, cellule: &str) -> Result<Option<String>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_scalar("SELECT document FROM routing_directories WHERE cellule = $1")
                .bind(cellule)
                .fetch_optional(c)
                .await?
        }))
    }

    async fn put_directory(
        &self,
        cellule: &str,
        document: &str,
        now: DateTime<Utc>,
        audit: super::EntryFor<Option<String>>,
    ) -> Result<crate::audit::Head, StorageError> {
        let mut tx = self.begin().await?;
        tx.lock_cellule(cellule).await?;
        let before: Option<String> = tx_run!(&mut tx, c => {
            let before = sqlx::query_scalar(
                "SELECT document FROM routing_directories WHERE cellule = $1",
            )
            .bind(cellule)
            .fetch_optional(&mut *c)
            .await?;
            sqlx::query(
                "INSERT INTO routing_directories (cellule, document, updated_at) \
                 VALUES ($1, $2, $3) \
                 ON CONFLICT (cellule) DO UPDATE SET document = $2, updated_at = $3",
            )
            .bind(cellule)
            .bind(document)
            .bind(now)
            .execute(&mut *c)
            .await
            .map_err(not_found_on_fk)?;
            before
        });
        let head = tx.append(cellule, vec![audit(before)]).await?;
        tx.commit().await?;
        Ok(head)
    }

    async fn insert_sessions(
        &self,
        sessions: &[SessionRecord],
    ) -> Result<Vec<SessionRecord>, StorageError> {
        let mut tx = self.begin().await?;
        let mut inserted = Vec::new();
        for s in sessions {
            let row: Option<SessionRecord> = tx_run!(&mut tx, c => {
                sqlx::query_as(concat!(
                    "INSERT INTO sessions (id, cellule, occurrence_key, starts_at, local_start, \
                       time_zone, duration_minutes, location, holiday, status, created_at) \
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
                .bind(s.status)
                .bind(s.created_at)
                .fetch_optional(&mut *c)
                .await
                .map_err(not_found_on_fk)?
            });
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
        Ok(db_run!(self, c => {
            sqlx::query_as(concat!(
                "SELECT ",
                session_columns!(),
                " FROM sessions WHERE cellule = $1 AND ($2 IS NULL OR starts_at >= $2) \
                   AND ($3 IS NULL OR starts_at < $3) ORDER BY starts_at, id"
            ))
            .bind(cellule)
            .bind(from)
            .bind(to)
            .fetch_all(c)
            .await?
        }))
    }

    async fn get_session(
        &self,
        cellule: &str,
        id: &str,
    ) -> Result<Option<SessionRecord>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(concat!(
                "SELECT ",
                session_columns!(),
                " FROM sessions WHERE cellule = $1 AND id = $2"
            ))
            .bind(cellule)
            .bind(id)
            .fetch_optional(c)
            .await?
        }))
    }

    async fn cancel_session(
        &self,
        cellule: &str,
        id: &str,
        items: &[String],
        reverts: &[Transition],
        audit: Vec<Draft>,
    ) -> Result<Option<Head>, StorageError> {
        super::agenda::cancel_session(self, cellule, id, items, reverts, audit).await
    }

    async fn eligible_cases(
        &self,
        cellule: &str,
        session_id: &str,
        due_by: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Vec<EligibleCase>, StorageError> {
        super::agenda::eligible_cases(self, cellule, session_id, due_by, now).await
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
        super::agenda::replace_agenda(self, cellule, session_id, items, deferred, now, audit).await
    }

    async fn agenda(&self, session_id: &str) -> Result<Vec<AgendaItemRecord>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT ai.case_id, ai.position, ai.kind, ai.minutes, ai.proposal, c.reference, \
                   c.status, c.urgency, c.needs, c.commune, c.sector, c.routed_org, \
                   c.follow_up_date, \
                   COALESCE((SELECT f.times FROM case_deferrals f WHERE f.case_id = c.id), 0) \
                     AS times_deferred, \
                   (SELECT d.outcome FROM decisions d \
                     WHERE d.session_id = ai.session_id AND d.case_id = ai.case_id \
                     ORDER BY d.version DESC LIMIT 1) AS decision_outcome \
                 FROM agenda_items ai JOIN cases c ON c.id = ai.case_id WHERE ai.session_id = $1 \
                 ORDER BY ai.position, ai.case_id",
            )
            .bind(session_id)
            .fetch_all(c)
            .await?
        }))
    }

    async fn agenda_deferred_first(
        &self,
        session_id: &str,
        limit: i64,
    ) -> Result<Vec<DeferredRecord>, StorageError> {
        super::agenda::agenda_deferred(self, session_id, limit).await
    }

    async fn agenda_deferred_count(&self, session_id: &str) -> Result<i64, StorageError> {
        super::agenda::agenda_deferred_count(self, session_id).await
    }

    async fn other_agendas(
        &self,
        cellule: &str,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT ai.case_id, s.id FROM agenda_items ai JOIN sessions s ON s.id = ai.session_id \
                 WHERE s.cellule = $1 AND s.id <> $2 AND s.status = 'planned' \
                   AND s.published_at IS NULL AND s.starts_at >= $3",
            )
            .bind(cellule)
            .bind(session_id)
            .bind(now)
            .fetch_all(c)
            .await?
        }))
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
        super::agenda::publish_agenda(self, cellule, session, invited, moves, now, audit).await
    }

    async fn amend_agenda(
        &self,
        a: &AgendaAmendment<'_>,
        audit: Vec<Draft>,
        answer: Option<&IdempotencyAnswer>,
    ) -> Result<Head, StorageError> {
        super::agenda_amend::amend_agenda(self, a, audit, answer).await
    }

    async fn referrer_decisions(
        &self,
        cellule: &str,
        referrer: &str,
    ) -> Result<Vec<ReferrerDecision>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT d.case_id, d.id AS decision_id, d.outcome, d.interlocutor, \
                   d.referrer_message, s.local_start AS session_start \
                 FROM decisions d JOIN cases c ON c.id = d.case_id \
                   JOIN sessions s ON s.id = d.session_id \
                 WHERE c.cellule = $1 AND c.referrer = $2 AND NOT EXISTS \
                   (SELECT 1 FROM decisions n WHERE n.session_id = d.session_id \
                     AND n.case_id = d.case_id AND n.version > d.version) \
                 ORDER BY d.decided_at, d.id",
            )
            .bind(cellule)
            .bind(referrer)
            .fetch_all(c)
            .await?
        }))
    }

    async fn record_decision_answered(
        &self,
        d: &DecisionRecord,
        t: &Transition,
        audit: Draft,
        answer: Option<&IdempotencyAnswer>,
    ) -> Result<Option<Head>, StorageError> {
        let mut tx = self.begin().await?;
        if !tx
            .session_amendable(&t.cellule, &d.session_id, false)
            .await?
        {
            tx.rollback().await?;
            return Err(StorageError::Conflict(
                "the meeting is not open or its minutes are approved",
            ));
        }
        if !tx.insert_decision(d).await? {
            tx.rollback().await?;
            return Err(StorageError::Conflict("this item was already decided"));
        }
        if !tx.move_case(t, Decided::KeepFirst).await? {
            tx.rollback().await?;
            return Ok(None);
        }
        if let Some(answer) = answer {
            tx.complete_idempotency(answer).await?;
        }
        if d.outcome == Outcome::Deferred {
            tx.count_deferral(&d.case_id, 1).await?;
        }
        let head = tx.append(&t.cellule, vec![audit]).await?;
        tx.commit().await?;
        Ok(Some(head))
    }

    async fn stats_cases(
        &self,
        cellule: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<StatsCase>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT c.submitted_at, c.needs, c.referring_org, \
                   (SELECT MIN(d.decided_at) FROM decisions d \
                     WHERE d.case_id = c.id AND d.outcome <> 'deferred' AND NOT EXISTS \
                       (SELECT 1 FROM decisions n WHERE n.session_id = d.session_id \
                         AND n.case_id = d.case_id AND n.version > d.version)) \
                     AS first_review_at, \
                   c.closed_at \
                 FROM cases c WHERE c.cellule = $1 AND c.submitted_at >= $2 AND c.submitted_at < $3",
            )
            .bind(cellule)
            .bind(from)
            .bind(to)
            .fetch_all(c)
            .await?
        }))
    }

    async fn stats_outcomes(
        &self,
        cellule: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<String>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_scalar(
                "SELECT d.outcome FROM decisions d JOIN sessions s ON s.id = d.session_id \
                 WHERE s.cellule = $1 AND d.decided_at >= $2 AND d.decided_at < $3 \
                   AND NOT EXISTS (SELECT 1 FROM decisions n WHERE n.session_id = d.session_id \
                     AND n.case_id = d.case_id AND n.version > d.version)",
            )
            .bind(cellule)
            .bind(from)
            .bind(to)
            .fetch_all(c)
            .await?
        }))
    }
}
