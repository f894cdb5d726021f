//! The meeting (docs/design.md §10): a session's opening, closing and approved minutes, its
//! attendance, the versions of its decisions with their actions, and what falls due.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::idempotency::IdempotencyAnswer;
use super::sql::{Store, Tx, db_run, tx_run};
use super::{AttendanceRecord, DecisionRecord, DueRecord, MeetingStep, StorageError, Transition};
use crate::audit::{Draft, Head};
use crate::domain::session::Outcome;

/// The columns of a decision, in `DecisionRecord` order (`d` is the decisions table).
macro_rules! decision_columns {
    () => {
        "d.id, d.session_id, d.case_id, d.outcome, d.interlocutor, d.follow_up_date, d.actions, \
         d.text, d.referrer_message, d.decided_by, d.decided_at, d.version, d.text_audience, \
         d.prior_routed_org, d.prior_follow_up_date"
    };
}

/// A session's meeting and what it decided.
#[async_trait]
pub trait MeetingStore {
    /// Takes `step` (with its audit entry) if the session is at the stage just before it:
    /// opened once published, closed once opened, minutes approved once closed. `None` when it
    /// is not (or the session is not there or is cancelled).
    async fn meeting_step(
        &self,
        cellule: &str,
        session_id: &str,
        step: MeetingStep,
        by: &str,
        at: DateTime<Utc>,
        audit: Draft,
    ) -> Result<Option<Head>, StorageError>;

    /// A session's attendance, by organisation then participant.
    async fn attendance(&self, session_id: &str) -> Result<Vec<AttendanceRecord>, StorageError>;

    /// Replaces a session's attendance while its meeting is open or held and its minutes not
    /// approved; `None` otherwise.
    async fn replace_attendance(
        &self,
        cellule: &str,
        session_id: &str,
        lines: &[AttendanceRecord],
        audit: Draft,
    ) -> Result<Option<Head>, StorageError>;

    /// Every version of a session's decisions, by case then version, with their actions' dues.
    async fn session_decisions(
        &self,
        session_id: &str,
    ) -> Result<Vec<DecisionRecord>, StorageError>;

    /// Every version of a case's decisions, oldest first, with their actions' dues.
    async fn case_decisions(&self, case_id: &str) -> Result<Vec<DecisionRecord>, StorageError>;

    /// Records `d`, a new version of `previous`, while the session takes decisions: the case
    /// moves from what `previous` made of it to what `d` makes of it (`t`, whose routing and
    /// follow-up date are set as given), deferral counts follow the outcome. `None` when the
    /// session no longer takes decisions, another correction came first or the case moved on.
    async fn correct_decision(
        &self,
        d: &DecisionRecord,
        previous: &DecisionRecord,
        t: &Transition,
        audit: Draft,
        answer: Option<&IdempotencyAnswer>,
    ) -> Result<Option<Head>, StorageError>;

    /// What falls due by `until` in open cases: the actions of each case's latest decision and
    /// the follow-up dates, for one owner organisation or all, by due date.
    async fn due_items(
        &self,
        cellule: &str,
        owner: Option<&str>,
        until: NaiveDate,
    ) -> Result<Vec<DueRecord>, StorageError>;
}

#[async_trait]
impl MeetingStore for Store {
    async fn meeting_step(
        &self,
        cellule: &str,
        session_id: &str,
        step: MeetingStep,
        by: &str,
        at: DateTime<Utc>,
        audit: Draft,
    ) -> Result<Option<Head>, StorageError> {
        let sql = match step {
            MeetingStep::Open => {
                "UPDATE sessions SET opened_at = $3 WHERE cellule = $1 AND id = $2 \
                   AND status = 'planned' AND published_at IS NOT NULL AND opened_at IS NULL"
            }
            MeetingStep::Close => {
                "UPDATE sessions SET closed_at = $3 WHERE cellule = $1 AND id = $2 \
                   AND status = 'planned' AND opened_at IS NOT NULL AND closed_at IS NULL"
            }
            MeetingStep::ApproveMinutes => {
                "UPDATE sessions SET minutes_approved_at = $3, minutes_approved_by = $4 \
                 WHERE cellule = $1 AND id = $2 AND status = 'planned' \
                   AND closed_at IS NOT NULL AND minutes_approved_at IS NULL"
            }
        };
        let mut tx = self.begin().await?;
        let done = tx_run!(&mut tx, c => {
            let query = sqlx::query(sql).bind(cellule).bind(session_id).bind(at);
            // Only the approval records who did it (the audit entry names every step's actor).
            let query = if step == MeetingStep::ApproveMinutes {
                query.bind(by)
            } else {
                query
            };
            query.execute(&mut *c).await?.rows_affected()
        });
        if done != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        let head = tx.append(cellule, vec![audit]).await?;
        tx.commit().await?;
        Ok(Some(head))
    }

    async fn attendance(&self, session_id: &str) -> Result<Vec<AttendanceRecord>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT organisation, participant, status, recorded_by, recorded_at \
                 FROM session_attendance WHERE session_id = $1 ORDER BY organisation, participant",
            )
            .bind(session_id)
            .fetch_all(c)
            .await?
        }))
    }

    async fn replace_attendance(
        &self,
        cellule: &str,
        session_id: &str,
        lines: &[AttendanceRecord],
        audit: Draft,
    ) -> Result<Option<Head>, StorageError> {
        let mut tx = self.begin().await?;
        if !tx.session_amendable(cellule, session_id, true).await? {
            tx.rollback().await?;
            return Ok(None);
        }
        tx_run!(&mut tx, c => {
            sqlx::query("DELETE FROM session_attendance WHERE session_id = $1")
                .bind(session_id)
                .execute(&mut *c)
                .await?;
            for l in lines {
                sqlx::query(
                    "INSERT INTO session_attendance (session_id, organisation, participant, \
                       status, recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(session_id)
                .bind(&l.organisation)
                .bind(&l.participant)
                .bind(l.status)
                .bind(&l.recorded_by)
                .bind(l.recorded_at)
                .execute(&mut *c)
                .await?;
            }
        });
        let head = tx.append(cellule, vec![audit]).await?;
        tx.commit().await?;
        Ok(Some(head))
    }

    async fn session_decisions(
        &self,
        session_id: &str,
    ) -> Result<Vec<DecisionRecord>, StorageError> {
        decisions_where(self, DecisionsOf::Session, session_id).await
    }

    async fn case_decisions(&self, case_id: &str) -> Result<Vec<DecisionRecord>, StorageError> {
        decisions_where(self, DecisionsOf::Case, case_id).await
    }

    async fn correct_decision(
        &self,
        d: &DecisionRecord,
        previous: &DecisionRecord,
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
            return Ok(None);
        }
        // A concurrent correction of the same version is refused by (session, case, version).
        if !tx.insert_decision(d).await? {
            tx.rollback().await?;
            return Ok(None);
        }
        let moved = tx_run!(&mut tx, c => {
            sqlx::query(
                "UPDATE cases SET status = $1, updated_at = $2, \
                   closed_at = CASE WHEN $1 = 'closed' THEN $2 ELSE NULL END, \
                   follow_up_date = $3, routed_org = $4 \
                 WHERE cellule = $5 AND id = $6 AND status = $7",
            )
            .bind(t.to)
            .bind(t.at)
            .bind(t.follow_up_date)
            .bind(&t.routed_org)
            .bind(&t.cellule)
            .bind(&t.case_id)
            .bind(t.from)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        if moved != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        if t.from != t.to {
            tx.case_event(t).await?;
        }
        let delta = i32::from(d.outcome == Outcome::Deferred)
            - i32::from(previous.outcome == Outcome::Deferred);
        if delta != 0 {
            tx.count_deferral(&d.case_id, delta).await?;
        }
        if let Some(answer) = answer {
            tx.complete_idempotency(answer).await?;
        }
        let head = tx.append(&t.cellule, vec![audit]).await?;
        tx.commit().await?;
        Ok(Some(head))
    }

    async fn due_items(
        &self,
        cellule: &str,
        owner: Option<&str>,
        until: NaiveDate,
    ) -> Result<Vec<DueRecord>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT c.id AS case_id, c.reference, c.status, 'action' AS kind, a.owner, \
                   a.due_on, d.id AS decision_id, a.position \
                 FROM decision_actions a JOIN decisions d ON d.id = a.decision_id \
                   JOIN cases c ON c.id = d.case_id \
                 WHERE c.cellule = $1 AND c.status <> 'closed' AND a.due_on <= $3 \
                   AND ($2 IS NULL OR a.owner = $2) \
                   AND NOT EXISTS (SELECT 1 FROM decisions n WHERE n.case_id = d.case_id \
                     AND (n.decided_at > d.decided_at \
                          OR (n.decided_at = d.decided_at AND n.version > d.version))) \
                 UNION ALL \
                 SELECT c.id, c.reference, c.status, 'follow_up', c.routed_org, \
                   c.follow_up_date, CAST(NULL AS TEXT), CAST(NULL AS INTEGER) \
                 FROM cases c WHERE c.cellule = $1 AND c.status = 'in_follow_up' \
                   AND c.follow_up_date <= $3 AND ($2 IS NULL OR c.routed_org = $2) \
                 ORDER BY 6, 2, 4, 8",
            )
            .bind(cellule)
            .bind(owner)
            .bind(until)
            .fetch_all(c)
            .await?
        }))
    }
}

/// Whose decisions to read.
#[derive(Clone, Copy)]
enum DecisionsOf {
    /// A session's, by case then version.
    Session,
    /// A case's, oldest first.
    Case,
}

/// Every version of a session's or a case's decisions, with their actions' owners and dues.
async fn decisions_where(
    store: &Store,
    of: DecisionsOf,
    id: &str,
) -> Result<Vec<DecisionRecord>, StorageError> {
    let (decisions_sql, dues_sql) = match of {
        DecisionsOf::Session => (
            concat!(
                "SELECT ",
                decision_columns!(),
                " FROM decisions d WHERE d.session_id = $1 ORDER BY d.case_id, d.version"
            ),
            "SELECT a.decision_id, a.owner, a.due_on FROM decision_actions a \
               JOIN decisions d ON d.id = a.decision_id \
             WHERE d.session_id = $1 ORDER BY a.decision_id, a.position",
        ),
        DecisionsOf::Case => (
            concat!(
                "SELECT ",
                decision_columns!(),
                " FROM decisions d WHERE d.case_id = $1 ORDER BY d.decided_at, d.version, d.id"
            ),
            "SELECT a.decision_id, a.owner, a.due_on FROM decision_actions a \
               JOIN decisions d ON d.id = a.decision_id \
             WHERE d.case_id = $1 ORDER BY a.decision_id, a.position",
        ),
    };
    let mut decisions: Vec<DecisionRecord> = db_run!(store, c => {
        sqlx::query_as(decisions_sql).bind(id).fetch_all(c).await?
    });
    let dues: Vec<(String, String, NaiveDate)> = db_run!(store, c => {
        sqlx::query_as(dues_sql).bind(id).fetch_all(c).await?
    });
    attach_dues(&mut decisions, dues);
    Ok(decisions)
}

fn attach_dues(decisions: &mut [DecisionRecord], dues: Vec<(String, String, NaiveDate)>) {
    for (id, owner, due) in dues {
        if let Some(d) = decisions.iter_mut().find(|d| d.id == id) {
            d.action_dues.push((owner, due));
        }
    }
}

impl Tx {
    /// Whether the session's meeting is open or held with its minutes not approved, so that it
    /// takes decisions (and, with `or_published`, merely published: attendance, amendments). Touches the session's row, so that on PostgreSQL an
    /// approval waits for this transaction (and this one for an approval under way).
    pub(crate) async fn session_amendable(
        &mut self,
        cellule: &str,
        session_id: &str,
        or_published: bool,
    ) -> Result<bool, StorageError> {
        let done = tx_run!(self, c => {
            sqlx::query(
                "UPDATE sessions SET minutes_approved_at = minutes_approved_at \
                 WHERE cellule = $1 AND id = $2 AND status = 'planned' \
                   AND published_at IS NOT NULL AND minutes_approved_at IS NULL \
                   AND ($3 OR opened_at IS NOT NULL)",
            )
            .bind(cellule)
            .bind(session_id)
            .bind(or_published)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// Inserts a decision version with its actions' owners and due dates; `false` when that
    /// version of the item exists already.
    pub(crate) async fn insert_decision(
        &mut self,
        d: &DecisionRecord,
    ) -> Result<bool, StorageError> {
        tx_run!(self, c => {
            let inserted = sqlx::query(
                "INSERT INTO decisions (id, session_id, case_id, outcome, interlocutor, \
                   follow_up_date, actions, text, decided_by, decided_at, referrer_message, \
                   version, text_audience, prior_routed_org, prior_follow_up_date) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                 ON CONFLICT (session_id, case_id, version) DO NOTHING",
            )
            .bind(&d.id)
            .bind(&d.session_id)
            .bind(&d.case_id)
            .bind(d.outcome)
            .bind(&d.interlocutor)
            .bind(d.follow_up_date)
            .bind(&d.actions)
            .bind(&d.text)
            .bind(&d.decided_by)
            .bind(d.decided_at)
            .bind(&d.referrer_message)
            .bind(d.version)
            .bind(d.text_audience)
            .bind(&d.prior_routed_org)
            .bind(d.prior_follow_up_date)
            .execute(&mut *c)
            .await?
            .rows_affected();
            if inserted != 1 {
                return Ok(false);
            }
            for (position, (owner, due)) in d.action_dues.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO decision_actions (decision_id, position, owner, due_on) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&d.id)
                .bind(i32::try_from(position).unwrap_or(i32::MAX))
                .bind(owner)
                .bind(due)
                .execute(&mut *c)
                .await?;
            }
        });
        Ok(true)
    }

    /// Adds `delta` (±1) to how many times a case was deferred.
    pub(crate) async fn count_deferral(
        &mut self,
        case_id: &str,
        delta: i32,
    ) -> Result<(), StorageError> {
        tx_run!(self, c => {
            sqlx::query(
                "INSERT INTO case_deferrals (case_id, times) VALUES ($1, CASE WHEN $2 > 0 THEN $2 ELSE 0 END) \
                 ON CONFLICT (case_id) DO UPDATE SET times = case_deferrals.times + $2",
            )
            .bind(case_id)
            .bind(delta)
            .execute(&mut *c)
            .await?;
        });
        Ok(())
    }
}
