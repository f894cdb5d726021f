//! The member's notices (`/c/{cellule}/avis`): the address they go to and a checkbox per notice
//! one may turn off (the security notices cannot be). The API's preferences and choice.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::WebState;
use super::home::{chrome, enter, enter_form};
use super::page::{self, Chrome, render, see_other};
use super::session::Signed;
use crate::domain::notice::NoticeKind;
use crate::services::notify::{self, NoticeChoice};

/// The French name and description of a notice.
fn label(k: NoticeKind) -> (&'static str, &'static str) {
    match k {
        NoticeKind::Invitation => (
            "Invitation à une séance",
            "L'ordre du jour publié et le fichier d'agenda de la séance.",
        ),
        NoticeKind::AgendaUpdate => (
            "Ordre du jour modifié",
            "Quand un point est ajouté ou retiré après la publication.",
        ),
        NoticeKind::Cancellation => ("Séance annulée", "Quand une séance est annulée."),
        NoticeKind::Reminder => ("Rappel de séance", "Quelques jours avant la séance."),
        NoticeKind::MinutesAvailable => (
            "Compte rendu disponible",
            "Quand le compte rendu d'une séance est approuvé.",
        ),
        NoticeKind::ActionsDue => (
            "Actions à échéance",
            "Les actions confiées à votre organisation dont l'échéance approche.",
        ),
        NoticeKind::ReferralStatus => (
            "Suite de mes saisines",
            "Quand une saisine que vous avez envoyée est retenue ou non.",
        ),
        NoticeKind::ChainFailure => (
            "Alerte d'intégrité du journal",
            "Toujours envoyée : elle ne peut pas être désactivée.",
        ),
    }
}

struct NoticeRow {
    value: &'static str,
    label: &'static str,
    help: &'static str,
    on: bool,
}

#[derive(Template)]
#[template(path = "notices.html")]
struct NoticesPage {
    c: Chrome,
    email: Option<String>,
    rows: Vec<NoticeRow>,
    action: String,
    saved: bool,
}

#[derive(Deserialize)]
pub struct SavedQuery {
    enregistre: Option<String>,
}

/// `GET /c/{cellule}/avis`.
pub async fn page(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    Query(q): Query<SavedQuery>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let prefs = match notify::preferences(&state.app, &member).await {
        Ok(p) => p,
        Err(e) => return page::error(e),
    };
    let here = format!("/c/{}/avis", member.slug());
    let rows = prefs
        .optional
        .iter()
        .map(|k| {
            let (label, help) = label(*k);
            NoticeRow {
                value: k.as_str(),
                label,
                help,
                on: !prefs.off.contains(k),
            }
        })
        .collect();
    render(
        StatusCode::OK,
        &NoticesPage {
            c: chrome(&state, &signed, &member, "Mes avis par courriel", &here),
            email: prefs.email,
            rows,
            action: here.clone(),
            saved: q.enregistre.is_some(),
        },
    )
}

/// `POST /c/{cellule}/avis`: the notices checked stay on, the others are turned off.
pub async fn choose(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    body: Bytes,
) -> Response {
    let (form, member) = match enter_form(&state, &signed, &slug, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let on = form.all("avis");
    let off = NoticeKind::ALL
        .iter()
        .copied()
        .filter(|k| k.optional() && !on.iter().any(|v| v == k.as_str()))
        .collect();
    match notify::choose(&state.app, &member, NoticeChoice { off }).await {
        Ok(_) => see_other(&format!("/c/{}/avis?enregistre=1", member.slug())),
        Err(e) => page::error(e),
    }
}
