//! The README's walk-through in a real browser, on both backends: `cellule demo` sets up its
//! cellule in the web application's database, then the demo coordinator runs the demo's next
//! session (today's) from its published agenda to approved minutes and their PDF without a
//! command line; the CCAS member (city sphere) reads the approved minutes with no psychiatry note
//! anywhere in its pages, and the guest organisation only the items it was invited to.

use cellule::domain::CelluleSlug;
use fantoccini::Locator;

use crate::backend_tests;
use crate::browse::{click, sign_in_as, text_of, wait_heading, wait_text};
use crate::helpers::Backend;
use crate::seances::{act, decide, pdf_text};
use crate::support::{browser, browser_like, check_page, dev_sign_in, dev_web_app};

/// The demo's psychiatry note (its text is only for the psychiatry sphere).
const PSYCHIATRY_NOTE: &str = "connue du CMP";

async fn readme_walk_through(backend: Backend) {
    let web = dev_web_app(backend).await;
    let app = &web.app;
    let slug = CelluleSlug::parse("demo").expect("slug");
    let demo = cellule::cli::demo::set_up(&app.config, &slug, chrono::Utc::now())
        .await
        .unwrap_or_else(|e| panic!("demo: {}", e.message));
    let sid = demo.next.id.clone();
    let items = demo.next_items.len();
    assert!(items >= 2, "today's agenda has {items} items");
    let b = browser().await;
    let shot = |name: &str| format!("{backend:?}-demo-{name}").to_lowercase();

    // The coordinator finds the schedule on the sessions' page, today's session from the
    // cellule's home, and opens the meeting.
    sign_in_as(&b, &web.base, "demo-coordinator").await;
    b.goto(&format!("{}/c/demo/seances", web.base))
        .await
        .expect("sessions");
    wait_heading(&b, "Séances").await;
    assert!(
        text_of(&b, "#calendrier-cellule")
            .await
            .contains("deuxième jeudi")
    );
    // The cellule's home names the next session: today's.
    b.goto(&format!("{}/c/demo", web.base))
        .await
        .expect("cellule");
    let link = b
        .find(Locator::Css("#lien-prochaine-seance"))
        .await
        .expect("the next session's link");
    let href = link.attr("href").await.expect("href").unwrap_or_default();
    assert!(href.ends_with(&format!("/seances/{sid}")), "{href}");
    link.click().await.expect("click");
    wait_heading(&b, "Séance du").await;
    wait_text(&b, "#statut", "ordre du jour publié").await;
    act(&b, "#ouvrir", "ouverte").await;
    act(&b, "#presences button[type=submit]", "présences").await;
    check_page(&b, &shot("01-ouverte")).await;

    // Item by item: the first followed up, then corrected; the others deferred.
    b.find(Locator::LinkText("En séance : examiner les points"))
        .await
        .expect("the meeting's link")
        .click()
        .await
        .expect("click");
    wait_heading(&b, &format!("En séance — point 1 sur {items}")).await;
    check_page(&b, &shot("02-point")).await;
    let in_a_month = (chrono::Utc::now() + chrono::Duration::days(30))
        .format("%Y-%m-%d")
        .to_string();
    decide(&b, "follow_up", "", &in_a_month, "Point dans un mois.").await;
    decide(
        &b,
        "follow_up",
        "",
        &in_a_month,
        "Point dans un mois, corrigé.",
    )
    .await;
    wait_text(&b, "#historique + ul", "Version 2").await;
    for k in 2..=items {
        click(&b, "#point-suivant").await;
        wait_heading(&b, &format!("En séance — point {k} sur {items}")).await;
        decide(&b, "deferred", "", "", "").await;
    }

    // Closed, the compte rendu approved, its PDF downloaded.
    b.goto(&format!("{}/c/demo/seances/{sid}", web.base))
        .await
        .expect("session");
    act(&b, "#clore", "close").await;
    b.find(Locator::LinkText("Compte rendu"))
        .await
        .expect("the minutes' link")
        .click()
        .await
        .expect("click");
    wait_heading(&b, "Compte rendu de la séance").await;
    click(&b, "#approuver").await;
    wait_text(&b, "main", "Compte rendu approuvé").await;
    let minutes = text_of(&b, "main").await;
    for (_, reference) in &demo.next_items {
        assert!(minutes.contains(reference.as_str()), "{reference}");
    }
    assert!(minutes.contains("version 2"), "{minutes}");
    check_page(&b, &shot("03-approuve")).await;
    let coordinator = browser_like();
    dev_sign_in(&coordinator, &web.base, "demo-coordinator").await;
    let pdf = coordinator
        .get(format!(
            "{}/c/demo/seances/{sid}/compte-rendu.pdf",
            web.base
        ))
        .send()
        .await
        .expect("pdf");
    assert_eq!(pdf.status(), 200);
    let text = pdf_text(&pdf.bytes().await.expect("bytes"));
    assert!(text.contains(demo.next_items[0].1.as_str()), "{text}");

    // The CCAS member (permanent, city sphere): every item of the minutes, no psychiatry text.
    sign_in_as(&b, &web.base, "demo-ccas").await;
    b.goto(&format!("{}/c/demo/mes-seances", web.base))
        .await
        .expect("my sessions");
    wait_heading(&b, "Mes séances").await;
    b.goto(&format!("{}/c/demo/comptes-rendus/{sid}", web.base))
        .await
        .expect("minutes");
    wait_heading(&b, "Compte rendu de la séance").await;
    let copy = text_of(&b, "main").await;
    for (_, reference) in &demo.next_items {
        assert!(copy.contains(reference.as_str()), "{reference}");
    }
    check_page(&b, &shot("04-ccas")).await;
    // The guest organisation: only the items it was invited to.
    let guest = browser_like();
    dev_sign_in(&guest, &web.base, "demo-empp").await;
    let copy = guest
        .get(format!("{}/c/demo/comptes-rendus/{sid}", web.base))
        .send()
        .await
        .expect("guest minutes")
        .text()
        .await
        .expect("text");
    let shown = demo
        .next_items
        .iter()
        .filter(|(_, r)| copy.contains(r.as_str()))
        .count();
    assert!(shown < items, "the guest sees every item");
    let member = browser_like();
    dev_sign_in(&member, &web.base, "demo-ccas").await;
    for path in [
        "/c/demo/mes-seances".to_owned(),
        format!("/c/demo/comptes-rendus/{sid}"),
        "/c/demo/suivis".to_owned(),
    ] {
        let page = member
            .get(format!("{}{path}", web.base))
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("text");
        assert!(!page.contains(PSYCHIATRY_NOTE), "{path}");
    }
    for (_, reference) in &demo.next_items {
        let page = member
            .get(format!("{}/c/demo/situations/{reference}", web.base))
            .send()
            .await
            .expect("case page")
            .text()
            .await
            .expect("text");
        assert!(!page.contains(PSYCHIATRY_NOTE), "{reference}");
    }
}

backend_tests!(readme_walk_through);
