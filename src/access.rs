//! Need-to-know access (SPEC §6-§7): the one authorisation point. Every route asks these
//! functions, which ask the Cedar policies of [`crate::domain::policy`]; no handler compares roles.
//!
//! - A case the caller may not see answers 404, exactly like a case that does not exist (the
//!   visibility question `view_case` is asked first, and a charter refusal is only told when the
//!   case would otherwise be visible).
//! - A forbidden action on a visible case answers 403.
//! - List endpoints pre-filter in the database (routed organisation, published agenda) and then
//!   keep exactly the items `view_case` allows.

use chrono::{DateTime, Duration, Utc};

use crate::audit::{self, Action, AuditCtx};
use crate::auth::CelluleMember;
use crate::domain::Role;
use crate::domain::case::Audience;
use crate::domain::policy::{Principal, Resource, Verdict};
use crate::error::ApiError;
use crate::http::AppState;
use crate::storage::CaseRecord;

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
) -> Result<Verdict, ApiError> {
    state
        .policies
        .decide(p, action, resource, audience)
        .map_err(ApiError::Internal)
}

/// A cellule-level action (`submit_referral`, `list_cases`, `accept_charter`…): 403 when denied.
pub fn cellule_action(state: &AppState, p: &Principal, action: &str) -> Result<(), ApiError> {
    let verdict = ask(state, p, action, &Resource::Cellule(&p.cellule), None)?;
    if verdict.is_allowed() {
        Ok(())
    } else if verdict.only_charter() {
        Err(ApiError::CharterNotAccepted)
    } else {
        Err(ApiError::Forbidden("Your role does not allow this action."))
    }
}

/// A cellule-level action; a refusal is recorded as a denied `audited` entry.
pub async fn cellule_action_audited(
    state: &AppState,
    p: &Principal,
    a: &AuditCtx,
    action: &str,
    audited: Action,
) -> Result<(), ApiError> {
    if let Err(e) = cellule_action(state, p, action) {
        if let Some(reason) = audit::denial_reason(&e) {
            let draft = a.entry(audited, state.clock.now()).denied(reason);
            audit::log(state, &a.cellule, vec![draft]).await?;
        }
        return Err(e);
    }
    Ok(())
}

fn case_resource(c: &CaseRecord) -> Resource<'_> {
    Resource::Case {
        id: &c.id,
        cellule: &c.cellule,
        status: &c.status,
        referrer: &c.referrer,
        routed_org: c.routed_org.as_deref().unwrap_or(""),
        on_published_agenda: c.on_agenda,
        invited_orgs: c.invited_organisations(),
    }
}

/// Whether the case is visible to `p` (the list filter).
pub fn sees(state: &AppState, p: &Principal, case: &CaseRecord) -> Result<bool, ApiError> {
    Ok(ask(state, p, "view_case", &case_resource(case), None)?.is_allowed())
}

/// An action on one case: 404 when the case is not visible, 403 when the action is not allowed.
pub fn case_action(
    state: &AppState,
    p: &Principal,
    case: &CaseRecord,
    action: &str,
    audience: Option<Audience>,
) -> Result<(), ApiError> {
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
                return Err(ApiError::CharterNotAccepted);
            }
        }
        return Err(ApiError::NotFound("case"));
    }
    if action == "view_case" {
        return Ok(());
    }
    let verdict = ask(state, p, action, &resource, audience.map(Audience::as_str))?;
    if verdict.is_allowed() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "Your role does not allow this action on this case.",
        ))
    }
}

/// The note audiences `p` may read on this (visible) case.
pub fn readable_audiences(
    state: &AppState,
    p: &Principal,
    case: &CaseRecord,
) -> Result<Vec<Audience>, ApiError> {
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
