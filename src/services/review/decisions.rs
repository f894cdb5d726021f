//! Decisions on the items of a published agenda: the case's next step and its interlocutor.

use super::*;
pub use crate::domain::session::Outcome;

/// The longest message a decision leaves for the referrer.
const MAX_REFERRER_MESSAGE: usize = 500;

/// Body of `POST …/items/{case_id}/decision`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    pub outcome: Outcome,
    /// Directory id or organisation name; required for `routed`.
    #[serde(default)]
    pub interlocutor: Option<String>,
    /// What each party does; encrypted.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Required for `routed` and `follow_up`.
    #[serde(default)]
    pub follow_up_date: Option<NaiveDate>,
    /// Encrypted; required for `closed` (the closing reason).
    #[serde(default)]
    pub text: Option<String>,
    /// A short message for the referrer (what happens next), at most 500 characters; encrypted,
    /// scanned for identifiers, shown in the referrer's status view instead of the internal
    /// reasons.
    #[serde(default)]
    pub referrer_message: Option<String>,
}

/// A recorded decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionView {
    pub id: String,
    pub case_id: String,
    pub reference: String,
    pub outcome: Outcome,
    pub interlocutor: Option<String>,
    pub follow_up_date: Option<NaiveDate>,
    /// The case's status after the decision.
    pub status: CaseStatus,
    pub decided_at: DateTime<Utc>,
}

/// `POST …/sessions/{sid}/items/{case_id}/decision`.
pub async fn decide(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
    case_id: &str,
    req: DecisionRequest,
    lease: Option<&Lease>,
) -> Result<DecisionView, Error> {
    allowed_audited(state, who, "record_decision", Action::RecordDecision).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    let rows = state.db.agenda(&s.id).await?;
    let now = state.clock.now();
    let a = who.audit();
    // The item is named by its case's id or its reference.
    let Some(item) = rows
        .iter()
        .find(|r| r.case_id == case_id || r.reference == case_id)
    else {
        // Recorded like any request about a case that is not there.
        let mut draft = a
            .entry(Action::RecordDecision, now)
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
    let result = decide_on(state, who, &s, item, &case, req, lease).await;
    if let Err(e) = &result
        && let Some(reason) = audit_log::refusal_reason(e)
    {
        let draft = a
            .entry(Action::RecordDecision, now)
            .case(&case.id, Some(&case.reference))
            .target("session", &s.id)
            .denied(reason);
        audit_log::record(state, cellule, vec![draft]).await?;
    }
    result
}

async fn decide_on(
    state: &AppState,
    who: &CelluleMember,
    s: &SessionRecord,
    item: &AgendaItemRecord,
    case: &CaseRecord,
    req: DecisionRequest,
    lease: Option<&Lease>,
) -> Result<DecisionView, Error> {
    let cellule = slug(who);
    if s.published_at.is_none() {
        return Err(Error::Conflict(
            "Publish the agenda before recording decisions.".into(),
        ));
    }
    if item.decision_outcome.is_some() {
        return Err(Error::Conflict("This item is already decided.".into()));
    }
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
        } else if d <= state.clock.now().date_naive() {
            errors.push(FieldError::new("/follow_up_date", "must be in the future"));
        }
    }
    // An interlocutor is one of the routing directory (by id or name) or the organisation of a
    // membership of the cellule, never a free string: a typo would send the case nowhere and
    // show the referrer a name that exists nowhere.
    let dir = load_directory(state, cellule).await?;
    let interlocutor = match &req.interlocutor {
        Some(name) => match dir.interlocutor_by_id_or_name(name.trim()) {
            Some(i) => Some(i.name.clone()),
            None => {
                let members = state.db.list_members(&who.cellule.slug).await?;
                let known = members.iter().find_map(|m| {
                    m.spec
                        .organisation
                        .as_ref()
                        .filter(|o| o.as_str() == name.trim())
                });
                match known {
                    Some(o) => Some(o.as_str().to_owned()),
                    None => {
                        errors.push(FieldError::new(
                            "/interlocutor",
                            "not in the routing directory nor the organisation of a member of the cellule",
                        ));
                        None
                    }
                }
            }
        },
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
        _ => {}
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
    if req.actions.len() > 20
        || req
            .actions
            .iter()
            .any(|x| x.trim().is_empty() || x.chars().count() > 500)
    {
        errors.push(FieldError::new(
            "/actions",
            "at most 20 actions of 1 to 500 characters",
        ));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let action_fields: Vec<String> = (0..req.actions.len())
        .map(|i| format!("actions.{i}"))
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
            .zip(req.actions.iter().map(String::as_str)),
    );
    crate::services::guard::check(state, who, &texts, None).await?;
    if case.status != CaseStatus::Scheduled {
        return Err(Error::InvalidTransition(format!(
            "The case is {}, not scheduled.",
            case.status
        )));
    }
    let key = state
        .keys
        .open_case_key(&case.cellule, &case.id, &case.key_wrapped)
        .map_err(|_| Error::Integrity(format!("cellule={cellule} case={} data key", case.id)))?;
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
    let actions = if req.actions.is_empty() {
        None
    } else {
        let json =
            serde_json::to_string(&req.actions).map_err(|e| Error::Internal(e.to_string()))?;
        Some(seal(&decision_id, "actions", &json)?)
    };
    let now = state.clock.now();
    let to = match req.outcome {
        Outcome::Routed | Outcome::FollowUp => CaseStatus::InFollowUp,
        Outcome::Closed => CaseStatus::Closed,
        Outcome::Deferred => {
            if item.kind == Kind::FollowUp {
                CaseStatus::InFollowUp
            } else {
                CaseStatus::Accepted
            }
        }
    };
    let mut t = transition(
        &case.id,
        cellule,
        CaseStatus::Scheduled,
        to,
        who.membership.subject.as_str(),
        now,
    );
    t.follow_up_date = req.follow_up_date;
    // Only routing assigns an interlocutor (and so opens its members' access, docs/design.md §7).
    if req.outcome == Outcome::Routed {
        t.routed_org = interlocutor.clone();
    }
    if req.outcome == Outcome::Closed
        && let Some(text) = &req.text
    {
        t.reason = Some(seal(&t.event_id, "reason", text)?);
    }
    let record = DecisionRecord {
        id: decision_id.clone(),
        session_id: s.id.clone(),
        case_id: case.id.clone(),
        outcome: req.outcome,
        interlocutor: interlocutor.clone(),
        follow_up_date: req.follow_up_date,
        actions,
        text,
        referrer_message,
        decided_by: who.membership.subject.as_str().to_owned(),
        decided_at: now,
    };
    let draft = who
        .audit()
        .entry(Action::RecordDecision, now)
        .case(&case.id, Some(&case.reference))
        .target("decision", &decision_id);
    let view = DecisionView {
        id: decision_id,
        case_id: case.id.clone(),
        reference: case.reference.clone(),
        outcome: req.outcome,
        interlocutor,
        follow_up_date: req.follow_up_date,
        status: to,
        decided_at: now,
    };
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
