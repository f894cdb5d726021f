//! The compte rendu of a session for the coordinator: the draft from the opening of the
//! meeting (as [`minutes::minutes`] assembles it), its approval, and its PDF
//! ([`crate::render::minutes_pdf`]) downloaded as an attachment.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::WebState;
use super::home::chrome;
use super::minutes_view::MinutesBody;
use super::page::{self, Chrome, render, see_other};
use super::seances::{conflict_message, desk};
use super::session::Signed;
use super::text;
use crate::domain::minutes::{Minutes, MinutesState};
use crate::render::{self, french};
use crate::services::review::minutes;
use crate::storage::MeetingStep;

#[derive(Template)]
#[template(path = "compte_rendu.html")]
struct MinutesPage {
    c: Chrome,
    back: String,
    pdf: String,
    approve: String,
    day: String,
    location: String,
    approved: Option<String>,
    problem: Option<&'static str>,
    body: MinutesBody,
}

fn page_of(m: &Minutes, base: String, c: Chrome, problem: Option<&'static str>) -> MinutesPage {
    MinutesPage {
        c,
        pdf: format!("{base}/compte-rendu.pdf"),
        approve: format!("{base}/compte-rendu/approuver"),
        back: base,
        day: french::date_time(m.starts_local),
        location: m.location.clone(),
        approved: match &m.state {
            MinutesState::Draft => None,
            MinutesState::Approved {
                approved_at,
                approved_by,
            } => Some(format!("le {} par {approved_by}", text::when(*approved_at))),
        },
        problem,
        body: MinutesBody::of(m, None),
    }
}

/// The page, or the session page's French message when there are no minutes yet.
async fn minutes_page(
    state: &WebState,
    signed: &Signed,
    slug: &str,
    sid: &str,
    status: StatusCode,
    problem: Option<&'static str>,
) -> Response {
    let base = format!("/c/{slug}/seances/{sid}");
    let here = format!("{base}/compte-rendu");
    let member = match desk(state, signed, slug, &here).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    match minutes::minutes(&state.app, &member, sid).await {
        Ok(m) => {
            let c = chrome(state, signed, &member, "Compte rendu de la séance", &here);
            render(status, &page_of(&m, base, c, problem))
        }
        Err(e) => page::error(e),
    }
}

/// `GET /c/{cellule}/seances/{sid}/compte-rendu`.
pub async fn show(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, sid)): Path<(String, String)>,
) -> Response {
    minutes_page(&state, &signed, &slug, &sid, StatusCode::OK, None).await
}

/// `POST /c/{cellule}/seances/{sid}/compte-rendu/approuver`.
pub async fn approve(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, sid)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Err(r) = signed.form(&body) {
        return r;
    }
    let here = format!("/c/{slug}/seances/{sid}/compte-rendu");
    let member = match desk(&state, &signed, &slug, &here).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    match crate::services::review::meeting::step(
        &state.app,
        &member,
        &sid,
        MeetingStep::ApproveMinutes,
    )
    .await
    {
        Ok(_) => see_other(&here),
        Err(e) => match conflict_message(&e) {
            Some(m) => {
                minutes_page(&state, &signed, &slug, &sid, StatusCode::CONFLICT, Some(m)).await
            }
            None => page::error(e),
        },
    }
}

/// `GET /c/{cellule}/seances/{sid}/compte-rendu.pdf`: the PDF, as an attachment.
pub async fn pdf(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, sid)): Path<(String, String)>,
) -> Response {
    let here = format!("/c/{slug}/seances/{sid}/compte-rendu");
    let member = match desk(&state, &signed, &slug, &here).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let m = match minutes::minutes(&state.app, &member, &sid).await {
        Ok(m) => m,
        Err(e) => return page::error(e),
    };
    match render::minutes_pdf(&m) {
        Ok(bytes) => page::download("application/pdf", "compte-rendu.pdf", bytes),
        Err(e) => page::error(crate::error::Error::Internal(format!("minutes PDF: {e}"))),
    }
}
