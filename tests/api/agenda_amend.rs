//! Changes of a published agenda over HTTP on both backends (issue 36): an urgent case added
//! after publication opens access at once (members; the guest only for its own item), an item
//! withdrawn closes it and returns its case to its previous status, a decided item stays, the
//! items are reordered (and only reordered) by `PUT …/agenda`, only the coordinator amends,
//! references work in place of ids, each change leaves its `amend_agenda` entry, and the routes
//! are in the OpenAPI document.

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{AUDITOR, Answer, Backend, CITY, COORD, GUEST, PSY, TestApp, spawn_app};
use crate::sessions::{accepted, ad_hoc, agenda_as, call, publish, setup};

/// Builds and publishes a session's agenda as the coordinator; returns the published agenda.
async fn build_and_publish(app: &TestApp, sid: &str) -> Value {
    let a = call(
        app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/build"),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    publish(app, sid).await
}

/// Records a decision on an item as the coordinator (201 expected), the meeting opened first
/// (on its day) when it is not yet.
async fn decide(app: &TestApp, sid: &str, case: &str, body: Value) {
    let sessions = call(app, Method::GET, "/sessions", COORD, None).await;
    let opened = sessions
        .body
        .as_array()
        .expect("sessions")
        .iter()
        .any(|s| s["id"] == sid && s["status"] == "in_session");
    if !opened {
        crate::sessions::open_meeting(app, sid).await;
    }
    let a = call(
        app,
        Method::POST,
        &format!("/sessions/{sid}/items/{case}/decision"),
        COORD,
        Some(body),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
}

/// `POST …/agenda/items` as `sub`.
async fn add(app: &TestApp, sid: &str, sub: &str, body: Value) -> Answer {
    call(
        app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/items"),
        sub,
        Some(body),
    )
    .await
}

/// `POST …/agenda/items` as the coordinator with the header `Idempotency-Key: key`.
async fn add_keyed(app: &TestApp, sid: &str, key: &str, body: &Value) -> Answer {
    let req = app
        .client
        .post(format!(
            "{}/v1/cellules/perpignan/sessions/{sid}/agenda/items",
            app.base
        ))
        .bearer_auth(app.token(COORD))
        .header("Idempotency-Key", key)
        .json(body);
    crate::helpers::answer(req.send().await.expect("request sent")).await
}

/// `DELETE …/agenda/items/{case}` as `sub`.
async fn withdraw(app: &TestApp, sid: &str, sub: &str, case: &str) -> Answer {
    call(
        app,
        Method::DELETE,
        &format!("/sessions/{sid}/agenda/items/{case}"),
        sub,
        None,
    )
    .await
}

/// The status `sub` gets reading a case.
async fn reads(app: &TestApp, sub: &str, id: &str) -> u16 {
    call(app, Method::GET, &format!("/cases/{id}"), sub, None)
        .await
        .status
        .as_u16()
}

async fn status_of(app: &TestApp, id: &str) -> String {
    let a = call(app, Method::GET, &format!("/cases/{id}"), COORD, None).await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.body["status"].as_str().expect("status").to_owned()
}

fn item_ids(agenda: &Value) -> Vec<String> {
    agenda["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["case_id"].as_str().map(str::to_owned))
        .collect()
}

fn positions(agenda: &Value) -> Vec<i64> {
    agenda["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["position"].as_i64())
        .collect()
}

/// The `amend_agenda` entries of the log, newest first, as the auditor reads them.
async fn amendments(app: &TestApp) -> Vec<Value> {
    let a = call(
        app,
        Method::GET,
        "/audit?action=amend_agenda",
        AUDITOR,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.body["items"].as_array().expect("items").clone()
}

async fn adding_after_publication_opens_access_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    let (first, _) = accepted(&app, "priority", json!(["housing"]), "66G01").await;
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    // Not published yet: the draft is edited with PUT …/agenda.
    add(&app, &sid, COORD, json!({"case_id": first}))
        .await
        .assert_problem(409);
    build_and_publish(&app, &sid).await;
    // Urgent cases that came in after publication: one the router routes to the CMP with the
    // EMPP (a guest) invited, one to the CCAS only.
    let (care, care_ref) = accepted(&app, "urgent", json!(["care_access"]), "66G03").await;
    let (housing, _) = accepted(&app, "urgent", json!(["housing"]), "66G01").await;
    for sub in [PSY, CITY, GUEST] {
        assert_eq!(reads(&app, sub, &care).await, 404, "{sub} before");
    }
    // Added by its reference, first.
    let a = add(
        &app,
        &sid,
        COORD,
        json!({"case_id": care_ref, "position": 1}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(item_ids(&a.body), vec![care.clone(), first.clone()]);
    assert_eq!(positions(&a.body), vec![1, 2]);
    let item = &a.body["items"][0];
    assert_eq!(item["status"], "scheduled");
    assert_eq!(item["reference"], care_ref.as_str());
    assert_eq!(item["proposal"]["status"], "routed", "{}", a.text);
    assert_eq!(status_of(&app, &care).await, "scheduled");
    // Access opens at once: permanent members, and the guest invited to this item.
    for sub in [PSY, CITY, GUEST] {
        assert_eq!(reads(&app, sub, &care).await, 200, "{sub} after");
    }
    // Added by its id, last by default: the guest is not invited to this one.
    let a = add(&app, &sid, COORD, json!({"case_id": housing})).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(
        item_ids(&a.body),
        vec![care.clone(), first.clone(), housing.clone()]
    );
    assert_eq!(reads(&app, CITY, &housing).await, 200);
    assert_eq!(reads(&app, GUEST, &housing).await, 404);
    let guest_view = agenda_as(&app, &sid, GUEST).await;
    assert_eq!(item_ids(&guest_view.body), vec![care.clone()]);
    // The stored agenda is the one answered.
    let stored = agenda_as(&app, &sid, COORD).await;
    assert_eq!(item_ids(&stored.body), item_ids(&a.body));
    assert_eq!(positions(&stored.body), vec![1, 2, 3]);

    // Refusals: already on it, not eligible, unknown, out of range.
    add(&app, &sid, COORD, json!({"case_id": care}))
        .await
        .assert_problem(409);
    let (submitted, _) = app.refer_ok(crate::helpers::REF1, "Situation reçue.").await;
    let a = add(&app, &sid, COORD, json!({"case_id": submitted})).await;
    a.assert_problem(422);
    assert!(a.text.contains("/case_id"), "{}", a.text);
    add(&app, &sid, COORD, json!({"case_id": "PER-1999-0001"}))
        .await
        .assert_problem(422);
    let (late, _) = accepted(&app, "routine", json!(["housing"]), "66G01").await;
    let a = add(&app, &sid, COORD, json!({"case_id": late, "position": 5})).await;
    a.assert_problem(422);
    assert!(a.text.contains("/position"), "{}", a.text);
    // A case on another open agenda stays there.
    let other = ad_hoc(&app, "2031-01-09T14:00:00+01:00").await;
    let a = call(
        &app,
        Method::PUT,
        &format!("/sessions/{other}/agenda"),
        COORD,
        Some(json!({"items": [late]})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    add(&app, &sid, COORD, json!({"case_id": late}))
        .await
        .assert_problem(422);
    assert_eq!(status_of(&app, &late).await, "accepted");

    // The entries: one per change, the case in its slot, the change in the detail.
    let entries = amendments(&app).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let added = entries
        .iter()
        .find(|e| e["case_id"] == care.as_str())
        .expect("the entry of the first addition");
    assert_eq!(added["case_ref"], care_ref.as_str());
    assert_eq!(added["outcome"], "allowed");
    assert_eq!(added["actor"], COORD);
    assert_eq!(added["target_id"], sid.as_str());
    assert_eq!(added["detail"], json!({"change": "add", "position": 1}));
    // Identifiers only: no case content in the entries.
    let text = serde_json::to_string(&entries).expect("entries");
    assert!(!text.contains("CANARY"), "{text}");
}

async fn an_idempotent_retry_gets_the_first_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    accepted(&app, "priority", json!(["housing"]), "66G01").await;
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    build_and_publish(&app, &sid).await;
    let (urgent, _) = accepted(&app, "urgent", json!(["care_access"]), "66G03").await;
    let body = json!({"case_id": urgent});
    let first = add_keyed(&app, &sid, "urgent-1", &body).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let again = add_keyed(&app, &sid, "urgent-1", &body).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(
        again
            .headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(again.body, first.body);
    assert_eq!(amendments(&app).await.len(), 1);
}

async fn withdrawing_closes_access_and_restores_the_previous_status(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    // A case followed up after a first session, and an accepted one.
    let (followed, followed_ref) =
        accepted(&app, "priority", json!(["care_access"]), "66G03").await;
    let s1 = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    build_and_publish(&app, &s1).await;
    decide(
        &app,
        &s1,
        &followed,
        json!({"outcome": "follow_up", "follow_up_date": "2031-03-01"}),
    )
    .await;
    assert_eq!(status_of(&app, &followed).await, "in_follow_up");
    let (care, care_ref) = accepted(&app, "priority", json!(["care_access"]), "66G03").await;
    let s2 = ad_hoc(&app, "2031-01-09T14:00:00+01:00").await;
    build_and_publish(&app, &s2).await;
    // The follow-up is not due by this session: added by hand, as a follow-up.
    let a = add(&app, &s2, COORD, json!({"case_id": followed_ref})).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.body["items"][1]["kind"], "follow_up", "{}", a.text);
    assert_eq!(status_of(&app, &followed).await, "scheduled");
    for sub in [CITY, GUEST] {
        assert_eq!(reads(&app, sub, &care).await, 200, "{sub} before");
    }

    // Withdrawn by its reference: back to accepted, access through this agenda closed at once.
    let a = withdraw(&app, &s2, COORD, &care_ref).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(item_ids(&a.body), vec![followed.clone()]);
    assert_eq!(positions(&a.body), vec![1]);
    assert_eq!(status_of(&app, &care).await, "accepted");
    for sub in [CITY, GUEST] {
        assert_eq!(reads(&app, sub, &care).await, 404, "{sub} after");
    }
    let stored = agenda_as(&app, &s2, CITY).await;
    assert_eq!(item_ids(&stored.body), vec![followed.clone()]);
    // Not on the agenda any more.
    withdraw(&app, &s2, COORD, &care).await.assert_problem(404);
    // Withdrawn by its id: back to in_follow_up.
    let a = withdraw(&app, &s2, COORD, &followed).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(item_ids(&a.body).is_empty());
    assert_eq!(status_of(&app, &followed).await, "in_follow_up");
    // The withdrawn case can come back, and access with it.
    let a = add(&app, &s2, COORD, json!({"case_id": care})).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(reads(&app, CITY, &care).await, 200);

    let entries = amendments(&app).await;
    let withdrawn: Vec<&Value> = entries
        .iter()
        .filter(|e| e["detail"]["change"] == "withdraw")
        .collect();
    assert_eq!(withdrawn.len(), 2, "{entries:?}");
    let by_ref = withdrawn
        .iter()
        .find(|e| e["case_id"] == care.as_str())
        .expect("the withdrawal of the accepted case");
    assert_eq!(by_ref["case_ref"], care_ref.as_str());
    assert_eq!(
        by_ref["detail"],
        json!({"change": "withdraw", "status": "accepted"})
    );
    assert!(
        withdrawn
            .iter()
            .any(|e| e["case_id"] == followed.as_str() && e["detail"]["status"] == "in_follow_up")
    );
    // A denial for an item that is not there names the case it was asked for.
    let missing = call(
        &app,
        Method::GET,
        "/audit?action=amend_agenda&outcome=denied",
        AUDITOR,
        None,
    )
    .await;
    assert_eq!(
        missing.body["items"][0]["reason"], "not_found",
        "{}",
        missing.text
    );
    assert_eq!(missing.body["items"][0]["case_id"], care.as_str());
}

async fn a_decided_item_cannot_be_withdrawn(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    let (case, reference) = accepted(&app, "priority", json!(["care_access"]), "66G03").await;
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    build_and_publish(&app, &sid).await;
    decide(
        &app,
        &sid,
        &case,
        json!({"outcome": "follow_up", "follow_up_date": "2031-03-01"}),
    )
    .await;
    for key in [&case, &reference] {
        let a = withdraw(&app, &sid, COORD, key).await;
        a.assert_problem(409);
        assert!(a.text.contains("decision"), "{}", a.text);
    }
    let a = agenda_as(&app, &sid, COORD).await;
    assert_eq!(item_ids(&a.body), vec![case.clone()]);
    assert_eq!(status_of(&app, &case).await, "in_follow_up");
    assert_eq!(reads(&app, CITY, &case).await, 200);
    assert!(amendments(&app).await.is_empty());
    // A cancelled session's agenda no longer changes (a fresh one: this one took place).
    let other = ad_hoc(&app, "2031-02-13T14:00:00+01:00").await;
    let (next, _) = accepted(&app, "priority", json!(["housing"]), "66G01").await;
    build_and_publish(&app, &other).await;
    let a = call(
        &app,
        Method::POST,
        &format!("/sessions/{other}/cancel"),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    add(&app, &other, COORD, json!({"case_id": next}))
        .await
        .assert_problem(409);
    withdraw(&app, &other, COORD, &next)
        .await
        .assert_problem(409);
}

async fn a_published_agenda_is_reordered_not_edited(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    let mut cases = Vec::new();
    for _ in 0..3 {
        cases.push(accepted(&app, "priority", json!(["housing"]), "66G01").await);
    }
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    let published = build_and_publish(&app, &sid).await;
    let order = item_ids(&published);
    assert_eq!(order.len(), 3);
    let reference = |id: &str| {
        cases
            .iter()
            .find(|(c, _)| c == id)
            .map(|(_, r)| r.clone())
            .expect("a case of the test")
    };
    // Reversed, by references and ids mixed.
    let wanted = vec![order[2].clone(), order[1].clone(), order[0].clone()];
    let body = json!({"items": [reference(&wanted[0]), wanted[1], reference(&wanted[2])]});
    let a = call(
        &app,
        Method::PUT,
        &format!("/sessions/{sid}/agenda"),
        COORD,
        Some(body),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(item_ids(&a.body), wanted);
    assert_eq!(positions(&a.body), vec![1, 2, 3]);
    assert_eq!(a.body["published"], true);
    let stored = agenda_as(&app, &sid, PSY).await;
    assert_eq!(item_ids(&stored.body), wanted);
    for id in &wanted {
        assert_eq!(status_of(&app, id).await, "scheduled");
    }
    // Another set is refused, with the endpoints that add and withdraw.
    let (extra, _) = accepted(&app, "urgent", json!(["housing"]), "66G01").await;
    // (items, whether the answer names the endpoints that add and withdraw)
    for (items, names_endpoints) in [
        (json!([wanted[0], wanted[1]]), true),
        (json!([wanted[0], wanted[1], wanted[2], extra]), true),
        (json!([wanted[0], wanted[0], wanted[1], wanted[2]]), false),
    ] {
        let a = call(
            &app,
            Method::PUT,
            &format!("/sessions/{sid}/agenda"),
            COORD,
            Some(json!({ "items": items })),
        )
        .await;
        a.assert_problem(422);
        if names_endpoints {
            assert!(a.text.contains("agenda/items"), "{}", a.text);
        }
    }
    assert_eq!(item_ids(&agenda_as(&app, &sid, COORD).await.body), wanted);
    assert_eq!(status_of(&app, &extra).await, "accepted");

    let entries = amendments(&app).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        entries[0]["detail"],
        json!({"change": "reorder", "order": wanted})
    );
    assert_eq!(entries[0]["target_id"], sid.as_str());
    let named: Vec<&str> = entries[0]["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter_map(|c| c["case_id"].as_str())
        .collect();
    assert_eq!(named, wanted.iter().map(String::as_str).collect::<Vec<_>>());
}

async fn only_the_coordinator_amends_and_denials_are_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    let (case, reference) = accepted(&app, "priority", json!(["care_access"]), "66G03").await;
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    build_and_publish(&app, &sid).await;
    let (urgent, _) = accepted(&app, "urgent", json!(["care_access"]), "66G03").await;
    for sub in [PSY, CITY, GUEST, AUDITOR] {
        add(&app, &sid, sub, json!({"case_id": urgent}))
            .await
            .assert_problem(403);
        withdraw(&app, &sid, sub, &reference)
            .await
            .assert_problem(403);
    }
    let a = call(
        &app,
        Method::PUT,
        &format!("/sessions/{sid}/agenda"),
        PSY,
        Some(json!({"items": [case]})),
    )
    .await;
    a.assert_problem(403);
    // Nothing changed.
    assert_eq!(status_of(&app, &urgent).await, "accepted");
    assert_eq!(status_of(&app, &case).await, "scheduled");
    assert_eq!(reads(&app, CITY, &urgent).await, 404);
    // Each refusal is recorded, naming the member.
    let log = call(
        &app,
        Method::GET,
        &format!("/audit?action=amend_agenda&outcome=denied&actor={PSY}"),
        AUDITOR,
        None,
    )
    .await;
    assert_eq!(log.status, 200, "{}", log.text);
    let denied = log.body["items"].as_array().expect("items");
    assert_eq!(denied.len(), 2, "{}", log.text);
    for e in denied {
        assert_eq!(e["reason"], "forbidden");
        assert_eq!(e["actor"], PSY);
    }
    let log = call(
        &app,
        Method::GET,
        &format!("/audit?action=edit_agenda&outcome=denied&actor={PSY}"),
        AUDITOR,
        None,
    )
    .await;
    assert_eq!(
        log.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        log.text
    );
    // And no change was recorded as allowed.
    assert!(
        amendments(&app)
            .await
            .iter()
            .all(|e| e["outcome"] == "denied")
    );
}

async fn a_case_this_session_deferred_is_no_longer_counted_once_added(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    // 120 minutes at 20 per new case: six fit, the seventh (the newest) is deferred.
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(
            accepted(&app, "routine", json!(["housing"]), "66G01")
                .await
                .0,
        );
    }
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    let published = build_and_publish(&app, &sid).await;
    let deferred = published["deferred"][0]["case_id"]
        .as_str()
        .expect("a deferred case")
        .to_owned();
    assert_eq!(published["deferred"].as_array().map(Vec::len), Some(1));
    let times = |a: &Value| a["times_deferred"].as_i64().expect("times_deferred");
    let a = call(
        &app,
        Method::GET,
        &format!("/cases/{deferred}"),
        COORD,
        None,
    )
    .await;
    assert_eq!(times(&a.body), 1);
    // Added after all (over capacity: reported, not refused): reviewed by this session.
    let a = add(
        &app,
        &sid,
        COORD,
        json!({"case_id": deferred, "position": 2}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.body["deferred"], json!([]));
    assert_eq!(a.body["over_capacity"], true);
    assert_eq!(times(&a.body["items"][1]), 0, "{}", a.text);
    let c = call(
        &app,
        Method::GET,
        &format!("/cases/{deferred}"),
        COORD,
        None,
    )
    .await;
    assert_eq!(times(&c.body), 0);
    // The answer (written with the change, for a retry) is the agenda as stored.
    let stored = agenda_as(&app, &sid, COORD).await;
    assert_eq!(a.body, stored.body);
}

backend_tests!(
    a_case_this_session_deferred_is_no_longer_counted_once_added,
    adding_after_publication_opens_access_at_once,
    an_idempotent_retry_gets_the_first_answer,
    withdrawing_closes_access_and_restores_the_previous_status,
    a_decided_item_cannot_be_withdrawn,
    a_published_agenda_is_reordered_not_edited,
    only_the_coordinator_amends_and_denials_are_audited,
);

/// The two new routes are in the OpenAPI document, with their statuses and the idempotency
/// header on the POST.
#[test]
fn the_openapi_document_lists_the_amendments() {
    let doc = serde_json::to_value(cellule::http::openapi()).expect("the document serialises");
    let add = &doc["paths"]["/v1/cellules/{cellule}/sessions/{sid}/agenda/items"]["post"];
    for status in ["201", "403", "404", "409", "422"] {
        assert!(add["responses"][status].is_object(), "POST {status}");
    }
    assert!(
        add["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == "Idempotency-Key")
    );
    assert!(add["requestBody"].is_object());
    let withdraw =
        &doc["paths"]["/v1/cellules/{cellule}/sessions/{sid}/agenda/items/{case_id}"]["delete"];
    for status in ["200", "403", "404", "409"] {
        assert!(withdraw["responses"][status].is_object(), "DELETE {status}");
    }
    assert_eq!(
        doc["components"]["schemas"]["AgendaItemAdd"]["required"],
        json!(["case_id"])
    );
}
