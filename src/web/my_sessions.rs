//! The member's sessions: *Mes séances* (`/c/{cellule}/mes-seances`: the next sessions and, for
//! each published one, its agenda with only the items the member may see, and the calendar
//! file), and the approved compte rendu of a session (`/c/{cellule}/comptes-rendus/{sid}`, with
//! its PDF). The agenda, calendar and minutes are the API's use cases: the same policies choose
//! the items, the same audit entries are written.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::DateTime;

use super::WebState;
use super::home::{charter_gate, chrome, enter};
use super::minutes_view::MinutesBody;
use super::page::{self, Chrome, render};
use super::session::Signed;
use super::text;
use crate::domain::minutes::MinutesState;
use crate::domain::session::SessionStage;
use crate::error::Error;
use crate::render::french;
use crate::services::review::{agenda, minutes, sessions};

/// A session's start as the cellule's clock shows it (« jeudi 12 mars 2026 à 14 h 00 »).
fn starts(local: &str) -> String {
    DateTime::parse_from_rfc3339(local)
        .map(|t| french::date_time(t.naive_local()))
        .unwrap_or_else(|_| local.to_owned())
}

fn stage(s: SessionStage) -> &'static str {
    match s {
        SessionStage::Planned => "Ordre du jour en préparation",
        SessionStage::Published => "Ordre du jour publié",
        SessionStage::InSession => "Séance en cours",
        SessionStage::Held => "Séance tenue, compte rendu en préparation",
        SessionStage::MinutesApproved => "Compte rendu approuvé",
        SessionStage::Cancelled => "Séance annulée",
    }
}

struct ItemRow {
    position: i64,
    reference: String,
    href: String,
    kind: &'static str,
    slot: String,
    urgency: &'static str,
}

struct SessionBlock {
    id: String,
    when: String,
    location: String,
    stage: &'static str,
    /// The agenda, when published (only the items the member may see).
    items: Option<Vec<ItemRow>>,
    calendar: String,
}

struct MinutesLink {
    when: String,
    href: String,
}

#[derive(Template)]
#[template(path = "my_sessions.html")]
struct SessionsPage {
    c: Chrome,
    sessions: Vec<SessionBlock>,
    minutes: Vec<MinutesLink>,
}

/// The slot of an item: « 14 h 00 – 14 h 20 ».
fn slot(from: &str, to: &str) -> String {
    match (
        DateTime::parse_from_rfc3339(from),
        DateTime::parse_from_rfc3339(to),
    ) {
        (Ok(a), Ok(b)) => format!(
            "{} – {}",
            french::time(a.naive_local()),
            french::time(b.naive_local())
        ),
        _ => String::new(),
    }
}

/// `GET /c/{cellule}/mes-seances`.
pub async fn mine(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let base = format!("/c/{}", member.slug());
    let here = format!("{base}/mes-seances");
    if let Err(r) = charter_gate(&state, &member, &here) {
        return r;
    }
    let all = match sessions::list_sessions(&state.app, &member, Default::default()).await {
        Ok(l) => l,
        Err(e) => return page::error(e),
    };
    let today = state.app.clock.now().date_naive();
    let mut blocks = Vec::new();
    let mut approved = Vec::new();
    for s in all {
        let day = DateTime::parse_from_rfc3339(&s.starts_at).map(|t| t.date_naive());
        if s.status == SessionStage::MinutesApproved {
            approved.push(MinutesLink {
                when: starts(&s.starts_at),
                href: format!("{base}/comptes-rendus/{}", s.id),
            });
            continue;
        }
        if day.is_ok_and(|d| d < today) || s.status == SessionStage::Held {
            continue;
        }
        let items = if matches!(s.status, SessionStage::Published | SessionStage::InSession) {
            match agenda::get_agenda(&state.app, &member, &s.id).await {
                Ok(a) => Some(
                    a.items
                        .into_iter()
                        .map(|i| ItemRow {
                            position: i.position,
                            href: format!("{base}/situations/{}", i.reference),
                            reference: i.reference,
                            kind: if i.kind == "new" {
                                "Nouvelle situation"
                            } else {
                                "Point de suivi"
                            },
                            slot: slot(&i.starts_at, &i.ends_at),
                            urgency: text::urgency(i.urgency).0,
                        })
                        .collect(),
                ),
                Err(e) => return page::error(e),
            }
        } else {
            None
        };
        blocks.push(SessionBlock {
            calendar: format!("{base}/mes-seances/{}/calendrier.ics", s.id),
            when: starts(&s.starts_at),
            location: s.location,
            stage: stage(s.status),
            items,
            id: s.id,
        });
    }
    approved.reverse();
    render(
        StatusCode::OK,
        &SessionsPage {
            c: chrome(&state, &signed, &member, "Mes séances", &here),
            sessions: blocks,
            minutes: approved,
        },
    )
}

/// `GET /c/{cellule}/mes-seances/{sid}/calendrier.ics`: the session as an iCalendar file (the
/// references the member may see, never case content).
pub async fn calendar(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, sid)): Path<(String, String)>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    match sessions::calendar(&state.app, &member, &sid).await {
        Ok(ics) => page::download("text/calendar; charset=utf-8", "seance.ics", ics),
        Err(e) => page::error(e),
    }
}

#[derive(Template)]
#[template(path = "minutes.html")]
struct MinutesPage {
    c: Chrome,
    when: String,
    location: String,
    body: MinutesBody,
    pdf: String,
}

/// The approved minutes of `sid` for `member`; the draft is the coordinator's, not here.
async fn approved(
    state: &WebState,
    member: &crate::services::access::CelluleMember,
    sid: &str,
) -> Result<crate::domain::minutes::Minutes, Error> {
    // Minutes not approved yet (or a draft the coordinator reads on its own desk) are not
    // there for this page: the same answer as a missing session.
    let m = match minutes::minutes(&state.app, member, sid).await {
        Err(Error::Conflict(_)) => return Err(Error::NotFound("minutes")),
        other => other?,
    };
    match m.state {
        MinutesState::Approved { .. } => Ok(m),
        MinutesState::Draft => Err(Error::NotFound("minutes")),
    }
}

/// `GET /c/{cellule}/comptes-rendus/{sid}`.
pub async fn minutes_page(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, sid)): Path<(String, String)>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let base = format!("/c/{}", member.slug());
    let here = format!("{base}/comptes-rendus/{sid}");
    if let Err(r) = charter_gate(&state, &member, &here) {
        return r;
    }
    let m = match approved(&state, &member, &sid).await {
        Ok(m) => m,
        Err(e) => return page::error(e),
    };
    let when = french::date_time(m.starts_local);
    let page = MinutesPage {
        c: chrome(
            &state,
            &signed,
            &member,
            &format!("Compte rendu de la séance du {when}"),
            &here,
        ),
        when,
        body: MinutesBody::of(&m, Some(&format!("{base}/situations"))),
        location: m.location,
        pdf: format!("{here}/compte-rendu.pdf"),
    };
    render(StatusCode::OK, &page)
}

/// `GET /c/{cellule}/comptes-rendus/{sid}/compte-rendu.pdf`: the same minutes as a PDF.
pub async fn minutes_pdf(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, sid)): Path<(String, String)>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    if let Err(r) = charter_gate(
        &state,
        &member,
        &format!("/c/{}/comptes-rendus/{sid}", member.slug()),
    ) {
        return r;
    }
    let m = match approved(&state, &member, &sid).await {
        Ok(m) => m,
        Err(e) => return page::error(e),
    };
    match crate::render::minutes_pdf(&m) {
        Ok(pdf) => page::download("application/pdf", "compte-rendu.pdf", pdf),
        Err(e) => page::error(Error::Internal(format!("minutes pdf: {e}"))),
    }
}
