//! The coordinator's *Annuaire*: the routing directory's interlocutors and its ordered rules,
//! each added, changed or removed by a form, the directory exported as JSON and imported back.
//! The API's services do the work ([`directory`]): the same policy (`manage_routing`) decides,
//! the same `change_routing` entry is written, and a refused change comes back as the page with
//! each problem in French beside its field, what was typed kept, nothing stored.
//!
//! Choices where the API is silent:
//! - The services replace whole lists: a form's change is applied here to the stored list (an
//!   interlocutor or rule added at the end, changed in place, removed, a rule moved one place),
//!   then the whole list is sent.
//! - The export is the API's two documents side by side, `{"interlocutors": […], "rules": […]}`
//!   ([`DirectoryDocument`]); the import takes the same document, pasted into a text area (the
//!   web has no multipart form reader), and replaces interlocutors and rules at once, with one
//!   `change_routing` entry.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::WebState;
use super::annuaire_form::{self, InterlocutorFields, RuleFields};
use super::forms::{FieldProblem, Form, message_for};
use super::home::{charter_gate, chrome, enter};
use super::page::{self, Chrome, render, see_other};
use super::session::Signed;
use super::text;
use crate::domain::Sphere;
use crate::domain::case::Need;
use crate::domain::routing::InterlocutorKind;
use crate::error::Error;
use crate::services::access::{self, CelluleMember};
use crate::services::review::directory::{self, DirectoryDocument, Interlocutors, RoutingRules};

/// Enters the *Annuaire* of cellule `slug`: only whom the policies let manage the routing
/// directory (403 for the other roles, 404 for a stranger), once the charter is accepted.
async fn desk(
    state: &WebState,
    signed: &Signed,
    slug: &str,
    here: &str,
) -> Result<CelluleMember, Response> {
    let member = enter(state, signed, slug).await?;
    match access::cellule_action(&state.app, &access::principal(&member), "manage_routing") {
        Ok(()) | Err(Error::CharterNotAccepted) => {}
        Err(e) => return Err(page::error(e)),
    }
    charter_gate(state, &member, here)?;
    Ok(member)
}

/// One option of a select or a checkbox list.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub checked: bool,
}

struct InterlocutorRow {
    id: String,
    name: String,
    sphere: &'static str,
    kind: &'static str,
    place: String,
    needs: String,
    contact: String,
    guest: bool,
    edit: String,
}

struct RuleRow {
    id: String,
    position: usize,
    text: String,
    note: String,
    first: bool,
    last: bool,
    edit: String,
}

#[derive(Template)]
#[template(path = "annuaire.html")]
struct DirectoryPage {
    c: Chrome,
    base: String,
    done: Option<&'static str>,
    errors: Vec<FieldProblem>,
    interlocutors: Vec<InterlocutorRow>,
    rules: Vec<RuleRow>,
    i: InterlocutorFields,
    r: RuleFields,
    spheres: Vec<Choice>,
    kinds: Vec<Choice>,
    i_needs: Vec<Choice>,
    r_needs: Vec<Choice>,
    leads: Vec<Choice>,
    others: Vec<Choice>,
    document: String,
}

impl DirectoryPage {
    fn err(&self, field: &str) -> Option<&str> {
        message_for(&self.errors, field)
    }
}

/// What a page shows besides the stored directory: the forms as typed, their problems.
#[derive(Default)]
struct Shown {
    errors: Vec<FieldProblem>,
    i: Option<InterlocutorFields>,
    r: Option<RuleFields>,
    document: String,
    done: Option<&'static str>,
    /// The interlocutor and the rule whose forms are open for a change (their ids).
    edit_i: Option<String>,
    edit_r: Option<String>,
}

fn need_choices(checked: &[String]) -> Vec<Choice> {
    Need::ALL
        .iter()
        .map(|n| Choice {
            value: n.as_str().to_owned(),
            label: text::need(*n).0.to_owned(),
            checked: checked.iter().any(|c| c == n.as_str()),
        })
        .collect()
}

fn places(communes: &[String], sectors: &[String]) -> String {
    let mut parts = Vec::new();
    if !communes.is_empty() {
        parts.push(format!("communes : {}", communes.join(", ")));
    }
    if !sectors.is_empty() {
        parts.push(format!("secteurs : {}", sectors.join(", ")));
    }
    if parts.is_empty() {
        "tout le territoire".to_owned()
    } else {
        parts.join(" ; ")
    }
}

/// The page over the stored directory, with `shown`.
async fn directory_page(
    state: &WebState,
    signed: &Signed,
    member: &CelluleMember,
    status: StatusCode,
    shown: Shown,
) -> Response {
    let base = format!("/c/{}/annuaire", member.slug());
    let doc = match directory::get_directory(&state.app, member).await {
        Ok(d) => d,
        Err(e) => return page::error(e),
    };
    let i = shown
        .i
        .or_else(|| {
            let id = shown.edit_i.as_deref()?;
            doc.interlocutors
                .iter()
                .find(|it| it.id == id)
                .map(InterlocutorFields::of)
        })
        .unwrap_or_default();
    let r = shown
        .r
        .or_else(|| {
            let id = shown.edit_r.as_deref()?;
            doc.rules.iter().find(|r| r.id == id).map(RuleFields::of)
        })
        .unwrap_or_default();
    let interlocutors = doc
        .interlocutors
        .iter()
        .map(|it| InterlocutorRow {
            id: it.id.clone(),
            name: it.name.clone(),
            sphere: text::sphere(it.sphere),
            kind: text::interlocutor_kind(it.kind),
            place: places(&it.communes, &it.sectors),
            needs: if it.needs.is_empty() {
                "tous".to_owned()
            } else {
                it.needs
                    .iter()
                    .map(|n| text::need(*n).0)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            contact: it.contact.clone(),
            guest: it.guest,
            edit: format!(
                "{base}?interlocuteur={}#form-interlocuteur",
                url::form_urlencoded::byte_serialize(it.id.as_bytes()).collect::<String>()
            ),
        })
        .collect();
    let n = doc.rules.len();
    let rules = doc
        .rules
        .iter()
        .enumerate()
        .map(|(k, rule)| RuleRow {
            id: rule.id.clone(),
            position: k + 1,
            text: annuaire_form::rule_text(rule, &doc.interlocutors),
            note: rule.note.clone(),
            first: k == 0,
            last: k + 1 == n,
            edit: format!(
                "{base}?regle={}#form-regle",
                url::form_urlencoded::byte_serialize(rule.id.as_bytes()).collect::<String>()
            ),
        })
        .collect();
    let spheres = [Sphere::City, Sphere::Psychiatry]
        .iter()
        .map(|s| Choice {
            value: s.as_str().to_owned(),
            label: text::sphere(*s).to_owned(),
            checked: i.sphere == s.as_str(),
        })
        .collect();
    let kinds = InterlocutorKind::ALL
        .iter()
        .map(|k| Choice {
            value: k.as_str().to_owned(),
            label: text::interlocutor_kind(*k).to_owned(),
            checked: i.kind == k.as_str(),
        })
        .collect();
    let leads = doc
        .interlocutors
        .iter()
        .map(|it| Choice {
            value: it.id.clone(),
            label: it.name.clone(),
            checked: r.lead == it.id,
        })
        .collect();
    let others = doc
        .interlocutors
        .iter()
        .map(|it| Choice {
            value: it.id.clone(),
            label: it.name.clone(),
            checked: r.others.contains(&it.id),
        })
        .collect();
    let page = DirectoryPage {
        c: chrome(state, signed, member, "Annuaire d'orientation", &base),
        done: shown.done,
        errors: shown.errors,
        interlocutors,
        rules,
        i_needs: need_choices(&i.needs),
        r_needs: need_choices(&r.needs),
        i,
        r,
        spheres,
        kinds,
        leads,
        others,
        document: shown.document,
        base,
    };
    render(status, &page)
}

#[derive(serde::Deserialize)]
pub struct PageQuery {
    interlocuteur: Option<String>,
    regle: Option<String>,
    fait: Option<String>,
}

/// The confirmation of a form of the page (only these texts: the query is not echoed).
fn done_message(action: &str) -> Option<&'static str> {
    Some(match action {
        "interlocuteur-ajoute" => "L'interlocuteur est ajouté à l'annuaire.",
        "interlocuteur-modifie" => "L'interlocuteur est modifié.",
        "interlocuteur-retire" => "L'interlocuteur est retiré de l'annuaire.",
        "regle-ajoutee" => "La règle est ajoutée, après les autres.",
        "regle-modifiee" => "La règle est modifiée.",
        "regle-retiree" => "La règle est retirée.",
        "regle-deplacee" => "L'ordre des règles est modifié.",
        "import" => "L'annuaire importé remplace le précédent.",
        _ => return None,
    })
}

/// `GET /c/{cellule}/annuaire[?interlocuteur=id][&regle=id][&fait=…]`.
pub async fn show(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let here = format!("/c/{slug}/annuaire");
    let member = match desk(&state, &signed, &slug, &here).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let shown = Shown {
        done: q.fait.as_deref().and_then(done_message),
        edit_i: q.interlocuteur,
        edit_r: q.regle,
        ..Shown::default()
    };
    directory_page(&state, &signed, &member, StatusCode::OK, shown).await
}

/// `GET /c/{cellule}/annuaire/export.json`: the directory, to keep or import elsewhere.
pub async fn export(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
) -> Response {
    let here = format!("/c/{slug}/annuaire");
    let member = match desk(&state, &signed, &slug, &here).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let doc = match directory::get_directory(&state.app, &member).await {
        Ok(d) => d,
        Err(e) => return page::error(e),
    };
    match serde_json::to_string_pretty(&doc) {
        Ok(json) => page::download("application/json", "annuaire.json", json),
        Err(e) => page::error(Error::Internal(e.to_string())),
    }
}

/// Why a form of the page did not go through.
enum Refusal {
    /// The page again, with the problems and what was typed.
    Form(Box<Shown>),
    /// A service's refusal shown as its own page (403, 503…).
    Page(Error),
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Refusal::Page(e)
    }
}

fn problem(field: &str, message: &str) -> Vec<FieldProblem> {
    vec![FieldProblem::new(field, message)]
}

/// `POST /c/{cellule}/annuaire/{action}`: the page's forms.
pub async fn act(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let form = match signed.form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let here = format!("/c/{slug}/annuaire");
    let member = match desk(&state, &signed, &slug, &here).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let result = match action.as_str() {
        "interlocuteur" => save_interlocutor(&state, &member, &form).await,
        "retirer-interlocuteur" => remove_interlocutor(&state, &member, &form).await,
        "regle" => save_rule(&state, &member, &form).await,
        "retirer-regle" => remove_rule(&state, &member, &form).await,
        "deplacer-regle" => move_rule(&state, &member, &form).await,
        "importer" => import(&state, &member, &form).await,
        _ => return page::not_found(),
    };
    match result {
        Ok(done) => see_other(&format!("/c/{}/annuaire?fait={done}", member.slug())),
        Err(Refusal::Form(shown)) => {
            let shown = *shown;
            directory_page(
                &state,
                &signed,
                &member,
                StatusCode::UNPROCESSABLE_ENTITY,
                shown,
            )
            .await
        }
        Err(Refusal::Page(e)) => page::error(e),
    }
}

async fn save_interlocutor(
    state: &WebState,
    member: &CelluleMember,
    form: &Form,
) -> Result<&'static str, Refusal> {
    let fields = InterlocutorFields::from_form(form);
    let doc = directory::get_directory(&state.app, member).await?;
    let refused = |errors: Vec<FieldProblem>, fields: InterlocutorFields| {
        Refusal::Form(Box::new(Shown {
            errors,
            i: Some(fields),
            ..Shown::default()
        }))
    };
    let it = match fields.interlocutor() {
        Ok(it) => it,
        Err(problems) => return Err(refused(problems, fields)),
    };
    let mut list = doc.interlocutors;
    let at = if fields.original.is_empty() {
        list.push(it);
        list.len() - 1
    } else {
        let Some(at) = list.iter().position(|x| x.id == fields.original) else {
            return Err(refused(
                problem(
                    "i-identifiant",
                    "Cet interlocuteur n'est plus dans l'annuaire (il a été retiré entre-temps) : rechargez la page.",
                ),
                fields,
            ));
        };
        list[at] = it;
        at
    };
    let sent = DirectoryDocument {
        interlocutors: list,
        rules: doc.rules,
    };
    let body = Interlocutors {
        interlocutors: sent.interlocutors.clone(),
    };
    match directory::put_interlocutors(&state.app, member, body).await {
        Ok(_) if fields.original.is_empty() => Ok("interlocuteur-ajoute"),
        Ok(_) => Ok("interlocuteur-modifie"),
        Err(Error::Validation(errors)) => Err(refused(
            annuaire_form::french(&errors, &sent, Some((false, at)), "interlocuteurs"),
            fields,
        )),
        Err(e) => Err(e.into()),
    }
}

async fn remove_interlocutor(
    state: &WebState,
    member: &CelluleMember,
    form: &Form,
) -> Result<&'static str, Refusal> {
    let id = form.text("id");
    let doc = directory::get_directory(&state.app, member).await?;
    let Some(gone) = doc.interlocutors.iter().find(|it| it.id == id).cloned() else {
        // Already removed (a second click): nothing to do.
        return Ok("interlocuteur-retire");
    };
    let sent = DirectoryDocument {
        interlocutors: doc
            .interlocutors
            .into_iter()
            .filter(|it| it.id != id)
            .collect(),
        rules: doc.rules,
    };
    let body = Interlocutors {
        interlocutors: sent.interlocutors.clone(),
    };
    match directory::put_interlocutors(&state.app, member, body).await {
        Ok(_) => Ok("interlocuteur-retire"),
        Err(Error::Validation(errors)) => {
            let mut shown = vec![FieldProblem::new(
                "regles",
                format!(
                    "« {} » est encore cité par des règles d'orientation : changez-les ou retirez-les d'abord. Rien n'a été modifié.",
                    gone.name
                ),
            )];
            shown.extend(annuaire_form::french(&errors, &sent, None, "regles"));
            Err(Refusal::Form(Box::new(Shown {
                errors: shown,
                ..Shown::default()
            })))
        }
        Err(e) => Err(e.into()),
    }
}

async fn save_rule(
    state: &WebState,
    member: &CelluleMember,
    form: &Form,
) -> Result<&'static str, Refusal> {
    let fields = RuleFields::from_form(form);
    let doc = directory::get_directory(&state.app, member).await?;
    let refused = |errors: Vec<FieldProblem>, fields: RuleFields| {
        Refusal::Form(Box::new(Shown {
            errors,
            r: Some(fields),
            ..Shown::default()
        }))
    };
    let rule = match fields.rule(&doc.interlocutors) {
        Ok(rule) => rule,
        Err(problems) => return Err(refused(problems, fields)),
    };
    let mut rules = doc.rules;
    let at = if fields.original.is_empty() {
        rules.push(rule);
        rules.len() - 1
    } else {
        let Some(at) = rules.iter().position(|x| x.id == fields.original) else {
            return Err(refused(
                problem(
                    "r-identifiant",
                    "Cette règle n'existe plus (elle a été retirée entre-temps) : rechargez la page.",
                ),
                fields,
            ));
        };
        rules[at] = rule;
        at
    };
    let sent = DirectoryDocument {
        interlocutors: doc.interlocutors,
        rules,
    };
    let body = RoutingRules {
        rules: sent.rules.clone(),
    };
    match directory::put_rules(&state.app, member, body).await {
        Ok(_) if fields.original.is_empty() => Ok("regle-ajoutee"),
        Ok(_) => Ok("regle-modifiee"),
        Err(Error::Validation(errors)) => Err(refused(
            annuaire_form::french(&errors, &sent, Some((true, at)), "regles"),
            fields,
        )),
        Err(e) => Err(e.into()),
    }
}

/// Sends `rules` in place of the stored ones; a refusal is told in the summary.
async fn put_rules(
    state: &WebState,
    member: &CelluleMember,
    interlocutors: Vec<crate::domain::routing::Interlocutor>,
    rules: Vec<crate::domain::routing::Rule>,
    done: &'static str,
) -> Result<&'static str, Refusal> {
    let sent = DirectoryDocument {
        interlocutors,
        rules,
    };
    let body = RoutingRules {
        rules: sent.rules.clone(),
    };
    match directory::put_rules(&state.app, member, body).await {
        Ok(_) => Ok(done),
        Err(Error::Validation(errors)) => Err(Refusal::Form(Box::new(Shown {
            errors: annuaire_form::french(&errors, &sent, None, "regles"),
            ..Shown::default()
        }))),
        Err(e) => Err(e.into()),
    }
}

async fn remove_rule(
    state: &WebState,
    member: &CelluleMember,
    form: &Form,
) -> Result<&'static str, Refusal> {
    let id = form.text("id");
    let doc = directory::get_directory(&state.app, member).await?;
    if !doc.rules.iter().any(|r| r.id == id) {
        return Ok("regle-retiree");
    }
    let rules = doc.rules.into_iter().filter(|r| r.id != id).collect();
    put_rules(state, member, doc.interlocutors, rules, "regle-retiree").await
}

/// Moves rule `id` one place up or down (`sens`): the order decides which rule applies.
async fn move_rule(
    state: &WebState,
    member: &CelluleMember,
    form: &Form,
) -> Result<&'static str, Refusal> {
    let id = form.text("id");
    let doc = directory::get_directory(&state.app, member).await?;
    let mut rules = doc.rules;
    let Some(at) = rules.iter().position(|r| r.id == id) else {
        return Err(Refusal::Form(Box::new(Shown {
            errors: problem(
                "regles",
                "Cette règle n'existe plus (elle a été retirée entre-temps) : rechargez la page.",
            ),
            ..Shown::default()
        })));
    };
    let to = match form.text("sens").as_str() {
        "haut" if at > 0 => at - 1,
        "bas" if at + 1 < rules.len() => at + 1,
        _ => return Ok("regle-deplacee"),
    };
    rules.swap(at, to);
    put_rules(state, member, doc.interlocutors, rules, "regle-deplacee").await
}

/// Replaces the directory with a pasted export.
async fn import(
    state: &WebState,
    member: &CelluleMember,
    form: &Form,
) -> Result<&'static str, Refusal> {
    let typed = form.raw("document");
    let refused = |errors: Vec<FieldProblem>, document: String| {
        Refusal::Form(Box::new(Shown {
            errors,
            document,
            ..Shown::default()
        }))
    };
    if typed.trim().is_empty() {
        return Err(refused(
            problem(
                "document",
                "Collez le contenu d'un fichier exporté de l'annuaire (annuaire.json).",
            ),
            typed,
        ));
    }
    let doc: DirectoryDocument = match serde_json::from_str(&typed) {
        Ok(d) => d,
        Err(e) => {
            let message = format!(
                "Ce texte n'est pas un annuaire exporté par cette application (JSON illisible ou de forme inattendue, ligne {}, colonne {}) : rien n'a été modifié.",
                e.line(),
                e.column()
            );
            return Err(refused(problem("document", &message), typed));
        }
    };
    let sent = doc.clone();
    match directory::put_directory(&state.app, member, doc).await {
        Ok(_) => Ok("import"),
        Err(Error::Validation(errors)) => {
            let mut shown = problem(
                "document",
                "L'annuaire importé est refusé : rien n'a été modifié.",
            );
            shown.extend(annuaire_form::french(&errors, &sent, None, "document"));
            Err(refused(shown, typed))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_confirmations_are_shown() {
        assert!(done_message("import").is_some());
        assert!(done_message("<script>").is_none());
        assert_eq!(places(&[], &[]), "tout le territoire");
        assert_eq!(
            places(&["66136".into()], &["66G03".into()]),
            "communes : 66136 ; secteurs : 66G03"
        );
    }
}
