//! The administrator's pages: cellules, memberships (grant, change, revoke), the charter's text
//! and the retention of cases. Administrators never see case content, and never act inside a
//! cellule: these pages call the administration services only.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::WebState;
use super::forms::{FieldProblem, Form};
use super::page::{self, Chrome, NavLink, render, see_other};
use super::session::Signed;
use super::text;
use crate::domain::{Role, Sphere};
use crate::error::Error;
use crate::services::access;
use crate::services::cellules::{self, Admin, CreateCellule, PutMember, Retention};
use crate::services::charter::{self, PutCharter};

fn admin_chrome(signed: &Signed, title: &str, current: &str) -> Chrome {
    Chrome::new(title, Some(signed)).nav(
        vec![NavLink {
            href: "/admin".into(),
            label: "Cellules",
            current: false,
        }],
        current,
    )
}

/// Parses a form's JSON into the services' request type; a field that does not parse is
/// reported with the French message of its pointer.
/// The body of an administrator's form: this session's CSRF token checked, then the caller
/// checked to be an administrator.
fn admin_form(state: &WebState, signed: &Signed, body: &Bytes) -> Result<Form, Response> {
    let form = signed.form(body)?;
    access::admin(&state.app, &signed.caller).map_err(page::error)?;
    Ok(form)
}

fn parse<T: serde::de::DeserializeOwned>(
    body: Value,
    message: fn(&str) -> FieldProblem,
) -> Result<T, Vec<FieldProblem>> {
    let text = body.to_string();
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let pointer = e.path().iter().map(|s| format!("/{s}")).collect::<String>();
        vec![message(&pointer)]
    })
}

struct CelluleRow {
    href: String,
    slug: String,
    name: String,
    code: String,
}

#[derive(Template)]
#[template(path = "admin_cellules.html")]
struct CellulesPage {
    c: Chrome,
    cellules: Vec<CelluleRow>,
    errors: Vec<FieldProblem>,
    slug: String,
    name: String,
    code: String,
}

async fn cellules_page(
    state: &WebState,
    signed: &Signed,
    form: &Form,
    errors: Vec<FieldProblem>,
) -> Response {
    let list = match cellules::list(&state.app).await {
        Ok(l) => l,
        Err(e) => return page::error(e),
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render(
        status,
        &CellulesPage {
            c: admin_chrome(signed, "Administration — cellules", "/admin"),
            cellules: list
                .into_iter()
                .map(|c| CelluleRow {
                    href: format!("/admin/c/{}", c.slug),
                    slug: c.slug.as_str().to_owned(),
                    name: c.name.as_str().to_owned(),
                    code: c.code.as_str().to_owned(),
                })
                .collect(),
            errors,
            slug: form.text("slug"),
            name: form.text("nom"),
            code: form.text("code"),
        },
    )
}

/// `GET /admin`: the deployment's cellules.
pub async fn cellules(State(state): State<WebState>, signed: Signed) -> Response {
    if let Err(e) = access::admin(&state.app, &signed.caller) {
        return page::error(e);
    }
    cellules_page(&state, &signed, &Form::default(), vec![]).await
}

fn cellule_problem(pointer: &str) -> FieldProblem {
    match pointer {
        "/slug" => FieldProblem::new(
            "slug",
            "L'identifiant : lettres minuscules, chiffres et tirets (par exemple perpignan).",
        ),
        "/code" => FieldProblem::new(
            "code",
            "Le code des références : 2 à 6 lettres majuscules (par exemple PER).",
        ),
        _ => FieldProblem::new("nom", "Donnez le nom de la cellule."),
    }
}

/// `POST /admin`: creates a cellule.
pub async fn create_cellule(
    State(state): State<WebState>,
    signed: Signed,
    body: Bytes,
) -> Response {
    let form = match admin_form(&state, &signed, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut body = json!({"slug": form.text("slug"), "name": form.text("nom")});
    if !form.text("code").is_empty() {
        body["code"] = json!(form.text("code").to_uppercase());
    }
    let req: CreateCellule = match parse(body, cellule_problem) {
        Ok(r) => r,
        Err(errors) => return cellules_page(&state, &signed, &form, errors).await,
    };
    let created = cellules::create(
        state.app.db.as_ref(),
        state.app.clock.as_ref(),
        &Admin::of(&signed.caller),
        req.slug,
        req.name,
        req.code,
    )
    .await;
    match created {
        Ok(c) => see_other(&format!("/admin/c/{}?fait=cellule", c.slug)),
        Err(Error::Conflict(_)) => {
            let errors = vec![FieldProblem::new(
                "slug",
                "Une cellule a déjà cet identifiant ou ce code.",
            )];
            cellules_page(&state, &signed, &form, errors).await
        }
        Err(Error::Validation(v)) => {
            let errors = v.iter().map(|e| cellule_problem(&e.pointer)).collect();
            cellules_page(&state, &signed, &form, errors).await
        }
        Err(e) => page::error(e),
    }
}

pub struct Pick {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

fn roles(selected: &str) -> Vec<Pick> {
    [
        Role::Referrer,
        Role::Member,
        Role::Coordinator,
        Role::Auditor,
    ]
    .into_iter()
    .map(|r| Pick {
        value: r.as_str(),
        label: text::role(r),
        selected: r.as_str() == selected,
    })
    .collect()
}

fn spheres(selected: &str) -> Vec<Pick> {
    let mut out = vec![Pick {
        value: "",
        label: "Aucune (saisissant, audit)",
        selected: selected.is_empty(),
    }];
    out.extend(
        [Sphere::City, Sphere::Psychiatry]
            .into_iter()
            .map(|s| Pick {
                value: s.as_str(),
                label: text::sphere(s),
                selected: s.as_str() == selected,
            }),
    );
    out
}

struct MemberRow {
    n: usize,
    subject: String,
    role: &'static str,
    roles: Vec<Pick>,
    spheres: Vec<Pick>,
    organisation: String,
    guest: bool,
}

#[derive(Template)]
#[template(path = "admin_cellule.html")]
struct CellulePage {
    c: Chrome,
    base: String,
    slug: String,
    code: String,
    done: Option<&'static str>,
    errors: Vec<FieldProblem>,
    members: Vec<MemberRow>,
    new_subject: String,
    new_roles: Vec<Pick>,
    new_spheres: Vec<Pick>,
    new_organisation: String,
    new_guest: bool,
    charter_version: i64,
    charter_text: String,
    closed_months: i64,
    declined_months: i64,
}

#[derive(Deserialize)]
pub struct Done {
    fait: Option<String>,
}

/// `GET /admin/c/{cellule}`: memberships, charter, retention.
pub async fn cellule(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    Query(q): Query<Done>,
) -> Response {
    if let Err(e) = access::admin(&state.app, &signed.caller) {
        return page::error(e);
    }
    let done = match q.fait.as_deref() {
        Some("cellule") => Some("La cellule est créée."),
        Some("membre") => Some("L'adhésion est enregistrée."),
        Some("retrait") => Some("L'adhésion est retirée : la personne n'a plus accès."),
        Some("charte") => {
            Some("La nouvelle charte est publiée : les membres devront l'accepter à nouveau.")
        }
        Some("conservation") => Some("Les durées de conservation sont enregistrées."),
        _ => None,
    };
    cellule_page(&state, &signed, &slug, &Form::default(), vec![], done).await
}

async fn cellule_page(
    state: &WebState,
    signed: &Signed,
    slug: &str,
    form: &Form,
    errors: Vec<FieldProblem>,
    done: Option<&'static str>,
) -> Response {
    let existing = match cellules::existing(&state.app, slug).await {
        Ok(s) => s,
        Err(e) => return page::error(e),
    };
    let (members, charter, retention, list) = match tokio::try_join!(
        cellules::members(&state.app, existing.as_str()),
        charter::current_text(&state.app, &existing),
        cellules::retention(&state.app, existing.as_str()),
        cellules::list(&state.app),
    ) {
        Ok(all) => all,
        Err(e) => return page::error(e),
    };
    let Some(found) = list.into_iter().find(|c| c.slug == existing) else {
        return page::error(Error::NotFound("cellule"));
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let base = format!("/admin/c/{}", existing.as_str());
    let title = format!("Administration — {}", found.name.as_str());
    render(
        status,
        &CellulePage {
            c: admin_chrome(signed, &title, &base),
            base: base.clone(),
            slug: existing.as_str().to_owned(),
            code: found.code.as_str().to_owned(),
            done,
            errors,
            members: members
                .into_iter()
                .enumerate()
                .map(|(n, m)| MemberRow {
                    n,
                    subject: m.subject.as_str().to_owned(),
                    role: text::role(m.spec.role),
                    roles: roles(m.spec.role.as_str()),
                    spheres: spheres(m.spec.sphere.map(|s| s.as_str()).unwrap_or("")),
                    organisation: m
                        .spec
                        .organisation
                        .map(|o| o.as_str().to_owned())
                        .unwrap_or_default(),
                    guest: m.spec.guest,
                })
                .collect(),
            new_subject: form.text("sujet"),
            new_roles: roles(form.get("role").unwrap_or("referrer")),
            new_spheres: spheres(form.get("sphere").unwrap_or("")),
            new_organisation: form.text("organisation"),
            new_guest: form.get("invite").is_some(),
            charter_version: charter.0,
            charter_text: charter.1,
            closed_months: retention.closed_months,
            declined_months: retention.declined_months,
        },
    )
}

fn member_problem(pointer: &str) -> FieldProblem {
    match pointer {
        "/sub" => FieldProblem::new(
            "sujet",
            "L'identifiant de la personne n'est pas valide (un administrateur ne peut pas être membre).",
        ),
        "/role" => FieldProblem::new("role", "Choisissez un rôle de la liste."),
        "/sphere" => FieldProblem::new(
            "sphere",
            "La sphère : obligatoire pour un membre ou la coordination, sans objet pour l'audit.",
        ),
        "/organisation" => FieldProblem::new(
            "organisation",
            "L'organisation : obligatoire pour ce rôle, sans objet pour l'audit.",
        ),
        "/guest" => FieldProblem::new("invite", "Seul un membre peut être invité."),
        _ => FieldProblem::new("sujet", "Cette adhésion n'est pas valide."),
    }
}

/// `POST /admin/c/{cellule}/membres`: grants or changes a membership.
pub async fn grant(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    body: Bytes,
) -> Response {
    let form = match admin_form(&state, &signed, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut body = json!({"role": form.text("role"), "guest": form.get("invite").is_some()});
    if !form.text("sphere").is_empty() {
        body["sphere"] = json!(form.text("sphere"));
    }
    if !form.text("organisation").is_empty() {
        body["organisation"] = json!(form.text("organisation"));
    }
    let subject = form.text("sujet");
    let req: PutMember = match parse(body, member_problem) {
        Ok(r) => r,
        Err(errors) => return cellule_page(&state, &signed, &slug, &form, errors, None).await,
    };
    match cellules::grant(&state.app, &Admin::of(&signed.caller), &slug, &subject, req).await {
        Ok(_) => see_other(&format!("/admin/c/{slug}?fait=membre")),
        Err(Error::Validation(v)) => {
            let errors = v.iter().map(|e| member_problem(&e.pointer)).collect();
            cellule_page(&state, &signed, &slug, &form, errors, None).await
        }
        Err(e) => page::error(e),
    }
}

/// `POST /admin/c/{cellule}/membres/retrait`: revokes a membership at once.
pub async fn revoke(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    body: Bytes,
) -> Response {
    let form = match admin_form(&state, &signed, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match cellules::revoke(
        &state.app,
        &Admin::of(&signed.caller),
        &slug,
        &form.text("sujet"),
    )
    .await
    {
        Ok(()) => see_other(&format!("/admin/c/{slug}?fait=retrait")),
        Err(e) => page::error(e),
    }
}

/// `POST /admin/c/{cellule}/charte`: publishes a new version of the charter.
pub async fn charter(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    body: Bytes,
) -> Response {
    let form = match admin_form(&state, &signed, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let existing = match cellules::existing(&state.app, &slug).await {
        Ok(s) => s,
        Err(e) => return page::error(e),
    };
    let text = form.raw("texte");
    match charter::publish(
        &state.app,
        &Admin::of(&signed.caller),
        &existing,
        PutCharter { text },
    )
    .await
    {
        Ok(_) => see_other(&format!("/admin/c/{slug}?fait=charte")),
        Err(Error::Validation(_)) => {
            let errors = vec![FieldProblem::new(
                "texte",
                "Le texte de la charte doit faire de 1 à 20 000 caractères.",
            )];
            cellule_page(&state, &signed, &slug, &form, errors, None).await
        }
        Err(e) => page::error(e),
    }
}

/// `POST /admin/c/{cellule}/conservation`: how long closed and declined cases are kept.
pub async fn retention(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    body: Bytes,
) -> Response {
    let form = match admin_form(&state, &signed, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let months = |name: &str| form.text(name).parse::<i64>().unwrap_or(0);
    let body = Retention {
        closed_months: months("fermees"),
        declined_months: months("declinees"),
    };
    match cellules::set_retention(&state.app, &Admin::of(&signed.caller), &slug, body).await {
        Ok(_) => see_other(&format!("/admin/c/{slug}?fait=conservation")),
        Err(Error::Validation(v)) => {
            let errors = v
                .iter()
                .map(|e| {
                    let field = if e.pointer == "/closed_months" {
                        "fermees"
                    } else {
                        "declinees"
                    };
                    FieldProblem::new(field, "Une durée de 1 à 120 mois.")
                })
                .collect();
            cellule_page(&state, &signed, &slug, &form, errors, None).await
        }
        Err(e) => page::error(e),
    }
}
