//! The monthly review (SPEC §10): schedule, planned and ad-hoc sessions, agenda building,
//! publication, decisions, the calendar export, the routing directory and the yearly
//! statistics. Pure rules live in [`crate::domain::schedule`], [`crate::domain::agenda`] and [`crate::domain::routing`];
//! this module loads, authorises, records in the audit log and stores.
//!
//! Choices where the design is silent:
//! - A session's agenda can be built and edited until it is published; publishing is final for
//!   that session (decisions follow). Cancelling a session releases its items to the pool (cases
//!   return to `accepted` or `in_follow_up`).
//! - A build's deferrals (the eligible cases beyond the capacity) are the session's draft until
//!   the agenda is published: a rebuild replaces them, an edit that puts a case back on the
//!   agenda withdraws its deferral. Publication counts each of them once (the count that orders
//!   the next builds); cancelling a published session undoes its counts. A draft's deferrals
//!   show the count they will have (`times_deferred` includes this session). A session left
//!   unpublished counts nothing: a draft no one published is not a review that passed a case
//!   over.
//! - Publishing moves the items' cases to `scheduled` and opens member access (SPEC §7) to each
//!   item for 30 days after the session; every organisation of an item's routing proposal is
//!   invited to that item (guests see only those items).
//! - A decision needs the published agenda: `routed` and `follow_up` move the case to
//!   `in_follow_up` (a follow-up date is required; `routed` also needs the interlocutor, and only
//!   `routed` assigns one), `closed` closes it (the text is the closing reason), `deferred`
//!   returns it to the pool and counts a deferral. Once a decision is recorded the session took
//!   place and cannot be cancelled.
//! - A case is on at most one open agenda (planned, unpublished, still to come); build, edit,
//!   publish and cancel re-check their cases inside their transaction and answer 409 when a case
//!   moved meanwhile. Members see no item of an unpublished agenda.
//! - Statistics count the cases submitted in the year (by month, need and referring organisation
//!   kind from the directory, `unknown` when the organisation is not in it) and the decisions of
//!   the year by outcome; delays are medians in days (a deferral is not a review). Every count
//!   from 1 to 4 is shown as suppressed (`null` with `"suppressed": true`), with complementary
//!   suppression in breakdowns of a shown total, so that no small group can be singled out.

use chrono::{DateTime, Datelike, Duration, FixedOffset, Months, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::access;
use crate::audit::{self, Action};
use crate::auth::CelluleMember;
use crate::crypto::FieldContext;
use crate::domain::Organisation;
use crate::domain::agenda::{self, Candidate, Capacity, Kind};
use crate::domain::case::{CaseStatus, Need, Urgency};
use crate::domain::policy::Principal;
use crate::domain::routing::{self, Directory};
use crate::domain::schedule::{self, IcsEvent, Schedule};
use crate::error::{ApiError, FieldError};
use crate::http::AppState;
use crate::storage::{
    AgendaItemRecord, CaseRecord, DecisionRecord, Deferrals, EligibleCase, NewAgendaItem,
    SessionRecord, Transition,
};

/// Most items an edited agenda may hold.
pub const MAX_AGENDA_ITEMS: usize = 200;
/// Longest decision text, in characters.
pub const MAX_DECISION_TEXT: usize = 4_000;
/// Counts below this are suppressed in statistics.
pub const SUPPRESS_BELOW: i64 = 5;

/// A session as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    /// Local start (RFC 3339 with the zone's offset that day).
    pub starts_at: String,
    pub time_zone: String,
    pub duration_minutes: i64,
    pub location: String,
    /// `planned` or `cancelled`.
    pub status: String,
    /// `planned` (from the schedule) or `ad_hoc`.
    pub kind: String,
    /// The holiday the session was moved from (or is kept on).
    pub holiday: Option<String>,
    pub agenda_built_at: Option<DateTime<Utc>>,
    pub published_at: Option<DateTime<Utc>>,
}

impl From<&SessionRecord> for SessionView {
    fn from(s: &SessionRecord) -> Self {
        SessionView {
            id: s.id.clone(),
            starts_at: s.local_start.clone(),
            time_zone: s.time_zone.clone(),
            duration_minutes: s.duration_minutes,
            location: s.location.clone(),
            status: s.status.clone(),
            kind: if s.occurrence_key.is_some() {
                "planned".into()
            } else {
                "ad_hoc".into()
            },
            holiday: s.holiday.clone(),
            agenda_built_at: s.agenda_built_at,
            published_at: s.published_at,
        }
    }
}

/// Body of `POST …/sessions/plan`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// How many months ahead, 1-36.
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
    /// Defaults to the schedule's (or 120).
    #[serde(default)]
    pub duration_minutes: Option<u32>,
    /// Defaults to the schedule's.
    #[serde(default)]
    pub location: Option<String>,
}

/// One agenda item: identifiers and attributes, never content.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgendaItemView {
    pub case_id: String,
    pub reference: String,
    pub position: i64,
    /// `new` or `follow_up`.
    pub kind: String,
    pub minutes: i64,
    /// Local start and end of the item's slot.
    pub starts_at: String,
    pub ends_at: String,
    pub urgency: Urgency,
    pub needs: Vec<Need>,
    pub commune: Option<String>,
    pub sector: Option<String>,
    pub status: CaseStatus,
    pub times_deferred: i64,
    /// The router's proposal with the rule that produced it, or `uncovered`.
    #[schema(value_type = Object)]
    pub proposal: serde_json::Value,
    /// The decision's outcome once taken.
    pub decision: Option<String>,
}

/// A case left for a later session.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeferredView {
    pub case_id: String,
    pub reference: String,
    pub times_deferred: i64,
}

/// A session's agenda (also the printable view of the meeting).
#[derive(Debug, Serialize, ToSchema)]
pub struct AgendaView {
    pub session: SessionView,
    pub published: bool,
    pub capacity_minutes: i64,
    pub minutes_used: i64,
    pub over_capacity: bool,
    pub items: Vec<AgendaItemView>,
    pub deferred: Vec<DeferredView>,
    /// Items whose case no routing rule covers.
    pub uncovered: Vec<String>,
}

/// Body of `PUT …/agenda`: the case ids, in the order the session takes them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgendaEdit {
    pub items: Vec<String>,
}

/// Outcomes of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Routed,
    FollowUp,
    Closed,
    Deferred,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Routed => "routed",
            Outcome::FollowUp => "follow_up",
            Outcome::Closed => "closed",
            Outcome::Deferred => "deferred",
        }
    }
}

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

/// Interlocutors of `GET`/`PUT …/interlocutors`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Interlocutors {
    pub interlocutors: Vec<routing::Interlocutor>,
}

/// Rules of `GET`/`PUT …/routing`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingRules {
    pub rules: Vec<routing::Rule>,
}

/// Query of `GET …/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    pub year: i32,
}

/// A count, suppressed when from 1 to 4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Count {
    pub key: String,
    /// `null` when suppressed.
    pub count: Option<i64>,
    pub suppressed: bool,
}

/// Counts of a partition of a shown total (months, organisation kinds, outcomes): small counts
/// are suppressed, then the smallest shown non-zero cells are suppressed too until the hidden
/// cells are at least two and their sum (the total minus the shown cells) can be split among
/// them in more than one way (not all ones), so that no hidden count can be recovered by
/// subtracting the others from the total.
fn partition(cells: Vec<(String, i64)>) -> Vec<Count> {
    let mut out: Vec<Count> = cells.iter().map(|(k, n)| count(k.clone(), *n)).collect();
    loop {
        let hidden: Vec<i64> = cells
            .iter()
            .zip(&out)
            .filter(|(_, c)| c.suppressed)
            .map(|((_, n), _)| *n)
            .collect();
        let safe = hidden.len() >= 2 && hidden.iter().sum::<i64>() > hidden.len() as i64;
        if hidden.is_empty() || safe {
            break;
        }
        let Some((i, _)) = cells
            .iter()
            .enumerate()
            .filter(|(i, (_, n))| *n > 0 && !out[*i].suppressed)
            .min_by_key(|(_, (_, n))| *n)
        else {
            break;
        };
        out[i].count = None;
        out[i].suppressed = true;
    }
    out
}

fn count(key: impl Into<String>, n: i64) -> Count {
    let suppressed = n > 0 && n < SUPPRESS_BELOW;
    Count {
        key: key.into(),
        count: if suppressed { None } else { Some(n) },
        suppressed,
    }
}

/// A median delay in days, suppressed when computed over fewer than 5 cases. The number of cases
/// behind it is not shown: differences between the delays' case counts would reveal small groups
/// (closed without review, say).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delay {
    pub median_days: Option<f64>,
    pub suppressed: bool,
}

/// Yearly statistics for the CLSM's report.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub year: i32,
    pub referrals: Count,
    pub by_month: Vec<Count>,
    pub by_need: Vec<Count>,
    pub by_referring_org_kind: Vec<Count>,
    pub decisions_by_outcome: Vec<Count>,
    pub referral_to_first_review: Delay,
    pub first_review_to_closure: Delay,
    pub referral_to_closure: Delay,
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

/// A cellule-level action without case data (schedule, sessions, routing, statistics).
async fn allowed(state: &AppState, who: &CelluleMember, action: &str) -> Result<(), ApiError> {
    let p = access::principal(who);
    access::cellule_action(state, &p, action)
}

/// A cellule-level action on case data: refusals are audited.
async fn allowed_audited(
    state: &AppState,
    who: &CelluleMember,
    action: &str,
    audited: Action,
) -> Result<Principal, ApiError> {
    let p = access::principal(who);
    access::cellule_action_audited(state, &p, &who.audit(), action, audited).await?;
    Ok(p)
}

fn slug(who: &CelluleMember) -> &str {
    who.cellule.slug.as_str()
}

async fn load_schedule(state: &AppState, cellule: &str) -> Result<Option<Schedule>, ApiError> {
    match state.db.get_schedule(cellule).await? {
        Some(doc) => Ok(Some(serde_json::from_str(&doc).map_err(|e| {
            ApiError::Internal(format!("stored schedule does not parse: {e}"))
        })?)),
        None => Ok(None),
    }
}

async fn load_directory(state: &AppState, cellule: &str) -> Result<Directory, ApiError> {
    export_directory(state.db.as_ref(), cellule).await
}

async fn store_directory(
    db: &dyn crate::storage::Database,
    cellule: &str,
    dir: &Directory,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let doc = serde_json::to_string(dir).map_err(|e| ApiError::Internal(e.to_string()))?;
    db.put_directory(cellule, &doc, now).await?;
    Ok(())
}

// --- schedule ---------------------------------------------------------------------------------

/// `GET …/schedule`.
pub async fn get_schedule(state: &AppState, who: &CelluleMember) -> Result<Schedule, ApiError> {
    allowed(state, who, "read_schedule").await?;
    load_schedule(state, slug(who))
        .await?
        .ok_or(ApiError::NotFound("schedule"))
}

/// `PUT …/schedule`.
pub async fn put_schedule(
    state: &AppState,
    who: &CelluleMember,
    mut body: Schedule,
) -> Result<Schedule, ApiError> {
    allowed(state, who, "manage_schedule").await?;
    body.validate().map_err(ApiError::Validation)?;
    if body.starts_on.is_none() {
        // A schedule edited without a first day keeps the one it had: the recurrence (and so
        // the occurrences already planned) does not shift under the sessions.
        body.starts_on = load_schedule(state, slug(who))
            .await?
            .and_then(|old| old.starts_on);
    }
    if body.starts_on.is_none() {
        let tz = body
            .tz()
            .map_err(|e| ApiError::invalid("/time_zone", e.to_string()))?;
        body.starts_on = Some(state.clock.now().with_timezone(&tz).date_naive());
    }
    let doc = serde_json::to_string(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .db
        .put_schedule(slug(who), &doc, state.clock.now())
        .await?;
    Ok(body)
}

// --- sessions ---------------------------------------------------------------------------------

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
        status: "planned".into(),
        agenda_built_at: None,
        published_at: None,
        created_at: now,
    }
}

/// `POST …/sessions/plan`: creates the sessions of the coming `months`, idempotently.
pub async fn plan(
    state: &AppState,
    who: &CelluleMember,
    req: PlanRequest,
) -> Result<PlanResult, ApiError> {
    allowed(state, who, "manage_sessions").await?;
    if !(1..=36).contains(&req.months) {
        return Err(ApiError::invalid("/months", "must be between 1 and 36"));
    }
    let cellule = slug(who);
    let sched = load_schedule(state, cellule).await?.ok_or_else(|| {
        ApiError::Conflict("This cellule has no schedule yet: PUT …/schedule first.".into())
    })?;
    let tz = sched
        .tz()
        .map_err(|e| ApiError::Internal(format!("stored schedule: {e}")))?;
    let now = state.clock.now();
    let today = now.with_timezone(&tz).date_naive();
    let until = today
        .checked_add_months(Months::new(req.months))
        .ok_or_else(|| ApiError::invalid("/months", "too far"))?;
    let occurrences = sched
        .occurrences(today, until)
        .map_err(|e| ApiError::Internal(format!("stored schedule: {e}")))?;
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
) -> Result<Vec<SessionView>, ApiError> {
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
) -> Result<SessionView, ApiError> {
    allowed(state, who, "manage_sessions").await?;
    let cellule = slug(who);
    let sched = load_schedule(state, cellule).await?;
    let duration = req
        .duration_minutes
        .or(sched.as_ref().map(|s| s.duration_minutes))
        .unwrap_or(120);
    if !schedule::DURATION_RANGE.contains(&duration) {
        return Err(ApiError::invalid(
            "/duration_minutes",
            "must be between 15 and 600",
        ));
    }
    let location = req
        .location
        .or(sched.as_ref().map(|s| s.location.clone()))
        .unwrap_or_default();
    if location.chars().count() > schedule::MAX_LOCATION_CHARS
        || location.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            "/location",
            "at most 200 characters, no control characters",
        ));
    }
    let now = state.clock.now();
    if req.starts_at.with_timezone(&Utc) <= now {
        return Err(ApiError::invalid("/starts_at", "must be in the future"));
    }
    let time_zone = sched
        .as_ref()
        .map(|s| s.time_zone.clone())
        .unwrap_or_else(|| schedule::DEFAULT_TIME_ZONE.to_owned());
    let tz = schedule::parse_tz(&time_zone)
        .map_err(|e| ApiError::Internal(format!("stored schedule: {e}")))?;
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
        .ok_or_else(|| ApiError::Internal("ad-hoc session not stored".into()))
}

async fn session(state: &AppState, cellule: &str, id: &str) -> Result<SessionRecord, ApiError> {
    state
        .db
        .get_session(cellule, id)
        .await?
        .ok_or(ApiError::NotFound("session"))
}

fn transition(
    case_id: &str,
    cellule: &str,
    from: &str,
    to: &str,
    actor: &str,
    at: DateTime<Utc>,
) -> Transition {
    Transition {
        event_id: uuid::Uuid::now_v7().to_string(),
        case_id: case_id.to_owned(),
        cellule: cellule.to_owned(),
        from: from.to_owned(),
        to: to.to_owned(),
        reason: None,
        follow_up_date: None,
        routed_org: None,
        actor: actor.to_owned(),
        at,
    }
}

/// `POST …/sessions/{sid}/cancel`: its items return to the pool.
pub async fn cancel(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
) -> Result<SessionView, ApiError> {
    allowed_audited(state, who, "manage_sessions", Action::CancelSession).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    if s.status != "planned" {
        return Err(ApiError::Conflict(
            "This session is already cancelled.".into(),
        ));
    }
    let items = state.db.agenda(&s.id).await?;
    if items.iter().any(|i| i.decision_outcome.is_some()) {
        return Err(ApiError::Conflict(
            "Decisions are recorded for this session: it took place and can no longer be cancelled."
                .into(),
        ));
    }
    let now = state.clock.now();
    let actor = who.membership.subject.as_str();
    let reverts: Vec<Transition> = items
        .iter()
        .filter(|i| i.status == "scheduled" && i.decision_outcome.is_none())
        .map(|i| {
            let back = if i.kind == "follow_up" {
                "in_follow_up"
            } else {
                "accepted"
            };
            transition(&i.case_id, cellule, "scheduled", back, actor, now)
        })
        .collect();
    let a = who.audit();
    let touched: Vec<(&str, &str)> = items
        .iter()
        .map(|i| (i.case_id.as_str(), i.reference.as_str()))
        .collect();
    let drafts = session_entry(&a, Action::CancelSession, now, &s.id, &touched);
    let ids: Vec<String> = items.iter().map(|i| i.case_id.clone()).collect();
    let head = state
        .db
        .cancel_session(cellule, &s.id, &ids, &reverts, drafts)
        .await?
        .ok_or_else(|| ApiError::Conflict("This session is already cancelled.".into()))?;
    audit::written(state, cellule, &head).await;
    Ok(SessionView::from(&session(state, cellule, sid).await?))
}

/// The one entry of a session-level action: it names the session and the set of cases touched
/// (none: the session alone). An agenda build considers every eligible case of the cellule;
/// one entry per case would cost thousands of chained rows per build, the set costs one.
fn session_entry(
    a: &audit::AuditCtx,
    action: Action,
    now: DateTime<Utc>,
    session_id: &str,
    cases: &[(&str, &str)],
) -> Vec<audit::Draft> {
    vec![
        a.entry(action, now)
            .target("session", session_id)
            .cases(cases),
    ]
}

// --- agenda -----------------------------------------------------------------------------------

fn capacity(sched: Option<&Schedule>, s: &SessionRecord) -> Capacity {
    Capacity {
        duration_minutes: s.duration_minutes,
        minutes_per_new_case: sched.map_or(20, |x| i64::from(x.minutes_per_new_case)),
        minutes_per_follow_up: sched.map_or(10, |x| i64::from(x.minutes_per_follow_up)),
    }
}

fn candidate(c: &EligibleCase) -> Result<Candidate, ApiError> {
    let follow_up = c.status == "in_follow_up";
    let waiting_since = if follow_up {
        c.follow_up_date
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
            .unwrap_or(c.submitted_at)
    } else {
        c.decided_at.unwrap_or(c.submitted_at)
    };
    Ok(Candidate {
        case_id: c.id.clone(),
        reference: c.reference.clone(),
        urgency: parse(&c.urgency, Urgency::parse, "urgency")?,
        // Counted when a session is published: this session's own draft deferral is not.
        times_deferred: c.times_deferred,
        waiting_since,
        kind: if follow_up { Kind::FollowUp } else { Kind::New },
    })
}

fn proposal_json(dir: &Directory, c: &EligibleCase) -> Result<String, ApiError> {
    let needs = needs_of(&c.needs)?;
    let proposal = routing::propose(
        dir,
        &routing::CaseFacts {
            needs: &needs,
            commune: c.commune.as_deref(),
            sector: c.sector.as_deref(),
        },
    );
    serde_json::to_string(&proposal).map_err(|e| ApiError::Internal(e.to_string()))
}

fn open_for_changes(s: &SessionRecord) -> Result<(), ApiError> {
    if s.status != "planned" {
        return Err(ApiError::Conflict("This session is cancelled.".into()));
    }
    if s.published_at.is_some() {
        return Err(ApiError::Conflict(
            "This agenda is published: it no longer changes.".into(),
        ));
    }
    Ok(())
}

/// `POST …/sessions/{sid}/agenda/build`.
pub async fn build(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
) -> Result<AgendaView, ApiError> {
    allowed_audited(state, who, "manage_agenda", Action::BuildAgenda).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    open_for_changes(&s)?;
    let tz = schedule::parse_tz(&s.time_zone).unwrap_or(chrono_tz::Europe::Paris);
    let due_by = s.starts_at.with_timezone(&tz).date_naive();
    let now = state.clock.now();
    // The eligible cases (thousands) are read while the schedule and the directory are.
    let (sched, cases, dir) = tokio::try_join!(
        load_schedule(state, cellule),
        async { Ok::<_, ApiError>(state.db.eligible_cases(cellule, &s.id, due_by, now).await?) },
        load_directory(state, cellule),
    )?;
    let candidates = cases.iter().map(candidate).collect::<Result<Vec<_>, _>>()?;
    let built = agenda::build(candidates, capacity(sched.as_ref(), &s));
    // The items' cases, found in one pass (an agenda holds tens of items, the pool thousands).
    let wanted: std::collections::HashMap<&str, usize> = built
        .items
        .iter()
        .enumerate()
        .map(|(n, i)| (i.candidate.case_id.as_str(), n))
        .collect();
    let mut item_cases: Vec<Option<&EligibleCase>> = vec![None; built.items.len()];
    for c in &cases {
        if let Some(&n) = wanted.get(c.id.as_str()) {
            item_cases[n] = Some(c);
        }
    }
    let mut items = Vec::with_capacity(built.items.len());
    let mut rows = Vec::with_capacity(built.items.len());
    for (i, c) in built.items.iter().zip(item_cases) {
        let c = c.ok_or_else(|| ApiError::Internal("candidate without its case".into()))?;
        let item = NewAgendaItem {
            case_id: i.candidate.case_id.clone(),
            position: i.position,
            kind: i.candidate.kind.as_str(),
            minutes: i.minutes,
            proposal: proposal_json(&dir, c)?,
        };
        rows.push(built_row(c, &item));
        items.push(item);
    }
    let deferred: Vec<String> = built.deferred.iter().map(|c| c.case_id.clone()).collect();
    let before: Vec<String> = cases
        .iter()
        .filter(|c| c.deferred_here)
        .map(|c| c.id.clone())
        .collect();
    let a = who.audit();
    let touched: Vec<(&str, &str)> = built
        .items
        .iter()
        .map(|i| &i.candidate)
        .chain(built.deferred.iter())
        .map(|c| (c.case_id.as_str(), c.reference.as_str()))
        .collect();
    let drafts = session_entry(&a, Action::BuildAgenda, now, &s.id, &touched);
    let head = state
        .db
        .replace_agenda(
            cellule,
            &s.id,
            &items,
            Some(Deferrals {
                all: &deferred,
                before: &before,
                read_at: s.agenda_built_at,
            }),
            now,
            drafts,
        )
        .await?;
    audit::written(state, cellule, &head).await;
    // The answer is what was just written, from the rows in hand: reading back thousands of
    // deferrals would cost more than the build itself. A deferral shows the count it will have
    // once this agenda is published: one more.
    drop(cases);
    let mut deferred_view: Vec<DeferredView> = built
        .deferred
        .into_iter()
        .map(|c| DeferredView {
            case_id: c.case_id,
            reference: c.reference,
            times_deferred: c.times_deferred + 1,
        })
        .collect();
    // References are unique: no order among equals to keep.
    deferred_view.sort_unstable_by(|a, b| a.reference.cmp(&b.reference));
    let written = SessionRecord {
        agenda_built_at: Some(now),
        ..s
    };
    agenda_view_of(&written, &rows, sched.as_ref(), None, deferred_view)
}

/// The stored agenda row an item of a build becomes (the case as the build read it).
fn built_row(c: &EligibleCase, item: &NewAgendaItem) -> AgendaItemRecord {
    AgendaItemRecord {
        case_id: item.case_id.clone(),
        position: item.position,
        kind: item.kind.to_owned(),
        minutes: item.minutes,
        proposal: item.proposal.clone(),
        reference: c.reference.clone(),
        status: c.status.clone(),
        urgency: c.urgency.clone(),
        needs: c.needs.clone(),
        commune: c.commune.clone(),
        sector: c.sector.clone(),
        times_deferred: c.times_deferred,
        routed_org: c.routed_org.clone(),
        follow_up_date: c.follow_up_date,
        // Decisions come after publication; a published agenda is never rebuilt.
        decision_outcome: None,
    }
}

/// The agenda of a session just written, read back whole (the coordinator's view).
async fn current_view(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
    sched: Option<&Schedule>,
) -> Result<AgendaView, ApiError> {
    let s = session(state, slug(who), sid).await?;
    let rows = state.db.agenda(&s.id).await?;
    agenda_view(state, &s, &rows, sched, None).await
}

/// The items of a session's agenda `p` may see, as (case id, reference): an unpublished agenda
/// is the coordinator's draft and shows others nothing; then each item whose case `p` may see.
async fn items_seen(
    state: &AppState,
    p: &Principal,
    s: &SessionRecord,
    rows: &[AgendaItemRecord],
) -> Result<Vec<(String, String)>, ApiError> {
    if p.role != "coordinator" && s.published_at.is_none() {
        return Ok(Vec::new());
    }
    let since = access::agenda_since(state.clock.now());
    let mut seen = Vec::new();
    for r in rows {
        if let Some(c) = state.db.get_case(&s.cellule, &r.case_id, since).await?
            && access::sees(state, p, &c)?
        {
            seen.push((r.case_id.clone(), r.reference.clone()));
        }
    }
    Ok(seen)
}

/// The agenda with the items of `visible` (all of them, with the deferrals, for `None`).
async fn agenda_view(
    state: &AppState,
    session: &SessionRecord,
    rows: &[AgendaItemRecord],
    sched: Option<&Schedule>,
    visible: Option<&[String]>,
) -> Result<AgendaView, ApiError> {
    let deferred = if visible.is_none() {
        state
            .db
            .agenda_deferred(&session.id)
            .await?
            .into_iter()
            .map(|d| DeferredView {
                case_id: d.case_id,
                reference: d.reference,
                // A draft's deferral is counted when the agenda is published.
                times_deferred: d.times_deferred + i64::from(session.published_at.is_none()),
            })
            .collect()
    } else {
        Vec::new()
    };
    agenda_view_of(session, rows, sched, visible, deferred)
}

/// [`agenda_view`] with its deferrals in hand.
fn agenda_view_of(
    session: &SessionRecord,
    rows: &[AgendaItemRecord],
    sched: Option<&Schedule>,
    visible: Option<&[String]>,
    deferred: Vec<DeferredView>,
) -> Result<AgendaView, ApiError> {
    let start = DateTime::parse_from_rfc3339(&session.local_start)
        .map_err(|e| ApiError::Internal(format!("stored session start: {e}")))?;
    let mut items = Vec::new();
    let mut offset = 0i64;
    let mut uncovered = Vec::new();
    for r in rows {
        let item_start = start + Duration::minutes(offset);
        offset += r.minutes;
        if let Some(v) = visible
            && !v.contains(&r.case_id)
        {
            continue;
        }
        let proposal: serde_json::Value = serde_json::from_str(&r.proposal)
            .map_err(|e| ApiError::Internal(format!("stored proposal: {e}")))?;
        if proposal["status"] == "uncovered" {
            uncovered.push(r.reference.clone());
        }
        items.push(item_view(r, item_start, proposal)?);
    }
    let cap = capacity(sched, session);
    let minutes_used: i64 = rows.iter().map(|r| r.minutes).sum();
    Ok(AgendaView {
        published: session.published_at.is_some(),
        capacity_minutes: cap.duration_minutes,
        minutes_used,
        over_capacity: minutes_used > cap.duration_minutes,
        session: SessionView::from(session),
        items,
        deferred,
        uncovered,
    })
}

fn item_view(
    r: &AgendaItemRecord,
    start: DateTime<FixedOffset>,
    proposal: serde_json::Value,
) -> Result<AgendaItemView, ApiError> {
    Ok(AgendaItemView {
        case_id: r.case_id.clone(),
        reference: r.reference.clone(),
        position: r.position,
        kind: r.kind.clone(),
        minutes: r.minutes,
        starts_at: start.to_rfc3339(),
        ends_at: (start + Duration::minutes(r.minutes)).to_rfc3339(),
        urgency: parse(&r.urgency, Urgency::parse, "urgency")?,
        needs: needs_of(&r.needs)?,
        commune: r.commune.clone(),
        sector: r.sector.clone(),
        status: parse(&r.status, CaseStatus::parse, "status")?,
        times_deferred: r.times_deferred,
        proposal,
        decision: r.decision_outcome.clone(),
    })
}

/// `GET …/sessions/{sid}/agenda`: the coordinator sees everything; members the items they may
/// see (published agenda, routed or invited organisation).
pub async fn get_agenda(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
) -> Result<AgendaView, ApiError> {
    let p = allowed_audited(state, who, "read_agenda", Action::ReadAgenda).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    let sched = load_schedule(state, cellule).await?;
    let rows = state.db.agenda(&s.id).await?;
    let shown = items_seen(state, &p, &s, &rows).await?;
    let a = who.audit();
    let touched: Vec<(&str, &str)> = shown
        .iter()
        .map(|(id, reference)| (id.as_str(), reference.as_str()))
        .collect();
    let drafts = session_entry(&a, Action::ReadAgenda, state.clock.now(), &s.id, &touched);
    audit::log(state, cellule, drafts).await?;
    let visible: Vec<String> = shown.into_iter().map(|(id, _)| id).collect();
    let all = p.role == "coordinator";
    agenda_view(
        state,
        &s,
        &rows,
        sched.as_ref(),
        if all { None } else { Some(&visible) },
    )
    .await
}

/// `PUT …/sessions/{sid}/agenda`: the coordinator's order (add, remove, reorder).
pub async fn edit(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
    req: AgendaEdit,
) -> Result<AgendaView, ApiError> {
    allowed_audited(state, who, "manage_agenda", Action::EditAgenda).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    open_for_changes(&s)?;
    if req.items.len() > MAX_AGENDA_ITEMS {
        return Err(ApiError::invalid(
            "/items",
            format!("at most {MAX_AGENDA_ITEMS} items"),
        ));
    }
    let now = state.clock.now();
    let since = access::agenda_since(now);
    let current = state.db.agenda(&s.id).await?;
    let elsewhere: std::collections::HashMap<String, String> = state
        .db
        .other_agendas(cellule, &s.id, now)
        .await?
        .into_iter()
        .collect();
    let mut errors = Vec::new();
    let mut cases = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, id) in req.items.iter().enumerate() {
        let pointer = format!("/items/{i}");
        let Ok(id) = uuid::Uuid::parse_str(id).map(|u| u.to_string()) else {
            errors.push(FieldError::new(pointer, "not a case id"));
            continue;
        };
        if !seen.insert(id.clone()) {
            errors.push(FieldError::new(pointer, "this case is listed twice"));
            continue;
        }
        if let Some(other) = elsewhere.get(&id) {
            errors.push(FieldError::new(
                pointer,
                format!("this case is on the agenda of session {other}: remove it there first"),
            ));
            continue;
        }
        match state.db.get_case(cellule, &id, since).await? {
            Some(c) if matches!(c.status.as_str(), "accepted" | "in_follow_up") => cases.push(c),
            Some(_) => errors.push(FieldError::new(
                pointer,
                "only accepted or followed-up cases go on an agenda",
            )),
            None => errors.push(FieldError::new(pointer, "no such case in this cellule")),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let sched = load_schedule(state, cellule).await?;
    let dir = load_directory(state, cellule).await?;
    let mut candidates = Vec::new();
    for c in &cases {
        let mut cand = candidate(&EligibleCase::from(c))?;
        if let Some(existing) = current.iter().find(|i| i.case_id == c.id) {
            cand.kind = if existing.kind == "follow_up" {
                Kind::FollowUp
            } else {
                Kind::New
            };
        }
        candidates.push(cand);
    }
    let (slots, _) = agenda::slots(candidates, capacity(sched.as_ref(), &s));
    let mut items = Vec::new();
    for (slot, c) in slots.iter().zip(&cases) {
        let proposal = match current.iter().find(|i| i.case_id == c.id) {
            Some(existing) => existing.proposal.clone(),
            None => proposal_json(&dir, &EligibleCase::from(c))?,
        };
        items.push(NewAgendaItem {
            case_id: c.id.clone(),
            position: slot.position,
            kind: slot.candidate.kind.as_str(),
            minutes: slot.minutes,
            proposal,
        });
    }
    let a = who.audit();
    let touched: Vec<(&str, &str)> = cases
        .iter()
        .map(|c| (c.id.as_str(), c.reference.as_str()))
        .collect();
    let drafts = session_entry(&a, Action::EditAgenda, now, &s.id, &touched);
    let head = state
        .db
        .replace_agenda(cellule, &s.id, &items, None, now, drafts)
        .await?;
    audit::written(state, cellule, &head).await;
    current_view(state, who, &s.id, sched.as_ref()).await
}

/// `POST …/sessions/{sid}/agenda/publish`.
pub async fn publish(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
) -> Result<AgendaView, ApiError> {
    allowed_audited(state, who, "manage_agenda", Action::PublishAgenda).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    open_for_changes(&s)?;
    let rows = state.db.agenda(&s.id).await?;
    if rows.is_empty() {
        return Err(ApiError::Conflict(
            "This agenda is empty: build it first.".into(),
        ));
    }
    let stale: Vec<&str> = rows
        .iter()
        .filter(|r| !matches!(r.status.as_str(), "accepted" | "in_follow_up"))
        .map(|r| r.reference.as_str())
        .collect();
    if !stale.is_empty() {
        return Err(ApiError::Conflict(format!(
            "These cases changed since the agenda was built ({}): rebuild or edit the agenda.",
            stale.join(", ")
        )));
    }
    let now = state.clock.now();
    let actor = who.membership.subject.as_str();
    let mut invited = Vec::new();
    let mut moves = Vec::new();
    for r in &rows {
        let orgs: Vec<String> = match serde_json::from_str::<serde_json::Value>(&r.proposal) {
            Ok(v) if v["status"] == "routed" => std::iter::once(&v["lead_name"])
                .chain(v["other_names"].as_array().into_iter().flatten())
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        invited.push((r.case_id.clone(), crate::storage::invitation_list(&orgs)));
        moves.push(transition(
            &r.case_id,
            cellule,
            &r.status,
            "scheduled",
            actor,
            now,
        ));
    }
    let a = who.audit();
    let touched: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.case_id.as_str(), r.reference.as_str()))
        .collect();
    let drafts = session_entry(&a, Action::PublishAgenda, now, &s.id, &touched);
    let head = state
        .db
        .publish_agenda(cellule, &s, &invited, &moves, now, drafts)
        .await?;
    audit::written(state, cellule, &head).await;
    let sched = load_schedule(state, cellule).await?;
    current_view(state, who, &s.id, sched.as_ref()).await
}

// --- decisions --------------------------------------------------------------------------------

/// `POST …/sessions/{sid}/items/{case_id}/decision`.
pub async fn decide(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
    case_id: &str,
    req: DecisionRequest,
) -> Result<DecisionView, ApiError> {
    allowed_audited(state, who, "record_decision", Action::RecordDecision).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    let rows = state.db.agenda(&s.id).await?;
    let now = state.clock.now();
    let a = who.audit();
    let Some(item) = rows.iter().find(|r| r.case_id == case_id) else {
        // Recorded like any request about a case that is not there.
        let mut draft = a
            .entry(Action::RecordDecision, now)
            .target("session", &s.id)
            .denied(audit::reason::NOT_FOUND);
        if let Ok(id) = uuid::Uuid::parse_str(case_id) {
            draft = draft.case(&id.to_string(), None);
        }
        audit::log(state, cellule, vec![draft]).await?;
        return Err(ApiError::NotFound("agenda item"));
    };
    let case = state
        .db
        .get_case(cellule, case_id, access::agenda_since(now))
        .await?
        .ok_or(ApiError::NotFound("agenda item"))?;
    let result = decide_on(state, who, &s, item, &case, req).await;
    if let Err(e) = &result
        && let Some(reason) = audit::refusal_reason(e)
    {
        let draft = a
            .entry(Action::RecordDecision, now)
            .case(&case.id, Some(&case.reference))
            .target("session", &s.id)
            .denied(reason);
        audit::log(state, cellule, vec![draft]).await?;
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
) -> Result<DecisionView, ApiError> {
    let cellule = slug(who);
    if s.published_at.is_none() {
        return Err(ApiError::Conflict(
            "Publish the agenda before recording decisions.".into(),
        ));
    }
    if item.decision_outcome.is_some() {
        return Err(ApiError::Conflict("This item is already decided.".into()));
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
    let dir = load_directory(state, cellule).await?;
    let interlocutor = match &req.interlocutor {
        Some(name) => match dir.interlocutor(name) {
            Some(i) => Some(i.name.clone()),
            None => match Organisation::parse(name) {
                Ok(o) => Some(o.as_str().to_owned()),
                Err(e) => {
                    errors.push(FieldError::new("/interlocutor", e.to_string()));
                    None
                }
            },
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
        return Err(ApiError::Validation(errors));
    }
    let guard = crate::domain::guard::Guard::new(state.clock.now().date_naive());
    let mut hits = Vec::new();
    if let Some(t) = &req.text {
        hits.extend(guard.scan("text", t));
    }
    for (i, x) in req.actions.iter().enumerate() {
        hits.extend(guard.scan(&format!("actions.{i}"), x));
    }
    if !hits.is_empty() {
        return Err(ApiError::Identifiers(hits));
    }
    if case.status != "scheduled" {
        return Err(ApiError::InvalidTransition(format!(
            "The case is {}, not scheduled.",
            case.status
        )));
    }
    let key = state
        .keys
        .open_case_key(&case.cellule, &case.id, &case.key_wrapped)
        .map_err(|_| ApiError::Integrity(format!("cellule={cellule} case={} data key", case.id)))?;
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
        .map_err(|e| ApiError::Internal(format!("encryption failed: {e}")))
    };
    let text = req
        .text
        .as_deref()
        .map(|t| seal(&decision_id, "text", t))
        .transpose()?;
    let actions = if req.actions.is_empty() {
        None
    } else {
        let json =
            serde_json::to_string(&req.actions).map_err(|e| ApiError::Internal(e.to_string()))?;
        Some(seal(&decision_id, "actions", &json)?)
    };
    let now = state.clock.now();
    let to = match req.outcome {
        Outcome::Routed | Outcome::FollowUp => "in_follow_up",
        Outcome::Closed => "closed",
        Outcome::Deferred => {
            if item.kind == "follow_up" {
                "in_follow_up"
            } else {
                "accepted"
            }
        }
    };
    let mut t = transition(
        &case.id,
        cellule,
        "scheduled",
        to,
        who.membership.subject.as_str(),
        now,
    );
    t.follow_up_date = req.follow_up_date;
    // Only routing assigns an interlocutor (and so opens its members' access, SPEC §7).
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
        outcome: req.outcome.as_str().to_owned(),
        interlocutor: interlocutor.clone(),
        follow_up_date: req.follow_up_date,
        actions,
        text,
        decided_by: who.membership.subject.as_str().to_owned(),
        decided_at: now,
    };
    let draft = who
        .audit()
        .entry(Action::RecordDecision, now)
        .case(&case.id, Some(&case.reference))
        .target("decision", &decision_id);
    let head = state
        .db
        .record_decision(&record, &t, draft)
        .await?
        .ok_or_else(|| {
            ApiError::InvalidTransition("The case changed meanwhile; reload it.".into())
        })?;
    audit::written(state, cellule, &head).await;
    Ok(DecisionView {
        id: decision_id,
        case_id: case.id.clone(),
        reference: case.reference.clone(),
        outcome: req.outcome,
        interlocutor,
        follow_up_date: req.follow_up_date,
        status: parse(to, CaseStatus::parse, "status")?,
        decided_at: now,
    })
}

// --- calendar ---------------------------------------------------------------------------------

/// `GET …/sessions/{sid}/calendar.ics`: the session with its item references (visible ones for
/// members), never case content.
pub async fn calendar(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
) -> Result<String, ApiError> {
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
    audit::log(state, cellule, drafts).await?;
    let starts_at = DateTime::parse_from_rfc3339(&s.local_start)
        .map_err(|e| ApiError::Internal(format!("stored session start: {e}")))?;
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
        cancelled: s.status == "cancelled",
        sequence: u32::from(s.published_at.is_some()) + u32::from(s.status == "cancelled"),
    };
    Ok(schedule::calendar(
        who.cellule.name.as_str(),
        &s.time_zone,
        &[event],
        now,
    ))
}

// --- routing directory ------------------------------------------------------------------------

/// `GET …/interlocutors`.
pub async fn get_interlocutors(
    state: &AppState,
    who: &CelluleMember,
) -> Result<Interlocutors, ApiError> {
    allowed(state, who, "manage_routing").await?;
    Ok(Interlocutors {
        interlocutors: load_directory(state, slug(who)).await?.interlocutors,
    })
}

/// `PUT …/interlocutors`: replaces the directory's interlocutors (the rules must still hold).
pub async fn put_interlocutors(
    state: &AppState,
    who: &CelluleMember,
    body: Interlocutors,
) -> Result<Interlocutors, ApiError> {
    allowed(state, who, "manage_routing").await?;
    let cellule = slug(who);
    let mut dir = load_directory(state, cellule).await?;
    dir.interlocutors = body.interlocutors;
    dir.validate().map_err(|errors| {
        ApiError::Validation(
            errors
                .into_iter()
                .map(|e| {
                    FieldError::new(
                        e.pointer.replacen("/interlocutor", "/interlocutors", 1),
                        e.detail,
                    )
                })
                .collect(),
        )
    })?;
    store_directory(state.db.as_ref(), cellule, &dir, state.clock.now()).await?;
    Ok(Interlocutors {
        interlocutors: dir.interlocutors,
    })
}

/// `GET …/routing`.
pub async fn get_rules(state: &AppState, who: &CelluleMember) -> Result<RoutingRules, ApiError> {
    allowed(state, who, "manage_routing").await?;
    Ok(RoutingRules {
        rules: load_directory(state, slug(who)).await?.rules,
    })
}

/// `PUT …/routing`: replaces the ordered rules.
pub async fn put_rules(
    state: &AppState,
    who: &CelluleMember,
    body: RoutingRules,
) -> Result<RoutingRules, ApiError> {
    allowed(state, who, "manage_routing").await?;
    let cellule = slug(who);
    let mut dir = load_directory(state, cellule).await?;
    dir.rules = body.rules;
    dir.validate().map_err(|errors| {
        ApiError::Validation(
            errors
                .into_iter()
                .map(|e| FieldError::new(e.pointer.replacen("/rule", "/rules", 1), e.detail))
                .collect(),
        )
    })?;
    store_directory(state.db.as_ref(), cellule, &dir, state.clock.now()).await?;
    Ok(RoutingRules { rules: dir.rules })
}

/// Replaces a cellule's whole directory (CLI import).
pub async fn import_directory(
    db: &dyn crate::storage::Database,
    cellule: &str,
    dir: &Directory,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    dir.validate().map_err(ApiError::Validation)?;
    store_directory(db, cellule, dir, now).await
}

/// A cellule's directory (CLI export).
pub async fn export_directory(
    db: &dyn crate::storage::Database,
    cellule: &str,
) -> Result<Directory, ApiError> {
    match db.get_directory(cellule).await? {
        Some(doc) => serde_json::from_str(&doc)
            .map_err(|e| ApiError::Internal(format!("stored directory does not parse: {e}"))),
        None => Ok(Directory::default()),
    }
}

// --- statistics -------------------------------------------------------------------------------

fn median(mut days: Vec<f64>) -> Delay {
    let n = days.len() as i64;
    if n == 0 {
        return Delay {
            median_days: None,
            suppressed: false,
        };
    }
    if n < SUPPRESS_BELOW {
        return Delay {
            median_days: None,
            suppressed: true,
        };
    }
    days.sort_by(|a, b| a.total_cmp(b));
    let mid = days.len() / 2;
    let m = if days.len().is_multiple_of(2) {
        (days[mid - 1] + days[mid]) / 2.0
    } else {
        days[mid]
    };
    Delay {
        median_days: Some((m * 10.0).round() / 10.0),
        suppressed: false,
    }
}

fn days_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_seconds() as f64 / 86_400.0
}

/// `GET …/stats?year=`.
pub async fn stats(state: &AppState, who: &CelluleMember, year: i32) -> Result<Stats, ApiError> {
    allowed(state, who, "read_stats").await?;
    if !(2000..=2100).contains(&year) {
        return Err(ApiError::invalid("/year", "must be between 2000 and 2100"));
    }
    let cellule = slug(who);
    let start = |y: i32| {
        NaiveDate::from_ymd_opt(y, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
            .ok_or_else(|| ApiError::invalid("/year", "not a year"))
    };
    let (from, to) = (start(year)?, start(year + 1)?);
    let cases = state.db.stats_cases(cellule, from, to).await?;
    let outcomes = state.db.stats_outcomes(cellule, from, to).await?;
    let dir = load_directory(state, cellule).await?;

    let mut by_month = [0i64; 12];
    let mut by_need = std::collections::BTreeMap::new();
    let mut by_kind = std::collections::BTreeMap::new();
    let (mut to_review, mut to_close_from_review, mut to_close) =
        (Vec::new(), Vec::new(), Vec::new());
    for c in &cases {
        by_month[c.submitted_at.month0() as usize] += 1;
        for n in needs_of(&c.needs)? {
            *by_need.entry(n.as_str()).or_insert(0i64) += 1;
        }
        let kind = dir
            .kind_of_organisation(&c.referring_org)
            .map_or("unknown", |k| k.as_str());
        *by_kind.entry(kind).or_insert(0i64) += 1;
        if let Some(r) = c.first_review_at {
            to_review.push(days_between(c.submitted_at, r));
            if let Some(closed) = c.closed_at {
                to_close_from_review.push(days_between(r, closed));
            }
        }
        if let Some(closed) = c.closed_at {
            to_close.push(days_between(c.submitted_at, closed));
        }
    }
    let mut by_outcome = std::collections::BTreeMap::new();
    for o in [
        Outcome::Routed,
        Outcome::FollowUp,
        Outcome::Closed,
        Outcome::Deferred,
    ] {
        by_outcome.insert(o.as_str(), 0i64);
    }
    for o in &outcomes {
        *by_outcome.entry(o.as_str()).or_insert(0) += 1;
    }
    for n in Need::ALL {
        by_need.entry(n.as_str()).or_insert(0);
    }
    Ok(Stats {
        year,
        referrals: count("total", cases.len() as i64),
        by_month: partition(
            by_month
                .iter()
                .enumerate()
                .map(|(m, n)| (format!("{year}-{:02}", m + 1), *n))
                .collect(),
        ),
        // Needs overlap (a case has several): not a partition of the total.
        by_need: by_need.into_iter().map(|(k, n)| count(k, n)).collect(),
        by_referring_org_kind: partition(
            by_kind
                .into_iter()
                .map(|(k, n)| (k.to_owned(), n))
                .collect(),
        ),
        decisions_by_outcome: partition(
            by_outcome
                .into_iter()
                .map(|(k, n)| (k.to_owned(), n))
                .collect(),
        ),
        referral_to_first_review: median(to_review),
        first_review_to_closure: median(to_close_from_review),
        referral_to_closure: median(to_close),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_counts_are_suppressed() {
        assert_eq!(count("a", 0).count, Some(0));
        assert!(!count("a", 0).suppressed);
        for n in 1..5 {
            let c = count("a", n);
            assert_eq!(c.count, None);
            assert!(c.suppressed);
        }
        assert_eq!(count("a", 5).count, Some(5));
    }

    #[test]
    fn a_lone_suppressed_cell_takes_another_with_it() {
        let cells = |v: &[i64]| {
            v.iter()
                .enumerate()
                .map(|(i, n)| (i.to_string(), *n))
                .collect()
        };
        let out = partition(cells(&[3, 7, 12, 0]));
        let shown: Vec<Option<i64>> = out.iter().map(|c| c.count).collect();
        assert_eq!(shown, [None, None, Some(12), Some(0)]);
        // Two suppressed cells already hide each other.
        let out = partition(cells(&[3, 2, 12]));
        let shown: Vec<Option<i64>> = out.iter().map(|c| c.count).collect();
        assert_eq!(shown, [None, None, Some(12)]);
        // ... unless they are all ones: their sum would give each away.
        let out = partition(cells(&[1, 1, 12, 30]));
        let shown: Vec<Option<i64>> = out.iter().map(|c| c.count).collect();
        assert_eq!(shown, [None, None, None, Some(30)]);
        // One small cell and nothing else to hide it with: it is the total, itself suppressed.
        let out = partition(cells(&[2, 0]));
        assert_eq!(out[0].count, None);
        assert_eq!(out[1].count, Some(0));
        // Nothing small: nothing hidden.
        assert!(partition(cells(&[5, 9])).iter().all(|c| !c.suppressed));
    }

    #[test]
    fn medians_are_suppressed_below_five_cases() {
        assert!(median(vec![1.0, 2.0, 3.0, 4.0]).suppressed);
        let m = median(vec![5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(m.median_days, Some(3.0));
        let m = median(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(m.median_days, Some(3.5));
    }
}
