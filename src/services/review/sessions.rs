//! Sessions: planned from the schedule or ad hoc, listed, cancelled, and exported as a calendar
//! (references only, never case content).

use super::agenda::items_seen;
use super::*;

/// A session as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    /// Local start (RFC 3339 with the zone's offset that day).
    pub starts_at: String,
    pub time_zone: String,
    pub duration_minutes: i64,
    pub location: String,
    /// `planned`, `published`, `in_session`, `held`, `minutes_approved` or `cancelled`.
    pub status: SessionStage,
    /// `planned` (from the schedule) or `ad_hoc`.
    pub kind: String,
    /// The holiday the session was moved from (or is kept on).
    pub holiday: Option<String>,
    pub agenda_built_at: Option<DateTime<Utc>>,
    pub published_at: Option<DateTime<Utc>>,
    /// When the coordinator opened the meeting.
    pub opened_at: Option<DateTime<Utc>>,
    /// When the coordinator closed it.
    pub closed_at: Option<DateTime<Utc>>,
    pub minutes_approved_at: Option<DateTime<Utc>>,
}

impl From<&SessionRecord> for SessionView {
    fn from(s: &SessionRecord) -> Self {
        SessionView {
            id: s.id.clone(),
            starts_at: s.local_start.clone(),
            time_zone: s.time_zone.clone(),
            duration_minutes: s.duration_minutes,
            location: s.location.clone(),
            status: s.stage(),
            kind: if s.occurrence_key.is_some() {
                "planned".into()
            } else {
                "ad_hoc".into()
            },
            holiday: s.holiday.clone(),
            agenda_built_at: s.agenda_built_at,
            published_at: s.published_at,
            opened_at: s.opened_at,
            closed_at: s.closed_at,
            minutes_approved_at: s.minutes_approved_at,
        }
    }
}

/// Body of `POST …/sessions/plan`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// How many months ahead, 1-36.
    #[schema(minimum = 1, maximum = 36)]
    pub months: u32,
}

/// Answer of `POST …/sessions/plan`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanResult {
    /// Sessions created by this call.
    pub created: Vec<SessionView>,
    /// Every planned session in the window (created now or before).
    pub sessions: Vec<SessionView>,
}

/// Filters of `GET …/sessions`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// First day included (`YYYY-MM-DD`, UTC).
    pub from: Option<NaiveDate>,
    /// Last day included (`YYYY-MM-DD`, UTC).
    pub to: Option<NaiveDate>,
}

/// Body of `POST …/sessions` (an ad-hoc session).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdHocRequest {
    /// RFC 3339 with an offset, e.g. `2026-12-03T14:00:00+01:00`.
    pub starts_at: DateTime<FixedOffset>,
    /// Defaults to the schedule's (or 120); 15-600.
    #[serde(default)]
    #[schema(minimum = 15, maximum = 600)]
    pub duration_minutes: Option<u32>,
    /// Defaults to the schedule's.
    #[serde(default)]
    pub location: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn session_record(
    cellule: &str,
    starts_at: DateTime<FixedOffset>,
    time_zone: &str,
    duration: i64,
    location: &str,
    key: Option<NaiveDate>,
    holiday: Option<&str>,
    now: DateTime<Utc>,
) -> SessionRecord {
    SessionRecord {
        id: uuid::Uuid::new_v4().to_string(),
        cellule: cellule.to_owned(),
        occurrence_key: key,
        starts_at: starts_at.with_timezone(&Utc),
        local_start: starts_at.to_rfc3339(),
        time_zone: time_zone.to_owned(),
        duration_minutes: duration,
        location: location.to_owned(),
        holiday: holiday.map(str::to_owned),
        status: SessionStatus::Planned,
        agenda_built_at: None,
        published_at: None,
        created_at: now,
        opened_at: None,
        closed_at: None,
        minutes_approved_at: None,
        minutes_approved_by: None,
        reminded_at: None,
    }
}

/// `POST …/sessions/plan`: creates the sessions of the coming `months`, idempotently.
pub async fn plan(
    state: &AppState,
    who: &CelluleMember,
    req: PlanRequest,
) -> Result<PlanResult, Error> {
    allowed(state, who, "manage_sessions").await?;
    if !(1..=36).contains(&req.months) {
        return Err(Error::invalid("/months", "must be between 1 and 36"));
    }
    let cellule = slug(who);
    let sched = load_schedule(state, cellule).await?.ok_or_else(|| {
        Error::Conflict("This cellule has no schedule yet: PUT …/schedule first.".into())
    })?;
    let tz = sched
        .tz()
        .map_err(|e| Error::Internal(format!("stored schedule: {e}")))?;
    let now = state.clock.now();
    let today = now.with_timezone(&tz).date_naive();
    let until = today
        .checked_add_months(Months::new(req.months))
        .ok_or_else(|| Error::invalid("/months", "too far"))?;
    let occurrences = sched
        .occurrences(today, until)
        .map_err(|e| Error::Internal(format!("stored schedule: {e}")))?;
    let records: Vec<SessionRecord> = occurrences
        .iter()
        .filter(|o| o.starts_at.with_timezone(&Utc) > now)
        .map(|o| {
            session_record(
                cellule,
                o.starts_at,
                &sched.time_zone,
                i64::from(sched.duration_minutes),
                &sched.location,
                Some(o.key),
                o.moved_from_holiday,
                now,
            )
        })
        .collect();
    let created = state.db.insert_sessions(&records).await?;
    let window_end = tz
        .from_local_datetime(&until.and_hms_opt(23, 59, 59).unwrap_or_default())
        .latest()
        .map(|t| t.with_timezone(&Utc));
    let sessions = state
        .db
        .list_sessions(cellule, Some(now), window_end)
        .await?
        .iter()
        .filter(|s| s.occurrence_key.is_some())
        .map(SessionView::from)
        .collect();
    Ok(PlanResult {
        created: created.iter().map(SessionView::from).collect(),
        sessions,
    })
}

/// `GET …/sessions`.
pub async fn list_sessions(
    state: &AppState,
    who: &CelluleMember,
    q: SessionQuery,
) -> Result<Vec<SessionView>, Error> {
    allowed(state, who, "read_sessions").await?;
    let day = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    let from = q.from.and_then(day);
    let to = q.to.and_then(|d| d.succ_opt()).and_then(day);
    Ok(state
        .db
        .list_sessions(slug(who), from, to)
        .await?
        .iter()
        .map(SessionView::from)
        .collect())
}

/// `POST …/sessions`: an ad-hoc session.
pub async fn add_session(
    state: &AppState,
    who: &CelluleMember,
    req: AdHocRequest,
) -> Result<SessionView, Error> {
    allowed(state, who, "manage_sessions").await?;
    let cellule = slug(who);
    let sched = load_schedule(state, cellule).await?;
    let duration = req
        .duration_minutes
        .or(sched.as_ref().map(|s| s.duration_minutes))
        .unwrap_or(120);
    if !crate::domain::schedule::DURATION_RANGE.contains(&duration) {
        return Err(Error::invalid(
            "/duration_minutes",
            "must be between 15 and 600",
        ));
    }
    let location = req
        .location
        .or(sched.as_ref().map(|s| s.location.clone()))
        .unwrap_or_default();
    if location.chars().count() > crate::domain::schedule::MAX_LOCATION_CHARS
        || location.chars().any(char::is_control)
    {
        return Err(Error::invalid(
            "/location",
            "at most 200 characters, no control characters",
        ));
    }
    crate::services::guard::check_place(state, who, "location", &location).await?;
    let now = state.clock.now();
    if req.starts_at.with_timezone(&Utc) <= now {
        return Err(Error::invalid("/starts_at", "must be in the future"));
    }
    let time_zone = sched
        .as_ref()
        .map(|s| s.time_zone.clone())
        .unwrap_or_else(|| crate::domain::schedule::DEFAULT_TIME_ZONE.to_owned());
    let tz = crate::domain::schedule::parse_tz(&time_zone)
        .map_err(|e| Error::Internal(format!("stored schedule: {e}")))?;
    // Shown in the session's zone, whatever offset the request used.
    let local = req.starts_at.with_timezone(&tz).fixed_offset();
    let record = session_record(
        cellule,
        local,
        &time_zone,
        i64::from(duration),
        &location,
        None,
        None,
        now,
    );
    let created = state.db.insert_sessions(&[record]).await?;
    created
        .first()
        .map(SessionView::from)
        .ok_or_else(|| Error::Internal("ad-hoc session not stored".into()))
}

/// `POST …/sessions/{sid}/cancel`: its items return to the pool.
pub async fn cancel(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
) -> Result<SessionView, Error> {
    allowed_audited(state, who, "manage_sessions", Action::CancelSession).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    if s.status != SessionStatus::Planned {
        return Err(Error::Conflict("This session is already cancelled.".into()));
    }
    if s.opened_at.is_some() {
        return Err(Error::Conflict(
            "The meeting was opened: it took place and can no longer be cancelled.".into(),
        ));
    }
    let items = state.db.agenda(&s.id).await?;
    if items.iter().any(|i| i.decision_outcome.is_some()) {
        return Err(Error::Conflict(
            "Decisions are recorded for this session: it took place and can no longer be cancelled."
                .into(),
        ));
    }
    let now = state.clock.now();
    let actor = who.membership.subject.as_str();
    let reverts: Vec<Transition> = items
        .iter()
        .filter(|i| i.status == CaseStatus::Scheduled && i.decision_outcome.is_none())
        .map(|i| {
            let back = if i.kind == Kind::FollowUp {
                CaseStatus::InFollowUp
            } else {
                CaseStatus::Accepted
            };
            transition(&i.case_id, cellule, CaseStatus::Scheduled, back, actor, now)
        })
        .collect();
    let a = who.audit();
    let touched: Vec<(&str, &str)> = items
        .iter()
        .map(|i| (i.case_id.as_str(), i.reference.as_str()))
        .collect();
    let mut drafts = session_entry(&a, Action::CancelSession, now, &s.id, &touched);
    if s.published_at.is_some() {
        let ctx = notify::SessionContext {
            cellule,
            cellule_name: who.cellule.name.as_str(),
            session: &s,
            now,
        };
        let notices =
            notify::session_notices(state, &ctx, &items, NoticeKind::Cancellation).await?;
        with_notices(&mut drafts, notices);
    }
    let ids: Vec<String> = items.iter().map(|i| i.case_id.clone()).collect();
    let head = state
        .db
        .cancel_session(cellule, &s.id, &ids, &reverts, drafts)
        .await?
        .ok_or_else(|| Error::Conflict("This session is already cancelled.".into()))?;
    audit_log::committed(state, cellule, &head).await;
    Ok(SessionView::from(&session(state, cellule, sid).await?))
}

/// `GET …/sessions/{sid}/calendar.ics`: the session with its item references (visible ones for
/// members), never case content.
pub async fn calendar(state: &AppState, who: &CelluleMember, sid: &str) -> Result<String, Error> {
    let p = allowed_audited(state, who, "read_calendar", Action::ExportCalendar).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    let now = state.clock.now();
    let rows = state.db.agenda(&s.id).await?;
    let references = items_seen(state, &p, &s, &rows).await?;
    let a = who.audit();
    let touched: Vec<(&str, &str)> = references
        .iter()
        .map(|(id, reference)| (id.as_str(), reference.as_str()))
        .collect();
    let drafts = session_entry(&a, Action::ExportCalendar, now, &s.id, &touched);
    audit_log::record(state, cellule, drafts).await?;
    let starts_at = DateTime::parse_from_rfc3339(&s.local_start)
        .map_err(|e| Error::Internal(format!("stored session start: {e}")))?;
    let description = if references.is_empty() {
        "Ordre du jour : à venir.".to_owned()
    } else {
        format!(
            "Ordre du jour : {}",
            references
                .iter()
                .map(|(_, r)| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let event = IcsEvent {
        uid: format!("{}@cellule", s.id),
        starts_at,
        duration_minutes: u32::try_from(s.duration_minutes).unwrap_or(120),
        summary: format!("Cellule cas complexes — {}", who.cellule.name.as_str()),
        location: s.location.clone(),
        description,
        cancelled: s.status == SessionStatus::Cancelled,
        sequence: u32::from(s.published_at.is_some())
            + u32::from(s.status == SessionStatus::Cancelled),
    };
    Ok(crate::domain::schedule::calendar(
        who.cellule.name.as_str(),
        &s.time_zone,
        &[event],
        now,
    ))
}
