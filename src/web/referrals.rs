//! The field worker's pages: *Nouvelle saisine* (every field of the referral, consent, needs and
//! urgency explained; a refusal of the identifier guard brings the form back with the text as
//! typed and each identifier marked in place) and *Mes saisines* (the status of one's own
//! referrals). The referral is the API's ([`cases::ReferralRequest`]), built from the form and
//! checked by the same service.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::WebState;
use super::forms::{FieldProblem, Form, message_for};
use super::home::{chrome, enter, enter_form};
use super::page::{self, Chrome, render, see_other};
use super::session::Signed;
use super::text;
use crate::domain::case::{AgeBand, ConsentStatus, Gender, Need, Urgency};
use crate::domain::guard::Hit;
use crate::error::Error;
use crate::services::access::{self, CelluleMember};
use crate::services::cases::{self, ReferralRequest};

/// One option of a choice (select, radio, checkbox).
pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub checked: bool,
}

/// A part of a text as typed: plain, or the identifier numbered `hit`.
pub struct Segment {
    pub text: String,
    pub hit: Option<usize>,
}

/// One marked identifier's hint.
pub struct HitHint {
    pub number: usize,
    pub anchor: String,
    pub hint: String,
}

/// A free-text field the guard refused, shown with its identifiers marked.
pub struct MarkedField {
    pub field: &'static str,
    pub label: &'static str,
    pub segments: Vec<Segment>,
    pub hints: Vec<HitHint>,
}

#[derive(Template)]
#[template(path = "referral_form.html")]
struct ReferralPage {
    c: Chrome,
    action: String,
    organisation: String,
    age_bands: Vec<Choice>,
    genders: Vec<Choice>,
    needs: Vec<Choice>,
    urgencies: Vec<Choice>,
    consents: Vec<Choice>,
    commune: String,
    sector: String,
    justification: String,
    situation: String,
    expectations: String,
    errors: Vec<FieldProblem>,
    marked: Vec<MarkedField>,
}

impl ReferralPage {
    fn err(&self, field: &str) -> Option<&str> {
        message_for(&self.errors, field)
    }

    fn marks(&self, field: &str) -> Option<&MarkedField> {
        self.marked.iter().find(|m| m.field == field)
    }
}

fn choices<T: Copy>(
    all: &[T],
    value: fn(T) -> &'static str,
    label: fn(T) -> (&'static str, &'static str),
    picked: &[String],
) -> Vec<Choice> {
    all.iter()
        .map(|v| {
            let (l, h) = label(*v);
            Choice {
                value: value(*v),
                label: l,
                help: h,
                checked: picked.iter().any(|p| p == value(*v)),
            }
        })
        .collect()
}

fn page_for(
    state: &WebState,
    signed: &Signed,
    member: &CelluleMember,
    form: &Form,
    errors: Vec<FieldProblem>,
    marked: Vec<MarkedField>,
) -> ReferralPage {
    let here = format!("/c/{}/saisines/nouvelle", member.slug());
    let title = if errors.is_empty() {
        "Nouvelle saisine".to_owned()
    } else {
        "Erreurs — Nouvelle saisine".to_owned()
    };
    ReferralPage {
        c: chrome(state, signed, member, &title, &here),
        action: format!("/c/{}/saisines", member.slug()),
        organisation: member
            .membership
            .spec
            .organisation
            .as_ref()
            .map(|o| o.as_str().to_owned())
            .unwrap_or_default(),
        age_bands: choices(
            AgeBand::ALL,
            AgeBand::as_str,
            |a| (text::age_band(a), ""),
            &form.all("tranche"),
        ),
        genders: choices(
            Gender::ALL,
            Gender::as_str,
            |g| (text::gender(g), ""),
            &form.all("genre"),
        ),
        needs: choices(Need::ALL, Need::as_str, text::need, &form.all("besoins")),
        urgencies: choices(
            Urgency::ALL,
            Urgency::as_str,
            text::urgency,
            &form.all("urgence"),
        ),
        consents: choices(
            ConsentStatus::ALL,
            ConsentStatus::as_str,
            text::consent,
            &form.all("consentement"),
        ),
        commune: form.text("commune"),
        sector: form.text("secteur"),
        justification: form.raw("justification"),
        situation: form.raw("situation"),
        expectations: form.raw("attentes"),
        errors,
        marked,
    }
}

/// `GET /c/{cellule}/saisines/nouvelle`.
pub async fn new(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    // The form is shown only to whom the policies let submit (the submission asks again).
    if let Err(e @ Error::Forbidden(_)) =
        access::cellule_action(&state.app, &access::principal(&member), "submit_referral")
    {
        return page::error(e);
    }
    let page = page_for(&state, &signed, &member, &Form::default(), vec![], vec![]);
    render(StatusCode::OK, &page)
}

/// The API's referral from the form, or the form's own problems (a choice left empty, an
/// identity half given).
fn referral_of(form: &Form) -> Result<ReferralRequest, Vec<FieldProblem>> {
    let mut problems = Vec::new();
    let mut body = Map::new();
    let mut required =
        |name: &str, key: &str, message: &str, body: &mut Map<String, Value>| match form
            .get(name)
            .filter(|v| !v.is_empty())
        {
            Some(v) => {
                body.insert(key.into(), json!(v));
            }
            None => problems.push(FieldProblem::new(name, message)),
        };
    required(
        "tranche",
        "age_band",
        "Choisissez la tranche d'âge.",
        &mut body,
    );
    required(
        "genre",
        "gender",
        "Choisissez le genre (ou « Non renseigné »).",
        &mut body,
    );
    required(
        "urgence",
        "urgency",
        "Choisissez le degré d'urgence.",
        &mut body,
    );
    let mut consent = Map::new();
    match form.get("consentement").filter(|v| !v.is_empty()) {
        Some(v) => {
            consent.insert("status".into(), json!(v));
        }
        None => problems.push(FieldProblem::new(
            "consentement",
            "Indiquez si la personne a été informée.",
        )),
    }
    for (name, key) in [("commune", "commune"), ("secteur", "sector")] {
        let v = form.text(name);
        if !v.is_empty() {
            body.insert(key.into(), json!(v.to_uppercase()));
        }
    }
    body.insert("needs".into(), json!(form.all("besoins")));
    let justification = form.raw("justification");
    if !justification.trim().is_empty() {
        consent.insert("justification".into(), json!(justification));
    }
    body.insert("consent".into(), Value::Object(consent));
    body.insert("situation".into(), json!(form.raw("situation")));
    let expectations = form.raw("attentes");
    if !expectations.trim().is_empty() {
        body.insert("expectations".into(), json!(expectations));
    }
    let identity = [
        form.text("nom"),
        form.text("prenom"),
        form.text("naissance"),
    ];
    match identity.iter().filter(|v| !v.is_empty()).count() {
        0 => {}
        3 => {
            body.insert(
                "identity".into(),
                json!({"last_name": identity[0], "first_name": identity[1], "birth_date": identity[2]}),
            );
        }
        _ => problems.push(FieldProblem::new(
            "nom",
            "Pour repérer un doublon, donnez le nom, le prénom et la date de naissance, ou aucun des trois.",
        )),
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let text = Value::Object(body).to_string();
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize::<_, ReferralRequest>(&mut de).map_err(|e| {
        let pointer = e.path().iter().map(|s| format!("/{s}")).collect::<String>();
        vec![problem_at(&pointer, "invalid value")]
    })
}

/// The form field a JSON pointer of the referral is about.
fn field_of(pointer: &str) -> &'static str {
    match pointer {
        "/age_band" => "tranche",
        "/gender" => "genre",
        "/commune" => "commune",
        "/sector" => "secteur",
        "/urgency" => "urgence",
        "/consent" | "/consent/status" => "consentement",
        "/consent/justification" => "justification",
        "/situation" => "situation",
        "/expectations" => "attentes",
        "/referring_org" => "organisation",
        p if p.starts_with("/needs") => "besoins",
        p if p.starts_with("/identity") => "nom",
        _ => "situation",
    }
}

/// A service's field error as a French message (its English detail is never shown).
fn problem_at(pointer: &str, detail: &str) -> FieldProblem {
    let field = field_of(pointer);
    let long = detail.contains("at most");
    let message = match field {
        "tranche" => "Choisissez une tranche d'âge de la liste.",
        "genre" => "Choisissez un genre de la liste.",
        "commune" if detail.contains("give a commune") => {
            "Indiquez la commune, le secteur de psychiatrie, ou les deux."
        }
        "commune" => "Le code commune est le code INSEE à 5 caractères (par exemple 66136).",
        "secteur" => "Le code de secteur de psychiatrie n'est pas reconnu (par exemple 66G03).",
        "urgence" => "Choisissez un degré d'urgence de la liste.",
        "consentement" if detail.contains("objected") => {
            "La personne s'oppose au partage : une opposition bloque tout partage, la saisine ne peut pas être enregistrée."
        }
        "consentement" => "Indiquez si la personne a été informée.",
        "justification" if long => "La justification doit faire 2 000 caractères au plus.",
        "justification" => "Expliquez pourquoi la personne n'a pas pu être informée.",
        "situation" if long => "La description doit faire 10 000 caractères au plus.",
        "situation" => "Décrivez la situation.",
        "attentes" if long => "Les attentes doivent faire 2 000 caractères au plus.",
        "attentes" => "Les attentes ne peuvent pas être vides.",
        "besoins" if detail.contains("repeat") => "Chaque besoin ne peut être coché qu'une fois.",
        "besoins" => "Cochez au moins un besoin.",
        "nom" => {
            "L'identité n'est pas valide : vérifiez le nom, le prénom et la date de naissance."
        }
        "organisation" => {
            "Votre adhésion n'indique pas d'organisation : demandez à l'administrateur de la compléter."
        }
        _ => "Ce champ n'est pas valide.",
    };
    FieldProblem::new(field, message)
}

/// The form field of a guard hit's field name, and its label.
fn hit_field(name: &str) -> (&'static str, &'static str) {
    match name {
        "expectations" => ("attentes", "Attentes"),
        "consent.justification" => ("justification", "Justification"),
        _ => ("situation", "Description de la situation"),
    }
}

/// `text` cut into plain parts and the identifiers of `hits` (character offsets), numbered from
/// `first`. Overlapping hits are shown as one.
pub(super) fn segments(text: &str, hits: &[&Hit], first: usize) -> (Vec<Segment>, Vec<usize>) {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut kept = Vec::new();
    let mut at = 0;
    let mut number = first;
    for (i, hit) in hits.iter().enumerate() {
        let (start, end) = (hit.start.min(chars.len()), hit.end.min(chars.len()));
        if start < at || end <= start {
            continue;
        }
        if start > at {
            out.push(Segment {
                text: chars[at..start].iter().collect(),
                hit: None,
            });
        }
        out.push(Segment {
            text: chars[start..end].iter().collect(),
            hit: Some(number),
        });
        kept.push(i);
        number += 1;
        at = end;
    }
    if at < chars.len() {
        out.push(Segment {
            text: chars[at..].iter().collect(),
            hit: None,
        });
    }
    (out, kept)
}

/// The refused fields with their identifiers marked, and one summary entry per identifier.
fn marked_fields(form: &Form, hits: &[Hit]) -> (Vec<MarkedField>, Vec<FieldProblem>) {
    let mut marked = Vec::new();
    let mut summary = Vec::new();
    let mut number = 1;
    for name in ["situation", "expectations", "consent.justification"] {
        let mut of_field: Vec<&Hit> = hits.iter().filter(|h| h.field == name).collect();
        if of_field.is_empty() {
            continue;
        }
        of_field.sort_by_key(|h| (h.start, h.end));
        let (field, label) = hit_field(name);
        let (segments, kept) = segments(&form.raw(field), &of_field, number);
        let hints: Vec<HitHint> = kept
            .iter()
            .enumerate()
            .map(|(k, i)| HitHint {
                number: number + k,
                anchor: format!("{field}-identifiant-{}", number + k),
                hint: text::hint(of_field[*i]),
            })
            .collect();
        for h in &hints {
            summary.push(FieldProblem {
                field: h.anchor.clone(),
                message: format!("{label}, identifiant {} — {}", h.number, h.hint),
            });
        }
        number += hints.len();
        marked.push(MarkedField {
            field,
            label,
            segments,
            hints,
        });
    }
    (marked, summary)
}

/// `POST /c/{cellule}/saisines`: submits the referral; the form comes back on any refusal.
pub async fn submit(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    body: Bytes,
) -> Response {
    let (form, member) = match enter_form(&state, &signed, &slug, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let again = |errors: Vec<FieldProblem>, marked: Vec<MarkedField>| {
        let page = page_for(&state, &signed, &member, &form, errors, marked);
        render(StatusCode::UNPROCESSABLE_ENTITY, &page)
    };
    let request = match referral_of(&form) {
        Ok(r) => r,
        Err(problems) => return again(problems, vec![]),
    };
    match cases::submit(&state.app, &member, request, None).await {
        Ok(created) => see_other(&format!(
            "/c/{}/saisines?envoyee={}",
            member.slug(),
            created.reference
        )),
        Err(Error::Validation(errors)) => again(
            errors
                .iter()
                .map(|e| problem_at(&e.pointer, &e.detail))
                .collect(),
            vec![],
        ),
        Err(Error::Identifiers(hits)) => {
            let (marked, summary) = marked_fields(&form, &hits);
            again(summary, marked)
        }
        Err(Error::CharterNotAccepted) => see_other(&format!(
            "/c/{}/charte?suite=/c/{}/saisines/nouvelle",
            member.slug(),
            member.slug()
        )),
        Err(e) => page::error(e),
    }
}

/// A referral as its author follows it, with the day it was reviewed in session, the routed
/// interlocutor's professional contact and the coordinator's message for the referrer.
struct ReferralRow {
    reference: String,
    status: &'static str,
    submitted: String,
    decided: Option<String>,
    updated: String,
    routed_to: Option<String>,
    reviewed_on: Option<String>,
    contact: Option<String>,
    message: Option<String>,
}

#[derive(Template)]
#[template(path = "referrals.html")]
struct ReferralsPage {
    c: Chrome,
    rows: Vec<ReferralRow>,
    sent: Option<String>,
    new_href: Option<String>,
}

#[derive(Deserialize)]
pub struct SentQuery {
    envoyee: Option<String>,
}

/// `GET /c/{cellule}/saisines`: *Mes saisines*.
pub async fn mine(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    Query(q): Query<SentQuery>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let here = format!("/c/{}/saisines", member.slug());
    let list = match cases::my_referrals(&state.app, &member).await {
        Ok(l) => l,
        Err(e) => return page::error(e),
    };
    // Only a reference of the list is echoed (the query is not trusted).
    let sent = q.envoyee.filter(|r| list.iter().any(|s| &s.reference == r));
    let rows = list
        .into_iter()
        .map(|s| ReferralRow {
            reference: s.reference,
            status: text::status(s.status),
            submitted: text::when(s.submitted_at),
            decided: s.decided_at.map(text::day),
            updated: text::when(s.updated_at),
            routed_to: s.routed_to,
            reviewed_on: s.reviewed_on.map(text::calendar_day),
            contact: s.contact,
            message: s.message,
        })
        .collect();
    let c = chrome(&state, &signed, &member, "Mes saisines", &here);
    let new_href = c
        .nav
        .iter()
        .find(|l| l.href.ends_with("/saisines/nouvelle"))
        .map(|l| l.href.clone());
    render(
        StatusCode::OK,
        &ReferralsPage {
            c,
            rows,
            sent,
            new_href,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::guard::{Guard, IdentifierKind};

    /// A real hit of the guard, moved to `start..end`.
    fn hit(start: usize, end: usize) -> Hit {
        let guard = Guard::new(chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"));
        let mut hit = guard.scan("situation", "Tél. 06 12 34 56 78").remove(0);
        assert_eq!(hit.kind, IdentifierKind::Phone);
        hit.start = start;
        hit.end = end;
        hit
    }

    #[test]
    fn identifiers_are_cut_out_by_character_offsets() {
        // Accents, a line break as browsers send it (CRLF), then the number.
        let text = "Évincée du logement.\r\nTél. 06 12 34 56 78 — à rappeler.";
        let guard = Guard::new(chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"));
        let hits = guard.scan("situation", text);
        assert_eq!(hits.len(), 1, "{hits:?}");
        let refs: Vec<&Hit> = hits.iter().collect();
        let (parts, kept) = segments(text, &refs, 1);
        assert_eq!(kept, vec![0]);
        let marked: Vec<&Segment> = parts.iter().filter(|p| p.hit.is_some()).collect();
        assert_eq!(marked.len(), 1);
        assert_eq!(marked[0].text, "06 12 34 56 78");
        assert_eq!(marked[0].hit, Some(1));
        let whole: String = parts.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(whole, text, "nothing lost or added");
    }

    #[test]
    fn overlapping_or_out_of_range_hits_are_shown_once() {
        let refs_owned = [hit(0, 4), hit(2, 6), hit(8, 99)];
        let refs: Vec<&Hit> = refs_owned.iter().collect();
        let (parts, kept) = segments("abcdefghij", &refs, 3);
        assert_eq!(kept, vec![0, 2]);
        let numbers: Vec<Option<usize>> = parts.iter().map(|p| p.hit).collect();
        assert_eq!(numbers, vec![Some(3), None, Some(4)]);
        assert_eq!(parts[2].text, "ij");
    }

    #[test]
    fn a_half_given_identity_is_refused_by_the_form() {
        let body = axum::body::Bytes::from_static(
            b"tranche=35-44&genre=m&urgence=routine&consentement=informed&nom=X&situation=s",
        );
        let problems = referral_of(&Form::parse(&body)).expect_err("refused");
        assert_eq!(problems[0].field, "nom");
    }
}
