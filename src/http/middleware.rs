//! Cross-cutting request handling: request id, logging span, metrics, security headers and the
//! request timeout. Logs carry the method, the route template, the status and the latency: never
//! bodies, query strings, tokens or concrete path parameters.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::AppState;
use crate::error::Error;
use crate::telemetry::metrics::RequestLabels;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The content security policy of API answers (JSON, problems, metrics, iCalendar).
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

pub use crate::services::access::RequestId;

/// Outermost layer: assigns the request id (a client-sent one is ignored, so logs cannot be
/// forged), opens the span, records metrics and sets the headers every response carries.
pub async fn envelope(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = uuid::Uuid::new_v4().to_string();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", id = %id, method = %method, route = %route);

    let mut response = next.run(req).instrument(span.clone()).await;

    let elapsed = started.elapsed();
    let status = response.status();
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1e3,
            "answered"
        );
    });
    state.metrics.observe(
        RequestLabels {
            method: method.to_owned(),
            route,
            status: status.as_u16().to_string(),
        },
        elapsed.as_secs_f64(),
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, value);
    }
    // Nothing is cached unless the answer says otherwise (the web application's assets).
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The web application's pages set their own (`same-origin`: a form's `Origin` is sent).
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    // API answers load nothing and are framed nowhere; a page that sets its own policy keeps it.
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(API_CSP));
    response
}

/// The method as a metrics label: the standard methods by name, every other one as `other`, so
/// that a client cannot create a label per request.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Abandons a request that runs longer than `http.request_timeout` with a 503 problem.
pub async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(state.config.http.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => Error::Timeout.into_response(),
    }
}

/// The answer to a request whose handler panicked: a generic 500 problem. The panic's location
/// is logged by the panic hook (`telemetry::init`); neither its message nor the request's body
/// is, as either may quote what was sent.
fn panicked(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    Error::Internal("a handler panicked".into()).into_response()
}

/// The layer that turns a panic in a handler (or a middleware inside it) into [`panicked`]'s
/// answer instead of a connection closed without a reply.
pub fn catch_panic()
-> tower_http::catch_panic::CatchPanicLayer<fn(Box<dyn std::any::Any + Send + 'static>) -> Response>
{
    tower_http::catch_panic::CatchPanicLayer::custom(panicked as fn(_) -> Response)
}

#[cfg(test)]
mod panic_tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    /// A handler that panics (here on purpose, as slicing a string inside a character does)
    /// answers a generic 500 problem that repeats nothing of the panic's message.
    #[tokio::test]
    async fn a_panicking_handler_answers_a_generic_500_problem() {
        let app = Router::new()
            .route(
                "/boom",
                get(|| async {
                    let secret = String::from("abcdeé");
                    let n = secret.len() - 1;
                    secret[..n].to_owned()
                }),
            )
            .layer(super::catch_panic());
        let response = app
            .oneshot(Request::get("/boom").body(Body::empty()).expect("request"))
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers()[axum::http::header::CONTENT_TYPE],
            super::super::problem::PROBLEM_JSON
        );
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .expect("body");
        let problem: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(problem["status"], 500);
        assert_eq!(problem["type"], "/problems/internal");
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("abcde") && !text.contains("boundary"),
            "{text}"
        );
    }
}
