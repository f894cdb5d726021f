//! The pages' access rules (`tests/page_matrix.toml`), the security headers of every page, the
//! cookies' attributes, and the development sign-in page existing only with the development
//! issuer on.

use std::collections::BTreeMap;

use reqwest::header::{HeaderMap, ORIGIN};
use serde::Deserialize;
use serde_json::json;

use crate::backend_tests;
use crate::helpers::{ADMIN, AUDITOR, Backend, COORD, PSY, REF1, referral};
use crate::support::{Web, browser_like, csrf_of, dev_sign_in, dev_web_app, location, web_app};

const MATRIX: &str = include_str!("../page_matrix.toml");
const CONTENT: &str = "PAGEMATRIXCONTENT";
const ACTORS: [&str; 8] = [
    "anonymous",
    "referrer",
    "member",
    "coordinator",
    "auditor",
    "no_charter",
    "outsider",
    "admin",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Matrix {
    row: Vec<Row>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    page: String,
    #[serde(default)]
    form: Option<String>,
    expect: BTreeMap<String, u16>,
    /// The page shows a case to whom may read it: only unexpected answers, and refusals, are
    /// checked for content.
    #[serde(default)]
    case_content: bool,
}

fn subject(actor: &str) -> Option<&'static str> {
    match actor {
        "anonymous" => None,
        "referrer" => Some(REF1),
        "member" => Some(PSY),
        "coordinator" => Some(COORD),
        "auditor" => Some(AUDITOR),
        "no_charter" => Some("newcomer-1"),
        "outsider" => Some("outsider-1"),
        "admin" => Some(crate::helpers::ADMIN),
        other => panic!("unknown actor {other}"),
    }
}

/// The headers every page must carry.
fn assert_secure_headers(headers: &HeaderMap, what: &str) {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no {name}"))
            .to_owned()
    };
    let csp = get("content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "object-src 'none'",
        "base-uri 'none'",
    ] {
        assert!(
            csp.contains(directive),
            "{what}: CSP lacks {directive}: {csp}"
        );
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: {csp}"
    );
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("referrer-policy"), "same-origin", "{what}");
    assert!(get("permissions-policy").contains("camera=()"), "{what}");
    assert_eq!(get("cross-origin-opener-policy"), "same-origin", "{what}");
}

async fn page_matrix(backend: Backend) {
    let m: Matrix = toml::from_str(MATRIX).unwrap_or_else(|e| panic!("page_matrix.toml: {e}"));
    let web = dev_web_app(backend).await;
    let app = &web.app;
    app.standard_cellule().await;
    app.add_member(
        "perpignan",
        "newcomer-1",
        json!({"role": "member", "sphere": "psychiatry", "organisation": "CMP 66G03"}),
    )
    .await;
    app.create_cellule("narbonne").await;
    app.add_member(
        "narbonne",
        "outsider-1",
        json!({"role": "coordinator", "sphere": "city", "organisation": "CLSM Narbonne"}),
    )
    .await;
    let (_, reference) = app
        .refer_ok(REF1, &format!("{CONTENT} situation de la matrice"))
        .await;
    // A session of the coordinator's desk (SESSION in the matrix), planned: no agenda yet.
    let session = app
        .request(
            reqwest::Method::POST,
            "/v1/cellules/perpignan/sessions",
            Some(&app.token(COORD)),
            Some(json!({"starts_at": "2030-12-12T14:00:00+01:00", "location": "Mairie"})),
        )
        .await;
    assert_eq!(session.status, 201, "{}", session.text);
    let session = session.body["id"].as_str().expect("session id").to_owned();

    let mut clients = BTreeMap::new();
    for actor in ACTORS {
        let client = browser_like();
        let csrf = match subject(actor) {
            Some(sub) => {
                dev_sign_in(&client, &web.base, sub).await;
                let home = client
                    .get(format!("{}/", web.base))
                    .send()
                    .await
                    .expect("home");
                csrf_of(&home.text().await.expect("home page"))
            }
            None => String::new(),
        };
        clients.insert(actor, (client, csrf));
    }
    let mut failures = Vec::new();
    for row in &m.row {
        let actors: Vec<&str> = row.expect.keys().map(String::as_str).collect();
        assert_eq!(
            actors.len(),
            ACTORS.len(),
            "{}: every actor needs an expectation",
            row.page
        );
        let (method, path) = row.page.split_once(' ').expect("METHOD path");
        let path = path
            .replace("REFERENCE", &reference)
            .replace("SESSION", &session);
        for actor in ACTORS {
            let expected = row.expect[actor];
            let (client, csrf) = &clients[actor];
            let url = format!("{}{path}", web.base);
            let r = match method {
                "GET" => client.get(&url).send().await,
                "POST" => {
                    let body = format!("{}&_csrf={csrf}", row.form.clone().unwrap_or_default());
                    client
                        .post(&url)
                        .header(ORIGIN, &web.base)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body)
                        .send()
                        .await
                }
                other => panic!("method {other}"),
            }
            .expect("request");
            let status = r.status().as_u16();
            let is_page = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/html"));
            if is_page || status != 200 {
                assert_secure_headers(r.headers(), &format!("{} as {actor}", row.page));
            }
            if status == 303 && actor == "anonymous" {
                assert!(
                    location(&r).starts_with("/connexion"),
                    "{} {actor}",
                    row.page
                );
            }
            let body = r.text().await.expect("body");
            assert!(
                (row.case_content && status == expected && matches!(status, 200 | 409 | 422))
                    || !body.contains(CONTENT),
                "{} as {actor}: case content in the page ({status})",
                row.page
            );
            if status != expected {
                failures.push(format!(
                    "{} as {actor}: {status}, expected {expected}",
                    row.page
                ));
            }
        }
    }
    assert!(failures.is_empty(), "page matrix:\n{}", failures.join("\n"));
}

async fn headers_and_cookies(backend: Backend) {
    let web = dev_web_app(backend).await;
    web.app.standard_cellule().await;
    let client = browser_like();
    for path in [
        "/connexion",
        "/connexion/dev",
        "/page-inexistante",
        "/deconnecte",
    ] {
        let r = client
            .get(format!("{}{path}", web.base))
            .header("accept", "text/html,application/xhtml+xml")
            .send()
            .await
            .expect("page");
        assert_secure_headers(r.headers(), path);
        assert_eq!(
            r.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{path}"
        );
        let page = r.text().await.expect("page");
        assert!(page.contains("<html lang=\"fr\">"), "{path}");
        assert!(page.contains("href=\"#contenu\""), "{path}: skip link");
        assert!(
            !page.contains("style=") && !page.contains("<script>"),
            "{path}: inline"
        );
    }
    // The API keeps its problem documents under /v1.
    let r = client
        .get(format!("{}/v1/nothing", web.base))
        .send()
        .await
        .expect("api");
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    // Assets: versioned, cached for a year, no inline anything.
    let page = client
        .get(format!("{}/connexion", web.base))
        .send()
        .await
        .expect("page");
    let html = page.text().await.expect("page");
    for marker in ["rel=\"stylesheet\" href=\"", "<script src=\""] {
        let asset = html
            .split(marker)
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("asset link");
        let r = client
            .get(format!("{}{asset}", web.base))
            .send()
            .await
            .expect("asset");
        assert_eq!(r.status(), 200, "{asset}");
        assert_eq!(
            r.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("public, max-age=31536000, immutable")
        );
    }
    // The session cookie over plain http on loopback: HttpOnly, SameSite=Lax, not Secure.
    let r = client
        .post(format!("{}/connexion/dev", web.base))
        .header(ORIGIN, &web.base)
        .form(&[("sujet", REF1)])
        .send()
        .await
        .expect("sign-in");
    let cookie = crate::support::set_cookie(&r, "cellule-session").expect("cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/")
    );
    // A new session at every sign-in: signing in again gives another secret, the old one ends.
    let first = dev_sign_in(&client, &web.base, REF1).await;
    let second = dev_sign_in(&client, &web.base, REF1).await;
    assert_ne!(first, second);
    let stale = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = stale
        .get(format!("{}/c/perpignan", web.base))
        .header("cookie", format!("cellule-session={first}"))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 303, "the previous session ended at sign-in");
    let _ = referral("");
}

/// Over https (behind a proxy), cookies are `Secure` and `__Host-` prefixed, with HSTS.
async fn https_cookies(backend: Backend) {
    let web = web_app(
        backend,
        Web {
            oidc: false,
            customize: Box::new(|c| {
                c.web.base_url = Some(url::Url::parse("https://cellule.example.fr").expect("url"));
            }),
        },
    )
    .await;
    web.app.standard_cellule().await;
    let client = browser_like();
    let r = client
        .post(format!("{}/connexion/dev", web.base))
        .header(ORIGIN, "https://cellule.example.fr")
        .form(&[("sujet", REF1)])
        .send()
        .await
        .expect("sign-in");
    assert_eq!(r.status(), 303);
    let cookie = crate::support::set_cookie(&r, "__Host-cellule-session").expect("cookie");
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("Path=/"));
    assert!(!cookie.contains("Domain"));
    assert!(
        r.headers()
            .get("strict-transport-security")
            .is_some_and(|v| v.to_str().unwrap_or("").contains("max-age"))
    );
    // The application's own origin over http is foreign to it now.
    let r = client
        .post(format!("{}/connexion/dev", web.base))
        .header(ORIGIN, &web.base)
        .form(&[("sujet", REF1)])
        .send()
        .await
        .expect("sign-in");
    assert_eq!(r.status(), 403);
}

async fn no_dev_page_without_dev_issuer(backend: Backend) {
    let web = web_app(
        backend,
        Web {
            oidc: true,
            customize: Box::new(|c| {
                // The harness signs its API requests with the development key: keep the file.
                cellule::auth::DevIssuer::load_or_create(&c.data_dir, &c.auth.dev_issuer)
                    .expect("dev key");
                c.auth.dev_issuer.enabled = Some(false);
            }),
        },
    )
    .await;
    let client = browser_like();
    for method in ["GET", "POST"] {
        let r = client
            .request(
                method.parse().expect("method"),
                format!("{}/connexion/dev", web.base),
            )
            .header(ORIGIN, &web.base)
            .form(&[("sujet", REF1)])
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), 404, "{method} /connexion/dev");
        assert!(crate::support::set_cookie(&r, "cellule-session").is_none());
    }
    let page = client
        .get(format!("{}/connexion", web.base))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("page");
    assert!(!page.contains("/connexion/dev"), "{page}");
    assert!(page.contains(crate::support::PROVIDER_LABEL), "{page}");
}

/// A member who has not accepted the current charter is sent to it from the cellule, accepts
/// it, and is brought back.
async fn charter_first(backend: Backend) {
    let web = dev_web_app(backend).await;
    web.app.standard_cellule().await;
    web.app
        .add_member(
            "perpignan",
            "newcomer-1",
            json!({"role": "member", "sphere": "psychiatry", "organisation": "CMP 66G03"}),
        )
        .await;
    let client = browser_like();
    dev_sign_in(&client, &web.base, "newcomer-1").await;
    let r = client
        .get(format!("{}/c/perpignan", web.base))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 303);
    let to = location(&r);
    assert_eq!(to, "/c/perpignan/charte?suite=%2Fc%2Fperpignan");
    let page = client
        .get(format!("{}{to}", web.base))
        .send()
        .await
        .expect("charter")
        .text()
        .await
        .expect("page");
    assert!(page.contains("J'ai lu la charte et je l'accepte"), "{page}");
    let r = client
        .post(format!("{}/c/perpignan/charte", web.base))
        .header(ORIGIN, &web.base)
        .form(&[
            ("_csrf", csrf_of(&page).as_str()),
            ("version", "1"),
            ("suite", "/c/perpignan"),
        ])
        .send()
        .await
        .expect("accept");
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/c/perpignan");
    let r = client
        .get(format!("{}/c/perpignan", web.base))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 200, "the charter accepted, the cellule opens");
    assert_eq!(
        web.app
            .count_rows(
                "SELECT count(*) FROM audit_entries WHERE action = 'accept_charter' AND actor = $1",
                "newcomer-1"
            )
            .await,
        1,
        "the acceptance is in the audit log"
    );
}

/// The auditor's search goes page by page, filters kept; the exports are downloads.
async fn audit_pages(backend: Backend) {
    let web = dev_web_app(backend).await;
    web.app.standard_cellule().await;
    for n in 0..55 {
        web.app
            .refer_ok(REF1, &format!("Situation numéro {n}."))
            .await;
    }
    let client = browser_like();
    dev_sign_in(&client, &web.base, AUDITOR).await;
    let first = client
        .get(format!(
            "{}/c/perpignan/journal?action=submit_referral&personne={REF1}",
            web.base
        ))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("page");
    assert_eq!(
        first.matches("<td data-titre=\"N°\">").count(),
        50,
        "50 a page"
    );
    let next = first
        .split("rel=\"next\"")
        .next()
        .and_then(|s| s.rsplit("href=\"").next())
        .and_then(|s| s.split('"').next())
        .expect("a link to the next page")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert!(
        next.contains("action=submit_referral") && next.contains("curseur="),
        "{next}"
    );
    let second = client
        .get(format!("{}{next}", web.base))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("page");
    assert_eq!(
        second.matches("<td data-titre=\"N°\">").count(),
        5,
        "the rest"
    );
    assert!(!second.contains("rel=\"next\""));
    let r = client
        .get(format!(
            "{}/c/perpignan/journal/export?format=fhir",
            web.base
        ))
        .send()
        .await
        .expect("export");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok()),
        Some("attachment; filename=\"journal-perpignan.fhir.json\"")
    );
    let bundle: serde_json::Value = r.json().await.expect("a FHIR bundle");
    assert_eq!(bundle["resourceType"], "Bundle");
}

/// The administrator's forms answer bad input with the page, a French message at the field and
/// a 422, and change nothing that was stored.
async fn admin_forms_refuse_bad_input(backend: Backend) {
    let web = dev_web_app(backend).await;
    web.app.standard_cellule().await;
    let client = browser_like();
    dev_sign_in(&client, &web.base, ADMIN).await;
    let page_url = format!("{}/admin/c/perpignan", web.base);
    let page = client.get(&page_url).send().await.expect("page");
    let csrf = csrf_of(&page.text().await.expect("page"));
    let post = |path: &'static str, form: Vec<(&'static str, &'static str)>| {
        let (client, csrf, base) = (client.clone(), csrf.clone(), web.base.clone());
        async move {
            let mut form = form;
            form.push(("_csrf", csrf.as_str()));
            let r = client
                .post(format!("{base}{path}"))
                .header(ORIGIN, &base)
                .form(&form)
                .send()
                .await
                .expect("post");
            (r.status().as_u16(), r.text().await.expect("page"))
        }
    };
    let kept = post(
        "/admin/c/perpignan/conservation",
        vec![("fermees", "24"), ("declinees", "3")],
    )
    .await;
    assert_eq!(kept.0, 303, "{}", kept.1);

    for (path, form, message) in [
        (
            "/admin/c/perpignan/conservation",
            vec![("fermees", "vingt"), ("declinees", "3")],
            "Une durée de 1 à 120 mois.",
        ),
        (
            "/admin/c/perpignan/conservation",
            vec![("fermees", "24"), ("declinees", "121")],
            "Une durée de 1 à 120 mois.",
        ),
        (
            "/admin/c/perpignan/charte",
            vec![("texte", "")],
            "Le texte de la charte doit faire de 1 à 20 000 caractères.",
        ),
        (
            "/admin/c/perpignan/membres",
            vec![("sujet", "bad-role-1"), ("role", "chef")],
            "Choisissez un rôle de la liste.",
        ),
        (
            "/admin/c/perpignan/membres",
            vec![
                ("sujet", "no-org-1"),
                ("role", "member"),
                ("sphere", "city"),
            ],
            "obligatoire pour ce rôle, sans objet pour",
        ),
        (
            "/admin",
            vec![("slug", "Pas Un Slug"), ("nom", "Cellule")],
            "id=\"erreurs\"",
        ),
    ] {
        let (status, page) = post(path, form.clone()).await;
        assert_eq!(status, 422, "{path} {form:?}: {page}");
        assert!(page.contains(message), "{path} {form:?}: {message} missing");
    }

    // Nothing stored changed.
    let page = client
        .get(&page_url)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("page");
    assert!(page.contains("name=\"fermees\" value=\"24\""), "{page}");
    assert!(page.contains("name=\"declinees\" value=\"3\""), "{page}");
    let charter = web
        .app
        .get(
            "/v1/cellules/perpignan/charter",
            Some(&web.app.token(COORD)),
        )
        .await;
    assert_eq!(charter.body["version"], 1, "{}", charter.text);
    let members = web
        .app
        .as_admin(reqwest::Method::GET, "/v1/cellules/perpignan/members", None)
        .await;
    assert!(
        !members.text.contains("bad-role-1") && !members.text.contains("no-org-1"),
        "{}",
        members.text
    );
    let cellules = web
        .app
        .as_admin(reqwest::Method::GET, "/v1/cellules", None)
        .await;
    assert!(!cellules.text.contains("Pas Un Slug"), "{}", cellules.text);
}

backend_tests!(
    admin_forms_refuse_bad_input,
    audit_pages,
    charter_first,
    page_matrix,
    headers_and_cookies,
    https_cookies,
    no_dev_page_without_dev_issuer
);
