//! The desks in a real browser, axe-core and a screenshot on every page, on both backends: the
//! coordinator screens two referrals (accepts one, declines one with its reason, the refusal
//! without a reason shown first); a city member sees the published agenda, a case with its city
//! and cellule notes, writes a note, follows its organisation's actions and reads the approved
//! minutes, and no psychiatry text reaches any page it opens; a guest sees only its invited
//! item; once the window after the session has passed, the member sees nothing of the case.

use fantoccini::{Client, Locator};
use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::browse::{click, sign_in_as, text_of, type_in, wait_heading};
use crate::helpers::{CITY, COORD, GUEST, REF1, TestApp, referral};
use crate::support::{browser, browser_like, check_page, dev_sign_in, dev_web_app};

const COORD_PSY: &str = "coord-psy";
/// Written in a psychiatry note and a psychiatry decision text: never in a city member's page.
const PSY_CANARY: &str = "PSYCANARY";

async fn call(app: &TestApp, method: Method, path: &str, sub: &str, body: Option<Value>) -> Value {
    let a = app
        .request(
            method,
            &format!("/v1/cellules/perpignan{path}"),
            Some(&app.token(sub)),
            body,
        )
        .await;
    assert!(a.status.as_u16() < 300, "{path}: {} {}", a.status, a.text);
    a.body
}

/// The schedule and the routing directory of the API's session tests.
async fn directory(app: &TestApp) {
    call(
        app,
        Method::PUT,
        "/schedule",
        COORD,
        Some(json!({"rrule": "FREQ=MONTHLY;BYDAY=+2TH",
        "start_time": "14:00", "time_zone": "Europe/Paris", "duration_minutes": 120,
        "minutes_per_new_case": 20, "minutes_per_follow_up": 10,
        "location": "Mairie, salle du conseil", "on_holiday": "next_week"})),
    )
    .await;
    call(app, Method::PUT, "/interlocutors", COORD, Some(json!({"interlocutors": [
        {"id": "cmp-66g03", "name": "CMP 66G03", "sphere": "psychiatry", "kind": "cmp", "sectors": ["66G03"], "needs": ["care_access"]},
        {"id": "empp", "name": "EMPP", "sphere": "psychiatry", "kind": "mobile_team", "guest": true},
        {"id": "ccas", "name": "CCAS Perpignan", "sphere": "city", "kind": "ccas", "communes": ["66136"]}
    ]}))).await;
    call(app, Method::PUT, "/routing", COORD, Some(json!({"rules": [
        {"id": "soins-66g03", "needs": ["care_access"], "sectors": ["66G03"], "lead": "cmp-66g03", "others": ["empp"]},
        {"id": "logement", "needs": ["housing"], "communes": ["66136"], "lead": "ccas"}
    ]}))).await;
}

/// A referral of `needs` in `sector`, accepted; answers its reference.
async fn accepted(app: &TestApp, needs: Value, sector: &str, situation: &str) -> String {
    let mut body = referral(situation);
    body["needs"] = needs;
    body["sector"] = json!(sector);
    let a = app.refer(REF1, &body).await;
    assert_eq!(a.status, 201, "{}", a.text);
    let id = a.body["id"].as_str().expect("id").to_owned();
    app.move_case(&id, json!({"to": "accepted"})).await;
    a.body["reference"].as_str().expect("reference").to_owned()
}

/// Goes to `path`, waits for `heading`, checks the page (axe-core, screenshot) and answers its
/// source.
pub(crate) async fn visit(b: &Client, base: &str, path: &str, heading: &str, shot: &str) -> String {
    b.goto(&format!("{base}{path}")).await.expect("page");
    wait_heading(b, heading).await;
    check_page(b, shot).await;
    b.source().await.expect("source")
}

async fn desks(backend: crate::helpers::Backend) {
    let web = dev_web_app(backend).await;
    let app = &web.app;
    let base = web.base.clone();
    app.standard_cellule().await;
    app.add_member(
        "perpignan",
        COORD_PSY,
        json!({"role": "coordinator", "sphere": "psychiatry", "organisation": "CMP 66G03"}),
    )
    .await;
    app.accept_charter(COORD_PSY).await;
    directory(app).await;
    let shot = |name: &str| format!("{backend:?}-desk-{name}").to_lowercase();
    let b = browser().await;

    // Two referrals of the same person (same identity): each is the other's possible duplicate.
    let mut refs = Vec::new();
    for text in [
        "Première saisine : impayés de loyer.",
        "Seconde saisine : rupture de soins.",
    ] {
        let mut body = referral(text);
        body["identity"] =
            json!({"last_name": "Durand", "first_name": "Paul", "birth_date": "1980-02-03"});
        let a = app.refer(REF1, &body).await;
        assert_eq!(a.status, 201, "{}", a.text);
        refs.push(a.body["reference"].as_str().expect("reference").to_owned());
    }
    let (first, second) = (&refs[0], &refs[1]);

    // The coordinator screens them.
    sign_in_as(&b, &base, COORD).await;
    b.goto(&format!("{base}/c/perpignan")).await.expect("home");
    wait_heading(&b, "Cellule perpignan").await;
    click(&b, "a[href='/c/perpignan/a-examiner']").await;
    wait_heading(&b, "Saisines à examiner").await;
    check_page(&b, &shot("01-a-examiner")).await;
    let page = b.source().await.expect("source");
    assert!(page.contains("Première saisine") && page.contains("Seconde saisine"));
    assert!(
        page.contains(&format!("Doublon possible : {second}")),
        "duplicates shown"
    );
    b.find(Locator::XPath(&format!(
        "//button[normalize-space()='Retenir la saisine {first}']"
    )))
    .await
    .expect("accept button")
    .click()
    .await
    .expect("click");
    b.wait()
        .for_element(Locator::Css(".succes"))
        .await
        .expect("confirmation");
    assert!(text_of(&b, ".succes").await.contains(first));
    check_page(&b, &shot("02-saisine-retenue")).await;
    let decline = format!("//button[normalize-space()='Ne pas retenir la saisine {second}']");
    b.find(Locator::XPath(&decline))
        .await
        .expect("decline")
        .click()
        .await
        .expect("click");
    b.wait()
        .for_element(Locator::Css("#erreurs"))
        .await
        .expect("the error summary");
    assert!(text_of(&b, "#erreurs").await.contains("motif"));
    check_page(&b, &shot("03-refus-sans-motif")).await;
    type_in(
        &b,
        &format!("#motif-{second}"),
        "Relève du droit commun : orientation vers le CCAS.",
    )
    .await;
    // The message for the referrer is guarded too: its identifier is marked on its own field,
    // the reason as typed kept.
    type_in(
        &b,
        &format!("#message-{second}"),
        "Appelez le 06 12 34 56 78.",
    )
    .await;
    b.find(Locator::XPath(&decline))
        .await
        .expect("decline")
        .click()
        .await
        .expect("click");
    b.wait()
        .for_element(Locator::Css(&format!("#message-{second}-erreur")))
        .await
        .expect("the message's error");
    let kept = b
        .find(Locator::Css(&format!("#motif-{second}")))
        .await
        .expect("reason")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(
        kept.as_deref(),
        Some("Relève du droit commun : orientation vers le CCAS.")
    );
    b.find(Locator::Css(&format!("#message-{second}")))
        .await
        .expect("message")
        .clear()
        .await
        .expect("cleared");
    type_in(
        &b,
        &format!("#message-{second}"),
        "Adressez-vous au CCAS de votre commune.",
    )
    .await;
    b.find(Locator::XPath(&decline))
        .await
        .expect("decline")
        .click()
        .await
        .expect("click");
    b.wait()
        .for_element(Locator::Css(".succes"))
        .await
        .expect("confirmation");
    assert!(text_of(&b, ".succes").await.contains(second));
    // The referrer reads the message, never the reason.
    let referrer = browser_like();
    dev_sign_in(&referrer, &web.base, REF1).await;
    let mine = referrer
        .get(format!("{}/c/perpignan/saisines", web.base))
        .send()
        .await
        .expect("my referrals")
        .text()
        .await
        .expect("text");
    assert!(mine.contains("Adressez-vous au CCAS de votre commune."));
    assert!(!mine.contains("droit commun"));
    // The case's history keeps both, for the coordinator.
    let coordinator = browser_like();
    dev_sign_in(&coordinator, &web.base, COORD).await;
    let history = coordinator
        .get(format!("{}/c/perpignan/situations/{second}", web.base))
        .send()
        .await
        .expect("case page")
        .text()
        .await
        .expect("text");
    assert!(history.contains("Adressez-vous au CCAS de votre commune."));
    assert!(history.contains("Relève du droit commun"));
    let statuses = app
        .get("/v1/cellules/perpignan/cases", Some(&app.token(COORD)))
        .await;
    for (reference, status) in [(first, "accepted"), (second, "declined")] {
        assert!(
            statuses.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .any(|c| c["reference"] == reference.as_str() && c["status"] == status),
            "{reference} {status}: {}",
            statuses.text
        );
    }

    // A published agenda: care (CMP lead, EMPP invited), housing (CCAS lead).
    let care = accepted(app, json!(["care_access"]), "66G03", "Rupture de soins.").await;
    let housing = accepted(app, json!(["housing"]), "66G01", "Impayés de loyer.").await;
    let sid = call(
        app,
        Method::POST,
        "/sessions",
        COORD,
        Some(json!({"starts_at": "2030-12-12T14:00:00+01:00"})),
    )
    .await["id"]
        .as_str()
        .expect("sid")
        .to_owned();
    for step in ["agenda/build", "agenda/publish"] {
        call(
            app,
            Method::POST,
            &format!("/sessions/{sid}/{step}"),
            COORD,
            None,
        )
        .await;
    }
    // The cellule's home names the next session to whom manages the sessions, to no one else.
    for (who, named) in [(COORD, true), (CITY, false)] {
        let client = browser_like();
        dev_sign_in(&client, &base, who).await;
        let home = client
            .get(format!("{base}/c/perpignan"))
            .send()
            .await
            .expect("home")
            .text()
            .await
            .expect("text");
        assert_eq!(
            home.contains(&format!("/c/perpignan/seances/{sid}")),
            named,
            "{who}"
        );
    }
    let housing_id = call(app, Method::GET, &format!("/cases/{housing}"), COORD, None).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for (who, audience, text) in [
        (
            COORD,
            "city",
            "Note VILLE : le bailleur accepte un plan d'apurement.",
        ),
        (COORD, "cellule", "Note CELLULE : point en séance."),
        (
            COORD_PSY,
            "psychiatry",
            "Note psychiatrie PSYCANARY : suivi au CMP.",
        ),
    ] {
        call(
            app,
            Method::POST,
            &format!("/cases/{housing_id}/notes"),
            who,
            Some(json!({"audience": audience, "body": text})),
        )
        .await;
    }

    // The city member: agenda, case, note, notices. No psychiatry text in any page.
    let mut sources = Vec::new();
    sign_in_as(&b, &base, CITY).await;
    let page = visit(
        &b,
        &base,
        "/c/perpignan/mes-seances",
        "Mes séances",
        &shot("04-mes-seances"),
    )
    .await;
    assert!(
        page.contains(&care) && page.contains(&housing),
        "published items shown"
    );
    assert!(page.contains("calendrier.ics"));
    sources.push(page);
    let case_path = format!("/c/perpignan/situations/{housing}");
    let page = visit(
        &b,
        &base,
        &case_path,
        &format!("Situation {housing}"),
        &shot("05-situation"),
    )
    .await;
    assert!(
        page.contains("Note VILLE") && page.contains("Note CELLULE"),
        "city and cellule notes"
    );
    sources.push(page);
    click(&b, "#audience").await;
    type_in(&b, "#texte", "Joindre M. Durand au 06 12 34 56 78.").await;
    click(&b, "form.formulaire button[type=submit]").await;
    b.wait()
        .for_element(Locator::Css("#erreurs"))
        .await
        .expect("the error summary");
    assert!(
        !b.find_all(Locator::Css(".marquage mark"))
            .await
            .expect("marks")
            .is_empty()
    );
    check_page(&b, &shot("06-note-refusee")).await;
    sources.push(b.source().await.expect("source"));
    type_in(&b, "#texte", "Rendez-vous pris avec le bailleur.").await;
    click(&b, "form.formulaire button[type=submit]").await;
    wait_heading(&b, &format!("Situation {housing}")).await;
    assert!(
        text_of(&b, ".succes")
            .await
            .contains("note est enregistrée")
    );
    sources.push(b.source().await.expect("source"));
    let page = visit(
        &b,
        &base,
        "/c/perpignan/avis",
        "Mes avis par courriel",
        &shot("07-avis"),
    )
    .await;
    sources.push(page);
    click(&b, "#avis-reminder").await;
    click(&b, "form.formulaire button[type=submit]").await;
    b.wait()
        .for_element(Locator::Css(".succes"))
        .await
        .expect("saved");
    let prefs = app
        .get("/v1/cellules/perpignan/me/notices", Some(&app.token(CITY)))
        .await;
    assert!(prefs.text.contains("reminder"), "{}", prefs.text);

    // The guest: only its invited item.
    sign_in_as(&b, &base, GUEST).await;
    let page = visit(
        &b,
        &base,
        "/c/perpignan/mes-seances",
        "Mes séances",
        &shot("08-invite"),
    )
    .await;
    assert!(page.contains(&care), "the invited item");
    assert!(!page.contains(&housing), "nothing else");
    b.goto(&format!("{base}{case_path}")).await.expect("page");
    wait_heading(&b, "Introuvable").await;

    // The meeting: a decision on housing with a psychiatry-free city text and a CCAS action,
    // a psychiatry text on care; the minutes approved.
    app.travel_to(
        chrono::DateTime::parse_from_rfc3339("2030-12-12T14:05:00+01:00")
            .expect("time")
            .with_timezone(&chrono::Utc),
    );
    call(
        app,
        Method::POST,
        &format!("/sessions/{sid}/open"),
        COORD,
        None,
    )
    .await;
    call(app, Method::POST, &format!("/sessions/{sid}/items/{housing}/decision"), COORD,
        Some(json!({"outcome": "routed", "interlocutor": "ccas", "follow_up_date": "2031-02-01",
            "actions": [{"what": "Visite à domicile", "owner": "CCAS Perpignan", "due": "2030-12-20"}],
            "text": "Texte ville : visite prévue.", "text_audience": "city"}))).await;
    call(
        app,
        Method::POST,
        &format!("/sessions/{sid}/items/{care}/decision"),
        COORD_PSY,
        Some(
            json!({"outcome": "routed", "interlocutor": "cmp-66g03", "follow_up_date": "2031-02-01",
            "text": "Texte PSYCANARY réservé à la psychiatrie.", "text_audience": "psychiatry"}),
        ),
    )
    .await;
    for step in ["close", "minutes/approve"] {
        call(
            app,
            Method::POST,
            &format!("/sessions/{sid}/{step}"),
            COORD,
            None,
        )
        .await;
    }
    // Eight days later: the action is overdue; the minutes are there.
    app.travel_to(
        chrono::DateTime::parse_from_rfc3339("2030-12-21T10:00:00+01:00")
            .expect("time")
            .with_timezone(&chrono::Utc),
    );
    sign_in_as(&b, &base, CITY).await;
    let page = visit(
        &b,
        &base,
        "/c/perpignan/suivis",
        "Suivis de mon organisation",
        &shot("09-suivis"),
    )
    .await;
    assert!(
        page.contains("Visite à domicile") && page.contains("en retard"),
        "overdue, in words"
    );
    sources.push(page);
    let page = visit(
        &b,
        &base,
        "/c/perpignan/mes-seances",
        "Mes séances",
        &shot("10-mes-seances-apres"),
    )
    .await;
    let minutes_path = format!("/c/perpignan/comptes-rendus/{sid}");
    assert!(
        page.contains(&minutes_path),
        "the approved minutes are linked"
    );
    sources.push(page);
    b.goto(&format!("{base}{minutes_path}"))
        .await
        .expect("page");
    b.wait()
        .for_element(Locator::Css("a[href$='compte-rendu.pdf']"))
        .await
        .expect("pdf link");
    assert!(
        text_of(&b, "h1")
            .await
            .starts_with("Compte rendu de la séance du")
    );
    let minutes_heading = text_of(&b, "h1").await;
    check_page(&b, &shot("11-compte-rendu")).await;
    let page = b.source().await.expect("source");
    assert!(page.contains("Texte ville : visite prévue.") && page.contains(&care));
    sources.push(page);
    let page = visit(
        &b,
        &base,
        &case_path,
        &format!("Situation {housing}"),
        &shot("12-situation-decidee"),
    )
    .await;
    assert!(page.contains("Orientée"), "the decision");
    sources.push(page);
    // The PDF and the calendar, as the browser would download them.
    let client = browser_like();
    dev_sign_in(&client, &base, CITY).await;
    let pdf = client
        .get(format!("{base}{minutes_path}/compte-rendu.pdf"))
        .send()
        .await
        .expect("pdf");
    assert_eq!(pdf.status(), 200);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert!(pdf.bytes().await.expect("pdf").starts_with(b"%PDF"));
    let ics = client
        .get(format!(
            "{base}/c/perpignan/mes-seances/{sid}/calendrier.ics"
        ))
        .send()
        .await
        .expect("calendar");
    assert_eq!(ics.status(), 200);
    assert!(
        ics.headers()["content-type"]
            .to_str()
            .is_ok_and(|v| v.starts_with("text/calendar"))
    );
    let ics = ics.text().await.expect("calendar");
    assert!(
        ics.contains("BEGIN:VCALENDAR") && ics.contains(&housing),
        "{ics}"
    );
    assert!(
        !ics.contains("Impayés"),
        "references only, never case content"
    );
    for source in &sources {
        assert!(
            !source.contains(PSY_CANARY),
            "a psychiatry text in a city member's page"
        );
    }

    // Past the window (30 days after the session): care is no longer the member's to see.
    app.travel_to(
        chrono::DateTime::parse_from_rfc3339("2031-01-20T10:00:00+01:00")
            .expect("time")
            .with_timezone(&chrono::Utc),
    );
    sign_in_as(&b, &base, CITY).await;
    let care_path = format!("/c/perpignan/situations/{care}");
    let page = visit(
        &b,
        &base,
        &care_path,
        "Introuvable",
        &shot("13-fenetre-passee"),
    )
    .await;
    assert!(!page.contains("Rupture de soins"));
    let minutes_page = visit(
        &b,
        &base,
        &minutes_path,
        &minutes_heading,
        &shot("13b-compte-rendu-fenetre-passee"),
    )
    .await;
    assert!(
        minutes_page.contains(&housing) && !minutes_page.contains(&care),
        "nor in the minutes"
    );
    let missing = visit(
        &b,
        &base,
        "/c/perpignan/situations/PER-2099-9999",
        "Introuvable",
        &shot("14-introuvable"),
    )
    .await;
    let text = |s: &str| s.split("<main").nth(1).unwrap_or("").to_owned();
    assert_eq!(
        text(&page),
        text(&missing),
        "the same page as a missing case"
    );
    b.client.clone().close().await.expect("browser closed");
}
backend_tests!(desks);
