//! The coordinator's *Situations* pages in a real browser, axe-core and a screenshot on every
//! page, on both backends: the list filtered (by urgency), a wrong filter refused in French, the
//! search by reference (found: the case opens; unknown: the list says so), a case moved along
//! its lifecycle from its page (refusals first: a closing without its reason, a reason with a
//! phone number, a follow-up without its date — each shown in French with what was typed kept),
//! its history, and an erasure confirmed. A psychiatry member gets for a case it may not see the
//! page of a missing one, and its search says no case has that reference; the city member the
//! case is routed to sees it, without the coordinator's forms.

use fantoccini::{Client, Locator};
use reqwest::Method;
use serde_json::json;

use crate::backend_tests;
use crate::browse::{click, sign_in_as, text_of, type_in, wait_heading, wait_text};
use crate::desk::visit;
use crate::helpers::{CITY, COORD, PSY, REF1, TestApp, referral};
use crate::support::{browser, check_page, dev_web_app};

/// Pages must stay small.
const MAX_PAGE: usize = 100_000;

/// A referral of `urgency`; answers its reference.
async fn refer(app: &TestApp, urgency: &str, situation: &str) -> String {
    let mut body = referral(situation);
    body["urgency"] = json!(urgency);
    let a = app.refer(REF1, &body).await;
    assert_eq!(a.status, 201, "{}", a.text);
    a.body["reference"].as_str().expect("reference").to_owned()
}

/// Waits until the current URL contains `needle`.
async fn wait_url(b: &Client, needle: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(url) = b.current_url().await {
            if url.as_str().contains(needle) {
                return;
            }
            seen = url.to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("expected an address with « {needle} », still at « {seen} »");
}

async fn source(b: &Client) -> String {
    let page = b.source().await.expect("source");
    assert!(page.len() < MAX_PAGE, "a page of {} bytes", page.len());
    page
}

/// Submits the lifecycle form of the step to `to`.
async fn step(b: &Client, to: &str) {
    click(
        b,
        &format!("form:has(input[name='vers'][value='{to}']) button[type=submit]"),
    )
    .await;
}

async fn situations(backend: crate::helpers::Backend) {
    let web = dev_web_app(backend).await;
    let app = &web.app;
    let base = web.base.clone();
    app.standard_cellule().await;
    let put = app
        .request(
            Method::PUT,
            "/v1/cellules/perpignan/interlocutors",
            Some(&app.token(COORD)),
            Some(json!({"interlocutors": [
                {"id": "ccas", "name": "CCAS Perpignan", "sphere": "city", "kind": "ccas", "communes": ["66136"]}
            ]})),
        )
        .await;
    assert!(put.status.is_success(), "{}", put.text);
    let urgent = refer(app, "urgent", "Situation urgente : expulsion imminente.").await;
    let routine = refer(app, "routine", "Situation habituelle : isolement.").await;
    let shot = |name: &str| format!("{backend:?}-situations-{name}").to_lowercase();
    let b = browser().await;

    // The coordinator's list, from the navigation; filtered by urgency.
    sign_in_as(&b, &base, COORD).await;
    b.goto(&format!("{base}/c/perpignan")).await.expect("home");
    wait_heading(&b, "Cellule perpignan").await;
    click(&b, "nav a[href='/c/perpignan/situations']").await;
    wait_heading(&b, "Situations").await;
    check_page(&b, &shot("01-liste")).await;
    let page = source(&b).await;
    assert!(page.contains(&urgent) && page.contains(&routine), "both");
    assert!(!page.contains("expulsion"), "no free text in the list");
    click(&b, "#urgence option[value='urgent']").await;
    click(
        &b,
        "form[aria-label='Filtres de la liste'] button[type=submit]",
    )
    .await;
    wait_url(&b, "urgence=urgent").await;
    check_page(&b, &shot("02-liste-filtree")).await;
    let page = source(&b).await;
    assert!(page.contains(&urgent), "the urgent case");
    assert!(!page.contains(&routine), "not the routine one");
    let picked = b
        .find(Locator::Css("#urgence"))
        .await
        .expect("urgency filter")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(picked.as_deref(), Some("urgent"), "filter kept");

    // A wrong filter: the page, a French message, 422 (checked by the page matrix too).
    let page = visit(
        &b,
        &base,
        "/c/perpignan/situations?du=2026-02-30",
        "Situations",
        &shot("03-filtre-invalide"),
    )
    .await;
    assert!(page.contains("Date invalide"), "French message");
    assert!(text_of(&b, "#erreurs").await.contains("Date invalide"));

    // The search: an unknown reference, then the urgent one, which opens.
    type_in(&b, "#reference", "PER-2099-9999").await;
    click(&b, "form[role=search] button[type=submit]").await;
    wait_text(
        &b,
        "#reference-inconnue",
        "Aucune situation ne porte la référence « PER-2099-9999 »",
    )
    .await;
    check_page(&b, &shot("04-reference-inconnue")).await;
    type_in(&b, "#reference", &urgent.to_lowercase()).await;
    click(&b, "form[role=search] button[type=submit]").await;
    let case_heading = format!("Situation {urgent}");
    wait_heading(&b, &case_heading).await;
    check_page(&b, &shot("05-situation")).await;
    let page = source(&b).await;
    assert!(page.contains("Aucun changement de statut depuis l'envoi."));
    assert!(
        !page.contains("journal/situation"),
        "the coordinator does not read the access log"
    );

    // Retained; then on the agenda.
    step(&b, "accepted").await;
    wait_text(&b, ".succes", "Statut modifié").await;
    wait_text(&b, "#historique + ol", "Retenue par la coordination").await;
    check_page(&b, &shot("06-retenue")).await;
    step(&b, "scheduled").await;
    wait_text(&b, "#historique + ol", "Inscrite à l'ordre du jour").await;

    // Closing without its reason: refused, in French.
    step(&b, "closed").await;
    wait_text(&b, "#erreurs", "Indiquez le motif").await;
    check_page(&b, &shot("07-cloture-sans-motif")).await;
    assert_eq!(
        b.find(Locator::Css("#motif-closed"))
            .await
            .expect("reason field")
            .attr("aria-invalid")
            .await
            .expect("attribute")
            .as_deref(),
        Some("true")
    );
    // A phone number in the reason: refused, the text kept to be corrected.
    let with_phone = "Joindre la famille au 06 12 34 56 78.";
    type_in(&b, "#motif-closed", with_phone).await;
    step(&b, "closed").await;
    wait_text(&b, "#erreurs", "numéro").await;
    let kept = b
        .find(Locator::Css("#motif-closed"))
        .await
        .expect("reason field")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(kept.as_deref(), Some(with_phone), "what was typed is kept");
    check_page(&b, &shot("08-motif-identifiant")).await;
    // A follow-up without its date: refused, the reason and the organisation kept.
    type_in(&b, "#motif-in_follow_up", "Orientation vers le CCAS.").await;
    click(
        &b,
        "#orientation-in_follow_up option[value='CCAS Perpignan']",
    )
    .await;
    step(&b, "in_follow_up").await;
    wait_text(&b, "#erreurs", "date du prochain point de suivi").await;
    let page = source(&b).await;
    assert!(
        page.contains(">Orientation vers le CCAS.</textarea>"),
        "kept"
    );
    let routed = b
        .find(Locator::Css("#orientation-in_follow_up"))
        .await
        .expect("organisation field")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(routed.as_deref(), Some("CCAS Perpignan"), "kept");
    check_page(&b, &shot("09-suivi-sans-date")).await;
    b.execute(
        "document.querySelector('#suivi-in_follow_up').value = '2031-01-15';",
        vec![],
    )
    .await
    .expect("date set");
    step(&b, "in_follow_up").await;
    wait_text(&b, ".succes", "Statut modifié").await;
    wait_text(&b, "#historique + ol", "En suivi").await;
    check_page(&b, &shot("10-en-suivi")).await;
    let history = text_of(&b, "#historique + ol").await;
    assert!(
        history.contains("Orientation vers le CCAS.") && history.contains(COORD),
        "{history}"
    );
    assert!(text_of(&b, ".fiche").await.contains("15/01/2031"));
    let case = app
        .get(
            &format!("/v1/cellules/perpignan/cases/{urgent}"),
            Some(&app.token(COORD)),
        )
        .await;
    assert_eq!(case.body["status"], "in_follow_up", "{}", case.text);
    assert_eq!(case.body["routed_org"], "CCAS Perpignan", "{}", case.text);
    assert_eq!(
        app.count_rows(
            "SELECT count(*) FROM audit_entries WHERE action = 'transition_case' AND outcome = 'allowed' AND actor = $1",
            COORD
        )
        .await,
        3,
        "each step is in the audit log, as through the API"
    );

    // The routine case erased, once confirmed.
    let routine_path = format!("/c/perpignan/situations/{routine}");
    visit(
        &b,
        &base,
        &routine_path,
        &format!("Situation {routine}"),
        &shot("11-avant-effacement"),
    )
    .await;
    click(&b, "section[aria-labelledby=effacer] button[type=submit]").await;
    wait_text(&b, "#erreurs", "confirmer l'effacement").await;
    check_page(&b, &shot("12-effacement-non-confirme")).await;
    click(&b, "#confirmation-effacement").await;
    click(&b, "section[aria-labelledby=effacer] button[type=submit]").await;
    wait_heading(&b, "Situations").await;
    wait_text(&b, ".succes", &format!("{routine} est effacée")).await;
    check_page(&b, &shot("13-effacee")).await;
    let page = source(&b).await;
    assert!(!page.contains(&format!("href=\"{routine_path}\"")), "gone");

    // A psychiatry member: the case routed to the CCAS is not theirs to see.
    sign_in_as(&b, &base, PSY).await;
    let case_path = format!("/c/perpignan/situations/{urgent}");
    let hidden = visit(&b, &base, &case_path, "Introuvable", &shot("14-psy-cachee")).await;
    let missing = visit(
        &b,
        &base,
        "/c/perpignan/situations/PER-2099-9999",
        "Introuvable",
        &shot("15-psy-introuvable"),
    )
    .await;
    let main = |s: &str| s.split("<main").nth(1).unwrap_or("").to_owned();
    assert_eq!(main(&hidden), main(&missing), "the page of a missing case");
    let page = visit(
        &b,
        &base,
        "/c/perpignan/situations",
        "Situations",
        &shot("16-psy-liste"),
    )
    .await;
    assert!(!page.contains(&urgent), "not in the member's list");
    type_in(&b, "#reference", &urgent).await;
    click(&b, "form[role=search] button[type=submit]").await;
    wait_text(
        &b,
        "#reference-inconnue",
        &format!("Aucune situation ne porte la référence « {urgent} »"),
    )
    .await;

    // The city member the case is routed to sees it, and no coordinator's form.
    sign_in_as(&b, &base, CITY).await;
    let page = visit(
        &b,
        &base,
        "/c/perpignan/situations",
        "Situations",
        &shot("17-ville-liste"),
    )
    .await;
    assert!(
        page.contains(&case_path),
        "routed to the member's organisation"
    );
    let page = visit(
        &b,
        &base,
        &case_path,
        &case_heading,
        &shot("18-ville-situation"),
    )
    .await;
    assert!(page.contains("Orientation vers le CCAS."), "its history");
    assert!(
        !page.contains("name=\"vers\"") && !page.contains("/effacement\""),
        "no lifecycle form for a member"
    );
    b.client.clone().close().await.expect("browser closed");
}

backend_tests!(situations);
