//! Referrals and cases: intake with consent and identifier guard, screening and lifecycle,
//! notes, erasure and retention (docs/design.md §3-§7). Free text is sealed with the case's data key
//! before it reaches storage and opened only for callers the access rules let see it.

mod checks;
mod erasure;
mod lifecycle;
mod notes;
mod read;
mod submit;

pub use checks::{allowed_actions, check_action, find};
pub use erasure::{erase, run_retention};
pub use lifecycle::transition;
pub use notes::{add_note, note_again, notes};
pub use read::{list, my_referrals, read};
pub use submit::submit;

use chrono::{DateTime, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use zeroize::Zeroizing;

use super::access::{self, CelluleMember};
use super::idempotency::Lease;
use super::{AppState, audit_log, cellules, guard};
use crate::audit::{self, Action, AuditCtx};
use crate::crypto::{DataKey, FieldContext};
use crate::domain::Organisation;
use crate::domain::case::{
    AgeBand, Audience, CaseStatus, Commune, ConsentStatus, Gender, Need, Needs, Sector, Urgency,
};
use crate::domain::linkage::Identity;
use crate::domain::policy::Principal;
use crate::error::{Error, FieldError};
use crate::storage::{
    CaseFilter, CaseRecord, Database, EventRecord, NewCase, NoteRecord, Tombstone, Transition,
};

/// Longest situation / note text, in characters.
pub const MAX_TEXT: usize = 10_000;
/// Longest expectations / reason / justification, in characters.
pub const MAX_SHORT_TEXT: usize = 2_000;

/// Consent part of a referral.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    pub status: ConsentStatus,
    /// Required when `not_informed`; encrypted.
    #[serde(default)]
    pub justification: Option<String>,
}

/// Body of `POST …/referrals` (the fiche de saisine).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferralRequest {
    pub age_band: AgeBand,
    pub gender: Gender,
    /// INSEE code; `commune` and/or `sector` is required.
    #[serde(default)]
    pub commune: Option<Commune>,
    #[serde(default)]
    pub sector: Option<Sector>,
    #[schema(min_items = 1)]
    pub needs: Vec<Need>,
    pub urgency: Urgency,
    pub consent: Consent,
    /// Defaults to the caller's organisation.
    #[serde(default)]
    pub referring_org: Option<Organisation>,
    /// Free text, encrypted; scanned for direct identifiers. Not blank, at most 10,000
    /// characters.
    #[schema(
        pattern = r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
        max_length = 10000
    )]
    pub situation: String,
    /// Free text, encrypted; scanned for direct identifiers. Not blank, at most 2,000
    /// characters.
    #[serde(default)]
    #[schema(
        pattern = r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
        max_length = 2000
    )]
    pub expectations: Option<String>,
    /// Used only to derive the linkage key; never stored or logged.
    #[serde(default)]
    pub identity: Option<Identity>,
}

/// Answer to a referral.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReferralCreated {
    pub id: String,
    #[schema(example = "PER-2026-0042")]
    pub reference: String,
    pub status: CaseStatus,
    /// References of open cases of the cellule with the same linkage key.
    pub possible_duplicates: Vec<String>,
}

/// A referrer's status view of one of their referrals.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReferralStatus {
    pub id: String,
    pub reference: String,
    pub status: CaseStatus,
    pub submitted_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// The organisation the case was routed to, once decided.
    pub routed_to: Option<String>,
    /// The day of the session that last reviewed the case (a deferral is not a review).
    pub reviewed_on: Option<NaiveDate>,
    /// The professional contact of the organisation the case was routed to, from the routing
    /// directory.
    pub contact: Option<String>,
    /// The message the coordinator left for the referrer with the last decision, or with the
    /// decline of a declined referral.
    pub message: Option<String>,
}

/// A case in a list: pseudonymised attributes, no free text.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseSummary {
    pub id: String,
    pub reference: String,
    pub status: CaseStatus,
    pub urgency: Urgency,
    pub age_band: AgeBand,
    pub gender: Gender,
    pub commune: Option<String>,
    pub sector: Option<String>,
    pub needs: Vec<Need>,
    pub referring_org: String,
    pub routed_org: Option<String>,
    pub follow_up_date: Option<NaiveDate>,
    pub submitted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A page of cases.
#[derive(Debug, Serialize, ToSchema)]
pub struct CasePage {
    pub items: Vec<CaseSummary>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One status change of a case.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseEvent {
    pub from: CaseStatus,
    pub to: CaseStatus,
    pub reason: Option<String>,
    /// A decline's message for the referrer.
    pub referrer_message: Option<String>,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// A whole case, decrypted.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseView {
    #[serde(flatten)]
    pub summary: CaseSummary,
    pub consent_status: ConsentStatus,
    pub consent_justification: Option<String>,
    pub situation: String,
    pub expectations: Option<String>,
    pub times_deferred: i64,
    pub decided_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub possible_duplicates: Vec<String>,
    pub history: Vec<CaseEvent>,
}

/// Filters of `GET …/cases`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CaseQuery {
    pub status: Option<CaseStatus>,
    pub urgency: Option<Urgency>,
    pub need: Option<Need>,
    pub sector: Option<Sector>,
    pub commune: Option<Commune>,
    /// First submission day included (`YYYY-MM-DD`, UTC).
    pub submitted_from: Option<NaiveDate>,
    /// Last submission day included (`YYYY-MM-DD`, UTC).
    pub submitted_to: Option<NaiveDate>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1-200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// Body of `POST …/cases/{id}/transitions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    pub to: CaseStatus,
    /// Required for `declined` and `closed`; encrypted. For the cellule: the referrer never
    /// reads it.
    #[serde(default)]
    pub reason: Option<String>,
    /// Only with `declined`: what the referrer reads in their referrals (where to turn instead);
    /// encrypted, scanned for direct identifiers, at most 2,000 characters.
    #[serde(default)]
    pub referrer_message: Option<String>,
    /// Required for `in_follow_up`.
    #[serde(default)]
    pub follow_up_date: Option<NaiveDate>,
    /// The interlocutor the case is routed to (with `in_follow_up`).
    #[serde(default)]
    pub routed_org: Option<Organisation>,
}

/// Body of `POST …/cases/{id}/notes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    pub audience: Audience,
    /// Encrypted; scanned for direct identifiers. Not blank, at most 10,000 characters.
    #[schema(
        pattern = r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
        max_length = 10000
    )]
    pub body: String,
    /// Id of the note this one corrects (same case, same audience).
    #[serde(default)]
    pub corrects: Option<String>,
}

/// A note, decrypted.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoteView {
    pub id: String,
    pub audience: Audience,
    pub body: String,
    pub corrects: Option<String>,
    pub author: String,
    pub author_role: String,
    pub author_organisation: Option<String>,
    pub created_at: DateTime<Utc>,
}

fn text_field(pointer: &str, text: &str, max: usize, errors: &mut Vec<FieldError>) {
    let len = text.chars().count();
    if text.trim().is_empty() {
        errors.push(FieldError::new(pointer, "must not be empty"));
    } else if len > max {
        errors.push(FieldError::new(
            pointer,
            format!("must be at most {max} characters"),
        ));
    }
}

fn integrity(what: String) -> Error {
    Error::Integrity(what)
}

fn ctx<'a>(case: &'a CaseRecord, record_id: &'a str, field: &'a str) -> FieldContext<'a> {
    FieldContext {
        cellule: &case.cellule,
        case_id: &case.id,
        record_id,
        field,
    }
}

fn seal(
    key: &DataKey,
    cellule: &str,
    case_id: &str,
    record_id: &str,
    field: &str,
    text: &str,
) -> Result<Vec<u8>, Error> {
    key.seal(
        &FieldContext {
            cellule,
            case_id,
            record_id,
            field,
        },
        text,
    )
    .map_err(|e| Error::Internal(format!("encryption failed: {e}")))
}

fn open(key: &DataKey, c: FieldContext<'_>, blob: &[u8]) -> Result<Zeroizing<String>, Error> {
    key.open(&c, blob).map_err(|_| {
        integrity(format!(
            "cellule={} case={} record={} field={}",
            c.cellule, c.case_id, c.record_id, c.field
        ))
    })
}

fn summary(c: &CaseRecord) -> Result<CaseSummary, Error> {
    Ok(CaseSummary {
        id: c.id.clone(),
        reference: c.reference.clone(),
        status: c.status,
        urgency: c.urgency,
        age_band: c.age_band,
        gender: c.gender,
        commune: c.commune.clone(),
        sector: c.sector.clone(),
        needs: c.needs.as_slice().to_vec(),
        referring_org: c.referring_org.clone(),
        routed_org: c.routed_org.clone(),
        follow_up_date: c.follow_up_date,
        submitted_at: c.submitted_at,
        updated_at: c.updated_at,
    })
}

/// Loads a case and asks the policies for `action` (404 when not visible, 403 when forbidden).
/// A refusal (or a case that does not exist) is recorded as a denied `audited` entry before the
/// error is answered.
pub(crate) async fn authorised_case(
    state: &AppState,
    p: &Principal,
    a: &AuditCtx,
    id: &str,
    action: &str,
    audited: Action,
    audience: Option<Audience>,
) -> Result<CaseRecord, Error> {
    let found = state
        .db
        .get_case(&p.cellule, id, access::agenda_since(state.clock.now()))
        .await?;
    authorise(state, p, a, id, found, action, audited, audience).await
}

/// The case found for `id` (or not) if `action` is allowed on it; a refusal is recorded as a
/// denied `audited` entry and answered 404 (not found, or not visible) or 403.
#[allow(clippy::too_many_arguments)]
async fn authorise(
    state: &AppState,
    p: &Principal,
    a: &AuditCtx,
    id: &str,
    found: Option<CaseRecord>,
    action: &str,
    audited: Action,
    audience: Option<Audience>,
) -> Result<CaseRecord, Error> {
    let now = state.clock.now();
    let Some(case) = found else {
        let mut draft = a.entry(audited, now).denied(audit::reason::NOT_FOUND);
        if let Ok(id) = uuid::Uuid::parse_str(id) {
            draft = draft.case(&id.to_string(), None);
        }
        audit_log::record_denial(state, &a.cellule, draft).await?;
        return Err(Error::NotFound("case"));
    };
    if let Err(e) = access::case_action(state, p, &case, action, audience) {
        if let Some(reason) = audit_log::denial_reason(&e) {
            let draft = a
                .entry(audited, now)
                .case(&case.id, Some(&case.reference))
                .denied(reason);
            audit_log::record_denial(state, &a.cellule, draft).await?;
        }
        return Err(e);
    }
    Ok(case)
}

/// One allowed entry per case shown by a list (or one without a case when the list is empty).
async fn log_list(
    state: &AppState,
    a: &AuditCtx,
    action: Action,
    shown: &[(&str, &str)],
) -> Result<(), Error> {
    let now = state.clock.now();
    let drafts = if shown.is_empty() {
        vec![a.entry(action, now)]
    } else {
        shown
            .iter()
            .map(|(id, reference)| a.entry(action, now).case(id, Some(reference)))
            .collect()
    };
    audit_log::record(state, &a.cellule, drafts).await
}

pub(crate) fn case_key(state: &AppState, c: &CaseRecord) -> Result<DataKey, Error> {
    state
        .keys
        .open_case_key(&c.cellule, &c.id, &c.key_wrapped)
        .map_err(|_| integrity(format!("cellule={} case={} data key", c.cellule, c.id)))
}

/// Records a refused write on a visible case (422, 409) before answering it.
pub(super) async fn refused<T>(
    state: &AppState,
    a: &AuditCtx,
    action: Action,
    case: &CaseRecord,
    result: Result<T, Error>,
) -> Result<T, Error> {
    if let Err(e) = &result
        && let Some(reason) = audit_log::refusal_reason(e)
    {
        let draft = a
            .entry(action, state.clock.now())
            .case(&case.id, Some(&case.reference))
            .denied(reason);
        audit_log::record(state, &a.cellule, vec![draft]).await?;
    }
    result
}
