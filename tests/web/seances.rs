//! The coordinator's *Séances* desk in a real browser, on both backends: from an ad-hoc
//! session's agenda (built, an item moved, published) to the meeting (opened on its day by
//! moving the clock, attendance, three decisions of which one corrected, closed) and the
//! approved compte rendu, whose PDF is downloaded and read back with `pdftotext`; axe-core and
//! a screenshot on every page of the desk. A member asking for the desk is refused.

use fantoccini::{Client, Locator};
use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::browse::{click, set_value, sign_in_as, text_of, wait_heading, wait_text};
use crate::helpers::{Backend, COORD, PSY, REF1, TestApp, referral};
use crate::support::{browser, browser_like, check_page, dev_sign_in, dev_web_app};

const STARTS_AT: &str = "2030-12-12T14:00:00+01:00";

async fn call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let a = app
        .request(
            method,
            &format!("/v1/cellules/perpignan{path}"),
            Some(&app.token(COORD)),
            body,
        )
        .await;
    assert!(a.status.as_u16() < 300, "{path}: {}", a.text);
    a.body
}

/// The schedule, a directory (care access in 66G03 to the CMP, housing to the CCAS), three
/// accepted cases and an ad-hoc session; answers the session's id and the three references.
async fn setup(app: &TestApp) -> (String, Vec<String>) {
    call(app, Method::PUT, "/schedule", Some(json!({"rrule": "FREQ=MONTHLY;BYDAY=+2TH", "start_time": "14:00", "time_zone": "Europe/Paris",
        "duration_minutes": 120, "minutes_per_new_case": 20, "minutes_per_follow_up": 10,
        "location": "Mairie, salle du conseil", "on_holiday": "next_week"}))).await;
    call(app, Method::PUT, "/interlocutors", Some(json!({"interlocutors": [
        {"id": "cmp-66g03", "name": "CMP 66G03", "sphere": "psychiatry", "kind": "cmp", "sectors": ["66G03"], "needs": ["care_access"]},
        {"id": "ccas", "name": "CCAS Perpignan", "sphere": "city", "kind": "ccas", "communes": ["66136"]}
    ]}))).await;
    call(app, Method::PUT, "/routing", Some(json!({"rules": [
        {"id": "soins-66g03", "needs": ["care_access"], "sectors": ["66G03"], "lead": "cmp-66g03"},
        {"id": "logement", "needs": ["housing"], "communes": ["66136"], "lead": "ccas"}
    ]}))).await;
    let mut references = Vec::new();
    for (urgency, need) in [
        ("urgent", "care_access"),
        ("priority", "housing"),
        ("routine", "care_access"),
    ] {
        let mut body = referral("Situation examinée en séance.");
        body["urgency"] = json!(urgency);
        body["needs"] = json!([need]);
        body["sector"] = json!("66G03");
        let a = app.refer(REF1, &body).await;
        assert_eq!(a.status, 201, "{}", a.text);
        let id = a.body["id"].as_str().expect("id").to_owned();
        app.move_case(&id, json!({"to": "accepted"})).await;
        references.push(a.body["reference"].as_str().expect("reference").to_owned());
    }
    let s = call(
        app,
        Method::POST,
        "/sessions",
        Some(json!({"starts_at": STARTS_AT})),
    )
    .await;
    (s["id"].as_str().expect("id").to_owned(), references)
}

/// The references of the agenda's rows, in order (empty while the page changes).
async fn agenda_order(b: &Client) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rows) = b.find_all(Locator::Css("#ordre-du-jour tbody th")).await else {
        return out;
    };
    for th in rows {
        match th.text().await {
            Ok(t) => out.push(t),
            Err(_) => return Vec::new(),
        }
    }
    out
}

/// Clicks `css` and waits for the session page's confirmation of the action.
pub(crate) async fn act(b: &Client, css: &str, confirmation: &str) {
    click(b, css).await;
    wait_text(b, "#fait", confirmation).await;
}

/// Fills the decision form of the current point and sends it; waits for the confirmation.
pub(crate) async fn decide(
    b: &Client,
    outcome: &str,
    interlocutor: &str,
    follow_up: &str,
    text: &str,
) {
    click(b, &format!("#issue option[value='{outcome}']")).await;
    click(b, &format!("#interlocuteur option[value='{interlocutor}']")).await;
    set_value(b, "suivi", follow_up).await;
    set_value(b, "texte", text).await;
    click(b, "#enregistrer").await;
    wait_text(b, ".succes", "est enregistrée").await;
}

pub(crate) fn pdf_text(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("compte-rendu.pdf");
    std::fs::write(&file, pdf).expect("write pdf");
    let out = std::process::Command::new("pdftotext")
        .arg("-layout")
        .arg(&file)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) is required by this test");
    assert!(out.status.success(), "pdftotext: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

async fn coordinator_desk(backend: Backend) {
    let web = dev_web_app(backend).await;
    let app = &web.app;
    app.standard_cellule().await;
    let (sid, references) = setup(app).await;
    let b = browser().await;
    let shot = |name: &str| format!("{backend:?}-seances-{name}").to_lowercase();

    // The coordinator signs in (development sign-in) and finds the desk from the cellule's home.
    sign_in_as(&b, &web.base, COORD).await;
    b.goto(&format!("{}/c/perpignan", web.base))
        .await
        .expect("cellule");
    wait_heading(&b, "Cellule perpignan").await;
    b.find(Locator::LinkText("Séances"))
        .await
        .expect("the desk's link")
        .click()
        .await
        .expect("click");
    wait_heading(&b, "Séances 20").await;
    b.goto(&format!("{}/c/perpignan/seances?annee=2030", web.base))
        .await
        .expect("2030");
    wait_heading(&b, "Séances 2030").await;
    assert!(text_of(&b, "table").await.contains("planifiée"));
    check_page(&b, &shot("01-liste")).await;
    click(&b, "table tbody th a").await;
    wait_heading(&b, "Séance du jeudi 12 décembre 2030").await;
    check_page(&b, &shot("02-seance")).await;

    // The agenda: built, the first item moved down, published.
    act(&b, "#construire", "construit").await;
    let built = agenda_order(&b).await;
    assert_eq!(built.len(), 3, "{built:?}");
    for r in &references {
        assert!(built.contains(r), "{r} in {built:?}");
    }
    assert!(text_of(&b, "#ordre-du-jour").await.contains("Règle n° 1"));
    act(&b, "#descendre-1", "ordre des points").await;
    let moved = agenda_order(&b).await;
    assert_eq!(
        moved,
        vec![built[1].clone(), built[0].clone(), built[2].clone()]
    );
    check_page(&b, &shot("03-ordre-du-jour")).await;
    act(&b, "#publier", "publié").await;
    wait_text(&b, "#statut", "ordre du jour publié").await;

    // After publication: an unknown reference is refused in French (422); the last item is
    // withdrawn, then added back by its reference.
    let field = b.find(Locator::Css("#reference")).await.expect("field");
    field.send_keys("PER-1999-0042").await.expect("type");
    click(&b, "#ajouter").await;
    wait_text(&b, "#erreurs", "Aucune situation de cette cellule").await;
    act(&b, "#retirer-3", "retiré").await;
    assert_eq!(agenda_order(&b).await, moved[..2].to_vec());
    let field = b.find(Locator::Css("#reference")).await.expect("field");
    field.send_keys(&moved[2]).await.expect("type");
    act(&b, "#ajouter", "ajoutée").await;
    assert_eq!(agenda_order(&b).await, moved);

    // Too early: the page says so in French. Then the clock moves to the session's day.
    click(&b, "#ouvrir").await;
    wait_text(&b, "#erreurs", "le jour même").await;
    check_page(&b, &shot("04-trop-tot")).await;
    app.travel_to(
        chrono::DateTime::parse_from_rfc3339(STARTS_AT)
            .expect("start")
            .with_timezone(&chrono::Utc),
    );
    // Four years later the web session has long expired: the coordinator signs in again.
    sign_in_as(&b, &web.base, COORD).await;
    b.goto(&format!("{}/c/perpignan/seances/{sid}", web.base))
        .await
        .expect("session");
    wait_heading(&b, "Séance du").await;
    act(&b, "#ouvrir", "ouverte").await;
    wait_text(&b, "#statut", "en séance").await;
    click(
        &b,
        "input[name^='participant-'] ~ .option input[value='excused']",
    )
    .await;
    act(&b, "#presences button[type=submit]", "présences").await;
    check_page(&b, &shot("05-en-seance")).await;

    // Three decisions, one per screen; the last one corrected.
    b.find(Locator::LinkText("En séance : examiner les points"))
        .await
        .expect("the meeting's link")
        .click()
        .await
        .expect("click");
    wait_heading(&b, "En séance — point 1 sur 3").await;
    check_page(&b, &shot("06-point")).await;
    decide(&b, "deferred", "", "", "").await;
    click(&b, "#point-suivant").await;
    wait_heading(&b, "En séance — point 2 sur 3").await;
    // A routed decision without its follow-up date comes back in French (422).
    click(&b, "#issue option[value='routed']").await;
    click(&b, "#interlocuteur option[value='CMP 66G03']").await;
    click(&b, "#enregistrer").await;
    wait_text(&b, "#erreurs", "date de suivi").await;
    check_page(&b, &shot("07-point-erreur")).await;
    decide(
        &b,
        "routed",
        "CMP 66G03",
        "2031-01-15",
        "Rendez-vous au CMP.",
    )
    .await;
    click(&b, "#point-suivant").await;
    wait_heading(&b, "En séance — point 3 sur 3").await;
    decide(&b, "follow_up", "", "2031-02-01", "Revoir en février.").await;
    wait_text(&b, "#decision h2", "Corriger la décision").await;
    decide(&b, "follow_up", "", "2031-03-05", "Revoir en mars plutôt.").await;
    wait_text(&b, "#historique + ul", "Version 2").await;
    check_page(&b, &shot("08-correction")).await;

    // Closed, then the compte rendu approved.
    b.goto(&format!("{}/c/perpignan/seances/{sid}", web.base))
        .await
        .expect("session");
    act(&b, "#clore", "close").await;
    wait_text(&b, "#statut", "tenue").await;
    b.find(Locator::LinkText("Compte rendu"))
        .await
        .expect("the minutes' link")
        .click()
        .await
        .expect("click");
    wait_heading(&b, "Compte rendu de la séance").await;
    assert!(text_of(&b, "main").await.contains("Projet"));
    check_page(&b, &shot("09-compte-rendu")).await;
    click(&b, "#approuver").await;
    wait_text(&b, "main", "Compte rendu approuvé").await;
    let page = text_of(&b, "main").await;
    for r in &references {
        assert!(page.contains(r), "{r} in the minutes");
    }
    assert!(page.contains("version 2"), "the corrected decision: {page}");
    check_page(&b, &shot("10-approuve")).await;

    // The PDF, downloaded as an attachment.
    let client = browser_like();
    dev_sign_in(&client, &web.base, COORD).await;
    let r = client
        .get(format!(
            "{}/c/perpignan/seances/{sid}/compte-rendu.pdf",
            web.base
        ))
        .send()
        .await
        .expect("pdf");
    assert_eq!(r.status(), 200);
    let disposition = r
        .headers()
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    let bytes = r.bytes().await.expect("bytes");
    assert!(bytes.starts_with(b"%PDF-"));
    let text = pdf_text(&bytes);
    for r in &references {
        assert!(text.contains(r.as_str()), "{r} in the PDF: {text}");
    }

    // A member is refused the desk, as the API refuses them its management.
    let member = browser_like();
    dev_sign_in(&member, &web.base, PSY).await;
    for path in ["", "/seance?point=1", "/compte-rendu", "/compte-rendu.pdf"] {
        let r = member
            .get(format!("{}/c/perpignan/seances/{sid}{path}", web.base))
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), 403, "{path}");
    }
}

/// The calendar's side of the desk: the schedule in words and edited, planning the coming months, an
/// extra session (refused in the past, in French), and cancelling one (refused without its
/// confirmation, then done).
async fn planning_and_cancelling(backend: Backend) {
    let web = dev_web_app(backend).await;
    let app = &web.app;
    app.standard_cellule().await;
    setup(app).await;
    let b = browser().await;
    let shot = |name: &str| format!("{backend:?}-calendrier-{name}").to_lowercase();
    sign_in_as(&b, &web.base, COORD).await;
    b.goto(&format!("{}/c/perpignan/seances", web.base))
        .await
        .expect("sessions");
    wait_heading(&b, "Séances").await;
    let calendar = text_of(&b, "#calendrier-cellule").await;
    assert!(
        calendar.contains("le deuxième jeudi de chaque mois"),
        "{calendar}"
    );
    assert!(calendar.contains("Mairie, salle du conseil"), "{calendar}");
    // The schedule's form: a length out of range comes back on its field; then the last
    // Friday of each month, said in words on the sessions' page.
    click(&b, "#modifier-calendrier").await;
    wait_heading(&b, "Calendrier des séances").await;
    check_page(&b, &shot("00-calendrier")).await;
    click(&b, "#rang option[value='-1']").await;
    click(&b, "#jour option[value='FR']").await;
    set_value(&b, "duree", "5").await;
    click(&b, "#enregistrer-calendrier").await;
    wait_text(&b, "#erreurs", "entre 15 et 600").await;
    set_value(&b, "duree", "150").await;
    click(&b, "#enregistrer-calendrier").await;
    wait_text(&b, "#fait", "calendrier est enregistré").await;
    let calendar = text_of(&b, "#calendrier-cellule").await;
    assert!(
        calendar.contains("le dernier vendredi de chaque mois"),
        "{calendar}"
    );
    assert!(calendar.contains("2 h 30"), "{calendar}");
    let schedule = call(app, Method::GET, "/schedule", None).await;
    assert_eq!(schedule["rrule"], "FREQ=MONTHLY;BYDAY=-1FR");
    assert_eq!(schedule["location"], "Mairie, salle du conseil");
    let planned = |list: Value| list.as_array().map_or(0, Vec::len);
    let before = planned(call(app, Method::GET, "/sessions", None).await);

    // Planning: a month count out of range comes back in French; then three months.
    set_value(&b, "mois", "40").await;
    click(&b, "#planifier").await;
    wait_text(&b, "#erreurs", "entre 1 et 36").await;
    check_page(&b, &shot("01-erreur")).await;
    set_value(&b, "mois", "3").await;
    click(&b, "#planifier").await;
    wait_text(&b, "#fait", "planifiées").await;
    let after = planned(call(app, Method::GET, "/sessions", None).await);
    assert!(after > before, "{before} then {after}");

    // An extra session: in the past, refused on its field, what was typed kept; then one to
    // come, and its page.
    set_value(&b, "date", "2001-01-11").await;
    set_value(&b, "heure", "14:00").await;
    set_value(&b, "lieu", "Salle B").await;
    click(&b, "#ajouter-seance").await;
    wait_text(&b, "#erreurs", "dans le futur").await;
    let kept = b
        .find(Locator::Css("#lieu"))
        .await
        .expect("field")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(kept.as_deref(), Some("Salle B"));
    check_page(&b, &shot("02-supplementaire-erreur")).await;
    set_value(&b, "date", "2031-01-09").await;
    set_value(&b, "heure", "10:30").await;
    click(&b, "#ajouter-seance").await;
    wait_heading(&b, "Séance du jeudi 9 janvier 2031").await;
    assert!(text_of(&b, "#statut").await.contains("Salle B"));

    // Cancelling: the box unticked is refused, ticked the session is cancelled.
    click(&b, "#annuler").await;
    wait_text(&b, "#erreurs", "Cochez la case").await;
    wait_text(&b, "#statut", "planifiée").await;
    click(&b, "#confirmer").await;
    act(&b, "#annuler", "annulée").await;
    wait_text(&b, "#statut", "annulée").await;
    check_page(&b, &shot("03-annulee")).await;
    assert!(b.find(Locator::Css("#annuler")).await.is_err());
}

backend_tests!(coordinator_desk, planning_and_cancelling);
