//! Signing in and out. OpenID Connect (authorization code with PKCE, `state`, `nonce`; see
//! [`crate::auth::oidc`]): the sign-in in progress is kept server-side, bound to the browser by a
//! ten-minute cookie, and usable once; a new session (new secret) at every sign-in, the previous
//! one ended. Sign-out ends the session, then the issuer's when it offers `end_session_endpoint`.
//! The development sign-in (development issuer on only) mints a development token for the
//! chosen subject and verifies it like any API token.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::WebState;
use super::forms::Form;
use super::page::{self, Chrome, render, see_other};
use super::session::{MaybeSigned, Signed, cookie_value, local_path};
use crate::domain::Subject;
use crate::services::cellules;
use crate::services::web_sessions::{self, PendingSignIn, SIGN_IN_WINDOW};

#[derive(Deserialize)]
pub struct Next {
    suite: Option<String>,
}

struct IssuerLink {
    href: String,
    label: String,
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    c: Chrome,
    issuers: Vec<IssuerLink>,
    dev: Option<String>,
}

fn with_next(path: &str, next: &str) -> String {
    if next == "/" {
        path.to_owned()
    } else {
        format!(
            "{path}?suite={}",
            url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        )
    }
}

/// `GET /connexion`: the issuers to sign in with.
pub async fn page(
    State(state): State<WebState>,
    MaybeSigned(signed): MaybeSigned,
    Query(q): Query<Next>,
) -> Response {
    let next = local_path(q.suite.as_deref());
    if signed.is_some() {
        return see_other(&next);
    }
    let issuers = state
        .web
        .issuers
        .iter()
        .enumerate()
        .map(|(n, i)| IssuerLink {
            href: with_next(&format!("/connexion/oidc/{n}"), &next),
            label: i.label.clone(),
        })
        .collect();
    let dev = state
        .web
        .dev
        .as_ref()
        .map(|_| with_next("/connexion/dev", &next));
    render(
        StatusCode::OK,
        &SignInPage {
            c: Chrome::new("Connexion", None),
            issuers,
            dev,
        },
    )
}

/// `GET /connexion/oidc/{n}`: to issuer `n`, with a new `state`, `nonce` and PKCE challenge.
pub async fn start(
    State(state): State<WebState>,
    Path(n): Path<usize>,
    Query(q): Query<Next>,
) -> Response {
    let Some(issuer) = state.web.issuers.get(n) else {
        return page::not_found();
    };
    let authorization = match issuer.authorize().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(issuer = %issuer.issuer, error = %e, "sign-in could not start");
            return page::error(crate::error::Error::Unavailable(
                "the OpenID issuer does not answer".into(),
            ));
        }
    };
    let pending = PendingSignIn {
        issuer: issuer.issuer.clone(),
        state: authorization.state,
        nonce: authorization.nonce,
        pkce_verifier: authorization.pkce_verifier,
        return_to: local_path(q.suite.as_deref()),
    };
    let now = state.app.clock.now();
    let secret = match state.web.sessions.begin_sign_in(&pending, now).await {
        Ok(s) => s,
        Err(e) => return page::error(e),
    };
    let mut response = see_other(authorization.url.as_str());
    let age = i64::try_from(SIGN_IN_WINDOW.as_secs()).unwrap_or(600);
    response.headers_mut().append(
        header::SET_COOKIE,
        state.cookie(state.sign_in_cookie(), &secret, Some(age)),
    );
    response
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

/// `GET /connexion/retour`: the issuer's answer. The sign-in of this browser is taken (once),
/// its `state` compared, the code exchanged with its PKCE verifier, the ID token checked with
/// its `nonce`; then a new session.
pub async fn callback(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let now = state.app.clock.now();
    let Some(flow) = cookie_value(&headers, state.sign_in_cookie()) else {
        return page::sign_in_failed();
    };
    let pending = match state.web.sessions.take_sign_in(flow, now).await {
        Ok(Some(p)) => p,
        Ok(None) => return page::sign_in_failed(),
        Err(e) => return page::error(e),
    };
    let (Some(code), Some(given)) = (q.code.as_deref(), q.state.as_deref()) else {
        return page::sign_in_failed();
    };
    if !web_sessions::same_secret(given, &pending.state) {
        tracing::info!("sign-in refused: state does not match");
        return page::sign_in_failed();
    }
    let Some(issuer) = state
        .web
        .issuers
        .iter()
        .find(|i| i.issuer == pending.issuer)
    else {
        return page::sign_in_failed();
    };
    let signed = match issuer
        .finish(code, &pending.pkce_verifier, &pending.nonce)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(issuer = %issuer.issuer, error = %e, "sign-in refused");
            return page::sign_in_failed();
        }
    };
    if let Some(email) = &signed.verified_email {
        // A failure here costs only the address: the person is signed in all the same.
        if let Err(e) =
            crate::services::notify::record_verified_email(&state.app, &signed.subject, email).await
        {
            tracing::warn!(error = %e, "verified e-mail not recorded");
        }
    }
    let mut response = open_session(
        &state,
        &headers,
        &signed.subject,
        &signed.issuer,
        Some(signed.id_token),
        &pending.return_to,
    )
    .await;
    response.headers_mut().append(
        header::SET_COOKIE,
        state.cookie(state.sign_in_cookie(), "", Some(0)),
    );
    response
}

/// Ends the browser's previous session if any, opens a new one and goes to `next`.
async fn open_session(
    state: &WebState,
    headers: &HeaderMap,
    subject: &Subject,
    issuer: &str,
    id_token: Option<String>,
    next: &str,
) -> Response {
    let sessions = &state.web.sessions;
    if let Some(old) = cookie_value(headers, state.session_cookie())
        && let Err(e) = sessions.end(old).await
    {
        return page::error(e);
    }
    let now = state.app.clock.now();
    match sessions.start(subject, issuer, id_token, now).await {
        Ok(secret) => {
            tracing::info!("web session opened");
            let mut response = see_other(next);
            response.headers_mut().append(
                header::SET_COOKIE,
                state.cookie(state.session_cookie(), &secret, None),
            );
            response
        }
        Err(e) => page::error(e),
    }
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOutPage {
    c: Chrome,
    /// The issuer's sign-out, to finish there too.
    issuer_logout: Option<String>,
    issuer: String,
}

/// `POST /deconnexion`: ends the session here, then at the issuer when it offers it (by an
/// immediate redirect from the page: the CSP's `form-action` keeps a form's redirects here).
pub async fn sign_out(State(state): State<WebState>, signed: Signed, body: Bytes) -> Response {
    if let Err(refused) = signed.form(&body) {
        return refused;
    }
    let ended = match state.web.sessions.end(signed.secret()).await {
        Ok(s) => s,
        Err(e) => return page::error(e),
    };
    let mut logout = None;
    let mut label = String::new();
    if let Some(session) = &ended
        && let Some(issuer) = state
            .web
            .issuers
            .iter()
            .find(|i| i.issuer == session.issuer)
    {
        logout = issuer
            .end_session_url(session.id_token.as_deref())
            .await
            .map(|u| u.to_string());
        label = issuer.label.clone();
    }
    let mut response = render(
        StatusCode::OK,
        &SignedOutPage {
            c: Chrome::new("Déconnexion", None),
            issuer_logout: logout,
            issuer: label,
        },
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        state.cookie(state.session_cookie(), "", Some(0)),
    );
    response
}

/// `GET /deconnecte`: where the issuer sends people back after its sign-out.
pub async fn signed_out() -> Response {
    render(
        StatusCode::OK,
        &SignedOutPage {
            c: Chrome::new("Déconnexion", None),
            issuer_logout: None,
            issuer: String::new(),
        },
    )
}

struct Person {
    subject: String,
    what: String,
}

struct CelluleGroup {
    name: String,
    people: Vec<Person>,
}

#[derive(Template)]
#[template(path = "dev_sign_in.html")]
struct DevPage {
    c: Chrome,
    groups: Vec<CelluleGroup>,
    admins: Vec<String>,
    next: String,
    error: bool,
}

/// `GET /connexion/dev` (development issuer on only): the cellules' people, to sign in as one.
pub async fn dev_page(State(state): State<WebState>, Query(q): Query<Next>) -> Response {
    dev_render(&state, local_path(q.suite.as_deref()), false).await
}

async fn dev_render(state: &WebState, next: String, error: bool) -> Response {
    let mut groups = Vec::new();
    let list = match cellules::list(&state.app).await {
        Ok(l) => l,
        Err(e) => return page::error(e),
    };
    for c in list {
        let members = match cellules::members(&state.app, c.slug.as_str()).await {
            Ok(m) => m,
            Err(e) => return page::error(e),
        };
        groups.push(CelluleGroup {
            name: c.name.as_str().to_owned(),
            people: members
                .into_iter()
                .map(|m| Person {
                    subject: m.subject.as_str().to_owned(),
                    what: [
                        Some(super::text::role_short(m.spec.role.as_str()).to_owned()),
                        m.spec.organisation.as_ref().map(|o| o.as_str().to_owned()),
                        m.spec.guest.then(|| "invité".to_owned()),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", "),
                })
                .collect(),
        });
    }
    let mut admins: Vec<String> = state.app.admins.iter().cloned().collect();
    admins.sort();
    render(
        if error {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        &DevPage {
            c: Chrome::new("Connexion de développement", None),
            groups,
            admins,
            next,
            error,
        },
    )
}

/// `POST /connexion/dev`: signs in as the chosen subject through a development token, checked
/// by the same verifier as the API's tokens.
pub async fn dev_sign_in(
    State(state): State<WebState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(dev) = state.web.dev.as_ref() else {
        return page::not_found();
    };
    let form = Form::parse(&body);
    let next = local_path(form.get("suite"));
    let chosen = form
        .get("sujet")
        .filter(|s| !s.trim().is_empty())
        .or_else(|| form.get("autre"))
        .unwrap_or("")
        .trim()
        .to_owned();
    let Ok(subject) = Subject::parse(&chosen) else {
        return dev_render(&state, next, true).await;
    };
    // The verifier checks `exp` against the system's time: mint on the same.
    let now = chrono::Utc::now();
    let token = match dev.mint(&subject, std::time::Duration::from_secs(60), now) {
        Ok(t) => t,
        Err(e) => return page::error(crate::error::Error::Internal(e.to_string())),
    };
    let verified = match state.app.verifier.verify(&token).await {
        Ok(v) => v,
        Err(e) => return page::error(e.into()),
    };
    open_session(
        &state,
        &headers,
        &verified.subject,
        &verified.issuer,
        None,
        &next,
    )
    .await
    .into_response()
}
