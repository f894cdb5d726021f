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
    audit: AuditSpec,
}

/// What each endpoint leaves in the audit log (see the end of the TOML file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditSpec {
    actions: BTreeMap<String, String>,
    enter: Vec<String>,
    case_level: Vec<String>,
    lists: Vec<String>,
    refusals: Vec<String>,
    /// Administrative endpoints: a success leaves one allowed entry of this action.
    administration: BTreeMap<String, String>,
}

/// An audit entry reduced to what the matrix predicts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Expected {
    action: String,
    outcome: &'static str,
    reason: Option<String>,
    case_id: Option<String>,
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
    #[serde(default)]
    query: Option<String>,
    /// The fixture session `{sid}` names (`s1` by default).
    #[serde(default)]
    session: Option<String>,
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
            Some({
                let mut body = referral(&text("other"));
                body["referring_org"] = json!("CCAS Narbonne");
                body
            }),
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
    // A schedule and two sessions (s2 gets cancelled).
    let coord = app.token(COORD);
    let a = app
        .request(
            Method::PUT,
            "/v1/cellules/perpignan/schedule",
            Some(&coord),
            Some(
                json!({"rrule": "FREQ=MONTHLY;BYDAY=+2TH", "start_time": "14:00",
                "duration_minutes": 120, "minutes_per_new_case": 20, "minutes_per_follow_up": 10}),
            ),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    for (name, at) in [
        ("s1", "2030-12-12T14:00:00+01:00"),
        ("s2", "2031-02-13T14:00:00+01:00"),
    ] {
        let a = app
            .request(
                Method::POST,
                "/v1/cellules/perpignan/sessions",
                Some(&coord),
                Some(json!({"starts_at": at})),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.text);
        cases.insert(
            name.to_owned(),
            a.body["id"].as_str().expect("id").to_owned(),
        );
    }
    cases
}

/// The entries a request should have appended (docs/design.md §9), from the `[audit]` part of the matrix.
#[allow(clippy::too_many_arguments)]
fn expected_entries(
    spec: &AuditSpec,
    endpoint: &str,
    actor: &str,
    status: u16,
    problem_type: &str,
    case_id: Option<&str>,
    case_exists: bool,
    body: &Value,
) -> Vec<Expected> {
    let entry = |action: &str, outcome, reason: Option<&str>, case: Option<&str>| Expected {
        action: action.to_owned(),
        outcome,
        reason: reason.map(str::to_owned),
        case_id: case.map(str::to_owned),
    };
    if let Some(admin_action) = spec.administration.get(endpoint)
        && (200..=299).contains(&status)
    {
        return vec![entry(admin_action, "allowed", None, None)];
    }
    let action = spec.actions.get(endpoint);
    let in_cellule = action.is_some() || spec.enter.iter().any(|e| e == endpoint);
    if matches!(actor, "outsider" | "admin") {
        if !in_cellule {
            return Vec::new();
        }
        let reason = if actor == "admin" {
            "administrator"
        } else {
            "not_member"
        };
        return vec![entry("enter_cellule", "denied", Some(reason), case_id)];
    }
    let Some(action) = action else {
        return Vec::new();
    };
    let case_level = spec.case_level.iter().any(|a| a == action);
    match status {
        200..=299 => {
            if spec.lists.iter().any(|a| a == action) {
                let mut shown: Vec<&Value> = body
                    .get("items")
                    .or(Some(body))
                    .and_then(Value::as_array)
                    .map(|a| a.iter().collect())
                    .unwrap_or_default();
                shown.extend(
                    body.get("deferred")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten(),
                );
                if shown.is_empty() {
                    return vec![entry(action, "allowed", None, None)];
                }
                return shown
                    .iter()
                    .map(|i| {
                        let id = i["id"].as_str().or_else(|| i["case_id"].as_str());
                        entry(action, "allowed", None, id)
                    })
                    .collect();
            }
            let case = case_id.or_else(|| body["id"].as_str());
            vec![entry(action, "allowed", None, case)]
        }
        403 => {
            let reason = if problem_type.ends_with("charter-not-accepted") {
                "charter_not_accepted"
            } else {
                "forbidden"
            };
            vec![entry(
                action,
                "denied",
                Some(reason),
                case_id.filter(|_| case_level),
            )]
        }
        404 => {
            let reason = if case_exists {
                "not_visible"
            } else {
                "not_found"
            };
            vec![entry(action, "denied", Some(reason), case_id)]
        }
        409 | 422 if spec.refusals.iter().any(|a| a == action) => {
            let reason = if status == 409 { "conflict" } else { "invalid" };
            vec![entry(action, "denied", Some(reason), case_id)]
        }
        _ => Vec::new(),
    }
}

async fn head(app: &TestApp, cellule: &str) -> i64 {
    app.state
        .db
        .audit_head(cellule)
        .await
        .expect("audit head")
        .map_or(0, |h| h.seq)
}

fn path_of(endpoint: &str, case: Option<&String>, session: &str) -> (Method, String) {
    let (method, path) = endpoint.split_once(' ').expect("METHOD /path");
    let path = path
        .replace("{cellule}", "perpignan")
        .replace("{sub}", "matrix-someone")
        .replace("{sid}", session)
        .replace("{case_id}", case.map_or("none", String::as_str))
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
    let m = matrix();
    let spec = m.audit;
    let mut rows = m.row;
    rows.sort_by_key(|r| r.phase);
    let mut audited = 0;
    let mut failures = Vec::new();
    let mut checked = 0;
    for r in &rows {
        let case_id = r
            .case
            .as_ref()
            .map(|c| cases.get(c).unwrap_or_else(|| panic!("unknown case {c}")));
        let session = &cases[r.session.as_deref().unwrap_or("s1")];
        let (method, mut path) = path_of(&r.endpoint, case_id, session);
        if let Some(q) = &r.query {
            path = format!("{path}?{q}");
        }
        let body: Option<Value> = r.body.as_deref().map(|b| match b {
            "REFERRAL" => referral("Nouvelle situation de la matrice."),
            json => serde_json::from_str(json).expect("row body is JSON"),
        });
        // Actors expecting success go last (a deletion must not hide the case from the others).
        let mut actors: Vec<(&String, &u16)> = r.expect.iter().collect();
        actors.sort_by_key(|(_, s)| (**s >= 200 && **s < 300) as u8);
        for (actor, expected) in actors {
            let token = app.token(subject(actor));
            let case_exists = match case_id {
                Some(id) => app
                    .state
                    .db
                    .get_case("perpignan", id, chrono::DateTime::<chrono::Utc>::UNIX_EPOCH)
                    .await
                    .expect("get case")
                    .is_some(),
                None => false,
            };
            let (before, before_other) =
                (head(&app, "perpignan").await, head(&app, "narbonne").await);
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
            // The audit entries this request appended, exactly.
            let entries = app
                .state
                .db
                .audit_entries("perpignan", before, 10_000)
                .await
                .expect("audit entries");
            let body_json = if r.query.as_deref() == Some("format=jsonl")
                || r.query.as_deref() == Some("format=fhir")
                || r.endpoint.ends_with("calendar.ics")
            {
                Value::Null
            } else {
                a.body.clone()
            };
            let mut want = expected_entries(
                &spec,
                &r.endpoint,
                actor,
                a.status.as_u16(),
                if a.status.is_success() {
                    ""
                } else {
                    a.problem_type()
                },
                case_id.map(String::as_str),
                case_exists,
                &body_json,
            );
            let mut got: Vec<Expected> = entries
                .iter()
                .map(|e| Expected {
                    action: e.action.clone(),
                    outcome: if e.outcome == "allowed" {
                        "allowed"
                    } else {
                        "denied"
                    },
                    reason: e.reason.clone(),
                    case_id: e.case_id.clone(),
                })
                .collect();
            want.sort();
            got.sort();
            if want != got {
                failures.push(format!(
                    "{label}: audit entries expected {want:?}, got {got:?}"
                ));
            }
            let request_id = a
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            for e in &entries {
                if e.actor != subject(actor) || e.request_id.as_deref() != Some(request_id) {
                    failures.push(format!(
                        "{label}: entry {} has actor {} / request {:?}",
                        e.seq, e.actor, e.request_id
                    ));
                }
            }
            audited += entries.len();
            if head(&app, "narbonne").await != before_other {
                failures.push(format!("{label}: the request touched narbonne's audit log"));
            }
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
    assert!(audited > 300, "{audited} audit entries checked");
    // And the chain of all this verifies.
    let keys = app.state.audit.trusted("perpignan").expect("trusted keys");
    for cellule in ["perpignan", "narbonne"] {
        let report =
            cellule::services::auditor::verify_chain(app.state.db.as_ref(), cellule, &keys)
                .await
                .expect("verify");
        assert!(report.valid, "{cellule}: {:?}", report.broken);
    }
}

backend_tests!(access_matrix);
