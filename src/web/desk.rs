//! The member's desk: one case as the member may see it (`/c/{cellule}/situations/{ref}`: the
//! pseudonymised attributes and texts, the notes of the member's audiences, the decisions, and a
//! form to write a note; its history and, for whom the policies allow them, its lifecycle forms:
//! [`super::case_actions`]) and the follow-ups of the member's organisation (`/c/{cellule}/suivis`).
//! Every page calls the API's use cases, so the same policies decide and the same audit entries
//! are written; a case the member may not see answers the same page as a missing one.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::WebState;
use super::case_actions::{Lifecycle, Typed, lifecycle};
use super::forms::{FieldProblem, Form, message_for};
use super::home::{charter_gate, chrome, enter, enter_form};
use super::page::{self, Chrome, render, see_other};
use super::referrals::{HitHint, MarkedField, segments};
use super::session::Signed;
use super::text;
use crate::domain::Sphere;
use crate::domain::case::Audience;
use crate::domain::guard::Hit;
use crate::error::Error;
use crate::render::french;
use crate::services::access::CelluleMember;
use crate::services::cases::{self, CaseView, NoteRequest};
use crate::services::review::meeting::{self, DueQuery};

/// One labelled value of the case (pseudonymised attributes only).
pub struct Fact {
    pub label: &'static str,
    pub value: String,
}

/// A note as shown: its audience in words, author, date, text.
struct NoteRow {
    audience: &'static str,
    author: String,
    at: String,
    body: String,
    correction: bool,
}

/// A decision version as shown.
struct DecisionRow {
    outcome: &'static str,
    version: String,
    current: bool,
    interlocutor: Option<String>,
    follow_up: Option<String>,
    actions: Vec<(String, String, String)>,
    text: Option<(&'static str, String)>,
    recorded: String,
}

/// An audience a note may be written for.
struct AudienceChoice {
    value: &'static str,
    label: &'static str,
    checked: bool,
}

#[derive(Template)]
#[template(path = "case.html")]
pub(super) struct CasePage {
    c: Chrome,
    reference: String,
    facts: Vec<Fact>,
    situation: String,
    expectations: Option<String>,
    notes: Vec<NoteRow>,
    decisions: Vec<DecisionRow>,
    action: String,
    audiences: Vec<AudienceChoice>,
    body: String,
    errors: Vec<FieldProblem>,
    marked: Vec<MarkedField>,
    banner: Option<&'static str>,
    life: Lifecycle,
}

/// What the case page comes back with after a form: the note form and the lifecycle step as
/// typed, the errors, the guard's marks, or the confirmation of what was done.
#[derive(Default)]
pub(super) struct Back {
    pub note: Form,
    pub typed: Typed,
    pub errors: Vec<FieldProblem>,
    pub marked: Vec<MarkedField>,
    pub banner: Option<&'static str>,
}

impl CasePage {
    fn err(&self, field: &str) -> Option<&str> {
        message_for(&self.errors, field)
    }

    fn marks(&self, field: &str) -> Option<&MarkedField> {
        self.marked.iter().find(|m| m.field == field)
    }
}

/// The case's attributes in French (no free text: that comes in its own sections).
pub fn facts(v: &CaseView) -> Vec<Fact> {
    let s = &v.summary;
    let mut out = vec![
        Fact {
            label: "Statut",
            value: text::status(s.status).to_owned(),
        },
        Fact {
            label: "Urgence",
            value: text::urgency(s.urgency).0.to_owned(),
        },
        Fact {
            label: "Tranche d'âge",
            value: text::age_band(s.age_band).to_owned(),
        },
        Fact {
            label: "Genre",
            value: text::gender(s.gender).to_owned(),
        },
        Fact {
            label: "Besoins",
            value: s
                .needs
                .iter()
                .map(|n| text::need(*n).0)
                .collect::<Vec<_>>()
                .join(", "),
        },
    ];
    for (label, value) in [
        ("Commune", s.commune.clone()),
        ("Secteur de psychiatrie", s.sector.clone()),
        ("Organisation qui a saisi", Some(s.referring_org.clone())),
        ("Orientée vers", s.routed_org.clone()),
        (
            "Prochain point de suivi",
            s.follow_up_date.map(text::calendar_day),
        ),
    ] {
        if let Some(value) = value {
            out.push(Fact { label, value });
        }
    }
    out.push(Fact {
        label: "Envoyée le",
        value: text::when(s.submitted_at),
    });
    out
}

/// The audiences `member` may write for: the whole cellule and its own sphere (the service
/// decides again).
fn audiences_of(member: &CelluleMember, picked: &str) -> Vec<AudienceChoice> {
    let mut all = vec![Audience::Cellule];
    match member.membership.spec.sphere {
        Some(Sphere::City) => all.push(Audience::City),
        Some(Sphere::Psychiatry) => all.push(Audience::Psychiatry),
        None => {}
    }
    all.into_iter()
        .map(|a| AudienceChoice {
            value: a.as_str(),
            label: audience_label(a),
            checked: picked == a.as_str(),
        })
        .collect()
}

fn audience_label(a: Audience) -> &'static str {
    match a {
        Audience::Cellule => "Toute la cellule",
        Audience::City => "Sphère ville seulement",
        Audience::Psychiatry => "Sphère psychiatrie seulement",
    }
}

#[derive(Deserialize)]
pub struct WrittenQuery {
    note: Option<String>,
    statut: Option<String>,
}

/// The case page of `reference`, with its forms as given.
pub(super) async fn case_page(
    state: &WebState,
    signed: &Signed,
    member: &CelluleMember,
    reference: &str,
    back: Back,
) -> Result<CasePage, Error> {
    let Back {
        note: form,
        typed,
        errors,
        marked,
        banner,
    } = back;
    let view = cases::read(&state.app, member, reference).await?;
    let notes = cases::notes(&state.app, member, reference).await?;
    let decisions = meeting::case_decisions(&state.app, member, reference).await?;
    let life = lifecycle(state, member, &view, &typed, &errors).await?;
    let reference = view.summary.reference.clone();
    let here = format!("/c/{}/situations/{reference}", member.slug());
    let title = if errors.is_empty() {
        format!("Situation {reference}")
    } else {
        format!("Erreurs — Situation {reference}")
    };
    Ok(CasePage {
        c: chrome(state, signed, member, &title, &here),
        facts: facts(&view),
        situation: view.situation,
        expectations: view.expectations,
        notes: notes
            .into_iter()
            .map(|n| NoteRow {
                audience: audience_label(n.audience),
                author: match n.author_organisation {
                    Some(o) => format!("{} ({o})", n.author),
                    None => n.author,
                },
                at: text::when(n.created_at),
                body: n.body,
                correction: n.corrects.is_some(),
            })
            .collect(),
        decisions: decisions
            .into_iter()
            .map(|d| DecisionRow {
                outcome: french::outcome(d.outcome),
                version: french::version(u32::try_from(d.version).unwrap_or(0)),
                current: d.current,
                interlocutor: d.interlocutor,
                follow_up: d.follow_up_date.map(text::calendar_day),
                actions: d
                    .actions
                    .into_iter()
                    .map(|a| (a.what, a.owner, text::calendar_day(a.due)))
                    .collect(),
                text: d.text.map(|t| (french::audience(d.text_audience), t)),
                recorded: format!("par {} le {}", d.decided_by, text::when(d.decided_at)),
            })
            .collect(),
        action: format!("{here}/notes"),
        audiences: audiences_of(member, form.get("audience").unwrap_or("cellule")),
        body: form.raw("texte"),
        errors,
        marked,
        banner,
        life,
        reference,
    })
}

/// `GET /c/{cellule}/situations/{reference}`.
pub async fn case(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, reference)): Path<(String, String)>,
    Query(q): Query<WrittenQuery>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let here = format!("/c/{}/situations/{reference}", member.slug());
    if let Err(r) = charter_gate(&state, &member, &here) {
        return r;
    }
    let banner = if q.note.as_deref() == Some("ajoutee") {
        Some("Votre note est enregistrée.")
    } else if q.statut.as_deref() == Some("modifie") {
        Some("Statut modifié.")
    } else {
        None
    };
    let back = Back {
        banner,
        ..Back::default()
    };
    match case_page(&state, &signed, &member, &reference, back).await {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => page::error(e),
    }
}

/// The note's text with the guard's identifiers marked, and the summary's entries.
fn marked_note(body: &str, hits: &[Hit]) -> (Vec<MarkedField>, Vec<FieldProblem>) {
    let mut of_body: Vec<&Hit> = hits.iter().collect();
    of_body.sort_by_key(|h| (h.start, h.end));
    let (segments, kept) = segments(body, &of_body, 1);
    let hints: Vec<HitHint> = kept
        .iter()
        .enumerate()
        .map(|(k, i)| HitHint {
            number: 1 + k,
            anchor: format!("texte-identifiant-{}", 1 + k),
            hint: text::hint(of_body[*i]),
        })
        .collect();
    let summary = hints
        .iter()
        .map(|h| FieldProblem {
            field: h.anchor.clone(),
            message: format!("Note, identifiant {} — {}", h.number, h.hint),
        })
        .collect();
    (
        vec![MarkedField {
            field: "texte",
            label: "Note",
            segments,
            hints,
        }],
        summary,
    )
}

/// `POST /c/{cellule}/situations/{reference}/notes`: writes a note; the page comes back (422)
/// with the text as typed on any refusal, the guard's identifiers marked.
pub async fn add_note(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, reference)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (form, member) = match enter_form(&state, &signed, &slug, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let again = async |errors: Vec<FieldProblem>, marked: Vec<MarkedField>| match case_page(
        &state,
        &signed,
        &member,
        &reference,
        Back {
            note: form.clone(),
            errors,
            marked,
            ..Back::default()
        },
    )
    .await
    {
        Ok(p) => render(StatusCode::UNPROCESSABLE_ENTITY, &p),
        Err(e) => page::error(e),
    };
    let audience = match form.get("audience").and_then(|a| Audience::parse(a).ok()) {
        Some(a) => a,
        None => {
            return again(
                vec![FieldProblem::new(
                    "audience",
                    "Choisissez qui pourra lire la note.",
                )],
                vec![],
            )
            .await;
        }
    };
    let text = form.raw("texte");
    let request = NoteRequest {
        audience,
        body: text.clone(),
        corrects: None,
    };
    match cases::add_note(&state.app, &member, &reference, request, None).await {
        Ok(_) => see_other(&format!(
            "/c/{}/situations/{}?note=ajoutee",
            member.slug(),
            url::form_urlencoded::byte_serialize(reference.as_bytes()).collect::<String>()
        )),
        Err(Error::Validation(errors)) => {
            let long = errors.iter().any(|e| e.detail.contains("at most"));
            let message = if long {
                "La note doit faire 10 000 caractères au plus."
            } else {
                "Écrivez le texte de la note."
            };
            again(vec![FieldProblem::new("texte", message)], vec![]).await
        }
        Err(Error::Identifiers(hits)) => {
            let (marked, summary) = marked_note(&text, &hits);
            again(summary, marked).await
        }
        Err(Error::CharterNotAccepted) => see_other(&format!("/c/{}/charte", member.slug())),
        Err(e) => page::error(e),
    }
}

/// A follow-up or action as listed.
struct DueRow {
    reference: String,
    href: String,
    kind: &'static str,
    what: Option<String>,
    owner: Option<String>,
    due: String,
    overdue: bool,
}

#[derive(Template)]
#[template(path = "follow_ups.html")]
struct FollowUpsPage {
    c: Chrome,
    rows: Vec<DueRow>,
    organisation: String,
    /// The coordinator's filters (the whole cellule's follow-ups): the organisations to choose
    /// from, the one chosen, the last day, and the filter's problem.
    whole_cellule: bool,
    organisations: Vec<(String, bool)>,
    until: String,
    errors: Vec<FieldProblem>,
    action: String,
}

impl FollowUpsPage {
    fn err(&self, field: &str) -> Option<&str> {
        message_for(&self.errors, field)
    }
}

#[derive(Deserialize)]
pub struct FollowUpsQuery {
    organisation: Option<String>,
    jusqu_au: Option<String>,
}

/// `GET /c/{cellule}/suivis`: the actions and follow-up dates of the member's organisation,
/// overdue first; for the coordinator, the whole cellule's, by organisation and up to a day.
pub async fn follow_ups(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    Query(q): Query<FollowUpsQuery>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let here = format!("/c/{}/suivis", member.slug());
    if let Err(r) = charter_gate(&state, &member, &here) {
        return r;
    }
    let whole_cellule = member.membership.spec.role == crate::domain::Role::Coordinator;
    let picked = q
        .organisation
        .filter(|o| whole_cellule && !o.trim().is_empty());
    let typed_until = q.jusqu_au.unwrap_or_default();
    let mut errors = Vec::new();
    let until = match typed_until.trim() {
        "" => None,
        d => match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(_) => {
                errors.push(FieldProblem::new(
                    "jusqu_au",
                    "Indiquez le dernier jour sous la forme AAAA-MM-JJ, par exemple 2027-03-31.",
                ));
                None
            }
        },
    };
    let organisations = if whole_cellule {
        match super::seance_point::organisations(&state, &member).await {
            Ok(names) => names
                .into_iter()
                .map(|n| {
                    let chosen = picked.as_deref() == Some(n.as_str());
                    (n, chosen)
                })
                .collect(),
            Err(e) => return page::error(e),
        }
    } else {
        vec![]
    };
    if picked.is_some() && !organisations.iter().any(|(_, chosen)| *chosen) {
        errors.push(FieldProblem::new(
            "organisation",
            "Choisissez une organisation de la liste.",
        ));
    }
    let query = DueQuery {
        until,
        organisation: picked.filter(|_| errors.is_empty()),
    };
    // The service is asked even when the day is malformed, so that its policies decide who
    // gets this page at all; nothing is listed then.
    let list = match meeting::follow_ups(&state.app, &member, query).await {
        Ok(l) if errors.is_empty() => l,
        Ok(_) => vec![],
        Err(e) => return page::error(e),
    };
    let mut rows: Vec<DueRow> = list
        .into_iter()
        .map(|d| DueRow {
            href: format!("/c/{}/situations/{}", member.slug(), d.reference),
            reference: d.reference,
            kind: if d.kind == "action" {
                "Action"
            } else {
                "Point de suivi"
            },
            what: d.what,
            owner: d.owner,
            due: text::calendar_day(d.due),
            overdue: d.overdue,
        })
        .collect();
    // Overdue first, then by due date (the service's order is kept within each group).
    rows.sort_by_key(|r| !r.overdue);
    let title = match (whole_cellule, errors.is_empty()) {
        (true, true) => "Actions et suivis de la cellule",
        (true, false) => "Erreurs — Actions et suivis de la cellule",
        (false, _) => "Suivis de mon organisation",
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render(
        status,
        &FollowUpsPage {
            c: chrome(&state, &signed, &member, title, &here),
            rows,
            organisation: member
                .membership
                .spec
                .organisation
                .as_ref()
                .map(|o| o.as_str().to_owned())
                .unwrap_or_default(),
            whole_cellule,
            organisations,
            until: typed_until,
            errors,
            action: here.clone(),
        },
    )
}
