//! The browser's side of a session: its cookies, the signed-in visitor extractor and the CSRF
//! check of forms. The rules (timeouts, renewal, the CSRF token) are
//! [`crate::services::web_sessions`]'.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::WebState;
use super::forms::Form;
use super::page;
use crate::services::access::{Caller, RequestId};
use crate::services::web_sessions;

impl WebState {
    /// The session cookie's name: `__Host-` prefixed when cookies are `Secure` (a browser refuses
    /// the prefix on a cookie that is not).
    pub(super) fn session_cookie(&self) -> &'static str {
        if self.web.secure {
            "__Host-cellule-session"
        } else {
            "cellule-session"
        }
    }

    /// The cookie of a sign-in in progress (ten minutes).
    pub(super) fn sign_in_cookie(&self) -> &'static str {
        if self.web.secure {
            "__Host-cellule-connexion"
        } else {
            "cellule-connexion"
        }
    }

    /// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, path `/`, `Secure` unless on loopback.
    pub(super) fn cookie(&self, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
        let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if let Some(age) = max_age {
            text.push_str(&format!("; Max-Age={age}"));
        }
        if self.web.secure {
            text.push_str("; Secure");
        }
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
    }
}

/// The value of cookie `name` in the request.
pub(super) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// A path of this site to come back to (`/c/demo/saisines`), or `/`.
pub(super) fn local_path(raw: Option<&str>) -> String {
    match raw {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() <= 512
                && !p.chars().any(char::is_control) =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// A signed-in person: their session, and the caller the services know them as.
#[derive(Clone)]
pub struct Signed {
    pub caller: Caller,
    secret: String,
    pub csrf: String,
    pub admin: bool,
}

/// Shows no secret (its tokens and PKCE verifier stay out of logs and panics).
impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signed")
            .field("caller", &self.caller)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

impl Signed {
    /// The body of a form of this session: URL-encoded, with this session's CSRF token.
    pub fn form(&self, body: &Bytes) -> Result<Form, Response> {
        let form = Form::parse(body);
        match form.get("_csrf") {
            Some(token) if web_sessions::csrf_valid(&self.secret, token) => Ok(form),
            _ => Err(page::refused_csrf()),
        }
    }

    pub(super) fn secret(&self) -> &str {
        &self.secret
    }
}

/// The visitor's session if they are signed in (`None` otherwise, never an error page).
pub struct MaybeSigned(pub Option<Signed>);

async fn resolve(parts: &Parts, state: &WebState) -> Result<Option<Signed>, Response> {
    let Some(secret) = cookie_value(&parts.headers, state.session_cookie()) else {
        return Ok(None);
    };
    let now = state.app.clock.now();
    let session = state
        .web
        .sessions
        .resume(secret, now)
        .await
        .map_err(page::error)?;
    Ok(session.map(|s| Signed {
        admin: state.app.is_admin(s.subject.as_str()),
        caller: Caller {
            subject: s.subject,
            issuer: s.issuer,
            request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
            route: parts
                .extensions
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_owned()),
            lang: Default::default(),
        },
        csrf: web_sessions::csrf_token(secret),
        secret: secret.to_owned(),
    }))
}

impl FromRequestParts<WebState> for Signed {
    type Rejection = Response;

    /// The signed-in person, or a redirect to the sign-in page that comes back here.
    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Response> {
        match resolve(parts, state).await? {
            Some(signed) => Ok(signed),
            None => {
                let here = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let back = if parts.method == axum::http::Method::GET {
                    local_path(Some(here))
                } else {
                    "/".to_owned()
                };
                let target = format!(
                    "/connexion?suite={}",
                    url::form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
                );
                Err(Redirect::to(&target).into_response())
            }
        }
    }
}

impl FromRequestParts<WebState> for MaybeSigned {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Response> {
        Ok(MaybeSigned(resolve(parts, state).await?))
    }
}
