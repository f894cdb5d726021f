//! Reading cases: a referrer's status view, the case list, one whole case.

use std::collections::HashMap;

use super::*;
use crate::domain::session::Outcome;
use crate::storage::ReferrerDecision;

/// `GET …/referrals`: the caller's own referrals, status view only.
pub async fn my_referrals(
    state: &AppState,
    who: &CelluleMember,
) -> Result<Vec<ReferralStatus>, Error> {
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
    // The latest decision on each case (its message) and the latest review (a deferral is not
    // one: the case was not discussed).
    let (decisions, declines) = tokio::try_join!(
        state
            .db
            .referrer_decisions(m.cellule.as_str(), m.subject.as_str()),
        state
            .db
            .referrer_declines(m.cellule.as_str(), m.subject.as_str())
    )?;
    // A declined referral's message is its decline's (the last one: a case declined once).
    let declined: HashMap<&str, (&str, &[u8])> = declines
        .iter()
        .map(|d| {
            (
                d.case_id.as_str(),
                (d.event_id.as_str(), d.referrer_message.as_slice()),
            )
        })
        .collect();
    let mut latest: HashMap<&str, &ReferrerDecision> = HashMap::new();
    let mut reviewed: HashMap<&str, NaiveDate> = HashMap::new();
    for d in &decisions {
        latest.insert(&d.case_id, d);
        if d.outcome != Outcome::Deferred
            && let Ok(start) = DateTime::parse_from_rfc3339(&d.session_start)
        {
            reviewed.insert(&d.case_id, start.date_naive());
        }
    }
    let directory = if rows.iter().any(|c| c.routed_org.is_some()) {
        Some(
            crate::services::review::directory::export_directory(
                state.db.as_ref(),
                m.cellule.as_str(),
            )
            .await?,
        )
    } else {
        None
    };
    rows.iter()
        .map(|c| {
            let contact = c
                .routed_org
                .as_deref()
                .and_then(|org| directory.as_ref()?.interlocutor_by_id_or_name(org))
                .map(|i| i.contact.clone())
                .filter(|contact| !contact.is_empty());
            let sealed = match declined.get(c.id.as_str()) {
                Some(&(event, blob)) => Some((event, blob)),
                None => latest.get(c.id.as_str()).and_then(|d| {
                    d.referrer_message
                        .as_deref()
                        .map(|blob| (d.decision_id.as_str(), blob))
                }),
            };
            let message = match sealed {
                Some((id, blob)) => {
                    let key = case_key(state, c)?;
                    Some(open(&key, ctx(c, id, "referrer_message"), blob)?.to_string())
                }
                None => None,
            };
            Ok(ReferralStatus {
                id: c.id.clone(),
                reference: c.reference.clone(),
                status: c.status,
                submitted_at: c.submitted_at,
                decided_at: c.decided_at,
                closed_at: c.closed_at,
                updated_at: c.updated_at,
                routed_to: c.routed_org.clone(),
                reviewed_on: reviewed.get(c.id.as_str()).copied(),
                contact,
                message,
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
pub async fn list(state: &AppState, who: &CelluleMember, q: CaseQuery) -> Result<CasePage, Error> {
    let m = &who.membership;
    let a = who.audit();
    let p = access::principal(who);
    access::cellule_action_audited(state, &p, &a, "list_cases", Action::ListCases).await?;
    let (routed_org, or_on_agenda, invited) = access::list_prefilter(&p);
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(Error::invalid("/limit", "must be between 1 and 200"));
    }
    let after = match &q.cursor {
        Some(c) => Some(
            decode_cursor(c)
                .ok_or_else(|| Error::invalid("/cursor", "not a cursor from this API"))?,
        ),
        None => None,
    };
    let day_start = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    let filter = CaseFilter {
        status: q.status,
        urgency: q.urgency,
        need: q.need,
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

/// `GET …/cases/{id}`: the whole case, decrypted, with its history, and for the coordinator its
/// possible duplicates.
pub async fn read(state: &AppState, who: &CelluleMember, id: &str) -> Result<CaseView, Error> {
    let a = who.audit();
    let p = access::principal(who);
    let found = state
        .db
        .get_case(who.slug(), id, access::agenda_since(state.clock.now()))
        .await?;
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
    let duplicates = async {
        match &case.linkage_key {
            Some(key) if access::sees_duplicates(state, &p) => {
                state.db.open_cases_with_linkage(who.slug(), key).await
            }
            _ => Ok(Vec::new()),
        }
    };
    let (history, duplicates) = tokio::try_join!(state.db.case_events(&case.id), duplicates)?;
    let draft = a
        .entry(Action::ReadCase, state.clock.now())
        .case(&case.id, Some(&case.reference));
    // The answer is prepared (fields decrypted) while the entry commits; it is given only once
    // the entry is committed, and not at all if it cannot be. (If preparing it fails, the
    // entry may still be committed: the log may overstate an access, never hide one.)
    let (logged, view) = tokio::join!(audit_log::record(state, &a.cellule, vec![draft]), async {
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
) -> Result<CaseView, Error> {
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
        let referrer_message = e
            .referrer_message
            .as_deref()
            .map(|b| open(&key, ctx(case, &e.id, "referrer_message"), b))
            .transpose()?;
        history.push(CaseEvent {
            from: e.from_status,
            to: e.to_status,
            reason: reason.map(|r| r.as_str().to_owned()),
            referrer_message: referrer_message.map(|m| m.as_str().to_owned()),
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
        consent_status: case.consent_status,
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
