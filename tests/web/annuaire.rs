//! The coordinator's *Annuaire* and *Statistiques* in a real browser, on both backends: an
//! interlocutor refused in French (typed text kept, nothing stored) then added, a routing rule
//! pointing at it chosen from the directory, the directory exported as JSON and imported back
//! (a malformed paste and an invalid directory refused, nothing changed), each change one
//! `change_routing` entry as through the API; then the year's statistics as SVG charts with
//! their tables, small counts withheld. axe-core and a screenshot on every page; other roles
//! refused; pages under 100 KB.

use fantoccini::{Client, Locator};
use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::browse::{click, set_value, text_of, wait_heading, wait_text};
use crate::helpers::{AUDITOR, Backend, COORD, PSY, REF1, TestApp, referral};
use crate::support::{browser, browser_like, check_page, csrf_of, dev_sign_in, dev_web_app};

async fn api(app: &TestApp, sub: &str, path: &str) -> Value {
    let a = app
        .request(
            Method::GET,
            &format!("/v1/cellules/perpignan{path}"),
            Some(&app.token(sub)),
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{path}: {}", a.text);
    a.body
}

/// The stored directory, read through the API.
async fn stored(app: &TestApp) -> (Value, Value) {
    (
        api(app, COORD, "/interlocutors").await["interlocutors"].clone(),
        api(app, COORD, "/routing").await["rules"].clone(),
    )
}

/// The `change_routing` entries of the audit log (read by the auditor through the API).
async fn routing_entries(app: &TestApp) -> Vec<Value> {
    api(app, AUDITOR, "/audit?action=change_routing").await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn value_of(b: &Client, css: &str) -> String {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .prop("value")
        .await
        .expect("value")
        .unwrap_or_default()
}

/// The cells of the table row whose header is `label`, in table `css`.
async fn row_of(b: &Client, css: &str, label: &str) -> String {
    let rows = b
        .find_all(Locator::Css(&format!("{css} tbody tr")))
        .await
        .expect("rows");
    for row in rows {
        let text = row.text().await.expect("row text");
        if text.starts_with(label) {
            return text;
        }
    }
    panic!("no row « {label} » in {css}");
}

async fn coordinator_directory_and_statistics(backend: Backend) {
    let web = dev_web_app(backend).await;
    let app = &web.app;
    app.standard_cellule().await;
    let b = browser().await;
    let shot = |name: &str| format!("{backend:?}-annuaire-{name}").to_lowercase();

    // The coordinator finds the page from the cellule's home.
    b.goto(&format!("{}/connexion/dev", web.base))
        .await
        .expect("dev sign-in");
    click(&b, &format!("button[value='{COORD}']")).await;
    wait_heading(&b, "Mes cellules").await;
    b.goto(&format!("{}/c/perpignan", web.base))
        .await
        .expect("cellule");
    b.find(Locator::LinkText("Annuaire"))
        .await
        .expect("the directory's link")
        .click()
        .await
        .expect("click");
    wait_heading(&b, "Annuaire d'orientation").await;
    assert!(text_of(&b, "main").await.contains("aucun interlocuteur"));
    check_page(&b, &shot("01-vide")).await;

    // An invalid interlocutor: each problem in French beside its field and in the summary,
    // what was typed kept, nothing stored (422).
    set_value(&b, "i-identifiant", "CMP Sud").await;
    set_value(&b, "i-nom", "CMP 66G03").await;
    set_value(&b, "i-secteurs", "66G03 66x99").await;
    set_value(&b, "i-contact", "accueil CMP : 04 00 00 00 00").await;
    click(&b, "#i-sphere option[value='psychiatry']").await;
    click(&b, "#i-type option[value='cmp']").await;
    click(&b, "#enregistrer-interlocuteur").await;
    wait_text(&b, "#erreurs", "2 à 40 caractères").await;
    assert!(
        text_of(&b, "#i-identifiant-erreur")
            .await
            .contains("2 à 40 caractères")
    );
    let sector = text_of(&b, "#i-secteurs-erreur").await;
    assert!(
        sector.contains("« 66X99 »") && sector.contains("secteur"),
        "{sector}"
    );
    assert!(text_of(&b, "#erreurs").await.contains("« 66X99 »"));
    assert_eq!(value_of(&b, "#i-identifiant").await, "CMP Sud");
    assert_eq!(value_of(&b, "#i-secteurs").await, "66G03 66x99");
    assert_eq!(value_of(&b, "#i-nom").await, "CMP 66G03");
    assert_eq!(value_of(&b, "#i-sphere").await, "psychiatry");
    assert_eq!(stored(app).await.0, json!([]), "nothing stored");
    assert!(routing_entries(app).await.is_empty());
    check_page(&b, &shot("02-erreur")).await;

    // Corrected: added.
    set_value(&b, "i-identifiant", "cmp-sud").await;
    set_value(&b, "i-secteurs", "66G03").await;
    click(&b, "#enregistrer-interlocuteur").await;
    wait_text(&b, "#fait", "ajouté").await;
    assert!(
        text_of(&b, "#table-interlocuteurs")
            .await
            .contains("CMP 66G03")
    );
    let (interlocutors, _) = stored(app).await;
    assert_eq!(interlocutors[0]["id"], "cmp-sud");
    assert_eq!(interlocutors[0]["sectors"], json!(["66G03"]));
    assert_eq!(interlocutors[0]["kind"], "cmp");

    // A rule pointing at it, the lead chosen in the directory's list.
    set_value(&b, "r-identifiant", "soins-sud").await;
    click(&b, "form[action$='/regle'] input[value='care_access']").await;
    set_value(&b, "r-secteurs", "66G03").await;
    click(&b, "#r-pilote option[value='cmp-sud']").await;
    click(&b, "#enregistrer-regle").await;
    wait_text(&b, "#fait", "règle est ajoutée").await;
    let rules_text = text_of(&b, "#table-regles").await;
    assert!(
        rules_text.contains("Besoin : Accès aux soins")
            && rules_text.contains("secteur 66G03")
            && rules_text.contains("Pilote : CMP 66G03"),
        "{rules_text}"
    );
    let (_, rules) = stored(app).await;
    assert_eq!(
        rules,
        json!([{"id": "soins-sud", "needs": ["care_access"], "communes": [], "sectors": ["66G03"],
                 "lead": "cmp-sud", "others": [], "note": ""}])
    );
    check_page(&b, &shot("03-regle")).await;

    // Removing the interlocutor the rule names is refused in French; nothing changes.
    click(&b, "#retirer-interlocuteur-cmp-sud").await;
    wait_text(&b, "#erreurs", "encore cité").await;
    assert!(
        text_of(&b, "#erreurs")
            .await
            .contains("Règle n° 1 « soins-sud »")
    );
    assert_eq!(stored(app).await.0.as_array().map(Vec::len), Some(1));

    // The export, downloaded as an attachment.
    let client = browser_like();
    dev_sign_in(&client, &web.base, COORD).await;
    let r = client
        .get(format!("{}/c/perpignan/annuaire/export.json", web.base))
        .send()
        .await
        .expect("export");
    assert_eq!(r.status(), 200);
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert!(header("content-disposition").starts_with("attachment"));
    assert!(header("content-type").starts_with("application/json"));
    let exported = r.text().await.expect("export body");
    let doc: Value = serde_json::from_str(&exported).expect("JSON export");
    assert_eq!(doc["interlocutors"], stored(app).await.0);
    assert_eq!(doc["rules"], stored(app).await.1);
    let entries = routing_entries(app).await.len();
    assert_eq!(entries, 2, "one entry per change, as through the API");

    // A malformed paste is refused in French; the text stays; nothing changes.
    set_value(&b, "document", "{ \"interlocutors\": pas du JSON").await;
    click(&b, "#importer").await;
    wait_text(&b, "#erreurs", "n'est pas un annuaire exporté").await;
    assert_eq!(
        value_of(&b, "#document").await,
        "{ \"interlocutors\": pas du JSON"
    );
    check_page(&b, &shot("04-import-refuse")).await;
    // So is a well-formed directory that does not hold (a rule naming nobody).
    let mut broken = doc.clone();
    broken["rules"][0]["lead"] = json!("personne");
    set_value(&b, "document", &broken.to_string()).await;
    click(&b, "#importer").await;
    wait_text(
        &b,
        "#erreurs",
        "Règle n° 1 « soins-sud » : Le pilote « personne »",
    )
    .await;
    assert_eq!(
        stored(app).await,
        (doc["interlocutors"].clone(), doc["rules"].clone())
    );
    assert_eq!(routing_entries(app).await.len(), entries);

    // The export imported back: the same directory, one more entry.
    set_value(&b, "document", &exported).await;
    click(&b, "#importer").await;
    wait_text(&b, "#fait", "importé").await;
    assert_eq!(
        stored(app).await,
        (doc["interlocutors"].clone(), doc["rules"].clone())
    );
    let after = routing_entries(app).await;
    assert_eq!(after.len(), entries + 1);
    assert_eq!(after[0]["actor"], COORD, "{after:?}");
    assert!(text_of(&b, "#table-regles").await.contains("soins-sud"));

    // Statistics: eight referrals of the year, six from the CCAS (not in the directory) and two
    // from the CMP; two have isolation among their needs.
    for k in 0..8 {
        let mut body = referral("Situation comptée dans les statistiques.");
        body["needs"] = if k < 2 {
            json!(["housing", "isolation"])
        } else {
            json!(["housing"])
        };
        if k >= 6 {
            body["referring_org"] = json!("CMP 66G03");
        }
        let a = app.refer(REF1, &body).await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    b.find(Locator::LinkText("Statistiques"))
        .await
        .expect("the statistics' link")
        .click()
        .await
        .expect("click");
    wait_heading(&b, "Statistiques 20").await;
    assert!(text_of(&b, "#total").await.contains(": 8."));
    let charts = b
        .find_all(Locator::Css("svg[role='img'] > title"))
        .await
        .expect("charts");
    assert_eq!(charts.len(), 4, "one chart per breakdown");
    let labelled = b
        .find(Locator::Css("#par-besoin-h + .figure-chiffres svg"))
        .await
        .expect("the needs' chart")
        .attr("aria-labelledby")
        .await
        .expect("attr");
    assert_eq!(labelled.as_deref(), Some("par-besoin-titre"));
    assert_eq!(
        row_of(&b, "#par-besoin-tableau", "Logement").await,
        "Logement 8"
    );
    // Two cases with isolation: withheld, in the table and in the chart.
    assert_eq!(
        row_of(&b, "#par-besoin-tableau", "Isolement").await,
        "Isolement moins de 5"
    );
    let needs_chart = text_of(&b, "#par-besoin-h + .figure-chiffres .figure-graphique").await;
    assert!(needs_chart.contains("moins de 5"), "{needs_chart}");
    // Two referrals from the CMP: withheld, and the CCAS's six with them (else 8 − 6 = 2).
    let kinds = text_of(&b, "#par-organisation-tableau").await;
    assert!(kinds.contains("CMP secret statistique"), "{kinds}");
    assert!(
        kinds.contains("Organisation absente de l'annuaire secret statistique"),
        "{kinds}"
    );
    for n in ["2", "6"] {
        assert!(
            !kinds.split_whitespace().any(|w| w == n),
            "{n} shown: {kinds}"
        );
    }
    let source = b.source().await.expect("source");
    assert!(!source.contains(">2</text>") && !source.contains(">6</text>"));
    // Presentation attributes (`fill`, `font-style`) only: no `style` attribute, which the
    // Content-Security-Policy would block.
    assert!(!source.contains(" style="), "no inline style");
    check_page(&b, &shot("05-statistiques")).await;

    // A year that is not one.
    b.goto(&format!("{}/c/perpignan/statistiques?annee=deux", web.base))
        .await
        .expect("bad year");
    wait_text(&b, "#erreurs", "quatre chiffres").await;
    assert_eq!(value_of(&b, "#annee").await, "deux");
    check_page(&b, &shot("06-annee")).await;

    // The pages stay small.
    for path in ["/annuaire", "/statistiques"] {
        let r = client
            .get(format!("{}/c/perpignan{path}", web.base))
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), 200);
        let size = r.bytes().await.expect("body").len();
        assert!(size < 100_000, "{path}: {size} bytes");
    }

    // A member is refused both pages and the forms; the auditor reads the statistics only.
    let member = browser_like();
    dev_sign_in(&member, &web.base, PSY).await;
    let home = member
        .get(format!("{}/c/perpignan", web.base))
        .send()
        .await
        .expect("home")
        .text()
        .await
        .expect("home page");
    assert!(!home.contains("/annuaire") && !home.contains("/statistiques"));
    let csrf = csrf_of(&home);
    for path in ["/annuaire", "/annuaire/export.json", "/statistiques"] {
        let r = member
            .get(format!("{}/c/perpignan{path}", web.base))
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), 403, "{path}");
    }
    let r = member
        .post(format!("{}/c/perpignan/annuaire/importer", web.base))
        .header(reqwest::header::ORIGIN, &web.base)
        .form(&[("_csrf", csrf.as_str()), ("document", exported.as_str())])
        .send()
        .await
        .expect("import");
    assert_eq!(r.status(), 403);
    assert_eq!(routing_entries(app).await.len(), entries + 1);
    let auditor = browser_like();
    dev_sign_in(&auditor, &web.base, AUDITOR).await;
    for (path, status) in [("/statistiques", 200), ("/annuaire", 403)] {
        let r = auditor
            .get(format!("{}/c/perpignan{path}", web.base))
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), status, "{path}");
    }
}

backend_tests!(coordinator_directory_and_statistics);
