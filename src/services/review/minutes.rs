//! The compte rendu of a session (docs/design.md §10): assembled for one reader from the
//! attendance and the current version of each decision, with only the items the reader may see
//! and only the texts of the audiences they belong to. The coordinator reads it as a draft from
//! the opening of the meeting; the others once the coordinator has approved it. Approval freezes
//! what it is made of (attendance and decisions no longer change), so every later copy says the
//! same for the same reader.

use super::meeting::open_decisions;
use super::*;
use crate::domain::minutes::{
    AttendanceLine, Minutes, MinutesDecision, MinutesItem, MinutesState, MinutesText,
};

/// `GET …/sessions/{sid}/minutes`.
pub async fn minutes(state: &AppState, who: &CelluleMember, sid: &str) -> Result<Minutes, Error> {
    let p = allowed_audited(state, who, "read_agenda", Action::ReadMinutes).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    let stage = s.stage();
    let readable = match stage {
        SessionStage::MinutesApproved => true,
        SessionStage::InSession | SessionStage::Held => p.role == "coordinator",
        _ => false,
    };
    if !readable {
        return Err(Error::Conflict(match stage {
            SessionStage::InSession | SessionStage::Held => {
                "The minutes of this session are not approved yet.".into()
            }
            SessionStage::Cancelled => "This session is cancelled: it has no minutes.".into(),
            _ => "The meeting has not taken place yet: there are no minutes.".into(),
        }));
    }
    let now = state.clock.now();
    let starts_local = DateTime::parse_from_rfc3339(&s.local_start)
        .map_err(|e| Error::Internal(format!("session {} local start: {e}", s.id)))?
        .naive_local();
    let attendance = state
        .db
        .attendance(&s.id)
        .await?
        .into_iter()
        .map(|a| AttendanceLine {
            organisation: a.organisation,
            participant: (!a.participant.is_empty()).then_some(a.participant),
            status: a.status,
        })
        .collect();
    let decisions = state.db.session_decisions(&s.id).await?;
    let mut items = Vec::new();
    let mut shown: Vec<(String, String)> = Vec::new();
    for row in state.db.agenda(&s.id).await? {
        let Some(case) = state
            .db
            .get_case(cellule, &row.case_id, access::agenda_since(now))
            .await?
        else {
            continue;
        };
        if !access::sees(state, &p, &case)? {
            continue;
        }
        let decision = open_decisions(state, &p, &case, &decisions)?
            .into_iter()
            .find(|d| d.current)
            .map(|d| MinutesDecision {
                outcome: d.outcome,
                interlocutor: d.interlocutor,
                follow_up_date: d.follow_up_date,
                actions: d.actions,
                text: d.text.map(|text| MinutesText {
                    audience: d.text_audience,
                    text,
                }),
                version: u32::try_from(d.version).unwrap_or(1),
                decided_by: d.decided_by,
                decided_at: d.decided_at,
            });
        items.push(MinutesItem {
            position: u32::try_from(row.position).unwrap_or(0),
            reference: case.reference.clone(),
            kind: row.kind.as_str().to_owned(),
            decision,
        });
        shown.push((case.id, case.reference));
    }
    let state_of = match (s.minutes_approved_at, &s.minutes_approved_by) {
        (Some(at), Some(by)) => MinutesState::Approved {
            approved_at: at,
            approved_by: by.clone(),
        },
        _ => MinutesState::Draft,
    };
    let cases: Vec<(&str, &str)> = shown
        .iter()
        .map(|(i, r)| (i.as_str(), r.as_str()))
        .collect();
    let drafts = session_entry(&who.audit(), Action::ReadMinutes, now, &s.id, &cases);
    audit_log::record(state, cellule, drafts).await?;
    Ok(Minutes {
        cellule_name: who.cellule.name.as_str().to_owned(),
        session_id: s.id.clone(),
        starts_local,
        time_zone: s.time_zone.clone(),
        duration_minutes: u32::try_from(s.duration_minutes).unwrap_or(0),
        location: s.location.clone(),
        state: state_of,
        generated_at: now,
        reader: reader(&p),
        attendance,
        items,
    })
}

/// Who a copy is for, in French.
fn reader(p: &Principal) -> String {
    let sphere = match p.sphere.as_str() {
        "city" => "sphère ville",
        "psychiatry" => "sphère psychiatrie",
        _ => "",
    };
    let role = match (p.role.as_str(), p.guest) {
        ("coordinator", _) => "Coordination",
        (_, true) => "Organisation invitée",
        _ => "Membre",
    };
    [role, sphere, p.organisation.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" — ")
}
