//! *En séance*: one agenda item per screen (`?point=n`), its summary, the notes the
//! coordinator may read, the case's previous decisions, and the decision form, recorded by
//! [`decisions::decide`] or, once decided in this session, corrected by
//! [`decisions::correct`] (the form then shows the current version).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::WebState;
use super::forms::{FieldProblem, Form, message_for};
use super::home::chrome;
use super::page::{self, Chrome, render, see_other};
use super::seances::{conflict_message, desk, desk_form, needs_text, proposal_text};
use super::session::Signed;
use super::text;
use crate::domain::case::Audience;
use crate::domain::session::Outcome;
use crate::error::Error;
use crate::render::french;
use crate::services::access::CelluleMember;
use crate::services::review::agenda::{self, AgendaItemView};
use crate::services::review::decisions::{self, DecisionRequest};
use crate::services::review::directory;
use crate::services::review::meeting::{self, DecisionRecordView};
use crate::services::{cases, cellules};

/// How many action rows the form offers.
const ACTION_ROWS: usize = 3;

/// One option of a `<select>` or radio group.
struct Opt {
    value: String,
    label: String,
    selected: bool,
}

/// One row of the actions.
struct ActionRow {
    n: usize,
    what: String,
    owners: Vec<Opt>,
    due: String,
}

struct NoteRow {
    audience: &'static str,
    author: String,
    when: String,
    body: String,
}

struct PastDecision {
    version: i32,
    when: String,
    outcome: &'static str,
    interlocutor: Option<String>,
    here: bool,
}

#[derive(Template)]
#[template(path = "seance_point.html")]
struct PointPage {
    c: Chrome,
    action: String,
    back: String,
    next: Option<String>,
    previous: Option<String>,
    saved: bool,
    problem: Option<&'static str>,
    reference: String,
    kind: &'static str,
    urgency: &'static str,
    needs: String,
    place: String,
    proposal: String,
    why: String,
    notes: Vec<NoteRow>,
    past: Vec<PastDecision>,
    correcting: bool,
    outcomes: Vec<Opt>,
    interlocutors: Vec<Opt>,
    actions: Vec<ActionRow>,
    follow_up: String,
    text_value: String,
    audiences: Vec<Opt>,
    message: String,
    errors: Vec<FieldProblem>,
}

impl PointPage {
    fn err(&self, field: &str) -> Option<&str> {
        message_for(&self.errors, field)
    }
}

#[derive(Deserialize)]
pub struct PointQuery {
    point: Option<usize>,
    enregistree: Option<u8>,
}

fn options(all: &[(String, String)], picked: &str) -> Vec<Opt> {
    all.iter()
        .map(|(v, l)| Opt {
            value: v.clone(),
            label: l.clone(),
            selected: v == picked,
        })
        .collect()
}

/// The organisations a decision may name: the directory's interlocutors, then the memberships'
/// organisations not already listed.
pub(super) async fn organisations(
    state: &WebState,
    member: &CelluleMember,
) -> Result<Vec<String>, Error> {
    let mut names: Vec<String> = directory::get_interlocutors(&state.app, member)
        .await?
        .interlocutors
        .into_iter()
        .map(|i| i.name)
        .collect();
    for m in cellules::members(&state.app, member.slug()).await? {
        if let Some(o) = m.spec.organisation {
            let o = o.as_str().to_owned();
            if !names.contains(&o) {
                names.push(o);
            }
        }
    }
    Ok(names)
}

/// What the form shows: the form as sent, or the current decision, or nothing.
fn prefill(current: Option<&DecisionRecordView>) -> Form {
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(d) = current {
        pairs.push(("issue".into(), d.outcome.as_str().into()));
        pairs.push((
            "interlocuteur".into(),
            d.interlocutor.clone().unwrap_or_default(),
        ));
        for (n, a) in d.actions.iter().enumerate() {
            pairs.push((format!("action-{n}-quoi"), a.what.clone()));
            pairs.push((format!("action-{n}-qui"), a.owner.clone()));
            pairs.push((format!("action-{n}-echeance"), a.due.to_string()));
        }
        if let Some(f) = d.follow_up_date {
            pairs.push(("suivi".into(), f.to_string()));
        }
        pairs.push(("texte".into(), d.text.clone().unwrap_or_default()));
        pairs.push(("audience".into(), d.text_audience.as_str().into()));
        pairs.push((
            "message".into(),
            d.referrer_message.clone().unwrap_or_default(),
        ));
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    Form::parse(&Bytes::from(body))
}

struct Ctx<'a> {
    state: &'a WebState,
    signed: &'a Signed,
    member: &'a CelluleMember,
    sid: &'a str,
}

/// The page of item `point` (1-based) with `form` in its fields.
async fn point_page(
    cx: &Ctx<'_>,
    point: usize,
    form: Option<&Form>,
    errors: Vec<FieldProblem>,
    problem: Option<&'static str>,
    saved: bool,
) -> Result<PointPage, Error> {
    let (state, member) = (cx.state, cx.member);
    let view = agenda::get_agenda(&state.app, member, cx.sid).await?;
    let total = view.items.len();
    let item: &AgendaItemView = view
        .items
        .get(point.wrapping_sub(1))
        .ok_or(Error::NotFound("agenda item"))?;
    let notes = cases::notes(&state.app, member, &item.case_id).await?;
    let decisions = meeting::case_decisions(&state.app, member, &item.case_id).await?;
    let current = decisions
        .iter()
        .find(|d| d.current && d.session_id == view.session.id);
    let own;
    let form = match form {
        Some(f) => f,
        None => {
            own = prefill(current);
            &own
        }
    };
    let orgs: Vec<(String, String)> = organisations(state, member)
        .await?
        .into_iter()
        .map(|o| (o.clone(), o))
        .collect();
    let mut with_none = vec![(String::new(), "— Aucun —".to_owned())];
    with_none.extend(orgs.iter().cloned());
    let outcomes: Vec<(String, String)> = [
        Outcome::Routed,
        Outcome::FollowUp,
        Outcome::Closed,
        Outcome::Deferred,
    ]
    .iter()
    .map(|o| (o.as_str().to_owned(), french::outcome(*o).to_owned()))
    .collect();
    let audiences: Vec<(String, String)> =
        [Audience::Cellule, Audience::Psychiatry, Audience::City]
            .iter()
            .map(|a| (a.as_str().to_owned(), french::audience(*a).to_owned()))
            .collect();
    let audience = match form.text("audience") {
        a if a.is_empty() => "cellule".to_owned(),
        a => a,
    };
    let (proposal, why) = proposal_text(&item.proposal);
    let base = format!("/c/{}/seances/{}", member.slug(), cx.sid);
    let here = format!("{base}/seance");
    let title = format!("En séance — point {point} sur {total} : {}", item.reference);
    Ok(PointPage {
        c: chrome(state, cx.signed, member, &title, &here),
        action: format!("{here}?point={point}"),
        next: (point < total).then(|| format!("{here}?point={}", point + 1)),
        previous: (point > 1).then(|| format!("{here}?point={}", point - 1)),
        back: base,
        saved,
        problem,
        reference: item.reference.clone(),
        kind: french::kind(&item.kind).unwrap_or("Point"),
        urgency: text::urgency(item.urgency).0,
        needs: needs_text(&item.needs),
        place: [item.commune.as_deref(), item.sector.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" / "),
        proposal,
        why,
        notes: notes
            .into_iter()
            .map(|n| NoteRow {
                audience: french::audience(n.audience),
                author: n.author_organisation.unwrap_or(n.author),
                when: text::when(n.created_at),
                body: n.body,
            })
            .collect(),
        past: decisions
            .iter()
            .map(|d| PastDecision {
                version: d.version,
                when: text::when(d.decided_at),
                outcome: french::outcome(d.outcome),
                interlocutor: d.interlocutor.clone(),
                here: d.session_id == view.session.id,
            })
            .collect(),
        correcting: current.is_some(),
        outcomes: options(&outcomes, &form.text("issue")),
        interlocutors: options(&with_none, &form.text("interlocuteur")),
        actions: (0..ACTION_ROWS)
            .map(|n| ActionRow {
                n,
                what: form.raw(&format!("action-{n}-quoi")),
                owners: options(&with_none, &form.text(&format!("action-{n}-qui"))),
                due: form.text(&format!("action-{n}-echeance")),
            })
            .collect(),
        follow_up: form.text("suivi"),
        text_value: form.raw("texte"),
        audiences: options(&audiences, &audience),
        message: form.raw("message"),
        errors,
    })
}

/// `GET /c/{cellule}/seances/{sid}/seance?point=n`.
pub async fn show(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, sid)): Path<(String, String)>,
    Query(q): Query<PointQuery>,
) -> Response {
    let here = format!("/c/{slug}/seances/{sid}/seance");
    let member = match desk(&state, &signed, &slug, &here).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let cx = Ctx {
        state: &state,
        signed: &signed,
        member: &member,
        sid: &sid,
    };
    let saved = q.enregistree == Some(1);
    match point_page(&cx, q.point.unwrap_or(1), None, vec![], None, saved).await {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => page::error(e),
    }
}

/// The API's decision from the form, or the form's own problems.
fn request_of(form: &Form) -> Result<DecisionRequest, Vec<FieldProblem>> {
    let mut body = Map::new();
    let mut problems = Vec::new();
    match form.text("issue") {
        o if o.is_empty() => problems.push(FieldProblem::new("issue", "Choisissez l'issue.")),
        o => {
            body.insert("outcome".into(), json!(o));
        }
    }
    let optional = |name: &str| Some(form.text(name)).filter(|v| !v.is_empty());
    if let Some(i) = optional("interlocuteur") {
        body.insert("interlocutor".into(), json!(i));
    }
    let mut actions = Vec::new();
    for n in 0..ACTION_ROWS {
        let what = form.text(&format!("action-{n}-quoi"));
        let owner = form.text(&format!("action-{n}-qui"));
        let due = form.text(&format!("action-{n}-echeance"));
        if what.is_empty() && owner.is_empty() && due.is_empty() {
            continue;
        }
        if what.is_empty() || owner.is_empty() || due.parse::<chrono::NaiveDate>().is_err() {
            problems.push(FieldProblem::new(
                &format!("action-{n}-quoi"),
                format!(
                    "Action {} : indiquez ce qui est à faire, par qui et pour quand (date).",
                    n + 1
                ),
            ));
            continue;
        }
        actions.push(json!({"what": what, "owner": owner, "due": due}));
    }
    body.insert("actions".into(), Value::Array(actions));
    if let Some(d) = optional("suivi") {
        if d.parse::<chrono::NaiveDate>().is_err() {
            problems.push(FieldProblem::new(
                "suivi",
                "La date de suivi n'est pas une date valide.",
            ));
        } else {
            body.insert("follow_up_date".into(), json!(d));
        }
    }
    let text = form.raw("texte");
    if !text.trim().is_empty() {
        body.insert("text".into(), json!(text));
        body.insert("text_audience".into(), json!(form.text("audience")));
    }
    let message = form.raw("message");
    if !message.trim().is_empty() {
        body.insert("referrer_message".into(), json!(message));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    serde_json::from_value(Value::Object(body)).map_err(|_| {
        vec![FieldProblem::new(
            "issue",
            "Choisissez une issue de la liste.",
        )]
    })
}

/// A service's field error as a French message.
fn problem_at(pointer: &str, detail: &str) -> FieldProblem {
    let (field, message) = match pointer {
        "/outcome" => ("issue", "Choisissez une issue de la liste."),
        "/interlocutor" if detail.contains("required") => (
            "interlocuteur",
            "Une orientation nomme l'interlocuteur qui prend le relais.",
        ),
        "/interlocutor" if detail.contains("only a routed") => (
            "interlocuteur",
            "Seule une orientation nomme un interlocuteur : choisissez « Aucun ».",
        ),
        "/interlocutor" => (
            "interlocuteur",
            "Cet interlocuteur n'est ni dans l'annuaire ni une organisation membre.",
        ),
        "/follow_up_date" if detail.contains("required") => (
            "suivi",
            "Une orientation ou un suivi demande une date de suivi.",
        ),
        "/follow_up_date" if detail.contains("future") => {
            ("suivi", "La date de suivi doit être dans le futur.")
        }
        "/follow_up_date" => (
            "suivi",
            "Seules une orientation ou un suivi prennent une date de suivi.",
        ),
        "/text" if detail.contains("closing") => (
            "texte",
            "Une clôture demande son motif dans le texte de la décision.",
        ),
        "/text" => ("texte", "Le texte de la décision est vide ou trop long."),
        "/text_audience" => (
            "audience",
            "Vous pouvez écrire pour toute la cellule ou pour votre propre sphère seulement.",
        ),
        "/referrer_message" => (
            "message",
            "Le message pour l'auteur de la saisine est vide ou dépasse 500 caractères.",
        ),
        p if p.starts_with("/actions") => (
            "action-0-quoi",
            "Une action n'est pas valide : texte de 1 à 500 caractères, responsable de l'annuaire ou membre, échéance.",
        ),
        _ => ("issue", "La décision n'est pas valide."),
    };
    FieldProblem::new(field, message)
}

/// `POST /c/{cellule}/seances/{sid}/seance?point=n`: records or corrects the item's decision.
pub async fn decide(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, sid)): Path<(String, String)>,
    Query(q): Query<PointQuery>,
    body: Bytes,
) -> Response {
    let here = format!("/c/{slug}/seances/{sid}/seance");
    let (form, member) = match desk_form(&state, &signed, &slug, &here, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let cx = Ctx {
        state: &state,
        signed: &signed,
        member: &member,
        sid: &sid,
    };
    let point = q.point.unwrap_or(1);
    let again = |status: StatusCode, errors: Vec<FieldProblem>, problem| {
        let cx = &cx;
        let form = &form;
        async move {
            match point_page(cx, point, Some(form), errors, problem, false).await {
                Ok(p) => render(status, &p),
                Err(e) => page::error(e),
            }
        }
    };
    let req = match request_of(&form) {
        Ok(r) => r,
        Err(p) => return again(StatusCode::UNPROCESSABLE_ENTITY, p, None).await,
    };
    let view = match agenda::get_agenda(&state.app, &member, &sid).await {
        Ok(v) => v,
        Err(e) => return page::error(e),
    };
    let Some(item) = view.items.get(point.wrapping_sub(1)) else {
        return page::error(Error::NotFound("agenda item"));
    };
    let result = if item.decision.is_some() {
        decisions::correct(&state.app, &member, &sid, &item.case_id, req, None).await
    } else {
        decisions::decide(&state.app, &member, &sid, &item.case_id, req, None).await
    };
    match result {
        Ok(_) => see_other(&format!("{here}?point={point}&enregistree=1")),
        Err(Error::Validation(errors)) => {
            let problems = errors
                .iter()
                .map(|e| problem_at(&e.pointer, &e.detail))
                .collect();
            again(StatusCode::UNPROCESSABLE_ENTITY, problems, None).await
        }
        Err(Error::Identifiers(hits)) => {
            let problems = hits
                .iter()
                .map(|h| {
                    let field = if h.field.contains("referrer") {
                        "message"
                    } else {
                        "texte"
                    };
                    FieldProblem::new(
                        field,
                        format!("Identifiant à retirer du texte — {}", text::hint(h)),
                    )
                })
                .collect();
            again(StatusCode::UNPROCESSABLE_ENTITY, problems, None).await
        }
        Err(e) => match conflict_message(&e) {
            Some(m) => again(StatusCode::CONFLICT, vec![], Some(m)).await,
            None => page::error(e),
        },
    }
}
