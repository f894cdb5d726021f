//! The auditor's desk: the log searched (person, case reference, action, outcome, period) page
//! by page, a case's access log by its reference, the chain's verification with its last signed
//! checkpoints, and the exports. Each is the API's use case ([`auditor`]), recorded the same way.

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Paris;
use serde::Deserialize;

use super::WebState;
use super::forms::FieldProblem;
use super::home::{chrome, enter};
use super::page::{self, Chrome, render};
use super::session::Signed;
use super::text;
use crate::audit::{Action, Outcome};
use crate::error::Error;
use crate::services::auditor::{self, AuditQuery, EntryView, ExportFormat};

/// Entries per page of the search.
const PAGE_SIZE: i64 = 50;

/// An entry as the auditor reads it.
pub struct EntryRow {
    seq: i64,
    at: String,
    actor: String,
    role: &'static str,
    organisation: String,
    action: String,
    case_ref: String,
    allowed: bool,
    reason: &'static str,
    request_id: String,
}

impl From<&EntryView> for EntryRow {
    fn from(e: &EntryView) -> Self {
        Self {
            seq: e.seq,
            at: text::when(e.at),
            actor: e.actor.clone(),
            role: text::role_short(&e.actor_role),
            organisation: e.actor_org.clone().unwrap_or_default(),
            action: text::action_name(&e.action),
            case_ref: e.case_ref.clone().unwrap_or_default(),
            allowed: e.outcome == Outcome::Allowed,
            reason: text::denial(e.reason.as_deref()),
            request_id: e.request_id.clone().unwrap_or_default(),
        }
    }
}

pub struct SelectOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

#[derive(Deserialize, Default)]
pub struct SearchQuery {
    personne: Option<String>,
    reference: Option<String>,
    action: Option<String>,
    resultat: Option<String>,
    du: Option<String>,
    au: Option<String>,
    curseur: Option<String>,
}

#[derive(Template)]
#[template(path = "audit_search.html")]
struct SearchPage {
    c: Chrome,
    personne: String,
    reference: String,
    du: String,
    au: String,
    actions: Vec<SelectOption>,
    outcomes: Vec<SelectOption>,
    errors: Vec<FieldProblem>,
    rows: Vec<EntryRow>,
    caption: String,
    next: Option<String>,
    first_page: Option<String>,
}

impl SearchPage {
    fn has_error(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }
}

/// Midnight of `day` in Paris, in UTC.
fn paris_midnight(day: NaiveDate) -> Option<DateTime<Utc>> {
    Paris
        .from_local_datetime(&day.and_hms_opt(0, 0, 0)?)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

fn date(raw: &str, field: &str, errors: &mut Vec<FieldProblem>) -> Option<NaiveDate> {
    if raw.is_empty() {
        return None;
    }
    match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            errors.push(FieldProblem::new(
                field,
                "Date invalide : utilisez le format jj/mm/aaaa.",
            ));
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

/// `GET /c/{cellule}/journal`: the log, newest first, filtered, 50 entries a page.
pub async fn search(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    Query(q): Query<SearchQuery>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let here = format!("/c/{}/journal", member.slug());
    let s = |v: &Option<String>| v.as_deref().unwrap_or("").trim().to_owned();
    let (personne, reference, action, resultat, du, au) = (
        s(&q.personne),
        s(&q.reference),
        s(&q.action),
        s(&q.resultat),
        s(&q.du),
        s(&q.au),
    );
    let mut errors = Vec::new();
    let from = date(&du, "du", &mut errors).and_then(paris_midnight);
    let to = date(&au, "au", &mut errors)
        .and_then(|d| d.succ_opt())
        .and_then(paris_midnight);
    let action_filter = Action::parse(&action);
    let outcome = Outcome::parse(&resultat);
    let mut rows = Vec::new();
    let mut next = None;
    if errors.is_empty() {
        let query = AuditQuery {
            actor: (!personne.is_empty()).then(|| personne.clone()),
            case: (!reference.is_empty()).then(|| reference.to_uppercase()),
            action: action_filter,
            outcome,
            from,
            to,
            cursor: q.curseur.clone().filter(|c| !c.is_empty()),
            limit: Some(PAGE_SIZE),
        };
        match auditor::search(&state.app, &member, query).await {
            Ok(found) => {
                rows = found.items.iter().map(EntryRow::from).collect();
                next = found.next_cursor.map(|cursor| {
                    format!(
                        "{here}?{}",
                        query_string(&[
                            ("personne", &personne),
                            ("reference", &reference),
                            ("action", &action),
                            ("resultat", &resultat),
                            ("du", &du),
                            ("au", &au),
                            ("curseur", &cursor),
                        ])
                    )
                });
            }
            Err(Error::Validation(_)) => errors.push(FieldProblem::new(
                "personne",
                "La recherche n'est pas valide : revenez à la première page.",
            )),
            Err(e) => return page::error(e),
        }
    }
    let first_page = q.curseur.as_ref().map(|_| {
        format!(
            "{here}?{}",
            query_string(&[
                ("personne", &personne),
                ("reference", &reference),
                ("action", &action),
                ("resultat", &resultat),
                ("du", &du),
                ("au", &au),
            ])
        )
    });
    let actions = Action::ALL
        .iter()
        .map(|a| SelectOption {
            value: a.as_str(),
            label: text::action(*a),
            selected: a.as_str() == action,
        })
        .collect();
    let outcomes = [("allowed", "Autorisé"), ("denied", "Refusé")]
        .into_iter()
        .map(|(value, label)| SelectOption {
            value,
            label,
            selected: value == resultat,
        })
        .collect();
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render(
        status,
        &SearchPage {
            c: chrome(&state, &signed, &member, "Journal des accès", &here),
            personne,
            reference,
            du,
            au,
            actions,
            outcomes,
            errors,
            rows,
            caption: "Entrées du journal correspondant à la recherche".to_owned(),
            next,
            first_page,
        },
    )
}

#[derive(Deserialize)]
pub struct CaseQuery {
    reference: Option<String>,
}

#[derive(Template)]
#[template(path = "access_log.html")]
struct AccessLogPage {
    c: Chrome,
    reference: String,
    errors: Vec<FieldProblem>,
    found: Option<String>,
    erased: bool,
    rows: Vec<EntryRow>,
    caption: String,
}

/// `GET /c/{cellule}/journal/situation?reference=`: who accessed one case (the person's right
/// of access), oldest first.
pub async fn access_log(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    Query(q): Query<CaseQuery>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let here = format!("/c/{}/journal/situation", member.slug());
    let reference = q.reference.as_deref().unwrap_or("").trim().to_uppercase();
    let mut page = AccessLogPage {
        c: chrome(&state, &signed, &member, "Accès à une situation", &here),
        reference: reference.clone(),
        errors: vec![],
        found: None,
        erased: false,
        rows: vec![],
        caption: String::new(),
    };
    if reference.is_empty() {
        return render(StatusCode::OK, &page);
    }
    match auditor::access_log(&state.app, &member, &reference).await {
        Ok(log) => {
            page.c.title = format!("Accès à la situation {}", log.reference);
            page.caption = format!(
                "Accès à la situation {}, du plus ancien au plus récent",
                log.reference
            );
            page.found = Some(log.reference);
            page.erased = log.erased;
            page.rows = log.entries.iter().map(EntryRow::from).collect();
            render(StatusCode::OK, &page)
        }
        Err(Error::NotFound(_)) => {
            page.errors.push(FieldProblem::new(
                "reference",
                "Aucune situation de cette cellule n'a cette référence.",
            ));
            render(StatusCode::NOT_FOUND, &page)
        }
        Err(e) => page::error(e),
    }
}

pub struct BrokenRow {
    seq: i64,
    reason: String,
}

pub struct CheckpointRow {
    seq: i64,
    signed_at: String,
    kind: &'static str,
    key_id: String,
}

#[derive(Template)]
#[template(path = "verify.html")]
struct VerifyPage {
    c: Chrome,
    valid: bool,
    entries_checked: i64,
    head_seq: i64,
    purged_through: i64,
    broken: Option<BrokenRow>,
    checkpoints: Vec<CheckpointRow>,
    jsonl: String,
    fhir: String,
}

/// `GET /c/{cellule}/journal/verification`: the chain verified, its last checkpoints, exports.
pub async fn verify(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let here = format!("/c/{}/journal/verification", member.slug());
    let report = match auditor::verify(&state.app, &member).await {
        Ok(r) => r,
        Err(e) => return page::error(e),
    };
    let checkpoints = match auditor::checkpoints(&state.app, &member).await {
        Ok(c) => c,
        Err(e) => return page::error(e),
    };
    let checkpoints = checkpoints
        .iter()
        .rev()
        .take(5)
        .map(|c| CheckpointRow {
            seq: c.seq,
            signed_at: text::when(c.signed_at),
            kind: match c.kind.as_str() {
                "periodic" => "périodique",
                "on_demand" => "à la demande",
                "threshold" => "par nombre d'entrées",
                _ => "autre",
            },
            key_id: c.key_id.clone(),
        })
        .collect();
    let export = format!("/c/{}/journal/export", member.slug());
    render(
        StatusCode::OK,
        &VerifyPage {
            c: chrome(&state, &signed, &member, "Vérification et exports", &here),
            valid: report.valid,
            entries_checked: report.entries_checked,
            head_seq: report.head.seq,
            purged_through: report.purged_through,
            broken: report.broken.map(|b| BrokenRow {
                seq: b.seq,
                reason: b.reason,
            }),
            checkpoints,
            jsonl: format!("{export}?format=jsonl"),
            fhir: format!("{export}?format=fhir"),
        },
    )
}

#[derive(Deserialize)]
pub struct ExportQuery {
    format: Option<String>,
}

/// `GET /c/{cellule}/journal/export?format=jsonl|fhir`: the whole log as a download.
pub async fn export(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let (format, mime, extension) = match q.format.as_deref() {
        Some("jsonl") => (ExportFormat::Jsonl, "application/jsonl", "jsonl"),
        Some("fhir") => (ExportFormat::Fhir, "application/fhir+json", "fhir.json"),
        _ => return page::not_found(),
    };
    let stream = match auditor::export(&state.app, &member, format).await {
        Ok(s) => s,
        Err(e) => return page::error(e),
    };
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"journal-{}.{extension}\"",
        member.slug()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}
