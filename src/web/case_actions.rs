//! What the case page adds about a case's life: its history (status changes, with date, who and
//! reason), its deferrals, its possible duplicates, the link to its access log for whom may read
//! it, and the forms of every lifecycle step the case allows from its status
//! (`POST /c/{cellule}/situations/{ref}/statut`, the API's `POST …/cases/{id}/transitions`) and of
//! its erasure (`POST …/effacement`, the API's `DELETE …/cases/{id}`), offered only when the
//! policies allow them (the use cases decide again). A refusal brings the page back with a
//! French message and what was typed.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::NaiveDate;

use super::WebState;
use super::desk::{Back, case_page};
use super::forms::{FieldProblem, Form, message_for};
use super::home::{enter_form, may};
use super::page::{self, render, see_other};
use super::seance_point::organisations;
use super::session::Signed;
use super::text;
use crate::audit::Action;
use crate::domain::Organisation;
use crate::domain::case::CaseStatus;
use crate::error::{Error, FieldError};
use crate::services::access::CelluleMember;
use crate::services::cases::{self, CaseView, TransitionRequest};

/// Where a refusal that is about no one field points (the lifecycle section).
const SECTION: &str = "changer-statut";
const CONFIRM: &str = "confirmation-effacement";

/// A transition form as typed.
#[derive(Debug, Default)]
pub struct Typed {
    pub to: Option<CaseStatus>,
    pub reason: String,
    pub follow_up: String,
    pub routed: String,
}

impl Typed {
    fn of(form: &Form) -> Self {
        Typed {
            to: CaseStatus::parse(&form.text("vers")).ok(),
            reason: form.raw("motif"),
            follow_up: form.text("suivi"),
            routed: form.text("orientation"),
        }
    }
}

/// A status change as shown.
pub struct EventRow {
    pub at: String,
    pub from: &'static str,
    pub to: &'static str,
    pub actor: String,
    pub reason: Option<String>,
    /// A decline's message for the referrer.
    pub message: Option<String>,
}

/// A field of a transition form: its id, value as typed, and error.
pub struct Field {
    pub id: String,
    pub value: String,
    pub error: Option<String>,
}

/// An organisation the case may be routed to.
pub struct OrgChoice {
    pub name: String,
    pub selected: bool,
}

/// The form of one lifecycle step.
pub struct TransitionForm {
    pub to: &'static str,
    pub heading: &'static str,
    pub help: &'static str,
    pub button: &'static str,
    pub reason_required: bool,
    pub reason: Field,
    pub follow_up: Option<Field>,
    pub routed: Option<(Field, Vec<OrgChoice>)>,
}

/// The erasure form.
pub struct EraseForm {
    pub action: String,
    pub error: Option<String>,
}

/// What the case page shows of the case's life, and the forms to change it.
pub struct Lifecycle {
    pub current: &'static str,
    pub history: Vec<EventRow>,
    pub deferred: i64,
    pub duplicates: Vec<(String, String)>,
    pub journal: Option<String>,
    pub action: String,
    pub transitions: Vec<TransitionForm>,
    pub erase: Option<EraseForm>,
}

/// The words of a step from `from` to `to`: heading, help, button.
fn words(from: CaseStatus, to: CaseStatus) -> (&'static str, &'static str, &'static str) {
    use CaseStatus::*;
    match (from, to) {
        (Submitted, Accepted) => (
            "Retenir la situation",
            "La situation relève de la cellule : elle pourra être inscrite à l'ordre du jour.",
            "Retenir la situation",
        ),
        (_, Accepted) => (
            "Retirer de l'ordre du jour",
            "La situation redevient « retenue » : elle attend une prochaine séance.",
            "Retirer de l'ordre du jour",
        ),
        (_, Declined) => (
            "Ne pas retenir la situation",
            "Le motif est consigné, chiffré, dans l'historique ; l'organisation qui a saisi la cellule est avertie.",
            "Ne pas retenir la situation",
        ),
        (InFollowUp, Scheduled) => (
            "Inscrire de nouveau à l'ordre du jour",
            "Le point de suivi est dû : la situation revient en séance.",
            "Inscrire de nouveau",
        ),
        (_, Scheduled) => (
            "Inscrire à l'ordre du jour",
            "La situation sera examinée en séance.",
            "Inscrire à l'ordre du jour",
        ),
        (_, InFollowUp) => (
            "Mettre en suivi",
            "La situation est orientée ; elle reviendra en séance à la date du point de suivi.",
            "Mettre en suivi",
        ),
        (_, Closed) => (
            "Clôturer la situation",
            "Indiquez l'issue. La situation sera effacée à la fin de la durée de conservation.",
            "Clôturer la situation",
        ),
        (_, Submitted) => ("", "", ""),
    }
}

/// The targets the case may go to from `from`.
fn targets(from: CaseStatus) -> Vec<CaseStatus> {
    CaseStatus::ALL
        .iter()
        .copied()
        .filter(|t| from.can_become(*t))
        .collect()
}

/// The case's life and, as the policies allow `member`, the forms of its steps and erasure;
/// the step `typed` names is filled as typed, its errors among `errors`.
pub(super) async fn lifecycle(
    state: &WebState,
    member: &CelluleMember,
    view: &CaseView,
    typed: &Typed,
    errors: &[FieldProblem],
) -> Result<Lifecycle, Error> {
    let s = &view.summary;
    let here = format!("/c/{}/situations/{}", member.slug(), s.reference);
    let allowed = cases::allowed_actions(
        &state.app,
        member,
        &s.id,
        &["transition_case", "erase_case"],
    )
    .await?;
    let mut steps = Vec::new();
    if allowed.contains(&"transition_case") {
        steps = targets(s.status);
        // A step refused as no longer possible comes back too, with what was typed.
        if let Some(to) = typed.to
            && !steps.contains(&to)
            && !errors.is_empty()
        {
            steps.push(to);
        }
    }
    let organisations = if steps.contains(&CaseStatus::InFollowUp) {
        organisations(state, member).await?
    } else {
        Vec::new()
    };
    let field = |name: &str, to: CaseStatus, typed_value: &str| {
        let id = format!("{name}-{}", to.as_str());
        let mine = typed.to == Some(to);
        Field {
            error: message_for(errors, &id).map(str::to_owned),
            value: if mine {
                typed_value.to_owned()
            } else {
                String::new()
            },
            id,
        }
    };
    let transitions = steps
        .into_iter()
        .map(|to| {
            let (heading, help, button) = words(s.status, to);
            let follow_up = (to == CaseStatus::InFollowUp).then(|| {
                let mut f = field("suivi", to, &typed.follow_up);
                if f.value.is_empty()
                    && typed.to != Some(to)
                    && let Some(d) = s.follow_up_date
                {
                    f.value = d.to_string();
                }
                f
            });
            let routed = (to == CaseStatus::InFollowUp).then(|| {
                let f = field("orientation", to, &typed.routed);
                let current = if typed.to == Some(to) {
                    f.value.clone()
                } else {
                    s.routed_org.clone().unwrap_or_default()
                };
                let choices = organisations
                    .iter()
                    .map(|name| OrgChoice {
                        selected: *name == current,
                        name: name.clone(),
                    })
                    .collect();
                (f, choices)
            });
            TransitionForm {
                to: to.as_str(),
                heading,
                help,
                button,
                reason_required: to.needs_reason(),
                reason: field("motif", to, &typed.reason),
                follow_up,
                routed,
            }
        })
        .collect();
    let erase = allowed.contains(&"erase_case").then(|| EraseForm {
        action: format!("{here}/effacement"),
        error: message_for(errors, CONFIRM).map(str::to_owned),
    });
    Ok(Lifecycle {
        current: text::status(s.status),
        history: view
            .history
            .iter()
            .map(|e| EventRow {
                at: text::when(e.at),
                from: text::status(e.from),
                to: text::status(e.to),
                actor: e.actor.clone(),
                reason: e.reason.clone(),
                message: e.referrer_message.clone(),
            })
            .collect(),
        deferred: view.times_deferred,
        duplicates: view
            .possible_duplicates
            .iter()
            .map(|r| (r.clone(), format!("/c/{}/situations/{r}", member.slug())))
            .collect(),
        journal: may(state, member, "read_access_log").then(|| {
            format!(
                "/c/{}/journal/situation?reference={}",
                member.slug(),
                s.reference
            )
        }),
        action: format!("{here}/statut"),
        transitions,
        erase,
    })
}

/// The page again, with `status`, the errors and what was typed.
async fn again(
    state: &WebState,
    signed: &Signed,
    member: &CelluleMember,
    reference: &str,
    status: StatusCode,
    back: Back,
) -> Response {
    match case_page(state, signed, member, reference, back).await {
        Ok(p) => render(status, &p),
        Err(e) => page::error(e),
    }
}

/// The French message of each refused field of a step to `to`.
fn problems(to: CaseStatus, errors: &[FieldError]) -> Vec<FieldProblem> {
    let id = |name: &str| format!("{name}-{}", to.as_str());
    errors
        .iter()
        .map(|e| match e.pointer.as_str() {
            "/reason" if e.detail.contains("at most") => FieldProblem::new(
                &id("motif"),
                "Le motif doit faire 2 000 caractères au plus.",
            ),
            "/reason" => FieldProblem::new(
                &id("motif"),
                "Indiquez le motif : il est consigné, chiffré, dans l'historique de la situation.",
            ),
            "/follow_up_date" => {
                FieldProblem::new(&id("suivi"), "Indiquez la date du prochain point de suivi.")
            }
            "/routed_org" => FieldProblem::new(
                &id("orientation"),
                "Choisissez une organisation de la liste.",
            ),
            _ => FieldProblem::new(
                SECTION,
                "Le formulaire contient une valeur invalide : rien n'a été modifié.",
            ),
        })
        .collect()
}

/// `POST /c/{cellule}/situations/{reference}/statut`: one lifecycle step (`vers`, with `motif`,
/// `suivi` and `orientation` as the step takes them); back to the page with « Statut modifié ».
pub async fn transition(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, reference)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (form, member) = match enter_form(&state, &signed, &slug, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let typed = Typed::of(&form);
    let mut errors = Vec::new();
    let to = typed.to;
    let follow_up = match to {
        Some(to) if !typed.follow_up.is_empty() => {
            match NaiveDate::parse_from_str(&typed.follow_up, "%Y-%m-%d") {
                Ok(d) => Some(d),
                Err(_) => {
                    errors.push(FieldProblem::new(
                        &format!("suivi-{}", to.as_str()),
                        "Date invalide : utilisez le format jj/mm/aaaa.",
                    ));
                    None
                }
            }
        }
        _ => None,
    };
    let routed = match to {
        Some(to) if !typed.routed.is_empty() => match Organisation::parse(&typed.routed) {
            Ok(o) => Some(o),
            Err(_) => {
                errors.push(FieldProblem::new(
                    &format!("orientation-{}", to.as_str()),
                    "Choisissez une organisation de la liste.",
                ));
                None
            }
        },
        _ => None,
    };
    if to.is_none() {
        errors.push(FieldProblem::new(
            SECTION,
            "Choisissez l'un des changements de statut proposés.",
        ));
    }
    let back = |errors: Vec<FieldProblem>, typed: Typed| Back {
        errors,
        typed,
        ..Back::default()
    };
    let Some(to) = to.filter(|_| errors.is_empty()) else {
        // Refused for what was typed: only whom the use case would let act is told so.
        if let Err(e) = cases::check_action(
            &state.app,
            &member,
            &reference,
            "transition_case",
            Action::TransitionCase,
        )
        .await
        {
            return page::error(e);
        }
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return again(
            &state,
            &signed,
            &member,
            &reference,
            status,
            back(errors, typed),
        )
        .await;
    };
    let request = TransitionRequest {
        to,
        reason: Some(typed.reason.clone()).filter(|r| to.needs_reason() || !r.trim().is_empty()),
        // A message for the referrer goes with a decline at screening (`/a-examiner`).
        referrer_message: None,
        follow_up_date: follow_up,
        routed_org: routed,
    };
    let (status, errors) = match cases::transition(&state.app, &member, &reference, request, None)
        .await
    {
        Ok(case) => {
            return see_other(&format!(
                "/c/{}/situations/{}?statut=modifie",
                member.slug(),
                case.reference
            ));
        }
        Err(Error::Validation(errors)) => (StatusCode::UNPROCESSABLE_ENTITY, problems(to, &errors)),
        Err(Error::Identifiers(hits)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            hits.iter()
                .map(|h| {
                    FieldProblem::new(
                        &format!("motif-{}", to.as_str()),
                        format!("Motif — {}", text::hint(h)),
                    )
                })
                .collect(),
        ),
        Err(Error::InvalidTransition(_)) => (
            StatusCode::CONFLICT,
            vec![FieldProblem::new(
                SECTION,
                "Ce changement de statut n'est pas possible depuis le statut actuel de la situation : rien n'a été modifié.",
            )],
        ),
        Err(Error::CharterNotAccepted) => {
            return see_other(&format!("/c/{}/charte", member.slug()));
        }
        Err(e) => return page::error(e),
    };
    again(
        &state,
        &signed,
        &member,
        &reference,
        status,
        back(errors, typed),
    )
    .await
}

/// `POST /c/{cellule}/situations/{reference}/effacement`: erases the case once `confirmation`
/// is checked; to the list, which says so.
pub async fn erase(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, reference)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (form, member) = match enter_form(&state, &signed, &slug, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if form.get("confirmation") != Some("oui") {
        if let Err(e) = cases::check_action(
            &state.app,
            &member,
            &reference,
            "erase_case",
            Action::EraseCase,
        )
        .await
        {
            return page::error(e);
        }
        let back = Back {
            errors: vec![FieldProblem::new(
                CONFIRM,
                "Cochez la case pour confirmer l'effacement définitif.",
            )],
            ..Back::default()
        };
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return again(&state, &signed, &member, &reference, status, back).await;
    }
    match cases::erase(&state.app, &member, &reference).await {
        Ok(erased) => see_other(&format!(
            "/c/{}/situations?effacee={}",
            member.slug(),
            url::form_urlencoded::byte_serialize(erased.as_bytes()).collect::<String>()
        )),
        Err(Error::CharterNotAccepted) => see_other(&format!("/c/{}/charte", member.slug())),
        Err(e) => page::error(e),
    }
}
