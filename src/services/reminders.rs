//! Scheduled notices (docs/notifications.md), run every few minutes by the server and by
//! `run_scheduled` in tests: the reminder of a published session the day before (in the
//! cellule's zone), and once a day, to each organisation that owns something falling due by
//! tomorrow or overdue, and to the coordinators, a digest that counts them (no reference, no
//! content). Each is sent once whatever the number of replicas: the replica that marks it
//! (`sessions.reminded_at`, `due_notices`) writes its messages in that transaction.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};

use super::AppState;
use super::notify::{self, SessionContext};
use crate::audit::{Action, Actor, AuditCtx};
use crate::domain::Role;
use crate::domain::notice::{Message, NoticeKind};
use crate::domain::session::SessionStage;
use crate::error::Error;
use crate::render::notice::Notice;

fn system(cellule: &str) -> AuditCtx {
    AuditCtx {
        cellule: cellule.to_owned(),
        actor: Actor::system("notices"),
        request_id: None,
    }
}

/// Sends what is due now; answers how many messages were written to the outbox.
pub async fn run_scheduled(state: &AppState) -> Result<usize, Error> {
    let mut written = 0;
    for cellule in state.db.list_cellules().await? {
        written += reminders(state, cellule.slug.as_str(), cellule.name.as_str()).await?;
        written += due_digests(state, cellule.slug.as_str(), cellule.name.as_str()).await?;
    }
    Ok(written)
}

async fn reminders(state: &AppState, cellule: &str, name: &str) -> Result<usize, Error> {
    let now = state.clock.now();
    let mut written = 0;
    let soon = state
        .db
        .list_sessions(cellule, Some(now), Some(now + Duration::hours(49)))
        .await?;
    for s in soon {
        if s.stage() != SessionStage::Published || s.reminded_at.is_some() {
            continue;
        }
        let Ok(zone) = s.time_zone.parse::<chrono_tz::Tz>() else {
            continue;
        };
        let tomorrow = now.with_timezone(&zone).date_naive() + Duration::days(1);
        if s.starts_at.with_timezone(&zone).date_naive() != tomorrow {
            continue;
        }
        let rows = state.db.agenda(&s.id).await?;
        let ctx = SessionContext {
            cellule,
            cellule_name: name,
            session: &s,
            now,
        };
        let notices = notify::session_notices(state, &ctx, &rows, NoticeKind::Reminder).await?;
        let n = notices.len();
        let draft = system(cellule)
            .entry(Action::SendReminder, now)
            .target("session", &s.id)
            .detail(&serde_json::json!({ "messages": n }))
            .notify(notices);
        if let Some(head) = state.db.mark_reminded(cellule, &s.id, now, draft).await? {
            super::audit_log::committed(state, cellule, &head).await;
            written += n;
        }
    }
    Ok(written)
}

/// The organisation key of the coordinators' digest (every owner).
const ALL_OWNERS: &str = "*";

async fn due_digests(state: &AppState, cellule: &str, name: &str) -> Result<usize, Error> {
    let now = state.clock.now();
    let today = now.date_naive();
    let due = state
        .db
        .due_items(cellule, None, today + Duration::days(1))
        .await?;
    if due.is_empty() {
        return Ok(0);
    }
    // (due by tomorrow, of which overdue) per owner, and for everyone.
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for d in &due {
        let overdue = usize::from(d.due_on < today);
        for key in [d.owner.clone().unwrap_or_default(), ALL_OWNERS.to_owned()] {
            if key.is_empty() {
                continue;
            }
            let c = counts.entry(key).or_default();
            c.0 += 1;
            c.1 += overdue;
        }
    }
    let recipients = notify::recipients(state, cellule).await?;
    let mut written = 0;
    for (owner, (total, overdue)) in counts {
        let notices: Vec<Message> = recipients
            .iter()
            .filter(|r| match owner.as_str() {
                ALL_OWNERS => r.role == Role::Coordinator,
                org => r.role == Role::Member && r.organisation == org,
            })
            .filter(|r| !r.off.iter().any(|k| k == NoticeKind::ActionsDue.as_str()))
            .map(|r| digest(state, cellule, name, r, &owner, total, overdue, today))
            .collect::<Result<_, _>>()?;
        let n = notices.len();
        let draft = system(cellule)
            .entry(Action::SendDueNotice, now)
            .target("organisation", &owner)
            .detail(&serde_json::json!({ "due": total, "overdue": overdue, "messages": n }))
            .notify(notices);
        if let Some(head) = state
            .db
            .mark_due_notice(cellule, &owner, today, draft)
            .await?
        {
            super::audit_log::committed(state, cellule, &head).await;
            written += n;
        }
    }
    Ok(written)
}

#[allow(clippy::too_many_arguments)]
fn digest(
    state: &AppState,
    cellule: &str,
    name: &str,
    r: &notify::Recipient,
    owner: &str,
    total: usize,
    overdue: usize,
    today: NaiveDate,
) -> Result<Message, Error> {
    let whose = if owner == ALL_OWNERS {
        "de la cellule".to_owned()
    } else {
        "de votre organisation".to_owned()
    };
    let n = Notice {
        cellule_name: name.to_owned(),
        title: format!("Suivis : {total} échéance(s), dont {overdue} en retard"),
        lines: vec![format!(
            "Au {}, {total} action(s) ou suivi(s) {whose} arrivent à échéance d'ici demain, dont \
             {overdue} en retard. La liste est accessible après connexion.",
            crate::render::french::date(today)
        )],
        link: format!("{}/c/{cellule}", notify::base_url(state)),
        link_label: "Voir les suivis".into(),
        preferences_link: format!("{}/c/{cellule}", notify::base_url(state)),
    };
    notify::message(
        cellule,
        r,
        NoticeKind::ActionsDue,
        &n,
        Vec::new(),
        None,
        state.clock.now(),
    )
}
