//! Faults while serving: a request stuck behind a lock times out with a 503 problem; a
//! PostgreSQL that goes away answers 503 and the service recovers by itself when it is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::backend_tests;
use crate::helpers::{
    Backend, COORD, Options, REF1, postgres_base_url, referral, spawn_app, spawn_app_with,
};

async fn slow_requests_time_out_with_a_problem(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            customize: Box::new(|c| c.http.request_timeout = Duration::from_millis(400)),
            ..Options::default()
        },
    )
    .await;
    app.create_cellule("perpignan").await;
    let put = || {
        app.as_admin(
            Method::PUT,
            "/v1/cellules/perpignan/members/bob",
            Some(json!({"role": "auditor"})),
        )
    };

    // Another connection holds a write lock on the memberships.
    match backend {
        Backend::Sqlite => {
            let url = format!(
                "sqlite://{}",
                app.data_dir.path().join("cellule.db").display()
            );
            let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .expect("lock");
            let a = put().await;
            a.assert_problem(503);
            assert_eq!(a.problem_type(), "/problems/timeout");
            sqlx::query("ROLLBACK")
                .execute(&mut conn)
                .await
                .expect("unlock");
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.database_url)
                .await
                .expect("pg");
            let mut tx = conn.begin().await.expect("begin");
            sqlx::query("LOCK TABLE memberships IN ACCESS EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .expect("lock");
            let a = put().await;
            a.assert_problem(503);
            assert_eq!(a.problem_type(), "/problems/timeout");
            tx.rollback().await.expect("unlock");
        }
    }
    // Once the lock is gone the same request goes through.
    let a = put().await;
    assert!(a.status.is_success(), "{}", a.text);
}

/// A TCP relay to PostgreSQL that the test can cut, stall and restore.
struct Relay {
    port: u16,
    open: Arc<AtomicBool>,
    /// Half-open: connections are accepted and bytes read, but nothing is forwarded any more
    /// either way, and no connection is closed (a database host that hangs, a black-holing
    /// firewall).
    stalled: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Forwards `from` to `to` until either closes; once `stalled` is set, reads and forwards
/// nothing more while keeping both open.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.load(Ordering::SeqCst) {
            let _hold = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Relay {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let open = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (o, s, l) = (open.clone(), stalled.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let stalled = s.clone();
                l.lock().await.push(tokio::spawn(async move {
                    if stalled.load(Ordering::SeqCst) {
                        // Accepted, never answered.
                        let _hold = client;
                        std::future::pending::<()>().await;
                        return;
                    }
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::join!(pump(cr, sw, stalled.clone()), pump(sr, cw, stalled));
                    }
                }));
            }
        });
        Self {
            port,
            open,
            stalled,
            links,
        }
    }

    /// Refuses new connections and cuts the existing ones, as a crashed database would.
    async fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    /// Makes the database half-open: connections stay up and new ones are accepted, but
    /// nothing is answered.
    fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// Ends the stall and cuts the connections it froze (as the host's return would reset
    /// them), then accepts and forwards again.
    async fn unstall(&self) {
        self.cut().await;
        self.stalled.store(false, Ordering::SeqCst);
        self.restore();
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// The service reaching PostgreSQL through `relay`.
async fn through(
    relay: &Relay,
    customize: Box<dyn FnOnce(&mut cellule::config::Config) + Send>,
) -> crate::helpers::TestApp {
    let port = relay.port;
    spawn_app_with(
        Backend::Postgres,
        Options {
            customize,
            database_override: Some(Box::new(move |url| {
                let mut url = url::Url::parse(url).expect("url");
                url.set_host(Some("127.0.0.1")).expect("host");
                url.set_port(Some(port)).expect("port");
                url.to_string()
            })),
            ..Options::default()
        },
    )
    .await
}

fn upstream() -> String {
    let base = url::Url::parse(&postgres_base_url()).expect("url");
    format!(
        "{}:{}",
        base.host_str().unwrap_or("127.0.0.1"),
        base.port().unwrap_or(5432)
    )
}

/// A database that accepts connections and never answers is a 503 with `Retry-After` within a
/// few seconds (the pool's liveness check and new connections are bounded by
/// `pool.acquire_timeout`), not a request hanging until the request timeout; the service
/// recovers by itself when the database answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_postgres_answers_503_within_seconds() {
    let relay = Relay::start(upstream()).await;
    // The default settings, as deployed.
    let app = through(&relay, Box::new(|_| {})).await;
    app.standard_cellule().await;
    let (id, _) = app.refer_ok(REF1, "Situation avant le silence.").await;
    let case = format!("/v1/cellules/perpignan/cases/{id}");
    let coord = app.token(COORD);
    assert_eq!(app.get(&case, Some(&coord)).await.status, 200);

    relay.stall();
    for attempt in 0..3 {
        let started = std::time::Instant::now();
        let a = app.get(&case, Some(&coord)).await;
        let took = started.elapsed();
        a.assert_problem(503);
        assert!(a.headers.get("retry-after").is_some(), "{}", a.text);
        assert!(
            took < Duration::from_secs(5),
            "attempt {attempt}: answered after {took:?}"
        );
        let started = std::time::Instant::now();
        let a = app
            .refer(REF1, &referral("Situation pendant le silence."))
            .await;
        a.assert_problem(503);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a submission answered after {:?}",
            started.elapsed()
        );
    }
    let started = std::time::Instant::now();
    app.get("/readyz", None).await.assert_problem(503);
    assert!(started.elapsed() < Duration::from_secs(5));

    relay.unstall().await;
    let mut back = false;
    for _ in 0..40 {
        if app.get(&case, Some(&coord)).await.status == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(back, "reads did not come back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_answers_503_and_recovers_by_itself() {
    let base = url::Url::parse(&postgres_base_url()).expect("url");
    let upstream = format!(
        "{}:{}",
        base.host_str().unwrap_or("127.0.0.1"),
        base.port().unwrap_or(5432)
    );
    let relay = Relay::start(upstream).await;
    let port = relay.port;
    let app = spawn_app_with(
        Backend::Postgres,
        Options {
            customize: Box::new(|c| c.pool.acquire_timeout = Duration::from_secs(1)),
            database_override: Some(Box::new(move |url| {
                let mut url = url::Url::parse(url).expect("url");
                url.set_host(Some("127.0.0.1")).expect("host");
                url.set_port(Some(port)).expect("port");
                url.to_string()
            })),
            ..Options::default()
        },
    )
    .await;
    let alice = app.token("alice");
    assert_eq!(app.get("/v1/me", Some(&alice)).await.status, 200);
    assert_eq!(app.get("/readyz", None).await.status, 200);
    // A case read and a submission have left some of the pool's connections idle.
    app.standard_cellule().await;
    let (id, _) = app.refer_ok(REF1, "Situation avant la coupure.").await;
    let case = format!("/v1/cellules/perpignan/cases/{id}");
    let coord = app.token(COORD);
    assert_eq!(app.get(&case, Some(&coord)).await.status, 200);

    relay.cut().await;
    let a = app.get(&case, Some(&coord)).await;
    a.assert_problem(503);
    assert_eq!(a.problem_type(), "/problems/unavailable");
    let a = app.get("/v1/me", Some(&alice)).await;
    a.assert_problem(503);
    assert_eq!(a.problem_type(), "/problems/unavailable");
    assert!(a.headers.get("retry-after").is_some());
    for leak in ["refused", "pool", "sqlx", "127.0.0.1", "connection"] {
        assert!(
            !a.text.to_lowercase().contains(leak),
            "internal detail {leak:?} in {}",
            a.text
        );
    }
    app.get("/readyz", None).await.assert_problem(503);
    // Liveness does not depend on the database.
    assert_eq!(app.get("/healthz", None).await.status, 200);

    relay.restore();
    let mut ready = false;
    for _ in 0..40 {
        if app.get("/readyz", None).await.status == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ready, "the service did not recover within 10 s");
    let a = app.get("/v1/me", Some(&alice)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    // A connection cut while idle is closed, not handed back: within as many requests as there
    // were connections, reads and submissions go through again, and keep going through.
    let max = app.config.pool.max_connections;
    let mut failed = 0;
    for _ in 0..=max {
        let a = app.get(&case, Some(&coord)).await;
        if a.status == 200 {
            break;
        }
        a.assert_problem(503);
        failed += 1;
    }
    assert!(failed <= max, "case reads did not recover");
    let mut submitted = false;
    for _ in 0..=max {
        let a = app
            .refer(REF1, &referral("Situation après la coupure."))
            .await;
        if a.status == 201 {
            submitted = true;
            break;
        }
        a.assert_problem(503);
    }
    assert!(submitted, "submissions did not recover");
    for _ in 0..3 * max {
        let a = app.get(&case, Some(&coord)).await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
}

/// A server that ends its sessions (a restart, `pg_terminate_backend`, `idle_session_timeout`)
/// sends each connection a `FATAL` error: a connection that gets one is closed, not handed back,
/// so each fails at most one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_ended_by_the_server_fail_once() {
    let app = spawn_app_with(Backend::Postgres, Options::default()).await;
    app.standard_cellule().await;
    let (id, _) = app
        .refer_ok(REF1, "Situation avant la fin des sessions.")
        .await;
    let case = format!("/v1/cellules/perpignan/cases/{id}");
    let coord = app.token(COORD);
    assert_eq!(app.get(&case, Some(&coord)).await.status, 200);

    let mut admin = sqlx::PgConnection::connect(&app.database_url)
        .await
        .expect("pg");
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'cellule') t",
    )
    .fetch_one(&mut admin)
    .await
    .expect("terminate");
    assert!(ended > 0, "no session of the service to end");
    let mut failed = 0;
    let mut served = 0;
    for _ in 0..ended + 5 {
        let a = app.get(&case, Some(&coord)).await;
        if a.status == 200 {
            served += 1;
        } else {
            a.assert_problem(503);
            failed += 1;
        }
    }
    // The pool tests a connection before handing it out: one the server ended is closed
    // there, before a read's statement meets its FATAL notice.
    assert!(
        failed <= 1,
        "{failed} failures for {ended} sessions ended, one of them the reads' connection"
    );
    assert!(served >= 5, "reads did not come back");
    for _ in 0..10 {
        let a = app.get(&case, Some(&coord)).await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
}

backend_tests!(slow_requests_time_out_with_a_problem);

/// Ends the service's sessions so that the pool reconnects with the database's new defaults.
async fn end_service_sessions(admin: &mut sqlx::PgConnection) {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'cellule'",
    )
    .execute(&mut *admin)
    .await
    .expect("terminate");
}

/// A PostgreSQL that refuses writes (a standby promoted away, `default_transaction_read_only`)
/// answers writes 503 and is not ready, though it answers reads; both come back by themselves
/// once it takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_postgres_is_not_ready_and_recovers() {
    let app = spawn_app(Backend::Postgres).await;
    app.standard_cellule().await;
    let (id, _) = app
        .refer_ok(REF1, "Situation avant la lecture seule.")
        .await;
    assert_eq!(app.get("/readyz", None).await.status, 200);
    let mut admin = sqlx::PgConnection::connect(&app.database_url)
        .await
        .expect("pg");
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut admin)
        .await
        .expect("name");
    // Identifiers cannot be bound; the name is the test's own fresh database.
    sqlx::query(&format!(
        "ALTER DATABASE \"{name}\" SET default_transaction_read_only = on"
    ))
    .execute(&mut admin)
    .await
    .expect("read only");
    end_service_sessions(&mut admin).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let mut refused = false;
    for _ in 0..5 {
        let a = app
            .refer(REF1, &referral("Situation en lecture seule."))
            .await;
        assert_ne!(
            a.status, 201,
            "a write acknowledged on a read-only database"
        );
        if a.status == 503 {
            a.assert_problem(503);
            refused = true;
            break;
        }
    }
    assert!(refused, "writes were not answered 503");
    app.get("/readyz", None).await.assert_problem(503);

    sqlx::query(&format!(
        "ALTER DATABASE \"{name}\" SET default_transaction_read_only = off"
    ))
    .execute(&mut admin)
    .await
    .expect("read write");
    end_service_sessions(&mut admin).await;
    let mut ready = false;
    for _ in 0..40 {
        if app.get("/readyz", None).await.status == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ready, "not ready again");
    let mut stored = false;
    for _ in 0..=app.config.pool.max_connections {
        if app.refer(REF1, &referral("Situation après.")).await.status == 201 {
            stored = true;
            break;
        }
    }
    assert!(stored, "writes did not come back");
    let coord = app.token(COORD);
    let a = app
        .get(&format!("/v1/cellules/perpignan/cases/{id}"), Some(&coord))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
}
