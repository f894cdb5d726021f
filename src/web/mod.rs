//! The web application (SPEC §11): French, server-rendered pages under `/` for the people of the
//! cellules, one more adapter over the same services as the API (`crate::http`), so that the
//! same Cedar policies decide and the same audit entries are written.
//!
//! - Sign-in by OpenID Connect (authorization code, PKCE, `state`, `nonce`; [`sign_in`]), or,
//!   with the development issuer on, a local page listing the cellules' people; a server-side
//!   session in a `HttpOnly`, `SameSite=Lax` cookie ([`session`]).
//! - Every state-changing form carries the session's CSRF token and its request's `Origin` must
//!   be this site's; every page has a strict Content-Security-Policy (no inline script or style)
//!   and works without JavaScript.
//! - Templates in `src/web/templates/` (askama, checked at compile time), one layout; the
//!   stylesheet and the small script in `src/web/assets/`, compiled in ([`assets`]).

// A refusal here is the page (or redirect) to answer: `Result<_, Response>` is the point.
#![allow(clippy::result_large_err)]

mod admin;
mod annuaire;
mod annuaire_form;
mod assets;
mod auditor;
mod case_actions;
mod chart;
mod compte_rendu;
mod desk;
mod forms;
mod home;
mod minutes_view;
mod my_sessions;
mod notices;
mod page;
mod referrals;
mod schedule_form;
mod screening;
mod seance_point;
mod seances;
mod seances_plan;
mod session;
mod sign_in;
mod situations;
mod statistiques;
mod text;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};

use crate::auth::DevIssuer;
use crate::auth::oidc::{self, OidcClient};
use crate::services::AppState;
use crate::services::web_sessions::Sessions;

pub use page::not_found;

/// What the pages work with: the services' state and the web's own.
#[derive(Clone)]
pub struct WebState {
    pub app: AppState,
    web: Arc<Web>,
}

struct Web {
    sessions: Sessions,
    issuers: Vec<OidcClient>,
    /// The development issuer, when on: the local sign-in page exists only then.
    dev: Option<DevIssuer>,
    /// `scheme://host[:port]` of `web.base_url`, compared with each POST's `Origin`.
    origin: String,
    /// Cookies are `Secure` (and the session's is `__Host-` prefixed) unless the site is served
    /// over plain http on a loopback address.
    secure: bool,
}

/// Why the web application could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebSetupError {
    #[error("web sessions: {0}")]
    Sessions(#[from] crate::error::Error),
    #[error("web sign-in: {0}")]
    Oidc(#[from] crate::auth::oidc::OidcError),
    #[error(transparent)]
    DevIssuer(#[from] crate::auth::dev_issuer::DevIssuerError),
}

impl WebState {
    /// The web application over `app` (its sessions kept in the service's database).
    pub fn new(app: AppState) -> Result<Self, WebSetupError> {
        let config = app.config.clone();
        let sessions = Sessions::new(app.db.clone(), &config)?;
        let issuers = oidc::clients(&config)?;
        let dev = if config.auth.dev_issuer_enabled() {
            Some(DevIssuer::load_or_create(
                &config.data_dir,
                &config.auth.dev_issuer,
            )?)
        } else {
            None
        };
        let base = config.base_url();
        let origin = base.origin().ascii_serialization();
        let secure = base.scheme() == "https";
        Ok(Self {
            web: Arc::new(Web {
                sessions,
                issuers,
                dev,
                origin,
                secure,
            }),
            app,
        })
    }

    /// Removes expired sessions and sign-ins (the server runs it now and then).
    pub async fn purge_sessions(&self) {
        let now = self.app.clock.now();
        match self.web.sessions.purge(now).await {
            Ok(n) if n > 0 => tracing::info!(removed = n, "expired web sessions removed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purging web sessions failed"),
        }
    }
}

/// The pages, under `/` (the API's `/v1` is not theirs).
pub fn router<S: Clone + Send + Sync + 'static>(state: WebState) -> Router<S> {
    let mut pages = Router::new()
        .route("/", get(home::home))
        .route("/connexion", get(sign_in::page))
        .route("/connexion/oidc/{n}", get(sign_in::start))
        .route(oidc::CALLBACK_PATH, get(sign_in::callback))
        .route("/deconnexion", post(sign_in::sign_out))
        .route(oidc::SIGNED_OUT_PATH, get(sign_in::signed_out))
        .route("/c/{cellule}", get(home::cellule))
        .route(
            "/c/{cellule}/charte",
            get(home::charter).post(home::accept_charter),
        )
        .route(
            "/c/{cellule}/saisines",
            get(referrals::mine).post(referrals::submit),
        )
        .route("/c/{cellule}/saisines/nouvelle", get(referrals::new))
        .route("/c/{cellule}/seances", get(seances_plan::list))
        .route("/c/{cellule}/seances/planifier", post(seances_plan::plan))
        .route(
            "/c/{cellule}/seances/calendrier",
            get(schedule_form::show).post(schedule_form::save),
        )
        .route(
            "/c/{cellule}/seances/supplementaire",
            post(seances_plan::add),
        )
        .route("/c/{cellule}/seances/{sid}", get(seances::show))
        .route("/c/{cellule}/seances/{sid}/{action}", post(seances::act))
        .route(
            "/c/{cellule}/seances/{sid}/calendrier.ics",
            get(seances::calendar),
        )
        .route(
            "/c/{cellule}/seances/{sid}/seance",
            get(seance_point::show).post(seance_point::decide),
        )
        .route(
            "/c/{cellule}/seances/{sid}/compte-rendu",
            get(compte_rendu::show),
        )
        .route(
            "/c/{cellule}/seances/{sid}/compte-rendu/approuver",
            post(compte_rendu::approve),
        )
        .route(
            "/c/{cellule}/seances/{sid}/compte-rendu.pdf",
            get(compte_rendu::pdf),
        )
        .route("/c/{cellule}/situations", get(situations::list))
        .route("/c/{cellule}/situations/{reference}", get(desk::case))
        .route(
            "/c/{cellule}/situations/{reference}/statut",
            post(case_actions::transition),
        )
        .route(
            "/c/{cellule}/situations/{reference}/effacement",
            post(case_actions::erase),
        )
        .route(
            "/c/{cellule}/situations/{reference}/notes",
            post(desk::add_note),
        )
        .route("/c/{cellule}/suivis", get(desk::follow_ups))
        .route("/c/{cellule}/mes-seances", get(my_sessions::mine))
        .route(
            "/c/{cellule}/avis",
            get(notices::page).post(notices::choose),
        )
        .route(
            "/c/{cellule}/mes-seances/{sid}/calendrier.ics",
            get(my_sessions::calendar),
        )
        .route(
            "/c/{cellule}/comptes-rendus/{sid}",
            get(my_sessions::minutes_page),
        )
        .route(
            "/c/{cellule}/comptes-rendus/{sid}/compte-rendu.pdf",
            get(my_sessions::minutes_pdf),
        )
        .route("/c/{cellule}/a-examiner", get(screening::page))
        .route(
            "/c/{cellule}/a-examiner/{reference}",
            post(screening::decide),
        )
        .route("/c/{cellule}/annuaire", get(annuaire::show))
        .route("/c/{cellule}/annuaire/export.json", get(annuaire::export))
        .route("/c/{cellule}/annuaire/{action}", post(annuaire::act))
        .route("/c/{cellule}/statistiques", get(statistiques::page))
        .route("/c/{cellule}/journal", get(auditor::search))
        .route("/c/{cellule}/journal/situation", get(auditor::access_log))
        .route("/c/{cellule}/journal/verification", get(auditor::verify))
        .route("/c/{cellule}/journal/export", get(auditor::export))
        .route("/admin", get(admin::cellules).post(admin::create_cellule))
        .route("/admin/c/{cellule}", get(admin::cellule))
        .route("/admin/c/{cellule}/membres", post(admin::grant))
        .route("/admin/c/{cellule}/membres/retrait", post(admin::revoke))
        .route("/admin/c/{cellule}/charte", post(admin::charter))
        .route("/admin/c/{cellule}/conservation", post(admin::retention))
        .route("/ressources/{name}", get(assets::serve));
    if state.web.dev.is_some() {
        // Only with the development issuer on: the page does not exist otherwise.
        pages = pages.route(
            "/connexion/dev",
            get(sign_in::dev_page).post(sign_in::dev_sign_in),
        );
    }
    pages
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            same_origin,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .with_state(state)
}

/// Refuses a state-changing request whose `Origin` is not this site (a form posted from
/// elsewhere), before anything else reads it.
async fn same_origin(State(state): State<WebState>, req: Request, next: Next) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if origin == Some(state.web.origin.as_str()) {
        next.run(req).await
    } else {
        page::refused_origin()
    }
}

/// The headers every page carries: a strict Content-Security-Policy and the usual others (HSTS
/// too when the site is served over https).
async fn security_headers(State(state): State<WebState>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    page::secure(&mut response);
    if state.web.secure {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}
