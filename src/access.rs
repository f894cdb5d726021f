//! Need-to-know access to cases (SPEC §6-§7): the one place that decides. Handlers ask these
//! functions; none of them compares roles itself.
//!
//! - `referrer`: submits referrals, sees a status view of their own; never a case or a note.
//! - `member`: sees a case while their organisation is its routed interlocutor, or while it is on
//!   a published agenda (the agenda comes with the scheduling work; until then the fact is
//!   false); a `guest` only the items routed to their organisation.
//! - `coordinator`: every case of the cellule; transitions and erasure are theirs alone.
//! - `auditor` (and administrators, who hold no membership): no case content, ever.
//! - Notes: `cellule` for everyone who sees the case; `psychiatry` and `city` for that sphere only.
//! - Members and coordinators must have accepted the current charter before any case content.

use crate::domain::case::Audience;
use crate::domain::{Membership, Role, Sphere};

/// Facts about a case that visibility depends on.
#[derive(Debug, Clone, Copy)]
pub struct CaseFacts<'a> {
    pub routed_org: Option<&'a str>,
    pub on_published_agenda: bool,
}

/// What a caller may do with a case they can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseAction {
    Read,
    Transition,
    Erase,
    ReadNotes,
    WriteNote(Audience),
}

/// Outcome of an authorisation question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The case is visible but the action is not the caller's (403).
    Forbidden,
    /// The case is not visible: answered exactly like a missing case (404).
    Hidden,
}

/// May this membership submit referrals?
pub fn can_refer(m: &Membership) -> bool {
    matches!(
        m.spec.role,
        Role::Referrer | Role::Member | Role::Coordinator
    )
}

/// May this membership list cases at all (the list is then filtered by [`list_scope`])?
pub fn can_list_cases(m: &Membership) -> bool {
    matches!(m.spec.role, Role::Member | Role::Coordinator)
}

/// Members and coordinators must accept the charter before touching case content.
pub fn needs_charter(m: &Membership) -> bool {
    matches!(m.spec.role, Role::Member | Role::Coordinator)
}

/// The database-side restriction of a case list: `None` = every case of the cellule;
/// `Some(org)` = only cases routed to `org`.
pub fn list_scope(m: &Membership) -> Option<Option<String>> {
    match m.spec.role {
        Role::Coordinator => Some(None),
        Role::Member => Some(Some(
            m.spec
                .organisation
                .as_ref()
                .map(|o| o.as_str().to_owned())
                .unwrap_or_default(),
        )),
        Role::Referrer | Role::Auditor => None,
    }
}

fn sees_case(m: &Membership, facts: &CaseFacts<'_>) -> bool {
    match m.spec.role {
        Role::Coordinator => true,
        Role::Member => {
            let routed_here = match (facts.routed_org, m.spec.organisation.as_ref()) {
                (Some(routed), Some(org)) => routed == org.as_str(),
                _ => false,
            };
            routed_here || (!m.spec.guest && facts.on_published_agenda)
        }
        Role::Referrer | Role::Auditor => false,
    }
}

/// Whether a note audience is readable (and writable) by this membership.
pub fn audience_allowed(m: &Membership, audience: Audience) -> bool {
    match audience {
        Audience::Cellule => true,
        Audience::Psychiatry => m.spec.sphere == Some(Sphere::Psychiatry),
        Audience::City => m.spec.sphere == Some(Sphere::City),
    }
}

/// The audiences of notes this membership reads.
pub fn readable_audiences(m: &Membership) -> Vec<Audience> {
    Audience::ALL
        .iter()
        .copied()
        .filter(|a| audience_allowed(m, *a))
        .collect()
}

/// The single authorisation point for actions on one case.
pub fn decide(m: &Membership, facts: &CaseFacts<'_>, action: CaseAction) -> Decision {
    if !sees_case(m, facts) {
        return Decision::Hidden;
    }
    let allowed = match action {
        CaseAction::Read | CaseAction::ReadNotes => true,
        CaseAction::Transition | CaseAction::Erase => m.spec.role == Role::Coordinator,
        CaseAction::WriteNote(audience) => audience_allowed(m, audience),
    };
    if allowed {
        Decision::Allow
    } else {
        Decision::Forbidden
    }
}
