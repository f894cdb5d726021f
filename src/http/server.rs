//! The HTTP/1.1 server: our own accept loop over hyper's connection builder, so that every
//! connection is bounded (`http.*` in the configuration):
//!
//! - **headers** must arrive within `header_read_timeout` (hyper's timer), in at most
//!   `max_headers` fields and `max_header_bytes` bytes;
//! - **idle** connections (no request in flight) are closed after `idle_timeout`;
//! - each connection serves at most `max_requests_per_connection` requests (the last answer says
//!   `Connection: close`);
//! - at most `max_connections` are open. A new connection beyond that takes the place of the
//!   connection that has been idle the longest (a slow or silent client, a keep-alive
//!   connection waiting): a flood of connections that send nothing, or headers byte by byte,
//!   pushes out its own connections, and `/healthz` and `/readyz` still get answered. When
//!   every connection is busy, a small reserve is still accepted; beyond it new connections
//!   are closed at once, before the process runs out of file descriptors.
//!
//! Each request carries its connection's peer address ([`Peer`]): the client address the rate
//! limits use comes from it ([`super::client`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, header};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

use crate::config::HttpConfig;

/// The address of the TCP peer of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Serves `app` on `listener` until `shutdown` completes; in-flight requests then get
/// `http.shutdown_grace` to finish before they are abandoned.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: &HttpConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry::new(config.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_headers(config.max_headers)
        .max_buf_size(config.max_header_bytes)
        .keep_alive(true);
    let limits = Arc::new(Limits {
        builder,
        idle_timeout: config.idle_timeout,
        max_requests: config.max_requests_per_connection,
    });
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut last_accept_warning: Option<Instant> = None;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(slot) = registry.admit() else {
                        // Over the ceiling: closed at once (dropped).
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(
                        stream,
                        peer,
                        app.clone(),
                        limits.clone(),
                        slot,
                        stopping.clone(),
                    ));
                }
                Err(e) => {
                    // Out of file descriptors or memory: wait a little instead of spinning.
                    if last_accept_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(error = %e, "accept failed");
                        last_accept_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    tracing::info!("shutting down: draining in-flight requests");
    drop(listener);
    let _ = stop.send(true);
    if tokio::time::timeout(config.shutdown_grace, registry.drained())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; abandoning remaining requests");
    }
    Ok(())
}

struct Limits {
    builder: hyper::server::conn::http1::Builder,
    idle_timeout: Duration,
    max_requests: u64,
}

/// Serves one connection until it ends, is pushed out, goes idle too long or the server stops.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Arc<Limits>,
    slot: Slot,
    mut stopping: watch::Receiver<bool>,
) {
    let state = slot.state.clone();
    let max_requests = limits.max_requests;
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let busy = Busy::new(state.clone());
        let served = state.served.fetch_add(1, Ordering::Relaxed) + 1;
        let app = app.clone();
        async move {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(Peer(peer));
            let response = app.oneshot(req).await.unwrap_or_else(|e| match e {});
            let (mut parts, body) = response.into_parts();
            if served >= max_requests {
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(Response::from_parts(parts, Tracked { body, _busy: busy }))
        }
    });
    let conn = limits
        .builder
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let state = slot.state.clone();
    let tick = (limits.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let close = loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = state.shed.notified() => break "pushed out",
            changed = stopping.changed() => {
                if changed.is_err() || *stopping.borrow() {
                    break "stopping";
                }
            }
            _ = ticks.tick() => {
                if state.idle_for() >= limits.idle_timeout {
                    break "idle";
                }
            }
        }
    };
    tracing::debug!(reason = close, "closing connection");
    if state.served.load(Ordering::Relaxed) == 0 && state.busy.load(Ordering::Acquire) == 0 {
        // Nothing was ever answered on it: there is nothing to finish.
        return;
    }
    // Let hyper finish what is in flight (an idle keep-alive connection closes at once).
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
}

/// The open connections, for the cap and for choosing which one to push out.
struct Registry {
    max: usize,
    /// Accepted beyond `max` while every connection is busy.
    reserve: usize,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
    empty: Notify,
}

struct ConnState {
    started: Instant,
    /// Requests whose answer is not completely sent.
    busy: AtomicUsize,
    served: AtomicU64,
    /// Milliseconds from `started` to the end of the last answer (0: none yet).
    last_active: AtomicU64,
    shed: Notify,
    shedding: AtomicBool,
}

impl ConnState {
    fn idle_for(&self) -> Duration {
        if self.busy.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let since = Duration::from_millis(self.last_active.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(since)
    }
}

/// A connection's place in the registry; freed when the connection task ends.
struct Slot {
    id: u64,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .registry
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        open.remove(&self.id);
        if open.is_empty() {
            self.registry.empty.notify_waiters();
        }
    }
}

impl Registry {
    fn new(max: usize) -> Self {
        Self {
            max,
            reserve: (max / 16).clamp(4, 64),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            empty: Notify::new(),
        }
    }

    /// A place for a new connection: free, or taken from the connection idle the longest,
    /// or in the reserve; `None` when even the reserve is full.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if open.len() >= self.max {
            let oldest = open
                .values()
                .filter(|c| !c.shedding.load(Ordering::Relaxed))
                .map(|c| (c.idle_for(), c))
                .filter(|(idle, _)| !idle.is_zero())
                .max_by_key(|(idle, _)| *idle)
                .map(|(_, c)| c.clone());
            match oldest {
                Some(c) => {
                    c.shedding.store(true, Ordering::Relaxed);
                    c.shed.notify_one();
                }
                None if open.len() >= self.max + self.reserve => return None,
                None => {}
            }
            if open.len() >= self.max + self.reserve {
                return None;
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            started: Instant::now(),
            busy: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            last_active: AtomicU64::new(0),
            shed: Notify::new(),
            shedding: AtomicBool::new(false),
        });
        open.insert(id, state.clone());
        Some(Slot {
            id,
            state,
            registry: self.clone(),
        })
    }

    /// Completes once every connection has ended.
    async fn drained(&self) {
        loop {
            let notified = self.empty.notified();
            if self
                .open
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .is_empty()
            {
                return;
            }
            notified.await;
        }
    }
}

/// One request in flight on a connection, until its answer is sent (or dropped).
struct Busy(Arc<ConnState>);

impl Busy {
    fn new(state: Arc<ConnState>) -> Self {
        state.busy.fetch_add(1, Ordering::AcqRel);
        Self(state)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let millis = u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_active.store(millis.max(1), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body that keeps its request counted as in flight until it is sent.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
