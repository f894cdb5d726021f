//! Cellules and memberships: the admin API, `GET /v1/me`, and membership-scoped 404s.

use reqwest::Method;
use serde_json::json;

use crate::backend_tests;
use crate::helpers::{ADMIN, Backend, spawn_app};

async fn admin_creates_cellules(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app
        .as_admin(
            Method::POST,
            "/v1/cellules",
            Some(json!({"slug": "perpignan", "name": "CLSM Perpignan"})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.body["slug"], "perpignan");
    assert_eq!(
        a.body["code"], "PER",
        "code defaults to the slug's first letters"
    );
    assert_eq!(a.headers["location"], "/v1/cellules/perpignan");

    let a = app
        .as_admin(
            Method::POST,
            "/v1/cellules",
            Some(json!({"slug": "narbonne", "name": "CLSM Narbonne", "code": "NARB"})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.body["code"], "NARB");

    // Same slug, then same code: 409, nothing changed.
    let a = app
        .as_admin(
            Method::POST,
            "/v1/cellules",
            Some(json!({"slug": "perpignan", "name": "Other"})),
        )
        .await;
    a.assert_problem(409);
    let a = app
        .as_admin(
            Method::POST,
            "/v1/cellules",
            Some(json!({"slug": "perpi-2", "name": "Other", "code": "PER"})),
        )
        .await;
    a.assert_problem(409);

    let a = app.as_admin(Method::GET, "/v1/cellules", None).await;
    assert_eq!(a.status, 200);
    let slugs: Vec<&str> = a
        .body
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["slug"].as_str())
        .collect();
    assert_eq!(slugs, ["narbonne", "perpignan"]);
    assert_eq!(
        a.body[1]["name"], "CLSM Perpignan",
        "the first creation was kept"
    );
}

async fn cellule_creation_validates_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    for (body, pointer) in [
        (json!({"slug": "Perpignan", "name": "x"}), "/slug"),
        (json!({"slug": "-bad", "name": "x"}), "/slug"),
        (json!({"slug": "ok-slug", "name": ""}), "/name"),
        (
            json!({"slug": "ok-slug", "name": "x", "code": "per"}),
            "/code",
        ),
        (
            json!({"slug": "ok-slug", "name": "x", "code": "TOOLONGX"}),
            "/code",
        ),
        (json!({"slug": "66-11", "name": "x"}), "/code"),
        (
            json!({"slug": "ok-slug", "name": "x", "colour": "blue"}),
            "/colour",
        ),
        (json!({"name": "x"}), ""),
        (json!({"slug": 12, "name": "x"}), "/slug"),
    ] {
        let a = app
            .as_admin(Method::POST, "/v1/cellules", Some(body.clone()))
            .await;
        a.assert_problem(422);
        assert_eq!(
            a.body["errors"][0]["pointer"], pointer,
            "{body}: {}",
            a.text
        );
    }
    let a = app.as_admin(Method::GET, "/v1/cellules", None).await;
    assert_eq!(a.body, json!([]), "nothing was stored");
}

async fn only_admins_administer(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_cellule("perpignan").await;
    app.add_member(
        "perpignan",
        "coord",
        json!({"role": "coordinator", "sphere": "city", "organisation": "CLSM"}),
    )
    .await;
    let coord = app.token("coord");
    for (method, path, body) in [
        (Method::GET, "/v1/cellules", None),
        (
            Method::POST,
            "/v1/cellules",
            Some(json!({"slug": "x-y", "name": "x"})),
        ),
        (Method::GET, "/v1/cellules/perpignan/members", None),
        (
            Method::PUT,
            "/v1/cellules/perpignan/members/bob",
            Some(json!({"role": "auditor"})),
        ),
        (Method::DELETE, "/v1/cellules/perpignan/members/coord", None),
    ] {
        let a = app
            .request(method.clone(), path, Some(&coord), body.clone())
            .await;
        a.assert_problem(403);
        let a = app.request(method, path, None, body).await;
        a.assert_problem(401);
    }
    // Nothing changed.
    let a = app
        .as_admin(Method::GET, "/v1/cellules/perpignan/members", None)
        .await;
    assert_eq!(a.body.as_array().map(Vec::len), Some(1));
    let a = app.as_admin(Method::GET, "/v1/cellules", None).await;
    assert_eq!(a.body.as_array().map(Vec::len), Some(1));
}

async fn memberships_are_created_replaced_and_removed(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_cellule("perpignan").await;
    let path = "/v1/cellules/perpignan/members/psc:810001";
    let a = app
        .as_admin(
            Method::PUT,
            path,
            Some(json!({"role": "member", "sphere": "psychiatry", "organisation": "CMP 66G03"})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.body["role"], "member");
    assert_eq!(a.body["sphere"], "psychiatry");
    assert_eq!(a.body["guest"], false);

    let a = app
        .as_admin(Method::PUT, path, Some(json!({"role": "member", "sphere": "psychiatry", "organisation": "EMPP", "guest": true})))
        .await;
    assert_eq!(a.status, 200, "replacing answers 200: {}", a.text);
    assert_eq!(a.body["organisation"], "EMPP");
    assert_eq!(a.body["guest"], true);

    let me = app.get("/v1/me", Some(&app.token("psc:810001"))).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["memberships"][0]["cellule"]["slug"], "perpignan");
    assert_eq!(me.body["memberships"][0]["role"], "member");
    assert_eq!(me.body["memberships"][0]["organisation"], "EMPP");

    let a = app.as_admin(Method::DELETE, path, None).await;
    assert_eq!(a.status, 204);
    let a = app.as_admin(Method::DELETE, path, None).await;
    a.assert_problem(404);
    let me = app.get("/v1/me", Some(&app.token("psc:810001"))).await;
    assert_eq!(
        me.body["memberships"],
        json!([]),
        "access ends with the membership"
    );
    let a = app
        .get("/v1/cellules/perpignan", Some(&app.token("psc:810001")))
        .await;
    a.assert_problem(404);
}

async fn membership_rules_are_enforced(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_cellule("perpignan").await;
    for (body, pointer) in [
        (json!({"role": "member", "organisation": "CCAS"}), "/sphere"),
        (
            json!({"role": "coordinator", "sphere": "city"}),
            "/organisation",
        ),
        (
            json!({"role": "coordinator", "sphere": "city", "organisation": "CLSM", "guest": true}),
            "/guest",
        ),
        (json!({"role": "referrer"}), "/organisation"),
        (json!({"role": "auditor", "sphere": "city"}), "/sphere"),
        (json!({"role": "chief", "sphere": "city"}), "/role"),
        (
            json!({"role": "member", "sphere": "hospital", "organisation": "x"}),
            "/sphere",
        ),
        (
            json!({"role": "member", "sphere": "city", "organisation": "x", "extra": 1}),
            "/extra",
        ),
        (
            json!({"role": "member", "sphere": "city", "organisation": ""}),
            "/organisation",
        ),
        (
            json!({"role": "member", "sphere": "city", "organisation": "x", "guest": "yes"}),
            "/guest",
        ),
    ] {
        let a = app
            .as_admin(
                Method::PUT,
                "/v1/cellules/perpignan/members/bob",
                Some(body.clone()),
            )
            .await;
        a.assert_problem(422);
        assert_eq!(
            a.body["errors"][0]["pointer"], pointer,
            "{body}: {}",
            a.text
        );
    }
    // An administrator cannot be given a membership.
    let a = app
        .as_admin(
            Method::PUT,
            &format!("/v1/cellules/perpignan/members/{ADMIN}"),
            Some(json!({"role": "coordinator", "sphere": "city", "organisation": "CLSM"})),
        )
        .await;
    a.assert_problem(422);
    assert_eq!(a.body["errors"][0]["pointer"], "/sub");
    // Unknown cellule.
    let a = app
        .as_admin(
            Method::PUT,
            "/v1/cellules/nowhere/members/bob",
            Some(json!({"role": "auditor"})),
        )
        .await;
    a.assert_problem(404);
    let a = app
        .as_admin(Method::GET, "/v1/cellules/nowhere/members", None)
        .await;
    a.assert_problem(404);
    let a = app
        .as_admin(Method::GET, "/v1/cellules/perpignan/members", None)
        .await;
    assert_eq!(a.body, json!([]), "nothing was stored");
}

async fn non_members_get_the_same_404_as_a_missing_cellule(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_cellule("perpignan").await;
    app.create_cellule("narbonne").await;
    app.add_member(
        "perpignan",
        "alice",
        json!({"role": "referrer", "organisation": "CCAS Perpignan"}),
    )
    .await;
    app.add_member("narbonne", "bob", json!({"role": "auditor"}))
        .await;

    let alice = app.token("alice");
    let a = app.get("/v1/cellules/perpignan", Some(&alice)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["membership"]["role"], "referrer");

    let other_cellule = app.get("/v1/cellules/narbonne", Some(&alice)).await;
    let missing = app.get("/v1/cellules/saint-cyprien", Some(&alice)).await;
    let invalid = app.get("/v1/cellules/NOT_A_SLUG", Some(&alice)).await;
    other_cellule.assert_problem(404);
    missing.assert_problem(404);
    invalid.assert_problem(404);
    assert_eq!(other_cellule.text, missing.text, "identical bodies");
    assert_eq!(missing.text, invalid.text, "identical bodies");

    // A valid token without any membership.
    let stranger = app.token("stranger");
    let a = app.get("/v1/cellules/perpignan", Some(&stranger)).await;
    assert_eq!(a.text, missing.text);
    // An administrator is not a member either.
    let a = app
        .as_admin(Method::GET, "/v1/cellules/perpignan", None)
        .await;
    assert_eq!(a.text, missing.text);

    let me = app.get("/v1/me", Some(&stranger)).await;
    assert_eq!(me.body["memberships"], json!([]));
    let me = app.as_admin(Method::GET, "/v1/me", None).await;
    assert_eq!(me.body["admin"], true);
}

backend_tests!(
    admin_creates_cellules,
    cellule_creation_validates_fields,
    only_admins_administer,
    memberships_are_created_replaced_and_removed,
    membership_rules_are_enforced,
    non_members_get_the_same_404_as_a_missing_cellule,
);
