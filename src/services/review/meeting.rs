//! The meeting itself (docs/design.md §10): the coordinator opens it on the day, records who
//! attended, closes it, then approves its minutes; decisions are read by whoever may see their
//! case, with the texts of the audiences the reader belongs to; what falls due is listed for the
//! coordinator (everything) and for each organisation (its own).

use super::sessions::SessionView;
use super::*;
use crate::domain::case::Audience;
use crate::domain::session::{AttendanceStatus, DecidedAction, Outcome};
use crate::storage::{AttendanceRecord, DueRecord, MeetingStep};

/// Most lines an attendance list holds.
const MAX_ATTENDANCE: usize = 300;
/// How far ahead the follow-up list looks by default, in days.
const DUE_HORIZON_DAYS: i64 = 31;

/// `POST …/sessions/{sid}/open`, `…/close`, `…/minutes/approve`.
pub async fn step(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
    step: MeetingStep,
) -> Result<SessionView, Error> {
    let action = match step {
        MeetingStep::Open => Action::OpenMeeting,
        MeetingStep::Close => Action::CloseMeeting,
        MeetingStep::ApproveMinutes => Action::ApproveMinutes,
    };
    allowed_audited(state, who, "manage_sessions", action).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    let now = state.clock.now();
    let stage = s.stage();
    let expected = match step {
        MeetingStep::Open => SessionStage::Published,
        MeetingStep::Close => SessionStage::InSession,
        MeetingStep::ApproveMinutes => SessionStage::Held,
    };
    if stage != expected {
        return Err(Error::Conflict(format!(
            "The session is {stage}; this step needs it {expected}."
        )));
    }
    if step == MeetingStep::Open {
        let tz: chrono_tz::Tz = s
            .time_zone
            .parse()
            .map_err(|_| Error::Internal(format!("session {} time zone", s.id)))?;
        let day = s.starts_at.with_timezone(&tz).date_naive();
        if now.with_timezone(&tz).date_naive() < day {
            return Err(Error::Conflict(format!(
                "The meeting opens on its day ({day}), not before."
            )));
        }
    }
    let by = who.membership.subject.as_str();
    let mut draft = who.audit().entry(action, now).target("session", &s.id);
    if step == MeetingStep::ApproveMinutes {
        let rows = state.db.agenda(&s.id).await?;
        let ctx = notify::SessionContext {
            cellule,
            cellule_name: who.cellule.name.as_str(),
            session: &s,
            now,
        };
        draft = draft.notify(notify::minutes_notices(state, &ctx, &rows).await?);
    }
    let head = state
        .db
        .meeting_step(cellule, &s.id, step, by, now, draft)
        .await?
        .ok_or_else(|| Error::Conflict("The session changed meanwhile; reload it.".into()))?;
    audit_log::committed(state, cellule, &head).await;
    let s = session(state, cellule, sid).await?;
    Ok(SessionView::from(&s))
}

/// One line of `PUT …/sessions/{sid}/attendance`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttendanceEntry {
    /// A membership's subject; its organisation is the membership's.
    #[serde(default)]
    pub participant: Option<String>,
    /// Required without a participant: a directory interlocutor (id or name) or a
    /// membership's organisation, attending as a whole.
    #[serde(default)]
    pub organisation: Option<String>,
    pub status: AttendanceStatus,
}

/// Body of `PUT …/sessions/{sid}/attendance`: the whole list, replacing the previous one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttendanceRequest {
    pub entries: Vec<AttendanceEntry>,
}

/// One line of a session's attendance.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttendanceLineView {
    pub organisation: String,
    pub participant: Option<String>,
    pub status: AttendanceStatus,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
}

impl From<AttendanceRecord> for AttendanceLineView {
    fn from(r: AttendanceRecord) -> Self {
        AttendanceLineView {
            organisation: r.organisation,
            participant: (!r.participant.is_empty()).then_some(r.participant),
            status: r.status,
            recorded_by: r.recorded_by,
            recorded_at: r.recorded_at,
        }
    }
}

/// `GET …/sessions/{sid}/attendance` (coordinator, members).
pub async fn attendance(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
) -> Result<Vec<AttendanceLineView>, Error> {
    allowed(state, who, "read_sessions").await?;
    let s = session(state, slug(who), sid).await?;
    Ok(state
        .db
        .attendance(&s.id)
        .await?
        .into_iter()
        .map(AttendanceLineView::from)
        .collect())
}

/// `PUT …/sessions/{sid}/attendance`: from publication until the minutes are approved.
pub async fn record_attendance(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
    req: AttendanceRequest,
) -> Result<Vec<AttendanceLineView>, Error> {
    allowed_audited(state, who, "manage_sessions", Action::RecordAttendance).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    if !s.stage().amendable() {
        return Err(Error::Conflict(format!(
            "The session is {}: attendance is recorded from publication until the minutes are approved.",
            s.stage()
        )));
    }
    if req.entries.len() > MAX_ATTENDANCE {
        return Err(Error::invalid(
            "/entries",
            format!("at most {MAX_ATTENDANCE} lines"),
        ));
    }
    let members = state.db.list_members(&who.cellule.slug).await?;
    let organisations = crate::services::cellules::KnownOrganisations::load(state, who).await?;
    let now = state.clock.now();
    let by = who.membership.subject.as_str();
    let mut errors = Vec::new();
    let mut lines: Vec<AttendanceRecord> = Vec::with_capacity(req.entries.len());
    for (i, e) in req.entries.iter().enumerate() {
        let at = |f: &str| format!("/entries/{i}/{f}");
        let line = match (&e.participant, &e.organisation) {
            (Some(p), given) => match members.iter().find(|m| m.subject.as_str() == p.trim()) {
                Some(m) => {
                    let org = m
                        .spec
                        .organisation
                        .as_ref()
                        .map(|o| o.as_str().to_owned())
                        .unwrap_or_default();
                    if given.as_deref().is_some_and(|g| g.trim() != org) {
                        errors.push(FieldError::new(
                            at("organisation"),
                            "not this participant's organisation",
                        ));
                    }
                    Some((org, m.subject.as_str().to_owned()))
                }
                None => {
                    errors.push(FieldError::new(
                        at("participant"),
                        "not a member of the cellule",
                    ));
                    None
                }
            },
            (None, Some(o)) => match organisations.resolve(o) {
                Some(org) => Some((org, String::new())),
                None => {
                    errors.push(FieldError::new(
                        at("organisation"),
                        "not in the routing directory nor the organisation of a member of the cellule",
                    ));
                    None
                }
            },
            (None, None) => {
                errors.push(FieldError::new(
                    at("participant"),
                    "a participant or an organisation is required",
                ));
                None
            }
        };
        if let Some((organisation, participant)) = line {
            if lines
                .iter()
                .any(|l| l.organisation == organisation && l.participant == participant)
            {
                errors.push(FieldError::new(at("participant"), "listed twice"));
                continue;
            }
            lines.push(AttendanceRecord {
                organisation,
                participant,
                status: e.status,
                recorded_by: by.to_owned(),
                recorded_at: now,
            });
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let draft = who
        .audit()
        .entry(Action::RecordAttendance, now)
        .target("session", &s.id)
        .detail(&serde_json::json!({ "lines": lines.len() }));
    let head = state
        .db
        .replace_attendance(cellule, &s.id, &lines, draft)
        .await?
        .ok_or_else(|| {
            Error::Conflict(
                "The session changed meanwhile (minutes approved, cancelled): reload it.".into(),
            )
        })?;
    audit_log::committed(state, cellule, &head).await;
    attendance(state, who, sid).await
}

/// A decision version as its readers see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionRecordView {
    pub id: String,
    pub session_id: String,
    pub case_id: String,
    pub reference: String,
    pub version: i32,
    /// The version in force (the latest).
    pub current: bool,
    pub outcome: Outcome,
    pub interlocutor: Option<String>,
    pub follow_up_date: Option<NaiveDate>,
    pub actions: Vec<DecidedAction>,
    /// Present when the reader belongs to `text_audience`.
    pub text: Option<String>,
    pub text_audience: Audience,
    /// The message shown to the referrer (coordinator only).
    pub referrer_message: Option<String>,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
}

/// The decision versions of `case` opened for `p`: texts only of the audiences `p` reads, the
/// referrer's message only for the coordinator.
pub(super) fn open_decisions(
    state: &AppState,
    p: &Principal,
    case: &CaseRecord,
    decisions: &[DecisionRecord],
) -> Result<Vec<DecisionRecordView>, Error> {
    let key = crate::services::cases::case_key(state, case)?;
    let audiences = access::readable_audiences(state, p, case)?;
    let open = |d: &DecisionRecord, field: &str, blob: &[u8]| {
        key.open(
            &FieldContext {
                cellule: &case.cellule,
                case_id: &case.id,
                record_id: &d.id,
                field,
            },
            blob,
        )
        .map(|t| t.as_str().to_owned())
        .map_err(|_| Error::Integrity(format!("decision {} {field}", d.id)))
    };
    let latest = |d: &DecisionRecord| {
        !decisions.iter().any(|n| {
            n.session_id == d.session_id && n.case_id == d.case_id && n.version > d.version
        })
    };
    decisions
        .iter()
        .filter(|d| d.case_id == case.id)
        .map(|d| {
            let actions = match &d.actions {
                Some(blob) => actions_of(d, &open(d, "actions", blob)?),
                None => Vec::new(),
            };
            let text = match &d.text {
                Some(blob) if audiences.contains(&d.text_audience) => Some(open(d, "text", blob)?),
                _ => None,
            };
            let referrer_message = match &d.referrer_message {
                Some(blob) if p.role == "coordinator" => Some(open(d, "referrer_message", blob)?),
                _ => None,
            };
            Ok(DecisionRecordView {
                id: d.id.clone(),
                session_id: d.session_id.clone(),
                case_id: case.id.clone(),
                reference: case.reference.clone(),
                version: d.version,
                current: latest(d),
                outcome: d.outcome,
                interlocutor: d.interlocutor.clone(),
                follow_up_date: d.follow_up_date,
                actions,
                text,
                text_audience: d.text_audience,
                referrer_message,
                decided_by: d.decided_by.clone(),
                decided_at: d.decided_at,
            })
        })
        .collect()
}

/// The actions of a decision: its sealed list, or (decisions recorded before actions had owners
/// and due dates) plain texts, shown with the decision's interlocutor and follow-up date.
fn actions_of(d: &DecisionRecord, json: &str) -> Vec<DecidedAction> {
    if let Ok(actions) = serde_json::from_str::<Vec<DecidedAction>>(json) {
        return actions;
    }
    let texts: Vec<String> = serde_json::from_str(json).unwrap_or_default();
    texts
        .into_iter()
        .map(|what| DecidedAction {
            what,
            owner: d.interlocutor.clone().unwrap_or_default(),
            due: d.follow_up_date.unwrap_or(d.decided_at.date_naive()),
        })
        .collect()
}

/// `GET …/sessions/{sid}/decisions`: every version of the decisions on the items the caller
/// may see.
pub async fn session_decisions(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
) -> Result<Vec<DecisionRecordView>, Error> {
    let p = allowed_audited(state, who, "read_agenda", Action::ReadDecisions).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    let decisions = state.db.session_decisions(&s.id).await?;
    let now = state.clock.now();
    let mut out = Vec::new();
    let mut shown: Vec<(String, String)> = Vec::new();
    let mut case_ids: Vec<&str> = decisions.iter().map(|d| d.case_id.as_str()).collect();
    case_ids.dedup();
    for id in case_ids {
        let Some(case) = state
            .db
            .get_case(cellule, id, access::agenda_since(now))
            .await?
        else {
            continue;
        };
        if !access::sees(state, &p, &case)? {
            continue;
        }
        out.extend(open_decisions(state, &p, &case, &decisions)?);
        shown.push((case.id.clone(), case.reference.clone()));
    }
    let cases: Vec<(&str, &str)> = shown
        .iter()
        .map(|(i, r)| (i.as_str(), r.as_str()))
        .collect();
    let drafts = session_entry(&who.audit(), Action::ReadDecisions, now, &s.id, &cases);
    audit_log::record(state, cellule, drafts).await?;
    Ok(out)
}

/// Filters of `GET …/follow-ups`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DueQuery {
    /// Last due date included (`YYYY-MM-DD`); default 31 days from today.
    pub until: Option<NaiveDate>,
    /// Coordinator only: one owner organisation.
    pub organisation: Option<String>,
}

/// Something due.
#[derive(Debug, Serialize, ToSchema)]
pub struct DueView {
    pub case_id: String,
    pub reference: String,
    /// `action` (of the case's latest decision) or `follow_up` (the case's follow-up date).
    pub kind: String,
    /// The owner organisation (an action's) or the routed interlocutor (a follow-up's).
    pub owner: Option<String>,
    pub due: NaiveDate,
    /// Due before today.
    pub overdue: bool,
    /// The action's text, when the caller may see the case.
    pub what: Option<String>,
}

/// `GET …/follow-ups`: the coordinator sees everything due, a member what its organisation
/// owns; overdue first, then by due date.
pub async fn follow_ups(
    state: &AppState,
    who: &CelluleMember,
    q: DueQuery,
) -> Result<Vec<DueView>, Error> {
    let p = allowed_audited(state, who, "list_cases", Action::ReadFollowUps).await?;
    let cellule = slug(who);
    let now = state.clock.now();
    let today = now.date_naive();
    let until = q.until.unwrap_or(today + Duration::days(DUE_HORIZON_DAYS));
    let owner = if p.role == "coordinator" {
        q.organisation.clone()
    } else {
        if q.organisation
            .as_deref()
            .is_some_and(|o| o != p.organisation)
        {
            return Err(Error::Forbidden(
                "Members see only what their own organisation owns.",
            ));
        }
        if p.organisation.is_empty() {
            return Ok(Vec::new());
        }
        Some(p.organisation.clone())
    };
    let rows: Vec<DueRecord> = state.db.due_items(cellule, owner.as_deref(), until).await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut shown: Vec<(String, String)> = Vec::new();
    let mut opened: Vec<(String, Vec<DecisionRecordView>)> = Vec::new();
    for r in rows {
        let mut what = None;
        if let Some(decision_id) = &r.decision_id {
            if !opened.iter().any(|(id, _)| id == &r.case_id) {
                let views = match state
                    .db
                    .get_case(cellule, &r.case_id, access::agenda_since(now))
                    .await?
                {
                    Some(case) if access::sees(state, &p, &case)? => {
                        shown.push((case.id.clone(), case.reference.clone()));
                        let decisions = state.db.case_decisions(&case.id).await?;
                        open_decisions(state, &p, &case, &decisions)?
                    }
                    _ => Vec::new(),
                };
                opened.push((r.case_id.clone(), views));
            }
            what = opened
                .iter()
                .find(|(id, _)| id == &r.case_id)
                .and_then(|(_, views)| views.iter().find(|v| &v.id == decision_id))
                .and_then(|v| {
                    v.actions
                        .get(usize::try_from(r.position.unwrap_or(-1)).ok()?)
                        .map(|x| x.what.clone())
                });
        }
        out.push(DueView {
            overdue: r.due_on < today,
            case_id: r.case_id,
            reference: r.reference,
            kind: r.kind,
            owner: r.owner,
            due: r.due_on,
            what,
        });
    }
    let cases: Vec<(&str, &str)> = shown
        .iter()
        .map(|(i, r)| (i.as_str(), r.as_str()))
        .collect();
    let draft = who.audit().entry(Action::ReadFollowUps, now).cases(&cases);
    audit_log::record(state, cellule, vec![draft]).await?;
    Ok(out)
}

/// `GET …/cases/{id}/decisions`: every version of the case's decisions, for whoever may read
/// the case.
pub async fn case_decisions(
    state: &AppState,
    who: &CelluleMember,
    id: &str,
) -> Result<Vec<DecisionRecordView>, Error> {
    let p = access::principal(who);
    let a = who.audit();
    let case = crate::services::cases::authorised_case(
        state,
        &p,
        &a,
        id,
        "read_case",
        Action::ReadDecisions,
        None,
    )
    .await?;
    let decisions = state.db.case_decisions(&case.id).await?;
    let views = open_decisions(state, &p, &case, &decisions)?;
    let draft = a
        .entry(Action::ReadDecisions, state.clock.now())
        .case(&case.id, Some(&case.reference));
    audit_log::record(state, slug(who), vec![draft]).await?;
    Ok(views)
}
