//! The person's cellules, a cellule's home (the pages its role opens, as the policies say) and
//! the charter a member or coordinator accepts before any case page.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::WebState;
use super::page::{self, Chrome, NavLink, render, see_other};
use super::session::{MaybeSigned, Signed, local_path};
use super::text;
use crate::services::access::{self, CelluleMember};
use crate::services::{cellules, charter};

/// Enters cellule `slug` as the signed-in person (404 page for a stranger, as in the API).
pub(super) async fn enter(
    state: &WebState,
    signed: &Signed,
    slug: &str,
) -> Result<CelluleMember, Response> {
    access::enter(&state.app, &signed.caller, slug, None)
        .await
        .map_err(page::error)
}

/// A form posted to a page of cellule `slug`: its fields (once its CSRF token is checked), then
/// the person entering the cellule.
pub(super) async fn enter_form(
    state: &WebState,
    signed: &Signed,
    slug: &str,
    body: &Bytes,
) -> Result<(super::forms::Form, CelluleMember), Response> {
    let form = signed.form(body)?;
    let member = enter(state, signed, slug).await?;
    Ok((form, member))
}

/// Sends a member or coordinator who has not accepted the current charter to it first.
pub(super) fn charter_gate(
    state: &WebState,
    member: &CelluleMember,
    here: &str,
) -> Result<(), Response> {
    match charter::pending(&state.app, member) {
        Ok(false) => Ok(()),
        Ok(true) => Err(see_other(&format!(
            "/c/{}/charte?suite={}",
            member.slug(),
            url::form_urlencoded::byte_serialize(here.as_bytes()).collect::<String>()
        ))),
        Err(e) => Err(page::error(e)),
    }
}

/// Whether the policies let `member` do `action` in its cellule (once the charter is accepted).
pub(super) fn may(state: &WebState, member: &CelluleMember, action: &str) -> bool {
    matches!(
        access::cellule_action(&state.app, &access::principal(member), action),
        Ok(()) | Err(crate::error::Error::CharterNotAccepted)
    )
}

/// The navigation of a cellule's pages: what the member's role opens.
pub(super) fn cellule_nav(state: &WebState, member: &CelluleMember) -> Vec<NavLink> {
    let base = format!("/c/{}", member.slug());
    let mut nav = vec![NavLink {
        href: base.clone(),
        label: "Accueil de la cellule",
        current: false,
    }];
    let link = |path: &str, label: &'static str| NavLink {
        href: format!("{base}{path}"),
        label,
        current: false,
    };
    if may(state, member, "submit_referral") {
        nav.push(link("/saisines/nouvelle", "Nouvelle saisine"));
    }
    if may(state, member, "list_own_referrals") {
        nav.push(link("/saisines", "Mes saisines"));
    }
    if may(state, member, "manage_sessions") {
        nav.push(link("/seances", "Séances"));
    }
    if member.membership.spec.role == crate::domain::Role::Coordinator {
        nav.push(link("/a-examiner", "Saisines à examiner"));
    }
    if may(state, member, "list_cases") {
        nav.push(link("/situations", "Situations"));
    }
    if may(state, member, "read_sessions") {
        nav.push(link("/mes-seances", "Mes séances"));
    }
    if member.membership.spec.role == crate::domain::Role::Coordinator {
        nav.push(link("/suivis", "Actions et suivis"));
    } else if may(state, member, "list_cases") {
        nav.push(link("/suivis", "Suivis de mon organisation"));
    }
    if may(state, member, "manage_routing") {
        nav.push(link("/annuaire", "Annuaire"));
    }
    if may(state, member, "read_stats") {
        nav.push(link("/statistiques", "Statistiques"));
    }
    nav.push(link("/avis", "Mes avis par courriel"));
    if may(state, member, "read_audit") {
        nav.push(link("/journal", "Journal des accès"));
        nav.push(link("/journal/situation", "Accès à une situation"));
        nav.push(link("/journal/verification", "Vérification et exports"));
    }
    nav
}

/// The layout of a page of `member`'s cellule.
pub(super) fn chrome(
    state: &WebState,
    signed: &Signed,
    member: &CelluleMember,
    title: &str,
    current: &str,
) -> Chrome {
    Chrome::new(title, Some(signed))
        .in_cellule(member.cellule.name.as_str())
        .nav(cellule_nav(state, member), current)
}

struct CelluleCard {
    href: String,
    name: String,
    role: &'static str,
    organisation: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    c: Chrome,
    cellules: Vec<CelluleCard>,
    admin: bool,
}

/// `GET /`: the signed-in person's cellules (and administration), or the way to sign in.
pub async fn home(State(state): State<WebState>, MaybeSigned(signed): MaybeSigned) -> Response {
    let Some(signed) = signed else {
        return see_other("/connexion");
    };
    let memberships = match cellules::memberships_of(&state.app, &signed.caller.subject).await {
        Ok(m) => m,
        Err(e) => return page::error(e),
    };
    let cellules = memberships
        .into_iter()
        .map(|(c, m)| CelluleCard {
            href: format!("/c/{}", c.slug),
            name: c.name.as_str().to_owned(),
            role: text::role(m.spec.role),
            organisation: m
                .spec
                .organisation
                .map(|o| o.as_str().to_owned())
                .unwrap_or_default(),
        })
        .collect();
    render(
        StatusCode::OK,
        &HomePage {
            c: Chrome::new("Mes cellules", Some(&signed)),
            cellules,
            admin: signed.admin,
        },
    )
}

#[derive(Template)]
#[template(path = "cellule.html")]
struct CellulePage {
    c: Chrome,
    role: &'static str,
    organisation: String,
    sphere: &'static str,
    links: Vec<NavLink>,
    /// For whom manages the sessions: the next one not yet held (its page, day, status).
    next_session: Option<(String, String, &'static str)>,
}

/// `GET /c/{cellule}`: the cellule's home for the person's role.
pub async fn cellule(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let here = format!("/c/{}", member.slug());
    if let Err(r) = charter_gate(&state, &member, &here) {
        return r;
    }
    let spec = &member.membership.spec;
    let links = cellule_nav(&state, &member).into_iter().skip(1).collect();
    let next_session = if may(&state, &member, "manage_sessions") {
        match next_session(&state, &member).await {
            Ok(n) => n,
            Err(e) => return page::error(e),
        }
    } else {
        None
    };
    render(
        StatusCode::OK,
        &CellulePage {
            c: chrome(
                &state,
                &signed,
                &member,
                member.cellule.name.as_str(),
                &here,
            ),
            role: text::role(spec.role),
            organisation: spec
                .organisation
                .as_ref()
                .map(|o| o.as_str().to_owned())
                .unwrap_or_default(),
            sphere: spec.sphere.map(text::sphere).unwrap_or(""),
            links,
            next_session,
        },
    )
}

/// The first session from today on that is not yet held (planned, published, or in session).
async fn next_session(
    state: &WebState,
    member: &CelluleMember,
) -> Result<Option<(String, String, &'static str)>, crate::error::Error> {
    use crate::domain::session::SessionStage;
    use crate::services::review::sessions::{self, SessionQuery};
    let today = state.app.clock.now().date_naive();
    let q = SessionQuery {
        from: Some(today),
        to: None,
    };
    let list = sessions::list_sessions(&state.app, member, q).await?;
    Ok(list
        .iter()
        .find(|s| {
            matches!(
                s.status,
                SessionStage::Planned | SessionStage::Published | SessionStage::InSession
            )
        })
        .map(|s| {
            (
                format!("/c/{}/seances/{}", member.slug(), s.id),
                super::seances::session_day(s),
                super::seances::stage(s.status),
            )
        }))
}

#[derive(Deserialize)]
pub struct Next {
    suite: Option<String>,
}

#[derive(Template)]
#[template(path = "charter.html")]
struct CharterPage {
    c: Chrome,
    version: i64,
    text: String,
    accepted: bool,
    must_accept: bool,
    next: String,
    action: String,
}

/// `GET /c/{cellule}/charte`: the charter, with the form to accept it when it is due.
pub async fn charter(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    Query(q): Query<Next>,
) -> Response {
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let view = match charter::current(&state.app, &member).await {
        Ok(v) => v,
        Err(e) => return page::error(e),
    };
    let must_accept = match charter::pending(&state.app, &member) {
        Ok(p) => p,
        Err(e) => return page::error(e),
    };
    let here = format!("/c/{}/charte", member.slug());
    render(
        StatusCode::OK,
        &CharterPage {
            c: chrome(&state, &signed, &member, "Charte de confidentialité", &here),
            version: view.version,
            text: view.text,
            accepted: view.accepted,
            must_accept,
            next: local_path(q.suite.as_deref()),
            action: here.clone(),
        },
    )
}

/// `POST /c/{cellule}/charte`: accepts the version read.
pub async fn accept_charter(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    body: Bytes,
) -> Response {
    let (form, member) = match enter_form(&state, &signed, &slug, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Ok(version) = form.text("version").parse::<i64>() else {
        return page::error(crate::error::Error::invalid("/version", "not a number"));
    };
    match charter::accept(&state.app, &member, charter::AcceptCharter { version }).await {
        Ok(_) => {
            let next = local_path(form.get("suite"));
            let next = if next == "/" {
                format!("/c/{}", member.slug())
            } else {
                next
            };
            see_other(&next)
        }
        Err(e) => page::error(e),
    }
}
