//! The monthly review over HTTP on both backends: schedule and idempotent planning (with a
//! holiday move and DST offsets), agenda building (capacity, urgency, deferrals counted once,
//! follow-ups due), routing proposals with their rule and uncovered cases, publication (member
//! and guest access), cancellation releasing items, decisions moving cases, the calendar parsed
//! by an independent iCalendar parser without case content, and suppressed statistics.

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use std::sync::Arc;

use cellule::clock::ManualClock;

use crate::helpers::{
    AUDITOR, Backend, CITY, COORD, GUEST, Options, PSY, REF1, TestApp, referral, spawn_app,
    spawn_app_with,
};

const CANARY: &str = "SITUATIONCANARY";

/// A request to the `perpignan` cellule's API as `sub`.
pub(crate) async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    sub: &str,
    body: Option<Value>,
) -> crate::helpers::Answer {
    app.request(
        method,
        &format!("/v1/cellules/perpignan{path}"),
        Some(&app.token(sub)),
        body,
    )
    .await
}

fn schedule() -> Value {
    json!({"rrule": "FREQ=MONTHLY;BYDAY=+2TH", "start_time": "14:00", "time_zone": "Europe/Paris",
        "duration_minutes": 120, "minutes_per_new_case": 20, "minutes_per_follow_up": 10,
        "location": "Mairie, salle du conseil", "on_holiday": "next_week"})
}

/// A directory: CMP 66G03 leads care access in its sector with the EMPP (guest) invited;
/// housing goes to the CCAS; nothing covers `addiction` alone.
fn directory() -> (Value, Value) {
    (
        json!({"interlocutors": [
            {"id": "cmp-66g03", "name": "CMP 66G03", "sphere": "psychiatry", "kind": "cmp", "sectors": ["66G03"], "needs": ["care_access"], "contact": "accueil CMP : 04 00 00 00 01"},
            {"id": "empp", "name": "EMPP", "sphere": "psychiatry", "kind": "mobile_team", "guest": true},
            {"id": "ccas", "name": "CCAS Perpignan", "sphere": "city", "kind": "ccas", "communes": ["66136"]}
        ]}),
        json!({"rules": [
            {"id": "soins-66g03", "needs": ["care_access"], "sectors": ["66G03"], "lead": "cmp-66g03", "others": ["empp"]},
            {"id": "logement", "needs": ["housing"], "communes": ["66136"], "lead": "ccas"}
        ]}),
    )
}

pub(crate) async fn setup(app: &TestApp) {
    app.standard_cellule().await;
    let a = call(app, Method::PUT, "/schedule", COORD, Some(schedule())).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let (interlocutors, rules) = directory();
    let a = call(
        app,
        Method::PUT,
        "/interlocutors",
        COORD,
        Some(interlocutors),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = call(app, Method::PUT, "/routing", COORD, Some(rules)).await;
    assert_eq!(a.status, 200, "{}", a.text);
}

/// Refers and accepts a case; returns (id, reference).
pub(crate) async fn accepted(
    app: &TestApp,
    urgency: &str,
    needs: Value,
    sector: &str,
) -> (String, String) {
    let mut body = referral(&format!("Situation {CANARY} suivie."));
    body["urgency"] = json!(urgency);
    body["needs"] = needs;
    body["sector"] = json!(sector);
    let a = app.refer(REF1, &body).await;
    assert_eq!(a.status, 201, "{}", a.text);
    let id = a.body["id"].as_str().expect("id").to_owned();
    let reference = a.body["reference"].as_str().expect("reference").to_owned();
    app.move_case(&id, json!({"to": "accepted"})).await;
    (id, reference)
}

pub(crate) async fn ad_hoc(app: &TestApp, at: &str) -> String {
    let a = call(
        app,
        Method::POST,
        "/sessions",
        COORD,
        Some(json!({"starts_at": at})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
    a.body["id"].as_str().expect("id").to_owned()
}

/// Opens the meeting of `sid` on its day: the clock (the default travel clock, or `clock`)
/// moves to the session's start first when it is earlier.
pub(crate) async fn open_meeting(app: &TestApp, sid: &str) {
    let a = call(app, Method::GET, "/sessions", COORD, None).await;
    let starts_at = a
        .body
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["id"] == sid)
        .and_then(|s| s["starts_at"].as_str())
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .expect("starts_at")
                .with_timezone(&chrono::Utc)
        })
        .expect("the session is listed");
    if app.state.clock.now() < starts_at && app.travel.is_some() {
        app.travel_to(starts_at);
    }
    let a = call(
        app,
        Method::POST,
        &format!("/sessions/{sid}/open"),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["status"], "in_session");
}

/// A decision before the meeting is opened is refused (409), and says how to open it.
async fn decide_early(app: &TestApp, sid: &str, case: &str) {
    let a = call(
        app,
        Method::POST,
        &format!("/sessions/{sid}/items/{case}/decision"),
        COORD,
        Some(json!({"outcome": "deferred"})),
    )
    .await;
    a.assert_problem(409);
    assert!(a.text.contains("not open"), "{}", a.text);
}

/// The case ids of an agenda's list `list` (`items` or `deferred`), in its order.
fn case_ids(agenda: &Value, list: &str) -> Vec<String> {
    agenda[list]
        .as_array()
        .expect(list)
        .iter()
        .filter_map(|e| e["case_id"].as_str().map(str::to_owned))
        .collect()
}

fn item_ids(agenda: &Value) -> Vec<String> {
    case_ids(agenda, "items")
}

fn deferred_ids(agenda: &Value) -> Vec<String> {
    case_ids(agenda, "deferred")
}

async fn schedule_and_idempotent_planning(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    // No schedule yet.
    call(&app, Method::GET, "/schedule", PSY, None)
        .await
        .assert_problem(404);
    call(
        &app,
        Method::POST,
        "/sessions/plan",
        COORD,
        Some(json!({"months": 3})),
    )
    .await
    .assert_problem(409);
    // Bad schedules.
    for (field, value) in [
        ("rrule", json!("FREQ=HOURLY")),
        ("rrule", json!("EVERY OTHER THURSDAY")),
        // Multibyte characters across byte 6, where a prefix is looked for (issue 39: these
        // closed the connection): refused with 422.
        ("rrule", json!("abcdeé")),
        ("rrule", json!("0\u{80}\u{80}\u{80}")),
        ("rrule", json!("RRULEé")),
        ("rrule", json!("éééé")),
        ("start_time", json!("25:00")),
        ("time_zone", json!("Europe/Atlantis")),
        ("duration_minutes", json!(5)),
    ] {
        let mut body = schedule();
        body[field] = value;
        let a = call(&app, Method::PUT, "/schedule", COORD, Some(body)).await;
        a.assert_problem(422);
        assert!(a.text.contains(&format!("/{field}")), "{field}: {}", a.text);
    }
    let a = call(&app, Method::PUT, "/schedule", COORD, Some(schedule())).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(
        a.body["starts_on"].is_string(),
        "starts_on filled in: {}",
        a.text
    );
    let a = call(&app, Method::GET, "/schedule", PSY, None).await;
    assert_eq!(a.body["rrule"], "FREQ=MONTHLY;BYDAY=+2TH");

    // Twelve months: second Thursdays at 14:00 Paris, the one on a holiday moved a week.
    let a = call(
        &app,
        Method::POST,
        "/sessions/plan",
        COORD,
        Some(json!({"months": 12})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let created = a.body["created"].as_array().expect("created").len();
    assert!((11..=13).contains(&created), "{created}");
    for s in a.body["sessions"].as_array().expect("sessions") {
        let start = chrono::DateTime::parse_from_rfc3339(s["starts_at"].as_str().expect("start"))
            .expect("RFC 3339");
        assert_eq!(start.format("%H:%M").to_string(), "14:00");
        use chrono::Datelike;
        let expected_offset = if (4..=10).contains(&start.month()) {
            7200
        } else {
            3600
        };
        assert_eq!(start.offset().local_minus_utc(), expected_offset, "{start}");
        assert_eq!(start.weekday(), chrono::Weekday::Thu);
        if s["holiday"].is_null() {
            assert!((8..=14).contains(&start.day()), "{start}");
        } else {
            assert!((15..=21).contains(&start.day()), "{start}");
        }
    }
    // Planning again creates nothing new.
    let again = call(
        &app,
        Method::POST,
        "/sessions/plan",
        COORD,
        Some(json!({"months": 12})),
    )
    .await;
    assert_eq!(again.body["created"].as_array().map(Vec::len), Some(0));
    assert_eq!(again.body["sessions"], a.body["sessions"]);
    let listed = call(&app, Method::GET, "/sessions", CITY, None).await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(created));
    for months in [0, 37] {
        call(
            &app,
            Method::POST,
            "/sessions/plan",
            COORD,
            Some(json!({"months": months})),
        )
        .await
        .assert_problem(422);
    }
    // Ad-hoc sessions: in the future only.
    call(
        &app,
        Method::POST,
        "/sessions",
        COORD,
        Some(json!({"starts_at": "2020-01-01T14:00:00+01:00"})),
    )
    .await
    .assert_problem(422);
    ad_hoc(&app, "2031-01-09T10:00:00+01:00").await;
}

async fn the_agenda_fills_capacity_by_urgency_and_counts_deferrals_once(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    // Eight new cases: 2 urgent, 2 priority, 4 routine; 120 min / 20 min = 6 items.
    let mut urgent = Vec::new();
    let mut routine = Vec::new();
    for u in [
        "routine", "urgent", "routine", "priority", "routine", "urgent", "priority", "routine",
    ] {
        let (id, _) = accepted(&app, u, json!(["care_access"]), "66G03").await;
        if u == "urgent" {
            urgent.push(id.clone());
        }
        if u == "routine" {
            routine.push(id);
        }
    }
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    let a = call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/build"),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let items = item_ids(&a.body);
    assert_eq!(items.len(), 6);
    assert!(a.body["minutes_used"].as_i64() <= a.body["capacity_minutes"].as_i64());
    assert_eq!(a.body["over_capacity"], false);
    assert_eq!(
        items[..2].iter().collect::<std::collections::HashSet<_>>(),
        urgent.iter().collect()
    );
    let deferred = deferred_ids(&a.body);
    assert_eq!(deferred.len(), 2);
    // The two newest routine cases wait.
    assert_eq!(
        deferred
            .iter()
            .map(String::as_str)
            .collect::<std::collections::HashSet<_>>(),
        routine[2..].iter().map(String::as_str).collect()
    );
    // Slots follow one another from 14:00.
    let slots: Vec<&str> = a.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["starts_at"].as_str())
        .collect();
    assert_eq!(slots[0], "2030-12-12T14:00:00+01:00");
    assert_eq!(slots[1], "2030-12-12T14:20:00+01:00");
    // Every item carries its proposal and the rule that produced it.
    for i in a.body["items"].as_array().expect("items") {
        assert_eq!(i["proposal"]["status"], "routed");
        assert_eq!(i["proposal"]["rule"], "soins-66g03");
        assert_eq!(i["proposal"]["lead_name"], "CMP 66G03");
    }
    // Rebuilding counts nothing twice.
    let again = call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/build"),
        COORD,
        None,
    )
    .await;
    assert_eq!(item_ids(&again.body), items);
    for d in again.body["deferred"].as_array().expect("deferred") {
        assert_eq!(d["times_deferred"], 1, "{d}");
    }
    // A draft's deferrals show the count they will have; publication counts them.
    for id in &deferred {
        assert_eq!(
            times_deferred(&app, id).await,
            0,
            "not counted before publication"
        );
    }
    // Next session: a case deferred once goes before newer routine cases.
    let (newer, _) = accepted(&app, "routine", json!(["care_access"]), "66G03").await;
    let published = publish(&app, &sid).await;
    for d in published["deferred"].as_array().expect("deferred") {
        assert_eq!(d["times_deferred"], 1, "{d}");
    }
    for id in &deferred {
        assert_eq!(times_deferred(&app, id).await, 1, "counted by publication");
    }
    let next = ad_hoc(&app, "2031-01-09T14:00:00+01:00").await;
    let b = call(
        &app,
        Method::POST,
        &format!("/sessions/{next}/agenda/build"),
        COORD,
        None,
    )
    .await;
    assert_eq!(b.status, 200, "{}", b.text);
    let next_items = item_ids(&b.body);
    let first_two: std::collections::HashSet<&str> =
        next_items[..2].iter().map(String::as_str).collect();
    assert_eq!(first_two, deferred.iter().map(String::as_str).collect());
    assert!(next_items.contains(&newer));
    // Items of the first session are not taken again while it is pending.
    assert!(next_items.iter().all(|i| !items.contains(i)));
}

async fn follow_ups_uncovered_cases_and_edits(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    // A follow-up due before the session, one due after.
    let (due, _) = accepted(&app, "routine", json!(["housing"]), "66G01").await;
    let (later, _) = accepted(&app, "routine", json!(["housing"]), "66G01").await;
    for (id, date) in [(&due, "2030-12-01"), (&later, "2031-06-01")] {
        app.move_case(id, json!({"to": "scheduled"})).await;
        app.move_case(
            id,
            json!({"to": "in_follow_up", "follow_up_date": date, "routed_org": "CCAS Perpignan"}),
        )
        .await;
    }
    // Nobody covers addiction alone.
    let (lonely, lonely_ref) = accepted(&app, "priority", json!(["addiction"]), "66G01").await;
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    let a = call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/build"),
        COORD,
        None,
    )
    .await;
    let items = item_ids(&a.body);
    assert!(items.contains(&due));
    assert!(!items.contains(&later));
    let follow = a.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["case_id"] == due.as_str())
        .expect("follow-up");
    assert_eq!(follow["kind"], "follow_up");
    assert_eq!(follow["minutes"], 10);
    assert_eq!(follow["proposal"]["rule"], "logement");
    let uncovered = a.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["case_id"] == lonely.as_str())
        .expect("uncovered item");
    assert_eq!(uncovered["proposal"]["status"], "uncovered");
    assert!(
        uncovered["proposal"]["explanation"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    assert_eq!(a.body["uncovered"], json!([lonely_ref]));
    // The coordinator reorders and removes.
    let a = call(
        &app,
        Method::PUT,
        &format!("/sessions/{sid}/agenda"),
        COORD,
        Some(json!({"items": [lonely, due]})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(item_ids(&a.body), vec![lonely.clone(), due.clone()]);
    // Bad edits.
    for body in [
        json!({"items": [lonely, lonely]}),
        json!({"items": [uuid::Uuid::new_v4().to_string()]}),
    ] {
        call(
            &app,
            Method::PUT,
            &format!("/sessions/{sid}/agenda"),
            COORD,
            Some(body),
        )
        .await
        .assert_problem(422);
    }
    // Members cannot build or edit.
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/build"),
        PSY,
        None,
    )
    .await
    .assert_problem(403);
}

async fn publication_opens_access_and_guests_see_only_their_items(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    let (care, _) = accepted(&app, "priority", json!(["care_access"]), "66G03").await;
    let (housing, _) = accepted(&app, "priority", json!(["housing"]), "66G01").await;
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/build"),
        COORD,
        None,
    )
    .await;
    // Before publication the city member sees no item and no case.
    let a = agenda_as(&app, &sid, CITY).await;
    assert_eq!(item_ids(&a.body).len(), 0, "{}", a.text);
    call(&app, Method::GET, &format!("/cases/{housing}"), CITY, None)
        .await
        .assert_problem(404);
    // Decisions wait for publication.
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/items/{care}/decision"),
        COORD,
        Some(json!({"outcome": "follow_up", "follow_up_date": "2031-03-01"})),
    )
    .await
    .assert_problem(409);
    let a = call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/publish"),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["published"], true);
    for i in a.body["items"].as_array().expect("items") {
        assert_eq!(i["status"], "scheduled");
    }
    // Published: permanent members see every item; the guest only the one routed to it.
    for sub in [CITY, PSY] {
        let a = agenda_as(&app, &sid, sub).await;
        let mut got = item_ids(&a.body);
        got.sort();
        let mut want = vec![care.clone(), housing.clone()];
        want.sort();
        assert_eq!(got, want, "{sub}");
        assert_eq!(
            call(&app, Method::GET, &format!("/cases/{housing}"), sub, None)
                .await
                .status,
            200
        );
    }
    let a = agenda_as(&app, &sid, GUEST).await;
    assert_eq!(item_ids(&a.body), vec![care.clone()]);
    // Its audit entry names the session and only the case the guest saw.
    let log = call(
        &app,
        Method::GET,
        &format!("/audit?action=read_agenda&actor={GUEST}"),
        AUDITOR,
        None,
    )
    .await;
    assert_eq!(log.status, 200, "{}", log.text);
    let read = &log.body["items"][0];
    assert_eq!(read["target_id"], sid.as_str());
    let seen: Vec<&str> = read["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter_map(|c| c["case_id"].as_str())
        .collect();
    assert_eq!(seen, vec![care.as_str()]);
    assert_eq!(
        call(&app, Method::GET, &format!("/cases/{care}"), GUEST, None)
            .await
            .status,
        200
    );
    call(&app, Method::GET, &format!("/cases/{housing}"), GUEST, None)
        .await
        .assert_problem(404);
    let list = call(&app, Method::GET, "/cases", GUEST, None).await;
    let listed: Vec<&str> = list.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(listed, vec![care.as_str()]);
    // A published agenda no longer changes.
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/build"),
        COORD,
        None,
    )
    .await
    .assert_problem(409);
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/publish"),
        COORD,
        None,
    )
    .await
    .assert_problem(409);
    // The auditor never sees the agenda.
    agenda_as(&app, &sid, AUDITOR).await.assert_problem(403);
}

async fn cancelling_a_session_releases_its_items(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    let (id, _) = accepted(&app, "urgent", json!(["care_access"]), "66G03").await;
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/build"),
        COORD,
        None,
    )
    .await;
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/publish"),
        COORD,
        None,
    )
    .await;
    let a = call(&app, Method::GET, &format!("/cases/{id}"), COORD, None).await;
    assert_eq!(a.body["status"], "scheduled");
    let a = call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/cancel"),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["status"], "cancelled");
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/cancel"),
        COORD,
        None,
    )
    .await
    .assert_problem(409);
    let a = call(&app, Method::GET, &format!("/cases/{id}"), COORD, None).await;
    assert_eq!(a.body["status"], "accepted");
    // Access opened by the publication is gone with it.
    call(&app, Method::GET, &format!("/cases/{id}"), CITY, None)
        .await
        .assert_problem(404);
    // The case goes on the next session.
    let next = ad_hoc(&app, "2031-01-09T14:00:00+01:00").await;
    let b = call(
        &app,
        Method::POST,
        &format!("/sessions/{next}/agenda/build"),
        COORD,
        None,
    )
    .await;
    assert_eq!(item_ids(&b.body), vec![id]);
}

async fn decisions_move_cases_and_feed_the_referrer(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    let (routed, _) = accepted(&app, "urgent", json!(["care_access"]), "66G03").await;
    let (closed, _) = accepted(&app, "priority", json!(["care_access"]), "66G03").await;
    let (deferred, _) = accepted(&app, "routine", json!(["care_access"]), "66G03").await;
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/build"),
        COORD,
        None,
    )
    .await;
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/publish"),
        COORD,
        None,
    )
    .await;
    // Decisions wait for the meeting's opening, on its day.
    decide_early(&app, &sid, &routed).await;
    open_meeting(&app, &sid).await;
    let decide = |case: &str, body: Value| {
        let path = format!("/sessions/{sid}/items/{case}/decision");
        let app = &app;
        async move { call(app, Method::POST, &path, COORD, Some(body)).await }
    };
    // Invalid decisions.
    decide(
        &routed,
        json!({"outcome": "routed", "interlocutor": "cmp-66g03"}),
    )
    .await
    .assert_problem(422);
    decide(&closed, json!({"outcome": "closed"}))
        .await
        .assert_problem(422);
    // An interlocutor outside the directory and the cellule's organisations (a typo, another
    // département's CMP) is refused, whatever its spelling, and the item stays undecided.
    for unknown in ["mdss", "cmp-66g99", "CMP 66G99"] {
        let a = decide(
            &routed,
            json!({"outcome": "routed", "interlocutor": unknown, "follow_up_date": "2031-03-01"}),
        )
        .await;
        a.assert_problem(422);
        assert!(a.text.contains("/interlocutor"), "{}", a.text);
    }
    decide(
        &routed,
        json!({"outcome": "routed", "interlocutor": "cmp-66g03", "follow_up_date": "2031-03-01",
        "text": "Joindre le 06 12 34 56 78."}),
    )
    .await
    .assert_problem(422);
    // Only the coordinator decides.
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/items/{routed}/decision"),
        PSY,
        Some(json!({"outcome": "deferred"})),
    )
    .await
    .assert_problem(403);
    // The message for the referrer is scanned for identifiers like every text.
    decide(
        &routed,
        json!({"outcome": "routed", "interlocutor": "cmp-66g03", "follow_up_date": "2031-03-01",
        "referrer_message": "Appeler Mme Durand au 06 12 34 56 78."}),
    )
    .await
    .assert_problem(422);
    let a = decide(&routed, json!({"outcome": "routed", "interlocutor": "cmp-66g03", "follow_up_date": "2031-03-01",
        "actions": [{"what": "Proposer un rendez-vous", "owner": "cmp-66g03", "due": "2031-01-15"}, {"what": "Point logement", "owner": "CCAS Perpignan", "due": "2031-02-01"}], "text": "Orientation vers le CMP.",
        "referrer_message": "Le CMP prendra contact avec la personne."})).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.body["status"], "in_follow_up");
    assert_eq!(a.body["interlocutor"], "CMP 66G03");
    decide(&routed, json!({"outcome": "deferred"}))
        .await
        .assert_problem(409);
    let a = decide(
        &closed,
        json!({"outcome": "closed", "text": "Situation résolue par le bailleur."}),
    )
    .await;
    assert_eq!(a.body["status"], "closed");
    let a = decide(&deferred, json!({"outcome": "deferred"})).await;
    assert_eq!(a.body["status"], "accepted");
    // The case views and the referrer's status view follow.
    let a = call(&app, Method::GET, &format!("/cases/{routed}"), COORD, None).await;
    assert_eq!(a.body["routed_org"], "CMP 66G03");
    assert_eq!(a.body["follow_up_date"], "2031-03-01");
    let a = call(
        &app,
        Method::GET,
        &format!("/cases/{deferred}"),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.body["times_deferred"], 1);
    let a = call(&app, Method::GET, &format!("/cases/{closed}"), COORD, None).await;
    assert_eq!(
        a.body["history"]
            .as_array()
            .and_then(|h| h.last())
            .map(|e| e["reason"].clone()),
        Some(json!("Situation résolue par le bailleur."))
    );
    let mine = app
        .get("/v1/cellules/perpignan/referrals", Some(&app.token(REF1)))
        .await;
    let status_of = |id: &str| {
        mine.body
            .as_array()
            .expect("list")
            .iter()
            .find(|r| r["id"] == id)
            .map(|r| (r["status"].clone(), r["routed_to"].clone()))
    };
    assert_eq!(
        status_of(&routed),
        Some((json!("in_follow_up"), json!("CMP 66G03")))
    );
    assert_eq!(status_of(&closed).map(|s| s.0), Some(json!("closed")));
    // The referrer's view says when the case was reviewed, whom to contact (the directory's
    // professional contact of the routed organisation) and the coordinator's message for them,
    // never the decision's internal text; a deferral is not a review.
    let view = |id: &str| {
        mine.body
            .as_array()
            .expect("list")
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .expect("a referral of REF1")
    };
    let r = view(&routed);
    assert_eq!(r["reviewed_on"], "2030-12-12");
    assert_eq!(r["contact"], "accueil CMP : 04 00 00 00 01");
    assert_eq!(r["message"], "Le CMP prendra contact avec la personne.");
    assert!(
        !mine.text.contains("Orientation vers le CMP"),
        "{}",
        mine.text
    );
    assert!(
        !mine.text.contains("Situation résolue par le bailleur"),
        "{}",
        mine.text
    );
    let r = view(&closed);
    assert_eq!(r["reviewed_on"], "2030-12-12");
    assert_eq!(r["contact"], Value::Null);
    assert_eq!(r["message"], Value::Null);
    assert_eq!(view(&deferred)["reviewed_on"], Value::Null);
    // The routed member organisation now sees its case.
    assert_eq!(
        call(&app, Method::GET, &format!("/cases/{routed}"), PSY, None)
            .await
            .status,
        200
    );
    // The agenda shows the decisions.
    let a = agenda_as(&app, &sid, COORD).await;
    let decided: Vec<&str> = a.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["decision"].as_str())
        .collect();
    assert_eq!(decided.len(), 3);
}

async fn the_calendar_is_valid_icalendar_without_content(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    let (_, reference) = accepted(&app, "urgent", json!(["care_access"]), "66G03").await;
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/build"),
        COORD,
        None,
    )
    .await;
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/publish"),
        COORD,
        None,
    )
    .await;
    for sub in [COORD, CITY] {
        let a = call(
            &app,
            Method::GET,
            &format!("/sessions/{sid}/calendar.ics"),
            sub,
            None,
        )
        .await;
        assert_eq!(a.status, 200);
        assert!(a.content_type().starts_with("text/calendar"));
        assert!(!a.text.contains(CANARY), "no case content in a calendar");
        assert!(!a.text.contains("orientation vers le CMP"));
        let parsed: icalendar::Calendar = a.text.parse().expect("parses as iCalendar");
        use icalendar::Component;
        let event = parsed
            .components
            .iter()
            .find_map(|c| c.as_event())
            .expect("one event");
        assert!(
            event
                .get_description()
                .is_some_and(|d| d.contains(&reference))
        );
        assert!(
            a.text.contains("DTSTART;TZID=Europe/Paris:20301212T140000"),
            "{}",
            a.text
        );
        assert!(a.text.contains("BEGIN:VTIMEZONE"));
    }
    // The guest is invited to the item (EMPP in the rule): it sees the reference too; a
    // referrer cannot download the calendar.
    call(
        &app,
        Method::GET,
        &format!("/sessions/{sid}/calendar.ics"),
        REF1,
        None,
    )
    .await
    .assert_problem(403);
}

async fn statistics_suppress_small_counts(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    use chrono::Datelike;
    let year = chrono::Utc::now().year();
    for i in 0..6 {
        let needs = if i < 5 {
            json!(["housing"])
        } else {
            json!(["addiction"])
        };
        let mut body = referral("Situation à compter.");
        body["needs"] = needs;
        let a = app.refer(REF1, &body).await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    for sub in [COORD, AUDITOR] {
        let a = call(&app, Method::GET, &format!("/stats?year={year}"), sub, None).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.body["referrals"]["count"], 6);
        let need = |n: &str| {
            a.body["by_need"]
                .as_array()
                .expect("needs")
                .iter()
                .find(|c| c["key"] == n)
                .cloned()
                .expect("need")
        };
        assert_eq!(need("housing")["count"], 5);
        assert_eq!(need("addiction")["count"], Value::Null);
        assert_eq!(need("addiction")["suppressed"], true);
        assert_eq!(need("violence_danger")["count"], 0);
        // Every count from 1 to 4, anywhere in the answer, is suppressed.
        fn walk(v: &Value) {
            match v {
                Value::Object(m) => {
                    if let Some(n) = m.get("count").and_then(Value::as_i64) {
                        assert!(n == 0 || n >= 5, "unsuppressed small count {v}");
                    }
                    m.values().for_each(walk);
                }
                Value::Array(a) => a.iter().for_each(walk),
                _ => {}
            }
        }
        walk(&a.body);
        // The referring organisation is the CCAS of the directory.
        let kinds = &a.body["by_referring_org_kind"];
        assert!(
            kinds
                .as_array()
                .expect("kinds")
                .iter()
                .any(|k| k["key"] == "ccas" && k["count"] == 6),
            "{kinds}"
        );
    }
    call(&app, Method::GET, &format!("/stats?year={year}"), PSY, None)
        .await
        .assert_problem(403);
    call(&app, Method::GET, "/stats?year=1900", COORD, None)
        .await
        .assert_problem(422);
    call(&app, Method::GET, "/stats", COORD, None)
        .await
        .assert_problem(422);
}

/// The whole directory at once: read, then replaced with rules naming interlocutors the stored
/// directory lacks (which `…/interlocutors` then `…/routing` could not do in either order), in
/// one `change_routing` entry; refused whole, with pointers into the document, when a rule names
/// nobody.
async fn the_whole_directory_is_replaced_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    let before = call(&app, Method::GET, "/directory", COORD, None).await;
    assert_eq!(before.status, 200, "{}", before.text);
    assert!(
        before.body["interlocutors"]
            .as_array()
            .is_some_and(|i| !i.is_empty())
    );
    assert!(
        before.body["rules"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );
    let new = json!({
        "interlocutors": [{"id": "cmp-nouveau", "name": "CMP Nouveau", "sphere": "psychiatry", "kind": "cmp", "sectors": ["66G03"]}],
        "rules": [{"id": "soins", "needs": ["care_access"], "lead": "cmp-nouveau"}]
    });
    let entries = || {
        app.count_rows(
            "SELECT count(*) FROM audit_entries WHERE action = 'change_routing' AND cellule = $1",
            "perpignan",
        )
    };
    let logged = entries().await;
    // Rules first: the stored interlocutors lack the new lead.
    call(
        &app,
        Method::PUT,
        "/routing",
        COORD,
        Some(json!({"rules": new["rules"]})),
    )
    .await
    .assert_problem(422);
    let a = call(&app, Method::PUT, "/directory", COORD, Some(new.clone())).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let stored = a.body.clone();
    assert_eq!(stored["interlocutors"][0]["id"], "cmp-nouveau");
    assert_eq!(stored["interlocutors"].as_array().map(Vec::len), Some(1));
    assert_eq!(stored["rules"][0]["lead"], "cmp-nouveau");
    assert_eq!(stored["rules"].as_array().map(Vec::len), Some(1));
    let read = || async {
        call(&app, Method::GET, "/directory", COORD, None)
            .await
            .body
    };
    assert_eq!(read().await, stored);
    assert_eq!(entries().await, logged + 1);
    // Refused whole: nothing changes.
    let bad =
        json!({"interlocutors": new["interlocutors"], "rules": [{"id": "x", "lead": "personne"}]});
    let r = call(&app, Method::PUT, "/directory", COORD, Some(bad)).await;
    r.assert_problem(422);
    assert!(r.text.contains("/rules/0/lead"), "{}", r.text);
    assert_eq!(read().await, stored);
    assert_eq!(entries().await, logged + 1);
    call(&app, Method::PUT, "/directory", PSY, Some(new))
        .await
        .assert_problem(403);
}

async fn the_directory_rejects_what_it_cannot_route(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    // Removing an interlocutor a rule leads to is refused.
    let a = call(&app, Method::PUT, "/interlocutors", COORD, Some(json!({"interlocutors": [
        {"id": "empp", "name": "EMPP", "sphere": "psychiatry", "kind": "mobile_team", "guest": true}]}))).await;
    a.assert_problem(422);
    assert!(
        a.text.contains("/rules/0/lead") || a.text.contains("/rule/0/lead"),
        "{}",
        a.text
    );
    // A rule naming nobody, a bad sector.
    for rules in [
        json!({"rules": [{"id": "x", "lead": "nobody"}]}),
        json!({"rules": [{"id": "x", "sectors": ["99Z99"], "lead": "ccas"}]}),
    ] {
        call(&app, Method::PUT, "/routing", COORD, Some(rules))
            .await
            .assert_problem(422);
    }
    let a = call(&app, Method::GET, "/routing", COORD, None).await;
    assert_eq!(
        a.body["rules"].as_array().map(Vec::len),
        Some(2),
        "nothing stored"
    );
    call(&app, Method::GET, "/routing", PSY, None)
        .await
        .assert_problem(403);
}

/// A build's deferrals are the session's draft: a rebuild replaces them (a case deferred by the
/// first build that now fits loses that deferral, newly deferred cases are added, the cases
/// deferred both times stay) and counts nothing; publication counts the set as it then is, once.
async fn rebuilds_replace_the_draft_deferrals_and_publication_counts_them(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    // 120 minutes, 20 per new case: six fit.
    routine_cases(&app, 8).await;
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    let build = || async {
        let agenda = build_agenda(&app, &sid).await;
        // A build answers what it wrote: the agenda as read back, pending counts included.
        let stored = agenda_as(&app, &sid, COORD).await;
        assert_eq!(stored.status, 200, "{}", stored.text);
        assert_eq!(agenda, stored.body);
        for d in agenda["deferred"].as_array().expect("deferred") {
            assert_eq!(d["times_deferred"], 1, "pending: {d}");
        }
        (item_ids(&agenda), deferred_ids(&agenda))
    };
    let (items, first) = build().await;
    assert_eq!((items.len(), first.len()), (6, 2));
    for id in &first {
        assert_eq!(times_deferred(&app, id).await, 0, "a draft counts nothing");
    }
    // Two agenda cases leave the pool: both deferred cases now fit.
    app.move_case(&items[0], json!({"to": "scheduled"})).await;
    app.move_case(&items[1], json!({"to": "scheduled"})).await;
    let (items, deferred) = build().await;
    assert_eq!((items.len(), deferred.len()), (6, 0));
    for id in &first {
        assert!(items.contains(id), "{id} now fits");
    }
    // Three newer cases: the three newest are deferred, and again after a rebuild.
    let newer = routine_cases(&app, 3).await;
    for _ in 0..2 {
        let (items, deferred) = build().await;
        assert_eq!(items.len(), 6);
        assert_eq!(deferred.len(), 3);
        for id in &newer {
            assert!(deferred.contains(id), "{id} is deferred");
            assert_eq!(times_deferred(&app, id).await, 0);
        }
    }
    // A page names the first deferrals (by reference) and counts them all.
    let all = app.state.db.agenda_deferred(&sid).await.expect("deferred");
    let named = app
        .state
        .db
        .agenda_deferred_first(&sid, 2)
        .await
        .expect("first deferred");
    assert_eq!(
        named.iter().map(|d| &d.reference).collect::<Vec<_>>(),
        all.iter().take(2).map(|d| &d.reference).collect::<Vec<_>>()
    );
    assert_eq!(
        app.state
            .db
            .agenda_deferred_count(&sid)
            .await
            .expect("count"),
        3
    );
    // A deferred case that leaves the pool (scheduled elsewhere) leaves the set at the next
    // build: the stored deferrals then differ from what the build read (SQLite then compares
    // the whole set in the database; PostgreSQL diffs against its stored set).
    app.move_case(&newer[0], json!({"to": "scheduled"})).await;
    let (items, deferred) = build().await;
    assert_eq!((items.len(), deferred.len()), (6, 2));
    assert!(!deferred.contains(&newer[0]));
    for id in &newer[1..] {
        assert!(deferred.contains(id), "{id} is deferred");
    }
    let stored: Vec<String> = app
        .state
        .db
        .agenda_deferred(&sid)
        .await
        .expect("deferrals")
        .into_iter()
        .map(|d| d.case_id)
        .collect();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|id| deferred.contains(id)));

    // A build that read the agenda before another build wrote it is refused, and changes
    // nothing: it would replace a set it did not see.
    let stale = cellule::storage::Deferrals {
        all: &newer[..1],
        before: &[],
        read_at: None,
    };
    let err = app
        .state
        .db
        .replace_agenda(
            "perpignan",
            &sid,
            &[],
            Some(stale),
            chrono::Utc::now(),
            Vec::new(),
        )
        .await
        .expect_err("a stale build");
    assert!(
        matches!(err, cellule::storage::StorageError::Conflict(_)),
        "{err:?}"
    );
    let (items_after, deferred_after) = build().await;
    assert_eq!(items_after, items);
    assert_eq!(deferred_after, deferred);

    // Publication counts the set as it is, once: not the deferrals withdrawn on the way.
    let published = publish(&app, &sid).await;
    assert_eq!(deferred_ids(&published), deferred);
    for d in published["deferred"].as_array().expect("deferred") {
        assert_eq!(d["times_deferred"], 1, "counted: {d}");
    }
    for id in &newer[1..] {
        assert_eq!(times_deferred(&app, id).await, 1);
    }
    for id in first.iter().chain(&newer[..1]).chain(&items) {
        assert_eq!(times_deferred(&app, id).await, 0, "{id}");
    }
}

/// A case deferred by two published agendas counts twice; cancelling the second undoes its
/// count, not the first's.
async fn a_case_deferred_by_two_sessions_counts_twice(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    // 120 minutes, 20 per new case: six fit in each session.
    routine_cases(&app, 8).await;
    let a_sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    let b_sid = ad_hoc(&app, "2031-01-09T14:00:00+01:00").await;
    let twice = deferred_ids(&build_agenda(&app, &a_sid).await);
    assert_eq!(twice.len(), 2);
    publish(&app, &a_sid).await;
    for id in &twice {
        assert_eq!(times_deferred(&app, id).await, 1);
    }
    // Six urgent cases come first in B: A's two deferred cases are deferred again, shown with
    // the count B's publication gives them, and counted again by it (their counts exist: this
    // is the update, not the first count).
    let urgent: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(
                accepted(&app, "urgent", json!(["housing"]), "66G01")
                    .await
                    .0,
            );
        }
        v
    };
    let b = build_agenda(&app, &b_sid).await;
    assert_eq!(item_ids(&b), urgent);
    let mut again = deferred_ids(&b);
    again.sort();
    let mut expected = twice.clone();
    expected.sort();
    assert_eq!(again, expected);
    for d in b["deferred"].as_array().expect("deferred") {
        assert_eq!(d["times_deferred"], 2, "{d}");
    }
    // A rebuild of B counts nothing; its publication counts once.
    let b = build_agenda(&app, &b_sid).await;
    for d in b["deferred"].as_array().expect("deferred") {
        assert_eq!(d["times_deferred"], 2, "{d}");
    }
    for id in &twice {
        assert_eq!(times_deferred(&app, id).await, 1);
    }
    publish(&app, &b_sid).await;
    for id in &twice {
        assert_eq!(times_deferred(&app, id).await, 2);
    }
    // Cancelling the published B (no decision yet) undoes its counts, not A's.
    let a = call(
        &app,
        Method::POST,
        &format!("/sessions/{b_sid}/cancel"),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    for id in &twice {
        assert_eq!(times_deferred(&app, id).await, 1);
    }
    let a = agenda_as(&app, &a_sid, COORD).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(deferred_ids(&a.body).len(), 2);
    for d in a.body["deferred"].as_array().expect("deferred") {
        assert_eq!(d["times_deferred"], 1, "A's published deferral: {d}");
    }
}

/// Publishes a session's agenda as the coordinator (200 expected) and returns it.
pub(crate) async fn publish(app: &TestApp, sid: &str) -> Value {
    agenda_action(app, sid, "publish").await
}

async fn agenda_put_get(app: &TestApp, sid: &str, items: Value) -> crate::helpers::Answer {
    call(
        app,
        Method::PUT,
        &format!("/sessions/{sid}/agenda"),
        COORD,
        Some(json!({ "items": items })),
    )
    .await
}

/// A session's agenda as `sub` sees it.
pub(crate) async fn agenda_as(app: &TestApp, sid: &str, sub: &str) -> crate::helpers::Answer {
    call(
        app,
        Method::GET,
        &format!("/sessions/{sid}/agenda"),
        sub,
        None,
    )
    .await
}

/// Builds a session's agenda as the coordinator (200 expected) and returns it.
async fn build_agenda(app: &TestApp, sid: &str) -> Value {
    agenda_action(app, sid, "build").await
}

/// `POST …/sessions/{sid}/agenda/{action}` as the coordinator (200 expected): the agenda.
async fn agenda_action(app: &TestApp, sid: &str, action: &str) -> Value {
    let a = call(
        app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/{action}"),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.body
}

/// `n` accepted routine housing cases of sector 66G01, oldest first (their ids).
async fn routine_cases(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(
            accepted(app, "routine", json!(["housing"]), "66G01")
                .await
                .0,
        );
    }
    ids
}

async fn times_deferred(app: &TestApp, id: &str) -> i64 {
    let a = call(app, Method::GET, &format!("/cases/{id}"), COORD, None).await;
    a.body["times_deferred"].as_i64().expect("times_deferred")
}

async fn the_store_refuses_items_that_are_no_longer_eligible(backend: Backend) {
    use cellule::storage::{NewAgendaItem, StorageError};
    let app = spawn_app(backend).await;
    setup(&app).await;
    let (ready, _) = accepted(&app, "routine", json!(["housing"]), "66G01").await;
    let a = app
        .refer(REF1, &referral("Situation encore à l'étude."))
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let submitted = a.body["id"].as_str().expect("id").to_owned();
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    let item = |case_id: &str, position| NewAgendaItem {
        case_id: case_id.to_owned(),
        position,
        kind: cellule::domain::agenda::Kind::New,
        minutes: 20,
        proposal: "{}".to_owned(),
    };
    let store = |items: Vec<NewAgendaItem>| {
        let (db, sid) = (app.state.db.clone(), sid.clone());
        async move {
            db.replace_agenda("perpignan", &sid, &items, None, chrono::Utc::now(), vec![])
                .await
        }
    };
    // Between the API's checks and the write, a case may have moved: the write is refused
    // whole, whichever item it is, and a case listed twice is refused too.
    for items in [
        vec![item(&ready, 1), item(&submitted, 2)],
        vec![item(&submitted, 1), item(&ready, 2)],
        vec![item(&ready, 1), item(&ready, 2)],
    ] {
        assert!(
            matches!(store(items).await, Err(StorageError::Conflict(_))),
            "refused"
        );
    }
    let a = agenda_as(&app, &sid, COORD).await;
    assert_eq!(item_ids(&a.body), Vec::<String>::new(), "nothing stored");
    store(vec![item(&ready, 1)])
        .await
        .expect("an eligible case is stored");
    let a = agenda_as(&app, &sid, COORD).await;
    assert_eq!(item_ids(&a.body), vec![ready]);
}

async fn erasing_a_deferred_case_removes_its_deferrals(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    // Six fit, the seventh is deferred; erased, nothing of it stays in the deferral tables
    // (which hold no foreign keys, migration 0009) nor in the agenda.
    routine_cases(&app, 7).await;
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    let agenda = build_agenda(&app, &sid).await;
    let deferred = agenda["deferred"][0]["case_id"]
        .as_str()
        .expect("deferred")
        .to_owned();
    publish(&app, &sid).await;
    assert_eq!(times_deferred(&app, &deferred).await, 1);
    let counts = "SELECT count(*) FROM case_deferrals WHERE case_id = $1";
    // PostgreSQL keeps a session's deferrals as one set (migration 0013).
    let rows = match backend {
        Backend::Sqlite => "SELECT count(*) FROM agenda_deferrals WHERE case_id = $1",
        Backend::Postgres => "SELECT count(*) FROM session_deferrals WHERE $1 = ANY(case_ids)",
    };
    assert_eq!(app.count_rows(counts, &deferred).await, 1);
    assert_eq!(app.count_rows(rows, &deferred).await, 1);
    let a = call(
        &app,
        Method::DELETE,
        &format!("/cases/{deferred}"),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.status, 204, "{}", a.text);
    assert_eq!(app.count_rows(counts, &deferred).await, 0);
    assert_eq!(app.count_rows(rows, &deferred).await, 0);
    let a = agenda_as(&app, &sid, COORD).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["deferred"], json!([]), "{}", a.text);
    assert_eq!(item_ids(&a.body).len(), 6);
    // Another case's count is untouched by the erasure.
    let kept = item_ids(&a.body)[0].clone();
    assert_eq!(times_deferred(&app, &kept).await, 0);
}

async fn edits_publication_and_cancellation_keep_the_pool_consistent(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    // 120 minutes, 20 per new case: six fit, the seventh is deferred.
    routine_cases(&app, 7).await;
    let a_sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    let b_sid = ad_hoc(&app, "2031-01-09T14:00:00+01:00").await;
    let build = |sid: String| {
        let app = &app;
        async move { build_agenda(app, &sid).await }
    };
    let agenda = build(a_sid.clone()).await;
    let on_a = item_ids(&agenda);
    assert_eq!(on_a.len(), 6);
    let deferred = agenda["deferred"][0]["case_id"]
        .as_str()
        .expect("deferred")
        .to_owned();
    assert_eq!(agenda["deferred"][0]["times_deferred"], 1, "pending");
    assert_eq!(times_deferred(&app, &deferred).await, 0, "a draft");

    // Putting the deferred case back on the agenda withdraws its deferral.
    let mut all = on_a.clone();
    all.push(deferred.clone());
    let a = agenda_put_get(&app, &a_sid, json!(all)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["deferred"], json!([]));
    assert_eq!(a.body["over_capacity"], true);
    assert_eq!(times_deferred(&app, &deferred).await, 0);

    // Bad edits of another session's agenda: nothing changes.
    let a = agenda_put_get(&app, &b_sid, json!([on_a[0]])).await;
    a.assert_problem(422);
    assert!(
        a.text.contains(&a_sid),
        "names the other session: {}",
        a.text
    );
    agenda_put_get(&app, &b_sid, json!(["not-a-case-id"]))
        .await
        .assert_problem(422);
    let many: Vec<String> = (0..201).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    agenda_put_get(&app, &b_sid, json!(many))
        .await
        .assert_problem(422);
    // Building the other session leaves A's cases alone.
    assert_eq!(item_ids(&build(b_sid.clone()).await), Vec::<String>::new());

    // Cancelling the unpublished A drops its draft deferral (never counted) and releases
    // everything.
    let agenda = build(a_sid.clone()).await;
    let deferred = agenda["deferred"][0]["case_id"]
        .as_str()
        .expect("deferred")
        .to_owned();
    let a = call(
        &app,
        Method::POST,
        &format!("/sessions/{a_sid}/cancel"),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(times_deferred(&app, &deferred).await, 0);
    assert!(
        app.state
            .db
            .agenda_deferred(&a_sid)
            .await
            .expect("deferrals")
            .is_empty(),
        "the draft's deferrals go with it"
    );

    // A case that moved since the build stops the publication.
    let agenda = build(b_sid.clone()).await;
    let on_b = item_ids(&agenda);
    assert_eq!(on_b.len(), 6);
    app.move_case(&on_b[0], json!({"to": "scheduled"})).await;
    let a = call(
        &app,
        Method::POST,
        &format!("/sessions/{b_sid}/agenda/publish"),
        COORD,
        None,
    )
    .await;
    a.assert_problem(409);
    let mine = app.state.db.clone();
    let unchanged = mine
        .get_case("perpignan", &on_b[1], chrono::Utc::now())
        .await
        .expect("db")
        .expect("case");
    assert_eq!(
        unchanged.status,
        cellule::domain::case::CaseStatus::Accepted,
        "nothing published"
    );
    // ... and a scheduled case cannot be put on an agenda.
    agenda_put_get(&app, &b_sid, json!(on_b))
        .await
        .assert_problem(422);
    let a = agenda_put_get(&app, &b_sid, json!(on_b[1..])).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = call(
        &app,
        Method::POST,
        &format!("/sessions/{b_sid}/agenda/publish"),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);

    // Once the meeting is opened the session took place: no cancellation.
    open_meeting(&app, &b_sid).await;
    let a = call(
        &app,
        Method::POST,
        &format!("/sessions/{b_sid}/items/{}/decision", on_b[1]),
        COORD,
        Some(json!({"outcome": "deferred"})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
    call(
        &app,
        Method::POST,
        &format!("/sessions/{b_sid}/cancel"),
        COORD,
        None,
    )
    .await
    .assert_problem(409);
    let a = call(
        &app,
        Method::GET,
        &format!("/cases/{}", on_b[2]),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.body["status"], "scheduled", "the agenda stands");
}

async fn access_follows_routing_and_ends_by_itself(backend: Backend) {
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
    setup(&app).await;
    let at = |days: i64| (start + chrono::Duration::days(days)).to_rfc3339();
    let date = |days: i64| {
        (start + chrono::Duration::days(days))
            .date_naive()
            .to_string()
    };
    let (care, care_ref) = accepted(&app, "urgent", json!(["care_access"]), "66G03").await;
    let (housing, _) = accepted(&app, "urgent", json!(["housing"]), "66G01").await;
    let sid = ad_hoc(&app, &at(2)).await;
    for step in ["agenda/build", "agenda/publish"] {
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
    clock.set(start + chrono::Duration::days(2));
    open_meeting(&app, &sid).await;
    let decide = |case: String, body: Value| {
        let path = format!("/sessions/{sid}/items/{case}/decision");
        let app = &app;
        async move { call(app, Method::POST, &path, COORD, Some(body)).await }
    };
    // Only a routed decision names an interlocutor; only routed and follow-up take a date.
    decide(
        care.clone(),
        json!({"outcome": "follow_up", "interlocutor": "cmp-66g03", "follow_up_date": date(60)}),
    )
    .await
    .assert_problem(422);
    decide(
        care.clone(),
        json!({"outcome": "closed", "text": "Résolu.", "follow_up_date": date(60)}),
    )
    .await
    .assert_problem(422);
    let a = decide(
        care.clone(),
        json!({"outcome": "routed", "interlocutor": "cmp-66g03", "follow_up_date": date(60)}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
    // Routed to the guest organisation, which the router had not proposed (not invited).
    let a = decide(
        housing.clone(),
        json!({"outcome": "routed", "interlocutor": "EMPP", "follow_up_date": date(60)}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let status = |sub: &'static str, id: String| {
        let app = &app;
        async move {
            call(app, Method::GET, &format!("/cases/{id}"), sub, None)
                .await
                .status
        }
    };
    assert_eq!(status(GUEST, housing.clone()).await, 200, "routed guest");
    assert_eq!(status(CITY, care.clone()).await, 200, "published agenda");

    // 40 days on: the agenda access is over; the routed member keeps its case, the guest not.
    clock.set(start + chrono::Duration::days(40));
    assert_eq!(status(CITY, care.clone()).await, 404);
    assert_eq!(status(GUEST, housing.clone()).await, 404);
    assert_eq!(
        status(PSY, care.clone()).await,
        200,
        "assigned interlocutor"
    );

    // A draft agenda shows members nothing, even the cases they may read.
    let next = ad_hoc(&app, &at(65)).await;
    let a = call(
        &app,
        Method::POST,
        &format!("/sessions/{next}/agenda/build"),
        COORD,
        None,
    )
    .await;
    assert!(
        item_ids(&a.body).contains(&care),
        "follow-up due: {}",
        a.text
    );
    let a = call(
        &app,
        Method::GET,
        &format!("/sessions/{next}/agenda"),
        PSY,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(item_ids(&a.body), Vec::<String>::new());
    for (sub, shown) in [(PSY, false), (COORD, true)] {
        let a = call(
            &app,
            Method::GET,
            &format!("/sessions/{next}/calendar.ics"),
            sub,
            None,
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.text.contains(&care_ref), shown, "{sub}: {}", a.text);
    }

    // An agenda left unpublished in the past holds nothing back.
    let (late, _) = accepted(&app, "routine", json!(["housing"]), "66G01").await;
    let past = ad_hoc(&app, &at(41)).await;
    let a = call(
        &app,
        Method::POST,
        &format!("/sessions/{past}/agenda/build"),
        COORD,
        None,
    )
    .await;
    assert!(item_ids(&a.body).contains(&late), "{}", a.text);
    clock.set(start + chrono::Duration::days(43));
    let a = call(
        &app,
        Method::POST,
        &format!("/sessions/{next}/agenda/build"),
        COORD,
        None,
    )
    .await;
    assert!(item_ids(&a.body).contains(&late), "{}", a.text);

    // Closing the case ends the routed organisation's access.
    let a = call(
        &app,
        Method::PUT,
        &format!("/sessions/{next}/agenda"),
        COORD,
        Some(json!({"items": [late]})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    app.move_case(
        &care,
        json!({"to": "closed", "reason": "Suivi assuré par le CMP."}),
    )
    .await;
    assert_eq!(status(PSY, care.clone()).await, 404, "closed");
    assert_eq!(status(COORD, care.clone()).await, 200);
}

async fn sessions_keep_their_zone_and_schedule_its_first_day(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    // An ad-hoc session asked for in UTC is shown in the cellule's zone.
    let a = call(
        &app,
        Method::POST,
        "/sessions",
        COORD,
        Some(json!({"starts_at": "2030-12-12T13:00:00Z"})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.body["starts_at"], "2030-12-12T14:00:00+01:00");
    // A schedule edited without a first day keeps the one it had.
    let first = call(&app, Method::GET, "/schedule", COORD, None).await;
    let starts_on = first.body["starts_on"].clone();
    assert!(starts_on.is_string(), "{}", first.text);
    let mut edited = schedule();
    edited["location"] = json!("CCAS, salle 2");
    let a = call(&app, Method::PUT, "/schedule", COORD, Some(edited)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["starts_on"], starts_on);
    // Names with commas are common ("Têt Habitat, office public"): an invitation names the whole
    // organisation, never a part of it.
    let (mut interlocutors, mut rules) = directory();
    interlocutors["interlocutors"]
        .as_array_mut()
        .expect("interlocutors")
        .push(
            json!({"id": "asso", "name": "Association Horizon,EMPP", "sphere": "city",
            "kind": "association"}),
        );
    rules["rules"]
        .as_array_mut()
        .expect("rules")
        .push(json!({"id": "addictions", "needs": ["addiction"], "lead": "asso"}));
    for (path, body) in [("/interlocutors", interlocutors), ("/routing", rules)] {
        let a = call(&app, Method::PUT, path, COORD, Some(body)).await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    let (addiction, _) = accepted(&app, "urgent", json!(["addiction"]), "66G01").await;
    let (care, _) = accepted(&app, "urgent", json!(["care_access"]), "66G03").await;
    let sid = ad_hoc(&app, "2030-12-19T14:00:00+01:00").await;
    for step in ["agenda/build", "agenda/publish"] {
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
    let a = agenda_as(&app, &sid, GUEST).await;
    assert_eq!(item_ids(&a.body), vec![care.clone()], "{}", a.text);
    call(
        &app,
        Method::GET,
        &format!("/cases/{addiction}"),
        GUEST,
        None,
    )
    .await
    .assert_problem(404);
}

async fn deferred_decisions_are_not_reviews(backend: Backend) {
    let app = spawn_app(backend).await;
    setup(&app).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            accepted(&app, "routine", json!(["housing"]), "66G01")
                .await
                .0,
        );
    }
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    for step in ["agenda/build", "agenda/publish"] {
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
    open_meeting(&app, &sid).await;
    for id in &ids {
        let a = call(
            &app,
            Method::POST,
            &format!("/sessions/{sid}/items/{id}/decision"),
            COORD,
            Some(json!({"outcome": "deferred"})),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    // The decisions are dated on the meeting's day (2030); the cases were referred this year.
    let decided = call(&app, Method::GET, "/stats?year=2030", COORD, None).await;
    assert_eq!(decided.status, 200, "{}", decided.text);
    use chrono::Datelike;
    let year = chrono::Utc::now().year();
    let a = call(
        &app,
        Method::GET,
        &format!("/stats?year={year}"),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let outcome = decided.body["decisions_by_outcome"]
        .as_array()
        .expect("outcomes")
        .iter()
        .find(|c| c["key"] == "deferred")
        .cloned();
    assert_eq!(outcome.map(|c| c["count"].clone()), Some(json!(5)));
    // Five decisions, none of them a review.
    assert_eq!(
        a.body["referral_to_first_review"],
        json!({"median_days": null, "suppressed": false})
    );
}

backend_tests!(
    schedule_and_idempotent_planning,
    the_agenda_fills_capacity_by_urgency_and_counts_deferrals_once,
    follow_ups_uncovered_cases_and_edits,
    publication_opens_access_and_guests_see_only_their_items,
    cancelling_a_session_releases_its_items,
    decisions_move_cases_and_feed_the_referrer,
    the_calendar_is_valid_icalendar_without_content,
    statistics_suppress_small_counts,
    the_directory_rejects_what_it_cannot_route,
    the_whole_directory_is_replaced_at_once,
    edits_publication_and_cancellation_keep_the_pool_consistent,
    access_follows_routing_and_ends_by_itself,
    sessions_keep_their_zone_and_schedule_its_first_day,
    deferred_decisions_are_not_reviews,
    rebuilds_replace_the_draft_deferrals_and_publication_counts_them,
    a_case_deferred_by_two_sessions_counts_twice,
    erasing_a_deferred_case_removes_its_deferrals,
    the_store_refuses_items_that_are_no_longer_eligible,
);

/// Publication counts its deferrals with an upsert: a first count of the same case written
/// meanwhile by another transaction (a `deferred` decision, another session's publication) is
/// waited for and added to, neither lost nor refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_deferral_counted_meanwhile_is_added_to_by_publication() {
    use sqlx::Connection;
    let app = spawn_app(Backend::Postgres).await;
    setup(&app).await;
    // 120 minutes, 20 per new case: six fit, the two newest are deferred.
    let ids = routine_cases(&app, 8).await;
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    let agenda = build_agenda(&app, &sid).await;
    assert_eq!(deferred_ids(&agenda), ids[6..8], "{agenda}");
    let newest = ids[7].clone();
    assert_eq!(times_deferred(&app, &newest).await, 0);

    // Another transaction has counted the newest case's first deferral, not yet committed.
    let mut other = sqlx::PgConnection::connect(&app.database_url)
        .await
        .expect("pg");
    sqlx::raw_sql("BEGIN")
        .execute(&mut other)
        .await
        .expect("begin");
    sqlx::query("INSERT INTO case_deferrals (case_id, times) VALUES ($1, 1)")
        .bind(&newest)
        .execute(&mut other)
        .await
        .expect("count");
    let path = format!("/sessions/{sid}/agenda/publish");
    let publish = call(&app, Method::POST, &path, COORD, None);
    // The publication's count waits on the other transaction's row, which then commits.
    let meanwhile = async {
        let mut waited = 0;
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut other)
            .await
            .expect("activity");
            if waiting > 0 {
                break;
            }
            waited += 1;
            assert!(
                waited < 500,
                "the publication never waited on the other count"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        sqlx::raw_sql("COMMIT")
            .execute(&mut other)
            .await
            .expect("commit");
    };
    let (a, ()) = tokio::join!(publish, meanwhile);
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(times_deferred(&app, &newest).await, 2, "both counts");
    assert_eq!(times_deferred(&app, &ids[6]).await, 1);
    for id in &ids[..6] {
        assert_eq!(times_deferred(&app, id).await, 0);
    }
}
