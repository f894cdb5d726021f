//! HTTP behaviour shared by every route: operational endpoints, headers, bodies, the OpenAPI
//! document and its agreement with what the server does.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Answer, Backend, answer, spawn_app};

fn assert_api_headers(a: &Answer, case: &str) -> String {
    assert_eq!(
        a.headers.get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "{case}"
    );
    assert_eq!(
        a.headers
            .get("x-content-type-options")
            .map(|v| v.as_bytes()),
        Some(&b"nosniff"[..]),
        "{case}"
    );
    let id = a
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{case}: x-request-id missing"));
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{case}: request id {id}");
    id.to_owned()
}

async fn health_and_readiness(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.get("/healthz", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["status"], "ok");
    let a = app.get("/readyz", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["status"], "ready");
}

async fn every_response_carries_the_security_headers_and_a_request_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.token(crate::helpers::ADMIN);
    let mut ids = HashSet::new();
    let cases: Vec<(&str, Answer)> = vec![
        ("200", app.get("/healthz", None).await),
        ("401", app.get("/v1/me", None).await),
        ("404 fallback", app.get("/nothing/here", None).await),
        (
            "405",
            app.request(Method::DELETE, "/healthz", None, None).await,
        ),
        (
            "422",
            app.request(Method::POST, "/v1/cellules", Some(&admin), Some(json!({})))
                .await,
        ),
        ("metrics", app.get("/metrics", None).await),
        ("openapi", app.get("/openapi.json", None).await),
    ];
    for (case, a) in &cases {
        ids.insert(assert_api_headers(a, case));
    }
    assert_eq!(ids.len(), cases.len(), "request ids are unique");
    cases[2].1.assert_problem(404);
    cases[3].1.assert_problem(405);

    // A client-chosen request id is replaced, so logs cannot be forged.
    let a = answer(
        app.client
            .get(format!("{}/healthz", app.base))
            .header("x-request-id", "forged-by-client")
            .send()
            .await
            .expect("send"),
    )
    .await;
    let id = assert_api_headers(&a, "client id");
    assert_ne!(id, "forged-by-client");
}

async fn bad_bodies_are_refused_with_problems(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.token(crate::helpers::ADMIN);
    let post = |body: Vec<u8>, content_type: Option<&'static str>| {
        let mut req = app
            .client
            .post(format!("{}/v1/cellules", app.base))
            .bearer_auth(&admin)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        async move { answer(req.send().await.expect("send")).await }
    };

    // Over the 64 KiB default limit.
    let big = format!(r#"{{"slug":"big","name":"{}"}}"#, "x".repeat(70 * 1024));
    let a = post(big.into_bytes(), Some("application/json")).await;
    a.assert_problem(413);
    assert_eq!(a.problem_type(), "/problems/payload-too-large");

    for (case, body) in [
        ("truncated", &br#"{"slug": "#[..]),
        ("not json", &b"slug=perpignan"[..]),
        ("trailing garbage", &br#"{"slug":"abc","name":"x"} {}"#[..]),
        ("empty", &b""[..]),
    ] {
        let a = post(body.to_vec(), Some("application/json")).await;
        a.assert_problem(400);
        assert_eq!(a.problem_type(), "/problems/malformed-json", "{case}");
    }

    for ct in [
        Some("text/plain"),
        None,
        Some("application/x-www-form-urlencoded"),
    ] {
        let a = post(br#"{"slug":"abc","name":"x"}"#.to_vec(), ct).await;
        a.assert_problem(415);
    }
    // A charset parameter is fine.
    let a = post(
        br#"{"slug":"abc","name":"x"}"#.to_vec(),
        Some("application/json; charset=utf-8"),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);

    // Unknown field: 422 pointing at it.
    let a = post(
        br#"{"slug":"abd","name":"x","owner":"me"}"#.to_vec(),
        Some("application/json"),
    )
    .await;
    a.assert_problem(422);
    assert_eq!(a.body["errors"][0]["pointer"], "/owner");

    let a = app.as_admin(Method::GET, "/v1/cellules", None).await;
    assert_eq!(
        a.body.as_array().map(Vec::len),
        Some(1),
        "only the valid body was stored"
    );
}

async fn metrics_count_requests_by_route_template(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_cellule("perpignan").await;
    app.get("/v1/me", Some(&app.token("alice"))).await;
    app.get("/v1/cellules/perpignan", Some(&app.token("alice")))
        .await;
    app.get("/v1/me", None).await;
    let a = app.get("/metrics", None).await;
    assert_eq!(a.status, 200);
    assert!(
        a.content_type().starts_with("application/openmetrics-text"),
        "{}",
        a.content_type()
    );
    let text = &a.text;
    assert!(
        text.contains(r#"cellule_http_requests_total{method="GET",route="/v1/me",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"cellule_http_requests_total{method="GET",route="/v1/me",status="401"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/v1/cellules/{cellule}",status="404""#),
        "{text}"
    );
    assert!(
        text.contains("cellule_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        !text.contains("/v1/cellules/perpignan"),
        "no concrete path in labels"
    );
    assert!(!text.contains("alice"));
}

/// Fills `{param}` segments with sample values.
fn concrete(path: &str) -> String {
    path.replace("{cellule}", "perpignan")
        .replace("{sub}", "bob")
}

async fn openapi_matches_the_router(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_cellule("perpignan").await;
    let a = app.get("/openapi.json", None).await;
    assert_eq!(a.status, 200);
    let doc = &a.body;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let paths = doc["paths"].as_object().expect("paths");
    let expected = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/me",
        "/v1/cellules",
        "/v1/cellules/{cellule}",
        "/v1/cellules/{cellule}/members",
        "/v1/cellules/{cellule}/members/{sub}",
        "/v1/cellules/{cellule}/charter",
        "/v1/cellules/{cellule}/charter/accept",
        "/v1/cellules/{cellule}/retention",
        "/v1/cellules/{cellule}/referrals",
        "/v1/cellules/{cellule}/cases",
        "/v1/cellules/{cellule}/cases/{id}",
        "/v1/cellules/{cellule}/cases/{id}/transitions",
        "/v1/cellules/{cellule}/cases/{id}/notes",
        "/v1/cellules/{cellule}/cases/{id}/access-log",
        "/v1/cellules/{cellule}/audit",
        "/v1/cellules/{cellule}/audit/verify",
        "/v1/cellules/{cellule}/audit/checkpoints",
        "/v1/cellules/{cellule}/audit/export",
        "/v1/cellules/{cellule}/schedule",
        "/v1/cellules/{cellule}/sessions",
        "/v1/cellules/{cellule}/sessions/plan",
        "/v1/cellules/{cellule}/sessions/{sid}/cancel",
        "/v1/cellules/{cellule}/sessions/{sid}/agenda",
        "/v1/cellules/{cellule}/sessions/{sid}/agenda/build",
        "/v1/cellules/{cellule}/sessions/{sid}/agenda/publish",
        "/v1/cellules/{cellule}/sessions/{sid}/agenda/items",
        "/v1/cellules/{cellule}/sessions/{sid}/agenda/items/{case_id}",
        "/v1/cellules/{cellule}/sessions/{sid}/items/{case_id}/decision",
        "/v1/cellules/{cellule}/sessions/{sid}/calendar.ics",
        "/v1/cellules/{cellule}/sessions/{sid}/open",
        "/v1/cellules/{cellule}/sessions/{sid}/close",
        "/v1/cellules/{cellule}/sessions/{sid}/minutes",
        "/v1/cellules/{cellule}/sessions/{sid}/minutes/approve",
        "/v1/cellules/{cellule}/sessions/{sid}/attendance",
        "/v1/cellules/{cellule}/sessions/{sid}/decisions",
        "/v1/cellules/{cellule}/cases/{id}/decisions",
        "/v1/cellules/{cellule}/follow-ups",
        "/v1/cellules/{cellule}/members/{sub}/address",
        "/v1/cellules/{cellule}/me/notices",
        "/v1/cellules/{cellule}/interlocutors",
        "/v1/cellules/{cellule}/routing",
        "/v1/cellules/{cellule}/directory",
        "/v1/cellules/{cellule}/stats",
    ];
    let documented: HashSet<&str> = paths.keys().map(String::as_str).collect();
    assert_eq!(
        documented,
        expected.into_iter().collect(),
        "documented paths"
    );

    let admin = app.token(crate::helpers::ADMIN);
    let member = app.token("bob");
    let coordinator = app.token("coord");
    app.add_member(
        "perpignan",
        "coord",
        json!({"role": "coordinator", "sphere": "city", "organisation": "CLSM"}),
    )
    .await;
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            operations += 1;
            let responses: HashSet<u16> = op["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .filter_map(|k| k.parse().ok())
                .collect();
            // Every documented error is a problem document.
            for (code, response) in op["responses"].as_object().expect("responses") {
                if code.starts_with('4') || code.starts_with('5') {
                    assert!(
                        response["content"]
                            .get("application/problem+json")
                            .is_some(),
                        "{method} {path} {code} is not documented as problem+json"
                    );
                }
            }
            let secured = op.get("security").is_some();
            let body: Option<Value> = op.get("requestBody").map(|_| json!({}));
            let url = concrete(path);
            if secured {
                let a = app.request(method.clone(), &url, None, body.clone()).await;
                assert_eq!(a.status, 401, "{method} {path} without a token");
                assert!(
                    responses.contains(&401),
                    "{method} {path}: 401 undocumented"
                );
            }
            for token in [Some(&admin), Some(&member), Some(&coordinator), None] {
                let a = app
                    .request(
                        method.clone(),
                        &url,
                        token.map(String::as_str),
                        body.clone(),
                    )
                    .await;
                assert!(
                    responses.contains(&a.status.as_u16()),
                    "{method} {path} answered {} which is not documented ({responses:?}): {}",
                    a.status,
                    a.text
                );
            }
        }
    }
    assert!(operations >= 10, "{operations} operations");
}

backend_tests!(
    health_and_readiness,
    every_response_carries_the_security_headers_and_a_request_id,
    bad_bodies_are_refused_with_problems,
    metrics_count_requests_by_route_template,
    openapi_matches_the_router,
);
