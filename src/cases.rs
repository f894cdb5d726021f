//! Referrals and cases: intake with consent and identifier guard, screening and lifecycle,
//! notes, erasure and retention (SPEC §3-§7). Free text is sealed with the case's data key
//! before it reaches storage and opened only for callers the access rules let see it.

use chrono::{DateTime, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use zeroize::Zeroizing;

use crate::access;
use crate::audit::{self, Action, AuditCtx};
use crate::auth::{CaseReader, CelluleMember};
use crate::crypto::{DataKey, FieldContext};
use crate::domain::Organisation;
use crate::domain::case::{
    AgeBand, Audience, CaseStatus, Commune, ConsentStatus, Gender, Need, Sector, Urgency,
};
use crate::domain::guard::{Guard, Hit};
use crate::domain::linkage::Identity;
use crate::domain::policy::Principal;
use crate::error::{ApiError, FieldError};
use crate::http::AppState;
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
    pub needs: Vec<Need>,
    pub urgency: Urgency,
    pub consent: Consent,
    /// Defaults to the caller's organisation.
    #[serde(default)]
    pub referring_org: Option<Organisation>,
    /// Free text, encrypted; scanned for direct identifiers.
    pub situation: String,
    /// Free text, encrypted; scanned for direct identifiers.
    #[serde(default)]
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
    #[param(value_type = Option<String>)]
    pub sector: Option<Sector>,
    #[param(value_type = Option<String>)]
    pub commune: Option<Commune>,
    /// First submission day included (`YYYY-MM-DD`, UTC).
    pub submitted_from: Option<NaiveDate>,
    /// Last submission day included (`YYYY-MM-DD`, UTC).
    pub submitted_to: Option<NaiveDate>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1-200, default 50.
    pub limit: Option<i64>,
}

/// Body of `POST …/cases/{id}/transitions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    pub to: CaseStatus,
    /// Required for `declined` and `closed`; encrypted.
    #[serde(default)]
    pub reason: Option<String>,
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
    /// Encrypted; scanned for direct identifiers.
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

fn guard(state: &AppState) -> Guard {
    Guard::new(state.clock.now().date_naive())
}

fn integrity(what: String) -> ApiError {
    ApiError::Integrity(what)
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
) -> Result<Vec<u8>, ApiError> {
    key.seal(
        &FieldContext {
            cellule,
            case_id,
            record_id,
            field,
        },
        text,
    )
    .map_err(|e| ApiError::Internal(format!("encryption failed: {e}")))
}

fn open(key: &DataKey, c: FieldContext<'_>, blob: &[u8]) -> Result<Zeroizing<String>, ApiError> {
    key.open(&c, blob).map_err(|_| {
        integrity(format!(
            "cellule={} case={} record={} field={}",
            c.cellule, c.case_id, c.record_id, c.field
        ))
    })
}

fn parse<T>(
    value: &str,
    parse: fn(&str) -> Result<T, crate::domain::Invalid>,
    what: &str,
) -> Result<T, ApiError> {
    parse(value).map_err(|_| ApiError::Internal(format!("stored {what} does not parse")))
}

fn needs_of(stored: &str) -> Result<Vec<Need>, ApiError> {
    stored
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|n| parse(n, Need::parse, "need"))
        .collect()
}

fn summary(c: &CaseRecord) -> Result<CaseSummary, ApiError> {
    Ok(CaseSummary {
        id: c.id.clone(),
        reference: c.reference.clone(),
        status: parse(&c.status, CaseStatus::parse, "status")?,
        urgency: parse(&c.urgency, Urgency::parse, "urgency")?,
        age_band: parse(&c.age_band, AgeBand::parse, "age band")?,
        gender: parse(&c.gender, Gender::parse, "gender")?,
        commune: c.commune.clone(),
        sector: c.sector.clone(),
        needs: needs_of(&c.needs)?,
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
async fn authorised_case(
    state: &AppState,
    p: &Principal,
    a: &AuditCtx,
    id: &str,
    action: &str,
    audited: Action,
    audience: Option<Audience>,
) -> Result<CaseRecord, ApiError> {
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
) -> Result<CaseRecord, ApiError> {
    let now = state.clock.now();
    let Some(case) = found else {
        let mut draft = a.entry(audited, now).denied(audit::reason::NOT_FOUND);
        if let Ok(id) = uuid::Uuid::parse_str(id) {
            draft = draft.case(&id.to_string(), None);
        }
        audit::log(state, &a.cellule, vec![draft]).await?;
        return Err(ApiError::NotFound("case"));
    };
    if let Err(e) = access::case_action(state, p, &case, action, audience) {
        if let Some(reason) = audit::denial_reason(&e) {
            let draft = a
                .entry(audited, now)
                .case(&case.id, Some(&case.reference))
                .denied(reason);
            audit::log(state, &a.cellule, vec![draft]).await?;
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
) -> Result<(), ApiError> {
    let now = state.clock.now();
    let drafts = if shown.is_empty() {
        vec![a.entry(action, now)]
    } else {
        shown
            .iter()
            .map(|(id, reference)| a.entry(action, now).case(id, Some(reference)))
            .collect()
    };
    audit::log(state, &a.cellule, drafts).await
}

fn case_key(state: &AppState, c: &CaseRecord) -> Result<DataKey, ApiError> {
    state
        .keys
        .open_case_key(&c.cellule, &c.id, &c.key_wrapped)
        .map_err(|_| integrity(format!("cellule={} case={} data key", c.cellule, c.id)))
}

/// `POST …/referrals`.
/// `looked_up`: the linkage key of the request's identity and the references of the open cases
/// sharing it, as the [`crate::auth::Submitter`] extractor found them with the membership
/// (`None`: not looked up; the key is derived and the duplicate check runs here).
pub async fn submit(
    state: &AppState,
    who: &CelluleMember,
    req: ReferralRequest,
    looked_up: Option<(String, Vec<String>)>,
) -> Result<ReferralCreated, ApiError> {
    let m = &who.membership;
    let a = who.audit();
    let p = access::principal(who);
    access::cellule_action_audited(state, &p, &a, "submit_referral", Action::SubmitReferral)
        .await?;
    let mut errors = Vec::new();
    if req.commune.is_none() && req.sector.is_none() {
        errors.push(FieldError::new(
            "/commune",
            "give a commune, a sector, or both",
        ));
    }
    if req.needs.is_empty() {
        errors.push(FieldError::new("/needs", "at least one need is required"));
    }
    let mut needs = req.needs.clone();
    needs.sort();
    needs.dedup();
    if needs.len() != req.needs.len() {
        errors.push(FieldError::new("/needs", "needs must not repeat"));
    }
    match req.consent.status {
        ConsentStatus::Objected => errors.push(FieldError::new(
            "/consent/status",
            "the person objected: an objection blocks all sharing, the referral cannot be recorded",
        )),
        ConsentStatus::NotInformed => match &req.consent.justification {
            Some(j) => text_field("/consent/justification", j, MAX_SHORT_TEXT, &mut errors),
            None => errors.push(FieldError::new(
                "/consent/justification",
                "required when the person was not informed",
            )),
        },
        ConsentStatus::Agreed | ConsentStatus::Informed => {
            if let Some(j) = &req.consent.justification {
                text_field("/consent/justification", j, MAX_SHORT_TEXT, &mut errors);
            }
        }
    }
    text_field("/situation", &req.situation, MAX_TEXT, &mut errors);
    if let Some(e) = &req.expectations {
        text_field("/expectations", e, MAX_SHORT_TEXT, &mut errors);
    }
    let referring_org = match (&req.referring_org, &m.spec.organisation) {
        (Some(org), _) | (None, Some(org)) => org.clone(),
        (None, None) => {
            errors.push(FieldError::new("/referring_org", "required"));
            Organisation::parse("-").map_err(|e| ApiError::Internal(e.to_string()))?
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let scanner = guard(state);
    let mut hits: Vec<Hit> = scanner.scan("situation", &req.situation);
    if let Some(e) = &req.expectations {
        hits.extend(scanner.scan("expectations", e));
    }
    if let Some(j) = &req.consent.justification {
        hits.extend(scanner.scan("consent.justification", j));
    }
    if !hits.is_empty() {
        return Err(ApiError::Identifiers(hits));
    }

    let cellule = m.cellule.as_str();
    // The extractor's lookup used the key of this very identity (valid, under this cellule's
    // secret): it is taken as it is, not derived a second time.
    let (linkage_key, possible_duplicates) = match (&req.identity, looked_up) {
        (None, _) => (None, Vec::new()),
        (Some(_), Some((key, found))) => (Some(key), found),
        (Some(identity), None) => {
            let secret = state
                .keys
                .linkage_secret(state.db.as_ref(), cellule)
                .await
                .map_err(|e| match e {
                    crate::crypto::keys::KeyError::Storage(s) => ApiError::from(s),
                    other => integrity(other.to_string()),
                })?;
            let key = identity
                .linkage_key(&secret)
                .map_err(|e| ApiError::invalid(format!("/identity/{}", e.field), e.message))?;
            let found = state.db.open_cases_with_linkage(cellule, &key).await?;
            (Some(key), found)
        }
    };
    // The identity is not needed any more: drop it (its fields are wiped on drop).
    let ReferralRequest {
        situation,
        expectations,
        consent,
        identity,
        ..
    } = req;
    drop(identity);

    // Time-ordered (UUIDv7): a new case's rows go at the end of the indexes keyed by case id
    // (case, data key, audit entries by case) instead of into a random page of each, which the
    // commit would write and the WAL copy back. It shows the millisecond it was made (the
    // system clock's, about the case's `submitted_at`, which is shown wherever the case is).
    let id = uuid::Uuid::now_v7().to_string();
    let (key, wrapped) = state
        .keys
        .new_case_key(cellule, &id)
        .map_err(|e| ApiError::Internal(format!("key generation: {e}")))?;
    let now = state.clock.now();
    let new = NewCase {
        id: id.clone(),
        cellule: cellule.to_owned(),
        code: who.cellule.code.as_str().to_owned(),
        year: crate::domain::case::reference_year(now),
        urgency: req.urgency.as_str().to_owned(),
        age_band: req.age_band.as_str().to_owned(),
        gender: req.gender.as_str().to_owned(),
        commune: req.commune.as_ref().map(|c| c.as_str().to_owned()),
        sector: req.sector.as_ref().map(|s| s.as_str().to_owned()),
        needs: format!(
            ",{},",
            needs
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
        consent_status: consent.status.as_str().to_owned(),
        consent_justification: consent
            .justification
            .as_deref()
            .map(|j| seal(&key, cellule, &id, &id, "consent_justification", j))
            .transpose()?,
        referring_org: referring_org.as_str().to_owned(),
        referrer: m.subject.as_str().to_owned(),
        linkage_key,
        situation: seal(&key, cellule, &id, &id, "situation", &situation)?,
        expectations: expectations
            .as_deref()
            .map(|e| seal(&key, cellule, &id, &id, "expectations", e))
            .transpose()?,
        submitted_at: now,
    };
    let draft = a.entry(Action::SubmitReferral, now).case(&id, None);
    // Group-committed with the other submissions and reads of the moment (same transaction as
    // its entry; answered once committed).
    let reference = state.audit.insert_case(new, wrapped, draft).await?;
    Ok(ReferralCreated {
        id,
        reference,
        status: CaseStatus::Submitted,
        possible_duplicates,
    })
}

/// `GET …/referrals`: the caller's own referrals, status view only.
pub async fn my_referrals(
    state: &AppState,
    who: &CelluleMember,
) -> Result<Vec<ReferralStatus>, ApiError> {
    let m = &who.membership;
    let a = who.audit();
    let p = access::principal(who);
    access::cellule_action_audited(state, &p, &a, "list_own_referrals", Action::ListReferrals)
        .await?;
    let filter = CaseFilter {
        referrer: Some(m.subject.as_str().to_owned()),
        limit: 1000,
        ..CaseFilter::default()
    };
    let rows = state.db.list_cases(m.cellule.as_str(), &filter).await?;
    let shown: Vec<(&str, &str)> = rows
        .iter()
        .map(|c| (c.id.as_str(), c.reference.as_str()))
        .collect();
    log_list(state, &a, Action::ListReferrals, &shown).await?;
    rows.iter()
        .map(|c| {
            let status = parse(&c.status, CaseStatus::parse, "status")?;
            Ok(ReferralStatus {
                id: c.id.clone(),
                reference: c.reference.clone(),
                status,
                submitted_at: c.submitted_at,
                decided_at: c.decided_at,
                closed_at: c.closed_at,
                updated_at: c.updated_at,
                routed_to: c.routed_org.clone(),
            })
        })
        .collect()
}

fn encode_cursor(at: DateTime<Utc>, id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}|{id}", at.timestamp_micros()))
}

fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, String)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (micros, id) = text.split_once('|')?;
    Some((
        DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        uuid::Uuid::parse_str(id).ok()?.to_string(),
    ))
}

/// `GET …/cases`: exactly the cases the caller may see, filtered in the database.
pub async fn list(
    state: &AppState,
    who: &CelluleMember,
    q: CaseQuery,
) -> Result<CasePage, ApiError> {
    let m = &who.membership;
    let a = who.audit();
    let p = access::principal(who);
    access::cellule_action_audited(state, &p, &a, "list_cases", Action::ListCases).await?;
    let (routed_org, or_on_agenda, invited) = access::list_prefilter(&p);
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("/limit", "must be between 1 and 200"));
    }
    let after = match &q.cursor {
        Some(c) => Some(
            decode_cursor(c)
                .ok_or_else(|| ApiError::invalid("/cursor", "not a cursor from this API"))?,
        ),
        None => None,
    };
    let day_start = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    let filter = CaseFilter {
        status: q.status.map(|s| s.as_str().to_owned()),
        urgency: q.urgency.map(|u| u.as_str().to_owned()),
        need_pattern: q.need.map(|n| format!("%,{},%", n.as_str())),
        sector: q.sector.map(|s| s.as_str().to_owned()),
        commune: q.commune.map(|c| c.as_str().to_owned()),
        submitted_from: q.submitted_from.and_then(day_start),
        submitted_before: q
            .submitted_to
            .and_then(|d| d.succ_opt())
            .and_then(day_start),
        routed_org,
        or_on_agenda,
        invited,
        agenda_since: access::agenda_since(state.clock.now()),
        referrer: None,
        after,
        limit: limit + 1,
    };
    let mut rows = state.db.list_cases(m.cellule.as_str(), &filter).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        rows.last().map(|c| encode_cursor(c.submitted_at, &c.id))
    } else {
        None
    };
    // The database pre-filtered; the policies decide item by item.
    let mut items = Vec::with_capacity(rows.len());
    let mut shown = Vec::with_capacity(rows.len());
    for row in &rows {
        if access::sees(state, &p, row)? {
            items.push(summary(row)?);
            shown.push((row.id.as_str(), row.reference.as_str()));
        }
    }
    log_list(state, &a, Action::ListCases, &shown).await?;
    Ok(CasePage { items, next_cursor })
}

/// `GET …/cases/{id}`: the whole case, decrypted. The case, its history and its possible
/// duplicates come with the caller's membership, in the one query of the [`CaseReader`]
/// extractor (read before the decision: nothing of it leaves unless the read is allowed).
pub async fn read(state: &AppState, reader: CaseReader) -> Result<CaseView, ApiError> {
    let CaseReader {
        member: who,
        id,
        case: found,
    } = reader;
    let id = id.as_str();
    let a = who.audit();
    let p = access::principal(&who);
    let (found, extras) = match found {
        Some(r) => (Some(r.case), Some((r.history, r.duplicates))),
        None => (None, None),
    };
    let case = authorise(
        state,
        &p,
        &a,
        id,
        found,
        "read_case",
        Action::ReadCase,
        None,
    )
    .await?;
    let (history, duplicates) = extras.unwrap_or_default();
    let draft = a
        .entry(Action::ReadCase, state.clock.now())
        .case(&case.id, Some(&case.reference));
    // The answer is prepared (fields decrypted) while the entry commits; it is given only once
    // the entry is committed, and not at all if it cannot be. (If preparing it fails, the
    // entry may still be committed: the log may overstate an access, never hide one.)
    let (logged, view) = tokio::join!(audit::log(state, &a.cellule, vec![draft]), async {
        view(state, &case, history, duplicates)
    });
    logged?;
    view
}

fn view(
    state: &AppState,
    case: &CaseRecord,
    events: Vec<EventRecord>,
    duplicates: Vec<String>,
) -> Result<CaseView, ApiError> {
    let key = case_key(state, case)?;
    let situation = open(&key, ctx(case, &case.id, "situation"), &case.situation)?;
    let expectations = case
        .expectations
        .as_deref()
        .map(|b| open(&key, ctx(case, &case.id, "expectations"), b))
        .transpose()?;
    let justification = case
        .consent_justification
        .as_deref()
        .map(|b| open(&key, ctx(case, &case.id, "consent_justification"), b))
        .transpose()?;
    let mut history = Vec::new();
    for e in events {
        let reason = e
            .reason
            .as_deref()
            .map(|b| open(&key, ctx(case, &e.id, "reason"), b))
            .transpose()?;
        history.push(CaseEvent {
            from: parse(&e.from_status, CaseStatus::parse, "status")?,
            to: parse(&e.to_status, CaseStatus::parse, "status")?,
            reason: reason.map(|r| r.as_str().to_owned()),
            actor: e.actor,
            at: e.at,
        });
    }
    let possible_duplicates = duplicates
        .into_iter()
        .filter(|r| *r != case.reference)
        .collect();
    Ok(CaseView {
        summary: summary(case)?,
        consent_status: parse(&case.consent_status, ConsentStatus::parse, "consent")?,
        consent_justification: justification.map(|j| j.as_str().to_owned()),
        situation: situation.as_str().to_owned(),
        expectations: expectations.map(|e| e.as_str().to_owned()),
        times_deferred: case.times_deferred,
        decided_at: case.decided_at,
        closed_at: case.closed_at,
        possible_duplicates,
        history,
    })
}

/// `POST …/cases/{id}/transitions`: one step of the SPEC §4 graph, or 409 and no change.
pub async fn transition(
    state: &AppState,
    who: &CelluleMember,
    id: &str,
    req: TransitionRequest,
) -> Result<CaseSummary, ApiError> {
    let a = who.audit();
    let p = access::principal(who);
    let case = authorised_case(
        state,
        &p,
        &a,
        id,
        "transition_case",
        Action::TransitionCase,
        None,
    )
    .await?;
    let result = transition_authorised(state, who, &a, &case, req).await;
    refused(state, &a, Action::TransitionCase, &case, result).await
}

/// Records a refused write on a visible case (422, 409) before answering it.
async fn refused<T>(
    state: &AppState,
    a: &AuditCtx,
    action: Action,
    case: &CaseRecord,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    if let Err(e) = &result
        && let Some(reason) = audit::refusal_reason(e)
    {
        let draft = a
            .entry(action, state.clock.now())
            .case(&case.id, Some(&case.reference))
            .denied(reason);
        audit::log(state, &a.cellule, vec![draft]).await?;
    }
    result
}

async fn transition_authorised(
    state: &AppState,
    who: &CelluleMember,
    a: &AuditCtx,
    case: &CaseRecord,
    req: TransitionRequest,
) -> Result<CaseSummary, ApiError> {
    let m = &who.membership;
    let from = parse(&case.status, CaseStatus::parse, "status")?;
    let mut errors = Vec::new();
    if req.to.needs_reason() {
        match &req.reason {
            Some(r) => text_field("/reason", r, MAX_SHORT_TEXT, &mut errors),
            None => errors.push(FieldError::new(
                "/reason",
                format!("a reason is required to move to {}", req.to.as_str()),
            )),
        }
    } else if let Some(r) = &req.reason {
        text_field("/reason", r, MAX_SHORT_TEXT, &mut errors);
    }
    if req.to == CaseStatus::InFollowUp && req.follow_up_date.is_none() {
        errors.push(FieldError::new(
            "/follow_up_date",
            "required to move to in_follow_up",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if !from.can_become(req.to) {
        return Err(ApiError::InvalidTransition(format!(
            "A case cannot go from {} to {}.",
            from.as_str(),
            req.to.as_str()
        )));
    }
    if let Some(r) = &req.reason {
        let hits = guard(state).scan("reason", r);
        if !hits.is_empty() {
            return Err(ApiError::Identifiers(hits));
        }
    }
    let key = case_key(state, case)?;
    let event_id = uuid::Uuid::now_v7().to_string();
    let reason = req
        .reason
        .as_deref()
        .map(|r| seal(&key, &case.cellule, &case.id, &event_id, "reason", r))
        .transpose()?;
    let draft = a
        .entry(Action::TransitionCase, state.clock.now())
        .case(&case.id, Some(&case.reference))
        .target("event", &event_id);
    let t = Transition {
        event_id,
        case_id: case.id.clone(),
        cellule: case.cellule.clone(),
        from: from.as_str().to_owned(),
        to: req.to.as_str().to_owned(),
        reason,
        follow_up_date: req.follow_up_date,
        routed_org: req.routed_org.map(|o| o.as_str().to_owned()),
        actor: m.subject.as_str().to_owned(),
        at: state.clock.now(),
    };
    let Some(head) = state.db.transition_case(&t, draft).await? else {
        return Err(ApiError::InvalidTransition(
            "The case changed meanwhile; reload it and try again.".into(),
        ));
    };
    audit::written(state, &case.cellule, &head).await;
    let updated = state
        .db
        .get_case(
            &case.cellule,
            &case.id,
            access::agenda_since(state.clock.now()),
        )
        .await?
        .ok_or(ApiError::NotFound("case"))?;
    summary(&updated)
}

/// `POST …/cases/{id}/notes`: append a note (or a correction of one).
pub async fn add_note(
    state: &AppState,
    who: &CelluleMember,
    id: &str,
    req: NoteRequest,
) -> Result<NoteView, ApiError> {
    let a = who.audit();
    let p = access::principal(who);
    let case = authorised_case(
        state,
        &p,
        &a,
        id,
        "write_note",
        Action::WriteNote,
        Some(req.audience),
    )
    .await?;
    let result = add_note_authorised(state, who, &p, &a, &case, req).await;
    refused(state, &a, Action::WriteNote, &case, result).await
}

async fn add_note_authorised(
    state: &AppState,
    who: &CelluleMember,
    p: &Principal,
    a: &AuditCtx,
    case: &CaseRecord,
    req: NoteRequest,
) -> Result<NoteView, ApiError> {
    let m = &who.membership;
    let mut errors = Vec::new();
    text_field("/body", &req.body, MAX_TEXT, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if let Some(corrected) = &req.corrects {
        let original = state.db.get_note(&case.id, corrected).await?;
        match original {
            Some(n)
                if access::readable_audiences(state, p, case)?.contains(&parse(
                    &n.audience,
                    Audience::parse,
                    "audience",
                )?) =>
            {
                if n.audience != req.audience.as_str() {
                    return Err(ApiError::invalid(
                        "/corrects",
                        "a correction keeps the audience of the note it corrects",
                    ));
                }
            }
            _ => return Err(ApiError::invalid("/corrects", "no such note on this case")),
        }
    }
    let hits = guard(state).scan("body", &req.body);
    if !hits.is_empty() {
        return Err(ApiError::Identifiers(hits));
    }
    let key = case_key(state, case)?;
    let note_id = uuid::Uuid::now_v7().to_string();
    let record = NoteRecord {
        id: note_id.clone(),
        case_id: case.id.clone(),
        author: m.subject.as_str().to_owned(),
        author_role: m.spec.role.as_str().to_owned(),
        author_sphere: m.spec.sphere.map(|s| s.as_str().to_owned()),
        author_organisation: m.spec.organisation.as_ref().map(|o| o.as_str().to_owned()),
        audience: req.audience.as_str().to_owned(),
        corrects: req.corrects.clone(),
        body: seal(&key, &case.cellule, &case.id, &note_id, "body", &req.body)?,
        created_at: state.clock.now(),
    };
    let draft = a
        .entry(Action::WriteNote, record.created_at)
        .case(&case.id, Some(&case.reference))
        .target("note", &note_id);
    let head = state.db.insert_note(&case.cellule, &record, draft).await?;
    audit::written(state, &case.cellule, &head).await;
    note_view(&key, case, record)
}

fn note_view(key: &DataKey, case: &CaseRecord, n: NoteRecord) -> Result<NoteView, ApiError> {
    let body = open(key, ctx(case, &n.id, "body"), &n.body)?;
    Ok(NoteView {
        audience: parse(&n.audience, Audience::parse, "audience")?,
        body: body.as_str().to_owned(),
        id: n.id,
        corrects: n.corrects,
        author: n.author,
        author_role: n.author_role,
        author_organisation: n.author_organisation,
        created_at: n.created_at,
    })
}

/// `GET …/cases/{id}/notes`: the notes of the audiences the caller may read. The case comes
/// with the caller's membership in the one query of the [`CaseReader`] extractor (its history
/// and duplicates unused here), as for a case read.
pub async fn notes(state: &AppState, reader: CaseReader) -> Result<Vec<NoteView>, ApiError> {
    let CaseReader {
        member: who,
        id,
        case: found,
    } = reader;
    let a = who.audit();
    let p = access::principal(&who);
    let found = found.map(|r| r.case);
    let case = authorise(
        state,
        &p,
        &a,
        &id,
        found,
        "view_case",
        Action::ReadNotes,
        None,
    )
    .await?;
    let audiences: Vec<&str> = access::readable_audiences(state, &p, &case)?
        .into_iter()
        .map(Audience::as_str)
        .collect();
    let draft = a
        .entry(Action::ReadNotes, state.clock.now())
        .case(&case.id, Some(&case.reference));
    // As for a case read: prepared while the entry commits, given only once it is committed.
    let notes = async {
        let rows = state.db.list_notes(&case.id, &audiences).await?;
        let key = case_key(state, &case)?;
        rows.into_iter()
            .map(|n| note_view(&key, &case, n))
            .collect::<Result<Vec<_>, ApiError>>()
    };
    let (logged, notes) = tokio::join!(audit::log(state, &a.cellule, vec![draft]), notes);
    logged?;
    notes
}

/// `DELETE …/cases/{id}`: erase on request.
pub async fn erase(state: &AppState, who: &CelluleMember, id: &str) -> Result<String, ApiError> {
    let a = who.audit();
    let p = access::principal(who);
    let case = authorised_case(state, &p, &a, id, "erase_case", Action::EraseCase, None).await?;
    let now = state.clock.now();
    let draft = a.entry(Action::EraseCase, now).case(&case.id, None);
    let (reference, head) = erase_record(
        state.db.as_ref(),
        &case.cellule,
        &case.id,
        who.membership.subject.as_str(),
        "request",
        now,
        draft,
    )
    .await?
    .ok_or(ApiError::NotFound("case"))?;
    audit::written(state, &case.cellule, &head).await;
    Ok(reference)
}

async fn erase_record(
    db: &dyn Database,
    cellule: &str,
    id: &str,
    by: &str,
    reason: &'static str,
    now: DateTime<Utc>,
    draft: audit::Draft,
) -> Result<Option<(String, audit::Head)>, ApiError> {
    let tomb = Tombstone {
        id: uuid::Uuid::new_v4().to_string(),
        erased_by: by.to_owned(),
        reason,
        erased_at: now,
    };
    Ok(db.erase_case(cellule, id, &tomb, draft).await?)
}

/// Erases every case past its cellule's retention: closed cases `retention_closed_months` after
/// closure (24 by default), declined ones `retention_declined_months` after decline (3).
/// Returns the erased references.
pub async fn run_retention(db: &dyn Database, now: DateTime<Utc>) -> Result<Vec<String>, ApiError> {
    let mut erased = Vec::new();
    for settings in db.retention_settings().await? {
        let months = |m: i64| Months::new(u32::try_from(m.max(0)).unwrap_or(0));
        let closed_before = now
            .checked_sub_months(months(settings.retention_closed_months))
            .unwrap_or(now);
        let declined_before = now
            .checked_sub_months(months(settings.retention_declined_months))
            .unwrap_or(now);
        for id in db
            .expired_cases(&settings.slug, closed_before, declined_before)
            .await?
        {
            let draft = AuditCtx {
                cellule: settings.slug.clone(),
                actor: audit::Actor::system("retention"),
                request_id: None,
            }
            .entry(Action::RetentionErase, now)
            .case(&id, None);
            if let Some((reference, _)) = erase_record(
                db,
                &settings.slug,
                &id,
                "retention",
                "retention",
                now,
                draft,
            )
            .await?
            {
                erased.push(reference);
            }
        }
    }
    Ok(erased)
}
