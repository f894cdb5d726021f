//! Moving a case along the lifecycle graph (docs/design.md §4).

use super::*;
use crate::services::notify::{self, ReferralNews};

/// `POST …/cases/{id}/transitions`: one step of the docs/design.md §4 graph, or 409 and no change.
pub async fn transition(
    state: &AppState,
    who: &CelluleMember,
    id: &str,
    req: TransitionRequest,
    lease: Option<&Lease>,
) -> Result<CaseSummary, Error> {
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
    let result = transition_authorised(state, who, &a, &case, req, lease).await;
    refused(state, &a, Action::TransitionCase, &case, result).await
}

async fn transition_authorised(
    state: &AppState,
    who: &CelluleMember,
    a: &AuditCtx,
    case: &CaseRecord,
    req: TransitionRequest,
    lease: Option<&Lease>,
) -> Result<CaseSummary, Error> {
    let m = &who.membership;
    let from = case.status;
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
    if let Some(m) = &req.referrer_message {
        if req.to == CaseStatus::Declined {
            text_field("/referrer_message", m, MAX_SHORT_TEXT, &mut errors);
        } else {
            errors.push(FieldError::new(
                "/referrer_message",
                "a message for the referrer goes only with declined",
            ));
        }
    }
    if req.to == CaseStatus::InFollowUp && req.follow_up_date.is_none() {
        errors.push(FieldError::new(
            "/follow_up_date",
            "required to move to in_follow_up",
        ));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    if !from.can_become(req.to) {
        return Err(Error::InvalidTransition(format!(
            "A case cannot go from {} to {}.",
            from.as_str(),
            req.to.as_str()
        )));
    }
    if let Some(org) = &req.routed_org
        && !cellules::is_known_organisation(state, who, org).await?
    {
        return Err(Error::invalid(
            "/routed_org",
            "not an organisation of this cellule: name one of the routing directory or of a member",
        ));
    }
    let mut texts = Vec::new();
    if let Some(r) = &req.reason {
        texts.push(("reason", r.as_str()));
    }
    if let Some(m) = &req.referrer_message {
        texts.push(("referrer_message", m.as_str()));
    }
    if !texts.is_empty() {
        guard::check(state, who, &texts, None).await?;
    }
    let key = case_key(state, case)?;
    let event_id = uuid::Uuid::now_v7().to_string();
    let reason = req
        .reason
        .as_deref()
        .map(|r| seal(&key, &case.cellule, &case.id, &event_id, "reason", r))
        .transpose()?;
    let referrer_message = req
        .referrer_message
        .as_deref()
        .map(|m| {
            seal(
                &key,
                &case.cellule,
                &case.id,
                &event_id,
                "referrer_message",
                m,
            )
        })
        .transpose()?;
    let mut draft = a
        .entry(Action::TransitionCase, state.clock.now())
        .case(&case.id, Some(&case.reference))
        .target("event", &event_id);
    let news = match req.to {
        CaseStatus::Accepted if from == CaseStatus::Submitted => Some(ReferralNews::Accepted),
        CaseStatus::Declined => Some(ReferralNews::Declined),
        _ => None,
    };
    if let Some(news) = news {
        let name = who.cellule.name.as_str();
        let now = state.clock.now();
        draft = draft.notify(notify::referral_notice(state, name, case, news, now).await?);
    }
    let t = Transition {
        event_id,
        case_id: case.id.clone(),
        cellule: case.cellule.clone(),
        from,
        to: req.to,
        reason,
        referrer_message,
        follow_up_date: req.follow_up_date,
        routed_org: req.routed_org.map(|o| o.as_str().to_owned()),
        actor: m.subject.as_str().to_owned(),
        at: state.clock.now(),
    };
    // With a key, the answer is the case as the transaction leaves it (the columns its update
    // sets), written with it.
    let after = lease
        .map(|l| {
            let view = summary(&after_transition(case, &t))?;
            Ok::<_, Error>((l.answer(&view, &[], Some(&case.id))?, view))
        })
        .transpose()?;
    let answer = after.as_ref().map(|(answer, _)| answer);
    let Some(head) = state.db.transition_case_answered(&t, draft, answer).await? else {
        return Err(Error::InvalidTransition(
            "The case changed meanwhile; reload it and try again.".into(),
        ));
    };
    audit_log::committed(state, &case.cellule, &head).await;
    if let Some((_, view)) = after {
        return Ok(view);
    }
    let updated = state
        .db
        .get_case(
            &case.cellule,
            &case.id,
            access::agenda_since(state.clock.now()),
        )
        .await?
        .ok_or(Error::NotFound("case"))?;
    summary(&updated)
}

/// The case as `t` leaves it: what `Tx::move_case` sets (status, update time, follow-up date and
/// interlocutor when given, decision or closing time).
fn after_transition(case: &CaseRecord, t: &Transition) -> CaseRecord {
    let mut after = case.clone();
    after.status = t.to;
    after.updated_at = t.at;
    if t.follow_up_date.is_some() {
        after.follow_up_date = t.follow_up_date;
    }
    if t.routed_org.is_some() {
        after.routed_org.clone_from(&t.routed_org);
    }
    after
}
