//! What every page shares: the layout's data ([`Chrome`]), rendering, and the French pages of
//! errors. A service error becomes a French message that names no value the person did not type
//! and no case content (the same text for "does not exist" and "not yours to see").

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::assets;
use super::session::Signed;
use crate::error::Error;

/// A link of the navigation.
#[derive(Debug, Clone)]
pub struct NavLink {
    pub href: String,
    pub label: &'static str,
    pub current: bool,
}

/// The cellule a page belongs to.
#[derive(Debug, Clone)]
pub struct CelluleTag {
    pub name: String,
}

/// The layout's data: title, the signed-in person, the CSRF token of their forms, navigation.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub title: String,
    pub subject: Option<String>,
    pub csrf: String,
    pub css: &'static str,
    pub js: &'static str,
    /// The cellule the page belongs to.
    pub cellule: Option<CelluleTag>,
    pub nav: Vec<NavLink>,
}

impl Chrome {
    pub fn new(title: impl Into<String>, signed: Option<&Signed>) -> Self {
        Self {
            title: title.into(),
            subject: signed.map(|s| s.caller.subject.as_str().to_owned()),
            csrf: signed.map(|s| s.csrf.clone()).unwrap_or_default(),
            css: assets::css_url(),
            js: assets::js_url(),
            cellule: None,
            nav: Vec::new(),
        }
    }

    pub fn in_cellule(mut self, name: &str) -> Self {
        self.cellule = Some(CelluleTag {
            name: name.to_owned(),
        });
        self
    }

    pub fn nav(mut self, nav: Vec<NavLink>, current: &str) -> Self {
        self.nav = nav
            .into_iter()
            .map(|mut l| {
                l.current = l.href == current;
                l
            })
            .collect();
        self
    }
}

/// Renders a page with `status`.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "page rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><html lang=\"fr\"><title>Erreur</title><p>Une erreur interne est survenue.</p></html>".to_owned()),
            )
                .into_response()
        }
    }
}

/// A redirect after a form (303: the next request is a GET).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    c: Chrome,
    heading: &'static str,
    message: &'static str,
}

fn error_page(status: StatusCode, heading: &'static str, message: &'static str) -> Response {
    render(
        status,
        &ErrorPage {
            c: Chrome::new(heading, None),
            heading,
            message,
        },
    )
}

/// A missing page (also the answer of any path under `/` that is neither a page nor the API).
pub fn not_found() -> Response {
    let mut r = error_page(
        StatusCode::NOT_FOUND,
        "Page introuvable",
        "Cette page n'existe pas, ou vous n'y avez pas accès.",
    );
    secure(&mut r);
    r
}

/// Sets the headers every page carries: a strict Content-Security-Policy (no inline script or
/// style, no framing, forms to this site only) and the usual others.
pub fn secure(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'",
        ),
    );
    for (name, value) in [
        (
            "permissions-policy",
            "camera=(), microphone=(), geolocation=(), payment=()",
        ),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        // Not `no-referrer`: browsers then send `Origin: null` with this site's own forms.
        ("referrer-policy", "same-origin"),
    ] {
        headers.insert(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
}

/// A form posted from another site.
pub fn refused_origin() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Requête refusée",
        "Ce formulaire ne vient pas de cette application : rien n'a été enregistré. Revenez à la page et envoyez-le à nouveau.",
    )
}

/// A form without the CSRF token of the session.
pub fn refused_csrf() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Formulaire expiré",
        "Ce formulaire n'appartient pas à votre session (elle a peut-être changé) : rien n'a été enregistré. Rechargez la page et envoyez-le à nouveau.",
    )
}

/// A sign-in that cannot be finished.
pub fn sign_in_failed() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "Connexion impossible",
        "La connexion n'a pas pu être vérifiée (lien expiré, déjà utilisé ou venant d'ailleurs). Recommencez depuis la page de connexion.",
    )
}

/// A service error as a French page. Case content or a value the person did not type is never
/// in it; the cause of a 5xx is logged, not shown.
pub fn error(e: Error) -> Response {
    match e {
        Error::NotFound(what) => error_page(
            StatusCode::NOT_FOUND,
            "Introuvable",
            match what {
                "cellule" => "Cette cellule n'existe pas, ou vous n'en êtes pas membre.",
                "case" => "Cette situation n'existe pas, ou vous n'y avez pas accès.",
                "membership" => "Cette personne n'est pas membre de la cellule.",
                _ => "Ce que vous cherchez n'existe pas, ou vous n'y avez pas accès.",
            },
        ),
        Error::Forbidden(_) => error_page(
            StatusCode::FORBIDDEN,
            "Accès refusé",
            "Votre rôle dans cette cellule ne permet pas cette action.",
        ),
        Error::CharterNotAccepted => error_page(
            StatusCode::FORBIDDEN,
            "Charte à accepter",
            "Acceptez la charte de confidentialité de la cellule avant d'accéder aux situations.",
        ),
        Error::Conflict(_) | Error::InvalidTransition(_) => error_page(
            StatusCode::CONFLICT,
            "Opération impossible",
            "Les données ont changé entre-temps ou l'opération n'est pas possible dans cet état : rien n'a été modifié. Rechargez la page.",
        ),
        Error::Validation(_) | Error::Identifiers(_) | Error::MalformedJson(_) => error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Formulaire invalide",
            "Le formulaire contient des valeurs invalides : rien n'a été enregistré.",
        ),
        Error::PayloadTooLarge(_) => error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Formulaire trop long",
            "Le formulaire dépasse la taille acceptée : raccourcissez les textes.",
        ),
        Error::Unauthorized(_) => see_other("/connexion"),
        Error::TooManyRequests(wait) => {
            let mut r = error_page(
                StatusCode::TOO_MANY_REQUESTS,
                "Trop de demandes",
                "Trop de demandes en peu de temps : patientez un instant avant de recommencer.",
            );
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Error::MethodNotAllowed | Error::UnsupportedMediaType | Error::NotAcceptable(_) => {
            not_found()
        }
        Error::Timeout | Error::Unavailable(_) => {
            if let Error::Unavailable(cause) = &e {
                tracing::warn!(cause = %cause, "database unavailable");
            }
            let mut r = error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service momentanément indisponible",
                "Le service ne répond pas pour l'instant : rien n'a été enregistré. Réessayez dans quelques instants.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
        // Not "nothing was recorded": the commit may have happened.
        Error::UnknownOutcome(cause) => {
            tracing::warn!(cause = %cause, "connection lost during a commit: outcome unknown");
            let mut r = error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Résultat incertain",
                "La connexion à la base de données a été perdue pendant l'enregistrement : il a pu avoir lieu ou non. Vérifiez avant de recommencer.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
        // The pages send no idempotency key; answered as any other conflict.
        Error::IdempotencyKeyReused | Error::IdempotencyKeyInFlight => error_page(
            StatusCode::CONFLICT,
            "Opération impossible",
            "Cette demande a déjà été envoyée : rechargez la page.",
        ),
        Error::Internal(cause) => {
            tracing::error!(cause = %cause, "internal error");
            internal()
        }
        Error::Integrity(what) => {
            tracing::error!(target_ids = %what, "integrity failure: a ciphertext did not open");
            internal()
        }
    }
}

fn internal() -> Response {
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Erreur interne",
        "Une erreur interne est survenue. Elle a été consignée ; réessayez plus tard.",
    )
}

/// A file to download: `body` as `content_type`, saved as `filename` (a fixed name, never from
/// input).
pub fn download(
    content_type: &'static str,
    filename: &'static str,
    body: impl Into<axum::body::Body>,
) -> Response {
    let mut r = Response::new(body.into());
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}
