//! Who may do what (docs/design.md §2, §6-§7): entering a cellule as one of its members, and the one
//! authorisation point for everything done inside it. Every use case asks these functions, which
//! ask the Cedar policies of [`crate::domain::policy`]; no use case compares roles.
//!
//! - Someone who is not a member of a cellule (or an administrator, who never acts inside one)
//!   gets exactly the answer of a cellule that does not exist (404), and the refusal is recorded.
//! - A case the caller may not see answers 404, exactly like a case that does not exist (the
//!   visibility question `view_case` is asked first, and a charter refusal is only told when the
//!   case would otherwise be visible).
//! - A forbidden action on a visible case answers 403.
//! - List endpoints pre-filter in the database (routed organisation, published agenda) and then
//!   keep exactly the items `view_case` allows.

use chrono::{DateTime, Duration, Utc};

use super::AppState;
use super::audit_log;
use super::throttle::Denial;
use crate::audit::{self, Action, Actor, AuditCtx};
use crate::domain::case::Audience;
use crate::domain::guard::Lang;
use crate::domain::policy::{Principal, Resource, Verdict};
use crate::domain::{Cellule, CelluleSlug, Membership, Role, Subject};
use crate::error::Error;
use crate::storage::CaseRecord;

/// The id given to one request by the adapter that received it; echoed to the client, written
/// in every log line and audit entry of the request.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Someone an adapter authenticated (a verified token, a web session), with what the audit log
/// keeps of their request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: Subject,
    pub issuer: String,
    /// The id of the request, echoed to the client and written in every entry.
    pub request_id: Option<String>,
    /// The route template the request matched (`/v1/cellules/{cellule}/cases/{id}`), never the
    /// concrete path: named in the entry of an outsider's refusal.
    pub route: Option<String>,
    /// The language the caller reads (hints of the identifier guard): French unless asked.
    pub lang: Lang,
}

/// A caller with a membership in one cellule ([`enter`]).
#[derive(Debug, Clone)]
pub struct CelluleMember {
    pub caller: Caller,
    pub cellule: Cellule,
    pub membership: Membership,
    /// Whether the caller had accepted the cellule's current charter when the request came in.
    pub charter_accepted: bool,
}

impl CelluleMember {
    /// The audit context of this request: cellule, actor, request id.
    pub fn audit(&self) -> AuditCtx {
        AuditCtx {
            cellule: self.membership.cellule.as_str().to_owned(),
            actor: Actor::of(&self.membership),
            request_id: self.caller.request_id.clone(),
        }
    }

    pub fn slug(&self) -> &str {
        self.cellule.slug.as_str()
    }
}

/// A deployment administrator's request; anyone else gets 403.
pub fn admin(state: &AppState, caller: &Caller) -> Result<(), Error> {
    if state.is_admin(caller.subject.as_str()) {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "This operation is reserved to deployment administrators.",
        ))
    }
}

/// Enters the cellule named `cellule` (a slug as given in a path) as the caller's membership in
/// it. One query answers for the cellule, the membership and the charter, so that "no such
/// cellule" and "not a member" take the same path; a refusal in a cellule that exists is
/// recorded (naming `case`, the case id of the request if it has one).
pub async fn enter(
    state: &AppState,
    caller: &Caller,
    cellule: &str,
    case: Option<&str>,
) -> Result<CelluleMember, Error> {
    let slug = CelluleSlug::parse(cellule).map_err(|_| Error::NotFound("cellule"))?;
    let access = state.db.cellule_access(&slug, &caller.subject).await?;
    let Some(access) = access else {
        // Nothing to record, but the denial budget is spent as for a cellule that exists.
        if let Denial::Throttled(wait) | Denial::RecordThrottled(wait) =
            state.limits.denial(caller.subject.as_str(), None)
        {
            return Err(Error::TooManyRequests(wait));
        }
        return Err(Error::NotFound("cellule"));
    };
    let refused = if state.is_admin(caller.subject.as_str()) {
        // Administrators never act inside a cellule (separation of duties).
        audit::reason::ADMINISTRATOR
    } else if let Some(membership) = access.membership {
        return Ok(CelluleMember {
            caller: caller.clone(),
            cellule: access.cellule,
            membership,
            charter_accepted: access.charter_accepted,
        });
    } else {
        audit::reason::NOT_MEMBER
    };
    record_outsider(state, caller, &access.cellule, case, refused).await?;
    Err(Error::NotFound("cellule"))
}

/// Records the refusal of a request into an existing cellule by someone who is not a member of
/// it (or an administrator): identifiers only (subject, route template, case id).
async fn record_outsider(
    state: &AppState,
    caller: &Caller,
    cellule: &Cellule,
    case: Option<&str>,
    reason: &'static str,
) -> Result<(), Error> {
    let ctx = AuditCtx {
        cellule: cellule.slug.as_str().to_owned(),
        actor: Actor {
            subject: caller.subject.as_str().to_owned(),
            role: if reason == audit::reason::ADMINISTRATOR {
                "administrator".into()
            } else {
                "none".into()
            },
            organisation: None,
        },
        request_id: caller.request_id.clone(),
    };
    let mut draft = ctx
        .entry(Action::EnterCellule, state.clock.now())
        .denied(reason);
    if let Some(route) = &caller.route {
        draft = draft.target("route", route);
    }
    if let Some(id) = case.and_then(|c| uuid::Uuid::parse_str(c).ok()) {
        draft = draft.case(&id.to_string(), None);
    }
    audit_log::record_denial(state, &ctx.cellule, draft).await
}

/// A member sees the cases of a published agenda until this long after the session.
pub const AGENDA_WINDOW_DAYS: i64 = 30;

/// Sessions from this time on still open member access.
pub fn agenda_since(now: DateTime<Utc>) -> DateTime<Utc> {
    now - Duration::days(AGENDA_WINDOW_DAYS)
}

/// The principal of a membership, with its charter acceptance (members and coordinators).
pub fn principal(who: &CelluleMember) -> Principal {
    let m = &who.membership;
    let cellule = m.cellule.as_str();
    // Only members and coordinators read content, so only they sign the charter.
    let charter_accepted = match m.spec.role {
        Role::Member | Role::Coordinator => who.charter_accepted,
        Role::Referrer | Role::Auditor => false,
    };
    Principal {
        subject: m.subject.as_str().to_owned(),
        cellule: cellule.to_owned(),
        role: m.spec.role.as_str().to_owned(),
        sphere: m
            .spec
            .sphere
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        organisation: m
            .spec
            .organisation
            .as_ref()
            .map(|o| o.as_str().to_owned())
            .unwrap_or_default(),
        guest: m.spec.guest,
        charter_accepted,
    }
}

fn ask(
    state: &AppState,
    p: &Principal,
    action: &str,
    resource: &Resource<'_>,
    audience: Option<&str>,
) -> Result<Verdict, Error> {
    state
        .policies
        .decide(p, action, resource, audience)
        .map_err(Error::Internal)
}

/// A cellule-level action (`submit_referral`, `list_cases`, `accept_charter`…): 403 when denied.
pub fn cellule_action(state: &AppState, p: &Principal, action: &str) -> Result<(), Error> {
    let resource = Resource::Cellule(&p.cellule);
    let verdict = ask(state, p, action, &resource, None)?;
    if verdict.is_allowed() {
        return Ok(());
    }
    // Tell about the charter only if accepting it would allow the action: a role that never
    // may (a referrer listing cases, an auditor reading an agenda) is plainly forbidden, not
    // sent to a charter it cannot accept.
    if verdict.only_charter() {
        let accepted = Principal {
            charter_accepted: true,
            ..p.clone()
        };
        if ask(state, &accepted, action, &resource, None)?.is_allowed() {
            return Err(Error::CharterNotAccepted);
        }
    }
    Err(Error::Forbidden("Your role does not allow this action."))
}

/// Whether `p` may see the possible duplicates of a referral (the policies' `view_duplicates`);
/// a policy set that does not know the action shows them to nobody.
pub fn sees_duplicates(state: &AppState, p: &Principal) -> bool {
    ask(
        state,
        p,
        "view_duplicates",
        &Resource::Cellule(&p.cellule),
        None,
    )
    .is_ok_and(|v| v.is_allowed())
}

/// A cellule-level action; a refusal is recorded as a denied `audited` entry.
pub async fn cellule_action_audited(
    state: &AppState,
    p: &Principal,
    a: &AuditCtx,
    action: &str,
    audited: Action,
) -> Result<(), Error> {
    if let Err(e) = cellule_action(state, p, action) {
        if let Some(reason) = audit_log::denial_reason(&e) {
            let draft = a.entry(audited, state.clock.now()).denied(reason);
            audit_log::record_denial(state, &a.cellule, draft).await?;
        }
        return Err(e);
    }
    Ok(())
}

fn case_resource(c: &CaseRecord) -> Resource<'_> {
    Resource::Case {
        id: &c.id,
        cellule: &c.cellule,
        status: c.status.as_str(),
        referrer: &c.referrer,
        routed_org: c.routed_org.as_deref().unwrap_or(""),
        on_published_agenda: c.on_agenda,
        invited_orgs: c.invited_organisations(),
    }
}

/// Whether the case is visible to `p` (the list filter).
pub fn sees(state: &AppState, p: &Principal, case: &CaseRecord) -> Result<bool, Error> {
    Ok(ask(state, p, "view_case", &case_resource(case), None)?.is_allowed())
}

/// An action on one case: 404 when the case is not visible, 403 when the action is not allowed.
pub fn case_action(
    state: &AppState,
    p: &Principal,
    case: &CaseRecord,
    action: &str,
    audience: Option<Audience>,
) -> Result<(), Error> {
    let resource = case_resource(case);
    let view = ask(state, p, "view_case", &resource, None)?;
    if !view.is_allowed() {
        if view.only_charter() {
            // Tell about the charter only if the case would be visible once it is accepted.
            let accepted = Principal {
                charter_accepted: true,
                ..p.clone()
            };
            if ask(state, &accepted, "view_case", &resource, None)?.is_allowed() {
                return Err(Error::CharterNotAccepted);
            }
        }
        return Err(Error::NotFound("case"));
    }
    if action == "view_case" {
        return Ok(());
    }
    let verdict = ask(state, p, action, &resource, audience.map(Audience::as_str))?;
    if verdict.is_allowed() {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "Your role does not allow this action on this case.",
        ))
    }
}

/// The note audiences `p` may read on this (visible) case.
pub fn readable_audiences(
    state: &AppState,
    p: &Principal,
    case: &CaseRecord,
) -> Result<Vec<Audience>, Error> {
    let resource = case_resource(case);
    let mut out = Vec::new();
    for audience in Audience::ALL {
        if ask(state, p, "read_note", &resource, Some(audience.as_str()))?.is_allowed() {
            out.push(*audience);
        }
    }
    Ok(out)
}

/// The database pre-filter of a case list: (routed organisation, or on a published agenda, or
/// invited to a published item). `None` organisation = no restriction (coordinators); the
/// policies then decide item by item.
pub fn list_prefilter(p: &Principal) -> (Option<String>, bool, Option<String>) {
    if p.role == "coordinator" {
        (None, false, None)
    } else if p.guest {
        (
            Some(p.organisation.clone()),
            false,
            Some(crate::storage::invitation_needle(&p.organisation)),
        )
    } else {
        (Some(p.organisation.clone()), true, None)
    }
}
