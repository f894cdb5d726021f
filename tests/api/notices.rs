//! Notices on both backends, read from the outbox their events write them to: one invitation
//! per invited member with an iCalendar request holding only the references they may see, a
//! canary planted in every text field of the cases in no message, updates and cancellations,
//! referral news for the referrer, minutes available, opt-outs honoured (security notices
//! excepted), and nothing written for an event that was refused.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::backend_tests;
use crate::helpers::{
    AUDITOR, Backend, CITY, COORD, GUEST, PSY, REF1, TestApp, referral, spawn_app,
};
use crate::sessions::{ad_hoc, call, open_meeting, setup};

pub(crate) const CANARY: &str = "NOTICECANARY";

/// One message of the outbox.
#[derive(Debug, Clone)]
struct Sent {
    kind: String,
    recipient: String,
    subject: String,
    text: String,
    html: String,
    ics: String,
    refs: String,
}

impl Sent {
    fn all(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}",
            self.subject, self.text, self.html, self.ics
        )
    }
}

async fn outbox(app: &TestApp) -> Vec<Sent> {
    const Q: &str = "SELECT kind, recipient, subject, body_text, body_html, COALESCE(ics, ''), case_refs \
                     FROM outbox ORDER BY created_at, id";
    type Row = (String, String, String, String, String, String, String);
    let rows: Vec<Row> = if app.database_url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(&app.database_url)
            .await
            .expect("sqlite");
        sqlx::query_as(Q).fetch_all(&mut c).await.expect("outbox")
    } else {
        let mut c = sqlx::PgConnection::connect(&app.database_url)
            .await
            .expect("postgres");
        sqlx::query_as(Q).fetch_all(&mut c).await.expect("outbox")
    };
    rows.into_iter()
        .map(|(kind, recipient, subject, text, html, ics, refs)| Sent {
            kind,
            recipient,
            subject,
            text,
            html,
            ics,
            refs,
        })
        .collect()
}

pub(crate) fn address(sub: &str) -> String {
    format!("{sub}@pro.example.fr")
}

/// The standard cellule, every member with an address.
pub(crate) async fn cellule_with_addresses(app: &TestApp) {
    setup(app).await;
    for sub in [COORD, PSY, CITY, GUEST, REF1, AUDITOR] {
        let a = app
            .as_admin(
                Method::PUT,
                &format!("/v1/cellules/perpignan/members/{sub}/address"),
                Some(json!({"email": address(sub)})),
            )
            .await;
        assert_eq!(a.status, 204, "{}", a.text);
    }
}

/// A referral with the canary in every free text, accepted; (id, reference).
pub(crate) async fn canary_case(app: &TestApp, needs: Value, sector: &str) -> (String, String) {
    let mut body = referral(&format!("Situation {CANARY} dans le texte."));
    body["expectations"] = json!(format!("Attentes {CANARY}."));
    body["consent"]["justification"] = json!(format!("Justification {CANARY}"));
    body["needs"] = needs;
    body["sector"] = json!(sector);
    let a = app.refer(REF1, &body).await;
    assert_eq!(a.status, 201, "{}", a.text);
    let id = a.body["id"].as_str().expect("id").to_owned();
    let reference = a.body["reference"].as_str().expect("reference").to_owned();
    app.move_case(&id, json!({"to": "accepted"})).await;
    (id, reference)
}

pub(crate) fn ics_refs(ics: &str) -> String {
    let parsed: icalendar::Calendar = ics.parse().expect("the attachment parses as iCalendar");
    use icalendar::Component;
    let event = parsed
        .components
        .iter()
        .find_map(|c| c.as_event())
        .expect("one event");
    event.get_description().unwrap_or_default().to_owned()
}

async fn the_meeting_sends_notices_without_content(backend: Backend) {
    let app = spawn_app(backend).await;
    cellule_with_addresses(&app).await;
    let (care, care_ref) = canary_case(&app, json!(["care_access"]), "66G03").await;
    let (housing, housing_ref) = canary_case(&app, json!(["housing"]), "66G01").await;
    // The referrer heard of each acceptance, with their own reference only.
    let news: Vec<Sent> = outbox(&app)
        .await
        .into_iter()
        .filter(|m| m.kind == "referral_status")
        .collect();
    assert_eq!(news.len(), 2, "{news:?}");
    assert!(news.iter().all(|m| m.recipient == address(REF1)));
    assert!(news[0].subject.contains(&care_ref) && !news[0].all().contains(&housing_ref));

    // A refused publication (nothing built) writes nothing.
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    let before = outbox(&app).await.len();
    call(
        &app,
        Method::POST,
        &format!("/sessions/{sid}/agenda/publish"),
        COORD,
        None,
    )
    .await
    .assert_problem(409);
    assert_eq!(outbox(&app).await.len(), before);

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
    // One invitation per invited member, each with a calendar request naming only what they
    // may see: the guest (EMPP, invited to the care item) not the housing item.
    let invitations: Vec<Sent> = outbox(&app)
        .await
        .into_iter()
        .filter(|m| m.kind == "invitation")
        .collect();
    let mut to: Vec<&str> = invitations.iter().map(|m| m.recipient.as_str()).collect();
    to.sort();
    let mut expected = [address(COORD), address(PSY), address(CITY), address(GUEST)];
    expected.sort();
    assert_eq!(to, expected.iter().map(String::as_str).collect::<Vec<_>>());
    for m in &invitations {
        assert!(m.ics.contains("METHOD:REQUEST"), "{}", m.ics);
        assert!(m.ics.contains(&format!("mailto:{}", m.recipient)));
        let refs = ics_refs(&m.ics);
        assert!(refs.contains(&care_ref), "{refs}");
        if m.recipient == address(GUEST) {
            assert!(
                !refs.contains(&housing_ref) && !m.all().contains(&housing_ref),
                "{}",
                m.all()
            );
        } else {
            assert!(refs.contains(&housing_ref), "{refs}");
        }
    }

    // Notes and decisions with the canary; an amendment; minutes approved.
    for (sub, audience) in [(PSY, "psychiatry"), (CITY, "city"), (COORD, "cellule")] {
        let a = call(
            &app,
            Method::POST,
            &format!("/cases/{care}/notes"),
            sub,
            Some(json!({"audience": audience, "body": format!("Note {CANARY}")})),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    let a = call(
        &app,
        Method::DELETE,
        &format!("/sessions/{sid}/agenda/items/{housing}"),
        COORD,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let updates: Vec<Sent> = outbox(&app)
        .await
        .into_iter()
        .filter(|m| m.kind == "agenda_update")
        .collect();
    assert_eq!(updates.len(), 4, "the guest still has its item");
    assert!(
        updates
            .iter()
            .all(|m| !ics_refs(&m.ics).contains(&housing_ref))
    );
    open_meeting(&app, &sid).await;
    let a = call(&app, Method::POST, &format!("/sessions/{sid}/items/{care}/decision"), COORD, Some(json!({
        "outcome": "routed", "interlocutor": "cmp-66g03", "follow_up_date": "2031-02-01",
        "actions": [{"what": format!("Action {CANARY}"), "owner": "cmp-66g03", "due": "2030-12-20"}],
        "text": format!("Décision {CANARY}"), "referrer_message": format!("Message {CANARY}")}))).await;
    assert_eq!(a.status, 201, "{}", a.text);
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
    let all = outbox(&app).await;
    let reviewed: Vec<&Sent> = all
        .iter()
        .filter(|m| m.kind == "referral_status" && m.subject.contains("examinée"))
        .collect();
    assert_eq!(reviewed.len(), 1, "{all:?}");
    assert_eq!(reviewed[0].recipient, address(REF1));
    let minutes: Vec<&Sent> = all
        .iter()
        .filter(|m| m.kind == "minutes_available")
        .collect();
    assert_eq!(minutes.len(), 4, "{minutes:?}");
    // Nothing of the cases in any message: no text, no attribute.
    for m in &all {
        let text = m.all();
        for secret in [
            CANARY,
            "66136",
            "35-44",
            "personne injoignable",
            "orientation vers le CMP",
        ] {
            assert!(
                !text.contains(secret),
                "{secret} in a {} message:\n{text}",
                m.kind
            );
        }
        assert!(m.text.contains("aucune information sur les"), "{}", m.text);
    }
    // Every reference named is one the recipient could see (the guest: only the care item).
    for m in all.iter().filter(|m| m.recipient == address(GUEST)) {
        assert!(!m.refs.contains(&housing_ref), "{m:?}");
    }
    // No message to the auditor but security ones.
    assert!(all.iter().all(|m| m.recipient != address(AUDITOR)));
}

async fn opt_outs_are_honoured_except_security_notices(backend: Backend) {
    let app = spawn_app(backend).await;
    cellule_with_addresses(&app).await;
    let a = call(
        &app,
        Method::PUT,
        "/me/notices",
        CITY,
        Some(json!({"off": ["invitation", "agenda_update", "cancellation"]})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["email"], address(CITY));
    assert_eq!(a.body["off"].as_array().map(Vec::len), Some(3));
    call(
        &app,
        Method::PUT,
        "/me/notices",
        CITY,
        Some(json!({"off": ["chain_failure"]})),
    )
    .await
    .assert_problem(422);
    call(
        &app,
        Method::PUT,
        "/me/notices",
        CITY,
        Some(json!({"off": ["unknown"]})),
    )
    .await
    .assert_problem(422);
    let a = call(
        &app,
        Method::PUT,
        "/me/notices",
        REF1,
        Some(json!({"off": ["referral_status"]})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let (_care, _) = canary_case(&app, json!(["care_access"]), "66G03").await;
    let sid = ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    for step in ["agenda/build", "agenda/publish", "cancel"] {
        let path = if step == "cancel" {
            format!("/sessions/{sid}/cancel")
        } else {
            format!("/sessions/{sid}/{step}")
        };
        let a = call(&app, Method::POST, &path, COORD, None).await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    let all = outbox(&app).await;
    assert!(all.iter().all(|m| m.recipient != address(CITY)), "{all:?}");
    assert!(all.iter().all(|m| m.recipient != address(REF1)), "{all:?}");
    let cancels: Vec<&Sent> = all.iter().filter(|m| m.kind == "cancellation").collect();
    assert_eq!(
        cancels.len(),
        3,
        "coordinator, psychiatry member, invited guest: {all:?}"
    );
    assert!(
        cancels
            .iter()
            .all(|m| m.ics.contains("METHOD:CANCEL") && m.ics.contains("STATUS:CANCELLED"))
    );
    // An address is checked, and only an administrator sets it.
    let a = app
        .as_admin(
            Method::PUT,
            &format!("/v1/cellules/perpignan/members/{CITY}/address"),
            Some(json!({"email": "pas une adresse"})),
        )
        .await;
    a.assert_problem(422);
    let a = app
        .as_admin(
            Method::PUT,
            "/v1/cellules/perpignan/members/nobody/address",
            Some(json!({"email": "a@b.fr"})),
        )
        .await;
    a.assert_problem(404);
    let a = app
        .request(
            Method::PUT,
            &format!("/v1/cellules/perpignan/members/{CITY}/address"),
            Some(&app.token(COORD)),
            Some(json!({"email": "a@b.fr"})),
        )
        .await;
    a.assert_problem(403);
    // Removed: no more notices.
    let a = app
        .as_admin(
            Method::DELETE,
            &format!("/v1/cellules/perpignan/members/{PSY}/address"),
            None,
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.text);
    let a = call(&app, Method::GET, "/me/notices", PSY, None).await;
    assert!(a.body["email"].is_null(), "{}", a.text);
}

async fn reminders_and_due_digests_are_sent_once(backend: Backend) {
    let app = spawn_app(backend).await;
    cellule_with_addresses(&app).await;
    let (care, _) = canary_case(&app, json!(["care_access"]), "66G03").await;
    let (housing, _) = canary_case(&app, json!(["housing"]), "66G01").await;
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
    let run = || cellule::services::reminders::run_scheduled(&app.state);
    let kind = |kind: &'static str| {
        let app = &app;
        async move {
            outbox(app)
                .await
                .into_iter()
                .filter(|m| m.kind == kind)
                .collect::<Vec<_>>()
        }
    };
    // Two days before: nothing yet. The day before (Paris): one reminder each, once.
    app.travel_to("2030-12-10T09:00:00Z".parse().expect("date"));
    run().await.expect("run");
    assert!(kind("reminder").await.is_empty());
    app.travel_to("2030-12-11T09:00:00Z".parse().expect("date"));
    assert_eq!(run().await.expect("run"), 4);
    assert_eq!(run().await.expect("run"), 0, "once");
    let reminders = kind("reminder").await;
    assert_eq!(reminders.len(), 4);
    assert!(
        reminders
            .iter()
            .all(|m| m.subject.contains("Rappel") && m.ics.is_empty())
    );
    // Actions falling due: the owner organisation's members and the coordinators, once a day.
    open_meeting(&app, &sid).await;
    for (case, owner) in [(&care, "cmp-66g03"), (&housing, "CCAS Perpignan")] {
        let a = call(&app, Method::POST, &format!("/sessions/{sid}/items/{case}/decision"), COORD, Some(json!({
            "outcome": "routed", "interlocutor": owner, "follow_up_date": "2031-02-01",
            "actions": [{"what": format!("Action {CANARY}"), "owner": owner, "due": "2030-12-13"}]}))).await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    // On the meeting's day (the clock is there), the actions are due tomorrow.
    run().await.expect("run");
    let digests = kind("actions_due").await;
    let mut to: Vec<&str> = digests.iter().map(|m| m.recipient.as_str()).collect();
    to.sort();
    let mut expected = [address(COORD), address(PSY), address(CITY)];
    expected.sort();
    assert_eq!(to, expected.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        digests
            .iter()
            .all(|m| !m.all().contains(CANARY) && m.refs.is_empty())
    );
    run().await.expect("run");
    assert_eq!(kind("actions_due").await.len(), 3, "once a day");
    // Overdue the next day: a new digest that says so.
    app.travel_to("2030-12-14T08:00:00Z".parse().expect("date"));
    run().await.expect("run");
    let digests = kind("actions_due").await;
    assert_eq!(digests.len(), 6);
    assert!(
        digests[3..]
            .iter()
            .all(|m| m.subject.contains("en retard") && !m.subject.contains("dont 0 en retard")),
        "{digests:?}"
    );
}

/// A failed verification of the chain alerts the cellule's auditors and coordinators (a
/// security notice: sent even to someone who turned every optional notice off).
async fn a_failed_verification_alerts_auditors_and_coordinators(backend: Backend) {
    let app = spawn_app(backend).await;
    cellule_with_addresses(&app).await;
    let all_optional = json!({"off": ["invitation", "agenda_update", "cancellation", "reminder",
        "minutes_available", "actions_due", "referral_status"]});
    let a = app
        .request(
            Method::PUT,
            "/v1/cellules/perpignan/me/notices",
            Some(&app.token(AUDITOR)),
            Some(all_optional),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = call(&app, Method::GET, "/audit/verify", AUDITOR, None).await;
    assert_eq!(a.body["valid"], true, "{}", a.text);
    assert!(outbox(&app).await.iter().all(|m| m.kind != "chain_failure"));
    crate::audit::drop_guards(&app).await;
    crate::audit::sql(
        &app,
        &["DELETE FROM audit_entries WHERE cellule = 'perpignan' AND seq = 3"],
    )
    .await
    .expect("remove an entry");
    let a = call(&app, Method::GET, "/audit/verify", AUDITOR, None).await;
    assert_eq!(a.body["valid"], false, "{}", a.text);
    let alerts: Vec<Sent> = outbox(&app)
        .await
        .into_iter()
        .filter(|m| m.kind == "chain_failure")
        .collect();
    let mut to: Vec<&str> = alerts.iter().map(|m| m.recipient.as_str()).collect();
    to.sort();
    let mut expected = [address(AUDITOR), address(COORD)];
    expected.sort();
    assert_eq!(to, expected.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(alerts.iter().all(|m| m.subject.contains("journal d'audit")));
}

backend_tests!(
    a_failed_verification_alerts_auditors_and_coordinators,
    the_meeting_sends_notices_without_content,
    opt_outs_are_honoured_except_security_notices,
    reminders_and_due_digests_are_sent_once,
);
