//! Administration in the audit log (issue 34): memberships granted, changed and revoked,
//! retention and routing changed, keys rotated from the command line and the policies loaded at
//! each start each leave an entry naming who did it and the change before → after; auditors
//! find them with the usual filters, the FHIR export maps them to DICOM security events, and the
//! chain still verifies.

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{ADMIN, AUDITOR, Backend, COORD, TestApp, spawn_app};

/// The auditor's view of `perpignan`'s entries matching `query` (newest first).
async fn entries(app: &TestApp, query: &str) -> Vec<Value> {
    let a = app
        .get(
            &format!("/v1/cellules/perpignan/audit?{query}"),
            Some(&app.token(AUDITOR)),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.body["items"].as_array().cloned().expect("items")
}

/// The one entry of `action` in `perpignan`.
async fn only(app: &TestApp, action: &str) -> Value {
    let found = entries(app, &format!("action={action}")).await;
    assert_eq!(found.len(), 1, "{action}: {found:?}");
    found.into_iter().next().expect("entry")
}

fn assert_by_admin(e: &Value) {
    assert_eq!(e["actor"], ADMIN, "{e}");
    assert_eq!(e["actor_role"], "administrator", "{e}");
    assert_eq!(e["outcome"], "allowed", "{e}");
}

async fn verify(app: &TestApp) {
    let a = app
        .get(
            "/v1/cellules/perpignan/audit/verify",
            Some(&app.token(AUDITOR)),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["valid"], true, "{}", a.text);
}

async fn administration_names_the_administrator_and_the_change(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;

    // The creation opened the chain.
    let created = only(&app, "create_cellule").await;
    assert_by_admin(&created);
    assert_eq!(created["seq"], 1);
    assert_eq!(created["target_kind"], "cellule");
    assert_eq!(created["detail"]["after"]["code"], "PER");
    assert!(
        created["detail"]["after"]["charter"]["sha256"]
            .as_str()
            .is_some_and(|h| h.len() == 64),
        "{created}"
    );

    // Grant, change (organisation), revoke.
    let path = "/v1/cellules/perpignan/members/new-coord";
    let grant =
        json!({"role": "coordinator", "sphere": "psychiatry", "organisation": "CMP Perpignan"});
    let a = app.as_admin(Method::PUT, path, Some(grant)).await;
    assert_eq!(a.status, 201, "{}", a.text);
    let change =
        json!({"role": "coordinator", "sphere": "psychiatry", "organisation": "CMP 66G03"});
    let a = app.as_admin(Method::PUT, path, Some(change)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = app.as_admin(Method::DELETE, path, None).await;
    assert_eq!(a.status, 204, "{}", a.text);

    let grants = entries(&app, "action=grant_membership").await;
    let granted = grants
        .iter()
        .find(|e| e["target_id"] == "new-coord")
        .expect("grant of new-coord");
    assert_by_admin(granted);
    assert_eq!(granted["target_kind"], "membership");
    assert_eq!(granted["detail"]["before"], Value::Null);
    assert_eq!(
        granted["detail"]["after"],
        json!({"role": "coordinator", "sphere": "psychiatry", "organisation": "CMP Perpignan", "guest": false})
    );
    let changed = only(&app, "change_membership").await;
    assert_by_admin(&changed);
    assert_eq!(changed["target_id"], "new-coord");
    assert_eq!(changed["detail"]["before"]["organisation"], "CMP Perpignan");
    assert_eq!(changed["detail"]["after"]["organisation"], "CMP 66G03");
    let revoked = only(&app, "revoke_membership").await;
    assert_by_admin(&revoked);
    assert_eq!(revoked["target_id"], "new-coord");
    assert_eq!(revoked["detail"]["before"]["organisation"], "CMP 66G03");
    assert_eq!(revoked["detail"]["after"], Value::Null);
    // A revocation of nobody changes nothing and records nothing.
    let a = app.as_admin(Method::DELETE, path, None).await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert_eq!(entries(&app, "action=revoke_membership").await.len(), 1);

    // Retention: one month for closed cases.
    let a = app
        .as_admin(
            Method::PUT,
            "/v1/cellules/perpignan/retention",
            Some(json!({"closed_months": 1, "declined_months": 3})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let retention = only(&app, "change_retention").await;
    assert_by_admin(&retention);
    assert_eq!(retention["target_id"], "perpignan");
    assert_eq!(
        retention["detail"],
        json!({"before": {"closed_months": 24, "declined_months": 3},
               "after": {"closed_months": 1, "declined_months": 3}})
    );

    // Charter: version and hash, never the text.
    let text = "Charte révisée : secret partagé, strict nécessaire.";
    let a = app
        .as_admin(
            Method::PUT,
            "/v1/cellules/perpignan/charter",
            Some(json!({"text": text})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let charter = only(&app, "change_charter").await;
    assert_by_admin(&charter);
    assert_eq!(charter["detail"]["before"], json!({"version": 1}));
    assert_eq!(charter["detail"]["after"]["version"], 2);
    assert!(!charter.to_string().contains("révisée"), "{charter}");

    // Routing, by the coordinator: interlocutors then rules.
    let a = app
        .request(
            Method::PUT,
            "/v1/cellules/perpignan/interlocutors",
            Some(&app.token(COORD)),
            Some(json!({"interlocutors": [
                {"id": "cmp-66g03", "name": "CMP 66G03", "sphere": "psychiatry", "kind": "cmp", "sectors": ["66G03"]},
                {"id": "ccas", "name": "CCAS Perpignan", "sphere": "city", "kind": "ccas", "communes": ["66136"]}
            ]})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = app
        .request(
            Method::PUT,
            "/v1/cellules/perpignan/routing",
            Some(&app.token(COORD)),
            Some(json!({"rules": [
                {"id": "logement", "needs": ["housing"], "communes": ["66136"], "lead": "ccas"}
            ]})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let routing = entries(&app, "action=change_routing").await;
    assert_eq!(routing.len(), 2, "{routing:?}");
    let (rules, interlocutors) = (&routing[0], &routing[1]);
    assert_eq!(interlocutors["actor"], COORD);
    assert_eq!(interlocutors["actor_role"], "coordinator");
    assert_eq!(
        interlocutors["detail"]["interlocutors"]["added"],
        json!(["cmp-66g03", "ccas"])
    );
    assert_eq!(
        interlocutors["detail"]["after"],
        json!({"interlocutors": 2, "rules": 0})
    );
    assert_eq!(rules["detail"]["rules"]["added"], json!(["logement"]));
    assert_eq!(
        rules["detail"]["before"],
        json!({"interlocutors": 2, "rules": 0})
    );
    assert!(!rules.to_string().contains("CCAS Perpignan"), "{rules}");

    // The actor filter finds the administrator's entries: creation, seven grants of the
    // standard cellule and one more, the change, the revocation, retention and charter.
    let by_admin = entries(&app, &format!("actor={ADMIN}")).await;
    assert_eq!(by_admin.len(), 13, "{by_admin:?}");
    assert!(by_admin.iter().all(|e| e["actor_role"] == "administrator"));

    // The FHIR export maps them to DICOM security events.
    let a = app
        .get(
            "/v1/cellules/perpignan/audit/export?format=fhir",
            Some(&app.token(AUDITOR)),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let bundle: Value = serde_json::from_str(&a.text).expect("bundle");
    let event = |action: &str| {
        bundle["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| &e["resource"])
            .find(|r| {
                r["subtype"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|c| c["code"] == action))
            })
            .cloned()
            .unwrap_or_else(|| panic!("no {action} event"))
    };
    for (action, code, fhir_action) in [
        ("grant_membership", "110136", "C"),
        ("change_membership", "110136", "U"),
        ("revoke_membership", "110136", "D"),
        ("change_retention", "110129", "U"),
        ("change_routing", "110129", "U"),
        ("change_charter", "110129", "C"),
        ("create_cellule", "110129", "C"),
    ] {
        let e = event(action);
        assert_eq!(e["type"]["code"], "110113", "{action}: {e}");
        assert_eq!(e["subtype"][0]["code"], code, "{action}: {e}");
        assert_eq!(e["action"], fhir_action, "{action}: {e}");
    }
    // Other entries stay RESTful operations.
    assert_eq!(event("accept_charter")["type"]["code"], "rest");

    verify(&app).await;
}

/// The binary on the test app's data, run as OS user `user`.
fn cli_as(app: &TestApp, user: &str, args: &[&str]) -> std::process::Output {
    crate::keys::cellule_command(app, args)
        .env("USER", user)
        .output()
        .expect("run cellule")
}

async fn key_rotation_and_each_start_are_recorded_in_every_cellule(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    app.create_cellule("narbonne").await;
    // The server started before any cellule existed: nothing to record then.
    assert!(
        entries(&app, "action=load_policies").await.is_empty(),
        "no entry before the cellule existed"
    );

    let out = cli_as(&app, "ops-alice", &["keys", "rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for cellule in ["perpignan", "narbonne"] {
        let found = app
            .state
            .db
            .search_audit(
                cellule,
                &cellule::audit::Filter {
                    action: Some("rotate_keys".into()),
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .expect("search");
        assert_eq!(found.len(), 1, "{cellule}: {found:?}");
        assert_eq!(found[0].actor, "system:cli:ops-alice");
        assert_eq!(found[0].actor_role, "system");
        let detail: Value =
            serde_json::from_str(found[0].detail.as_deref().expect("detail")).expect("json");
        assert_eq!(
            detail["kek_version"],
            json!({"before": 1, "after": 2}),
            "{detail}"
        );
    }
    let rotated = entries(&app, "actor=system:cli:ops-alice").await;
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    assert_eq!(rotated[0]["action"], "rotate_keys");

    // Every key is re-wrapped on v2: v1 can be retired, which is recorded too.
    let out = cli_as(&app, "ops-bob", &["keys", "retire", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let retired = only(&app, "retire_key").await;
    assert_eq!(retired["actor"], "system:cli:ops-bob");
    assert_eq!(
        retired["detail"],
        json!({"kek_version": 1, "versions": {"before": [1, 2], "after": [2]}})
    );

    // A start (a second server on the same database and keyring) records the policies it
    // enforces, in every cellule.
    let again = cellule::app::Application::build(app.config.clone())
        .await
        .expect("second start");
    drop(again);
    let loaded = only(&app, "load_policies").await;
    assert_eq!(loaded["actor"], "system:startup");
    assert_eq!(loaded["target_kind"], "policies");
    let expected = cellule::domain::policy::Policies::embedded().expect("policies");
    assert_eq!(loaded["detail"]["sha256"], expected.digest());
    assert_eq!(loaded["detail"]["source"], "embedded");
    assert_eq!(loaded["target_id"], expected.digest());
    let narbonne = app
        .state
        .db
        .search_audit(
            "narbonne",
            &cellule::audit::Filter {
                action: Some("load_policies".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("search");
    assert_eq!(narbonne.len(), 1);

    verify(&app).await;
}

/// Concurrent grants of one new membership: exactly one creates it and is recorded as the grant,
/// the others as changes of what the one before stored.
async fn concurrent_grants_record_one_grant(backend: Backend) {
    let app = std::sync::Arc::new(spawn_app(backend).await);
    app.standard_cellule().await;
    let mut tasks = Vec::new();
    for org in ["CMP A", "CMP B", "CMP C", "CMP D", "CMP E", "CMP F"] {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.as_admin(
                Method::PUT,
                "/v1/cellules/perpignan/members/racer",
                Some(json!({"role": "member", "sphere": "city", "organisation": org})),
            )
            .await
            .status
            .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 201]);
    let grants = entries(&app, "action=grant_membership").await;
    assert_eq!(
        grants.iter().filter(|e| e["target_id"] == "racer").count(),
        1
    );
    // Oldest first: each change's "before" is the previous entry's "after".
    let mut changes = entries(&app, "action=change_membership").await;
    changes.reverse();
    assert_eq!(changes.len(), 5);
    let granted = grants
        .iter()
        .find(|e| e["target_id"] == "racer")
        .expect("grant");
    let mut previous = granted["detail"]["after"].clone();
    for c in &changes {
        assert_eq!(c["detail"]["before"], previous, "{c}");
        previous = c["detail"]["after"].clone();
    }
    verify(&app).await;
}

/// Runs literal SQL statements (no input in them) on the app's database.
async fn sql(app: &TestApp, statements: &[&str]) {
    use sqlx::Connection;
    if app.database_url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(&app.database_url)
            .await
            .expect("sqlite");
        for s in statements {
            sqlx::raw_sql(s).execute(&mut c).await.expect("sql");
        }
    } else {
        let mut c = sqlx::PgConnection::connect(&app.database_url)
            .await
            .expect("pg");
        for s in statements {
            sqlx::raw_sql(s).execute(&mut c).await.expect("sql");
        }
    }
}

/// When the entry cannot be written, the administrative change does not happen.
async fn no_entry_no_change(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let members = || async {
        app.as_admin(Method::GET, "/v1/cellules/perpignan/members", None)
            .await
            .body
    };
    let retention = || async {
        app.state
            .db
            .retention_settings()
            .await
            .expect("retention")
            .into_iter()
            .map(|r| {
                (
                    r.slug,
                    r.retention_closed_months,
                    r.retention_declined_months,
                )
            })
            .collect::<Vec<_>>()
    };
    let (members_before, retention_before) = (members().await, retention().await);
    if app.database_url.starts_with("sqlite") {
        sql(
            &app,
            &["CREATE TRIGGER audit_fail BEFORE INSERT ON audit_entries \
               BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END"],
        )
        .await;
    } else {
        sql(
            &app,
            &[
                "CREATE FUNCTION audit_fail() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'injected audit failure'; END; $$",
                "CREATE TRIGGER audit_fail BEFORE INSERT ON audit_entries \
                 FOR EACH ROW EXECUTE FUNCTION audit_fail()",
            ],
        )
        .await;
    }
    let path = "/v1/cellules/perpignan/members";
    for (method, path, body) in [
        (
            Method::PUT,
            format!("{path}/intruder"),
            Some(
                json!({"role": "coordinator", "sphere": "psychiatry", "organisation": "CMP 66G03"}),
            ),
        ),
        (
            Method::PUT,
            format!("{path}/{COORD}"),
            Some(json!({"role": "auditor"})),
        ),
        (Method::DELETE, format!("{path}/{AUDITOR}"), None),
        (
            Method::PUT,
            "/v1/cellules/perpignan/retention".to_owned(),
            Some(json!({"closed_months": 1, "declined_months": 1})),
        ),
        (
            Method::PUT,
            "/v1/cellules/perpignan/charter".to_owned(),
            Some(json!({"text": "Une charte qui ne doit pas rester."})),
        ),
        (
            Method::POST,
            "/v1/cellules".to_owned(),
            Some(json!({"slug": "ceret", "name": "Cellule Céret"})),
        ),
    ] {
        let a = app.as_admin(method.clone(), &path, body).await;
        assert!(a.status.is_server_error(), "{method} {path}: {}", a.text);
    }
    let a = app
        .request(
            Method::PUT,
            "/v1/cellules/perpignan/interlocutors",
            Some(&app.token(COORD)),
            Some(json!({"interlocutors": [
                {"id": "ccas", "name": "CCAS Perpignan", "sphere": "city", "kind": "ccas"}
            ]})),
        )
        .await;
    assert!(a.status.is_server_error(), "{}", a.text);
    let remove = if app.database_url.starts_with("sqlite") {
        "DROP TRIGGER audit_fail"
    } else {
        "DROP TRIGGER audit_fail ON audit_entries"
    };
    sql(&app, &[remove]).await;

    assert_eq!(members().await, members_before, "memberships unchanged");
    assert_eq!(retention().await, retention_before, "retention unchanged");
    let cellules = app.as_admin(Method::GET, "/v1/cellules", None).await;
    assert_eq!(cellules.body.as_array().map(Vec::len), Some(1), "no ceret");
    let charter = app
        .get("/v1/cellules/perpignan/charter", Some(&app.token(COORD)))
        .await;
    assert_eq!(charter.body["version"], 1, "{}", charter.text);
    let routing = app
        .get(
            "/v1/cellules/perpignan/interlocutors",
            Some(&app.token(COORD)),
        )
        .await;
    assert_eq!(routing.body["interlocutors"], json!([]), "{}", routing.text);
    verify(&app).await;
}

backend_tests!(
    no_entry_no_change,
    concurrent_grants_record_one_grant,
    administration_names_the_administrator_and_the_change,
    key_rotation_and_each_start_are_recorded_in_every_cellule,
);
