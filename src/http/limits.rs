//! The edge of the API, inside the request timeout: who the client is ([`super::client`]),
//! authentication once per request, the rate limits ([`crate::services::throttle`]) and HSTS.
//!
//! A request with a bearer token is verified here: a valid one counts against its caller's
//! budget (and the verified caller is handed to the `Caller` extractor), an invalid one
//! against the client address's, like a request without a token. Past a budget the answer is
//! 429 with `Retry-After` and a problem document.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

use super::AppState;
use super::client::{Client, client};
use super::extract::{TokenRejected, authenticate};
use super::server::Peer;
use crate::error::Error;

/// `Strict-Transport-Security` for answers a trusted proxy says went over HTTPS.
pub const HSTS: &str = "max-age=31536000";

/// The state of [`edge`].
#[derive(Clone)]
pub struct Edge {
    pub state: AppState,
    pub trusted_proxies: Arc<[IpNet]>,
}

pub async fn edge(State(edge): State<Edge>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<Peer>().map(|p| p.0.ip());
    let client = client(peer, req.headers(), &edge.trusted_proxies);
    req.extensions_mut().insert(client);
    let mut response = match limit(&edge.state, client, &mut req).await {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    if client.https {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    response
}

async fn limit(state: &AppState, client: Client, req: &mut Request) -> Result<(), Error> {
    if req.headers().contains_key(header::AUTHORIZATION) {
        match authenticate(req.headers(), req.extensions(), state).await {
            Ok(caller) => {
                state
                    .limits
                    .subject(&caller.issuer, caller.subject.as_str())
                    .map_err(Error::TooManyRequests)?;
                req.extensions_mut().insert(caller);
                return Ok(());
            }
            Err(Error::Unauthorized(reason)) => {
                req.extensions_mut().insert(TokenRejected(reason));
            }
            Err(other) => return Err(other),
        }
    }
    state
        .limits
        .address(client.ip)
        .map_err(Error::TooManyRequests)
}
