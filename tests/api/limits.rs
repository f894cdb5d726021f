//! Rate limits and connection limits, through the real server.

use std::time::Duration;

use cellule::config::Budget;
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend_tests;
use crate::helpers::{Answer, Backend, COORD, Options, TestApp, answer, spawn_app_with};

fn budget(burst: u32) -> Budget {
    Budget {
        per_minute: 1,
        burst,
    }
}

async fn spawn(
    backend: Backend,
    customize: impl FnOnce(&mut cellule::config::Config) + Send + 'static,
) -> TestApp {
    spawn_app_with(
        backend,
        Options {
            customize: Box::new(customize),
            ..Options::default()
        },
    )
    .await
}

fn assert_throttled(a: &Answer, what: &str) {
    a.assert_problem(429);
    assert_eq!(a.problem_type(), "/problems/rate-limited", "{what}");
    let retry: u64 = a
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no Retry-After"));
    assert!((1..=61).contains(&retry), "{what}: Retry-After {retry}");
}

/// A caller's burst past their budget is answered 429 with `Retry-After`; requests without a
/// valid token count against the client address, valid ones do not.
async fn bursts_are_answered_429_with_retry_after(backend: Backend) {
    let app = spawn(backend, |c| {
        c.rate_limit.subject = budget(5);
        c.rate_limit.address = budget(3);
    })
    .await;
    let alice = app.token("alice");
    for _ in 0..5 {
        assert_eq!(app.get("/v1/me", Some(&alice)).await.status, 200);
    }
    assert_throttled(&app.get("/v1/me", Some(&alice)).await, "alice's sixth");
    assert_eq!(
        app.get("/v1/me", Some(&app.token("bob"))).await.status,
        200,
        "another caller has their own budget"
    );
    // Without a valid token: the address's budget (forged tokens and open routes alike).
    app.get("/v1/me", Some("forged.token.here"))
        .await
        .assert_problem(401);
    app.get("/v1/me", None).await.assert_problem(401);
    assert_eq!(app.get("/healthz", None).await.status, 200);
    assert_throttled(&app.get("/healthz", None).await, "fourth anonymous");
    assert_throttled(
        &app.get("/v1/me", Some("forged.token.here")).await,
        "forged token",
    );
    assert_eq!(
        app.get("/v1/me", Some(&app.token("carol"))).await.status,
        200,
        "valid tokens do not count against the address"
    );
}

/// Denials have their own tight budget; past it they answer 429 and only one entry per
/// window and cellule is recorded (reason `throttled`), whether or not the cellule exists.
async fn denials_are_throttled_and_recorded_once_per_window(backend: Backend) {
    let app = spawn(backend, |c| c.rate_limit.denials = budget(3)).await;
    app.standard_cellule().await;
    let stranger = app.token("stranger-1");
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            app.get("/v1/cellules/perpignan/cases", Some(&stranger))
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(statuses, [404, 404, 404, 429, 429, 429, 429, 429, 429, 429]);
    let a = app
        .get("/v1/cellules/perpignan/cases", Some(&stranger))
        .await;
    assert_throttled(&a, "a throttled denial");
    // A cellule that does not exist answers the same.
    assert_throttled(
        &app.get("/v1/cellules/nowhere/cases", Some(&stranger)).await,
        "no such cellule",
    );
    let count = |outcome: &'static str| {
        let app = &app;
        async move {
            app.count_rows(
                &format!(
                    "SELECT count(*) FROM audit_entries WHERE actor = $1 AND outcome = 'denied' AND {outcome}"
                ),
                "stranger-1",
            )
            .await
        }
    };
    assert_eq!(count("reason = 'not_member'").await, 3);
    assert_eq!(count("reason = 'throttled'").await, 1);
    // Someone else's denials are not affected: a case the referrer may not see.
    let (id, _) = app.refer_ok(COORD, "Situation ordinaire.").await;
    let path = format!("/v1/cellules/perpignan/cases/{id}");
    let a = app.get(&path, Some(&app.token(crate::helpers::REF1))).await;
    a.assert_problem(404);
    let a = app
        .request(Method::GET, "/v1/me", Some(&stranger), None)
        .await;
    assert_eq!(a.status, 200, "allowed requests are not denials");
    let _ = json!(null);
}

/// Behind a reverse proxy, the client address comes from `X-Forwarded-For` only when the
/// peer is a trusted proxy; HSTS is sent when that proxy says the client used HTTPS.
async fn forwarded_addresses_count_only_from_trusted_proxies(backend: Backend) {
    let send = |app: &TestApp, xff: &'static str| {
        let req = app
            .client
            .get(format!("{}/healthz", app.base))
            .header("x-forwarded-for", xff)
            .header("x-forwarded-proto", "https");
        async move { answer(req.send().await.expect("sent")).await }
    };
    let proxied = spawn(backend, |c| {
        c.rate_limit.address = budget(2);
        c.http.trusted_proxies = vec!["127.0.0.0/8".to_owned()];
    })
    .await;
    for _ in 0..2 {
        let a = send(&proxied, "198.51.100.1").await;
        assert_eq!(a.status, 200);
        assert_eq!(
            a.headers
                .get("strict-transport-security")
                .and_then(|v| v.to_str().ok()),
            Some("max-age=31536000")
        );
    }
    assert_throttled(&send(&proxied, "198.51.100.1").await, "same client");
    assert_eq!(
        send(&proxied, "198.51.100.2").await.status,
        200,
        "another client"
    );

    let direct = spawn(backend, |c| c.rate_limit.address = budget(2)).await;
    assert_eq!(send(&direct, "198.51.100.1").await.status, 200);
    let a = send(&direct, "198.51.100.2").await;
    assert_eq!(a.status, 200);
    assert!(
        a.headers.get("strict-transport-security").is_none(),
        "an untrusted peer's X-Forwarded-Proto is ignored"
    );
    assert_throttled(
        &send(&direct, "198.51.100.3").await,
        "an untrusted peer's X-Forwarded-For is ignored",
    );
}

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Whether the server closed `stream` within `within` (end of file or reset).
async fn closed(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Past `http.max_connections`, a new connection pushes out the one idle the longest: a flood
/// of connections that send half a request leaves `/healthz` and `/readyz` answering, and
/// most of the flood closed.
async fn a_connection_flood_leaves_healthz_answering(backend: Backend) {
    let app = spawn(backend, |c| {
        c.http.max_connections = 16;
        c.http.header_read_timeout = Duration::from_secs(30);
        c.http.idle_timeout = Duration::from_secs(30);
    })
    .await;
    let mut flood = Vec::new();
    for _ in 0..64 {
        let mut s = TcpStream::connect(addr(&app)).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: flood\r\n")
            .await
            .expect("write");
        flood.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client");
    for path in ["/healthz", "/readyz"] {
        let a = fresh
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} under a flood: {e}"));
        assert_eq!(a.status(), 200, "{path}");
    }
    let mut still_open = 0;
    for s in &mut flood {
        if !closed(s, Duration::from_millis(20)).await {
            still_open += 1;
        }
    }
    assert!(
        still_open <= 16,
        "{still_open} flood connections still open past the cap of 16"
    );
}

/// Headers must come within `http.header_read_timeout`, an idle connection is closed after
/// `http.idle_timeout`, and a connection serves at most `http.max_requests_per_connection`.
async fn slow_idle_and_long_connections_are_closed(backend: Backend) {
    let app = spawn(backend, |c| {
        c.http.header_read_timeout = Duration::from_secs(1);
        c.http.idle_timeout = Duration::from_secs(30);
        c.http.max_requests_per_connection = 3;
    })
    .await;
    // Headers one line every 200 ms: closed after the header timeout.
    let mut slow = TcpStream::connect(addr(&app)).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut open = true;
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if slow
            .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
            .await
            .is_err()
            || closed(&mut slow, Duration::from_millis(1)).await
        {
            open = false;
            break;
        }
    }
    assert!(!open, "a trickling client was not cut off");
    assert!(started.elapsed() < Duration::from_secs(3));

    // Five requests pipelined on one connection: three answered, the third closing it.
    let requests: Vec<String> = (0..5).map(|_| "GET /healthz".to_owned()).collect();
    let answers = crate::abuse::pipelined(&addr(&app), &requests).await;
    assert_eq!(answers.matches("HTTP/1.1 200").count(), 3, "{answers}");
    assert_eq!(
        answers
            .to_ascii_lowercase()
            .matches("connection: close")
            .count(),
        1
    );

    let idle = spawn(backend, |c| {
        c.http.header_read_timeout = Duration::from_secs(30);
        c.http.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut s = TcpStream::connect(addr(&idle)).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = std::time::Instant::now();
    assert!(
        closed(&mut s, Duration::from_secs(3)).await,
        "an idle keep-alive connection stays open"
    );
    assert!(started.elapsed() >= Duration::from_millis(700));
}

backend_tests!(
    bursts_are_answered_429_with_retry_after,
    denials_are_throttled_and_recorded_once_per_window,
    forwarded_addresses_count_only_from_trusted_proxies,
    a_connection_flood_leaves_healthz_answering,
    slow_idle_and_long_connections_are_closed,
);
