//! The case list (`/c/{cellule}/situations`): the cases the policies let the member see, filtered
//! by a GET form that mirrors the API's `GET …/cases` (status, urgency, need, sector, commune,
//! submission period, page by page), and the search by reference, which opens the case. The
//! list shows pseudonymised attributes only, never free text. It calls the API's use cases, so
//! the same policies decide and the same audit entries are written.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::NaiveDate;
use serde::Deserialize;

use super::WebState;
use super::forms::{FieldProblem, message_for};
use super::home::{charter_gate, chrome, enter};
use super::page::{self, Chrome, render, see_other};
use super::session::Signed;
use super::text;
use crate::audit::Action;
use crate::domain::case::{CaseStatus, Commune, Need, Sector, Urgency};
use crate::error::Error;
use crate::services::access::{self, CelluleMember};
use crate::services::cases::{self, CaseQuery, CaseSummary};

/// Cases a page.
const PAGE_SIZE: i64 = 50;

/// The longest text taken as a reference (and echoed back).
const MAX_REFERENCE: usize = 40;

/// The filters and the search, as typed (every value optional; unknown names are ignored).
#[derive(Deserialize, Default)]
pub struct ListQuery {
    statut: Option<String>,
    urgence: Option<String>,
    besoin: Option<String>,
    secteur: Option<String>,
    commune: Option<String>,
    du: Option<String>,
    au: Option<String>,
    curseur: Option<String>,
    reference: Option<String>,
    effacee: Option<String>,
}

/// An option of a `<select>`.
struct Choice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

/// A case as listed: attributes only.
struct Row {
    reference: String,
    href: String,
    status: &'static str,
    urgency: &'static str,
    needs: String,
    place: String,
    submitted: String,
    follow_up: Option<String>,
}

#[derive(Template)]
#[template(path = "situations.html")]
struct ListPage {
    c: Chrome,
    action: String,
    statuses: Vec<Choice>,
    urgencies: Vec<Choice>,
    needs: Vec<Choice>,
    secteur: String,
    commune: String,
    du: String,
    au: String,
    reference: String,
    /// The reference searched that names no case the member may see.
    unknown: Option<String>,
    erased: Option<String>,
    errors: Vec<FieldProblem>,
    rows: Vec<Row>,
    filtered: bool,
    next: Option<String>,
    first_page: Option<String>,
}

impl ListPage {
    fn err(&self, field: &str) -> Option<&str> {
        message_for(&self.errors, field)
    }
}

fn choices<T: Copy + PartialEq>(
    all: &[T],
    picked: Option<T>,
    value: fn(T) -> &'static str,
    label: fn(T) -> &'static str,
) -> Vec<Choice> {
    all.iter()
        .map(|v| Choice {
            value: value(*v),
            label: label(*v),
            selected: picked == Some(*v),
        })
        .collect()
}

/// `raw` read by `parse`, or `None` when empty; a French message for `field` when not valid.
fn parsed<T, E>(
    raw: &str,
    field: &str,
    message: &str,
    parse: impl Fn(&str) -> Result<T, E>,
    errors: &mut Vec<FieldProblem>,
) -> Option<T> {
    if raw.is_empty() {
        return None;
    }
    match parse(raw) {
        Ok(v) => Some(v),
        Err(_) => {
            errors.push(FieldProblem::new(field, message));
            None
        }
    }
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            out.append_pair(k, v);
        }
    }
    out.finish()
}

/// A reference as typed, in the form references have (`PER-2026-0042`), or `None`.
fn well_formed(raw: &str) -> Option<String> {
    let r = raw.trim().to_uppercase();
    (!r.is_empty()
        && r.chars().count() <= MAX_REFERENCE
        && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    .then_some(r)
}

fn row(slug: &str, s: CaseSummary) -> Row {
    let place = match (s.commune, s.sector) {
        (Some(c), Some(s)) => format!("{c} / {s}"),
        (Some(c), None) => c,
        (None, Some(s)) => s,
        (None, None) => "—".to_owned(),
    };
    Row {
        href: format!("/c/{slug}/situations/{}", s.reference),
        reference: s.reference,
        status: text::status(s.status),
        urgency: text::urgency(s.urgency).0,
        needs: s
            .needs
            .iter()
            .map(|n| text::need(*n).0)
            .collect::<Vec<_>>()
            .join(", "),
        place,
        submitted: text::day(s.submitted_at),
        follow_up: s.follow_up_date.map(text::calendar_day),
    }
}

/// `GET /c/{cellule}/situations`: the cases the member may see, newest first, filtered, 50 a
/// page; with `reference`, the case it names (303), or the list saying that none is theirs.
pub async fn list(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let here = format!("/c/{}/situations", member.slug());
    if let Err(r) = charter_gate(&state, &member, &here) {
        return r;
    }
    let s = |v: &Option<String>| v.as_deref().unwrap_or("").trim().to_owned();
    let typed_reference = s(&q.reference);
    let mut unknown = None;
    if !typed_reference.is_empty() {
        match well_formed(&typed_reference) {
            Some(reference) => match cases::find(&state.app, &member, &reference).await {
                Ok(found) => {
                    return see_other(&format!("{here}/{found}"));
                }
                Err(Error::NotFound(_)) => unknown = Some(reference),
                Err(e) => return page::error(e),
            },
            None => {
                // Not a reference: nothing to look up, but only for whom may search.
                if let Err(e) = may_list(&state, &member).await {
                    return page::error(e);
                }
                unknown = Some(typed_reference.chars().take(MAX_REFERENCE).collect());
            }
        }
    }
    let (statut, urgence, besoin, secteur, commune, du, au) = (
        s(&q.statut),
        s(&q.urgence),
        s(&q.besoin),
        s(&q.secteur),
        s(&q.commune),
        s(&q.du),
        s(&q.au),
    );
    let mut errors = Vec::new();
    let status = parsed(
        &statut,
        "statut",
        "Choisissez un statut de la liste.",
        CaseStatus::parse,
        &mut errors,
    );
    let urgency = parsed(
        &urgence,
        "urgence",
        "Choisissez une urgence de la liste.",
        Urgency::parse,
        &mut errors,
    );
    let need = parsed(
        &besoin,
        "besoin",
        "Choisissez un besoin de la liste.",
        Need::parse,
        &mut errors,
    );
    let sector = parsed(
        &secteur.to_uppercase(),
        "secteur",
        "Secteur de psychiatrie invalide : par exemple 66G03.",
        Sector::parse,
        &mut errors,
    );
    let commune_code = parsed(
        &commune.to_uppercase(),
        "commune",
        "Code commune invalide : le code INSEE à 5 caractères, par exemple 66136.",
        Commune::parse,
        &mut errors,
    );
    let date_message = "Date invalide : utilisez le format jj/mm/aaaa.";
    let day = |raw: &str| NaiveDate::parse_from_str(raw, "%Y-%m-%d");
    let from = parsed(&du, "du", date_message, day, &mut errors);
    let to = parsed(&au, "au", date_message, day, &mut errors);
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        errors.push(FieldProblem::new(
            "au",
            "La date de fin doit suivre la date de début.",
        ));
    }
    let filters = [
        ("statut", statut.as_str()),
        ("urgence", urgence.as_str()),
        ("besoin", besoin.as_str()),
        ("secteur", secteur.as_str()),
        ("commune", commune.as_str()),
        ("du", du.as_str()),
        ("au", au.as_str()),
    ];
    let mut rows = Vec::new();
    let mut next = None;
    if errors.is_empty() {
        let query = CaseQuery {
            status,
            urgency,
            need,
            sector,
            commune: commune_code,
            submitted_from: from,
            submitted_to: to,
            cursor: q.curseur.clone().filter(|c| !c.is_empty()),
            limit: Some(PAGE_SIZE),
        };
        match cases::list(&state.app, &member, query).await {
            Ok(found) => {
                rows = found
                    .items
                    .into_iter()
                    .map(|c| row(member.slug(), c))
                    .collect();
                next = found.next_cursor.map(|cursor| {
                    let mut pairs = filters.to_vec();
                    pairs.push(("curseur", &cursor));
                    format!("{here}?{}", query_string(&pairs))
                });
            }
            Err(Error::Validation(_)) => errors.push(FieldProblem::new(
                "statut",
                "Cette page de la liste n'existe plus : revenez à la première page.",
            )),
            Err(e) => return page::error(e),
        }
    } else if let Err(e) = may_list(&state, &member).await {
        return page::error(e);
    }
    let first_page = q
        .curseur
        .as_ref()
        .map(|_| format!("{here}?{}", query_string(&filters)))
        .map(|href| href.trim_end_matches('?').to_owned());
    let erased = q.effacee.as_deref().and_then(well_formed);
    let title = if errors.is_empty() {
        "Situations"
    } else {
        "Erreurs — Situations"
    };
    let page = ListPage {
        c: chrome(&state, &signed, &member, title, &here),
        action: here.clone(),
        statuses: choices(CaseStatus::ALL, status, CaseStatus::as_str, text::status),
        urgencies: choices(Urgency::ALL, urgency, Urgency::as_str, |u| {
            text::urgency(u).0
        }),
        needs: choices(Need::ALL, need, Need::as_str, |n| text::need(n).0),
        filtered: filters.iter().any(|(_, v)| !v.is_empty()),
        secteur,
        commune,
        du,
        au,
        reference: unknown
            .clone()
            .unwrap_or_else(|| typed_reference.chars().take(MAX_REFERENCE).collect()),
        unknown,
        erased,
        errors,
        rows,
        next,
        first_page,
    };
    let status = if page.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render(status, &page)
}

/// Whether the policies let `member` list cases, the refusal recorded as the list's would be.
async fn may_list(state: &WebState, member: &CelluleMember) -> Result<(), Error> {
    access::cellule_action_audited(
        &state.app,
        &access::principal(member),
        &member.audit(),
        "list_cases",
        Action::ListCases,
    )
    .await
}
