//! A session's agenda: built from the eligible cases, edited by the coordinator, published to the
//! members (which opens their access to each item for 30 days after the session).

use super::sessions::SessionView;
use super::*;
use crate::domain::session::Outcome;

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
    pub decision: Option<Outcome>,
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
    /// Case ids in order. Once the agenda is published: exactly its current items (case ids or
    /// references), in their new order.
    pub items: Vec<String>,
}

pub(super) fn capacity(sched: Option<&Schedule>, s: &SessionRecord) -> Capacity {
    Capacity {
        duration_minutes: s.duration_minutes,
        minutes_per_new_case: sched.map_or(20, |x| i64::from(x.minutes_per_new_case)),
        minutes_per_follow_up: sched.map_or(10, |x| i64::from(x.minutes_per_follow_up)),
    }
}

fn candidate(c: &EligibleCase) -> Result<Candidate, Error> {
    let follow_up = c.status == CaseStatus::InFollowUp;
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
        urgency: c.urgency,
        // Counted when a session is published: this session's own draft deferral is not.
        times_deferred: c.times_deferred,
        waiting_since,
        kind: if follow_up { Kind::FollowUp } else { Kind::New },
    })
}

pub(super) fn proposal_json(dir: &Directory, c: &EligibleCase) -> Result<String, Error> {
    let needs = c.needs.as_slice().to_vec();
    let proposal = routing::propose(
        dir,
        &routing::CaseFacts {
            needs: &needs,
            commune: c.commune.as_deref(),
            sector: c.sector.as_deref(),
        },
    );
    serde_json::to_string(&proposal).map_err(|e| Error::Internal(e.to_string()))
}

fn open_for_changes(s: &SessionRecord) -> Result<(), Error> {
    if s.status != SessionStatus::Planned {
        return Err(Error::Conflict("This session is cancelled.".into()));
    }
    if s.published_at.is_some() {
        return Err(Error::Conflict(
            "This agenda is published: it is no longer built or published again; add or \
             withdraw an item with POST or DELETE …/agenda/items, reorder with PUT …/agenda."
                .into(),
        ));
    }
    Ok(())
}

/// The organisations invited to an item (every one of its routing proposal), as the stored
/// invitation list of its publication row.
pub(crate) fn invited_of(proposal: &str) -> String {
    let orgs: Vec<String> = match serde_json::from_str::<serde_json::Value>(proposal) {
        Ok(v) if v["status"] == "routed" => std::iter::once(&v["lead_name"])
            .chain(v["other_names"].as_array().into_iter().flatten())
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    crate::storage::invitation_list(&orgs)
}

/// `POST …/sessions/{sid}/agenda/build`.
pub async fn build(state: &AppState, who: &CelluleMember, sid: &str) -> Result<AgendaView, Error> {
    allowed_audited(state, who, "manage_agenda", Action::BuildAgenda).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    open_for_changes(&s)?;
    let tz = crate::domain::schedule::parse_tz(&s.time_zone).unwrap_or(chrono_tz::Europe::Paris);
    let due_by = s.starts_at.with_timezone(&tz).date_naive();
    let now = state.clock.now();
    // The eligible cases (thousands) are read while the schedule and the directory are.
    let (sched, cases, dir) = tokio::try_join!(
        load_schedule(state, cellule),
        async { Ok::<_, Error>(state.db.eligible_cases(cellule, &s.id, due_by, now).await?) },
        load_directory(state, cellule),
    )?;
    let candidates = cases.iter().map(candidate).collect::<Result<Vec<_>, _>>()?;
    let built = crate::domain::agenda::build(candidates, capacity(sched.as_ref(), &s));
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
        let c = c.ok_or_else(|| Error::Internal("candidate without its case".into()))?;
        let item = NewAgendaItem {
            case_id: i.candidate.case_id.clone(),
            position: i.position,
            kind: i.candidate.kind,
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
    audit_log::committed(state, cellule, &head).await;
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
        status: c.status,
        urgency: c.urgency,
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
pub(super) async fn current_view(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
    sched: Option<&Schedule>,
) -> Result<AgendaView, Error> {
    let s = session(state, slug(who), sid).await?;
    let rows = state.db.agenda(&s.id).await?;
    agenda_view(state, &s, &rows, sched, None).await
}

/// The items of a session's agenda `p` may see, as (case id, reference): an unpublished agenda
/// is the coordinator's draft and shows others nothing; then each item whose case `p` may see.
pub(super) async fn items_seen(
    state: &AppState,
    p: &Principal,
    s: &SessionRecord,
    rows: &[AgendaItemRecord],
) -> Result<Vec<(String, String)>, Error> {
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
) -> Result<AgendaView, Error> {
    agenda_view_first(state, session, rows, sched, visible, i64::MAX).await
}

/// [`agenda_view`] with only the first `deferred` deferrals (by reference).
async fn agenda_view_first(
    state: &AppState,
    session: &SessionRecord,
    rows: &[AgendaItemRecord],
    sched: Option<&Schedule>,
    visible: Option<&[String]>,
    deferred: i64,
) -> Result<AgendaView, Error> {
    let deferred = if visible.is_none() {
        state
            .db
            .agenda_deferred_first(&session.id, deferred)
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
pub(super) fn agenda_view_of(
    session: &SessionRecord,
    rows: &[AgendaItemRecord],
    sched: Option<&Schedule>,
    visible: Option<&[String]>,
    deferred: Vec<DeferredView>,
) -> Result<AgendaView, Error> {
    let start = DateTime::parse_from_rfc3339(&session.local_start)
        .map_err(|e| Error::Internal(format!("stored session start: {e}")))?;
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
            .map_err(|e| Error::Internal(format!("stored proposal: {e}")))?;
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
) -> Result<AgendaItemView, Error> {
    Ok(AgendaItemView {
        case_id: r.case_id.clone(),
        reference: r.reference.clone(),
        position: r.position,
        kind: r.kind.as_str().to_owned(),
        minutes: r.minutes,
        starts_at: start.to_rfc3339(),
        ends_at: (start + Duration::minutes(r.minutes)).to_rfc3339(),
        urgency: r.urgency,
        needs: r.needs.as_slice().to_vec(),
        commune: r.commune.clone(),
        sector: r.sector.clone(),
        status: r.status,
        times_deferred: r.times_deferred,
        proposal,
        decision: r.decision_outcome,
    })
}

/// `GET …/sessions/{sid}/agenda`: the coordinator sees everything; members the items they may
/// see (published agenda, routed or invited organisation).
pub async fn get_agenda(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
) -> Result<AgendaView, Error> {
    read_agenda(state, who, sid, i64::MAX).await
}

/// [`get_agenda`] for a page that names the first `shown` deferred cases and counts the others
/// (a crowded month defers thousands): the view with those, and how many there are in all.
/// Read and recorded as `GET …/agenda` is.
pub async fn get_agenda_naming(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
    shown: usize,
) -> Result<(AgendaView, usize), Error> {
    let shown = i64::try_from(shown).unwrap_or(i64::MAX);
    let view = read_agenda(state, who, sid, shown).await?;
    let total = if view.deferred.len() as i64 >= shown {
        let n = state.db.agenda_deferred_count(&view.session.id).await?;
        usize::try_from(n).unwrap_or(usize::MAX)
    } else {
        view.deferred.len()
    };
    Ok((view, total))
}

async fn read_agenda(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
    deferred: i64,
) -> Result<AgendaView, Error> {
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
    audit_log::record(state, cellule, drafts).await?;
    let visible: Vec<String> = shown.into_iter().map(|(id, _)| id).collect();
    let all = p.role == "coordinator";
    agenda_view_first(
        state,
        &s,
        &rows,
        sched.as_ref(),
        if all { None } else { Some(&visible) },
        deferred,
    )
    .await
}

/// `PUT …/sessions/{sid}/agenda`: the coordinator's order (add, remove, reorder); once the
/// agenda is published, a new order of its items only ([`super::agenda_amend::reorder`]).
pub async fn edit(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
    req: AgendaEdit,
) -> Result<AgendaView, Error> {
    allowed_audited(state, who, "manage_agenda", Action::EditAgenda).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    if s.published_at.is_some() && s.status != SessionStatus::Cancelled {
        // Published: the same items, in another order (docs/design.md §10).
        return super::agenda_amend::reorder(state, who, s, req).await;
    }
    open_for_changes(&s)?;
    if req.items.len() > MAX_AGENDA_ITEMS {
        return Err(Error::invalid(
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
        return Err(Error::Validation(errors));
    }
    let sched = load_schedule(state, cellule).await?;
    let dir = load_directory(state, cellule).await?;
    let mut candidates = Vec::new();
    for c in &cases {
        let mut cand = candidate(&EligibleCase::from(c))?;
        if let Some(existing) = current.iter().find(|i| i.case_id == c.id) {
            cand.kind = if existing.kind == Kind::FollowUp {
                Kind::FollowUp
            } else {
                Kind::New
            };
        }
        candidates.push(cand);
    }
    let (slots, _) = crate::domain::agenda::slots(candidates, capacity(sched.as_ref(), &s));
    let mut items = Vec::new();
    for (slot, c) in slots.iter().zip(&cases) {
        let proposal = match current.iter().find(|i| i.case_id == c.id) {
            Some(existing) => existing.proposal.clone(),
            None => proposal_json(&dir, &EligibleCase::from(c))?,
        };
        items.push(NewAgendaItem {
            case_id: c.id.clone(),
            position: slot.position,
            kind: slot.candidate.kind,
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
    audit_log::committed(state, cellule, &head).await;
    current_view(state, who, &s.id, sched.as_ref()).await
}

/// `POST …/sessions/{sid}/agenda/publish`.
pub async fn publish(
    state: &AppState,
    who: &CelluleMember,
    sid: &str,
) -> Result<AgendaView, Error> {
    allowed_audited(state, who, "manage_agenda", Action::PublishAgenda).await?;
    let cellule = slug(who);
    let s = session(state, cellule, sid).await?;
    open_for_changes(&s)?;
    let rows = state.db.agenda(&s.id).await?;
    if rows.is_empty() {
        return Err(Error::Conflict(
            "This agenda is empty: build it first.".into(),
        ));
    }
    let stale: Vec<&str> = rows
        .iter()
        .filter(|r| !matches!(r.status.as_str(), "accepted" | "in_follow_up"))
        .map(|r| r.reference.as_str())
        .collect();
    if !stale.is_empty() {
        return Err(Error::Conflict(format!(
            "These cases changed since the agenda was built ({}): rebuild or edit the agenda.",
            stale.join(", ")
        )));
    }
    let now = state.clock.now();
    let actor = who.membership.subject.as_str();
    let mut invited = Vec::new();
    let mut moves = Vec::new();
    for r in &rows {
        invited.push((r.case_id.clone(), invited_of(&r.proposal)));
        moves.push(transition(
            &r.case_id,
            cellule,
            r.status,
            CaseStatus::Scheduled,
            actor,
            now,
        ));
    }
    let a = who.audit();
    let touched: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.case_id.as_str(), r.reference.as_str()))
        .collect();
    let mut drafts = session_entry(&a, Action::PublishAgenda, now, &s.id, &touched);
    let published = SessionRecord {
        published_at: Some(now),
        ..s.clone()
    };
    let ctx = notify::SessionContext {
        cellule,
        cellule_name: who.cellule.name.as_str(),
        session: &published,
        now,
    };
    let invitations = notify::session_notices(state, &ctx, &rows, NoticeKind::Invitation).await?;
    with_notices(&mut drafts, invitations);
    let head = state
        .db
        .publish_agenda(cellule, &s, &invited, &moves, now, drafts)
        .await?;
    audit_log::committed(state, cellule, &head).await;
    let sched = load_schedule(state, cellule).await?;
    current_view(state, who, &s.id, sched.as_ref()).await
}
