//! Decisions on the items of a session's agenda: the case's next step, its interlocutor, the
//! actions with their owners and due dates. Recorded while the meeting is open (or held, until
//! the minutes are approved) and corrected there as new versions: the old one stays, like a
//! corrected note.

use super::*;
use crate::domain::case::Audience;
use crate::domain::session::DecidedAction;
pub use crate::domain::session::Outcome;
use crate::services::cellules::KnownOrganisations;

/// The longest message a decision leaves for the referrer.
const MAX_REFERRER_MESSAGE: usize = 500;
/// Most actions one decision names.
const MAX_ACTIONS: usize = 20;

/// Body of `POST` (record) and `PUT` (correct) `…/items/{case_id}/decision`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    pub outcome: Outcome,
    /// Directory id or name, or the organisation of a membership; required for `routed`.
    #[serde(default)]
    pub interlocutor: Option<String>,
    /// What each party does, by when; the text is encrypted, the owner (a directory
    /// interlocutor or a membership's organisation) and the due date feed the follow-up list.
    #[serde(default)]
    pub actions: Vec<DecidedAction>,
    /// Required for `routed` and `follow_up`.
    #[serde(default)]
    pub follow_up_date: Option<NaiveDate>,
    /// Encrypted; required for `closed` (the closing reason).
    #[serde(default)]
    pub text: Option<String>,
    /// Who may read `text`, as for a note (default `cellule`: every participant who sees the
    /// case); a closing reason reaches the case history only with `cellule`.
    #[serde(default)]
    pub text_audience: Option<Audience>,
    /// A short message for the referrer (what happens next), at most 500 characters; encrypted,
    /// scanned for identifiers, shown in the referrer's status view instead of the internal
    /// reasons.
    #[serde(default)]
    pub referrer_message: Option<String>,
}

/// A recorded decision (the answer of a record or a correction).
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionView {
    pub id: String,
    pub case_id: String,
    pub reference: String,
    /// 1, then one more per correction.
    pub version: i32,
    pub outcome: Outcome,
    pub interlocutor: Option<String>,
    pub follow_up_date: Option<NaiveDate>,
    /// The case's status after the decision.
    pub status: CaseStatus,
    pub decided_at: DateTime<Utc>,
}

/// `POST …/sessions/{sid}/items/{case_id}/decision`: the item's first decision.
pub async fn decide(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
    case_id: &str,
    req: DecisionRequest,
    lease: Option<&Lease>,
) -> Result<DecisionView, Error> {
    let action = Action::RecordDecision;
    let (s, item, case) = find_item(state, who, sid, case_id, action).await?;
    let result = record(state, who, &s, &item, &case, req, lease).await;
    audit_refusal(state, who, action, &s, &case, result).await
}

/// `PUT …/sessions/{sid}/items/{case_id}/decision`: a correction, as a new version.
pub async fn correct(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
    case_id: &str,
    req: DecisionRequest,
    lease: Option<&Lease>,
) -> Result<DecisionView, Error> {
    let action = Action::CorrectDecision;
    let (s, item, case) = find_item(state, who, sid, case_id, action).await?;
    let result = record_correction(state, who, &s, &item, &case, req, lease).await;
    audit_refusal(state, who, action, &s, &case, result).await
}

/// The agenda item named by its case's id or reference, with its session and case; a refusal
/// is audited.
async fn find_item(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
    case_id: &str,
    action: Action,
) -> Result<(SessionRecord, AgendaItemRecord, CaseRecord), Error> {
    allowed_audited(state, who, "record_decision", action).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    let rows = state.db.agenda(&s.id).await?;
    let now = state.clock.now();
    let Some(item) = rows
        .into_iter()
        .find(|r| r.case_id == case_id || r.reference == case_id)
    else {
        // Recorded like any request about a case that is not there.
        let mut draft = who
            .audit()
            .entry(action, now)
            .target("session", &s.id)
            .denied(audit::reason::NOT_FOUND);
        if let Ok(id) = uuid::Uuid::parse_str(case_id) {
            draft = draft.case(&id.to_string(), None);
        }
        audit_log::record_denial(state, cellule, draft).await?;
        return Err(Error::NotFound("agenda item"));
    };
    let case = state
        .db
        .get_case(cellule, &item.case_id, access::agenda_since(now))
        .await?
        .ok_or(Error::NotFound("agenda item"))?;
    Ok((s, item, case))
}

/// Records a refused decision (409, 422) on its case before answering it.
async fn audit_refusal(
    state: &AppState,
    who: &CelluleMember,
    action: Action,
    s: &SessionRecord,
    case: &CaseRecord,
    result: Result<DecisionView, Error>,
) -> Result<DecisionView, Error> {
    if let Err(e) = &result
        && let Some(reason) = audit_log::refusal_reason(e)
    {
        let draft = who
            .audit()
            .entry(action, state.clock.now())
            .case(&case.id, Some(&case.reference))
            .target("session", &s.id)
            .denied(reason);
        audit_log::record(state, slug(who), vec![draft]).await?;
    }
    result
}

/// Refuses a decision outside the meeting: before it is opened, after the minutes' approval.
fn meeting_takes_decisions(s: &SessionRecord) -> Result<(), Error> {
    let stage = s.stage();
    if stage.takes_decisions() {
        return Ok(());
    }
    Err(Error::Conflict(match stage {
        SessionStage::Planned | SessionStage::Published => {
            "The meeting is not open: open it (POST …/sessions/{sid}/open) on the day to record decisions.".into()
        }
        SessionStage::MinutesApproved => {
            "The minutes of this session are approved: its decisions no longer change.".into()
        }
        _ => "This session is cancelled.".into(),
    }))
}

/// A request checked against the directory, the memberships and the guard.
struct Checked {
    interlocutor: Option<String>,
    audience: Audience,
    actions: Vec<DecidedAction>,
}

async fn check(
    state: &AppState,
    who: &CelluleMember,
    req: &DecisionRequest,
) -> Result<Checked, Error> {
    let today = state.clock.now().date_naive();
    let mut errors = Vec::new();
    let needs_date = matches!(req.outcome, Outcome::Routed | Outcome::FollowUp);
    if needs_date && req.follow_up_date.is_none() {
        errors.push(FieldError::new(
            "/follow_up_date",
            "required for routed and follow_up",
        ));
    }
    if let Some(d) = req.follow_up_date {
        if !needs_date {
            errors.push(FieldError::new(
                "/follow_up_date",
                "only routed and follow_up decisions take a follow-up date",
            ));
        } else if d <= today {
            errors.push(FieldError::new("/follow_up_date", "must be in the future"));
        }
    }
    let organisations = KnownOrganisations::load(state, who).await?;
    let interlocutor = match &req.interlocutor {
        Some(name) => {
            let known = organisations.resolve(name);
            if known.is_none() {
                errors.push(FieldError::new(
                    "/interlocutor",
                    "not in the routing directory nor the organisation of a member of the cellule",
                ));
            }
            known
        }
        None => None,
    };
    match (req.outcome, &req.interlocutor) {
        (Outcome::Routed, None) => {
            errors.push(FieldError::new("/interlocutor", "required for routed"))
        }
        (Outcome::FollowUp | Outcome::Closed | Outcome::Deferred, Some(_)) => {
            errors.push(FieldError::new(
                "/interlocutor",
                "only a routed decision names an interlocutor",
            ))
        }
        _ => {}
    }
    match &req.text {
        Some(t) if t.trim().is_empty() => {
            errors.push(FieldError::new("/text", "must not be empty"))
        }
        Some(t) if t.chars().count() > MAX_DECISION_TEXT => errors.push(FieldError::new(
            "/text",
            format!("must be at most {MAX_DECISION_TEXT} characters"),
        )),
        None if req.outcome == Outcome::Closed => errors.push(FieldError::new(
            "/text",
            "the reason for closing is required",
        )),
        None if req.text_audience.is_some() => errors.push(FieldError::new(
            "/text_audience",
            "only a decision with a text names its audience",
        )),
        _ => {}
    }
    let audience = req.text_audience.unwrap_or(Audience::Cellule);
    if req.text.is_some() && audience != Audience::Cellule {
        // The coordinator writes only in the audiences they may read, as for notes.
        let p = access::principal(who);
        let readable = audience == Audience::City && p.sphere == "city"
            || audience == Audience::Psychiatry && p.sphere == "psychiatry";
        if !readable {
            errors.push(FieldError::new(
                "/text_audience",
                "you may write only for the cellule or your own sphere",
            ));
        }
    }
    match &req.referrer_message {
        Some(t) if t.trim().is_empty() => {
            errors.push(FieldError::new("/referrer_message", "must not be empty"))
        }
        Some(t) if t.chars().count() > MAX_REFERRER_MESSAGE => errors.push(FieldError::new(
            "/referrer_message",
            format!("must be at most {MAX_REFERRER_MESSAGE} characters"),
        )),
        _ => {}
    }
    if req.actions.len() > MAX_ACTIONS {
        errors.push(FieldError::new(
            "/actions",
            format!("at most {MAX_ACTIONS} actions"),
        ));
    }
    let mut actions = Vec::with_capacity(req.actions.len());
    for (i, x) in req.actions.iter().enumerate() {
        let n = x.what.trim().chars().count();
        if n == 0 || n > 500 {
            errors.push(FieldError::new(
                format!("/actions/{i}/what"),
                "1 to 500 characters",
            ));
        }
        if x.due < today {
            errors.push(FieldError::new(
                format!("/actions/{i}/due"),
                "must not be in the past",
            ));
        }
        match organisations.resolve(&x.owner) {
            Some(owner) => actions.push(DecidedAction {
                what: x.what.trim().to_owned(),
                owner,
                due: x.due,
            }),
            None => errors.push(FieldError::new(
                format!("/actions/{i}/owner"),
                "not in the routing directory nor the organisation of a member of the cellule",
            )),
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let action_fields: Vec<String> = (0..actions.len())
        .map(|i| format!("actions.{i}.what"))
        .collect();
    let mut texts: Vec<(&str, &str)> = req.text.iter().map(|t| ("text", t.as_str())).collect();
    texts.extend(
        req.referrer_message
            .iter()
            .map(|t| ("referrer_message", t.as_str())),
    );
    texts.extend(
        action_fields
            .iter()
            .map(String::as_str)
            .zip(actions.iter().map(|x| x.what.as_str())),
    );
    crate::services::guard::check(state, who, &texts, None).await?;
    Ok(Checked {
        interlocutor,
        audience,
        actions,
    })
}

/// Where a decision leaves the case.
fn status_after(outcome: Outcome, kind: Kind) -> CaseStatus {
    match outcome {
        Outcome::Routed | Outcome::FollowUp => CaseStatus::InFollowUp,
        Outcome::Closed => CaseStatus::Closed,
        Outcome::Deferred if kind == Kind::FollowUp => CaseStatus::InFollowUp,
        Outcome::Deferred => CaseStatus::Accepted,
    }
}

/// The decision record of `req` for `case` (sealed with the case key), and the closing reason
/// for the case history when the text may go there.
fn sealed(
    state: &AppState,
    who: &CelluleMember,
    s: &SessionRecord,
    case: &CaseRecord,
    req: &DecisionRequest,
    checked: Checked,
    event_id: &str,
) -> Result<(DecisionRecord, Option<Vec<u8>>), Error> {
    let key = crate::services::cases::case_key(state, case)?;
    let decision_id = uuid::Uuid::new_v4().to_string();
    let seal = |record: &str, field: &str, text: &str| {
        key.seal(
            &FieldContext {
                cellule: &case.cellule,
                case_id: &case.id,
                record_id: record,
                field,
            },
            text,
        )
        .map_err(|e| Error::Internal(format!("encryption failed: {e}")))
    };
    let text = req
        .text
        .as_deref()
        .map(|t| seal(&decision_id, "text", t))
        .transpose()?;
    let referrer_message = req
        .referrer_message
        .as_deref()
        .map(|t| seal(&decision_id, "referrer_message", t.trim()))
        .transpose()?;
    let actions = if checked.actions.is_empty() {
        None
    } else {
        let json =
            serde_json::to_string(&checked.actions).map_err(|e| Error::Internal(e.to_string()))?;
        Some(seal(&decision_id, "actions", &json)?)
    };
    let reason = match (&req.text, req.outcome, checked.audience) {
        (Some(t), Outcome::Closed, Audience::Cellule) => Some(seal(event_id, "reason", t)?),
        _ => None,
    };
    let record = DecisionRecord {
        id: decision_id,
        session_id: s.id.clone(),
        case_id: case.id.clone(),
        outcome: req.outcome,
        interlocutor: checked.interlocutor,
        follow_up_date: req.follow_up_date,
        actions,
        text,
        referrer_message,
        decided_by: who.membership.subject.as_str().to_owned(),
        decided_at: state.clock.now(),
        version: 1,
        text_audience: checked.audience,
        prior_routed_org: case.routed_org.clone(),
        prior_follow_up_date: case.follow_up_date,
        action_dues: checked
            .actions
            .iter()
            .map(|x| (x.owner.clone(), x.due))
            .collect(),
    };
    Ok((record, reason))
}

fn view(d: &DecisionRecord, case: &CaseRecord, status: CaseStatus) -> DecisionView {
    DecisionView {
        id: d.id.clone(),
        case_id: case.id.clone(),
        reference: case.reference.clone(),
        version: d.version,
        outcome: d.outcome,
        interlocutor: d.interlocutor.clone(),
        follow_up_date: d.follow_up_date,
        status,
        decided_at: d.decided_at,
    }
}

async fn record(
    state: &AppState,
    who: &CelluleMember,
    s: &SessionRecord,
    item: &AgendaItemRecord,
    case: &CaseRecord,
    req: DecisionRequest,
    lease: Option<&Lease>,
) -> Result<DecisionView, Error> {
    let cellule = slug(who);
    meeting_takes_decisions(s)?;
    if item.decision_outcome.is_some() {
        return Err(Error::Conflict(
            "This item is already decided: correct it with PUT on the same path.".into(),
        ));
    }
    let checked = check(state, who, &req).await?;
    if case.status != CaseStatus::Scheduled {
        return Err(Error::InvalidTransition(format!(
            "The case is {}, not scheduled.",
            case.status
        )));
    }
    let now = state.clock.now();
    let to = status_after(req.outcome, item.kind);
    let mut t = transition(
        &case.id,
        cellule,
        CaseStatus::Scheduled,
        to,
        who.membership.subject.as_str(),
        now,
    );
    let (record, reason) = sealed(state, who, s, case, &req, checked, &t.event_id)?;
    t.follow_up_date = req.follow_up_date;
    // Only routing assigns an interlocutor (and so opens its members' access, docs/design.md §7).
    if req.outcome == Outcome::Routed {
        t.routed_org = record.interlocutor.clone();
    }
    t.reason = reason;
    let mut draft = who
        .audit()
        .entry(Action::RecordDecision, now)
        .case(&case.id, Some(&case.reference))
        .target("decision", &record.id);
    // A deferral is not a review: the referrer hears when the case is actually decided.
    if req.outcome != Outcome::Deferred {
        let news = notify::ReferralNews::Reviewed;
        draft = draft.notify(
            notify::referral_notice(state, who.cellule.name.as_str(), case, news, now).await?,
        );
    }
    let view = view(&record, case, to);
    let answer = lease
        .map(|l| l.answer(&view, &[], Some(&case.id)))
        .transpose()?;
    let head = state
        .db
        .record_decision_answered(&record, &t, draft, answer.as_ref())
        .await?
        .ok_or_else(|| Error::InvalidTransition("The case changed meanwhile; reload it.".into()))?;
    audit_log::committed(state, cellule, &head).await;
    Ok(view)
}

async fn record_correction(
    state: &AppState,
    who: &CelluleMember,
    s: &SessionRecord,
    item: &AgendaItemRecord,
    case: &CaseRecord,
    req: DecisionRequest,
    lease: Option<&Lease>,
) -> Result<DecisionView, Error> {
    let cellule = slug(who);
    meeting_takes_decisions(s)?;
    let versions = state.db.session_decisions(&s.id).await?;
    let Some(previous) = versions
        .into_iter()
        .filter(|d| d.case_id == case.id)
        .max_by_key(|d| d.version)
    else {
        return Err(Error::Conflict(
            "This item has no decision to correct: record it with POST on the same path.".into(),
        ));
    };
    let checked = check(state, who, &req).await?;
    let from = status_after(previous.outcome, item.kind);
    if case.status != from {
        return Err(Error::InvalidTransition(format!(
            "The case is {} since this decision, not {from}: it moved on.",
            case.status
        )));
    }
    let now = state.clock.now();
    let to = status_after(req.outcome, item.kind);
    let mut t = transition(
        &case.id,
        cellule,
        from,
        to,
        who.membership.subject.as_str(),
        now,
    );
    let (mut record, reason) = sealed(state, who, s, case, &req, checked, &t.event_id)?;
    record.version = previous.version + 1;
    record.prior_routed_org = previous.prior_routed_org.clone();
    record.prior_follow_up_date = previous.prior_follow_up_date;
    // The case's routing and follow-up date are what the corrected decision gives, from what
    // they were before the first version.
    t.routed_org = if req.outcome == Outcome::Routed {
        record.interlocutor.clone()
    } else {
        previous.prior_routed_org.clone()
    };
    t.follow_up_date = req.follow_up_date.or(previous.prior_follow_up_date);
    t.reason = reason;
    let draft = who
        .audit()
        .entry(Action::CorrectDecision, now)
        .case(&case.id, Some(&case.reference))
        .target("decision", &record.id)
        .detail(&serde_json::json!({
            "corrects": previous.id,
            "version": record.version,
        }));
    let view = view(&record, case, to);
    let answer = lease
        .map(|l| l.answer(&view, &[], Some(&case.id)))
        .transpose()?;
    let head = state
        .db
        .correct_decision(&record, &previous, &t, draft, answer.as_ref())
        .await?
        .ok_or_else(|| {
            Error::Conflict(
                "The decision or the meeting changed meanwhile (another correction, the minutes approved): reload it.".into(),
            )
        })?;
    audit_log::committed(state, cellule, &head).await;
    Ok(view)
}
