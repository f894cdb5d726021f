//! The identifier guard on every free-text field of the API, and the fields that name an
//! organisation: a known organisation only, never free text.

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    referrals_name_only_known_organisations,
    cases_are_routed_only_to_known_organisations,
    directory_contacts_pass_and_other_contacts_do_not,
    a_referral_may_not_name_its_own_person,
    hints_are_french_unless_english_is_asked,
    every_free_text_field_is_scanned,
);

async fn put(app: &TestApp, path: &str, body: Value) -> Answer {
    app.request(
        Method::PUT,
        &format!("/v1/cellules/perpignan{path}"),
        Some(&app.token(COORD)),
        Some(body),
    )
    .await
}

async fn directory(app: &TestApp) {
    let a = put(
        app,
        "/interlocutors",
        json!({"interlocutors": [
            {"id": "cmp-66g03", "name": "CMP 66G03", "sphere": "psychiatry", "kind": "cmp",
             "contact": "accueil CMP : 04 68 11 22 33, cmp66g03@hopital-exemple.fr"},
            {"id": "mdph", "name": "MDPH 66", "sphere": "city", "kind": "social_services",
             "contact": "MDPH, 30 rue Pierre Bretonneau"}
        ]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
}

async fn case_count(app: &TestApp) -> i64 {
    app.count_rows("SELECT COUNT(*) FROM cases WHERE cellule = $1", "perpignan")
        .await
}

async fn referrals_name_only_known_organisations(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    directory(&app).await;
    let before = case_count(&app).await;
    let mut body = referral("Situation suivie par le bailleur.");
    body["referring_org"] = json!("Jean Dupont 06 12 34 56 78");
    let a = app.refer(REF1, &body).await;
    a.assert_problem(422);
    assert_eq!(
        a.body["errors"][0]["pointer"], "/referring_org",
        "{}",
        a.text
    );
    assert!(
        !a.text.contains("Dupont"),
        "the value is echoed: {}",
        a.text
    );
    assert_eq!(case_count(&app).await, before, "nothing stored");
    // The referrer's own organisation, one of the directory, one of a member: each is known.
    for org in ["Bailleur Roussillon", "MDPH 66", "CCAS Perpignan"] {
        body["referring_org"] = json!(org);
        let a = app.refer(REF1, &body).await;
        assert_eq!(a.status, 201, "{org}: {}", a.text);
    }
    // Without the field, the referrer's own organisation.
    let mut body = referral("Situation suivie par le bailleur.");
    body.as_object_mut().map(|o| o.remove("referring_org"));
    let a = app.refer(REF1, &body).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(case_count(&app).await, before + 4);
}

async fn cases_are_routed_only_to_known_organisations(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    directory(&app).await;
    let (id, _) = app.refer_ok(REF1, "Situation à orienter.").await;
    app.move_case(&id, json!({"to": "accepted"})).await;
    app.move_case(&id, json!({"to": "scheduled"})).await;
    let a = app
        .transition(
            COORD,
            &id,
            json!({"to": "in_follow_up", "follow_up_date": "2027-01-15", "routed_org": "mdss"}),
        )
        .await;
    a.assert_problem(422);
    assert_eq!(a.body["errors"][0]["pointer"], "/routed_org", "{}", a.text);
    let case = app
        .get(
            &format!("/v1/cellules/perpignan/cases/{id}"),
            Some(&app.token(COORD)),
        )
        .await;
    assert_eq!(case.body["status"], "scheduled", "nothing changed");
    let a = app
        .transition(
            COORD,
            &id,
            json!({"to": "in_follow_up", "follow_up_date": "2027-01-15", "routed_org": "CMP 66G03"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["routed_org"], "CMP 66G03");
}

async fn directory_contacts_pass_and_other_contacts_do_not(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let text = "Le CMP (04 68 11 22 33, cmp66g03@hopital-exemple.fr) a été informé ; la MDPH est au 30 rue Pierre Bretonneau.";
    // Before the directory knows them, these are identifiers like any other.
    let a = app.refer(REF1, &referral(text)).await;
    a.assert_problem(422);
    let kinds: Vec<&str> = a.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["phone", "email", "address"], "{}", a.text);
    directory(&app).await;
    let a = app.refer(REF1, &referral(text)).await;
    assert_eq!(a.status, 201, "{}", a.text);
    // Another number, in the same text, is still refused.
    let a = app
        .refer(
            REF1,
            &referral("Le CMP (04 68 11 22 33) ; sa sœur au 06 98 76 54 32."),
        )
        .await;
    a.assert_problem(422);
    assert_eq!(
        a.body["errors"].as_array().map(Vec::len),
        Some(1),
        "{}",
        a.text
    );
    assert_eq!(a.body["errors"][0]["kind"], "phone");
    assert_eq!(a.body["errors"][0]["start"], 37, "{}", a.text);
    assert_eq!(a.body["errors"][0]["end"], 51, "{}", a.text);
}

async fn a_referral_may_not_name_its_own_person(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let mut body = referral("Fatima vit seule depuis le départ de son fils.");
    body["identity"] =
        json!({"last_name": "Benali", "first_name": "Fatima", "birth_date": "1980-03-12"});
    let a = app.refer(REF1, &body).await;
    a.assert_problem(422);
    assert_eq!(a.body["errors"][0]["kind"], "name", "{}", a.text);
    assert_eq!(a.body["errors"][0]["field"], "situation");
    assert_eq!(
        (&a.body["errors"][0]["start"], &a.body["errors"][0]["end"]),
        (&json!(0), &json!(6))
    );
    assert!(!a.text.contains("Fatima") && !a.text.contains("Benali"));
    body["situation"] = json!("Personne isolée, née le 12 mars 80 selon le bailleur.");
    let a = app.refer(REF1, &body).await;
    a.assert_problem(422);
    assert_eq!(a.body["errors"][0]["kind"], "birth_date", "{}", a.text);
    // The same texts without an identity name nobody the guard can know of.
    body["situation"] = json!("Elle vit seule depuis le départ de son fils.");
    let a = app.refer(REF1, &body).await;
    assert_eq!(a.status, 201, "{}", a.text);
}

async fn hints_are_french_unless_english_is_asked(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let body = referral("Joignable au 06 12 34 56 78 le matin.");
    let a = app.refer(REF1, &body).await;
    a.assert_problem(422);
    let french = a.body["errors"][0]["detail"].as_str().unwrap_or_default();
    assert!(french.contains("téléphone"), "{french}");
    let english = app
        .client
        .post(format!("{}/v1/cellules/perpignan/referrals", app.base))
        .bearer_auth(app.token(REF1))
        .header("Accept-Language", "en-GB,en;q=0.9,fr;q=0.5")
        .json(&body)
        .send()
        .await
        .expect("send");
    let english = answer(english).await;
    english.assert_problem(422);
    let detail = english.body["errors"][0]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(detail.to_lowercase().contains("phone"), "{detail}");
    assert_ne!(detail, french);
}

async fn every_free_text_field_is_scanned(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let (id, _) = app.refer_ok(REF1, "Situation à examiner.").await;
    let phone = "rappeler le 06 12 34 56 78";
    // A note.
    let a = app
        .request(
            Method::POST,
            &format!("/v1/cellules/perpignan/cases/{id}/notes"),
            Some(&app.token(COORD)),
            Some(json!({"audience": "cellule", "body": phone})),
        )
        .await;
    a.assert_problem(422);
    assert_eq!(a.body["errors"][0]["field"], "body");
    // A transition's reason.
    let a = app
        .transition(COORD, &id, json!({"to": "declined", "reason": phone}))
        .await;
    a.assert_problem(422);
    assert_eq!(a.body["errors"][0]["field"], "reason");
    // The schedule's place: an address is what a place is, a person's phone is not.
    let schedule = |location: &str| {
        json!({"rrule": "FREQ=MONTHLY;BYDAY=+2TH", "start_time": "14:00",
            "time_zone": "Europe/Paris", "duration_minutes": 120, "minutes_per_new_case": 20,
            "minutes_per_follow_up": 10, "location": location, "on_holiday": "next_week"})
    };
    let a = put(
        &app,
        "/schedule",
        schedule("Salle 2, chez M. Martin, 06 12 34 56 78"),
    )
    .await;
    a.assert_problem(422);
    let kinds: Vec<&str> = a.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["name", "phone"], "{}", a.text);
    let a = put(
        &app,
        "/schedule",
        schedule("Mairie, salle du conseil, 11 rue du Castillet"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
}
