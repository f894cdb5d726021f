//! Referrals and the case lifecycle (issue 4): intake, consent, identifier guard, duplicates,
//! references under concurrency, the state machine, notes and audiences, charter, erasure and
//! retention, and referrer isolation.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cellule::clock::ManualClock;
use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{
    ADMIN, AUDITOR, Backend, CITY, COORD, GUEST, Options, PSY, REF1, REF2, TestApp, referral,
    spawn_app, spawn_app_with,
};

/// How many refusals of `actor` the audit log holds.
async fn denied_entries(app: &TestApp, actor: &str) -> i64 {
    app.count_rows(
        "SELECT count(*) FROM audit_entries WHERE actor = $1 AND outcome = 'denied'",
        actor,
    )
    .await
}

fn case_path(id: &str) -> String {
    format!("/v1/cellules/perpignan/cases/{id}")
}

async fn case_count(app: &TestApp) -> usize {
    let a = app
        .get(
            "/v1/cellules/perpignan/cases?limit=200",
            Some(&app.token(COORD)),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.body["items"].as_array().map_or(0, Vec::len)
}

async fn referral_is_recorded_encrypted_and_readable_by_the_coordinator(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let a = app
        .refer(
            REF1,
            &referral("Homme isolé, impayés de loyer depuis 4 mois, rupture de soins."),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let year = chrono::Utc::now().format("%Y").to_string();
    assert_eq!(a.body["reference"], format!("PER-{year}-0001"));
    assert_eq!(a.body["status"], "submitted");
    assert_eq!(a.body["possible_duplicates"], json!([]));
    let id = a.body["id"].as_str().expect("id").to_owned();
    assert_eq!(
        a.headers["location"].to_str().ok(),
        Some(case_path(&id).as_str())
    );

    let c = app.get(&case_path(&id), Some(&app.token(COORD))).await;
    assert_eq!(c.status, 200, "{}", c.text);
    assert_eq!(
        c.body["situation"],
        "Homme isolé, impayés de loyer depuis 4 mois, rupture de soins."
    );
    assert_eq!(
        c.body["expectations"],
        "orientation vers le CMP et maintien dans le logement"
    );
    assert_eq!(c.body["consent_status"], "not_informed");
    assert_eq!(
        c.body["consent_justification"],
        "personne injoignable depuis juin"
    );
    assert_eq!(c.body["needs"], json!(["housing", "care_access"]));
    assert_eq!(c.body["sector"], "66G03");
    assert_eq!(c.body["referring_org"], "CCAS Perpignan");

    // The referrer's status view: no content, no notes.
    let r = app
        .get("/v1/cellules/perpignan/referrals", Some(&app.token(REF1)))
        .await;
    assert_eq!(r.status, 200);
    let item = &r.body[0];
    assert_eq!(item["reference"], format!("PER-{year}-0001"));
    assert_eq!(item["status"], "submitted");
    let keys: HashSet<&str> = item
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "reference",
            "status",
            "submitted_at",
            "decided_at",
            "closed_at",
            "updated_at",
            "routed_to",
            "reviewed_on",
            "contact",
            "message"
        ]
        .into_iter()
        .collect()
    );
    // Nothing is said before a session reviewed the case.
    for key in ["reviewed_on", "contact", "message"] {
        assert_eq!(item[key], Value::Null, "{key}");
    }
}

async fn consent_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let with_consent = |consent: Value| {
        let mut body = referral("Situation ordinaire.");
        body["consent"] = consent;
        body
    };
    let a = app
        .refer(REF1, &with_consent(json!({"status": "objected"})))
        .await;
    a.assert_problem(422);
    assert_eq!(a.body["errors"][0]["pointer"], "/consent/status");
    let a = app
        .refer(REF1, &with_consent(json!({"status": "not_informed"})))
        .await;
    a.assert_problem(422);
    assert_eq!(a.body["errors"][0]["pointer"], "/consent/justification");
    let a = app
        .refer(
            REF1,
            &with_consent(json!({"status": "not_informed", "justification": "  "})),
        )
        .await;
    a.assert_problem(422);
    let a = app
        .refer(REF1, &with_consent(json!({"status": "maybe"})))
        .await;
    a.assert_problem(422);
    assert_eq!(case_count(&app).await, 0, "refused referrals leave nothing");
    for status in ["agreed", "informed"] {
        let a = app
            .refer(REF1, &with_consent(json!({"status": status})))
            .await;
        assert_eq!(a.status, 201, "{status}: {}", a.text);
    }
    assert_eq!(case_count(&app).await, 2);
}

async fn identifiers_are_refused_without_echo(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let cases = [
        ("Joignable au 06 12 34 56 78 le matin.", "phone", 13, 27),
        ("Écrire à m.dupont@example.fr.", "email", 9, 28),
        ("NIR 1 85 05 78 006 084 91 transmis.", "nir", 4, 25),
        (
            "Virement sur FR76 3000 6000 0112 3456 7890 189.",
            "iban",
            13,
            46,
        ),
        ("Né le 02/04/1980 à Perpignan.", "birth_date", 6, 16),
        ("Vit au 12 rue des Lilas depuis 2019.", "address", 7, 23),
    ];
    for (text, kind, start, end) in cases {
        let a = app.refer(REF1, &referral(text)).await;
        a.assert_problem(422);
        assert_eq!(a.problem_type(), "/problems/identifier-detected");
        let e = &a.body["errors"][0];
        assert_eq!(e["field"], "situation", "{text}");
        assert_eq!(e["kind"], kind, "{text}");
        assert_eq!(
            (e["start"].as_u64(), e["end"].as_u64()),
            (Some(start), Some(end)),
            "{text}: {}",
            a.text
        );
        let found: String = text
            .chars()
            .skip(start as usize)
            .take((end - start) as usize)
            .collect();
        assert!(
            !a.text.contains(&found),
            "the identifier is echoed: {}",
            a.text
        );
    }
    // In expectations and in the consent justification too.
    let mut body = referral("Situation ordinaire.");
    body["expectations"] = json!("rappeler au 0612345678");
    body["consent"]["justification"] = json!("voir jean@exemple.org");
    let a = app.refer(REF1, &body).await;
    a.assert_problem(422);
    let fields: Vec<&str> = a.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["expectations", "consent.justification"]);
    assert_eq!(case_count(&app).await, 0);

    // Ordinary prose with numbers passes.
    let (id, _) = app
        .refer_ok(
            REF1,
            "Mme, 45 ans, 3 enfants, suivie au CMP 66G03 depuis 2019 ; 2 passages aux urgences en mars 2024, \
             rendez-vous à 14h30 le 12/03, loyer de 450 € impayé, dossier PER-2025-0042, RSA de 607,75 €.",
        )
        .await;
    // Notes are guarded as well.
    let a = app
        .request(
            Method::POST,
            &format!("{}/notes", case_path(&id)),
            Some(&app.token(COORD)),
            Some(json!({"audience": "cellule", "body": "tél. +33 (0)6 12 34 56 78"})),
        )
        .await;
    a.assert_problem(422);
    assert_eq!(a.body["errors"][0]["field"], "body");
    assert_eq!(a.body["errors"][0]["kind"], "phone");
}

async fn bad_referral_inputs_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut body = referral("Situation ordinaire.");
        f(&mut body);
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (edit(&|b| b["colour"] = json!("red")), "/colour"),
        (edit(&|b| b["age_band"] = json!("30-40")), "/age_band"),
        (edit(&|b| b["gender"] = json!("woman")), "/gender"),
        (edit(&|b| b["urgency"] = json!("asap")), "/urgency"),
        (
            edit(&|b| b["needs"] = json!(["housing", "flying"])),
            "/needs/1",
        ),
        (edit(&|b| b["needs"] = json!([])), "/needs"),
        (
            edit(&|b| b["needs"] = json!(["housing", "housing"])),
            "/needs",
        ),
        (edit(&|b| b["commune"] = json!("6613")), "/commune"),
        (edit(&|b| b["sector"] = json!("66X03")), "/sector"),
        (
            edit(&|b| {
                b.as_object_mut().map(|o| {
                    o.remove("commune");
                    o.remove("sector")
                });
            }),
            "/commune",
        ),
        (
            edit(&|b| b["situation"] = json!("x".repeat(10_001))),
            "/situation",
        ),
        (edit(&|b| b["situation"] = json!("")), "/situation"),
        (
            edit(&|b| b["expectations"] = json!("y".repeat(2_001))),
            "/expectations",
        ),
        (
            edit(&|b| b["consent"]["extra"] = json!(1)),
            "/consent/extra",
        ),
        (
            edit(&|b| {
                b["identity"] =
                    json!({"last_name": "A", "first_name": "B", "birth_date": "02/04/1980"})
            }),
            "/identity/birth_date",
        ),
        (
            edit(
                &|b| b["identity"] = json!({"last_name": "A", "first_name": "B", "birth_date": "1980-04-02", "nir": "x"}),
            ),
            "/identity/nir",
        ),
    ];
    for (body, pointer) in cases {
        let a = app.refer(REF1, &body).await;
        a.assert_problem(422);
        assert_eq!(a.body["errors"][0]["pointer"], pointer, "{}", a.text);
    }
    assert_eq!(case_count(&app).await, 0, "nothing was stored");
    // Auditors cannot refer.
    app.refer(AUDITOR, &referral("Situation ordinaire."))
        .await
        .assert_problem(403);
}

async fn fifty_concurrent_referrals_get_fifty_distinct_references(backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    app.standard_cellule().await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let who = if i % 2 == 0 { REF1 } else { REF2 };
            let a = app
                .refer(who, &referral(&format!("Situation numéro {i}.")))
                .await;
            assert_eq!(a.status, 201, "{}", a.text);
            a.body["reference"].as_str().unwrap_or_default().to_owned()
        }));
    }
    let mut refs = HashSet::new();
    for t in tasks {
        refs.insert(t.await.expect("task"));
    }
    assert_eq!(refs.len(), 50);
    let year = chrono::Utc::now().format("%Y").to_string();
    let expected: HashSet<String> = (1..=50).map(|n| format!("PER-{year}-{n:04}")).collect();
    assert_eq!(refs, expected, "no gaps, no duplicates");
}

/// Drives a fresh case to `status` along the graph; returns its id.
async fn case_in(app: &TestApp, status: &str) -> String {
    let (id, _) = app.refer_ok(REF1, "Situation ordinaire.").await;
    let path: &[Value] = match status {
        "submitted" => &[],
        "accepted" => &[json!({"to": "accepted"})],
        "declined" => &[json!({"to": "declined", "reason": "hors champ de la cellule"})],
        "scheduled" => &[json!({"to": "accepted"}), json!({"to": "scheduled"})],
        "in_follow_up" => &[
            json!({"to": "accepted"}),
            json!({"to": "scheduled"}),
            json!({"to": "in_follow_up", "follow_up_date": "2027-01-14", "routed_org": "CMP 66G03"}),
        ],
        "closed" => &[
            json!({"to": "accepted"}),
            json!({"to": "scheduled"}),
            json!({"to": "closed", "reason": "relogé, suivi CMP en place"}),
        ],
        other => panic!("unknown status {other}"),
    };
    for step in path {
        app.move_case(&id, step.clone()).await;
    }
    id
}

async fn state_machine_table(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let statuses = [
        "submitted",
        "accepted",
        "declined",
        "scheduled",
        "in_follow_up",
        "closed",
    ];
    let allowed: HashSet<(&str, &str)> = [
        ("submitted", "accepted"),
        ("submitted", "declined"),
        ("accepted", "scheduled"),
        ("scheduled", "in_follow_up"),
        ("scheduled", "closed"),
        ("scheduled", "accepted"),
        ("in_follow_up", "scheduled"),
        ("in_follow_up", "closed"),
    ]
    .into_iter()
    .collect();
    for from in statuses {
        for to in statuses {
            let id = case_in(&app, from).await;
            let body = json!({"to": to, "reason": "motif de test", "follow_up_date": "2027-02-11"});
            let a = app
                .request(
                    Method::POST,
                    &format!("{}/transitions", case_path(&id)),
                    Some(&app.token(COORD)),
                    Some(body),
                )
                .await;
            let after = app.get(&case_path(&id), Some(&app.token(COORD))).await;
            if allowed.contains(&(from, to)) {
                assert_eq!(a.status, 200, "{from} -> {to}: {}", a.text);
                assert_eq!(after.body["status"], to);
            } else {
                a.assert_problem(409);
                assert_eq!(
                    a.problem_type(),
                    "/problems/invalid-transition",
                    "{from} -> {to}"
                );
                assert_eq!(
                    after.body["status"], from,
                    "{from} -> {to} changed the case"
                );
            }
        }
    }
    // Reasons and dates.
    let id = case_in(&app, "submitted").await;
    app.transition(COORD, &id, json!({"to": "declined"}))
        .await
        .assert_problem(422);
    app.transition(
        COORD,
        &id,
        json!({"to": "declined", "reason": "écrire à x@y.fr"}),
    )
    .await
    .assert_problem(422);
    app.transition(COORD, &id, json!({"to": "flying"}))
        .await
        .assert_problem(422);
    assert_eq!(
        app.transition(
            COORD,
            &id,
            json!({"to": "declined", "reason": "hors champ"})
        )
        .await
        .status,
        200
    );
    let c = app.get(&case_path(&id), Some(&app.token(COORD))).await;
    assert_eq!(c.body["history"][0]["reason"], "hors champ");
    assert_eq!(c.body["history"][0]["from"], "submitted");
    // The history comes back in order, with its times, whatever the backend's aggregate.
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    let id = case_in(&app, "in_follow_up").await;
    let c = app.get(&case_path(&id), Some(&app.token(COORD))).await;
    let steps: Vec<(String, String)> = c.body["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| (e["from"].to_string(), e["to"].to_string()))
        .collect();
    assert_eq!(
        steps,
        [
            ("\"submitted\"", "\"accepted\""),
            ("\"accepted\"", "\"scheduled\""),
            ("\"scheduled\"", "\"in_follow_up\"")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let times: Vec<chrono::DateTime<chrono::Utc>> = c.body["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["at"].as_str().expect("at").parse().expect("RFC 3339"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(
        times
            .iter()
            .all(|t| *t >= started && *t <= chrono::Utc::now())
    );
    let id = case_in(&app, "scheduled").await;
    app.transition(COORD, &id, json!({"to": "closed"}))
        .await
        .assert_problem(422);
    app.transition(COORD, &id, json!({"to": "in_follow_up"}))
        .await
        .assert_problem(422);
    // Only the coordinator moves cases: a member who sees the case gets 403, others 404.
    let id = case_in(&app, "in_follow_up").await;
    let a = app
        .request(
            Method::POST,
            &format!("{}/transitions", case_path(&id)),
            Some(&app.token(PSY)),
            Some(json!({"to": "scheduled"})),
        )
        .await;
    a.assert_problem(403);
    let a = app
        .request(
            Method::POST,
            &format!("{}/transitions", case_path(&id)),
            Some(&app.token(REF1)),
            Some(json!({"to": "scheduled"})),
        )
        .await;
    a.assert_problem(404);
}

async fn duplicates_are_flagged_across_referrers(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let with_identity = |last: &str, first: &str, birth: &str| {
        let mut body = referral("Situation ordinaire.");
        body["identity"] = json!({"last_name": last, "first_name": first, "birth_date": birth});
        body
    };
    let a = app
        .refer(
            REF1,
            &with_identity("Dupont-Lefèvre", "Jean Édouard", "1980-04-02"),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.body["possible_duplicates"], json!([]));
    let first_ref = a.body["reference"].clone();
    let first_id = a.body["id"].as_str().expect("id").to_owned();

    let b = app
        .refer(
            REF2,
            &with_identity("DUPONT LEFEVRE", "jean-edouard", "1980-04-02"),
        )
        .await;
    assert_eq!(b.status, 201, "{}", b.text);
    assert_eq!(
        b.body["possible_duplicates"],
        json!([]),
        "only the coordinator is told"
    );
    let second = b.body["id"].as_str().expect("id").to_owned();
    let c = app.get(&case_path(&second), Some(&app.token(COORD))).await;
    assert_eq!(
        c.body["possible_duplicates"],
        json!([first_ref]),
        "the coordinator sees it on the case"
    );

    let other = app
        .refer(
            REF2,
            &with_identity("Dupont-Lefèvre", "Jean Édouard", "1981-04-02"),
        )
        .await;
    assert_eq!(other.body["possible_duplicates"], json!([]));
    let none = app.refer(REF2, &referral("Situation ordinaire.")).await;
    assert_eq!(none.body["possible_duplicates"], json!([]));

    // A closed case is no longer an open duplicate.
    app.move_case(&first_id, json!({"to": "declined", "reason": "doublon"}))
        .await;
    let d = app
        .refer(
            COORD,
            &with_identity("Dupont Lefevre", "Jean Edouard", "1980-04-02"),
        )
        .await;
    assert_eq!(d.body["possible_duplicates"], json!([b.body["reference"]]));
}

/// Once the process holds the cellule's linkage secret (after the first referral naming a
/// person), a submission's membership and its possible duplicates come from one query: the
/// references are shown only to a submission that is allowed, and a refusal comes before any
/// error of the body, as on the path without an identity.
async fn duplicates_are_shown_only_to_an_allowed_submission(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let mut body = referral("Situation ordinaire.");
    body["identity"] =
        json!({"last_name": "Martin", "first_name": "Paul", "birth_date": "1975-06-30"});
    let first = app.refer(REF1, &body).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let first_ref = first.body["reference"]
        .as_str()
        .expect("reference")
        .to_owned();
    let second = app.refer(COORD, &body).await;
    assert_eq!(second.status, 201, "{}", second.text);
    assert_eq!(second.body["possible_duplicates"], json!([first_ref]));
    let second_ref = second.body["reference"]
        .as_str()
        .expect("reference")
        .to_owned();

    let app = &app;
    let submit = |cellule: &str, sub: &str, body: &Value| {
        let path = format!("/v1/cellules/{cellule}/referrals");
        let token = app.token(sub);
        let body = body.clone();
        async move {
            app.request(Method::POST, &path, Some(&token), Some(body))
                .await
        }
    };
    // Not a member: the answer of a cellule that does not exist, nothing of the cases.
    let stranger = submit("perpignan", "stranger-1", &body).await;
    stranger.assert_problem(404);
    let nowhere = submit("nowhere", "stranger-1", &body).await;
    nowhere.assert_problem(404);
    assert_eq!(stranger.problem_type(), nowhere.problem_type());
    assert_eq!(stranger.body["detail"], nowhere.body["detail"]);
    // A member whose role cannot refer.
    let auditor = submit("perpignan", AUDITOR, &body).await;
    auditor.assert_problem(403);
    for refused in [&stranger, &nowhere, &auditor] {
        assert!(
            !refused.text.contains(&first_ref) && !refused.text.contains(&second_ref),
            "a refusal shows a reference: {}",
            refused.text
        );
    }
    // The refusal comes before the body's error; a member gets the body's error.
    let mut bad = body.clone();
    bad["situation"] = json!(5);
    submit("perpignan", "stranger-1", &bad)
        .await
        .assert_problem(404);
    submit("perpignan", REF1, &bad).await.assert_problem(422);
    // Each refusal of the outsider is in the audit log.
    let denied = denied_entries(app, "stranger-1").await;
    assert_eq!(denied, 2, "the outsider's two refusals in perpignan");
    // Nothing was recorded by the refusals: the next one sees the two cases, in order.
    let third = app.refer(COORD, &body).await;
    assert_eq!(third.status, 201, "{}", third.text);
    assert_eq!(
        third.body["possible_duplicates"],
        json!([first_ref, second_ref])
    );
}

/// A submission's body is read before its membership is looked up: a body that does not come
/// is given up after half the request timeout, so that an outsider is still refused and
/// recorded, and a member gets the timeout's 503.
async fn a_stalled_submission_body_is_still_refused_and_recorded(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(
        backend,
        Options {
            customize: Box::new(|c| c.http.request_timeout = Duration::from_millis(800)),
            ..Options::default()
        },
    )
    .await;
    app.standard_cellule().await;
    let stalled = |sub: &str| {
        let token = app.token(sub);
        let host = app.base.trim_start_matches("http://").to_owned();
        async move {
            let mut s = tokio::net::TcpStream::connect(&host)
                .await
                .expect("connect");
            let head = format!(
                "POST /v1/cellules/perpignan/referrals HTTP/1.1\r\nHost: {host}\r\n\
                 Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
                 Content-Length: 400\r\n\r\n{{\"situation\": \"Situ"
            );
            s.write_all(head.as_bytes()).await.expect("write");
            let mut answer = vec![0; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut answer))
                .await
                .expect("an answer before the body")
                .expect("read");
            String::from_utf8_lossy(&answer[..n]).into_owned()
        }
    };
    let outsider = stalled("stranger-2").await;
    assert!(outsider.starts_with("HTTP/1.1 404"), "{outsider}");
    let denied = denied_entries(&app, "stranger-2").await;
    assert_eq!(denied, 1, "the outsider's refusal is recorded");
    let member = stalled(REF1).await;
    assert!(member.starts_with("HTTP/1.1 503"), "{member}");
    assert!(member.contains("/problems/timeout"), "{member}");
}

async fn referrers_see_only_their_own_status_view(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let (mine, my_ref) = app.refer_ok(REF1, "Situation A.").await;
    let (_, other_ref) = app.refer_ok(REF2, "Situation B.").await;
    app.move_case(&mine, json!({"to": "accepted"})).await;
    app.move_case(&mine, json!({"to": "scheduled"})).await;
    app.move_case(
        &mine,
        json!({"to": "in_follow_up", "follow_up_date": "2027-01-14", "routed_org": "CMP 66G03"}),
    )
    .await;

    let r = app
        .get("/v1/cellules/perpignan/referrals", Some(&app.token(REF1)))
        .await;
    let refs: Vec<&str> = r
        .body
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["reference"].as_str())
        .collect();
    assert_eq!(refs, [my_ref.as_str()]);
    assert_eq!(r.body[0]["status"], "in_follow_up");
    assert_eq!(r.body[0]["routed_to"], "CMP 66G03");
    assert!(!r.text.contains(&other_ref));

    for who in [REF1, AUDITOR] {
        let t = app.token(who);
        app.get("/v1/cellules/perpignan/cases", Some(&t))
            .await
            .assert_problem(403);
        app.get(&case_path(&mine), Some(&t))
            .await
            .assert_problem(404);
        app.get(&format!("{}/notes", case_path(&mine)), Some(&t))
            .await
            .assert_problem(404);
        app.request(Method::DELETE, &case_path(&mine), Some(&t), None)
            .await
            .assert_problem(404);
    }
    // Administrators are not members of any cellule.
    app.as_admin(Method::GET, &case_path(&mine), None)
        .await
        .assert_problem(404);
}

/// A decline's message reaches the referrer's status view; its reason stays the cellule's.
async fn a_decline_message_reaches_only_the_referrer(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let (id, reference) = app.refer_ok(REF1, "Situation à décliner.").await;
    let message = "Adressez-vous au service d'accompagnement qui suit déjà la situation.";
    // Only with a decline, without identifiers, not too long: refused, and nothing changed.
    for body in [
        json!({"to": "accepted", "referrer_message": message}),
        json!({"to": "declined", "reason": "hors champ", "referrer_message": "Appelez le 06 12 34 56 78."}),
        json!({"to": "declined", "reason": "hors champ", "referrer_message": "x".repeat(2001)}),
    ] {
        let r = app.transition(COORD, &id, body).await;
        r.assert_problem(422);
        assert!(!r.text.contains("06 12 34 56 78"), "{}", r.text);
    }
    let r = app
        .get("/v1/cellules/perpignan/referrals", Some(&app.token(REF1)))
        .await;
    assert_eq!(r.body[0]["status"], "submitted");
    assert_eq!(r.body[0]["message"], Value::Null);
    assert_eq!(
        app.transition(
            COORD,
            &id,
            json!({"to": "declined", "reason": "motif interne de la cellule", "referrer_message": message}),
        )
        .await
        .status,
        200
    );
    let r = app
        .get("/v1/cellules/perpignan/referrals", Some(&app.token(REF1)))
        .await;
    assert_eq!(r.body[0]["reference"], reference.as_str());
    assert_eq!(r.body[0]["status"], "declined");
    assert_eq!(r.body[0]["message"], message);
    assert!(!r.text.contains("motif interne"), "{}", r.text);
    // Another referrer's view holds nothing of it.
    let other = app
        .get("/v1/cellules/perpignan/referrals", Some(&app.token(REF2)))
        .await;
    assert!(!other.text.contains(message), "{}", other.text);
    // The case's history keeps both, for whom may read the case.
    let c = app.get(&case_path(&id), Some(&app.token(COORD))).await;
    assert_eq!(
        c.body["history"][0]["reason"],
        "motif interne de la cellule"
    );
    assert_eq!(c.body["history"][0]["referrer_message"], message);
    assert_eq!(
        app.count_rows(
            "SELECT count(*) FROM case_events WHERE case_id = $1 AND referrer_message IS NOT NULL",
            &id
        )
        .await,
        1
    );
}

async fn notes_follow_audiences_and_routing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let id = case_in(&app, "in_follow_up").await; // routed to CMP 66G03
    let notes = format!("{}/notes", case_path(&id));
    let write = |who: &'static str, audience: &'static str, body: &'static str| {
        let app = &app;
        let notes = notes.clone();
        async move {
            app.request(
                Method::POST,
                &notes,
                Some(&app.token(who)),
                Some(json!({"audience": audience, "body": body})),
            )
            .await
        }
    };
    let n1 = write(COORD, "cellule", "Point de situation partagé.").await;
    assert_eq!(n1.status, 201, "{}", n1.text);
    assert_eq!(
        write(COORD, "city", "Dette locative en cours de traitement.")
            .await
            .status,
        201
    );
    assert_eq!(
        write(PSY, "psychiatry", "Traitement interrompu, RDV CMP proposé.")
            .await
            .status,
        201
    );
    write(PSY, "city", "x").await.assert_problem(403);
    write(COORD, "psychiatry", "x").await.assert_problem(403);
    // The city member's organisation is not routed: the case does not exist for them.
    write(CITY, "city", "x").await.assert_problem(404);
    // The guest (EMPP) is not routed either.
    write(GUEST, "cellule", "x").await.assert_problem(404);

    let audiences = |a: &crate::helpers::Answer| -> Vec<String> {
        a.body
            .as_array()
            .expect("notes")
            .iter()
            .filter_map(|n| n["audience"].as_str().map(str::to_owned))
            .collect()
    };
    let coord = app.get(&notes, Some(&app.token(COORD))).await;
    assert_eq!(audiences(&coord), ["cellule", "city"]);
    assert!(!coord.text.contains("Traitement interrompu"));
    let psy = app.get(&notes, Some(&app.token(PSY))).await;
    assert_eq!(audiences(&psy), ["cellule", "psychiatry"]);
    assert!(!psy.text.contains("Dette locative"));
    app.get(&notes, Some(&app.token(CITY)))
        .await
        .assert_problem(404);
    assert_eq!(
        app.get(&case_path(&id), Some(&app.token(PSY))).await.status,
        200
    );
    app.get(&case_path(&id), Some(&app.token(CITY)))
        .await
        .assert_problem(404);
    // Members list exactly the cases routed to their organisation.
    let other = case_in(&app, "accepted").await;
    let list = app
        .get("/v1/cellules/perpignan/cases", Some(&app.token(PSY)))
        .await;
    let ids: Vec<&str> = list.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    assert!(!list.text.contains(&other));
    let list = app
        .get("/v1/cellules/perpignan/cases", Some(&app.token(CITY)))
        .await;
    assert_eq!(list.body["items"], json!([]));

    // Corrections: same case, same audience, a note the author can read.
    let first = n1.body["id"].as_str().expect("id").to_owned();
    let c = app
        .request(
            Method::POST,
            &notes,
            Some(&app.token(PSY)),
            Some(
                json!({"audience": "cellule", "body": "Correction : RDV fixé.", "corrects": first}),
            ),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    assert_eq!(c.body["corrects"], first.as_str());
    let wrong = app
        .request(
            Method::POST,
            &notes,
            Some(&app.token(PSY)),
            Some(json!({"audience": "psychiatry", "body": "x", "corrects": first})),
        )
        .await;
    wrong.assert_problem(422);
    let psy_note = psy.body[1]["id"].as_str().expect("id").to_owned();
    let hidden = app
        .request(
            Method::POST,
            &notes,
            Some(&app.token(COORD)),
            Some(json!({"audience": "cellule", "body": "x", "corrects": psy_note})),
        )
        .await;
    hidden.assert_problem(422);
    let bad = app
        .request(
            Method::POST,
            &notes,
            Some(&app.token(COORD)),
            Some(json!({"audience": "everyone", "body": "x"})),
        )
        .await;
    bad.assert_problem(422);
    assert_eq!(
        app.get(&notes, Some(&app.token(COORD)))
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}

/// Every case route takes the reference as well as the id (agendas, calendars and the access
/// log speak in references); a reference of another cellule is not found, and a member who may
/// not see the case gets 404 by reference too.
async fn case_routes_accept_the_reference(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let (id, reference) = app.refer_ok(REF1, "Situation par référence.").await;
    let by_ref = case_path(&reference);
    let coord = app.token(COORD);
    let a = app.get(&by_ref, Some(&coord)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["id"], id.as_str());
    let a = app
        .request(
            Method::POST,
            &format!("{by_ref}/transitions"),
            Some(&coord),
            Some(json!({"to": "accepted"})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = app
        .request(
            Method::POST,
            &format!("{by_ref}/notes"),
            Some(&coord),
            Some(json!({"audience": "cellule", "body": "Note par référence."})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let notes = app.get(&format!("{by_ref}/notes"), Some(&coord)).await;
    assert_eq!(notes.status, 200, "{}", notes.text);
    assert_eq!(notes.body.as_array().map(Vec::len), Some(1));
    let a = app
        .get(&format!("{by_ref}/access-log"), Some(&app.token(AUDITOR)))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    // Not visible by reference either; unknown references are not found.
    app.get(&by_ref, Some(&app.token(PSY)))
        .await
        .assert_problem(404);
    app.get(&case_path("PER-2026-9999"), Some(&coord))
        .await
        .assert_problem(404);
    app.create_cellule("narbonne").await;
    let other = format!("/v1/cellules/narbonne/cases/{reference}");
    assert_ne!(app.get(&other, Some(&coord)).await.status, 200);
    // The reads were audited with the case's id and reference, as reads by id are.
    let reads = app
        .state
        .db
        .search_audit(
            "perpignan",
            &cellule::audit::Filter {
                action: Some("read_case".into()),
                outcome: Some("allowed".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("search");
    assert!(
        reads
            .iter()
            .any(|e| e.case_id.as_deref() == Some(id.as_str())
                && e.case_ref.as_deref() == Some(reference.as_str())),
        "{reads:?}"
    );
}

/// Referrers and auditors never sign the charter: asking for what their role never allows is a
/// plain 403 forbidden (recorded as `forbidden`), not a charter they could not accept.
async fn roles_without_a_charter_are_plainly_forbidden(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    for who in [REF1, AUDITOR] {
        let a = app
            .get("/v1/cellules/perpignan/cases", Some(&app.token(who)))
            .await;
        a.assert_problem(403);
        assert_eq!(a.problem_type(), "/problems/forbidden", "{who}: {}", a.text);
        let accept = app
            .request(
                Method::POST,
                "/v1/cellules/perpignan/charter/accept",
                Some(&app.token(who)),
                Some(json!({"version": 1})),
            )
            .await;
        accept.assert_problem(403);
        assert_eq!(accept.problem_type(), "/problems/forbidden");
    }
    let denials = app
        .state
        .db
        .search_audit(
            "perpignan",
            &cellule::audit::Filter {
                action: Some("list_cases".into()),
                outcome: Some("denied".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("search");
    assert_eq!(denials.len(), 2);
    assert!(
        denials
            .iter()
            .all(|e| e.reason.as_deref() == Some("forbidden"))
    );
    // A member who has not accepted it is still told about it: charter_gates_case_content.
}

async fn charter_gates_case_content(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    app.add_member(
        "perpignan",
        "newcomer",
        json!({"role": "coordinator", "sphere": "city", "organisation": "CLSM Perpignan"}),
    )
    .await;
    let (id, _) = app.refer_ok(REF1, "Situation ordinaire.").await;
    let t = app.token("newcomer");
    let a = app.get("/v1/cellules/perpignan/cases", Some(&t)).await;
    a.assert_problem(403);
    assert_eq!(a.problem_type(), "/problems/charter-not-accepted");
    app.get(&case_path(&id), Some(&t)).await.assert_problem(403);
    let charter = app.get("/v1/cellules/perpignan/charter", Some(&t)).await;
    assert_eq!(charter.body["accepted"], false);
    assert_eq!(charter.body["version"], 1);
    let wrong = app
        .request(
            Method::POST,
            "/v1/cellules/perpignan/charter/accept",
            Some(&t),
            Some(json!({"version": 7})),
        )
        .await;
    wrong.assert_problem(409);
    app.accept_charter("newcomer").await;
    assert_eq!(app.get(&case_path(&id), Some(&t)).await.status, 200);

    // A new version must be accepted again.
    let v2 = app
        .as_admin(
            Method::PUT,
            "/v1/cellules/perpignan/charter",
            Some(json!({"text": "Charte v2 : secret partagé."})),
        )
        .await;
    assert_eq!(v2.status, 201, "{}", v2.text);
    assert_eq!(v2.body["version"], 2);
    app.get(&case_path(&id), Some(&t)).await.assert_problem(403);
    app.accept_charter("newcomer").await;
    assert_eq!(app.get(&case_path(&id), Some(&t)).await.status, 200);
    // Acceptance counts in its own cellule only.
    app.create_cellule("narbonne").await;
    app.add_member(
        "narbonne",
        "newcomer",
        json!({"role": "coordinator", "sphere": "city", "organisation": "CLSM Narbonne"}),
    )
    .await;
    let other = app.get("/v1/cellules/narbonne/cases", Some(&t)).await;
    other.assert_problem(403);
    assert_eq!(other.problem_type(), "/problems/charter-not-accepted");
    let charter = app.get("/v1/cellules/narbonne/charter", Some(&t)).await;
    assert_eq!(charter.body["accepted"], false);
    let accept = app
        .request(
            Method::POST,
            "/v1/cellules/narbonne/charter/accept",
            Some(&t),
            Some(json!({"version": charter.body["version"]})),
        )
        .await;
    assert_eq!(accept.status, 200, "{}", accept.text);
    assert_eq!(
        app.get("/v1/cellules/narbonne/cases", Some(&t))
            .await
            .status,
        200
    );
    // A case is found through its own cellule only, even by a coordinator of another one.
    let elsewhere = app
        .get(&format!("/v1/cellules/narbonne/cases/{id}"), Some(&t))
        .await;
    elsewhere.assert_problem(404);
    assert!(!elsewhere.text.contains(&id[..8]), "{}", elsewhere.text);
    // Referrers and auditors have no charter to accept.
    let a = app
        .request(
            Method::POST,
            "/v1/cellules/perpignan/charter/accept",
            Some(&app.token(REF1)),
            Some(json!({"version": 2})),
        )
        .await;
    a.assert_problem(403);
}

async fn erasure_removes_rows_and_key(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let id = case_in(&app, "in_follow_up").await;
    let notes = format!("{}/notes", case_path(&id));
    let n = app
        .request(
            Method::POST,
            &notes,
            Some(&app.token(PSY)),
            Some(json!({"audience": "psychiatry", "body": "Note clinique."})),
        )
        .await;
    assert_eq!(n.status, 201);
    app.request(Method::DELETE, &case_path(&id), Some(&app.token(PSY)), None)
        .await
        .assert_problem(403);
    let a = app
        .request(
            Method::DELETE,
            &case_path(&id),
            Some(&app.token(COORD)),
            None,
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.text);
    app.get(&case_path(&id), Some(&app.token(COORD)))
        .await
        .assert_problem(404);
    app.request(
        Method::DELETE,
        &case_path(&id),
        Some(&app.token(COORD)),
        None,
    )
    .await
    .assert_problem(404);

    let db = app.state.db.clone();
    assert!(
        db.get_wrapped_key(&id).await.expect("db").is_none(),
        "the data key is destroyed"
    );
    let tombstones = db.erasures("perpignan").await.expect("db");
    assert_eq!(tombstones.len(), 1);
    assert_eq!(tombstones[0].1, "request");
    let r = app
        .get("/v1/cellules/perpignan/referrals", Some(&app.token(REF1)))
        .await;
    assert_eq!(r.body, json!([]), "nothing left in the referrer's view");
}

async fn retention_erases_expired_cases(backend: Backend) {
    let start = chrono::Utc::now();
    let clock = Arc::new(ManualClock::new(start));
    let app = spawn_app_with(
        backend,
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;
    app.standard_cellule().await;
    let declined = case_in(&app, "declined").await;
    let closed = case_in(&app, "closed").await;
    let open = case_in(&app, "in_follow_up").await;
    let db = app.state.db.clone();
    let months = |n: u32| {
        start
            .checked_add_months(chrono::Months::new(n))
            .expect("date")
    };

    assert!(
        cellule::services::cases::run_retention(db.as_ref(), months(2))
            .await
            .expect("run")
            .is_empty()
    );
    let erased =
        cellule::services::cases::run_retention(db.as_ref(), months(3) + chrono::Duration::days(1))
            .await
            .expect("run");
    assert_eq!(erased.len(), 1);
    app.get(&case_path(&declined), Some(&app.token(COORD)))
        .await
        .assert_problem(404);
    assert_eq!(
        app.get(&case_path(&closed), Some(&app.token(COORD)))
            .await
            .status,
        200
    );
    let erased = cellule::services::cases::run_retention(
        db.as_ref(),
        months(24) + chrono::Duration::days(1),
    )
    .await
    .expect("run");
    assert_eq!(erased.len(), 1);
    app.get(&case_path(&closed), Some(&app.token(COORD)))
        .await
        .assert_problem(404);
    assert_eq!(
        app.get(&case_path(&open), Some(&app.token(COORD)))
            .await
            .status,
        200,
        "open cases stay"
    );
    let reasons: Vec<String> = db
        .erasures("perpignan")
        .await
        .expect("db")
        .into_iter()
        .map(|t| t.1)
        .collect();
    assert_eq!(reasons, ["retention", "retention"]);
    // Each erasure's entry names the rule and the settings that decided it.
    let erasures = db
        .search_audit(
            "perpignan",
            &cellule::audit::Filter {
                action: Some("retention_erase".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("search");
    let details: Vec<serde_json::Value> = erasures
        .iter()
        .map(|e| {
            assert_eq!(e.actor, "system:retention");
            serde_json::from_str(e.detail.as_deref().expect("detail")).expect("json")
        })
        .collect();
    let cutoff = |m: u32, days: i64| {
        (months(m) + chrono::Duration::days(days) - chrono::Months::new(m))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    assert_eq!(
        details,
        [
            json!({"rule": "closed_cases", "retention_months": 24, "closed_before": cutoff(24, 1)}),
            json!({"rule": "declined_cases", "retention_months": 3, "declined_before": cutoff(3, 1)}),
        ]
    );

    // Per-cellule settings.
    let a = app
        .as_admin(
            Method::PUT,
            "/v1/cellules/perpignan/retention",
            Some(json!({"closed_months": 6, "declined_months": 1})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    app.as_admin(
        Method::PUT,
        "/v1/cellules/perpignan/retention",
        Some(json!({"closed_months": 0, "declined_months": 1})),
    )
    .await
    .assert_problem(422);
    clock.set(months(30));
    let late = case_in(&app, "closed").await;
    assert!(
        cellule::services::cases::run_retention(db.as_ref(), months(35))
            .await
            .expect("run")
            .is_empty()
    );
    assert_eq!(
        cellule::services::cases::run_retention(db.as_ref(), months(37))
            .await
            .expect("run")
            .len(),
        1
    );
    app.get(&case_path(&late), Some(&app.token(COORD)))
        .await
        .assert_problem(404);
    let _ = ADMIN;
}

async fn case_list_filters_and_pagination(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let mut all = HashSet::new();
    for i in 0..7 {
        let mut body = referral(&format!("Situation {i}."));
        body["urgency"] = json!(if i % 3 == 0 { "urgent" } else { "routine" });
        body["needs"] = json!(if i % 2 == 0 {
            vec!["isolation"]
        } else {
            vec!["housing", "addiction"]
        });
        if i == 6 {
            body["sector"] = json!("66G04");
            body["commune"] = json!("66001");
        }
        let a = app.refer(REF1, &body).await;
        assert_eq!(a.status, 201);
        all.insert(a.body["id"].as_str().expect("id").to_owned());
    }
    let t = app.token(COORD);
    let count = |q: &'static str| {
        let app = &app;
        let t = t.clone();
        async move {
            let a = app
                .get(&format!("/v1/cellules/perpignan/cases?{q}"), Some(&t))
                .await;
            assert_eq!(a.status, 200, "{q}: {}", a.text);
            a.body["items"].as_array().map_or(0, Vec::len)
        }
    };
    assert_eq!(count("urgency=urgent").await, 3);
    assert_eq!(count("need=isolation").await, 4);
    assert_eq!(count("need=addiction").await, 3);
    assert_eq!(count("sector=66G04").await, 1);
    assert_eq!(count("commune=66136").await, 6);
    assert_eq!(count("status=submitted").await, 7);
    assert_eq!(count("status=closed").await, 0);
    let today = chrono::Utc::now().date_naive();
    let tomorrow = today.succ_opt().expect("date");
    assert_eq!(
        app.get(
            &format!("/v1/cellules/perpignan/cases?submitted_from={today}&submitted_to={today}"),
            Some(&t)
        )
        .await
        .body["items"]
            .as_array()
            .map_or(0, Vec::len),
        7
    );
    assert_eq!(
        app.get(
            &format!("/v1/cellules/perpignan/cases?submitted_from={tomorrow}"),
            Some(&t)
        )
        .await
        .body["items"]
            .as_array()
            .map_or(0, Vec::len),
        0
    );

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let q = match &cursor {
            Some(c) => format!("/v1/cellules/perpignan/cases?limit=3&cursor={c}"),
            None => "/v1/cellules/perpignan/cases?limit=3".to_owned(),
        };
        let a = app.get(&q, Some(&t)).await;
        assert_eq!(a.status, 200, "{}", a.text);
        for item in a.body["items"].as_array().expect("items") {
            seen.push(item["id"].as_str().expect("id").to_owned());
        }
        cursor = a.body["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), all);
    for q in [
        "limit=0",
        "limit=500",
        "cursor=garbage",
        "status=lost",
        "colour=red",
        "submitted_from=yesterday",
    ] {
        app.get(&format!("/v1/cellules/perpignan/cases?{q}"), Some(&t))
            .await
            .assert_problem(422);
    }
}

/// The read of a case that is not there, by a well-formed id or any other text in its place,
/// is a plain 404 (the text reaches the database only as a bound value), and the real case is
/// still read afterwards.
async fn a_missing_or_malformed_case_id_is_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let (id, _) = app.refer_ok(REF1, "Situation ordinaire.").await;
    let t = app.token(COORD);
    for missing in [
        uuid::Uuid::new_v4().to_string(),
        "not-a-case".to_owned(),
        "x%27%20OR%20%271%27%3D%271".to_owned(),
    ] {
        let r = app.get(&case_path(&missing), Some(&t)).await;
        r.assert_problem(404);
        assert!(!r.text.contains("Situation"), "{}", r.text);
        // The notes list finds its case through the same extractor.
        let n = app
            .get(&format!("{}/notes", case_path(&missing)), Some(&t))
            .await;
        n.assert_problem(404);
    }
    let found = app.get(&case_path(&id), Some(&t)).await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert_eq!(found.body["situation"], "Situation ordinaire.");
    let notes = app
        .get(&format!("{}/notes", case_path(&id)), Some(&t))
        .await;
    assert_eq!(notes.status, 200, "{}", notes.text);
    // A case of another cellule is not found through this one, notes included.
    app.create_cellule("beziers").await;
    app.add_member(
        "beziers",
        "coord-b",
        json!({"role": "coordinator", "sphere": "city", "organisation": "CLSM Béziers"}),
    )
    .await;
    let other = app.token("coord-b");
    app.get(
        &format!("/v1/cellules/beziers/cases/{id}/notes"),
        Some(&other),
    )
    .await
    .assert_problem(404);
}

backend_tests!(
    case_routes_accept_the_reference,
    roles_without_a_charter_are_plainly_forbidden,
    a_missing_or_malformed_case_id_is_not_found,
    referral_is_recorded_encrypted_and_readable_by_the_coordinator,
    consent_rules,
    identifiers_are_refused_without_echo,
    bad_referral_inputs_are_refused,
    fifty_concurrent_referrals_get_fifty_distinct_references,
    state_machine_table,
    duplicates_are_flagged_across_referrers,
    duplicates_are_shown_only_to_an_allowed_submission,
    a_stalled_submission_body_is_still_refused_and_recorded,
    referrers_see_only_their_own_status_view,
    a_decline_message_reaches_only_the_referrer,
    notes_follow_audiences_and_routing,
    charter_gates_case_content,
    erasure_removes_rows_and_key,
    retention_erases_expired_cases,
    case_list_filters_and_pagination,
);

/// SQLite stores what the group commit writes (submissions, reads' entries) in the storage
/// classes and text forms every query compares them in: blobs, integers, and timestamps in
/// sqlx's text form.
#[tokio::test]
async fn sqlite_group_commit_stores_sqlx_forms() {
    use sqlx::Connection;
    let app = spawn_app(Backend::Sqlite).await;
    app.standard_cellule().await;
    let a = app.refer(REF1, &referral("Situation de logement.")).await;
    assert_eq!(a.status, 201, "{}", a.text);
    let id = a.body["id"].as_str().expect("id").to_owned();
    let mut c = sqlx::SqliteConnection::connect(&app.database_url)
        .await
        .expect("connect");
    let (submitted, updated, kinds): (String, String, String) = sqlx::query_as(
        "SELECT c.submitted_at, c.updated_at, \
           typeof(c.situation) || ',' || typeof(k.kek_version) \
             || ',' || typeof(k.wrapped) \
         FROM cases c JOIN data_keys k ON k.id = c.id WHERE c.id = ?1",
    )
    .bind(&id)
    .fetch_one(&mut c)
    .await
    .expect("case row");
    assert_eq!(submitted, updated);
    assert_eq!(kinds, "blob,integer,blob");
    // sqlx's own text for the same instant.
    let at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT submitted_at FROM cases WHERE id = ?1")
            .bind(&id)
            .fetch_one(&mut c)
            .await
            .expect("decode");
    let sqlx_text: String = sqlx::query_scalar("SELECT ?1")
        .bind(at)
        .fetch_one(&mut c)
        .await
        .expect("encode");
    assert_eq!(submitted, sqlx_text);
    // The submission's entry continues the chain the set-up began, and reads' entries
    // follow it: the whole chain verifies.
    let r = app.get(&case_path(&id), Some(&app.token(COORD))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let entries: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT seq, action, typeof(prev_hash) || typeof(hash) FROM audit_entries \
         WHERE cellule = 'perpignan' AND case_id = ?1 ORDER BY seq",
    )
    .bind(&id)
    .fetch_all(&mut c)
    .await
    .expect("entries");
    assert_eq!(
        entries.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
        ["submit_referral", "read_case"]
    );
    assert!(entries.iter().all(|e| e.2 == "blobblob"), "{entries:?}");
    let v = app
        .get(
            "/v1/cellules/perpignan/audit/verify",
            Some(&app.token(AUDITOR)),
        )
        .await;
    assert_eq!(v.status, 200, "{}", v.text);
    assert_eq!(v.body["valid"], true, "{}", v.text);
}
