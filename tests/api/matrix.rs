//! The access matrix (`tests/access_matrix.toml`): every endpoint × actor × situation, with the
//! expected status and, for lists, the exact ids — on both backends. Also: every endpoint of the
//! OpenAPI document has rows, and auditors and administrators never receive case content.

use std::collections::{BTreeMap, HashMap, HashSet};

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::backend_tests;
use crate::helpers::{
    ADMIN, AUDITOR, Backend, CITY, COORD, GUEST, PSY, REF1, REF2, TestApp, referral, spawn_app,
};

const MATRIX: &str = include_str!("../access_matrix.toml");
const CONTENT: &str = "MATRIXCONTENT";
const ACTORS: [&str; 10] = [
    "coordinator",
    "psy",
    "city",
    "guest",
    "referrer",
    "other_referrer",
    "auditor",
    "no_charter",
    "outsider",
    "admin",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Matrix {
    row: Vec<Row>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    endpoint: String,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    case: Option<String>,
    #[serde(default)]
    phase: u8,
    #[serde(default)]
    body: Option<String>,
    expect: BTreeMap<String, u16>,
    #[serde(default)]
    ids: BTreeMap<String, Vec<String>>,
}

fn matrix() -> Matrix {
    toml::from_str(MATRIX).unwrap_or_else(|e| panic!("tests/access_matrix.toml: {e}"))
}

fn subject(actor: &str) -> &'static str {
    match actor {
        "coordinator" => COORD,
        "psy" => PSY,
        "city" => CITY,
        "guest" => GUEST,
        "referrer" => REF1,
        "other_referrer" => REF2,
        "auditor" => AUDITOR,
        "no_charter" => "newcomer-1",
        "outsider" => "outsider-1",
        "admin" => ADMIN,
        other => panic!("unknown actor {other}"),
    }
}

#[test]
fn every_endpoint_has_rows_and_every_row_every_actor() {
    let m = matrix();
    let doc = serde_json::to_value(cellule::http::openapi()).expect("openapi");
    let mut operations = HashSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            operations.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let covered: HashSet<String> = m.row.iter().map(|r| r.endpoint.clone()).collect();
    let missing: Vec<&String> = operations
        .iter()
        .filter(|o| !covered.contains(*o))
        .collect();
    assert!(
        missing.is_empty(),
        "endpoints without matrix rows: {missing:?}"
    );
    let unknown: Vec<&String> = covered
        .iter()
        .filter(|c| !operations.contains(*c))
        .collect();
    assert!(
        unknown.is_empty(),
        "rows for endpoints that do not exist: {unknown:?}"
    );
    for r in &m.row {
        let actors: HashSet<&str> = r.expect.keys().map(String::as_str).collect();
        assert_eq!(
            actors,
            ACTORS.into_iter().collect(),
            "{} {:?}: every actor needs an expectation",
            r.endpoint,
            r.case
        );
    }
}

/// The fixture: cellule perpignan with its members and one case per situation, and narbonne.
async fn fixture(app: &TestApp) -> HashMap<String, String> {
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
    app.add_member(
        "narbonne",
        "narb-ref",
        json!({"role": "referrer", "organisation": "CCAS Narbonne"}),
    )
    .await;

    let mut cases = HashMap::new();
    let text = |name: &str| format!("Situation {CONTENT} {name}.");
    for name in [
        "submitted",
        "routed_cmp",
        "routed_empp",
        "agenda",
        "agenda_expired",
    ] {
        let (id, _) = app.refer_ok(REF1, &text(name)).await;
        cases.insert(name.to_owned(), id);
    }
    let a = app
        .request(
            Method::POST,
            "/v1/cellules/narbonne/referrals",
            Some(&app.token("narb-ref")),
            Some(referral(&text("other"))),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    cases.insert(
        "other_cellule".to_owned(),
        a.body["id"].as_str().expect("id").to_owned(),
    );

    for (name, org) in [("routed_cmp", "CMP 66G03"), ("routed_empp", "EMPP")] {
        let id = &cases[name];
        app.move_case(id, json!({"to": "accepted"})).await;
        app.move_case(id, json!({"to": "scheduled"})).await;
        app.move_case(
            id,
            json!({"to": "in_follow_up", "follow_up_date": "2027-01-14", "routed_org": org}),
        )
        .await;
    }
    let now = chrono::Utc::now();
    for (name, days_ago) in [("agenda", 10), ("agenda_expired", 40)] {
        let id = cases[name].clone();
        app.move_case(&id, json!({"to": "accepted"})).await;
        let at = now - chrono::Duration::days(days_ago);
        // The agenda publication fact comes from storage (the scheduling work fills it).
        match app.database_url.starts_with("sqlite") {
            true => {
                let mut c = sqlx::SqliteConnection::connect(&app.database_url)
                    .await
                    .expect("sqlite");
                sqlx::query("INSERT INTO agenda_publications (case_id, session_id, session_at, published_at) VALUES (?1, 's1', ?2, ?2)")
                    .bind(&id)
                    .bind(at)
                    .execute(&mut c)
                    .await
                    .expect("insert");
            }
            false => {
                let mut c = sqlx::PgConnection::connect(&app.database_url)
                    .await
                    .expect("pg");
                sqlx::query("INSERT INTO agenda_publications (case_id, session_id, session_at, published_at) VALUES ($1, 's1', $2, $2)")
                    .bind(&id)
                    .bind(at)
                    .execute(&mut c)
                    .await
                    .expect("insert");
            }
        }
    }
    // Some notes of every audience on every perpignan case.
    for name in [
        "submitted",
        "routed_cmp",
        "routed_empp",
        "agenda",
        "agenda_expired",
    ] {
        let id = &cases[name];
        for (who, audience) in [(COORD, "cellule"), (COORD, "city")] {
            let a = app
                .request(
                    Method::POST,
                    &format!("/v1/cellules/perpignan/cases/{id}/notes"),
                    Some(&app.token(who)),
                    Some(json!({"audience": audience, "body": format!("Note {CONTENT}.")})),
                )
                .await;
            assert_eq!(a.status, 201, "{}", a.text);
        }
    }
    cases
}

fn path_of(endpoint: &str, case: Option<&String>) -> (Method, String) {
    let (method, path) = endpoint.split_once(' ').expect("METHOD /path");
    let path = path
        .replace("{cellule}", "perpignan")
        .replace("{sub}", "matrix-someone")
        .replace("{id}", case.map_or("none", String::as_str));
    (method.parse().expect("method"), path)
}

async fn access_matrix(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = fixture(&app).await;
    let by_id: HashMap<&str, &str> = cases
        .iter()
        .map(|(k, v)| (v.as_str(), k.as_str()))
        .collect();
    let mut rows = matrix().row;
    rows.sort_by_key(|r| r.phase);
    let mut failures = Vec::new();
    let mut checked = 0;
    for r in &rows {
        let case_id = r
            .case
            .as_ref()
            .map(|c| cases.get(c).unwrap_or_else(|| panic!("unknown case {c}")));
        let (method, path) = path_of(&r.endpoint, case_id);
        let body: Option<Value> = r.body.as_deref().map(|b| match b {
            "REFERRAL" => referral("Nouvelle situation de la matrice."),
            json => serde_json::from_str(json).expect("row body is JSON"),
        });
        // Actors expecting success go last (a deletion must not hide the case from the others).
        let mut actors: Vec<(&String, &u16)> = r.expect.iter().collect();
        actors.sort_by_key(|(_, s)| (**s >= 200 && **s < 300) as u8);
        for (actor, expected) in actors {
            let token = app.token(subject(actor));
            let a = app
                .request(method.clone(), &path, Some(&token), body.clone())
                .await;
            checked += 1;
            let label = format!(
                "{} [{}] {} as {actor}",
                r.endpoint,
                r.case.as_deref().unwrap_or("-"),
                r.note.as_deref().unwrap_or("")
            );
            if a.status.as_u16() != *expected {
                failures.push(format!(
                    "{label}: expected {expected}, got {} {}",
                    a.status, a.text
                ));
                continue;
            }
            if !a.status.is_success() {
                a.assert_problem(*expected);
            }
            if matches!(actor.as_str(), "auditor" | "admin") {
                assert!(
                    !a.text.contains(CONTENT),
                    "{label}: case content reached an {actor}"
                );
            }
            if let Some(ids) = r.ids.get(actor) {
                let list = a.body.get("items").unwrap_or(&a.body);
                let got: HashSet<&str> = list
                    .as_array()
                    .expect("a list")
                    .iter()
                    .filter_map(|i| i["id"].as_str())
                    .filter_map(|id| by_id.get(id).copied())
                    .collect();
                let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
                if got != want || list.as_array().map(Vec::len) != Some(want.len()) {
                    failures.push(format!("{label}: expected ids {want:?}, got {got:?}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 500, "{checked}");
}

backend_tests!(access_matrix);
