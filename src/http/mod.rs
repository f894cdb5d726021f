//! The HTTP API: per-resource routers merged into one axum router, wrapped in the middleware of
//! [`middleware`]. The OpenAPI 3.1 document is generated from the same route declarations
//! (`utoipa-axum`), so a route cannot exist without being documented.

pub mod admin;
pub mod audit;
pub mod cases;
pub mod client;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod limits;
pub mod me;
pub mod meeting;
pub mod middleware;
pub mod notices;
pub mod problem;
pub mod server;
pub mod sessions;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::domain::FieldError;
use crate::error::Error;
pub use crate::services::AppState;
use problem::Problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cellule",
        description = "Confidential coordination service for the cellules cas complexes of French local mental-health councils (CLSM). Errors are RFC 9457 problem documents (application/problem+json).",
        license(name = "AGPL-3.0-or-later")
    ),
    modifiers(&BearerAuth),
    components(schemas(Problem, FieldError, crate::audit::Action, crate::services::auditor::ExportFormat)),
    tags(
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "memberships", description = "Who the caller is and where"),
        (name = "administration", description = "Cellules and memberships (administrators only)"),
        (name = "cases", description = "Referrals, cases, notes and the charter"),
        (name = "audit", description = "The tamper-evident audit log (auditors)"),
        (name = "sessions", description = "Monthly review: schedule, sessions, agenda, decisions, routing, statistics")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The routes and their OpenAPI description, before state and middleware.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(me::router())
        .merge(admin::router())
        .merge(cases::router())
        .merge(audit::router())
        .merge(sessions::router())
        .merge(meeting::router())
        .merge(notices::router())
        .split_for_parts();
    document_edge_answers(&mut doc);
    (router, doc)
}

/// The answers the edge middleware ([`limits`]) can give to any request, added to every
/// operation that does not describe them itself: 429 past a rate limit.
fn document_edge_answers(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let rate_limited = ResponseBuilder::new()
        .description("Past a rate limit; `Retry-After` says when to retry")
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            operation
                .responses
                .responses
                .entry("429".to_owned())
                .or_insert_with(|| rate_limited.clone().into());
        }
    }
}

/// The generated OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// The API's router.
pub fn router(state: AppState) -> Router {
    router_with(state, None)
}

/// Pages mounted beside the API (the web application), and the answer to a browser asking for
/// a path outside `/v1` that does not exist.
pub struct Pages {
    pub router: Router<AppState>,
    pub not_found: fn() -> Response,
}

/// The complete application router: the API under `/v1`, and `pages` under `/` when given.
pub fn router_with(state: AppState, pages: Option<Pages>) -> Router {
    let (mut routes, doc) = routes();
    let page_not_found = pages.as_ref().map(|p| p.not_found);
    if let Some(pages) = pages {
        routes = routes.merge(pages.router);
    }
    let doc = Arc::new(doc);
    let body_limit = state.config.http.body_limit_bytes;
    // Checked when the configuration was validated.
    let trusted_proxies = state.config.http.trusted_networks().unwrap_or_default();
    routes
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap| async move {
                // A browser asking for a page gets the pages' answer; everyone else a problem.
                let wants_page = headers
                    .get(axum::http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("text/html"));
                match page_not_found {
                    Some(page) if wants_page && !uri.path().starts_with("/v1") => page(),
                    _ => not_found().await,
                }
            },
        )
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            limits::Edge {
                state: state.clone(),
                trusted_proxies: trusted_proxies.into(),
            },
            limits::edge,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::timeout,
        ))
        // Inside the envelope: a panic's 500 is logged and counted with the request's id.
        .layer(middleware::catch_panic())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::envelope,
        ))
        .with_state(state)
}

async fn not_found() -> Response {
    Error::NotFound("resource").into_response()
}

async fn method_not_allowed() -> Response {
    Error::MethodNotAllowed.into_response()
}

/// Serves the API (and `pages`) on `listener` until `shutdown` completes, with the connection
/// limits of [`server`]; in-flight requests then get `http.shutdown_grace` to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    pages: Option<Pages>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.config.http.clone();
    server::serve(listener, router_with(state, pages), &config, shutdown).await
}
