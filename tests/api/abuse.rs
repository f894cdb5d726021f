//! Abuse resistance: bounded metrics labels, answers that never repeat what the caller sent,
//! security headers, identifiers, duplicates, data files.

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend_tests;
use crate::helpers::{Answer, Backend, COORD, PSY, REF1, referral, spawn_app};

/// Sends `requests` raw HTTP/1.1 requests pipelined on one connection (the last one closing
/// it) and returns everything the server answered.
pub async fn pipelined(addr: &str, requests: &[String]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut out = String::new();
    for (i, line) in requests.iter().enumerate() {
        let close = if i + 1 == requests.len() {
            "Connection: close\r\n"
        } else {
            ""
        };
        out.push_str(&format!("{line} HTTP/1.1\r\nHost: test\r\n{close}\r\n"));
    }
    let (mut reader, mut writer) = stream.split();
    let write = async {
        writer.write_all(out.as_bytes()).await.expect("write");
    };
    let mut answers = Vec::new();
    let read = reader.read_to_end(&mut answers);
    let (_, read) = tokio::join!(write, read);
    read.expect("read");
    String::from_utf8_lossy(&answers).into_owned()
}

async fn metrics_stay_bounded_under_odd_methods_and_paths(backend: Backend) {
    let app = spawn_app(backend).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let baseline = app.get("/metrics", None).await.text.len();
    let mut tasks = Vec::new();
    for connection in 0..10 {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let requests: Vec<String> = (0..1000)
                .map(|i| {
                    let n = connection * 1000 + i;
                    let method = format!("M{n}{}", "X".repeat(40));
                    // Half on a known route (405), half on paths that match nothing (404).
                    if n % 2 == 0 {
                        format!("{method} /healthz")
                    } else {
                        format!("{method} /odd/{n}/{}", "p".repeat(40))
                    }
                })
                .collect();
            pipelined(&addr, &requests).await
        }));
    }
    let mut answered = 0;
    for task in tasks {
        answered += task.await.expect("task").matches("HTTP/1.1 ").count();
    }
    assert_eq!(answered, 10_000, "every odd request was answered");
    let a = app.get("/metrics", None).await;
    assert_eq!(a.status, 200);
    assert!(
        a.text.contains(r#"method="other",route="/healthz""#),
        "{}",
        a.text
    );
    assert!(
        a.text.contains(r#"method="other",route="unmatched""#),
        "{}",
        a.text
    );
    assert!(!a.text.contains("XXXX") && !a.text.contains("/odd/"));
    assert!(
        a.text.len() < baseline + 16 * 1024,
        "the scrape grew from {baseline} to {} bytes",
        a.text.len()
    );
}

/// Refusals of values the caller sent name the field and what was expected, never the value.
async fn problems_never_repeat_what_the_caller_sent(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let sent = "jean.dupont@exemple.fr";
    let mut body = referral("Situation ordinaire.");
    body["urgency"] = json!(sent);
    let a = app.refer(REF1, &body).await;
    a.assert_problem(422);
    assert_eq!(a.body["errors"][0]["pointer"], "/urgency");
    assert!(
        a.body["errors"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("routine")),
        "what was expected is told: {}",
        a.text
    );
    let mut unknown = referral("Situation ordinaire.");
    unknown[sent] = json!(1);
    let b = app.refer(REF1, &unknown).await;
    let mut wrong_type = referral("Situation ordinaire.");
    wrong_type["needs"] = json!(sent);
    let c = app.refer(REF1, &wrong_type).await;
    let coord = app.token(COORD);
    let d = app
        .get(
            &format!("/v1/cellules/perpignan/cases?status={sent}"),
            Some(&coord),
        )
        .await;
    let e = app
        .get(
            &format!("/v1/cellules/perpignan/cases?{sent}=1"),
            Some(&coord),
        )
        .await;
    let f = app
        .get(
            &format!("/v1/cellules/perpignan/cases?submitted_from={sent}"),
            Some(&coord),
        )
        .await;
    for (what, answer) in [
        ("unknown variant", &a),
        ("unknown field", &b),
        ("invalid type", &c),
        ("query variant", &d),
        ("query field", &e),
        ("query date", &f),
    ] {
        answer.assert_problem(422);
        assert!(
            !answer.text.contains("dupont") && !answer.text.contains("exemple"),
            "{what}: {}",
            answer.text
        );
    }
    assert_eq!(d.body["errors"][0]["pointer"], "/query/status");
}

/// API answers forbid loading anything and being framed.
async fn api_answers_carry_a_content_security_policy(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/healthz", "/v1/me", "/nowhere", "/openapi.json"] {
        let a = app.get(path, None).await;
        assert_eq!(
            a.headers
                .get("content-security-policy")
                .and_then(|v| v.to_str().ok()),
            Some("default-src 'none'; frame-ancestors 'none'"),
            "{path}"
        );
        assert!(
            a.headers.get("strict-transport-security").is_none(),
            "{path}: plain HTTP"
        );
    }
}

/// Subjects, organisations and names with bidirectional, format or line separator characters
/// are refused; names are stored in NFC.
async fn hidden_characters_in_identifiers_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    // A token whose subject hides a right-to-left override.
    let a = app.get("/v1/me", Some(&app.token("coordA\u{202e}"))).await;
    a.assert_problem(401);
    let a = app
        .as_admin(
            Method::PUT,
            "/v1/cellules/perpignan/members/coordA%E2%80%AE",
            Some(json!({"role": "referrer", "organisation": "CCAS Perpignan"})),
        )
        .await;
    a.assert_problem(422);
    assert_eq!(a.body["errors"][0]["pointer"], "/sub");
    let a = app
        .as_admin(
            Method::PUT,
            "/v1/cellules/perpignan/members/ref-9",
            Some(json!({"role": "referrer", "organisation": "X\u{2028}forged line\u{202e}evil"})),
        )
        .await;
    a.assert_problem(422);
    assert_eq!(a.body["errors"][0]["pointer"], "/organisation");
    let a = app
        .as_admin(
            Method::POST,
            "/v1/cellules",
            Some(json!({"slug": "ceret", "name": "Céret\u{200b}"})),
        )
        .await;
    a.assert_problem(422);
    // Decomposed accents are stored composed (NFC).
    let a = app
        .as_admin(
            Method::PUT,
            "/v1/cellules/perpignan/members/ref-9",
            Some(json!({"role": "referrer", "organisation": "Me\u{301}diation"})),
        )
        .await;
    assert!(a.status.is_success(), "{}", a.text);
    assert_eq!(a.body["organisation"], "M\u{e9}diation", "{}", a.text);
}

/// The possible duplicates of a referral are told to the coordinator only: a referrer's
/// answer is the same, byte for byte once its own id and reference are set aside, whether or
/// not the person already has an open case, and a member reading a case does not see them.
async fn duplicates_are_told_to_the_coordinator_only(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let with_identity = |last: &str| {
        let mut body = referral("Situation ordinaire.");
        body["identity"] =
            json!({"last_name": last, "first_name": "Paul", "birth_date": "1975-06-30"});
        body
    };
    let shape = |a: &Answer| -> String {
        assert_eq!(a.status, 201, "{}", a.text);
        let id = a.body["id"].as_str().expect("id");
        let reference = a.body["reference"].as_str().expect("reference");
        a.text.replace(id, "<id>").replace(reference, "<reference>")
    };
    // A first referral: nobody else has this person.
    let first = app.refer(REF1, &with_identity("Martin")).await;
    let alone = shape(&first);
    // The same person again, and a person nobody referred.
    let again = app.refer(REF1, &with_identity("Martin")).await;
    let fresh = app.refer(REF1, &with_identity("Durand")).await;
    assert_eq!(
        shape(&again),
        alone,
        "a referrer learns nothing of a duplicate"
    );
    assert_eq!(shape(&fresh), alone);
    // A member submitting is told nothing either.
    let member_dup = app.refer(PSY, &with_identity("Martin")).await;
    let member_new = app.refer(PSY, &with_identity("Bernard")).await;
    assert_eq!(shape(&member_dup), shape(&member_new));
    // The coordinator is told, when submitting and on the case.
    let first_ref = first.body["reference"].clone();
    let coord = app.refer(COORD, &with_identity("Martin")).await;
    assert_eq!(coord.status, 201, "{}", coord.text);
    assert!(
        coord.body["possible_duplicates"]
            .as_array()
            .is_some_and(|d| d.contains(&first_ref) && d.len() == 3),
        "{}",
        coord.text
    );
    let again_id = again.body["id"].as_str().expect("id");
    for step in [
        json!({"to": "accepted"}),
        json!({"to": "scheduled"}),
        json!({"to": "in_follow_up", "follow_up_date": "2027-01-14", "routed_org": "CMP 66G03"}),
    ] {
        app.move_case(again_id, step).await;
    }
    let path = format!("/v1/cellules/perpignan/cases/{again_id}");
    let c = app.get(&path, Some(&app.token(COORD))).await;
    assert_eq!(c.status, 200, "{}", c.text);
    assert!(
        c.body["possible_duplicates"]
            .as_array()
            .is_some_and(|d| d.contains(&first_ref)),
        "{}",
        c.text
    );
    let m = app.get(&path, Some(&app.token(PSY))).await;
    assert_eq!(
        m.status, 200,
        "the routed member reads the case: {}",
        m.text
    );
    assert_eq!(m.body["possible_duplicates"], json!([]), "{}", m.text);
}

/// The data directory and the database's files are created private, and the service refuses
/// to start when they are not, naming the `chmod` to run.
async fn readable_data_files_stop_the_start(backend: Backend) {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app(backend).await;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    let chmod = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
    };
    let dir = app.data_dir.path().to_path_buf();
    let start = || cellule::app::Application::build(app.config.clone());
    if backend == Backend::Sqlite {
        let db = dir.join("cellule.db");
        assert_eq!(mode(&db), 0o600);
        let wal = dir.join("cellule.db-wal");
        if wal.exists() {
            assert_eq!(mode(&wal), 0o600);
        }
        chmod(&db, 0o644);
        let err = start()
            .await
            .err()
            .expect("a 0644 database is refused")
            .to_string();
        assert!(
            err.contains(&format!("chmod 600 {}", db.display())),
            "{err}"
        );
        chmod(&db, 0o600);
    }
    chmod(&dir, 0o755);
    let err = start()
        .await
        .err()
        .expect("a 0755 data directory is refused")
        .to_string();
    assert!(
        err.contains(&format!("chmod 700 {}", dir.display())),
        "{err}"
    );
    chmod(&dir, 0o700);
    assert!(start().await.is_ok(), "private again: the service starts");
}

backend_tests!(
    metrics_stay_bounded_under_odd_methods_and_paths,
    readable_data_files_stop_the_start,
    problems_never_repeat_what_the_caller_sent,
    api_answers_carry_a_content_security_policy,
    hidden_characters_in_identifiers_are_refused,
    duplicates_are_told_to_the_coordinator_only,
);
