//! The coordinator's screening (`/c/{cellule}/a-examiner`): the submitted referrals, each with
//! its pseudonymised attributes and texts, its possible duplicates side by side, and the forms
//! to accept or decline it. The decisions go through the API's transition use case
//! (`POST …/cases/{id}/transitions`): same policies, same audit entries, same notices.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::WebState;
use super::desk::{Fact, facts};
use super::forms::FieldProblem;
use super::home::{charter_gate, chrome, enter, enter_form};
use super::page::{self, Chrome, render, see_other};
use super::session::Signed;
use crate::domain::Role;
use crate::domain::case::CaseStatus;
use crate::error::Error;
use crate::services::access::CelluleMember;
use crate::services::cases::{self, CaseQuery, CaseView, TransitionRequest};

/// A case as the coordinator compares it: reference, attributes, texts.
struct Shown {
    reference: String,
    facts: Vec<Fact>,
    situation: String,
    expectations: Option<String>,
}

fn shown(v: CaseView) -> Shown {
    Shown {
        facts: facts(&v),
        reference: v.summary.reference,
        situation: v.situation,
        expectations: v.expectations,
    }
}

/// A submitted referral, with the open cases that may be the same person.
struct Referral {
    case: Shown,
    duplicates: Vec<Shown>,
    /// The refusal of this referral's decline form, when it came back: its field
    /// (`motif` or `message`) and message.
    error: Option<(&'static str, String)>,
    reason: String,
    message: String,
}

impl Referral {
    fn err(&self, field: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
    }
}

const IDENTIFIER_IN_REASON: &str = "Le motif contient un identifiant (nom, téléphone, adresse…) : décrivez la personne par son rôle, sans l'identifier.";
const IDENTIFIER_IN_MESSAGE: &str = "Le message contient un identifiant (nom, téléphone, adresse…) : décrivez la personne par son rôle, sans l'identifier.";

/// A decline form that came back: what was typed, and what is wrong with it.
struct Refused<'a> {
    reference: &'a str,
    reason: String,
    message: String,
    field: &'static str,
    problem: String,
}

#[derive(Template)]
#[template(path = "screening.html")]
struct ScreeningPage {
    c: Chrome,
    referrals: Vec<Referral>,
    action: String,
    errors: Vec<FieldProblem>,
    done: Option<(String, &'static str)>,
}

#[derive(Deserialize)]
pub struct DoneQuery {
    acceptee: Option<String>,
    refusee: Option<String>,
}

/// The page, with the decline form of `failed` coming back with its error.
async fn screening_page(
    state: &WebState,
    signed: &Signed,
    member: &CelluleMember,
    failed: Option<Refused<'_>>,
    done: Option<(String, &'static str)>,
) -> Result<ScreeningPage, Error> {
    let q = CaseQuery {
        status: Some(CaseStatus::Submitted),
        limit: Some(200),
        ..CaseQuery::default()
    };
    let list = cases::list(&state.app, member, q).await?;
    let mut referrals = Vec::with_capacity(list.items.len());
    for item in list.items {
        let view = cases::read(&state.app, member, &item.id).await?;
        let mut duplicates = Vec::new();
        for other in &view.possible_duplicates {
            if other != &view.summary.reference {
                duplicates.push(shown(cases::read(&state.app, member, other).await?));
            }
        }
        let (error, reason, message) = match &failed {
            Some(f) if f.reference == view.summary.reference => (
                Some((f.field, f.problem.clone())),
                f.reason.clone(),
                f.message.clone(),
            ),
            _ => (None, String::new(), String::new()),
        };
        referrals.push(Referral {
            case: shown(view),
            duplicates,
            error,
            reason,
            message,
        });
    }
    let errors = match &failed {
        Some(f) => vec![FieldProblem::new(
            &format!("{}-{}", f.field, f.reference),
            f.problem.clone(),
        )],
        None => vec![],
    };
    let title = if errors.is_empty() {
        "Saisines à examiner"
    } else {
        "Erreurs — Saisines à examiner"
    };
    let here = format!("/c/{}/a-examiner", member.slug());
    Ok(ScreeningPage {
        c: chrome(state, signed, member, title, &here),
        referrals,
        action: here.clone(),
        errors,
        done: done.filter(|_| failed.is_none()),
    })
}

/// `GET /c/{cellule}/a-examiner`.
pub async fn page(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    Query(q): Query<DoneQuery>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let here = format!("/c/{}/a-examiner", member.slug());
    if let Err(r) = charter_gate(&state, &member, &here) {
        return r;
    }
    // Screening is the coordinator's: anyone else is refused, not shown an empty list.
    if member.membership.spec.role != Role::Coordinator {
        return page::error(Error::Forbidden("Only the coordinator screens referrals."));
    }
    // The confirmation echoes only a well-formed reference (the query is not trusted).
    let well_formed =
        |r: &String| r.len() <= 40 && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let done = match (q.acceptee, q.refusee) {
        (Some(r), _) if well_formed(&r) => Some((r, "retenue")),
        (_, Some(r)) if well_formed(&r) => Some((r, "non retenue")),
        _ => None,
    };
    match screening_page(&state, &signed, &member, None, done).await {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => page::error(e),
    }
}

/// `POST /c/{cellule}/a-examiner/{reference}`: accepts (`decision=accepter`) or declines
/// (`decision=refuser`, with `motif`) a submitted referral.
pub async fn decide(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, reference)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (form, member) = match enter_form(&state, &signed, &slug, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let reason = form.raw("motif");
    let message = form.raw("message");
    let (to, done) = match form.get("decision") {
        Some("accepter") => (CaseStatus::Accepted, "acceptee"),
        Some("refuser") => (CaseStatus::Declined, "refusee"),
        _ => return page::error(Error::invalid("/to", "unknown decision")),
    };
    let declined = to == CaseStatus::Declined;
    let request = TransitionRequest {
        to,
        reason: (declined || !reason.trim().is_empty()).then(|| reason.clone()),
        referrer_message: (declined && !message.trim().is_empty()).then(|| message.clone()),
        follow_up_date: None,
        routed_org: None,
    };
    let (field, problem) = match cases::transition(&state.app, &member, &reference, request, None)
        .await
    {
        Ok(case) => {
            return see_other(&format!(
                "/c/{}/a-examiner?{done}={}",
                member.slug(),
                case.reference
            ));
        }
        Err(Error::Validation(errors)) => {
            let on_message = errors.iter().any(|e| e.pointer == "/referrer_message");
            let long = errors.iter().any(|e| e.detail.contains("at most"));
            match (on_message, long) {
                (true, _) => ("message", "Le message doit faire 2 000 caractères au plus."),
                (false, true) => ("motif", "Le motif doit faire 2 000 caractères au plus."),
                (false, false) => (
                    "motif",
                    "Indiquez le motif du refus : il est consigné dans l'historique de la situation.",
                ),
            }
        }
        Err(Error::Identifiers(hits)) => {
            if hits.iter().any(|h| h.field == "referrer_message") {
                ("message", IDENTIFIER_IN_MESSAGE)
            } else {
                ("motif", IDENTIFIER_IN_REASON)
            }
        }
        Err(e) => return page::error(e),
    };
    let failed = Refused {
        reference: &reference,
        reason,
        message,
        field,
        problem: problem.to_owned(),
    };
    match screening_page(&state, &signed, &member, Some(failed), None).await {
        Ok(p) => render(StatusCode::UNPROCESSABLE_ENTITY, &p),
        Err(e) => page::error(e),
    }
}
