//! Journeys in a real browser (headless Chromium over WebDriver), signed in through the real
//! OpenID provider, with axe-core run and a screenshot saved on every page: a field worker
//! submits a referral the guard refuses, fixes the marked words, submits and sees it in *Mes
//! saisines*; an auditor finds who read that case; an administrator grants a membership.

use fantoccini::{Client, Locator};

use crate::backend_tests;
use crate::browse::{click, text_of, type_in, wait_heading};
use crate::helpers::{ADMIN, AUDITOR, Backend, COORD, REF1};
use crate::support::{PROVIDER_LABEL, Web, WebApp, browser, check_page, op, web_app};

/// Signs in at the provider as `login`, starting from the application's sign-in page.
async fn sign_in(b: &Client, web: &WebApp, login: &str) {
    b.delete_all_cookies().await.expect("cookies");
    b.goto(&format!("{}/", web.base)).await.expect("home");
    wait_heading(b, "Connexion").await;
    b.find(Locator::LinkText(&format!(
        "Se connecter avec {PROVIDER_LABEL}"
    )))
    .await
    .expect("the provider's button")
    .click()
    .await
    .expect("click");
    b.wait()
        .for_element(Locator::Css("#login"))
        .await
        .expect("the provider's login form");
    type_in(b, "#login", login).await;
    click(b, "#valider").await;
    wait_heading(b, "Mes cellules").await;
    assert!(
        text_of(b, ".compte").await.contains(login),
        "signed in as {login}"
    );
}

async fn submit_form(b: &Client) {
    click(b, "main form.formulaire > button[type=submit]").await;
}

async fn journeys(backend: Backend) {
    let web = web_app(backend, Web::default()).await;
    web.standard_cellule().await;
    let b = browser().await;
    let shot = |name: &str| format!("{backend:?}-{name}").to_lowercase();

    // The field worker.
    b.goto(&format!("{}/", web.base)).await.expect("home");
    wait_heading(&b, "Connexion").await;
    check_page(&b, &shot("01-connexion")).await;
    sign_in(&b, &web, REF1).await;
    check_page(&b, &shot("02-mes-cellules")).await;
    b.find(Locator::LinkText("Cellule perpignan"))
        .await
        .expect("the cellule")
        .click()
        .await
        .expect("click");
    wait_heading(&b, "Cellule perpignan").await;
    check_page(&b, &shot("03-cellule")).await;
    b.find(Locator::LinkText("Nouvelle saisine"))
        .await
        .expect("link")
        .click()
        .await
        .expect("click");
    wait_heading(&b, "Nouvelle saisine").await;
    check_page(&b, &shot("04-nouvelle-saisine")).await;

    click(&b, "#tranche option[value='35-44']").await;
    click(&b, "#genre-m").await;
    type_in(&b, "#commune", "66136").await;
    type_in(&b, "#secteur", "66G03").await;
    click(&b, "#besoins").await;
    click(&b, "#besoins-care_access").await;
    click(&b, "#urgence-priority").await;
    click(&b, "#consentement-not_informed").await;
    type_in(&b, "#justification", "Personne injoignable depuis juin.").await;
    let typed = "Impayés de loyer depuis quatre mois, rupture de soins.\nJoignable au 06 12 34 56 78 ou par mail jean.martin@example.org.";
    type_in(&b, "#situation", typed).await;
    type_in(&b, "#attentes", "Orientation vers le CMP.").await;
    submit_form(&b).await;

    // Refused by the guard: the text comes back as typed, each identifier marked in place.
    b.wait()
        .for_element(Locator::Css("#erreurs"))
        .await
        .expect("the error summary");
    let marks = b
        .find_all(Locator::Css("#situation ~ .marquage mark"))
        .await
        .expect("marks");
    assert_eq!(
        marks.len(),
        2,
        "a phone number and an e-mail address are marked"
    );
    assert!(
        marks[0]
            .text()
            .await
            .expect("mark")
            .contains("06 12 34 56 78")
    );
    assert!(
        marks[1]
            .text()
            .await
            .expect("mark")
            .contains("jean.martin@example.org")
    );
    let kept = b
        .find(Locator::Css("#situation"))
        .await
        .expect("field")
        .prop("value")
        .await
        .expect("value")
        .unwrap_or_default();
    assert_eq!(kept.replace("\r\n", "\n"), typed, "the text as typed");
    let summary = text_of(&b, "#erreurs").await;
    assert!(summary.contains("Numéro de téléphone"), "{summary}");
    assert!(summary.contains("Adresse électronique"), "{summary}");
    check_page(&b, &shot("05-saisine-refusee")).await;

    type_in(
        &b,
        "#situation",
        "Impayés de loyer depuis quatre mois, rupture de soins.\nJoignable par l'intermédiaire du CCAS.",
    )
    .await;
    submit_form(&b).await;
    wait_heading(&b, "Mes saisines").await;
    let reference = text_of(&b, ".succes strong").await;
    assert!(reference.starts_with("PER-"), "{reference}");
    assert!(text_of(&b, "table").await.contains(&reference));
    check_page(&b, &shot("06-mes-saisines")).await;

    // The coordinator finds and reads the case (through the API: the coordinator's pages
    // come next).
    let cases = web
        .app
        .get("/v1/cellules/perpignan/cases", Some(&web.app.token(COORD)))
        .await;
    let id = cases.body["items"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|r| r["reference"].as_str() == Some(reference.as_str()))
        })
        .and_then(|r| r["id"].as_str())
        .unwrap_or_else(|| panic!("the referral in {}", cases.text))
        .to_owned();
    let read = web
        .app
        .get(
            &format!("/v1/cellules/perpignan/cases/{id}"),
            Some(&web.app.token(COORD)),
        )
        .await;
    assert_eq!(read.status, 200);

    // Signing out ends the session here and at the provider.
    click(&b, ".compte button").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // The auditor finds who read the case.
    sign_in(&b, &web, AUDITOR).await;
    b.goto(&format!("{}/c/perpignan/journal/situation", web.base))
        .await
        .expect("page");
    type_in(&b, "#reference", &reference).await;
    submit_form(&b).await;
    wait_heading(&b, &format!("Accès à la situation {reference}")).await;
    let log = text_of(&b, "table").await;
    assert!(
        log.contains(COORD) && log.contains("Lecture d'une situation"),
        "{log}"
    );
    assert!(
        log.contains(&op(REF1)) && log.contains("Saisine envoyée"),
        "{log}"
    );
    check_page(&b, &shot("07-acces-situation")).await;
    b.goto(&format!(
        "{}/c/perpignan/journal?reference={reference}",
        web.base
    ))
    .await
    .expect("page");
    wait_heading(&b, "Journal des accès").await;
    check_page(&b, &shot("08-journal")).await;
    b.goto(&format!("{}/c/perpignan/journal/verification", web.base))
        .await
        .expect("page");
    assert!(
        text_of(&b, ".succes")
            .await
            .contains("Le journal est intact")
    );
    check_page(&b, &shot("09-verification")).await;

    // The administrator grants a membership.
    sign_in(&b, &web, ADMIN).await;
    b.find(Locator::LinkText(
        "Gérer les cellules, les adhésions, la charte et la conservation",
    ))
    .await
    .expect("link")
    .click()
    .await
    .expect("click");
    wait_heading(&b, "Cellules").await;
    check_page(&b, &shot("10-admin-cellules")).await;
    b.find(Locator::LinkText("Cellule perpignan"))
        .await
        .expect("link")
        .click()
        .await
        .expect("click");
    check_page(&b, &shot("11-admin-cellule")).await;
    type_in(&b, "#sujet", "new-member-1").await;
    click(&b, "#role option[value='member']").await;
    click(&b, "#sphere option[value='city']").await;
    type_in(&b, "#organisation", "CCAS Perpignan").await;
    b.find(Locator::XPath(
        "//button[normalize-space()='Ajouter à la cellule']",
    ))
    .await
    .expect("button")
    .click()
    .await
    .expect("click");
    b.wait()
        .for_element(Locator::Css(".succes"))
        .await
        .expect("the confirmation");
    assert!(
        text_of(&b, ".succes")
            .await
            .contains("L'adhésion est enregistrée")
    );
    assert!(text_of(&b, "table").await.contains("new-member-1"));
    check_page(&b, &shot("12-adhesion-ajoutee")).await;
    let members = web
        .app
        .as_admin(reqwest::Method::GET, "/v1/cellules/perpignan/members", None)
        .await;
    assert!(
        members.text.contains("\"new-member-1\""),
        "{}",
        members.text
    );
    b.client.clone().close().await.expect("browser closed");
}

backend_tests!(journeys);
