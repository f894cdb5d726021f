//! Changes of a published agenda (docs/design.md §10): an urgent case added after publication,
//! an item withdrawn, the items reordered. Each is one transaction with its `amend_agenda`
//! audit entry, whose `detail` names the change with identifiers only.
//!
//! An added case becomes `scheduled` and its publication row opens member access (and its
//! invited organisations' guest access) at once, exactly as publication does; a withdrawn one
//! goes back to the status it had before scheduling, as when a session is cancelled, and its
//! publication row goes with it, closing that access at once. A decided item stays.
//!
//! The rule is "published and not cancelled" ([`published`]).

use serde_json::json;

use super::agenda::{
    AgendaEdit, AgendaView, DeferredView, agenda_view_of, capacity, current_view, invited_of,
    proposal_json,
};
use super::*;
use crate::storage::{AgendaAmendment, AgendaChange};

/// Body of `POST …/sessions/{sid}/agenda/items`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgendaItemAdd {
    /// The case: its id, or its reference (`PER-2026-0001`).
    #[schema(min_length = 1, max_length = 64)]
    pub case_id: String,
    /// Where the item goes, 1 for first; last by default. At most one past the current items.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub position: Option<u32>,
}

/// Where a published agenda's changes are made, for the messages that name them.
const ADD_AND_WITHDRAW: &str = "add a case with POST …/sessions/{sid}/agenda/items, withdraw \
     an item with DELETE …/sessions/{sid}/agenda/items/{case_id}";

/// A published agenda of a session not cancelled: the only one these changes apply to.
fn published(s: &SessionRecord) -> Result<(), Error> {
    if s.status == SessionStatus::Cancelled {
        return Err(Error::Conflict("This session is cancelled.".into()));
    }
    if s.published_at.is_none() {
        return Err(Error::Conflict(
            "This agenda is not published yet: edit it with PUT …/agenda.".into(),
        ));
    }
    if s.minutes_approved_at.is_some() {
        return Err(Error::Conflict(
            "The minutes of this session are approved: its agenda no longer changes.".into(),
        ));
    }
    Ok(())
}

/// The status a scheduled item's case goes back to when it leaves the agenda: the one it had
/// before publication scheduled it (as the cancellation of a session does it).
pub(super) fn before_scheduling(item: &AgendaItemRecord) -> CaseStatus {
    if item.kind == Kind::FollowUp {
        CaseStatus::InFollowUp
    } else {
        CaseStatus::Accepted
    }
}

/// `rows` in their order, numbered from 1, and the (case id, position) pairs stored.
fn renumber(rows: &mut [AgendaItemRecord]) -> Vec<(String, i64)> {
    rows.iter_mut()
        .zip(1i64..)
        .map(|(r, n)| {
            r.position = n;
            (r.case_id.clone(), n)
        })
        .collect()
}

fn case_ids(rows: &[AgendaItemRecord]) -> Vec<String> {
    rows.iter().map(|r| r.case_id.clone()).collect()
}

/// `POST …/sessions/{sid}/agenda/items`: adds a case to a published agenda.
pub async fn add_item(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
    req: AgendaItemAdd,
    lease: Option<&Lease>,
) -> Result<AgendaView, Error> {
    allowed_audited(state, who, "manage_agenda", Action::AmendAgenda).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    published(&s)?;
    let now = state.clock.now();
    let mut rows = state.db.agenda(&s.id).await?;
    let read = case_ids(&rows);
    let last = rows.len() + 1;
    let position = match req.position.map(|p| p as usize) {
        None => last,
        Some(p) if (1..=last).contains(&p) => p,
        Some(_) => {
            return Err(Error::invalid(
                "/position",
                format!("must be between 1 and {last}"),
            ));
        }
    };
    let key = req.case_id.trim();
    let since = access::agenda_since(now);
    let Some(case) = state.db.get_case(cellule, key, since).await? else {
        return Err(Error::invalid("/case_id", "no such case in this cellule"));
    };
    if read.contains(&case.id) {
        return Err(Error::Conflict(
            "This case is already on this agenda.".into(),
        ));
    }
    if !matches!(case.status, CaseStatus::Accepted | CaseStatus::InFollowUp) {
        return Err(Error::invalid(
            "/case_id",
            "only accepted or followed-up cases go on an agenda",
        ));
    }
    if let Some((_, other)) = state
        .db
        .other_agendas(cellule, &s.id, now)
        .await?
        .into_iter()
        .find(|(id, _)| *id == case.id)
    {
        return Err(Error::invalid(
            "/case_id",
            format!("this case is on the agenda of session {other}: remove it there first"),
        ));
    }
    let (sched, dir) = tokio::try_join!(
        load_schedule(state, cellule),
        load_directory(state, cellule)
    )?;
    let kind = if case.status == CaseStatus::InFollowUp {
        Kind::FollowUp
    } else {
        Kind::New
    };
    let item = NewAgendaItem {
        case_id: case.id.clone(),
        position: i64::try_from(position).map_err(|e| Error::Internal(e.to_string()))?,
        kind,
        minutes: capacity(sched.as_ref(), &s).minutes(kind),
        proposal: proposal_json(&dir, &EligibleCase::from(&case))?,
    };
    let invited = invited_of(&item.proposal);
    let scheduled = transition(
        &case.id,
        cellule,
        case.status,
        CaseStatus::Scheduled,
        who.membership.subject.as_str(),
        now,
    );
    // The answer is the agenda as this change leaves it, from the rows in hand (an idempotent
    // retry gets it back: it is written in the change's transaction). A deferral of the case by
    // this session is withdrawn by the change, its count undone.
    let mut deferred_here = false;
    let deferred: Vec<DeferredView> = state
        .db
        .agenda_deferred(&s.id)
        .await?
        .into_iter()
        .filter(|d| {
            let here = d.case_id == case.id;
            deferred_here |= here;
            !here
        })
        .map(|d| DeferredView {
            case_id: d.case_id,
            reference: d.reference,
            times_deferred: d.times_deferred,
        })
        .collect();
    rows.insert(
        position - 1,
        AgendaItemRecord {
            case_id: case.id.clone(),
            position: item.position,
            kind,
            minutes: item.minutes,
            proposal: item.proposal.clone(),
            reference: case.reference.clone(),
            status: CaseStatus::Scheduled,
            urgency: case.urgency,
            needs: case.needs.clone(),
            commune: case.commune.clone(),
            sector: case.sector.clone(),
            times_deferred: (case.times_deferred - i64::from(deferred_here)).max(0),
            routed_org: case.routed_org.clone(),
            follow_up_date: case.follow_up_date,
            decision_outcome: None,
        },
    );
    let positions = renumber(&mut rows);
    let view = agenda_view_of(&s, &rows, sched.as_ref(), None, deferred)?;
    let draft = who
        .audit()
        .entry(Action::AmendAgenda, now)
        .case(&case.id, Some(&case.reference))
        .target("session", &s.id)
        .detail(&json!({"change": "add", "position": item.position}))
        .notify(update_notices(state, who, &s, &rows, now).await?);
    let answer = lease
        .map(|l| l.answer(&view, &[], Some(&case.id)))
        .transpose()?;
    let amendment = AgendaAmendment {
        cellule,
        session: &s,
        read: &read,
        change: AgendaChange::Add {
            item: &item,
            invited: &invited,
            scheduled: &scheduled,
        },
        positions: &positions,
        now,
    };
    let head = state
        .db
        .amend_agenda(&amendment, vec![draft], answer.as_ref())
        .await?;
    audit_log::committed(state, cellule, &head).await;
    Ok(view)
}

/// `DELETE …/sessions/{sid}/agenda/items/{case}`: withdraws an undecided item (named by its
/// case's id or reference) from a published agenda.
pub async fn withdraw_item(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
    case: &str,
) -> Result<AgendaView, Error> {
    allowed_audited(state, who, "manage_agenda", Action::AmendAgenda).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    published(&s)?;
    let now = state.clock.now();
    let mut rows = state.db.agenda(&s.id).await?;
    let read = case_ids(&rows);
    let Some(at) = rows
        .iter()
        .position(|r| r.case_id == case || r.reference == case)
    else {
        // Recorded like any request about a case that is not there.
        let mut draft = who
            .audit()
            .entry(Action::AmendAgenda, now)
            .target("session", &s.id)
            .denied(audit::reason::NOT_FOUND);
        if let Ok(id) = uuid::Uuid::parse_str(case) {
            draft = draft.case(&id.to_string(), None);
        }
        audit_log::record_denial(state, cellule, draft).await?;
        return Err(Error::NotFound("agenda item"));
    };
    let item = rows.remove(at);
    if item.decision_outcome.is_some() {
        return Err(Error::Conflict(
            "This item has a decision: it can no longer be withdrawn.".into(),
        ));
    }
    // A case no longer `scheduled` (moved by hand since) leaves the agenda as it is.
    let back = if item.status == CaseStatus::Scheduled {
        before_scheduling(&item)
    } else {
        item.status
    };
    let revert = (item.status == CaseStatus::Scheduled).then(|| {
        transition(
            &item.case_id,
            cellule,
            CaseStatus::Scheduled,
            back,
            who.membership.subject.as_str(),
            now,
        )
    });
    let positions = renumber(&mut rows);
    let draft = who
        .audit()
        .entry(Action::AmendAgenda, now)
        .case(&item.case_id, Some(&item.reference))
        .target("session", &s.id)
        .detail(&json!({"change": "withdraw", "status": back.as_str()}))
        .notify(update_notices(state, who, &s, &rows, now).await?);
    let amendment = AgendaAmendment {
        cellule,
        session: &s,
        read: &read,
        change: AgendaChange::Withdraw {
            case_id: &item.case_id,
            revert: revert.as_ref(),
        },
        positions: &positions,
        now,
    };
    let head = state.db.amend_agenda(&amendment, vec![draft], None).await?;
    audit_log::committed(state, cellule, &head).await;
    let sched = load_schedule(state, cellule).await?;
    current_view(state, who, &s.id, sched.as_ref()).await
}

/// `PUT …/sessions/{sid}/agenda` once the agenda is published: the same items (by case id or
/// reference), in a new order. Anything else is refused with the endpoints that add and
/// withdraw items. The caller was authorised by [`super::agenda::edit`].
pub(super) async fn reorder(
    state: &AppState,
    who: &CelluleMember,
    s: SessionRecord,
    req: AgendaEdit,
) -> Result<AgendaView, Error> {
    published(&s)?;
    let cellule = slug(who);
    let rows = state.db.agenda(&s.id).await?;
    let read = case_ids(&rows);
    let mut errors = Vec::new();
    let mut order: Vec<&AgendaItemRecord> = Vec::with_capacity(rows.len());
    for (i, key) in req.items.iter().enumerate() {
        let pointer = format!("/items/{i}");
        let key = key.trim();
        match rows.iter().find(|r| r.case_id == key || r.reference == key) {
            Some(r) if order.iter().any(|o| o.case_id == r.case_id) => {
                errors.push(FieldError::new(pointer, "this item is listed twice"));
            }
            Some(r) => order.push(r),
            None => errors.push(FieldError::new(
                pointer,
                format!(
                    "not an item of this published agenda, which is only reordered here: \
                     {ADD_AND_WITHDRAW}"
                ),
            )),
        }
    }
    let missing: Vec<&str> = rows
        .iter()
        .filter(|r| !order.iter().any(|o| o.case_id == r.case_id))
        .map(|r| r.reference.as_str())
        .collect();
    if !missing.is_empty() {
        errors.push(FieldError::new(
            "/items",
            format!(
                "a published agenda is only reordered here, with all of its items; missing: {}; \
                 {ADD_AND_WITHDRAW}",
                missing.join(", ")
            ),
        ));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let now = state.clock.now();
    let positions: Vec<(String, i64)> = order
        .iter()
        .zip(1i64..)
        .map(|(r, n)| (r.case_id.clone(), n))
        .collect();
    let touched: Vec<(&str, &str)> = order
        .iter()
        .map(|r| (r.case_id.as_str(), r.reference.as_str()))
        .collect();
    let ids: Vec<&str> = order.iter().map(|r| r.case_id.as_str()).collect();
    let reordered: Vec<AgendaItemRecord> = order.iter().map(|r| (*r).clone()).collect();
    let draft = who
        .audit()
        .entry(Action::AmendAgenda, now)
        .target("session", &s.id)
        .cases(&touched)
        .detail(&json!({"change": "reorder", "order": ids}))
        .notify(update_notices(state, who, &s, &reordered, now).await?);
    let amendment = AgendaAmendment {
        cellule,
        session: &s,
        read: &read,
        change: AgendaChange::Reorder,
        positions: &positions,
        now,
    };
    let head = state.db.amend_agenda(&amendment, vec![draft], None).await?;
    audit_log::committed(state, cellule, &head).await;
    let sched = load_schedule(state, cellule).await?;
    current_view(state, who, &s.id, sched.as_ref()).await
}

/// The agenda's new state, to everyone invited (no content: the references each may see).
async fn update_notices(
    state: &AppState,
    who: &CelluleMember,
    s: &SessionRecord,
    rows: &[AgendaItemRecord],
    now: DateTime<Utc>,
) -> Result<Vec<crate::domain::notice::Message>, Error> {
    let ctx = notify::SessionContext {
        cellule: slug(who),
        cellule_name: who.cellule.name.as_str(),
        session: s,
        now,
    };
    notify::session_notices(state, &ctx, rows, NoticeKind::AgendaUpdate).await
}
