//! Every page is a view of the API's use cases, so a step through a page leaves in the audit
//! log exactly the entries the same step through the API leaves: each step is taken on one case
//! through the pages and on its twin through the API, and the entries each case gained are
//! compared (action, outcome, denial reason, actor, target kind), on both backends.

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{AUDITOR, Backend, COORD, PSY, REF1, TestApp};
use crate::support::{browser_like, csrf_of, dev_sign_in, dev_web_app};

type Entry = (String, String, String, String, String);

/// The entries about case `reference`, oldest first, as the auditor reads them.
async fn entries(app: &TestApp, reference: &str) -> Vec<Entry> {
    let a = app
        .get(
            &format!("/v1/cellules/perpignan/audit?case={reference}&limit=500"),
            Some(&app.token(AUDITOR)),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let field = |e: &Value, k: &str| e[k].as_str().unwrap_or("").to_owned();
    let mut out: Vec<Entry> = a.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| {
            (
                field(e, "action"),
                field(e, "outcome"),
                field(e, "reason"),
                field(e, "actor"),
                field(e, "target_kind"),
            )
        })
        .collect();
    out.reverse();
    out
}

/// What `step` adds to the log of case `page_ref` (taken through the pages) and of `api_ref`
/// (through the API) must be the same entries, and not none.
async fn same_entries<F: std::future::Future<Output = ()>>(
    app: &TestApp,
    what: &str,
    (page_ref, api_ref): (&str, &str),
    step: F,
) {
    let (page_before, api_before) = (
        entries(app, page_ref).await.len(),
        entries(app, api_ref).await.len(),
    );
    step.await;
    let page = entries(app, page_ref).await[page_before..].to_vec();
    let api = entries(app, api_ref).await[api_before..].to_vec();
    assert!(!api.is_empty(), "{what}: nothing logged");
    assert_eq!(page, api, "{what}: the page's entries, then the API's");
}

async fn page_and_api_log_the_same(backend: Backend) {
    let web = dev_web_app(backend).await;
    let app = &web.app;
    app.standard_cellule().await;
    let (a_id, a) = app.refer_ok(REF1, "Situation lue par les pages.").await;
    let (b_id, b) = app.refer_ok(REF1, "Situation lue par l'API.").await;
    for id in [&a_id, &b_id] {
        app.move_case(id, json!({"to": "accepted"})).await;
    }
    let coordinator = browser_like();
    dev_sign_in(&coordinator, &web.base, COORD).await;
    let api = |method: Method, path: String, who: &'static str, body: Option<Value>| async move {
        app.request(
            method,
            &format!("/v1/cellules/perpignan{path}"),
            Some(&app.token(who)),
            body,
        )
        .await
    };

    // The coordinator reads the case: its page, then the API's three reads it shows.
    same_entries(app, "case read", (&a, &b), async {
        let r = coordinator
            .get(format!("{}/c/perpignan/situations/{a}", web.base))
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), 200);
        for path in [
            format!("/cases/{b}"),
            format!("/cases/{b}/notes"),
            format!("/cases/{b}/decisions"),
        ] {
            assert_eq!(api(Method::GET, path, COORD, None).await.status, 200);
        }
    })
    .await;

    // A note written through the page's form, and through the API.
    let page = coordinator
        .get(format!("{}/c/perpignan/situations/{a}", web.base))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    same_entries(app, "note", (&a, &b), async {
        let r = coordinator
            .post(format!("{}/c/perpignan/situations/{a}/notes", web.base))
            .header(reqwest::header::ORIGIN, &web.base)
            .form(&[
                ("_csrf", csrf_of(&page).as_str()),
                ("audience", "cellule"),
                ("texte", "Note de la coordination."),
            ])
            .send()
            .await
            .expect("note");
        assert_eq!(r.status(), 303);
        let n = api(
            Method::POST,
            format!("/cases/{b}/notes"),
            COORD,
            Some(json!({"audience": "cellule", "body": "Note de la coordination."})),
        )
        .await;
        assert_eq!(n.status, 201, "{}", n.text);
        // The page came back after its redirect: its reads, as the API's three.
        let r = coordinator
            .get(format!(
                "{}/c/perpignan/situations/{a}?note=ajoutee",
                web.base
            ))
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), 200);
        for path in [
            format!("/cases/{b}"),
            format!("/cases/{b}/notes"),
            format!("/cases/{b}/decisions"),
        ] {
            assert_eq!(api(Method::GET, path, COORD, None).await.status, 200);
        }
    })
    .await;

    // A member who may not see the case: the page answers as for a missing case, and the
    // refusal is logged as the API's.
    let member = browser_like();
    dev_sign_in(&member, &web.base, PSY).await;
    same_entries(app, "refused read", (&a, &b), async {
        let r = member
            .get(format!("{}/c/perpignan/situations/{a}", web.base))
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), 404);
        api(Method::GET, format!("/cases/{b}"), PSY, None)
            .await
            .assert_problem(404);
    })
    .await;
}

backend_tests!(page_and_api_log_the_same);
