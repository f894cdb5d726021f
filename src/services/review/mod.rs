//! The monthly review (docs/design.md §10), one module per use case: [`schedule`], [`sessions`] (planned
//! and ad-hoc sessions, cancellation, the calendar export), [`agenda`] (build, edit, publish),
//! [`agenda_amend`] (a published agenda's items added, withdrawn, reordered),
//! [`meeting`] (opening, closing, attendance, reading decisions, follow-ups), [`decisions`]
//! (recorded and corrected), [`minutes`] (the compte rendu per reader), [`directory`] (routing)
//! and [`statistics`]. Pure rules live in
//! [`crate::domain::schedule`], [`crate::domain::agenda`] and [`crate::domain::routing`]; these
//! modules load, authorise, record in the audit log and store.
//!
//! Choices where the design is silent:
//! - A session's agenda can be built and edited until it is published; then it is no longer
//!   built or edited as a whole, but the coordinator can still add an item (an urgent case),
//!   withdraw an undecided one (its case goes back to `accepted` or `in_follow_up`) and
//!   reorder the items, each change audited (`amend_agenda`) and opening or closing member
//!   access at once, until the minutes are approved. Cancelling a session releases its items to
//!   the pool (cases return to `accepted` or `in_follow_up`); an opened session cannot be
//!   cancelled.
//! - The meeting is opened by the coordinator on the session's day (not before: a decision
//!   recorded ahead of the meeting would be no meeting's), closed, then its minutes approved,
//!   which freezes attendance, decisions and agenda.
//! - A build's deferrals (the eligible cases beyond the capacity) are the session's draft until
//!   the agenda is published: a rebuild replaces them, an edit that puts a case back on the
//!   agenda withdraws its deferral. Publication counts each of them once (the count that orders
//!   the next builds); cancelling a published session undoes its counts. A draft's deferrals
//!   show the count they will have (`times_deferred` includes this session). A session left
//!   unpublished counts nothing: a draft no one published is not a review that passed a case
//!   over.
//! - Publishing moves the items' cases to `scheduled` and opens member access (docs/design.md §7) to each
//!   item for 30 days after the session; every organisation of an item's routing proposal is
//!   invited to that item (guests see only those items).
//! - A decision needs the opened meeting (open or held, minutes not approved): `routed` and
//!   `follow_up` move the case to
//!   `in_follow_up` (a follow-up date is required; `routed` also needs the interlocutor, and only
//!   `routed` assigns one), `closed` closes it (the text is the closing reason), `deferred`
//!   returns it to the pool and counts a deferral. A correction is a new version that moves the
//!   case from what the previous version made of it.
//! - A case is on at most one open agenda (planned, unpublished, still to come); build, edit,
//!   publish and cancel re-check their cases inside their transaction and answer 409 when a case
//!   moved meanwhile. Members see no item of an unpublished agenda.
//! - Statistics count the cases submitted in the year (by month, need and referring organisation
//!   kind from the directory, `unknown` when the organisation is not in it) and the decisions of
//!   the year by outcome; delays are medians in days (a deferral is not a review). Every count
//!   from 1 to 4 is shown as suppressed (`null` with `"suppressed": true`), with complementary
//!   suppression in breakdowns of a shown total, so that no small group can be singled out.

pub mod agenda;
pub mod agenda_amend;
pub mod decisions;
pub mod directory;
pub mod meeting;
pub mod minutes;
pub mod schedule;
pub mod sessions;
pub mod statistics;

use chrono::{DateTime, Datelike, Duration, FixedOffset, Months, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::{self, CelluleMember};
use super::idempotency::Lease;
use super::{AppState, audit_log, notify};
use crate::audit::{self, Action};
use crate::crypto::FieldContext;
use crate::domain::agenda::{Candidate, Capacity, Kind};
use crate::domain::case::{CaseStatus, Need, Urgency};
use crate::domain::notice::NoticeKind;
use crate::domain::policy::Principal;
use crate::domain::routing::{self, Directory};
use crate::domain::schedule::{IcsEvent, Schedule};
use crate::domain::session::{SessionStage, SessionStatus};
use crate::error::{Error, FieldError};
use crate::storage::{
    AgendaItemRecord, CaseRecord, DecisionRecord, Deferrals, EligibleCase, NewAgendaItem,
    SessionRecord, Transition,
};

/// Most items an edited agenda may hold.
pub const MAX_AGENDA_ITEMS: usize = 200;
/// Longest decision text, in characters.
pub const MAX_DECISION_TEXT: usize = 4_000;
/// Counts below this are suppressed in statistics.
pub const SUPPRESS_BELOW: i64 = 5;

/// A cellule-level action without case data (schedule, sessions, routing, statistics).
async fn allowed(state: &AppState, who: &CelluleMember, action: &str) -> Result<(), Error> {
    let p = access::principal(who);
    access::cellule_action(state, &p, action)
}

/// A cellule-level action on case data: refusals are audited.
async fn allowed_audited(
    state: &AppState,
    who: &CelluleMember,
    action: &str,
    audited: Action,
) -> Result<Principal, Error> {
    let p = access::principal(who);
    access::cellule_action_audited(state, &p, &who.audit(), action, audited).await?;
    Ok(p)
}

fn slug(who: &CelluleMember) -> &str {
    who.cellule.slug.as_str()
}

async fn load_schedule(state: &AppState, cellule: &str) -> Result<Option<Schedule>, Error> {
    match state.db.get_schedule(cellule).await? {
        Some(doc) => Ok(Some(serde_json::from_str(&doc).map_err(|e| {
            Error::Internal(format!("stored schedule does not parse: {e}"))
        })?)),
        None => Ok(None),
    }
}

async fn load_directory(state: &AppState, cellule: &str) -> Result<Directory, Error> {
    directory::export_directory(state.db.as_ref(), cellule).await
}

/// Stores a cellule's directory with its `change_routing` entry (by `ctx`'s actor), which names
/// what changed against the stored directory it replaces, in one transaction.
async fn store_directory(
    db: &dyn crate::storage::Database,
    cellule: &str,
    dir: &Directory,
    now: DateTime<Utc>,
    ctx: audit::AuditCtx,
) -> Result<audit::Head, Error> {
    let doc = serde_json::to_string(dir).map_err(|e| Error::Internal(e.to_string()))?;
    let after = serde_json::to_value(dir).map_err(|e| Error::Internal(e.to_string()))?;
    let draft = ctx
        .entry(Action::ChangeRouting, now)
        .target("routing_directory", cellule);
    let entry = move |before: Option<String>| {
        // A stored document that no longer parses counts as empty: the entry still names
        // everything the new directory holds.
        let before = before
            .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
            .unwrap_or(serde_json::Value::Null);
        draft.detail(&directory::routing_detail(&before, &after))
    };
    Ok(db
        .put_directory(cellule, &doc, now, Box::new(entry))
        .await?)
}

pub(super) async fn session(
    state: &AppState,
    cellule: &str,
    id: &str,
) -> Result<SessionRecord, Error> {
    state
        .db
        .get_session(cellule, id)
        .await?
        .ok_or(Error::NotFound("session"))
}

/// The one entry of a session-level action: it names the session and the set of cases touched
/// (none: the session alone). An agenda build considers every eligible case of the cellule;
/// one entry per case would cost thousands of chained rows per build, the set costs one.
pub(super) fn session_entry(
    a: &audit::AuditCtx,
    action: Action,
    now: DateTime<Utc>,
    session_id: &str,
    cases: &[(&str, &str)],
) -> Vec<audit::Draft> {
    vec![
        a.entry(action, now)
            .target("session", session_id)
            .cases(cases),
    ]
}

/// Attaches an event's notices to its (first) audit entry: they are written with it.
pub(super) fn with_notices(
    drafts: &mut [audit::Draft],
    notices: Vec<crate::domain::notice::Message>,
) {
    if let Some(d) = drafts.first_mut() {
        d.notices.extend(notices);
    }
}

pub(super) fn transition(
    case_id: &str,
    cellule: &str,
    from: CaseStatus,
    to: CaseStatus,
    actor: &str,
    at: DateTime<Utc>,
) -> Transition {
    Transition {
        event_id: uuid::Uuid::now_v7().to_string(),
        case_id: case_id.to_owned(),
        cellule: cellule.to_owned(),
        from,
        to,
        reason: None,
        referrer_message: None,
        follow_up_date: None,
        routed_org: None,
        actor: actor.to_owned(),
        at,
    }
}
