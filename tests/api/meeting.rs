//! The meeting over HTTP on both backends: a session opened on its day (never before, never a
//! decision before the opening or after the minutes' approval), attendance, decisions read by
//! whoever may see the case with the texts of their audiences, corrections as versions that keep
//! the old one and move the case along, the compte rendu per reader (JSON, HTML, PDF read back
//! with `pdftotext`), and the follow-up list by organisation.

use reqwest::Method;
use serde_json::json;

use crate::backend_tests;
use crate::helpers::{AUDITOR, Backend, CITY, COORD, GUEST, PSY, REF1, TestApp, spawn_app};
use crate::sessions::{accepted, ad_hoc, call, open_meeting, setup};

/// A coordinator of the psychiatry sphere: writes the texts only psychiatry reads.
const COORD_PSY: &str = "coord-psy";
const PSY_TEXT: &str = "Texte PSYCANARY réservé à la psychiatrie.";
const CITY_TEXT: &str = "Texte CITYCANARY réservé à la ville.";
const SHARED_TEXT: &str = "Texte partagé SHAREDCANARY avec toute la cellule.";

/// The bytes of a GET with an `Accept` header.
async fn fetch(app: &TestApp, path: &str, sub: &str, accept: &str) -> (u16, String, Vec<u8>) {
    let r = app
        .client
        .get(format!("{}/v1/cellules/perpignan{path}", app.base))
        .bearer_auth(app.token(sub))
        .header("Accept", accept)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, ct, r.bytes().await.expect("body").to_vec())
}

/// The text of a PDF, as `pdftotext` (poppler) reads it. A missing tool fails the test.
fn pdf_text(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("minutes.pdf");
    std::fs::write(&file, pdf).expect("write pdf");
    let out = std::process::Command::new("pdftotext")
        .arg("-layout")
        .arg(&file)
        .arg("-")
        .output()
        .expect("pdftotext (Debian package poppler-utils) is required by this test");
    assert!(out.status.success(), "pdftotext: {:?}", out);
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A published session of three items on 2030-12-12: `care` (CMP lead, EMPP invited),
/// `housing` (CCAS), `third` (CMP). Answers (session, care, housing, third), each (id, ref).
async fn published(
    app: &TestApp,
) -> (String, (String, String), (String, String), (String, String)) {
    setup(app).await;
    app.add_member(
        "perpignan",
        COORD_PSY,
        json!({"role": "coordinator", "sphere": "psychiatry", "organisation": "CMP 66G03"}),
    )
    .await;
    app.accept_charter(COORD_PSY).await;
    let care = accepted(app, "urgent", json!(["care_access"]), "66G03").await;
    let housing = accepted(app, "priority", json!(["housing"]), "66G01").await;
    let third = accepted(app, "routine", json!(["care_access"]), "66G03").await;
    let sid = ad_hoc(app, "2030-12-12T14:00:00+01:00").await;
    for step in ["agenda/build", "agenda/publish"] {
        let a = call(
            app,
            Method::POST,
            &format!("/sessions/{sid}/{step}"),
            COORD,
            None,
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    (sid, care, housing, third)
}

fn decision_path(sid: &str, case: &str) -> String {
    format!("/sessions/{sid}/items/{case}/decision")
}

async fn the_meeting_opens_on_its_day_and_takes_decisions_until_approval(backend: Backend) {
    let app = spawn_app(backend).await;
    let (sid, (care, care_ref), (housing, _), (third, _)) = published(&app).await;
    let status = |a: &crate::helpers::Answer| a.body["status"].as_str().unwrap_or("").to_owned();

    // Published, not yet open: no decision, no opening before the day, no closing.
    let sessions = call(&app, Method::GET, "/sessions", COORD, None).await;
    let listed = sessions
        .body
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["id"] == sid.as_str())
        .expect("listed")
        .clone();
    assert_eq!(listed["status"], "published");
    let early = json!({"outcome": "deferred"});
    let a = call(
        &app,
        Method::POST,
        &decision_path(&sid, &care),
        COORD,
        Some(early.clone()),
    )
    .await;
    a.assert_problem(409);
    assert!(a.text.contains("not open"), "{}", a.text);
    let a = call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/open"),
        COORD,
        None,
    )
    .await;
    a.assert_problem(409);
    assert!(a.text.contains("2030-12-12"), "{}", a.text);
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/close"),
        COORD,
        None,
    )
    .await
    .assert_problem(409);
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/minutes/approve"),
        COORD,
        None,
    )
    .await
    .assert_problem(409);
    // Only the coordinator runs the meeting.
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/open"),
        PSY,
        None,
    )
    .await
    .assert_problem(403);

    // On the day.
    open_meeting(&app, &sid).await;
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/open"),
        COORD,
        None,
    )
    .await
    .assert_problem(409);
    // Opened: it took place, it can no longer be cancelled.
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/cancel"),
        COORD,
        None,
    )
    .await
    .assert_problem(409);

    // Attendance: members by subject (their organisation follows), organisations as a whole.
    let a = call(
        &app,
        Method::PUT,
        &format!("/sessions/{sid}/attendance"),
        COORD,
        Some(json!({"entries": [
            {"participant": PSY, "status": "present"},
            {"participant": CITY, "status": "excused"},
            {"organisation": "empp", "status": "absent"},
            {"participant": COORD, "status": "present"}
        ]})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let orgs: Vec<(&str, &str)> = a
        .body
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            (
                l["organisation"].as_str().unwrap_or(""),
                l["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(orgs.contains(&("CMP 66G03", "present")), "{orgs:?}");
    assert!(orgs.contains(&("CCAS Perpignan", "excused")), "{orgs:?}");
    assert!(orgs.contains(&("EMPP", "absent")), "{orgs:?}");
    for bad in [
        json!({"entries": [{"participant": "nobody", "status": "present"}]}),
        json!({"entries": [{"organisation": "mdss", "status": "present"}]}),
        json!({"entries": [{"participant": PSY, "status": "present"}, {"participant": PSY, "status": "absent"}]}),
        json!({"entries": [{"status": "present"}]}),
    ] {
        call(
            &app,
            Method::PUT,
            &format!("/sessions/{sid}/attendance"),
            COORD,
            Some(bad),
        )
        .await
        .assert_problem(422);
    }
    call(
        &app,
        Method::PUT,
        &format!("/sessions/{sid}/attendance"),
        CITY,
        Some(json!({"entries": []})),
    )
    .await
    .assert_problem(403);
    let a = call(
        &app,
        Method::GET,
        &format!("/sessions/{sid}/attendance"),
        CITY,
        None,
    )
    .await;
    assert_eq!(a.body.as_array().map(Vec::len), Some(4), "{}", a.text);

    // Decisions: interlocutors and action owners only from the directory or the memberships.
    for bad in [
        json!({"outcome": "routed", "interlocutor": "mdss", "follow_up_date": "2031-02-01"}),
        json!({"outcome": "routed", "interlocutor": "cmp-66g03", "follow_up_date": "2031-02-01",
               "actions": [{"what": "Rendez-vous", "owner": "mdss", "due": "2030-12-20"}]}),
        json!({"outcome": "routed", "interlocutor": "cmp-66g03", "follow_up_date": "2031-02-01",
               "actions": [{"what": "Rendez-vous", "owner": "cmp-66g03", "due": "2020-01-01"}]}),
        json!({"outcome": "routed", "interlocutor": "cmp-66g03", "follow_up_date": "2031-02-01",
               "actions": ["Rendez-vous"]}),
        // An audience without a text.
        json!({"outcome": "follow_up", "follow_up_date": "2031-02-01", "text_audience": "city"}),
        // A city coordinator does not write for the psychiatry sphere.
        json!({"outcome": "routed", "interlocutor": "cmp-66g03", "follow_up_date": "2031-02-01",
               "text": PSY_TEXT, "text_audience": "psychiatry"}),
    ] {
        let a = call(
            &app,
            Method::POST,
            &decision_path(&sid, &care),
            COORD,
            Some(bad),
        )
        .await;
        assert!(matches!(a.status.as_u16(), 400 | 422), "{}", a.text);
    }
    let a = call(&app, Method::POST, &decision_path(&sid, &care_ref), COORD_PSY, Some(json!({
        "outcome": "routed", "interlocutor": "cmp-66g03", "follow_up_date": "2031-02-01",
        "actions": [{"what": "Proposer un rendez-vous infirmier", "owner": "cmp-66g03", "due": "2030-12-20"}],
        "text": PSY_TEXT, "text_audience": "psychiatry"}))).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.body["version"], 1);
    let a = call(
        &app,
        Method::POST,
        &decision_path(&sid, &housing),
        COORD,
        Some(json!({
        "outcome": "routed", "interlocutor": "ccas", "follow_up_date": "2031-02-01",
        "actions": [{"what": "Visite à domicile", "owner": "CCAS Perpignan", "due": "2031-01-10"}],
        "text": CITY_TEXT, "text_audience": "city"})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
    // The third item: routed first, then corrected twice.
    let a = call(
        &app,
        Method::POST,
        &decision_path(&sid, &third),
        COORD,
        Some(json!({
        "outcome": "routed", "interlocutor": "CCAS Perpignan", "follow_up_date": "2031-02-01",
        "text": "Première version."})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
    // Recording again is refused: a correction is a PUT.
    let a = call(
        &app,
        Method::POST,
        &decision_path(&sid, &third),
        COORD,
        Some(early.clone()),
    )
    .await;
    a.assert_problem(409);
    assert!(a.text.contains("PUT"), "{}", a.text);
    // No correction of an undecided item; the routing is checked again.
    let (_, other) = accepted(&app, "routine", json!(["care_access"]), "66G03").await;
    call(
        &app,
        Method::PUT,
        &decision_path(&sid, &other),
        COORD,
        Some(early.clone()),
    )
    .await
    .assert_problem(404);
    call(
        &app,
        Method::PUT,
        &decision_path(&sid, &third),
        COORD,
        Some(json!({
        "outcome": "routed", "interlocutor": "mdss", "follow_up_date": "2031-02-01"})),
    )
    .await
    .assert_problem(422);
    let a = call(
        &app,
        Method::PUT,
        &decision_path(&sid, &third),
        COORD,
        Some(json!({
        "outcome": "closed", "text": "Relais en place."})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["version"], 2);
    assert_eq!(a.body["status"], "closed");
    let case = call(&app, Method::GET, &format!("/cases/{third}"), COORD, None).await;
    assert_eq!(status(&case), "closed", "{}", case.text);
    let a = call(
        &app,
        Method::PUT,
        &decision_path(&sid, &third),
        COORD,
        Some(json!({
        "outcome": "follow_up", "follow_up_date": "2031-03-01", "text": SHARED_TEXT})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["version"], 3);
    let case = call(&app, Method::GET, &format!("/cases/{third}"), COORD, None).await;
    assert_eq!(status(&case), "in_follow_up", "{}", case.text);
    // The routing of the first version is undone: the case is routed to nobody again.
    assert!(case.body["routed_org"].is_null(), "{}", case.text);

    // Every version stays readable, the latest is current.
    let a = call(
        &app,
        Method::GET,
        &format!("/cases/{third}/decisions"),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let versions: Vec<(i64, bool, &str)> = a
        .body
        .as_array()
        .expect("versions")
        .iter()
        .map(|d| {
            (
                d["version"].as_i64().unwrap_or(0),
                d["current"].as_bool().unwrap_or(false),
                d["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        versions,
        vec![
            (1, false, "routed"),
            (2, false, "closed"),
            (3, true, "follow_up")
        ]
    );
    // Texts by audience, as for notes; by reference too.
    let texts = |a: &crate::helpers::Answer| a.text.clone();
    let psy = call(
        &app,
        Method::GET,
        &format!("/cases/{care_ref}/decisions"),
        PSY,
        None,
    )
    .await;
    assert_eq!(psy.status, 200, "{}", psy.text);
    assert!(texts(&psy).contains("PSYCANARY"));
    let city = call(
        &app,
        Method::GET,
        &format!("/cases/{care}/decisions"),
        CITY,
        None,
    )
    .await;
    assert_eq!(city.status, 200, "{}", city.text);
    assert!(!texts(&city).contains("PSYCANARY"), "{}", city.text);
    assert_eq!(city.body[0]["actions"][0]["owner"], "CMP 66G03");
    let all = call(
        &app,
        Method::GET,
        &format!("/sessions/{sid}/decisions"),
        CITY,
        None,
    )
    .await;
    assert!(
        all.text.contains("CITYCANARY") && all.text.contains("SHAREDCANARY"),
        "{}",
        all.text
    );
    assert!(!all.text.contains("PSYCANARY"), "{}", all.text);
    // The guest sees the decisions of its invited items only (care access in 66G03, where the
    // rule invites the EMPP), never the housing item's.
    let guest = call(
        &app,
        Method::GET,
        &format!("/sessions/{sid}/decisions"),
        GUEST,
        None,
    )
    .await;
    let mut cases: Vec<&str> = guest
        .body
        .as_array()
        .expect("decisions")
        .iter()
        .filter_map(|d| d["case_id"].as_str())
        .collect();
    cases.dedup();
    assert!(
        !cases.contains(&housing.as_str()) && cases.contains(&care.as_str()),
        "{}",
        guest.text
    );
    assert!(!guest.text.contains("CITYCANARY"), "{}", guest.text);
    // Like the case itself: not visible to a referrer or an auditor.
    call(
        &app,
        Method::GET,
        &format!("/cases/{care}/decisions"),
        REF1,
        None,
    )
    .await
    .assert_problem(404);
    call(
        &app,
        Method::GET,
        &format!("/cases/{care}/decisions"),
        AUDITOR,
        None,
    )
    .await
    .assert_problem(404);

    // Closed: decisions can still be corrected until the minutes are approved.
    let a = call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/close"),
        COORD,
        None,
    )
    .await;
    assert_eq!(status(&a), "held", "{}", a.text);
    let a = call(
        &app,
        Method::PUT,
        &decision_path(&sid, &housing),
        COORD,
        Some(json!({
        "outcome": "routed", "interlocutor": "ccas", "follow_up_date": "2031-02-01",
        "actions": [{"what": "Visite à domicile", "owner": "CCAS Perpignan", "due": "2031-01-05"}],
        "text": CITY_TEXT, "text_audience": "city"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    // Minutes: the coordinator's draft; the others wait for the approval.
    let a = call(
        &app,
        Method::GET,
        &format!("/sessions/{sid}/minutes"),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["state"], "draft");
    call(
        &app,
        Method::GET,
        &format!("/sessions/{sid}/minutes"),
        CITY,
        None,
    )
    .await
    .assert_problem(409);
    let a = call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/minutes/approve"),
        COORD,
        None,
    )
    .await;
    assert_eq!(status(&a), "minutes_approved", "{}", a.text);

    // Approved: frozen.
    call(
        &app,
        Method::PUT,
        &decision_path(&sid, &housing),
        COORD,
        Some(early.clone()),
    )
    .await
    .assert_problem(409);
    call(
        &app,
        Method::PUT,
        &format!("/sessions/{sid}/attendance"),
        COORD,
        Some(json!({"entries": []})),
    )
    .await
    .assert_problem(409);
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/minutes/approve"),
        COORD,
        None,
    )
    .await
    .assert_problem(409);

    // Each step is in the audit log.
    let log = call(&app, Method::GET, "/audit?limit=500", AUDITOR, None).await;
    for action in [
        "open_meeting",
        "record_attendance",
        "correct_decision",
        "close_meeting",
        "approve_minutes",
        "read_decisions",
        "read_minutes",
    ] {
        assert!(
            log.text.contains(&format!("\"{action}\"")),
            "{action}: {}",
            log.text
        );
    }
}

async fn the_minutes_show_each_reader_what_they_may_see(backend: Backend) {
    let app = spawn_app(backend).await;
    let (sid, (care, care_ref), (housing, housing_ref), (third, third_ref)) = published(&app).await;
    open_meeting(&app, &sid).await;
    let a = call(
        &app,
        Method::PUT,
        &format!("/sessions/{sid}/attendance"),
        COORD,
        Some(json!({"entries": [
        {"participant": PSY, "status": "present"}, {"participant": CITY, "status": "present"},
        {"organisation": "EMPP", "status": "excused"}]})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    for (who, case, body) in [
        (
            COORD_PSY,
            &care,
            json!({"outcome": "routed", "interlocutor": "cmp-66g03", "follow_up_date": "2031-02-01",
            "actions": [{"what": "Proposer un rendez-vous infirmier", "owner": "cmp-66g03", "due": "2030-12-20"}],
            "text": PSY_TEXT, "text_audience": "psychiatry"}),
        ),
        (
            COORD,
            &housing,
            json!({"outcome": "routed", "interlocutor": "ccas", "follow_up_date": "2031-02-01",
            "actions": [{"what": "Visite à domicile", "owner": "CCAS Perpignan", "due": "2031-01-10"}],
            "text": CITY_TEXT, "text_audience": "city"}),
        ),
    ] {
        let a = call(
            &app,
            Method::POST,
            &decision_path(&sid, case),
            who,
            Some(body),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    let a = call(
        &app,
        Method::POST,
        &decision_path(&sid, &third),
        COORD,
        Some(json!({
        "outcome": "follow_up", "follow_up_date": "2031-03-01", "text": "Première version."})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let a = call(
        &app,
        Method::PUT,
        &decision_path(&sid, &third),
        COORD,
        Some(json!({
        "outcome": "follow_up", "follow_up_date": "2031-03-01", "text": SHARED_TEXT})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    for step in ["close", "minutes/approve"] {
        let a = call(
            &app,
            Method::POST,
            &format!("/sessions/{sid}/{step}"),
            COORD,
            None,
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }

    // JSON, per reader.
    let minutes = |sub: &'static str| {
        let app = &app;
        let path = format!("/sessions/{sid}/minutes");
        async move { call(app, Method::GET, &path, sub, None).await }
    };
    let refs = |m: &crate::helpers::Answer| -> Vec<String> {
        m.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|i| i["reference"].as_str().map(str::to_owned))
            .collect()
    };
    let coord = minutes(COORD).await;
    assert_eq!(coord.status, 200, "{}", coord.text);
    assert_eq!(coord.body["state"], "approved");
    assert_eq!(coord.body["approved_by"], COORD);
    assert_eq!(refs(&coord).len(), 3);
    assert!(coord.text.contains("CITYCANARY") && coord.text.contains("SHAREDCANARY"));
    assert!(
        !coord.text.contains("PSYCANARY"),
        "a city coordinator reads no psychiatry text"
    );
    assert!(
        !coord.text.contains("Première version"),
        "only the current version"
    );
    assert_eq!(coord.body["attendance"].as_array().map(Vec::len), Some(3));
    let city = minutes(CITY).await;
    assert_eq!(city.status, 200, "{}", city.text);
    assert_eq!(refs(&city).len(), 3);
    assert!(city.text.contains("CITYCANARY") && city.text.contains("SHAREDCANARY"));
    assert!(!city.text.contains("PSYCANARY"), "{}", city.text);
    let psy = minutes(PSY).await;
    assert!(psy.text.contains("PSYCANARY") && psy.text.contains("SHAREDCANARY"));
    assert!(!psy.text.contains("CITYCANARY"), "{}", psy.text);
    // The guest: its invited items (care access in 66G03), not the housing one.
    let guest = minutes(GUEST).await;
    assert_eq!(
        refs(&guest),
        vec![care_ref.clone(), third_ref.clone()],
        "{}",
        guest.text
    );
    assert!(!guest.text.contains("CITYCANARY") && !guest.text.contains(&housing_ref));
    minutes(REF1).await.assert_problem(403);
    minutes(AUDITOR).await.assert_problem(403);

    // HTML: printable, escaped, the same filter.
    let (status, ct, html) =
        fetch(&app, &format!("/sessions/{sid}/minutes"), CITY, "text/html").await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/html"), "{ct}");
    let html = String::from_utf8(html).expect("utf-8");
    assert!(
        html.contains("Compte rendu") && html.contains(&housing_ref) && html.contains("CITYCANARY")
    );
    assert!(!html.contains("PSYCANARY"));
    assert!(html.contains("@media print"), "a print stylesheet");

    // PDF: its text, read back by an independent tool, holds the items and texts of the reader's
    // audiences and nothing of the others.
    let (status, ct, pdf) = fetch(
        &app,
        &format!("/sessions/{sid}/minutes"),
        CITY,
        "application/pdf",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/pdf");
    assert!(pdf.starts_with(b"%PDF-"));
    let text = pdf_text(&pdf);
    for expected in [
        care_ref.as_str(),
        housing_ref.as_str(),
        third_ref.as_str(),
        "Compte rendu",
        "CITYCANARY",
        "SHAREDCANARY",
        "CCAS Perpignan",
        "Visite à domicile",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(!text.contains("PSYCANARY"), "{text}");
    let (_, _, pdf) = fetch(
        &app,
        &format!("/sessions/{sid}/minutes"),
        PSY,
        "application/pdf",
    )
    .await;
    let text = pdf_text(&pdf);
    assert!(
        text.contains("PSYCANARY") && !text.contains("CITYCANARY"),
        "{text}"
    );
    let (status, _, _) = fetch(&app, &format!("/sessions/{sid}/minutes"), CITY, "image/png").await;
    assert_eq!(status, 406);
}

async fn follow_ups_list_what_each_organisation_owns(backend: Backend) {
    let app = spawn_app(backend).await;
    let (sid, (care, _), (housing, housing_ref), _) = published(&app).await;
    open_meeting(&app, &sid).await;
    for (who, case, body) in [
        (
            COORD_PSY,
            &care,
            json!({"outcome": "routed", "interlocutor": "cmp-66g03", "follow_up_date": "2031-02-01",
            "actions": [{"what": "Proposer un rendez-vous infirmier", "owner": "cmp-66g03", "due": "2030-12-20"}]}),
        ),
        (
            COORD,
            &housing,
            json!({"outcome": "routed", "interlocutor": "ccas", "follow_up_date": "2030-12-28",
            "actions": [{"what": "Visite à domicile", "owner": "CCAS Perpignan", "due": "2030-12-15"},
                        {"what": "Point avec le bailleur", "owner": "cmp-66g03", "due": "2030-12-30"}]}),
        ),
    ] {
        let a = call(
            &app,
            Method::POST,
            &decision_path(&sid, case),
            who,
            Some(body),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    let list = |sub: &'static str, query: &'static str| {
        let app = &app;
        async move { call(app, Method::GET, &format!("/follow-ups{query}"), sub, None).await }
    };
    let coord = list(COORD, "").await;
    assert_eq!(coord.status, 200, "{}", coord.text);
    let rows: Vec<(String, String, String)> = coord
        .body
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or("").into(),
                r["owner"].as_str().unwrap_or("").into(),
                r["due"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "action".into(),
                "CCAS Perpignan".into(),
                "2030-12-15".into()
            ),
            ("action".into(), "CMP 66G03".into(), "2030-12-20".into()),
            (
                "follow_up".into(),
                "CCAS Perpignan".into(),
                "2030-12-28".into()
            ),
            ("action".into(), "CMP 66G03".into(), "2030-12-30".into()),
        ],
        "{}",
        coord.text
    );
    assert!(coord.text.contains("Visite à domicile"));
    // The coordinator narrows to one organisation, or to what falls due by a day.
    let one = list(COORD, "?organisation=CMP%2066G03").await;
    let owners: Vec<&str> = one
        .body
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["owner"].as_str())
        .collect();
    assert_eq!(owners, vec!["CMP 66G03", "CMP 66G03"], "{}", one.text);
    let soon = list(COORD, "?until=2030-12-20").await;
    assert_eq!(soon.body.as_array().map(Vec::len), Some(2), "{}", soon.text);
    list(COORD, "?until=demain").await.assert_problem(422);
    // A member sees what its organisation owns, never another's.
    let city = list(CITY, "").await;
    let owners: Vec<&str> = city
        .body
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["owner"].as_str())
        .collect();
    assert_eq!(
        owners,
        vec!["CCAS Perpignan", "CCAS Perpignan"],
        "{}",
        city.text
    );
    list(CITY, "?organisation=CMP%2066G03")
        .await
        .assert_problem(403);
    let psy = list(PSY, "").await;
    assert_eq!(psy.body.as_array().map(Vec::len), Some(2), "{}", psy.text);
    assert!(
        psy.text.contains(&housing_ref),
        "an action on a case routed elsewhere"
    );
    list(REF1, "").await.assert_problem(403);
    list(AUDITOR, "").await.assert_problem(403);
    // Overdue once the due date has passed.
    app.travel_to("2030-12-17T09:00:00Z".parse().expect("date"));
    let coord = list(COORD, "").await;
    let overdue: Vec<bool> = coord
        .body
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["overdue"] == true)
        .collect();
    assert_eq!(overdue, vec![true, false, false, false], "{}", coord.text);
}

backend_tests!(
    the_meeting_opens_on_its_day_and_takes_decisions_until_approval,
    the_minutes_show_each_reader_what_they_may_see,
    follow_ups_list_what_each_organisation_owns,
);
